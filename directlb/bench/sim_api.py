"""``directlb bench sim-api``: is the simulated API server fast enough to stand in for a real one?

Issue 4's targets, with 5,000 pods, 500 services and 50 nodes stored:

* listing all pods (all namespaces) answers in under 200 ms;
* 200 watch events/s reach 5 watchers without backlog.

The API server runs as its own process (``ApiServer(SimConfig())``, what ``directlb sim``
serves, over HTTPS as clients see it, but without the simulated cluster, whose kubelet would
run the pods created here), so that its CPU time and memory can be read from ``/proc`` and the
client's work is not counted as the server's. The objects are created through the API with
lightkube's AsyncClient: pods with the spec and status a kubelet would leave (containers with
probes and resources, a readiness gate, conditions, container statuses, IPs), nodes with their
status, Services of all types.

Lists are timed three ways: a raw HTTPS GET until the last byte of the answer (the server's and
the transport's part; the target applies to this one), the same followed by ``json.loads``, and
lightkube's typed list (what a controller pays). The server's CPU per list is its ``/proc`` CPU
time over the runs.

The watchers run in a separate process (raw streaming over HTTPS, one connection each), so that
decoding 5 x 200 events/s does not slow the writer down; a writer here issues pod status
patches (a condition's ``lastProbeTime``, as a kubelet does) on an open-loop schedule at the
target rate. Each write's acknowledgment time (the answer received) is matched by
resourceVersion with each watcher's delivery time (``time.monotonic``, one clock for every
process on Linux): the lag is delivery minus acknowledgment (0 when the event arrives before the
answer), "no loss" means every watcher saw every acknowledged write, and "no backlog" means the
lag stays bounded (max under 1 s) and the last event arrives shortly after the last write.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import json
import logging
import os
import re
import signal
import ssl
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import httpx
from lightkube import AsyncClient, KubeConfig
from lightkube.resources.core_v1 import Namespace, Node, Pod, Service
from lightkube.types import PatchType

from directlb.bench.common import (
    child_process,
    cpu_seconds,
    gather_limited,
    percentiles,
    report,
    rss_mib,
)

READINESS_GATE = "cloud.tencent.com/load-balancer-backendgroup-ready"
LIST_TARGET_MS = 200.0
MAX_LAG_MS = 1000.0
LIST_CLIENTS = {
    "raw": "HTTPS GET, answer received to its last byte (httpx)",
    "raw+json": "the same, then `json.loads`",
    "lightkube": 'lightkube `AsyncClient.list(Pod, namespace="*")`',
}  # beyond this, events queue up: a backlog
_T = TypeVar("_T")
EPOCH = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)


@dataclass
class ListFigures:
    """Listing every pod of every namespace, ``runs`` times in a row."""

    client: str
    runs: int
    items: int
    response_bytes: int
    round_trip_ms: dict[str, float]
    server_cpu_ms_per_list: float


@dataclass
class WatchFigures:
    watchers: int
    target_rate: float
    seconds: float
    writes: int
    write_errors: int
    write_rate: float
    write_ack_ms: dict[str, float]
    events_per_watcher: list[int]
    events_per_second_per_watcher: list[float]
    lost_per_watcher: list[int]
    lag_ms: dict[str, float]
    lag_p99_ms_per_watcher: list[float]
    delivered_before_ack: int
    drain_ms: float
    server_cpu_share: float


@dataclass
class SimApiBenchResult:
    pods: int
    services: int
    nodes: int
    namespaces: int
    pod_json_bytes: int
    populate_seconds: float
    lists: list[ListFigures]
    watch: WatchFigures
    server_rss_mib_populated: float
    server_rss_mib_after_lists: float
    server_rss_mib_after_watch: float
    sim_argv: list[str]
    load_average_before: list[float]
    cpu_count: int
    python: str = field(default_factory=lambda: sys.version.split()[0])

    @property
    def list_ok(self) -> bool:
        raw = next(f for f in self.lists if f.client == "raw")
        return raw.round_trip_ms["p95"] < LIST_TARGET_MS

    @property
    def watch_ok(self) -> bool:
        w = self.watch
        return (
            w.write_errors == 0
            and w.write_rate >= 0.95 * w.target_rate
            and min(w.events_per_second_per_watcher) >= 0.95 * w.target_rate
            and not any(w.lost_per_watcher)
            and w.lag_ms["max"] < MAX_LAG_MS
        )


# ----- the objects ---------------------------------------------------------------------------


def _timestamp(seconds: float) -> str:
    moment = EPOCH + datetime.timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _pod_ip(n: int) -> str:
    return f"127.17.{n // 250}.{n % 250 + 1}"


def _node_ip(n: int) -> str:
    return f"127.20.0.{n + 1}"


def _app(n: int) -> str:
    return f"app-{n % 500:03d}"


def node_manifest(n: int) -> dict[str, Any]:
    name = f"node-{n:02d}"
    conditions = [
        ("MemoryPressure", "False", "KubeletHasSufficientMemory"),
        ("DiskPressure", "False", "KubeletHasNoDiskPressure"),
        ("PIDPressure", "False", "KubeletHasSufficientPID"),
        ("Ready", "True", "KubeletReady"),
    ]
    resources = {"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "node.kubernetes.io/instance-type": "SA5.2XLARGE32",
                "topology.kubernetes.io/zone": f"ap-guangzhou-{n % 3 + 3}",
            },
        },
        "spec": {"podCIDR": f"10.{n}.0.0/24", "providerID": f"qcloud:///100003/ins-{n:08d}"},
        "status": {
            "capacity": resources,
            "allocatable": resources | {"cpu": "7800m", "memory": "30Gi"},
            "conditions": [
                {
                    "type": kind,
                    "status": status,
                    "reason": reason,
                    "message": f"kubelet reports {kind}={status}",
                    "lastHeartbeatTime": _timestamp(0),
                    "lastTransitionTime": _timestamp(0),
                }
                for kind, status, reason in conditions
            ],
            "addresses": [
                {"type": "InternalIP", "address": _node_ip(n)},
                {"type": "Hostname", "address": name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": f"{n:032x}",
                "systemUUID": f"{n:08x}-0000-0000-0000-000000000000",
                "bootID": f"{n:08x}-1111-1111-1111-111111111111",
                "kernelVersion": "6.1.0",
                "osImage": "Debian GNU/Linux 12 (bookworm)",
                "containerRuntimeVersion": "containerd://1.7.22",
                "kubeletVersion": "v1.32.4",
                "kubeProxyVersion": "v1.32.4",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        },
    }


def service_manifest(n: int, namespace: str) -> dict[str, Any]:
    kind = ("ClusterIP", "LoadBalancer", "NodePort")[n % 3]
    annotations = (
        {"service.cloud.tencent.com/direct-access": "true"} if kind == "LoadBalancer" else {}
    )
    spec: dict[str, Any] = {
        "type": kind,
        "selector": {"app": _app(n)},
        "ports": [
            {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
            {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"},
        ],
    }
    if kind == "LoadBalancer":
        spec["externalTrafficPolicy"] = "Local" if n % 2 else "Cluster"
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": _app(n),
            "namespace": namespace,
            "labels": {"app": _app(n)},
            "annotations": annotations,
        },
        "spec": spec,
    }


def pod_manifest(n: int, namespace: str, nodes: int) -> dict[str, Any]:
    app = _app(n)
    probe = {"httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"}}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{app}-7d9f8b6c5d-{n:05d}",
            "namespace": namespace,
            "labels": {"app": app, "pod-template-hash": "7d9f8b6c5d", "tier": "web"},
            "annotations": {
                "tke.cloud.tencent.com/networks": "tke-route-eni",
                "prometheus.io/scrape": "true",
            },
        },
        "spec": {
            **({"nodeName": f"node-{n % nodes:02d}"} if nodes else {}),
            "containers": [
                {
                    "name": "web",
                    "image": "nginx:1.25.4",
                    "ports": [
                        {"name": "http", "containerPort": 8080, "protocol": "TCP"},
                        {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
                    ],
                    "env": [
                        {"name": "APP", "value": app},
                        {
                            "name": "POD_IP",
                            "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}},
                        },
                    ],
                    "resources": {
                        "requests": {"cpu": "100m", "memory": "128Mi"},
                        "limits": {"cpu": "500m", "memory": "256Mi"},
                    },
                    "readinessProbe": probe | {"periodSeconds": 5},
                    "livenessProbe": probe | {"initialDelaySeconds": 10},
                    "volumeMounts": [{"name": "config", "mountPath": "/etc/app"}],
                },
                {
                    "name": "sidecar",
                    "image": "busybox:1.36",
                    "command": ["sh", "-c", "sleep infinity"],
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                },
            ],
            "volumes": [{"name": "config", "configMap": {"name": f"{app}-config"}}],
            "readinessGates": [{"conditionType": READINESS_GATE}],
            "terminationGracePeriodSeconds": 30,
        },
    }


def pod_status(n: int, nodes: int) -> dict[str, Any]:
    started = _timestamp(n % 3600)
    conditions = [
        (READINESS_GATE, "True"),
        ("PodReadyToStartContainers", "True"),
        ("Initialized", "True"),
        ("Ready", "True"),
        ("ContainersReady", "True"),
        ("PodScheduled", "True"),
    ]

    def container(name: str, image: str) -> dict[str, Any]:
        return {
            "name": name,
            "image": image,
            "imageID": f"docker.io/library/{image}@sha256:{n:064x}",
            "containerID": f"containerd://{name}{n:058x}",
            "ready": True,
            "started": True,
            "restartCount": 0,
            "state": {"running": {"startedAt": started}},
        }

    host_ip = _node_ip(n % nodes) if nodes else _node_ip(0)
    return {
        "phase": "Running",
        "conditions": [
            {"type": kind, "status": status, "lastProbeTime": None, "lastTransitionTime": started}
            for kind, status in conditions
        ],
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": _pod_ip(n),
        "podIPs": [{"ip": _pod_ip(n)}],
        "startTime": started,
        "containerStatuses": [
            container("sidecar", "busybox:1.36"),
            container("web", "nginx:1.25.4"),
        ],
        "qosClass": "Burstable",
    }


def _model(cls: type[_T], data: dict[str, Any]) -> _T:
    """A lightkube model from its JSON form (``from_dict`` is typed as returning its mixin)."""
    return cast(_T, cls.from_dict(data))  # type: ignore[attr-defined]


def _namespace(n: int, namespaces: int) -> str:
    return f"bench-{n % namespaces}"


async def _populate(
    kube: AsyncClient, *, pods: int, services: int, nodes: int, namespaces: int, concurrency: int
) -> None:
    for i in range(namespaces):
        await kube.create(_model(Namespace, {"metadata": {"name": f"bench-{i}"}}))
    await gather_limited(
        [kube.create(_model(Node, node_manifest(i))) for i in range(nodes)], concurrency
    )
    await gather_limited(
        [
            kube.create(_model(Service, service_manifest(i, _namespace(i, namespaces))))
            for i in range(services)
        ],
        concurrency,
    )

    async def one_pod(i: int) -> None:
        manifest = pod_manifest(i, _namespace(i, namespaces), nodes)
        created = await kube.create(_model(Pod, manifest))
        assert created.metadata is not None and created.metadata.name is not None
        await kube.patch(
            Pod.Status,
            created.metadata.name,
            {"status": pod_status(i, nodes)},
            namespace=manifest["metadata"]["namespace"],
            patch_type=PatchType.MERGE,
        )

    await gather_limited([one_pod(i) for i in range(pods)], concurrency)


# ----- the server process ----------------------------------------------------------------------


def sim_argv(kubeconfig: Path) -> list[str]:
    """The API server alone, in its own process: what ``directlb sim`` serves, minus the cluster.

    ``directlb sim`` also starts the simulated cluster (part 2), and even with ``--nodes 0``
    its kubelet would run every pod bound to the nodes created here (5,000 real servers and
    their probes) and rewrite their status: not what this benchmark measures.
    """
    code = "from directlb.bench.sim_api import serve_api; serve_api()"
    return [sys.executable, "-c", code, str(kubeconfig)]


def serve_api() -> None:
    """``ApiServer(SimConfig())`` on 127.0.0.1, a free port; kubeconfig at ``sys.argv[1]``.

    Prints ``directlb sim``'s ready line and serves until SIGTERM or SIGINT.
    """
    from directlb.sim.server import ApiServer, SimConfig

    async def serve() -> None:
        server = ApiServer(SimConfig())
        await server.start("127.0.0.1", 0)
        server.write_kubeconfig(Path(sys.argv[1]))
        print(f"Kubernetes API server (simulated) listening on {server.url}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await server.stop()

    logging.basicConfig(level=logging.WARNING)
    asyncio.run(serve())


@dataclass(frozen=True)
class _Endpoint:
    url: str
    token: str
    ca_file: Path
    kubeconfig: Path

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def http(self, *, connections: int = 8) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.url,
            verify=self.ssl_context(),
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=httpx.Timeout(60.0),
            limits=httpx.Limits(max_connections=connections),
        )


@contextlib.asynccontextmanager
async def _sim_process(workdir: Path, argv: list[str]) -> AsyncIterator[tuple[_Endpoint, int]]:
    kubeconfig = workdir / "kubeconfig"
    ready = re.compile(rb"listening on (https?://[\w.:\[\]-]+)")
    async with child_process(argv, ready=ready) as (match, pid):
        config = json.loads(kubeconfig.read_text())
        cluster = config["clusters"][0]["cluster"]
        user = config["users"][0]["user"]
        ca_file = workdir / "ca.pem"
        ca_file.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
        yield _Endpoint(match.group(1).decode(), user["token"], ca_file, kubeconfig), pid


# ----- lists -------------------------------------------------------------------------------------


async def _time_lists(
    endpoint: _Endpoint, kube: AsyncClient, pid: int, *, runs: int, lightkube_runs: int, pods: int
) -> list[ListFigures]:
    """Three figures: the raw answer received (to its last byte), the same plus ``json.loads``
    (both from the same ``runs``), and lightkube's typed list (``lightkube_runs``)."""
    figures: list[ListFigures] = []

    def add(client: str, times: list[float], cpu: float, size: int) -> None:
        figures.append(
            ListFigures(
                client=client,
                runs=len(times),
                items=pods,
                response_bytes=size,
                round_trip_ms=percentiles(times),
                server_cpu_ms_per_list=round(cpu / len(times) * 1000, 1),
            )
        )

    async with endpoint.http(connections=1) as http:

        async def fetch() -> bytes:
            answer = await http.get("/api/v1/pods")
            answer.raise_for_status()
            return answer.content

        size = len(await fetch())  # warm-up: connection, caches
        # Fetch-only runs first, so that no decoding (and the client's garbage collection of
        # 5,000 decoded pods) falls into them; then the runs with json.loads.
        cpu_before = cpu_seconds(pid)
        fetched: list[float] = []
        for _ in range(runs):
            started = time.perf_counter()
            await fetch()
            fetched.append(time.perf_counter() - started)
        add("raw", fetched, cpu_seconds(pid) - cpu_before, size)
        cpu_before = cpu_seconds(pid)
        decoded: list[float] = []
        for _ in range(runs):
            started = time.perf_counter()
            items = len(json.loads(await fetch())["items"])
            decoded.append(time.perf_counter() - started)
            if items != pods:
                raise RuntimeError(f"the list returned {items} pods, expected {pods}")
        add("raw+json", decoded, cpu_seconds(pid) - cpu_before, size)
    times: list[float] = []
    for run in range(lightkube_runs + 1):
        if run == 1:
            cpu_before = cpu_seconds(pid)
        started = time.perf_counter()
        items = len([p async for p in kube.list(Pod, namespace="*")])
        if run:
            times.append(time.perf_counter() - started)
        if items != pods:
            raise RuntimeError(f"lightkube listed {items} pods, expected {pods}")
    add("lightkube", times, cpu_seconds(pid) - cpu_before, size)
    return figures


# ----- watch ---------------------------------------------------------------------------------


def watch_child() -> None:
    """The watchers' process: ``python -c 'from directlb.bench.sim_api import watch_child; ...'``.

    Reads its settings as JSON on the first stdin line, prints ``ready`` once every stream is
    open, then records (resourceVersion, arrival time) of each MODIFIED pod event until a
    ``stop <resourceVersion>`` line arrives and each watcher has seen that resourceVersion (or
    ``grace`` seconds have passed); prints the records as JSON and exits.
    """
    asyncio.run(_watch_child())


async def _watch_child() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    settings = json.loads(await reader.readline())
    endpoint = _Endpoint(settings["url"], settings["token"], Path(settings["ca_file"]), Path())
    watchers: int = settings["watchers"]
    records: list[list[tuple[int, float]]] = [[] for _ in range(watchers)]
    last_seen = [0] * watchers
    opened = [asyncio.Event() for _ in range(watchers)]
    final: list[int] = []
    done = asyncio.Event()
    url = f"/api/v1/pods?watch=true&resourceVersion={settings['resource_version']}"

    async def watch(i: int) -> None:
        async with endpoint.http(connections=1) as http, http.stream("GET", url) as answer:
            answer.raise_for_status()
            opened[i].set()
            async for line in answer.aiter_lines():
                arrived = time.monotonic()
                if not line:
                    continue
                event = json.loads(line)
                if event["type"] == "MODIFIED":
                    rv = int(event["object"]["metadata"]["resourceVersion"])
                    records[i].append((rv, arrived))
                    last_seen[i] = rv
                    if final and all(seen >= final[0] for seen in last_seen):
                        done.set()

    tasks = [asyncio.create_task(watch(i)) for i in range(watchers)]
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in opened)), timeout=30)
    print("ready", flush=True)
    command = (await reader.readline()).decode().split()
    final.append(int(command[1]))
    if all(seen >= final[0] for seen in last_seen):
        done.set()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), timeout=float(settings["grace"]))
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps(records), flush=True)


@dataclass
class _Write:
    resource_version: int
    sent: float
    acked: float


async def _writer(
    endpoint: _Endpoint,
    targets: list[tuple[str, str]],
    *,
    rate: float,
    seconds: float,
    in_flight: int,
) -> tuple[list[_Write], int, float]:
    """Patch pod statuses at ``rate``/s for ``seconds`` (open loop); (writes, errors, elapsed)."""
    total = int(rate * seconds)
    writes: list[_Write] = []
    errors = 0
    headers = {"Content-Type": "application/strategic-merge-patch+json"}
    limit = asyncio.Semaphore(in_flight)
    async with endpoint.http(connections=in_flight) as http:

        async def one(i: int) -> None:
            nonlocal errors
            namespace, name = targets[i % len(targets)]
            # Each write changes something (a no-op write makes no event): the Ready
            # condition's lastProbeTime, one second later each time.
            body = {
                "status": {
                    "conditions": [
                        {"type": "Ready", "status": "True", "lastProbeTime": _timestamp(10**6 + i)}
                    ]
                }
            }
            path = f"/api/v1/namespaces/{namespace}/pods/{name}/status"
            try:
                sent = time.monotonic()
                answer = await http.patch(path, content=json.dumps(body), headers=headers)
                acked = time.monotonic()
                if answer.status_code != 200:
                    errors += 1
                    return
                rv = int(json.loads(answer.content)["metadata"]["resourceVersion"])
                writes.append(_Write(rv, sent, acked))
            except httpx.HTTPError:
                errors += 1
            finally:
                limit.release()

        tasks: list[asyncio.Task[None]] = []
        started = time.monotonic()
        for i in range(total):
            delay = started + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await limit.acquire()
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
        elapsed = time.monotonic() - started
    return writes, errors, elapsed


async def _time_watch(
    endpoint: _Endpoint,
    pid: int,
    *,
    targets: list[tuple[str, str]],
    watchers: int,
    rate: float,
    seconds: float,
    in_flight: int,
) -> WatchFigures:
    async with endpoint.http() as http:
        listed = (await http.get("/api/v1/pods", params={"limit": 1})).json()
    resource_version = listed["metadata"]["resourceVersion"]
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from directlb.bench.sim_api import watch_child; watch_child()",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert child.stdin is not None and child.stdout is not None
    try:
        settings = {
            "url": endpoint.url,
            "token": endpoint.token,
            "ca_file": str(endpoint.ca_file),
            "watchers": watchers,
            "resource_version": resource_version,
            "grace": 30,
        }
        child.stdin.write(json.dumps(settings).encode() + b"\n")
        await child.stdin.drain()
        line = await asyncio.wait_for(child.stdout.readline(), timeout=60)
        if line.strip() != b"ready":
            raise RuntimeError(f"the watchers did not start: {line!r}")
        cpu_before = cpu_seconds(pid)
        writes, errors, elapsed = await _writer(
            endpoint, targets, rate=rate, seconds=seconds, in_flight=in_flight
        )
        cpu = cpu_seconds(pid) - cpu_before
        final = max(w.resource_version for w in writes)
        child.stdin.write(f"stop {final}\n".encode())
        await child.stdin.drain()
        output = await asyncio.wait_for(child.stdout.read(), timeout=120)
    finally:
        # It exits once it has printed its records; signalling a child that already exited
        # would reap it behind asyncio's back.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(child.wait(), timeout=5)
        if child.returncode is None:
            child.kill()
            await child.wait()
    records: list[list[tuple[int, float]]] = json.loads(output)
    acked = {w.resource_version: w.acked for w in writes}
    lags: list[float] = []
    early = 0
    per_watcher_p99: list[float] = []
    lost: list[int] = []
    counts: list[int] = []
    rates: list[float] = []
    last_delivery = 0.0
    first_write = min(w.sent for w in writes)
    for record in records:
        seen = {rv: at for rv, at in record if rv in acked}
        own: list[float] = []
        for rv, at in seen.items():
            lag = at - acked[rv]
            if lag < 0:
                early += 1
            own.append(max(0.0, lag))
        lags.extend(own)
        per_watcher_p99.append(percentiles(own)["p99"] if own else float("nan"))
        lost.append(len(acked) - len(seen))
        counts.append(len(seen))
        finished = max(seen.values()) if seen else first_write
        last_delivery = max(last_delivery, finished)
        rates.append(round(len(seen) / max(1e-9, finished - first_write), 1))
    last_ack = max(w.acked for w in writes)
    return WatchFigures(
        watchers=watchers,
        target_rate=rate,
        seconds=round(elapsed, 2),
        writes=len(writes),
        write_errors=errors,
        write_rate=round(len(writes) / elapsed, 1),
        write_ack_ms=percentiles([w.acked - w.sent for w in writes]),
        events_per_watcher=counts,
        events_per_second_per_watcher=rates,
        lost_per_watcher=lost,
        lag_ms=percentiles(lags),
        lag_p99_ms_per_watcher=per_watcher_p99,
        delivered_before_ack=early,
        drain_ms=round(max(0.0, last_delivery - last_ack) * 1000, 1),
        server_cpu_share=round(cpu / elapsed, 2),
    )


# ----- the whole run ---------------------------------------------------------------------------


async def run_sim_api_bench(
    *,
    pods: int = 5000,
    services: int = 500,
    nodes: int = 50,
    namespaces: int = 10,
    list_runs: int = 30,
    lightkube_runs: int = 10,
    watchers: int = 5,
    rate: float = 200.0,
    seconds: float = 10.0,
    concurrency: int = 16,
) -> SimApiBenchResult:
    load = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="directlb-bench-sim-") as tmp:
        workdir = Path(tmp)
        argv = sim_argv(workdir / "kubeconfig")
        async with _sim_process(workdir, argv) as (endpoint, pid):
            kube = AsyncClient(
                config=KubeConfig.from_file(endpoint.kubeconfig), field_manager="directlb-bench"
            )
            try:
                started = time.perf_counter()
                await _populate(
                    kube, pods=pods, services=services, nodes=nodes, namespaces=namespaces,
                    concurrency=concurrency,
                )  # fmt: skip
                populate_seconds = time.perf_counter() - started
                rss_populated = rss_mib(pid)
                lists = await _time_lists(
                    endpoint, kube, pid, runs=list_runs, lightkube_runs=lightkube_runs, pods=pods
                )
                rss_lists = rss_mib(pid)
                targets = [
                    (_namespace(i, namespaces), pod_manifest(i, "", nodes)["metadata"]["name"])
                    for i in range(pods)
                ]
                watch = await _time_watch(
                    endpoint, pid, targets=targets, watchers=watchers, rate=rate,
                    seconds=seconds, in_flight=concurrency,
                )  # fmt: skip
                rss_after = rss_mib(pid)
            finally:
                await kube.close()
    sample = json.dumps(pod_manifest(0, "bench-0", nodes) | {"status": pod_status(0, nodes)})
    return SimApiBenchResult(
        pods=pods,
        services=services,
        nodes=nodes,
        namespaces=namespaces,
        pod_json_bytes=len(sample),
        populate_seconds=round(populate_seconds, 1),
        lists=lists,
        watch=watch,
        server_rss_mib_populated=rss_populated,
        server_rss_mib_after_lists=rss_lists,
        server_rss_mib_after_watch=rss_after,
        sim_argv=[Path(argv[0]).name, *argv[1:]],
        load_average_before=load,
        cpu_count=os.cpu_count() or 0,
    )


def render(result: SimApiBenchResult) -> str:
    w = result.watch
    raw = next(f for f in result.lists if f.client == "raw")

    def verdict(ok: bool) -> str:
        return "met" if ok else "**missed**"

    lines = [
        "# directlb bench sim-api",
        "",
        f"- machine: {result.cpu_count} CPUs, Python {result.python}, load average before the "
        f"run {', '.join(map(str, result.load_average_before))}",
        "- server: `ApiServer(SimConfig())` (what `directlb sim` serves, without the simulated "
        "cluster) in its own process, over HTTPS",
        f"- state: {result.pods} pods (about {result.pod_json_bytes} bytes of JSON each), "
        f"{result.services} services, {result.nodes} nodes in {result.namespaces} namespaces, "
        f"created through the API with lightkube in {result.populate_seconds} s",
        f"- server resident memory: {result.server_rss_mib_populated} MiB populated, "
        f"{result.server_rss_mib_after_lists} MiB after the lists, "
        f"{result.server_rss_mib_after_watch} MiB after the watch run",
        "",
        f"## List all pods ({raw.response_bytes / 2**20:.1f} MiB answer)",
        "",
        "| client | runs | p50 | p95 | max | server CPU per list |",
        "|---|---|---|---|---|---|",
        *(
            f"| {LIST_CLIENTS[f.client]} | {f.runs} | {f.round_trip_ms['p50']} ms | "
            f"{f.round_trip_ms['p95']} ms | {f.round_trip_ms['max']} ms | "
            f"{f.server_cpu_ms_per_list} ms |"
            for f in result.lists
        ),
        "",
        f"Target: all pods listed in under {LIST_TARGET_MS:.0f} ms (p95 of the answer received "
        f"in full, the server's and the transport's part): {verdict(result.list_ok)}. Decoding "
        "is the client's cost, the same against a real API server.",
        "",
        f"## Watch: {w.watchers} watchers, pod status patches at {w.target_rate:.0f}/s",
        "",
        "| figure | measured |",
        "|---|---|",
        f"| writes acknowledged | {w.writes} in {w.seconds} s = {w.write_rate}/s, "
        f"{w.write_errors} errors |",
        f"| write round trip | p50 {w.write_ack_ms['p50']} ms, p99 {w.write_ack_ms['p99']} ms, "
        f"max {w.write_ack_ms['max']} ms |",
        f"| events delivered per watcher | {', '.join(map(str, w.events_per_watcher))} |",
        f"| events/s per watcher | {', '.join(map(str, w.events_per_second_per_watcher))} |",
        f"| events lost per watcher | {', '.join(map(str, w.lost_per_watcher))} |",
        f"| lag, acknowledgment to delivery (all watchers) | p50 {w.lag_ms['p50']} ms, "
        f"p99 {w.lag_ms['p99']} ms, max {w.lag_ms['max']} ms "
        f"({w.delivered_before_ack} events arrived before their write's answer: lag 0) |",
        f"| lag p99 per watcher | {', '.join(f'{x} ms' for x in w.lag_p99_ms_per_watcher)} |",
        f"| last delivery after the last acknowledgment | {w.drain_ms} ms |",
        f"| server CPU during the run | {w.server_cpu_share} cores |",
        "",
        f"Target: {w.target_rate:.0f} events/s to {w.watchers} watchers without loss or backlog "
        f"(max lag under {MAX_LAG_MS:.0f} ms): {verdict(result.watch_ok)}.",
        "",
    ]
    return "\n".join(lines)


def main(args: Any) -> int:
    # lightkube's HTTP client (httpx2) logs every request at INFO: 10,000 lines of populating.
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    result = asyncio.run(
        run_sim_api_bench(
            pods=args.pods,
            services=args.services,
            nodes=args.nodes,
            namespaces=args.namespaces,
            list_runs=args.list_runs,
            lightkube_runs=args.lightkube_runs,
            watchers=args.watchers,
            rate=args.rate,
            seconds=args.seconds,
            concurrency=args.concurrency,
        )
    )
    report(result, render(result), out=args.out, name="sim-api")
    return 0 if result.list_ok and result.watch_ok else 1
