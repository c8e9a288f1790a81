"""The readiness-gate health poller keeps CLBs in step: one batched read per period, however
scattered the moments their pods first needed them; the period runs from each read's start."""

from __future__ import annotations

import pytest

from directlb.controllers.gate import HealthPoller
from tests.unit.test_gate import Clock, FakeCloud


class SlowCloud(FakeCloud):
    """Each read takes ``duration`` seconds of the fake clock."""

    def __init__(self, clock: Clock, duration: float) -> None:
        super().__init__()
        self.clock = clock
        self.duration = duration

    async def target_health(self, lb_ids):  # type: ignore[no-untyped-def]
        self.clock.now += self.duration
        return await super().target_health(lb_ids)


async def run_for(poller: HealthPoller, clock: Clock, seconds: float) -> None:
    """Drive ``poll`` as its queue would: again after the delay it returns."""
    end = clock.now + seconds
    while clock.now < end:
        delay = await poller.poll()
        assert delay is not None
        clock.now += delay


async def test_clbs_first_wanted_at_different_moments_fall_into_one_call() -> None:
    cloud, clock = FakeCloud(), Clock()
    poller = HealthPoller(cloud, clock=clock)  # type: ignore[arg-type]
    for i in range(4):  # wanted 0.37 s apart: each first read is its own call
        poller.want(f"default/p{i}", frozenset({f"lb-{i}"}))
        await poller.poll()
        clock.now += 0.37
    assert len(cloud.calls) == 4
    cloud.calls.clear()
    await run_for(poller, clock, 60.0)
    # In step after one period: one call per period with every CLB, never one call per CLB.
    assert all(call == ["lb-0", "lb-1", "lb-2", "lb-3"] for call in cloud.calls[1:])
    assert 29 <= len(cloud.calls) <= 31


async def test_the_period_runs_from_the_start_of_each_read() -> None:
    clock = Clock()
    cloud = SlowCloud(clock, duration=0.5)
    poller = HealthPoller(cloud, clock=clock)  # type: ignore[arg-type]
    poller.want("default/a", frozenset({"lb-a"}))
    delay = await poller.poll()
    assert delay == pytest.approx(1.5)  # 2 s after the read began, not after its answer
    await run_for(poller, clock, 20.0)
    assert len(cloud.calls) == pytest.approx(11, abs=1)  # one read every 2 s


async def test_no_clb_is_read_more_often_than_every_half_period() -> None:
    cloud, clock = FakeCloud(), Clock()
    poller = HealthPoller(cloud, clock=clock)  # type: ignore[arg-type]
    poller.want("default/a", frozenset({"lb-a"}))
    await poller.poll()
    clock.now += 0.2
    poller.want("default/b", frozenset({"lb-b"}))  # a new CLB: read now, alone
    await poller.poll()
    assert cloud.calls == [["lb-a"], ["lb-b"]]
