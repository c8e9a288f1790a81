from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from tencentcloud.clb.v20180317 import clb_client_async

from directlb.emulator.server import Emulator
from tests import support

EmulatorFactory = Callable[..., Awaitable[Emulator]]


@pytest.fixture
async def make_emulator() -> AsyncIterator[EmulatorFactory]:
    """Start in-process emulators with ``support.config(**overrides)``; stop them after."""
    started: list[Emulator] = []

    async def make(**overrides: Any) -> Emulator:
        emulator = Emulator(support.config(**overrides))
        await emulator.start()
        started.append(emulator)
        return emulator

    yield make
    for emulator in started:
        await emulator.stop()


@pytest.fixture
async def emulator(make_emulator: EmulatorFactory) -> Emulator:
    """An emulator whose tasks take a little wall time (time scale 0.01: a task ~50 ms)."""
    return await make_emulator(time_scale=0.01)


@pytest.fixture
async def clb(emulator: Emulator) -> AsyncIterator[clb_client_async.ClbClient]:
    client = support.async_client(emulator)
    yield client
    await client.close()


@pytest.fixture
async def fast(make_emulator: EmulatorFactory) -> Emulator:
    """Time scale 0 (tasks end at once) and no rate limit: many calls in a short test."""
    return await make_emulator(rate_limit=0, instances={"ins-1": "127.20.0.1"})


@pytest.fixture
async def client(fast: Emulator) -> AsyncIterator[clb_client_async.ClbClient]:
    """An official async SDK client of the ``fast`` emulator."""
    c = support.async_client(fast)
    yield c
    await c.close()
