"""The admission chain's matching, patching and resolution rules, without a network."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from directlb.sim.admission import (
    JsonPatchError,
    ResolveError,
    SelectorError,
    Webhook,
    apply_json_patch,
    build_review,
    denial,
    is_exempt,
    label_selector_matches,
    match_namespace,
    match_object,
    resolve_service,
    rule_matches,
    should_call,
    verify_reply,
    webhooks_from,
)
from directlb.sim.contracts import AdmissionAttributes, AdmissionDenied, ResourceKey
from tests.sim_webhooks import (
    DEPLOYMENT,
    MUTATING_CONFIG,
    NAMESPACE,
    NODE,
    POD,
    POD_CREATE,
    MemoryReader,
    mutating,
    pod,
    pod_attrs,
    webhook,
)


def hook(**spec: Any) -> Webhook:
    return Webhook("config", "config/w/0", {"name": "w.example.com", **spec})


def attrs_for(
    key: ResourceKey,
    *,
    operation: str = "CREATE",
    namespace: str = "",
    name: str = "x",
    subresource: str = "",
    obj: dict[str, Any] | None = None,
    old: dict[str, Any] | None = None,
) -> AdmissionAttributes:
    if obj is None and operation != "DELETE":
        obj = {"metadata": {"name": name}}
    return AdmissionAttributes(
        operation=operation,
        key=key,
        subresource=subresource,
        namespace=namespace,
        name=name,
        obj=obj,
        old_obj=old,
    )


# ----- rules -------------------------------------------------------------------------------


POD_IN_DEFAULT = attrs_for(POD, namespace="default")


@pytest.mark.parametrize(
    ("rule", "matches"),
    [
        (POD_CREATE, True),
        (dict(POD_CREATE, operations=["*"]), True),
        (dict(POD_CREATE, operations=["UPDATE", "DELETE"]), False),
        (dict(POD_CREATE, apiGroups=["*"], apiVersions=["*"], resources=["*"]), True),
        (dict(POD_CREATE, apiGroups=["apps"]), False),
        (dict(POD_CREATE, apiVersions=["v2"]), False),
        (dict(POD_CREATE, resources=["services"]), False),
        (dict(POD_CREATE, resources=["pods/status"]), False),  # only the subresource
        (dict(POD_CREATE, resources=["pods/*"]), True),  # the resource and its subresources
        (dict(POD_CREATE, resources=["*/*"]), True),
        (dict(POD_CREATE, scope="Namespaced"), True),
        (dict(POD_CREATE, scope="Cluster"), False),
        (dict(POD_CREATE, scope="*"), True),
        (dict(POD_CREATE, operations=[]), False),
    ],
)
def test_rule_against_a_pod_create(rule: dict[str, Any], matches: bool) -> None:
    assert rule_matches(rule, POD_IN_DEFAULT) is matches


@pytest.mark.parametrize(
    ("resources", "matches"),
    [
        (["pods"], False),
        (["*"], False),
        (["pods/status"], True),
        (["pods/*"], True),
        (["*/status"], True),
        (["*/*"], True),
        (["pods/ephemeralcontainers"], False),
    ],
)
def test_rule_against_a_status_write(resources: list[str], matches: bool) -> None:
    attrs = attrs_for(POD, operation="UPDATE", namespace="default", subresource="status")
    rule = dict(POD_CREATE, operations=["UPDATE"], resources=resources)
    assert rule_matches(rule, attrs) is matches


def test_scope_of_cluster_objects_and_namespaces() -> None:
    node = attrs_for(NODE)
    namespace = attrs_for(NAMESPACE, name="team-a")
    everything = {"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"]}
    cluster = dict(everything, scope="Cluster")
    namespaced = dict(everything, scope="Namespaced")

    assert rule_matches(cluster, node) and not rule_matches(namespaced, node)
    # A Namespace is cluster-scoped even when the request carries its name as namespace.
    named = attrs_for(NAMESPACE, operation="DELETE", namespace="team-a", name="team-a")
    for attrs in (namespace, named):
        assert rule_matches(cluster, attrs) and not rule_matches(namespaced, attrs)


# ----- selectors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        (None, {}, True),
        ({}, {"a": "b"}, True),
        ({"matchLabels": {"a": "b"}}, {"a": "b", "c": "d"}, True),
        ({"matchLabels": {"a": "b"}}, {"a": "c"}, False),
        (
            {"matchExpressions": [{"key": "a", "operator": "In", "values": ["x", "y"]}]},
            {"a": "y"},
            True,
        ),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["x"]}]}, {}, False),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["x"]}]}, {}, True),
        (
            {"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["x"]}]},
            {"a": "x"},
            False,
        ),
        ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"a": ""}, True),
        ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"a": ""}, False),
        (
            {
                "matchLabels": {"tier": "web"},
                "matchExpressions": [{"key": "skip", "operator": "DoesNotExist"}],
            },
            {"tier": "web"},
            True,
        ),
    ],
)
def test_label_selector(
    selector: dict[str, Any] | None, labels: dict[str, str], matches: bool
) -> None:
    assert label_selector_matches(selector, labels) is matches


@pytest.mark.parametrize(
    "expression",
    [
        {"key": "a", "operator": "In", "values": []},
        {"key": "a", "operator": "Exists", "values": ["x"]},
        {"key": "a", "operator": "Equals", "values": ["x"]},
    ],
)
def test_invalid_label_selector(expression: dict[str, Any]) -> None:
    with pytest.raises(SelectorError):
        label_selector_matches({"matchExpressions": [expression]}, {})


def system_excluded() -> Webhook:
    return hook(
        namespaceSelector={
            "matchExpressions": [
                {
                    "key": "kubernetes.io/metadata.name",
                    "operator": "NotIn",
                    "values": ["kube-system"],
                }
            ]
        },
        rules=[{"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"]}],
    )


def test_namespace_selector_reads_the_namespace_labels() -> None:
    reader = MemoryReader()
    reader.namespace("kube-system")
    reader.namespace("default")

    assert match_namespace(
        system_excluded(), attrs_for(POD, namespace="default"), None, reader
    ) == (
        True,
        None,
    )
    assert match_namespace(
        system_excluded(), attrs_for(POD, namespace="kube-system"), None, reader
    ) == (
        False,
        None,
    )


def test_cluster_scoped_objects_always_match_the_namespace_selector() -> None:
    assert match_namespace(system_excluded(), attrs_for(NODE), None, MemoryReader()) == (True, None)


def test_a_namespace_is_matched_by_its_own_new_labels_then_by_the_stored_ones() -> None:
    reader = MemoryReader()
    reader.namespace("kube-system")
    creating = attrs_for(
        NAMESPACE,
        name="kube-system",
        obj={"metadata": {"name": "kube-system", "labels": {"kubernetes.io/metadata.name": "x"}}},
    )
    deleting = attrs_for(NAMESPACE, operation="DELETE", name="kube-system", old={"metadata": {}})

    assert match_namespace(system_excluded(), creating, creating.obj, reader) == (True, None)
    assert match_namespace(system_excluded(), deleting, None, reader) == (False, None)


def test_missing_namespace_fails_only_a_request_the_webhook_applies_to() -> None:
    reader = MemoryReader()
    applies = system_excluded()
    elsewhere = hook(
        namespaceSelector=applies.namespace_selector,
        rules=[dict(POD_CREATE, resources=["secrets"])],
    )
    attrs = attrs_for(POD, namespace="gone")

    assert should_call(elsewhere, attrs, attrs.obj, reader) is False
    with pytest.raises(AdmissionDenied) as denied:
        should_call(applies, attrs, attrs.obj, reader)
    assert (denied.value.code, denied.value.reason) == (404, "NotFound")
    assert denied.value.message == 'namespaces "gone" not found'
    # Without a namespaceSelector the Namespace is never looked up.
    assert should_call(hook(rules=applies.rules), attrs, attrs.obj, reader) is True


def test_invalid_selector_is_an_internal_error() -> None:
    bad = hook(
        objectSelector={"matchExpressions": [{"key": "a", "operator": "In"}]},
        rules=[POD_CREATE],
    )
    with pytest.raises(AdmissionDenied) as denied:
        should_call(bad, POD_IN_DEFAULT, POD_IN_DEFAULT.obj, MemoryReader())
    assert (denied.value.code, denied.value.reason) == (500, "InternalError")


def test_object_selector_uses_the_object_or_the_old_object() -> None:
    selected = hook(objectSelector={"matchLabels": {"inject": "yes"}})
    labelled = pod(labels={"inject": "yes"})
    plain = pod()

    assert match_object(selected, pod_attrs(labelled), labelled)[0]
    assert not match_object(selected, pod_attrs(plain), plain)[0]
    removing = pod_attrs(plain, operation="UPDATE", old=labelled)
    assert match_object(selected, removing, plain)[0]
    deleting = pod_attrs(None, operation="DELETE", old=labelled)
    assert match_object(selected, deleting, None)[0]


# ----- configurations ----------------------------------------------------------------------


def test_webhooks_are_ordered_by_configuration_name_then_position() -> None:
    hooks = webhooks_from(
        [
            mutating("b", webhook("b1"), webhook("b2")),
            mutating("a", webhook("same"), webhook("same")),
        ]
    )
    assert [(h.configuration, h.name, h.uid) for h in hooks] == [
        ("a", "same", "a/same/0"),
        ("a", "same", "a/same/1"),
        ("b", "b1", "b/b1/0"),
        ("b", "b2", "b/b2/0"),
    ]


def test_webhook_defaults_and_limits() -> None:
    plain = hook()
    assert plain.failure_policy == "Fail" and not plain.ignore_failures
    assert plain.timeout_seconds == 10
    assert plain.reinvocation_policy == "Never"
    assert plain.side_effects is None
    assert hook(timeoutSeconds=90).timeout_seconds == 30
    assert hook(timeoutSeconds=0).timeout_seconds == 1
    assert hook(failurePolicy="Ignore").ignore_failures


def test_admission_configuration_is_exempt() -> None:
    assert is_exempt(attrs_for(MUTATING_CONFIG))
    assert not is_exempt(POD_IN_DEFAULT)


# ----- JSON patch --------------------------------------------------------------------------


def test_json_patch_operations() -> None:
    doc: dict[str, Any] = {"metadata": {"labels": {"a/b": "1"}}, "spec": {"list": [1, 2, 3]}}
    patched = apply_json_patch(
        doc,
        [
            {"op": "test", "path": "/metadata/labels/a~1b", "value": "1"},
            {"op": "replace", "path": "/metadata/labels/a~1b", "value": "2"},
            {"op": "add", "path": "/spec/list/0", "value": 0},
            {"op": "add", "path": "/spec/list/-", "value": 4},
            {"op": "remove", "path": "/spec/list/2"},
            {"op": "copy", "from": "/spec/list", "path": "/spec/copy"},
            {"op": "move", "from": "/metadata/labels", "path": "/spec/labels"},
            {"op": "add", "path": "/metadata/annotations", "value": {"t~x": "y"}},
        ],
    )
    assert patched == {
        "metadata": {"annotations": {"t~x": "y"}},
        "spec": {"list": [0, 1, 3, 4], "copy": [0, 1, 3, 4], "labels": {"a/b": "2"}},
    }
    assert doc["spec"]["list"] == [1, 2, 3], "the input is not modified"


@pytest.mark.parametrize(
    ("operation", "message"),
    [
        (
            {"op": "add", "path": "/spec/readinessGates/-", "value": {}},
            'add operation does not apply: doc is missing path: "/spec/readinessGates/-"',
        ),
        ({"op": "remove", "path": "/spec/nothing"}, "remove operation does not apply"),
        (
            {"op": "replace", "path": "/spec/nothing", "value": 1},
            "replace operation does not apply",
        ),
        ({"op": "test", "path": "/spec/x", "value": 2}, "testing value /spec/x failed"),
        ({"op": "test", "path": "/spec/x", "value": True}, "testing value /spec/x failed"),
        ({"op": "add", "path": "/spec/list/5", "value": 1}, "array index out of bounds"),
        ({"op": "add", "path": "spec", "value": 1}, "invalid path"),
        ({"op": "frobnicate", "path": "/spec"}, "Unexpected kind: frobnicate"),
    ],
)
def test_json_patch_errors(operation: dict[str, Any], message: str) -> None:
    with pytest.raises(JsonPatchError, match=message):
        apply_json_patch({"spec": {"x": 1, "list": []}}, [operation])


# ----- service resolution ------------------------------------------------------------------


def service_reader(
    *, target_port: object = "https", slice_port_name: str = "https"
) -> MemoryReader:
    reader = MemoryReader()
    reader.put(
        "",
        "services",
        {
            "metadata": {"name": "hook", "namespace": "sys"},
            "spec": {"ports": [{"name": "web", "port": 443, "targetPort": target_port}]},
        },
    )
    reader.put(
        "discovery.k8s.io",
        "endpointslices",
        {
            "metadata": {
                "name": "hook-1",
                "namespace": "sys",
                "labels": {"kubernetes.io/service-name": "hook"},
            },
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["127.0.0.5"], "conditions": {"ready": False}},
                {"addresses": ["127.0.0.6"], "conditions": {}},
            ],
            "ports": [{"name": slice_port_name, "port": 9443}],
        },
    )
    reader.put(
        "discovery.k8s.io",
        "endpointslices",
        {
            "metadata": {
                "name": "other-1",
                "namespace": "sys",
                "labels": {"kubernetes.io/service-name": "other"},
            },
            "endpoints": [{"addresses": ["127.0.0.7"]}],
            "ports": [{"name": "web", "port": 1}],
        },
    )
    return reader


def test_service_resolves_to_the_first_ready_endpoint_at_the_named_port() -> None:
    reader = service_reader(slice_port_name="web")
    assert resolve_service(reader, namespace="sys", name="hook", port=443) == ("127.0.0.6", 9443)


def test_service_port_falls_back_to_the_numeric_target_port() -> None:
    reader = service_reader(target_port=9443, slice_port_name="unrelated")
    assert resolve_service(reader, namespace="sys", name="hook", port=443) == ("127.0.0.6", 9443)


@pytest.mark.parametrize(
    ("name", "port", "message"),
    [
        ("missing", 443, 'service "missing" not found'),
        ("hook", 8443, 'no service port 8443 found for service "hook"'),
        ("hook", 443, 'no endpoints available for service "hook"'),  # no slice port matches
    ],
)
def test_service_resolution_errors(name: str, port: int, message: str) -> None:
    reader = service_reader(slice_port_name="unrelated")
    with pytest.raises(ResolveError) as error:
        resolve_service(reader, namespace="sys", name=name, port=port)
    assert str(error.value) == message


def test_external_name_service_is_not_supported() -> None:
    reader = MemoryReader()
    reader.put(
        "",
        "services",
        {"metadata": {"name": "ext", "namespace": "sys"}, "spec": {"type": "ExternalName"}},
    )
    with pytest.raises(ResolveError, match='unsupported service type "ExternalName"'):
        resolve_service(reader, namespace="sys", name="ext", port=443)


# ----- reviews and replies -----------------------------------------------------------------


def test_review_of_a_scale_write_names_the_scale_kind() -> None:
    scale = {"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "web"}}
    attrs = attrs_for(
        DEPLOYMENT,
        operation="UPDATE",
        namespace="default",
        name="web",
        subresource="scale",
        obj=scale,
        old=scale,
    )
    review = build_review(uid="u", version="v1", attrs=attrs, obj=scale)
    request = review["request"]
    assert request["kind"] == {"group": "autoscaling", "version": "v1", "kind": "Scale"}
    assert request["resource"] == {"group": "apps", "version": "v1", "resource": "deployments"}
    assert (request["subResource"], request["requestSubResource"]) == ("scale", "scale")
    assert request["options"] == {"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1"}


def test_review_fills_in_apiversion_and_kind() -> None:
    attrs = attrs_for(POD, namespace="default", name="p", obj={"metadata": {"name": "p"}})
    review = build_review(uid="u", version="v1beta1", attrs=attrs, obj=attrs.obj)
    assert review["apiVersion"] == "admission.k8s.io/v1beta1"
    assert review["request"]["object"] == {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
    }


def reply(**response: Any) -> dict[str, Any]:
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}


PATCH = base64.b64encode(json.dumps([{"op": "add", "path": "/x", "value": 1}]).encode()).decode()


@pytest.mark.parametrize(
    ("review", "mutating", "message"),
    [
        ({"apiVersion": "admission.k8s.io/v1"}, True, "webhook response was absent"),
        (reply(uid="other", allowed=True), True, 'expected response.uid="u", got "other"'),
        (
            {
                "apiVersion": "admission.k8s.io/v1beta1",
                "kind": "AdmissionReview",
                "response": {"uid": "u"},
            },
            True,
            "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, "
            "got admission.k8s.io/v1beta1, Kind=AdmissionReview",
        ),
        (
            reply(uid="u", allowed=True, patch=PATCH),
            True,
            "response.patch but not response.patchType",
        ),
        (
            reply(uid="u", allowed=True, patchType="JSONPatch"),
            True,
            "response.patchType but not response.patch",
        ),
        (
            reply(uid="u", allowed=True, patch=PATCH, patchType="JSONPatch"),
            False,
            "may not return response.patch",
        ),
    ],
)
def test_invalid_v1_replies(review: dict[str, Any], mutating: bool, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        verify_reply(review=review, uid="u", version="v1", mutating=mutating)


def test_v1beta1_replies_are_checked_leniently() -> None:
    review = {"response": {"uid": "whatever", "allowed": True, "patch": PATCH}}
    answer = verify_reply(review=review, uid="u", version="v1beta1", mutating=True)
    assert answer.allowed and answer.patch_type == "JSONPatch"
    assert json.loads(answer.patch) == [{"op": "add", "path": "/x", "value": 1}]


def test_denial_keeps_the_webhook_status() -> None:
    denied = denial(
        "w.example.com",
        {
            "code": 422,
            "reason": "Invalid",
            "message": "bad port",
            "details": {
                "name": "web",
                "causes": [{"field": "spec.ports", "reason": "FieldValueInvalid", "message": "no"}],
            },
        },
    )
    assert (denied.code, denied.reason) == (422, "Invalid")
    assert denied.message == 'admission webhook "w.example.com" denied the request: bad port'
    assert denied.causes == [
        {"field": "spec.ports", "reason": "FieldValueInvalid", "message": "no"}
    ]
    assert denied.details == {"name": "web"}
