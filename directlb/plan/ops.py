"""Plan operations: one value per cloud API call, in the order they must run.

Each operation names what it touches by key (listener ``protocol:port``, rule ``domain+url``),
not by cloud id: things created earlier in the same plan have no id yet when the plan is made,
and a plan replayed after a crash must find what the first run already did. The adapter
resolves keys to ids just before each call, skips what is already done, and so makes every
operation idempotent.

``action`` is the CLB API action an operation becomes; the limits it must fit are in
:mod:`directlb.plan.limits`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

from directlb.plan.state import Certificate, Listener, ListenerKey, Rule, RuleKey, Target


@dataclass(frozen=True)
class Binding:
    """A target on a listener (layer 4, ``rule`` None) or on one of its rules (layer 7)."""

    listener: ListenerKey
    rule: RuleKey | None
    target: Target


@dataclass(frozen=True)
class DeleteListener:
    action: ClassVar[str] = "DeleteListener"
    listener: ListenerKey


@dataclass(frozen=True)
class DeleteListeners:
    action: ClassVar[str] = "DeleteLoadBalancerListeners"
    listeners: tuple[ListenerKey, ...]


@dataclass(frozen=True)
class CreateListeners:
    """Listeners of one protocol and identical settings, created by one call (one per port)."""

    action: ClassVar[str] = "CreateListener"
    listeners: tuple[Listener, ...]


@dataclass(frozen=True)
class ModifyListener:
    action: ClassVar[str] = "ModifyListener"
    listener: Listener


@dataclass(frozen=True)
class DeleteRules:
    action: ClassVar[str] = "DeleteRule"
    listener: ListenerKey
    rules: tuple[RuleKey, ...]


@dataclass(frozen=True)
class CreateRules:
    action: ClassVar[str] = "CreateRule"
    listener: ListenerKey
    rules: tuple[Rule, ...]  # without targets: those are bound by later operations


@dataclass(frozen=True)
class ModifyRule:
    action: ClassVar[str] = "ModifyRule"
    listener: ListenerKey
    rule: Rule


@dataclass(frozen=True)
class ModifyDomain:
    """Set the domain-level attributes of ``domain`` on a layer-7 listener (all its rules).

    ``certificate`` (SNI listeners only): the certificate presented for the domain;
    ``default_server``: make it the listener's default domain (True only: a listener always
    has one, so "not default" happens by making another domain the default). None/False:
    leave that attribute as it is.
    """

    action: ClassVar[str] = "ModifyDomainAttributes"
    listener: ListenerKey
    domain: str
    certificate: Certificate | None = None
    default_server: bool = False


@dataclass(frozen=True)
class RegisterTargets:
    action: ClassVar[str] = "RegisterTargets"
    listener: ListenerKey
    rule: RuleKey | None
    targets: tuple[Target, ...]


@dataclass(frozen=True)
class DeregisterTargets:
    action: ClassVar[str] = "DeregisterTargets"
    listener: ListenerKey
    rule: RuleKey | None
    targets: tuple[Target, ...]


@dataclass(frozen=True)
class ModifyTargetWeight:
    """Set each target's own weight (targets already bound)."""

    action: ClassVar[str] = "ModifyTargetWeight"
    listener: ListenerKey
    rule: RuleKey | None
    targets: tuple[Target, ...]


@dataclass(frozen=True)
class BatchRegisterTargets:
    """Targets of any listeners and rules of one CLB, in one synchronous call."""

    action: ClassVar[str] = "BatchRegisterTargets"
    bindings: tuple[Binding, ...]


@dataclass(frozen=True)
class BatchDeregisterTargets:
    action: ClassVar[str] = "BatchDeregisterTargets"
    bindings: tuple[Binding, ...]


@dataclass(frozen=True)
class WeightEntry:
    """One ``ModifyList`` entry of BatchModifyTargetWeight: targets of one listener or rule."""

    listener: ListenerKey
    rule: RuleKey | None
    targets: tuple[Target, ...]


@dataclass(frozen=True)
class BatchModifyTargetWeight:
    action: ClassVar[str] = "BatchModifyTargetWeight"
    entries: tuple[WeightEntry, ...]


Operation = (
    DeleteListener
    | DeleteListeners
    | CreateListeners
    | ModifyListener
    | DeleteRules
    | CreateRules
    | ModifyRule
    | ModifyDomain
    | RegisterTargets
    | DeregisterTargets
    | ModifyTargetWeight
    | BatchRegisterTargets
    | BatchDeregisterTargets
    | BatchModifyTargetWeight
)

TargetOperation = (
    RegisterTargets
    | DeregisterTargets
    | ModifyTargetWeight
    | BatchRegisterTargets
    | BatchDeregisterTargets
    | BatchModifyTargetWeight
)


def bindings_of(op: TargetOperation) -> tuple[Binding, ...]:
    """The (listener, rule, target) triples a target operation carries."""
    if isinstance(op, BatchRegisterTargets | BatchDeregisterTargets):
        return op.bindings
    if isinstance(op, BatchModifyTargetWeight):
        return tuple(Binding(e.listener, e.rule, t) for e in op.entries for t in e.targets)
    return tuple(Binding(op.listener, op.rule, t) for t in op.targets)


@dataclass(frozen=True)
class Plan:
    """Operations for one CLB, to run one after another (a CLB takes one mutation at a time)."""

    lb_id: str
    operations: tuple[Operation, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.operations)

    def __len__(self) -> int:
        return len(self.operations)

    def __iter__(self) -> Iterator[Operation]:
        return iter(self.operations)

    def summary(self) -> dict[str, int]:
        """How many calls of each action the plan makes (before any retry)."""
        counts: dict[str, int] = {}
        for op in self.operations:
            counts[op.action] = counts.get(op.action, 0) + 1
        return counts
