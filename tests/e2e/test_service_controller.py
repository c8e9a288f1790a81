"""The Service controller end to end, in one process: simulated cluster, CLB emulator at time
scale 0.01, and the controller through ``runtime.run`` (the code path of ``directlb controller``).
The seed's two manifests, unchanged; checked through the Kubernetes API and the official SDK."""

from __future__ import annotations

from typing import Any

from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Service

from tests import support
from tests.e2e.stack import (
    DEADLINE,
    Stack,
    external_ip,
    has_event,
    lb_id_of,
    load_balancers,
    node_instances,
    pod_ips,
    service_gone,
    targets,
)
from tests.integration.test_sim_cluster_stack import DEPLOYMENT, SERVICE


async def check_seed(stack: Stack, service: dict[str, Any], *, direct: bool) -> None:
    client = stack.client
    await client.create(Deployment.from_dict(DEPLOYMENT), namespace="default")
    await client.create(Service.from_dict(service), namespace="default")
    name = service["metadata"]["name"]

    async def converged() -> bool:
        if not await external_ip(client, name):
            return False
        lb_id = await lb_id_of(client, name)
        if not lb_id:
            return False
        if direct:
            ips = await pod_ips(client, {"app": "nginx"})
            want = {(ip, 80) for ip in ips} if len(ips) == 3 else None
        else:
            svc = await client.get(Service, name, namespace="default")
            port = svc.spec.ports[0].nodePort
            want = {(ins, port) for ins in await node_instances(client)}
        return want is not None and await targets(stack.emulator, lb_id) == want

    await support.wait_until(converged, timeout=DEADLINE, interval=0.1)
    [lb] = await load_balancers(stack.emulator)
    assert lb.LoadBalancerVips == [await external_ip(client, name)]

    async def ensured() -> bool:
        return await has_event(client, name, "EnsuredLoadBalancer")

    await support.wait_until(ensured, timeout=DEADLINE, interval=0.1)

    await client.delete(Service, name, namespace="default")

    async def gone() -> bool:
        return await service_gone(stack, name) and not await load_balancers(stack.emulator)

    await support.wait_until(gone, timeout=DEADLINE, interval=0.1)


async def test_seed_manifests_direct_access(stack: Stack) -> None:
    await check_seed(stack, SERVICE, direct=True)


async def test_nodeport_mode_binds_every_node(stack: Stack) -> None:
    service = {
        **SERVICE,
        "metadata": {"labels": {"app": "nginx"}, "name": "nginx-service-nodeport"},
    }
    await check_seed(stack, service, direct=False)
