"""The simulated kubelet: pod IPs, real servers, readiness, readiness gates, graceful deletion."""

from __future__ import annotations

import asyncio
import time

import pytest
from lightkube import ApiError, AsyncClient
from lightkube.resources.core_v1 import Pod
from lightkube.types import PatchType

from directlb.sim.cluster.cluster import Cluster
from tests.cluster_support import (
    ENI,
    GATE,
    condition,
    create_pod,
    http,
    is_true,
    pod_manifest,
    pod_when,
    refused,
    running,
    udp,
)
from tests.sim_support import wait_for

pytestmark = pytest.mark.asyncio


async def gone(kube: AsyncClient, name: str) -> bool:
    try:
        await kube.get(Pod, name, namespace="default")
    except ApiError as error:
        return error.status.code == 404
    return False


async def test_eni_pods_get_vpc_ips_and_others_the_cluster_cidr(ckube: AsyncClient) -> None:
    await create_pod(ckube, pod_manifest("eni", eni=True))
    await create_pod(ckube, pod_manifest("plain"))
    await create_pod(ckube, pod_manifest("host", hostNetwork=True))
    eni = await pod_when(ckube, "eni", running)
    plain = await pod_when(ckube, "plain", running)
    host = await pod_when(ckube, "host", running)
    assert eni.status is not None and plain.status is not None and host.status is not None
    assert eni.status.podIP is not None and eni.status.podIP.startswith("127.17.")
    assert plain.status.podIP is not None and plain.status.podIP.startswith("127.30.")
    assert plain.spec is not None and plain.spec.nodeName is not None
    node_number = plain.spec.nodeName.rsplit("-", 1)[1]
    assert plain.status.podIP.startswith(f"127.30.{node_number}.")  # the node's podCIDR
    assert host.status.podIP == host.status.hostIP
    assert eni.status.hostIP is not None and eni.status.hostIP.startswith("127.20.0.")
    assert eni.status.podIPs is not None and eni.status.podIPs[0].ip == eni.status.podIP
    assert eni.status.startTime is not None
    [container] = eni.status.containerStatuses or []
    assert (container.ready, container.started, container.restartCount) == (True, True, 0)
    assert container.state is not None and container.state.running is not None
    assert container.image == "docker.io/library/nginx:1.7.9"
    assert container.containerID is not None and container.containerID.startswith("containerd://")
    kinds = [c.type for c in eni.status.conditions or []]
    assert kinds == [
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodScheduled",
    ]
    assert all(c.status == "True" for c in eni.status.conditions or [])


async def test_pod_server_names_itself_and_echoes_the_client(ckube: AsyncClient) -> None:
    ports = [{"containerPort": 8080}, {"containerPort": 5353, "protocol": "UDP"}]
    await create_pod(ckube, pod_manifest("echo", eni=True, ports=ports))
    pod = await pod_when(ckube, "echo", running)
    assert pod.status is not None and pod.spec is not None and pod.status.podIP is not None
    ip = pod.status.podIP
    status, body = await http(ip, 8080, "/hello?x=1", source="127.99.0.7")
    assert status == 200
    assert body["pod"] == "echo" and body["namespace"] == "default"
    assert body["node"] == pod.spec.nodeName and body["podIP"] == ip and body["port"] == 8080
    assert body["clientIP"] == "127.99.0.7" and body["path"] == "/hello?x=1"
    answer = await udp(ip, 5353, b"ping")
    assert (
        answer["pod"] == "echo" and answer["echo"] == "ping" and answer["clientIP"] == "127.0.0.1"
    )


async def test_readiness_gate_holds_ready_until_its_condition_is_true(ckube: AsyncClient) -> None:
    await create_pod(ckube, pod_manifest("gated", eni=True, gates=[GATE]))
    pod = await pod_when(ckube, "gated", is_true("ContainersReady"))
    ready = condition(pod, "Ready")
    assert ready.status == "False" and ready.reason == "ReadinessGatesNotReady"
    assert ready.message == (
        f'corresponding condition of pod readiness gate "{GATE}" does not exist.'
    )
    for status in ("False", "True"):
        patch = {"status": {"conditions": [{"type": GATE, "status": status}]}}
        await ckube.patch(
            Pod.Status, "gated", patch, namespace="default", patch_type=PatchType.STRATEGIC
        )
        if status == "False":
            pod = await pod_when(
                ckube, "gated", lambda p: "but False" in (condition(p, "Ready").message or "")
            )
            assert condition(pod, "Ready").message == (
                f'the status of pod readiness gate "{GATE}" is not "True", but False'
            )
    pod = await pod_when(ckube, "gated", is_true("Ready"))
    assert condition(pod, GATE).status == "True"  # the kubelet keeps others' conditions


async def test_failing_readiness_keeps_the_pod_unready(ckube: AsyncClient) -> None:
    probe = {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 1}
    await create_pod(
        ckube, pod_manifest("sick", env={"SIM_READY_FAIL": "true"}, readinessProbe=probe)
    )
    await create_pod(ckube, pod_manifest("noprobe", env={"SIM_READY_FAIL": "true"}))
    await create_pod(ckube, pod_manifest("healthy", readinessProbe=probe))
    await pod_when(ckube, "healthy", is_true("Ready"))
    for name in ("sick", "noprobe"):
        pod = await pod_when(ckube, name, running)
        containers = condition(pod, "ContainersReady")
        assert containers.status == "False" and containers.reason == "ContainersNotReady"
        assert containers.message == "containers with unready status: [app]"
        assert condition(pod, "Ready").reason == "ContainersNotReady"
        assert pod.status is not None and pod.status.podIP is not None
        path = "/ready" if name == "sick" else "/healthz"  # its probe's path, or /healthz
        status, body = await http(pod.status.podIP, 8080, path)
        assert (status, body["healthy"]) == (503, False)
        status, _ = await http(pod.status.podIP, 8080, "/")  # traffic is still answered
        assert status == 200


async def test_readiness_probe_follows_the_app(ckube: AsyncClient) -> None:
    probe = {
        "httpGet": {"path": "/healthz", "port": "web"},
        "periodSeconds": 1,
        "failureThreshold": 2,
        "successThreshold": 2,
    }
    ports = [{"containerPort": 8080, "name": "web"}]
    await create_pod(ckube, pod_manifest("flip", ports=ports, readinessProbe=probe))
    pod = await pod_when(ckube, "flip", is_true("Ready"))
    assert pod.status is not None and pod.status.podIP is not None
    ip = pod.status.podIP
    writer = (await asyncio.open_connection(ip, 8080))[1]
    writer.write(b"POST /_sim/fail HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    await writer.drain()
    writer.close()
    pod = await pod_when(ckube, "flip", lambda p: condition(p, "Ready").status == "False")
    assert condition(pod, "ContainersReady").status == "False"
    writer = (await asyncio.open_connection(ip, 8080))[1]
    writer.write(b"POST /_sim/recover HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    await writer.drain()
    writer.close()
    await pod_when(ckube, "flip", is_true("Ready"))


async def test_start_and_ready_delays(ckube: AsyncClient) -> None:
    env = {"SIM_START_DELAY": "0.4", "SIM_READY_DELAY": "0.4"}
    await create_pod(ckube, pod_manifest("slow", env=env))
    pod = await pod_when(ckube, "slow", lambda p: bool(p.status and p.status.podIP))
    assert pod.status is not None and pod.status.phase == "Pending"
    [container] = pod.status.containerStatuses or []
    assert container.state is not None and container.state.waiting is not None
    assert container.state.waiting.reason == "ContainerCreating"
    pod = await pod_when(ckube, "slow", running)
    assert condition(pod, "Ready").status == "False"
    await pod_when(ckube, "slow", is_true("Ready"))


async def test_slow_answers(ckube: AsyncClient) -> None:
    await create_pod(ckube, pod_manifest("lazy", env={"SIM_RESPONSE_DELAY": "0.3"}))
    pod = await pod_when(ckube, "lazy", running)
    assert pod.status is not None and pod.status.podIP is not None
    started = time.monotonic()
    status, _ = await http(pod.status.podIP, 8080)
    assert status == 200 and time.monotonic() - started >= 0.3


async def test_graceful_deletion_serves_through_prestop_and_grace_period(
    cluster: Cluster, ckube: AsyncClient
) -> None:
    # Generous times: the checks below must not depend on how loaded the machine is.
    lifecycle = {"preStop": {"exec": {"command": ["/bin/sh", "-c", "sleep 2"]}}}
    manifest = pod_manifest("drain", eni=True, lifecycle=lifecycle, terminationGracePeriodSeconds=6)
    await create_pod(ckube, manifest)
    pod = await pod_when(ckube, "drain", is_true("Ready"))
    assert pod.status is not None and pod.status.podIP is not None
    ip = pod.status.podIP
    started = time.monotonic()
    await ckube.delete(Pod, "drain", namespace="default")
    marked = await ckube.get(Pod, "drain", namespace="default")
    assert marked.metadata is not None and marked.metadata.deletionTimestamp is not None
    # Answering through preStop (2 s) and on toward the end of the grace period (6 s).
    while time.monotonic() - started < 3:
        status, body = await http(ip, 8080)
        assert (status, body["pod"]) == (200, "drain")
        await asyncio.sleep(0.2)
    await wait_for(lambda: gone(ckube, "drain"), timeout=15)
    assert time.monotonic() - started >= 5.9
    assert await refused(ip, 8080)
    assert cluster.kubelet.runtime("default", "drain") is None


async def test_shutdown_delay_ends_serving_before_the_grace_period(ckube: AsyncClient) -> None:
    manifest = pod_manifest(
        "quick", env={"SIM_SHUTDOWN_DELAY": "1"}, terminationGracePeriodSeconds=30
    )
    await create_pod(ckube, manifest)
    pod = await pod_when(ckube, "quick", running)
    assert pod.status is not None and pod.status.podIP is not None
    started = time.monotonic()
    await ckube.delete(Pod, "quick", namespace="default")
    status, _ = await http(pod.status.podIP, 8080)
    assert status == 200  # still serving right after SIGTERM
    await wait_for(lambda: gone(ckube, "quick"), timeout=20)
    assert 0.9 <= time.monotonic() - started < 25  # the delay (1 s), not the grace (30 s)
    assert await refused(pod.status.podIP, 8080)


async def test_shorter_second_delete_and_forced_delete(ckube: AsyncClient) -> None:
    await create_pod(ckube, pod_manifest("long", terminationGracePeriodSeconds=60))
    await create_pod(ckube, pod_manifest("forced", terminationGracePeriodSeconds=60))
    long = await pod_when(ckube, "long", running)
    forced = await pod_when(ckube, "forced", running)
    await ckube.delete(Pod, "long", namespace="default")
    await ckube.delete(Pod, "long", namespace="default", grace_period=1)
    await ckube.delete(Pod, "forced", namespace="default", grace_period=0)
    await wait_for(lambda: gone(ckube, "forced"), timeout=2)
    assert forced.status is not None and forced.status.podIP is not None
    await wait_for(lambda: refused(forced.status.podIP, 8080), timeout=2)  # type: ignore[union-attr]
    await wait_for(lambda: gone(ckube, "long"), timeout=5)
    assert long.status is not None and long.status.podIP is not None
    assert await refused(long.status.podIP, 8080)


async def test_seed_deployment_template_as_bare_pods(ckube: AsyncClient) -> None:
    """The seed's nginx-deployment-eni pod template: Running, ENI IPs, HTTP on port 80."""
    for i in range(3):
        manifest = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"nginx-{i}",
                "annotations": dict(ENI),
                "labels": {"app": "nginx"},
            },
            "spec": {
                "containers": [
                    {
                        "image": "nginx:1.7.9",
                        "name": "nginx",
                        "ports": [{"containerPort": 80, "protocol": "TCP"}],
                    }
                ]
            },
        }
        await create_pod(ckube, manifest)
    nodes = set()
    for i in range(3):
        pod = await pod_when(ckube, f"nginx-{i}", is_true("Ready"))
        assert pod.status is not None and pod.status.podIP is not None and pod.spec is not None
        assert pod.status.podIP.startswith("127.17.")
        nodes.add(pod.spec.nodeName)
        status, body = await http(pod.status.podIP, 80)
        assert (status, body["pod"], body["port"]) == (200, f"nginx-{i}", 80)
    assert len(nodes) == 3


async def test_pod_ips_are_unique_and_freed(cluster: Cluster, ckube: AsyncClient) -> None:
    for i in range(5):
        await create_pod(ckube, pod_manifest(f"u{i}", eni=True))
    ips = set()
    for i in range(5):
        pod = await pod_when(ckube, f"u{i}", running)
        assert pod.status is not None
        ips.add(pod.status.podIP)
    assert len(ips) == 5
    for i in range(5):
        await ckube.delete(Pod, f"u{i}", namespace="default", grace_period=0)
    for i in range(5):
        await wait_for(lambda i=i: gone(ckube, f"u{i}"))  # type: ignore[misc]
    for ip in ips:
        assert ip is not None
        await wait_for(lambda ip=ip: refused(ip, 8080))  # type: ignore[misc]
        assert cluster.kubelet.eni_pool.reserve(ip)  # free again
