"""Helpers the benchmarks share: percentiles, a child process's CPU and memory, bounded gather,
the stand-ins' ready lines, polling with a deadline, the machine's CPU model."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import re
import signal
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from lightkube import AsyncClient
from lightkube.resources.core_v1 import Node


def percentiles(values: list[float]) -> dict[str, float]:
    """p50/p95/p99/max/mean of durations in seconds, as milliseconds (nearest rank)."""
    ordered = sorted(values)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return {
        "p50": round(pick(0.5) * 1000, 3),
        "p95": round(pick(0.95) * 1000, 3),
        "p99": round(pick(0.99) * 1000, 3),
        "max": round(ordered[-1] * 1000, 3),
        "mean": round(statistics.fmean(ordered) * 1000, 3),
    }


async def gather_limited(jobs: list[Awaitable[Any]], limit: int) -> list[Any]:
    """Await ``jobs`` (not yet started coroutines) with at most ``limit`` running at once."""
    sem = asyncio.Semaphore(limit)

    async def run(job: Awaitable[Any]) -> Any:
        async with sem:
            return await job

    return await asyncio.gather(*(run(job) for job in jobs))


def loadavg() -> list[float]:
    """The machine's 1, 5 and 15-minute load averages (NaN where /proc cannot say)."""
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return [float("nan")] * 3


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process has used so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    """Resident memory of the process in MiB (NaN once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return float("nan")


@contextlib.asynccontextmanager
async def child_process(
    argv: list[str], *, ready: re.Pattern[bytes], timeout: float = 30
) -> AsyncIterator[tuple[re.Match[bytes], int]]:
    """Start ``argv``; yield (the match of ``ready`` on its first output line, its pid).

    The child is stopped with SIGTERM (SIGKILL after 10 s) on the way out.
    """
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=timeout)
        match = ready.search(line)
        if not match:
            raise RuntimeError(f"{argv[:4]} did not start: {line!r}")
        yield match, proc.pid
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout=10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def report(result: Any, text: str, *, out: Path | None, name: str) -> None:
    """Print the markdown ``text``; with ``out``, also write ``NAME.json`` (the result
    dataclass) and ``NAME.md`` there."""
    print(text)
    if out:
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{name}.json").write_text(json.dumps(asdict(result), indent=2) + "\n")
        (out / f"{name}.md").write_text(text)


#: What ``directlb sim`` and ``directlb clb-emulator`` print once they listen (``child_process``).
SIM_READY = re.compile(rb"listening on (https?://[\d.]+:\d+)")
EMULATOR_READY = re.compile(rb"http://([\d.]+:\d+)")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


async def wait_for(
    predicate: Callable[[], Awaitable[bool]], *, timeout: float, interval: float, what: str
) -> float:
    """Poll ``predicate`` until true; the seconds it took. TimeoutError names ``what``."""
    started = time.perf_counter()
    while not await predicate():
        if time.perf_counter() - started > timeout:
            raise TimeoutError(f"{what}: not reached within {timeout:.0f}s")
        await asyncio.sleep(interval)
    return time.perf_counter() - started


async def nodes_ready(client: AsyncClient, want: int) -> bool:
    ready = 0
    async for node in client.list(Node):
        conditions = node.status.conditions if node.status else None
        ready += any(c.type == "Ready" and c.status == "True" for c in conditions or [])
    return ready >= want


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"
