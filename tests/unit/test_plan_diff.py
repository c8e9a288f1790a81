"""The planner: a plan turns observed into desired, fits every limit, touches each target once."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from directlb.plan.diff import diff
from directlb.plan.limits import CLB_LIMITS, Batching, Limits
from directlb.plan.ops import (
    BatchDeregisterTargets,
    BatchModifyTargetWeight,
    BatchRegisterTargets,
    CreateListeners,
    CreateRules,
    DeleteListener,
    DeleteListeners,
    DeleteRules,
    DeregisterTargets,
    ModifyListener,
    ModifyRule,
    ModifyTargetWeight,
    Operation,
    Plan,
    RegisterTargets,
    TargetOperation,
    bindings_of,
)
from directlb.plan.simulate import advance
from directlb.plan.state import (
    HealthCheck,
    Listener,
    ListenerKey,
    ListenerProtocol,
    LoadBalancerState,
    Rule,
    RuleKey,
    Target,
    TargetKey,
    TargetKind,
)
from tests.unit.plan_strategies import listener_sets, observed_from

batchings = st.sampled_from(list(Batching))


def run(plan: Plan, state: LoadBalancerState) -> LoadBalancerState:
    """Apply a plan with the planner's own model of the cloud, handing out fresh ids."""
    ids = (f"new-{i}" for i in itertools.count())
    for op in plan:
        created: list[str] = []
        if isinstance(op, CreateListeners):
            created = [next(ids) for _ in op.listeners]
        elif isinstance(op, CreateRules):
            created = [next(ids) for _ in op.rules]
        state = advance(state, op, created=created)
    return state


def target_ops(plan: Plan) -> Iterator[TargetOperation]:
    for op in plan:
        if isinstance(
            op,
            RegisterTargets
            | DeregisterTargets
            | ModifyTargetWeight
            | BatchRegisterTargets
            | BatchDeregisterTargets
            | BatchModifyTargetWeight,
        ):
            yield op


def check_limits(op: Operation, limits: Limits) -> None:
    if isinstance(op, RegisterTargets | DeregisterTargets | ModifyTargetWeight):
        assert 1 <= len(op.targets) <= limits.targets_per_call
    elif isinstance(op, BatchRegisterTargets | BatchDeregisterTargets):
        assert 1 <= len(op.bindings) <= limits.batch_targets
    elif isinstance(op, BatchModifyTargetWeight):
        assert 1 <= len(op.entries) <= limits.weight_entries
        assert all(1 <= len(e.targets) <= limits.weight_targets_per_entry for e in op.entries)
        assert sum(len(e.targets) for e in op.entries) <= limits.weight_targets
    elif isinstance(op, DeleteListeners):
        assert 1 <= len(op.listeners) <= limits.listeners_per_delete
    elif isinstance(op, CreateListeners):
        assert 1 <= len(op.listeners) <= limits.listeners_per_create
        assert len({x.protocol for x in op.listeners}) == 1
    elif isinstance(op, CreateRules | DeleteRules):
        assert 1 <= len(op.rules) <= limits.rules_per_call


@settings(max_examples=80, deadline=None)
@given(desired=listener_sets, before=listener_sets, batching=batchings)
def test_a_plan_turns_observed_into_desired(
    desired: tuple[Listener, ...], before: tuple[Listener, ...], batching: Batching
) -> None:
    observed = observed_from(before)
    plan = diff(desired=desired, observed=observed, batching=batching)
    after = run(plan, observed)
    assert not diff(desired=desired, observed=after, batching=batching)
    assert sorted(x.key for x in after.listeners) == sorted(x.key for x in desired)
    for listener in desired:
        got = after.listener(listener.key)
        assert got is not None
        assert sorted(got.targets) == sorted(listener.targets)
        assert sorted(r.key for r in got.rules) == sorted(r.key for r in listener.rules)
        for rule in listener.rules:
            got_rule = got.rule(rule.key)
            assert got_rule is not None
            assert sorted(got_rule.targets) == sorted(rule.targets)


@settings(max_examples=80, deadline=None)
@given(
    desired=listener_sets,
    before=listener_sets,
    batching=batchings,
    sizes=st.tuples(*(st.integers(1, 7) for _ in range(8))),
)
def test_no_call_exceeds_a_limit(
    desired: tuple[Listener, ...],
    before: tuple[Listener, ...],
    batching: Batching,
    sizes: tuple[int, ...],
) -> None:
    # Tiny limits make every chunking boundary show up with small states.
    limits = Limits(*sizes)
    plan = diff(desired=desired, observed=observed_from(before), batching=batching, limits=limits)
    for op in plan:
        check_limits(op, limits)
    assert not diff(desired=desired, observed=run(plan, observed_from(before)), limits=limits)


@settings(max_examples=80, deadline=None)
@given(desired=listener_sets, before=listener_sets, batching=batchings)
def test_every_target_appears_in_exactly_one_call(
    desired: tuple[Listener, ...], before: tuple[Listener, ...], batching: Batching
) -> None:
    plan = diff(desired=desired, observed=observed_from(before), batching=batching)
    for kind in (
        (RegisterTargets, BatchRegisterTargets),
        (DeregisterTargets, BatchDeregisterTargets),
        (ModifyTargetWeight, BatchModifyTargetWeight),
    ):
        seen = Counter(
            (b.listener, b.rule, b.target.key)
            for op in target_ops(plan)
            if isinstance(op, kind)
            for b in bindings_of(op)
        )
        assert all(n == 1 for n in seen.values()), seen.most_common(3)
    # And every target operation carries only targets that need it.
    for op in target_ops(plan):
        assert bindings_of(op)


@settings(max_examples=50, deadline=None)
@given(desired=listener_sets, before=listener_sets)
def test_both_batchings_reach_the_same_state(
    desired: tuple[Listener, ...], before: tuple[Listener, ...]
) -> None:
    observed = observed_from(before)
    states = [
        run(diff(desired=desired, observed=observed, batching=b), observed).canonical()
        for b in Batching
    ]
    assert states[0] == states[1]


@settings(max_examples=50, deadline=None)
@given(desired=listener_sets, before=listener_sets, batching=batchings)
def test_operations_come_in_a_safe_order(
    desired: tuple[Listener, ...], before: tuple[Listener, ...], batching: Batching
) -> None:
    """Structure first (deletions, then modifications, then creations), targets after it,
    registrations before deregistrations (within the quota: see below), weights last."""
    plan = diff(desired=desired, observed=observed_from(before), batching=batching)
    phase = {
        DeleteListener: 0,
        DeleteListeners: 0,
        DeleteRules: 1,
        ModifyListener: 2,
        CreateListeners: 3,
        ModifyRule: 4,
        CreateRules: 4,
        DeregisterTargets: 5,
        BatchDeregisterTargets: 5,
        RegisterTargets: 5,
        BatchRegisterTargets: 5,
        ModifyTargetWeight: 7,
        BatchModifyTargetWeight: 7,
    }
    phases = [phase[type(op)] for op in plan]
    assert phases == sorted(phases)
    # Target calls come in at most three runs: deregister (to make room), register, deregister.
    kinds = [
        "register" if isinstance(op, RegisterTargets | BatchRegisterTargets) else "deregister"
        for op in plan
        if isinstance(
            op, RegisterTargets | BatchRegisterTargets | DeregisterTargets | BatchDeregisterTargets
        )
    ]
    runs = [k for i, k in enumerate(kinds) if i == 0 or kinds[i - 1] != k]
    # These states stay far below the default quota of 100: nothing is deregistered first.
    assert " ".join(runs) in ("", "deregister", "register", "register deregister")


Group = tuple[ListenerKey, RuleKey | None]


def groups_of(state: LoadBalancerState) -> dict[Group, set[TargetKey]]:
    """The target keys bound to each listener (layer 4) or rule (layer 7) of ``state``."""
    found: dict[Group, set[TargetKey]] = {}
    for listener in state.listeners:
        if listener.protocol.layer7:
            for rule in listener.rules:
                found[(listener.key, rule.key)] = {t.key for t in rule.targets}
        else:
            found[(listener.key, None)] = {t.key for t in listener.targets}
    return found


def steps(plan: Plan, state: LoadBalancerState) -> Iterator[LoadBalancerState]:
    """Every intermediate state of ``plan`` run from ``state``, the last included."""
    ids = (f"new-{i}" for i in itertools.count())
    for op in plan:
        created: list[str] = []
        if isinstance(op, CreateListeners):
            created = [next(ids) for _ in op.listeners]
        elif isinstance(op, CreateRules):
            created = [next(ids) for _ in op.rules]
        state = advance(state, op, created=created)
        yield state


@settings(max_examples=120, deadline=None)
@given(
    desired=listener_sets,
    before=listener_sets,
    batching=batchings,
    quota=st.integers(1, 30),
    call_size=st.integers(1, 7),
)
def test_registrations_come_first_within_the_target_quota(
    desired: tuple[Listener, ...],
    before: tuple[Listener, ...],
    batching: Batching,
    quota: int,
    call_size: int,
) -> None:
    """No group ever holds more than the quota allows, and a group whose old and new targets
    fit the quota together never drops below what it had or what it wants: a swap of every
    backend never passes through zero."""
    observed = observed_from(before)
    limits = Limits(targets_per_call=call_size, batch_targets=call_size)
    plan = diff(
        desired=desired, observed=observed, batching=batching, limits=limits, target_quota=quota
    )
    start = groups_of(observed)
    want = groups_of(observed_from(desired))
    for state in steps(plan, observed):
        for group, bound in groups_of(state).items():
            if group not in want:
                continue  # a listener or rule on its way out
            old, new = start.get(group, set()), want[group]
            assert len(bound) <= max(quota, len(old), len(new)), (group, len(bound))
            assert old & new <= bound  # a target wanted and bound is never taken away
            if len(old | new) <= quota:
                assert len(bound) >= min(len(old), len(new)), (group, bound, old, new)
    after = groups_of(run(plan, observed))
    assert {g: t for g, t in after.items() if g in want} == want


def tcp(*targets: Target) -> Listener:
    return Listener(protocol="TCP", port=80, targets=targets)


def eni(i: int) -> Target:
    return Target(f"127.17.0.{i}", 80)


def node_target(i: int) -> Target:
    return Target(f"127.20.0.{i}", 30080, kind=TargetKind.NODE, instance_id=f"ins-{i}")


def test_a_mode_toggle_registers_the_new_set_before_deregistering_the_old() -> None:
    """Direct -> NodePort: three pods out, three nodes in, never zero in between."""
    observed = observed_from((tcp(eni(1), eni(2), eni(3)),))
    plan = diff(desired=(tcp(node_target(1), node_target(2), node_target(3)),), observed=observed)
    assert [type(op) for op in plan] == [BatchRegisterTargets, BatchDeregisterTargets]
    single = diff(
        desired=(tcp(node_target(1), node_target(2)),),
        observed=observed,
        batching=Batching.SINGLE,
    )
    assert [type(op) for op in single] == [RegisterTargets, DeregisterTargets]


def test_at_the_quota_only_the_excess_is_deregistered_first() -> None:
    """Quota 4, three bound, three new: one old target goes first, the other two after."""
    observed = observed_from((tcp(eni(1), eni(2), eni(3)),))
    plan = diff(
        desired=(tcp(eni(4), eni(5), eni(6)),),
        observed=observed,
        batching=Batching.SINGLE,
        target_quota=4,
    )
    assert [(type(op), op.targets) for op in plan if not isinstance(op, ModifyTargetWeight)] == [
        (DeregisterTargets, (eni(1), eni(2))),
        (RegisterTargets, (eni(4), eni(5), eni(6))),
        (DeregisterTargets, (eni(3),)),
    ]


def test_a_full_listener_still_takes_a_rolling_update() -> None:
    """Quota 3 and full: replacing one pod deregisters it first (the quota leaves no room)."""
    observed = observed_from((tcp(eni(1), eni(2), eni(3)),))
    plan = diff(
        desired=(tcp(eni(2), eni(3), eni(4)),),
        observed=observed,
        batching=Batching.SINGLE,
        target_quota=3,
    )
    assert [(type(op), op.targets) for op in plan] == [
        (DeregisterTargets, (eni(1),)),
        (RegisterTargets, (eni(4),)),
    ]


def test_a_target_quota_below_one_is_refused() -> None:
    with pytest.raises(ValueError):
        diff(desired=(), observed=LoadBalancerState("lb"), target_quota=0)


@settings(max_examples=50, deadline=None)
@given(desired=listener_sets, before=listener_sets, batching=batchings)
def test_replaying_a_plan_changes_nothing_more(
    desired: tuple[Listener, ...], before: tuple[Listener, ...], batching: Batching
) -> None:
    """What the adapter relies on: every operation is idempotent on the state it leaves."""
    observed = observed_from(before)
    plan = diff(desired=desired, observed=observed, batching=batching)
    once = run(plan, observed)
    assert run(plan, once).canonical() == once.canonical()


def test_an_empty_diff_is_an_empty_plan() -> None:
    desired = (Listener(protocol="TCP", port=80, targets=(Target("127.17.0.1", 80),)),)
    plan = diff(desired=desired, observed=observed_from(desired))
    assert not plan and len(plan) == 0 and plan.summary() == {}


def test_scope_limits_what_may_be_deleted() -> None:
    mine = Listener(protocol="TCP", port=80)
    theirs = Listener(protocol="TCP", port=81)
    observed = observed_from((mine, theirs))
    assert not diff(desired=(mine,), observed=observed, scope={mine.key})
    plan = diff(desired=(mine,), observed=observed)
    assert plan.operations == (DeleteListeners((theirs.key,)),)


def test_a_port_changing_protocol_is_deleted_then_created() -> None:
    observed = observed_from((Listener(protocol="HTTP", port=80),))
    plan = diff(desired=(Listener(protocol="TCP", port=80),), observed=observed)
    assert [type(op) for op in plan] == [DeleteListeners, CreateListeners]


def test_single_batching_makes_one_call_per_rule_and_chunks_of_20() -> None:
    targets = tuple(Target(f"127.17.0.{i}", 80) for i in range(1, 46))
    rules = tuple(Rule("a.com", f"/{i}", targets=targets) for i in range(3))
    desired = (Listener(protocol="HTTP", port=80, rules=rules),)
    single = diff(
        desired=desired, observed=LoadBalancerState("lb"), batching=Batching.SINGLE
    ).summary()
    assert single == {"CreateListener": 1, "CreateRule": 3, "RegisterTargets": 9}
    batch = diff(desired=desired, observed=LoadBalancerState("lb")).summary()
    assert batch == {"CreateListener": 1, "CreateRule": 1, "BatchRegisterTargets": 1}


def test_listeners_of_equal_settings_share_a_create_call() -> None:
    desired = (
        *(Listener(protocol="TCP", port=p) for p in range(1000, 1025)),
        Listener(protocol="TCP", port=2000, health_check=HealthCheck(interval=9)),
        Listener(protocol="UDP", port=1000),
    )
    plan = diff(desired=desired, observed=LoadBalancerState("lb"))
    sizes = [len(op.listeners) for op in plan if isinstance(op, CreateListeners)]
    assert sorted(sizes) == [1, 1, 5, 20]


def test_weight_batches_respect_entries_and_totals() -> None:
    targets = tuple(Target(f"127.17.{i // 250}.{i % 250 + 1}", 80, weight=10) for i in range(160))
    rules = tuple(Rule("a.com", f"/{i}", targets=targets) for i in range(5))
    before = observed_from((Listener(protocol="HTTP", port=80, rules=rules),))
    heavier = tuple(
        Rule("a.com", f"/{i}", targets=tuple(Target(t.ip, 80, weight=50) for t in targets))
        for i in range(5)
    )
    plan = diff(desired=(Listener(protocol="HTTP", port=80, rules=heavier),), observed=before)
    assert all(isinstance(op, BatchModifyTargetWeight) for op in plan)
    for op in plan:
        check_limits(op, CLB_LIMITS)
    assert sum(len(bindings_of(op)) for op in target_ops(plan)) == 800
    assert len(plan) == 2


def test_health_check_fields_left_unset_are_not_compared() -> None:
    observed = observed_from((Listener(protocol="TCP", port=80, health_check=None),))
    same = (Listener(protocol="TCP", port=80, health_check=HealthCheck(interval=5)),)
    assert not diff(desired=same, observed=observed)
    other = (Listener(protocol="TCP", port=80, health_check=HealthCheck(interval=7)),)
    (op,) = diff(desired=other, observed=observed)
    assert isinstance(op, ModifyListener)
    after = advance(observed, op)
    got = after.listener(ListenerKey(ListenerProtocol.TCP, 80))
    assert got is not None and got.health_check is not None
    assert got.health_check.interval == 7 and got.health_check.timeout == 2


@pytest.mark.parametrize(
    "desired",
    [
        (Listener(protocol="TCP", port=80), Listener(protocol="HTTP", port=80)),
        (Listener(protocol="HTTP", port=80, rules=(Rule("a.com", "/"), Rule("A.com", "/"))),),
        (
            Listener(
                protocol="TCP",
                port=80,
                targets=(Target("127.17.0.1", 80), Target("127.17.0.1", 80, weight=5)),
            ),
        ),
        (
            Listener(
                protocol="HTTP",
                port=80,
                rules=(Rule("a.com", "/", targets=(Target("127.17.0.1", 80),) * 2),),
            ),
        ),
    ],
    ids=["two listeners on one port", "one rule twice", "one target twice", "twice in a rule"],
)
def test_a_desired_state_that_contradicts_itself_is_refused(
    desired: tuple[Listener, ...],
) -> None:
    with pytest.raises(ValueError):
        diff(desired=desired, observed=LoadBalancerState("lb"))
