"""Pure: the desired CLB listeners, rules and backends of one networking.k8s.io/v1 Ingress.

Same shape as :mod:`directlb.model.service`: plain frozen input views (:class:`IngressView`, the
referenced Services as :class:`~directlb.model.service.ServiceView`, and the service model's
:class:`~directlb.model.service.EndpointView`, :class:`~directlb.model.service.PodView` and
:class:`~directlb.model.service.NodeView`), one output (:class:`IngressDesired`) built from
``directlb.plan.state`` values, problems as values.

Ownership (:func:`is_ours`): the annotation ``kubernetes.io/ingress.class``, when present, decides
alone (ours iff ``qcloud``); else ``spec.ingressClassName`` must name an IngressClass whose
controller is ``directlb.io/ingress-controller`` (the class we install is ``qcloud``; a class that
does not exist is not ours); else the Ingress is ours iff a *default* IngressClass
(``ingressclass.kubernetes.io/is-default-class: "true"``) is ours, as Kubernetes specifies.

The CLB: adopt ``kubernetes.io/ingress.existLbId`` or create one, INTERNAL with
``kubernetes.io/ingress.subnetId`` (:class:`~directlb.model.service.LoadBalancerIntent`).

Listeners: HTTP on 80, always; HTTPS on 443 when ``spec.tls`` is set and at least one of its
Secrets names a certificate. Every rule is served on both listeners (as Kubernetes ingress
controllers do: ``spec.tls`` chooses certificates, not routes), except that a host whose own TLS
entry's certificate is missing is left off HTTPS rather than served with a wrong certificate.

Certificates: the caller reads each TLS Secret's ``qcloud_cert_id`` and passes ``secret name ->
cert id``. A host takes the certificate of the first TLS entry listing it (exact name first, then
a ``*.`` wildcard); other hosts and the default domain take the *fallback*: the first entry
without hosts, else the first entry, that has a certificate. If every HTTPS host ends up with one
certificate it is the listener's; with several, the listener is SNI (``Listener.sni``):
``listener.certificate`` is None and each HTTPS rule carries its domain's (``Rule.certificate``;
:attr:`IngressDesired.domain_certificates` lists them per domain).

Rules: one per (host, URL), in spec order, then the default backend's:

* Domain = the host, lower-cased. An empty host means "any host", which a CLB serves on its
  *default domain*: the rule's domain is the ``default_domain`` argument, :data:`DEFAULT_DOMAIN`
  (``""``, a name no real host can have) unless the caller passes a real one. The CLB API needs
  a real domain, so the controller passes the CLB's VIP (as TKE does). The rules of the default
  domain are marked ``default_server``: the planner makes that domain the listener's default
  (``DefaultServer``), so a request whose Host matches no rule's domain lands there.
* URL from ``pathType`` (:func:`rule_url`): ``Exact`` → ``=/path`` (CLB exact match, the path
  kept byte for byte); ``Prefix`` → ``/path`` with trailing slashes removed (Kubernetes ignores
  them: ``/foo/`` and ``/foo`` are the same prefix; ``/`` stays ``/``). CLB prefix matching is by
  characters, so ``/foo`` also matches ``/foobar``, which Kubernetes' element-wise match does not;
  a known, documented widening. ``ImplementationSpecific`` → the path as given (CLB syntax: a
  plain prefix, ``=``, ``~``, ``~*``), ``/`` when empty. Any other type: ``UnsupportedPathType``,
  that path skipped. Two paths that map to one (domain, URL): the first wins; if their backends
  differ, ``DuplicateRule``.
* ``defaultBackend`` → a rule (default domain, ``/``), plus (host, ``/``) on each host that has
  rules but no ``/`` rule of its own, so that a request matching no path of a known host still
  reaches the default backend as Kubernetes specifies. Explicit rules win over these.
* More rules than ``rules_per_listener`` (50) on a listener: the first ones in that order are
  kept, the rest dropped with ``TooManyRules``.

Backends (weight 10): the referenced Service port is resolved by number or name
(``MissingBackendService``, ``MissingBackendPort``, ``UnsupportedBackend`` for resource backends:
the rule stays, with no targets, so its traffic gets a 503 instead of falling through to a
shorter prefix). NodePort mode: the port's ``nodePort`` on every Ready schedulable node
(``MissingNodePort`` if it has none). Direct mode (``ingress.cloud.tencent.com/direct-access:
"true"``): the pod IPs and target ports of the Service's endpoints. Both are computed by the
service model itself (:func:`~directlb.model.service.desired_for_service` on a one-port
projection of the referenced Service), so the gate-deadlock rule, ENI/CIDR routability,
named-target-port resolution and the ready-first target quota are the same code, not a copy.

Rule health checks: HTTP ``/`` on the target's own port (the pod port in direct mode, the
nodePort otherwise); quick (5 s / 2 s / 2 / 3) in direct mode, where readiness gates wait on it,
the CLB's defaults otherwise.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from directlb.model.annotations import (
    DIRECT_ACCESS,
    EXISTING_LB_ID,
    INTERNAL_SUBNET_ID,
    Annotations,
    annotation,
)
from directlb.model.ingress_annotations import (
    DEFAULT_CLASS_ANNOTATION,
    INGRESS_CLASS,
    INGRESS_CLASS_ANNOTATION,
    INGRESS_CONTROLLER,
    INGRESS_DIRECT_ACCESS,
    INGRESS_EXISTING_LB_ID,
    INGRESS_SUBNET_ID,
    TLS_CERT_KEY,
    parse_ingress_annotations,
)
from directlb.model.problems import Problem, Severity
from directlb.model.service import (
    BackendMode,
    EndpointView,
    KubeVersion,
    LoadBalancerIntent,
    NodeView,
    PodView,
    Quotas,
    ServicePortView,
    ServiceView,
    desired_for_service,
    direct_access_refused,
    load_balancer_problem,
)
from directlb.plan.state import (
    Certificate,
    HealthCheck,
    Listener,
    ListenerProtocol,
    Rule,
    RuleKey,
    Target,
)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_DOMAIN = ""  # "the CLB's default domain": what an Ingress rule without a host uses
HTTP_PORT = 80
HTTPS_PORT = 443
PATH_EXACT = "Exact"
PATH_PREFIX = "Prefix"
PATH_IMPLEMENTATION_SPECIFIC = "ImplementationSpecific"

DIRECT_RULE_HEALTH = HealthCheck(
    enabled=True,
    check_type="HTTP",
    http_path="/",
    interval=5,
    timeout=2,
    healthy_threshold=2,
    unhealthy_threshold=3,
)
NODEPORT_RULE_HEALTH = HealthCheck(enabled=True, check_type="HTTP", http_path="/")


# --- inputs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IngressBackendView:
    """``backend.service`` (name, and port number or name), or a ``backend.resource``."""

    service_name: str = ""
    port_number: int | None = None
    port_name: str = ""
    resource: str = ""  # "kind/name" of a resource backend; unsupported

    def __str__(self) -> str:
        if self.resource:
            return f"resource {self.resource}"
        port = self.port_number if self.port_number is not None else self.port_name
        return f"{self.service_name}:{port}"


@dataclass(frozen=True)
class IngressPathView:
    backend: IngressBackendView
    path: str = ""
    path_type: str = PATH_IMPLEMENTATION_SPECIFIC


@dataclass(frozen=True)
class IngressRuleView:
    host: str = ""
    paths: tuple[IngressPathView, ...] = ()


@dataclass(frozen=True)
class IngressTLSView:
    hosts: tuple[str, ...] = ()
    secret_name: str = ""


@dataclass(frozen=True)
class IngressClassView:
    name: str
    controller: str
    annotations: Annotations = ()

    @property
    def is_default(self) -> bool:
        return annotation(self.annotations, DEFAULT_CLASS_ANNOTATION) == "true"


@dataclass(frozen=True)
class IngressView:
    namespace: str
    name: str
    uid: str = ""
    ingress_class_name: str | None = None
    annotations: Annotations = ()
    rules: tuple[IngressRuleView, ...] = ()
    default_backend: IngressBackendView | None = None
    tls: tuple[IngressTLSView, ...] = ()


@dataclass(frozen=True)
class IngressQuotas:
    """Tencent's default quotas: 50 rules per layer-7 listener, 100 targets per rule."""

    rules_per_listener: int = 50
    targets_per_rule: int = 100

    def __post_init__(self) -> None:
        if self.rules_per_listener < 1 or self.targets_per_rule < 1:
            raise ValueError(f"quotas must be at least 1: {self}")


DEFAULT_INGRESS_QUOTAS = IngressQuotas()


# --- outputs -----------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class DomainCertificate:
    """On an SNI listener, the certificate the CLB presents for ``domain``."""

    domain: str
    certificate: Certificate


@dataclass(frozen=True)
class IngressDesired:
    """What one Ingress wants of its CLB; the fields mean what they mean on ``ServiceDesired``.

    ``domain_certificates`` is set only when the HTTPS listener is SNI (several certificates).
    """

    ours: bool
    mode: BackendMode | None = None
    load_balancer: LoadBalancerIntent | None = None
    listeners: tuple[Listener, ...] = ()
    domain_certificates: tuple[DomainCertificate, ...] = ()
    problems: tuple[Problem, ...] = ()
    bound_pods: tuple[str, ...] = ()

    @property
    def actionable(self) -> bool:
        return self.ours and not any(p.severity is Severity.ERROR for p in self.problems)

    @property
    def sni(self) -> bool:
        return bool(self.domain_certificates)


# --- the model ---------------------------------------------------------------------------------


def load_balancer_problem_of_ingress(
    intent: LoadBalancerIntent, *, code: str, message: str
) -> Problem | None:
    """:func:`~directlb.model.service.load_balancer_problem`, naming the Ingress annotations."""
    problem = load_balancer_problem(intent, code=code, message=message)
    if problem is None:
        return None
    text = problem.message.replace(EXISTING_LB_ID, INGRESS_EXISTING_LB_ID).replace(
        INTERNAL_SUBNET_ID, INGRESS_SUBNET_ID
    )
    return replace(problem, message=text)


def is_ours(ingress: IngressView, classes: Sequence[IngressClassView] = ()) -> bool:
    """Whether we serve ``ingress``; see the module docstring for the precedence."""
    legacy = annotation(ingress.annotations, INGRESS_CLASS_ANNOTATION)
    if legacy is not None:
        return legacy == INGRESS_CLASS
    if ingress.ingress_class_name is not None:
        return any(
            c.name == ingress.ingress_class_name and c.controller == INGRESS_CONTROLLER
            for c in classes
        )
    return any(c.is_default and c.controller == INGRESS_CONTROLLER for c in classes)


def rule_url(path: str, path_type: str) -> str | None:
    """The CLB rule URL for an Ingress path, or None if the path type is not supported."""
    if path_type == PATH_EXACT:
        return "=" + (path or "/")
    if path_type == PATH_PREFIX:
        return (path or "/").rstrip("/") or "/"
    if path_type == PATH_IMPLEMENTATION_SPECIFIC:
        return path or "/"
    return None


def desired_for_ingress(
    ingress: IngressView,
    *,
    classes: Sequence[IngressClassView] = (),
    services: Sequence[ServiceView] = (),
    endpoints: Mapping[str, Sequence[EndpointView]] | None = None,
    pods: Sequence[PodView] = (),
    nodes: Sequence[NodeView] = (),
    secrets: Mapping[str, str] | None = None,
    direct_routable_cidrs: Sequence[IPNetwork] = (),
    quotas: IngressQuotas = DEFAULT_INGRESS_QUOTAS,
    cluster_version: KubeVersion | None = None,
    default_domain: str = DEFAULT_DOMAIN,
) -> IngressDesired:
    """The desired listeners, rules and backends of ``ingress``; see the module docstring.

    ``services`` are the Services of the Ingress's namespace (others may be there too);
    ``endpoints`` the endpoints of every EndpointSlice per Service name; ``pods`` the pods of the
    namespace; ``nodes`` every node; ``secrets`` the TLS Secrets of the namespace that carry a
    ``qcloud_cert_id``, by name, as that id.
    """
    if not is_ours(ingress, classes):
        return IngressDesired(ours=False)
    notes, parse_problems = parse_ingress_annotations(ingress.annotations)
    problems = list(parse_problems)
    mode = BackendMode.DIRECT if notes.direct else BackendMode.NODEPORT
    if mode is BackendMode.DIRECT and direct_access_refused(cluster_version):
        # As for a Service: refuse direct access on a cluster without readiness gates, and
        # keep the Ingress working through its nodes.
        mode = BackendMode.NODEPORT
        problems.append(
            Problem(
                "DirectAccessUnsupported",
                f"the cluster runs Kubernetes {cluster_version}, but direct access needs 1.12 "
                f"or later (pod readiness gates), so Ingress {ingress.namespace}/{ingress.name} "
                "is bound through its nodes (NodePort mode) instead: upgrade the cluster to "
                f'1.12 or later, or set {INGRESS_DIRECT_ACCESS} to "false"',
            )
        )
    intent = LoadBalancerIntent(
        existing_id=notes.existing_lb_id, internal_subnet_id=notes.internal_subnet_id
    )

    routes = _routes(ingress, default_domain=default_domain, problems=problems)
    resolver = _BackendResolver(
        ingress=ingress,
        mode=mode,
        services={s.name: s for s in services},
        endpoints=endpoints or {},
        pods=pods,
        nodes=nodes,
        cidrs=direct_routable_cidrs,
        targets_per_rule=quotas.targets_per_rule,
        problems=problems,
    )
    health = DIRECT_RULE_HEALTH if mode is BackendMode.DIRECT else NODEPORT_RULE_HEALTH
    rules = [
        (
            route.backend,
            Rule(
                domain=route.key.domain,
                url=route.key.url,
                health_check=health,
                targets=resolver.targets(route.backend),
                default_server=route.key.domain == default_domain.lower(),
            ),
        )
        for route in routes
    ]

    listeners: list[Listener] = []
    used: list[IngressBackendView] = []
    http = _within_quota(ListenerProtocol.HTTP, rules, quotas=quotas, problems=problems)
    listeners.append(_listener(ListenerProtocol.HTTP, HTTP_PORT, http))
    used.extend(b for b, _ in http)

    domain_certs: tuple[DomainCertificate, ...] = ()
    if ingress.tls:
        certs = _Certificates(ingress, secrets or {}, problems=problems)
        if certs.any:
            served = [
                (b, r)
                for b, r in rules
                if certs.for_domain(r.domain, default_domain=default_domain) is not None
            ]
            https = _within_quota(ListenerProtocol.HTTPS, served, quotas=quotas, problems=problems)
            used.extend(b for b, _ in https)
            by_domain: dict[str, Certificate] = {}
            for _, rule in https:
                cert = certs.for_domain(rule.domain, default_domain=default_domain)
                assert cert is not None  # filtered above
                by_domain[rule.domain] = cert
            distinct = set(by_domain.values())
            https_listener = _listener(ListenerProtocol.HTTPS, HTTPS_PORT, https)
            if len(distinct) > 1:
                domain_certs = tuple(sorted(DomainCertificate(d, c) for d, c in by_domain.items()))
                https_listener = replace(
                    https_listener,
                    sni=True,
                    rules=tuple(
                        replace(r, certificate=by_domain[r.domain]) for r in https_listener.rules
                    ),
                )
            else:
                listener_cert = next(iter(distinct), None) or certs.fallback
                https_listener = replace(https_listener, certificate=listener_cert)
            listeners.append(https_listener)

    bound = {pod for backend in dict.fromkeys(used) for pod in resolver.bound_pods(backend)}
    return IngressDesired(
        ours=True,
        mode=mode,
        load_balancer=intent,
        listeners=tuple(listeners),
        domain_certificates=domain_certs,
        problems=tuple(dict.fromkeys(problems)),
        bound_pods=tuple(sorted(bound)),
    )


@dataclass(frozen=True)
class _Route:
    key: RuleKey
    backend: IngressBackendView


def _routes(ingress: IngressView, *, default_domain: str, problems: list[Problem]) -> list[_Route]:
    """(domain, URL) -> backend, in spec order, first one winning; then the default backend's."""
    found: dict[RuleKey, _Route] = {}
    for rule in ingress.rules:
        domain = rule.host or default_domain
        for path in rule.paths:
            url = rule_url(path.path, path.path_type)
            if url is None:
                problems.append(
                    Problem(
                        "UnsupportedPathType",
                        f'host "{rule.host}" path "{path.path}": pathType "{path.path_type}" is '
                        "not Exact, Prefix or ImplementationSpecific; that path is not served",
                    )
                )
                continue
            route = _Route(RuleKey(domain, url), path.backend)
            seen = found.get(route.key)
            if seen is None:
                found[route.key] = route
            elif seen.backend != route.backend:
                problems.append(
                    Problem(
                        "DuplicateRule",
                        f'host "{rule.host}" path "{path.path}" maps to the CLB rule '
                        f"{route.key.domain or '(default domain)'}{route.key.url}, already "
                        f"routed to {seen.backend}; {route.backend} is not served there: remove "
                        "one of the two paths",
                    )
                )
    if ingress.default_backend is not None:
        domains = [default_domain, *(k.domain for k in found)]
        for domain in dict.fromkeys(domains):
            key = RuleKey(domain, "/")
            if key not in found:
                found[key] = _Route(key, ingress.default_backend)
    return list(found.values())


class _BackendResolver:
    """Targets of each referenced Service port, computed once per backend by the service model."""

    def __init__(
        self,
        *,
        ingress: IngressView,
        mode: BackendMode,
        services: Mapping[str, ServiceView],
        endpoints: Mapping[str, Sequence[EndpointView]],
        pods: Sequence[PodView],
        nodes: Sequence[NodeView],
        cidrs: Sequence[IPNetwork],
        targets_per_rule: int,
        problems: list[Problem],
    ) -> None:
        self._ingress = ingress
        self._mode = mode
        self._services = services
        self._endpoints = endpoints
        self._pods = pods
        self._nodes = nodes
        self._cidrs = cidrs
        self._quotas = Quotas(listeners_per_lb=1, targets_per_listener=targets_per_rule)
        self._problems = problems
        self._done: dict[IngressBackendView, tuple[tuple[Target, ...], tuple[str, ...]]] = {}

    def targets(self, backend: IngressBackendView) -> tuple[Target, ...]:
        return self._resolve(backend)[0]

    def bound_pods(self, backend: IngressBackendView) -> tuple[str, ...]:
        return self._resolve(backend)[1]

    def _resolve(self, backend: IngressBackendView) -> tuple[tuple[Target, ...], tuple[str, ...]]:
        if backend not in self._done:
            self._done[backend] = self._compute(backend)
        return self._done[backend]

    def _problem(self, reason: str, message: str) -> tuple[tuple[Target, ...], tuple[str, ...]]:
        self._problems.append(Problem(reason, message))
        return (), ()

    def _compute(self, backend: IngressBackendView) -> tuple[tuple[Target, ...], tuple[str, ...]]:
        where = f"{self._ingress.namespace}/{self._ingress.name}"
        if backend.resource or not backend.service_name:
            return self._problem(
                "UnsupportedBackend",
                f"Ingress {where}: backend {backend} is not a Service; its rules have no "
                "targets: route to a Service instead",
            )
        service = self._services.get(backend.service_name)
        if service is None:
            return self._problem(
                "MissingBackendService",
                f"Ingress {where}: Service {self._ingress.namespace}/{backend.service_name} does "
                "not exist; the rules routing to it have no targets: create it or fix the name",
            )
        port = _find_port(service, backend)
        if port is None:
            return self._problem(
                "MissingBackendPort",
                f"Ingress {where}: Service {backend.service_name} has no port "
                f"{backend.port_number if backend.port_number is not None else backend.port_name!r}"
                "; the rules routing to it have no targets: fix the port or the Service",
            )
        if self._mode is BackendMode.NODEPORT and port.node_port is None:
            return self._problem(
                "MissingNodePort",
                f"Ingress {where}: port {backend} has no nodePort (the Service is "
                f"{service.type}), so nodes cannot serve it: make the Service type NodePort, or "
                'set ingress.cloud.tencent.com/direct-access: "true"',
            )
        # The service model on a one-port, class-less LoadBalancer projection of the Service:
        # exactly its rules for direct and NodePort (Cluster) backends.
        projection = replace(
            service,
            type="LoadBalancer",
            load_balancer_class=None,
            annotations=((DIRECT_ACCESS, "true"),) if self._mode is BackendMode.DIRECT else (),
            ports=(port,),
            external_traffic_policy="Cluster",
            session_affinity="None",
        )
        result = desired_for_service(
            projection,
            endpoints=self._endpoints.get(service.name, ()),
            pods=self._pods,
            nodes=self._nodes,
            direct_routable_cidrs=self._cidrs,
            quotas=self._quotas,
        )
        for p in result.problems:
            self._problems.append(
                Problem(p.reason, f"Ingress {where}, backend {backend}: {p.message}", p.severity)
            )
        targets = result.listeners[0].targets if result.listeners else ()
        return targets, result.bound_pods


def _find_port(service: ServiceView, backend: IngressBackendView) -> ServicePortView | None:
    for port in service.ports:
        if port.protocol != "TCP":
            continue
        if backend.port_number is not None:
            if port.port == backend.port_number:
                return port
        elif backend.port_name and port.name == backend.port_name:
            return port
    return None


def _within_quota(
    protocol: ListenerProtocol,
    rules: list[tuple[IngressBackendView, Rule]],
    *,
    quotas: IngressQuotas,
    problems: list[Problem],
) -> list[tuple[IngressBackendView, Rule]]:
    quota = quotas.rules_per_listener
    if len(rules) <= quota:
        return rules
    dropped = rules[quota:]
    shown = ", ".join(str(r.key) or "/" for _, r in dropped[:5])
    more = f" and {len(dropped) - 5} more" if len(dropped) > 5 else ""
    problems.append(
        Problem(
            "TooManyRules",
            f"the {protocol} listener would have {len(rules)} rules but a CLB listener holds at "
            f"most {quota} (rules per listener quota); {shown}{more} are not served: split the "
            "Ingress or raise the CLB's rule quota",
        )
    )
    return rules[:quota]


def _listener(
    protocol: ListenerProtocol, port: int, rules: Iterable[tuple[IngressBackendView, Rule]]
) -> Listener:
    return Listener(
        protocol=protocol,
        port=port,
        name=f"{protocol.lower()}-{port}",
        rules=tuple(r for _, r in rules),
    )


class _Certificates:
    """The certificate of each domain on the HTTPS listener (module docstring, "Certificates")."""

    def __init__(
        self, ingress: IngressView, secrets: Mapping[str, str], *, problems: list[Problem]
    ) -> None:
        self._entries: list[tuple[IngressTLSView, Certificate | None]] = []
        for entry in ingress.tls:
            cert_id = secrets.get(entry.secret_name, "").strip() if entry.secret_name else ""
            cert = Certificate(cert_id) if cert_id else None
            if cert is None:
                hosts = ", ".join(entry.hosts) or "every host without its own TLS entry"
                problems.append(
                    Problem(
                        "MissingCertificate",
                        f'TLS Secret "{entry.secret_name}" of Ingress {ingress.namespace}/'
                        f"{ingress.name} is missing or has no {TLS_CERT_KEY} key; {hosts} not "
                        f"served over HTTPS: create the Secret with {TLS_CERT_KEY} set to the "
                        "CLB certificate id (or fix spec.tls[].secretName)",
                    )
                )
            self._entries.append((entry, cert))
        hostless = [c for e, c in self._entries if not e.hosts and c is not None]
        anyone = [c for _, c in self._entries if c is not None]
        self.fallback: Certificate | None = (hostless or anyone)[0] if anyone else None

    @property
    def any(self) -> bool:
        return self.fallback is not None

    def for_domain(self, domain: str, *, default_domain: str) -> Certificate | None:
        if domain and domain != default_domain:
            for matches in (_exact, _wildcard):
                for entry, cert in self._entries:
                    if any(matches(h.lower(), domain) for h in entry.hosts):
                        return cert
        return self.fallback


def _exact(pattern: str, domain: str) -> bool:
    return pattern == domain


def _wildcard(pattern: str, domain: str) -> bool:
    if not pattern.startswith("*."):
        return False
    head, _, tail = domain.partition(".")
    return bool(head) and tail == pattern[2:]
