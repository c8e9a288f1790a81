"""The Node handlers of the Service and Ingress controllers (runtime wiring): a Node update
enqueues the node-backed objects only when it changed something the models read."""

from __future__ import annotations

import copy
from typing import Any, cast

from lightkube import AsyncClient
from lightkube.resources.core_v1 import Node, Service
from lightkube.resources.networking_v1 import Ingress

from directlb.cloud.config import Credentials
from directlb.cloud.port import CloudLoadBalancers, CloudQuotas
from directlb.controllers import runtime
from directlb.controllers import service as service_controller
from directlb.controllers.config import ControllerConfig
from directlb.controllers.manager import Manager
from directlb.controllers.metrics import Metrics
from directlb.kube.events import EventRecorder
from directlb.kube.informer import ADDED, DELETED, MODIFIED, Event, Store
from directlb.kube.workqueue import WorkQueue

NODE = {
    "metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "n1"}},
    "spec": {"providerID": "qcloud:///100003/ins-1"},
    "status": {
        "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}],
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "lastHeartbeatTime": "2026-01-01T00:00:00Z",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }
        ],
    },
}


def service(name: str, annotations: dict[str, str] | None = None) -> Any:
    return Service.from_dict(
        {
            "metadata": {"name": name, "namespace": "ns", "annotations": annotations or {}},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "nodePort": 30080}]},
        }
    )


def ingress(name: str, annotations: dict[str, str] | None = None) -> Any:
    return Ingress.from_dict(
        {
            "metadata": {"name": name, "namespace": "ns", "annotations": annotations or {}},
            "spec": {
                "ingressClassName": "qcloud",
                "defaultBackend": {"service": {"name": "web", "port": {"number": 80}}},
            },
        }
    )


def node(**changes: Any) -> Any:
    raw = copy.deepcopy(NODE)
    ready = raw["status"]["conditions"][0]  # type: ignore[index]
    if "heartbeat" in changes:
        ready["lastHeartbeatTime"] = changes["heartbeat"]
    if "ready" in changes:
        ready["status"] = changes["ready"]
    if "unschedulable" in changes:
        raw["spec"]["unschedulable"] = changes["unschedulable"]  # type: ignore[index]
    if "labels" in changes:
        raw["metadata"]["labels"] = changes["labels"]  # type: ignore[index]
    return Node.from_dict(raw)


def wired() -> tuple[Manager, WorkQueue[str], WorkQueue[str]]:
    config = ControllerConfig(
        cluster_id="cls-1", vpc_id="vpc-1", credentials=Credentials("id", "key")
    )
    client = cast(AsyncClient, object())
    manager = runtime.build_manager(
        config,
        client,
        Metrics(),
        cloud=cast(CloudLoadBalancers, object()),
        recorder=cast(EventRecorder, object()),
    )
    services = manager.informer(Service).store
    services.put(service("nodeport"))
    services.put(service("direct", {"service.cloud.tencent.com/direct-access": "true"}))
    ingresses = manager.informer(Ingress).store
    ingresses.put(ingress("plain"))
    ingresses.put(ingress("direct", {"ingress.cloud.tencent.com/direct-access": "true"}))
    return manager, manager.queue("service"), manager.queue("ingress")


def emit(manager: Manager, event: Event[Any]) -> None:
    manager.informer(Node)._emit(event)


async def keys(queue: WorkQueue[str]) -> set[str]:
    found = set()
    while len(queue):
        key = await queue.get()
        found.add(key)
        queue.done(key)
    return found


async def test_a_kubelet_status_update_enqueues_nothing() -> None:
    manager, services, ingresses = wired()
    emit(manager, Event(MODIFIED, node(heartbeat="2026-01-01T00:00:10Z"), node()))
    assert await keys(services) == set()
    assert await keys(ingresses) == set()


async def test_a_label_the_model_does_not_read_enqueues_nothing() -> None:
    manager, services, ingresses = wired()
    emit(manager, Event(MODIFIED, node(labels={"team": "a"}), node()))
    assert await keys(services) == set()
    assert await keys(ingresses) == set()


async def test_a_ready_flip_enqueues_the_node_backed_objects() -> None:
    manager, services, ingresses = wired()
    emit(manager, Event(MODIFIED, node(ready="False"), node()))
    assert await keys(services) == {"ns/nodeport"}  # not the direct one
    assert await keys(ingresses) == {"ns/plain"}


async def test_cordoning_enqueues_the_node_backed_objects() -> None:
    manager, services, ingresses = wired()
    emit(manager, Event(MODIFIED, node(unschedulable=True), node()))
    assert (await keys(services), await keys(ingresses)) == ({"ns/nodeport"}, {"ns/plain"})


async def test_adds_and_deletes_always_count() -> None:
    for event in (Event(ADDED, node()), Event(DELETED, node(), node())):
        manager, services, ingresses = wired()
        emit(manager, event)
        assert (await keys(services), await keys(ingresses)) == ({"ns/nodeport"}, {"ns/plain"})


class _CountingStore(Store[Any]):
    def __init__(self) -> None:
        super().__init__()
        self.listed = 0

    def items(self) -> list[Any]:
        self.listed += 1
        return super().items()


def test_a_direct_service_never_reads_the_nodes() -> None:
    """The shared path from caches to the model converts the nodes only for node backends."""
    slices: Store[Any] = Store()
    slices.add_index(service_controller.BY_SERVICE, service_controller.slice_service)
    nodes = _CountingStore()
    nodes.put(node())
    for svc, listed in (
        (service("direct", {"service.cloud.tencent.com/direct-access": "true"}), 0),
        (service("nodeport"), 1),
    ):
        service_controller.desired_from_caches(
            service_controller.service_view(svc),
            slices=slices,
            pods=Store(),
            nodes=nodes,
            direct_routable_cidrs=(),
            quotas=CloudQuotas(),
            cluster_version=None,
        )
        assert nodes.listed == listed
