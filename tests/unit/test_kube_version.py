"""The /version cache: read once, refreshed rarely, a failed read retried without blocking."""

from __future__ import annotations

import asyncio

import httpx2

from directlb.kube.version import ServerVersion, VersionCache

OLD = ServerVersion(major="1", minor="11", git_version="v1.11.5")
NEW = ServerVersion(major="1", minor="30", git_version="v1.30.1")


class Fake:
    def __init__(self, *answers: ServerVersion | Exception) -> None:
        self.answers = list(answers)
        self.calls = 0
        self.now = 0.0

    async def fetch(self) -> ServerVersion:
        self.calls += 1
        await asyncio.sleep(0)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def clock(self) -> float:
        return self.now


async def test_read_once_then_refreshed_after_the_period() -> None:
    fake = Fake(OLD, NEW)
    cache = VersionCache(fake.fetch, refresh_after=100, retry_after=5, clock=fake.clock)
    assert await asyncio.gather(*(cache.get() for _ in range(10))) == [OLD] * 10
    assert fake.calls == 1  # ten concurrent workers at start: one read
    fake.now = 99
    assert await cache.get() == OLD and fake.calls == 1
    fake.now = 100
    assert await cache.get() == NEW and fake.calls == 2


async def test_a_failed_read_keeps_what_was_known_and_is_retried_later() -> None:
    fake = Fake(httpx2.ConnectError("down"), OLD, ValueError("not json"), NEW)
    cache = VersionCache(fake.fetch, refresh_after=100, retry_after=5, clock=fake.clock)
    assert await cache.get() is None  # never read: unknown
    assert await cache.get() is None and fake.calls == 1  # not retried before retry_after
    fake.now = 5
    assert await cache.get() == OLD
    fake.now = 105
    assert await cache.get() == OLD and fake.calls == 3  # failed: the old answer stands
    fake.now = 110
    assert await cache.get() == NEW
