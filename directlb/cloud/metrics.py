"""Hooks for per-call metrics: the runtime exports them (Prometheus); tests count them.

The adapter reports every API call it makes (action, result code, seconds), every wait for an
asynchronous task, and every retry. :class:`CallCounter` keeps simple tallies.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

SUCCESS = "Success"


class CallObserver(Protocol):
    def api_call(self, *, action: str, result: str, seconds: float) -> None:
        """One API call answered (``result`` is ``Success`` or the error code)."""

    def task_wait(self, *, action: str, result: str, seconds: float) -> None:
        """A wait for an asynchronous task ended (``Success``, a TaskFailed or TaskTimeout)."""

    def retry(self, *, action: str, code: str, delay: float) -> None:
        """A call is about to be retried after ``delay`` seconds because of ``code``."""


class NullObserver:
    def api_call(self, *, action: str, result: str, seconds: float) -> None:
        pass

    def task_wait(self, *, action: str, result: str, seconds: float) -> None:
        pass

    def retry(self, *, action: str, code: str, delay: float) -> None:
        pass


@dataclass
class CallCounter:
    """Tallies of calls by (action, result), task waits by action, and retries by code."""

    calls: Counter[tuple[str, str]] = field(default_factory=Counter)
    task_waits: Counter[tuple[str, str]] = field(default_factory=Counter)
    task_seconds: float = 0.0
    retries: Counter[str] = field(default_factory=Counter)

    def api_call(self, *, action: str, result: str, seconds: float) -> None:
        self.calls[(action, result)] += 1

    def task_wait(self, *, action: str, result: str, seconds: float) -> None:
        self.task_waits[(action, result)] += 1
        self.task_seconds += seconds

    def retry(self, *, action: str, code: str, delay: float) -> None:
        self.retries[code] += 1

    def total(self, action: str | None = None) -> int:
        return sum(n for (a, _), n in self.calls.items() if action is None or a == action)

    def by_action(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for (action, _), n in self.calls.items():
            out[action] = out.get(action, 0) + n
        return out
