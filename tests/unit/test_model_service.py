"""The Service model: annotations, modes, the gate-deadlock rule, quotas, problems (pure)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from directlb.model.annotations import (
    DIRECT_ACCESS,
    EXISTING_LB_ID,
    INTERNAL_SUBNET_ID,
    LOAD_BALANCER_CLASS,
    POD_NETWORKS,
    is_eni_pod,
    parse_service_annotations,
)
from directlb.model.problems import Severity
from directlb.model.service import (
    DIRECT_HEALTH,
    NODEPORT_HEALTH,
    BackendMode,
    EndpointPortView,
    EndpointView,
    KubeVersion,
    LoadBalancerIntent,
    NodeView,
    PodView,
    Quotas,
    ServiceDesired,
    ServicePortView,
    ServiceView,
    desired_for_service,
    effective_mode,
    load_balancer_problem,
    local_health,
)
from directlb.plan.state import ListenerProtocol, Target, TargetKind

ENI = ((POD_NETWORKS, "tke-route-eni"),)
DIRECT = ((DIRECT_ACCESS, "true"),)
HTTP = ServicePortView(port=80, name="http", target_port=8080, node_port=30080)


def svc(
    *,
    annotations: tuple[tuple[str, str], ...] = DIRECT,
    ports: tuple[ServicePortView, ...] = (HTTP,),
    **kw: object,
) -> ServiceView:
    return ServiceView(namespace="ns", name="web", annotations=annotations, ports=ports, **kw)  # type: ignore[arg-type]


def ep(
    i: int,
    *,
    ready: bool | None = True,
    terminating: bool | None = None,
    node: str = "n1",
    ports: tuple[EndpointPortView, ...] = (EndpointPortView("http", 8080),),
) -> EndpointView:
    return EndpointView(
        address=f"10.0.0.{i}",
        ports=ports,
        ready=ready,
        terminating=terminating,
        node_name=node,
        pod_name=f"p{i}",
    )


def pod(i: int, *, containers_ready: bool = True, eni: bool = True, **kw: object) -> PodView:
    return PodView(
        name=f"p{i}",
        ip=f"10.0.0.{i}",
        annotations=ENI if eni else (),
        containers_ready=containers_ready,
        **kw,  # type: ignore[arg-type]
    )


def node(
    i: int, *, ready: bool = True, schedulable: bool = True, instance: bool = True
) -> NodeView:
    return NodeView(
        name=f"n{i}",
        internal_ip=f"192.168.0.{i}",
        instance_id=f"ins-{i}" if instance else "",
        ready=ready,
        schedulable=schedulable,
    )


def reasons(result: ServiceDesired) -> list[str]:
    return [p.reason for p in result.problems]


def ips(result: ServiceDesired, index: int = 0) -> list[str]:
    return [t.ip for t in result.listeners[index].targets]


# --- ownership and annotations -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_", "klass", "ours"),
    [
        ("LoadBalancer", None, True),
        ("LoadBalancer", LOAD_BALANCER_CLASS, True),
        ("LoadBalancer", "service.k8s.aws/nlb", False),
        ("ClusterIP", None, False),
        ("NodePort", None, False),
    ],
)
def test_ours(type_: str, klass: str | None, ours: bool) -> None:
    result = desired_for_service(svc(type=type_, load_balancer_class=klass))
    assert result.ours is ours
    assert result.actionable is ours
    if not ours:
        assert result.listeners == () and result.problems == ()


@pytest.mark.parametrize(
    ("pairs", "direct", "existing", "subnet", "problem"),
    [
        ((), False, "", "", None),
        (((DIRECT_ACCESS, "true"),), True, "", "", None),
        (((DIRECT_ACCESS, "false"),), False, "", "", None),
        (((DIRECT_ACCESS, "yes"),), False, "", "", "InvalidDirectAccess"),
        (((DIRECT_ACCESS, "True"),), False, "", "", "InvalidDirectAccess"),
        (((DIRECT_ACCESS, ""),), False, "", "", "InvalidDirectAccess"),
        (((EXISTING_LB_ID, "lb-abc12345"),), False, "lb-abc12345", "", None),
        (((EXISTING_LB_ID, "my-lb"),), False, "", "", "InvalidExistingLoadBalancerId"),
        (((EXISTING_LB_ID, ""),), False, "", "", "InvalidExistingLoadBalancerId"),
        (((INTERNAL_SUBNET_ID, "subnet-1a2b3c4d"),), False, "", "subnet-1a2b3c4d", None),
        (((INTERNAL_SUBNET_ID, ""),), False, "", "", "InvalidInternalSubnet"),
        (((INTERNAL_SUBNET_ID, "vpc-1"),), False, "", "", "InvalidInternalSubnet"),
        # Adopting: the subnet is the adopted CLB's business, not ours.
        (((EXISTING_LB_ID, "lb-1"), (INTERNAL_SUBNET_ID, "")), False, "lb-1", "", None),
    ],
)
def test_annotations(
    pairs: tuple[tuple[str, str], ...],
    direct: bool,
    existing: str,
    subnet: str,
    problem: str | None,
) -> None:
    notes, problems = parse_service_annotations(pairs)
    assert (notes.direct, notes.existing_lb_id, notes.internal_subnet_id) == (
        direct,
        existing,
        subnet,
    )
    assert [p.reason for p in problems] == ([problem] if problem else [])
    for p in problems:
        assert p.severity is Severity.ERROR
        assert p.severity.event_type == "Warning"

    result = desired_for_service(svc(annotations=pairs), endpoints=[ep(1)], pods=[pod(1)])
    assert result.actionable is (problem is None)
    assert result.load_balancer is not None
    assert result.load_balancer.existing_id == existing
    assert result.load_balancer.internal is bool(subnet)


def test_invalid_direct_access_message_says_what_to_change() -> None:
    (problem,) = parse_service_annotations(((DIRECT_ACCESS, "1"),))[1]
    assert '"1"' in problem.message and '"true"' in problem.message and '"false"' in problem.message


@pytest.mark.parametrize(
    ("value", "eni"),
    [("tke-route-eni", True), ("tke-bridge, tke-route-eni", True), ("tke-bridge", False)],
)
def test_eni_annotation(value: str, eni: bool) -> None:
    assert is_eni_pod(((POD_NETWORKS, value),)) is eni
    assert is_eni_pod(()) is False


@pytest.mark.parametrize(
    ("policy", "mode"), [("Cluster", BackendMode.NODEPORT), ("Local", BackendMode.LOCAL)]
)
def test_direct_access_needs_readiness_gates(policy: str, mode: BackendMode) -> None:
    """Below 1.12 a direct Service is bound through its nodes, with a warning that names the
    version and says what to do; everything else about it is reconciled."""
    old = KubeVersion.parse(major="1", minor="11", git_version="v1.11.5-tke.1")
    assert old is not None
    service = svc(external_traffic_policy=policy, health_check_node_port=31000)
    result = desired_for_service(
        service, endpoints=[ep(1)], pods=[pod(1)], nodes=[node(1)], cluster_version=old
    )
    assert reasons(result) == ["DirectAccessUnsupported"]
    (problem,) = result.problems
    assert problem.severity is Severity.WARNING and result.actionable
    assert "v1.11.5-tke.1" in problem.message and "1.12" in problem.message
    assert DIRECT_ACCESS in problem.message and '"false"' in problem.message
    assert result.mode is mode and result.bound_pods == ()
    (listener,) = result.listeners
    assert [(t.kind, t.instance_id, t.port) for t in listener.targets] == [
        (TargetKind.NODE, "ins-1", 30080)
    ]
    new = KubeVersion.parse(major="1", minor="12")
    direct = desired_for_service(service, endpoints=[ep(1)], pods=[pod(1)], cluster_version=new)
    assert direct.mode is BackendMode.DIRECT and direct.problems == ()
    unknown = desired_for_service(service, endpoints=[ep(1)], pods=[pod(1)], cluster_version=None)
    assert unknown.mode is BackendMode.DIRECT


@pytest.mark.parametrize("policy", ["Cluster", "Local"])
@pytest.mark.parametrize("annotations", [DIRECT, (), ((DIRECT_ACCESS, "false"),)])
@pytest.mark.parametrize("version", [None, (1, 11), (1, 12), (1, 32)])
def test_effective_mode_is_the_mode_the_model_binds(
    policy: str, annotations: tuple[tuple[str, str], ...], version: tuple[int, int] | None
) -> None:
    """``effective_mode`` (what the controller's node-event filter asks) is the mode
    ``desired_for_service`` binds in, whatever the cluster version: a direct Service on a cluster
    older than 1.12 uses its nodes."""
    cluster = KubeVersion(*version) if version else None
    service = svc(
        annotations=annotations, external_traffic_policy=policy, health_check_node_port=31000
    )
    desired = desired_for_service(
        service, endpoints=[ep(1)], pods=[pod(1)], nodes=[node(1)], cluster_version=cluster
    )
    assert effective_mode(service, cluster) is desired.mode
    if annotations == DIRECT and version == (1, 11):
        assert desired.mode is not BackendMode.DIRECT


@pytest.mark.parametrize(
    ("major", "minor", "git", "expected"),
    [
        ("1", "32", "v1.32.4", (1, 32)),
        ("1", "12+", "v1.12.4-eks", (1, 12)),
        ("", "", "v1.11.5-tke.1", (1, 11)),
        ("1", "", "1.18.4", (1, 18)),
        ("x", "y", "", None),
        ("", "", "", None),
    ],
)
def test_kube_version_parse(
    major: str, minor: str, git: str, expected: tuple[int, int] | None
) -> None:
    got = KubeVersion.parse(major=major, minor=minor, git_version=git)
    assert (None if got is None else (got.major, got.minor)) == expected
    if got is not None:
        assert got.supports_direct_access is (expected >= (1, 12))  # type: ignore[operator]
        assert str(got) == (git or f"v{got.major}.{got.minor}")


def test_cloud_errors_that_are_the_users_to_fix() -> None:
    adopted = LoadBalancerIntent(existing_id="lb-404")
    found = load_balancer_problem(
        adopted, code="InvalidParameter.LBIdNotFound", message="lb-404 does not exist"
    )
    assert found is not None and found.reason == "ExistingLoadBalancerNotFound"
    assert "lb-404" in found.message and EXISTING_LB_ID in found.message
    assert found.severity is Severity.ERROR

    internal = LoadBalancerIntent(internal_subnet_id="subnet-nope")
    subnet = load_balancer_problem(
        internal,
        code="InvalidParameterValue",
        message="The value of `SubnetId` is invalid: subnet subnet-nope does not exist",
    )
    assert subnet is not None and subnet.reason == "InternalSubnetNotFound"
    assert "subnet-nope" in subnet.message and INTERNAL_SUBNET_ID in subnet.message

    # Anything else is the cloud's trouble, not the user's: no problem of theirs.
    assert load_balancer_problem(adopted, code="InternalError", message="boom") is None
    assert (
        load_balancer_problem(
            LoadBalancerIntent(), code="InvalidParameter.LBIdNotFound", message="x"
        )
        is None
    )
    assert load_balancer_problem(internal, code="LimitExceeded", message="subnet full") is None


# --- modes -------------------------------------------------------------------------------------


def test_seed_manifest_direct_mode() -> None:
    """The seed's Service: three ENI pods on port 80, the CLB's targets are their IPs:80."""
    port = ServicePortView(port=80, name="80-80-no", target_port=80, node_port=32693)
    endpoints = [ep(i, ports=(EndpointPortView("80-80-no", 80),)) for i in (1, 2, 3)]
    result = desired_for_service(
        svc(ports=(port,)), endpoints=endpoints, pods=[pod(i) for i in (1, 2, 3)], nodes=[node(1)]
    )
    assert result.mode is BackendMode.DIRECT and result.problems == ()
    (listener,) = result.listeners
    assert (listener.protocol, listener.port, listener.name) == (
        ListenerProtocol.TCP,
        80,
        "80-80-no",
    )
    assert listener.targets == tuple(Target(f"10.0.0.{i}", 80, weight=10) for i in (1, 2, 3))
    assert listener.health_check == DIRECT_HEALTH
    assert listener.session_expire == 0
    assert result.bound_pods == ("p1", "p2", "p3")


def test_nodeport_mode_binds_ready_schedulable_nodes() -> None:
    nodes = [node(1), node(2, ready=False), node(3, schedulable=False), node(4)]
    result = desired_for_service(svc(annotations=()), endpoints=[ep(1, node="n2")], nodes=nodes)
    assert result.mode is BackendMode.NODEPORT and result.problems == ()
    (listener,) = result.listeners
    assert [(t.kind, t.instance_id, t.ip, t.port) for t in listener.targets] == [
        (TargetKind.NODE, "ins-1", "192.168.0.1", 30080),
        (TargetKind.NODE, "ins-4", "192.168.0.4", 30080),
    ]
    assert listener.health_check == NODEPORT_HEALTH
    assert result.bound_pods == ()


def test_local_mode_binds_nodes_with_a_ready_local_endpoint() -> None:
    endpoints = [
        ep(1, node="n1"),
        ep(2, node="n2", ready=False),
        ep(3, node="n3", terminating=True, ready=False),
        ep(4, node="n4"),  # cordoned, still serves
    ]
    nodes = [node(1), node(2), node(3), node(4, schedulable=False), node(5)]
    service = svc(annotations=(), external_traffic_policy="Local", health_check_node_port=31000)
    result = desired_for_service(service, endpoints=endpoints, nodes=nodes)
    assert result.mode is BackendMode.LOCAL and result.problems == ()
    (listener,) = result.listeners
    assert [t.instance_id for t in listener.targets] == ["ins-1", "ins-4"]
    assert listener.health_check == local_health(31000)
    assert listener.health_check is not None and listener.health_check.check_port == 31000


def test_local_mode_without_health_check_node_port() -> None:
    service = svc(annotations=(), external_traffic_policy="Local")
    result = desired_for_service(service, endpoints=[ep(1)], nodes=[node(1)])
    assert reasons(result) == ["MissingHealthCheckNodePort"]
    assert result.listeners[0].health_check == NODEPORT_HEALTH


def test_direct_wins_over_local_policy() -> None:
    service = svc(external_traffic_policy="Local", health_check_node_port=31000)
    result = desired_for_service(service, endpoints=[ep(1)], pods=[pod(1)], nodes=[node(1)])
    assert result.mode is BackendMode.DIRECT
    assert ips(result) == ["10.0.0.1"]


def test_node_modes_problems() -> None:
    no_node_port = ServicePortView(port=80, name="http", target_port=8080)
    result = desired_for_service(
        svc(annotations=(), ports=(no_node_port,)), endpoints=[ep(1)], nodes=[node(1)]
    )
    assert reasons(result) == ["MissingNodePort"] and result.listeners[0].targets == ()
    result = desired_for_service(
        svc(annotations=()), endpoints=[ep(1)], nodes=[node(1), node(2, instance=False)]
    )
    assert reasons(result) == ["NodeWithoutInstance"]
    assert "n2" in result.problems[0].message
    assert [t.instance_id for t in result.listeners[0].targets] == ["ins-1"]


def test_ports_protocols_and_names() -> None:
    ports = (
        ServicePortView(port=53, protocol="UDP", name="dns", target_port=5353, node_port=30053),
        ServicePortView(port=53, protocol="TCP", name="dns-tcp", target_port=5353, node_port=30054),
        ServicePortView(port=9, protocol="SCTP", name="sctp", target_port=9, node_port=30009),
        ServicePortView(port=8443, target_port=0, node_port=30443),
    )
    endpoints = [
        ep(1, ports=(EndpointPortView("dns", 5353, "UDP"), EndpointPortView("dns-tcp", 5353)))
    ]
    result = desired_for_service(svc(ports=ports), endpoints=endpoints, pods=[pod(1)])
    assert reasons(result) == ["UnsupportedProtocol"]
    assert "sctp/SCTP" in result.problems[0].message
    assert result.actionable
    assert [(str(lst.key), lst.name) for lst in result.listeners] == [
        ("UDP:53", "dns"),
        ("TCP:53", "dns-tcp"),
        ("TCP:8443", "tcp-8443"),
    ]
    assert [t.port for t in result.listeners[0].targets] == [5353]
    assert [t.port for t in result.listeners[2].targets] == [8443]  # targetPort defaults to port


# --- direct mode: the gate-deadlock rule and routability ---------------------------------------


@pytest.mark.parametrize(
    ("ready", "containers_ready", "terminating", "bound"),
    [
        (True, True, None, True),  # ready
        (None, True, None, True),  # ready unknown means ready
        (False, True, False, True),  # waits on our readiness gate: must be bound
        (False, False, None, False),  # containers not ready yet
        (False, True, True, False),  # terminating
        (True, True, True, False),  # terminating, still ready: never bound
    ],
)
def test_gate_deadlock_rule(
    ready: bool | None, containers_ready: bool, terminating: bool | None, bound: bool
) -> None:
    result = desired_for_service(
        svc(),
        endpoints=[ep(1, ready=ready, terminating=terminating)],
        pods=[pod(1, containers_ready=containers_ready)],
    )
    assert ips(result) == (["10.0.0.1"] if bound else [])
    assert result.bound_pods == (("p1",) if bound else ())


def test_pod_marked_terminating_is_not_bound() -> None:
    result = desired_for_service(svc(), endpoints=[ep(1)], pods=[pod(1, terminating=True)])
    assert ips(result) == []


def test_not_ready_endpoint_without_pod_is_not_bound() -> None:
    result = desired_for_service(svc(), endpoints=[ep(1, ready=False)], pods=[])
    assert ips(result) == []


@pytest.mark.parametrize(
    ("eni", "cidrs", "bound"),
    [
        (True, (), True),
        (False, (), False),
        (False, ("10.0.0.0/24",), True),
        (False, ("10.1.0.0/16",), False),
        (True, ("10.1.0.0/16",), True),
    ],
)
def test_routability(eni: bool, cidrs: tuple[str, ...], bound: bool) -> None:
    result = desired_for_service(
        svc(),
        endpoints=[ep(1), ep(2)],
        pods=[pod(1, eni=eni), pod(2)],
        direct_routable_cidrs=[ipaddress.ip_network(c) for c in cidrs],
    )
    assert ips(result) == (["10.0.0.1", "10.0.0.2"] if bound else ["10.0.0.2"])
    if bound:
        assert result.problems == ()
    else:
        (problem,) = result.problems
        assert problem.reason == "PodNotRoutable" and problem.severity is Severity.WARNING
        assert "p1 (10.0.0.1)" in problem.message and "p2" not in problem.message
        assert "tke-route-eni" in problem.message and "--direct-routable-cidrs" in problem.message


def test_named_target_port_resolved_per_pod() -> None:
    """Two pod versions name the same container port differently numbered: each gets its own."""
    port = ServicePortView(port=80, name="http", target_port="web", node_port=30080)
    endpoints = [
        ep(1, ports=(EndpointPortView("http", 8080),)),
        ep(2, ports=(EndpointPortView("http", 9090),)),
        ep(3, ports=()),  # its pods have no port named "web"
    ]
    result = desired_for_service(
        svc(ports=(port,)), endpoints=endpoints, pods=[pod(1), pod(2), pod(3)]
    )
    assert [(t.ip, t.port) for t in result.listeners[0].targets] == [
        ("10.0.0.1", 8080),
        ("10.0.0.2", 9090),
    ]
    assert reasons(result) == ["UnresolvedTargetPort"]
    assert "p3" in result.problems[0].message
    assert result.bound_pods == ("p1", "p2")


# --- session affinity, quotas, nothing selected ------------------------------------------------


@pytest.mark.parametrize(
    ("affinity", "timeout", "expected"),
    [
        ("None", None, 0),
        ("None", 600, 0),
        ("ClientIP", None, 3600),  # Kubernetes' default 10800, clamped
        ("ClientIP", 10, 30),
        ("ClientIP", 30, 30),
        ("ClientIP", 600, 600),
        ("ClientIP", 3600, 3600),
        ("ClientIP", 86400, 3600),
    ],
)
def test_session_affinity(affinity: str, timeout: int | None, expected: int) -> None:
    service = svc(session_affinity=affinity, session_affinity_timeout=timeout)
    result = desired_for_service(service, endpoints=[ep(1)], pods=[pod(1)])
    assert result.listeners[0].session_expire == expected


def test_too_many_ports_keeps_the_first() -> None:
    ports = tuple(
        ServicePortView(port=8000 + i, name=f"p{i}", target_port=80, node_port=30000 + i)
        for i in range(5)
    )
    result = desired_for_service(
        svc(ports=ports), endpoints=[ep(1)], pods=[pod(1)], quotas=Quotas(listeners_per_lb=3)
    )
    assert [lst.port for lst in result.listeners] == [8000, 8001, 8002]
    assert reasons(result) == ["TooManyPorts"]
    assert "p3/TCP, p4/TCP" in result.problems[0].message
    assert result.actionable


def test_too_many_backends_keeps_ready_ones_first() -> None:
    endpoints = [ep(i, ready=i > 2) for i in range(1, 7)]  # p1, p2 only containers-ready
    result = desired_for_service(
        svc(),
        endpoints=endpoints,
        pods=[pod(i) for i in range(1, 7)],
        quotas=Quotas(targets_per_listener=4),
    )
    assert ips(result) == ["10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]
    assert reasons(result) == ["TooManyBackends"]
    assert "6 backends" in result.problems[0].message
    assert result.bound_pods == ("p3", "p4", "p5", "p6")


def test_too_many_nodes() -> None:
    result = desired_for_service(
        svc(annotations=()),
        endpoints=[ep(1)],
        nodes=[node(i) for i in range(1, 6)],
        quotas=Quotas(targets_per_listener=2),
    )
    assert [t.instance_id for t in result.listeners[0].targets] == ["ins-1", "ins-2"]
    assert reasons(result) == ["TooManyBackends"]


@pytest.mark.parametrize("annotations", [DIRECT, ()])
def test_selecting_nothing(annotations: tuple[tuple[str, str], ...]) -> None:
    result = desired_for_service(svc(annotations=annotations), nodes=[node(1)])
    assert reasons(result) == ["NoEndpoints"]
    assert result.problems[0].severity is Severity.WARNING
    assert result.actionable
    (listener,) = result.listeners
    assert listener.port == 80 and listener.targets == ()


def test_quotas_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Quotas(listeners_per_lb=0)


# --- properties --------------------------------------------------------------------------------

endpoint_st = st.builds(
    EndpointView,
    address=st.sampled_from([f"10.0.0.{i}" for i in range(1, 9)]),
    ports=st.sampled_from(
        [
            (EndpointPortView("http", 8080),),
            (EndpointPortView("http", 9090),),
            (),
        ]
    ),
    ready=st.sampled_from([None, True, False]),
    serving=st.sampled_from([None, True, False]),
    terminating=st.sampled_from([None, True, False]),
    node_name=st.sampled_from(["n1", "n2", "n3", ""]),
    pod_name=st.sampled_from([f"p{i}" for i in range(1, 9)] + [""]),
)
pod_st = st.builds(
    PodView,
    name=st.sampled_from([f"p{i}" for i in range(1, 9)]),
    annotations=st.sampled_from([ENI, ()]),
    containers_ready=st.booleans(),
    terminating=st.booleans(),
)
node_st = st.builds(
    NodeView,
    name=st.sampled_from(["n1", "n2", "n3", "n4"]),
    internal_ip=st.sampled_from(["192.168.0.1", "192.168.0.2"]),
    instance_id=st.sampled_from(["ins-1", "ins-2", "ins-3", ""]),
    ready=st.booleans(),
    schedulable=st.booleans(),
)
service_st = st.builds(
    ServiceView,
    namespace=st.just("ns"),
    name=st.just("web"),
    annotations=st.sampled_from([DIRECT, (), ((DIRECT_ACCESS, "false"),)]),
    ports=st.sampled_from(
        [
            (HTTP,),
            (ServicePortView(port=80, name="http", target_port="web", node_port=30080),),
            (HTTP, ServicePortView(port=81, name="b", target_port=81, node_port=30081)),
        ]
    ),
    external_traffic_policy=st.sampled_from(["Cluster", "Local"]),
    health_check_node_port=st.sampled_from([None, 31000]),
    session_affinity=st.sampled_from(["None", "ClientIP"]),
    session_affinity_timeout=st.one_of(st.none(), st.integers(0, 100000)),
)
inputs = st.fixed_dictionaries(
    {
        "service": service_st,
        "endpoints": st.lists(endpoint_st, max_size=10),
        "pods": st.lists(pod_st, max_size=8),
        "nodes": st.lists(node_st, max_size=5),
        "quota": st.integers(1, 12),
        "cidr": st.sampled_from([(), (ipaddress.ip_network("10.0.0.0/29"),)]),
    }
)


def run(case: dict[str, object]) -> ServiceDesired:
    return desired_for_service(
        case["service"],  # type: ignore[arg-type]
        endpoints=case["endpoints"],  # type: ignore[arg-type]
        pods=case["pods"],  # type: ignore[arg-type]
        nodes=case["nodes"],  # type: ignore[arg-type]
        direct_routable_cidrs=case["cidr"],  # type: ignore[arg-type]
        quotas=Quotas(targets_per_listener=case["quota"]),  # type: ignore[arg-type]
    )


@given(inputs)
def test_targets_are_unique_within_quota_and_deterministic(case: dict[str, object]) -> None:
    result = run(case)
    assert result.ours and result.actionable
    for listener in result.listeners:
        keys = [t.key for t in listener.targets]
        assert len(keys) == len(set(keys))
        assert len(keys) <= case["quota"]  # type: ignore[operator]
        assert list(listener.targets) == sorted(listener.targets)
        assert 0 <= listener.session_expire <= 3600
        assert listener.session_expire == 0 or listener.session_expire >= 30
    assert run(case) == result
    assert len(set(result.problems)) == len(result.problems)


@given(inputs)
def test_direct_mode_never_binds_terminating_or_unroutable(case: dict[str, object]) -> None:
    result = run(case)
    if result.mode is not BackendMode.DIRECT:
        return
    pods = {p.name: p for p in case["pods"]}  # type: ignore[attr-defined]
    allowed = set()
    for e in case["endpoints"]:  # type: ignore[attr-defined]
        p = pods.get(e.pod_name)
        if e.terminating or (p is not None and p.terminating):
            continue
        if e.ready is False and not (p is not None and p.containers_ready):
            continue
        routable = (p is not None and p.annotations == ENI) or any(
            ipaddress.ip_address(e.address) in net
            for net in case["cidr"]  # type: ignore[attr-defined]
        )
        if routable:
            allowed.add(e.address)
    for listener in result.listeners:
        for target in listener.targets:
            assert target.kind is TargetKind.ENI
            assert target.ip in allowed


@given(inputs)
def test_nodeport_mode_binds_exactly_the_ready_schedulable_nodes(case: dict[str, object]) -> None:
    result = run(case)
    if result.mode is not BackendMode.NODEPORT or not case["endpoints"]:
        return
    wanted = {
        n.instance_id
        for n in case["nodes"]  # type: ignore[attr-defined]
        if n.ready and n.schedulable and n.instance_id
    }
    quota = case["quota"]
    for listener in result.listeners:
        got = {t.instance_id for t in listener.targets}
        if len(wanted) <= quota:  # type: ignore[operator]
            assert got == wanted
        else:
            assert got < wanted and len(got) == quota
            assert "TooManyBackends" in reasons(result)
