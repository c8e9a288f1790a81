"""``directlb demo``: the seed's comparison table, measured on real traffic.

One process runs the simulated cluster (3 nodes), the CLB emulator with its data plane and the
controller (the code path of ``directlb controller``, as ``directlb up`` runs it); the HTTP load
runs in a child process (:mod:`directlb.demo.load`). Then:

1. the seed's two manifests are applied unchanged, and the demo shows what the seed shows:
   ``kubectl get pod -o wide`` (READINESS GATES 1/1), ``kubectl get service -o wide`` (the
   EXTERNAL-IP) and the CLB's backends, the pod IPs;
2. for each mode (direct with readiness gates, direct without, NodePort, Local), the same two
   objects in a namespace of their own (:func:`directlb.demo.manifests.for_mode`): a
   session-persistence check at steady state, then a steady HTTP load through the VIP while the
   Deployment rolls to a new image;
3. the table, ``report.json``, ``demo.png`` and ``demo.log`` in ``--out``.

Time: the emulator runs at a time scale (0.25, 0.05 with ``--quick``: one modeled cloud second
takes that many seconds of wall time). That scales its task durations *and its health checks*:
the controller's direct-mode check (interval 5 s, healthy after 2) passes after about 2.5 s of
wall time instead of 10 s, so the whole run fits in about a minute and a half. The controller's
own timings (task polling, retries) are scaled alike
(:meth:`directlb.cloud.config.Timing.scaled`). The simulated pods are not: they answer at once
and serve until their grace period ends after SIGTERM, the simulator's default.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import logging
import os
import platform
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
from lightkube import AsyncClient, KubeConfig
from lightkube.codecs import from_dict
from lightkube.core.exceptions import ApiError
from lightkube.models.core_v1 import Container, PodSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.admissionregistration_v1 import MutatingWebhookConfiguration
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Namespace, Node, Pod, Service
from tencentcloud.clb.v20180317 import clb_client_async, models
from tencentcloud.common import credential
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile

from directlb.cloud.config import Credentials, Timing
from directlb.controllers import runtime
from directlb.controllers.config import WEBHOOK_URL_LOCAL, ControllerConfig, HostPort
from directlb.demo import manifests, report
from directlb.demo.load import LoadProcess, client_addresses, get, sequential
from directlb.demo.up import register_instances
from directlb.emulator.config import EmulatorConfig
from directlb.emulator.server import Emulator
from directlb.sim.cluster.cluster import Cluster
from directlb.sim.cluster.config import ClusterConfig
from directlb.sim.server import ApiServer, SimConfig
from directlb.webhook.configuration import NAME as WEBHOOK_CONFIGURATION

log = logging.getLogger("directlb.demo")

REGION = "ap-guangzhou"
CLUSTER_ID = "cls-directlb-demo"
FIELD_MANAGER = "directlb-demo"
LB_ID_ANNOTATION = "service.kubernetes.io/loadbalance-id"
SERVICE_FINALIZER = "directlb.io/service-lb"
#: A median latency above this before the rollout means the machine could not keep up.
OVERLOADED_MS = 50.0
GATE = manifests.GATE
PORT = 80


@dataclass(frozen=True)
class Settings:
    """How long and how hard: the full run and ``--quick`` differ only here."""

    time_scale: float
    replicas: int  # per mode run: two pods per node, so Local mode has several behind a node
    rate: float  # requests/s of the steady load, all clients together
    clients: int  # distinct client addresses
    persistence_requests: int  # per client, at steady state
    warmup: float  # seconds of load before the rollout starts
    settle: float  # seconds of load after the CLB has converged on the new pods
    step_timeout: float  # seconds any one wait may take before the demo gives up


FULL = Settings(
    # Not smaller: the health checks' 2 s timeout becomes 0.5 s of wall time. Local mode's HTTP
    # check is answered by kube-proxy in this process (direct and NodePort checks are TCP
    # connects, which the kernel answers); at 0.1 (0.2 s) a loaded 2-core machine made it time
    # out during rollouts, and the CLB dropped healthy nodes (docs/demo.md).
    time_scale=0.25,
    replicas=6,
    rate=100.0,
    clients=12,
    persistence_requests=20,
    warmup=5.0,
    settle=5.0,
    step_timeout=60.0,
)
QUICK = Settings(
    time_scale=0.05,
    replicas=6,
    rate=60.0,
    clients=12,
    persistence_requests=12,
    warmup=1.0,
    settle=1.0,
    step_timeout=45.0,
)


@dataclass(frozen=True)
class Mode:
    key: str
    title: str
    direct: bool
    local: bool
    gates: bool

    @property
    def namespace(self) -> str:
        return f"demo-{self.key}"


MODES = (
    Mode("direct-gates", "direct, readiness gates", direct=True, local=False, gates=True),
    Mode("direct-no-gates", "direct, no gates", direct=True, local=False, gates=False),
    Mode("nodeport", "NodePort", direct=False, local=False, gates=False),
    Mode("local", "Local", direct=False, local=True, gates=False),
)


class DemoError(RuntimeError):
    """A step did not happen in time; the message says which."""


# --- progress ------------------------------------------------------------------------------------


class Progress:
    """Lines for what happened; one status line, rewritten in place on a terminal (printed at
    most every 2 s otherwise), for what is happening."""

    def __init__(self) -> None:
        self.tty = sys.stdout.isatty()
        self.t0 = time.monotonic()
        self._status = ""
        self._last_plain = 0.0

    def _clock(self) -> str:
        return f"[{time.monotonic() - self.t0:5.1f}s]"

    def line(self, text: str = "") -> None:
        self._clear()
        print(text, flush=True)

    def step(self, text: str) -> None:
        self.line(f"{self._clock()} {text}")

    def status(self, text: str) -> None:
        text = f"{self._clock()} {text}"
        if self.tty:
            self._clear()
            sys.stdout.write(text[:160])
            sys.stdout.flush()
            self._status = text[:160]
        elif time.monotonic() - self._last_plain >= 2.0:
            self._last_plain = time.monotonic()
            print(text, flush=True)

    def _clear(self) -> None:
        if self.tty and self._status:
            sys.stdout.write("\r" + " " * len(self._status) + "\r")
            self._status = ""


# --- the stack -----------------------------------------------------------------------------------


class Stack:
    """Simulator + emulator + controller, in this process."""

    def __init__(self, base: Path, settings: Settings) -> None:
        self.base = base
        self.settings = settings
        self.server = ApiServer(SimConfig())
        self.emulator_config = EmulatorConfig(
            secret_id="AKID" + secrets.token_hex(16),
            secret_key=secrets.token_hex(16),
            region=REGION,
            time_scale=settings.time_scale,
        )
        self.emulator = Emulator(self.emulator_config)
        self.cluster: Cluster | None = None
        self.client: AsyncClient | None = None
        self.kubeconfig = base / "kubeconfig"
        self._stop = asyncio.Event()
        self._controller: asyncio.Task[None] | None = None
        self.config: ControllerConfig | None = None
        self.webhook = True
        #: How the "direct, readiness gates" pods get their gate: "webhook" while a dry-run pod
        #: gets it at admission (:func:`gates_ready`), else "pod template" (written into the
        #: Deployment's template).
        self.gates_path = "webhook"

    async def start(self) -> None:
        await self.server.start("127.0.0.1", 0)
        self.cluster = Cluster.for_server(self.server, ClusterConfig(nodes=3))
        self.server.write_kubeconfig(self.kubeconfig)
        await self.cluster.start()
        await self.emulator.start("127.0.0.1", 0)
        self.client = AsyncClient(
            config=KubeConfig.from_file(self.kubeconfig), field_manager=FIELD_MANAGER
        )
        await register_instances(self.client, self.emulator)
        self.config = ControllerConfig(
            cluster_id=CLUSTER_ID,
            vpc_id=self.emulator_config.vpc_id,
            credentials=Credentials(
                secret_id=self.emulator_config.secret_id,
                secret_key=self.emulator_config.secret_key,
            ),
            region=REGION,
            kubeconfig=self.kubeconfig,
            clb_endpoint=self.emulator.endpoint,
            clb_protocol="http",
            leader_elect=False,
            identity=f"directlb-demo-{os.getpid()}",
            webhook_listen=HostPort("127.0.0.1", 0),
            # The API server calls the webhook where this process serves it.
            webhook_url=WEBHOOK_URL_LOCAL,
            metrics_listen=HostPort("127.0.0.1", 0),
        )
        await self.start_controller(webhook=True)

    async def start_controller(self, *, webhook: bool) -> None:
        """``runtime.run``, the code path of ``directlb controller`` (``--no-webhook`` when
        ``webhook`` is False); returns once its caches are synced."""
        config = self.config
        assert config is not None
        self._stop = asyncio.Event()
        started = asyncio.Event()
        self.webhook = webhook
        self._controller = asyncio.create_task(
            runtime.run(
                replace(config, webhook=webhook),
                stop=self._stop,
                on_started=lambda _: started.set(),
                timing=Timing().scaled(self.settings.time_scale),
            ),
            name="controller",
        )
        waiter = asyncio.create_task(started.wait())
        await asyncio.wait({waiter, self._controller}, return_when=asyncio.FIRST_COMPLETED)
        if self._controller.done():
            waiter.cancel()
            self._controller.result()
            raise DemoError("the controller stopped while starting")

    async def stop_controller(self) -> None:
        self._stop.set()
        if self._controller is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._controller, 30)
            self._controller = None

    async def without_webhook(self) -> None:
        """Restart the controller with ``--no-webhook`` and remove the webhook's configuration
        (which that flag leaves alone): from now on new pods get no readiness gate."""
        await self.stop_controller()
        with contextlib.suppress(ApiError):
            await self.kube.delete(MutatingWebhookConfiguration, WEBHOOK_CONFIGURATION)
        await self.start_controller(webhook=False)

    async def stop(self) -> None:
        await self.stop_controller()
        if self.client is not None:
            await self.client.close()
        await self.emulator.stop()
        if self.cluster is not None:
            await self.cluster.stop()
        await self.server.stop()

    @property
    def kube(self) -> AsyncClient:
        assert self.client is not None
        return self.client

    def clb(self) -> clb_client_async.ClbClient:
        profile = ClientProfile(
            httpProfile=HttpProfile(endpoint=self.emulator.endpoint, protocol="http")
        )
        return clb_client_async.ClbClient(
            credential.Credential(self.emulator_config.secret_id, self.emulator_config.secret_key),
            REGION,
            profile,
        )

    async def table(self, path: str) -> list[list[str]]:
        """What ``kubectl get … -o wide`` prints: the server's Table, every column."""
        ca = self.base / "ca.pem"
        if not ca.exists():
            ca.write_bytes(self.server.ca_pem or b"")
        async with httpx.AsyncClient(verify=str(ca)) as http:
            answer = await http.get(
                f"{self.server.url}{path}",
                headers={
                    "Authorization": f"Bearer {self.server.token}",
                    "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io",
                },
            )
            answer.raise_for_status()
        table = answer.json()
        header = [str(c["name"]).upper() for c in table["columnDefinitions"]]
        return [header, *([str(cell) for cell in row["cells"]] for row in table["rows"])]


def render(rows: list[list[str]]) -> str:
    """Columns as kubectl's tabwriter lays them out (3 spaces between columns)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


# --- waiting -------------------------------------------------------------------------------------


async def until(
    what: str,
    check: Callable[[], Awaitable[bool]],
    *,
    timeout: float,
    interval: float = 0.1,
    progress: Progress | None = None,
) -> float:
    """Poll ``check`` until it holds; the seconds it took. DemoError after ``timeout``."""
    t0 = time.monotonic()
    while True:
        if await check():
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise DemoError(
                f"gave up after {timeout:.0f}s waiting for {what}. If demo.log shows "
                "event=listener_bind_failed or event=pod_ports_unavailable, another directlb "
                "emulator or simulator (directlb up, a benchmark) is using the same loopback "
                "addresses: stop it and run the demo again"
            )
        if progress is not None:
            progress.status(f"waiting for {what}")
        await asyncio.sleep(interval)


def _ready(pod: Any) -> bool:
    conditions = (pod.status.conditions if pod.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def _gated(pod: Any) -> bool:
    gates = (pod.spec.readinessGates if pod.spec else None) or []
    return any(g.conditionType == GATE for g in gates)


async def live_pods(kube: AsyncClient, namespace: str) -> list[Any]:
    pods: list[Any] = [
        p async for p in kube.list(Pod, namespace=namespace, labels={"app": "nginx"})
    ]
    return [p for p in pods if p.metadata.deletionTimestamp is None]


@dataclass(frozen=True)
class Backend:
    address: str  # ENI IP, or the node's IP for a node target
    port: int
    healthy: bool
    instance: str  # "" for an ENI target


async def backends(stack: Stack, lb_id: str) -> list[Backend]:
    clb = stack.clb()
    try:
        request = models.DescribeTargetHealthRequest()
        request.LoadBalancerIds = [lb_id]
        answer = await clb.DescribeTargetHealth(request)
    finally:
        await clb.close()
    found: list[Backend] = []
    for lb in answer.LoadBalancers or []:
        for listener in lb.Listeners or []:
            for rule in listener.Rules or []:
                for target in rule.Targets or []:
                    instance = target.TargetId or ""
                    found.append(
                        Backend(
                            address=target.IP,
                            port=int(target.Port),
                            healthy=bool(target.HealthStatus),
                            instance=instance if instance.startswith("ins-") else "",
                        )
                    )
    return sorted(found, key=lambda b: (b.address, b.port))


async def service_lb(kube: AsyncClient, name: str, namespace: str) -> tuple[str, str] | None:
    """(CLB id, VIP) once the Service has both."""
    service: Any = await kube.get(Service, name, namespace=namespace)
    ingress = service.status.loadBalancer.ingress if service.status else None
    lb_id = (service.metadata.annotations or {}).get(LB_ID_ANNOTATION)
    if ingress and ingress[0].ip and lb_id:
        return lb_id, str(ingress[0].ip)
    return None


async def expected_backends(stack: Stack, mode: Mode, namespace: str) -> set[str]:
    """The addresses the CLB should hold once converged: pod IPs (direct), the nodes holding a
    ready pod (Local), every node (NodePort)."""
    pods = await live_pods(stack.kube, namespace)
    if mode.direct:
        return {p.status.podIP for p in pods if p.status and p.status.podIP}
    listed: list[Any] = [n async for n in stack.kube.list(Node)]
    nodes = {str(n.metadata.name): n for n in listed}

    def ip(name: str) -> str:
        addresses = nodes[name].status.addresses or []
        return str(next(a.address for a in addresses if a.type == "InternalIP"))

    if mode.local:
        return {ip(p.spec.nodeName) for p in pods if _ready(p) and p.spec.nodeName in nodes}
    return {ip(name) for name in nodes}


async def converged(stack: Stack, mode: Mode, namespace: str, lb_id: str) -> bool:
    bound = await backends(stack, lb_id)
    want = await expected_backends(stack, mode, namespace)
    return bool(want) and {b.address for b in bound} == want and all(b.healthy for b in bound)


async def vip_answers(vip: str) -> bool:
    """Whether ``GET /`` through the VIP gets an answer. A VIP that never answers while its CLB
    is ready usually means another emulator with a data plane (``directlb up``, a benchmark)
    holds the same address on this machine: the emulator logs ``listener_bind_failed``."""
    status, _error, _answer = await get(host=vip, port=PORT, source=client_addresses(1)[0])
    return 200 <= status < 400


# --- applying ------------------------------------------------------------------------------------


async def apply(stack: Stack, obj: dict[str, Any]) -> str:
    """Create ``obj``; what ``kubectl apply`` prints for it."""
    resource = from_dict(obj)
    await stack.kube.create(resource)
    kind = obj["kind"]
    group = {"Deployment": "deployment.apps", "Service": "service"}.get(kind, kind.lower())
    return f"{group}/{obj['metadata']['name']} created"


async def ensure_namespace(stack: Stack, name: str) -> None:
    with contextlib.suppress(ApiError):
        await stack.kube.create(Namespace(metadata=ObjectMeta(name=name)))


async def pods_ready(stack: Stack, namespace: str, replicas: int, *, gates: bool) -> bool:
    pods = await live_pods(stack.kube, namespace)
    ready = [p for p in pods if _ready(p) and (_gated(p) or not gates)]
    return len(pods) == replicas and len(ready) == replicas


async def gates_ready(
    stack: Stack, progress: Progress, settings: Settings, *, name: str, namespace: str
) -> None:
    """Wait until the webhook gives the gate to a pod created now behind Service ``name``: the
    controller has the Service in its cache (its finalizer is there) and a dry-run pod comes
    back from admission with the gate. If it never does, the gated mode writes the gate into
    its pod template (``stack.gates_path``)."""

    async def seen() -> bool:
        service: Any = await stack.kube.get(Service, name, namespace=namespace)
        return SERVICE_FINALIZER in (service.metadata.finalizers or [])

    await until("the controller to take the Service", seen, timeout=settings.step_timeout)
    probe = Pod(
        metadata=ObjectMeta(
            generateName="gate-probe-",
            namespace=namespace,
            labels={"app": "nginx"},
            annotations={manifests.ENI_ANNOTATION: manifests.ENI_MODE},
        ),
        spec=PodSpec(containers=[Container(name="probe", image="probe")]),
    )

    async def gated() -> bool:
        return _gated(await stack.kube.create(probe, dry_run=True))

    try:
        await until("the webhook to add the readiness gate", gated, timeout=15.0, interval=0.2)
    except DemoError:
        stack.gates_path = "pod template"
        progress.step(
            "the webhook does not add the readiness gate: the gated mode writes it into its pod "
            "template instead"
        )


# --- step 1: the seed ----------------------------------------------------------------------------


async def seed_step(stack: Stack, progress: Progress, settings: Settings) -> dict[str, Any]:
    progress.step("step 1: the seed's two manifests, unchanged")
    deployment = manifests.load(manifests.DEPLOYMENT)
    service = manifests.load(manifests.SERVICE)
    name, namespace = service["metadata"]["name"], "default"
    # The Service first: the webhook gives the gate to pods that a direct-access Service selects
    # when they are created (the seed's transcript says "service/nginx-service-eni configured":
    # its Service existed before the Deployment's pods).
    progress.line("$ kubectl apply -f nginx-service-eni.yaml")
    progress.line(await apply(stack, service))
    await gates_ready(stack, progress, settings, name=name, namespace=namespace)
    progress.line("$ kubectl apply -f nginx-deployment-eni.yaml")
    progress.line(await apply(stack, deployment))

    async def everything() -> bool:
        if not await pods_ready(stack, namespace, 3, gates=False):
            return False
        lb = await service_lb(stack.kube, name, namespace)
        return (
            lb is not None
            and await converged(stack, MODES[0], namespace, lb[0])
            and await vip_answers(lb[1])
        )

    took = await until(
        "3 pods Ready, an EXTERNAL-IP, 3 healthy CLB backends and an answer through the VIP",
        everything,
        timeout=settings.step_timeout,
        progress=progress,
    )
    progress.step(f"ready after {took:.1f}s")
    pods = await stack.table("/api/v1/namespaces/default/pods")
    services = await stack.table("/api/v1/namespaces/default/services")
    lb = await service_lb(stack.kube, name, namespace)
    assert lb is not None
    bound = await backends(stack, lb[0])
    progress.line("$ kubectl get pod -o wide")
    progress.line(render(pods))
    progress.line("$ kubectl get service -o wide")
    progress.line(render(services))
    progress.line(f"CLB {lb[0]}: its backends, as DescribeTargetHealth reports them")
    rows = [["LOADBALANCER", "VIP", "BACKEND (ENI IP:PORT)", "HEALTH"]]
    rows += [[lb[0], lb[1], f"{b.address}:{b.port}", "Alive" if b.healthy else "-"] for b in bound]
    progress.line(render(rows))
    pod_ips = sorted(
        p.status.podIP for p in await live_pods(stack.kube, namespace) if p.status.podIP
    )
    same = pod_ips == sorted(b.address for b in bound)
    gated = sum(1 for p in await live_pods(stack.kube, namespace) if _gated(p))
    progress.line(f"CLB backends == pod IPs: {same}; pods given the readiness gate: {gated}/3")
    return {
        "ready_seconds": round(took, 2),
        "pods": pods,
        "services": services,
        "load_balancer": lb[0],
        "vip": lb[1],
        "backends": [f"{b.address}:{b.port}" for b in bound],
        "backends_are_pod_ips": same,
        "pods_with_gate": gated,
    }


# --- step 2: one mode ----------------------------------------------------------------------------


async def run_mode(
    stack: Stack, mode: Mode, progress: Progress, settings: Settings
) -> report.ModeResult:
    namespace = mode.namespace
    progress.step(f"mode {mode.title!r}: namespace {namespace}")
    if not mode.gates and stack.webhook:
        progress.step("  restarting the controller with --no-webhook: new pods get no gate")
        await stack.without_webhook()
    await ensure_namespace(stack, namespace)
    deployment, service = manifests.for_mode(
        namespace=namespace,
        direct=mode.direct,
        local=mode.local,
        replicas=settings.replicas,
        gate_in_template=mode.gates and stack.gates_path == "pod template",
    )
    name = service["metadata"]["name"]
    await apply(stack, service)
    if mode.gates and stack.gates_path == "webhook":
        await gates_ready(stack, progress, settings, name=name, namespace=namespace)
    await apply(stack, deployment)
    lb: tuple[str, str] | None = None

    async def serving() -> bool:
        nonlocal lb
        if not await pods_ready(stack, namespace, settings.replicas, gates=mode.gates):
            return False
        lb = await service_lb(stack.kube, name, namespace)
        return (
            lb is not None
            and await converged(stack, mode, namespace, lb[0])
            and await vip_answers(lb[1])
        )

    took = await until(
        f"{settings.replicas} pods Ready and the CLB serving them through its VIP",
        serving,
        timeout=settings.step_timeout,
        progress=progress,
    )
    assert lb is not None
    lb_id, vip = lb
    pods = await live_pods(stack.kube, namespace)
    gated = sum(1 for p in pods if _gated(p))
    bound = await backends(stack, lb_id)
    described = (
        f"{len(bound)} pod IPs"
        if mode.direct
        else f"{len(bound)} nodes on nodePort {bound[0].port if bound else '?'}"
    )
    progress.step(
        f"  ready after {took:.1f}s: VIP {vip}:{PORT}, CLB {lb_id} -> {described}; "
        f"pods with the readiness gate: {gated}/{len(pods)}"
    )

    # Session persistence at steady state: every client, several requests in a row.
    clients = client_addresses(settings.clients)
    probe = await sequential(
        host=vip, port=PORT, clients=clients, requests_per_client=settings.persistence_requests
    )
    held = report.persistence_of(probe, requests_per_client=settings.persistence_requests)
    progress.step(
        f"  session persistence: {held.clients_on_one_pod}/{held.clients} clients stayed on "
        f"one pod over {settings.persistence_requests} requests"
    )

    # The steady load through the rollout.
    load = LoadProcess(host=vip, port=PORT, clients=settings.clients, rate=settings.rate)
    await load.start()
    try:
        await asyncio.sleep(settings.warmup)
        rollout_started = time.monotonic()
        await stack.kube.patch(
            Deployment,
            "nginx-deployment-eni",
            {
                "spec": {
                    "template": {
                        "spec": {"containers": [{"name": "nginx", "image": manifests.NEXT_IMAGE}]}
                    }
                }
            },
            namespace=namespace,
        )
        progress.step(f"  rolling to {manifests.NEXT_IMAGE} under {settings.rate:.0f} req/s")

        def show(what: str) -> None:
            p = load.progress
            progress.status(
                f"  {what}: {p['done']} requests, {p['failed']} failed "
                f"({time.monotonic() - rollout_started:.1f}s)"
            )

        async def complete() -> bool:
            show("rolling")
            d: Any = await stack.kube.get(Deployment, "nginx-deployment-eni", namespace=namespace)
            s = d.status
            return bool(
                s is not None
                and (s.observedGeneration or 0) >= (d.metadata.generation or 0)
                and s.updatedReplicas == settings.replicas
                and s.readyReplicas == settings.replicas
                and s.availableReplicas == settings.replicas
                and s.replicas == settings.replicas
            )

        rollout_seconds: float | None
        try:
            await until("the rollout", complete, timeout=settings.step_timeout, interval=0.05)
            rollout_seconds = time.monotonic() - rollout_started
        except DemoError:
            rollout_seconds = None

        async def clb_done() -> bool:
            show("CLB converging")
            return await converged(stack, mode, namespace, lb_id)

        clb_seconds: float | None
        try:
            await until("the CLB", clb_done, timeout=settings.step_timeout, interval=0.1)
            clb_seconds = time.monotonic() - rollout_started
        except DemoError:
            clb_seconds = None
        settle_until = time.monotonic() + settings.settle
        while time.monotonic() < settle_until:
            show("settling")
            await asyncio.sleep(0.1)
    finally:
        samples = await load.stop()
    load_seconds = time.monotonic() - load.started_at
    result = report.mode_result(
        mode=mode.key,
        title=mode.title,
        namespace=namespace,
        backends=described,
        pods_with_gate=f"{gated}/{len(pods)}",
        load=samples,
        probe=probe,
        requests_per_client=settings.persistence_requests,
        rollout_started=rollout_started - load.started_at,
        rollout_seconds=rollout_seconds,
        clb_converged_after=clb_seconds,
        load_seconds=load_seconds,
    )
    progress.step(
        f"  done: {result.requests} requests, {result.failed} failed, p50 "
        f"{report._num(result.p50_ms)} ms, p99 {report._num(result.p99_ms)} ms (before the "
        f"rollout: {report._num(result.steady_p50_ms)} / {report._num(result.steady_p99_ms)} "
        f"ms), source IP "
        f"{result.source_ip_label}, rollout "
        f"{report._num(result.rollout_seconds)}s, CLB converged after "
        f"{report._num(result.clb_converged_after)}s"
        + (f", errors {result.errors}" if result.errors else "")
    )
    return result


# --- the whole run -------------------------------------------------------------------------------


def check_port_80() -> str | None:
    """The seed's pods listen on port 80: say how to allow it when this user cannot bind it."""
    if os.geteuid() == 0:
        return None
    try:
        start = int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    except (OSError, ValueError):
        return None
    if start <= PORT:
        return None
    return (
        "the seed's pods and its Service listen on port 80, which this user may not bind "
        f"(net.ipv4.ip_unprivileged_port_start is {start}). Run as root, or allow it with: "
        "sudo sysctl net.ipv4.ip_unprivileged_port_start=80"
    )


async def demo(
    *, out: Path, settings: Settings, quick: bool, modes: tuple[Mode, ...] = MODES
) -> dict[str, Any]:
    progress = Progress()
    base = Path(tempfile.mkdtemp(prefix="directlb-demo-"))
    started_at = datetime.datetime.now(datetime.UTC)
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    stack = Stack(base, settings)
    progress.step(
        f"starting: simulated cluster (3 nodes), CLB emulator (time scale {settings.time_scale}) "
        "with its data plane, controller"
    )
    results: list[report.ModeResult] = []
    try:
        await stack.start()
        progress.step(f"stack up; KUBECONFIG={stack.kubeconfig}; logs in {out / 'demo.log'}")
        seed = await seed_step(stack, progress, settings)
        progress.line()
        progress.step(
            f"step 2: {len(modes)} modes, {settings.replicas} replicas each, a steady "
            f"{settings.rate:.0f} req/s from {settings.clients} clients (a new connection per "
            "request) while the Deployment rolls to a new image"
        )
        for mode in modes:
            results.append(await run_mode(stack, mode, progress, settings))
    finally:
        await stack.stop()
        shutil.rmtree(base, ignore_errors=True)
    finished_at = datetime.datetime.now(datetime.UTC)
    meta: dict[str, Any] = {
        "command": "directlb demo" + (" --quick" if quick else ""),
        "started": started_at.isoformat(timespec="seconds"),
        "seconds": round((finished_at - started_at).total_seconds(), 1),
        "machine": {
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "load_average_at_start": load_at_start,
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "settings": {
            "time_scale": settings.time_scale,
            "replicas": settings.replicas,
            "rate": settings.rate,
            "clients": settings.clients,
            "persistence_requests": settings.persistence_requests,
            "warmup": settings.warmup,
            "settle": settings.settle,
        },
        "time_note": (
            f"The CLB emulator ran at time scale {settings.time_scale}: modeled cloud seconds, "
            "its health-check intervals and timeouts included, take that fraction of wall "
            "time (the direct-mode check, interval 5 s and healthy after 2, passes after about "
            f"{10 * settings.time_scale:.1f} s). The controller's timings were scaled alike. "
            "Pods are not scaled."
        ),
        "gates": stack.gates_path,
        "seed": seed,
    }
    progress.line()
    table = report.text_table(results)
    progress.line(table)
    slow = [r.title for r in results if (r.steady_p50_ms or 0) > OVERLOADED_MS]
    if slow:
        meta["warning"] = (
            f"before their rollout, {', '.join(slow)} answered with a median above "
            f"{OVERLOADED_MS} ms: the machine was overloaded (load average "
            f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs), so the emulator's scaled "
            f"health checks (2 s timeout, {max(2 * settings.time_scale, 0.2):.1f} s of wall "
            "time here) may have "
            "timed out and the figures are not representative; run the demo again on a quieter "
            "machine"
        )
        progress.line(f"\nwarning: {meta['warning']}")
    report.write_json(out / "report.json", results, meta=meta)
    progress.status("drawing the chart")
    report.write_chart(
        out / "demo.png",
        results,
        subtitle=f"`{meta['command']}`, {started_at:%Y-%m-%d %H:%M} UTC, time scale "
        f"{settings.time_scale}, {settings.rate:.0f} req/s",
    )
    progress.line()
    progress.line(
        f"{meta['time_note']}\nwritten: {out / 'report.json'}, {out / 'demo.png'}, "
        f"{out / 'demo.log'} (whole run {meta['seconds']}s)"
    )
    return {**meta, "table": table}


def _log_to(path: Path) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.FileHandler(path, mode="w")
    handler.setFormatter(
        logging.Formatter("ts=%(asctime)s level=%(levelname)s logger=%(name)s %(message)s")
    )
    root.addHandler(handler)


def main(args: argparse.Namespace) -> int:
    problem = check_port_80()
    if problem:
        print(f"directlb demo: {problem}", file=sys.stderr)
        return 2
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    _log_to(out / "demo.log")
    settings = QUICK if args.quick else FULL
    keys = [k.strip() for k in (args.modes or "").split(",") if k.strip()]
    unknown = sorted(set(keys) - {m.key for m in MODES})
    if unknown:
        known = ", ".join(m.key for m in MODES)
        print(f"directlb demo: unknown modes {unknown}; known: {known}", file=sys.stderr)
        return 2
    modes = tuple(m for m in MODES if not keys or m.key in keys)
    try:
        asyncio.run(demo(out=out, settings=settings, quick=args.quick, modes=modes))
    except DemoError as error:
        print(f"\ndirectlb demo: {error} (see {out / 'demo.log'})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # everything was stopped on the way out
        print("\ndirectlb demo: interrupted", file=sys.stderr)
        return 130
    return 0
