"""The readiness-gate controller's pure parts: the decision, the timeout, the patch, the layer-4
binding source over cached objects, the health poller and the reconcile's write rules (with a
fake client and a fake cloud)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import httpx2
import pytest
from lightkube import ApiError
from lightkube.codecs import from_dict
from lightkube.models.meta_v1 import Status

from directlb.cloud.port import CloudQuotas, LoadBalancer, LoadBalancerType, TargetHealth
from directlb.controllers import gate
from directlb.controllers.gate import (
    Binding,
    Current,
    Decision,
    Expectation,
    GateController,
    HealthPoller,
    ServiceBindings,
    Waiting,
    condition_patch,
    containers_ready_since,
    current_condition,
    decide,
    unchanged,
    with_timeout,
)
from directlb.controllers.ingress import IngressBindings, IngressController, SyncedIngress
from directlb.controllers.lbowner import LISTENERS_ANNOTATION, ListenerClaims
from directlb.controllers.metrics import Metrics
from directlb.controllers.service import (
    BY_SERVICE,
    LB_ID_ANNOTATION,
    SERVICE_KIND,
    endpoint_views,
    pod_view,
    service_view,
    slice_service,
)
from directlb.kube.informer import Event, Store
from directlb.kube.mapping import (
    BY_BACKEND_SERVICE,
    BY_NAMESPACE,
    index_by_namespace,
    ingress_backend_services,
)
from directlb.kube.version import ServerVersion, VersionCache
from directlb.kube.workqueue import WorkQueue, run_workers
from directlb.plan.state import (
    Listener,
    ListenerKey,
    ListenerProtocol,
    Rule,
    RuleKey,
    Target,
)
from directlb.webhook.server import GATE

TCP80 = ListenerKey(ListenerProtocol.TCP, 80)
HTTP80 = ListenerKey(ListenerProtocol.HTTP, 80)
NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def bind(
    lb: str = "lb-a",
    listener: ListenerKey = TCP80,
    ip: str = "10.0.0.5",
    port: int = 80,
    rule: RuleKey | None = None,
) -> Binding:
    return Binding(lb, listener, rule, ip, port)


def health(b: Binding, *, healthy: bool, detail: str) -> TargetHealth:
    return TargetHealth(
        lb_id=b.lb_id,
        listener=b.listener,
        listener_id="lbl-1",
        rule=b.rule,
        location_id="loc-1" if b.rule else "",
        ip=b.ip,
        port=b.port,
        instance_id="",
        healthy=healthy,
        detail=detail,
    )


def alive(b: Binding) -> TargetHealth:
    return health(b, healthy=True, detail="Alive")


def report(*items: TargetHealth, empty: Sequence[str] = ()) -> dict[str, tuple[TargetHealth, ...]]:
    out: dict[str, tuple[TargetHealth, ...]] = {lb: () for lb in empty}
    for item in items:
        out[item.lb_id] = (*out.get(item.lb_id, ()), item)
    return out


SVC = "Service default/web"


# --- decide ------------------------------------------------------------------------------------


def test_no_backend_selects_the_pod_is_true_at_once() -> None:
    decision = decide([], {})
    assert decision == Decision(True, gate.NO_BACKEND, decision.message)
    assert decision.status == "True"


def test_true_only_when_every_binding_is_registered_and_healthy() -> None:
    a, b = bind(), bind(listener=ListenerKey(ListenerProtocol.UDP, 53), port=53)
    expectation = [Expectation(SVC, bindings=(a, b))]
    assert decide(expectation, report(alive(a), alive(b))) == Decision(
        True,
        gate.HEALTHY,
        "registered and healthy on CLB lb-a listener TCP:80, lb-a listener UDP:53",
    )
    pending = decide(expectation, report(alive(a)))
    assert not pending.ready and pending.reason == gate.NOT_REGISTERED
    assert pending.message == "target 10.0.0.5:53 is not registered on CLB lb-a listener UDP:53"


def test_health_check_off_counts_as_healthy() -> None:
    a = bind()
    closed = health(a, healthy=True, detail="Close")
    assert decide([Expectation(SVC, bindings=(a,))], report(closed)).ready


@pytest.mark.parametrize(
    ("detail", "reason", "needle"),
    [
        (
            "Unknown",
            gate.CHECK_PENDING,
            "has not passed the health check of CLB lb-a listener TCP:80 yet (Unknown)",
        ),
        ("Dead", gate.CHECK_FAILED, "fails the health check of CLB lb-a listener TCP:80 (Dead)"),
    ],
)
def test_unhealthy_target_says_pending_or_failed(detail: str, reason: str, needle: str) -> None:
    a = bind()
    decision = decide(
        [Expectation(SVC, bindings=(a,))], report(health(a, healthy=False, detail=detail))
    )
    assert (decision.ready, decision.reason) == (False, reason)
    assert needle in decision.message and "10.0.0.5:80" in decision.message


def test_a_clb_not_observed_yet_is_pending_not_unregistered() -> None:
    decision = decide([Expectation(SVC, bindings=(bind(),))], {})
    assert (decision.ready, decision.reason) == (False, gate.CHECK_PENDING)
    assert "waiting for the health of target 10.0.0.5:80 on CLB lb-a" in decision.message


def test_layer7_bindings_match_their_rule_only() -> None:
    rule = RuleKey("a.example.com", "/api")
    wanted = bind(listener=HTTP80, rule=rule)
    elsewhere = replace(wanted, rule=RuleKey("a.example.com", "/"))
    decision = decide(
        [Expectation("Ingress default/web", bindings=(wanted,))], report(alive(elsewhere))
    )
    assert decision.reason == gate.NOT_REGISTERED
    assert decision.message.endswith("CLB lb-a listener HTTP:80 rule a.example.com/api")
    assert decide(
        [Expectation("Ingress default/web", bindings=(wanted,))], report(alive(wanted))
    ).ready


def test_the_worst_problem_is_named_and_the_others_counted() -> None:
    a, b, c = bind(), bind(lb="lb-b"), bind(lb="lb-c")
    expectations = [
        Expectation(SVC, bindings=(a,)),
        Expectation("Service default/other", bindings=(b, c)),
        Expectation("Service default/third", waiting=Waiting(gate.NOT_REACHABLE, "unreachable")),
    ]
    health_ = report(
        health(a, healthy=False, detail="Dead"),
        health(b, healthy=False, detail="Unknown"),
        empty=["lb-c"],
    )
    decision = decide(expectations, health_)
    assert decision == Decision(False, gate.NOT_REACHABLE, "unreachable (and 3 more)")
    decision = decide(expectations[:2], health_)
    assert decision.reason == gate.CHECK_FAILED and decision.message.endswith("(and 2 more)")
    decision = decide(expectations[1:2], health_)
    assert decision.reason == gate.NOT_REGISTERED and "lb-c" in decision.message


def test_one_backend_healthy_and_another_not_is_false() -> None:
    a, b = bind(), bind(lb="lb-b")
    expectations = [
        Expectation(SVC, bindings=(a,)),
        Expectation("Service default/x", bindings=(b,)),
    ]
    assert not decide(expectations, report(alive(a), empty=["lb-b"])).ready
    assert decide(expectations, report(alive(a), alive(b))).ready


def test_an_expectation_without_bindings_is_not_registered() -> None:
    decision = decide([Expectation(SVC)], {})
    assert (decision.ready, decision.reason) == (False, gate.NOT_REGISTERED)


# --- timeout -----------------------------------------------------------------------------------


def test_timeout_turns_a_false_gate_true_once_the_time_is_up() -> None:
    waiting = Decision(False, gate.CHECK_PENDING, "target x not healthy")
    assert with_timeout(waiting, waited=None, timeout=10) == waiting
    assert with_timeout(waiting, waited=9.9, timeout=10) == waiting
    timed_out = with_timeout(waiting, waited=10, timeout=10)
    assert (timed_out.ready, timed_out.reason) == (True, gate.TIMEOUT)
    assert "within 10s" in timed_out.message
    assert "last: HealthCheckPending: target x not healthy" in timed_out.message
    healthy = Decision(True, gate.HEALTHY, "ok")
    assert with_timeout(healthy, waited=1e9, timeout=10) == healthy


# --- the patch ---------------------------------------------------------------------------------


def test_the_patch_sets_only_our_condition_with_the_uid_as_precondition() -> None:
    decision = Decision(False, gate.CHECK_PENDING, "m")
    body = condition_patch("uid-1", decision, Current(), now=NOW)
    assert body == {
        "metadata": {"uid": "uid-1"},
        "status": {
            "conditions": [
                {
                    "type": GATE,
                    "status": "False",
                    "reason": gate.CHECK_PENDING,
                    "message": "m",
                    "lastTransitionTime": "2026-01-01T12:00:00Z",
                }
            ]
        },
    }


def test_last_transition_moves_only_with_the_status() -> None:
    before = Current("False", gate.NOT_REGISTERED, "x", "2026-01-01T11:00:00Z")
    same = condition_patch("u", Decision(False, gate.CHECK_PENDING, "y"), before, now=NOW)
    assert same["status"]["conditions"][0]["lastTransitionTime"] == "2026-01-01T11:00:00Z"
    moved = condition_patch("u", Decision(True, gate.HEALTHY, "z"), before, now=NOW)
    assert moved["status"]["conditions"][0]["lastTransitionTime"] == "2026-01-01T12:00:00Z"


def test_unchanged_compares_status_reason_and_message() -> None:
    decision = Decision(False, gate.CHECK_PENDING, "m")
    assert unchanged(Current("False", gate.CHECK_PENDING, "m", "t"), decision)
    assert not unchanged(Current("False", gate.CHECK_PENDING, "other", "t"), decision)
    assert not unchanged(Current(), decision)


# --- cached objects ------------------------------------------------------------------------------


def pod(
    name: str = "web-1",
    *,
    ip: str = "10.0.0.5",
    gated: bool = True,
    eni: bool = True,
    containers_ready: bool = True,
    labels: dict[str, str] | None = None,
    uid: str = "uid-1",
    rv: str = "1",
    conditions: Sequence[dict[str, Any]] = (),
) -> Any:
    stamp = "2026-01-01T11:59:00Z"
    return from_dict(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": "default",
                "uid": uid,
                "resourceVersion": rv,
                "labels": labels if labels is not None else {"app": "web"},
                "creationTimestamp": "2026-01-01T11:58:00Z",
                "annotations": {"tke.cloud.tencent.com/networks": "tke-route-eni"} if eni else {},
            },
            "spec": {
                "containers": [{"name": "app", "image": "nginx"}],
                "readinessGates": [{"conditionType": GATE}] if gated else None,
            },
            "status": {
                "phase": "Running",
                "podIP": ip,
                "conditions": [
                    {
                        "type": "ContainersReady",
                        "status": "True" if containers_ready else "False",
                        "lastTransitionTime": stamp,
                    },
                    *conditions,
                ],
            },
        }
    )


def service(
    name: str = "web",
    *,
    direct: bool = True,
    lb_id: str | None = "lb-a",
    type_: str = "LoadBalancer",
    selector: dict[str, str] | None = None,
) -> Any:
    annotations = {"service.cloud.tencent.com/direct-access": "true" if direct else "false"}
    if lb_id:
        annotations[LB_ID_ANNOTATION] = lb_id
    return from_dict(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": name,
                "namespace": "default",
                "uid": f"svc-{name}",
                "resourceVersion": "1",
                "annotations": annotations,
                "creationTimestamp": "2026-01-01T11:59:30Z",
            },
            "spec": {
                "type": type_,
                "selector": selector if selector is not None else {"app": "web"},
                "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}],
            },
        }
    )


def endpoint_slice(service_name: str, pods: Sequence[tuple[str, str]], ready: bool = False) -> Any:
    return from_dict(
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{service_name}-abc",
                "namespace": "default",
                "labels": {"kubernetes.io/service-name": service_name},
            },
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [
                {
                    "addresses": [ip],
                    "conditions": {"ready": ready, "serving": ready, "terminating": False},
                    "targetRef": {"kind": "Pod", "name": name, "namespace": "default"},
                }
                for name, ip in pods
            ],
        }
    )


def stores(
    services: Sequence[Any], slices: Sequence[Any], pods: Sequence[Any]
) -> tuple[Store[Any], Store[Any], Store[Any]]:
    s: Store[Any] = Store()
    e: Store[Any] = Store()
    p: Store[Any] = Store()
    s.add_index(BY_NAMESPACE, index_by_namespace)
    p.add_index(BY_NAMESPACE, index_by_namespace)
    e.add_index(BY_SERVICE, slice_service)
    for store, objs in ((s, services), (e, slices), (p, pods)):
        for obj in objs:
            store.put(obj)
    return s, e, p


def source(services: Sequence[Any], slices: Sequence[Any], pods: Sequence[Any]) -> ServiceBindings:
    s, e, p = stores(services, slices, pods)
    return ServiceBindings(services=s, slices=e, pods=p)


def test_a_bound_pod_expects_its_target_on_each_listener_of_the_services_clb() -> None:
    p = pod()
    [expectation] = source(
        [service()], [endpoint_slice("web", [("web-1", "10.0.0.5")])], [p]
    ).expectations(p)
    assert expectation == Expectation(SVC, bindings=(bind(port=8080),))


@pytest.mark.parametrize(
    ("svc", "selected"),
    [
        (service(direct=False), False),  # NodePort mode: nodes are the backends
        (service(type_="ClusterIP"), False),  # no load balancer
        (service(selector={"app": "other"}), False),
        (service(selector={}), False),  # an empty selector selects nothing
        (service(), True),
    ],
)
def test_only_direct_load_balancer_services_that_select_the_pod_count(
    svc: Any, selected: bool
) -> None:
    p = pod()
    found = source([svc], [endpoint_slice("web", [("web-1", "10.0.0.5")])], [p]).expectations(p)
    assert bool(found) is selected


def test_why_a_selected_pod_is_not_bound_yet() -> None:
    def waiting_of(p: Any, svc: Any, slices: Sequence[Any]) -> Waiting | None:
        [expectation] = source([svc], slices, [p]).expectations(p)
        assert not expectation.bindings
        return expectation.waiting

    listed = [endpoint_slice("web", [("web-1", "10.0.0.5")])]
    no_lb = waiting_of(pod(), service(lb_id=None), listed)
    assert no_lb == Waiting(
        gate.NOT_REGISTERED, "the CLB of Service default/web does not exist yet"
    )
    starting = waiting_of(pod(containers_ready=False), service(), listed)
    assert starting is not None and "once its containers are ready" in starting.message
    plain = waiting_of(pod(eni=False), service(), listed)
    assert plain is not None and plain.reason == gate.NOT_REACHABLE
    assert "CLB lb-a of Service default/web cannot reach the pod's IP 10.0.0.5" in plain.message
    unlisted = waiting_of(pod(), service(), [])
    assert (
        unlisted is not None and "not in the endpoints of Service default/web" in unlisted.message
    )


def test_the_model_runs_once_per_service_until_something_of_that_service_changes() -> None:
    web, api = service("web"), service("api", selector={"app": "api"}, lb_id="lb-b")
    web_pod, api_pod = pod(), pod("api-1", ip="10.0.0.6", labels={"app": "api"}, uid="uid-2")
    web_slice = endpoint_slice("web", [("web-1", "10.0.0.5")])
    api_slice = endpoint_slice("api", [("api-1", "10.0.0.6")])
    bindings = source([web, api], [web_slice, api_slice], [web_pod, api_pod])

    def runs_after(*events: Event[Any]) -> int:
        before = bindings.runs
        for event in events:
            bindings.observe(event)
        for _ in range(3):  # three pending pods checked: one model run at most per Service
            bindings.desired(web)
            bindings.desired(api)
        return bindings.runs - before

    assert runs_after() == 2
    assert runs_after() == 0
    # A pod of web changed: web's answer only, not every Service of the namespace.
    assert runs_after(Event("MODIFIED", pod(rv="2"), web_pod)) == 1
    # A pod moved from web to api (its labels changed): both.
    moved = pod(rv="3", labels={"app": "api"})
    assert runs_after(Event("MODIFIED", moved, pod(rv="2"))) == 2
    # An EndpointSlice: its Service only.
    assert runs_after(Event("MODIFIED", api_slice, from_dict(api_slice.to_dict()))) == 1
    # Resyncs (the same object handed again) change nothing.
    assert runs_after(*(Event("MODIFIED", o, o) for o in (web, web_slice, web_pod))) == 0
    # A pod no Service selects.
    assert runs_after(Event("ADDED", pod("job-1", labels={"app": "job"}, uid="uid-3"))) == 0
    # The Service itself.
    assert runs_after(Event("MODIFIED", web, from_dict(web.to_dict()))) == 1
    bindings.observe(Event("DELETED", api))
    assert "default/api" not in bindings._memo


class QuotaCloud:
    """The quotas of the cloud port (as the adapter reads them with DescribeQuota)."""

    def __init__(self, targets_per_group: int) -> None:
        self.answer = CloudQuotas(targets_per_group=targets_per_group)
        self.reads = 0

    async def quotas(self) -> CloudQuotas:
        self.reads += 1
        return self.answer


def many(count: int) -> tuple[list[Any], Any]:
    """``count`` ready pods of ``web`` and its EndpointSlice naming them all."""
    pods_ = [
        pod(f"web-{i}", ip=f"10.0.{i // 200}.{i % 200 + 1}", uid=f"u{i}") for i in range(count)
    ]
    listed = [(p.metadata.name, p.status.podIP) for p in pods_]
    return pods_, endpoint_slice("web", listed, ready=True)


async def test_the_gate_models_a_service_with_the_clouds_target_quota() -> None:
    # 150 pods, the account's target quota raised to 200: the Service controller binds all of
    # them, so the gate must expect every one (with the default 100, 50 were held "does not
    # bind the pod" until the timeout though they were registered).
    pods_, listed = many(150)
    s, e, p = stores([service()], [listed], pods_)
    plain = ServiceBindings(services=s, slices=e, pods=p)
    unbound = [q for q in pods_ if not plain.expectations(q)[0].bindings]
    assert len(unbound) == 50  # what the default quota would leave out
    cloud = QuotaCloud(targets_per_group=200)
    bindings = ServiceBindings(services=s, slices=e, pods=p, cloud=cloud)  # type: ignore[arg-type]
    await bindings.refresh()
    assert all(bindings.expectations(q)[0].bindings for q in pods_)
    [svc] = s.items()
    [listener] = bindings.desired(svc).listeners
    assert len(listener.targets) == 150

    # Through the controller, which refreshes its sources before deciding: a pod the default
    # quota leaves out turns True once registered and healthy.
    last = unbound[-1]
    health = FakeCloud()
    health.health["lb-a"] = (alive(bind(ip=last.status.podIP, port=8080)),)
    poller = HealthPoller(health, clock=Clock())  # type: ignore[arg-type]
    bindings = ServiceBindings(services=s, slices=e, pods=p, cloud=QuotaCloud(200))  # type: ignore[arg-type]
    client = FakeClient()
    gc = GateController(
        client=client,  # type: ignore[arg-type]
        recorder=FakeRecorder(),  # type: ignore[arg-type]
        pods=p,
        poller=poller,
        metrics=Metrics(),
        sources=[bindings],
        now=lambda: NOW,
    )
    key = f"default/{last.metadata.name}"
    await gc.reconcile(key)  # asks for lb-a's health
    await poller.poll()
    assert await gc.reconcile(key) is None
    [(_, body)] = client.patches
    assert body["status"]["conditions"][0]["reason"] == gate.HEALTHY


def versioned(text: str) -> VersionCache:
    major, minor = text.split(".")

    async def fetch() -> ServerVersion:
        return ServerVersion(major=major, minor=minor, git_version=f"v{text}.0")

    return VersionCache(fetch)


@pytest.mark.parametrize(("version", "bound"), [("1.11", False), ("1.12", True), ("1.30", True)])
async def test_on_a_cluster_older_than_1_12_a_direct_service_expects_no_pod_backend(
    version: str, bound: bool
) -> None:
    # Below 1.12 the Service controller binds a direct Service through its nodes: a gate that
    # expected the pod's own target would hold it until the timeout.
    p = pod()
    s, e, ps = stores([service()], [endpoint_slice("web", [("web-1", "10.0.0.5")])], [p])
    bindings = ServiceBindings(services=s, slices=e, pods=ps, version=versioned(version))
    await bindings.refresh()
    found = bindings.expectations(p)
    assert bool(found) is bound
    [svc] = s.items()
    problems = {problem.reason for problem in bindings.desired(svc).problems}
    assert ("DirectAccessUnsupported" in problems) is not bound

    client = FakeClient()
    gc = GateController(
        client=client,  # type: ignore[arg-type]
        recorder=FakeRecorder(),  # type: ignore[arg-type]
        pods=ps,
        poller=HealthPoller(FakeCloud(), clock=Clock()),  # type: ignore[arg-type]
        metrics=Metrics(),
        sources=[ServiceBindings(services=s, slices=e, pods=ps, version=versioned(version))],
        now=lambda: NOW,
    )
    result = await gc.reconcile("default/web-1")
    if bound:
        assert result == gate.RECHECK_PERIOD and client.patches == []  # waits for the CLB
    else:
        assert result is None
        [(_, body)] = client.patches
        assert body["status"]["conditions"][0]["reason"] == gate.NO_BACKEND


def test_the_gate_and_the_service_controller_share_one_model_path() -> None:
    # The same function builds the model's inputs for both (no second copy to drift).
    import inspect

    from directlb.controllers import service as service_controller

    assert "desired_from_caches(" in inspect.getsource(service_controller.ServiceController)
    assert "desired_from_caches(" in inspect.getsource(ServiceBindings)


# --- a CLB shared by several objects of ours (ListenerConflict) ---------------------------------

SHARED = "lb-s"
TCP81 = ListenerKey(ListenerProtocol.TCP, 81)


def adopting(
    name: str,
    *,
    created: str,
    ports: Sequence[tuple[int, int | str]] = ((80, 8080),),
    app: str = "web",
    recorded: str = "",
) -> Any:
    """A direct Service adopting the CLB ``SHARED`` (``ports``: port, targetPort), created at
    ``created``; ``recorded``: the listener keys it records there (``TCP:80,TCP:81``)."""
    annotations = {
        "service.cloud.tencent.com/direct-access": "true",
        "service.kubernetes.io/tke-existed-lbid": SHARED,
        LB_ID_ANNOTATION: SHARED,
    }
    if recorded:
        annotations[LISTENERS_ANNOTATION] = f"{SHARED}={recorded}"
    return from_dict(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": name,
                "namespace": "default",
                "uid": f"svc-{name}",
                "resourceVersion": "1",
                "annotations": annotations,
                "creationTimestamp": created,
            },
            "spec": {
                "type": "LoadBalancer",
                "selector": {"app": app},
                "ports": [
                    {"name": f"p{port}", "port": port, "protocol": "TCP", "targetPort": target}
                    for port, target in ports
                ],
            },
        }
    )


EARLY, LATE = "2026-01-01T11:00:00Z", "2026-01-01T11:30:00Z"


def shared_source(*services: Any, pods: Sequence[Any] = ()) -> ServiceBindings:
    """ServiceBindings over ``services`` with the Service controller's listener claims."""
    pods = list(pods) or [pod()]
    listed = [endpoint_slice("web", [(p.metadata.name, p.status.podIP) for p in pods])]
    s, e, p = stores(services, listed, pods)
    claims = ListenerClaims()
    claims.watch(SERVICE_KIND, s)
    return ServiceBindings(services=s, slices=e, pods=p, claims=claims)


async def test_a_service_refused_its_only_listener_expects_nothing_of_its_pods() -> None:
    """An earlier Service holds TCP:80 on the shared CLB: the Service controller never syncs
    that listener for ``web``, so ``web``'s pods are no backend of it and their gates turn
    True at once (NoLoadBalancerBackend), not after the gate's timeout."""
    holder = adopting("aaa", created=EARLY, app="other", recorded="TCP:80")
    web = adopting("web", created=LATE)
    assert shared_source(web).expectations(pod()) == [  # alone, it would bind the pod
        Expectation(SVC, bindings=(bind(lb=SHARED, port=8080),))
    ]
    source = shared_source(holder, web)
    assert source.expectations(pod()) == []
    assert source.expectations(pod(containers_ready=False)) == []  # nothing to wait for

    client, cloud = FakeClient(), FakeCloud()
    gc = GateController(
        client=client,  # type: ignore[arg-type]
        recorder=FakeRecorder(),  # type: ignore[arg-type]
        pods=source.pods,
        poller=HealthPoller(cloud, clock=Clock()),  # type: ignore[arg-type]
        metrics=Metrics(),
        sources=[source],
        now=lambda: NOW,
    )
    assert await gc.reconcile("default/web-1") is None
    [(_, body)] = client.patches
    [condition] = body["status"]["conditions"]
    assert (condition["status"], condition["reason"]) == ("True", gate.NO_BACKEND)
    assert cloud.calls == []  # no health to wait for


def test_a_service_refused_one_listener_expects_the_others_only() -> None:
    holder = adopting("aaa", created=EARLY, app="other", recorded="TCP:80")
    web = adopting("web", created=LATE, ports=((80, 8080), (81, 8080)))
    [expectation] = shared_source(holder, web).expectations(pod())
    assert expectation == Expectation(SVC, bindings=(bind(lb=SHARED, listener=TCP81, port=8080),))
    # A pod only a refused listener would carry (the other's named targetPort does not
    # resolve for it) is no backend either.
    named = adopting("web", created=LATE, ports=((80, 8080), (81, "metrics")))
    assert shared_source(holder, named).expectations(pod()) == []


def test_the_earlier_service_keeps_expecting_a_listener_a_later_one_records() -> None:
    """The race where the later Service recorded the port first: the earlier one takes it at
    its sync, so its pods expect it; the later one's pods no longer do."""
    later = adopting("zzz", created=LATE, app="other", recorded="TCP:80")
    web = adopting("web", created=EARLY, recorded="")
    [expectation] = shared_source(later, web).expectations(pod())
    assert expectation.bindings == (bind(lb=SHARED, port=8080),)
    holder = adopting("web", created=EARLY, recorded="TCP:80")
    other_pod = pod("other-1", ip="10.0.0.9", labels={"app": "other"}, uid="uid-9")
    source = shared_source(holder, adopting("zzz", created=LATE, app="other"), pods=[other_pod])
    assert source.expectations(other_pod) == []


def ingress_source(synced: SyncedIngress | None = None) -> IngressBindings:
    """IngressBindings over one direct Ingress ``default/shop`` routing to Service ``web``
    (which selects ``app: web``), last synced as ``synced``."""
    services: Store[Any] = Store()
    services.add_index(BY_NAMESPACE, index_by_namespace)
    services.put(service())
    ingresses: Store[Any] = Store()
    ingresses.add_index(BY_BACKEND_SERVICE, ingress_backend_services)
    web = {"service": {"name": "web", "port": {"number": 80}}}
    route = {"path": "/", "pathType": "Prefix", "backend": web}
    ingresses.put(
        from_dict(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "Ingress",
                "metadata": {
                    "name": "shop",
                    "namespace": "default",
                    "annotations": {"ingress.cloud.tencent.com/direct-access": "true"},
                },
                "spec": {
                    "ingressClassName": "qcloud",
                    "rules": [{"host": "a.com", "http": {"paths": [route]}}],
                },
            }
        )
    )
    classes: Store[Any] = Store()
    classes.put(
        from_dict(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "IngressClass",
                "metadata": {"name": "qcloud"},
                "spec": {"controller": "directlb.io/ingress-controller"},
            }
        )
    )
    controller = IngressController.__new__(IngressController)
    controller.ingresses, controller.classes = ingresses, classes
    controller.synced = {"default/shop": synced} if synced is not None else {}
    return IngressBindings(controller=controller, services=services)


def routing(protocol: ListenerProtocol, port: int, *ips: str) -> Listener:
    targets = tuple(Target(ip, 8080) for ip in ips)
    return Listener(protocol=protocol, port=port, rules=(Rule("a.com", "/", targets=targets),))


def test_an_ingress_refused_a_listener_expects_no_pod_on_it() -> None:
    """The Ingress controller's sync refused HTTP:80 (an earlier object holds it on the shared
    CLB): its pods expect HTTPS:443 only, and a pod nothing else carries expects nothing."""
    http = routing(ListenerProtocol.HTTP, 80, "10.0.0.5", "10.0.0.6")
    https = routing(ListenerProtocol.HTTPS, 443, "10.0.0.5")

    def synced(listeners: tuple[Listener, ...], refused: tuple[Listener, ...]) -> SyncedIngress:
        return SyncedIngress(
            lb_id=SHARED,
            direct=True,
            listeners=listeners,
            services=frozenset({"web"}),
            asked_direct=True,
            refused=refused,
        )

    source = ingress_source(synced((https,), (http,)))
    [bound] = source.expectations(pod())
    assert [b.listener for b in bound.bindings] == [https.key]
    assert source.expectations(pod("web-2", ip="10.0.0.6", uid="u2")) == []  # on HTTP:80 only
    [unbound] = source.expectations(pod("web-3", ip="10.0.0.7", uid="u3"))
    assert unbound.waiting is not None  # on no listener yet: it waits to be bound
    # Every listener refused: no pod is ever bound, whether a target yet or not.
    everything = ingress_source(synced((), (http, https)))
    for p in (pod(), pod("web-3", ip="10.0.0.7", uid="u3", containers_ready=False)):
        assert everything.expectations(p) == []
    assert decide([], {}).reason == gate.NO_BACKEND


class SharingOwner:
    """The Ingress controller's LoadBalancerOwner on a shared CLB whose sync refuses HTTP:80
    (an object of ours created earlier records it there)."""

    async def add_finalizer(self, obj: Any) -> None:
        return None

    def report(self, obj: Any, problems: Any) -> None:
        return None

    async def converge(self, obj: Any, *, listeners: Any, synced: Any, **_: Any) -> None:
        lb = LoadBalancer(
            lb_id=SHARED, name="shared", type=LoadBalancerType.OPEN, vips=("1.2.3.4",)
        )
        synced(tuple(listener for listener in listeners(lb) if listener.port != 80))


async def test_the_ingress_controller_remembers_what_its_sync_refused() -> None:
    """What the gate reads of an Ingress is what its last sync left out, as the sync decided
    it: the refused HTTP:80 was its only listener, so its pods expect nothing."""
    source = ingress_source()
    controller = source.controller
    controller.owner = SharingOwner()  # type: ignore[assignment]
    controller.on_synced = None
    [svc] = source.services.items()
    listed = endpoint_slice("web", [("web-1", "10.0.0.5")], ready=True)

    async def inputs(view: Any, classes: Any) -> dict[str, Any]:
        return {
            "classes": classes,
            "services": [service_view(svc)],
            "endpoints": {"web": endpoint_views(listed)},
            "pods": [pod_view(pod())],
            "cluster_version": None,
        }

    controller._inputs = inputs  # type: ignore[method-assign]
    assert await controller.reconcile("default/shop") is None
    synced = controller.synced["default/shop"]
    assert (synced.listeners, [str(li.key) for li in synced.refused]) == ((), ["HTTP:80"])
    assert synced.refused_ips == {"10.0.0.5"}
    assert source.expectations(pod()) == []


def test_containers_ready_since() -> None:
    assert containers_ready_since(pod()) == datetime(2026, 1, 1, 11, 59, tzinfo=UTC)
    assert containers_ready_since(pod(containers_ready=False)) is None


def test_current_condition_reads_ours() -> None:
    ours = {
        "type": GATE,
        "status": "False",
        "reason": "R",
        "message": "M",
        "lastTransitionTime": "2026-01-01T11:00:00Z",
    }
    assert current_condition(pod(conditions=[ours])) == Current(
        "False", "R", "M", "2026-01-01T11:00:00Z"
    )
    assert current_condition(pod()) == Current()


# --- the health poller -------------------------------------------------------------------------


class FakeCloud:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.health: dict[str, tuple[TargetHealth, ...]] = {}
        self.fail = False

    async def target_health(self, lb_ids: Sequence[str]) -> dict[str, tuple[TargetHealth, ...]]:
        self.calls.append(list(lb_ids))
        if self.fail:
            raise RuntimeError("cloud down")
        return {lb: self.health.get(lb, ()) for lb in lb_ids}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_the_poller_reads_every_wanted_clb_in_one_call_at_most_once_a_period() -> None:
    cloud, clock = FakeCloud(), Clock()
    woken: list[set[str]] = []
    wakes: list[int] = []
    poller = HealthPoller(cloud, clock=clock, on_change=woken.append, wake=lambda: wakes.append(1))  # type: ignore[arg-type]
    assert await poller.poll() is None and cloud.calls == []  # nothing wanted: no call
    poller.want("default/a", frozenset({"lb-a"}))
    poller.want("default/b", frozenset({"lb-a", "lb-b"}))
    assert len(wakes) == 2  # CLBs never read: poll now
    delay = await poller.poll()
    assert cloud.calls == [["lb-a", "lb-b"]] and delay == pytest.approx(2.0)
    assert woken == [{"default/a", "default/b"}]  # first report: a change for everyone
    assert poller.health(["lb-a", "lb-b"]) == {"lb-a": (), "lb-b": ()}

    clock.now += 1.0
    assert await poller.poll() == pytest.approx(1.0) and len(cloud.calls) == 1  # not due yet

    clock.now += 1.0
    b = bind(lb="lb-b")
    cloud.health["lb-b"] = (alive(b),)
    await poller.poll()
    assert cloud.calls[-1] == ["lb-a", "lb-b"]
    assert woken[-1] == {"default/b"}  # only lb-b changed

    poller.drop("default/b")
    clock.now += 2.0
    await poller.poll()
    assert cloud.calls[-1] == ["lb-a"]  # only what pending pods wait on
    poller.drop("default/a")
    assert await poller.poll() is None and poller.health(["lb-a"]) == {}


async def test_a_failing_cloud_keeps_the_period_and_ages_the_reports_out() -> None:
    cloud, clock = FakeCloud(), Clock()
    poller = HealthPoller(cloud, clock=clock)  # type: ignore[arg-type]
    poller.want("default/a", frozenset({"lb-a"}))
    await poller.poll()
    cloud.fail = True
    for _ in range(4):
        clock.now += 2.0
        assert await poller.poll() == 2.0
    assert poller.failures == 4
    assert poller.has(["lb-a"]) and poller.health(["lb-a"]) == {}  # too old to trust


# --- the reconcile -----------------------------------------------------------------------------


class FakeClient:
    def __init__(self) -> None:
        self.patches: list[tuple[str, dict[str, Any]]] = []
        self.refuse: int | None = None
        self.failures: list[BaseException] = []  # raised by the next patches, in order

    async def patch(self, resource: Any, name: str, body: dict[str, Any], **kwargs: Any) -> Any:
        if self.failures:
            raise self.failures.pop(0)
        if self.refuse is not None:
            raise ApiError(status=Status(code=self.refuse, message="refused"))
        self.patches.append((name, body))
        return None


class FakeRecorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []
        self.messages: list[str] = []

    def event(self, obj: Any, *, type: str, reason: str, message: str) -> None:
        self.events.append((obj.metadata.name, type, reason))
        self.messages.append(message)


def controller(
    p: Any, *, svc: Any | None = None, timeout: float = 600.0, ready_ip: str | None = None
) -> tuple[GateController, FakeClient, FakeCloud, FakeRecorder]:
    services = [svc] if svc is not None else [service()]
    bindings = source(services, [endpoint_slice("web", [("web-1", "10.0.0.5")])], [p])
    cloud = FakeCloud()
    if ready_ip:
        cloud.health["lb-a"] = (alive(bind(ip=ready_ip, port=8080)),)
    poller = HealthPoller(cloud, clock=Clock())  # type: ignore[arg-type]
    client, recorder = FakeClient(), FakeRecorder()
    gc = GateController(
        client=client,  # type: ignore[arg-type]
        recorder=recorder,  # type: ignore[arg-type]
        pods=bindings.pods,
        poller=poller,
        metrics=Metrics(),
        sources=[bindings],
        timeout=timeout,
        now=lambda: NOW,
    )
    return gc, client, cloud, recorder


async def test_reconcile_waits_for_health_then_writes_once() -> None:
    p = pod()
    gc, client, _, _ = controller(p)
    assert await gc.reconcile("default/web-1") == 2.0 and client.patches == []  # no report yet
    await gc.poller.poll()
    assert await gc.reconcile("default/web-1") == 2.0
    [(name, body)] = client.patches
    [condition] = body["status"]["conditions"]
    assert (name, condition["status"], condition["reason"]) == (
        "web-1",
        "False",
        gate.NOT_REGISTERED,
    )
    assert body["metadata"] == {"uid": "uid-1"}
    # The cache has not caught up with our write yet, even through a version someone else
    # wrote meanwhile: no second patch of the same decision.
    await gc.reconcile("default/web-1")
    gc.pods.put(pod(rv="2"))
    await gc.reconcile("default/web-1")
    assert len(client.patches) == 1
    # The cache caught up: nothing changed, nothing written.
    gc.pods.put(pod(rv="3", conditions=[condition]))
    await gc.reconcile("default/web-1")
    assert len(client.patches) == 1
    assert gc.metrics.gate_patches.labels("unchanged")._value.get() == 3
    # Someone changed our condition afterwards: it is written again.
    gc.pods.put(pod(rv="4", conditions=[{**condition, "message": "tampered"}]))
    await gc.reconcile("default/web-1")
    assert len(client.patches) == 2


async def test_a_write_the_cache_never_shows_is_sent_again_after_a_while() -> None:
    gc, client, _, _ = controller(pod())
    clock = Clock()
    gc.monotonic = clock
    await gc.reconcile("default/web-1")  # asks for the CLB's health
    await gc.poller.poll()
    await gc.reconcile("default/web-1")
    await gc.reconcile("default/web-1")
    assert len(client.patches) == 1
    clock.now += gate.CACHE_LAG
    await gc.reconcile("default/web-1")
    assert len(client.patches) == 2


async def test_reconcile_sets_true_once_healthy_and_forgets_the_pod() -> None:
    gc, client, _, _ = controller(pod(), ready_ip="10.0.0.5")
    gc.poller.want("default/web-1", frozenset({"lb-a"}))
    await gc.poller.poll()
    assert await gc.reconcile("default/web-1") is None
    # Re-checked before the cache shows the write: nothing written or counted twice.
    assert await gc.reconcile("default/web-1") is None
    [(_, body)] = client.patches
    assert body["status"]["conditions"][0]["reason"] == gate.HEALTHY
    assert gc.poller.pending == 0
    assert gc.metrics.gate_flip_seconds._sum.get() == pytest.approx(60.0)  # from 11:59 to 12:00
    assert gc.metrics.gate_transitions.labels("True", gate.HEALTHY)._value.get() == 1


async def test_reconcile_times_out_with_a_warning() -> None:
    gc, client, _, recorder = controller(pod(), timeout=30)
    await gc.poller.poll()
    gc.poller.want("default/web-1", frozenset({"lb-a"}))
    await gc.poller.poll()
    assert await gc.reconcile("default/web-1") is None
    assert client.patches[-1][1]["status"]["conditions"][0]["reason"] == gate.TIMEOUT
    assert recorder.events == [("web-1", "Warning", gate.TIMEOUT_EVENT)]
    assert gc.metrics.gate_timeouts._value.get() == 1


async def test_the_recheck_never_overshoots_the_timeout() -> None:
    gc, _, _, _ = controller(pod(), timeout=60.5)  # waited 60 s already
    gc.poller.want("default/web-1", frozenset({"lb-a"}))
    await gc.poller.poll()
    assert await gc.reconcile("default/web-1") == pytest.approx(0.5)


async def test_pods_no_backend_selects_are_released_at_once() -> None:
    gc, client, cloud, _ = controller(pod(), svc=service(selector={"app": "other"}))
    assert await gc.reconcile("default/web-1") is None
    assert client.patches[0][1]["status"]["conditions"][0]["reason"] == gate.NO_BACKEND
    assert cloud.calls == []


async def test_pods_without_the_gate_or_already_true_are_left_alone() -> None:
    true = {"type": GATE, "status": "True", "reason": gate.HEALTHY, "message": "ok"}
    for p in (pod(gated=False), pod(conditions=[true])):
        gc, client, _, _ = controller(p)
        assert await gc.reconcile("default/web-1") is None
        assert client.patches == []


async def test_a_refused_patch_is_stale_not_an_error() -> None:
    gc, client, _, _ = controller(pod(), svc=service(selector={"app": "other"}))
    client.refuse = 422  # the pod was recreated: another UID
    assert await gc.reconcile("default/web-1") is None
    assert gc.metrics.gate_patches.labels("stale")._value.get() == 1


@pytest.mark.parametrize(
    "failure",
    [
        httpx2.ConnectError("connection reset by peer"),
        ApiError(status=Status(code=503, message="etcdserver: leader changed")),
        ApiError(status=Status(code=429, message="too many requests")),
    ],
    ids=["network", "503", "429"],
)
async def test_a_true_decision_whose_write_failed_is_retried_after_the_period(
    failure: BaseException,
) -> None:
    gc, client, _, _ = controller(pod(), ready_ip="10.0.0.5")
    gc.poller.want("default/web-1", frozenset({"lb-a"}))
    await gc.poller.poll()
    client.failures.append(failure)
    # Not written: requeued after the fixed period (not dropped until the informer's resync,
    # not the exponential backoff of an exception), still polled meanwhile.
    assert await gc.reconcile("default/web-1") == gate.RECHECK_PERIOD
    assert client.patches == [] and gc.poller.pending == 1
    assert gc.metrics.gate_patches.labels("error")._value.get() == 1
    assert await gc.reconcile("default/web-1") is None
    [(_, body)] = client.patches
    assert body["status"]["conditions"][0]["reason"] == gate.HEALTHY
    assert gc.poller.pending == 0
    assert gc.metrics.gate_transitions.labels("True", gate.HEALTHY)._value.get() == 1


async def test_a_failed_timeout_write_is_retried_at_the_period_not_in_a_hot_loop() -> None:
    gc, client, _, recorder = controller(pod(), timeout=30)  # waited 60 s already
    gc.poller.want("default/web-1", frozenset({"lb-a"}))
    await gc.poller.poll()
    client.failures.append(httpx2.ReadTimeout("timed out"))
    assert await gc.reconcile("default/web-1") == gate.RECHECK_PERIOD
    assert recorder.events == []  # the flip happened only once it was written
    assert await gc.reconcile("default/web-1") is None
    assert client.patches[-1][1]["status"]["conditions"][0]["reason"] == gate.TIMEOUT
    assert recorder.events == [("web-1", "Warning", gate.TIMEOUT_EVENT)]


async def test_a_request_the_api_rejects_as_wrong_still_raises() -> None:
    gc, client, _, _ = controller(pod(), ready_ip="10.0.0.5")
    gc.poller.want("default/web-1", frozenset({"lb-a"}))
    await gc.poller.poll()
    client.failures.append(ApiError(status=Status(code=403, message="forbidden")))
    with pytest.raises(ApiError):
        await gc.reconcile("default/web-1")


async def test_a_failed_write_still_turns_the_gate_true_promptly_through_the_queue() -> None:
    # The work queue and its workers as the runtime runs them: the first status patch fails
    # (the API server restarting), and the pod's gate is True one period later, not at the
    # informer's resync minutes later.
    gc, client, _, _ = controller(pod(), ready_ip="10.0.0.5")
    gc.period = 0.05
    gc.poller.want("default/web-1", frozenset({"lb-a"}))
    await gc.poller.poll()
    client.failures.append(httpx2.ConnectError("connection refused"))
    written = asyncio.Event()
    send = client.patch

    async def patch(resource: Any, name: str, body: dict[str, Any], **kwargs: Any) -> Any:
        answer = await send(resource, name, body, **kwargs)
        written.set()
        return answer

    client.patch = patch  # type: ignore[method-assign]
    queue: WorkQueue[str] = WorkQueue(name="gate")
    gc.enqueue = queue.add
    workers = asyncio.create_task(run_workers(queue, gc.reconcile, workers=1))
    try:
        gc.on_pod(Event("ADDED", gc.pods.get("default/web-1")))
        await asyncio.wait_for(written.wait(), timeout=2.0)
    finally:
        queue.shut_down()
        await workers
    [(_, body)] = client.patches
    assert body["status"]["conditions"][0]["status"] == "True"
    assert gc.metrics.gate_patches.labels("error")._value.get() == 1


async def test_unreachable_pods_get_a_warning_event_once() -> None:
    gc, client, _, recorder = controller(pod(eni=False))
    await gc.reconcile("default/web-1")
    await gc.reconcile("default/web-1")
    assert [c["reason"] for _, b in client.patches for c in b["status"]["conditions"]] == [
        gate.NOT_REACHABLE
    ]
    assert recorder.events == [("web-1", "Warning", gate.NOT_REACHABLE)]


async def test_pending_pods_are_tracked_per_namespace() -> None:
    gc, _, _, _ = controller(pod())
    queued: list[str] = []
    gc.enqueue = queued.append
    gc.on_pod(Event("ADDED", pod()))
    gc.on_pod(Event("ADDED", pod("plain", gated=False)))
    gc.enqueue_namespace("default")
    assert queued == ["default/web-1", "default/web-1"]
    true = {"type": GATE, "status": "True"}
    gc.on_pod(Event("MODIFIED", pod(conditions=[true])))  # done: enqueued once more to forget
    gc.enqueue_namespace("default")
    assert queued == ["default/web-1"] * 3


def renamed(p: Any, name: str, created: str = "2026-01-01T12:00:00Z") -> Any:
    raw = p.to_dict()
    meta = {**raw["metadata"], "name": name, "uid": f"uid-{name}", "creationTimestamp": created}
    return from_dict({**raw, "metadata": meta})


def unprotected(pods: Sequence[Any]) -> tuple[gate.UnprotectedPods, FakeRecorder, Store[Any]]:
    bindings = source([service()], [], pods)
    recorder = FakeRecorder()
    check = gate.UnprotectedPods(
        services=bindings.services,
        pods=bindings.pods,
        bindings=bindings,
        recorder=recorder,  # type: ignore[arg-type]
    )
    return check, recorder, bindings.pods


async def test_every_selected_pod_without_the_gate_is_reported_whatever_its_age() -> None:
    """Created before the Service (11:58, the Service 11:59:30) or after it, while the webhook
    was down (12:00): both lack the gate, both are named. Gated pods are not."""
    old = pod("old", gated=False)
    check, recorder, _ = unprotected([old, renamed(old, "later"), pod()])
    await check.reconcile("default/web")
    await check.reconcile("default/web")
    assert recorder.events == [("web", "Warning", gate.UNPROTECTED_EVENT)]
    [message] = recorder.messages
    assert message.startswith("2 pod(s) selected by this direct-access Service have no")
    assert "(later, old)" in message and "webhook was unavailable" in message
    assert "not protected until they are recreated" in message


async def test_reported_again_only_when_a_pod_not_reported_yet_joins() -> None:
    first = pod("a", gated=False)
    check, recorder, pods = unprotected([first])
    await check.reconcile("default/web")
    assert len(recorder.events) == 1
    pods.put(renamed(first, "b"))  # a new one without the gate: a new Event
    await check.reconcile("default/web")
    assert len(recorder.events) == 2 and recorder.messages[-1].startswith("2 pod(s)")
    pods.remove("default/a")  # the set shrinks (being recreated): nothing new to say
    await check.reconcile("default/web")
    await check.reconcile("default/web")
    assert len(recorder.events) == 2
    pods.remove("default/b")  # all protected now: forgotten, so a later one is reported
    await check.reconcile("default/web")
    pods.put(renamed(first, "c"))
    await check.reconcile("default/web")
    assert len(recorder.events) == 3 and "(c)" in recorder.messages[-1]


async def test_many_pods_are_counted_and_a_few_named() -> None:
    base = pod("p", gated=False)
    check, recorder, _ = unprotected([renamed(base, f"p{i:02}") for i in range(12)])
    await check.reconcile("default/web")
    [message] = recorder.messages
    assert message.startswith("12 pod(s)") and "(p00, p01, p02, p03, p04 and 7 more)" in message


async def test_only_changes_of_pods_without_the_gate_recheck_their_services() -> None:
    check, _, _ = unprotected([])
    assert check.services_for_pod(Event("ADDED", pod(gated=True))) == set()
    assert check.services_for_pod(Event("ADDED", pod(gated=False))) == {"default/web"}
    other = pod(gated=False, labels={"app": "other"})
    assert check.services_for_pod(Event("ADDED", other)) == set()
