"""kubectl, with its default flags, against the simulator's API server (skipped without kubectl)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from lightkube import AsyncClient
from lightkube.codecs import from_dict
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Pod
from lightkube.types import PatchType

from tests.sim_support import Kubectl, pod

pytestmark = pytest.mark.asyncio

SEED = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: nginx
  labels: {app: nginx}
spec:
  replicas: 3
  selector:
    matchLabels: {app: nginx}
  template:
    metadata:
      labels: {app: nginx}
      annotations:
        tke.cloud.tencent.com/networks: tke-route-eni
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
        ports: [{containerPort: 80}]
---
apiVersion: v1
kind: Service
metadata:
  name: nginx
  annotations:
    service.cloud.tencent.com/direct-access: "true"
spec:
  type: LoadBalancer
  selector: {app: nginx}
  ports: [{port: 80, targetPort: 80, protocol: TCP}]
"""


def header(output: str) -> list[str]:
    return output.splitlines()[0].split()


async def test_apply_creates_then_updates(kubectl: Kubectl, kube: AsyncClient) -> None:
    first = await kubectl.run("apply", "-f", "-", stdin=SEED)
    assert first.splitlines() == ["deployment.apps/nginx created", "service/nginx created"]
    second = await kubectl.run("apply", "-f", "-", stdin=SEED.replace("replicas: 3", "replicas: 5"))
    assert second.splitlines() == ["deployment.apps/nginx configured", "service/nginx unchanged"]
    stored = await kube.get(Deployment, "nginx", namespace="default")
    assert stored.spec is not None and stored.spec.replicas == 5
    assert stored.metadata is not None and stored.metadata.generation == 2
    annotations = stored.metadata.annotations or {}
    assert "kubectl.kubernetes.io/last-applied-configuration" in annotations


async def test_get_outputs(kubectl: Kubectl, kube: AsyncClient) -> None:
    await kubectl.run("apply", "-f", "-", stdin=SEED)
    gated = pod("gated", labels={"app": "nginx"})
    gated["spec"]["readinessGates"] = [
        {"conditionType": "cloud.tencent.com/load-balancer-backendgroup-ready"}
    ]
    await kube.create(from_dict(gated), namespace="default")
    await kube.create(from_dict(pod("other", labels={"app": "other"})), namespace="default")
    wide = await kubectl.run("get", "pods", "-o", "wide")
    assert header(wide) == [
        "NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE",
        "NOMINATED", "NODE", "READINESS", "GATES",
    ]  # fmt: skip
    assert wide.splitlines()[1].split()[0] == "gated" and wide.splitlines()[1].split()[-1] == "0/1"
    services = await kubectl.run("get", "svc", "-o", "wide")
    assert header(services) == [
        "NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR",
    ]  # fmt: skip
    assert services.splitlines()[1].split()[:2] == ["nginx", "LoadBalancer"]
    selected = await kubectl.run("get", "pods", "-l", "app=nginx", "-o", "name")
    assert selected.split() == ["pod/gated"]
    as_yaml = yaml.safe_load(await kubectl.run("get", "deploy", "nginx", "-o", "yaml"))
    assert as_yaml["spec"]["replicas"] == 3 and as_yaml["metadata"]["uid"]
    as_json = await kubectl.json("get", "pods", "-l", "app!=nginx")
    assert [i["metadata"]["name"] for i in as_json["items"]] == ["other"]
    typo = SEED.split("---")[0].replace("replicas: 3", "replicass: 3")
    refused = await kubectl.run("apply", "-f", "-", stdin=typo, check=False)
    assert 'strict decoding error: unknown field "spec.replicass"' in refused
    missing = await kubectl.run("get", "pod", "nope", check=False)
    assert 'Error from server (NotFound): pods "nope" not found' in missing


async def test_describe(kubectl: Kubectl, kube: AsyncClient) -> None:
    await kubectl.run("apply", "-f", "-", stdin=SEED)
    await kube.create(from_dict(pod("p", labels={"app": "nginx"})), namespace="default")
    described = await kubectl.run("describe", "pod", "p")
    assert "Name:             p" in described and "Status:           Pending" in described
    assert "QoS Class:        BestEffort" in described
    service = await kubectl.run("describe", "service", "nginx")
    assert "Type:                     LoadBalancer" in service
    assert "service.cloud.tencent.com/direct-access: true" in service
    deploy = await kubectl.run("describe", "deployment", "nginx")
    assert "Replicas:               3 desired" in deploy
    assert "tke.cloud.tencent.com/networks: tke-route-eni" in deploy


async def test_patch_scale_and_rollout_status(kubectl: Kubectl, kube: AsyncClient) -> None:
    await kubectl.run("apply", "-f", "-", stdin=SEED)
    patched = await kubectl.run(
        "patch", "deployment", "nginx", "-p", '{"spec":{"minReadySeconds":1}}'
    )
    assert patched.strip() == "deployment.apps/nginx patched"
    merged = await kubectl.run(
        "patch", "deploy", "nginx", "--type=merge", "-p", '{"metadata":{"labels":{"x":"y"}}}'
    )
    assert merged.strip() == "deployment.apps/nginx patched"
    assert (await kubectl.run("scale", "deployment", "nginx", "--replicas=2")).strip() == (
        "deployment.apps/nginx scaled"
    )
    stored = await kube.get(Deployment, "nginx", namespace="default")
    assert stored.spec is not None and stored.spec.replicas == 2
    assert stored.spec.minReadySeconds == 1
    assert stored.metadata is not None and stored.metadata.labels == {"app": "nginx", "x": "y"}
    generation = stored.metadata.generation

    rollout = await kubectl.start("rollout", "status", "deployment/nginx", "--timeout=30s")
    try:
        waiting = await rollout.line()
        assert waiting.startswith("Waiting for deployment spec update to be observed")
    except BaseException:
        await rollout.stop()
        raise
    status = {
        "observedGeneration": generation,
        "replicas": 2,
        "updatedReplicas": 2,
        "readyReplicas": 2,
        "availableReplicas": 2,
        "conditions": [
            {
                "type": "Progressing",
                "status": "True",
                "reason": "NewReplicaSetAvailable",
                "message": 'ReplicaSet "nginx-1" has successfully progressed.',
            }
        ],
    }
    await kube.patch(
        Deployment.Status,
        "nginx",
        {"status": status},
        namespace="default",
        patch_type=PatchType.MERGE,
    )
    try:
        while 'deployment "nginx" successfully rolled out' not in await rollout.line():
            pass
        assert await rollout.finish() == 0
    finally:
        await rollout.stop()


async def test_delete(kubectl: Kubectl, kube: AsyncClient) -> None:
    await kubectl.run("apply", "-f", "-", stdin=SEED)
    assert (await kubectl.run("delete", "deployment", "nginx")).strip() == (
        'deployment.apps "nginx" deleted'
    )
    await kube.create(from_dict(pod("a", labels={"x": "1"})), namespace="default")
    await kube.create(from_dict(pod("b", labels={"x": "1"})), namespace="default")
    deleted = await kubectl.run("delete", "pods", "-l", "x=1")
    assert deleted.splitlines() == ['pod "a" deleted', 'pod "b" deleted']
    assert (await kubectl.run("get", "pods,deploy", "-o", "name")).strip() == ""


async def test_get_watch_prints_changes(kubectl: Kubectl, kube: AsyncClient) -> None:
    await kube.create(from_dict(pod("p")), namespace="default")
    watch = await kubectl.start("get", "pods", "-w")
    try:
        assert (await watch.line()).split()[0] == "NAME"
        assert (await watch.line()).split()[:3] == ["p", "0/1", "Pending"]
        await kube.patch(
            Pod.Status,
            "p",
            {"status": {"phase": "Running"}},
            namespace="default",
            patch_type=PatchType.MERGE,
        )
        assert (await watch.line()).split()[:3] == ["p", "0/1", "Running"]
        await kube.delete(Pod, "p", namespace="default")
        assert (await watch.line()).split()[:3] == ["p", "0/1", "Running"]
    finally:
        await watch.stop()


SIZED = {
    "type": "object",
    "properties": {
        "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
    },
}


async def test_crd_through_kubectl(kubectl: Kubectl) -> None:
    crd: dict[str, Any] = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {
                "plural": "widgets",
                "singular": "widget",
                "kind": "Widget",
                "shortNames": ["wd"],
            },
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": SIZED},
                    "additionalPrinterColumns": [
                        {"name": "Size", "type": "integer", "jsonPath": ".spec.size"}
                    ],
                }
            ],
        },
    }
    await kubectl.run("apply", "-f", "-", stdin=json.dumps(crd))
    widget = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": {"size": 1},
    }
    assert (await kubectl.run("apply", "-f", "-", stdin=json.dumps(widget))).strip() == (
        "widget.example.com/w created"
    )
    widget["spec"] = {"size": 2}
    assert (await kubectl.run("apply", "-f", "-", stdin=json.dumps(widget))).strip() == (
        "widget.example.com/w configured"
    )
    listed = await kubectl.run("get", "wd")
    assert header(listed) == ["NAME", "SIZE"] and listed.splitlines()[1].split() == ["w", "2"]
    widget["spec"] = {"size": "big"}
    refused = await kubectl.run("apply", "-f", "-", stdin=json.dumps(widget), check=False)
    assert "Invalid value" in refused and "spec.size" in refused
    assert (await kubectl.json("get", "widget", "w"))["spec"] == {"size": 2}
    await kubectl.run("delete", "crd", "widgets.example.com")


async def test_typed_create_commands_send_protobuf(kubectl: Kubectl, kube: AsyncClient) -> None:
    # kubectl's generators use typed clients, which send protobuf bodies.
    assert (await kubectl.run("create", "namespace", "demo")).strip() == "namespace/demo created"
    created = await kubectl.run("-n", "demo", "create", "configmap", "c", "--from-literal=a=b")
    assert created.strip() == "configmap/c created"
    await kubectl.run("-n", "demo", "create", "secret", "generic", "s", "--from-literal=k=v")
    await kubectl.run("-n", "demo", "create", "deployment", "web", "--image=nginx", "--replicas=0")
    await kubectl.run("-n", "demo", "create", "service", "loadbalancer", "web", "--tcp=80:8080")
    secret = await kubectl.json("-n", "demo", "get", "secret", "s")
    assert secret["data"] == {"k": "dg=="} and secret["type"] == "Opaque"
    web = await kube.get(Deployment, "web", namespace="demo")
    assert web.spec is not None and web.spec.replicas == 0
    assert web.spec.template.spec is not None
    assert web.spec.template.spec.containers[0].image == "nginx"
    service = await kubectl.json("-n", "demo", "get", "service", "web")
    assert service["spec"]["ports"][0]["targetPort"] == 8080
