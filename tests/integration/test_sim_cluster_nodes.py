"""The simulated cluster's nodes and scheduler, over real HTTP with lightkube."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from lightkube import AsyncClient
from lightkube.codecs import from_dict
from lightkube.resources.core_v1 import ConfigMap, Node, Pod
from lightkube.types import PatchType

from directlb.sim.cluster.cluster import Cluster
from tests.cluster_support import (
    condition,
    create_pod,
    is_true,
    pod_manifest,
    pod_when,
    running,
)
from tests.sim_support import wait_for

pytestmark = pytest.mark.asyncio


def ready(node: Node) -> str | None:
    for c in (node.status.conditions if node.status else None) or []:
        if c.type == "Ready":
            return c.status
    return None


def internal_ip(node: Node) -> str | None:
    for address in (node.status.addresses if node.status else None) or []:
        if address.type == "InternalIP":
            return address.address
    return None


def taints(node: Node) -> set[str]:
    return {t.key for t in (node.spec.taints if node.spec else None) or []}


async def node_when(kube: AsyncClient, name: str, check: Any) -> Node:
    async def probe() -> Node | None:
        node = await kube.get(Node, name)
        return node if check(node) else None

    result: Node = await wait_for(probe)
    return result


async def test_nodes_are_ready_with_addresses_zones_and_provider_ids(ckube: AsyncClient) -> None:
    nodes = [n async for n in ckube.list(Node)]
    assert [n.metadata.name for n in nodes if n.metadata] == ["node-1", "node-2", "node-3"]
    assert [internal_ip(n) for n in nodes] == ["127.20.0.1", "127.20.0.2", "127.20.0.3"]
    assert all(ready(n) == "True" for n in nodes)
    labels = [n.metadata.labels or {} for n in nodes if n.metadata]
    assert [lab["topology.kubernetes.io/zone"] for lab in labels] == [
        "ap-guangzhou-3",
        "ap-guangzhou-4",
        "ap-guangzhou-6",
    ]
    assert [lab["kubernetes.io/hostname"] for lab in labels] == ["node-1", "node-2", "node-3"]
    assert labels[0]["cloud.tencent.com/node-instance-id"] == "ins-node0001"
    first = nodes[0]
    assert first.spec is not None and first.status is not None
    assert first.spec.providerID == "qcloud:///100003/ins-node0001"
    assert first.spec.podCIDR == "127.30.1.0/24"
    assert first.status.nodeInfo is not None
    assert first.status.nodeInfo.kubeletVersion == "v1.32.4"
    assert first.status.allocatable is not None and first.status.allocatable["pods"] == "110"
    kinds = {c.type: c.status for c in first.status.conditions or []}
    assert kinds == {
        "MemoryPressure": "False",
        "DiskPressure": "False",
        "PIDPressure": "False",
        "Ready": "True",
    }


async def test_node_created_through_the_api_gets_a_kubelet(ckube: AsyncClient) -> None:
    await ckube.create(
        from_dict({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-9"}})
    )
    node = await node_when(ckube, "node-9", lambda n: ready(n) == "True")
    assert internal_ip(node) == "127.20.0.9"
    assert node.spec is not None and node.spec.providerID == "qcloud:///100006/ins-node0009"
    assert node.metadata is not None and node.metadata.labels is not None
    assert node.metadata.labels["topology.kubernetes.io/zone"] == "ap-guangzhou-6"


async def test_not_ready_by_annotation_or_status_patch(ckube: AsyncClient) -> None:
    annotation = {"metadata": {"annotations": {"sim.directlb.io/not-ready": "true"}}}
    await ckube.patch(Node, "node-2", annotation, patch_type=PatchType.MERGE)
    node = await node_when(ckube, "node-2", lambda n: ready(n) == "False")
    assert "node.kubernetes.io/not-ready" in taints(node)
    assert node.status is not None
    reasons = {c.type: c.reason for c in node.status.conditions or []}
    assert reasons["Ready"] == "KubeletNotReady"
    back = {"metadata": {"annotations": {"sim.directlb.io/not-ready": None}}}
    await ckube.patch(Node, "node-2", back, patch_type=PatchType.MERGE)
    await node_when(
        ckube,
        "node-2",
        lambda n: ready(n) == "True" and "node.kubernetes.io/not-ready" not in taints(n),
    )
    # A Ready condition written through nodes/status stays as written.
    patch = {"status": {"conditions": [{"type": "Ready", "status": "False", "reason": "Test"}]}}
    await ckube.patch(Node.Status, "node-3", patch, patch_type=PatchType.STRATEGIC)
    await node_when(ckube, "node-3", lambda n: "node.kubernetes.io/not-ready" in taints(n))
    assert ready(await ckube.get(Node, "node-3")) == "False"


async def test_cordoned_and_not_ready_nodes_get_no_new_pods(ckube: AsyncClient) -> None:
    await ckube.patch(Node, "node-1", {"spec": {"unschedulable": True}})
    annotation = {"metadata": {"annotations": {"sim.directlb.io/not-ready": "true"}}}
    await ckube.patch(Node, "node-3", annotation, patch_type=PatchType.MERGE)
    await node_when(ckube, "node-1", lambda n: "node.kubernetes.io/unschedulable" in taints(n))
    await node_when(ckube, "node-3", lambda n: ready(n) == "False")
    for i in range(4):
        await create_pod(ckube, pod_manifest(f"p{i}"))
    placed = [(await pod_when(ckube, f"p{i}", running)).spec for i in range(4)]
    assert {s.nodeName for s in placed if s} == {"node-2"}


async def test_replicas_spread_and_node_selector(ckube: AsyncClient) -> None:
    owner = await ckube.create(
        from_dict({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner"}}),
        namespace="default",
    )
    assert isinstance(owner, ConfigMap) and owner.metadata is not None
    reference = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "owner",
        "uid": owner.metadata.uid,
        "controller": True,
    }
    await create_pod(ckube, pod_manifest("other"))  # an unrelated pod on node-1
    for i in range(6):
        manifest = pod_manifest(f"r{i}")
        manifest["metadata"]["ownerReferences"] = [reference]
        await create_pod(ckube, manifest)
    nodes = Counter()
    for i in range(6):
        pod = await pod_when(ckube, f"r{i}", lambda p: bool(p.spec and p.spec.nodeName))
        assert pod.spec is not None
        nodes[pod.spec.nodeName] += 1
    assert nodes == Counter({"node-1": 2, "node-2": 2, "node-3": 2})
    pinned = pod_manifest("pinned", nodeSelector={"topology.kubernetes.io/zone": "ap-guangzhou-6"})
    await create_pod(ckube, pinned)
    placed = await pod_when(ckube, "pinned", running)
    assert placed.spec is not None and placed.spec.nodeName == "node-3"


async def test_unschedulable_pod_reports_why_and_is_placed_when_a_node_fits(
    ckube: AsyncClient,
) -> None:
    await ckube.patch(Node, "node-1", {"spec": {"unschedulable": True}})
    await create_pod(ckube, pod_manifest("picky", nodeSelector={"disk": "ssd"}))
    pod = await pod_when(
        ckube, "picky", lambda p: (c := condition(p, "PodScheduled")) and c.status == "False"
    )
    scheduled = condition(pod, "PodScheduled")
    assert scheduled.reason == "Unschedulable"
    assert scheduled.message == (
        "0/3 nodes are available: 1 node(s) were unschedulable, 2 node(s) didn't match "
        "Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is "
        "not helpful for scheduling."
    )
    await ckube.patch(Node, "node-2", {"metadata": {"labels": {"disk": "ssd"}}})
    pod = await pod_when(ckube, "picky", is_true("PodScheduled"))
    assert pod.spec is not None and pod.spec.nodeName == "node-2"


async def test_deleting_a_node_deletes_its_pods(cluster: Cluster, ckube: AsyncClient) -> None:
    await create_pod(ckube, pod_manifest("gone", nodeSelector={"kubernetes.io/hostname": "node-2"}))
    pod = await pod_when(ckube, "gone", running)
    assert pod.status is not None and pod.status.podIP
    await ckube.delete(Node, "node-2")

    async def deleted() -> bool:
        return not [p async for p in ckube.list(Pod, namespace="default")]

    await wait_for(deleted)
    assert cluster.kubelet.runtime("default", "gone") is None
