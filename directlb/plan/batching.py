"""Packing lists of work into calls that each fit the API's limits.

Every function here is total and order-preserving: each item lands in exactly one chunk, and
no chunk is empty or over its limit. The property tests check exactly that.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import TypeVar

from directlb.plan.limits import Limits
from directlb.plan.ops import Binding, WeightEntry
from directlb.plan.state import ListenerKey, RuleKey, Target

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)

GroupKey = tuple[ListenerKey, RuleKey | None]


def chunks(items: Sequence[T], size: int) -> list[tuple[T, ...]]:
    """``items`` cut into consecutive tuples of at most ``size`` (none empty)."""
    if size < 1:
        raise ValueError(f"chunk size must be at least 1, not {size}")
    return [tuple(items[i : i + size]) for i in range(0, len(items), size)]


def group(items: Iterable[T], key: Callable[[T], K]) -> dict[K, list[T]]:
    """``items`` grouped by ``key``, groups in order of first appearance."""
    groups: dict[K, list[T]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return groups


def group_bindings(bindings: Iterable[Binding]) -> dict[GroupKey, list[Target]]:
    return {
        k: [b.target for b in bs]
        for k, bs in group(bindings, lambda b: (b.listener, b.rule)).items()
    }


def weight_calls(bindings: Sequence[Binding], *, limits: Limits) -> list[tuple[WeightEntry, ...]]:
    """Bindings packed into BatchModifyTargetWeight calls.

    Each call has at most ``weight_entries`` entries, each entry at most
    ``weight_targets_per_entry`` targets of one listener or rule, and at most
    ``weight_targets`` targets in all. Greedy: entries fill a call until one more would not fit.
    """
    per_entry = min(limits.weight_targets_per_entry, limits.weight_targets)
    pieces: list[WeightEntry] = []
    for (listener, rule), targets in group_bindings(bindings).items():
        for part in chunks(targets, per_entry):
            pieces.append(WeightEntry(listener=listener, rule=rule, targets=part))
    calls: list[tuple[WeightEntry, ...]] = []
    current: list[WeightEntry] = []
    total = 0
    for piece in pieces:
        size = len(piece.targets)
        if current and (
            len(current) == limits.weight_entries or total + size > limits.weight_targets
        ):
            calls.append(tuple(current))
            current, total = [], 0
        current.append(piece)
        total += size
    if current:
        calls.append(tuple(current))
    return calls
