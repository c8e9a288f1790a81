from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.stack import Stack, running_stack


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    """Simulated cluster + CLB emulator + a running controller (see tests/e2e/stack.py)."""
    async with running_stack(tmp_path) as running:
        yield running
