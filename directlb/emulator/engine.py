"""Asynchronous tasks and the one-mutation-at-a-time rule of a CLB.

Tencent runs most CLB mutations as tasks: the call returns a RequestId at once, the change
happens when the task finishes, and ``DescribeTaskStatus`` reports 2 (running), then 0 (done)
or 1 (failed). A CLB runs one task at a time: while one runs, every other mutation of that CLB
is refused with ``FailedOperation.ResourceInOperating``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import string
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from directlb.emulator.config import EmulatorConfig
from directlb.emulator.errors import in_operation
from directlb.emulator.store import TASK_DONE, TASK_FAILED, TASK_RUNNING, Op, Store, Task

log = logging.getLogger("directlb.emulator.engine")

# Finished tasks answer DescribeTaskStatus for an hour, then are forgotten (as cloud task
# records expire), so a long-running emulator does not grow without bound.
TASK_RETENTION_SECONDS = 3600.0
PRUNE_EVERY = 1000

_ID_ALPHABET = string.ascii_lowercase + string.digits


class Ids:
    """Resource and request ids shaped like Tencent's, reproducible under ``--seed``."""

    def __init__(self, store: Store, seed: int | None) -> None:
        # Each start on the same state file draws from a new sequence: an id that was handed
        # out and deleted before a restart is never handed out again (Tencent never reuses ids),
        # while a run is still reproducible from its seed and the number of earlier starts.
        starts = int(store.meta("starts") or 0) + 1
        store.set_meta("starts", str(starts))
        self._rng = random.Random(f"{seed}:{starts}" if seed is not None else None)
        self._used: set[str] = set()
        for lb in store.lbs.values():
            self._used.add(lb.lb_id)
            for listener in lb.listeners.values():
                self._used.add(listener.listener_id)
                self._used.update(listener.rules)
        self._used.update(store.tasks)

    def resource(self, prefix: str) -> str:
        while True:
            candidate = prefix + "-" + "".join(self._rng.choices(_ID_ALPHABET, k=8))
            if candidate not in self._used:
                self._used.add(candidate)
                return candidate

    def request(self) -> str:
        # 122 random bits: no bookkeeping needed (recording every request id would grow a set
        # by one entry per API call for the life of the process).
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))


class TaskEngine:
    def __init__(self, store: Store, config: EmulatorConfig) -> None:
        self.store = store
        self.config = config
        self.busy: dict[str, str] = {}  # lb_id -> id of the task (or call) holding it
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._finished = 0

    def recover(self) -> int:
        """Finish every task that was in flight when the last process died.

        A task the emulator acknowledged is part of what the client was promised, so it ends
        exactly as it would have: applied (status 0), or failed if it was going to fail.
        """
        running = [t for t in self.store.tasks.values() if t.status == TASK_RUNNING]
        for task in sorted(running, key=lambda t: t.created):
            self._finish(task)
        return len(running)

    def ensure_idle(self, lb_ids: Iterable[str]) -> None:
        for lb_id in lb_ids:
            if lb_id in self.busy:
                raise in_operation(lb_id)

    def start(
        self,
        *,
        task_id: str,
        action: str,
        lb_ids: list[str],
        ops: list[Op],
        cloud_seconds: float,
        immediate_ops: list[Op] | None = None,
        failure: str = "",
        fail_ops: list[Op] | None = None,
        deal_name: str = "",
    ) -> Task:
        """Accept a task: hold its CLBs now, apply ``ops`` when it finishes.

        ``immediate_ops`` are applied in the same transaction that records the task (what the
        cloud shows at once, like a new CLB in status 0). A task with a ``failure`` message ends
        with status 1 and applies ``fail_ops`` instead of ``ops``.
        """
        self.ensure_idle(lb_ids)
        task = Task(
            task_id=task_id,
            action=action,
            lb_ids=list(lb_ids),
            status=TASK_RUNNING,
            message=failure,
            ops=list(fail_ops or []) if failure else list(ops),
            created=time.time(),
            deal_name=deal_name,
        )
        self.store.apply(immediate_ops or [], task=task)
        wall = self.config.wall(cloud_seconds)
        if wall <= 0:
            self._finish(task)
            return task
        for lb_id in lb_ids:
            self.busy[lb_id] = task_id
        loop = asyncio.get_running_loop()
        self._timers[task_id] = loop.call_later(wall, self._finish_on_timer, task)
        return task

    def _finish_on_timer(self, task: Task) -> None:
        """The timer's callback: a task must never stay "running" because applying it failed."""
        try:
            self._finish(task)
        except Exception:
            log.exception("event=task_apply_failed task=%s action=%s", task.task_id, task.action)
            task.status = TASK_FAILED
            task.message = "InternalError: the emulator could not apply this task"
            task.ops = []
            try:
                self.store.apply([], task=task)
            except Exception:
                log.exception("event=task_status_write_failed task=%s", task.task_id)

    def _finish(self, task: Task) -> None:
        self._timers.pop(task.task_id, None)
        self._finished += 1
        if self._finished % PRUNE_EVERY == 0:
            self.store.prune_tasks(older_than=time.time() - TASK_RETENTION_SECONDS)
        task.status = TASK_FAILED if task.message else TASK_DONE
        ops, task_ops = task.ops, task.ops
        task.ops = []
        try:
            self.store.apply(ops, task=task)
        except Exception:
            task.ops = task_ops
            task.status = TASK_RUNNING
            raise
        finally:
            for lb_id in task.lb_ids:
                if self.busy.get(lb_id) == task.task_id:
                    del self.busy[lb_id]

    @asynccontextmanager
    async def hold(
        self, lb_ids: list[str], holder: str, cloud_seconds: float
    ) -> AsyncIterator[None]:
        """Hold CLBs for a synchronous mutation that takes ``cloud_seconds`` of cloud time."""
        self.ensure_idle(lb_ids)
        for lb_id in lb_ids:
            self.busy[lb_id] = holder
        try:
            wall = self.config.wall(cloud_seconds)
            if wall > 0:
                await asyncio.sleep(wall)
            yield
        finally:
            for lb_id in lb_ids:
                if self.busy.get(lb_id) == holder:
                    del self.busy[lb_id]

    @property
    def running(self) -> int:
        """Tasks in flight (each has a timer until it finishes)."""
        return len(self._timers)

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
