"""The real controller in the control-plane benchmark: ``runtime.run`` in this process.

The controller runs with the sync strategy under test, its cloud pacing on the emulator's
clock (``timing=Timing().scaled(F)``), no leader election and no webhook (nothing here is in
direct mode). Times come from its own log records: ``event=caches_synced`` (the informers hold
the changed cluster; the workers start right after) and each ``event=plan_applied`` (a plan
finished on a CLB); the ``ingress`` work queue going idle ends a run.

Workers: ``naive`` and ``batch`` are defined as "one CLB after another" (docs/cloud.md), which
a running controller does with one worker; ``optimized`` works on CLBs in parallel, bounded by
the adapter's ``concurrency`` (8), so it gets 8 workers (the controller's default is 4).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from directlb.bench.cp_cloud import CLUSTER_ID
from directlb.bench.cp_stack import REGION, SECRET_ID, SECRET_KEY, VPC_ID
from directlb.cloud.config import Credentials, SyncStrategy, Timing
from directlb.controllers import runtime
from directlb.controllers.config import ControllerConfig, HostPort
from directlb.controllers.manager import Manager

OPTIMIZED_WORKERS = 8


def workers_for(strategy: SyncStrategy) -> int:
    return OPTIMIZED_WORKERS if strategy.parallel else 1


@dataclass
class Marks:
    """Wall times (``time.time()``) of the controller's log events that the benchmark needs."""

    synced: float = 0.0
    applied: list[float] = field(default_factory=list)
    # (calls, client-side seconds) of the controller's cloud calls when the last plan applied.
    calls_at_applied: tuple[int, float] = (0, 0.0)
    failures: list[str] = field(default_factory=list)


class _Recorder(logging.Handler):
    def __init__(self, marks: Marks) -> None:
        super().__init__(level=logging.INFO)
        self.marks = marks
        self.manager: Manager | None = None

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.levelno >= logging.WARNING:
            print(f"controller: {record.levelname} {record.name} {message}", file=sys.stderr)
        if message.startswith("event=caches_synced"):
            self.marks.synced = record.created
        elif message.startswith("event=plan_applied"):
            self.marks.applied.append(record.created)
            if self.manager is not None:
                self.marks.calls_at_applied = client_call_seconds(self.manager)
        elif "event=sync_failed" in message:
            self.marks.failures.append(message)


@dataclass
class Running:
    manager: Manager
    marks: Marks
    workers: int


@contextlib.asynccontextmanager
async def controller(
    *, endpoint: str, kubeconfig: Path, strategy: SyncStrategy, time_scale: float
) -> AsyncIterator[Running]:
    """Run the controller until the block ends; yield once its caches are synced."""
    workers = workers_for(strategy)
    config = ControllerConfig(
        cluster_id=CLUSTER_ID,
        vpc_id=VPC_ID,
        credentials=Credentials(secret_id=SECRET_ID, secret_key=SECRET_KEY),
        region=REGION,
        kubeconfig=kubeconfig,
        clb_endpoint=endpoint,
        clb_protocol="http",
        sync_strategy=strategy,
        workers=workers,
        leader_elect=False,
        identity="bench-control-plane",
        webhook=False,
        webhook_listen=HostPort("127.0.0.1", 0),
        metrics_listen=HostPort("127.0.0.1", 0),
    )
    marks = Marks()
    recorder = _Recorder(marks)
    loggers = [logging.getLogger(n) for n in ("directlb.controllers", "directlb.cloud")]
    saved = [(lg.level, lg.propagate) for lg in loggers]
    for lg in loggers:
        # INFO records are for the benchmark's marks, not the terminal (warnings are printed).
        lg.addHandler(recorder)
        lg.setLevel(logging.INFO)
        lg.propagate = False
    started: asyncio.Future[Manager] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()

    def on_started(info: runtime.Started) -> None:
        if not started.done():
            started.set_result(info.manager)

    task = asyncio.create_task(
        runtime.run(config, stop=stop, on_started=on_started, timing=Timing().scaled(time_scale)),
        name="controller",
    )
    try:
        waiting: set[asyncio.Future[Any]] = {task, started}
        done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if started not in done:
            task.result()  # the controller ended before its caches synced: surface why
            raise RuntimeError("the controller stopped before its caches synced")
        recorder.manager = started.result()
        yield Running(manager=started.result(), marks=marks, workers=workers)
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        for lg, (level, propagate) in zip(loggers, saved, strict=True):
            lg.removeHandler(recorder)
            lg.setLevel(level)
            lg.propagate = propagate


async def wait_idle(running: Running, *, ingresses: int, timeout: float, plans: int = 0) -> float:
    """Wait until every Ingress was reconciled at least once and the ingress queue is idle, or
    (``plans`` > 0) until that many plans were applied; return that moment (``time.time()``).

    Why ``plans``: a reconcile that created a CLB writes the Ingress's CLB id and status, which
    queues that Ingress once more; that follow-up finds nothing to change, but with ``naive``
    it repeats every per-target query (minutes of modeled time at 400 rules). The benchmark
    measures the change, so it stops once every CLB has had its plan; the final state is then
    checked from outside."""
    queue = running.manager.queue("ingress")
    deadline = time.monotonic() + timeout
    while not (
        (queue.stats.processed >= ingresses and queue.idle())
        or (plans and len(running.marks.applied) >= plans)
    ):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the ingress queue was not idle within {timeout:.0f}s")
        await asyncio.sleep(0.002)
    return time.time()


def client_call_seconds(manager: Manager) -> tuple[int, float]:
    """(calls, summed client-side seconds) of the controller's cloud calls, from its metrics."""
    calls, seconds = 0, 0.0
    for metric in manager.metrics.cloud_call_seconds.collect():
        for sample in metric.samples:
            if sample.name.endswith("_count"):
                calls += int(sample.value)
            elif sample.name.endswith("_sum"):
                seconds += sample.value
    return calls, seconds


def retries(manager: Manager) -> dict[str, int]:
    out: dict[str, int] = {}
    for metric in manager.metrics.cloud_retries.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                code = sample.labels.get("code", "")
                out[code] = out.get(code, 0) + int(sample.value)
    return out
