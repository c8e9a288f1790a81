"""Service allocation, EndpointSlices and kube-proxy against an in-process API server.

Nodes and pods are written by the tests themselves (pod status through ``pods/status``, as a
kubelet would), and each "pod" is a small asyncio server on its loopback IP that answers with
the client address it saw: so the proxy is exercised over real sockets.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.resources.core_v1 import Service

from directlb.sim.api import Api, WriteOptions
from directlb.sim.cluster.config import ClusterConfig
from directlb.sim.cluster.network import (
    CONTROLLER_NAME,
    MANAGED_BY_LABEL,
    SERVICE_NAME_LABEL,
    EndpointSliceController,
    ServiceAllocator,
)
from directlb.sim.cluster.proxy import KubeProxy, desired_listeners, node_ips
from directlb.sim.contracts import Obj, StatusError
from directlb.sim.server import ApiServer
from tests.sim_support import wait_for

NODE_IPS = {"node-1": "127.20.9.1", "node-2": "127.20.9.2", "node-3": "127.20.9.3"}
ZONES = {"node-1": "zone-a", "node-2": "zone-b", "node-3": "zone-a"}
CLIENT_IP = "127.55.0.9"
OPTS = WriteOptions(field_validation="Ignore")


@dataclass
class Net:
    """The controllers under test, and helpers to play nodes, kubelet and pods."""

    api: Api
    proxy: KubeProxy
    servers: list[asyncio.AbstractServer] = field(default_factory=list)
    transports: list[asyncio.BaseTransport] = field(default_factory=list)

    def info(self, group: str, resource: str) -> Any:
        info = self.api.registry.find(group, resource)
        assert info is not None
        return info

    async def node(self, name: str) -> None:
        await self.api.create(
            self.info("", "nodes"),
            namespace="",
            body={
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": ZONES[name]}},
                "status": {"addresses": [{"type": "InternalIP", "address": NODE_IPS[name]}]},
            },
            opts=OPTS,
        )

    async def pod(
        self,
        name: str,
        *,
        node: str,
        ip: str,
        ready: bool = True,
        labels: dict[str, str] | None = None,
        ports: list[Obj] | None = None,
        serve: int | None = 8080,
    ) -> None:
        """A pod bound to ``node`` with ``ip``, Running (Ready or not), serving on ``serve``."""
        await self.api.create(
            self.info("", "pods"),
            namespace="default",
            body={
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "labels": labels or {"app": "web"}},
                "spec": {
                    "nodeName": node,
                    "terminationGracePeriodSeconds": 30,
                    "containers": [{"name": "app", "image": "nginx:1.25", "ports": ports or []}],
                },
            },
            opts=OPTS,
        )
        await self.status(name, ip=ip, ready=ready)
        if serve is not None:
            await self.serve(name, ip, serve)

    async def status(self, name: str, *, ip: str, ready: bool) -> None:
        info = self.info("", "pods")
        pod = self.api.get(info, namespace="default", name=name)
        pod["status"] = {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        }
        await self.api.update(
            info, namespace="default", name=name, body=pod, subresource="status", opts=OPTS
        )

    async def serve(self, name: str, ip: str, port: int) -> None:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            peer = writer.get_extra_info("peername")
            await reader.readuntil(b"\r\n\r\n")
            body = json.dumps({"pod": name, "clientIP": peer[0]}).encode()
            writer.write(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
            writer.close()

        self.servers.append(await asyncio.start_server(answer, ip, port, reuse_address=True))

    async def udp_echo(self, ip: str, port: int) -> None:
        class Echo(asyncio.DatagramProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport

            def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
                self.transport.sendto(  # type: ignore[attr-defined]
                    data + b" from " + str(addr[0]).encode(), addr
                )

        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            Echo, local_addr=(ip, port)
        )
        self.transports.append(transport)

    async def service(self, name: str = "web", **spec: Any) -> Obj:
        body: Obj = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "labels": {"team": "a"}},
            "spec": {
                "selector": {"app": "web"},
                "ports": [{"port": 80, "targetPort": 8080}],
                **spec,
            },
        }
        return await self.api.create(
            self.info("", "services"), namespace="default", body=body, opts=OPTS
        )

    def slices(self, service: str = "web") -> list[Obj]:
        return [
            s.obj
            for _, s in self.api.store.items(("discovery.k8s.io", "endpointslices"), "default")
            if (s.obj["metadata"].get("labels") or {}).get(SERVICE_NAME_LABEL) == service
        ]

    def endpoints(self, service: str = "web") -> dict[str, Obj]:
        """Pod name -> endpoint, over every slice of ``service``."""
        return {
            e["targetRef"]["name"]: e
            for s in self.slices(service)
            for e in s.get("endpoints") or []
        }

    async def delete(self, resource: str, name: str, **options: Any) -> None:
        await self.api.delete(
            self.info("", resource), namespace="default", name=name, options=options, opts=OPTS
        )


@pytest.fixture
async def net(sim: ApiServer) -> AsyncIterator[Net]:
    config = ClusterConfig()
    proxy = KubeProxy(api=sim.api, config=config)
    parts = [
        ServiceAllocator(api=sim.api, config=config),
        EndpointSliceController(api=sim.api, config=config),
        proxy,
    ]
    for part in parts:
        part.start()
    net = Net(sim.api, proxy)
    for name in NODE_IPS:
        await net.node(name)
    yield net
    for part in reversed(parts):
        await part.stop()
    for server in net.servers:
        server.close()
    for transport in net.transports:
        transport.close()


async def http_get(ip: str, port: int, *, source: str | None = None) -> dict[str, Any]:
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(ip, port, local_addr=(source, 0) if source else None), 5
    )
    writer.write(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1]) if head else 0
    return {"status": status, **(json.loads(body) if body else {})}


async def refused(ip: str, port: int, *, source: str | None = None) -> bool:
    """The connection is refused, or reset/closed without an answer."""
    try:
        answer = await http_get(ip, port, source=source)
    except (ConnectionError, OSError):
        return True
    return answer["status"] == 0


# ----- allocation --------------------------------------------------------------------------


async def test_service_addresses_allocated_over_http(net: Net, kube: AsyncClient) -> None:
    def spec(name: str, **extra: Any) -> Service:
        return Service.from_dict(
            {
                "metadata": {"name": name},
                "spec": {"selector": {"app": name}, "ports": [{"port": 80}], **extra},
            }
        )

    plain = await kube.create(spec("plain"))
    assert plain.spec is not None and plain.spec.clusterIP is not None
    assert plain.spec.clusterIP.startswith("127.96.")
    assert plain.spec.clusterIPs == [plain.spec.clusterIP]
    assert plain.spec.ipFamilies == ["IPv4"] and plain.spec.ipFamilyPolicy == "SingleStack"

    fixed = spec("fixed", type="NodePort")
    assert fixed.spec is not None and fixed.spec.ports is not None
    fixed.spec.ports[0].nodePort = 30080
    created = await kube.create(fixed)
    assert created.spec is not None and created.spec.ports is not None
    assert created.spec.ports[0].nodePort == 30080

    with pytest.raises(ApiError) as taken:
        await kube.create(spec("again", type="NodePort", ports=[{"port": 80, "nodePort": 30080}]))
    assert taken.value.status.code == 422
    assert taken.value.status.message == (
        'Service "again" is invalid: spec.ports[0].nodePort: Invalid value: 30080: '
        "provided port is already allocated"
    )

    local = await kube.create(spec("local", type="LoadBalancer", externalTrafficPolicy="Local"))
    assert local.spec is not None and local.spec.ports is not None
    assert local.spec.healthCheckNodePort and 30000 <= local.spec.healthCheckNodePort <= 32767
    assert local.spec.ports[0].nodePort and local.spec.ports[0].nodePort != 30080
    assert local.status is not None and local.status.loadBalancer is not None
    assert local.status.loadBalancer.ingress is None  # left to a load-balancer controller

    # A PUT that leaves the allocated values out keeps them (and writes nothing new).
    body = local.to_dict()
    for key in ("clusterIP", "clusterIPs", "healthCheckNodePort"):
        del body["spec"][key]
    del body["spec"]["ports"][0]["nodePort"]
    del body["metadata"]["resourceVersion"]
    replaced = await kube.replace(Service.from_dict(body))
    assert replaced.to_dict()["spec"] == local.to_dict()["spec"]
    assert replaced.metadata is not None and local.metadata is not None
    assert replaced.metadata.resourceVersion == local.metadata.resourceVersion

    with pytest.raises(ApiError) as immutable:
        body["spec"]["clusterIP"] = "127.96.250.250"
        await kube.replace(Service.from_dict(body))
    assert "may not change once set" in immutable.value.status.message

    # Deleting a Service releases its node port.
    await kube.delete(Service, "fixed", namespace="default")
    reused = await kube.create(
        spec("again", type="NodePort", ports=[{"port": 80, "nodePort": 30080}])
    )
    assert reused.spec is not None and reused.spec.ports is not None
    assert reused.spec.ports[0].nodePort == 30080


# ----- EndpointSlices -----------------------------------------------------------------------


async def test_slice_shape_and_conditions_through_graceful_termination(net: Net) -> None:
    service = await net.service()
    await net.pod("web-1", node="node-1", ip="127.17.9.1")
    await net.pod("web-2", node="node-2", ip="127.17.9.2", ready=False)
    await net.pod("other", node="node-2", ip="127.17.9.3", labels={"app": "other"})
    await wait_for(lambda: _async(set(net.endpoints()) == {"web-1", "web-2"}))
    [slice_obj] = net.slices()
    m = slice_obj["metadata"]
    assert m["name"].startswith("web-") and len(m["name"]) == len("web-") + 5
    assert m["labels"] == {
        "team": "a",
        SERVICE_NAME_LABEL: "web",
        MANAGED_BY_LABEL: CONTROLLER_NAME,
    }
    assert m["ownerReferences"] == [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "name": "web",
            "uid": service["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert slice_obj["addressType"] == "IPv4"
    assert slice_obj["ports"] == [{"name": "", "port": 8080, "protocol": "TCP"}]
    one = net.endpoints()["web-1"]
    assert one["addresses"] == ["127.17.9.1"]
    assert one["conditions"] == {"ready": True, "serving": True, "terminating": False}
    assert one["nodeName"] == "node-1" and one["zone"] == "zone-a"
    assert one["targetRef"]["kind"] == "Pod" and one["targetRef"]["name"] == "web-1"
    assert net.endpoints()["web-2"]["conditions"]["ready"] is False

    # Graceful deletion: the kubelet has not acted yet, the pod is still Ready.
    await net.delete("pods", "web-1")

    def terminating() -> bool:
        return net.endpoints()["web-1"]["conditions"] == {
            "ready": False,
            "serving": True,
            "terminating": True,
        }

    await wait_for(lambda: _async(terminating()))
    # The kubelet reports it not Ready, then removes it.
    await net.status("web-1", ip="127.17.9.1", ready=False)
    await wait_for(lambda: _async(not net.endpoints()["web-1"]["conditions"]["serving"]))
    await net.delete("pods", "web-1", gracePeriodSeconds=0)
    await wait_for(lambda: _async(set(net.endpoints()) == {"web-2"}))


async def test_more_than_100_endpoints_make_two_slices(net: Net) -> None:
    await net.service()
    for index in range(130):
        await net.pod(f"p{index:03}", node="node-1", ip=f"127.17.8.{index + 1}", serve=None)
    await wait_for(lambda: _async(len(net.endpoints()) == 130))
    assert sorted(len(s["endpoints"]) for s in net.slices()) == [30, 100]
    for index in range(40):
        await net.delete("pods", f"p{index:03}", gracePeriodSeconds=0)
    await wait_for(lambda: _async(len(net.endpoints()) == 90))
    assert all(len(s["endpoints"] or []) <= 100 for s in net.slices())


async def test_named_target_port_splits_slices(net: Net) -> None:
    await net.service(ports=[{"name": "http", "port": 80, "targetPort": "web"}])
    await net.pod(
        "a", node="node-1", ip="127.17.9.11", ports=[{"name": "web", "containerPort": 8080}]
    )
    await net.pod(
        "b", node="node-2", ip="127.17.9.12", ports=[{"name": "web", "containerPort": 9090}]
    )
    await net.pod(
        "c", node="node-2", ip="127.17.9.13", ports=[{"name": "web", "containerPort": 8080}]
    )

    def by_port() -> dict[int, list[str]]:
        return {
            s["ports"][0]["port"]: sorted(e["targetRef"]["name"] for e in s["endpoints"] or [])
            for s in net.slices()
            if s.get("ports")
        }

    await wait_for(lambda: _async(by_port() == {8080: ["a", "c"], 9090: ["b"]}))
    assert all(s["ports"][0]["name"] == "http" for s in net.slices())


async def test_slices_follow_selector_and_service(net: Net) -> None:
    service = await net.service()
    await wait_for(lambda: _async(len(net.slices()) == 1))
    [placeholder] = net.slices()
    assert placeholder["endpoints"] == [] and placeholder["ports"] is None
    await net.pod("web-1", node="node-1", ip="127.17.9.21")
    await wait_for(lambda: _async(set(net.endpoints()) == {"web-1"}))
    assert len(net.slices()) == 1

    # Losing the selector removes the controller's slices.
    info = net.info("", "services")
    body = net.api.get(info, namespace="default", name="web")
    del body["spec"]["selector"]
    await net.api.update(info, namespace="default", name="web", body=body, opts=OPTS)
    await wait_for(lambda: _async(net.slices() == []))
    body = net.api.get(info, namespace="default", name="web")
    body["spec"]["selector"] = {"app": "web"}
    await net.api.update(info, namespace="default", name="web", body=body, opts=OPTS)
    await wait_for(lambda: _async(set(net.endpoints()) == {"web-1"}))

    # A zone change on the node reaches the endpoint.
    nodes = net.info("", "nodes")
    node = net.api.get(nodes, namespace="", name="node-1")
    node["metadata"]["labels"]["topology.kubernetes.io/zone"] = "zone-z"
    await net.api.update(nodes, namespace="", name="node-1", body=node, opts=OPTS)
    await wait_for(lambda: _async(net.endpoints()["web-1"].get("zone") == "zone-z"))

    await net.delete("services", "web")
    await wait_for(lambda: _async(net.slices() == []))
    assert service["metadata"]["uid"]


async def test_slices_follow_pod_labels_and_service_selectors(net: Net) -> None:
    await net.service("web")
    await net.service("api", selector={"app": "api", "tier": "back"})
    await net.pod("p1", node="node-1", ip="127.17.9.31", labels={"app": "web", "tier": "back"})
    await net.pod("p2", node="node-2", ip="127.17.9.32", labels={"app": "api"})
    await wait_for(lambda: _async(set(net.endpoints("web")) == {"p1"}))
    assert net.endpoints("api") == {}

    # A relabelled pod leaves one Service's slices and joins the other's.
    pods = net.info("", "pods")
    pod = net.api.get(pods, namespace="default", name="p1")
    pod["metadata"]["labels"] = {"app": "api", "tier": "back"}
    await net.api.update(pods, namespace="default", name="p1", body=pod, opts=OPTS)
    await wait_for(lambda: _async(set(net.endpoints("api")) == {"p1"}))
    await wait_for(lambda: _async(net.endpoints("web") == {}))

    # A selector change picks up the pods it now matches.
    services = net.info("", "services")
    body = net.api.get(services, namespace="default", name="web")
    body["spec"]["selector"] = {"app": "api"}
    await net.api.update(services, namespace="default", name="web", body=body, opts=OPTS)
    await wait_for(lambda: _async(set(net.endpoints("web")) == {"p1", "p2"}))

    await net.delete("pods", "p1", gracePeriodSeconds=0)
    await wait_for(lambda: _async(set(net.endpoints("web")) == {"p2"}))
    await wait_for(lambda: _async(net.endpoints("api") == {}))


async def test_released_addresses_are_allocated_again(net: Net) -> None:
    ports = [{"port": 80, "nodePort": 31000}]
    first = await net.service("a", type="NodePort", ports=ports)
    cluster_ip = first["spec"]["clusterIP"]
    # A Service's own addresses are not taken from it by its updates.
    services = net.info("", "services")
    body = net.api.get(services, namespace="default", name="a")
    body["metadata"]["labels"] = {"team": "b"}
    updated = await net.api.update(services, namespace="default", name="a", body=body, opts=OPTS)
    assert updated["spec"]["ports"][0]["nodePort"] == 31000
    with pytest.raises(StatusError):
        await net.service("b", type="NodePort", ports=ports)
    with pytest.raises(StatusError):
        await net.service("b", clusterIP=cluster_ip)
    await net.delete("services", "a")
    second = await net.service("b", type="NodePort", ports=ports, clusterIP=cluster_ip)
    assert second["spec"]["ports"][0]["nodePort"] == 31000
    assert second["spec"]["clusterIP"] == cluster_ip


# ----- kube-proxy --------------------------------------------------------------------------


async def test_node_port_cluster_policy_reaches_other_nodes_from_the_node_ip(net: Net) -> None:
    service = await net.service(type="NodePort")
    node_port = service["spec"]["ports"][0]["nodePort"]
    await net.pod("web-2", node="node-2", ip="127.17.9.31")
    await wait_for(lambda: _async("web-2" in net.endpoints()))
    await asyncio.wait_for(net.proxy.wait_synced(), 5)
    for node in ("node-1", "node-2", "node-3"):
        answer = await http_get(NODE_IPS[node], node_port, source=CLIENT_IP)
        assert answer["pod"] == "web-2"
        assert answer["clientIP"] == NODE_IPS[node]  # SNAT: the client's address is lost


async def test_node_port_local_policy_keeps_the_client_address(net: Net) -> None:
    service = await net.service(type="NodePort", externalTrafficPolicy="Local")
    node_port = service["spec"]["ports"][0]["nodePort"]
    await net.pod("web-1", node="node-1", ip="127.17.9.41")
    await net.pod("web-2", node="node-2", ip="127.17.9.42")
    await wait_for(lambda: _async(len(net.endpoints()) == 2))
    await asyncio.wait_for(net.proxy.wait_synced(), 5)
    for _ in range(5):
        answer = await http_get(NODE_IPS["node-1"], node_port, source=CLIENT_IP)
        assert answer == {"status": 200, "pod": "web-1", "clientIP": CLIENT_IP}
    answer = await http_get(NODE_IPS["node-2"], node_port)  # from 127.0.0.1
    assert answer["pod"] == "web-2" and answer["clientIP"] == "127.0.0.1"
    assert await refused(NODE_IPS["node-3"], node_port, source=CLIENT_IP)


async def test_terminating_endpoints_keep_serving_when_no_other(net: Net) -> None:
    service = await net.service(type="NodePort")
    node_port = service["spec"]["ports"][0]["nodePort"]
    await net.pod("web-1", node="node-1", ip="127.17.9.51")
    await wait_for(lambda: _async("web-1" in net.endpoints()))
    await asyncio.wait_for(net.proxy.wait_synced(), 5)
    await net.delete("pods", "web-1")
    await wait_for(lambda: _async(net.endpoints()["web-1"]["conditions"]["terminating"]))
    assert (await http_get(NODE_IPS["node-2"], node_port))["pod"] == "web-1"
    await net.status("web-1", ip="127.17.9.51", ready=False)
    await wait_for(lambda: _async(not net.endpoints()["web-1"]["conditions"]["serving"]))
    assert await refused(NODE_IPS["node-2"], node_port)


async def test_health_check_node_port_flips_with_local_endpoints(net: Net) -> None:
    service = await net.service(type="LoadBalancer", externalTrafficPolicy="Local")
    health = service["spec"]["healthCheckNodePort"]
    await asyncio.wait_for(net.proxy.wait_synced(), 5)
    answer = await http_get(NODE_IPS["node-1"], health)
    assert answer == {
        "status": 503,
        "service": {"namespace": "default", "name": "web"},
        "localEndpoints": 0,
        "serviceProxyHealthy": True,
    }
    await net.pod("web-1", node="node-1", ip="127.17.9.61")

    async def status(node: str) -> int:
        return int((await http_get(NODE_IPS[node], health))["status"])

    await wait_for(lambda: _eq(status("node-1"), 200))
    assert (await http_get(NODE_IPS["node-1"], health))["localEndpoints"] == 1
    assert await status("node-2") == 503
    await net.status("web-1", ip="127.17.9.61", ready=False)
    await wait_for(lambda: _eq(status("node-1"), 503))


async def test_cluster_ip_forwarding_keeps_the_client(net: Net) -> None:
    service = await net.service()
    await net.pod("web-1", node="node-3", ip="127.17.9.71")
    await wait_for(lambda: _async("web-1" in net.endpoints()))
    await asyncio.wait_for(net.proxy.wait_synced(), 5)
    answer = await http_get(service["spec"]["clusterIP"], 80, source=CLIENT_IP)
    assert answer == {"status": 200, "pod": "web-1", "clientIP": CLIENT_IP}


async def test_udp_node_port(net: Net) -> None:
    service = await net.service(type="NodePort", ports=[{"port": 53, "protocol": "UDP"}])
    node_port = service["spec"]["ports"][0]["nodePort"]
    await net.pod("dns", node="node-2", ip="127.17.9.81", serve=None)
    await net.udp_echo("127.17.9.81", 53)
    await wait_for(lambda: _async("dns" in net.endpoints()))
    await asyncio.wait_for(net.proxy.wait_synced(), 5)
    loop = asyncio.get_running_loop()
    answers: asyncio.Queue[bytes] = asyncio.Queue()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
            answers.put_nowait(data)

    transport, _ = await loop.create_datagram_endpoint(
        Client, local_addr=(CLIENT_IP, 0), remote_addr=(NODE_IPS["node-1"], node_port)
    )
    try:
        transport.sendto(b"hello")
        assert (
            await asyncio.wait_for(answers.get(), 5) == b"hello from " + NODE_IPS["node-1"].encode()
        )
    finally:
        transport.close()


async def test_listeners_follow_services_and_nodes(net: Net) -> None:
    service = await net.service(type="NodePort")
    node_port = service["spec"]["ports"][0]["nodePort"]
    await net.pod("web-1", node="node-1", ip="127.17.9.91")
    await wait_for(lambda: _async("web-1" in net.endpoints()))
    await asyncio.wait_for(net.proxy.wait_synced(), 5)
    assert (await http_get(NODE_IPS["node-3"], node_port))["pod"] == "web-1"
    await net.service("other", type="LoadBalancer", externalTrafficPolicy="Local")
    services = net.info("", "services")
    body = net.api.get(services, namespace="default", name="web")
    body["metadata"]["annotations"] = {"a": "b"}  # no listener changes: no resync either
    await net.api.update(services, namespace="default", name="web", body=body, opts=OPTS)
    await asyncio.wait_for(net.proxy.wait_synced(), 5)
    assert set(net.proxy.listeners) == set(_desired_from_scratch(net))
    await net.api.delete(net.info("", "nodes"), namespace="", name="node-3", options={}, opts=OPTS)
    await asyncio.wait_for(net.proxy.wait_synced(), 5)
    assert set(net.proxy.listeners) == set(_desired_from_scratch(net))
    with pytest.raises(ConnectionRefusedError):
        await http_get(NODE_IPS["node-3"], node_port)
    await net.delete("services", "web")
    await asyncio.wait_for(net.proxy.wait_synced(), 5)
    with pytest.raises(ConnectionRefusedError):
        await http_get(NODE_IPS["node-1"], node_port)


async def test_allocation_refused_in_process(net: Net) -> None:
    await net.service("a", type="NodePort", ports=[{"port": 80, "nodePort": 31000}])
    with pytest.raises(StatusError) as error:
        await net.service("b", type="NodePort", ports=[{"port": 80, "nodePort": 31000}])
    assert error.value.code == 422


async def _async(value: Any) -> Any:
    return value


def _desired_from_scratch(net: Net) -> dict[Any, Any]:
    """What every stored Service and Node ask kube-proxy for, computed in one pass."""
    store = net.api.store
    nodes = node_ips(s.obj for _, s in store.items(("", "nodes"), None))
    return desired_listeners((s.obj for _, s in store.items(("", "services"), None)), nodes)


async def _eq(awaitable: Any, expected: Any) -> bool:
    try:
        return bool(await awaitable == expected)
    except (ConnectionError, OSError):
        return False


# ----- with the real cluster (nodes, scheduler, kubelet with pod servers) ---------------------


async def test_with_the_real_cluster(cluster_server: ApiServer) -> None:
    from directlb.sim.cluster.cluster import Cluster

    cluster = Cluster.for_server(
        cluster_server,
        ClusterConfig(nodes=3, kubelet_sync_seconds=0.05),
        probe_time_scale=0.05,
        optional_parts=("directlb.sim.cluster.network", "directlb.sim.cluster.proxy"),
    )
    await cluster.start()
    try:
        api = cluster_server.api
        net = Net(api, next(c for c in cluster.others if isinstance(c, KubeProxy)))
        nodes = {n: "" for n in ("node-1", "node-2", "node-3")}
        for name in nodes:
            node = api.get(net.info("", "nodes"), namespace="", name=name)
            nodes[name] = next(
                a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP"
            )
        for name, node_name in (("web-1", "node-1"), ("web-2", "node-2")):
            await api.create(
                net.info("", "pods"),
                namespace="default",
                body={
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "name": name,
                        "labels": {"app": "web"},
                        "annotations": {"tke.cloud.tencent.com/networks": "tke-route-eni"},
                    },
                    "spec": {
                        "nodeName": node_name,
                        "containers": [
                            {"name": "app", "image": "nginx", "ports": [{"containerPort": 80}]}
                        ],
                    },
                },
                opts=OPTS,
            )
        local = await net.service(
            "local", type="LoadBalancer", externalTrafficPolicy="Local", ports=[{"port": 80}]
        )
        spread = await net.service("spread", type="NodePort", ports=[{"port": 80}])

        def ready_endpoints(service: str) -> int:
            return sum(bool(e["conditions"]["ready"]) for e in net.endpoints(service).values())

        await wait_for(lambda: _async(ready_endpoints("local") == 2), timeout=15)
        assert all(e["addresses"][0].startswith("127.17.") for e in net.endpoints("local").values())
        await asyncio.wait_for(net.proxy.wait_synced(), 5)

        local_port = local["spec"]["ports"][0]["nodePort"]
        answer = await http_get(nodes["node-1"], local_port, source=CLIENT_IP)
        assert answer["pod"] == "web-1" and answer["clientIP"] == CLIENT_IP
        assert await refused(nodes["node-3"], local_port, source=CLIENT_IP)
        health = local["spec"]["healthCheckNodePort"]
        assert (await http_get(nodes["node-2"], health))["localEndpoints"] == 1
        assert (await http_get(nodes["node-3"], health))["status"] == 503

        answer = await http_get(nodes["node-3"], spread["spec"]["ports"][0]["nodePort"])
        assert answer["pod"] in ("web-1", "web-2") and answer["clientIP"] == nodes["node-3"]
    finally:
        await cluster.stop()
