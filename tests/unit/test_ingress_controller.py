"""The Ingress controller's pure parts: views from lightkube objects, the Secret's certificate
id, the mapping of inputs to Ingress keys, and the readiness-gate source."""

from __future__ import annotations

import base64
from typing import Any

from lightkube.resources.core_v1 import Pod, Secret, Service
from lightkube.resources.networking_v1 import Ingress, IngressClass

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
from directlb.model.ingress import IngressBackendView, IngressPathView, IngressTLSView
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


def _pod(name: str, ip: str, labels: dict[str, str]) -> Any:
    return Pod.from_dict(
        {
            "metadata": {"name": name, "namespace": "ns", "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "i"}]},
            "status": {"podIP": ip},
        }
    )


def test_gate_source_binds_pods_on_every_rule_that_routes_to_them() -> None:
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
    http = ListenerKey(ListenerProtocol.HTTP, 80)
    https = ListenerKey(ListenerProtocol.HTTPS, 443)
    target = Target("127.17.0.5", 8080)
    rules = (Rule("a.com", "/api", targets=(target,)), Rule("a.com", "/", targets=()))
    controller.synced = {
        "ns/shop": SyncedIngress(
            lb_id="lb-1",
            direct=True,
            listeners=(
                Listener(protocol=ListenerProtocol.HTTP, port=80, rules=rules),
                Listener(protocol=ListenerProtocol.HTTPS, port=443, rules=rules),
            ),
            services=frozenset({"api"}),
        ),
        "ns/nodes": SyncedIngress(
            lb_id="lb-2", direct=False, listeners=(), services=frozenset({"api"})
        ),
    }
    source = IngressBindings(controller=controller, services=services)
    [bound] = source.expectations(_pod("api-1", "127.17.0.5", {"app": "api"}))
    assert bound.source == "Ingress ns/shop"
    assert set(bound.bindings) == {
        Binding("lb-1", http, RuleKey("a.com", "/api"), "127.17.0.5", 8080),
        Binding("lb-1", https, RuleKey("a.com", "/api"), "127.17.0.5", 8080),
    }
    [waiting] = source.expectations(_pod("api-2", "127.17.0.6", {"app": "api"}))
    assert waiting.waiting is not None and waiting.waiting.reason == NOT_REGISTERED
    assert source.expectations(_pod("web-1", "127.17.0.7", {"app": "web"})) == []
