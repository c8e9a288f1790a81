"""What runs "inside" a simulated container: a small HTTP/1.1 server per TCP container port and
a UDP echo per UDP port, bound to the pod's own loopback IP.

HTTP answers (any method, any path) are JSON naming the pod, its namespace, node, container
and port, and echoing the client address the server saw::

    {"pod": "web-1", "namespace": "default", "node": "node-2", "container": "app",
     "podIP": "127.17.0.5", "port": 80, "client": "127.20.0.1:40112",
     "clientIP": "127.20.0.1", "method": "GET", "path": "/", "healthy": true}

with headers ``X-Pod-Name`` and ``X-Node-Name``. Keep-alive (HTTP/1.1) and ``Connection: close``
are honoured; request bodies are read (``Content-Length``) and ignored.

Health: a container's app is *healthy* unless ``SIM_READY_FAIL=true``, before
``SIM_READY_DELAY`` seconds have passed since it started, or after ``POST /_sim/fail`` (undone by
``POST /_sim/recover``). An unhealthy app answers 503 on the paths of its readiness probe and on
``/healthz`` (so the kubelet's httpGet probe and a load balancer's health check on those paths
fail), and normally elsewhere. ``SIM_RESPONSE_DELAY`` (seconds) delays every answer except
``/_sim/*``.

UDP: each datagram is answered with the same JSON (``"echo"`` holds the datagram as text).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("directlb.sim.cluster.pods")

MAX_HEAD = 64 * 1024
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 503: "Service Unavailable"}


@dataclass
class App:
    """One container's simulated application: identity, timing knobs and health."""

    pod: str
    namespace: str
    node: str
    container: str
    pod_ip: str
    ready_delay: float = 0.0
    ready_fail: bool = False
    response_delay: float = 0.0
    probe_paths: set[str] = field(default_factory=set)
    started_at: float | None = None
    failed_by_request: bool = False

    @property
    def healthy(self) -> bool:
        if self.ready_fail or self.failed_by_request or self.started_at is None:
            return False
        return time.monotonic() >= self.started_at + self.ready_delay

    def identity(self, *, port: int, client: tuple[str, int] | None) -> dict[str, Any]:
        host, client_port = client if client else ("", 0)
        return {
            "pod": self.pod,
            "namespace": self.namespace,
            "node": self.node,
            "container": self.container,
            "podIP": self.pod_ip,
            "port": port,
            "client": f"{host}:{client_port}",
            "clientIP": host,
            "healthy": self.healthy,
        }


class HttpServer:
    """An HTTP/1.1 server on ``ip:port`` answering for ``app``; ``close()`` drops every
    connection at once, as a process that exits."""

    def __init__(self, app: App, *, ip: str, port: int) -> None:
        self.app = app
        self.ip = ip
        self.port = port
        self._server: asyncio.Server | None = None
        self._sock: socket.socket | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def bind(self) -> None:
        """Take the address now (OSError if taken); connections are refused until ``start``."""
        if self._sock is None:
            self._sock = _bound(socket.SOCK_STREAM, self.ip, self.port)

    async def start(self) -> None:
        self.bind()
        self._server = await asyncio.start_server(self._connection, sock=self._sock, limit=MAX_HEAD)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        elif self._sock is not None:
            self._sock.close()
        self._sock = None
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._writers.add(writer)
        peer = writer.get_extra_info("peername")
        client = (str(peer[0]), int(peer[1])) if peer else None
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, version = [*lines[0].split(" ", 2), "", ""][:3]
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    name, sep, value = line.partition(":")
                    if sep:
                        headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length") or 0)
                if length:
                    await reader.readexactly(length)
                status, body = await self._answer(method, target, client)
                connection = headers.get("connection", "").lower()
                keep = (version == "HTTP/1.1" and connection != "close") or (
                    version == "HTTP/1.0" and connection == "keep-alive"
                )
                response = (
                    f"HTTP/1.1 {status} {REASONS.get(status, 'OK')}\r\n"
                    "Content-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n"
                    f"X-Pod-Name: {self.app.pod}\r\n"
                    f"X-Node-Name: {self.app.node}\r\n"
                    f"Connection: {'keep-alive' if keep else 'close'}\r\n\r\n"
                ).encode()
                writer.write(response if method == "HEAD" else response + body)
                await writer.drain()
                if not keep:
                    break
        except (
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ConnectionError,
            ValueError,
        ):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            if task is not None:
                self._tasks.discard(task)

    async def _answer(
        self, method: str, target: str, client: tuple[str, int] | None
    ) -> tuple[int, bytes]:
        path = target.split("?", 1)[0]
        app = self.app
        if path.startswith("/_sim/"):
            if method == "POST" and path == "/_sim/fail":
                app.failed_by_request = True
            elif method == "POST" and path == "/_sim/recover":
                app.failed_by_request = False
            elif path != "/_sim/health":
                return 404, b'{"error":"unknown /_sim endpoint"}\n'
            return 200, json.dumps({"healthy": app.healthy}).encode() + b"\n"
        if app.response_delay > 0:
            await asyncio.sleep(app.response_delay)
        status = 200
        if not app.healthy and (path in app.probe_paths or path == "/healthz"):
            status = 503
        answer = app.identity(port=self.port, client=client) | {"method": method, "path": target}
        return status, json.dumps(answer).encode() + b"\n"


class UdpEcho(asyncio.DatagramProtocol):
    """Answers each datagram with the app's identity and the datagram as ``echo``."""

    def __init__(self, app: App, *, ip: str, port: int) -> None:
        self.app = app
        self.ip = ip
        self.port = port
        self._transport: asyncio.DatagramTransport | None = None
        self._sock: socket.socket | None = None

    def bind(self) -> None:
        if self._sock is None:
            self._sock = _bound(socket.SOCK_DGRAM, self.ip, self.port)

    async def start(self) -> None:
        self.bind()
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, sock=self._sock)
        self._transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if self._transport is None:
            return
        answer = self.app.identity(port=self.port, client=(str(addr[0]), int(addr[1])))
        answer["echo"] = data.decode("utf-8", "replace")
        self._transport.sendto(json.dumps(answer).encode() + b"\n", addr)

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        elif self._sock is not None:
            self._sock.close()
        self._sock = None


Server = HttpServer | UdpEcho


def _bound(kind: int, ip: str, port: int) -> socket.socket:
    # No SO_REUSEADDR: with it, two sockets may bind the same address (only the second
    # listen() fails), and binding is what reserves a pod's ports. The price: an address
    # with connections in TIME_WAIT is refused too, and the kubelet takes another pod IP.
    sock = socket.socket(socket.AF_INET, kind)
    try:
        sock.bind((ip, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


async def http_get(
    *,
    host: str,
    port: int,
    path: str,
    timeout: float,
    source: str | None = None,
    headers: dict[str, str] | None = None,
) -> int | None:
    """One HTTP/1.1 GET (what the kubelet's httpGet probe and preStop hook do); the status, or
    None when the connection or the answer failed."""
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                host, port, local_addr=(source, 0) if source else None
            )
            extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
            writer.write(
                f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.32\r\n"
                f"{extra}Connection: close\r\n\r\n".encode()
            )
            await writer.drain()
            line = await reader.readline()
            parts = line.decode("latin-1").split(" ", 2)
            return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else None
    except (OSError, TimeoutError, ValueError):
        return None
    finally:
        if writer is not None:
            writer.close()


async def tcp_connect(*, host: str, port: int, timeout: float, source: str | None = None) -> bool:
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(
                host, port, local_addr=(source, 0) if source else None
            )
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True
