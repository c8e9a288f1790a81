"""Real health probes of the CLB emulator against real servers on loopback addresses.

Every address of 127.0.0.0/8 is local on Linux, so each test binds its own servers on an
address of the emulator's VPC (127.17/16 for pods, 127.20/16 for nodes) and registers that
address as a target. The time scale is small (0.02: IntervalTime 5 s -> 0.1 s of wall time,
TimeOut floored at 0.2 s), so a few probes take a fraction of a second.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from tencentcloud.clb.v20180317 import clb_client_async

from directlb.emulator.server import Emulator
from tests import support

EmulatorFactory = Callable[..., Awaitable[Emulator]]

TIME_SCALE = 0.02
TIMEOUT = 15.0  # wall seconds any health transition below may take, at most


def _bound_socket(ip: str) -> socket.socket:
    """A TCP socket bound to a free port of ``ip`` (not yet listening)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((ip, 0))
    return sock


def _free_port(ip: str) -> int:
    """A port of ``ip`` that nothing listens on (bound then released at once)."""
    with _bound_socket(ip) as sock:
        return int(sock.getsockname()[1])


@dataclass
class TcpServer:
    """A TCP server that accepts and counts connections, then hangs up."""

    ip: str
    port: int = 0
    connections: int = 0
    server: asyncio.Server | None = None

    async def start(self) -> None:
        sock = _bound_socket(self.ip)
        self.server = await asyncio.start_server(self._accept, sock=sock)
        self.port = int(sock.getsockname()[1])

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None


@asynccontextmanager
async def tcp_server(ip: str) -> AsyncIterator[TcpServer]:
    server = TcpServer(ip)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@dataclass
class HttpServer:
    """An aiohttp app answering ``status`` on every path, recording what it was asked."""

    ip: str
    status: int
    port: int = 0
    seen: list[tuple[str, str, str]] = field(default_factory=list)  # method, path, Host


@asynccontextmanager
async def http_server(ip: str, *, status: int) -> AsyncIterator[HttpServer]:
    server = HttpServer(ip=ip, status=status)

    async def handle(request: web.Request) -> web.Response:
        server.seen.append((request.method, request.path, request.headers.get("Host", "")))
        return web.Response(status=server.status, text="health")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    sock = _bound_socket(ip)
    server.port = int(sock.getsockname()[1])
    site = web.SockSite(runner, sock)
    await site.start()
    try:
        yield server
    finally:
        await runner.cleanup()


@asynccontextmanager
async def client_of(emulator: Emulator) -> AsyncIterator[clb_client_async.ClbClient]:
    client = support.async_client(emulator)
    try:
        yield client
    finally:
        await client.close()


async def fast_emulator(make_emulator: EmulatorFactory, **overrides: Any) -> Emulator:
    return await make_emulator(time_scale=TIME_SCALE, **overrides)


async def target_health(
    clb: clb_client_async.ClbClient,
    lb_id: str,
    listener_id: str,
    *,
    location_id: str = "",
) -> list[dict[str, Any]]:
    """The Targets DescribeTargetHealth reports for one listener (and rule, on layer 7)."""
    answer = await support.api(
        clb, "DescribeTargetHealth", LoadBalancerIds=[lb_id], ListenerIds=[listener_id]
    )
    [lb] = answer["LoadBalancers"]
    [listener] = lb["Listeners"]
    for rule in listener["Rules"]:
        if rule["LocationId"] == location_id:
            return list(rule["Targets"])
    raise AssertionError(f"no rule {location_id!r} in {listener['Rules']}")


async def one_target(
    clb: clb_client_async.ClbClient, lb_id: str, listener_id: str, *, location_id: str = ""
) -> dict[str, Any]:
    targets = await target_health(clb, lb_id, listener_id, location_id=location_id)
    assert len(targets) == 1, targets
    return targets[0]


async def wait_detail(
    clb: clb_client_async.ClbClient,
    lb_id: str,
    listener_id: str,
    detail: str,
    *,
    location_id: str = "",
) -> dict[str, Any]:
    """Wait until the listener's (or rule's) only target reports ``detail``; return it."""
    seen: dict[str, Any] = {}

    async def reached() -> bool:
        nonlocal seen
        seen = await one_target(clb, lb_id, listener_id, location_id=location_id)
        return bool(seen["HealthStatusDetail"] == detail)

    try:
        await support.wait_until(reached, timeout=TIMEOUT)
    except TimeoutError:
        raise AssertionError(f"target never became {detail}; last seen {seen}") from None
    return seen


async def register(
    clb: clb_client_async.ClbClient,
    lb_id: str,
    listener_id: str,
    target: dict[str, Any],
    *,
    location_id: str = "",
) -> None:
    where: dict[str, Any] = {"LocationId": location_id} if location_id else {}
    await support.done(
        clb,
        "RegisterTargets",
        LoadBalancerId=lb_id,
        ListenerId=listener_id,
        Targets=[target],
        **where,
    )


async def test_healthy_tcp_server_turns_alive_after_health_num_probes(
    make_emulator: EmulatorFactory,
) -> None:
    emulator = await fast_emulator(make_emulator)
    async with client_of(emulator) as clb, tcp_server("127.17.0.10") as server:
        lb_id = await support.create_lb(clb)
        # IntervalTime 10 (0.2 s wall) and HealthNum 5: Alive takes at least 0.8 s after the
        # first probe, so the state right after binding is observable.
        listener_id = await support.create_listener(
            clb,
            lb_id,
            port=80,
            HealthCheck={"IntervalTime": 10, "TimeOut": 2, "HealthNum": 5, "UnHealthNum": 3},
        )
        await register(clb, lb_id, listener_id, {"EniIp": server.ip, "Port": server.port})

        fresh = await one_target(clb, lb_id, listener_id)
        assert (fresh["IP"], fresh["Port"]) == (server.ip, server.port)
        assert fresh["HealthStatus"] is False
        assert fresh["HealthStatusDetail"] == "Unknown"

        alive = await wait_detail(clb, lb_id, listener_id, "Alive")
        assert alive["HealthStatus"] is True
        # Alive needs HealthNum successful probes in a row, each a real connection.
        assert server.connections >= 5


async def test_server_that_dies_turns_dead_after_unhealth_num_failures(
    make_emulator: EmulatorFactory,
) -> None:
    emulator = await fast_emulator(make_emulator)
    async with client_of(emulator) as clb, tcp_server("127.17.0.11") as server:
        lb_id = await support.create_lb(clb)
        listener_id = await support.create_listener(
            clb,
            lb_id,
            port=80,
            HealthCheck={"IntervalTime": 5, "TimeOut": 2, "HealthNum": 2, "UnHealthNum": 3},
        )
        await register(clb, lb_id, listener_id, {"EniIp": server.ip, "Port": server.port})
        await wait_detail(clb, lb_id, listener_id, "Alive")

        await server.stop()  # the backend dies: connections are refused from now on

        dead = await wait_detail(clb, lb_id, listener_id, "Dead")
        assert dead["HealthStatus"] is False
        assert (dead["IP"], dead["Port"]) == (server.ip, server.port)


async def test_http_check_status_class_must_be_in_http_code(
    make_emulator: EmulatorFactory,
) -> None:
    """A server answering 500 is Dead when HttpCode allows 2xx only, Alive once 5xx counts."""
    emulator = await fast_emulator(make_emulator)
    async with client_of(emulator) as clb, http_server("127.17.0.12", status=500) as server:
        lb_id = await support.create_lb(clb)
        listener_id = await support.create_listener(clb, lb_id, port=80, protocol="HTTP")
        check = {"IntervalTime": 5, "TimeOut": 2, "HealthNum": 2, "UnHealthNum": 2}
        answer = await support.done(
            clb,
            "CreateRule",
            LoadBalancerId=lb_id,
            ListenerId=listener_id,
            Rules=[
                {
                    "Domain": "strict.example.com",
                    "Url": "/",
                    "HealthCheck": {**check, "HttpCheckPath": "/healthz", "HttpCode": 2},
                },
                {
                    "Domain": "lenient.example.com",
                    "Url": "/",
                    "HealthCheck": {**check, "HttpCheckPath": "/healthz", "HttpCode": 2 | 16},
                },
            ],
        )
        strict, lenient = answer["LocationIds"]
        target = {"EniIp": server.ip, "Port": server.port}
        await register(clb, lb_id, listener_id, target, location_id=strict)
        await register(clb, lb_id, listener_id, target, location_id=lenient)

        dead = await wait_detail(clb, lb_id, listener_id, "Dead", location_id=strict)
        assert dead["HealthStatus"] is False
        alive = await wait_detail(clb, lb_id, listener_id, "Alive", location_id=lenient)
        assert alive["HealthStatus"] is True
        assert {path for _method, path, _host in server.seen} == {"/healthz"}

        # Allowing 5xx on the strict rule too brings its target back: the prober follows
        # a changed health check without the target being re-registered.
        await support.done(
            clb,
            "ModifyRule",
            LoadBalancerId=lb_id,
            ListenerId=listener_id,
            LocationId=strict,
            HealthCheck={"HttpCode": 2 | 16},
        )
        await wait_detail(clb, lb_id, listener_id, "Alive", location_id=strict)


async def test_http_check_sends_path_method_and_host(make_emulator: EmulatorFactory) -> None:
    emulator = await fast_emulator(make_emulator)
    async with client_of(emulator) as clb, http_server("127.17.0.13", status=200) as server:
        lb_id = await support.create_lb(clb)
        listener_id = await support.create_listener(clb, lb_id, port=80, protocol="HTTP")
        check = {"IntervalTime": 5, "TimeOut": 2, "HealthNum": 2, "UnHealthNum": 2}
        answer = await support.done(
            clb,
            "CreateRule",
            LoadBalancerId=lb_id,
            ListenerId=listener_id,
            Rules=[
                # No HttpCheckDomain: the probe names the rule's domain.
                {
                    "Domain": "shop.example.com",
                    "Url": "/cart",
                    "HealthCheck": {**check, "HttpCheckPath": "/cart/ready"},
                },
                # An explicit HttpCheckDomain and a GET instead of the default HEAD.
                {
                    "Domain": "api.example.com",
                    "Url": "/",
                    "HealthCheck": {
                        **check,
                        "HttpCheckPath": "/status/live",
                        "HttpCheckDomain": "probe.example.com",
                        "HttpCheckMethod": "GET",
                    },
                },
            ],
        )
        shop, api = answer["LocationIds"]
        target = {"EniIp": server.ip, "Port": server.port}
        await register(clb, lb_id, listener_id, target, location_id=shop)
        await register(clb, lb_id, listener_id, target, location_id=api)

        await wait_detail(clb, lb_id, listener_id, "Alive", location_id=shop)
        await wait_detail(clb, lb_id, listener_id, "Alive", location_id=api)
        assert set(server.seen) == {
            ("HEAD", "/cart/ready", "shop.example.com"),
            ("GET", "/status/live", "probe.example.com"),
        }


async def test_switched_off_health_check_reports_healthy_close(
    make_emulator: EmulatorFactory,
) -> None:
    """With HealthSwitch 0 the target is healthy ("Close") even though nothing listens."""
    emulator = await fast_emulator(make_emulator)
    async with client_of(emulator) as clb:
        ip = "127.17.0.14"
        port = _free_port(ip)  # nothing listens there: a probe would fail
        lb_id = await support.create_lb(clb)
        off = await support.create_listener(clb, lb_id, port=80, HealthCheck={"HealthSwitch": 0})
        on = await support.create_listener(
            clb,
            lb_id,
            port=81,
            HealthCheck={"IntervalTime": 5, "TimeOut": 2, "HealthNum": 2, "UnHealthNum": 2},
        )
        await register(clb, lb_id, off, {"EniIp": ip, "Port": port})
        await register(clb, lb_id, on, {"EniIp": ip, "Port": port})

        closed = await one_target(clb, lb_id, off)
        assert (closed["HealthStatus"], closed["HealthStatusDetail"]) == (True, "Close")
        # The same backend under a health check is found dead, so probes did run meanwhile;
        # the switched-off listener still reports it healthy.
        await wait_detail(clb, lb_id, on, "Dead")
        closed = await one_target(clb, lb_id, off)
        assert (closed["IP"], closed["Port"]) == (ip, port)
        assert (closed["HealthStatus"], closed["HealthStatusDetail"]) == (True, "Close")


async def test_target_bound_by_instance_id_is_probed_at_its_ip(
    make_emulator: EmulatorFactory,
) -> None:
    emulator = await fast_emulator(make_emulator, instances={"ins-abc": "127.20.0.7"})
    async with client_of(emulator) as clb, tcp_server("127.20.0.7") as server:
        lb_id = await support.create_lb(clb)
        listener_id = await support.create_listener(
            clb,
            lb_id,
            port=80,
            HealthCheck={"IntervalTime": 5, "TimeOut": 2, "HealthNum": 2, "UnHealthNum": 2},
        )
        await register(clb, lb_id, listener_id, {"InstanceId": "ins-abc", "Port": server.port})

        alive = await wait_detail(clb, lb_id, listener_id, "Alive")
        assert alive["HealthStatus"] is True
        assert (alive["IP"], alive["Port"], alive["TargetId"]) == (
            "127.20.0.7",
            server.port,
            "ins-abc",
        )
        assert server.connections >= 2
