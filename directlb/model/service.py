"""Pure: the desired CLB listeners and backends of one ``type: LoadBalancer`` Service.

Inputs are plain frozen values (:class:`ServiceView`, :class:`EndpointView`, :class:`PodView`,
:class:`NodeView`) that the caller converts from the cached Kubernetes objects, so the model never
sees a lightkube type. The output is :class:`ServiceDesired`: whether the Service is ours at all,
its backend mode, the CLB it wants (:class:`LoadBalancerIntent`), its listeners and the problems
found on the way. Problems are values, never exceptions; whatever can safely be reconciled still
is.

Types, and why ``model`` imports ``directlb.plan.state``: the listeners are built from the value
types the planner and the cloud adapter already share (``Listener``, ``Target``,
``HealthCheck``). ``plan.state`` is a leaf module (stdlib only, no I/O); duplicating it here
would need an adapter that copies field by field and would drift. So the direction is
``model -> plan.state`` and an import-linter contract forbids the reverse (``plan`` never
imports ``model``), which keeps the graph acyclic. The CLB *spec* (tags, OPEN/INTERNAL) lives in
``directlb.cloud``, which model may not import, so :class:`LoadBalancerIntent` carries just the
Service's wishes and the controller builds the ``LoadBalancerSpec`` from it.

Backends per mode (weight 10 each):

* **direct** (``direct-access: "true"``): each pod's IP and target port (``ENI`` targets). A
  named ``targetPort`` is resolved per endpoint from its EndpointSlice's ports (the slice port
  carries the Service port's name and the pod's number). Bound: endpoints that are ready, and
  endpoints not ready whose pod has ``ContainersReady`` and which are not terminating (they wait
  on our readiness gate, which waits on the CLB: without them, a deadlock). Terminating
  endpoints are never bound. A pod neither in ENI mode nor inside ``direct_routable_cidrs`` is
  not bound (``PodNotRoutable``).
* **NodePort** (``externalTrafficPolicy: Cluster``): every Ready, schedulable node's instance
  on the port's ``nodePort`` (``NODE`` targets).
* **Local** (``externalTrafficPolicy: Local``): only nodes holding a ready, non-terminating
  endpoint of the Service, on the ``nodePort``. A cordoned node still counts: its pods serve.

Health-check defaults per mode (a field left ``None`` means the CLB's default):

* direct: enabled, the listener's protocol on the target port, interval 5 s, timeout 2 s,
  healthy after 2, unhealthy after 3 (the readiness gate waits on it: keep it quick).
* NodePort: enabled, everything else the CLB's default (protocol check on the nodePort).
* Local: TCP listeners get an HTTP check ``GET /healthz`` expecting 2xx on
  ``healthCheckNodePort`` (kube-proxy answers 200 only on nodes with a local endpoint), interval
  5 s, timeout 2 s, healthy 2, unhealthy 3. UDP listeners keep the CLB's default check on the
  nodePort (a CLB UDP listener cannot run an HTTP check).

Direct access needs Kubernetes 1.12 or later (pod readiness gates, which keep a rolling update
from outrunning the CLB). On an older cluster (``cluster_version``, from the API server's
``/version``) a direct Service is refused direct access with ``DirectAccessUnsupported`` (a
warning) and bound through its nodes instead, in the mode ``externalTrafficPolicy`` selects:
the Service keeps working, and nothing else about it changes. An unknown version (None) is taken
as recent enough.

``sessionAffinity: ClientIP`` sets the listener's session persistence to
``sessionAffinityConfig.clientIP.timeoutSeconds`` (Kubernetes' default 10800) clamped to the
CLB's 30..3600 seconds.

Quotas are inputs (:class:`Quotas`; Tencent's defaults, the controller passes what the cloud
reports): ports beyond the listener quota are dropped (``TooManyPorts``, the first ones kept,
in spec order); backends beyond the target quota are dropped (``TooManyBackends``, ready ones
kept first, then by address).

Some bad input only the cloud can reveal (an adopted CLB id that names nothing, a subnet not in
the VPC): :func:`load_balancer_problem` turns the cloud's error into the user's problem
(``ExistingLoadBalancerNotFound``, ``InternalSubnetNotFound``), so it gets its own reason and
a message that says what to change. The full list of reasons: ``docs/services.md``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from directlb.model.annotations import (
    DIRECT_ACCESS,
    EXISTING_LB_ID,
    INTERNAL_SUBNET_ID,
    Annotations,
    ServiceAnnotations,
    is_eni_pod,
    is_our_class,
    parse_service_annotations,
)
from directlb.model.problems import Problem, Severity
from directlb.plan.state import HealthCheck, Listener, ListenerProtocol, Target, TargetKind

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

WEIGHT = 10
SESSION_MIN = 30
SESSION_MAX = 3600
SESSION_DEFAULT = 10800  # Kubernetes' default timeoutSeconds for ClientIP affinity

DIRECT_HEALTH = HealthCheck(
    enabled=True, interval=5, timeout=2, healthy_threshold=2, unhealthy_threshold=3
)
NODEPORT_HEALTH = HealthCheck(enabled=True)


def local_health(health_check_node_port: int) -> HealthCheck:
    return HealthCheck(
        enabled=True,
        check_type="HTTP",
        check_port=health_check_node_port,
        http_path="/healthz",
        http_method="GET",
        http_codes=2,
        interval=5,
        timeout=2,
        healthy_threshold=2,
        unhealthy_threshold=3,
    )


# --- inputs ------------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class KubeVersion:
    """A Kubernetes version, as far as the model cares: major and minor."""

    major: int
    minor: int
    text: str = ""  # as the API server said it (gitVersion), for messages

    def __str__(self) -> str:
        return self.text or f"v{self.major}.{self.minor}"

    @classmethod
    def parse(
        cls, *, major: str = "", minor: str = "", git_version: str = ""
    ) -> KubeVersion | None:
        """From ``/version``'s fields; None if they say nothing usable.

        ``minor`` may carry a suffix (``"12+"`` on some distributions); ``gitVersion``
        (``v1.11.5-tke.1``) is the fallback when major or minor are missing or odd.
        """
        lead = re.compile(r"\d+")
        got_major, got_minor = lead.match(major.strip()), lead.match(minor.strip())
        if got_major and got_minor:
            return cls(int(got_major.group()), int(got_minor.group()), git_version)
        found = re.match(r"v?(\d+)\.(\d+)", git_version.strip())
        if found:
            return cls(int(found.group(1)), int(found.group(2)), git_version)
        return None

    @property
    def supports_direct_access(self) -> bool:
        """Pod readiness gates, which direct access relies on, arrived in Kubernetes 1.12."""
        return (self.major, self.minor) >= DIRECT_ACCESS_MIN_VERSION


DIRECT_ACCESS_MIN_VERSION = (1, 12)


@dataclass(frozen=True)
class ServicePortView:
    """One entry of ``spec.ports``. ``target_port`` is a number or a container port's name."""

    port: int
    protocol: str = "TCP"
    name: str = ""
    target_port: int | str = 0  # 0: same as ``port`` (Kubernetes' default)
    node_port: int | None = None


@dataclass(frozen=True)
class ServiceView:
    namespace: str
    name: str
    uid: str = ""
    type: str = "LoadBalancer"
    load_balancer_class: str | None = None
    annotations: Annotations = ()
    ports: tuple[ServicePortView, ...] = ()
    external_traffic_policy: str = "Cluster"
    health_check_node_port: int | None = None
    session_affinity: str = "None"
    session_affinity_timeout: int | None = None  # sessionAffinityConfig.clientIP.timeoutSeconds


@dataclass(frozen=True)
class EndpointPortView:
    """A port of an EndpointSlice: the Service port's name and the pods' port number."""

    name: str
    port: int
    protocol: str = "TCP"


@dataclass(frozen=True)
class EndpointView:
    """One endpoint of one of the Service's EndpointSlices, with its slice's ports.

    The conditions follow the EndpointSlice API: ``ready`` None means ready, ``serving`` None
    means ``ready``, ``terminating`` None means not terminating.
    """

    address: str
    ports: tuple[EndpointPortView, ...] = ()
    ready: bool | None = None
    serving: bool | None = None
    terminating: bool | None = None
    node_name: str = ""
    pod_name: str = ""  # targetRef, when it is a Pod

    @property
    def is_ready(self) -> bool:
        return self.ready is not False

    @property
    def is_terminating(self) -> bool:
        return self.terminating is True


@dataclass(frozen=True)
class PodView:
    """What the model needs of a pod in the Service's namespace."""

    name: str
    ip: str = ""
    node_name: str = ""
    annotations: Annotations = ()
    containers_ready: bool = False  # the ContainersReady condition
    terminating: bool = False  # deletionTimestamp is set


@dataclass(frozen=True)
class NodeView:
    name: str
    internal_ip: str
    instance_id: str  # the cloud instance (from spec.providerID); "" if unknown
    ready: bool = True
    schedulable: bool = True  # not cordoned (spec.unschedulable is false)


@dataclass(frozen=True)
class Quotas:
    """Tencent's default quotas: 50 listeners per CLB, 100 targets per listener."""

    listeners_per_lb: int = 50
    targets_per_listener: int = 100

    def __post_init__(self) -> None:
        if self.listeners_per_lb < 1 or self.targets_per_listener < 1:
            raise ValueError(f"quotas must be at least 1: {self}")


DEFAULT_QUOTAS = Quotas()


# --- outputs -----------------------------------------------------------------------------------


class BackendMode(StrEnum):
    DIRECT = "direct"
    NODEPORT = "NodePort"
    LOCAL = "Local"


@dataclass(frozen=True)
class LoadBalancerIntent:
    """The CLB the Service asks for: adopt ``existing_id``, or create one (INTERNAL if a subnet)."""

    existing_id: str = ""
    internal_subnet_id: str = ""

    @property
    def adopted(self) -> bool:
        return bool(self.existing_id)

    @property
    def internal(self) -> bool:
        return bool(self.internal_subnet_id)


def load_balancer_problem(intent: LoadBalancerIntent, *, code: str, message: str) -> Problem | None:
    """The user's mistake behind a cloud error on finding, adopting or creating the CLB, if any.

    Some bad input only the cloud can spot: an ``existing_id`` that names no CLB, or a subnet
    that is not in the VPC. For those, a problem with its own reason and what to change; for
    any other error None (the controller reports it as SyncLoadBalancerFailed and retries).
    """
    if intent.adopted and code in ("InvalidParameter.LBIdNotFound", "ResourceNotFound"):
        return Problem(
            "ExistingLoadBalancerNotFound",
            f"annotation {EXISTING_LB_ID} names {intent.existing_id}, which does not exist "
            "in this region (or this account cannot see it): set it to the id of an existing "
            "CLB (lb-xxxxxxxx), or remove it to have one created",
            Severity.ERROR,
        )
    if (
        intent.internal
        and not intent.adopted
        and code.startswith(("InvalidParameter", "ResourceNotFound"))
        and "subnet" in message.lower()
    ):
        return Problem(
            "InternalSubnetNotFound",
            f"annotation {INTERNAL_SUBNET_ID} names {intent.internal_subnet_id}, which the "
            f"cloud refused ({code}: {message}): set it to a subnet of the cluster's VPC, or "
            "remove it for a public CLB",
            Severity.ERROR,
        )
    return None


@dataclass(frozen=True)
class ServiceDesired:
    """What one Service wants of its CLB.

    ``ours`` False: not a LoadBalancer Service of our class; nothing else is set. ``actionable``
    False: an ERROR problem makes the desired state unknown, so the controller must report and
    leave the CLB as it is (never reconcile ``listeners`` then). ``bound_pods``: in direct mode,
    the pods whose IPs are targets (for the readiness-gate controller).
    """

    ours: bool
    mode: BackendMode | None = None
    load_balancer: LoadBalancerIntent | None = None
    listeners: tuple[Listener, ...] = ()
    problems: tuple[Problem, ...] = ()
    bound_pods: tuple[str, ...] = ()

    @property
    def actionable(self) -> bool:
        return self.ours and not any(p.severity is Severity.ERROR for p in self.problems)


# --- the model ---------------------------------------------------------------------------------


def is_ours(service: ServiceView) -> bool:
    return service.type == "LoadBalancer" and is_our_class(service.load_balancer_class)


def session_expire(service: ServiceView) -> int:
    """Session persistence seconds for the CLB: 0 (off), or the ClientIP timeout clamped."""
    if service.session_affinity != "ClientIP":
        return 0
    timeout = service.session_affinity_timeout
    if timeout is None:
        timeout = SESSION_DEFAULT
    return min(max(timeout, SESSION_MIN), SESSION_MAX)


def desired_for_service(
    service: ServiceView,
    *,
    endpoints: Sequence[EndpointView] = (),
    pods: Sequence[PodView] = (),
    nodes: Sequence[NodeView] = (),
    direct_routable_cidrs: Sequence[IPNetwork] = (),
    quotas: Quotas = DEFAULT_QUOTAS,
    cluster_version: KubeVersion | None = None,
) -> ServiceDesired:
    """The desired listeners and backends of ``service``; see the module docstring.

    ``endpoints`` are the endpoints of every EndpointSlice of the Service; ``pods`` the pods of
    its namespace they may refer to (others are ignored); ``nodes`` every node of the cluster.
    ``cluster_version``: the API server's; below 1.12 direct access is refused (None: unknown,
    taken as recent enough).
    """
    if not is_ours(service):
        return ServiceDesired(ours=False)
    notes, problems_ = parse_service_annotations(service.annotations)
    problems = list(problems_)
    mode = _effective_mode(service, notes, cluster_version)
    if mode is not _mode(service, notes):
        problems.append(
            Problem(
                "DirectAccessUnsupported",
                f"the cluster runs Kubernetes {cluster_version}, but direct access needs 1.12 "
                f"or later (pod readiness gates), so {service.namespace}/{service.name} is bound "
                f"through its nodes ({mode} mode) instead: upgrade the cluster to 1.12 or "
                f'later, or set {DIRECT_ACCESS} to "false"',
            )
        )
    intent = LoadBalancerIntent(
        existing_id=notes.existing_lb_id, internal_subnet_id=notes.internal_subnet_id
    )

    ports = _supported_ports(service, problems)
    if len(ports) > quotas.listeners_per_lb:
        dropped = ports[quotas.listeners_per_lb :]
        problems.append(
            Problem(
                "TooManyPorts",
                f"the Service has {len(ports)} ports but a CLB holds at most "
                f"{quotas.listeners_per_lb} listeners; ports "
                f"{', '.join(_port_label(p) for p in dropped)} are not exposed: split the "
                "Service or raise the CLB's listener quota",
            )
        )
        ports = ports[: quotas.listeners_per_lb]

    if not endpoints:
        problems.append(
            Problem(
                "NoEndpoints",
                f"Service {service.namespace}/{service.name} selects no pods: its listeners "
                "have no backends; check spec.selector against the pods' labels",
            )
        )

    listeners: list[Listener] = []
    eligible: list[_Eligible] = []
    if mode is BackendMode.DIRECT:
        eligible = _direct_endpoints(
            endpoints, pods=pods, cidrs=direct_routable_cidrs, problems=problems
        )
    for port in ports:
        if not endpoints:
            targets: list[tuple[bool, Target]] = []
        elif mode is BackendMode.DIRECT:
            targets = _direct_targets(port, eligible, problems=problems)
        else:
            targets = _node_targets(
                port, mode=mode, endpoints=endpoints, nodes=nodes, problems=problems
            )
        kept = _within_quota(port, targets, quota=quotas.targets_per_listener, problems=problems)
        listeners.append(
            Listener(
                protocol=ListenerProtocol(port.protocol),
                port=port.port,
                name=port.name or f"{port.protocol.lower()}-{port.port}",
                health_check=_health_check(service, port, mode=mode, problems=problems),
                session_expire=session_expire(service),
                targets=kept,
            )
        )
    bound = {t.ip for lst in listeners for t in lst.targets if t.kind is TargetKind.ENI}
    bound_pods = {name for name, ip in _pod_ips(eligible) if ip in bound}

    return ServiceDesired(
        ours=True,
        mode=mode,
        load_balancer=intent,
        listeners=tuple(listeners),
        problems=_unique(problems),
        bound_pods=tuple(sorted(bound_pods)),
    )


def direct_access_refused(cluster_version: KubeVersion | None) -> bool:
    """Whether the cluster is too old for direct access (None, unknown: it is not)."""
    return cluster_version is not None and not cluster_version.supports_direct_access


def effective_mode(service: ServiceView, cluster_version: KubeVersion | None) -> BackendMode:
    """The mode ``service`` is bound in: what its annotations and ``externalTrafficPolicy``
    ask for, except that direct access on a cluster older than 1.12 falls back to the nodes.
    The answer :func:`desired_for_service` acts on; the controller's node-event filter asks it
    too, so a direct Service bound through its nodes follows node changes."""
    notes, _ = parse_service_annotations(service.annotations)
    return _effective_mode(service, notes, cluster_version)


def _effective_mode(
    service: ServiceView, notes: ServiceAnnotations, cluster_version: KubeVersion | None
) -> BackendMode:
    if notes.direct and direct_access_refused(cluster_version):
        return _mode(service, replace(notes, direct=False))
    return _mode(service, notes)


def _mode(service: ServiceView, notes: ServiceAnnotations) -> BackendMode:
    if notes.direct:
        return BackendMode.DIRECT
    if service.external_traffic_policy == "Local":
        return BackendMode.LOCAL
    return BackendMode.NODEPORT


def _port_label(port: ServicePortView) -> str:
    return f"{port.name or port.port}/{port.protocol}"


def _supported_ports(service: ServiceView, problems: list[Problem]) -> list[ServicePortView]:
    kept: list[ServicePortView] = []
    for port in service.ports:
        if port.protocol in ("TCP", "UDP"):
            kept.append(port)
        else:
            problems.append(
                Problem(
                    "UnsupportedProtocol",
                    f"port {_port_label(port)}: a CLB layer-4 listener is TCP or UDP; that port "
                    "is not exposed: change its protocol or move it to another Service",
                )
            )
    return kept


@dataclass(frozen=True)
class _Eligible:
    endpoint: EndpointView
    pod_name: str
    ready: bool


def _direct_endpoints(
    endpoints: Iterable[EndpointView],
    *,
    pods: Sequence[PodView],
    cidrs: Sequence[IPNetwork],
    problems: list[Problem],
) -> list[_Eligible]:
    """Endpoints to bind in direct mode: the gate-deadlock rule, then routability."""
    by_name = {p.name: p for p in pods}
    eligible: list[_Eligible] = []
    unroutable: dict[str, str] = {}
    for ep in endpoints:
        pod = by_name.get(ep.pod_name)
        if ep.is_terminating or (pod is not None and pod.terminating):
            continue
        if not ep.is_ready and not (pod is not None and pod.containers_ready):
            continue
        if not directly_routable(pod, ep.address, cidrs):
            who = ep.pod_name or ep.address
            unroutable[who] = (
                f"{who} ({ep.address}) is not in ENI mode and outside --direct-routable-cidrs"
            )
            continue
        eligible.append(_Eligible(ep, ep.pod_name, ep.is_ready))
    if unroutable:
        problems.append(
            Problem(
                "PodNotRoutable",
                "not bound: "
                + "; ".join(unroutable[k] for k in sorted(unroutable))
                + ". Run these pods in VPC-CNI ENI mode (pod template annotation "
                "tke.cloud.tencent.com/networks: tke-route-eni) or add their CIDR to "
                "--direct-routable-cidrs",
            )
        )
    return eligible


def directly_routable(pod: PodView | None, address: str, cidrs: Sequence[IPNetwork]) -> bool:
    """Whether the CLB can reach ``address`` itself: the pod runs in VPC-CNI ENI mode, or the
    address is inside ``direct_routable_cidrs``. Pods that are not are never bound in direct
    mode (``PodNotRoutable``); the readiness-gate controller says so on the pod."""
    return (pod is not None and is_eni_pod(pod.annotations)) or _inside(address, cidrs)


def _inside(address: str, cidrs: Sequence[IPNetwork]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in cidrs)


def _pod_ips(eligible: Iterable[_Eligible]) -> Iterable[tuple[str, str]]:
    for e in eligible:
        if e.pod_name:
            yield e.pod_name, e.endpoint.address


def _direct_targets(
    port: ServicePortView,
    eligible: Sequence[_Eligible],
    *,
    problems: list[Problem],
) -> list[tuple[bool, Target]]:
    targets: list[tuple[bool, Target]] = []
    unresolved: set[str] = set()
    for e in eligible:
        number = _target_port(port, e.endpoint)
        if number is None:
            unresolved.add(e.pod_name or e.endpoint.address)
            continue
        targets.append((e.ready, Target(ip=e.endpoint.address, port=number, weight=WEIGHT)))
    if unresolved:
        problems.append(
            Problem(
                "UnresolvedTargetPort",
                f"port {_port_label(port)}: targetPort {port.target_port!r} names no container "
                f"port of {', '.join(sorted(unresolved))}; those pods are not bound on it: "
                "name the container port or use a number",
            )
        )
    return targets


def _target_port(port: ServicePortView, endpoint: EndpointView) -> int | None:
    """The pod's port for ``port``: from its slice's ports (by Service port name), else numeric."""
    for ep_port in endpoint.ports:
        if ep_port.name == port.name and ep_port.protocol == port.protocol:
            return ep_port.port if 1 <= ep_port.port <= 65535 else None
    if isinstance(port.target_port, int):
        return port.target_port or port.port
    if port.target_port.isdigit():
        return int(port.target_port)
    return None


def _node_targets(
    port: ServicePortView,
    *,
    mode: BackendMode,
    endpoints: Sequence[EndpointView],
    nodes: Sequence[NodeView],
    problems: list[Problem],
) -> list[tuple[bool, Target]]:
    if port.node_port is None:
        problems.append(
            Problem(
                "MissingNodePort",
                f"port {_port_label(port)} has no nodePort, so nodes cannot serve it: set "
                'spec.allocateLoadBalancerNodePorts to true or use direct-access: "true"',
            )
        )
        return []
    if mode is BackendMode.LOCAL:
        local = {ep.node_name for ep in endpoints if ep.is_ready and not ep.is_terminating} - {""}
        chosen = [n for n in nodes if n.name in local]
    else:
        chosen = [n for n in nodes if n.ready and n.schedulable]
    missing = sorted(n.name for n in chosen if not n.instance_id)
    if missing:
        problems.append(
            Problem(
                "NodeWithoutInstance",
                f"nodes {', '.join(missing)} have no cloud instance id (spec.providerID) and "
                "are not bound: check the nodes' cloud provider setup",
            )
        )
    return [
        (
            True,
            Target(
                ip=n.internal_ip,
                port=port.node_port,
                weight=WEIGHT,
                kind=TargetKind.NODE,
                instance_id=n.instance_id,
            ),
        )
        for n in chosen
        if n.instance_id
    ]


def _within_quota(
    port: ServicePortView,
    targets: list[tuple[bool, Target]],
    *,
    quota: int,
    problems: list[Problem],
) -> tuple[Target, ...]:
    """Unique targets, sorted; at most ``quota`` of them, ready ones kept first."""
    best: dict[tuple[TargetKind, str, int], tuple[bool, Target]] = {}
    for ready, target in targets:
        seen = best.get(target.key)
        if seen is None or (ready and not seen[0]):
            best[target.key] = (ready, target)
    ranked = sorted(best.values(), key=lambda rt: (not rt[0], rt[1].key))
    if len(ranked) > quota:
        problems.append(
            Problem(
                "TooManyBackends",
                f"port {_port_label(port)} has {len(ranked)} backends but a CLB listener binds at "
                f"most {quota}; {len(ranked) - quota} are left out: raise the CLB's target "
                "quota or use fewer replicas or nodes",
            )
        )
        ranked = ranked[:quota]
    return tuple(sorted(t for _, t in ranked))


def _health_check(
    service: ServiceView, port: ServicePortView, *, mode: BackendMode, problems: list[Problem]
) -> HealthCheck:
    if mode is BackendMode.DIRECT:
        return DIRECT_HEALTH
    if mode is BackendMode.LOCAL and port.protocol == "TCP":
        if service.health_check_node_port is None:
            problems.append(
                Problem(
                    "MissingHealthCheckNodePort",
                    "externalTrafficPolicy is Local but spec.healthCheckNodePort is unset; the "
                    "CLB checks the nodePort instead, so nodes without a local pod may get "
                    "traffic",
                )
            )
            return NODEPORT_HEALTH
        return local_health(service.health_check_node_port)
    return NODEPORT_HEALTH


def _unique(problems: Iterable[Problem]) -> tuple[Problem, ...]:
    return tuple(dict.fromkeys(problems))
