"""The lower bound the latency model implies for a control-plane change (pure).

For each CLB the change is described by counts (:class:`ClbChange`). The bound is the cheapest
sequence of calls the API's limits allow for it, priced with the emulator's latency model, with
each CLB's calls one after another (a CLB runs one mutation at a time) and different CLBs in
parallel, so the bound of a change is the bound of its slowest CLB. It is computed from the
counts, not from our planner's output, so it is an independent check of the planner too.

What one CLB needs, at the least:

* an existing CLB must be read once: ``DescribeListeners``, then its ``DescribeTargets`` pages
  (20 listeners each) in parallel; a new CLB needs ``CreateLoadBalancer`` instead;
* every asynchronous call costs its task time plus one ``DescribeTaskStatus`` (the one poll that
  sees it done, sent the moment it ends; the call's own answer overlaps its task). That is
  ``CreateLoadBalancer``, ``CreateListener`` (up to ``listeners_per_create`` ports of one
  protocol), ``CreateRule`` (up to ``rules_per_call`` rules of one listener);
* targets are bound with ``BatchRegisterTargets``, ``batch_targets`` (500) per call, any rules of
  the CLB, each call holding the CLB for ``batch_base + batch_per_target x targets``. (That is
  always cheaper than ``RegisterTargets``, whose task alone costs ``task_base``.) The same holds
  for unbinding with ``BatchDeregisterTargets``.

Not counted (so the bound stays a bound): finding the CLB by its tags, rate limits, and any
client-side time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from directlb.emulator.config import LatencyModel
from directlb.plan.limits import CLB_LIMITS, Limits

LISTENER_IDS_PER_DESCRIBE = 20


@dataclass(frozen=True)
class ClbChange:
    """One CLB's part of a change: what it holds before, and what is added or removed.

    ``targets_per_listener_before`` lists, per listener that exists before, how many targets it
    holds (over all its rules): that is what its ``DescribeTargets`` page returns.
    """

    name: str
    new_clb: bool
    rules_before: int = 0
    targets_per_listener_before: tuple[int, ...] = ()
    new_listeners: int = 0  # all of one protocol and settings
    new_rules_per_listener: tuple[int, ...] = ()
    register: int = 0
    deregister: int = 0

    @property
    def listeners_before(self) -> int:
        return len(self.targets_per_listener_before)


@dataclass(frozen=True)
class Bound:
    """The bound for one CLB: modeled seconds and the calls, by action."""

    name: str
    seconds: float
    calls: dict[str, int] = field(default_factory=dict)


def clb_bound(
    change: ClbChange, *, latency: LatencyModel | None = None, limits: Limits = CLB_LIMITS
) -> Bound:
    model = latency or LatencyModel()
    calls: dict[str, int] = {}
    seconds = 0.0

    def count(action: str, n: int = 1) -> None:
        if n:
            calls[action] = calls.get(action, 0) + n

    def task(action: str, n: int, touched: int = 0) -> float:
        count(action, n)
        count("DescribeTaskStatus", n)
        return n * (model.task(touched) + model.task_status)

    if change.new_clb:
        seconds += task("CreateLoadBalancer", 1)
    else:
        items = change.listeners_before + change.rules_before
        seconds += model.describe(items)
        count("DescribeListeners")
        pages = [
            sum(change.targets_per_listener_before[i : i + LISTENER_IDS_PER_DESCRIBE])
            for i in range(0, change.listeners_before, LISTENER_IDS_PER_DESCRIBE)
        ]
        if pages:
            seconds += max(model.describe(p) for p in pages)
            count("DescribeTargets", len(pages))
    seconds += task("CreateListener", math.ceil(change.new_listeners / limits.listeners_per_create))
    for rules in change.new_rules_per_listener:
        seconds += task("CreateRule", math.ceil(rules / limits.rules_per_call))
    for action, targets in (
        ("BatchDeregisterTargets", change.deregister),
        ("BatchRegisterTargets", change.register),
    ):
        n = math.ceil(targets / limits.batch_targets)
        count(action, n)
        seconds += n * model.batch_base + targets * model.batch_per_target
    return Bound(name=change.name, seconds=seconds, calls=calls)


def change_bound(
    changes: list[ClbChange], *, latency: LatencyModel | None = None, limits: Limits = CLB_LIMITS
) -> tuple[float, dict[str, int], list[Bound]]:
    """(seconds of the slowest CLB, calls by action over all CLBs, each CLB's bound)."""
    bounds = [clb_bound(c, latency=latency, limits=limits) for c in changes]
    calls: dict[str, int] = {}
    for b in bounds:
        for action, n in b.calls.items():
            calls[action] = calls.get(action, 0) + n
    return max((b.seconds for b in bounds), default=0.0), calls, bounds
