"""Real traffic through the CLB emulator's VIPs, to real servers on loopback addresses.

Backends listen on 127.17.x.y (the pods' ENI range) and report the peer address they saw;
clients bind to 127.55.0.x so the source address the backend sees is distinguishable from the
emulator's. Health checks run at time scale 0.02 (IntervalTime 5 s -> 0.1 s of wall time).
"""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import aiohttp
from aiohttp import web
from tencentcloud.clb.v20180317 import clb_client_async

from directlb.emulator.server import Emulator
from tests import support

EmulatorFactory = Callable[..., Awaitable[Emulator]]

TIME_SCALE = 0.02
TIMEOUT = 15.0
CLIENT = "127.55.0.9"
CHECK = {"IntervalTime": 5, "TimeOut": 2, "HealthNum": 2, "UnHealthNum": 2}


@dataclass
class EchoServer:
    """TCP: greets with ``NAME PEER_IP``, then echoes; counts and keeps its connections."""

    name: str
    ip: str
    port: int = 0
    accepted: int = 0
    server: asyncio.Server | None = None

    async def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((self.ip, 0))
        self.port = int(sock.getsockname()[1])
        self.server = await asyncio.start_server(self._accept, sock=sock)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        peer = writer.get_extra_info("peername")[0]
        writer.write(f"{self.name} {peer}\n".encode())
        try:
            while data := await reader.read(4096):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None


class _UdpEcho(asyncio.DatagramProtocol):
    def __init__(self, name: str) -> None:
        self.name = name
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector loop's datagram transport does not subclass DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(f"{self.name} {addr[0]} ".encode() + data, addr)


@dataclass
class Lb:
    clb: clb_client_async.ClbClient
    lb_id: str
    vip: str
    listener_id: str = ""
    port: int = 0
    stack: AsyncExitStack = field(default_factory=AsyncExitStack)

    async def echo(self, name: str, ip: str) -> EchoServer:
        server = EchoServer(name, ip)
        await server.start()
        self.stack.push_async_callback(server.stop)
        return server

    async def register(self, *servers: EchoServer, weight: int = 10, **where: Any) -> None:
        targets = [{"EniIp": s.ip, "Port": s.port, "Weight": weight} for s in servers]
        await support.done(
            self.clb,
            "RegisterTargets",
            LoadBalancerId=self.lb_id,
            ListenerId=where.pop("listener_id", self.listener_id),
            Targets=targets,
            **where,
        )

    async def wait_alive(self, count: int, *, listener_id: str = "") -> None:
        """Wait until ``count`` targets of the listener (all rules) are Alive."""

        async def alive() -> bool:
            answer = await support.api(
                self.clb,
                "DescribeTargetHealth",
                LoadBalancerIds=[self.lb_id],
                ListenerIds=[listener_id or self.listener_id],
            )
            rules = answer["LoadBalancers"][0]["Listeners"][0]["Rules"]
            details = [t["HealthStatusDetail"] for r in rules for t in r["Targets"]]
            return details.count("Alive") == count

        await support.wait_until(alive, timeout=TIMEOUT)

    async def detail_of(self, server: EchoServer) -> str:
        answer = await support.api(
            self.clb,
            "DescribeTargetHealth",
            LoadBalancerIds=[self.lb_id],
            ListenerIds=[self.listener_id],
        )
        for target in answer["LoadBalancers"][0]["Listeners"][0]["Rules"][0]["Targets"]:
            if (target["IP"], target["Port"]) == (server.ip, server.port):
                return str(target["HealthStatusDetail"])
        return "absent"


@asynccontextmanager
async def balancer(
    make_emulator: EmulatorFactory, *, port: int, protocol: str = "TCP", **listener: Any
) -> AsyncIterator[Lb]:
    emulator = await make_emulator(time_scale=TIME_SCALE, rate_limit=0)
    clb = support.async_client(emulator)
    try:
        lb_id = await support.create_lb(clb)
        answer = await support.api(clb, "DescribeLoadBalancers", LoadBalancerIds=[lb_id])
        vip = answer["LoadBalancerSet"][0]["LoadBalancerVips"][0]
        lb = Lb(clb=clb, lb_id=lb_id, vip=vip, port=port)
        if protocol in ("TCP", "UDP"):
            listener.setdefault("HealthCheck", CHECK)
        lb.listener_id = await support.create_listener(
            clb, lb_id, port=port, protocol=protocol, **listener
        )
        async with lb.stack:
            yield lb
    finally:
        await clb.close()


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def greeting(self) -> tuple[str, str]:
        line = await asyncio.wait_for(self.reader.readline(), TIMEOUT)
        name, _, peer = line.decode().strip().partition(" ")
        return name, peer

    async def echo(self, text: str) -> str:
        self.writer.write(text.encode() + b"\n")
        await self.writer.drain()
        return (await asyncio.wait_for(self.reader.readline(), TIMEOUT)).decode().strip()

    def close(self) -> None:
        self.writer.close()


async def connect(lb: Lb, *, source: str = CLIENT) -> Conn:
    reader, writer = await asyncio.open_connection(lb.vip, lb.port, local_addr=(source, 0))
    return Conn(reader, writer)


async def hit(lb: Lb, *, source: str = CLIENT) -> tuple[str, str]:
    """One connection through the VIP: the (backend name, peer it saw); closed after."""
    conn = await connect(lb, source=source)
    try:
        return await conn.greeting()
    finally:
        conn.close()


async def serving(lb: Lb) -> None:
    """Wait until the VIP answers with a backend greeting."""

    async def ok() -> bool:
        try:
            name, _ = await hit(lb)
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            return False
        return bool(name)

    await support.wait_until(ok, timeout=TIMEOUT)


async def test_tcp_reaches_a_healthy_target_from_the_clients_own_address(
    make_emulator: EmulatorFactory,
) -> None:
    async with balancer(make_emulator, port=18001) as lb:
        a = await lb.echo("a", "127.17.1.1")
        await lb.register(a)
        await lb.wait_alive(1)
        await serving(lb)
        conn = await connect(lb)
        assert await conn.greeting() == ("a", CLIENT)  # the source address is preserved
        assert await conn.echo("hello") == "hello"
        conn.close()


async def test_no_eligible_target_closes_the_connection(make_emulator: EmulatorFactory) -> None:
    async with balancer(make_emulator, port=18002) as lb:

        async def refused_or_reset() -> bool:
            try:
                conn = await connect(lb)
            except ConnectionRefusedError:
                return False  # the listener is not open yet
            try:
                data = await asyncio.wait_for(conn.reader.read(10), TIMEOUT)
            except ConnectionResetError:
                return True
            finally:
                conn.close()
            return data == b""

        await support.wait_until(refused_or_reset, timeout=TIMEOUT)


async def test_wrr_spreads_connections_by_weight(make_emulator: EmulatorFactory) -> None:
    async with balancer(make_emulator, port=18003) as lb:
        a = await lb.echo("a", "127.17.1.2")
        b = await lb.echo("b", "127.17.1.3")
        await lb.register(a, weight=30)
        await lb.register(b, weight=10)
        await lb.wait_alive(2)
        await serving(lb)
        seen = Counter([(await hit(lb))[0] for _ in range(40)])
        assert seen == {"a": 30, "b": 10}


async def test_weight_zero_gets_no_new_connections_but_keeps_open_ones(
    make_emulator: EmulatorFactory,
) -> None:
    async with balancer(make_emulator, port=18004) as lb:
        a = await lb.echo("a", "127.17.1.4")
        b = await lb.echo("b", "127.17.1.5")
        await lb.register(a, b)
        await lb.wait_alive(2)
        await serving(lb)
        held = await connect(lb)
        name, _ = await held.greeting()
        zeroed = a if name == "a" else b
        await support.done(
            lb.clb,
            "ModifyTargetWeight",
            LoadBalancerId=lb.lb_id,
            ListenerId=lb.listener_id,
            Targets=[{"EniIp": zeroed.ip, "Port": zeroed.port}],
            Weight=0,
        )
        accepted = zeroed.accepted
        names = {(await hit(lb))[0] for _ in range(10)}
        assert zeroed.name not in names
        assert zeroed.accepted == accepted
        assert await held.echo("still here") == "still here"
        held.close()


async def test_unhealthy_target_gets_no_traffic_once_dead(make_emulator: EmulatorFactory) -> None:
    async with balancer(make_emulator, port=18005) as lb:
        a = await lb.echo("a", "127.17.1.6")
        b = await lb.echo("b", "127.17.1.7")
        await lb.register(a, b)
        await lb.wait_alive(2)
        await serving(lb)
        await b.stop()

        async def dead() -> bool:
            return await lb.detail_of(b) == "Dead"

        await support.wait_until(dead, timeout=TIMEOUT)
        names = [(await hit(lb))[0] for _ in range(10)]
        assert names == ["a"] * 10


async def test_session_persistence_sticks_a_client_to_its_target(
    make_emulator: EmulatorFactory,
) -> None:
    async with balancer(make_emulator, port=18006, SessionExpireTime=3600) as lb:
        a = await lb.echo("a", "127.17.1.8")
        b = await lb.echo("b", "127.17.1.9")
        await lb.register(a, b)
        await lb.wait_alive(2)
        await serving(lb)
        first = [(await hit(lb))[0] for _ in range(10)]
        assert len(set(first)) == 1
        # Another client is scheduled on its own (WRR moves on to the other target).
        other = [(await hit(lb, source="127.55.0.10"))[0] for _ in range(10)]
        assert len(set(other)) == 1


async def test_deregistered_target_loses_open_connections_after_the_drain(
    make_emulator: EmulatorFactory,
) -> None:
    async with balancer(make_emulator, port=18007) as lb:
        a = await lb.echo("a", "127.17.1.10")
        await lb.register(a)
        await lb.wait_alive(1)
        await serving(lb)
        conn = await connect(lb)
        assert (await conn.greeting())[0] == "a"
        await support.done(
            lb.clb,
            "DeregisterTargets",
            LoadBalancerId=lb.lb_id,
            ListenerId=lb.listener_id,
            Targets=[{"EniIp": a.ip, "Port": a.port}],
        )
        # Within the drain (1 s wall) the connection still works, then it is closed.
        assert await conn.echo("draining") == "draining"
        closed = await asyncio.wait_for(conn.reader.read(100), TIMEOUT)
        assert closed == b""
        conn.close()


@asynccontextmanager
async def http_backend(name: str, ip: str) -> AsyncIterator[tuple[str, int]]:
    async def handle(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "name": name,
                "path": request.path,
                "host": request.host,
                "xff": request.headers.get("X-Forwarded-For", ""),
            }
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((ip, 0))
    port = int(sock.getsockname()[1])
    await web.SockSite(runner, sock).start()
    try:
        yield ip, port
    finally:
        await runner.cleanup()


async def test_http_routes_by_host_and_path(make_emulator: EmulatorFactory) -> None:
    async with (
        balancer(make_emulator, port=18008, protocol="HTTP") as lb,
        http_backend("api", "127.17.2.1") as api_backend,
        http_backend("web", "127.17.2.2") as web_backend,
    ):
        answer = await support.done(
            lb.clb,
            "CreateRule",
            LoadBalancerId=lb.lb_id,
            ListenerId=lb.listener_id,
            Rules=[
                {"Domain": "shop.example.com", "Url": "/api", "HealthCheck": CHECK},
                {"Domain": "shop.example.com", "Url": "/", "HealthCheck": CHECK},
            ],
        )
        api_rule, web_rule = answer["LocationIds"]
        for (ip, port), location in ((api_backend, api_rule), (web_backend, web_rule)):
            await support.done(
                lb.clb,
                "RegisterTargets",
                LoadBalancerId=lb.lb_id,
                ListenerId=lb.listener_id,
                LocationId=location,
                Targets=[{"EniIp": ip, "Port": port}],
            )
        await lb.wait_alive(2)
        connector = aiohttp.TCPConnector(local_addr=(CLIENT, 0), force_close=True)
        async with aiohttp.ClientSession(connector=connector) as http:

            async def get(host: str, path: str) -> dict[str, Any]:
                url = f"http://{lb.vip}:{lb.port}{path}"
                async with http.get(url, headers={"Host": host}) as response:
                    assert response.status == 200, await response.text()
                    return dict(await response.json())

            async def routed() -> bool:
                try:
                    return (await get("shop.example.com", "/api/x"))["name"] == "api"
                except (aiohttp.ClientError, AssertionError):
                    return False

            await support.wait_until(routed, timeout=TIMEOUT)
            api = await get("shop.example.com", "/api/orders")
            assert api["name"] == "api"
            assert api["path"] == "/api/orders"
            assert api["host"] == "shop.example.com"
            assert api["xff"] == CLIENT
            assert (await get("shop.example.com", "/cart"))["name"] == "web"
            # An unknown host goes to the default server (the first domain of the listener).
            assert (await get("other.example.org", "/api/1"))["name"] == "api"


async def test_udp_datagrams_reach_a_target_and_replies_come_back(
    make_emulator: EmulatorFactory,
) -> None:
    async with balancer(make_emulator, port=18009, protocol="UDP", HealthCheck={}) as lb:
        loop = asyncio.get_running_loop()
        backend, _ = await loop.create_datagram_endpoint(
            lambda: _UdpEcho("u"), local_addr=("127.17.3.1", 0)
        )
        lb.stack.callback(backend.close)
        port = backend.get_extra_info("sockname")[1]
        await support.done(
            lb.clb,
            "RegisterTargets",
            LoadBalancerId=lb.lb_id,
            ListenerId=lb.listener_id,
            Targets=[{"EniIp": "127.17.3.1", "Port": port}],
        )
        await lb.wait_alive(1)  # PING: every loopback address answers
        replies: asyncio.Queue[bytes] = asyncio.Queue()

        class Client(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
                replies.put_nowait(data)

        client, _ = await loop.create_datagram_endpoint(
            Client, local_addr=(CLIENT, 0), remote_addr=(lb.vip, lb.port)
        )
        try:

            async def answered() -> bool:
                client.sendto(b"ping")
                try:
                    await asyncio.wait_for(replies.get(), 0.2)
                except TimeoutError:
                    return False
                return True

            await support.wait_until(answered, timeout=TIMEOUT)
            client.sendto(b"hello")
            reply = await asyncio.wait_for(replies.get(), TIMEOUT)
            while reply.endswith(b"ping"):  # late answers to the probes above
                reply = await asyncio.wait_for(replies.get(), TIMEOUT)
            assert reply == f"u {CLIENT} hello".encode()
        finally:
            client.close()


async def test_no_data_plane_leaves_the_vip_closed(make_emulator: EmulatorFactory) -> None:
    emulator = await make_emulator(time_scale=TIME_SCALE, rate_limit=0, data_plane=False)
    assert emulator.dataplane is None
    clb = support.async_client(emulator)
    try:
        lb_id = await support.create_lb(clb)
        answer = await support.api(clb, "DescribeLoadBalancers", LoadBalancerIds=[lb_id])
        vip = answer["LoadBalancerSet"][0]["LoadBalancerVips"][0]
        await support.create_listener(clb, lb_id, port=18010)
        # Nothing to wait for: no data plane ever opens the port.
        try:
            _, writer = await asyncio.open_connection(vip, 18010)
        except ConnectionRefusedError:
            return
        writer.close()
        raise AssertionError("the VIP accepted a connection with the data plane off")
    finally:
        await clb.close()
