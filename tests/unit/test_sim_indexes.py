"""The label indexes the simulated cluster's controllers keep from store events."""

from __future__ import annotations

import itertools
import random

from directlb.sim.cluster.indexes import LabelIndex, SelectorIndex, equality_matches
from directlb.sim.cluster.network import AddressIndex, in_use
from directlb.sim.contracts import Obj


def test_label_index_finds_the_pods_a_selector_matches() -> None:
    index = LabelIndex()
    index.put(("default", "a"), {"app": "web", "tier": "front"})
    index.put(("default", "b"), {"app": "web", "tier": "back"})
    index.put(("default", "c"), {"app": "api"})
    index.put(("other", "d"), {"app": "web", "tier": "front"})
    assert index.selected("default", {"app": "web"}) == {"a", "b"}
    assert index.selected("default", {"app": "web", "tier": "front"}) == {"a"}
    assert index.selected("default", {"app": "nothing"}) == set()
    assert index.selected("other", {"tier": "front"}) == {"d"}


def test_label_index_follows_relabels_and_removals() -> None:
    index = LabelIndex()
    index.put(("default", "a"), {"app": "web"})
    index.put(("default", "a"), {"app": "api"})
    assert index.selected("default", {"app": "web"}) == set()
    assert index.selected("default", {"app": "api"}) == {"a"}
    index.put(("default", "a"), None)
    assert index.selected("default", {"app": "api"}) == set()
    index.put(("default", "a"), {"app": "api"})
    index.remove(("default", "a"))
    index.remove(("default", "never"))
    assert index.selected("default", {"app": "api"}) == set()
    assert index._names == {}  # nothing left behind


def test_selector_index_finds_the_selectors_matching_labels() -> None:
    index = SelectorIndex()
    index.put(("default", "web"), {"app": "web"})
    index.put(("default", "front"), {"app": "web", "tier": "front"})
    index.put(("default", "empty"), {})  # selects nothing, as a Service without selector
    index.put(("other", "web"), {"app": "web"})
    assert index.matching("default", {"app": "web", "tier": "front", "x": "y"}) == {
        ("default", "web"),
        ("default", "front"),
    }
    assert index.matching("default", {"app": "web"}) == {("default", "web")}
    assert index.matching("default", {"tier": "front"}) == set()
    assert sorted(index.filed_keys()) == [
        ("default", "front"),
        ("default", "web"),
        ("other", "web"),
    ]
    index.put(("default", "front"), {"tier": "front"})
    assert index.matching("default", {"tier": "front"}) == {("default", "front")}
    index.remove(("default", "front"))
    assert index.matching("default", {"tier": "front", "app": "web"}) == {("default", "web")}


def test_values_of_another_type_never_match_by_their_text() -> None:
    labels = LabelIndex()
    labels.put(("default", "a"), {"port": "80"})
    # Narrowed by text, confirmed by equality: the caller's check refuses 80 != "80".
    assert labels.selected("default", {"port": 80}) == {"a"}
    assert not equality_matches({"port": 80}, {"port": "80"})
    selectors = SelectorIndex()
    selectors.put(("default", "s"), {"port": 80})
    assert selectors.matching("default", {"port": "80"}) == set()


def test_indexes_agree_with_a_scan() -> None:
    rng = random.Random(5)
    values = ["a", "b", "c"]
    labels = LabelIndex()
    selectors = SelectorIndex()
    pods: dict[tuple[str, str], dict[str, str]] = {}
    services: dict[tuple[str, str], dict[str, str]] = {}
    for step in range(400):
        namespace = rng.choice(["n1", "n2"])
        drawn = {k: rng.choice(values) for k in ("app", "tier", "zone") if rng.random() < 0.6}
        if step % 2:
            key = (namespace, f"pod-{rng.randrange(30)}")
            if rng.random() < 0.2:
                labels.remove(key)
                pods.pop(key, None)
            else:
                labels.put(key, drawn)
                pods[key] = drawn
        else:
            key = (namespace, f"svc-{rng.randrange(10)}")
            selectors.put(key, drawn)
            services[key] = drawn
    for namespace in ("n1", "n2"):
        for selector in services.values():
            if selector:
                expected = {
                    k[1]
                    for k, v in pods.items()
                    if k[0] == namespace and equality_matches(selector, v)
                }
                assert labels.selected(namespace, selector) == expected
        for pod_labels in pods.values():
            expected_keys = {
                k
                for k, s in services.items()
                if k[0] == namespace and s and equality_matches(s, pod_labels)
            }
            assert selectors.matching(namespace, pod_labels) == expected_keys


def _service(name: str, *, ip: str | None = None, node_ports: tuple[int, ...] = ()) -> Obj:
    spec: Obj = {"ports": [{"port": 80 + i, "nodePort": p} for i, p in enumerate(node_ports)]}
    if ip:
        spec["clusterIP"] = ip
        spec["clusterIPs"] = [ip]
    return {"metadata": {"name": name, "namespace": "default"}, "spec": spec}


def test_address_index_answers_what_the_other_services_hold() -> None:
    services = {
        ("default", "a"): _service("a", ip="127.96.0.10", node_ports=(30001, 30002)),
        ("default", "b"): _service("b", ip="127.96.0.11", node_ports=(30002,)),
        ("default", "c"): _service("c", ip="None"),
    }
    index = AddressIndex()
    for key, obj in services.items():
        index.put(key, obj)
    for me in [*services, ("default", "new")]:
        others = in_use(obj for key, obj in services.items() if key != me)
        held = index.others(me)
        assert set(held.cluster_ips) == set(others.cluster_ips)
        assert set(held.node_ports) == set(others.node_ports)
        for ip, port in itertools.product(
            ["127.96.0.10", "127.96.0.11", "None", "127.96.0.12"], [30001, 30002, 30003]
        ):
            assert (ip in held.cluster_ips) == (ip in others.cluster_ips)
            assert (port in held.node_ports) == (port in others.node_ports)
        assert len(held.node_ports) == len(others.node_ports)
    index.remove(("default", "a"))
    index.put(("default", "b"), _service("b", ip="127.96.0.11"))
    held = index.others(("default", "x"))
    assert set(held.cluster_ips) == {"127.96.0.11"} and set(held.node_ports) == set()
    assert index._ips == {"127.96.0.11": 1} and not index._ports
