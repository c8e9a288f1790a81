"""The cloud port: what the controllers need from a cloud load balancer, and nothing Tencent.

Controllers and the planner talk to :class:`CloudLoadBalancers` and to the values below (and
the state values of :mod:`directlb.plan.state`: Listener, Rule, Target, HealthCheck, ...).
:class:`directlb.cloud.tencent.TencentLoadBalancers` implements it on Tencent Cloud CLB. A
second implementation (another cloud, or an in-memory fake) is possible without touching the
controllers: implement this Protocol, keep the semantics written in its docstrings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from directlb.cloud.errors import CloudError
from directlb.plan.ops import Plan
from directlb.plan.state import (
    Certificate,
    HealthCheck,
    Listener,
    ListenerKey,
    ListenerProtocol,
    LoadBalancerState,
    Rule,
    RuleKey,
    Target,
    TargetKind,
)

Tags = tuple[tuple[str, str], ...]


class LoadBalancerType(StrEnum):
    OPEN = "OPEN"  # public
    INTERNAL = "INTERNAL"  # VPC only; needs a subnet


@dataclass(frozen=True)
class LoadBalancer:
    lb_id: str
    name: str
    type: LoadBalancerType
    vips: tuple[str, ...]
    tags: Tags = ()
    ready: bool = True  # False while the cloud is still creating it
    vpc_id: str = ""
    subnet_id: str = ""
    created: str = ""  # CreateTime, "YYYY-MM-DD hh:mm:ss": sorts oldest first

    def tag(self, key: str) -> str | None:
        for k, v in self.tags:
            if k == key:
                return v
        return None


@dataclass(frozen=True)
class LoadBalancerSpec:
    """A load balancer to find by its ownership ``tags`` (or create), or to adopt by id.

    The tags are how a restarted controller finds what it created: the cloud keeps them.
    """

    name: str
    tags: Tags
    type: LoadBalancerType = LoadBalancerType.OPEN
    subnet_id: str = ""  # INTERNAL only
    existing_id: str = ""  # adopt this load balancer instead of finding or creating one
    # The id the owner recorded last time (its annotation): the one kept if several carry
    # the tags (see CloudLoadBalancers.ensure_load_balancer).
    known_id: str = ""

    def __post_init__(self) -> None:
        if not self.existing_id and not self.tags:
            raise ValueError("a load balancer to find or create needs ownership tags")
        if self.type is LoadBalancerType.INTERNAL and not self.subnet_id and not self.existing_id:
            raise ValueError("an INTERNAL load balancer needs a subnet_id")


@dataclass(frozen=True)
class TargetHealth:
    """The cloud's health-check verdict on one bound target."""

    lb_id: str
    listener: ListenerKey
    listener_id: str
    rule: RuleKey | None
    location_id: str
    ip: str
    port: int
    instance_id: str
    healthy: bool
    detail: str  # Alive, Dead, Unknown, or Close (health check off: counted healthy)


@dataclass(frozen=True)
class DesiredLoadBalancer:
    """The listeners one CLB should have.

    ``scope`` lists the listener keys this desired state may delete when they are no longer
    wanted; ``None`` means the whole CLB belongs to it (a CLB we created). A CLB shared with
    others (an adopted one) passes the keys it created before.
    """

    lb_id: str
    listeners: tuple[Listener, ...]
    scope: frozenset[ListenerKey] | None = None


@dataclass(frozen=True)
class CloudQuotas:
    """The account's quotas that shape a desired state (Tencent's defaults until read)."""

    listeners_per_lb: int = 50  # TOTAL_LISTENER_QUOTA
    targets_per_group: int = 100  # TOTAL_TARGET_BIND_QUOTA: per listener (L4) or rule (L7)
    rules_per_listener: int = 50  # TOTAL_LISTENER_RULE_QUOTA: per layer-7 listener


@dataclass(frozen=True)
class SyncResult:
    lb_id: str
    operations: int = 0  # operations applied (0: already in sync)
    rounds: int = 0  # observe-plan-apply rounds (a stale plan costs one more)
    error: CloudError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class CloudLoadBalancers(Protocol):
    """Cloud load balancers as the controllers use them.

    Every method is safe to call again after a crash or an error: what already happened is
    found and not done twice. Errors are :class:`CloudError` carrying the cloud's code.
    """

    async def ensure_load_balancer(self, spec: LoadBalancerSpec) -> LoadBalancer:
        """The load balancer ``spec`` names: adopted by id, found by tags, or created; ready.

        Several found by tags (a create whose answer was lost reached the cloud after a
        restarted run had created another): ``spec.known_id`` is kept, else the oldest, and
        the others are deleted, since they carry every one of our ownership tags."""
        ...

    async def find_load_balancers(self, tags: Tags) -> list[LoadBalancer]:
        """Every load balancer carrying all of ``tags``."""
        ...

    async def delete_load_balancer(self, lb_id: str) -> None:
        """Delete it; a load balancer that no longer exists is not an error."""
        ...

    async def observe(self, lb_id: str, *, fresh: bool = False) -> LoadBalancerState:
        """The whole state of one CLB (listeners, rules, targets), possibly from a short-lived
        cache that our own writes keep up to date; ``fresh`` bypasses the cache."""
        ...

    async def apply(self, plan: Plan) -> LoadBalancerState:
        """Run ``plan`` on its CLB, one operation at a time; return the state it leaves.

        Applying a plan twice, or again after a crash part way, converges without duplicates
        or errors. Raises StalePlan when the CLB no longer has what the plan needs.
        """
        ...

    async def sync(self, desired: Sequence[DesiredLoadBalancer]) -> list[SyncResult]:
        """Observe, plan and apply each CLB with the configured strategy; one bad CLB does not
        stop the others (its error is in its result)."""
        ...

    async def target_health(self, lb_ids: Sequence[str]) -> dict[str, tuple[TargetHealth, ...]]:
        """Health of every bound target of these CLBs, by CLB id."""
        ...

    async def quotas(self) -> CloudQuotas:
        """The account's listener and target quotas: read once, refreshed rarely; the
        defaults while the cloud cannot be asked. ``sync`` plans within them too."""
        ...


__all__ = [
    "Certificate",
    "CloudLoadBalancers",
    "CloudQuotas",
    "DesiredLoadBalancer",
    "HealthCheck",
    "Listener",
    "ListenerKey",
    "ListenerProtocol",
    "LoadBalancer",
    "LoadBalancerSpec",
    "LoadBalancerState",
    "LoadBalancerType",
    "Rule",
    "RuleKey",
    "SyncResult",
    "Tags",
    "Target",
    "TargetHealth",
    "TargetKind",
]
