"""The Ingress controller's pure parts: views from lightkube objects, the Secret's certificate
id, the mapping of inputs to Ingress keys, and the readiness-gate source."""

from __future__ import annotations

import base64
from typing import Any

from lightkube.resources.core_v1 import Node, Pod, Secret, Service
from lightkube.resources.networking_v1 import Ingress, IngressClass

from directlb.cloud.port import CloudQuotas
from directlb.controllers.gate import NOT_REGISTERED, Binding
from directlb.controllers.ingress import (
    IngressBindings,
    IngressController,
    SyncedIngress,
    certificate_id,
    ingress_class_view,
    ingress_view,
    ingresses_for_nodes,
    ingresses_for_services,
)
from directlb.kube import mapping
from directlb.kube.informer import Store
from directlb.model.ingress import (
    IngressBackendView,
    IngressPathView,
    IngressQuotas,
    IngressTLSView,
)
from directlb.model.service import KubeVersion
from directlb.plan.state import Listener, ListenerKey, ListenerProtocol, Rule, RuleKey, Target

INGRESS = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "Ingress",
    "metadata": {
        "name": "shop",
        "namespace": "ns",
        "uid": "u-1",
        "annotations": {"ingress.cloud.tencent.com/direct-access": "true"},
    },
    "spec": {
        "ingressClassName": "qcloud",
        "defaultBackend": {"service": {"name": "web", "port": {"number": 80}}},
        "tls": [{"hosts": ["a.com"], "secretName": "tls-a"}],
        "rules": [
            {
                "host": "a.com",
                "http": {
                    "paths": [
                        {
                            "path": "/api",
                            "pathType": "Prefix",
                            "backend": {"service": {"name": "api", "port": {"name": "http"}}},
                        },
                        {
                            "path": "/b",
                            "pathType": "Exact",
                            "backend": {"resource": {"kind": "Bucket", "name": "b"}},
                        },
                    ]
                },
            }
        ],
    },
}


def test_ingress_view() -> None:
    view = ingress_view(Ingress.from_dict(INGRESS))
    assert (view.namespace, view.name, view.uid, view.ingress_class_name) == (
        "ns",
        "shop",
        "u-1",
        "qcloud",
    )
    assert view.default_backend == IngressBackendView(service_name="web", port_number=80)
    assert view.tls == (IngressTLSView(hosts=("a.com",), secret_name="tls-a"),)
    [rule] = view.rules
    assert rule.host == "a.com"
    assert rule.paths == (
        IngressPathView(IngressBackendView(service_name="api", port_name="http"), "/api", "Prefix"),
        IngressPathView(IngressBackendView(resource="Bucket/b"), "/b", "Exact"),
    )


def test_ingress_class_view() -> None:
    view = ingress_class_view(
        IngressClass.from_dict(
            {
                "metadata": {
                    "name": "qcloud",
                    "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"},
                },
                "spec": {"controller": "directlb.io/ingress-controller"},
            }
        )
    )
    assert view.name == "qcloud" and view.is_default
    assert view.controller == "directlb.io/ingress-controller"


def test_certificate_id() -> None:
    def secret(data: dict[str, str] | None) -> Any:
        return Secret.from_dict({"metadata": {"name": "s"}, "data": data})

    encoded = base64.b64encode(b" cert-1 \n").decode()
    assert certificate_id(secret({"qcloud_cert_id": encoded})) == "cert-1"
    assert certificate_id(secret({"tls.crt": encoded})) == ""
    assert certificate_id(secret(None)) == ""
    assert certificate_id(secret({"qcloud_cert_id": "not base64!"})) == ""


def _store(objs: list[Any], **indexes: Any) -> Store[Any]:
    store: Store[Any] = Store()
    for name, indexer in indexes.items():
        store.add_index(name, indexer)
    for obj in objs:
        store.put(obj)
    return store


def test_mapping() -> None:
    direct = Ingress.from_dict(INGRESS)
    nodeport = Ingress.from_dict({**INGRESS, "metadata": {"name": "plain", "namespace": "ns"}})
    ingresses = _store(
        [direct, nodeport], **{mapping.BY_BACKEND_SERVICE: mapping.ingress_backend_services}
    )
    assert ingresses_for_services(ingresses, {"ns/api"}) == {"ns/shop", "ns/plain"}
    assert ingresses_for_services(ingresses, {"other/api"}) == set()
    assert ingresses_for_nodes(ingresses) == {"ns/plain"}  # the direct one ignores nodes
    # ... unless the cluster is too old for direct access: then it is bound through the nodes.
    assert ingresses_for_nodes(ingresses, KubeVersion(1, 11)) == {"ns/shop", "ns/plain"}
    assert ingresses_for_nodes(ingresses, KubeVersion(1, 12)) == {"ns/plain"}


def _pod(name: str, ip: str, labels: dict[str, str]) -> Any:
    return Pod.from_dict(
        {
            "metadata": {"name": name, "namespace": "ns", "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "i"}]},
            "status": {"podIP": ip},
        }
    )


QCLOUD = IngressClass.from_dict(
    {"metadata": {"name": "qcloud"}, "spec": {"controller": "directlb.io/ingress-controller"}}
)


def _gate_source(
    ingresses: list[Any], synced: dict[str, SyncedIngress]
) -> tuple[IngressBindings, IngressController]:
    """The gate source over caches holding Service ns/api (selecting app=api), ``ingresses``
    and the qcloud IngressClass, with ``synced`` as the controller's last syncs."""
    services = _store(
        [
            Service.from_dict(
                {
                    "metadata": {"name": "api", "namespace": "ns"},
                    "spec": {"selector": {"app": "api"}, "ports": [{"port": 80}]},
                }
            )
        ],
        **{mapping.BY_NAMESPACE: mapping.index_by_namespace},
    )
    controller = IngressController.__new__(IngressController)
    controller.ingresses = _store(
        ingresses, **{mapping.BY_BACKEND_SERVICE: mapping.ingress_backend_services}
    )
    controller.classes = _store([QCLOUD])
    controller.synced = synced
    return IngressBindings(controller=controller, services=services), controller


def _named(name: str, *, direct: bool = True, class_name: str = "qcloud") -> Any:
    annotations = {"ingress.cloud.tencent.com/direct-access": "true"} if direct else {}
    return Ingress.from_dict(
        {
            **INGRESS,
            "metadata": {"name": name, "namespace": "ns", "annotations": annotations},
            "spec": {**INGRESS["spec"], "ingressClassName": class_name},  # type: ignore[dict-item]
        }
    )


def test_gate_source_binds_pods_on_every_rule_that_routes_to_them() -> None:
    http = ListenerKey(ListenerProtocol.HTTP, 80)
    https = ListenerKey(ListenerProtocol.HTTPS, 443)
    target = Target("127.17.0.5", 8080)
    rules = (Rule("a.com", "/api", targets=(target,)), Rule("a.com", "/", targets=()))
    source, _ = _gate_source(
        [_named("shop"), _named("nodes", direct=False)],
        {
            "ns/shop": SyncedIngress(
                lb_id="lb-1",
                direct=True,
                listeners=(
                    Listener(protocol=ListenerProtocol.HTTP, port=80, rules=rules),
                    Listener(protocol=ListenerProtocol.HTTPS, port=443, rules=rules),
                ),
                services=frozenset({"api"}),
                asked_direct=True,
            ),
            "ns/nodes": SyncedIngress(
                lb_id="lb-2", direct=False, listeners=(), services=frozenset({"api"})
            ),
        },
    )
    [bound] = source.expectations(_pod("api-1", "127.17.0.5", {"app": "api"}))
    assert bound.source == "Ingress ns/shop"
    assert set(bound.bindings) == {
        Binding("lb-1", http, RuleKey("a.com", "/api"), "127.17.0.5", 8080),
        Binding("lb-1", https, RuleKey("a.com", "/api"), "127.17.0.5", 8080),
    }
    [waiting] = source.expectations(_pod("api-2", "127.17.0.6", {"app": "api"}))
    assert waiting.waiting is not None and waiting.waiting.reason == NOT_REGISTERED
    assert source.expectations(_pod("web-1", "127.17.0.7", {"app": "web"})) == []


def test_gate_source_holds_pods_of_a_direct_ingress_not_synced_yet() -> None:
    """A new Ingress (CLB being created), or any Ingress right after a restart (the synced
    state is in memory): its pods wait, never NoLoadBalancerBackend (no expectation)."""
    source, controller = _gate_source([_named("shop")], {})
    pod = _pod("api-1", "127.17.0.5", {"app": "api"})
    [waiting] = source.expectations(pod)
    assert waiting.source == "Ingress ns/shop"
    assert waiting.waiting is not None and waiting.waiting.reason == NOT_REGISTERED
    assert "not been synced" in waiting.waiting.message
    # Synced before its direct-access annotation was set (node backends): still waiting.
    controller.synced["ns/shop"] = SyncedIngress(
        lb_id="lb-1", direct=False, listeners=(), services=frozenset({"api"})
    )
    [waiting] = source.expectations(pod)
    assert waiting.waiting is not None and "not been synced" in waiting.waiting.message
    # Direct access asked but refused by the model (cluster older than 1.12): no gate held.
    controller.synced["ns/shop"] = SyncedIngress(
        lb_id="lb-1", direct=False, listeners=(), services=frozenset({"api"}), asked_direct=True
    )
    assert source.expectations(pod) == []


def test_gate_source_ignores_ingresses_not_ours_or_not_direct() -> None:
    source, _ = _gate_source(
        [_named("other", class_name="nginx"), _named("plain", direct=False)], {}
    )
    assert source.expectations(_pod("api-1", "127.17.0.5", {"app": "api"})) == []


class _Cloud:
    async def quotas(self) -> CloudQuotas:
        return CloudQuotas(rules_per_listener=7, targets_per_group=30)


class _Version:
    known = None

    async def get(self) -> None:
        return None


def _node(name: str) -> Any:
    return Node.from_dict(
        {
            "metadata": {"name": name},
            "status": {
                "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}],
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        }
    )


async def test_inputs_cost_what_the_ingress_refers_to() -> None:
    """The model's inputs: the referenced Services looked up by key (not every Service of the
    namespace), and the cluster's nodes only for node backends."""
    controller = IngressController.__new__(IngressController)
    services = [
        Service.from_dict({"metadata": {"name": name, "namespace": "ns"}, "spec": {}})
        for name in ("api", "web", "unrelated")
    ]
    controller.services = _store(services, **{mapping.BY_NAMESPACE: mapping.index_by_namespace})
    controller.slices = _store([], service=lambda s: [])
    controller.pods = _store([])
    controller.nodes = _store([_node("n1"), _node("n2")])
    controller.cidrs = ()
    controller.cloud = _Cloud()  # type: ignore[assignment]
    controller.version = _Version()  # type: ignore[assignment]
    plain = {**INGRESS, "spec": {**INGRESS["spec"], "tls": []}}  # type: ignore[dict-item]
    direct = ingress_view(Ingress.from_dict(plain))
    inputs = await controller._inputs(direct, [])
    assert sorted(s.name for s in inputs["services"]) == ["api", "web"]
    assert inputs["nodes"] == []
    # The cloud's quotas (DescribeQuota), the rules per listener among them.
    assert inputs["quotas"] == IngressQuotas(rules_per_listener=7, targets_per_rule=30)
    nodeport = ingress_view(
        Ingress.from_dict({**plain, "metadata": {"name": "plain", "namespace": "ns"}})
    )
    inputs = await controller._inputs(nodeport, [])
    assert sorted(n.name for n in inputs["nodes"]) == ["n1", "n2"]
