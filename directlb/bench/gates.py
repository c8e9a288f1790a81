"""``directlb bench gates``: how soon a pod's readiness gate turns True once its CLB target is
healthy (issue 8, "Figures").

``directlb sim`` and ``directlb clb-emulator`` run in their own processes on this host; the
controller runs in this one, through :func:`directlb.controllers.runtime.run` (the code path of
``directlb controller``), with the webhook off: the pods carry the gate in their template, as
the webhook would add it. Every clock read is ``time.time()`` on the same host.

Workload: ``services`` direct-access LoadBalancer Services (the seed's shape), each selecting
its own Deployment of ENI-mode pods that carry the gate
``cloud.tencent.com/load-balancer-backendgroup-ready``. The Deployments start at 0 replicas;
once every Service has its CLB, pods are added one at a time (a random Deployment scaled up by
one, then a random pause averaging ``gap`` seconds), so that the targets turn healthy at
random moments relative to the gate controller's 2 s health reads rather than in lockstep.

Measured for each pod:

* **t_healthy**: when the emulator's health prober marked the pod's target (its CLB, ``ip:80``)
  ``Alive``, from then on what DescribeTargetHealth reports. Read from the emulator's
  ``GET /_emulator/target-health`` (the ``time.time()`` of the target's last status change).
* **t_true**: when a pod watch in this process received the pod with the gate condition True.
  The condition's ``lastTransitionTime`` has whole seconds only (RFC 3339 without fraction), too
  coarse for a figure of about 2 s, so the watch's arrival time is used; it comes after the
  controller's status patch by the simulator's watch delivery and this event loop's lag (shared
  with the controller; the largest lag seen is reported).

The figure is t_true - t_healthy: p50/p90/p99/max over every pod whose gate turned True with
reason ``LoadBalancerBackendHealthy``. The target is p99 under 2 s (the gate controller's
health-read period) plus one health-check interval in wall seconds (IntervalTime 5 cloud
seconds times ``--time-scale``, floored at the emulator's 50 ms). A gate True before its target
was healthy would be a defect; such pods are counted, not hidden.

Where the time goes, per pod: until the controller's first DescribeTargetHealth of the CLB
that began after t_healthy; from its answer to the status patch setting True; that patch's round
trip; and on to the watch event. For that, two methods are wrapped in this process for the run
only, recording times and changing nothing: the cloud adapter's
``TencentLoadBalancers.target_health`` (the emulator's ledger does not say which CLBs a Describe
call read) and lightkube's ``AsyncClient.patch`` (only ``pods/status`` patches that set the gate
True are timed). Also reported: each process's CPU seconds per second over the run (the
emulator probes every target once per interval, so a tiny ``--time-scale`` loads the simulator,
which serves the pods, and the emulator), the largest event-loop lag here, and load averages.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from lightkube import AsyncClient, KubeConfig
from lightkube.core.exceptions import ApiError
from lightkube.models.apps_v1 import DeploymentSpec
from lightkube.models.core_v1 import (
    Container,
    ContainerPort,
    PodReadinessGate,
    PodSpec,
    PodTemplateSpec,
    ServicePort,
    ServiceSpec,
)
from lightkube.models.meta_v1 import LabelSelector, ObjectMeta
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Pod, Service

from directlb.bench.common import (
    EMULATOR_READY,
    SIM_READY,
    child_process,
    cpu_seconds,
    gather_limited,
    loadavg,
    percentiles,
    report,
)
from directlb.bench.common import (
    cpu_model as _cpu_model,
)
from directlb.bench.common import (
    nodes_ready as _nodes_ready,
)
from directlb.bench.common import (
    verdict as _yes,
)
from directlb.bench.common import (
    wait_for as _wait,
)
from directlb.bench.emulator import REGION, SECRET_ID, SECRET_KEY
from directlb.cloud.config import Credentials, Timing
from directlb.cloud.port import TargetHealth
from directlb.cloud.tencent import TencentLoadBalancers
from directlb.controllers import runtime
from directlb.controllers.config import ControllerConfig, HostPort
from directlb.controllers.gate import RECHECK_PERIOD

LB_ID_ANNOTATION = "service.kubernetes.io/loadbalance-id"
ENI = {"tke.cloud.tencent.com/networks": "tke-route-eni"}
DIRECT = {"service.cloud.tencent.com/direct-access": "true"}
GATE = "cloud.tencent.com/load-balancer-backendgroup-ready"
HEALTHY_REASON = "LoadBalancerBackendHealthy"
NAMESPACE = "default"
BENCH_LABEL = {"directlb-bench": "gates"}
VPC_ID = "vpc-directlb"
# Loopback ranges of our own, apart from the tests', the demo's and the other benchmarks': a pod
# cannot bind podIP:80 while another simulator's pod holds it.
ENI_POD_CIDR = "127.147.0.0/16"
NODE_CIDR = "127.150.0.0/16"
CLUSTER_CIDR = "127.160.0.0/16"
SERVICE_CIDR = "127.166.0.0/16"
#: The listener's health check as the Service controller sets it (directlb/model/service.py).
INTERVAL_CLOUD_SECONDS = 5.0
#: The emulator's floor on a probe interval (directlb/emulator/health.py, MIN_INTERVAL).
MIN_INTERVAL_WALL = 0.05


@dataclass
class GateSample:
    pod: str
    service: str
    address: str
    healthy_at: float  # time.time(), emulator
    true_at: float  # time.time(), this process's pod watch
    last_transition_time: str
    latency_ms: float
    #: healthy -> the start of the first DescribeTargetHealth of its CLB after that (ledger).
    until_read_ms: float | None
    #: the end of that DescribeTargetHealth -> gate True (reconcile, patch, watch delivery).
    read_to_true_ms: float | None
    #: of which: the read's answer -> the controller sends the status patch setting True.
    read_to_patch_ms: float | None
    #: of which: that patch's round trip to the simulator.
    patch_ms: float | None
    #: of which: the patch answered -> the pod watch receives the pod with the gate True.
    patch_to_watch_ms: float | None


@dataclass
class GatesBenchResult:
    pods: int
    services: int
    nodes: int
    time_scale: float
    gap_seconds: float
    health_check_interval_wall_seconds: float
    gate_period_seconds: float
    target_ms: float
    samples: int
    excluded: dict[str, int]
    early_flips: int
    latency_ms: dict[str, float]
    until_read_ms: dict[str, float]
    read_to_true_ms: dict[str, float]
    read_to_patch_ms: dict[str, float]
    patch_ms: dict[str, float]
    patch_to_watch_ms: dict[str, float]
    read_gap_ms: dict[str, float]
    met: dict[str, bool]
    describe_target_health_calls: int
    #: the controller's ``target_health`` calls, and the CLBs they asked for in all.
    health_reads: int
    health_read_clbs: int
    ramp_seconds: float
    loop_lag_max_ms: float
    #: CPU seconds per wall second of each process, from the first pod added to the last gate
    #: True ("controller": this process, the pod watch and the polls included).
    cpu_share: dict[str, float]
    loadavg_start: list[float]
    loadavg_max_1m: float
    loadavg_end: list[float]
    method: str
    per_pod: list[GateSample]
    date: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
    cpu_count: int = field(default_factory=lambda: os.cpu_count() or 0)
    cpu_model: str = field(default_factory=lambda: _cpu_model())
    python: str = field(default_factory=lambda: sys.version.split()[0])


METHOD = (
    "t_healthy: the emulator's time.time() when its prober marked the target Alive "
    "(GET /_emulator/target-health); t_true: time.time() when this process's pod watch received "
    "the pod with the gate condition True (lastTransitionTime has whole seconds only)"
)


def _progress(message: str) -> None:
    print(f"[bench gates] {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def _latency(values: list[float]) -> dict[str, float]:
    """p50/p90/p99/max/mean in milliseconds (nearest rank, as :func:`percentiles`)."""
    if not values:
        return {}
    ordered = sorted(values)
    out = percentiles(ordered)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return {
        "p50": out["p50"],
        "p90": round(p90 * 1000, 3),
        "p99": out["p99"],
        "max": out["max"],
        "mean": out["mean"],
    }


# --- the workload -------------------------------------------------------------------------------


def _deployment(name: str) -> Deployment:
    labels = {"app": name}
    return Deployment(
        metadata=ObjectMeta(name=name, namespace=NAMESPACE, labels=labels),
        spec=DeploymentSpec(
            replicas=0,
            selector=LabelSelector(matchLabels=labels),
            template=PodTemplateSpec(
                metadata=ObjectMeta(labels={**labels, **BENCH_LABEL}, annotations=dict(ENI)),
                spec=PodSpec(
                    containers=[
                        Container(
                            name="nginx",
                            image="nginx:1.7.9",
                            ports=[ContainerPort(containerPort=80, protocol="TCP")],
                        )
                    ],
                    # What the webhook adds to every pod of a direct-access Service.
                    readinessGates=[PodReadinessGate(conditionType=GATE)],
                ),
            ),
        ),
    )


def _service(name: str) -> Service:
    return Service(
        metadata=ObjectMeta(
            name=name, namespace=NAMESPACE, labels={"app": name}, annotations=dict(DIRECT)
        ),
        spec=ServiceSpec(
            type="LoadBalancer",
            externalTrafficPolicy="Cluster",
            selector={"app": name},
            ports=[ServicePort(name="80-80-no", port=80, protocol="TCP", targetPort=80)],
        ),
    )


# --- what is observed ---------------------------------------------------------------------------


@dataclass
class SeenTrue:
    at: float
    app: str
    ip: str
    reason: str
    last_transition_time: str


class GateWatch:
    """A pod watch of its own: the first arrival of each pod (by UID) with the gate True."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self.true: dict[str, SeenTrue] = {}
        self.names: dict[str, str] = {}

    async def run(self) -> None:
        while True:
            try:
                async for _op, pod in self.client.watch(
                    Pod, namespace=NAMESPACE, labels={**BENCH_LABEL}
                ):
                    self._seen(pod, time.time())
            except ApiError as error:  # e.g. 410 Gone: watch again
                _progress(f"pod watch ended ({error}); watching again")
                await asyncio.sleep(0.1)

    def _seen(self, pod: Any, now: float) -> None:
        meta = pod.metadata
        if meta is None or meta.uid is None or meta.uid in self.true:
            return
        status = pod.status
        for condition in (status.conditions if status else None) or []:
            if condition.type == GATE and condition.status == "True":
                stamp = condition.lastTransitionTime
                self.names[meta.uid] = meta.name or ""
                self.true[meta.uid] = SeenTrue(
                    at=now,
                    app=(meta.labels or {}).get("app", ""),
                    ip=(status.podIP if status else None) or "",
                    reason=condition.reason or "",
                    last_transition_time=stamp.isoformat() if stamp else "",
                )
                return


class Ledger:
    """The emulator's own endpoints (``/_emulator/...``)."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.session = aiohttp.ClientSession()

    async def close(self) -> None:
        await self.session.close()


class HealthLog:
    """The emulator's health transitions, polled: (CLB, ip, port) -> when it turned Alive."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.alive: dict[tuple[str, str, int], float] = {}
        self.intervals: set[float] = set()

    async def poll(self) -> None:
        url = f"http://{self.ledger.endpoint}/_emulator/target-health"
        async with self.ledger.session.get(url) as resp:
            resp.raise_for_status()
            body = await resp.json()
        for target in body["targets"]:
            self.intervals.add(float(target["intervalSeconds"]))
            if target["status"] == "Alive":
                key = (target["loadBalancerId"], target["ip"], int(target["port"]))
                self.alive.setdefault(key, float(target["since"]))

    async def run(self, every: float = 0.25) -> None:
        while True:
            with contextlib.suppress(OSError, ValueError):
                await self.poll()
            await asyncio.sleep(every)


class LoopLag:
    """How late a 10 ms sleep wakes up in this process's event loop (the controller's too)."""

    def __init__(self) -> None:
        self.worst = 0.0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.01)
            self.worst = max(self.worst, loop.time() - before - 0.01)


class LoadLog:
    def __init__(self) -> None:
        self.max_1m = 0.0

    async def run(self) -> None:
        while True:
            self.max_1m = max(self.max_1m, loadavg()[0])
            await asyncio.sleep(2.0)


# --- steps ---------------------------------------------------------------------------------------


async def _lb_ids(client: AsyncClient) -> dict[str, str]:
    found: dict[str, str] = {}
    async for service in client.list(Service, namespace=NAMESPACE):
        meta = service.metadata
        lb = (meta.annotations or {}).get(LB_ID_ANNOTATION) if meta else None
        if meta and meta.name and lb:
            found[meta.name] = lb
    return found


async def run_gates_bench(
    *,
    pods: int = 200,
    services: int = 4,
    nodes: int = 5,
    gap: float = 0.25,
    time_scale: float = 0.01,
    timeout: float = 600.0,
    seed: int = 8,
) -> GatesBenchResult:
    with tempfile.TemporaryDirectory() as tmp:
        kubeconfig = Path(tmp) / "kubeconfig"
        sim_argv = [
            sys.executable, "-m", "directlb", "--log-level", "WARNING", "sim",
            "--listen", "127.0.0.1:0", "--nodes", str(nodes),
            "--kubeconfig-out", str(kubeconfig),
            "--eni-pod-cidr", ENI_POD_CIDR, "--node-cidr", NODE_CIDR,
            "--cluster-cidr", CLUSTER_CIDR, "--service-cidr", SERVICE_CIDR,
        ]  # fmt: skip
        emulator_argv = [
            sys.executable, "-m", "directlb", "--log-level", "WARNING", "clb-emulator",
            "--listen", "127.0.0.1:0", "--secret-id", SECRET_ID, "--secret-key", SECRET_KEY,
            "--region", REGION, "--vpc-id", VPC_ID, "--time-scale", str(time_scale),
            "--seed", "1", "--no-data-plane",
            "--vpc-cidr", ENI_POD_CIDR, "--vpc-cidr", NODE_CIDR,
        ]  # fmt: skip
        async with (
            child_process(sim_argv, ready=SIM_READY, timeout=120) as (_match, sim_pid),
            child_process(emulator_argv, ready=EMULATOR_READY) as (emulator_match, emulator_pid),
        ):
            return await _run(
                pids={"sim": sim_pid, "emulator": emulator_pid, "controller": os.getpid()},
                kubeconfig=kubeconfig,
                endpoint=emulator_match.group(1).decode(),
                pods=pods,
                services=services,
                nodes=nodes,
                gap=gap,
                time_scale=time_scale,
                timeout=timeout,
                rng=random.Random(seed),
            )


async def _run(
    *,
    pids: dict[str, int],
    kubeconfig: Path,
    endpoint: str,
    pods: int,
    services: int,
    nodes: int,
    gap: float,
    time_scale: float,
    timeout: float,
    rng: random.Random,
) -> GatesBenchResult:
    client = AsyncClient(config=KubeConfig.from_file(kubeconfig), field_manager="bench")
    ledger = Ledger(endpoint)
    stop = asyncio.Event()
    started: asyncio.Future[runtime.Started] = asyncio.get_running_loop().create_future()
    config = ControllerConfig(
        cluster_id="cls-bench",
        vpc_id=VPC_ID,
        credentials=Credentials(secret_id=SECRET_ID, secret_key=SECRET_KEY),
        region=REGION,
        kubeconfig=kubeconfig,
        clb_endpoint=endpoint,
        clb_protocol="http",
        leader_elect=False,
        identity="bench-gates",
        webhook_listen=HostPort("127.0.0.1", 0),
        metrics_listen=HostPort("127.0.0.1", 0),
        # The pods carry the gate in their template; the webhook would add the same.
        webhook=False,
    )
    watch = GateWatch(client)
    health = HealthLog(ledger)
    lag = LoopLag()
    load = LoadLog()
    reads = HealthReads()
    patches = StatusPatches()
    loadavg_start = loadavg()
    background: list[asyncio.Task[None]] = []
    controller: asyncio.Task[None] | None = None
    restore = contextlib.ExitStack()
    restore.enter_context(reads.installed())
    restore.enter_context(patches.installed())
    try:
        background.append(asyncio.create_task(load.run()))
        await _wait(lambda: _nodes_ready(client, nodes), timeout=120, interval=0.25, what="nodes")
        _progress(f"{nodes} nodes Ready; starting the controller")
        controller = asyncio.create_task(
            runtime.run(
                config,
                stop=stop,
                on_started=started.set_result,
                timing=Timing().scaled(time_scale),
            )
        )
        waiting: set[asyncio.Future[Any]] = {controller, started}
        done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if controller in done:
            controller.result()
            raise RuntimeError("the controller stopped before its caches synced")

        names = [f"gate-{i:03d}" for i in range(services)]
        await gather_limited([client.create(_deployment(n)) for n in names], 8)
        await gather_limited([client.create(_service(n)) for n in names], 8)

        async def every_clb() -> bool:
            return len(await _lb_ids(client)) == services

        await _wait(every_clb, timeout=timeout, interval=0.2, what="a CLB for every Service")
        lbs = await _lb_ids(client)
        _progress(f"{services} Services have their CLB; adding {pods} pods one at a time")

        background += [
            asyncio.create_task(watch.run()),
            asyncio.create_task(health.run()),
            asyncio.create_task(lag.run()),
        ]
        replicas = dict.fromkeys(names, 0)
        ramp = time.perf_counter()
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        for i in range(pods):
            name = rng.choice(names)
            replicas[name] += 1
            await client.patch(
                Deployment, name, {"spec": {"replicas": replicas[name]}}, namespace=NAMESPACE
            )
            await asyncio.sleep(rng.expovariate(1 / gap) if gap > 0 else 0)
            if (i + 1) % 50 == 0:
                _progress(f"  {i + 1}/{pods} pods added, {len(watch.true)} gates True")
        ramp_seconds = time.perf_counter() - ramp

        async def every_gate() -> bool:
            return len(watch.true) >= pods

        await _wait(every_gate, timeout=timeout, interval=0.2, what="every gate True")
        busy = time.perf_counter() - ramp
        cpu_share = {
            name: round((cpu_seconds(pid) - cpu_before[name]) / busy, 2)
            for name, pid in pids.items()
        }
        await health.poll()
        _progress(f"every gate True, {time.perf_counter() - ramp:.1f}s after the first pod")
        summary = await _ledger_summary(ledger)
    finally:
        for task in background:
            task.cancel()
        for task in background:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        stop.set()
        if controller is not None:
            with contextlib.suppress(TimeoutError, ApiError, asyncio.CancelledError):
                await asyncio.wait_for(controller, 30)
        restore.close()
        await ledger.close()
        await client.close()

    samples: list[GateSample] = []
    excluded: dict[str, int] = {}
    for uid, seen in watch.true.items():
        if seen.reason != HEALTHY_REASON:
            excluded[f"reason {seen.reason}"] = excluded.get(f"reason {seen.reason}", 0) + 1
            continue
        lb_id = lbs.get(seen.app, "")
        healthy_at = health.alive.get((lb_id, seen.ip, 80))
        if healthy_at is None:
            excluded["target never seen Alive"] = excluded.get("target never seen Alive", 0) + 1
            continue
        samples.append(
            GateSample(
                pod=watch.names.get(uid, uid),
                service=seen.app,
                address=f"{seen.ip}:80",
                healthy_at=round(healthy_at, 6),
                true_at=round(seen.at, 6),
                last_transition_time=seen.last_transition_time,
                latency_ms=round((seen.at - healthy_at) * 1000, 3),
                **_split(
                    reads.reads.get(lb_id, []),
                    patches.sent.get(watch.names.get(uid, "")),
                    healthy_at,
                    seen.at,
                ),
            )
        )
    interval = max(health.intervals, default=max(INTERVAL_CLOUD_SECONDS * time_scale, 0.05))
    target_ms = round((RECHECK_PERIOD + interval) * 1000, 3)
    latency = _latency([s.latency_ms / 1000 for s in samples])
    gaps = [b[0] - a[0] for per_lb in reads.reads.values() for a, b in itertools.pairwise(per_lb)]
    met = {"p99_under_period_plus_interval": bool(samples) and latency["p99"] < target_ms}
    return GatesBenchResult(
        pods=pods,
        services=services,
        nodes=nodes,
        time_scale=time_scale,
        gap_seconds=gap,
        health_check_interval_wall_seconds=round(interval, 6),
        gate_period_seconds=RECHECK_PERIOD,
        target_ms=target_ms,
        samples=len(samples),
        excluded=excluded,
        early_flips=sum(s.latency_ms < 0 for s in samples),
        latency_ms=latency,
        until_read_ms=_latency(
            [s.until_read_ms / 1000 for s in samples if s.until_read_ms is not None]
        ),
        read_to_true_ms=_latency(
            [s.read_to_true_ms / 1000 for s in samples if s.read_to_true_ms is not None]
        ),
        read_to_patch_ms=_part(samples, "read_to_patch_ms"),
        patch_ms=_part(samples, "patch_ms"),
        patch_to_watch_ms=_part(samples, "patch_to_watch_ms"),
        read_gap_ms=_latency(gaps),
        met=met,
        describe_target_health_calls=int(summary.get("DescribeTargetHealth", {}).get("calls", 0)),
        health_reads=len(reads.calls),
        health_read_clbs=sum(reads.calls),
        ramp_seconds=round(ramp_seconds, 1),
        loop_lag_max_ms=round(lag.worst * 1000, 1),
        cpu_share=cpu_share,
        loadavg_start=loadavg_start,
        loadavg_max_1m=max(load.max_1m, loadavg()[0]),
        loadavg_end=loadavg(),
        method=METHOD,
        per_pod=sorted(samples, key=lambda s: s.healthy_at),
    )


class HealthReads:
    """Every ``target_health`` call the controller makes (its gate health poller's reads), as the
    controller sees it: (start, end) wall times per CLB. The emulator's ledger does not name the
    CLBs a Describe call reads, so the adapter's method is wrapped, in this process only, for
    the run; the wrapper only records times."""

    def __init__(self) -> None:
        self.reads: dict[str, list[tuple[float, float]]] = {}
        self.calls: list[int] = []  # CLBs asked for, per call

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        original = TencentLoadBalancers.target_health

        async def recorded(
            cloud: TencentLoadBalancers, lb_ids: Sequence[str]
        ) -> dict[str, tuple[TargetHealth, ...]]:
            start = time.time()
            answer = await original(cloud, lb_ids)
            end = time.time()
            self.calls.append(len(lb_ids))
            for lb in lb_ids:
                self.reads.setdefault(lb, []).append((start, end))
            return answer

        TencentLoadBalancers.target_health = recorded  # type: ignore[method-assign,assignment]
        try:
            yield
        finally:
            TencentLoadBalancers.target_health = original  # type: ignore[method-assign]


class StatusPatches:
    """When the controller sent, and got the answer to, the status patch that set each pod's
    gate True (lightkube's ``AsyncClient.patch`` wrapped in this process for the run; the
    wrapper only records times)."""

    def __init__(self) -> None:
        self.sent: dict[str, tuple[float, float]] = {}

    @staticmethod
    def _sets_true(body: Any) -> bool:
        conditions = (
            (body.get("status") or {}).get("conditions") if isinstance(body, dict) else None
        )
        return any(c.get("type") == GATE and c.get("status") == "True" for c in conditions or [])

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        original = AsyncClient.patch

        async def recorded(
            client: AsyncClient, res: Any, name: str, obj: Any, **kwargs: Any
        ) -> Any:
            if res is not Pod.Status or not self._sets_true(obj):
                return await original(client, res, name, obj, **kwargs)
            start = time.time()
            answer = await original(client, res, name, obj, **kwargs)
            self.sent.setdefault(name, (start, time.time()))
            return answer

        AsyncClient.patch = recorded  # type: ignore[method-assign,assignment]
        try:
            yield
        finally:
            AsyncClient.patch = original  # type: ignore[method-assign]


def _split(
    reads: list[tuple[float, float]],
    patch: tuple[float, float] | None,
    healthy_at: float,
    true_at: float,
) -> dict[str, float | None]:
    """The latency in parts: until the first read of the CLB that began after the target turned
    healthy; from that read's answer to the gate True, and within that, to the status patch
    sent, the patch's round trip, and on to the watch event."""
    out: dict[str, float | None] = dict.fromkeys(
        ("until_read_ms", "read_to_true_ms", "read_to_patch_ms", "patch_ms", "patch_to_watch_ms")
    )
    read_end: float | None = None
    for start, end in reads:
        if start >= healthy_at:
            out["until_read_ms"] = round((start - healthy_at) * 1000, 3)
            out["read_to_true_ms"] = round((true_at - end) * 1000, 3)
            read_end = end
            break
    if patch is not None:
        sent, answered = patch
        if read_end is not None:
            out["read_to_patch_ms"] = round((sent - read_end) * 1000, 3)
        out["patch_ms"] = round((answered - sent) * 1000, 3)
        out["patch_to_watch_ms"] = round((true_at - answered) * 1000, 3)
    return out


def _part(samples: list[GateSample], name: str) -> dict[str, float]:
    values = [getattr(s, name) for s in samples]
    return _latency([v / 1000 for v in values if v is not None])


async def _ledger_summary(ledger: Ledger) -> dict[str, Any]:
    url = f"http://{ledger.endpoint}/_emulator/ledger/summary"
    async with ledger.session.get(url) as resp:
        return dict((await resp.json())["actions"])


def _brief(lat: dict[str, float]) -> str:
    if not lat:
        return "-"
    return f"p50 {lat['p50']} ms, p90 {lat['p90']} ms, p99 {lat['p99']} ms, max {lat['max']} ms"


def render(result: GatesBenchResult) -> str:
    lat = result.latency_ms
    excluded = ", ".join(f"{why}: {n}" for why, n in result.excluded.items()) or "none"
    interval_ms = round(result.health_check_interval_wall_seconds * 1000, 3)
    figure = (
        f"p50 {lat['p50']} ms, p90 {lat['p90']} ms, p99 {lat['p99']} ms, max {lat['max']} ms "
        f"({result.samples} pods)"
        if lat
        else "no samples"
    )
    if result.per_pod:
        stdev = round(statistics.pstdev(s.latency_ms for s in result.per_pod), 1)
        figure += f"; mean {lat['mean']} ms, stdev {stdev} ms"
    load = result.loadavg_start
    return "\n".join(
        [
            "# directlb bench gates",
            "",
            f"- {result.date}; machine: {result.cpu_count} CPUs ({result.cpu_model}), "
            f"Python {result.python}; load average at start {load[0]:.2f} {load[1]:.2f} "
            f"{load[2]:.2f}, highest 1-min during the run {result.loadavg_max_1m:.2f}, at end "
            f"{result.loadavg_end[0]:.2f}",
            f"- workload: {result.pods} gated ENI pods added one at a time (random pauses, mean "
            f"{result.gap_seconds} s; {result.ramp_seconds} s in all) to {result.services} "
            f"direct-access Services on {result.nodes} nodes; `directlb sim` and "
            f"`directlb clb-emulator --time-scale {result.time_scale}` in their own processes, "
            "the controller (`runtime.run`, webhook off, gates in the pod template) in this one",
            f"- health-check interval: {result.health_check_interval_wall_seconds} s wall "
            f"(IntervalTime 5 cloud s x {result.time_scale}, floor 0.05 s); the gate "
            f"controller reads target health every {result.gate_period_seconds} s",
            f"- method: {result.method}",
            "",
            "| figure | target | measured | |",
            "|---|---|---|---|",
            f"| target healthy (emulator) -> gate True (pod watch) | p99 < "
            f"{result.gate_period_seconds * 1000:.0f} ms + {interval_ms} ms = "
            f"{result.target_ms} ms | {figure} | "
            f"{_yes(result.met['p99_under_period_plus_interval'])} |",
            f"| of which: healthy -> next DescribeTargetHealth of its CLB begins | - | "
            f"{_brief(result.until_read_ms)} | |",
            f"| of which: that answer -> gate True (reconcile, patch, watch) | - | "
            f"{_brief(result.read_to_true_ms)} | |",
            f"| ... within it: the answer -> status patch sent | - | "
            f"{_brief(result.read_to_patch_ms)} | |",
            f"| ... within it: the status patch's round trip (simulator) | - | "
            f"{_brief(result.patch_ms)} | |",
            f"| ... within it: patch answered -> watch event received | - | "
            f"{_brief(result.patch_to_watch_ms)} | |",
            f"| time between two DescribeTargetHealth reads of a CLB | - | "
            f"{_brief(result.read_gap_ms)} | |",
            f"| gates True before their target was healthy | 0 | {result.early_flips} | |",
            f"| pods left out (gate True for another reason, or no Alive record) | 0 | "
            f"{excluded} | |",
            f"| DescribeTargetHealth calls during the run | - | "
            f"{result.describe_target_health_calls} (the controller's health reads: "
            f"{result.health_reads}, asking for {result.health_read_clbs} CLBs in all) | |",
            f"| largest event-loop lag in this process (controller and watch) | - | "
            f"{result.loop_lag_max_ms} ms | |",
            "| CPU seconds per second during the run: "
            + ", ".join(result.cpu_share)
            + " | - | "
            + ", ".join(str(v) for v in result.cpu_share.values())
            + " | |",
            "",
        ]
    )


def main(args: Any) -> int:
    if args.quick:
        pods, services, nodes, gap = 6, 2, 2, 0.2
    else:
        pods, services, nodes, gap = args.pods, args.services, args.nodes, args.gap
    # The controller runs in this process: its INFO lines would bury the progress lines.
    logging.getLogger("directlb").setLevel(max(logging.WARNING, logging.root.level))
    result = asyncio.run(
        run_gates_bench(
            pods=pods,
            services=services,
            nodes=nodes,
            gap=gap,
            time_scale=args.time_scale,
            timeout=120.0 if args.quick else 600.0,
        )
    )
    report(result, render(result), out=args.out, name="gates")
    return 0 if all(result.met.values()) else 1
