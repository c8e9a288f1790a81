"""The Ingress model: ownership, annotations, pathType mapping, TLS/SNI, backends, quotas (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from directlb.model.annotations import POD_NETWORKS
from directlb.model.ingress import (
    DEFAULT_DOMAIN,
    DIRECT_RULE_HEALTH,
    NODEPORT_RULE_HEALTH,
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
    rule_url,
)
from directlb.model.ingress_annotations import (
    DEFAULT_CLASS_ANNOTATION,
    INGRESS_CLASS_ANNOTATION,
    INGRESS_CONTROLLER,
    INGRESS_DIRECT_ACCESS,
    INGRESS_EXISTING_LB_ID,
    INGRESS_SUBNET_ID,
)
from directlb.model.problems import Severity
from directlb.model.service import (
    BackendMode,
    EndpointPortView,
    EndpointView,
    KubeVersion,
    NodeView,
    PodView,
    ServicePortView,
    ServiceView,
)
from directlb.plan.state import Certificate, Listener, ListenerProtocol, Rule, Target, TargetKind

QCLOUD = IngressClassView(name="qcloud", controller=INGRESS_CONTROLLER)
OTHER = IngressClassView(name="nginx", controller="k8s.io/ingress-nginx")
WEB = IngressBackendView(service_name="web", port_number=80)
API = IngressBackendView(service_name="api", port_name="http")
WEB_SVC = ServiceView(
    namespace="ns",
    name="web",
    type="NodePort",
    ports=(ServicePortView(port=80, name="http", target_port=8080, node_port=30080),),
)
API_SVC = ServiceView(
    namespace="ns",
    name="api",
    type="ClusterIP",
    ports=(ServicePortView(port=8000, name="http", target_port="web"),),
)
NODES = (
    NodeView(name="n1", internal_ip="10.0.0.1", instance_id="ins-1"),
    NodeView(name="n2", internal_ip="10.0.0.2", instance_id="ins-2"),
    NodeView(name="n3", internal_ip="10.0.0.3", instance_id="ins-3", ready=False),
    NodeView(name="n4", internal_ip="10.0.0.4", instance_id="ins-4", schedulable=False),
)
ENI = ((POD_NETWORKS, "tke-route-eni"),)
DIRECT = ((INGRESS_DIRECT_ACCESS, "true"),)
PODS = (
    PodView(name="p1", ip="172.16.0.1", annotations=ENI, containers_ready=True),
    PodView(name="p2", ip="172.16.0.2", annotations=ENI, containers_ready=True),  # gated
    PodView(name="p3", ip="172.16.0.3", annotations=ENI, containers_ready=False),  # starting
    PodView(name="p4", ip="172.16.0.4", annotations=ENI, terminating=True),
)
EPS = (
    EndpointView(address="172.16.0.1", pod_name="p1", ports=(EndpointPortView("http", 8080),)),
    EndpointView(
        address="172.16.0.2", pod_name="p2", ready=False, ports=(EndpointPortView("http", 8080),)
    ),
    EndpointView(
        address="172.16.0.3", pod_name="p3", ready=False, ports=(EndpointPortView("http", 8080),)
    ),
    EndpointView(
        address="172.16.0.4",
        pod_name="p4",
        ready=False,
        terminating=True,
        ports=(EndpointPortView("http", 8080),),
    ),
)


def ingress(
    *,
    rules: tuple[IngressRuleView, ...] = (),
    annotations: tuple[tuple[str, str], ...] = (),
    default_backend: IngressBackendView | None = None,
    tls: tuple[IngressTLSView, ...] = (),
    class_name: str | None = "qcloud",
) -> IngressView:
    return IngressView(
        namespace="ns",
        name="ing",
        ingress_class_name=class_name,
        annotations=annotations,
        rules=rules,
        default_backend=default_backend,
        tls=tls,
    )


def host(name: str, *paths: tuple[str, str], backend: IngressBackendView = WEB) -> IngressRuleView:
    return IngressRuleView(
        host=name, paths=tuple(IngressPathView(backend, path=p, path_type=t) for p, t in paths)
    )


def build(ing: IngressView, **kwargs: object) -> IngressDesired:
    args: dict[str, object] = {
        "classes": (QCLOUD, OTHER),
        "services": (WEB_SVC, API_SVC),
        "endpoints": {"web": EPS, "api": EPS},
        "pods": PODS,
        "nodes": NODES,
    }
    args.update(kwargs)
    return desired_for_ingress(ing, **args)  # type: ignore[arg-type]


def listener(desired: IngressDesired, protocol: ListenerProtocol) -> Listener:
    (found,) = [lst for lst in desired.listeners if lst.protocol is protocol]
    return found


def keys(lst: Listener) -> list[tuple[str, str]]:
    return [(r.domain, r.url) for r in lst.rules]


def reasons(desired: IngressDesired) -> set[str]:
    return {p.reason for p in desired.problems}


# --- ownership ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("class_name", "annotations", "classes", "ours"),
    [
        ("qcloud", (), (QCLOUD,), True),
        ("qcloud", (), (), False),  # the IngressClass does not exist
        ("nginx", (), (QCLOUD, OTHER), False),
        ("mine", (), (IngressClassView("mine", INGRESS_CONTROLLER),), True),
        (None, ((INGRESS_CLASS_ANNOTATION, "qcloud"),), (), True),
        (None, ((INGRESS_CLASS_ANNOTATION, "nginx"),), (QCLOUD,), False),
        ("qcloud", ((INGRESS_CLASS_ANNOTATION, "nginx"),), (QCLOUD,), False),  # annotation wins
        (None, (), (QCLOUD,), False),  # no class, no default class
        (
            None,
            (),
            (
                IngressClassView(
                    "qcloud", INGRESS_CONTROLLER, annotations=((DEFAULT_CLASS_ANNOTATION, "true"),)
                ),
            ),
            True,
        ),
        (
            None,
            (),
            (
                IngressClassView(
                    "nginx", "k8s.io/ingress-nginx", ((DEFAULT_CLASS_ANNOTATION, "true"),)
                ),
            ),
            False,
        ),
    ],
)
def test_ownership(
    class_name: str | None,
    annotations: tuple[tuple[str, str], ...],
    classes: tuple[IngressClassView, ...],
    ours: bool,
) -> None:
    ing = ingress(class_name=class_name, annotations=annotations, rules=(host("a.com"),))
    assert is_ours(ing, classes) is ours
    desired = build(ing, classes=classes)
    assert desired.ours is ours
    if not ours:
        assert desired == IngressDesired(ours=False)


# --- annotations -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("annotations", "existing", "subnet", "mode", "reason"),
    [
        ((), "", "", BackendMode.NODEPORT, None),
        (DIRECT, "", "", BackendMode.DIRECT, None),
        (((INGRESS_DIRECT_ACCESS, "false"),), "", "", BackendMode.NODEPORT, None),
        (((INGRESS_DIRECT_ACCESS, "yes"),), "", "", BackendMode.NODEPORT, "InvalidDirectAccess"),
        (((INGRESS_EXISTING_LB_ID, "lb-abc123"),), "lb-abc123", "", BackendMode.NODEPORT, None),
        (
            ((INGRESS_EXISTING_LB_ID, "nope"),),
            "",
            "",
            BackendMode.NODEPORT,
            "InvalidExistingLoadBalancerId",
        ),
        (((INGRESS_SUBNET_ID, "subnet-1a"),), "", "subnet-1a", BackendMode.NODEPORT, None),
        (((INGRESS_SUBNET_ID, "x"),), "", "", BackendMode.NODEPORT, "InvalidInternalSubnet"),
        (  # adopting ignores the subnet
            ((INGRESS_EXISTING_LB_ID, "lb-1"), (INGRESS_SUBNET_ID, "x")),
            "lb-1",
            "",
            BackendMode.NODEPORT,
            None,
        ),
    ],
)
def test_annotations(
    annotations: tuple[tuple[str, str], ...],
    existing: str,
    subnet: str,
    mode: BackendMode,
    reason: str | None,
) -> None:
    desired = build(ingress(annotations=annotations, rules=(host("a.com", ("/", "Prefix")),)))
    assert desired.mode is mode
    assert desired.load_balancer is not None
    assert desired.load_balancer.existing_id == existing
    assert desired.load_balancer.adopted is bool(existing)
    assert desired.load_balancer.internal_subnet_id == subnet
    assert desired.load_balancer.internal is bool(subnet)
    if reason is None:
        assert desired.problems == ()
        assert desired.actionable
    else:
        assert reasons(desired) == {reason}
        assert desired.problems[0].severity is Severity.ERROR
        assert not desired.actionable


def test_direct_access_unsupported_falls_back_to_nodes() -> None:
    desired = build(
        ingress(annotations=DIRECT, rules=(host("a.com", ("/", "Prefix")),)),
        cluster_version=KubeVersion(1, 11, "v1.11.5"),
    )
    assert "DirectAccessUnsupported" in reasons(desired)
    assert desired.actionable and desired.mode is BackendMode.NODEPORT
    [rule] = listener(desired, ListenerProtocol.HTTP).rules
    assert {t.instance_id for t in rule.targets} == {"ins-1", "ins-2"}
    recent = build(
        ingress(annotations=DIRECT, rules=(host("a.com", ("/", "Prefix")),)),
        cluster_version=KubeVersion(1, 12),
    )
    assert recent.mode is BackendMode.DIRECT


# --- paths -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "path_type", "url"),
    [
        ("/foo", "Exact", "=/foo"),
        ("/foo/", "Exact", "=/foo/"),
        ("/", "Exact", "=/"),
        ("/foo", "Prefix", "/foo"),
        ("/foo/", "Prefix", "/foo"),
        ("/foo//", "Prefix", "/foo"),
        ("/", "Prefix", "/"),
        ("", "Prefix", "/"),
        ("/foo/", "ImplementationSpecific", "/foo/"),
        ("~* \\.jpg$", "ImplementationSpecific", "~* \\.jpg$"),
        ("", "ImplementationSpecific", "/"),
        ("/foo", "Regex", None),
    ],
)
def test_rule_url(path: str, path_type: str, url: str | None) -> None:
    assert rule_url(path, path_type) == url


def test_rules_per_host_and_path_and_unsupported_path_type() -> None:
    desired = build(
        ingress(
            rules=(
                host("A.example.com", ("/a", "Prefix"), ("/exact", "Exact"), ("/x", "Regex")),
                host("", ("/any", "ImplementationSpecific"), backend=API),
            )
        )
    )
    http = listener(desired, ListenerProtocol.HTTP)
    assert (http.port, http.certificate) == (80, None)
    assert keys(http) == [("a.example.com", "/a"), ("a.example.com", "=/exact"), ("", "/any")]
    assert reasons(desired) == {"UnsupportedPathType", "MissingNodePort"}  # API is ClusterIP
    assert desired.actionable
    assert [lst.protocol for lst in desired.listeners] == [ListenerProtocol.HTTP]


def test_empty_host_uses_the_default_domain_or_the_given_one() -> None:
    ing = ingress(rules=(host("", ("/", "Prefix")),))
    assert keys(listener(build(ing), ListenerProtocol.HTTP)) == [(DEFAULT_DOMAIN, "/")]
    given_ = build(ing, default_domain="1.2.3.4")
    assert keys(listener(given_, ListenerProtocol.HTTP)) == [("1.2.3.4", "/")]


def test_rules_of_the_default_domain_are_the_default_server() -> None:
    ing = ingress(
        rules=(host("a.com", ("/", "Prefix")), host("", ("/", "Prefix"), ("/x", "Prefix")))
    )
    http = listener(build(ing, default_domain="1.2.3.4"), ListenerProtocol.HTTP)
    assert [(r.domain, r.default_server) for r in http.rules] == [
        ("a.com", False),
        ("1.2.3.4", True),
        ("1.2.3.4", True),
    ]
    assert http.default_domain == "1.2.3.4"
    only_hosts = build(ingress(rules=(host("a.com", ("/", "Prefix")),)), default_domain="1.2.3.4")
    assert listener(only_hosts, ListenerProtocol.HTTP).default_domain is None


def test_duplicate_rules_first_wins() -> None:
    desired = build(
        ingress(
            rules=(
                host("a.com", ("/foo", "Prefix"), ("/foo/", "Prefix")),  # same backend: silent
                host("a.com", ("/foo", "ImplementationSpecific"), backend=API),
            )
        )
    )
    assert keys(listener(desired, ListenerProtocol.HTTP)) == [("a.com", "/foo")]
    assert reasons(desired) == {"DuplicateRule"}


# --- default backend ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        ((), [("", "/")]),
        (
            (host("a.com", ("/api", "Prefix"), backend=API),),
            [("a.com", "/api"), ("", "/"), ("a.com", "/")],
        ),
        ((host("a.com", ("/", "Prefix"), backend=API),), [("a.com", "/"), ("", "/")]),
        ((host("", ("/", "Prefix"), backend=API),), [("", "/")]),
    ],
)
def test_default_backend(
    rules: tuple[IngressRuleView, ...], expected: list[tuple[str, str]]
) -> None:
    desired = build(ingress(rules=rules, default_backend=WEB))
    http = listener(desired, ListenerProtocol.HTTP)
    assert keys(http) == expected
    if rules:
        # explicit rules keep their own backend (API has no nodePort: no targets, a problem)
        assert http.rules[0].targets == ()
    else:
        assert {t.instance_id for t in http.rules[0].targets} == {"ins-1", "ins-2"}


# --- TLS ---------------------------------------------------------------------------------------


def test_tls_one_certificate() -> None:
    desired = build(
        ingress(
            rules=(host("a.com", ("/", "Prefix")), host("b.com", ("/", "Prefix"))),
            tls=(IngressTLSView(hosts=("a.com", "b.com"), secret_name="tls"),),
        ),
        secrets={"tls": "cert-1"},
    )
    https = listener(desired, ListenerProtocol.HTTPS)
    assert https.port == 443
    assert https.certificate == Certificate("cert-1")
    assert keys(https) == keys(listener(desired, ListenerProtocol.HTTP))
    assert not desired.sni and desired.problems == ()


def test_tls_several_certificates_is_sni() -> None:
    desired = build(
        ingress(
            rules=(
                host("a.com", ("/", "Prefix")),
                host("x.b.com", ("/", "Prefix")),
                host("c.com", ("/", "Prefix")),
                host("", ("/", "Prefix")),
            ),
            tls=(
                IngressTLSView(hosts=("a.com",), secret_name="a"),
                IngressTLSView(hosts=("*.b.com",), secret_name="b"),
                IngressTLSView(secret_name="default"),
            ),
        ),
        secrets={"a": "cert-a", "b": "cert-b", "default": "cert-d"},
    )
    https = listener(desired, ListenerProtocol.HTTPS)
    assert https.certificate is None
    assert desired.sni and https.sni
    assert {(r.domain, r.certificate.cert_id if r.certificate else None) for r in https.rules} == {
        ("a.com", "cert-a"),
        ("x.b.com", "cert-b"),
        ("c.com", "cert-d"),
        ("", "cert-d"),
    }
    assert not listener(desired, ListenerProtocol.HTTP).sni
    assert {(d.domain, d.certificate.cert_id) for d in desired.domain_certificates} == {
        ("a.com", "cert-a"),
        ("x.b.com", "cert-b"),
        ("c.com", "cert-d"),
        ("", "cert-d"),
    }


@pytest.mark.parametrize(
    ("secrets", "https_domains", "cert"),
    [
        ({}, None, None),  # no certificate at all: no HTTPS listener
        ({"a": "cert-a"}, ["a.com", "c.com"], "cert-a"),  # b.com's cert is missing: not on HTTPS
        ({"b": "cert-b"}, ["b.com", "c.com"], "cert-b"),
        ({"a": "  ", "b": "cert-b"}, ["b.com", "c.com"], "cert-b"),  # blank id is missing
    ],
)
def test_missing_certificate(
    secrets: dict[str, str], https_domains: list[str] | None, cert: str | None
) -> None:
    desired = build(
        ingress(
            rules=(
                host("a.com", ("/", "Prefix")),
                host("b.com", ("/", "Prefix")),
                host("c.com", ("/", "Prefix")),
            ),
            tls=(
                IngressTLSView(hosts=("a.com",), secret_name="a"),
                IngressTLSView(hosts=("b.com",), secret_name="b"),
            ),
        ),
        secrets=secrets,
    )
    assert reasons(desired) == {"MissingCertificate"}
    assert desired.actionable
    assert len(listener(desired, ListenerProtocol.HTTP).rules) == 3
    if https_domains is None:
        assert [lst.protocol for lst in desired.listeners] == [ListenerProtocol.HTTP]
    else:
        https = listener(desired, ListenerProtocol.HTTPS)
        assert [r.domain for r in https.rules] == https_domains
        assert https.certificate == Certificate(cert or "")


# --- backends ----------------------------------------------------------------------------------


def test_nodeport_backends() -> None:
    desired = build(ingress(rules=(host("a.com", ("/", "Prefix")),)))
    (rule,) = listener(desired, ListenerProtocol.HTTP).rules
    assert rule.health_check == NODEPORT_RULE_HEALTH
    assert rule.targets == (
        Target("10.0.0.1", 30080, kind=TargetKind.NODE, instance_id="ins-1"),
        Target("10.0.0.2", 30080, kind=TargetKind.NODE, instance_id="ins-2"),
    )
    assert desired.bound_pods == ()


def test_direct_backends_follow_the_gate_deadlock_rule() -> None:
    desired = build(
        ingress(annotations=DIRECT, rules=(host("a.com", ("/", "Prefix"), backend=API),))
    )
    (rule,) = listener(desired, ListenerProtocol.HTTP).rules
    assert rule.health_check == DIRECT_RULE_HEALTH
    # p1 ready, p2 gated (ContainersReady): bound; p3 starting, p4 terminating: not.
    assert rule.targets == (Target("172.16.0.1", 8080), Target("172.16.0.2", 8080))
    assert desired.bound_pods == ("p1", "p2")
    assert desired.problems == ()


def test_direct_unroutable_pods_are_reported_with_the_backend() -> None:
    pods = (PodView(name="p1", ip="172.16.0.1", containers_ready=True),)
    desired = build(
        ingress(annotations=DIRECT, rules=(host("a.com", ("/", "Prefix")),)),
        pods=pods,
        endpoints={"web": EPS[:1]},
    )
    assert reasons(desired) == {"PodNotRoutable"}
    assert "backend web:80" in desired.problems[0].message
    assert listener(desired, ListenerProtocol.HTTP).rules[0].targets == ()


@pytest.mark.parametrize(
    ("backend", "reason"),
    [
        (IngressBackendView(service_name="nope", port_number=80), "MissingBackendService"),
        (IngressBackendView(service_name="web", port_number=81), "MissingBackendPort"),
        (IngressBackendView(service_name="web", port_name="grpc"), "MissingBackendPort"),
        (IngressBackendView(resource="StorageBucket/static"), "UnsupportedBackend"),
        (API, "MissingNodePort"),  # ClusterIP Service, NodePort mode
    ],
)
def test_broken_backend_keeps_its_rule_without_targets(
    backend: IngressBackendView, reason: str
) -> None:
    desired = build(
        ingress(
            rules=(host("a.com", ("/", "Prefix")), host("a.com", ("/b", "Prefix"), backend=backend))
        )
    )
    http = listener(desired, ListenerProtocol.HTTP)
    assert keys(http) == [("a.com", "/"), ("a.com", "/b")]
    assert len(http.rules[0].targets) == 2  # the other rule is still served
    assert http.rules[1].targets == ()
    assert reasons(desired) == {reason}
    assert desired.actionable


def test_port_by_name_resolves_nodeport() -> None:
    by_name = IngressBackendView(service_name="web", port_name="http")
    desired = build(ingress(rules=(host("a.com", ("/", "Prefix"), backend=by_name),)))
    assert {t.port for t in listener(desired, ListenerProtocol.HTTP).rules[0].targets} == {30080}


# --- quotas ------------------------------------------------------------------------------------


def test_too_many_rules_keeps_the_first_ones() -> None:
    paths = tuple((f"/p{i}", "Prefix") for i in range(55))
    desired = build(
        ingress(rules=(host("a.com", *paths),), tls=(IngressTLSView(secret_name="t"),)),
        secrets={"t": "cert"},
    )
    for protocol in (ListenerProtocol.HTTP, ListenerProtocol.HTTPS):
        lst = listener(desired, protocol)
        assert [r.url for r in lst.rules] == [f"/p{i}" for i in range(50)]
    assert reasons(desired) == {"TooManyRules"}
    assert all("at most 50" in p.message for p in desired.problems)


def test_too_many_targets_per_rule() -> None:
    nodes = tuple(
        NodeView(name=f"n{i}", internal_ip=f"10.1.0.{i}", instance_id=f"ins-{i}") for i in range(5)
    )
    desired = build(
        ingress(rules=(host("a.com", ("/", "Prefix")),)),
        nodes=nodes,
        quotas=IngressQuotas(targets_per_rule=3),
    )
    assert len(listener(desired, ListenerProtocol.HTTP).rules[0].targets) == 3
    assert reasons(desired) == {"TooManyBackends"}


# --- properties --------------------------------------------------------------------------------

_hosts = st.sampled_from(["", "a.com", "A.com", "b.com", "*.c.com"])
_paths = st.sampled_from(["", "/", "/a", "/a/", "/a/b", "/b"])
_types = st.sampled_from(["Exact", "Prefix", "ImplementationSpecific", "Bogus"])
_backends = st.sampled_from([WEB, API, IngressBackendView(service_name="nope", port_number=1)])


@st.composite
def _ingresses(draw: st.DrawFn) -> IngressView:
    rules = draw(
        st.lists(
            st.builds(
                IngressRuleView,
                host=_hosts,
                paths=st.lists(
                    st.builds(IngressPathView, backend=_backends, path=_paths, path_type=_types),
                    max_size=6,
                ).map(tuple),
            ),
            max_size=6,
        )
    )
    return ingress(
        rules=tuple(rules),
        annotations=draw(st.sampled_from([(), DIRECT])),
        default_backend=draw(st.none() | _backends),
        tls=draw(
            st.lists(
                st.builds(
                    IngressTLSView,
                    hosts=st.lists(_hosts.filter(bool), max_size=2).map(tuple),
                    secret_name=st.sampled_from(["s1", "s2", "gone"]),
                ),
                max_size=3,
            ).map(tuple)
        ),
    )


@settings(max_examples=300, deadline=None)
@given(
    ing=_ingresses(),
    rules_quota=st.integers(1, 8),
    target_quota=st.integers(1, 3),
)
def test_rules_unique_and_within_quotas(
    ing: IngressView, rules_quota: int, target_quota: int
) -> None:
    desired = build(
        ing,
        secrets={"s1": "cert-1", "s2": "cert-2"},
        quotas=IngressQuotas(rules_per_listener=rules_quota, targets_per_rule=target_quota),
    )
    assert desired.ours
    for lst in desired.listeners:
        rule_keys = [r.key for r in lst.rules]
        assert len(rule_keys) == len(set(rule_keys))
        assert len(lst.rules) <= rules_quota
        for rule in lst.rules:
            assert isinstance(rule, Rule)
            assert len(rule.targets) <= target_quota
            assert len({t.key for t in rule.targets}) == len(rule.targets)
    https = [lst for lst in desired.listeners if lst.protocol is ListenerProtocol.HTTPS]
    if https and desired.sni:
        assert https[0].certificate is None and https[0].sni
        assert {d.domain for d in desired.domain_certificates} == {r.domain for r in https[0].rules}
        certs = {d.domain: d.certificate for d in desired.domain_certificates}
        assert all(r.certificate == certs[r.domain] for r in https[0].rules)
    elif https:
        assert https[0].certificate is not None and not https[0].sni
        assert all(r.certificate is None for r in https[0].rules)
    assert desired == build(  # pure: same inputs, same output
        ing,
        secrets={"s1": "cert-1", "s2": "cert-2"},
        quotas=IngressQuotas(rules_per_listener=rules_quota, targets_per_rule=target_quota),
    )
