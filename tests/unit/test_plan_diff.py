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
    Target,
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
        RegisterTargets: 6,
        BatchRegisterTargets: 6,
        ModifyTargetWeight: 7,
        BatchModifyTargetWeight: 7,
    }
    phases = [phase[type(op)] for op in plan]
    assert phases == sorted(phases)


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
    ],
    ids=["two listeners on one port", "one rule twice", "one target twice"],
)
def test_a_desired_state_that_contradicts_itself_is_refused(
    desired: tuple[Listener, ...],
) -> None:
    with pytest.raises(ValueError):
        diff(desired=desired, observed=LoadBalancerState("lb"))
