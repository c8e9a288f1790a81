"""A keyed work queue and its workers, with the guarantees controller-runtime gives.

* **Deduplicated**: a key added many times before a worker takes it is processed once.
* **Never concurrent per key**: a key being processed is not handed to another worker; if it is
  added meanwhile, it is marked dirty and processed once more after ``done``.
* **Delays**: ``add_after`` schedules a key; an earlier schedule for the same key wins.
* **Rate limits**: ``add_rate_limited`` waits the longer of a per-key exponential backoff
  (doubling from ``base`` up to ``cap``, reset by ``forget``) and a global token bucket, so
  one failing object backs off without slowing the others, and a storm of failures cannot
  hammer the cloud.

The reconciler contract is ``reconcile(key) -> requeue_after | None``, nothing else: a
returned delay requeues the key after it; an exception requeues it rate-limited.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

log = logging.getLogger("directlb.kube.workqueue")

K = TypeVar("K", bound=Hashable)
K_contra = TypeVar("K_contra", bound=Hashable, contravariant=True)


class ShutDown(Exception):
    """The queue was shut down: workers stop."""


class Reconciler(Protocol[K_contra]):
    async def reconcile(self, key: K_contra) -> float | None:
        """Make the world match the desired state of ``key``; return a requeue delay or None."""
        ...


class ItemBackoff:
    """Per-key exponential backoff: base, 2*base, 4*base ... capped; ``forget`` resets it."""

    def __init__(self, *, base: float = 0.005, cap: float = 60.0) -> None:
        self.base = base
        self.cap = cap
        self._failures: dict[Hashable, int] = {}

    def when(self, key: Hashable) -> float:
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        return float(min(self.base * 2.0**failures, self.cap))

    def forget(self, key: Hashable) -> None:
        self._failures.pop(key, None)

    def retries(self, key: Hashable) -> int:
        return self._failures.get(key, 0)


class TokenBucket:
    """A global limit: ``rate`` tokens per second, up to ``burst`` at once.

    ``when`` reserves a token and says how long until it is available, so delays queue up
    fairly instead of every caller waking at once.
    """

    def __init__(
        self, *, rate: float = 10.0, burst: int = 100, clock: Callable[[], float] | None = None
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._last: float | None = None

    def _now(self) -> float:
        return self._clock() if self._clock else asyncio.get_running_loop().time()

    def when(self, key: Hashable) -> float:
        now = self._now()
        if self._last is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def forget(self, key: Hashable) -> None:
        pass


class RateLimiter:
    """The longer of the per-key backoff and the global bucket (client-go's default)."""

    def __init__(
        self, *, backoff: ItemBackoff | None = None, bucket: TokenBucket | None = None
    ) -> None:
        self.backoff = backoff or ItemBackoff()
        self.bucket = bucket or TokenBucket()

    def when(self, key: Hashable) -> float:
        return max(self.backoff.when(key), self.bucket.when(key))

    def forget(self, key: Hashable) -> None:
        self.backoff.forget(key)

    def retries(self, key: Hashable) -> int:
        return self.backoff.retries(key)


@dataclass
class QueueStats:
    """Counters a metrics exporter reads (the queue itself stays free of Prometheus)."""

    adds: int = 0
    retries: int = 0
    processed: int = 0
    total_wait_seconds: float = 0.0  # time from becoming ready to being taken by a worker
    longest_wait_seconds: float = 0.0


class WorkQueue(Generic[K]):
    def __init__(self, *, name: str = "", rate_limiter: RateLimiter | None = None) -> None:
        self.name = name
        self.rate_limiter = rate_limiter or RateLimiter()
        self.stats = QueueStats()
        self._queue: list[K] = []  # ready keys, in order
        self._dirty: set[K] = set()  # ready or to be reprocessed
        self._processing: set[K] = set()
        self._ready_since: dict[K, float] = {}
        self._timers: dict[K, tuple[float, asyncio.TimerHandle]] = {}
        self._waiters: list[asyncio.Future[None]] = []  # workers blocked in get()
        self._shutting_down = False

    def __len__(self) -> int:
        """The depth: keys ready and waiting for a worker."""
        return len(self._queue)

    def idle(self) -> bool:
        """Nothing ready, nothing being processed (keys scheduled for later do not count)."""
        return not self._queue and not self._processing

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def _loop_time(self) -> float:
        return asyncio.get_running_loop().time()

    def add(self, key: K) -> None:
        if self._shutting_down or key in self._dirty:
            return
        self.stats.adds += 1
        self._dirty.add(key)
        if key in self._processing:
            return  # re-queued by done()
        self._push(key)

    def _push(self, key: K) -> None:
        self._queue.append(key)
        self._ready_since[key] = self._loop_time()
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.pop(0)
            if not waiter.done():
                waiter.set_result(None)
                return

    def add_after(self, key: K, delay: float) -> None:
        """Add ``key`` after ``delay`` seconds; an earlier pending schedule for it is kept."""
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        due = loop.time() + delay
        pending = self._timers.get(key)
        if pending is not None:
            if pending[0] <= due:
                return
            pending[1].cancel()
        self._timers[key] = (due, loop.call_at(due, self._fire, key))

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def add_rate_limited(self, key: K) -> None:
        self.stats.retries += 1
        self.add_after(key, self.rate_limiter.when(key))

    def forget(self, key: K) -> None:
        """The key succeeded: reset its backoff."""
        self.rate_limiter.forget(key)

    def retries(self, key: K) -> int:
        return self.rate_limiter.retries(key)

    async def get(self) -> K:
        """Wait for a ready key and mark it processing; raise ShutDown once shut down."""
        while not self._queue:
            if self._shutting_down:
                raise ShutDown(self.name)
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                # Pass a wake-up we were given (and cannot use) on to another worker.
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()
                raise
        key = self._queue.pop(0)
        self._processing.add(key)
        self._dirty.discard(key)
        waited = self._loop_time() - self._ready_since.pop(key, self._loop_time())
        self.stats.total_wait_seconds += waited
        self.stats.longest_wait_seconds = max(self.stats.longest_wait_seconds, waited)
        return key

    def done(self, key: K) -> None:
        """A worker finished ``key``; if it was added meanwhile, it is ready again."""
        self._processing.discard(key)
        self.stats.processed += 1
        if key in self._dirty:
            self._push(key)

    def shut_down(self) -> None:
        """Stop handing out keys; workers waiting in ``get`` raise ShutDown."""
        self._shutting_down = True
        for _due, timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()


async def _work(
    queue: WorkQueue[K], reconcile: Callable[[K], Awaitable[float | None]], worker: int
) -> None:
    while True:
        try:
            key = await queue.get()
        except ShutDown:
            return
        try:
            requeue_after = await reconcile(key)
        except asyncio.CancelledError:
            # Interrupted (shutdown, or leadership lost): the key must run again later.
            queue.done(key)
            queue.add(key)
            raise
        except Exception:
            log.exception(
                "event=reconcile_failed queue=%s key=%s retries=%d worker=%d",
                queue.name,
                key,
                queue.retries(key),
                worker,
            )
            queue.add_rate_limited(key)
        else:
            queue.forget(key)
            if requeue_after is not None:
                queue.add_after(key, requeue_after)
        queue.done(key)


async def run_workers(
    queue: WorkQueue[K],
    reconcile: Callable[[K], Awaitable[float | None]],
    *,
    workers: int = 4,
) -> None:
    """Run ``workers`` workers until the queue shuts down (or the task is cancelled)."""
    tasks = [
        asyncio.create_task(_work(queue, reconcile, i), name=f"{queue.name}-worker-{i}")
        for i in range(workers)
    ]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
