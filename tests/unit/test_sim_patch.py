"""The simulator's PATCH kinds: RFC 6902, RFC 7386, strategic merge and server-side apply."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from directlb.sim.contracts import Obj, PatchRequest, ResourceKey, StatusError
from directlb.sim.patch import (
    APPLY_PATCH,
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_MERGE_PATCH,
    apply_patch,
    decode_fields,
    encode_fields,
    field_set,
    merge_patch_value,
    path_string,
    strategic_merge,
    update_managed_fields,
)
from directlb.sim.schema_catalog import SchemaNode, root_node

POD = ResourceKey("", "v1", "pods", "Pod", True)
SERVICE = ResourceKey("", "v1", "services", "Service", True)
NODE = ResourceKey("", "v1", "nodes", "Node", False)
DEPLOYMENT = ResourceKey("apps", "v1", "deployments", "Deployment", True)
REPLICASET = ResourceKey("apps", "v1", "replicasets", "ReplicaSet", True)
SLICE = ResourceKey("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True)
WIDGET = ResourceKey("example.com", "v1", "widgets", "Widget", True)

NOW = "2025-01-01T00:00:00Z"


def patch(original: Obj, body: Any, content_type: str, key: ResourceKey = POD, **kw: Any) -> Obj:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return apply_patch(original, PatchRequest(content_type, raw, key, **kw))


def smp(original: Obj, body: Any, key: ResourceKey = POD) -> Obj:
    return patch(original, body, STRATEGIC_MERGE_PATCH, key)


def status_error(call: Any) -> StatusError:
    with pytest.raises(StatusError) as caught:
        call()
    return caught.value


def pod(**spec: Any) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web-0", "namespace": "default", "resourceVersion": "7"},
        "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}], **spec},
        "status": {"phase": "Running"},
    }


# --------------------------------------------------------------------------------------------
# content types


def test_unknown_content_type_is_415_listing_the_accepted_ones() -> None:
    error = status_error(lambda: patch(pod(), {}, "application/xml"))
    assert (error.code, error.reason) == (415, "UnsupportedMediaType")
    assert "application/strategic-merge-patch+json" in error.message


def test_content_type_parameters_are_ignored() -> None:
    result = patch(pod(), {"metadata": {"labels": {"a": "1"}}}, MERGE_PATCH + "; charset=utf-8")
    assert result["metadata"]["labels"] == {"a": "1"}


def test_strategic_merge_of_a_custom_resource_is_415() -> None:
    error = status_error(lambda: smp({"spec": {}}, {"spec": {"a": 1}}, WIDGET))
    assert (error.code, error.reason) == (415, "UnsupportedMediaType")
    assert error.message == (
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
    )


@pytest.mark.parametrize("content_type", [JSON_PATCH, MERGE_PATCH])
def test_custom_resources_accept_json_and_merge_patches(content_type: str) -> None:
    body: Any = (
        [{"op": "add", "path": "/spec/size", "value": 2}]
        if content_type == JSON_PATCH
        else {"spec": {"size": 2}}
    )
    assert patch({"spec": {}}, body, content_type, WIDGET)["spec"] == {"size": 2}


def test_force_on_a_non_apply_patch_is_invalid() -> None:
    error = status_error(
        lambda: apply_patch(pod(), PatchRequest(MERGE_PATCH, b"{}", POD, force=True))
    )
    assert (error.code, error.reason) == (422, "Invalid")
    assert error.causes[0]["field"] == "force"


@pytest.mark.parametrize("content_type", [JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH])
@pytest.mark.parametrize("body", [b"{not json", b"", b"\xff\xfe"])
def test_malformed_bodies_are_400(content_type: str, body: bytes) -> None:
    error = status_error(lambda: patch(pod(), body, content_type))
    assert (error.code, error.reason) == (400, "BadRequest")


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        (JSON_PATCH, {"op": "add"}),
        (JSON_PATCH, [1, 2]),
        (MERGE_PATCH, [1]),
        (STRATEGIC_MERGE_PATCH, [1]),
        (STRATEGIC_MERGE_PATCH, "text"),
    ],
)
def test_bodies_of_the_wrong_shape_are_400(content_type: str, body: Any) -> None:
    assert status_error(lambda: patch(pod(), body, content_type)).code == 400


@pytest.mark.parametrize("content_type", [JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH])
def test_the_original_is_never_mutated(content_type: str) -> None:
    original = pod()
    original["metadata"]["labels"] = {"a": "1"}
    before = copy.deepcopy(original)
    body: Any = {
        JSON_PATCH: [
            {"op": "add", "path": "/metadata/labels/b", "value": "2"},
            {"op": "replace", "path": "/spec/containers/0/image", "value": "x"},
        ],
        MERGE_PATCH: {"metadata": {"labels": {"a": None}}, "spec": {"nodeName": "n1"}},
        STRATEGIC_MERGE_PATCH: {"spec": {"containers": [{"name": "web", "image": "x"}]}},
    }[content_type]
    result = patch(original, body, content_type)
    assert original == before
    assert result != before


@pytest.mark.parametrize("content_type", [JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH])
def test_resource_version_in_a_patch_is_kept_for_the_precondition(content_type: str) -> None:
    body: Any = {
        JSON_PATCH: [{"op": "replace", "path": "/metadata/resourceVersion", "value": "3"}],
        MERGE_PATCH: {"metadata": {"resourceVersion": "3"}},
        STRATEGIC_MERGE_PATCH: {"metadata": {"resourceVersion": "3"}},
    }[content_type]
    assert patch(pod(), body, content_type)["metadata"]["resourceVersion"] == "3"


# --------------------------------------------------------------------------------------------
# RFC 6902


DOC: Obj = {"a": {"b": [1, 2, 3], "c": "x"}, "m~n": 1, "p/q": 2, "t": True}

JSON_PATCH_CASES: list[tuple[str, list[Obj], Obj]] = [
    ("add a member", [{"op": "add", "path": "/a/d", "value": 4}], {"d": 4}),
    ("add replaces a member", [{"op": "add", "path": "/a/c", "value": "y"}], {"c": "y"}),
    ("insert into a list", [{"op": "add", "path": "/a/b/1", "value": 9}], {"b": [1, 9, 2, 3]}),
    ("append with -", [{"op": "add", "path": "/a/b/-", "value": 9}], {"b": [1, 2, 3, 9]}),
    ("append at the length", [{"op": "add", "path": "/a/b/3", "value": 9}], {"b": [1, 2, 3, 9]}),
    ("remove an item", [{"op": "remove", "path": "/a/b/0"}], {"b": [2, 3]}),
    ("remove a member", [{"op": "remove", "path": "/a/c"}], {"c": None}),
    ("replace an item", [{"op": "replace", "path": "/a/b/2", "value": 0}], {"b": [1, 2, 0]}),
    ("move", [{"op": "move", "from": "/a/c", "path": "/a/e"}], {"c": None, "e": "x"}),
    ("move to itself", [{"op": "move", "from": "/a/c", "path": "/a/c"}], {"c": "x"}),
    ("copy", [{"op": "copy", "from": "/a/b/0", "path": "/a/f"}], {"f": 1}),
    (
        "test then act",
        [{"op": "test", "path": "/a/c", "value": "x"}, {"op": "remove", "path": "/a/c"}],
        {"c": None},
    ),
    ("test a missing value against null", [{"op": "test", "path": "/a/z", "value": None}], {}),
]


@pytest.mark.parametrize(
    ("ops", "expected_a"),
    [(c[1], c[2]) for c in JSON_PATCH_CASES],
    ids=[c[0] for c in JSON_PATCH_CASES],
)
def test_json_patch_operations(ops: list[Obj], expected_a: Obj) -> None:
    result = patch(DOC, ops, JSON_PATCH)
    want = copy.deepcopy(DOC["a"])
    for k, v in expected_a.items():
        if v is None:
            want.pop(k)
        else:
            want[k] = v
    assert result["a"] == want


def test_json_pointer_escapes() -> None:
    result = patch(
        DOC,
        [
            {"op": "replace", "path": "/m~0n", "value": 10},
            {"op": "replace", "path": "/p~1q", "value": 20},
            {"op": "add", "path": "/metadata", "value": {}},
            {"op": "add", "path": "/metadata/x~1y", "value": "z"},
        ],
        JSON_PATCH,
    )
    assert (result["m~n"], result["p/q"], result["metadata"]) == (10, 20, {"x/y": "z"})


def test_json_patch_annotation_keys_with_slashes() -> None:
    # What the readiness-gate webhook and kubectl annotate do.
    original = pod()
    original["metadata"]["annotations"] = {}
    key = "service.cloud.tencent.com/direct-access"
    result = patch(
        original,
        [{"op": "add", "path": "/metadata/annotations/" + key.replace("/", "~1"), "value": "true"}],
        JSON_PATCH,
    )
    assert result["metadata"]["annotations"] == {key: "true"}


JSON_PATCH_ERRORS: list[tuple[str, list[Obj]]] = [
    ("failing test", [{"op": "test", "path": "/a/c", "value": "nope"}]),
    ("test true against 1", [{"op": "test", "path": "/t", "value": 1}]),
    ("remove a missing member", [{"op": "remove", "path": "/a/zz"}]),
    ("replace a missing member", [{"op": "replace", "path": "/zz", "value": 1}]),
    ("add under a missing parent", [{"op": "add", "path": "/x/y", "value": 1}]),
    ("index out of range", [{"op": "add", "path": "/a/b/7", "value": 1}]),
    ("remove past the end", [{"op": "remove", "path": "/a/b/3"}]),
    ("leading zero index", [{"op": "replace", "path": "/a/b/01", "value": 1}]),
    ("not an index", [{"op": "remove", "path": "/a/b/x"}]),
    ("pointer without slash", [{"op": "add", "path": "a", "value": 1}]),
    ("bad escape", [{"op": "add", "path": "/a~2", "value": 1}]),
    ("unknown op", [{"op": "frobnicate", "path": "/a"}]),
    ("add without value", [{"op": "add", "path": "/a/q"}]),
    ("move from a missing path", [{"op": "move", "from": "/nope", "path": "/a/q"}]),
    ("move into its own child", [{"op": "move", "from": "/a", "path": "/a/b/0"}]),
    ("copy from a missing path", [{"op": "copy", "from": "/nope", "path": "/a/q"}]),
    ("remove the whole document", [{"op": "remove", "path": ""}]),
    ("replace the document with a list", [{"op": "replace", "path": "", "value": []}]),
]


@pytest.mark.parametrize(
    "ops", [c[1] for c in JSON_PATCH_ERRORS], ids=[c[0] for c in JSON_PATCH_ERRORS]
)
def test_json_patch_operations_that_do_not_apply_are_422(ops: list[Obj]) -> None:
    error = status_error(lambda: patch(DOC, ops, JSON_PATCH))
    assert (error.code, error.reason) == (422, "Invalid")
    assert error.message == "the server rejected our request due to an error in our request"
    assert error.causes and error.causes[0]["message"]


def test_json_patch_failing_test_names_the_path() -> None:
    error = status_error(
        lambda: patch(pod(), [{"op": "test", "path": "/metadata/name", "value": "x"}], JSON_PATCH)
    )
    assert error.causes[0]["message"] == "testing value /metadata/name failed: test failed"


def test_json_patch_is_all_or_nothing() -> None:
    original = copy.deepcopy(DOC)
    ops = [{"op": "add", "path": "/a/d", "value": 4}, {"op": "test", "path": "/a/d", "value": 5}]
    status_error(lambda: patch(original, ops, JSON_PATCH))
    assert original == DOC


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=10,
)
json_objects = st.dictionaries(st.text(max_size=4), json_values, max_size=4)


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


@given(doc=json_objects, key=st.text(min_size=1, max_size=6), value=json_values)
@settings(max_examples=200, deadline=None)
def test_json_patch_add_then_remove_is_identity(doc: Obj, key: str, value: Any) -> None:
    doc.pop(key, None)
    ops = [
        {"op": "add", "path": "/" + _escape(key), "value": value},
        {"op": "test", "path": "/" + _escape(key), "value": value},
        {"op": "remove", "path": "/" + _escape(key)},
    ]
    assert patch(doc, ops, JSON_PATCH) == doc


@given(doc=json_objects)
@settings(max_examples=200, deadline=None)
def test_json_patch_test_of_every_member_passes(doc: Obj) -> None:
    ops = [{"op": "test", "path": "/" + _escape(k), "value": v} for k, v in doc.items()]
    assert patch(doc, ops, JSON_PATCH) == doc


# --------------------------------------------------------------------------------------------
# RFC 7386 (its appendix A, plus the API server's wrapping)

MERGE_PATCH_CASES: list[tuple[Any, Any, Any]] = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "body", "expected"), MERGE_PATCH_CASES)
def test_rfc7386_examples(target: Any, body: Any, expected: Any) -> None:
    assert merge_patch_value(target, body) == expected


def test_merge_patch_of_an_object() -> None:
    original = pod()
    original["metadata"]["labels"] = {"a": "1", "b": "2"}
    result = patch(original, {"metadata": {"labels": {"a": None, "c": "3"}}}, MERGE_PATCH)
    assert result["metadata"]["labels"] == {"b": "2", "c": "3"}
    # Lists are replaced whole, whatever their merge key.
    result = patch(original, {"spec": {"containers": [{"name": "x"}]}}, MERGE_PATCH)
    assert result["spec"]["containers"] == [{"name": "x"}]


def _merge_diff(source: Any, target: Any) -> Any:
    if not isinstance(source, dict) or not isinstance(target, dict):
        return target
    diff = {k: None for k in source if k not in target}
    for k, v in target.items():
        if k not in source:
            diff[k] = v
        elif source[k] != v or type(source[k]) is not type(v):
            diff[k] = _merge_diff(source[k], v)
    return diff


null_free = st.recursive(
    st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3)
    ),
    max_leaves=10,
)
null_free_objects = st.dictionaries(st.text(max_size=3), null_free, max_size=4)


@given(source=null_free_objects, target=null_free_objects)
@settings(max_examples=300, deadline=None)
def test_merge_patch_of_a_diff_reproduces_the_target(source: Obj, target: Obj) -> None:
    body = json.dumps(_merge_diff(source, target)).encode()
    assert apply_patch(source, PatchRequest(MERGE_PATCH, body, POD)) == target


# --------------------------------------------------------------------------------------------
# strategic merge: merge keys come from the API's OpenAPI extensions


def _at(key: ResourceKey, *path: str) -> SchemaNode:
    node = root_node(key)
    for part in path:
        node = node.items() if part == "[]" else node.child(part)
    return node


MERGE_KEYS: list[tuple[ResourceKey, tuple[str, ...], str | None, set[str]]] = [
    (POD, ("spec", "containers"), "name", {"merge"}),
    (POD, ("spec", "initContainers"), "name", {"merge"}),
    (POD, ("spec", "containers", "[]", "ports"), "containerPort", {"merge"}),
    (POD, ("spec", "containers", "[]", "env"), "name", {"merge"}),
    (POD, ("spec", "containers", "[]", "volumeMounts"), "mountPath", {"merge"}),
    (POD, ("spec", "volumes"), "name", {"merge", "retainKeys"}),
    (POD, ("spec", "imagePullSecrets"), "name", {"merge"}),
    (POD, ("status", "conditions"), "type", {"merge"}),
    (POD, ("status", "podIPs"), "ip", {"merge"}),
    (POD, ("metadata", "ownerReferences"), "uid", {"merge"}),
    (POD, ("metadata", "finalizers"), None, {"merge"}),
    (SERVICE, ("spec", "ports"), "port", {"merge"}),
    (NODE, ("status", "conditions"), "type", {"merge"}),
    (NODE, ("status", "addresses"), "type", {"merge"}),
    (DEPLOYMENT, ("status", "conditions"), "type", {"merge"}),
    (DEPLOYMENT, ("spec", "template", "spec", "containers"), "name", {"merge"}),
    (DEPLOYMENT, ("spec", "strategy"), None, {"retainKeys"}),
    (REPLICASET, ("status", "conditions"), "type", {"merge"}),
    # Atomic in the real API: a strategic merge replaces these lists.
    (POD, ("spec", "tolerations"), None, set()),
    (POD, ("spec", "readinessGates"), None, set()),
    (POD, ("status", "containerStatuses"), None, set()),
    (SLICE, ("endpoints",), None, set()),
    (SLICE, ("ports",), None, set()),
]


@pytest.mark.parametrize(
    ("key", "path", "merge_key", "strategies"),
    MERGE_KEYS,
    ids=[f"{m[0].kind}.{'.'.join(m[1])}" for m in MERGE_KEYS],
)
def test_merge_keys_are_the_apis(
    key: ResourceKey, path: tuple[str, ...], merge_key: str | None, strategies: set[str]
) -> None:
    node = _at(key, *path)
    assert (node.merge_key, set(node.strategies)) == (merge_key, strategies)


def test_two_pod_status_patches_of_different_condition_types_are_both_kept() -> None:
    original = pod()
    original["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    gate = "cloud.tencent.com/load-balancer-backendgroup-ready"
    first = smp(original, {"status": {"conditions": [{"type": gate, "status": "True"}]}})
    second = smp(first, {"status": {"conditions": [{"type": "PodScheduled", "status": "True"}]}})
    by_type = {c["type"]: c["status"] for c in second["status"]["conditions"]}
    assert by_type == {"Ready": "False", gate: "True", "PodScheduled": "True"}
    # Changing one condition leaves the others as they were.
    third = smp(second, {"status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    by_type = {c["type"]: c["status"] for c in third["status"]["conditions"]}
    assert by_type == {"Ready": "True", gate: "True", "PodScheduled": "True"}
    assert len(third["status"]["conditions"]) == 3


def test_kubelet_style_status_patch_with_set_element_order() -> None:
    original = pod()
    original["status"]["conditions"] = [
        {"type": "Initialized", "status": "True"},
        {"type": "Ready", "status": "False"},
    ]
    body = {
        "status": {
            "$setElementOrder/conditions": [
                {"type": "Initialized"},
                {"type": "Ready"},
                {"type": "ContainersReady"},
            ],
            "conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "ContainersReady", "status": "True"},
            ],
        }
    }
    result = smp(original, body)
    assert result["status"]["conditions"] == [
        {"type": "Initialized", "status": "True"},
        {"type": "Ready", "status": "True"},
        {"type": "ContainersReady", "status": "True"},
    ]


def test_new_items_go_first_without_set_element_order_as_kube_apiserver_does() -> None:
    original = pod()
    original["status"]["conditions"] = [{"type": "A"}, {"type": "B"}]
    result = smp(original, {"status": {"conditions": [{"type": "C"}]}})
    assert [c["type"] for c in result["status"]["conditions"]] == ["C", "A", "B"]


def test_readiness_gates_are_atomic_so_a_patch_sets_them_without_duplicates() -> None:
    gate = {"conditionType": "cloud.tencent.com/load-balancer-backendgroup-ready"}
    original = pod(readinessGates=[gate])
    result = smp(original, {"spec": {"readinessGates": [gate, {"conditionType": "b/c"}]}})
    assert result["spec"]["readinessGates"] == [gate, {"conditionType": "b/c"}]
    again = smp(result, {"spec": {"readinessGates": [gate, {"conditionType": "b/c"}]}})
    assert again["spec"]["readinessGates"] == [gate, {"conditionType": "b/c"}]


def test_finalizers_merge_as_a_set_and_delete_from_primitive_list() -> None:
    original = pod()
    original["metadata"]["finalizers"] = ["a.io/one", "b.io/two"]
    result = smp(original, {"metadata": {"finalizers": ["b.io/two", "c.io/three"]}})
    assert sorted(result["metadata"]["finalizers"]) == ["a.io/one", "b.io/two", "c.io/three"]
    assert len(result["metadata"]["finalizers"]) == 3
    removed = smp(result, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a.io/one"]}})
    assert sorted(removed["metadata"]["finalizers"]) == ["b.io/two", "c.io/three"]
    # Adding and removing at once, as kubectl's three-way patches do.
    both = smp(
        removed,
        {
            "metadata": {
                "$setElementOrder/finalizers": ["c.io/three", "d.io/four"],
                "finalizers": ["d.io/four"],
                "$deleteFromPrimitiveList/finalizers": ["b.io/two"],
            }
        },
    )
    assert both["metadata"]["finalizers"] == ["c.io/three", "d.io/four"]
    # Deleting from a list that is not there is a no-op.
    assert (
        "finalizers"
        not in smp(pod(), {"metadata": {"$deleteFromPrimitiveList/finalizers": ["x"]}})["metadata"]
    )


def test_containers_merge_by_name() -> None:
    original = pod()
    original["spec"]["containers"].append({"name": "sidecar", "image": "envoy"})
    result = smp(original, {"spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}})
    assert result["spec"]["containers"] == [
        {"name": "web", "image": "nginx:1.27"},
        {"name": "sidecar", "image": "envoy"},
    ]


def test_nested_lists_merge_by_their_own_keys() -> None:
    original = pod()
    container = original["spec"]["containers"][0]
    container["ports"] = [{"containerPort": 80, "name": "http"}]
    container["env"] = [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    container["volumeMounts"] = [{"mountPath": "/data", "name": "data"}]
    original["spec"]["volumes"] = [{"name": "data", "emptyDir": {}}]
    body = {
        "spec": {
            "containers": [
                {
                    "name": "web",
                    "ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 443}],
                    "env": [{"name": "B", "value": "3"}, {"name": "A", "$patch": "delete"}],
                    "volumeMounts": [{"mountPath": "/data", "readOnly": True}],
                }
            ],
            "volumes": [{"name": "cache", "emptyDir": {}}],
        }
    }
    result = smp(original, body)["spec"]
    web = result["containers"][0]
    assert web["ports"] == [
        {"containerPort": 80, "name": "http", "protocol": "TCP"},
        {"containerPort": 443},
    ]
    assert web["env"] == [{"name": "B", "value": "3"}]
    assert web["volumeMounts"] == [{"mountPath": "/data", "name": "data", "readOnly": True}]
    assert sorted(v["name"] for v in result["volumes"]) == ["cache", "data"]


def test_service_ports_merge_by_port() -> None:
    original = {
        "spec": {
            "ports": [
                {"name": "http", "port": 80, "targetPort": 8080},
                {"name": "https", "port": 443, "targetPort": 8443},
            ]
        }
    }
    result = smp(original, {"spec": {"ports": [{"port": 443, "targetPort": 9443}]}}, SERVICE)
    assert result["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": 8080},
        {"name": "https", "port": 443, "targetPort": 9443},
    ]


@pytest.mark.parametrize(
    ("key", "path", "item_key", "existing", "added"),
    [
        (
            POD,
            ("metadata", "ownerReferences"),
            "uid",
            {"uid": "u1", "kind": "ReplicaSet"},
            {"uid": "u2"},
        ),
        (POD, ("spec", "imagePullSecrets"), "name", {"name": "a"}, {"name": "b"}),
        (
            NODE,
            ("status", "addresses"),
            "type",
            {"type": "InternalIP", "address": "10.0.0.1"},
            {"type": "Hostname", "address": "n1"},
        ),
        (
            DEPLOYMENT,
            ("status", "conditions"),
            "type",
            {"type": "Available", "status": "True"},
            {"type": "Progressing", "status": "True"},
        ),
        (
            REPLICASET,
            ("status", "conditions"),
            "type",
            {"type": "ReplicaFailure", "status": "False"},
            {"type": "Other", "status": "True"},
        ),
    ],
)
def test_lists_merged_by_key_keep_the_other_items(
    key: ResourceKey, path: tuple[str, str], item_key: str, existing: Obj, added: Obj
) -> None:
    original: Obj = {path[0]: {path[1]: [existing]}}
    result = smp(original, {path[0]: {path[1]: [added]}}, key)
    assert sorted(i[item_key] for i in result[path[0]][path[1]]) == sorted(
        [existing[item_key], added[item_key]]
    )
    changed = {**existing, "extra": "x"}
    merged = smp(original, {path[0]: {path[1]: [changed]}}, key)
    assert merged[path[0]][path[1]] == [{**existing, **changed}]


@pytest.mark.parametrize(
    ("key", "path", "existing", "patched"),
    [
        (
            POD,
            ("spec", "tolerations"),
            [{"key": "a", "operator": "Exists"}],
            [{"key": "b", "operator": "Exists"}],
        ),
        (
            POD,
            ("status", "containerStatuses"),
            [{"name": "web", "ready": False}],
            [{"name": "web", "ready": True}],
        ),
        (SLICE, (None, "endpoints"), [{"addresses": ["10.0.0.1"]}], [{"addresses": ["10.0.0.2"]}]),
        (POD, ("spec", "containers", 0, "args"), ["a", "b"], ["c"]),
    ],
)
def test_atomic_lists_are_replaced(
    key: ResourceKey, path: tuple[Any, ...], existing: list[Any], patched: list[Any]
) -> None:
    def nest(value: Any) -> Obj:
        keys = [p for p in path if p is not None]
        out: Any = value
        for part in reversed(keys):
            out = [{"name": "web", **out}] if isinstance(part, int) else {part: out}
        return out  # type: ignore[no-any-return]

    result = smp(nest(existing), nest(patched), key)
    node: Any = result
    for part in [p for p in path if p is not None]:
        node = node[part]
    assert node == patched


def test_labels_merge_and_null_deletes() -> None:
    original = pod()
    original["metadata"]["labels"] = {"a": "1", "b": "2"}
    result = smp(original, {"metadata": {"labels": {"a": None, "c": "3"}}})
    assert result["metadata"]["labels"] == {"b": "2", "c": "3"}


def test_patch_replace_directive_on_a_map() -> None:
    original = pod()
    original["metadata"]["labels"] = {"a": "1", "b": "2"}
    result = smp(original, {"metadata": {"labels": {"$patch": "replace", "c": "3"}}})
    assert result["metadata"]["labels"] == {"c": "3"}


def test_patch_delete_directive_on_a_map_leaves_it_empty() -> None:
    original = pod(nodeSelector={"a": "1"})
    assert (
        smp(original, {"spec": {"nodeSelector": {"$patch": "delete"}}})["spec"]["nodeSelector"]
        == {}
    )


def test_patch_merge_directive_is_the_default() -> None:
    original = pod()
    original["metadata"]["labels"] = {"a": "1"}
    result = smp(original, {"metadata": {"labels": {"$patch": "merge", "b": "2"}}})
    assert result["metadata"]["labels"] == {"a": "1", "b": "2"}


def test_patch_replace_element_replaces_a_merging_list() -> None:
    original = pod()
    original["spec"]["containers"].append({"name": "sidecar", "image": "envoy"})
    body = {"spec": {"containers": [{"$patch": "replace"}, {"name": "only", "image": "x"}]}}
    assert smp(original, body)["spec"]["containers"] == [{"name": "only", "image": "x"}]
    emptied = smp(original, {"spec": {"containers": [{"$patch": "replace"}]}})
    assert emptied["spec"]["containers"] == []


def test_retain_keys_clears_fields_not_listed() -> None:
    original = {"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}
    result = smp(
        original,
        {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}},
        DEPLOYMENT,
    )
    assert result["spec"]["strategy"] == {"type": "Recreate"}
    error = status_error(
        lambda: smp(
            original,
            {"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}},
            DEPLOYMENT,
        )
    )
    assert error.code == 400


def test_set_element_order_reorders_containers() -> None:
    original = pod()
    original["spec"]["containers"].append({"name": "sidecar", "image": "envoy"})
    body = {"spec": {"$setElementOrder/containers": [{"name": "sidecar"}, {"name": "web"}]}}
    assert [c["name"] for c in smp(original, body)["spec"]["containers"]] == ["sidecar", "web"]


def test_a_new_list_in_the_patch_loses_its_directives() -> None:
    result = smp(
        {"spec": {}},
        {"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "$patch": "delete"}]}},
    )
    assert result["spec"]["containers"] == [{"name": "a", "image": "x"}]


@pytest.mark.parametrize(
    "body",
    [
        {"spec": {"containers": [{"image": "no-name"}]}},
        {"metadata": {"labels": {"$patch": "explode"}}},
        {"spec": {"containers": [{"name": "web", "$patch": "sideways"}]}},
        {"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}},
        {"spec": {"$setElementOrder/containers": "web"}},
        {"spec": {"containers": [{"$patch": "merge"}]}},
    ],
)
def test_malformed_strategic_patches_are_400(body: Obj) -> None:
    assert status_error(lambda: smp(pod(), body)).code == 400


def test_lists_of_lists_are_422() -> None:
    error = status_error(
        lambda: smp({"metadata": {"finalizers": ["a"]}}, {"metadata": {"finalizers": [["b"]]}})
    )
    assert error.code == 422


# The behaviour tests of k8s.io/apimachinery's strategicpatch, on a schema of their own.
TEST_SCHEMA = SchemaNode(
    {
        "properties": {
            "mergingList": {
                "type": "array",
                "x-kubernetes-patch-strategy": "merge",
                "x-kubernetes-patch-merge-key": "name",
                "items": {"type": "object"},
            },
            "mergingIntList": {"type": "array", "x-kubernetes-patch-strategy": "merge"},
            "nonMergingList": {"type": "array"},
            "simpleMap": {"type": "object", "additionalProperties": {"type": "string"}},
        }
    }
)

UPSTREAM_CASES: list[tuple[str, Obj, Obj, Obj]] = [
    (
        "unique scalars when merging lists",
        {"mergingIntList": [1, 2]},
        {"mergingIntList": [2, 3]},
        {"mergingIntList": [1, 2, 3]},
    ),
    (
        "delete map from nested map",
        {"simpleMap": {"key1": 1, "key2": 1}},
        {"simpleMap": {"$patch": "delete"}},
        {"simpleMap": {}},
    ),
    (
        "delete all items from merging list",
        {"mergingList": [{"name": 1}, {"name": 2}]},
        {"mergingList": [{"$patch": "replace"}]},
        {"mergingList": []},
    ),
    ("merge empty merging lists", {"mergingList": []}, {"mergingList": []}, {"mergingList": []}),
    ("delete all keys from map", {"name": 1, "value": 1}, {"$patch": "replace"}, {}),
    (
        "add key and delete all keys",
        {"name": 1, "value": 1},
        {"other": "a", "$patch": "replace"},
        {"other": "a"},
    ),
    (
        "delete all duplicate entries in a merging list",
        {
            "mergingList": [
                {"name": 1},
                {"name": 1},
                {"name": 2, "value": "a"},
                {"name": 3},
                {"name": 3},
            ]
        },
        {"mergingList": [{"name": 1, "$patch": "delete"}, {"name": 3, "$patch": "delete"}]},
        {"mergingList": [{"name": 2, "value": "a"}]},
    ),
    (
        "preserve the order from the patch in a merging list",
        {"mergingList": [{"name": 1}, {"name": 2, "value": "b"}, {"name": 3}]},
        {
            "mergingList": [
                {"name": 3, "value": "c"},
                {"name": 1, "value": "a"},
                {"name": 2, "other": "x"},
            ]
        },
        {
            "mergingList": [
                {"name": 3, "value": "c"},
                {"name": 1, "value": "a"},
                {"name": 2, "value": "b", "other": "x"},
            ]
        },
    ),
    (
        "preserve the order from the patch in a merging list 2",
        {"mergingList": [{"name": 1}, {"name": 2, "value": "b"}, {"name": 3}]},
        {"mergingList": [{"name": 3, "value": "c"}, {"name": 1, "value": "a"}]},
        {
            "mergingList": [
                {"name": 2, "value": "b"},
                {"name": 3, "value": "c"},
                {"name": 1, "value": "a"},
            ]
        },
    ),
    (
        "preserve the order in a merging int list",
        {"mergingIntList": [1, 2, 3]},
        {"mergingIntList": [3, 1, 2]},
        {"mergingIntList": [3, 1, 2]},
    ),
    (
        "preserve the order in a merging int list 2",
        {"mergingIntList": [1, 2, 3]},
        {"mergingIntList": [3, 1]},
        {"mergingIntList": [2, 3, 1]},
    ),
    (
        "set element order with a deletion",
        {"mergingList": [{"name": 1}, {"name": 2}, {"name": 3}]},
        {
            "$setElementOrder/mergingList": [{"name": 3}, {"name": 1}],
            "mergingList": [{"name": 2, "$patch": "delete"}],
        },
        {"mergingList": [{"name": 3}, {"name": 1}]},
    ),
    (
        "non-merging lists are replaced",
        {"nonMergingList": [1, 2]},
        {"nonMergingList": [3]},
        {"nonMergingList": [3]},
    ),
    ("null deletes", {"a": 1, "b": 2}, {"a": None}, {"b": 2}),
]


@pytest.mark.parametrize(
    ("original", "body", "expected"),
    [c[1:] for c in UPSTREAM_CASES],
    ids=[c[0] for c in UPSTREAM_CASES],
)
def test_upstream_strategic_merge_cases(original: Obj, body: Obj, expected: Obj) -> None:
    assert strategic_merge(original, body, TEST_SCHEMA) == expected


container_names = st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), unique=True, max_size=5)


@given(live=container_names, patched=container_names)
@settings(max_examples=200, deadline=None)
def test_strategic_merge_of_containers_is_a_union_by_name(
    live: list[str], patched: list[str]
) -> None:
    original = {"spec": {"containers": [{"name": n, "image": "old"} for n in live]}}
    body = {"spec": {"containers": [{"name": n, "image": "new"} for n in patched]}}
    result = smp(original, body)["spec"]["containers"]
    assert sorted(c["name"] for c in result) == sorted(set(live) | set(patched))
    assert all(c["image"] == ("new" if c["name"] in patched else "old") for c in result)
    # Patched items keep the patch's order.
    assert [c["name"] for c in result if c["name"] in patched] == patched


# --------------------------------------------------------------------------------------------
# server-side apply

DEPLOYMENT_YAML = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
  labels:
    app: web
spec:
  replicas: 3
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
      annotations:
        tke.cloud.tencent.com/networks: tke-route-eni
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
        ports:
        - containerPort: 80
"""


def ssa(
    live: Obj | None,
    body: str | Obj,
    manager: str | None = "kubectl",
    *,
    force: bool = False,
    key: ResourceKey = DEPLOYMENT,
    **extra: Any,
) -> Obj:
    raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    request = PatchRequest(
        APPLY_PATCH, raw, key, field_manager=manager, force=force, extra={"now": NOW, **extra}
    )
    return apply_patch(live or {}, request, live_exists=live is not None)


def managers(obj: Obj) -> dict[str, set[str]]:
    return {
        f"{e['manager']}/{e['operation']}": {path_string(p) for p in decode_fields(e["fieldsV1"])}
        for e in obj["metadata"].get("managedFields", [])
    }


def test_apply_creates_the_object_with_field_ownership() -> None:
    created = ssa(None, DEPLOYMENT_YAML)
    assert created["spec"]["replicas"] == 3
    assert created["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.25"
    (entry,) = created["metadata"]["managedFields"]
    assert {k: v for k, v in entry.items() if k != "fieldsV1"} == {
        "manager": "kubectl",
        "operation": "Apply",
        "apiVersion": "apps/v1",
        "time": NOW,
        "fieldsType": "FieldsV1",
    }
    assert entry["fieldsV1"]["f:spec"]["f:replicas"] == {}
    assert entry["fieldsV1"]["f:spec"]["f:selector"] == {}  # an atomic map: owned whole
    containers = entry["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]
    item = containers['k:{"name":"nginx"}']
    assert item["."] == {} and item["f:image"] == {}
    assert 'k:{"containerPort":80,"protocol":"TCP"}' in item["f:ports"]
    assert "f:name" not in entry["fieldsV1"]["f:metadata"]  # name, apiVersion, kind are stripped
    assert "f:apiVersion" not in entry["fieldsV1"]


def test_apply_accepts_json_bodies() -> None:
    body = yaml.safe_load(DEPLOYMENT_YAML)
    assert ssa(None, body)["spec"]["replicas"] == 3


def test_apply_keeps_timestamps_as_strings() -> None:
    body = DEPLOYMENT_YAML.replace(
        "  labels:\n    app: web\n", "  annotations:\n    at: 2024-01-01T00:00:00Z\n", 1
    )
    assert ssa(None, body)["metadata"]["annotations"]["at"] == "2024-01-01T00:00:00Z"


def test_apply_requires_a_field_manager() -> None:
    error = status_error(lambda: ssa(None, DEPLOYMENT_YAML, manager=None))
    assert (error.code, error.reason) == (422, "Invalid")
    assert error.causes == [
        {
            "field": "fieldManager",
            "reason": "FieldValueRequired",
            "message": "Required value: is required for apply patch",
        }
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("apiVersion: apps/v2\nkind: Deployment\n", "Incorrect version specified in apply patch"),
        ("kind: Deployment\n", "Incorrect version specified in apply patch"),
        ("- a\n- b\n", "error decoding YAML"),
        ("a: [\n", "error decoding YAML"),
        (
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  managedFields: []\n",
            "metadata.managedFields must be nil",
        ),
    ],
)
def test_bad_apply_bodies_are_400(body: str, message: str) -> None:
    error = status_error(lambda: ssa(None, body))
    assert error.code == 400
    assert message in error.message


def test_apply_conflict_with_another_manager_and_force() -> None:
    live = ssa(None, DEPLOYMENT_YAML)
    scaled = DEPLOYMENT_YAML.replace("replicas: 3", "replicas: 5")
    error = status_error(lambda: ssa(live, scaled, "other"))
    assert (error.code, error.reason) == (409, "Conflict")
    assert error.message == 'Apply failed with 1 conflict: conflict with "kubectl": .spec.replicas'
    assert error.causes == [
        {
            "reason": "FieldManagerConflict",
            "message": 'conflict with "kubectl"',
            "field": ".spec.replicas",
        }
    ]
    forced = ssa(live, scaled, "other", force=True)
    assert forced["spec"]["replicas"] == 5
    owners = managers(forced)
    assert ".spec.replicas" in owners["other/Apply"]
    assert ".spec.replicas" not in owners["kubectl/Apply"]
    # Same values are shared, not conflicting: both managers own the image now.
    image = '.spec.template.spec.containers[name="nginx"].image'
    assert image in owners["other/Apply"] and image in owners["kubectl/Apply"]


def test_apply_conflicts_are_listed_per_manager() -> None:
    live = ssa(None, DEPLOYMENT_YAML)
    changed = DEPLOYMENT_YAML.replace("replicas: 3", "replicas: 5").replace(
        "nginx:1.25", "nginx:1.27"
    )
    error = status_error(lambda: ssa(live, changed, "other"))
    assert error.message == (
        'Apply failed with 2 conflicts: conflicts with "kubectl":\n'
        "- .spec.replicas\n"
        '- .spec.template.spec.containers[name="nginx"].image'
    )
    assert len(error.causes) == 2


def test_apply_by_the_same_manager_never_conflicts_and_removes_omitted_fields() -> None:
    live = ssa(None, DEPLOYMENT_YAML)
    live = ssa(live, DEPLOYMENT_YAML.replace("replicas: 3", "replicas: 4"))
    assert live["spec"]["replicas"] == 4
    trimmed = DEPLOYMENT_YAML.replace("  labels:\n    app: web\nspec:", "spec:", 1)
    trimmed = trimmed.replace(
        "      annotations:\n        tke.cloud.tencent.com/networks: tke-route-eni\n", ""
    )
    result = ssa(live, trimmed)
    assert "labels" not in result["metadata"]
    assert "annotations" not in result["spec"]["template"]["metadata"]
    assert result["spec"]["template"]["metadata"]["labels"] == {"app": "web"}


def test_fields_another_manager_owns_survive_their_omission() -> None:
    live = ssa(None, DEPLOYMENT_YAML)
    live = ssa(
        live, "apiVersion: apps/v1\nkind: Deployment\nspec:\n  replicas: 5\n", "hpa", force=True
    )
    without_replicas = DEPLOYMENT_YAML.replace("  replicas: 3\n", "")
    result = ssa(live, without_replicas)
    assert result["spec"]["replicas"] == 5
    assert managers(result)["hpa/Apply"] == {".spec.replicas"}


def test_omitted_list_items_are_removed_and_others_kept() -> None:
    two = DEPLOYMENT_YAML + "      - name: sidecar\n        image: envoy\n"
    live = ssa(None, two)
    assert [c["name"] for c in live["spec"]["template"]["spec"]["containers"]] == [
        "nginx",
        "sidecar",
    ]
    result = ssa(live, DEPLOYMENT_YAML)
    assert [c["name"] for c in result["spec"]["template"]["spec"]["containers"]] == ["nginx"]


def test_apply_merges_keyed_lists_with_live_items_of_other_writers() -> None:
    live = ssa(None, DEPLOYMENT_YAML)
    live["spec"]["template"]["spec"]["containers"].append({"name": "injected", "image": "x"})
    live["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = "IfNotPresent"
    result = ssa(live, DEPLOYMENT_YAML.replace("nginx:1.25", "nginx:1.27"))
    containers = result["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["nginx", "injected"]
    assert containers[0]["image"] == "nginx:1.27"
    assert containers[0]["imagePullPolicy"] == "IfNotPresent"


def test_apply_finalizers_as_a_set() -> None:
    base = (
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  finalizers: [a.io/x]\n"
        "spec:\n  containers: [{name: c, image: i}]\n"
    )
    live = ssa(None, base, key=POD)
    live["metadata"]["finalizers"].append("b.io/y")
    result = ssa(live, base.replace("[a.io/x]", "[c.io/z]"), key=POD)
    assert result["metadata"]["finalizers"] == ["b.io/y", "c.io/z"]
    assert managers(result)["kubectl/Apply"] >= {'.metadata.finalizers[="c.io/z"]'}


def test_apply_of_an_atomic_list_replaces_it() -> None:
    base = (
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n"
        "spec:\n  containers: [{name: c, image: i, args: [a, b]}]\n"
    )
    live = ssa(None, base, key=POD)
    result = ssa(live, base.replace("[a, b]", "[c]"), key=POD)
    assert result["spec"]["containers"][0]["args"] == ["c"]
    assert '.spec.containers[name="c"].args' in managers(result)["kubectl/Apply"]


def test_apply_to_a_custom_resource_with_and_without_its_schema() -> None:
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "items": {
                        "type": "array",
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["id"],
                        "items": {"type": "object"},
                    }
                },
            }
        },
    }
    body = (
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n"
        "spec:\n  items: [{id: a, v: 1}]\n"
    )
    live = ssa(None, body, key=WIDGET, schema=schema)
    live["spec"]["items"].append({"id": "b", "v": 2})
    merged = ssa(live, body.replace("v: 1", "v: 3"), key=WIDGET, schema=schema)
    assert merged["spec"]["items"] == [{"id": "a", "v": 3}, {"id": "b", "v": 2}]
    replaced = ssa(live, body.replace("v: 1", "v: 3"), key=WIDGET)  # no schema: atomic lists
    assert replaced["spec"]["items"] == [{"id": "a", "v": 3}]


def test_apply_records_the_subresource() -> None:
    live = ssa(None, DEPLOYMENT_YAML)
    status = "apiVersion: apps/v1\nkind: Deployment\nstatus:\n  replicas: 3\n"
    result = ssa(live, status, "controller", subresource="status")
    entry = next(e for e in result["metadata"]["managedFields"] if e["manager"] == "controller")
    assert entry["subresource"] == "status"


def test_managed_fields_are_sorted_apply_first_then_by_time() -> None:
    live = ssa(None, DEPLOYMENT_YAML, "b-manager")
    live = update_managed_fields(
        live,
        {**live, "spec": {**live["spec"], "paused": True}},
        DEPLOYMENT,
        manager="a-updater",
        now="2024-06-01T00:00:00Z",
    )
    live = ssa(
        live, "apiVersion: apps/v1\nkind: Deployment\nspec:\n  minReadySeconds: 5\n", "a-manager"
    )
    order = [(e["operation"], e["manager"]) for e in live["metadata"]["managedFields"]]
    assert order == [("Apply", "a-manager"), ("Apply", "b-manager"), ("Update", "a-updater")]


def test_update_ownership_conflicts_with_apply() -> None:
    live = ssa(None, DEPLOYMENT_YAML)
    scaled = copy.deepcopy(live)
    scaled["spec"]["replicas"] = 7
    scaled = update_managed_fields(live, scaled, DEPLOYMENT, manager="kubectl-scale", now=NOW)
    owners = managers(scaled)
    assert owners["kubectl-scale/Update"] == {".spec.replicas"}
    assert ".spec.replicas" not in owners["kubectl/Apply"]
    error = status_error(lambda: ssa(scaled, DEPLOYMENT_YAML))
    assert error.message == (
        'Apply failed with 1 conflict: conflict with "kubectl-scale" using apps/v1 at '
        f"{NOW}: .spec.replicas"
    )


def test_update_managed_fields_on_create_and_removal() -> None:
    created = update_managed_fields(None, pod(), POD, manager="kubectl-create", now=NOW)
    owned = managers(created)["kubectl-create/Update"]
    assert '.spec.containers[name="web"].image' in owned
    assert ".metadata.resourceVersion" not in owned
    stripped = copy.deepcopy(created)
    del stripped["status"]
    updated = update_managed_fields(created, stripped, POD, manager="other", now=NOW)
    assert ".status.phase" not in managers(updated)["kubectl-create/Update"]
    assert "other/Update" not in managers(updated)  # removing fields gains no ownership


FIELD_SETS: list[tuple[str, Obj, ResourceKey, set[str]]] = [
    ("scalars", {"spec": {"replicas": 1}}, DEPLOYMENT, {".spec.replicas"}),
    (
        "empty map is a member",
        {"spec": {"template": {"metadata": {}}}},
        DEPLOYMENT,
        {".spec.template.metadata"},
    ),
    ("null is a member", {"spec": {"paused": None}}, DEPLOYMENT, {".spec.paused"}),
    (
        "atomic map",
        {"spec": {"selector": {"matchLabels": {"a": "b"}}}},
        DEPLOYMENT,
        {".spec.selector"},
    ),
    ("free-form map entries", {"metadata": {"labels": {"a": "b"}}}, POD, {".metadata.labels.a"}),
    (
        "keyed list",
        {"spec": {"ports": [{"port": 80, "name": "http"}]}},
        SERVICE,
        {
            '.spec.ports[port=80,protocol="TCP"]',
            '.spec.ports[port=80,protocol="TCP"].port',
            '.spec.ports[port=80,protocol="TCP"].name',
        },
    ),
    ("set", {"metadata": {"finalizers": ["x"]}}, POD, {'.metadata.finalizers[="x"]'}),
    ("atomic list", {"spec": {"tolerations": [{"key": "k"}]}}, POD, {".spec.tolerations"}),
]


@pytest.mark.parametrize(
    ("value", "key", "expected"), [c[1:] for c in FIELD_SETS], ids=[c[0] for c in FIELD_SETS]
)
def test_field_sets(value: Obj, key: ResourceKey, expected: set[str]) -> None:
    assert {path_string(p) for p in field_set(value, root_node(key))} == expected


def test_fields_v1_round_trip() -> None:
    paths = field_set(yaml.safe_load(DEPLOYMENT_YAML), root_node(DEPLOYMENT))
    encoded = encode_fields(paths)
    assert decode_fields(json.loads(json.dumps(encoded))) == paths


@given(
    replicas=st.integers(0, 50),
    image=st.sampled_from(["a", "b"]),
    labels=st.dictionaries(
        st.sampled_from(["x", "y", "z"]), st.sampled_from(["1", "2"]), max_size=3
    ),
)
@settings(max_examples=100, deadline=None)
def test_reapplying_the_same_configuration_is_idempotent(
    replicas: int, image: str, labels: dict[str, str]
) -> None:
    body: Obj = yaml.safe_load(DEPLOYMENT_YAML)
    body["spec"]["replicas"] = replicas
    body["spec"]["template"]["spec"]["containers"][0]["image"] = image
    body["metadata"]["labels"] = labels
    once = ssa(None, body)
    twice = ssa(once, body)
    assert twice == once
