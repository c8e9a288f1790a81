"""The CLB API's per-call limits, and the two ways of packing work into calls.

Documented limits (CLB API 2018-03-17): RegisterTargets/DeregisterTargets/ModifyTargetWeight
take at most 20 targets; BatchRegisterTargets/BatchDeregisterTargets at most 500;
BatchModifyTargetWeight at most 100 ``ModifyList`` entries of at most 50 targets each and 500
in all; DeleteLoadBalancerListeners at most 20 listener ids. Where Tencent documents no limit
(ports per CreateListener, rules per CreateRule or DeleteRule) we pick a modest one.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True)
class Limits:
    targets_per_call: int = 20
    batch_targets: int = 500
    weight_entries: int = 100
    weight_targets_per_entry: int = 50
    weight_targets: int = 500
    listeners_per_delete: int = 20
    listeners_per_create: int = 20
    # Rules per CreateRule/DeleteRule: undocumented; 50 is the default rule quota per listener.
    rules_per_call: int = 50

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if value < 1:
                raise ValueError(f"limit {name} must be at least 1, not {value}")


CLB_LIMITS = Limits()


class Batching(StrEnum):
    """How a plan packs its work into calls.

    ``single``: the pre-batch API, as the seed's "before optimization" control plane used it:
    one listener, rule or target group per call (RegisterTargets in chunks of 20, one CreateRule
    per rule). ``batch``: the Batch* calls across a whole CLB, many rules per CreateRule, many
    listeners per CreateListener and DeleteLoadBalancerListeners.
    """

    SINGLE = "single"
    BATCH = "batch"
