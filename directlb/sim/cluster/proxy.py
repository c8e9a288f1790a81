"""kube-proxy for the simulated cluster, as real sockets on loopback.

Every node is a loopback address (its ``InternalIP``, 127.20.0.x), so one ``KubeProxy`` plays
every node's kube-proxy:

* **NodePort** (``NodePort`` and ``LoadBalancer`` Services): each node listens on
  ``nodeIP:nodePort`` (TCP, and UDP for UDP ports) and forwards each connection (UDP: each client
  address) to an endpoint taken at random from the Service's EndpointSlices:

  - ``externalTrafficPolicy: Cluster``: any ready endpoint in the cluster, connecting *from the
    node's own IP*: the pod sees the node, not the client (kube-proxy's SNAT);
  - ``Local``: only endpoints on that node, connecting *from the client's own address* (binding a
    socket to any 127/8 address works on Linux), so the pod sees the client; with no local
    endpoint the connection is reset, as kube-proxy drops it.

  As kube-proxy does, endpoints that are ``ready`` are used; when there are none, endpoints
  that are ``serving`` and ``terminating`` are (graceful termination keeps traffic flowing).
* **healthCheckNodePort** (``LoadBalancer`` with ``Local``): each node answers HTTP on
  ``nodeIP:healthCheckNodePort``, any path: 200 when the node has a local ready endpoint, 503
  otherwise, with kube-proxy's JSON body ``{"service": {"namespace", "name"},
  "localEndpoints": N, "serviceProxyHealthy": true}`` and ``X-Load-Balancing-Endpoint-Weight``.
* **ClusterIP**: ``clusterIP:port`` forwards to any ready endpoint, keeping the client's address
  (kube-proxy does not masquerade in-cluster traffic). ``internalTrafficPolicy: Local`` is not
  modelled: on loopback there is no "client's node".

Listeners follow Services and Nodes (store events; never polling); the endpoints are read at
connection time from an index the EndpointSlice events keep up to date.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import cast

from directlb.sim.api import Api
from directlb.sim.cluster.config import ClusterConfig
from directlb.sim.cluster.machinery import NODES
from directlb.sim.contracts import Obj
from directlb.sim.storage import DELETED, Event, ObjKey, StoreKey

log = logging.getLogger("directlb.sim.cluster.proxy")

SERVICES: StoreKey = ("", "services")
SLICES: StoreKey = ("discovery.k8s.io", "endpointslices")
SERVICE_NAME_LABEL = "kubernetes.io/service-name"

RETRY_SECONDS = 0.5
CONNECT_TIMEOUT = 5.0
UDP_IDLE_SECONDS = 30.0
CHUNK = 65536

NODE_PORT, CLUSTER_IP, HEALTH = "nodeport", "clusterip", "health"
ListenKey = tuple[str, str, int]  # (protocol, ip, port)


@dataclass(frozen=True)
class Target:
    """What one listening socket serves."""

    kind: str  # NODE_PORT | CLUSTER_IP | HEALTH
    service: ObjKey
    port_name: str = ""
    protocol: str = "TCP"
    node: str | None = None  # the node it listens for (None: ClusterIP)
    node_ip: str | None = None
    local: bool = False  # externalTrafficPolicy: Local


@dataclass(frozen=True)
class Backend:
    address: str
    port: int
    node: str | None
    ready: bool
    serving: bool
    terminating: bool


# ----- pure: what to listen on, where to send ----------------------------------------------


def node_ips(nodes: Iterable[Obj]) -> dict[str, str]:
    """Node name -> InternalIP."""
    found: dict[str, str] = {}
    for node in nodes:
        for address in (node.get("status") or {}).get("addresses") or []:
            if address.get("type") == "InternalIP" and address.get("address"):
                found[str(node["metadata"]["name"])] = str(address["address"])
                break
    return found


def desired_listeners(
    services: Iterable[Obj], nodes: dict[str, str], *, cluster_ips: bool = True
) -> dict[ListenKey, Target]:
    wanted: dict[ListenKey, Target] = {}
    for service in services:
        m = service["metadata"]
        key = (str(m.get("namespace") or ""), str(m["name"]))
        spec = service.get("spec") or {}
        kind = spec.get("type") or "ClusterIP"
        local = spec.get("externalTrafficPolicy") == "Local"
        ports = [p for p in spec.get("ports") or [] if isinstance(p, dict)]
        for port in ports:
            protocol = str(port.get("protocol") or "TCP")
            if protocol not in ("TCP", "UDP"):
                continue
            name = str(port.get("name") or "")
            node_port = port.get("nodePort")
            if kind in ("NodePort", "LoadBalancer") and node_port:
                for node, ip in nodes.items():
                    wanted[(protocol, ip, int(node_port))] = Target(
                        NODE_PORT, key, name, protocol, node, ip, local
                    )
            cluster_ip = spec.get("clusterIP")
            if cluster_ips and kind != "ExternalName" and cluster_ip and cluster_ip != "None":
                wanted[(protocol, str(cluster_ip), int(port.get("port") or 0))] = Target(
                    CLUSTER_IP, key, name, protocol
                )
        health = spec.get("healthCheckNodePort")
        if kind == "LoadBalancer" and local and health:
            for node, ip in nodes.items():
                wanted[("TCP", ip, int(health))] = Target(HEALTH, key, node=node, node_ip=ip)
    return wanted


def backends(slices: Iterable[Obj], *, port_name: str, protocol: str) -> list[Backend]:
    """The Service port's endpoints in its slices (kube-proxy's EndpointSliceCache)."""
    found: dict[tuple[str, int], Backend] = {}
    for slice_obj in slices:
        if slice_obj.get("addressType") != "IPv4":
            continue
        number = next(
            (
                int(p["port"])
                for p in slice_obj.get("ports") or []
                if str(p.get("name") or "") == port_name
                and (p.get("protocol") or "TCP") == protocol
                and p.get("port")
            ),
            None,
        )
        if number is None:
            continue
        for endpoint in slice_obj.get("endpoints") or []:
            addresses = endpoint.get("addresses") or []
            if not addresses:
                continue
            conditions = endpoint.get("conditions") or {}
            backend = Backend(
                address=str(addresses[0]),
                port=number,
                node=endpoint.get("nodeName"),
                ready=conditions.get("ready") is not False,
                serving=conditions.get("serving", conditions.get("ready")) is not False,
                terminating=conditions.get("terminating") is True,
            )
            found.setdefault((backend.address, backend.port), backend)
    return list(found.values())


def usable(candidates: list[Backend], *, node: str | None = None) -> list[Backend]:
    """Ready endpoints (on ``node`` when given); failing those, serving terminating ones."""
    pool = [b for b in candidates if node is None or b.node == node]
    ready = [b for b in pool if b.ready]
    return ready or [b for b in pool if b.serving and b.terminating]


def local_ready_endpoints(slices: Iterable[Obj], node: str) -> int:
    """kube-proxy's count for the health check: distinct ready endpoint IPs on ``node``."""
    ips: set[str] = set()
    for slice_obj in slices:
        for endpoint in slice_obj.get("endpoints") or []:
            conditions = endpoint.get("conditions") or {}
            if endpoint.get("nodeName") == node and conditions.get("ready") is not False:
                ips.update(str(a) for a in (endpoint.get("addresses") or [])[:1])
    return len(ips)


def health_response(service: ObjKey, count: int) -> bytes:
    body = json.dumps(
        {
            "service": {"namespace": service[0], "name": service[1]},
            "localEndpoints": count,
            "serviceProxyHealthy": True,
        },
        indent=2,
    ).encode()
    status = "200 OK" if count else "503 Service Unavailable"
    head = (
        f"HTTP/1.1 {status}\r\n"
        "Content-Type: application/json\r\n"
        "X-Content-Type-Options: nosniff\r\n"
        f"X-Load-Balancing-Endpoint-Weight: {count}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


# ----- listeners ----------------------------------------------------------------------------


@dataclass(eq=False)
class _Listener:
    target: Target
    server: asyncio.AbstractServer | None = None
    udp: asyncio.DatagramTransport | None = None
    connections: set[asyncio.Transport | asyncio.BaseTransport] = field(default_factory=set)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        if self.udp is not None:
            self.udp.close()
        for transport in list(self.connections):
            if isinstance(transport, asyncio.Transport):
                transport.abort()
            else:
                transport.close()
        self.connections.clear()


class KubeProxy:
    """Every node's kube-proxy (see the module docstring)."""

    def __init__(
        self,
        *,
        api: Api,
        config: ClusterConfig,
        cluster_ips: bool = True,
        rng: random.Random | None = None,
    ) -> None:
        self.api = api
        self.config = config
        self.cluster_ips = cluster_ips
        self.rng = rng or random.Random()
        self.listeners: dict[ListenKey, _Listener] = {}
        self._slices: dict[ObjKey, dict[str, Obj]] = {}
        # Each Service's listeners, kept while neither it nor the node addresses change: a
        # sync merges them instead of recomputing every Service's (hundreds, at scale).
        self._per_service: dict[ObjKey, tuple[Obj, dict[ListenKey, Target]]] = {}
        self._node_ips: dict[str, str] = {}
        self._wake = asyncio.Event()
        self._synced = asyncio.Event()  # set while the listeners match the store
        self._task: asyncio.Task[None] | None = None
        self._listening = False
        self._retry: asyncio.TimerHandle | None = None
        self._servers: set[asyncio.AbstractServer] = set()

    # ----- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        if not self._listening:
            self.api.store.listeners.append(self._on_event)
            self._listening = True
        self._slices.clear()
        for (namespace, name), stored in self.api.store.items(SLICES, None):
            self._index_slice(namespace, name, stored.obj)
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="sim-kube-proxy")
        self._synced.clear()
        self._wake.set()

    async def stop(self) -> None:
        if self._listening:
            self.api.store.listeners.remove(self._on_event)
            self._listening = False
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for key in list(self.listeners):
            self.listeners.pop(key).close()
        servers, self._servers = self._servers, set()
        for server in servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()

    async def wait_synced(self) -> None:
        """Return once the listeners match the stored Services and Nodes (for tests)."""
        await self._synced.wait()

    # ----- events ---------------------------------------------------------------------------

    def _on_event(self, store_key: StoreKey, event: Event) -> None:
        if store_key == SLICES:
            namespace, name = event.key
            self._unindex_slice(namespace, name, event.old.obj if event.old else None)
            if event.type != DELETED:
                self._index_slice(namespace, name, event.new.obj)
        elif (store_key == SERVICES and self._service_changed(event)) or (
            store_key == NODES and self._node_changed(event)
        ):
            self._synced.clear()
            self._wake.set()

    @staticmethod
    def _service_changed(event: Event) -> bool:
        """Listeners follow a Service's spec only: a write to its metadata or status (a
        load-balancer controller's annotations, finalizers, ingress) changes none of them."""
        if event.old is None or event.type == DELETED:
            return True
        return event.old.obj.get("spec") != event.new.obj.get("spec")

    @staticmethod
    def _node_changed(event: Event) -> bool:
        if event.old is None or event.type == DELETED:
            return True
        return node_ips([event.old.obj]) != node_ips([event.new.obj])

    def _index_slice(self, namespace: str, name: str, obj: Obj) -> None:
        service = (obj["metadata"].get("labels") or {}).get(SERVICE_NAME_LABEL)
        if service:
            self._slices.setdefault((namespace, str(service)), {})[name] = obj

    def _unindex_slice(self, namespace: str, name: str, obj: Obj | None) -> None:
        service = ((obj or {}).get("metadata", {}).get("labels") or {}).get(SERVICE_NAME_LABEL)
        if service:
            slices = self._slices.get((namespace, str(service)), {})
            slices.pop(name, None)
            if not slices:
                self._slices.pop((namespace, str(service)), None)

    def slices_of(self, service: ObjKey) -> list[Obj]:
        return list(self._slices.get(service, {}).values())

    # ----- listener sync --------------------------------------------------------------------

    def _desired(self) -> dict[ListenKey, Target]:
        """``desired_listeners`` of every stored Service, from each one's cached result (the
        same mapping: merged in store order, a later Service's entry wins as it would)."""
        nodes = node_ips(s.obj for _, s in self.api.store.items(NODES, None))
        if nodes != self._node_ips:
            self._node_ips = nodes
            self._per_service.clear()
        cache: dict[ObjKey, tuple[Obj, dict[ListenKey, Target]]] = {}
        wanted: dict[ListenKey, Target] = {}
        for key, stored in self.api.store.items(SERVICES, None):
            cached = self._per_service.get(key)
            if cached is None or cached[0] is not stored.obj:
                listeners = desired_listeners([stored.obj], nodes, cluster_ips=self.cluster_ips)
                cached = (stored.obj, listeners)
            cache[key] = cached
            wanted.update(cached[1])
        self._per_service = cache
        return wanted

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            try:
                failed = await self._sync()
            except Exception:  # keep proxying whatever else works
                log.exception("event=kube_proxy_sync_error")
                failed = True
            if not failed and not self._wake.is_set():
                self._synced.set()
            if failed:
                loop = asyncio.get_running_loop()
                self._retry = loop.call_later(RETRY_SECONDS, self._wake.set)

    async def _sync(self) -> bool:
        self._wake.clear()
        wanted = self._desired()
        for key in [k for k in self.listeners if k not in wanted]:
            self.listeners.pop(key).close()
            log.debug("event=kube_proxy_closed protocol=%s address=%s:%s", *key)
        failed = False
        for key, target in wanted.items():
            listener = self.listeners.get(key)
            if listener is not None:
                listener.target = target
                continue
            try:
                self.listeners[key] = await self._open(key, target)
            except OSError as error:
                log.warning(
                    "event=kube_proxy_listen_failed protocol=%s address=%s:%s error=%s",
                    *key,
                    error,
                )
                failed = True
        return failed

    async def _open(self, key: ListenKey, target: Target) -> _Listener:
        protocol, ip, port = key
        listener = _Listener(target)
        loop = asyncio.get_running_loop()
        if protocol == "UDP":
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _UdpFrontend(self, listener), local_addr=(ip, port), reuse_port=False
            )
            listener.udp = transport
        else:

            async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                await self._handle_tcp(listener, reader, writer)

            listener.server = await asyncio.start_server(handle, ip, port, reuse_address=True)
            self._servers.add(listener.server)
        return listener

    # ----- TCP ------------------------------------------------------------------------------

    def choose(self, target: Target) -> Backend | None:
        candidates = backends(
            self.slices_of(target.service), port_name=target.port_name, protocol=target.protocol
        )
        pool = usable(candidates, node=target.node if target.local else None)
        return self.rng.choice(pool) if pool else None

    def source_for(self, target: Target, client: str) -> str:
        """Cluster: SNAT to the node; Local and ClusterIP: the client's own address."""
        if target.kind == NODE_PORT and not target.local and target.node_ip:
            return target.node_ip
        return client

    async def _handle_tcp(
        self, listener: _Listener, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        client_transport = writer.transport
        listener.connections.add(client_transport)
        try:
            target = listener.target
            if target.kind == HEALTH:
                await self._answer_health(target, reader, writer)
                return
            backend = self.choose(target)
            peer = writer.get_extra_info("peername")
            if backend is None or not peer:
                client_transport.abort()  # no endpoint: kube-proxy drops/rejects
                return
            upstream = await self._connect(backend, self.source_for(target, str(peer[0])))
            if upstream is None:
                client_transport.abort()
                return
            up_reader, up_writer = upstream
            listener.connections.add(up_writer.transport)
            try:
                await _splice(reader, writer, up_reader, up_writer)
            finally:
                listener.connections.discard(up_writer.transport)
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            client_transport.abort()
        finally:
            listener.connections.discard(client_transport)
            if not client_transport.is_closing():
                client_transport.close()

    async def _connect(
        self, backend: Backend, source: str
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        for local in (source, None):
            try:
                return await asyncio.wait_for(
                    asyncio.open_connection(
                        backend.address,
                        backend.port,
                        local_addr=(local, 0) if local else None,
                    ),
                    CONNECT_TIMEOUT,
                )
            except OSError as error:
                if error.errno == 99 and local is not None:  # EADDRNOTAVAIL: not a local address
                    continue
                log.debug("event=kube_proxy_connect_failed backend=%s:%s", backend.address, error)
                return None
            except TimeoutError:
                return None
        return None

    async def _answer_health(
        self, target: Target, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        with contextlib.suppress(asyncio.LimitOverrunError, asyncio.IncompleteReadError):
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), CONNECT_TIMEOUT)
        count = local_ready_endpoints(self.slices_of(target.service), target.node or "")
        writer.write(health_response(target.service, count))
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()


async def _splice(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    up_writer: asyncio.StreamWriter,
) -> None:
    """Copy both ways, passing half-closes on; either side failing ends both."""

    async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        while True:
            data = await source.read(CHUNK)
            if not data:
                break
            sink.write(data)
            await sink.drain()
        if sink.can_write_eof() and not sink.is_closing():
            sink.write_eof()

    tasks = [
        asyncio.ensure_future(pipe(reader, up_writer)),
        asyncio.ensure_future(pipe(up_reader, writer)),
    ]
    try:
        for task in asyncio.as_completed(tasks):
            try:
                await task
            except (ConnectionError, OSError):
                writer.transport.abort()
                up_writer.transport.abort()
                break
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
                await task
        up_writer.close()
        writer.close()


# ----- UDP ----------------------------------------------------------------------------------


class _UdpFrontend(asyncio.DatagramProtocol):
    """One node's (or ClusterIP's) UDP port: a session per client address, each with its own
    upstream socket (bound like TCP's), expired after ``UDP_IDLE_SECONDS`` of silence."""

    def __init__(self, proxy: KubeProxy, listener: _Listener) -> None:
        self.proxy = proxy
        self.listener = listener
        self.transport: asyncio.DatagramTransport | None = None
        self.sessions: dict[tuple[str, int], _UdpSession] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (Python 3.11's selector datagram transport does not subclass DatagramTransport.)
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        client = (str(addr[0]), int(addr[1]))
        session = self.sessions.get(client)
        if session is None:
            backend = self.proxy.choose(self.listener.target)
            if backend is None:
                return  # dropped, as kube-proxy drops
            session = self.sessions[client] = _UdpSession(self, client, backend)
        session.send(data)

    def connection_lost(self, exc: Exception | None) -> None:
        for session in list(self.sessions.values()):
            session.close()
        self.sessions.clear()


class _UdpSession(asyncio.DatagramProtocol):
    def __init__(self, frontend: _UdpFrontend, client: tuple[str, int], backend: Backend) -> None:
        self.frontend = frontend
        self.client = client
        self.backend = backend
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: list[bytes] = []
        self.closed = False
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(UDP_IDLE_SECONDS, self.close)
        self.opening = loop.create_task(self._open())

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        source = self.frontend.proxy.source_for(self.frontend.listener.target, self.client[0])
        for local in (source, None):
            try:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: self,
                    local_addr=(local, 0) if local else None,
                    remote_addr=(self.backend.address, self.backend.port),
                )
                break
            except OSError:
                continue
        else:
            self.close()
            return
        if self.closed:
            transport.close()
            return
        self.transport = transport
        for data in self.pending:
            transport.sendto(data)
        self.pending.clear()

    def send(self, data: bytes) -> None:
        self._touch()
        if self.transport is None:
            self.pending.append(data)
        else:
            self.transport.sendto(data)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self._touch()
        front = self.frontend.transport
        if front is not None and not front.is_closing():
            front.sendto(data, self.client)

    def _touch(self) -> None:
        self.timer.cancel()
        self.timer = asyncio.get_running_loop().call_later(UDP_IDLE_SECONDS, self.close)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.timer.cancel()
        if not self.opening.done():
            self.opening.cancel()
        if self.transport is not None:
            self.transport.close()
        self.frontend.sessions.pop(self.client, None)


# What ``Cluster`` starts from this module.
CONTROLLERS = (KubeProxy,)
