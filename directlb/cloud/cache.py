"""A short-lived cache of observed CLB state, kept current by our own writes.

An entry is as old as the last time the cloud was actually read: our writes update what the
entry says (they know exactly what they changed) but do not make it younger, so a change made
by someone else is seen at most ``ttl`` seconds late. Anything uncertain (a failed apply, a
deleted CLB) invalidates the entry instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from directlb.cloud.throttle import loop_clock
from directlb.plan.state import LoadBalancerState


@dataclass(frozen=True)
class _Entry:
    state: LoadBalancerState
    observed_at: float


class ObservedCache:
    def __init__(self, *, ttl: float, clock: Callable[[], float] = loop_clock) -> None:
        self.ttl = ttl
        self._clock = clock
        self._entries: dict[str, _Entry] = {}

    def get(self, lb_id: str) -> LoadBalancerState | None:
        entry = self._entries.get(lb_id)
        if entry is None:
            return None
        if self._clock() - entry.observed_at >= self.ttl:
            del self._entries[lb_id]
            return None
        return entry.state

    def observed(self, state: LoadBalancerState) -> None:
        """Record a state just read from the cloud."""
        if self.ttl > 0:
            self._entries[state.lb_id] = _Entry(state, self._clock())

    def written(self, state: LoadBalancerState) -> None:
        """Record what our own writes made of a cached state (its age does not change)."""
        entry = self._entries.get(state.lb_id)
        if entry is not None:
            self._entries[state.lb_id] = _Entry(state, entry.observed_at)

    def invalidate(self, lb_id: str) -> None:
        self._entries.pop(lb_id, None)
