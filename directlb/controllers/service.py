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
knows which listeners are ours.

Level-triggered and idempotent: every step finds what an earlier, interrupted run did (tags on
the cloud side, the finalizer and annotations on the Service).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence
from typing import Any

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.resources.core_v1 import Service
from lightkube.types import PatchType

from directlb.cloud.errors import CloudError
from directlb.cloud.port import (
    CloudLoadBalancers,
    DesiredLoadBalancer,
    LoadBalancerSpec,
    LoadBalancerType,
    Tags,
)
from directlb.kube.events import NORMAL, WARNING, EventRecorder
from directlb.kube.informer import Store
from directlb.kube.mapping import BY_NAMESPACE, SERVICE_NAME_LABEL
from directlb.model.annotations import parse_service_annotations
from directlb.model.service import (
    EndpointPortView,
    EndpointView,
    NodeView,
    PodView,
    ServicePortView,
    ServiceView,
    desired_for_service,
    is_ours,
)
from directlb.plan.state import ListenerKey, ListenerProtocol

log = logging.getLogger("directlb.controllers.service")

FINALIZER = "directlb.io/service-lb"
LB_ID_ANNOTATION = "service.kubernetes.io/loadbalance-id"
LISTENERS_ANNOTATION = "directlb.io/listeners"
INSTANCE_LABEL = "cloud.tencent.com/node-instance-id"
TAG_CLUSTER = "directlb.io/cluster-id"
TAG_SERVICE = "directlb.io/service"
TAG_UID = "directlb.io/service-uid"
BY_SERVICE = "service"
#: Seconds before a failed sync is tried again (the work queue adds its own backoff on errors).
RETRY_AFTER = 5.0

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


def uses_nodes(service: Any) -> bool:
    """A Service whose backends are nodes (NodePort or Local mode): node changes concern it."""
    notes, _ = parse_service_annotations(_annotations(service))
    return bool(service.spec and service.spec.type == "LoadBalancer" and not notes.direct)


def slice_service(endpoint_slice: Any) -> list[str]:
    name = (endpoint_slice.metadata.labels or {}).get(SERVICE_NAME_LABEL)
    return [f"{endpoint_slice.metadata.namespace}/{name}"] if name else []


def _parse_keys(raw: str | None) -> frozenset[ListenerKey]:
    keys: set[ListenerKey] = set()
    for item in (raw or "").split(","):
        protocol, _, port = item.strip().partition(":")
        if protocol and port.isdigit():
            try:
                keys.add(ListenerKey(ListenerProtocol(protocol), int(port)))
            except ValueError:
                continue
    return frozenset(keys)


def _format_keys(keys: frozenset[ListenerKey]) -> str:
    return ",".join(sorted(str(k) for k in keys))


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

    def tags(self, view: ServiceView) -> Tags:
        return (
            (TAG_CLUSTER, self.cluster_id),
            (TAG_SERVICE, f"{view.namespace}/{view.name}"),
            (TAG_UID, view.uid),
        )

    async def reconcile(self, key: str) -> float | None:
        service = self.services.get(key)
        if service is None:
            return None  # gone: its finalizer (if any) was handled before deletion
        view = service_view(service)
        finalizers = list(service.metadata.finalizers or [])
        if service.metadata.deletionTimestamp is not None or not is_ours(view):
            if FINALIZER in finalizers:
                await self._clean_up(service, view, finalizers)
            return None
        if FINALIZER not in finalizers:
            await self._patch_meta(service, {"finalizers": [*finalizers, FINALIZER]})
        return await self._ensure(service, view)

    async def _ensure(self, service: Any, view: ServiceView) -> float | None:
        slices = self.slices.by_index(BY_SERVICE, f"{view.namespace}/{view.name}")
        endpoints = [e for s in slices for e in endpoint_views(s)]
        pods = [pod_view(p) for p in self.pods.by_index(BY_NAMESPACE, view.namespace)]
        nodes = [node_view(n) for n in self.nodes.items()]
        desired = desired_for_service(
            view, endpoints=endpoints, pods=pods, nodes=nodes, direct_routable_cidrs=self.cidrs
        )
        for problem in desired.problems:
            self.recorder.event(
                service,
                type=problem.severity.event_type,
                reason=problem.reason,
                message=problem.message,
            )
        if not desired.actionable or desired.load_balancer is None:
            return None
        intent = desired.load_balancer
        spec = LoadBalancerSpec(
            name=f"{self.cluster_id}-{view.namespace}-{view.name}",
            tags=self.tags(view),
            type=LoadBalancerType.INTERNAL if intent.internal else LoadBalancerType.OPEN,
            subnet_id=intent.internal_subnet_id,
            existing_id=intent.existing_id,
        )
        annotations = dict(service.metadata.annotations or {})
        wanted = frozenset(listener.key for listener in desired.listeners)
        owned = _parse_keys(annotations.get(LISTENERS_ANNOTATION))
        # Events say what changed: a resync of a converged Service records nothing. The first
        # sync announces itself up front, since creating a CLB takes a while.
        first_sync = annotations.get(LB_ID_ANNOTATION) is None
        if first_sync:
            self._ensuring(service)
        try:
            lb = await self.cloud.ensure_load_balancer(spec)
            if intent.adopted and not wanted <= owned:
                # Record what we are about to create before creating it: a crash in between
                # must not leave a listener of ours that no run would ever delete.
                await self._patch_meta(
                    service, {"annotations": {LISTENERS_ANNOTATION: _format_keys(owned | wanted)}}
                )
            scope = (owned | wanted) if intent.adopted else None
            [result] = await self.cloud.sync(
                [DesiredLoadBalancer(lb.lb_id, desired.listeners, scope)]
            )
            if result.error is not None:
                raise result.error
        except CloudError as error:
            self.recorder.event(
                service,
                type=WARNING,
                reason="SyncLoadBalancerFailed",
                message=f"Error syncing load balancer: {error.code}: {error.message}",
            )
            log.warning(
                "event=sync_failed service=%s code=%s", view.namespace + "/" + view.name, error.code
            )
            return RETRY_AFTER
        meta: dict[str, Any] = {}
        if annotations.get(LB_ID_ANNOTATION) != lb.lb_id:
            meta[LB_ID_ANNOTATION] = lb.lb_id
        if intent.adopted and owned != wanted:
            meta[LISTENERS_ANNOTATION] = _format_keys(wanted)
        if meta:
            await self._patch_meta(service, {"annotations": meta})
        ingress = [{"ip": vip} for vip in lb.vips]
        current = (
            service.status.loadBalancer.ingress
            if service.status and service.status.loadBalancer
            else None
        )
        status_changed = [{"ip": i.ip} for i in (current or [])] != ingress
        if status_changed:
            await self.client.patch(
                Service.Status,
                view.name,
                {"status": {"loadBalancer": {"ingress": ingress}}},
                namespace=view.namespace,
                patch_type=PatchType.MERGE,
            )
        if result.operations or meta or status_changed:
            if not first_sync:
                self._ensuring(service)
            self.recorder.event(
                service, type=NORMAL, reason="EnsuredLoadBalancer", message="Ensured load balancer"
            )
        return None

    def _ensuring(self, service: Any) -> None:
        self.recorder.event(
            service, type=NORMAL, reason="EnsuringLoadBalancer", message="Ensuring load balancer"
        )

    async def _clean_up(self, service: Any, view: ServiceView, finalizers: list[str]) -> None:
        annotations = dict(service.metadata.annotations or {})
        notes, _ = parse_service_annotations(view.annotations)
        try:
            if notes.existing_lb_id:
                owned = _parse_keys(annotations.get(LISTENERS_ANNOTATION))
                if owned:
                    [result] = await self.cloud.sync(
                        [DesiredLoadBalancer(notes.existing_lb_id, (), owned)]
                    )
                    if result.error is not None and result.error.code != (
                        "InvalidParameter.LBIdNotFound"
                    ):
                        raise result.error
            else:
                for lb in await self.cloud.find_load_balancers(self.tags(view)):
                    await self.cloud.delete_load_balancer(lb.lb_id)
        except CloudError as error:
            self.recorder.event(
                service,
                type=WARNING,
                reason="SyncLoadBalancerFailed",
                message=f"Error deleting load balancer: {error.code}: {error.message}",
            )
            raise
        self.recorder.event(
            service, type=NORMAL, reason="DeletedLoadBalancer", message="Deleted load balancer"
        )
        patch: dict[str, Any] = {"finalizers": [f for f in finalizers if f != FINALIZER]}
        if service.metadata.deletionTimestamp is None:
            patch["annotations"] = {LB_ID_ANNOTATION: None, LISTENERS_ANNOTATION: None}
            await self.client.patch(
                Service.Status,
                view.name,
                {"status": {"loadBalancer": {"ingress": None}}},
                namespace=view.namespace,
                patch_type=PatchType.MERGE,
            )
        await self._patch_meta(service, patch)

    async def _patch_meta(self, service: Any, meta: dict[str, Any]) -> None:
        try:
            await self.client.patch(
                Service,
                service.metadata.name,
                {"metadata": meta},
                namespace=service.metadata.namespace,
                patch_type=PatchType.MERGE,
            )
        except ApiError as error:
            if error.status.code != 404:
                raise
