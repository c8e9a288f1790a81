"""Packing work into calls: nothing lost, nothing twice, no call over its limit."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from directlb.plan.batching import chunks, group, weight_calls
from directlb.plan.limits import Limits
from directlb.plan.ops import Binding
from directlb.plan.state import ListenerKey, ListenerProtocol, RuleKey, Target

listener_keys = st.builds(
    ListenerKey, st.just(ListenerProtocol.HTTP), st.sampled_from([80, 81, 82])
)
rule_keys = st.one_of(st.none(), st.builds(RuleKey, st.just("a.com"), st.sampled_from("/abcd")))
bindings = st.lists(
    st.builds(
        Binding,
        listener_keys,
        rule_keys,
        st.builds(Target, st.sampled_from([f"127.17.1.{i}" for i in range(1, 251)]), st.just(80)),
    ),
    max_size=600,
    unique_by=lambda b: (b.listener, b.rule, b.target.key),
)


@given(items=st.lists(st.integers(), max_size=200), size=st.integers(1, 30))
def test_chunks_keep_every_item_once_in_order(items: list[int], size: int) -> None:
    parts = chunks(items, size)
    assert [x for part in parts for x in part] == items
    assert all(1 <= len(part) <= size for part in parts)
    assert len(parts) == -(-len(items) // size)


@given(items=st.lists(st.integers(0, 9), max_size=100))
def test_group_keeps_first_appearance_order(items: list[int]) -> None:
    groups = group(items, lambda x: x % 3)
    assert list(groups) == list(dict.fromkeys(x % 3 for x in items))
    assert sorted(x for xs in groups.values() for x in xs) == sorted(items)


@settings(max_examples=100, deadline=None)
@given(
    work=bindings,
    entries=st.integers(1, 120),
    per_entry=st.integers(1, 60),
    total=st.integers(1, 600),
)
def test_weight_calls_fit_every_limit_and_keep_every_target_once(
    work: list[Binding], entries: int, per_entry: int, total: int
) -> None:
    limits = Limits(
        weight_entries=entries, weight_targets_per_entry=per_entry, weight_targets=total
    )
    calls = weight_calls(work, limits=limits)
    for call in calls:
        assert 1 <= len(call) <= entries
        assert sum(len(e.targets) for e in call) <= total
        for entry in call:
            assert 1 <= len(entry.targets) <= per_entry
    flat = [Binding(e.listener, e.rule, t) for call in calls for e in call for t in e.targets]
    assert Counter(flat) == Counter(work)


@given(work=bindings)
def test_weight_calls_at_the_documented_limits(work: list[Binding]) -> None:
    calls = weight_calls(work, limits=Limits())
    assert all(len(c) <= 100 and sum(len(e.targets) for e in c) <= 500 for c in calls)
    assert all(len(e.targets) <= 50 for c in calls for e in c)
    assert sum(len(e.targets) for c in calls for e in c) == len(work)
