"""Deletion on the simulator's API server: finalizers, garbage collection, namespaces, CRDs."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from lightkube import ApiError, AsyncClient
from lightkube.codecs import from_dict
from lightkube.generic_resource import (
    async_load_in_cluster_generic_resources,
    create_namespaced_resource,
)
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.resources.apps_v1 import Deployment, ReplicaSet
from lightkube.resources.core_v1 import ConfigMap, Namespace, Pod
from lightkube.types import CascadeType, PatchType

from tests.sim_support import deployment, pod, wait_for

pytestmark = pytest.mark.asyncio


async def exists(
    kube: AsyncClient, kind: Any, name: str, namespace: str | None = "default"
) -> bool:
    try:
        await kube.get(kind, name, namespace=namespace)
    except ApiError as error:
        if error.status.code == 404:
            return False
        raise
    return True


def owned(obj: dict[str, Any], owner: Any, *, kind: str, api_version: str) -> dict[str, Any]:
    obj["metadata"]["ownerReferences"] = [
        {
            "apiVersion": api_version,
            "kind": kind,
            "name": owner.metadata.name,
            "uid": owner.metadata.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    return obj


def replicaset(name: str) -> dict[str, Any]:
    rs = deployment(name)
    rs["kind"] = "ReplicaSet"
    del rs["spec"]["replicas"]
    return rs


async def chain(kube: AsyncClient) -> tuple[Any, Any, Any]:
    """A Deployment owning a ReplicaSet owning a Pod."""
    dep = await kube.create(from_dict(deployment("web")), namespace="default")
    rs = await kube.create(
        from_dict(owned(replicaset("web-1"), dep, kind="Deployment", api_version="apps/v1")),
        namespace="default",
    )
    po = await kube.create(
        from_dict(owned(pod("web-1-a"), rs, kind="ReplicaSet", api_version="apps/v1")),
        namespace="default",
    )
    return dep, rs, po


async def test_finalizers_hold_an_object_until_they_are_removed(kube: AsyncClient) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c", "finalizers": ["example.com/cleanup"]},
    }
    await kube.create(from_dict(body), namespace="default")
    await kube.delete(ConfigMap, "c", namespace="default")
    held = await kube.get(ConfigMap, "c", namespace="default")
    assert held.metadata is not None and held.metadata.deletionTimestamp is not None
    with pytest.raises(ApiError) as more:
        await kube.patch(
            ConfigMap,
            "c",
            {"metadata": {"finalizers": ["example.com/cleanup", "x/y"]}},
            namespace="default",
        )
    assert more.value.status.code == 422
    await kube.patch(ConfigMap, "c", {"metadata": {"finalizers": None}}, namespace="default")
    assert not await exists(kube, ConfigMap, "c")


async def test_background_deletion_collects_dependents(kube: AsyncClient) -> None:
    await chain(kube)
    await kube.delete(Deployment, "web", namespace="default")
    assert not await exists(kube, Deployment, "web")

    async def collected() -> bool:
        return not await exists(kube, ReplicaSet, "web-1") and not await exists(
            kube, Pod, "web-1-a"
        )

    await wait_for(collected)


async def test_foreground_deletion_waits_for_dependents(kube: AsyncClient) -> None:
    await chain(kube)
    await kube.delete(Deployment, "web", namespace="default", cascade=CascadeType.FOREGROUND)

    async def gone() -> bool:
        return not await exists(kube, Deployment, "web")

    await wait_for(gone)
    assert not await exists(kube, ReplicaSet, "web-1")
    assert not await exists(kube, Pod, "web-1-a")


async def test_foreground_owner_stays_while_a_dependent_is_held(kube: AsyncClient) -> None:
    dep = await kube.create(from_dict(deployment("web")), namespace="default")
    held = owned(replicaset("web-1"), dep, kind="Deployment", api_version="apps/v1")
    held["metadata"]["finalizers"] = ["example.com/hold"]
    await kube.create(from_dict(held), namespace="default")
    await kube.delete(Deployment, "web", namespace="default", cascade=CascadeType.FOREGROUND)

    async def dependent_deleting() -> bool:
        rs = await kube.get(ReplicaSet, "web-1", namespace="default")
        return rs.metadata is not None and rs.metadata.deletionTimestamp is not None

    await wait_for(dependent_deleting)
    owner = await kube.get(Deployment, "web", namespace="default")
    assert owner.metadata is not None and "foregroundDeletion" in (owner.metadata.finalizers or [])
    await kube.patch(ReplicaSet, "web-1", {"metadata": {"finalizers": None}}, namespace="default")

    async def owner_gone() -> bool:
        return not await exists(kube, Deployment, "web")

    await wait_for(owner_gone)


async def test_orphan_deletion_keeps_dependents_without_the_reference(kube: AsyncClient) -> None:
    await chain(kube)
    await kube.delete(Deployment, "web", namespace="default", cascade=CascadeType.ORPHAN)

    async def owner_gone() -> bool:
        return not await exists(kube, Deployment, "web")

    await wait_for(owner_gone)
    rs = await kube.get(ReplicaSet, "web-1", namespace="default")
    assert rs.metadata is not None and not rs.metadata.ownerReferences
    assert await exists(kube, Pod, "web-1-a")


async def test_dependent_of_a_missing_owner_is_collected(kube: AsyncClient) -> None:
    body = pod("stray")
    body["metadata"]["ownerReferences"] = [
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "gone", "uid": "no-such-uid"}
    ]
    await kube.create(from_dict(body), namespace="default")

    async def collected() -> bool:
        return not await exists(kube, Pod, "stray")

    await wait_for(collected)


async def test_namespace_deletion_removes_its_content_first(kube: AsyncClient) -> None:
    await kube.create(
        from_dict({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "t"}})
    )
    held = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "held", "finalizers": ["example.com/hold"]},
    }
    await kube.create(from_dict(held), namespace="t")
    await kube.create(from_dict(pod("p")), namespace="t")
    await kube.delete(Namespace, "t")

    async def pod_gone() -> bool:
        return not await exists(kube, Pod, "p", namespace="t")

    await wait_for(pod_gone)
    assert await exists(kube, Namespace, "t", namespace=None)
    await kube.patch(ConfigMap, "held", {"metadata": {"finalizers": None}}, namespace="t")

    async def namespace_gone() -> bool:
        return not await exists(kube, Namespace, "t", namespace=None)

    await wait_for(namespace_gone)


def crd(
    *, scope: str = "Namespaced", plural: str = "widgets", kind: str = "Widget"
) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.example.com"},
        "spec": {
            "group": "example.com",
            "scope": scope,
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }


async def test_crd_lifecycle(kube: AsyncClient, sim_http: httpx.AsyncClient) -> None:
    assert (await sim_http.get("/apis/example.com/v1/widgets")).status_code == 404
    created = await kube.create(from_dict(crd()))
    assert created.status is not None
    conditions = {c.type: c.status for c in created.status.conditions or []}
    assert conditions["Established"] == "True"
    discovery = (await sim_http.get("/apis/example.com/v1")).json()
    assert [r["name"] for r in discovery["resources"]] == ["widgets", "widgets/status"]
    widget = create_namespaced_resource("example.com", "v1", "Widget", "widgets")
    obj = widget(metadata={"name": "w1"}, spec={"size": 3}, status={"ready": True})  # type: ignore[call-arg]
    stored = await kube.create(obj, namespace="default")
    assert stored.metadata is not None and stored.metadata.generation == 1
    assert not stored.get("status")  # status is written through /status only
    status = await kube.patch(
        widget.Status,  # type: ignore[attr-defined]
        "w1",
        {"status": {"ready": True}},
        namespace="default",
        patch_type=PatchType.MERGE,
    )
    assert status["status"] == {"ready": True} and status.metadata.generation == 1
    spec = await kube.patch(
        widget, "w1", {"spec": {"size": 4}}, namespace="default", patch_type=PatchType.MERGE
    )
    assert spec.metadata.generation == 2  # type: ignore[union-attr]
    await kube.delete(CustomResourceDefinition, "widgets.example.com")

    async def stopped() -> bool:
        return (await sim_http.get("/apis/example.com/v1/widgets")).status_code == 404

    await wait_for(stopped)
    assert (await sim_http.get("/apis/example.com/v1")).status_code == 404
    assert not await exists(kube, CustomResourceDefinition, "widgets.example.com", namespace=None)


async def test_cluster_scoped_crd(kube: AsyncClient, sim_http: httpx.AsyncClient) -> None:
    await kube.create(from_dict(crd(scope="Cluster", plural="gadgets", kind="Gadget")))
    body = {"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g"}}
    answer = await sim_http.post("/apis/example.com/v1/gadgets", json=body)
    assert answer.status_code == 201, answer.text
    assert "namespace" not in answer.json()["metadata"]
    listed = (await sim_http.get("/apis/example.com/v1/gadgets")).json()
    assert listed["kind"] == "GadgetList" and [i["metadata"]["name"] for i in listed["items"]] == [
        "g"
    ]
    assert (
        await sim_http.get("/apis/example.com/v1/namespaces/default/gadgets")
    ).status_code == 404
    await async_load_in_cluster_generic_resources(kube)
