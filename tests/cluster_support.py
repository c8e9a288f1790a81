"""Helpers for the cluster simulator's tests: an API server with nodes, scheduler and kubelet
(fast probes), a lightkube client, and small HTTP/UDP clients for the pods' servers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from lightkube import AsyncClient, KubeConfig
from lightkube.codecs import from_dict
from lightkube.resources.core_v1 import Pod

from directlb.sim.cluster.cluster import Cluster
from directlb.sim.cluster.config import ClusterConfig
from directlb.sim.server import ApiServer, SimConfig
from tests.sim_support import wait_for

GATE = "cloud.tencent.com/load-balancer-backendgroup-ready"
ENI = {"tke.cloud.tencent.com/networks": "tke-route-eni"}


@pytest.fixture
async def cluster_server() -> AsyncIterator[ApiServer]:
    server = ApiServer(SimConfig(history_size=500))
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def cluster(cluster_server: ApiServer) -> AsyncIterator[Cluster]:
    """Three nodes, scheduler and kubelet (probe times x0.05), without the other parts."""
    running = Cluster.for_server(
        cluster_server,
        ClusterConfig(nodes=3, kubelet_sync_seconds=0.05),
        probe_time_scale=0.05,
        optional_parts=(),
    )
    await running.start()
    yield running
    await running.stop()


@pytest.fixture
async def ckube(cluster_server: ApiServer, cluster: Cluster) -> AsyncIterator[AsyncClient]:
    config = KubeConfig.from_dict(cluster_server.kubeconfig())
    kube = AsyncClient(config=config, field_manager="tests")
    yield kube
    await kube.close()


def pod_manifest(
    name: str,
    *,
    eni: bool = False,
    ports: list[dict[str, Any]] | None = None,
    env: dict[str, str] | None = None,
    gates: list[str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "app",
        "image": "nginx:1.7.9",
        "ports": ports if ports is not None else [{"containerPort": 8080}],
    }
    if env:
        container["env"] = [{"name": k, "value": v} for k, v in env.items()]
    for key in ("readinessProbe", "lifecycle"):
        if key in spec:
            container[key] = spec.pop(key)
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": dict(ENI) if eni else {}},
        "spec": {"containers": [container], **spec},
    }
    if gates:
        body["spec"]["readinessGates"] = [{"conditionType": g} for g in gates]
    return body


async def create_pod(kube: AsyncClient, manifest: dict[str, Any]) -> Pod:
    created = await kube.create(from_dict(manifest), namespace="default")
    assert isinstance(created, Pod)
    return created


def condition(pod: Pod, kind: str) -> Any:
    for c in (pod.status.conditions if pod.status else None) or []:
        if c.type == kind:
            return c
    return None


async def pod_when(kube: AsyncClient, name: str, check: Any, *, timeout: float = 10.0) -> Pod:
    """The pod once ``check(pod)`` holds."""

    async def probe() -> Pod | None:
        current = await kube.get(Pod, name, namespace="default")
        return current if check(current) else None

    result: Pod = await wait_for(probe, timeout=timeout)
    return result


def running(pod: Pod) -> bool:
    return bool(pod.status and pod.status.phase == "Running" and pod.status.podIP)


def is_true(kind: str) -> Any:
    return lambda pod: (c := condition(pod, kind)) is not None and c.status == "True"


async def http(
    ip: str, port: int, path: str = "/", *, source: str | None = None, timeout: float = 3.0
) -> tuple[int, dict[str, Any]]:
    """One GET over a fresh connection (optionally from ``source``): status and JSON body."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(
            ip, port, local_addr=(source, 0) if source else None
        )
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {ip}\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
            raw = await reader.read()
        finally:
            writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)


async def refused(ip: str, port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection(ip, port)
    except OSError:
        return True
    writer.close()
    return False


async def udp(ip: str, port: int, data: bytes, *, timeout: float = 3.0) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[bytes] = loop.create_future()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, payload: bytes, addr: Any) -> None:
            if not answer.done():
                answer.set_result(payload)

    transport, _ = await loop.create_datagram_endpoint(Client, remote_addr=(ip, port))
    try:
        transport.sendto(data)
        result: dict[str, Any] = json.loads(await asyncio.wait_for(answer, timeout))
        return result
    finally:
        transport.close()
