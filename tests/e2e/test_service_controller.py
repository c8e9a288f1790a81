"""The Service controller end to end, in one process: simulated cluster, CLB emulator at time
scale 0.01, and the controller through ``runtime.run`` (the code path of ``directlb controller``).
The seed's two manifests, unchanged; checked through the Kubernetes API and the official SDK."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from lightkube import AsyncClient, KubeConfig
from lightkube.core.exceptions import ApiError
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Event, Node, Pod, Service
from tencentcloud.clb.v20180317 import models

from directlb.cloud.config import Credentials, Timing
from directlb.controllers import runtime
from directlb.controllers.config import ControllerConfig, HostPort
from directlb.demo.up import register_instances
from directlb.emulator.server import Emulator
from directlb.sim.cluster.cluster import Cluster
from directlb.sim.cluster.config import ClusterConfig
from directlb.sim.server import ApiServer, SimConfig
from tests import support
from tests.integration.test_sim_cluster_stack import DEPLOYMENT, SERVICE

TIME_SCALE = 0.01
DEADLINE = 60.0


@dataclass
class Stack:
    client: AsyncClient
    emulator: Emulator


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    server = ApiServer(SimConfig())
    await server.start("127.0.0.1", 0)
    cluster = Cluster.for_server(
        server, ClusterConfig(nodes=3, kubelet_sync_seconds=0.05), probe_time_scale=0.05
    )
    emulator = Emulator(support.config(time_scale=TIME_SCALE))
    kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
    stop = asyncio.Event()
    controller: asyncio.Task[None] | None = None
    client = AsyncClient(config=KubeConfig.from_file(kubeconfig), field_manager="test")
    try:
        await cluster.start()
        await emulator.start("127.0.0.1", 0)
        await register_instances(client, emulator)
        config = ControllerConfig(
            cluster_id="cls-e2e",
            vpc_id=emulator.config.vpc_id,
            credentials=Credentials(secret_id=support.SECRET_ID, secret_key=support.SECRET_KEY),
            region=support.REGION,
            kubeconfig=kubeconfig,
            clb_endpoint=emulator.endpoint,
            clb_protocol="http",
            leader_elect=False,
            identity="e2e",
            webhook_listen=HostPort("127.0.0.1", 0),
            metrics_listen=HostPort("127.0.0.1", 0),
        )
        controller = asyncio.create_task(
            runtime.run(config, stop=stop, timing=Timing().scaled(TIME_SCALE))
        )
        yield Stack(client, emulator)
    finally:
        stop.set()
        if controller is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(controller, 30)
        await client.close()
        await emulator.stop()
        await cluster.stop()
        await server.stop()


async def load_balancers(emulator: Emulator) -> list[Any]:
    clb = support.async_client(emulator)
    try:
        answer = await clb.DescribeLoadBalancers(models.DescribeLoadBalancersRequest())
        return list(answer.LoadBalancerSet or [])
    finally:
        await clb.close()


async def targets(emulator: Emulator, lb_id: str) -> set[tuple[str, int]]:
    clb = support.async_client(emulator)
    try:
        request = models.DescribeTargetsRequest()
        request.LoadBalancerId = lb_id
        answer = await clb.DescribeTargets(request)
    finally:
        await clb.close()
    found: set[tuple[str, int]] = set()
    for listener in answer.Listeners or []:
        for target in listener.Targets or []:
            address = target.InstanceId or (target.PrivateIpAddresses or [""])[0]
            found.add((address, int(target.Port)))
    return found


async def external_ip(client: AsyncClient, name: str) -> str | None:
    service = await client.get(Service, name, namespace="default")
    ingress = service.status.loadBalancer.ingress if service.status else None
    return ingress[0].ip if ingress else None


async def pod_ips(client: AsyncClient) -> set[str]:
    pods = [p async for p in client.list(Pod, namespace="default", labels={"app": "nginx"})]
    return {p.status.podIP for p in pods if p.status and p.status.podIP}


async def node_instances(client: AsyncClient) -> set[str]:
    nodes = [n async for n in client.list(Node)]
    return {(n.metadata.labels or {})["cloud.tencent.com/node-instance-id"] for n in nodes}


async def check_seed(stack: Stack, service: dict[str, Any], *, direct: bool) -> None:
    client = stack.client
    await client.create(Deployment.from_dict(DEPLOYMENT), namespace="default")
    await client.create(Service.from_dict(service), namespace="default")
    name = service["metadata"]["name"]

    async def converged() -> bool:
        if not await external_ip(client, name):
            return False
        svc = await client.get(Service, name, namespace="default")
        lb_id = (svc.metadata.annotations or {}).get("service.kubernetes.io/loadbalance-id")
        if not lb_id:
            return False
        if direct:
            ips = await pod_ips(client)
            want = {(ip, 80) for ip in ips} if len(ips) == 3 else None
        else:
            port = svc.spec.ports[0].nodePort
            want = {(ins, port) for ins in await node_instances(client)}
        return want is not None and await targets(stack.emulator, lb_id) == want

    await support.wait_until(converged, timeout=DEADLINE, interval=0.1)
    [lb] = await load_balancers(stack.emulator)
    assert lb.LoadBalancerVips == [await external_ip(client, name)]

    async def ensured() -> bool:
        events = [e async for e in client.list(Event, namespace="default")]
        return any(
            e.reason == "EnsuredLoadBalancer" and e.involvedObject.name == name for e in events
        )

    await support.wait_until(ensured, timeout=DEADLINE, interval=0.1)

    await client.delete(Service, name, namespace="default")

    async def gone() -> bool:
        try:
            await client.get(Service, name, namespace="default")
            return False
        except ApiError as error:
            if error.status.code != 404:
                raise
        return not await load_balancers(stack.emulator)

    await support.wait_until(gone, timeout=DEADLINE, interval=0.1)


async def test_seed_manifests_direct_access(stack: Stack) -> None:
    await check_seed(stack, SERVICE, direct=True)


async def test_nodeport_mode_binds_every_node(stack: Stack) -> None:
    service = {
        **SERVICE,
        "metadata": {"labels": {"app": "nginx"}, "name": "nginx-service-nodeport"},
    }
    await check_seed(stack, service, direct=False)
