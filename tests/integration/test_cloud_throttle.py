"""Client-side throttling against the emulator's real rate limit (per action per cloud second).

At time scale 0.5 the emulator admits 20 calls per action per 0.5 s (40/s); the adapter's
token bucket, scaled the same way, keeps under it. Without the bucket, the same burst is
refused with RequestLimitExceeded, and the retries still get every call through.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from directlb.cloud import CallCounter, Timing
from tests.conftest import EmulatorFactory
from tests.integration.cloud_support import adapter, ensure_all, ledger_summary

BURST = 60


async def burst(
    make_emulator: EmulatorFactory, timing: Timing, *, time_scale: float = 0.1
) -> tuple[int, CallCounter]:
    emulator = await make_emulator(time_scale=time_scale, rate_limit=20)
    counter = CallCounter()
    async with adapter(emulator, timing=timing, observer=counter) as clb:
        (lb_id,) = (await ensure_all(clb, ["paced"])).values()
        since = (await ledger_summary(emulator))["last"]
        await asyncio.gather(*(clb.observe(lb_id, fresh=True) for _ in range(BURST)))
    row = (await ledger_summary(emulator, since=since))["actions"]["DescribeListeners"]
    assert row["calls"] - sum(row["errors"].values()) == BURST  # every call got through
    return row["errors"].get("RequestLimitExceeded", 0), counter


async def test_the_token_bucket_keeps_a_burst_under_the_rate_limit(
    make_emulator: EmulatorFactory,
) -> None:
    # At scale 0.5 the emulator admits 20 per 0.5 s (40/s); pacing at 80% of that leaves room
    # for calls that arrive bunched up after a stall of the loop.
    paced = replace(Timing().scaled(0.5), rate=32.0)
    refused, counter = await burst(make_emulator, paced, time_scale=0.5)
    assert refused <= 2
    assert counter.calls[("DescribeListeners", "Success")] == BURST


async def test_without_the_bucket_the_cloud_refuses_and_retries_recover(
    make_emulator: EmulatorFactory,
) -> None:
    # A window of 0.5 s (20 calls per action per cloud second at scale 0.5): wide enough that
    # 60 concurrent calls land in one window even on a loaded machine, so some are refused.
    unpaced = replace(Timing().scaled(0.5), rate=0.0)
    refused, counter = await burst(make_emulator, unpaced, time_scale=0.5)
    assert refused >= 1
    assert counter.retries["RequestLimitExceeded"] == refused
