"""The control-plane benchmark's side of the simulated cluster: objects, waits, a snapshot.

A :class:`Snapshot` is what an informer cache would hold when the change is complete (every
Ingress, Service, EndpointSlice and Node), read *before* the clock starts, so that listing the
simulator's API is not counted as control-plane time. :func:`desired_ingresses` turns it into
each Ingress's desired listeners with the pure model (:mod:`directlb.model.ingress`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from lightkube import AsyncClient, codecs
from lightkube.core.exceptions import ApiError
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Node, Service
from lightkube.resources.discovery_v1 import EndpointSlice
from lightkube.resources.networking_v1 import Ingress, IngressClass

from directlb.bench import cp_scenario as sc
from directlb.controllers.service import endpoint_views, node_view, service_view
from directlb.model.ingress import (
    IngressBackendView,
    IngressClassView,
    IngressPathView,
    IngressRuleView,
    IngressView,
    desired_for_ingress,
)
from directlb.model.service import EndpointView, NodeView, ServiceView
from directlb.plan.state import Listener

INSTANCE_LABEL = "cloud.tencent.com/node-instance-id"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


async def wait_for(
    check: Callable[[], Awaitable[bool]], *, what: str, timeout: float = 300, interval: float = 0.2
) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not reached within {timeout:.0f}s")
        await asyncio.sleep(interval)


async def apply(client: AsyncClient, doc: dict[str, Any]) -> None:
    """Create ``doc``, or replace its spec if it exists."""
    obj = codecs.from_dict(doc)
    try:
        await client.create(obj)
    except ApiError as error:
        if error.status.code != 409:
            raise
        meta = doc["metadata"]
        kind: Any = type(obj)
        await client.patch(
            kind, meta["name"], {"spec": doc["spec"]}, namespace=meta.get("namespace")
        )


async def gather_bounded(jobs: list[Awaitable[Any]], limit: int = 16) -> None:
    sem = asyncio.Semaphore(limit)

    async def one(job: Awaitable[Any]) -> None:
        async with sem:
            await job

    await asyncio.gather(*(one(j) for j in jobs))


async def ready_nodes(client: AsyncClient) -> list[Any]:
    nodes = [n async for n in client.list(Node)]
    return [n for n in nodes if node_view(n).ready and node_view(n).instance_id]


async def add_nodes(client: AsyncClient, *, first: int, last: int) -> None:
    """Register ``node-first`` .. ``node-last`` (the simulator gives each a kubelet)."""
    await gather_bounded(
        [
            client.create(
                codecs.from_dict(
                    {"apiVersion": "v1", "kind": "Node", "metadata": {"name": f"node-{i}"}}
                )
            )
            for i in range(first, last + 1)
        ]
    )


async def wait_nodes(client: AsyncClient, count: int) -> None:
    async def enough() -> bool:
        return len(await ready_nodes(client)) >= count

    await wait_for(enough, what=f"{count} Ready nodes")


async def register_instances(client: AsyncClient, endpoint: str) -> int:
    """Tell the emulator every node's instance id -> InternalIP (what the cloud knows)."""
    instances: dict[str, str] = {}
    for node in await ready_nodes(client):
        view = node_view(node)
        if view.instance_id and view.internal_ip:
            instances[view.instance_id] = view.internal_ip
    body = {"Instances": [{"InstanceId": k, "PrivateIpAddress": v} for k, v in instances.items()]}
    async with httpx.AsyncClient() as http:
        answer = await http.post(f"http://{endpoint}/_emulator/instances", json=body)
        answer.raise_for_status()
    return len(instances)


async def deploy_rules(client: AsyncClient, row: sc.Row, rules: int) -> None:
    """The backend, the class, ``rules`` Services and the Ingresses that hold them."""
    await apply(client, sc.backend_deployment())
    await apply(client, sc.ingress_class())
    await gather_bounded([apply(client, sc.service(i)) for i in range(rules)])
    await gather_bounded(
        [apply(client, sc.ingress(name, numbers)) for name, numbers in row.ingresses(rules)]
    )

    async def backend_ready() -> bool:
        deployment = await client.get(Deployment, sc.BACKEND, namespace=sc.NAMESPACE)
        return bool(deployment.status and (deployment.status.readyReplicas or 0) >= 1)

    async def endpoints_everywhere() -> bool:
        ready: set[str] = set()
        async for s in client.list(EndpointSlice, namespace=sc.NAMESPACE):
            if any(e.ready for e in endpoint_views(s)):
                ready.add(_service_of(s))
        return all(sc.service_name(i) in ready for i in range(rules))

    await wait_for(backend_ready, what="the backend Deployment Ready")
    await wait_for(endpoints_everywhere, what=f"endpoints for {rules} Services")


# --- the informer cache's content, and the model on it ------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    ingresses: tuple[IngressView, ...]
    classes: tuple[IngressClassView, ...]
    services: tuple[ServiceView, ...]
    endpoints: dict[str, tuple[EndpointView, ...]]
    nodes: tuple[NodeView, ...]


def ingress_view(obj: Any) -> IngressView:
    spec = obj.spec
    rules: list[IngressRuleView] = []
    for rule in spec.rules or []:
        paths: list[IngressPathView] = []
        for path in (rule.http.paths if rule.http else None) or []:
            svc = path.backend.service
            backend = (
                IngressBackendView(
                    service_name=svc.name,
                    port_number=svc.port.number if svc.port else None,
                    port_name=(svc.port.name or "") if svc.port else "",
                )
                if svc is not None
                else IngressBackendView(resource="unsupported")
            )
            paths.append(
                IngressPathView(backend=backend, path=path.path or "", path_type=path.pathType)
            )
        rules.append(IngressRuleView(host=rule.host or "", paths=tuple(paths)))
    meta = obj.metadata
    return IngressView(
        namespace=meta.namespace or "",
        name=meta.name or "",
        uid=meta.uid or "",
        ingress_class_name=spec.ingressClassName,
        annotations=tuple(sorted((meta.annotations or {}).items())),
        rules=tuple(rules),
    )


def _service_of(endpoint_slice: Any) -> str:
    return str((endpoint_slice.metadata.labels or {}).get(SERVICE_NAME_LABEL, ""))


def _class_view(obj: Any) -> IngressClassView:
    return IngressClassView(
        name=obj.metadata.name or "",
        controller=obj.spec.controller or "",
        annotations=tuple(sorted((obj.metadata.annotations or {}).items())),
    )


async def snapshot(client: AsyncClient) -> Snapshot:
    ingresses = [ingress_view(i) async for i in client.list(Ingress, namespace=sc.NAMESPACE)]
    classes = [_class_view(c) async for c in client.list(IngressClass)]
    services = [service_view(s) async for s in client.list(Service, namespace=sc.NAMESPACE)]
    endpoints: dict[str, list[EndpointView]] = {}
    async for s in client.list(EndpointSlice, namespace=sc.NAMESPACE):
        name = _service_of(s)
        if name:
            endpoints.setdefault(name, []).extend(endpoint_views(s))
    nodes = [node_view(n) async for n in client.list(Node)]
    return Snapshot(
        ingresses=tuple(sorted(ingresses, key=lambda i: i.name)),
        classes=tuple(classes),
        services=tuple(services),
        endpoints={k: tuple(v) for k, v in endpoints.items()},
        nodes=tuple(nodes),
    )


def desired_ingresses(snap: Snapshot) -> dict[str, tuple[Listener, ...]]:
    """Each Ingress's desired listeners, by name; a model ERROR problem is a bench bug."""
    out: dict[str, tuple[Listener, ...]] = {}
    for view in snap.ingresses:
        desired = desired_for_ingress(
            view,
            classes=snap.classes,
            services=snap.services,
            endpoints=snap.endpoints,
            nodes=snap.nodes,
        )
        if not desired.actionable:
            raise RuntimeError(f"ingress {view.name}: not actionable: {desired.problems}")
        out[view.name] = desired.listeners
    return out
