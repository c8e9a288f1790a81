"""Client-side throttling: a token bucket per API action, consumed once per call.

Tencent limits each action to 20 requests per second per account. Going over is answered with
``RequestLimitExceeded``, which costs a round trip and a backoff; pacing ourselves is cheaper.
The bucket reserves a token even when it has to wait for it, so callers are served in arrival
order and a burst of callers spreads out evenly instead of retrying in a herd.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


def loop_clock() -> float:
    """The running event loop's clock (fake under looptime, so tests need not sleep)."""
    return asyncio.get_running_loop().time()


class TokenBucket:
    def __init__(
        self, *, rate: float, burst: float = 1.0, clock: Callable[[], float] = loop_clock
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._stamp: float | None = None

    async def acquire(self) -> float:
        """Take one token, waiting for it if need be; return the seconds waited."""
        if self.rate <= 0:
            return 0.0
        now = self._clock()
        if self._stamp is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        self._tokens -= 1.0
        if self._tokens >= 0:
            return 0.0
        wait = -self._tokens / self.rate
        await asyncio.sleep(wait)
        return wait


class Throttle:
    """One bucket per action, created on first use."""

    def __init__(
        self, *, rate: float, burst: float = 1.0, clock: Callable[[], float] = loop_clock
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}

    def bucket(self, action: str) -> TokenBucket:
        bucket = self._buckets.get(action)
        if bucket is None:
            bucket = TokenBucket(rate=self.rate, burst=self.burst, clock=self._clock)
            self._buckets[action] = bucket
        return bucket

    async def acquire(self, action: str) -> float:
        return await self.bucket(action).acquire()
