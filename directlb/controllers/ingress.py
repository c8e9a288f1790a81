"""The Ingress reconciler (layer 7): one networking.k8s.io/v1 Ingress of ours, one CLB, keyed
``namespace/name``.

Pipeline per key, the Service controller's with another model in the middle: convert the
cached objects into the model's views, compute the desired listeners, rules and backends
(:func:`directlb.model.ingress.desired_for_ingress`), ensure the CLB and sync it
(:class:`~directlb.controllers.lbowner.LoadBalancerOwner`, shared with the Service controller:
finalizer ``directlb.io/ingress-lb``, ownership tags ``directlb.io/ingress``/``-uid``, adoption
with ``kubernetes.io/ingress.existLbId``, status, Events), then report.

Layer-7 specifics handled here:

* **The default domain.** Rules without a host (and the default backend) are served on the
  CLB's *default domain*. The model needs a real name for it; as TKE does, it is the CLB's VIP,
  known once the CLB is ensured, so the model runs a second time with it. Those rules are
  marked ``default_server`` and the planner makes that domain the listener's default
  (``DefaultServer``): a request whose Host matches no rule lands there.
* **Certificates.** Each ``spec.tls`` Secret names a CLB certificate id in its key
  ``qcloud_cert_id``. Secrets are read with GET at reconcile time, never listed or watched:
  watching every Secret of the cluster would put all of them in our memory, and the controller
  is granted ``get`` only (``directlb/kube/permissions.py``). An Ingress with TLS is therefore
  reconciled again every :data:`SECRET_RECHECK` seconds, which picks up a rotated certificate.
* **Problems** (a missing Service or port, too many rules for the listener's quota, ...) are
  Warning Events with the problem's reason; the rules that can be served still are.

Mapping (what wakes which Ingress): the Ingress itself; an IngressClass (every Ingress: the
class decides ownership); a Service, its EndpointSlices and the pods it selects (the Ingresses
routing to that Service, by the ``backend-service`` index); a Node (every Ingress whose backends
are nodes).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.resources.core_v1 import Secret
from lightkube.resources.networking_v1 import Ingress

from directlb.cloud.port import CloudLoadBalancers, LoadBalancer
from directlb.controllers.gate import NOT_REGISTERED, Expectation, Waiting
from directlb.controllers.gate import Binding as GateBinding
from directlb.controllers.lbowner import ListenerClaims, LoadBalancerOwner, OwnerKind
from directlb.controllers.service import endpoint_views, node_view, pod_view, service_view
from directlb.kube.events import EventRecorder
from directlb.kube.informer import Event, Store, key_of
from directlb.kube.mapping import (
    BY_BACKEND_SERVICE,
    BY_NAMESPACE,
    ingress_backend_services,
    selects,
)
from directlb.kube.version import VersionCache
from directlb.model.ingress import (
    IngressBackendView,
    IngressClassView,
    IngressDesired,
    IngressPathView,
    IngressQuotas,
    IngressRuleView,
    IngressTLSView,
    IngressView,
    desired_for_ingress,
    is_ours,
    load_balancer_problem_of_ingress,
)
from directlb.model.ingress_annotations import TLS_CERT_KEY, parse_ingress_annotations
from directlb.model.service import BackendMode, KubeVersion, direct_access_refused
from directlb.plan.state import Listener, ListenerKey, RuleKey, TargetKind

log = logging.getLogger("directlb.controllers.ingress")

FINALIZER = "directlb.io/ingress-lb"
#: TKE's annotation for the id of an Ingress's CLB.
LB_ID_ANNOTATION = "kubernetes.io/ingress.qcloud-loadbalance-id"
#: The slices index of the Service controller (``namespace/service`` of a slice).
BY_SERVICE = "service"
#: Seconds between two reconciles of an Ingress with TLS (Secrets are not watched).
SECRET_RECHECK = 60.0

INGRESS_KIND = OwnerKind(
    kind="ingress",
    resource=Ingress,
    status_resource=Ingress.Status,
    finalizer=FINALIZER,
    lb_id_annotation=LB_ID_ANNOTATION,
    name_prefix="ing-",
)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


# --- views: lightkube objects -> model values --------------------------------------------------


def _annotations(obj: Any) -> tuple[tuple[str, str], ...]:
    meta = obj.metadata
    return tuple(sorted((meta.annotations or {}).items())) if meta else ()


def backend_view(backend: Any) -> IngressBackendView:
    if backend.service is not None:
        port = backend.service.port
        return IngressBackendView(
            service_name=backend.service.name or "",
            port_number=port.number if port is not None else None,
            port_name=(port.name if port is not None else None) or "",
        )
    resource = backend.resource
    if resource is not None:
        return IngressBackendView(resource=f"{resource.kind}/{resource.name}")
    return IngressBackendView()


def ingress_view(ingress: Any) -> IngressView:
    spec = ingress.spec
    meta = ingress.metadata
    rules: list[IngressRuleView] = []
    for rule in (spec.rules if spec else None) or []:
        paths = tuple(
            IngressPathView(
                backend=backend_view(path.backend),
                path=path.path or "",
                path_type=path.pathType or "ImplementationSpecific",
            )
            for path in (rule.http.paths if rule.http else [])
        )
        rules.append(IngressRuleView(host=rule.host or "", paths=paths))
    default = spec.defaultBackend if spec else None
    return IngressView(
        namespace=meta.namespace or "",
        name=meta.name or "",
        uid=meta.uid or "",
        ingress_class_name=spec.ingressClassName if spec else None,
        annotations=_annotations(ingress),
        rules=tuple(rules),
        default_backend=backend_view(default) if default is not None else None,
        tls=tuple(
            IngressTLSView(hosts=tuple(t.hosts or ()), secret_name=t.secretName or "")
            for t in ((spec.tls if spec else None) or [])
        ),
    )


def ingress_class_view(ingress_class: Any) -> IngressClassView:
    return IngressClassView(
        name=ingress_class.metadata.name or "",
        controller=(ingress_class.spec.controller if ingress_class.spec else None) or "",
        annotations=_annotations(ingress_class),
    )


def certificate_id(secret: Any) -> str:
    """A Secret's ``qcloud_cert_id`` (``data`` is base64, as the API serves it)."""
    raw = (secret.data or {}).get(TLS_CERT_KEY)
    if not raw:
        return ""
    try:
        return base64.b64decode(raw, validate=True).decode().strip()
    except (binascii.Error, UnicodeDecodeError):
        return ""


def asks_direct(ingress: Any) -> bool:
    """The Ingress's direct-access annotation says ``"true"``."""
    notes, _ = parse_ingress_annotations(_annotations(ingress))
    return notes.direct


def uses_nodes(ingress: Any, cluster_version: KubeVersion | None = None) -> bool:
    """An Ingress whose backends are nodes (not direct access, or direct access refused on a
    cluster older than 1.12, as the model decides): node changes concern it."""
    return not asks_direct(ingress) or direct_access_refused(cluster_version)


# --- mapping: a change of an input -> the Ingress keys to reconcile ----------------------------


def ingresses_for_services(ingresses: Store[Any], service_keys: set[str]) -> set[str]:
    return {
        key_of(ingress)
        for service in service_keys
        for ingress in ingresses.by_index(BY_BACKEND_SERVICE, service)
    }


def ingresses_for_nodes(
    ingresses: Store[Any], cluster_version: KubeVersion | None = None
) -> set[str]:
    return {
        key_of(ingress) for ingress in ingresses.items() if uses_nodes(ingress, cluster_version)
    }


def all_ingresses(_: Event[Any], ingresses: Store[Any]) -> set[str]:
    return set(ingresses.keys())


# --- the reconciler -----------------------------------------------------------------------------


#: Where an Ingress has a pod as a direct target: (listener, rule, target port).
Place = tuple[ListenerKey, RuleKey, int]


@dataclass(frozen=True)
class SyncedIngress:
    """An Ingress's CLB as its last successful sync left it."""

    lb_id: str
    direct: bool  # the mode the model chose (direct access may be refused: old cluster)
    listeners: tuple[Listener, ...]
    services: frozenset[str]  # names of the Services it routes to (its namespace)
    asked_direct: bool = False  # what the direct-access annotation said at that sync
    #: The listeners the model wanted but the sync refused (``ListenerConflict``: an object of
    #: ours created earlier holds them on the shared adopted CLB). Not in ``listeners``.
    refused: tuple[Listener, ...] = ()

    @cached_property
    def places(self) -> Mapping[str, tuple[Place, ...]]:
        """Pod IP -> every (listener, rule, port) that has it as a direct target, computed
        once per sync: the gate asks for each pending pod every couple of seconds, and an
        Ingress may carry thousands of targets."""
        return direct_places(self.listeners)

    @cached_property
    def refused_ips(self) -> frozenset[str]:
        """The pod IPs the refused listeners would have had as direct targets."""
        return frozenset(direct_places(self.refused))

    @property
    def refused_everything(self) -> bool:
        """Every listener refused: the Ingress binds no pod on its CLB."""
        return bool(self.refused) and not self.listeners


def direct_places(listeners: Iterable[Listener]) -> dict[str, tuple[Place, ...]]:
    """Pod IP -> every (listener, rule, port) of ``listeners`` that has it as a direct target."""
    found: dict[str, list[Place]] = {}
    for listener in listeners:
        for rule in listener.rules:
            for target in rule.targets:
                if target.kind is TargetKind.ENI:
                    found.setdefault(target.ip, []).append((listener.key, rule.key, target.port))
    return {ip: tuple(places) for ip, places in found.items()}


class IngressController:
    def __init__(
        self,
        *,
        client: AsyncClient,
        cloud: CloudLoadBalancers,
        recorder: EventRecorder,
        cluster_id: str,
        ingresses: Store[Any],
        classes: Store[Any],
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
        self.ingresses = ingresses
        self.classes = classes
        self.services = services
        self.slices = slices
        self.pods = pods
        self.nodes = nodes
        self.cidrs = tuple(direct_routable_cidrs)
        self.owner = LoadBalancerOwner(
            client=client,
            cloud=cloud,
            recorder=recorder,
            cluster_id=cluster_id,
            kind=INGRESS_KIND,
            claims=claims,
        )
        self.version = version if version is not None else VersionCache.for_client(client)
        #: What each Ingress's CLB was last synced to, by Ingress key (the readiness-gate
        #: source :class:`IngressBindings` reads it).
        self.synced: dict[str, SyncedIngress] = {}
        #: Called with the namespace after an Ingress synced (the gate re-checks its pods).
        self.on_synced: Callable[[str], None] | None = None

    async def cluster_version(self) -> KubeVersion | None:
        await self.version.get()
        return self.known_version()

    def known_version(self) -> KubeVersion | None:
        """The cluster version last read, without reading (for the node-event filter)."""
        known = self.version.known
        if known is None:
            return None
        return KubeVersion.parse(
            major=known.major, minor=known.minor, git_version=known.git_version
        )

    async def reconcile(self, key: str) -> float | None:
        ingress = self.ingresses.get(key)
        if ingress is None:
            self._forget(key)
            return None  # gone: its finalizer (if any) was handled before deletion
        view = ingress_view(ingress)
        classes = [ingress_class_view(c) for c in self.classes.items()]
        if ingress.metadata.deletionTimestamp is not None or not is_ours(view, classes):
            self._forget(key)
            if self.owner.has_finalizer(ingress):
                notes, _ = parse_ingress_annotations(view.annotations)
                await self.owner.release(ingress, existing_lb_id=notes.existing_lb_id)
            return None
        inputs = await self._inputs(view, classes)
        first = desired_for_ingress(view, **inputs)
        if not first.actionable or first.load_balancer is None:
            self.owner.report(ingress, first.problems)
            self._forget(key)
            return None
        await self.owner.add_finalizer(ingress)
        final: list[tuple[LoadBalancer, IngressDesired]] = []

        def listeners(lb: LoadBalancer) -> tuple[Listener, ...]:
            # The default domain is the CLB's VIP (as on TKE): known only now.
            domain = lb.vips[0] if lb.vips else lb.lb_id
            desired = desired_for_ingress(view, **inputs, default_domain=domain)
            final.append((lb, desired))
            return desired.listeners

        intent = first.load_balancer
        synced: list[tuple[Listener, ...]] = []
        retry = await self.owner.converge(
            ingress,
            intent=intent,
            listeners=listeners,
            explain=lambda error: load_balancer_problem_of_ingress(
                intent, code=error.code, message=error.message
            ),
            synced=synced.append,
        )
        self.owner.report(ingress, (final[-1][1] if final else first).problems)
        if final and retry is None:
            lb, desired = final[-1]
            # Without a listener refused on a shared CLB (the sync's own decision): no gate
            # waits on it.
            on_clb = synced[-1] if synced else desired.listeners
            kept = {listener.key for listener in on_clb}
            self.synced[key] = SyncedIngress(
                lb_id=lb.lb_id,
                direct=desired.mode is BackendMode.DIRECT,
                listeners=on_clb,
                services=frozenset(b.split("/", 1)[1] for b in ingress_backend_services(ingress)),
                asked_direct=asks_direct(ingress),
                refused=tuple(
                    listener for listener in desired.listeners if listener.key not in kept
                ),
            )
            if self.on_synced is not None:
                self.on_synced(view.namespace)
        if retry is None and view.tls:
            return SECRET_RECHECK
        return retry

    def _forget(self, key: str) -> None:
        if self.synced.pop(key, None) is not None and self.on_synced is not None:
            self.on_synced(key.partition("/")[0])

    async def _inputs(self, view: IngressView, classes: list[IngressClassView]) -> dict[str, Any]:
        """The model's inputs from the caches (and the TLS Secrets, read now)."""
        namespace = view.namespace
        referenced = {
            b.service_name
            for b in (
                *(p.backend for r in view.rules for p in r.paths),
                *((view.default_backend,) if view.default_backend else ()),
            )
            if b.service_name
        }
        # By key, not by scanning the namespace: a reconcile costs what the Ingress refers to.
        services = [
            service_view(s)
            for s in (self.services.get(f"{namespace}/{name}") for name in sorted(referenced))
            if s is not None
        ]
        endpoints = {
            name: [
                e
                for s in self.slices.by_index(BY_SERVICE, f"{namespace}/{name}")
                for e in endpoint_views(s)
            ]
            for name in referenced
        }
        # Only the pods the endpoints name (the model looks up no other), as for Services.
        named = sorted({e.pod_name for found in endpoints.values() for e in found if e.pod_name})
        pods = [
            pod_view(p)
            for p in (self.pods.get(f"{namespace}/{name}") for name in named)
            if p is not None
        ]
        quotas = await self.cloud.quotas()
        version = await self.cluster_version()
        # Every node of the cluster only when the backends are nodes: a direct Ingress is
        # reconciled at every change of its pods, and must not pay for the cluster's size.
        notes, _ = parse_ingress_annotations(view.annotations)
        direct = notes.direct and not direct_access_refused(version)
        return {
            "classes": classes,
            "services": services,
            "endpoints": endpoints,
            "pods": pods,
            "nodes": [] if direct else [node_view(n) for n in self.nodes.items()],
            "secrets": await self._certificates(view),
            "direct_routable_cidrs": self.cidrs,
            "quotas": IngressQuotas(
                rules_per_listener=quotas.rules_per_listener,
                targets_per_rule=quotas.targets_per_group,
            ),
            "cluster_version": version,
        }

    async def _certificates(self, view: IngressView) -> dict[str, str]:
        """``secret name -> qcloud_cert_id`` of the Ingress's TLS Secrets (missing ones left
        out: the model reports them)."""
        found: dict[str, str] = {}
        for name in dict.fromkeys(t.secret_name for t in view.tls if t.secret_name):
            try:
                secret = await self.client.get(Secret, name, namespace=view.namespace)
            except ApiError as error:
                if error.status.code == 404:
                    continue
                raise
            cert_id = certificate_id(secret)
            if cert_id:
                found[name] = cert_id
        return found


# --- readiness gates: where an Ingress wants each pod ----------------------------------------


class IngressBindings:
    """The readiness-gate controller's :class:`~directlb.controllers.gate.BindingSource` for
    direct-access Ingresses (layer 7).

    The Ingresses that concern a pod are read from the Ingress cache: those of ours, not being
    deleted, annotated direct-access, that route to a Service selecting the pod (found through
    the ``backend-service`` index, never a scan of every Ingress). For each, the pod's bindings
    are every rule (on HTTP and HTTPS) whose targets include the pod's IP, exactly as the
    Ingress controller last synced them to the CLB (the state it computed with the Ingress
    model, the TLS Secrets and the CLB's default domain, which only it knows).

    A pod such an Ingress does not bind yet is Waiting, and so is every pod of an Ingress that
    has not been synced yet, or not since its direct-access annotation changed: the synced
    state lives in memory, so right after a (re)start, or for a new Ingress whose CLB is being
    created, "nothing synced" must hold the gate rather than pass it as
    ``NoLoadBalancerBackend``. The controller re-checks the namespace's pods after every sync
    (``on_synced``), so a pod it then binds is seen at once. An Ingress whose direct access
    the model refused (a cluster older than 1.12) binds nodes and holds no gate, and so does
    one refused, on a CLB it shares, every listener that would carry the pod
    (``ListenerConflict``, as the sync decided it): nothing will ever register the pod there.
    """

    def __init__(self, *, controller: IngressController, services: Store[Any]) -> None:
        self.controller = controller
        self.services = services

    def expectations(self, pod: Any) -> list[Expectation]:
        namespace = pod.metadata.namespace or ""
        labels = dict(pod.metadata.labels or {})
        ip = (pod.status.podIP if pod.status else None) or ""
        ingresses = self.controller.ingresses
        keys = sorted(
            {
                key_of(ingress)
                for service in self.services.by_index(BY_NAMESPACE, namespace)
                if selects(service, labels)
                for ingress in ingresses.by_index(BY_BACKEND_SERVICE, key_of(service))
            }
        )
        if not keys:
            return []
        classes = [ingress_class_view(c) for c in self.controller.classes.items()]
        found: list[Expectation] = []
        for key in keys:
            ingress = ingresses.get(key)
            if ingress is None or ingress.metadata.deletionTimestamp is not None:
                continue
            ours = IngressView(
                namespace=namespace,
                name=ingress.metadata.name or "",
                ingress_class_name=ingress.spec.ingressClassName if ingress.spec else None,
                annotations=_annotations(ingress),
            )
            if not is_ours(ours, classes) or not asks_direct(ingress):
                continue
            source = f"Ingress {key}"
            synced = self.controller.synced.get(key)
            if synced is None or not synced.asked_direct:
                found.append(
                    Expectation(
                        source,
                        waiting=Waiting(
                            NOT_REGISTERED,
                            f"{source} has not been synced to its CLB in direct mode yet (see "
                            "the Ingress's Events)",
                        ),
                    )
                )
                continue
            if not synced.direct:
                continue  # direct access refused (cluster older than 1.12): nodes are bound
            if synced.refused_everything:
                continue  # every listener refused on the shared CLB: no pod is ever bound
            bindings = tuple(
                GateBinding(synced.lb_id, listener, rule, ip, port)
                for listener, rule, port in (synced.places.get(ip, ()) if ip else ())
            )
            if bindings:
                found.append(Expectation(source, bindings=bindings))
            elif ip and ip in synced.refused_ips:
                continue  # only on refused listeners: nothing will register the pod there
            else:
                found.append(
                    Expectation(
                        source,
                        waiting=Waiting(
                            NOT_REGISTERED,
                            f"{source} does not bind the pod on CLB {synced.lb_id} yet (it binds "
                            "a pod once its containers are ready and it is in the endpoints of "
                            "the Service; see the Ingress's Events)",
                        ),
                    )
                )
        return found


__all__ = [
    "BY_BACKEND_SERVICE",
    "FINALIZER",
    "INGRESS_KIND",
    "LB_ID_ANNOTATION",
    "IngressBindings",
    "IngressController",
    "SyncedIngress",
    "all_ingresses",
    "ingress_backend_services",
    "ingress_class_view",
    "ingress_view",
    "ingresses_for_nodes",
    "ingresses_for_services",
]
