"""Service allocation, EndpointSlice building and kube-proxy's choices, as pure functions."""

from __future__ import annotations

import random
from typing import Any

import pytest

from directlb.sim.cluster.config import ClusterConfig
from directlb.sim.cluster.network import (
    CONTROLLER_NAME,
    HEADLESS_LABEL,
    MANAGED_BY_LABEL,
    SERVICE_NAME_LABEL,
    InUse,
    allocate_service,
    in_use,
    pod_to_endpoint,
    reconcile_slices,
)
from directlb.sim.cluster.proxy import (
    CLUSTER_IP,
    HEALTH,
    NODE_PORT,
    backends,
    desired_listeners,
    health_response,
    local_ready_endpoints,
    usable,
)
from directlb.sim.contracts import StatusError

CONFIG = ClusterConfig()
Obj = dict[str, Any]


def service(name: str = "web", *, type_: str = "ClusterIP", **spec: Any) -> Obj:
    body: Obj = {
        "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}"},
        "spec": {
            "type": type_,
            "selector": {"app": name},
            "ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}],
            **spec,
        },
    }
    if type_ in ("NodePort", "LoadBalancer"):
        body["spec"].setdefault("externalTrafficPolicy", "Cluster")
    return body


def allocate(obj: Obj, old: Obj | None = None, used: InUse | None = None, seed: int = 1) -> Obj:
    allocate_service(obj, old, used=used or InUse(), config=CONFIG, rng=random.Random(seed))
    return obj


# ----- allocation -------------------------------------------------------------------------


def test_cluster_ip_from_the_service_cidr() -> None:
    spec = allocate(service())["spec"]
    assert spec["clusterIP"].startswith("127.96.")
    assert spec["clusterIPs"] == [spec["clusterIP"]]
    assert "nodePort" not in spec["ports"][0]


def test_allocated_cluster_ips_are_unique() -> None:
    used: set[str] = set()
    for index in range(200):
        ip = allocate(service(f"s{index}"), used=InUse(frozenset(used)), seed=0)["spec"][
            "clusterIP"
        ]
        assert ip not in used
        used.add(ip)


def test_headless_stays_headless() -> None:
    spec = allocate(service(clusterIP="None"))["spec"]
    assert spec["clusterIP"] == "None" and spec["clusterIPs"] == ["None"]


def test_external_name_gets_nothing() -> None:
    spec = allocate(service(type_="ExternalName", externalName="example.com", ports=[]))["spec"]
    assert "clusterIP" not in spec


def test_requested_cluster_ip_honoured_or_refused() -> None:
    spec = allocate(service(clusterIP="127.96.3.4"))["spec"]
    assert spec["clusterIPs"] == ["127.96.3.4"]
    with pytest.raises(StatusError) as taken:
        allocate(service(clusterIP="127.96.3.4"), used=InUse(frozenset({"127.96.3.4"})))
    assert taken.value.code == 422
    assert "provided IP is already allocated" in taken.value.message
    with pytest.raises(StatusError) as outside:
        allocate(service(clusterIP="10.0.0.1"))
    assert "The range of valid IPs is 127.96.0.0/16" in outside.value.message


def test_node_ports_for_node_port_and_load_balancer() -> None:
    for kind in ("NodePort", "LoadBalancer"):
        ports = allocate(service(type_=kind))["spec"]["ports"]
        assert 30000 <= ports[0]["nodePort"] <= 32767
    spec = allocate(service(type_="LoadBalancer", allocateLoadBalancerNodePorts=False))["spec"]
    assert "nodePort" not in spec["ports"][0]


def test_tcp_and_udp_on_one_port_share_a_node_port() -> None:
    ports = [
        {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
        {"name": "dns-udp", "port": 53, "protocol": "UDP", "targetPort": 53},
        {"name": "web", "port": 80, "protocol": "TCP", "targetPort": 80},
    ]
    allocated = allocate(service(type_="NodePort", ports=ports))["spec"]["ports"]
    assert allocated[0]["nodePort"] == allocated[1]["nodePort"] != allocated[2]["nodePort"]


def test_requested_node_port_honoured_duplicate_refused_like_the_real_server() -> None:
    ports = [{"port": 80, "protocol": "TCP", "targetPort": 80, "nodePort": 30080}]
    assert allocate(service(type_="NodePort", ports=ports))["spec"]["ports"][0]["nodePort"] == 30080
    with pytest.raises(StatusError) as taken:
        allocate(service(type_="NodePort", ports=ports), used=InUse(node_ports=frozenset({30080})))
    assert taken.value.code == 422
    assert taken.value.message == (
        'Service "web" is invalid: spec.ports[0].nodePort: Invalid value: 30080: '
        "provided port is already allocated"
    )
    with pytest.raises(StatusError) as outside:
        ports[0]["nodePort"] = 29999
        allocate(service(type_="NodePort", ports=ports))
    assert outside.value.message.endswith(
        "provided port is not in the valid range. The range of valid ports is 30000-32767"
    )


def test_node_port_on_cluster_ip_is_forbidden() -> None:
    ports = [{"port": 80, "protocol": "TCP", "targetPort": 80, "nodePort": 30080}]
    with pytest.raises(StatusError) as error:
        allocate(service(ports=ports))
    assert "may not be used when `type` is 'ClusterIP'" in error.value.message


def test_health_check_node_port_only_for_local_load_balancers() -> None:
    local = allocate(service(type_="LoadBalancer", externalTrafficPolicy="Local"))["spec"]
    assert 30000 <= local["healthCheckNodePort"] <= 32767
    assert local["healthCheckNodePort"] != local["ports"][0]["nodePort"]
    assert "healthCheckNodePort" not in allocate(service(type_="LoadBalancer"))["spec"]
    with pytest.raises(StatusError) as error:
        allocate(service(type_="NodePort", healthCheckNodePort=31000))
    assert error.value.code == 422
    with pytest.raises(StatusError) as taken:
        allocate(
            service(type_="LoadBalancer", externalTrafficPolicy="Local", healthCheckNodePort=31000),
            used=InUse(node_ports=frozenset({31000})),
        )
    assert taken.value.code == 500 and "already allocated" in taken.value.message


def test_update_keeps_what_the_client_left_out() -> None:
    old = allocate(service(type_="LoadBalancer", externalTrafficPolicy="Local"))
    new = service(type_="LoadBalancer", externalTrafficPolicy="Local")
    allocate(new, old, seed=99)
    for key in ("clusterIP", "clusterIPs", "healthCheckNodePort"):
        assert new["spec"][key] == old["spec"][key]
    assert new["spec"]["ports"][0]["nodePort"] == old["spec"]["ports"][0]["nodePort"]


def test_cluster_ip_is_immutable() -> None:
    old = allocate(service())
    with pytest.raises(StatusError) as error:
        allocate(service(clusterIP="127.96.9.9"), old)
    assert "may not change once set" in error.value.message


def test_type_change_to_cluster_ip_drops_node_ports_and_health_port() -> None:
    old = allocate(service(type_="LoadBalancer", externalTrafficPolicy="Local"))
    new: Obj = {"metadata": dict(old["metadata"]), "spec": dict(old["spec"], type="ClusterIP")}
    new["spec"]["ports"] = [dict(p) for p in old["spec"]["ports"]]
    allocate(new, old)
    assert "nodePort" not in new["spec"]["ports"][0]
    assert "healthCheckNodePort" not in new["spec"]
    assert "externalTrafficPolicy" not in new["spec"]
    assert new["spec"]["clusterIP"] == old["spec"]["clusterIP"]


def test_in_use_reads_every_address() -> None:
    a = allocate(service("a", type_="LoadBalancer", externalTrafficPolicy="Local"))
    used = in_use([a, service("b", clusterIP="None")])
    assert used.cluster_ips == {a["spec"]["clusterIP"]}
    assert used.node_ports == {a["spec"]["ports"][0]["nodePort"], a["spec"]["healthCheckNodePort"]}


def test_small_ranges_fill_up_with_an_internal_error() -> None:
    config = ClusterConfig(node_port_range=(30000, 30001))
    used = InUse(node_ports=frozenset({30000, 30001}))
    with pytest.raises(StatusError) as error:
        allocate_service(
            service(type_="NodePort"), None, used=used, config=config, rng=random.Random(0)
        )
    assert error.value.code == 500 and "range is full" in error.value.message


# ----- EndpointSlices ------------------------------------------------------------------------


def node(name: str, zone: str = "zone-a") -> Obj:
    return {"metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": zone}}}


def pod(
    name: str,
    *,
    ip: str | None,
    node_name: str = "node-1",
    ready: bool = True,
    labels: dict[str, str] | None = None,
    terminating: bool = False,
    ports: list[Obj] | None = None,
) -> Obj:
    metadata: Obj = {
        "name": name,
        "namespace": "default",
        "uid": f"uid-{name}",
        "labels": labels if labels is not None else {"app": "web"},
    }
    if terminating:
        metadata["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    status: Obj = {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
    }
    if ip:
        status["podIP"] = ip
        status["podIPs"] = [{"ip": ip}]
    return {
        "metadata": metadata,
        "spec": {
            "nodeName": node_name,
            "containers": [{"name": "app", "ports": ports or []}],
        },
        "status": status,
    }


NODES = {"node-1": node("node-1"), "node-2": node("node-2", "zone-b")}


def test_endpoint_conditions_through_graceful_termination() -> None:
    svc = service()
    ready = pod_to_endpoint(pod("a", ip="127.17.0.1"), NODES["node-1"], svc)
    assert ready["conditions"] == {"ready": True, "serving": True, "terminating": False}
    going = pod_to_endpoint(pod("a", ip="127.17.0.1", terminating=True), None, svc)
    assert going["conditions"] == {"ready": False, "serving": True, "terminating": True}
    gone = pod_to_endpoint(pod("a", ip="127.17.0.1", terminating=True, ready=False), None, svc)
    assert gone["conditions"] == {"ready": False, "serving": False, "terminating": True}
    published = service(publishNotReadyAddresses=True)
    assert pod_to_endpoint(pod("a", ip="127.17.0.1", ready=False), None, published)["conditions"][
        "ready"
    ]
    assert ready["nodeName"] == "node-1" and ready["zone"] == "zone-a"
    assert ready["targetRef"] == {
        "kind": "Pod",
        "namespace": "default",
        "name": "a",
        "uid": "uid-a",
    }


def test_new_slices_for_selected_pods_with_an_ip() -> None:
    pods = [
        pod("a", ip="127.17.0.1"),
        pod("b", ip="127.17.0.2", node_name="node-2", ready=False),
        pod("c", ip=None),
        pod("d", ip="127.17.0.4", labels={"app": "other"}),
        pod("e", ip="127.17.0.5", node_name="missing-node"),
    ]
    plan = reconcile_slices(service=service(), pods=pods, nodes=NODES, existing=[])
    assert not plan.update and not plan.delete
    [created] = plan.create
    assert created["metadata"]["generateName"] == "web-"
    assert created["metadata"]["labels"] == {
        SERVICE_NAME_LABEL: "web",
        MANAGED_BY_LABEL: CONTROLLER_NAME,
        HEADLESS_LABEL: "",  # the test Service has no clusterIP
    }
    assert created["metadata"]["ownerReferences"][0]["uid"] == "uid-web"
    assert created["metadata"]["ownerReferences"][0]["controller"] is True
    assert created["addressType"] == "IPv4"
    assert created["ports"] == [{"name": "", "port": 8080, "protocol": "TCP"}]
    assert [e["addresses"] for e in created["endpoints"]] == [["127.17.0.1"], ["127.17.0.2"]]
    assert created["endpoints"][1]["conditions"]["ready"] is False
    assert created["endpoints"][1]["zone"] == "zone-b"


def test_more_than_100_endpoints_make_two_slices() -> None:
    pods = [pod(f"p{i:03}", ip=f"127.17.1.{i}") for i in range(150)]
    plan = reconcile_slices(service=service(), pods=pods, nodes=NODES, existing=[])
    assert sorted(len(s["endpoints"]) for s in plan.create) == [50, 100]


def test_named_target_port_resolved_per_pod() -> None:
    svc = service(ports=[{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "web"}])
    pods = [
        pod("a", ip="127.17.0.1", ports=[{"name": "web", "containerPort": 8080}]),
        pod("b", ip="127.17.0.2", ports=[{"name": "web", "containerPort": 9090}]),
        pod("c", ip="127.17.0.3", ports=[{"name": "web", "containerPort": 8080}]),
        pod(
            "d", ip="127.17.0.4", ports=[{"name": "web", "containerPort": 8080, "protocol": "UDP"}]
        ),
    ]
    plan = reconcile_slices(service=svc, pods=pods, nodes=NODES, existing=[])
    by_port = {
        (s["ports"] or [{}])[0].get("port"): [e["targetRef"]["name"] for e in s["endpoints"]]
        for s in plan.create
    }
    assert by_port == {8080: ["a", "c"], 9090: ["b"], None: ["d"]}


def stored(obj: Obj, name: str) -> Obj:
    """What the API server would answer for a created slice."""
    result: Obj = {**obj, "metadata": {**obj["metadata"], "name": name, "uid": f"uid-{name}"}}
    return result


def test_reconcile_is_stable_and_updates_in_place() -> None:
    svc = service()
    pods = [pod("a", ip="127.17.0.1"), pod("b", ip="127.17.0.2")]
    [created] = reconcile_slices(service=svc, pods=pods, nodes=NODES, existing=[]).create
    existing = [stored(created, "web-abcde")]
    assert reconcile_slices(service=svc, pods=pods, nodes=NODES, existing=existing).empty
    pods[0] = pod("a", ip="127.17.0.1", terminating=True)
    plan = reconcile_slices(service=svc, pods=pods, nodes=NODES, existing=existing)
    [updated] = plan.update
    assert updated["metadata"]["name"] == "web-abcde" and not plan.create
    assert updated["endpoints"][0]["conditions"] == {
        "ready": False,
        "serving": True,
        "terminating": True,
    }


def test_no_endpoints_leave_one_placeholder() -> None:
    svc = service()
    [created] = reconcile_slices(
        service=svc, pods=[pod("a", ip="127.17.0.1")], nodes=NODES, existing=[]
    ).create
    plan = reconcile_slices(
        service=svc, pods=[], nodes=NODES, existing=[stored(created, "web-abcde")]
    )
    assert [s["metadata"]["name"] for s in plan.delete] == ["web-abcde"]
    [placeholder] = plan.create
    assert placeholder["endpoints"] == [] and placeholder["ports"] is None
    kept = reconcile_slices(
        service=svc, pods=[], nodes=NODES, existing=[stored(placeholder, "web-zzzzz")]
    )
    assert kept.empty


def test_slices_of_another_service_generation_are_replaced() -> None:
    svc = service()
    [created] = reconcile_slices(
        service=svc, pods=[pod("a", ip="127.17.0.1")], nodes=NODES, existing=[]
    ).create
    recreated = service()
    recreated["metadata"]["uid"] = "uid-new"
    plan = reconcile_slices(
        service=recreated,
        pods=[pod("a", ip="127.17.0.1")],
        nodes=NODES,
        existing=[stored(created, "web-old")],
    )
    assert len(plan.delete) == 1 and len(plan.create) == 1


def test_new_endpoints_fill_an_existing_slice() -> None:
    svc = service()
    [created] = reconcile_slices(
        service=svc, pods=[pod("a", ip="127.17.0.1")], nodes=NODES, existing=[]
    ).create
    plan = reconcile_slices(
        service=svc,
        pods=[pod("a", ip="127.17.0.1"), pod("b", ip="127.17.0.2")],
        nodes=NODES,
        existing=[stored(created, "web-abcde")],
    )
    [updated] = plan.update
    assert not plan.create and len(updated["endpoints"]) == 2


# ----- kube-proxy's choices ------------------------------------------------------------------


def slice_of(*endpoints: Obj, port: int = 8080, name: str = "") -> Obj:
    return {
        "addressType": "IPv4",
        "ports": [{"name": name, "port": port, "protocol": "TCP"}],
        "endpoints": list(endpoints),
    }


def endpoint(ip: str, node_name: str, *, ready: bool = True, terminating: bool = False) -> Obj:
    return {
        "addresses": [ip],
        "nodeName": node_name,
        "conditions": {"ready": ready, "serving": ready or terminating, "terminating": terminating},
    }


def test_listeners_per_node_and_per_cluster_ip() -> None:
    local = allocate(service("lb", type_="LoadBalancer", externalTrafficPolicy="Local"))
    plain = allocate(service("plain"), seed=2)
    nodes = {"node-1": "127.20.0.1", "node-2": "127.20.0.2"}
    wanted = desired_listeners([local, plain], nodes)
    node_port = local["spec"]["ports"][0]["nodePort"]
    health = local["spec"]["healthCheckNodePort"]
    assert wanted[("TCP", "127.20.0.2", node_port)].kind == NODE_PORT
    assert wanted[("TCP", "127.20.0.2", node_port)].local
    assert wanted[("TCP", "127.20.0.1", health)].kind == HEALTH
    assert wanted[("TCP", plain["spec"]["clusterIP"], 80)].kind == CLUSTER_IP
    assert len(wanted) == 2 + 2 + 2  # node ports, health ports, cluster IPs


def test_ready_endpoints_first_then_serving_terminating_ones() -> None:
    slices = [
        slice_of(
            endpoint("127.17.0.1", "node-1", ready=False, terminating=True),
            endpoint("127.17.0.2", "node-2"),
        )
    ]
    found = backends(slices, port_name="", protocol="TCP")
    assert [b.address for b in usable(found)] == ["127.17.0.2"]
    assert [b.address for b in usable(found, node="node-1")] == ["127.17.0.1"]
    assert usable(found, node="node-3") == []
    assert backends(slices, port_name="other", protocol="TCP") == []


def test_health_check_counts_local_ready_endpoints() -> None:
    slices = [
        slice_of(
            endpoint("127.17.0.1", "node-1"),
            endpoint("127.17.0.2", "node-1", ready=False, terminating=True),
            endpoint("127.17.0.3", "node-2"),
        )
    ]
    assert local_ready_endpoints(slices, "node-1") == 1
    assert local_ready_endpoints(slices, "node-3") == 0
    assert health_response(("default", "web"), 0).startswith(b"HTTP/1.1 503")
    ok = health_response(("default", "web"), 2)
    assert ok.startswith(b"HTTP/1.1 200") and b'"localEndpoints": 2' in ok
