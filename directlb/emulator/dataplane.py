"""The data plane: every CLB's VIP carries real traffic on its TCP, UDP and HTTP listeners.

A CLB bound to ENIs forwards each connection to a backend that is healthy and has a weight,
from the client's own address. On loopback that is possible literally: every address of
127.0.0.0/8 is local, so the emulator binds its outgoing socket to the client's IP and the
backend sees the real peer. Choices (documented in docs/emulator.md, "Data plane"):

* A target gets new traffic only when its health is ``Alive`` or ``Close`` (as
  ``DescribeTargetHealth`` reports ``HealthStatus`` true) and its weight is above 0. Weight 0
  and unhealthy targets keep the connections they have.
* A deregistered target (or one of a deleted listener) loses its open connections after
  ``DRAIN_SECONDS`` of wall time.
* ``SessionExpireTime`` is cloud seconds: the stickiness lasts that times the time scale, at
  least ``MIN_SESSION_SECONDS`` of wall time, counted from the client's last new connection.
* HTTP listeners route by Host and path and add ``X-Forwarded-For``; the connection to the
  backend comes from the emulator (as CLB's layer 7 does), pooled. HTTPS, TCP_SSL and QUIC
  listeners are not served.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import struct
import sys
import time
import zlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, cast

import aiohttp
from aiohttp import web

from directlb.emulator.config import EmulatorConfig
from directlb.emulator.health import HealthView, ProbeKey, key_of
from directlb.emulator.store import Listener, LoadBalancer, Rule, Store, Target, TargetKey

log = logging.getLogger("directlb.emulator.dataplane")

SYNC_INTERVAL = 0.05  # wall seconds between looks at the store
DRAIN_SECONDS = 1.0  # wall seconds a deregistered target keeps its open connections
MIN_SESSION_SECONDS = 1.0  # wall seconds: the floor of a scaled SessionExpireTime
UDP_IDLE_SECONDS = 10.0  # wall seconds of silence that end a UDP flow
CONNECT_TIMEOUT = 3.0  # wall seconds to connect to a backend
CHUNK = 256 * 1024
SERVED = ("TCP", "UDP", "HTTP")
# Linux: bind() to an address without reserving a port; connect() picks one per 4-tuple.
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "host",
    }
)

Scope = tuple[str, str]  # listener id, location id ("" on layer 4)
Frontend = tuple[str, int, str]  # VIP, port, protocol


@dataclass(frozen=True)
class Backend:
    """The target chosen for a connection: its probe key and the address to reach."""

    key: ProbeKey
    ip: str
    port: int


class _Conn:
    """Something open towards a target that a drain must be able to end."""

    def __init__(self, close: Callable[[], None]) -> None:
        self.close = close


@dataclass
class _Served:
    frontend: Frontend
    close: Callable[[], Any]  # returns an awaitable or None


@dataclass
class Balancer:
    """Target choice: health, weight, scheduler and session persistence."""

    health: HealthView
    config: EmulatorConfig
    active: dict[ProbeKey, set[_Conn]] = field(default_factory=dict)
    _rr: dict[Scope, dict[TargetKey, int]] = field(default_factory=dict)
    _sessions: dict[tuple[str, str, str], tuple[TargetKey, float]] = field(default_factory=dict)

    def healthy(self, listener: Listener, rule: Rule | None, target: Target) -> bool:
        check = rule.health_check if rule else listener.health_check
        return self.health.detail(listener, rule, target, check) in ("Alive", "Close")

    def session_seconds(self, expire: int) -> float:
        return max(self.config.wall(float(expire)), MIN_SESSION_SECONDS)

    def pick(self, listener: Listener, rule: Rule | None, client_ip: str) -> Backend | None:
        targets = rule.targets if rule else listener.targets
        eligible = [
            t
            for t in targets.values()
            if t.weight > 0 and self.healthy(listener, rule, t) and self.health.ip_of(t)
        ]
        if not eligible:
            return None
        scope: Scope = (listener.listener_id, rule.location_id if rule else "")
        expire = rule.session_expire if rule else listener.session_expire
        now = time.monotonic()
        chosen: Target | None = None
        if expire > 0:
            sticky = self._sessions.get((*scope, client_ip))
            if sticky is not None and sticky[1] > now:
                chosen = next((t for t in eligible if t.key == sticky[0]), None)
        if chosen is None:
            scheduler = (rule.scheduler if rule else listener.scheduler) or "WRR"
            chosen = self._schedule(scope, scheduler, eligible, client_ip)
        if expire > 0:
            self._sessions[(*scope, client_ip)] = (chosen.key, now + self.session_seconds(expire))
        return Backend(
            key=key_of(listener, rule, chosen), ip=self.health.ip_of(chosen), port=chosen.port
        )

    def _schedule(
        self, scope: Scope, scheduler: str, eligible: list[Target], client_ip: str
    ) -> Target:
        if scheduler == "LEAST_CONN":

            def load(t: Target) -> tuple[float, int]:
                return (len(self.active.get((*scope, t.address, t.port), ())) / t.weight, -t.weight)

            return min(eligible, key=load)
        total = sum(t.weight for t in eligible)
        if scheduler == "IP_HASH":
            point = zlib.crc32(client_ip.encode()) % total
            for t in sorted(eligible, key=lambda t: t.key):
                point -= t.weight
                if point < 0:
                    return t
        # Smooth weighted round robin (as nginx does it): spreads by weight, interleaved.
        current = self._rr.setdefault(scope, {})
        for t in eligible:
            current[t.key] = current.get(t.key, 0) + t.weight
        best = max(eligible, key=lambda t: current[t.key])
        current[best.key] -= total
        return best

    def track(self, key: ProbeKey, conn: _Conn) -> None:
        self.active.setdefault(key, set()).add(conn)

    def untrack(self, key: ProbeKey, conn: _Conn) -> None:
        conns = self.active.get(key)
        if conns is not None:
            conns.discard(conn)
            if not conns:
                del self.active[key]

    def forget_expired(self, has_targets: Callable[[Scope], bool]) -> None:
        """Drop expired sessions, and the round-robin state of scopes left without targets."""
        now = time.monotonic()
        for session, (_key, until) in list(self._sessions.items()):
            if until <= now:
                del self._sessions[session]
        for scope in list(self._rr):
            if not has_targets(scope):
                del self._rr[scope]


def _socket_from(client_ip: str, *, kind: int) -> socket.socket:
    """A socket bound to the client's own address, so the backend sees the real source.

    If the address cannot be bound (not local to this machine), the socket stays unbound and
    the backend sees the emulator's address; that is logged once per address.
    """
    sock = socket.socket(socket.AF_INET, kind)
    sock.setblocking(False)
    try:
        if kind == socket.SOCK_STREAM and sys.platform == "linux":
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((client_ip, 0))
    except OSError as error:
        if client_ip not in _unbindable:
            _unbindable.add(client_ip)
            log.warning(
                "event=source_not_preserved client=%s error=%s", client_ip, error or "bind failed"
            )
    return sock


_unbindable: set[str] = set()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0), as a CLB with no backend to offer does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (OSError, RuntimeError):
        writer.transport.abort()


class DataPlane:
    """Serves every listener of every CLB on its VIP; follows the store as it changes."""

    def __init__(self, *, store: Store, health: HealthView, config: EmulatorConfig) -> None:
        self.store = store
        self.config = config
        self.balancer = Balancer(health=health, config=config)
        self._served: dict[str, _Served] = {}  # listener id -> what serves it
        self._failed: dict[str, Frontend] = {}  # listeners that could not bind, not retried
        self._lb_of: dict[str, str] = {}  # listener id -> CLB id, of the listeners served
        self._draining: set[ProbeKey] = set()
        self._seen_version = -1
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # ----- following the store ------------------------------------------------------------

    def _wanted(self) -> dict[str, tuple[LoadBalancer, Listener]]:
        out: dict[str, tuple[LoadBalancer, Listener]] = {}
        for lb in self.store.lbs.values():
            if not lb.vip:
                continue
            for listener in lb.listeners.values():
                if listener.protocol in SERVED:
                    out[listener.listener_id] = (lb, listener)
        return out

    async def sync(self) -> None:
        """Open listeners that appeared, close those gone; start drains of unbound targets."""
        self._seen_version = self.store.version
        wanted = self._wanted()
        for listener_id, served in list(self._served.items()):
            entry = wanted.get(listener_id)
            frontend = (entry[0].vip, entry[1].port, entry[1].protocol) if entry else None
            if frontend != served.frontend:
                del self._served[listener_id]
                await self._close_served(served)
        for listener_id, (lb, listener) in wanted.items():
            frontend = (lb.vip, listener.port, listener.protocol)
            if listener_id in self._served or self._failed.get(listener_id) == frontend:
                continue
            try:
                self._served[listener_id] = await self._open(lb, listener)
                self._failed.pop(listener_id, None)
                log.info(
                    "event=listener_open listener=%s vip=%s:%d protocol=%s",
                    listener_id,
                    *frontend[:2],
                    frontend[2],
                )
            except OSError as error:
                self._failed[listener_id] = frontend
                log.warning(
                    "event=listener_bind_failed listener=%s vip=%s:%d error=%s",
                    listener_id,
                    lb.vip,
                    listener.port,
                    error,
                )
        self._lb_of = {listener_id: lb.lb_id for listener_id, (lb, _) in wanted.items()}
        self.balancer.forget_expired(self._has_targets)

    def _bound_to(self, scope: Scope) -> dict[TargetKey, Target]:
        """The targets bound to a served listener or rule, looked up in the store as it is now:
        copying every bound target at each change would cost O(all targets) per API call."""
        listener_id, location_id = scope
        lb = self.store.lbs.get(self._lb_of.get(listener_id, ""))
        listener = lb.listeners.get(listener_id) if lb else None
        if listener is None:
            return {}
        if not location_id:
            return listener.targets
        rule = listener.rules.get(location_id)
        return rule.targets if rule else {}

    def _has_targets(self, scope: Scope) -> bool:
        return bool(self._bound_to(scope))

    def _is_bound(self, key: ProbeKey) -> bool:
        return (key[2], key[3]) in self._bound_to((key[0], key[1]))

    def _check_drains(self) -> None:
        loop = asyncio.get_running_loop()
        for key in list(self.balancer.active):
            if not self._is_bound(key) and key not in self._draining:
                self._draining.add(key)
                loop.call_later(DRAIN_SECONDS, self._drain, key)

    def _drain(self, key: ProbeKey) -> None:
        self._draining.discard(key)
        if self._is_bound(key):
            return  # bound again during the drain
        conns = self.balancer.active.pop(key, set())
        if conns:
            log.info(
                "event=drained target=%s:%d listener=%s conns=%d",
                key[2],
                key[3],
                key[0],
                len(conns),
            )
        for conn in conns:
            conn.close()

    async def run(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, force_close=False),
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT),
        )
        while True:
            if self.store.version != self._seen_version:
                await self.sync()
            self._check_drains()
            await asyncio.sleep(SYNC_INTERVAL)

    async def close(self) -> None:
        for served in list(self._served.values()):
            await self._close_served(served)
        self._served.clear()
        for conns in list(self.balancer.active.values()):
            for conn in list(conns):
                conn.close()
        self.balancer.active.clear()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _close_served(self, served: _Served) -> None:
        result = served.close()
        if asyncio.iscoroutine(result):
            await result

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _listener(self, lb_id: str, listener_id: str) -> Listener | None:
        lb = self.store.lbs.get(lb_id)
        return lb.listeners.get(listener_id) if lb else None

    async def _open(self, lb: LoadBalancer, listener: Listener) -> _Served:
        frontend = (lb.vip, listener.port, listener.protocol)
        if listener.protocol == "TCP":
            return await self._open_tcp(lb.lb_id, listener.listener_id, frontend)
        if listener.protocol == "UDP":
            return await self._open_udp(lb.lb_id, listener.listener_id, frontend)
        return await self._open_http(lb.lb_id, listener.listener_id, frontend)

    # ----- TCP ----------------------------------------------------------------------------

    async def _open_tcp(self, lb_id: str, listener_id: str, frontend: Frontend) -> _Served:
        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._proxy_tcp(lb_id, listener_id, reader, writer)

        server = await asyncio.start_server(
            accept, frontend[0], frontend[1], reuse_address=True, backlog=1024
        )

        def close() -> None:
            server.close()

        return _Served(frontend=frontend, close=close)

    async def _proxy_tcp(
        self,
        lb_id: str,
        listener_id: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        client_ip = str(writer.get_extra_info("peername")[0])
        listener = self._listener(lb_id, listener_id)
        backend = self.balancer.pick(listener, None, client_ip) if listener else None
        if backend is None:
            _reset(writer)
            return
        sock = _socket_from(client_ip, kind=socket.SOCK_STREAM)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await loop.sock_connect(sock, (backend.ip, backend.port))
            up_reader, up_writer = await asyncio.open_connection(sock=sock, limit=CHUNK)
        except (OSError, TimeoutError) as error:
            sock.close()
            log.debug(
                "event=backend_connect_failed target=%s:%d error=%s",
                backend.ip,
                backend.port,
                error,
            )
            _reset(writer)
            return

        def close() -> None:
            up_writer.transport.abort()
            writer.transport.abort()

        conn = _Conn(close)
        self.balancer.track(backend.key, conn)
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self.balancer.untrack(backend.key, conn)
            up_writer.close()
            writer.close()

    # ----- UDP ----------------------------------------------------------------------------

    async def _open_udp(self, lb_id: str, listener_id: str, frontend: Frontend) -> _Served:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: _UdpFrontend(self, lb_id, listener_id),
            local_addr=(frontend[0], frontend[1]),
            reuse_port=False,
        )
        protocol.sweeper = loop.call_later(UDP_IDLE_SECONDS / 4, protocol.sweep)

        def close() -> None:
            protocol.close_all()
            transport.close()

        return _Served(frontend=frontend, close=close)

    # ----- HTTP ---------------------------------------------------------------------------

    async def _open_http(self, lb_id: str, listener_id: str, frontend: Frontend) -> _Served:
        async def handle(request: web.Request) -> web.StreamResponse:
            return await self._proxy_http(lb_id, listener_id, request)

        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, frontend[0], frontend[1], reuse_address=True)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise

        async def close() -> None:
            await runner.shutdown()
            await runner.cleanup()

        return _Served(frontend=frontend, close=close)

    async def _proxy_http(
        self, lb_id: str, listener_id: str, request: web.Request
    ) -> web.StreamResponse:
        listener = self._listener(lb_id, listener_id)
        host = request.host.rsplit(":", 1)[0].lower() if request.host else ""
        rule = route(listener, host, request.path) if listener else None
        if listener is None or rule is None:
            return web.Response(status=404, text="no rule matches this host and path\n")
        client_ip = request.remote or ""
        backend = self.balancer.pick(listener, rule, client_ip)
        if backend is None or self._session is None:
            return web.Response(status=503, text="no healthy backend\n")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        forwarded = request.headers.get("X-Forwarded-For")
        headers["X-Forwarded-For"] = f"{forwarded}, {client_ip}" if forwarded else client_ip
        headers["X-Real-IP"] = client_ip
        headers["Host"] = request.host
        body = await request.read()
        task = asyncio.current_task()

        def cancel() -> None:
            if task is not None:
                task.cancel()

        conn = _Conn(cancel)
        self.balancer.track(backend.key, conn)
        try:
            async with self._session.request(
                request.method,
                f"http://{backend.ip}:{backend.port}{request.path_qs}",
                headers=headers,
                data=body,
                allow_redirects=False,
            ) as answer:
                payload = await answer.read()
                out = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP}
                return web.Response(status=answer.status, headers=out, body=payload)
        except (aiohttp.ClientError, TimeoutError) as error:
            return web.Response(status=502, text=f"backend failed: {error}\n")
        finally:
            self.balancer.untrack(backend.key, conn)


def route(listener: Listener, host: str, path: str) -> Rule | None:
    """The rule a request goes to: its Host's rules (else the default server's), then the URL.

    URLs match as on a CLB (nginx's ``location`` order): an ``=`` URL that equals the path
    wins; then the longest ``^~`` prefix; then the first ``~`` (case-sensitive) or ``~*``
    (case-insensitive) regular expression that matches, in rule creation order; then the
    longest plain prefix. ``*.example.com`` matches any subdomain.
    """
    rules = list(listener.rules.values())
    mine = [r for r in rules if r.domain.lower() == host]
    if not mine:
        mine = [
            r for r in rules if r.domain.startswith("*.") and host.endswith(r.domain[1:].lower())
        ]
    if not mine:
        default = next((r.domain for r in rules if r.default_server), None)
        mine = [r for r in rules if r.domain == default]
    prefixes: list[tuple[str, Rule]] = []
    priority: list[tuple[str, Rule]] = []
    for rule in mine:
        url = rule.url.strip()
        if url.startswith("="):
            if url[1:].strip() == path:
                return rule
        elif url.startswith("^~"):
            priority.append((url[2:].strip(), rule))
        elif not url.startswith("~"):
            prefixes.append((url, rule))
    best = _longest_prefix(priority, path)
    if best is not None:
        return best
    for rule in mine:
        url = rule.url.strip()
        if url.startswith("~"):
            flags = re.IGNORECASE if url.startswith("~*") else 0
            pattern = url[2:] if url.startswith("~*") else url[1:]
            try:
                if re.search(pattern.strip(), path, flags):
                    return rule
            except re.error:
                continue
    return _longest_prefix(prefixes, path)


def _longest_prefix(candidates: list[tuple[str, Rule]], path: str) -> Rule | None:
    best: tuple[str, Rule] | None = None
    for prefix, rule in candidates:
        if path.startswith(prefix) and (best is None or len(prefix) > len(best[0])):
            best = (prefix, rule)
    return best[1] if best is not None else None


class _UdpFlow(asyncio.DatagramProtocol):
    """One client's datagrams to its chosen target, and the target's replies back."""

    def __init__(self, frontend: _UdpFrontend, client: tuple[str, int], key: ProbeKey) -> None:
        self.frontend = frontend
        self.client = client
        self.key = key
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: list[bytes] = []
        self.last = time.monotonic()
        self.closed = False
        self.conn = _Conn(self.close)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector loop's datagram transport does not subclass DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)
        for data in self.pending:
            self.transport.sendto(data)
        self.pending.clear()

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.last = time.monotonic()
        if self.frontend.transport is not None:
            self.frontend.transport.sendto(data, self.client)

    def error_received(self, exc: Exception) -> None:
        log.debug("event=udp_backend_error target=%s:%d error=%s", self.key[2], self.key[3], exc)

    def send(self, data: bytes) -> None:
        self.last = time.monotonic()
        if self.transport is None:
            self.pending.append(data)
        else:
            self.transport.sendto(data)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.transport is not None:
            self.transport.close()
        self.frontend.flows.pop(self.client, None)
        self.frontend.plane.balancer.untrack(self.key, self.conn)


class _UdpFrontend(asyncio.DatagramProtocol):
    def __init__(self, plane: DataPlane, lb_id: str, listener_id: str) -> None:
        self.plane = plane
        self.lb_id = lb_id
        self.listener_id = listener_id
        self.transport: asyncio.DatagramTransport | None = None
        self.flows: dict[tuple[str, int], _UdpFlow] = {}
        self.sweeper: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector loop's datagram transport does not subclass DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        client = (str(addr[0]), int(addr[1]))
        flow = self.flows.get(client)
        if flow is None or flow.closed:
            listener = self.plane._listener(self.lb_id, self.listener_id)
            backend = self.plane.balancer.pick(listener, None, client[0]) if listener else None
            if backend is None:
                return  # no eligible target: the datagram is dropped
            flow = self.flows[client] = _UdpFlow(self, client, backend.key)
            self.plane.balancer.track(backend.key, flow.conn)
            self.plane._spawn(self._connect(flow, backend))
        flow.send(data)

    async def _connect(self, flow: _UdpFlow, backend: Backend) -> None:
        loop = asyncio.get_running_loop()
        sock = _socket_from(flow.client[0], kind=socket.SOCK_DGRAM)
        try:
            sock.connect((backend.ip, backend.port))
            await loop.create_datagram_endpoint(lambda: flow, sock=sock)
        except OSError as error:
            sock.close()
            log.debug(
                "event=udp_flow_failed target=%s:%d error=%s", backend.ip, backend.port, error
            )
            flow.close()

    def sweep(self) -> None:
        now = time.monotonic()
        for flow in list(self.flows.values()):
            if now - flow.last > UDP_IDLE_SECONDS:
                flow.close()
        self.sweeper = asyncio.get_running_loop().call_later(UDP_IDLE_SECONDS / 4, self.sweep)

    def close_all(self) -> None:
        if self.sweeper is not None:
            self.sweeper.cancel()
        for flow in list(self.flows.values()):
            flow.close()
