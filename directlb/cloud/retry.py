"""Backoff between retries: exponential, jittered, capped."""

from __future__ import annotations

import random


class Backoff:
    """Delay before retry ``n`` (0-based): uniform in [d/2, d], d = min(cap, base * 2**n).

    Half the delay is fixed so a retry is never immediate; the other half is random so that
    callers that failed together do not retry together.
    """

    def __init__(self, *, base: float, cap: float, rng: random.Random | None = None) -> None:
        if base < 0 or cap < base:
            raise ValueError("backoff needs 0 <= base <= cap")
        self.base = base
        self.cap = cap
        self._rng = rng or random.Random()

    def delay(self, attempt: int) -> float:
        ceiling = min(self.cap, self.base * 2.0 ** min(attempt, 60))
        return ceiling / 2 + self._rng.random() * ceiling / 2
