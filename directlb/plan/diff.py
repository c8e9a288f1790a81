"""The diff: desired listeners against an observed CLB, as an ordered, batched plan.

Order matters and is fixed:

1. delete listeners nobody wants any more (frees ports and the listener quota);
2. delete unwanted rules of kept listeners (frees the rule quota);
3. modify kept listeners whose settings drifted;
4. create new listeners;
5. modify kept rules whose settings drifted, and the certificates of kept domains (SNI);
6. create new rules, then switch the listener's default domain if it is not the one wanted;
7. deregister the unwanted targets that must go *first* to make room (see below);
8. register new targets;
9. deregister the other unwanted targets;
10. change the weights of targets that stay.

Registration comes before deregistration, so that a swap of a whole backend set (a Service
toggled between direct and node backends, a rolling update that replaces every pod) never
leaves a listener or rule with zero targets in between. The one limit in the way is the
target quota per listener or rule (``target_quota``, 100 by default): where the bound targets
plus the new ones would exceed it, just enough of the unwanted targets (in key order) are
deregistered in step 7 to make the registration fit; everything else that goes, goes in step 9.
A group whose union fits the quota is never deregistered before it registers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from directlb.plan.batching import chunks, group, group_bindings, weight_calls
from directlb.plan.limits import CLB_LIMITS, Batching, Limits
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
    Plan,
    RegisterTargets,
)
from directlb.plan.state import (
    Listener,
    ListenerKey,
    LoadBalancerState,
    Rule,
    RuleKey,
    Target,
    TargetKey,
)

#: Tencent's default quota of targets bound to one listener (layer 4) or rule (layer 7)
#: (``TOTAL_TARGET_BIND_QUOTA``); an account may have it raised.
DEFAULT_TARGET_QUOTA = 100


def diff(
    *,
    desired: Sequence[Listener],
    observed: LoadBalancerState,
    scope: Iterable[ListenerKey] | None = None,
    batching: Batching = Batching.BATCH,
    limits: Limits = CLB_LIMITS,
    target_quota: int = DEFAULT_TARGET_QUOTA,
) -> Plan:
    """The operations that turn ``observed`` into ``desired``, fitted to ``limits``.

    ``target_quota`` is the cloud's limit of targets bound to one listener (layer 4) or rule
    (layer 7): registrations run before deregistrations wherever the union fits it.

    Listeners in ``desired`` are managed whole (their settings, rules and targets). An observed
    listener that is not desired is deleted only if it is in ``scope``; ``scope=None`` means
    the whole CLB is ours. Raises ValueError if ``desired`` contradicts itself (two listeners on
    one port, two rules with one domain and URL, one target twice in a group).
    """
    want = index_desired(desired)
    have = {listener.key: listener for listener in observed.listeners}
    # Tencent switches SNI on but never off: such a listener is deleted and created afresh.
    rebuilt = [k for k in sorted(want.keys() & have.keys()) if have[k].sni and not want[k].sni]
    for key in rebuilt:
        del have[key]
    deletable = None if scope is None else set(scope)
    doomed = sorted(k for k in have if k not in want and (deletable is None or k in deletable))
    doomed = sorted([*doomed, *rebuilt])
    kept = sorted(want.keys() & have.keys())
    new = [want[k] for k in sorted(want) if k not in have]
    ops: list[Operation] = []
    ops += _delete_listeners(doomed, batching=batching, limits=limits)
    for key in kept:
        ops += _delete_rules(want[key], have[key], batching=batching, limits=limits)
    ops += [ModifyListener(want[k]) for k in kept if not want[k].settings_match(have[k])]
    ops += _create_listeners(new, batching=batching, limits=limits)
    for key in sorted(want):
        ops += _rule_changes(want[key], have.get(key), batching=batching, limits=limits)
    if target_quota < 1:
        raise ValueError(f"target_quota must be at least 1, not {target_quota}")
    early, adds, late, reweighs = _target_changes(want, have, quota=target_quota)
    ops += _target_ops(early, kind="deregister", batching=batching, limits=limits)
    ops += _target_ops(adds, kind="register", batching=batching, limits=limits)
    ops += _target_ops(late, kind="deregister", batching=batching, limits=limits)
    ops += _target_ops(reweighs, kind="weight", batching=batching, limits=limits)
    return Plan(lb_id=observed.lb_id, operations=tuple(ops))


def index_desired(desired: Sequence[Listener]) -> dict[ListenerKey, Listener]:
    """Desired listeners by key, after checking they can all exist on one CLB together."""
    want: dict[ListenerKey, Listener] = {}
    ports: dict[tuple[str, int], ListenerKey] = {}
    for listener in desired:
        key = listener.key
        slot = (listener.protocol.port_family, listener.port)
        if slot in ports:
            raise ValueError(f"listeners {ports[slot]} and {key} cannot share port {key.port}")
        ports[slot] = key
        want[key] = listener
        seen: set[RuleKey] = set()
        domains: dict[str, tuple[object, bool]] = {}
        for rule in listener.rules:
            if rule.key in seen:
                raise ValueError(f"{key}: rule {rule.key} appears twice")
            seen.add(rule.key)
            attributes = (rule.certificate, rule.default_server)
            if domains.setdefault(rule.domain, attributes) != attributes:
                raise ValueError(f"{key}: rules of {rule.domain} differ in certificate or default")
            _targets_by_key(rule.targets, where=f"{key} {rule.key}")
        if sum(default for _, default in domains.values()) > 1:
            raise ValueError(f"{key}: more than one default domain")
        _targets_by_key(listener.targets, where=str(key))
    return want


def _targets_by_key(targets: Iterable[Target], *, where: str) -> dict[TargetKey, Target]:
    out: dict[TargetKey, Target] = {}
    for target in targets:
        if target.key in out:
            raise ValueError(f"{where}: target {target} appears twice")
        out[target.key] = target
    return out


def _delete_listeners(
    keys: list[ListenerKey], *, batching: Batching, limits: Limits
) -> list[Operation]:
    if batching is Batching.SINGLE:
        return [DeleteListener(k) for k in keys]
    return [DeleteListeners(part) for part in chunks(keys, limits.listeners_per_delete)]


def _delete_rules(
    want: Listener, have: Listener, *, batching: Batching, limits: Limits
) -> list[Operation]:
    gone = sorted(r.key for r in have.rules if want.rule(r.key) is None)
    size = 1 if batching is Batching.SINGLE else limits.rules_per_call
    return [DeleteRules(want.key, part) for part in chunks(gone, size)]


def _create_listeners(
    new: list[Listener], *, batching: Batching, limits: Limits
) -> list[Operation]:
    bare = [replace(listener, rules=(), targets=(), listener_id="") for listener in new]
    if batching is Batching.SINGLE:
        return [CreateListeners((listener,)) for listener in bare]
    ops: list[Operation] = []
    for same in group(bare, _creation_settings).values():
        ops += [CreateListeners(part) for part in chunks(same, limits.listeners_per_create)]
    return ops


def _creation_settings(listener: Listener) -> tuple[object, ...]:
    """Listeners equal in these can be created by one CreateListener call (one per port)."""
    return (
        listener.protocol,
        listener.health_check,
        listener.scheduler,
        listener.session_expire,
        listener.certificate,
        listener.sni,
        bool(listener.name),
    )


def _rule_changes(
    want: Listener, have: Listener | None, *, batching: Batching, limits: Limits
) -> list[Operation]:
    if not want.protocol.layer7:
        return []
    ops: list[Operation] = []
    new: list[Rule] = []
    for rule in sorted(want.rules, key=lambda r: r.key):
        current = have.rule(rule.key) if have is not None else None
        if current is None:
            new.append(replace(rule, targets=(), location_id=""))
        elif not rule.settings_match(current):
            ops.append(ModifyRule(want.key, replace(rule, targets=(), location_id="")))
    size = 1 if batching is Batching.SINGLE else limits.rules_per_call
    certificates, default = _domain_changes(want, have)
    ops += certificates
    ops += [CreateRules(want.key, part) for part in chunks(new, size)]
    ops += default
    return ops


def _domain_changes(
    want: Listener, have: Listener | None
) -> tuple[list[Operation], list[Operation]]:
    """ModifyDomainAttributes for domains that already have rules and stay: new certificates
    (SNI), to run before rules are created on them (those carry the new one); then the
    default domain. A domain that is new gets both from CreateRule instead."""
    if have is None:
        return [], []
    staying = {r.domain for r in have.rules if want.rule(r.key) is not None}
    certificates: list[Operation] = []
    if want.sni:
        for domain in sorted(staying):
            wanted = want.domain_certificate(domain)
            if wanted is not None and wanted != have.domain_certificate(domain):
                certificates.append(ModifyDomain(want.key, domain, certificate=wanted))
    default = want.default_domain
    if default is None or default not in staying or default == have.default_domain:
        return certificates, []
    return certificates, [ModifyDomain(want.key, default, default_server=True)]


def _groups(listener: Listener | None) -> dict[RuleKey | None, tuple[Target, ...]]:
    """Target groups of a listener: one for layer 4 (rule None), one per rule for layer 7."""
    if listener is None:
        return {}
    if listener.protocol.layer7:
        return {rule.key: rule.targets for rule in listener.rules}
    return {None: listener.targets}


def _target_changes(
    want: dict[ListenerKey, Listener], have: dict[ListenerKey, Listener], *, quota: int
) -> tuple[list[Binding], list[Binding], list[Binding], list[Binding]]:
    """Bindings to remove before registering, to add, to remove after, and to re-weigh.

    Per group, the removals that must precede the registrations are the fewest that keep the
    group within ``quota`` while it registers: ``bound + added - quota`` of them (all of them
    if even that is not enough; the registration then fails on the cloud's quota, as it must).
    """
    early: list[Binding] = []
    adds: list[Binding] = []
    late: list[Binding] = []
    reweighs: list[Binding] = []
    for key in sorted(want):
        observed_groups = _groups(have.get(key))
        for rule, targets in sorted(_groups(want[key]).items(), key=_group_order):
            wanted = {t.key: t for t in targets}
            bound = {t.key: t for t in observed_groups.get(rule, ())}
            removes = [Binding(key, rule, t) for k, t in sorted(bound.items()) if k not in wanted]
            added = 0
            for k, target in sorted(wanted.items()):
                current = bound.get(k)
                if current is None:
                    adds.append(Binding(key, rule, target))
                    added += 1
                elif current.weight != target.weight:
                    reweighs.append(Binding(key, rule, target))
            first = max(0, len(bound) + added - quota) if added else 0
            early += removes[:first]
            late += removes[first:]
    return early, adds, late, reweighs


def _group_order(item: tuple[RuleKey | None, object]) -> tuple[str, str]:
    rule = item[0]
    return ("", "") if rule is None else (rule.domain, rule.url)


def _target_ops(
    bindings: list[Binding], *, kind: str, batching: Batching, limits: Limits
) -> list[Operation]:
    if not bindings:
        return []
    if batching is Batching.BATCH:
        if kind == "weight":
            return [
                BatchModifyTargetWeight(entries)
                for entries in weight_calls(bindings, limits=limits)
            ]
        batch_type = BatchRegisterTargets if kind == "register" else BatchDeregisterTargets
        return [batch_type(part) for part in chunks(bindings, limits.batch_targets)]
    single_type: type[RegisterTargets | DeregisterTargets | ModifyTargetWeight]
    if kind == "register":
        single_type = RegisterTargets
    elif kind == "deregister":
        single_type = DeregisterTargets
    else:
        single_type = ModifyTargetWeight
    ops: list[Operation] = []
    for (listener, rule), targets in group_bindings(bindings).items():
        for part in chunks(targets, limits.targets_per_call):
            ops.append(single_type(listener, rule, part))
    return ops
