"""What a CLB looks like after an operation succeeds: ``advance(state, op)``.

The adapter uses it to keep its short-lived cache of observed state up to date with its own
writes (instead of describing the CLB again), and the property tests use it to check that a
plan really turns the observed state into the desired one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace

from directlb.plan.batching import group_bindings
from directlb.plan.ops import (
    BatchDeregisterTargets,
    BatchModifyTargetWeight,
    BatchRegisterTargets,
    Binding,
    CreateListeners,
    CreateRules,
    DeleteListener,
    DeleteListeners,
    DeleteRules,
    DeregisterTargets,
    ModifyDomain,
    ModifyListener,
    ModifyRule,
    ModifyTargetWeight,
    Operation,
    RegisterTargets,
    bindings_of,
)
from directlb.plan.state import (
    Listener,
    ListenerKey,
    LoadBalancerState,
    Rule,
    RuleKey,
    Target,
)


def advance(
    state: LoadBalancerState, op: Operation, *, created: Sequence[str] = ()
) -> LoadBalancerState:
    """``state`` after ``op`` succeeded; ``created`` are the ids the cloud gave new things.

    Creating a listener or rule that already exists is a no-op here, as the adapter skips it.
    """
    if isinstance(op, DeleteListener | DeleteListeners):
        gone = {op.listener} if isinstance(op, DeleteListener) else set(op.listeners)
        return replace(state, listeners=tuple(x for x in state.listeners if x.key not in gone))
    if isinstance(op, CreateListeners):
        return _create_listeners(state, listeners=op.listeners, created=created)
    if isinstance(op, ModifyListener):
        return _map_listener(
            state, key=op.listener.key, change=lambda x: _modified_listener(x, op.listener)
        )
    if isinstance(op, DeleteRules):
        gone_rules = set(op.rules)
        return _map_listener(
            state,
            key=op.listener,
            change=lambda x: replace(x, rules=tuple(r for r in x.rules if r.key not in gone_rules)),
        )
    if isinstance(op, CreateRules):
        return _map_listener(
            state,
            key=op.listener,
            change=lambda x: _created_rules(x, rules=op.rules, created=created),
        )
    if isinstance(op, ModifyRule):
        return _map_rule(
            state,
            listener=op.listener,
            rule=op.rule.key,
            change=lambda r: _modified_rule(r, op.rule),
        )
    if isinstance(op, ModifyDomain):
        return _map_listener(state, key=op.listener, change=lambda x: _modified_domain(x, op))
    return _advance_targets(state, op)


def _modified_domain(current: Listener, op: ModifyDomain) -> Listener:
    domain = op.domain.lower()
    rules = []
    for rule in current.rules:
        if op.certificate is not None and rule.domain == domain:
            rule = replace(rule, certificate=op.certificate)
        if op.default_server:
            rule = replace(rule, default_server=rule.domain == domain)
        rules.append(rule)
    return replace(current, rules=tuple(rules))


def _advance_targets(
    state: LoadBalancerState,
    op: RegisterTargets
    | DeregisterTargets
    | ModifyTargetWeight
    | BatchRegisterTargets
    | BatchDeregisterTargets
    | BatchModifyTargetWeight,
) -> LoadBalancerState:
    change: _Change
    if isinstance(op, RegisterTargets | BatchRegisterTargets):
        change = _bind
    elif isinstance(op, DeregisterTargets | BatchDeregisterTargets):
        change = _unbind
    else:
        change = _reweigh
    return _apply(state, bindings=bindings_of(op), change=change)


def apply_bindings(
    state: LoadBalancerState, bindings: Iterable[Binding], *, register: bool
) -> LoadBalancerState:
    """``state`` after (de)registering ``bindings`` (the part of a batch call that succeeded)."""
    return _apply(state, bindings=bindings, change=_bind if register else _unbind)


_Change = Callable[[tuple[Target, ...], list[Target]], tuple[Target, ...]]


def _apply(
    state: LoadBalancerState, *, bindings: Iterable[Binding], change: _Change
) -> LoadBalancerState:
    for (listener, rule), targets in group_bindings(bindings).items():
        state = _map_group(state, listener=listener, rule=rule, change=_partial(change, targets))
    return state


def _partial(
    change: _Change, targets: list[Target]
) -> Callable[[tuple[Target, ...]], tuple[Target, ...]]:
    def apply(bound: tuple[Target, ...]) -> tuple[Target, ...]:
        return change(bound, targets)

    return apply


def _bind(bound: tuple[Target, ...], targets: list[Target]) -> tuple[Target, ...]:
    merged = {t.key: t for t in bound}
    merged.update((t.key, t) for t in targets)
    return tuple(merged.values())


def _unbind(bound: tuple[Target, ...], targets: list[Target]) -> tuple[Target, ...]:
    gone = {t.key for t in targets}
    return tuple(t for t in bound if t.key not in gone)


def _reweigh(bound: tuple[Target, ...], targets: list[Target]) -> tuple[Target, ...]:
    weights = {t.key: t.weight for t in targets}
    return tuple(replace(t, weight=weights.get(t.key, t.weight)) for t in bound)


def _create_listeners(
    state: LoadBalancerState, *, listeners: Sequence[Listener], created: Sequence[str]
) -> LoadBalancerState:
    existing = {x.key for x in state.listeners}
    ids = iter(created)
    added = [
        replace(x, rules=(), targets=(), listener_id=next(ids, ""))
        for x in listeners
        if x.key not in existing
    ]
    return replace(state, listeners=state.listeners + tuple(added))


def _modified_listener(current: Listener, wanted: Listener) -> Listener:
    health = current.health_check
    if wanted.health_check is not None:
        health = wanted.health_check.merged_onto(current.health_check)
    return replace(
        current,
        name=wanted.name or current.name,
        health_check=health,
        scheduler=wanted.scheduler,
        session_expire=wanted.session_expire,
        certificate=wanted.certificate or current.certificate,
        sni=wanted.sni or current.sni,  # SNI can be switched on, never off
    )


def _created_rules(current: Listener, *, rules: Sequence[Rule], created: Sequence[str]) -> Listener:
    existing = {r.key for r in current.rules}
    ids = iter(created)
    added = [
        replace(r, targets=(), location_id=next(ids, "")) for r in rules if r.key not in existing
    ]
    kept = current.rules
    default = next((r.domain for r in added if r.default_server), None)
    if default is not None:
        # A new default domain takes over: a listener has one.
        kept = tuple(replace(r, default_server=r.domain == default) for r in kept)
    return replace(current, rules=kept + tuple(added))


def _modified_rule(current: Rule, wanted: Rule) -> Rule:
    health = current.health_check
    if wanted.health_check is not None:
        health = wanted.health_check.merged_onto(current.health_check)
    return replace(
        current,
        health_check=health,
        scheduler=wanted.scheduler,
        session_expire=wanted.session_expire,
    )


def _map_listener(
    state: LoadBalancerState, *, key: ListenerKey, change: Callable[[Listener], Listener]
) -> LoadBalancerState:
    return replace(
        state,
        listeners=tuple(change(x) if x.key == key else x for x in state.listeners),
    )


def _map_rule(
    state: LoadBalancerState,
    *,
    listener: ListenerKey,
    rule: RuleKey,
    change: Callable[[Rule], Rule],
) -> LoadBalancerState:
    return _map_listener(
        state,
        key=listener,
        change=lambda x: replace(
            x, rules=tuple(change(r) if r.key == rule else r for r in x.rules)
        ),
    )


def _map_group(
    state: LoadBalancerState,
    *,
    listener: ListenerKey,
    rule: RuleKey | None,
    change: Callable[[tuple[Target, ...]], tuple[Target, ...]],
) -> LoadBalancerState:
    if rule is None:
        return _map_listener(
            state, key=listener, change=lambda x: replace(x, targets=change(x.targets))
        )
    return _map_rule(
        state,
        listener=listener,
        rule=rule,
        change=lambda r: replace(r, targets=change(r.targets)),
    )
