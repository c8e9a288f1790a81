"""The end-to-end stack shared by the controller tests: simulated cluster (3 nodes), CLB
emulator at time scale 0.01, and the controller through ``runtime.run`` (the code path of
``directlb controller``), which a test may stop and start again (crash and restart tests).

Helpers read the cloud through the official SDK and the cluster through lightkube, never
through the controller's own code.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lightkube import AsyncClient, KubeConfig
from lightkube.core.exceptions import ApiError
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

TIME_SCALE = 0.01
DEADLINE = 60.0
LB_ID_ANNOTATION = "service.kubernetes.io/loadbalance-id"


@dataclass
class Stack:
    client: AsyncClient
    emulator: Emulator
    server: ApiServer
    cluster: Cluster
    config: ControllerConfig
    timing: Timing
    controller: asyncio.Task[None] | None = None
    stop_event: asyncio.Event = field(default_factory=asyncio.Event)

    def start_controller(self, **overrides: Any) -> None:
        """Start ``runtime.run`` (again); ``overrides`` replace fields of the config."""
        assert self.controller is None or self.controller.done(), "controller already running"
        self.stop_event = asyncio.Event()
        config = replace(self.config, **overrides) if overrides else self.config
        self.controller = asyncio.create_task(
            runtime.run(config, stop=self.stop_event, timing=self.timing)
        )

    async def stop_controller(self) -> None:
        """Graceful stop (what SIGTERM does)."""
        if self.controller is None:
            return
        self.stop_event.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self.controller, 30)
        self.controller = None

    async def kill_controller(self) -> None:
        """Abrupt stop: cancel the task wherever it is (in-process stand-in for kill -9)."""
        if self.controller is None:
            return
        self.controller.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.controller
        self.controller = None


def controller_config(kubeconfig: Path, emulator: Emulator) -> ControllerConfig:
    return ControllerConfig(
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
        # The webhook runs outside the simulated cluster, as with `directlb up`.
        webhook_url="local",
        metrics_listen=HostPort("127.0.0.1", 0),
    )


@contextlib.asynccontextmanager
async def running_stack(
    tmp_path: Path,
    *,
    nodes: int = 3,
    start_controller: bool = True,
    emulator_overrides: dict[str, Any] | None = None,
) -> AsyncIterator[Stack]:
    server = ApiServer(SimConfig())
    await server.start("127.0.0.1", 0)
    cluster = Cluster.for_server(
        server, ClusterConfig(nodes=nodes, kubelet_sync_seconds=0.05), probe_time_scale=0.05
    )
    emulator = Emulator(support.config(**{"time_scale": TIME_SCALE, **(emulator_overrides or {})}))
    kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
    client = AsyncClient(config=KubeConfig.from_file(kubeconfig), field_manager="test")
    stack: Stack | None = None
    try:
        await cluster.start()
        await emulator.start("127.0.0.1", 0)
        await register_instances(client, emulator)
        stack = Stack(
            client=client,
            emulator=emulator,
            server=server,
            cluster=cluster,
            config=controller_config(kubeconfig, emulator),
            timing=Timing().scaled(TIME_SCALE),
        )
        if start_controller:
            stack.start_controller()
        yield stack
    finally:
        if stack is not None:
            await stack.stop_controller()
        await client.close()
        await emulator.stop()
        await cluster.stop()
        await server.stop()


# --- reading the cloud (official SDK) and the cluster (lightkube) ------------------------------


async def load_balancers(emulator: Emulator) -> list[Any]:
    clb = support.async_client(emulator)
    try:
        answer = await clb.DescribeLoadBalancers(models.DescribeLoadBalancersRequest())
        return list(answer.LoadBalancerSet or [])
    finally:
        await clb.close()


async def listeners(emulator: Emulator, lb_id: str) -> list[Any]:
    clb = support.async_client(emulator)
    try:
        request = models.DescribeListenersRequest()
        request.LoadBalancerId = lb_id
        answer = await clb.DescribeListeners(request)
        return list(answer.Listeners or [])
    finally:
        await clb.close()


async def targets(emulator: Emulator, lb_id: str) -> set[tuple[str, int]]:
    """Every (instance id or ENI IP, port) bound on any listener of the CLB."""
    return {(address, port) for _, address, port in await targets_by_listener(emulator, lb_id)}


async def targets_by_listener(emulator: Emulator, lb_id: str) -> list[tuple[int, str, int]]:
    """(listener port, instance id or ENI IP, target port), one per binding (duplicates kept)."""
    clb = support.async_client(emulator)
    try:
        request = models.DescribeTargetsRequest()
        request.LoadBalancerId = lb_id
        answer = await clb.DescribeTargets(request)
    finally:
        await clb.close()
    found: list[tuple[int, str, int]] = []
    for listener in answer.Listeners or []:
        for target in listener.Targets or []:
            address = target.InstanceId or (target.PrivateIpAddresses or [""])[0]
            found.append((int(listener.Port), address, int(target.Port)))
        for rule in listener.Rules or []:
            for target in rule.Targets or []:
                address = target.InstanceId or (target.PrivateIpAddresses or [""])[0]
                found.append((int(listener.Port), address, int(target.Port)))
    return found


async def external_ip(client: AsyncClient, name: str, namespace: str = "default") -> str | None:
    service = await client.get(Service, name, namespace=namespace)
    ingress = service.status.loadBalancer.ingress if service.status else None
    return ingress[0].ip if ingress else None


async def lb_id_of(client: AsyncClient, name: str, namespace: str = "default") -> str | None:
    service = await client.get(Service, name, namespace=namespace)
    return (service.metadata.annotations or {}).get(LB_ID_ANNOTATION)


async def pod_ips(
    client: AsyncClient, labels: dict[str, str], namespace: str = "default"
) -> set[str]:
    pods = [p async for p in client.list(Pod, namespace=namespace, labels=labels)]
    return {
        p.status.podIP
        for p in pods
        if p.status and p.status.podIP and p.metadata.deletionTimestamp is None
    }


async def node_instances(client: AsyncClient) -> set[str]:
    nodes = [n async for n in client.list(Node)]
    return {(n.metadata.labels or {})["cloud.tencent.com/node-instance-id"] for n in nodes}


async def events_for(client: AsyncClient, name: str, namespace: str = "default") -> list[Any]:
    return [
        e async for e in client.list(Event, namespace=namespace) if e.involvedObject.name == name
    ]


async def has_event(
    client: AsyncClient, name: str, reason: str, namespace: str = "default"
) -> bool:
    return any(e.reason == reason for e in await events_for(client, name, namespace))


async def service_gone(stack: Stack, name: str, namespace: str = "default") -> bool:
    try:
        await stack.client.get(Service, name, namespace=namespace)
        return False
    except ApiError as error:
        if error.status.code != 404:
            raise
    return True
