"""The Service reconciler (layer 4): one ``type: LoadBalancer`` Service, one CLB, keyed
``namespace/name``.

Pipeline per key: convert the cached objects into the model's views, compute the desired
listeners (:func:`directlb.model.service.desired_for_service`), ensure the CLB (found by our
ownership tags, created, or adopted by id), ``sync`` it through the cloud port, then report:
``status.loadBalancer.ingress[].ip``, the ``service.kubernetes.io/loadbalance-id`` annotation and
Events (EnsuringLoadBalancer, EnsuredLoadBalancer, SyncLoadBalancerFailed, and one Warning per
model problem, with the problem's reason).

A finalizer (``directlb.io/service-lb``) is added before the first cloud write, so deleting the
Service, or changing it away from our LoadBalancer, removes what we made: the CLB we created, or
only our listeners on an adopted CLB. The listener keys we own on an adopted CLB are recorded in
the annotation ``directlb.io/listeners`` (the ``scope`` of the sync), so a restarted controller
knows which listeners are ours. All of that (CLB spec and ownership tags, finalizer, sync,
status, Events, clean-up) is :class:`~directlb.controllers.lbowner.LoadBalancerOwner`, shared
with the Ingress controller; what is the Service's own is its views and its model.

Level-triggered and idempotent: every step finds what an earlier, interrupted run did (tags on
the cloud side, the finalizer and annotations on the Service).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence
from typing import Any

from lightkube import AsyncClient
from lightkube.resources.core_v1 import Service

from directlb.cloud.port import CloudLoadBalancers, CloudQuotas
from directlb.controllers.lbowner import (
    ListenerClaims,
    LoadBalancerOwner,
    OwnerKind,
)
from directlb.kube.events import EventRecorder
from directlb.kube.informer import MODIFIED, Event, Store
from directlb.kube.mapping import SERVICE_NAME_LABEL
from directlb.kube.version import ServerVersion, VersionCache
from directlb.model.annotations import parse_service_annotations
from directlb.model.service import (
    BackendMode,
    EndpointPortView,
    EndpointView,
    KubeVersion,
    NodeView,
    PodView,
    Quotas,
    ServiceDesired,
    ServicePortView,
    ServiceView,
    desired_for_service,
    effective_mode,
    is_ours,
    load_balancer_problem,
)

log = logging.getLogger("directlb.controllers.service")

FINALIZER = "directlb.io/service-lb"
LB_ID_ANNOTATION = "service.kubernetes.io/loadbalance-id"
INSTANCE_LABEL = "cloud.tencent.com/node-instance-id"
SERVICE_KIND = OwnerKind(
    kind="service",
    resource=Service,
    status_resource=Service.Status,
    finalizer=FINALIZER,
    lb_id_annotation=LB_ID_ANNOTATION,
)
TAG_SERVICE = SERVICE_KIND.tag_owner  # directlb.io/service
TAG_UID = SERVICE_KIND.tag_uid  # directlb.io/service-uid
BY_SERVICE = "service"

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


# --- views: lightkube objects -> model values --------------------------------------------------


def _annotations(obj: Any) -> tuple[tuple[str, str], ...]:
    meta = obj.metadata
    return tuple(sorted((meta.annotations or {}).items())) if meta else ()


def service_view(service: Any) -> ServiceView:
    spec = service.spec
    meta = service.metadata
    ports = tuple(
        ServicePortView(
            port=int(p.port),
            protocol=p.protocol or "TCP",
            name=p.name or "",
            target_port=p.targetPort if p.targetPort is not None else 0,
            node_port=p.nodePort,
        )
        for p in (spec.ports or [])
    )
    affinity = spec.sessionAffinityConfig
    timeout = affinity.clientIP.timeoutSeconds if affinity and affinity.clientIP else None
    return ServiceView(
        namespace=meta.namespace or "",
        name=meta.name or "",
        uid=meta.uid or "",
        type=spec.type or "ClusterIP",
        load_balancer_class=spec.loadBalancerClass,
        annotations=_annotations(service),
        ports=ports,
        external_traffic_policy=spec.externalTrafficPolicy or "Cluster",
        health_check_node_port=spec.healthCheckNodePort,
        session_affinity=spec.sessionAffinity or "None",
        session_affinity_timeout=timeout,
    )


def endpoint_views(endpoint_slice: Any) -> list[EndpointView]:
    ports = tuple(
        EndpointPortView(name=p.name or "", port=int(p.port), protocol=p.protocol or "TCP")
        for p in (endpoint_slice.ports or [])
        if p.port is not None
    )
    views: list[EndpointView] = []
    for endpoint in endpoint_slice.endpoints or []:
        conditions = endpoint.conditions
        ref = endpoint.targetRef
        for address in endpoint.addresses or []:
            views.append(
                EndpointView(
                    address=address,
                    ports=ports,
                    ready=conditions.ready if conditions else None,
                    serving=conditions.serving if conditions else None,
                    terminating=conditions.terminating if conditions else None,
                    node_name=endpoint.nodeName or "",
                    pod_name=ref.name if ref is not None and ref.kind == "Pod" else "",
                )
            )
    return views


def pod_view(pod: Any) -> PodView:
    status = pod.status
    conditions = (status.conditions if status else None) or []
    return PodView(
        name=pod.metadata.name or "",
        ip=(status.podIP if status else None) or "",
        node_name=(pod.spec.nodeName if pod.spec else None) or "",
        annotations=_annotations(pod),
        containers_ready=any(
            c.type == "ContainersReady" and c.status == "True" for c in conditions
        ),
        terminating=pod.metadata.deletionTimestamp is not None,
    )


def instance_id(node: Any) -> str:
    """From ``spec.providerID`` ``qcloud:///<zone>/<ins-id>``, else the instance-id label."""
    provider = (node.spec.providerID if node.spec else None) or ""
    if provider.startswith("qcloud://"):
        last = provider.rstrip("/").rsplit("/", 1)[-1]
        if last.startswith("ins-"):
            return last
    labels = node.metadata.labels or {}
    return str(labels.get(INSTANCE_LABEL, ""))


def node_view(node: Any) -> NodeView:
    status = node.status
    addresses = (status.addresses if status else None) or []
    conditions = (status.conditions if status else None) or []
    return NodeView(
        name=node.metadata.name or "",
        internal_ip=next((a.address for a in addresses if a.type == "InternalIP"), ""),
        instance_id=instance_id(node),
        ready=any(c.type == "Ready" and c.status == "True" for c in conditions),
        schedulable=not (node.spec.unschedulable if node.spec else False),
    )


def node_changed(event: Event[Any]) -> bool:
    """A Node event that may change what a node-backed model computes: an add or a delete, a
    resync (old is new: a resync exists to heal, so it counts), or an update of something
    :func:`node_view` reads (Ready, unschedulable, InternalIP, instance id from providerID or
    its label, the name). The kubelet's status updates every few seconds (heartbeat times,
    images, capacity) change none of that and map to nothing: each would otherwise reconcile
    every node-backed Service and Ingress of the cluster."""
    if event.type != MODIFIED or event.old is None or event.old is event.obj:
        return True
    return node_view(event.old) != node_view(event.obj)


def uses_nodes(service: Any, cluster_version: KubeVersion | None = None) -> bool:
    """A Service whose backends are nodes (NodePort or Local mode): node changes concern it.
    The model's own answer (:func:`effective_mode`): a direct Service on a cluster too old for
    direct access is bound through its nodes too."""
    if not (service.spec and service.spec.type == "LoadBalancer"):
        return False
    return effective_mode(service_view(service), cluster_version) is not BackendMode.DIRECT


def _parsed(known: ServerVersion | None) -> KubeVersion | None:
    if known is None:
        return None
    return KubeVersion.parse(major=known.major, minor=known.minor, git_version=known.git_version)


def slice_service(endpoint_slice: Any) -> list[str]:
    name = (endpoint_slice.metadata.labels or {}).get(SERVICE_NAME_LABEL)
    return [f"{endpoint_slice.metadata.namespace}/{name}"] if name else []


def known_cluster_version(version: VersionCache) -> KubeVersion | None:
    """The cluster version ``version`` last read, without reading (None: never read)."""
    return _parsed(version.known)


def desired_from_caches(
    view: ServiceView,
    *,
    slices: Store[Any],
    pods: Store[Any],
    nodes: Store[Any] | None,
    direct_routable_cidrs: Sequence[IPNetwork],
    quotas: CloudQuotas,
    cluster_version: KubeVersion | None,
) -> ServiceDesired:
    """The Service model over the informer caches: the one path from cached objects to
    :func:`desired_for_service`, taken by the Service controller and by the readiness-gate
    controller alike, so that the gate expects exactly the targets the Service controller binds.

    ``slices`` is indexed ``BY_SERVICE``. Only the pods the endpoints name are converted (the
    model looks up no other): a namespace may hold thousands. The nodes only when the Service
    is bound through them (the model reads none in direct mode); None: no node store (the
    gate, which acts on direct Services only). ``quotas`` are the cloud's
    (:meth:`~directlb.cloud.port.CloudLoadBalancers.quotas`).
    """
    slices_of = slices.by_index(BY_SERVICE, f"{view.namespace}/{view.name}")
    endpoints = [e for s in slices_of for e in endpoint_views(s)]
    named = sorted({e.pod_name for e in endpoints if e.pod_name})
    pod_views = [
        pod_view(p)
        for p in (pods.get(f"{view.namespace}/{name}") for name in named)
        if p is not None
    ]
    node_views: list[NodeView] = []
    if nodes is not None and effective_mode(view, cluster_version) is not BackendMode.DIRECT:
        node_views = [node_view(n) for n in nodes.items()]
    return desired_for_service(
        view,
        endpoints=endpoints,
        pods=pod_views,
        nodes=node_views,
        direct_routable_cidrs=direct_routable_cidrs,
        quotas=Quotas(
            listeners_per_lb=quotas.listeners_per_lb,
            targets_per_listener=quotas.targets_per_group,
        ),
        cluster_version=cluster_version,
    )


# --- the reconciler -----------------------------------------------------------------------------


class ServiceController:
    def __init__(
        self,
        *,
        client: AsyncClient,
        cloud: CloudLoadBalancers,
        recorder: EventRecorder,
        cluster_id: str,
        services: Store[Any],
        slices: Store[Any],
        pods: Store[Any],
        nodes: Store[Any],
        direct_routable_cidrs: Sequence[IPNetwork] = (),
        version: VersionCache | None = None,
        claims: ListenerClaims | None = None,
    ) -> None:
        self.client = client
        self.cloud = cloud
        self.recorder = recorder
        self.cluster_id = cluster_id
        self.services = services
        self.slices = slices
        self.pods = pods
        self.nodes = nodes
        self.cidrs = tuple(direct_routable_cidrs)
        # /version, read on the first reconcile and then hourly (direct access needs >= 1.12).
        self.version = version if version is not None else VersionCache.for_client(client)
        # The CLB, finalizer, status and Events: shared with the Ingress controller.
        # ``claims``: the listeners other objects of ours hold on adopted CLBs (conflicts).
        self.owner = LoadBalancerOwner(
            client=client,
            cloud=cloud,
            recorder=recorder,
            cluster_id=cluster_id,
            kind=SERVICE_KIND,
            claims=claims,
        )

    async def cluster_version(self) -> KubeVersion | None:
        return _parsed(await self.version.get())

    def uses_nodes(self, service: Any) -> bool:
        """:func:`uses_nodes` with the cluster version last read (for the node-event filter,
        which cannot wait on a read)."""
        return uses_nodes(service, _parsed(self.version.known))

    async def reconcile(self, key: str) -> float | None:
        service = self.services.get(key)
        if service is None:
            return None  # gone: its finalizer (if any) was handled before deletion
        view = service_view(service)
        if service.metadata.deletionTimestamp is not None or not is_ours(view):
            if self.owner.has_finalizer(service):
                notes, _ = parse_service_annotations(view.annotations)
                await self.owner.release(service, existing_lb_id=notes.existing_lb_id)
            return None
        await self.owner.add_finalizer(service)
        return await self._ensure(service, view)

    async def _ensure(self, service: Any, view: ServiceView) -> float | None:
        desired = desired_from_caches(
            view,
            slices=self.slices,
            pods=self.pods,
            nodes=self.nodes,
            direct_routable_cidrs=self.cidrs,
            quotas=await self.cloud.quotas(),
            cluster_version=await self.cluster_version(),
        )
        self.owner.report(service, desired.problems)
        if not desired.actionable or desired.load_balancer is None:
            return None
        intent = desired.load_balancer
        return await self.owner.converge(
            service,
            intent=intent,
            listeners=lambda _lb: desired.listeners,
            # The user's own mistake (a CLB or subnet the cloud does not know) under its own
            # reason, anything else as SyncLoadBalancerFailed with the cloud's code.
            explain=lambda error: load_balancer_problem(
                intent, code=error.code, message=error.message
            ),
        )
