"""The kubelet: one component running every node's pods as real servers on loopback.

For each pod bound to an existing node:

* **network**: a pod annotated ``tke.cloud.tencent.com/networks: tke-route-eni`` (VPC-CNI ENI
  mode) gets an IP from ``eni_pod_cidr`` (127.17.0.0/16, one pool for the VPC subnet); another pod
  from its node's ``spec.podCIDR`` (a /24 of ``cluster_cidr``, 127.30.N.0/24 for ``node-N``); a
  ``hostNetwork`` pod uses the node's IP. The first two addresses of a pool are never handed out
  (network, gateway); freed addresses are reused last (a cursor walks the pool). ``hostIP`` is
  the node's InternalIP.
* **containers**: each container port gets a real server on ``podIP:containerPort`` (HTTP for
  TCP, UDP echo for UDP; see ``podserver.py`` for what they answer). A port that cannot be bound
  leaves the container waiting with reason ``RunContainerError``. Init containers are taken as
  completed at once.
* **status**: ``phase`` (Pending until every container runs, then Running), ``hostIP(s)``,
  ``podIP(s)``, ``startTime``, ``containerStatuses`` (state waiting ``ContainerCreating`` /
  running / terminated, ``ready``, ``started``, ``restartCount`` 0, image, imageID, containerID)
  and the conditions ``PodReadyToStartContainers``, ``Initialized``, ``ContainersReady``,
  ``Ready``, ``PodScheduled``. **Ready = ContainersReady and every ``spec.readinessGates``
  condition True**, with the real kubelet's reasons and messages (``ContainersNotReady``,
  ``containers with unready status: [app]``; ``ReadinessGatesNotReady``, ``corresponding
  condition of pod readiness gate "…" does not exist.`` / ``the status of pod readiness gate "…"
  is not "True", but False``). Conditions written by others (readiness gates) are kept, and
  any change to them makes the kubelet recompute Ready. A pod on a node whose Ready is not True
  is reported Ready=False (the node lifecycle controller's ``MarkPodsNotReady``).
* **readiness probes** (``httpGet``, ``tcpSocket``; ``exec`` and ``grpc`` succeed while the app
  is healthy / the port accepts): ``initialDelaySeconds`` and ``periodSeconds`` are multiplied by
  ``probe_time_scale`` (the period floored at ``config.kubelet_sync_seconds``),
  ``timeoutSeconds`` is not; ``failureThreshold`` and ``successThreshold`` count as the real
  prober does; a container starts unready and becomes ready after ``successThreshold``
  successes. Probes come from the node's IP. Without a probe a container is ready once started.
* **knobs** (container ``env``, seconds, fractions allowed): ``SIM_START_DELAY`` (container
  waits ``ContainerCreating`` that long before its servers start), ``SIM_READY_DELAY`` (the app is
  unhealthy that long after starting), ``SIM_READY_FAIL=true`` (never healthy: never ready),
  ``SIM_RESPONSE_DELAY`` (every HTTP answer waits that long), ``SIM_SHUTDOWN_DELAY`` (see below).
  An unhealthy app fails its httpGet probes (503) and tcpSocket probes; ``POST /_sim/fail`` and
  ``POST /_sim/recover`` on a pod's port flip its health at run time.
* **graceful deletion**: once ``deletionTimestamp`` is set the pod's grace period
  (``deletionGracePeriodSeconds``) starts: each container's ``preStop`` hook runs (``exec``:
  a ``sleep N`` in the command waits N seconds, other commands do nothing; ``httpGet``: the
  request is made), then the container is sent "SIGTERM". The simulated process *handles SIGTERM
  late*: it keeps serving (new connections too) until the grace period ends, or, with
  ``SIM_SHUTDOWN_DELAY=x``, until x seconds after SIGTERM (exit code 0; at the end of the grace
  period: 137, "SIGKILL"). Readiness probes keep running meanwhile. When every container has
  exited the servers are closed, the final status is written (containers terminated, phase
  Succeeded or Failed) and the pod is deleted with grace 0. A later delete with a shorter grace
  period shortens the wait; a forced delete (grace 0) stops everything at once.
* a pod bound to a node that does not exist (deleted) is stopped and deleted (pod GC).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import ipaddress
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

from directlb.sim import meta
from directlb.sim.api import Api, WriteOptions
from directlb.sim.cluster.config import ENI_ANNOTATION, ENI_MODE, ClusterConfig
from directlb.sim.cluster.machinery import (
    NODES,
    PODS,
    KeyedLoop,
    log,
    node_ready,
    record_event,
    resource,
    set_condition,
)
from directlb.sim.cluster.nodes import internal_ip
from directlb.sim.cluster.podserver import App, HttpServer, Server, UdpEcho, http_get, tcp_connect
from directlb.sim.contracts import Obj, StatusError
from directlb.sim.storage import DELETED, Event, ObjKey, StoreKey

KUBELET_CONDITIONS = (
    "PodReadyToStartContainers",
    "Initialized",
    "Ready",
    "ContainersReady",
    "PodScheduled",
)
# Addresses tried for a pod whose ports another process already holds on the first one.
ADDRESS_ATTEMPTS = 16
_SLEEP = re.compile(r"\bsleep\s+(\d+(?:\.\d+)?)")


class Pool:
    """Addresses of one CIDR; the first two (network, gateway) and the last are never used."""

    def __init__(self, cidr: str) -> None:
        self.network = ipaddress.IPv4Network(cidr)
        self._first = 2 if self.network.num_addresses > 4 else 0
        self._last = self.network.num_addresses - (2 if self.network.num_addresses > 4 else 1)
        self._cursor = self._first
        self._used: set[int] = set()

    def __contains__(self, ip: str) -> bool:
        return ipaddress.IPv4Address(ip) in self.network

    def reserve(self, ip: str) -> bool:
        offset = int(ipaddress.IPv4Address(ip)) - int(self.network.network_address)
        if offset in self._used or not 0 <= offset < self.network.num_addresses:
            return False
        self._used.add(offset)
        return True

    def allocate(self) -> str | None:
        size = self._last - self._first + 1
        for step in range(size):
            offset = self._first + (self._cursor - self._first + step) % size
            if offset not in self._used:
                self._used.add(offset)
                self._cursor = offset + 1 if offset < self._last else self._first
                return str(self.network.network_address + offset)
        return None

    def release(self, ip: str) -> None:
        self._used.discard(int(ipaddress.IPv4Address(ip)) - int(self.network.network_address))


def _env(container: Obj) -> dict[str, str]:
    return {
        str(e["name"]): str(e.get("value", ""))
        for e in container.get("env") or []
        if isinstance(e, dict) and "name" in e
    }


def _seconds(value: str | None) -> float:
    try:
        return max(float(value), 0.0) if value else 0.0
    except ValueError:
        return 0.0


def _image(image: str) -> tuple[str, str]:
    """``nginx:1.7.9`` -> (``docker.io/library/nginx:1.7.9``, its imageID)."""
    name = image
    first = image.split("/", 1)[0]
    if "/" not in image:
        name = f"docker.io/library/{image}"
    elif "." not in first and ":" not in first and first != "localhost":
        name = f"docker.io/{image}"
    repository = name.split("@", 1)[0]
    if ":" in repository.rsplit("/", 1)[-1]:
        repository = repository.rsplit(":", 1)[0]
    else:
        name += ":latest"
    return name, f"{repository}@sha256:{hashlib.sha256(name.encode()).hexdigest()}"


@dataclass
class Container:
    name: str
    spec: Obj
    app: App
    start_delay: float
    shutdown_delay: float | None
    probe: Obj | None
    servers: list[Server] = field(default_factory=list)
    state: str = "waiting"  # waiting | running | terminated
    error: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    exit_code: int = 0
    probe_ready: bool = False
    exit_at: float = math.inf  # loop time the process exits after SIGTERM

    @property
    def ready(self) -> bool:
        if self.state != "running":
            return False
        return self.probe_ready if self.probe is not None else self.app.healthy


@dataclass
class Runtime:
    key: ObjKey
    uid: str
    node: str
    host_ip: str
    ip: str
    pool: Pool | None
    start_time: str
    containers: list[Container]
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    terminating: bool = False
    deadline: float = math.inf
    deadline_changed: asyncio.Event = field(default_factory=asyncio.Event)
    killed: bool = False

    def spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


class Kubelet(KeyedLoop):
    """Runs the pods of every node; see the module docstring for the model."""

    def __init__(self, *, api: Api, config: ClusterConfig, probe_time_scale: float = 1.0) -> None:
        super().__init__("kubelet")
        self.api = api
        self.config = config
        self.probe_time_scale = probe_time_scale
        self.pods_info = resource(api, "", "v1", "pods")
        self.eni_pool = Pool(config.eni_pod_cidr)
        self._node_pools: dict[str, Pool] = {}  # podCIDR -> pool
        self._runtimes: dict[ObjKey, Runtime] = {}
        self._by_node: dict[str, set[ObjKey]] = {}
        self._reserved: dict[ObjKey, str] = {}  # IPs of pods found running at start
        for key, stored in self.api.store.items(PODS, None):
            node = (stored.obj.get("spec") or {}).get("nodeName")
            if node:
                self._by_node.setdefault(str(node), set()).add(key)
                ip = (stored.obj.get("status") or {}).get("podIP")
                if ip and not (stored.obj.get("spec") or {}).get("hostNetwork"):
                    self._reserved[key] = str(ip)
                self.mark(key)
        api.store.listeners.append(self._on_event)

    async def stop(self) -> None:
        if self._on_event in self.api.store.listeners:
            self.api.store.listeners.remove(self._on_event)
        await super().stop()
        for runtime in list(self._runtimes.values()):
            await self._teardown(runtime)

    def runtime(self, namespace: str, name: str) -> Runtime | None:
        """The running pod (tests and debugging)."""
        return self._runtimes.get((namespace, name))

    # ----- events ---------------------------------------------------------------------------

    def _on_event(self, store_key: StoreKey, event: Event) -> None:
        if store_key == PODS:
            obj = (event.old or event.new).obj if event.type == DELETED else event.new.obj
            node = (obj.get("spec") or {}).get("nodeName")
            if node:
                keys = self._by_node.setdefault(str(node), set())
                if event.type == DELETED:
                    keys.discard(event.key)
                else:
                    keys.add(event.key)
                self.mark(event.key)
            elif event.key in self._runtimes:
                self.mark(event.key)
        elif store_key == NODES:
            for key in self._by_node.get(event.key[1], ()):
                self.mark(key)

    # ----- sync -----------------------------------------------------------------------------

    async def sync(self, key: ObjKey) -> bool:
        stored = self.api.store.get(PODS, key)
        runtime = self._runtimes.get(key)
        if stored is None:
            if runtime is not None:
                await self._teardown(runtime)
            return False
        pod = stored.obj
        m = pod["metadata"]
        node_name = str((pod.get("spec") or {}).get("nodeName") or "")
        if not node_name:
            return False
        if runtime is not None and runtime.uid != m.get("uid"):
            await self._teardown(runtime)  # deleted and created again under the same name
            runtime = None
        node_stored = self.api.store.get(NODES, ("", node_name))
        if node_stored is None:
            if runtime is not None:
                await self._teardown(runtime)
            await self._delete(pod, node_name)  # the pod garbage collector's orphan rule
            return False
        node = node_stored.obj
        if runtime is None:
            if m.get("deletionTimestamp"):
                await self._delete(pod, node_name)  # never started: nothing to wait for
                return False
            runtime = await self._admit(pod, node)
            if runtime is None:
                return False  # no address yet; a node event brings us back
        if m.get("deletionTimestamp"):
            grace = float(m.get("deletionGracePeriodSeconds") or 0)
            deadline = asyncio.get_running_loop().time() + grace
            if not runtime.terminating:
                runtime.terminating = True
                runtime.deadline = deadline
                runtime.spawn(self._terminate(runtime, pod), f"terminate-{key[0]}/{key[1]}")
            elif deadline < runtime.deadline:
                runtime.deadline = deadline
                runtime.deadline_changed.set()
        return await self._write_status(key)

    async def _write_status(self, key: ObjKey) -> bool:
        stored = self.api.store.get(PODS, key)
        runtime = self._runtimes.get(key)
        if stored is None or runtime is None:
            return False
        node_stored = self.api.store.get(NODES, ("", runtime.node))
        ready_node = node_stored is not None and node_ready(node_stored.obj)
        status = self._status(stored.obj, runtime, node_ready=ready_node)
        if status == stored.obj.get("status"):
            return False
        body = stored.copy()
        body["status"] = status
        try:
            await self.api.update(
                self.pods_info,
                namespace=key[0],
                name=key[1],
                body=body,
                subresource="status",
                opts=self._opts(runtime.node),
            )
        except StatusError as error:
            if error.code == 409:
                self.mark(key)  # someone else wrote meanwhile: recompute from theirs
                return False
            if error.code == 404:
                return False
            raise
        return False

    def _opts(self, node: str) -> WriteOptions:
        return WriteOptions(
            user=f"system:node:{node}",
            groups=("system:nodes", "system:authenticated"),
            field_validation="Ignore",
        )

    # ----- starting a pod -------------------------------------------------------------------

    def _pool(self, pod: Obj, node: Obj) -> Pool | None:
        annotations = pod["metadata"].get("annotations") or {}
        if ENI_MODE in str(annotations.get(ENI_ANNOTATION, "")):
            return self.eni_pool
        cidr = (node.get("spec") or {}).get("podCIDR")
        if not cidr:
            return None
        pool = self._node_pools.get(str(cidr))
        if pool is None:
            pool = self._node_pools[str(cidr)] = Pool(str(cidr))
        return pool

    def _address(self, key: ObjKey, pod: Obj, node: Obj) -> tuple[str, Pool | None] | None:
        host_ip = internal_ip(node)
        if (pod.get("spec") or {}).get("hostNetwork"):
            return (host_ip, None) if host_ip else None
        pool = self._pool(pod, node)
        if pool is None:
            return None
        previous = self._reserved.pop(key, None)
        if previous and previous in pool and pool.reserve(previous):
            return previous, pool
        ip = pool.allocate()
        if ip is None:
            log.error("event=pod_ip_exhausted pod=%s/%s cidr=%s", *key, pool.network)
            return None
        return ip, pool

    async def _admit(self, pod: Obj, node: Obj) -> Runtime | None:
        m = pod["metadata"]
        key = (str(m.get("namespace") or ""), str(m["name"]))
        host_ip = internal_ip(node)
        if not host_ip:
            return None
        node_name = str(node["metadata"]["name"])
        for _ in range(ADDRESS_ATTEMPTS):
            address = self._address(key, pod, node)
            if address is None:
                return None
            ip, pool = address
            runtime = Runtime(
                key=key,
                uid=str(m.get("uid", "")),
                node=node_name,
                host_ip=host_ip,
                ip=ip,
                pool=pool,
                start_time=str((pod.get("status") or {}).get("startTime") or meta.timestamp()),
                containers=[
                    self._container(c, key=key, node=node_name, ip=ip)
                    for c in (pod.get("spec") or {}).get("containers") or []
                    if isinstance(c, dict)
                ],
            )
            self._runtimes[key] = runtime
            if not self._bind(runtime) or pool is None:
                break
            # Another process on this machine (another simulator?) holds that address and
            # port, or old connections linger in TIME_WAIT there: take another address (the
            # pool's cursor has moved past this one).
            log.info("event=pod_ip_in_use pod=%s/%s ip=%s", *key, ip)
            await self._teardown(runtime)
        else:
            log.error("event=pod_ports_unavailable pod=%s/%s attempts=%d", *key, ADDRESS_ATTEMPTS)
            self.mark_later(1.0, key)
            return None
        for container in runtime.containers:
            if container.error:
                continue
            if container.start_delay > 0:
                runtime.spawn(
                    self._start_later(runtime, container), f"start-{key[1]}-{container.name}"
                )
            else:
                await self._start(runtime, container)
        log.debug("event=pod_started pod=%s/%s node=%s ip=%s", *key, node_name, runtime.ip)
        return runtime

    def _container(self, spec: Obj, *, key: ObjKey, node: str, ip: str) -> Container:
        env = _env(spec)
        probe = spec.get("readinessProbe") if isinstance(spec.get("readinessProbe"), dict) else None
        probe_paths = {
            str(p["httpGet"].get("path") or "/")
            for p in (spec.get(k) for k in ("readinessProbe", "livenessProbe", "startupProbe"))
            if isinstance(p, dict) and isinstance(p.get("httpGet"), dict)
        }
        shutdown = env.get("SIM_SHUTDOWN_DELAY")
        return Container(
            name=str(spec.get("name", "")),
            spec=spec,
            app=App(
                pod=key[1],
                namespace=key[0],
                node=node,
                container=str(spec.get("name", "")),
                pod_ip=ip,
                ready_delay=_seconds(env.get("SIM_READY_DELAY")),
                ready_fail=env.get("SIM_READY_FAIL", "").lower() == "true",
                response_delay=_seconds(env.get("SIM_RESPONSE_DELAY")),
                probe_paths=probe_paths,
            ),
            start_delay=_seconds(env.get("SIM_START_DELAY")),
            shutdown_delay=_seconds(shutdown) if shutdown else None,
            probe=probe,
        )

    async def _start_later(self, runtime: Runtime, container: Container) -> None:
        await asyncio.sleep(container.start_delay)
        if not runtime.terminating:
            await self._start(runtime, container)
            self.mark(runtime.key)

    def _bind(self, runtime: Runtime) -> bool:
        """Take every container port's address now (a delayed container's too, so nobody
        takes it meanwhile); True when another process holds one (try another pod IP)."""
        for container in runtime.containers:
            for port in container.spec.get("ports") or []:
                if not isinstance(port, dict) or not port.get("containerPort"):
                    continue
                number = int(port["containerPort"])
                server: Server
                if str(port.get("protocol") or "TCP") == "UDP":
                    server = UdpEcho(container.app, ip=runtime.ip, port=number)
                else:
                    server = HttpServer(container.app, ip=runtime.ip, port=number)
                try:
                    server.bind()
                except OSError as error:
                    if error.errno == errno.EADDRINUSE and runtime.pool is not None:
                        return True
                    container.error = f"cannot listen on {runtime.ip}:{number}: {error.strerror}"
                    log.warning(
                        "event=container_failed pod=%s/%s %s", *runtime.key, container.error
                    )
                    break
                container.servers.append(server)
        return False

    async def _start(self, runtime: Runtime, container: Container) -> None:
        if container.error:
            return
        try:
            for server in container.servers:
                await server.start()
        except OSError as error:
            container.error = f"cannot listen: {error.strerror}"
            log.warning("event=container_failed pod=%s/%s %s", *runtime.key, container.error)
            return
        container.state = "running"
        container.started_at = meta.timestamp()
        container.app.started_at = time.monotonic()
        if container.probe is not None:
            runtime.spawn(self._probe_loop(runtime, container), f"probe-{runtime.key[1]}")
        elif container.app.ready_delay > 0 and not container.app.ready_fail:
            self.mark_later(container.app.ready_delay, runtime.key)

    # ----- readiness probes -----------------------------------------------------------------

    async def _probe_loop(self, runtime: Runtime, container: Container) -> None:
        probe = container.probe or {}
        scale = self.probe_time_scale
        initial = float(probe.get("initialDelaySeconds") or 0) * scale
        period = max(
            float(probe.get("periodSeconds") or 10) * scale, self.config.kubelet_sync_seconds
        )
        success_threshold = int(probe.get("successThreshold") or 1)
        failure_threshold = int(probe.get("failureThreshold") or 3)
        successes = failures = 0
        await asyncio.sleep(initial)
        while container.state == "running":
            ok, why = await self._probe(runtime, container, probe)
            if ok:
                successes, failures = successes + 1, 0
                if not container.probe_ready and successes >= success_threshold:
                    container.probe_ready = True
                    self.mark(runtime.key)
            else:
                successes, failures = 0, failures + 1
                if failures == 1:
                    await self._event(runtime, "Unhealthy", f"Readiness probe failed: {why}")
                if container.probe_ready and failures >= failure_threshold:
                    container.probe_ready = False
                    self.mark(runtime.key)
            await asyncio.sleep(period)

    def _port(self, container: Container, port: Any) -> int | None:
        if isinstance(port, int):
            return port
        if isinstance(port, str) and port.isdigit():
            return int(port)
        for p in container.spec.get("ports") or []:
            if isinstance(p, dict) and p.get("name") == port and p.get("containerPort"):
                return int(p["containerPort"])
        return None

    async def _probe(self, runtime: Runtime, container: Container, probe: Obj) -> tuple[bool, str]:
        timeout = float(probe.get("timeoutSeconds") or 1)
        http = probe.get("httpGet")
        tcp = probe.get("tcpSocket") or probe.get("grpc")
        if isinstance(http, dict):
            port = self._port(container, http.get("port"))
            if port is None:
                return False, f"unknown port {http.get('port')!r}"
            path = str(http.get("path") or "/")
            headers = {
                str(h.get("name")): str(h.get("value", ""))
                for h in http.get("httpHeaders") or []
                if isinstance(h, dict) and h.get("name")
            }
            status = await http_get(
                host=str(http.get("host") or runtime.ip),
                port=port,
                path=path,
                timeout=timeout,
                source=runtime.host_ip,
                headers=headers,
            )
            if status is None:
                return False, f'Get "http://{runtime.ip}:{port}{path}": connection failed'
            if 200 <= status < 400:
                return True, ""
            return False, f"HTTP probe failed with statuscode: {status}"
        if isinstance(tcp, dict):
            port = self._port(container, tcp.get("port"))
            if port is None:
                return False, f"unknown port {tcp.get('port')!r}"
            host = str(tcp.get("host") or runtime.ip)
            connected = await tcp_connect(
                host=host, port=port, timeout=timeout, source=runtime.host_ip
            )
            if not connected or not container.app.healthy:
                return False, f"dial tcp {host}:{port}: connect: connection refused"
            return True, ""
        # exec: the command "succeeds" while the app is healthy.
        return container.app.healthy, "command failed: exit status 1"

    # ----- termination ----------------------------------------------------------------------

    async def _until(self, runtime: Runtime, when: float) -> None:
        """Sleep until ``when`` or the grace deadline, whichever first (it may move sooner)."""
        loop = asyncio.get_running_loop()
        while True:
            remaining = min(when, runtime.deadline) - loop.time()
            if remaining <= 0:
                return
            runtime.deadline_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(runtime.deadline_changed.wait(), remaining)

    async def _terminate(self, runtime: Runtime, pod: Obj) -> None:
        loop = asyncio.get_running_loop()
        running = [c for c in runtime.containers if c.state == "running"]
        for container in running:
            await self._event(runtime, "Killing", f"Stopping container {container.name}")
        hooks = [self._pre_stop(runtime, c) for c in running if _pre_stop(c.spec)]
        if hooks:

            async def run_hooks() -> None:
                await asyncio.gather(*hooks, return_exceptions=True)

            hook_task = asyncio.create_task(run_hooks())
            deadline_task = asyncio.create_task(self._until(runtime, math.inf))
            await asyncio.wait([hook_task, deadline_task], return_when=asyncio.FIRST_COMPLETED)
            for task in (hook_task, deadline_task):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        sigterm = loop.time()
        for container in running:
            if container.shutdown_delay is not None:
                container.exit_at = sigterm + container.shutdown_delay
        for container in runtime.containers:
            if container.state == "waiting":
                container.state = "terminated"
                container.exit_code = 0
                container.finished_at = meta.timestamp()
        while any(c.state == "running" for c in runtime.containers):
            now = loop.time()
            for container in runtime.containers:
                if container.state != "running":
                    continue
                if now >= container.exit_at:
                    await self._exit(container, code=0)
                elif now >= runtime.deadline:
                    await self._exit(container, code=137)  # SIGKILL at the end of the grace
            pending = [c.exit_at for c in runtime.containers if c.state == "running"]
            if pending:
                await self._until(runtime, min(pending))
        await self._write_status(runtime.key)
        await self._delete(pod, runtime.node)

    async def _pre_stop(self, runtime: Runtime, container: Container) -> None:
        hook = _pre_stop(container.spec) or {}
        exec_ = hook.get("exec")
        http = hook.get("httpGet")
        if isinstance(exec_, dict):
            match = _SLEEP.search(" ".join(str(c) for c in exec_.get("command") or []))
            if match:
                await asyncio.sleep(float(match.group(1)))
        elif isinstance(http, dict):
            port = self._port(container, http.get("port"))
            if port is not None:
                remaining = runtime.deadline - asyncio.get_running_loop().time()
                await http_get(
                    host=str(http.get("host") or runtime.ip),
                    port=port,
                    path=str(http.get("path") or "/"),
                    timeout=max(remaining, 0.1),
                    source=runtime.host_ip,
                )
        elif isinstance(hook.get("sleep"), dict):
            await asyncio.sleep(float(hook["sleep"].get("seconds") or 0))

    async def _exit(self, container: Container, *, code: int) -> None:
        for server in container.servers:
            await server.close()
        container.servers.clear()
        container.state = "terminated"
        container.exit_code = code
        container.finished_at = meta.timestamp()

    async def _teardown(self, runtime: Runtime) -> None:
        if self._runtimes.get(runtime.key) is runtime:
            del self._runtimes[runtime.key]
        current = asyncio.current_task()
        for task in list(runtime.tasks):
            if task is not current:
                task.cancel()
        for task in list(runtime.tasks):
            if task is not current:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        for container in runtime.containers:
            for server in container.servers:
                await server.close()
            container.servers.clear()
        if runtime.pool is not None:
            runtime.pool.release(runtime.ip)

    async def _delete(self, pod: Obj, node: str) -> None:
        m = pod["metadata"]
        try:
            await self.api.delete(
                self.pods_info,
                namespace=str(m.get("namespace") or ""),
                name=str(m["name"]),
                options={"gracePeriodSeconds": 0, "preconditions": {"uid": m.get("uid")}},
                opts=self._opts(node),
            )
        except StatusError as error:
            if error.code not in (404, 409):
                raise

    async def _event(self, runtime: Runtime, reason: str, message: str) -> None:
        stored = self.api.store.get(PODS, runtime.key)
        if stored is None:
            return
        await record_event(
            self.api,
            involved=stored.obj,
            reason=reason,
            message=message,
            component="kubelet",
            host=runtime.node,
            warning=reason == "Unhealthy",
        )

    # ----- status ---------------------------------------------------------------------------

    def _status(self, pod: Obj, runtime: Runtime, *, node_ready: bool) -> Obj:
        status: Obj = meta.clone(pod.get("status") or {})
        now = meta.timestamp()
        status["hostIP"] = runtime.host_ip
        status["hostIPs"] = [{"ip": runtime.host_ip}]
        status["podIP"] = runtime.ip
        status["podIPs"] = [{"ip": runtime.ip}]
        status["startTime"] = runtime.start_time
        previous = {
            str(c.get("name")): c
            for c in status.get("containerStatuses") or []
            if isinstance(c, dict)
        }
        status["containerStatuses"] = [
            self._container_status(runtime, c, previous.get(c.name)) for c in runtime.containers
        ]
        states = {c.state for c in runtime.containers}
        if states == {"terminated"}:
            failed = any(c.exit_code != 0 for c in runtime.containers)
            status["phase"] = "Failed" if failed else "Succeeded"
        elif states <= {"running", "terminated"}:
            status["phase"] = "Running"
        else:
            status["phase"] = "Pending"
        conditions: list[Obj] = [c for c in status.get("conditions") or [] if isinstance(c, dict)]

        def put(
            type_: str, ok: bool, reason: str | None = None, message: str | None = None
        ) -> None:
            set_condition(
                conditions,
                type_=type_,
                status="True" if ok else "False",
                reason=None if ok else reason,
                message=None if ok else message,
                now=now,
            )

        terminal = status["phase"] in ("Succeeded", "Failed")
        unready = [c.name for c in runtime.containers if not c.ready]
        if terminal:
            containers_reason, containers_message = "PodCompleted", ""
        else:
            containers_reason = "ContainersNotReady"
            containers_message = f"containers with unready status: [{' '.join(unready)}]"
        put("PodReadyToStartContainers", not terminal)
        put("Initialized", True, "PodCompleted" if terminal else None)
        put("ContainersReady", not unready, containers_reason, containers_message)
        put("PodScheduled", True)
        if unready:
            put("Ready", False, containers_reason, containers_message)
        else:
            gates = self._gates(pod, conditions)
            if gates:
                put("Ready", False, "ReadinessGatesNotReady", gates)
            elif not node_ready:
                put("Ready", False, "NodeNotReady", f'node "{runtime.node}" is not ready')
            else:
                put("Ready", True)
        order = {t: i for i, t in enumerate(KUBELET_CONDITIONS)}
        status["conditions"] = sorted(
            conditions, key=lambda c: order.get(str(c.get("type")), len(order))
        )
        return status

    def _gates(self, pod: Obj, conditions: list[Obj]) -> str:
        messages: list[str] = []
        by_type = {c.get("type"): c for c in conditions}
        for gate in (pod.get("spec") or {}).get("readinessGates") or []:
            if not isinstance(gate, dict):
                continue
            kind = str(gate.get("conditionType", ""))
            condition = by_type.get(kind)
            if condition is None:
                messages.append(
                    f'corresponding condition of pod readiness gate "{kind}" does not exist.'
                )
            elif condition.get("status") != "True":
                messages.append(
                    f'the status of pod readiness gate "{kind}" is not "True", but '
                    f"{condition.get('status')}"
                )
        return ", ".join(messages)

    def _container_status(
        self, runtime: Runtime, container: Container, previous: Obj | None
    ) -> Obj:
        image, image_id = _image(str(container.spec.get("image", "")))
        result: Obj = {
            "name": container.name,
            "image": image,
            "imageID": image_id,
            "ready": container.ready,
            "restartCount": 0,
            "started": container.state == "running",
            "lastState": {},
        }
        if container.state == "waiting":
            if container.error:
                result["state"] = {
                    "waiting": {"reason": "RunContainerError", "message": container.error}
                }
            else:
                result["state"] = {"waiting": {"reason": "ContainerCreating"}}
            return result
        digest = hashlib.sha256(f"{runtime.uid}/{container.name}".encode()).hexdigest()
        result["containerID"] = f"containerd://{digest}"
        if container.state == "running":
            result["state"] = {"running": {"startedAt": container.started_at}}
        else:
            result["state"] = {
                "terminated": {
                    "exitCode": container.exit_code,
                    "reason": "Completed" if container.exit_code == 0 else "Error",
                    "startedAt": container.started_at,
                    "finishedAt": container.finished_at,
                    "containerID": f"containerd://{digest}",
                }
            }
        return result


def _pre_stop(spec: Obj) -> Obj | None:
    hook = (spec.get("lifecycle") or {}).get("preStop")
    return hook if isinstance(hook, dict) else None
