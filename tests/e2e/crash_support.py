"""Killing the controller at an exact call, for the crash tests (``test_service_crash.py``).

A :class:`KillPoint` names one call the controller makes and says when it dies:

* on the cloud side, the ``nth`` request for an emulator action since the point was armed,
  seen through :attr:`directlb.emulator.server.Emulator.hook`;
* on the Kubernetes side, the ``nth`` write of a kind (``finalizer``, ``unfinalize``,
  ``annotation``, ``status``) the controller (field manager ``directlb``) makes to a Service,
  seen by wrapping the simulated API server's resource handler (:func:`watch_kube_writes`).

``when="before"``: the controller dies and the request never takes effect (the server drops
it unapplied: as if the process died before sending it). ``when="after"``: the request takes
effect, then the controller dies before reading the answer (the answer is lost).
``when="late"`` (cloud side): the controller dies with the request on the wire, and the cloud
applies it only after the restarted controller made the same call (see
:meth:`Killer._deliver_late`). The kill completes (the controller is gone) before the server
goes on, so nothing of the old run can act after its kill point. A read can be a kill point
too: ``DescribeTaskStatus`` "before" is a death while a task runs.

The emulator hook sees every client, the test's own SDK reads included; a point counts only
its own action, and while a point is armed the test makes no CLB write and never calls
``DescribeTaskStatus``, so what is counted is the controller's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from aiohttp import web
from lightkube import AsyncClient, KubeConfig

from directlb.cloud.config import Timing
from directlb.demo.up import register_instances
from directlb.emulator.actions import Call
from directlb.emulator.server import Emulator, HookPhase
from directlb.sim.cluster.cluster import Cluster
from directlb.sim.cluster.config import ClusterConfig
from directlb.sim.server import ApiServer, SimConfig
from tests import support
from tests.e2e.stack import TIME_SCALE, Stack, controller_config

FINALIZER = "directlb.io/service-lb"
CONTROLLER_FIELD_MANAGER = "directlb"

#: Cloud seconds of a task for ``slow_tasks`` points: 0.8 s of wall time at time scale 0.01,
#: more than a controller takes to restart and look at the CLB again.
SLOW_TASK_CLOUD_SECONDS = 80.0
#: With slow tasks, the controller's retries of ResourceInOperating span about 2 s (as on the
#: real cloud, where 8 attempts capped at 10 s outlast a task of a few seconds); the scaled
#: defaults give up after 0.3 s, and the failed sync would wait its 5 s requeue.
SLOW_TASK_RETRY_BASE = 0.05
SLOW_TASK_RETRY_CAP = 0.4

Side = Literal["cloud", "kube"]
When = Literal["before", "after", "late"]
#: Seconds a "late" request waits for the restarted controller to make the same call.
LATE_DELIVERY_DEADLINE = 20.0
KubeWrite = Literal["finalizer", "unfinalize", "annotation", "status"]


@dataclass(frozen=True)
class KillPoint:
    """Where the controller dies: the ``nth`` ``match`` call on ``side``, ``when``; armed at
    the start of the scenario's ``stage`` (``create``, ``scale``, ``ports`` or ``delete``).

    ``following``: count only the calls made after the first ``following`` call (same side),
    e.g. the ``DescribeTaskStatus`` polls of a CreateListener task. ``delete_while_dead``: the
    Service is deleted while the controller is dead, before it restarts. ``slow_tasks``: the
    CLB's tasks last long enough (see :data:`SLOW_TASK_CLOUD_SECONDS`) that the restarted
    controller comes up while the task the dead one started still runs. ``strategy``: the
    controller's sync strategy (``naive`` registers targets listener by listener, in several
    calls: a kill can fall between them).
    """

    name: str
    stage: str
    side: Side
    match: str
    nth: int = 1
    when: When = "after"
    following: str = ""
    delete_while_dead: bool = False
    slow_tasks: bool = False
    strategy: str = ""  # the controller's --sync-strategy for the case ("" = its default)


@dataclass
class Killer:
    """Counts the controller's calls once armed, and kills it at the armed point."""

    kill: Callable[[], Awaitable[None]]
    point: KillPoint | None = None
    counts: dict[str, int] = field(default_factory=dict)
    fired: asyncio.Event = field(default_factory=asyncio.Event)
    seen: list[str] = field(default_factory=list)  # every counted call, for failure messages
    _hit: object = None  # the call to kill after (when="after")
    _following_seen: bool = False
    _late: tuple[str, asyncio.Event] | None = None

    def arm(self, point: KillPoint | None) -> None:
        self.point = point
        self.counts.clear()
        self.seen.clear()
        self.fired = asyncio.Event()
        self._hit = None
        self._following_seen = False

    def disarm(self) -> None:
        self.point = None

    async def _before(self, side: Side, match: str, token: object) -> bool:
        """A call is about to take effect: count it; True if it is to be dropped (the
        controller is then dead)."""
        point = self.point
        if point is None or point.side != side:
            return False
        if point.following and not self._following_seen:
            self._following_seen = match == point.following
            return False
        if point.match != match:
            return False
        count = self.counts[match] = self.counts.get(match, 0) + 1
        self.seen.append(f"{side}:{match}#{count}")
        if count != point.nth:
            return False
        if point.when == "after":
            self._hit = token
            return False
        if point.when == "late":
            return await self._deliver_late(match)
        await self._fire()
        return True

    async def _deliver_late(self, match: str) -> bool:
        """Kill the sender, and apply its request only once the next run has made (and had
        applied) the same call: a request that was on the wire when the process died and
        reached the cloud late (a slow network, a lost leader)."""
        released = asyncio.Event()
        self._late = (match, released)
        await self._fire()
        try:
            await asyncio.wait_for(released.wait(), LATE_DELIVERY_DEADLINE)
        except TimeoutError:
            self.seen.append(f"late {match}: the next run never made that call")
        finally:
            self._late = None
        return False  # apply it now; its answer goes to a dead process

    async def _after(self, token: object) -> bool:
        """A call took effect; True if the controller was killed before its answer."""
        if self._hit is None or self._hit is not token:
            return False
        self._hit = None
        await self._fire()
        return True

    async def _fire(self) -> None:
        self.point = None  # fire once
        try:
            await self.kill()
        finally:
            self.fired.set()  # set once the controller is gone

    async def cloud_hook(self, phase: HookPhase, call: Call) -> bool:
        if phase == "applied" and self._late is not None and self._late[0] == call.action:
            self._late[1].set()
        if phase == "received":
            return await self._before("cloud", call.action, call)
        return await self._after(call)

    async def kube_hook(self, kind: KubeWrite, token: object, *, applied: bool) -> bool:
        if not applied:
            return await self._before("kube", kind, token)
        return await self._after(token)


def install_cloud_hook(emulator: Emulator, killer: Killer) -> None:
    emulator.hook = killer.cloud_hook


async def classify(request: web.Request, target: Any) -> KubeWrite | None:
    """What a controller's write to a Service is, or None for anything else."""
    if request.method not in ("PATCH", "PUT", "POST"):
        return None
    if request.query.get("fieldManager") != CONTROLLER_FIELD_MANAGER:
        return None
    if target.info.key.resource != "services" or not target.name:
        return None
    if target.subresource == "status":
        return "status"
    try:
        body = json.loads(await request.read() or b"{}")
    except ValueError:
        return None
    meta = body.get("metadata") or {}
    if "finalizers" in meta:
        return "finalizer" if FINALIZER in (meta["finalizers"] or []) else "unfinalize"
    if "annotations" in meta:
        return "annotation"
    return None


def watch_kube_writes(server: ApiServer, killer: Killer) -> None:
    """Wrap the simulated API server's resource handler so ``killer`` sees the controller's
    writes to Services (before they are applied, and after, before the answer is sent)."""
    original = server._resource

    async def resource(request: web.Request, target: Any, user: str) -> web.StreamResponse:
        kind = await classify(request, target)
        if kind is None:
            return await original(request, target, user)
        if await killer.kube_hook(kind, request, applied=False):
            return web.Response(status=503, text="the client was killed before sending this")
        response = await original(request, target, user)
        await killer.kube_hook(kind, request, applied=True)
        return response

    server._resource = resource  # type: ignore[method-assign]


@contextlib.asynccontextmanager
async def crash_stack(tmp_path: Path, *, nodes: int = 3) -> AsyncIterator[Stack]:
    """:func:`tests.e2e.stack.running_stack` with no controller running, and ENI pods on a
    random /20 of 127.18.0.0/16 (in the emulator's VPC), away from 127.17.0.0/16 where every
    other simulator on this machine (benchmarks with thousands of pods) binds its pods:
    a pod whose address is taken waits, and a crash test would wait with it. Nodes likewise
    (random /24 of 127.19.0.0/16); no data plane (nothing here sends traffic)."""
    eni_cidr = f"127.18.{random.randrange(16) * 16}.0/20"
    node_cidr = f"127.19.{random.randrange(256)}.0/24"
    server = ApiServer(SimConfig())
    await server.start("127.0.0.1", 0)
    cluster = Cluster.for_server(
        server,
        ClusterConfig(
            nodes=nodes, kubelet_sync_seconds=0.05, eni_pod_cidr=eni_cidr, node_cidr=node_cidr
        ),
        probe_time_scale=0.05,
    )
    emulator = Emulator(
        support.config(time_scale=TIME_SCALE, vpc_cidrs=(eni_cidr, node_cidr), data_plane=False)
    )
    kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
    client = AsyncClient(config=KubeConfig.from_file(kubeconfig), field_manager="test")
    stack: Stack | None = None
    try:
        await cluster.start()
        await emulator.start("127.0.0.1", 0)
        await register_instances(client, emulator)
        stack = Stack(
            client=client,
            emulator=emulator,
            server=server,
            cluster=cluster,
            config=controller_config(kubeconfig, emulator),
            timing=Timing().scaled(TIME_SCALE),
        )
        yield stack
    finally:
        if stack is not None:
            await stack.stop_controller()
        await client.close()
        await emulator.stop()
        await cluster.stop()
        await server.stop()


# --- running the controller --------------------------------------------------------------------


class InProcessController:
    """``runtime.run`` in this process (Stack.start_controller); killed by cancelling it."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.overrides: dict[str, Any] = {}  # ControllerConfig fields for the next starts

    @property
    def running(self) -> bool:
        return self.stack.controller is not None

    def crashed(self) -> BaseException | None:
        """Why the controller ended by itself (not killed, not stopped), if it did."""
        task = self.stack.controller
        if task is None or not task.done() or task.cancelled():
            return None
        return task.exception() or RuntimeError("the controller returned on its own")

    async def start(self) -> None:
        self.stack.start_controller(**self.overrides)

    async def stop(self) -> None:
        await self.stack.stop_controller()

    async def kill(self) -> None:
        await self.stack.kill_controller()


class ProcessController:
    """``directlb controller`` as a child process, killed with SIGKILL (kill -9)."""

    def __init__(self, stack: Stack, *, log_path: Path) -> None:
        self.stack = stack
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0

    def command(self) -> list[str]:
        config = self.stack.config
        assert config.kubeconfig is not None
        return [
            sys.executable,
            "-m",
            "directlb",
            "--log-level",
            "INFO",
            "controller",
            "--kubeconfig",
            str(config.kubeconfig),
            "--cluster-id",
            config.cluster_id,
            "--region",
            config.region,
            "--vpc-id",
            config.vpc_id,
            "--clb-endpoint",
            config.clb_endpoint,
            "--clb-protocol",
            "http",
            "--no-leader-elect",
            "--webhook-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ]

    @property
    def running(self) -> bool:
        return self.process is not None

    def crashed(self) -> BaseException | None:
        if self.process is None or self.process.returncode is None:
            return None
        return RuntimeError(
            f"directlb controller exited with {self.process.returncode}; see {self.log_path}"
        )

    async def start(self) -> None:
        assert self.process is None, "controller already running"
        self.starts += 1
        env = {
            **os.environ,
            "TENCENTCLOUD_SECRET_ID": self.stack.config.credentials.secret_id,
            "TENCENTCLOUD_SECRET_KEY": self.stack.config.credentials.secret_key,
        }
        with self.log_path.open("ab") as log:
            log.write(f"--- start {self.starts}\n".encode())
            log.flush()
            self.process = await asyncio.create_subprocess_exec(
                *self.command(), stdout=log, stderr=log, env=env
            )

    async def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 20)
        except TimeoutError:
            process.kill()
            await process.wait()

    async def kill(self) -> None:
        """kill -9, and wait until the process is gone."""
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
        await process.wait()
