"""The work queue: dedupe, one worker per key, delays, backoff and the global rate limit.

Every test runs under ``looptime``: the loop's clock is fake and jumps through sleeps and
timers, so backoff of tens of seconds takes no wall time and times can be asserted exactly.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from directlb.kube.workqueue import (
    ItemBackoff,
    RateLimiter,
    ShutDown,
    TokenBucket,
    WorkQueue,
    run_workers,
)

pytestmark = pytest.mark.looptime


async def drain(queue: WorkQueue[str]) -> list[str]:
    """Take every ready key (marking each done at once)."""
    taken = []
    while len(queue):
        key = await queue.get()
        taken.append(key)
        queue.done(key)
    return taken


async def test_a_key_added_many_times_is_processed_once() -> None:
    queue: WorkQueue[str] = WorkQueue()
    for key in ["a", "b", "a", "a", "c", "b"]:
        queue.add(key)
    assert len(queue) == 3
    assert await drain(queue) == ["a", "b", "c"]


async def test_a_key_in_processing_is_not_handed_out_again_until_done() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    first = await queue.get()
    queue.add("a")  # changed again while a worker holds it
    assert len(queue) == 0  # not ready: it would run twice at once
    second_get = asyncio.create_task(queue.get())
    await asyncio.sleep(1)
    assert not second_get.done()
    queue.done(first)
    assert await asyncio.wait_for(second_get, timeout=1) == "a"  # runs once more afterwards


async def test_done_without_a_new_add_does_not_requeue() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    queue.done(await queue.get())
    assert len(queue) == 0


async def test_add_after_waits_and_the_earliest_schedule_wins(looptime: Any) -> None:
    queue: WorkQueue[str] = WorkQueue()
    start = float(looptime)
    queue.add_after("a", 30)
    queue.add_after("a", 10)
    queue.add_after("a", 20)  # later than the pending 10: ignored
    key = await queue.get()
    assert key == "a"
    assert float(looptime) - start == pytest.approx(10)
    queue.done(key)
    await asyncio.sleep(60)
    assert len(queue) == 0  # the cancelled 30 s schedule never fires


async def test_item_backoff_doubles_to_the_cap_and_forget_resets() -> None:
    backoff = ItemBackoff(base=1, cap=60)
    assert [backoff.when("a") for _ in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert backoff.when("b") == 1  # per key
    assert backoff.retries("a") == 8
    backoff.forget("a")
    assert backoff.when("a") == 1


async def test_token_bucket_allows_a_burst_then_spaces_calls(looptime: Any) -> None:
    bucket = TokenBucket(rate=10, burst=3)
    assert [bucket.when("k") for _ in range(3)] == [0, 0, 0]
    assert [bucket.when("k") for _ in range(3)] == pytest.approx([0.1, 0.2, 0.3])
    await asyncio.sleep(10)  # refills, but never beyond the burst
    assert [bucket.when("k") for _ in range(4)] == pytest.approx([0, 0, 0, 0.1])


async def test_rate_limited_adds_back_off_per_key(looptime: Any) -> None:
    limiter = RateLimiter(backoff=ItemBackoff(base=1, cap=8), bucket=TokenBucket(rate=1000))
    queue: WorkQueue[str] = WorkQueue(rate_limiter=limiter)
    times = []
    start = float(looptime)
    for _ in range(5):
        queue.add_rate_limited("a")
        key = await queue.get()
        times.append(round(float(looptime) - start, 6))
        queue.done(key)
    assert times == [1, 3, 7, 15, 23]  # +1, +2, +4, +8, then capped at +8
    assert queue.retries("a") == 5
    queue.forget("a")
    assert queue.retries("a") == 0


async def test_workers_retry_failures_with_backoff_and_forget_on_success(looptime: Any) -> None:
    limiter = RateLimiter(backoff=ItemBackoff(base=2, cap=60), bucket=TokenBucket(rate=1000))
    queue: WorkQueue[str] = WorkQueue(rate_limiter=limiter)
    attempts: list[float] = []
    start = float(looptime)

    async def reconcile(key: str) -> float | None:
        attempts.append(float(looptime) - start)
        if len(attempts) < 4:
            raise RuntimeError("cloud said no")
        await queue_stop_soon()
        return None

    async def queue_stop_soon() -> None:
        asyncio.get_running_loop().call_later(1, queue.shut_down)

    queue.add("svc")
    await asyncio.wait_for(run_workers(queue, reconcile, workers=2), timeout=600)
    assert attempts == pytest.approx([0, 2, 6, 14])  # backoff 2, 4, 8
    assert queue.retries("svc") == 0  # forgotten after the success


async def test_requeue_after_from_the_reconciler(looptime: Any) -> None:
    queue: WorkQueue[str] = WorkQueue()
    seen: list[float] = []
    start = float(looptime)

    async def reconcile(key: str) -> float | None:
        seen.append(float(looptime) - start)
        if len(seen) == 3:
            queue.shut_down()
            return None
        return 30.0

    queue.add("svc")
    await asyncio.wait_for(run_workers(queue, reconcile, workers=1), timeout=600)
    assert seen == pytest.approx([0, 30, 60])


async def test_no_key_is_reconciled_by_two_workers_at_once() -> None:
    queue: WorkQueue[str] = WorkQueue()
    running: set[str] = set()
    overlaps: list[str] = []
    runs: dict[str, int] = {}

    async def reconcile(key: str) -> float | None:
        if key in running:
            overlaps.append(key)
        running.add(key)
        runs[key] = runs.get(key, 0) + 1
        await asyncio.sleep(1)
        running.discard(key)
        return None

    async def producer() -> None:
        for round_ in range(20):
            for key in ("a", "b", "c"):
                queue.add(key)
            await asyncio.sleep(0.3 if round_ % 2 else 0.7)
        await asyncio.sleep(5)
        queue.shut_down()

    await asyncio.wait_for(
        asyncio.gather(run_workers(queue, reconcile, workers=8), producer()), timeout=600
    )
    assert overlaps == []
    # Every key ran, and fewer times than it was added (adds while queued collapsed).
    assert set(runs) == {"a", "b", "c"}
    assert all(1 < n < 20 for n in runs.values())


async def test_workers_run_different_keys_in_parallel(looptime: Any) -> None:
    queue: WorkQueue[str] = WorkQueue()
    start = float(looptime)

    async def reconcile(key: str) -> float | None:
        await asyncio.sleep(10)
        return None

    for key in "abcd":
        queue.add(key)
    queue_done = asyncio.get_running_loop().call_later(10.5, queue.shut_down)
    await asyncio.wait_for(run_workers(queue, reconcile, workers=4), timeout=600)
    queue_done.cancel()
    assert float(looptime) - start == pytest.approx(10.5)
    assert queue.stats.processed == 4


async def test_shut_down_wakes_waiting_workers_and_drops_new_adds() -> None:
    queue: WorkQueue[str] = WorkQueue()
    waiting = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.shut_down()
    with pytest.raises(ShutDown):
        await asyncio.wait_for(waiting, timeout=1)
    queue.add("late")
    queue.add_after("later", 5)
    assert len(queue) == 0


async def test_a_cancelled_waiter_passes_its_wake_up_on() -> None:
    queue: WorkQueue[str] = WorkQueue()
    first = asyncio.create_task(queue.get())
    second = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.add("a")  # wakes the first waiter …
    first.cancel()  # … which is cancelled before it runs
    assert await asyncio.wait_for(second, timeout=1) == "a"


async def test_stats_count_adds_retries_and_wait(looptime: Any) -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    queue.add("a")
    await asyncio.sleep(4)
    queue.done(await queue.get())
    queue.add_rate_limited("b")
    queue.done(await queue.get())
    assert queue.stats.adds == 2
    assert queue.stats.retries == 1
    assert queue.stats.processed == 2
    assert queue.stats.longest_wait_seconds == pytest.approx(4)


async def test_a_reconcile_interrupted_by_cancellation_runs_again_later() -> None:
    queue: WorkQueue[str] = WorkQueue()
    started = asyncio.Event()

    async def slow(key: str) -> float | None:
        started.set()
        await asyncio.sleep(3600)
        return None

    queue.add("svc")
    workers = asyncio.create_task(run_workers(queue, slow, workers=1))
    await asyncio.wait_for(started.wait(), timeout=10)
    workers.cancel()  # e.g. leadership lost mid-reconcile
    with pytest.raises(asyncio.CancelledError):
        await workers
    assert len(queue) == 1  # the interrupted key is ready for the next leader
    assert await queue.get() == "svc"
