"""The admission decision: selection, JSONPatch building, fail-open on errors, speed."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from lightkube.models.core_v1 import ServicePort, ServiceSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.admissionregistration_v1 import MutatingWebhookConfiguration
from lightkube.resources.core_v1 import Service
from lightkube.resources.networking_v1 import Ingress

from directlb.kube.informer import Store
from directlb.kube.mapping import BY_NAMESPACE, index_by_namespace
from directlb.webhook.configuration import build_configuration
from directlb.webhook.server import (
    DIRECT_ACCESS,
    GATE,
    INGRESS_DIRECT_ACCESS,
    Admission,
    gate_patch,
    in_namespace,
    pod_is_selected,
    services_in,
)

OTHER_GATE = {"conditionType": "example.com/other"}


def service(
    name: str, selector: dict[str, str] | None, *, direct: bool = True, namespace: str = "default"
) -> Service:
    annotations = {DIRECT_ACCESS: "true"} if direct else {}
    return Service(
        metadata=ObjectMeta(name=name, namespace=namespace, annotations=annotations),
        spec=ServiceSpec(selector=selector, ports=[ServicePort(port=80)]),
    )


def review(pod: dict[str, Any], *, operation: str = "CREATE", namespace: str = "default") -> Any:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u-1",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace,
            "operation": operation,
            "object": pod,
        },
    }


def pod(labels: dict[str, str] | None, gates: list[dict[str, str]] | None = None) -> Any:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "nginx"}]}
    if gates is not None:
        spec["readinessGates"] = gates
    return {"metadata": {"generateName": "web-", "labels": labels}, "spec": spec}


def apply_patch(obj: Any, patch: list[dict[str, Any]]) -> Any:
    """Enough of RFC 6902 ``add`` for these tests."""
    for op in patch:
        assert op["op"] == "add"
        *parents, last = op["path"].lstrip("/").split("/")
        target = obj
        for part in parents:
            target = target[part]
        if last == "-":
            target.append(op["value"])
        else:
            assert last not in target or target[last] is None
            target[last] = op["value"]
    return obj


def decoded(response: Any) -> list[dict[str, Any]]:
    body = response["response"]
    if "patch" not in body:
        return []
    assert body["patchType"] == "JSONPatch"
    return list(json.loads(base64.b64decode(body["patch"])))


@pytest.fixture
def store() -> Store[Any]:
    store: Store[Any] = Store()
    store.add_index(BY_NAMESPACE, index_by_namespace)
    store.put(service("web", {"app": "web"}))
    store.put(service("plain", {"app": "plain"}, direct=False))
    store.put(service("empty", {}))
    store.put(service("elsewhere", {"app": "other"}, namespace="other"))
    return store


def test_patch_without_gates_adds_the_list() -> None:
    obj = pod({"app": "web"})
    patch = gate_patch(obj)
    assert patch == [
        {"op": "add", "path": "/spec/readinessGates", "value": [{"conditionType": GATE}]}
    ]
    assert apply_patch(obj, patch)["spec"]["readinessGates"] == [{"conditionType": GATE}]


def test_patch_with_null_gates_adds_the_list() -> None:
    obj = pod({"app": "web"})
    obj["spec"]["readinessGates"] = None
    assert gate_patch(obj)[0]["path"] == "/spec/readinessGates"


def test_patch_with_other_gates_appends() -> None:
    obj = pod({"app": "web"}, [OTHER_GATE])
    patch = gate_patch(obj)
    assert patch == [
        {"op": "add", "path": "/spec/readinessGates/-", "value": {"conditionType": GATE}}
    ]
    assert apply_patch(obj, patch)["spec"]["readinessGates"] == [
        OTHER_GATE,
        {"conditionType": GATE},
    ]


def test_patch_with_our_gate_is_empty() -> None:
    assert gate_patch(pod({"app": "web"}, [OTHER_GATE, {"conditionType": GATE}])) == []


def test_selection() -> None:
    web = service("web", {"app": "web"})
    assert pod_is_selected({"app": "web", "tier": "x"}, [web])
    assert not pod_is_selected({"app": "api"}, [web])
    assert not pod_is_selected({"app": "web"}, [service("w", {"app": "web"}, direct=False)])
    assert not pod_is_selected({"app": "web"}, [service("w", {})])
    assert not pod_is_selected({"app": "web"}, [service("w", None)])
    assert pod_is_selected({"app": "web", "v": "2"}, [service("w", {"app": "web", "v": "2"})])
    assert not pod_is_selected({"app": "web"}, [service("w", {"app": "web", "v": "2"})])
    odd = service("w", {"app": "web"})
    assert odd.metadata is not None
    odd.metadata.annotations = {DIRECT_ACCESS: "True"}
    assert pod_is_selected({"app": "web"}, [odd])


def ingress(name: str, backends: list[str], *, direct: bool = True) -> Ingress:
    annotations = {INGRESS_DIRECT_ACCESS: "true"} if direct else {}
    return Ingress.from_dict(
        {
            "metadata": {"name": name, "namespace": "default", "annotations": annotations},
            "spec": {
                "defaultBackend": {"service": {"name": backends[0], "port": {"number": 80}}},
                "rules": [
                    {
                        "http": {
                            "paths": [
                                {
                                    "path": "/",
                                    "pathType": "Prefix",
                                    "backend": {"service": {"name": b, "port": {"number": 80}}},
                                }
                                for b in backends[1:]
                            ]
                        }
                    }
                ],
            },
        }
    )


def test_selection_through_a_direct_access_ingress() -> None:
    """A plain Service (no direct-access annotation) behind a direct-access Ingress: its pods
    are direct backends of the Ingress's CLB rules, so they get the gate too."""
    web = service("web", {"app": "web"}, direct=False)
    api = service("api", {"app": "api"}, direct=False)
    labels = {"app": "api"}
    assert not pod_is_selected(labels, [web, api])
    assert pod_is_selected(labels, [web, api], [ingress("i", ["web", "api"])])
    assert pod_is_selected({"app": "web"}, [web, api], [ingress("i", ["web"])])
    assert not pod_is_selected(labels, [web, api], [ingress("i", ["web", "api"], direct=False)])
    assert not pod_is_selected(labels, [web, api], [ingress("i", ["web"])])
    assert not pod_is_selected(labels, [web], [ingress("i", ["web", "api"])])  # no such Service
    store: Store[Any] = Store()
    for item in (web, api):
        store.put(item)
    ingresses: Store[Any] = Store()
    ingresses.put(ingress("i", ["web", "api"]))
    admission = Admission(in_namespace(store), in_namespace(ingresses))
    assert decoded(admission.review(review(pod({"app": "api"}))))
    assert not decoded(admission.review(review(pod({"app": "api"}), namespace="other")))


def test_review_patches_a_selected_pod(store: Store[Any]) -> None:
    admission = Admission(services_in(store))
    response = admission.review(review(pod({"app": "web"})))
    assert response["apiVersion"] == "admission.k8s.io/v1"
    assert response["kind"] == "AdmissionReview"
    assert response["response"]["uid"] == "u-1" and response["response"]["allowed"] is True
    assert decoded(response) == gate_patch(pod({"app": "web"}))
    assert (admission.reviews, admission.patched, admission.errors) == (1, 1, 0)


@pytest.mark.parametrize(
    ("obj", "operation", "namespace"),
    [
        (pod({"app": "plain"}), "CREATE", "default"),  # not direct-access
        (pod({"app": "api"}), "CREATE", "default"),  # selected by nothing
        (pod(None), "CREATE", "default"),  # no labels
        (pod({"app": "other"}), "CREATE", "default"),  # selector in another namespace
        (pod({"app": "web"}), "UPDATE", "default"),  # not a CREATE
        (pod({"app": "web"}, [{"conditionType": GATE}]), "CREATE", "default"),  # present
    ],
)
def test_review_allows_unchanged(
    store: Store[Any], obj: Any, operation: str, namespace: str
) -> None:
    admission = Admission(services_in(store))
    response = admission.review(review(obj, operation=operation, namespace=namespace))
    assert response["response"] == {"uid": "u-1", "allowed": True}
    assert admission.patched == 0 and admission.errors == 0


def test_store_without_index_gets_one() -> None:
    """A store with no namespace index (the controller indexes Ingresses by backend Service
    only) is given one, rather than scanned whole at every review; later objects count."""
    store: Store[Any] = Store()
    store.put(service("web", {"app": "web"}))
    admission = Admission(services_in(store))
    assert store.by_index(BY_NAMESPACE, "default")  # indexed now
    assert decoded(admission.review(review(pod({"app": "web"}))))
    store.put(service("api", {"app": "api"}, namespace="other"))
    assert decoded(admission.review(review(pod({"app": "api"}), namespace="other")))


def test_internal_error_allows_and_counts() -> None:
    def broken(namespace: str) -> list[Any]:
        raise RuntimeError("cache exploded")

    admission = Admission(broken)
    response = admission.review(review(pod({"app": "web"})))
    assert response["response"] == {"uid": "u-1", "allowed": True}
    assert admission.errors == 1
    # Malformed reviews are allowed, too (with whatever uid there is).
    assert admission.review({"request": {"uid": "x", "object": 5}})["response"]["allowed"]
    assert admission.review(None)["response"]["allowed"]
    bad = review(pod({"app": "web"}))
    bad["request"]["object"]["metadata"]["labels"] = ["not", "a", "map"]
    assert admission.review(bad)["response"] == {"uid": "u-1", "allowed": True}


def test_review_speed(store: Store[Any]) -> None:
    """Benchmark-style: print the time per review with 1000 Services in the namespace."""
    for i in range(1000):
        store.put(service(f"s{i}", {"app": f"a{i}"}))
    admission = Admission(services_in(store))
    body = review(pod({"app": "web"}))
    rounds = 500
    start = time.perf_counter()
    for _ in range(rounds):
        admission.review(body)
    per_review = (time.perf_counter() - start) / rounds
    print(f"\nwebhook review: {per_review * 1e3:.3f} ms per review (1000 Services, goal < 5 ms)")
    assert admission.patched == rounds


def test_configuration_shape() -> None:
    config = build_configuration(
        ca_bundle=b"PEM", controller_namespace="directlb-system", service="directlb-webhook"
    )
    assert isinstance(config, MutatingWebhookConfiguration)
    assert config.metadata is not None and config.metadata.name == "directlb-pod-readiness"
    (hook,) = config.webhooks or []
    assert hook.failurePolicy == "Ignore" and hook.sideEffects == "None"
    assert hook.timeoutSeconds == 5 and hook.admissionReviewVersions == ["v1"]
    (rule,) = hook.rules or []
    assert rule.operations == ["CREATE"] and rule.resources == ["pods"]
    assert rule.apiGroups == [""] and rule.apiVersions == ["v1"]
    assert hook.namespaceSelector is not None
    (expr,) = hook.namespaceSelector.matchExpressions or []
    assert expr.key == "kubernetes.io/metadata.name" and expr.operator == "NotIn"
    assert expr.values == ["kube-system", "directlb-system"]
    assert hook.clientConfig.service is not None and hook.clientConfig.url is None
    assert hook.clientConfig.service.path == "/mutate-v1-pod"
    assert hook.clientConfig.caBundle == base64.b64encode(b"PEM").decode()
    by_url = build_configuration(
        ca_bundle=b"PEM",
        controller_namespace="x",
        url="https://127.0.0.1:1/mutate-v1-pod",
        failure_policy="Fail",
    )
    (hook,) = by_url.webhooks or []
    assert hook.failurePolicy == "Fail" and hook.clientConfig.service is None
    with pytest.raises(ValueError):
        build_configuration(ca_bundle=b"", controller_namespace="x")
