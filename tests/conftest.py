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
