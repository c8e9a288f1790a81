"""The simulator's API server over real HTTPS: lightkube's AsyncClient and plain requests."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import ssl
import sys
from typing import Any

import httpx
import pytest
from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.codecs import from_dict
from lightkube.operators import in_
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import ConfigMap, Event, Namespace, Node, Pod, Secret, Service
from lightkube.types import PatchType

from directlb.sim.server import ApiServer, SimConfig
from tests.sim_support import deployment, pod

pytestmark = pytest.mark.asyncio


async def test_crud_for_several_kinds(kube: AsyncClient) -> None:
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {}},
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "svc"},
            "spec": {"selector": {"app": "x"}, "ports": [{"port": 80}]},
        },
        deployment("web"),
        pod("p"),
    ]
    for obj in objects:
        await kube.create(from_dict(obj), namespace="default")
    service = await kube.get(Service, "svc", namespace="default")
    assert service.spec is not None and service.spec.ports is not None
    assert service.spec.ports[0].protocol == "TCP" and service.spec.ports[0].targetPort == 80
    assert service.spec.type == "ClusterIP"
    secret = await kube.get(Secret, "s", namespace="default")
    assert secret.type == "Opaque"
    created = await kube.get(Pod, "p", namespace="default")
    assert created.status is not None and created.status.phase == "Pending"
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}
    await kube.create(from_dict(node))
    assert [n.metadata.name async for n in kube.list(Node)] == ["n1"]  # type: ignore[union-attr]
    cm = await kube.get(ConfigMap, "c", namespace="default")
    assert cm.data == {"a": "1"}
    cm.data = {"a": "2"}
    replaced = await kube.replace(cm)
    assert replaced.data == {"a": "2"}
    assert replaced.metadata is not None and cm.metadata is not None
    assert int(replaced.metadata.resourceVersion or 0) > int(cm.metadata.resourceVersion or 0)
    await kube.delete(ConfigMap, "c", namespace="default")
    with pytest.raises(ApiError) as missing:
        await kube.get(ConfigMap, "c", namespace="default")
    assert missing.value.status.code == 404 and missing.value.status.reason == "NotFound"


async def test_metadata_on_create(kube: AsyncClient) -> None:
    body = pod("")
    del body["metadata"]["name"]
    body["metadata"]["generateName"] = "web-"
    first = await kube.create(from_dict(body), namespace="default")
    second = await kube.create(from_dict(deployment("d")), namespace="default")
    assert first.metadata is not None and second.metadata is not None
    assert first.metadata.name is not None and first.metadata.name.startswith("web-")
    assert len(first.metadata.name) == len("web-") + 5
    assert first.metadata.namespace == "default"  # from the URL
    assert first.metadata.uid and first.metadata.creationTimestamp is not None
    assert isinstance(first.metadata.resourceVersion, str)
    assert int(second.metadata.resourceVersion or 0) > int(first.metadata.resourceVersion or 0)
    assert second.metadata.generation == 1
    assert first.metadata.generation is None


async def test_create_twice_is_already_exists(kube: AsyncClient) -> None:
    await kube.create(from_dict(pod("p")), namespace="default")
    with pytest.raises(ApiError) as error:
        await kube.create(from_dict(pod("p")), namespace="default")
    assert error.value.status.code == 409
    assert error.value.status.reason == "AlreadyExists"
    assert error.value.status.message == 'pods "p" already exists'


async def test_put_with_stale_resource_version_conflicts(kube: AsyncClient) -> None:
    await kube.create(from_dict(deployment("d")), namespace="default")
    stale = await kube.get(Deployment, "d", namespace="default")
    fresh = await kube.get(Deployment, "d", namespace="default")
    assert fresh.spec is not None and stale.spec is not None
    fresh.spec.replicas = 5
    await kube.replace(fresh)
    stale.spec.replicas = 7
    with pytest.raises(ApiError) as error:
        await kube.replace(stale)
    assert error.value.status.code == 409 and error.value.status.reason == "Conflict"
    assert "the object has been modified" in (error.value.status.message or "")
    final = await kube.get(Deployment, "d", namespace="default")
    assert final.spec is not None and final.spec.replicas == 5


async def test_generation_counts_spec_changes_only(kube: AsyncClient) -> None:
    await kube.create(from_dict(deployment("d")), namespace="default")
    labelled = await kube.patch(
        Deployment, "d", {"metadata": {"labels": {"x": "y"}}}, namespace="default"
    )
    assert labelled.metadata is not None and labelled.metadata.generation == 1
    scaled = await kube.patch(Deployment, "d", {"spec": {"replicas": 4}}, namespace="default")
    assert scaled.metadata is not None and scaled.metadata.generation == 2
    status = await kube.patch(
        Deployment.Status,
        "d",
        {"status": {"replicas": 4}},
        namespace="default",
        patch_type=PatchType.MERGE,
    )
    assert status.metadata is not None and status.metadata.generation == 2
    unchanged = await kube.patch(Deployment, "d", {"spec": {"replicas": 4}}, namespace="default")
    assert unchanged.metadata is not None
    assert unchanged.metadata.resourceVersion == status.metadata.resourceVersion  # a no-op write


async def test_status_and_spec_only_change_through_their_own_endpoint(kube: AsyncClient) -> None:
    await kube.create(from_dict(deployment("d", replicas=2)), namespace="default")
    via_status = await kube.patch(
        Deployment.Status,
        "d",
        {"spec": {"replicas": 9}, "status": {"replicas": 2}},
        namespace="default",
        patch_type=PatchType.MERGE,
    )
    assert via_status.spec is not None and via_status.spec.replicas == 2
    assert via_status.status is not None and via_status.status.replicas == 2
    via_main = await kube.patch(
        Deployment,
        "d",
        {"spec": {"replicas": 3}, "status": {"replicas": 7}},
        namespace="default",
        patch_type=PatchType.MERGE,
    )
    assert via_main.spec is not None and via_main.spec.replicas == 3
    assert via_main.status is not None and via_main.status.replicas == 2


async def test_two_pod_status_patches_of_different_condition_types_are_both_kept(
    kube: AsyncClient,
) -> None:
    await kube.create(from_dict(pod("p")), namespace="default")
    for kind in ("cloud.tencent.com/load-balancer-backendgroup-ready", "Ready"):
        condition = {"type": kind, "status": "True", "lastTransitionTime": None}
        await kube.patch(
            Pod.Status,
            "p",
            {"status": {"conditions": [condition]}},
            namespace="default",
            patch_type=PatchType.STRATEGIC,
        )
    stored = await kube.get(Pod, "p", namespace="default")
    assert stored.status is not None and stored.status.conditions is not None
    assert sorted(c.type for c in stored.status.conditions) == [
        "Ready",
        "cloud.tencent.com/load-balancer-backendgroup-ready",
    ]
    assert stored.status.phase == "Pending"


async def test_a_uid_in_a_status_patch_is_a_precondition(kube: AsyncClient) -> None:
    """As kube-apiserver (rest.BeforeUpdate: the stored UID is kept only when none is given,
    and metadata.uid is immutable): a patch naming another UID, e.g. a decision made for a pod
    since deleted and recreated under the same name, is refused with 422 and changes nothing."""
    created = await kube.create(from_dict(pod("p")), namespace="default")
    assert created.metadata is not None and created.metadata.uid
    gate = {"type": "cloud.tencent.com/load-balancer-backendgroup-ready", "status": "True"}
    body = {"metadata": {"uid": "not-the-uid"}, "status": {"conditions": [gate]}}
    with pytest.raises(ApiError) as refused:
        await kube.patch(Pod.Status, "p", body, namespace="default", patch_type=PatchType.STRATEGIC)
    assert refused.value.status.code == 422
    assert "metadata.uid" in (refused.value.status.message or "")
    stored = await kube.get(Pod, "p", namespace="default")
    assert stored.metadata is not None and stored.metadata.uid == created.metadata.uid
    assert not [c for c in (stored.status.conditions or []) if c.type == gate["type"]]

    body["metadata"] = {"uid": created.metadata.uid}
    patched = await kube.patch(
        Pod.Status, "p", body, namespace="default", patch_type=PatchType.STRATEGIC
    )
    assert patched.status is not None
    assert [c.status for c in patched.status.conditions or [] if c.type == gate["type"]] == ["True"]


async def test_json_patch_failing_test_is_422(kube: AsyncClient) -> None:
    await kube.create(from_dict(deployment("d", replicas=2)), namespace="default")
    with pytest.raises(ApiError) as error:
        await kube.patch(
            Deployment,
            "d",
            [{"op": "test", "path": "/spec/replicas", "value": 3}],
            namespace="default",
            patch_type=PatchType.JSON,
        )
    assert error.value.status.code == 422


async def test_server_side_apply_creates_then_updates(kube: AsyncClient) -> None:
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}}
    created = await kube.apply(from_dict(body), namespace="default", field_manager="me")
    assert created.data == {"a": "1"}
    body["data"] = {"a": "2"}
    updated = await kube.apply(from_dict(body), namespace="default", field_manager="me")
    assert updated.data == {"a": "2"}
    assert updated.metadata is not None and updated.metadata.managedFields


async def test_invalid_name_is_422_with_causes(sim_http: httpx.AsyncClient) -> None:
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Not_Valid"}}
    answer = await sim_http.post("/api/v1/namespaces/default/configmaps", json=body)
    assert answer.status_code == 422
    status = answer.json()
    assert status["kind"] == "Status" and status["reason"] == "Invalid"
    assert status["details"]["causes"][0]["field"] == "metadata.name"


async def test_namespace_must_exist_and_not_be_terminating(kube: AsyncClient) -> None:
    with pytest.raises(ApiError) as missing:
        await kube.create(from_dict(pod("p")), namespace="nowhere")
    assert missing.value.status.code == 404
    assert missing.value.status.message == 'namespaces "nowhere" not found'
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "t"}}
    await kube.create(from_dict(ns))
    blocker = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "keep", "finalizers": ["example.com/hold"]},
    }
    await kube.create(from_dict(blocker), namespace="t")
    await kube.delete(Namespace, "t")
    with pytest.raises(ApiError) as forbidden:
        await kube.create(from_dict(pod("p")), namespace="t")
    assert forbidden.value.status.code == 403 and forbidden.value.status.reason == "Forbidden"
    terminating = await kube.get(Namespace, "t")
    assert terminating.status is not None and terminating.status.phase == "Terminating"


async def test_bearer_token_is_required(sim: ApiServer) -> None:
    assert sim.ca_pem is not None
    trust = ssl.create_default_context(cadata=sim.ca_pem.decode())
    async with httpx.AsyncClient(base_url=sim.url, verify=trust) as anon:
        denied = await anon.get("/api/v1/namespaces")
        assert denied.status_code == 401
        assert denied.json()["reason"] == "Unauthorized"
        assert (await anon.get("/healthz")).text == "ok"
        assert (await anon.get("/readyz")).status_code == 200
        wrong = await anon.get("/api/v1/pods", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401


async def test_label_selectors(kube: AsyncClient, sim_http: httpx.AsyncClient) -> None:
    labels = [{"app": "a", "tier": "web"}, {"app": "b", "tier": "db"}, {"app": "c"}]
    for i, pod_labels in enumerate(labels):
        await kube.create(from_dict(pod(f"p{i}", labels=pod_labels)), namespace="default")

    async def names(selector: str) -> list[str]:
        params = {"labelSelector": selector}
        answer = await sim_http.get("/api/v1/namespaces/default/pods", params=params)
        assert answer.status_code == 200, answer.text
        return [i["metadata"]["name"] for i in answer.json()["items"]]

    assert await names("app=a") == ["p0"]
    assert await names("app==b") == ["p1"]
    assert await names("app!=a") == ["p1", "p2"]
    assert await names("app in (a,c)") == ["p0", "p2"]
    assert await names("app notin (a,c)") == ["p1"]
    assert await names("tier") == ["p0", "p1"]
    assert await names("!tier") == ["p2"]
    assert await names("tier,app!=b") == ["p0"]
    lightkube_selected = kube.list(Pod, namespace="default", labels={"app": in_(["a", "b"])})
    assert [p.metadata.name async for p in lightkube_selected] == ["p0", "p1"]  # type: ignore[union-attr]
    bad = await sim_http.get("/api/v1/pods", params={"labelSelector": "a in (b"})
    assert bad.status_code == 400


async def test_field_selectors(kube: AsyncClient, sim_http: httpx.AsyncClient) -> None:
    await kube.create(from_dict(pod("a", nodeName="n1")), namespace="default")
    await kube.create(from_dict(pod("b")), namespace="default")
    url = "/api/v1/namespaces/default/pods"

    async def names(selector: str) -> list[str]:
        answer = await sim_http.get(url, params={"fieldSelector": selector})
        assert answer.status_code == 200, answer.text
        return [i["metadata"]["name"] for i in answer.json()["items"]]

    assert await names("metadata.name=b") == ["b"]
    assert await names("spec.nodeName=n1") == ["a"]
    assert await names("spec.nodeName=") == ["b"]
    assert await names("status.phase=Pending,metadata.name!=a") == ["b"]
    assert await names("metadata.namespace=default") == ["a", "b"]
    bad = await sim_http.get(url, params={"fieldSelector": "spec.image=x"})
    assert bad.status_code == 400 and bad.json()["reason"] == "BadRequest"
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "e1"},
        "involvedObject": {"kind": "Pod", "name": "a", "namespace": "default"},
        "reason": "Bound",
        "message": "bound",
    }
    await kube.create(from_dict(event), namespace="default")
    events = await sim_http.get(
        "/api/v1/namespaces/default/events",
        params={"fieldSelector": "involvedObject.name=a,involvedObject.kind=Pod"},
    )
    assert [e["metadata"]["name"] for e in events.json()["items"]] == ["e1"]


async def test_events_are_served_by_both_event_apis(
    kube: AsyncClient, sim_http: httpx.AsyncClient
) -> None:
    body = {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": "e"},
        "regarding": {"kind": "Service", "name": "svc", "namespace": "default"},
        "reason": "Synced",
        "note": "listeners bound",
        "type": "Normal",
        "action": "Sync",
        "reportingController": "directlb",
        "reportingInstance": "directlb-0",
        "eventTime": "2024-01-01T00:00:00.000000Z",
    }
    answer = await sim_http.post("/apis/events.k8s.io/v1/namespaces/default/events", json=body)
    assert answer.status_code == 201, answer.text
    assert answer.json()["note"] == "listeners bound"
    core = await kube.get(Event, "e", namespace="default")
    assert core.message == "listeners bound" and core.involvedObject.name == "svc"
    assert core.reportingComponent == "directlb"


async def test_limit_and_continue_give_a_consistent_snapshot(
    kube: AsyncClient, sim_http: httpx.AsyncClient
) -> None:
    for i in range(5):
        cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"c{i}"}}
        await kube.create(from_dict(cm), namespace="default")
    url = "/api/v1/namespaces/default/configmaps"
    first = (await sim_http.get(url, params={"limit": 2})).json()
    assert [i["metadata"]["name"] for i in first["items"]] == ["c0", "c1"]
    assert first["metadata"]["remainingItemCount"] == 3
    await kube.delete(ConfigMap, "c3", namespace="default")
    late = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c9"}}
    await kube.create(from_dict(late), namespace="default")
    names: list[str] = []
    token = first["metadata"]["continue"]
    while token:
        page = (await sim_http.get(url, params={"limit": 2, "continue": token})).json()
        names += [i["metadata"]["name"] for i in page["items"]]
        assert page["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
        token = page["metadata"].get("continue")
    assert names == ["c2", "c3", "c4"]  # as of the first page: c3 still there, c9 not yet
    assert [c.metadata.name async for c in kube.list(ConfigMap, namespace="default")] == [  # type: ignore[union-attr]
        "c0",
        "c1",
        "c2",
        "c4",
        "c9",
    ]


async def test_expired_continue_token_is_410(
    kube: AsyncClient, sim_http: httpx.AsyncClient
) -> None:
    url = "/api/v1/namespaces/default/configmaps"
    for i in range(3):
        cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"c{i}"}}
        await kube.create(from_dict(cm), namespace="default")
    token = (await sim_http.get(url, params={"limit": 1})).json()["metadata"]["continue"]
    for i in range(60):  # more than the fixture's history of 50 events
        await kube.patch(ConfigMap, "c0", {"data": {"n": str(i)}}, namespace="default")
    answer = await sim_http.get(url, params={"limit": 1, "continue": token})
    assert answer.status_code == 410
    assert answer.json()["reason"] == "Expired"


async def test_tables_and_partial_metadata(kube: AsyncClient, sim_http: httpx.AsyncClient) -> None:
    await kube.create(from_dict(pod("p")), namespace="default")
    table_accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    table = (
        await sim_http.get("/api/v1/namespaces/default/pods", headers={"Accept": table_accept})
    ).json()
    assert table["kind"] == "Table"
    columns = [c["name"] for c in table["columnDefinitions"]]
    assert columns[:5] == ["Name", "Ready", "Status", "Restarts", "Age"]
    assert table["rows"][0]["cells"][0] == "p"
    assert table["metadata"]["resourceVersion"]
    partial = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"
    listed = (
        await sim_http.get("/api/v1/namespaces/default/pods", headers={"Accept": partial})
    ).json()
    assert listed["kind"] == "PartialObjectMetadataList"
    assert listed["items"][0]["metadata"]["name"] == "p" and "spec" not in listed["items"][0]


async def test_discovery_version_and_openapi(sim_http: httpx.AsyncClient) -> None:
    assert (await sim_http.get("/version")).json()["gitVersion"] == "v1.32.4"
    assert (await sim_http.get("/api")).json()["versions"] == ["v1"]
    groups = [g["name"] for g in (await sim_http.get("/apis")).json()["groups"]]
    assert {"apps", "apiextensions.k8s.io", "events.k8s.io", "networking.k8s.io"} <= set(groups)
    core = (await sim_http.get("/api/v1")).json()
    names = {r["name"] for r in core["resources"]}
    assert {"pods", "pods/status", "services/status", "namespaces", "nodes/status"} <= names
    apps = (await sim_http.get("/apis/apps/v1")).json()
    scale = next(r for r in apps["resources"] if r["name"] == "deployments/scale")
    assert (scale["group"], scale["kind"]) == ("autoscaling", "Scale")
    accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
    aggregated = await sim_http.get("/apis", headers={"Accept": accept})
    assert aggregated.headers["content-type"] == (
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    )
    assert aggregated.json()["kind"] == "APIGroupDiscoveryList"
    assert (await sim_http.get("/openapi/v2")).status_code == 404
    paths = (await sim_http.get("/openapi/v3")).json()["paths"]
    document = (await sim_http.get(paths["apis/apps/v1"]["serverRelativeURL"])).json()
    patch = document["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert any(p["name"] == "fieldValidation" for p in patch["parameters"])


async def test_version_is_configurable() -> None:
    server = ApiServer(SimConfig(git_version="v1.30.2", tls=False))
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as http:
            answer = (await http.get("/version")).json()
        assert (answer["major"], answer["minor"], answer["gitVersion"]) == ("1", "30", "v1.30.2")
    finally:
        await server.stop()


async def test_scale_subresource(kube: AsyncClient, sim_http: httpx.AsyncClient) -> None:
    await kube.create(from_dict(deployment("d", replicas=2)), namespace="default")
    url = "/apis/apps/v1/namespaces/default/deployments/d/scale"
    scale = (await sim_http.get(url)).json()
    assert (scale["kind"], scale["spec"]["replicas"], scale["status"]["selector"]) == (
        "Scale",
        2,
        "app=d",
    )
    scale["spec"]["replicas"] = 6
    assert (await sim_http.put(url, json=scale)).json()["spec"]["replicas"] == 6
    patched = await sim_http.patch(
        url,
        content=json.dumps({"spec": {"replicas": 1}}),
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert patched.json()["spec"]["replicas"] == 1
    stored = await kube.get(Deployment, "d", namespace="default")
    assert stored.spec is not None and stored.spec.replicas == 1
    assert stored.metadata is not None and stored.metadata.generation == 3
    stale = await sim_http.put(url, json=scale)  # carries the resourceVersion of the first read
    assert stale.status_code == 409


async def test_dry_run_does_not_persist(sim_http: httpx.AsyncClient) -> None:
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dry"}}
    answer = await sim_http.post("/api/v1/namespaces/default/configmaps?dryRun=All", json=body)
    assert answer.status_code == 201 and answer.json()["metadata"]["uid"]
    assert (await sim_http.get("/api/v1/namespaces/default/configmaps/dry")).status_code == 404


async def test_binding_assigns_a_node_once(kube: AsyncClient, sim_http: httpx.AsyncClient) -> None:
    await kube.create(from_dict(pod("p")), namespace="default")
    binding = {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": "p"},
        "target": {"kind": "Node", "name": "n1"},
    }
    url = "/api/v1/namespaces/default/pods/p/binding"
    assert (await sim_http.post(url, json=binding)).status_code == 201
    bound = await kube.get(Pod, "p", namespace="default")
    assert bound.spec is not None and bound.spec.nodeName == "n1"
    again = await sim_http.post(url, json=binding)
    assert again.status_code == 409


async def test_pod_spec_is_immutable_but_images_change(kube: AsyncClient) -> None:
    await kube.create(from_dict(pod("p")), namespace="default")
    image = {"spec": {"containers": [{"name": "app", "image": "nginx:1.26"}]}}
    updated = await kube.patch(Pod, "p", image, namespace="default")
    assert updated.spec is not None and updated.spec.containers[0].image == "nginx:1.26"
    with pytest.raises(ApiError) as error:
        await kube.patch(Pod, "p", {"spec": {"hostname": "other"}}, namespace="default")
    assert error.value.status.code == 422


async def test_ssl_verification_uses_the_written_ca(sim: ApiServer) -> None:
    assert sim.url.startswith("https://")
    config = sim.kubeconfig()
    ca = base64.b64decode(config["clusters"][0]["cluster"]["certificate-authority-data"])
    assert ca == sim.ca_pem
    async with httpx.AsyncClient(base_url=sim.url) as untrusting:
        with pytest.raises(httpx.ConnectError):
            await untrusting.get("/healthz")


async def test_state_dir_keeps_objects_token_and_ca_across_restarts(tmp_path: Any) -> None:
    config = SimConfig(state_dir=tmp_path / "state")
    first = ApiServer(config)
    await first.start()
    async with AsyncClient(config=KubeConfig.from_dict(first.kubeconfig())) as kube:
        await kube.create(from_dict(deployment("d")), namespace="default")
        cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
        await kube.create(from_dict(cm), namespace="default")
        await kube.delete(ConfigMap, "c", namespace="default")
        listing = kube.list(Deployment, namespace="default")
        _ = [d async for d in listing]
        before = listing.resourceVersion
    token, ca = first.token, first.ca_pem
    await first.stop()

    second = ApiServer(SimConfig(state_dir=tmp_path / "state"))
    await second.start()
    try:
        assert (second.token, second.ca_pem) == (token, ca)
        async with AsyncClient(config=KubeConfig.from_dict(second.kubeconfig())) as kube:
            stored = await kube.get(Deployment, "d", namespace="default")
            assert stored.metadata is not None and stored.metadata.generation == 1
            created = await kube.create(from_dict(pod("p")), namespace="default")
            assert created.metadata is not None
            assert int(created.metadata.resourceVersion or 0) > int(before)
            with pytest.raises(ApiError) as gone:
                async for _ in kube.watch(Deployment, namespace="default", resource_version="1"):
                    break
            assert gone.value.status.code == 410
            names = [n.metadata.name async for n in kube.list(Namespace)]  # type: ignore[union-attr]
            assert names == ["default", "kube-node-lease", "kube-public", "kube-system"]
    finally:
        await second.stop()


async def test_unknown_fields_follow_field_validation(sim_http: httpx.AsyncClient) -> None:
    url = "/api/v1/namespaces/default/configmaps"

    def body(name: str) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "dta": {}}

    strict = await sim_http.post(url, params={"fieldValidation": "Strict"}, json=body("a"))
    assert strict.status_code == 400
    assert strict.json()["message"] == (
        'ConfigMap in version "v1" cannot be handled as a ConfigMap: '
        'strict decoding error: unknown field "dta"'
    )
    warned = await sim_http.post(url, json=body("b"))  # Warn is the default
    assert warned.status_code == 201 and "dta" not in warned.json()
    assert warned.headers["warning"] == '299 - "unknown field \\"dta\\""'
    ignored = await sim_http.post(url, params={"fieldValidation": "Ignore"}, json=body("c"))
    assert ignored.status_code == 201 and "warning" not in ignored.headers
    assert "dta" not in ignored.json()


async def test_secret_string_data_is_folded_into_data(kube: AsyncClient) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s"},
        "data": {"a": "MQ=="},
        "stringData": {"b": "two"},
    }
    await kube.create(from_dict(body), namespace="default")
    stored = await kube.get(Secret, "s", namespace="default")
    assert stored.data == {"a": "MQ==", "b": base64.b64encode(b"two").decode()}
    assert not stored.stringData


async def test_directlb_sim_command(tmp_path: Any) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    kubeconfig = tmp_path / "kubeconfig"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "directlb", "sim", "--listen", f"127.0.0.1:{port}",
        "--kubeconfig-out", str(kubeconfig), "--state-dir", str(tmp_path / "state"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        assert f"https://127.0.0.1:{port}" in line.decode()
        async with AsyncClient(config=KubeConfig.from_file(kubeconfig)) as kube:
            names = [n.metadata.name async for n in kube.list(Namespace)]  # type: ignore[union-attr]
        assert "default" in names
    finally:
        process.terminate()
        assert await asyncio.wait_for(process.wait(), 30) == 0
