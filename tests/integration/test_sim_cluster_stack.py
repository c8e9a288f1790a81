"""The seed's two manifests on the whole simulated cluster (every part present)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from lightkube import AsyncClient, KubeConfig
from lightkube.codecs import from_dict
from lightkube.resources.core_v1 import Pod, Service

from directlb.sim.cluster.cluster import Cluster
from directlb.sim.cluster.config import ClusterConfig
from directlb.sim.server import ApiServer, SimConfig
from tests.cluster_support import ENI, http, is_true
from tests.sim_support import wait_for

pytestmark = pytest.mark.asyncio

for _part in ("workloads", "network", "proxy"):
    pytest.importorskip(f"directlb.sim.cluster.{_part}")

DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"labels": {"app": "nginx"}, "name": "nginx-deployment-eni"},
    "spec": {
        "replicas": 3,
        "selector": {"matchLabels": {"app": "nginx"}},
        "template": {
            "metadata": {"annotations": dict(ENI), "labels": {"app": "nginx"}},
            "spec": {
                "containers": [
                    {
                        "image": "nginx:1.7.9",
                        "name": "nginx",
                        "ports": [{"containerPort": 80, "protocol": "TCP"}],
                    }
                ]
            },
        },
    },
}
SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {
        "annotations": {"service.cloud.tencent.com/direct-access": "true"},
        "labels": {"app": "nginx"},
        "name": "nginx-service-eni",
    },
    "spec": {
        "externalTrafficPolicy": "Cluster",
        "ports": [{"name": "80-80-no", "port": 80, "protocol": "TCP", "targetPort": 80}],
        "selector": {"app": "nginx"},
        "type": "LoadBalancer",
    },
}


@pytest.fixture
async def full_kube() -> AsyncIterator[AsyncClient]:
    server = ApiServer(SimConfig())
    await server.start()
    cluster = Cluster.for_server(
        server, ClusterConfig(kubelet_sync_seconds=0.05), probe_time_scale=0.05
    )
    await cluster.start()
    kube = AsyncClient(config=KubeConfig.from_dict(server.kubeconfig()), field_manager="tests")
    yield kube
    await kube.close()
    await cluster.stop()
    await server.stop()


async def test_seed_manifests_run_and_answer(full_kube: AsyncClient) -> None:
    await full_kube.create(from_dict(DEPLOYMENT), namespace="default")
    await full_kube.create(from_dict(SERVICE), namespace="default")

    async def three_ready() -> list[Any] | None:
        pods = [p async for p in full_kube.list(Pod, namespace="default")]
        ready = [p for p in pods if is_true("Ready")(p)]
        return ready if len(ready) == 3 else None

    pods = await wait_for(three_ready, timeout=20)
    assert len({p.spec.nodeName for p in pods}) == 3
    for pod in pods:
        assert pod.status.podIP.startswith("127.17.")
        status, body = await http(pod.status.podIP, 80)
        assert (status, body["pod"]) == (200, pod.metadata.name)
    service = await full_kube.get(Service, "nginx-service-eni", namespace="default")
    assert service.spec is not None and service.spec.ports is not None
    node_port = service.spec.ports[0].nodePort
    assert node_port is not None and 30000 <= node_port <= 32767
    status, body = await http("127.20.0.1", node_port)
    assert status == 200 and body["clientIP"] == "127.20.0.1"  # Cluster policy: SNAT
