"""PATCH bodies of the four kinds the API server accepts, applied to a stored object.

``apply_patch(original, request, live_exists=...)`` returns the patched object and never
mutates ``original``. Errors are ``StatusError`` s shaped like the real server's:

* ``application/json-patch+json`` (RFC 6902). A body that is not a JSON array of operations is
  400 BadRequest; an operation that does not apply (a failing ``test``, a missing path, an index
  out of range, an unknown ``op``) is 422 Invalid with the real server's message ("the server
  rejected our request due to an error in our request"); what went wrong is in the cause.
* ``application/merge-patch+json`` (RFC 7386).
* ``application/strategic-merge-patch+json``: Kubernetes' strategic merge, a port of
  ``k8s.io/apimachinery/pkg/util/strategicpatch`` (server side). Which lists merge, and by which
  key, comes from the ``x-kubernetes-patch-strategy`` / ``x-kubernetes-patch-merge-key``
  extensions of the built-in types' OpenAPI schemas (see ``schema_catalog``), never from a
  hand-written table. Directives: ``$patch: replace|delete`` (maps and list items; ``merge`` is
  accepted and means the default), ``$patch: replace`` as a list element,
  ``$deleteFromPrimitiveList/<field>``, ``$setElementOrder/<field>``, ``$retainKeys``. Order of
  merged lists is the real one (new items without ``$setElementOrder`` go *before* the live
  ones, as kube-apiserver does). Custom resources answer 415, as the real server does.
* ``application/apply-patch+yaml`` (server-side apply): see ``_server_side_apply``. Field
  ownership is tracked per field path exactly as structured-merge-diff's ``ToFieldSet`` does
  for an applied configuration: every scalar leaf; every list item of a ``map`` list (path
  ``k:{"name":"web"}``, by its ``x-kubernetes-list-map-keys``, ``protocol`` defaulting to TCP)
  or ``set`` list (``v:"value"``) as a member of its own plus its fields; ``atomic`` lists and
  ``x-kubernetes-map-type: atomic`` maps (e.g. label selectors) as one field; free-form map
  entries, empty maps and nulls as members. ``apiVersion``, ``kind`` and the system metadata
  (name, namespace, uid, resourceVersion, generation, creationTimestamp, managedFields …) are
  never owned. ``metadata.managedFields`` entries are written in the real FieldsV1 format and
  order. Not modelled: conversion of ownership between API versions, the status/spec reset of
  the other half of a resource (the server does that), and a client overwriting managedFields.
  ``update_managed_fields`` records non-apply writes so that apply sees their ownership.

A ``metadata.resourceVersion`` in any patch is kept in the result: the server compares it with
the stored one (an optimistic-concurrency precondition), this module does not.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import yaml

from directlb.sim.contracts import Obj, PatchRequest, ResourceKey, StatusError
from directlb.sim.schema_catalog import SchemaNode, is_builtin, root_node

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"

BUILTIN_PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, APPLY_PATCH)
CUSTOM_RESOURCE_PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, APPLY_PATCH)

_INVALID_MESSAGE = "the server rejected our request due to an error in our request"


def patch_types(key: ResourceKey) -> tuple[str, ...]:
    """The content types a PATCH of ``key`` accepts (what the server's 415 lists)."""
    return BUILTIN_PATCH_TYPES if is_builtin(key) else CUSTOM_RESOURCE_PATCH_TYPES


def apply_patch(original: Obj, request: PatchRequest, *, live_exists: bool = True) -> Obj:
    """The object ``original`` becomes under ``request``; ``original`` is left untouched.

    ``live_exists`` is False when nothing is stored under the name yet: only an apply patch
    may then create the object (from an empty one); the other kinds answer 404 in the server
    before they get here, and are applied to ``original`` regardless if called.
    ``request.extra`` may carry ``"schema"`` (a custom resource's ``openAPIV3Schema``, for
    server-side apply's list semantics), ``"now"`` (the managedFields time, a ``datetime`` or
    an RFC 3339 string) and ``"subresource"`` (recorded on managedFields entries).
    """
    content_type = request.content_type.split(";", 1)[0].strip().lower()
    accepted = patch_types(request.key)
    if content_type not in accepted:
        raise StatusError(
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: "
            + ", ".join(accepted),
        )
    if request.force and content_type != APPLY_PATCH:
        raise _invalid_options(
            "force", "Forbidden", "Forbidden: may not be specified for non-apply patch"
        )
    if content_type == JSON_PATCH:
        return _json_patch(original, request.body)
    if content_type == MERGE_PATCH:
        return _merge_patch(original, request.body)
    if content_type == STRATEGIC_MERGE_PATCH:
        return _strategic_merge_patch(original, request.body, request.key)
    return _server_side_apply(original, request, live_exists=live_exists)


# --------------------------------------------------------------------------------------------
# helpers


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()


def _copy(value: Any) -> Any:
    """A deep copy of JSON data (several times faster than ``copy.deepcopy``)."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def json_equal(a: Any, b: Any) -> bool:
    """Equality of JSON values: ``true`` is not ``1``, ``1`` is ``1.0``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict):
        return (
            isinstance(b, dict)
            and a.keys() == b.keys()
            and all(json_equal(v, b[k]) for k, v in a.items())
        )
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(json_equal, a, b))
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and a == b


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _bad_request(message: str) -> StatusError:
    return StatusError(400, "BadRequest", message)


def _unprocessable(detail: str, field: str = "") -> StatusError:
    return StatusError(
        422,
        "Invalid",
        _INVALID_MESSAGE,
        causes=[{"field": field, "reason": "FieldValueInvalid", "message": detail}],
    )


def _invalid_options(field: str, reason: str, message: str) -> StatusError:
    return StatusError(
        422,
        "Invalid",
        f'PatchOptions.meta.k8s.io "" is invalid: {field}: {message}',
        causes=[{"field": field, "reason": f"FieldValue{reason}", "message": message}],
        details={"group": "meta.k8s.io", "kind": "PatchOptions"},
    )


def _load_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad_request(f"error decoding patch: {exc}") from None


# --------------------------------------------------------------------------------------------
# RFC 6902 JSON patch


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str):
        raise _unprocessable(f"invalid JSON pointer {path!r}: not a string")
    if path == "":
        return []
    if not path.startswith("/"):
        raise _unprocessable(f'JSON pointer must be empty or start with a "/": {path!r}')
    tokens = path[1:].split("/")
    out = []
    for token in tokens:
        rest = token.replace("~0", "").replace("~1", "")
        if "~" in rest:
            raise _unprocessable(f"invalid JSON pointer escape in {path!r}")
        out.append(token.replace("~1", "/").replace("~0", "~"))
    return out


def _index(token: str, size: int, *, op: str, path: str, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return size
    if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
        raise _unprocessable(
            f"{op} operation does not apply: invalid array index {token!r} in {path}"
        )
    index = int(token)
    if index > size or (index == size and not allow_end):
        raise _unprocessable(
            f"{op} operation does not apply: unable to access invalid index: {index}: "
            f"invalid index referenced in {path}"
        )
    return index


def _parent(doc: Any, tokens: list[str], *, op: str, path: str) -> Any:
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            if len(token) > 1 and token.startswith("0"):
                raise _unprocessable(
                    f"{op} operation does not apply: invalid array index {token!r}"
                )
            node = node[int(token)]
        else:
            raise _unprocessable(
                f'{op} operation does not apply: doc is missing path: "{path}": missing value', path
            )
    return node


def _get_pointer(doc: Any, tokens: list[str], *, op: str, path: str) -> Any:
    if not tokens:
        return doc
    parent = _parent(doc, tokens, op=op, path=path)
    token = tokens[-1]
    if isinstance(parent, dict) and token in parent:
        return parent[token]
    if isinstance(parent, list):
        return parent[_index(token, len(parent), op=op, path=path, allow_end=False)]
    raise _unprocessable(
        f'{op} operation does not apply: doc is missing path: "{path}": missing value', path
    )


def _add(doc: Any, tokens: list[str], value: Any, *, op: str, path: str) -> Any:
    if not tokens:
        return value
    parent = _parent(doc, tokens, op=op, path=path)
    token = tokens[-1]
    if isinstance(parent, dict):
        parent[token] = value
    elif isinstance(parent, list):
        parent.insert(_index(token, len(parent), op=op, path=path, allow_end=True), value)
    else:
        raise _unprocessable(
            f'{op} operation does not apply: doc is missing path: "{path}": missing value', path
        )
    return doc


def _remove(doc: Any, tokens: list[str], *, op: str, path: str) -> Any:
    if not tokens:
        raise _unprocessable(f"{op} operation does not apply: cannot remove the whole document")
    parent = _parent(doc, tokens, op=op, path=path)
    token = tokens[-1]
    if isinstance(parent, dict) and token in parent:
        return parent.pop(token)
    if isinstance(parent, list):
        return parent.pop(_index(token, len(parent), op=op, path=path, allow_end=False))
    raise _unprocessable(
        f'{op} operation does not apply: doc is missing path: "{path}": missing value', path
    )


def _json_patch(original: Obj, body: bytes) -> Obj:
    operations = _load_json(body)
    if not isinstance(operations, list) or not all(isinstance(o, dict) for o in operations):
        raise _bad_request(
            "error decoding patch: json: cannot unmarshal "
            f"{type(operations).__name__} into Go value of type jsonpatch.Patch"
        )
    if len(operations) > 10000:
        raise StatusError(
            413,
            "RequestEntityTooLarge",
            f"The allowed maximum operations in a JSON patch is 10000, got {len(operations)}",
        )
    doc = apply_json_patch_operations(original, operations)
    if not isinstance(doc, dict):
        raise _unprocessable("the patched document is not a JSON object")
    return doc


def apply_json_patch_operations(original: Any, operations: list[Any]) -> Any:
    """Apply RFC 6902 ``operations`` to a copy of ``original`` and return the result.

    Failures are 422 Invalid ``StatusError`` s whose first cause carries evanphx/json-patch's
    wording (``add operation does not apply: doc is missing path: ...``). Also used by
    admission for the patches webhooks return.
    """
    doc: Any = _copy(original)
    for operation in operations:
        if not isinstance(operation, dict):
            raise _unprocessable(f"invalid operation: {operation!r}")
        op = operation.get("op")
        path: Any = operation.get("path")
        if op in ("add", "replace", "test") and "value" not in operation:
            raise _unprocessable(f'{op} operation does not apply: missing "value"', str(path))
        tokens = _pointer(path)
        if op == "add":
            doc = _add(doc, tokens, _copy(operation["value"]), op=op, path=path)
        elif op == "remove":
            _remove(doc, tokens, op=op, path=path)
        elif op == "replace":
            if tokens:
                _get_pointer(doc, tokens, op=op, path=path)  # must exist
                parent = _parent(doc, tokens, op=op, path=path)
                if isinstance(parent, list):
                    parent[_index(tokens[-1], len(parent), op=op, path=path, allow_end=False)] = (
                        _copy(operation["value"])
                    )
                else:
                    parent[tokens[-1]] = _copy(operation["value"])
            else:
                doc = _copy(operation["value"])
        elif op in ("move", "copy"):
            source = operation.get("from")
            from_tokens = _pointer(source)
            if op == "move" and tokens[: len(from_tokens)] == from_tokens and tokens != from_tokens:
                raise _unprocessable(
                    f"move operation does not apply: cannot move {source} "
                    f"into its own child {path}",
                    str(path),
                )
            if op == "move":
                if tokens == from_tokens:
                    _get_pointer(doc, from_tokens, op=op, path=str(source))
                    continue
                value = _remove(doc, from_tokens, op=op, path=str(source))
            else:
                value = _copy(_get_pointer(doc, from_tokens, op=op, path=str(source)))
            doc = _add(doc, tokens, value, op=op, path=path)
        elif op == "test":
            try:
                current = _get_pointer(doc, tokens, op=op, path=path)
            except StatusError:
                current = None  # a missing value tests equal to null, as in kube-apiserver
            if not json_equal(current, operation["value"]):
                raise _unprocessable(f"testing value {path} failed: test failed", str(path))
        else:
            raise _unprocessable(f"Unexpected kind: {op}")
    return doc


# --------------------------------------------------------------------------------------------
# RFC 7386 JSON merge patch


def merge_patch_value(target: Any, patch: Any) -> Any:
    """RFC 7386 ``MergePatch(target, patch)``; ``target`` is not mutated."""
    if not isinstance(patch, dict):
        return _copy(patch)
    result = _copy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch_value(result.get(key), value)
    return result


def _merge_patch(original: Obj, body: bytes) -> Obj:
    patch = _load_json(body)
    if not isinstance(patch, dict):
        raise _bad_request("Invalid JSON Patch")
    result = merge_patch_value(original, patch)
    assert isinstance(result, dict)
    return result


# --------------------------------------------------------------------------------------------
# strategic merge patch

_DIRECTIVE = "$patch"
_RETAIN_KEYS = "$retainKeys"
_DELETE_FROM = "$deleteFromPrimitiveList/"
_SET_ORDER = "$setElementOrder/"


def _strategic_merge_patch(original: Obj, body: bytes, key: ResourceKey) -> Obj:
    patch = _load_json(body)
    if not isinstance(patch, dict):
        raise _bad_request(
            "error decoding patch: json: cannot unmarshal "
            f"{type(patch).__name__} into Go value of type map[string]interface {{}}"
        )
    return strategic_merge(original, patch, root_node(key))


def strategic_merge(original: Obj, patch: Obj, node: SchemaNode) -> Obj:
    """Kubernetes strategic merge of ``patch`` into ``original`` (neither is mutated)."""
    return _smp_map(_copy(original), _copy(patch), node)


def _smp_map(original: dict[str, Any], patch: dict[str, Any], node: SchemaNode) -> dict[str, Any]:
    # ``original`` and ``patch`` are owned here and may be mutated.
    if _DIRECTIVE in patch:
        directive = patch.pop(_DIRECTIVE)
        if directive == "replace":
            return _smp_map({}, patch, node)
        if directive == "delete":
            return {}
        if directive != "merge":
            raise _bad_request(f"unknown patch type: {directive} in map: {patch}")
    if _RETAIN_KEYS in patch:
        retain = patch.pop(_RETAIN_KEYS)
        if not isinstance(retain, list):
            raise _bad_request("invalid patch format of retainKeys")
        keep = set(k for k in retain if isinstance(k, str))
        for k, v in patch.items():
            if v is not None and not k.startswith((_DELETE_FROM, _SET_ORDER)) and k not in keep:
                raise _bad_request("invalid patch format of retainKeys")
        for k in [k for k in original if k not in keep]:
            del original[k]
    for order_key in [k for k in patch if k.startswith(_SET_ORDER)]:
        _smp_set_element_order(original, patch, order_key, node)
    deletions = []
    for k, patch_value in patch.items():
        if k.startswith(_DELETE_FROM):
            deletions.append((k[len(_DELETE_FROM) :], patch_value))
            continue
        child = node.child(k)
        if patch_value is None:
            original.pop(k, None)
            continue
        current = original.get(k, _MISSING)
        if isinstance(patch_value, dict):
            if isinstance(current, dict) and "replace" not in child.strategies:
                original[k] = _smp_map(current, patch_value, child)
            else:
                original[k] = _smp_map({}, patch_value, child)
        elif isinstance(patch_value, list):
            if "merge" in child.strategies:
                base = current if isinstance(current, list) else []
                original[k] = _smp_list(base, patch_value, child)
            else:
                original[k] = _strip_directives(patch_value)
        else:
            original[k] = patch_value
    for k, values in deletions:
        if not isinstance(values, list):
            raise _bad_request("invalid patch format of primitive list")
        current = original.get(k)
        if isinstance(current, list):
            original[k] = [v for v in current if not any(json_equal(v, d) for d in values)]
    return original


def _is_directive(key: str) -> bool:
    return key in (_DIRECTIVE, _RETAIN_KEYS) or key.startswith((_DELETE_FROM, _SET_ORDER))


def _strip_directives(value: Any) -> Any:
    """A replaced value as the typed decoder would keep it: without directive keys."""
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items() if not _is_directive(k)}
    if isinstance(value, list):
        return [
            _strip_directives(v)
            for v in value
            if not (isinstance(v, dict) and set(v) == {_DIRECTIVE})
        ]
    return value


def _element_kind(*lists: list[Any]) -> str:
    kinds = set()
    for items in lists:
        for item in items:
            if isinstance(item, list):
                raise _unprocessable("lists of lists are not supported")
            kinds.add("map" if isinstance(item, dict) else "scalar")
    if len(kinds) > 1:
        raise _bad_request(f"list element types are not identical: {lists}")
    return kinds.pop() if kinds else "scalar"


def _merge_value(item: Any, merge_key: str) -> Any:
    if not isinstance(item, dict):
        raise _bad_request(f"expected a map in a list merged by {merge_key!r}, got {item!r}")
    if merge_key not in item:
        raise _bad_request(f"map: {item} does not contain declared merge key: {merge_key}")
    return item[merge_key]


def _ident(item: Any, merge_key: str | None) -> str:
    """What identifies a list item: its merge key's value, or a scalar item itself."""
    value = item.get(merge_key) if merge_key is not None and isinstance(item, dict) else item
    return _canonical(value)


def _positions(order: list[Any], merge_key: str | None) -> dict[str, int]:
    positions: dict[str, int] = {}
    for i, item in enumerate(order):
        positions.setdefault(_ident(item, merge_key), i)
    return positions


def _normalize(
    patch_items: list[Any],
    server_only: list[Any],
    patch_order: list[Any],
    server_order: list[Any],
    merge_key: str | None,
) -> list[Any]:
    """``normalizeElementOrder``: patch items in patch order, server-only items in server order,
    interleaved where the server order relates them (new items go first)."""
    in_patch = _positions(patch_order, merge_key)
    in_server = _positions(server_order, merge_key)
    right = sorted(patch_items, key=lambda v: in_patch.get(_ident(v, merge_key), len(in_patch)))
    left = sorted(server_only, key=lambda v: in_server.get(_ident(v, merge_key), len(in_server)))
    out: list[Any] = []
    i = j = 0
    while i < len(left) or j < len(right):
        if i >= len(left):
            out.append(right[j])
            j += 1
        elif j >= len(right):
            out.append(left[i])
            i += 1
        else:
            li = in_server.get(_ident(left[i], merge_key), -1)
            ri = in_server.get(_ident(right[j], merge_key), -1)
            if li >= 0 and ri >= 0 and li < ri:
                out.append(left[i])
                i += 1
            else:
                out.append(right[j])
                j += 1
    return out


def _partition(
    merged: list[Any], present_in: list[Any], merge_key: str | None
) -> tuple[list[Any], list[Any]]:
    present = set(_positions(present_in, merge_key))
    in_patch: list[Any] = []
    server_only: list[Any] = []
    for item in merged:
        if merge_key is not None:
            _merge_value(item, merge_key)
        (in_patch if _ident(item, merge_key) in present else server_only).append(item)
    return in_patch, server_only


def _smp_list(original: list[Any], patch: list[Any], node: SchemaNode) -> list[Any]:
    if not original and not patch:
        return original
    if _element_kind(original, patch) == "scalar":
        merged: list[Any] = []
        seen: set[str] = set()
        for value in [*original, *patch]:
            ident = _canonical(value)
            if ident not in seen:
                seen.add(ident)
                merged.append(value)
        in_patch, server_only = _partition(merged, patch, None)
        return _normalize(in_patch, server_only, patch, original, None)
    merge_key = node.merge_key
    if not merge_key:
        raise _bad_request("cannot merge lists without merge key")
    items_node = node.items()
    plain: list[Any] = []
    replace = False
    for item in patch:
        directive = item.get(_DIRECTIVE, _MISSING)
        if directive is _MISSING:
            plain.append(item)
        elif directive == "delete":
            value = _merge_value(item, merge_key)
            original = [o for o in original if not json_equal(o.get(merge_key), value)]
        elif directive == "replace":
            replace = True
        elif directive == "merge":
            raise _bad_request("merging lists cannot yet be specified in the patch")
        else:
            raise _bad_request(f"unknown patch type: {directive} in map: {item}")
    if replace:
        original, plain = [_smp_map({}, p, items_node) for p in plain], []
    merged = list(original)
    for item in plain:
        value = _merge_value(item, merge_key)
        for index, existing in enumerate(merged):
            if isinstance(existing, dict) and json_equal(existing.get(merge_key), value):
                merged[index] = _smp_map(existing, item, items_node)
                break
        else:
            merged.append(_smp_map({}, item, items_node))
    in_patch, server_only = _partition(merged, plain, merge_key)
    return _normalize(in_patch, server_only, plain, original, merge_key)


def _smp_set_element_order(
    original: dict[str, Any], patch: dict[str, Any], order_key: str, node: SchemaNode
) -> None:
    order = patch.pop(order_key)
    field = order_key[len(_SET_ORDER) :]
    if not field or not isinstance(order, list):
        raise _bad_request("invalid patch format of setElementOrder list")
    child = node.child(field)
    merge_key = child.merge_key
    current = original.get(field, _MISSING)
    patch_list = patch.get(field, _MISSING)
    if current is not _MISSING and not isinstance(current, list):
        raise _bad_request(f"expected a list at {field!r}")
    if patch_list is not _MISSING and not isinstance(patch_list, list):
        raise _bad_request(f"expected a list at {field!r}")
    if current is _MISSING and patch_list is _MISSING:
        return
    kind = _element_kind(
        current if isinstance(current, list) else [],
        patch_list if isinstance(patch_list, list) else [],
    )
    key = merge_key if kind == "map" else None
    if key is not None:
        for entry in order:
            _merge_value(entry, key)
    if patch_list is _MISSING:
        merged = current
    elif current is _MISSING:
        merged = _smp_list([], patch_list, child) if "merge" in child.strategies else patch_list
    elif "merge" in child.strategies:
        merged = _smp_list(current, patch_list, child)
    else:
        merged = _strip_directives(patch_list)
    patch.pop(field, None)
    in_order, server_only = _partition(merged, order, key)
    original[field] = _normalize(
        in_order, server_only, order, current if isinstance(current, list) else [], key
    )


# --------------------------------------------------------------------------------------------
# server-side apply
#
# A field path is a tuple of path elements, each ``(kind, text)`` as in FieldsV1:
# ("f", field name), ("k", canonical JSON of the item's key fields), ("v", canonical JSON of a
# set member), ("i", list index). A manager owns a set of paths.

PathElement = tuple[str, str]
FieldPath = tuple[PathElement, ...]

# Fields no manager owns (structured-merge-diff's strip set in the API server).
_STRIPPED: frozenset[FieldPath] = frozenset(
    {
        (("f", "apiVersion"),),
        (("f", "kind"),),
        (("f", "metadata"),),
        *(
            (("f", "metadata"), ("f", name))
            for name in (
                "name",
                "namespace",
                "creationTimestamp",
                "selfLink",
                "uid",
                "clusterName",
                "generation",
                "managedFields",
                "resourceVersion",
            )
        ),
    }
)

# Keys of associative lists that the API defaults when an item omits them.
_KEY_DEFAULTS = {"protocol": "TCP"}


def _item_element(item: Any, node: SchemaNode, index: int) -> PathElement:
    if node.list_type == "set":
        return ("v", _canonical(item))
    if node.list_type == "map" and isinstance(item, dict) and node.list_map_keys:
        keys = {}
        for name in node.list_map_keys:
            if name in item:
                keys[name] = item[name]
            elif name in _KEY_DEFAULTS:
                keys[name] = _KEY_DEFAULTS[name]
        if keys:
            return ("k", _canonical(keys))
    return ("i", str(index))


def field_set(value: Any, node: SchemaNode, path: FieldPath = ()) -> set[FieldPath]:
    """The fields an applied configuration sets (structured-merge-diff's ``ToFieldSet``)."""
    out: set[FieldPath] = set()
    _field_set(value, node, path, out)
    return out


def _field_set(value: Any, node: SchemaNode, path: FieldPath, out: set[FieldPath]) -> None:
    if isinstance(value, dict):
        if node.map_atomic:
            out.add(path)
            return
        for k, v in value.items():
            child_path = (*path, ("f", k))
            _field_set(v, node.child(k), child_path, out)
            if v is None or (isinstance(v, dict) and not v) or not node.has_field(k):
                out.add(child_path)
    elif isinstance(value, list):
        if node.list_type not in ("map", "set"):
            out.add(path)
            return
        items = node.items()
        seen: set[PathElement] = set()
        duplicates: set[PathElement] = set()
        elements = [_item_element(item, node, i) for i, item in enumerate(value)]
        for element in elements:
            if element in seen:
                duplicates.add(element)
            seen.add(element)
        for element in duplicates:
            out.add((*path, element))
        for item, element in zip(value, elements, strict=True):
            if element in duplicates:
                continue
            item_path = (*path, element)
            _field_set(item, items, item_path, out)
            out.add(item_path)
    else:
        out.add(path)


def _matches(item: Any, element: PathElement, index: int) -> bool:
    kind, text = element
    if kind == "i":
        return str(index) == text
    if kind == "v":
        return json_equal(item, json.loads(text))
    if not isinstance(item, dict):
        return False
    keys = json.loads(text)
    return all(json_equal(item.get(k, _KEY_DEFAULTS.get(k, _MISSING)), v) for k, v in keys.items())


def _find(container: Any, element: PathElement) -> tuple[Any, Any]:
    """``(key or index, value)`` of ``element`` in ``container``, else ``(None, _MISSING)``."""
    kind, text = element
    if kind == "f":
        if isinstance(container, dict) and text in container:
            return text, container[text]
        return None, _MISSING
    if isinstance(container, list):
        for index, item in enumerate(container):
            if _matches(item, element, index):
                return index, item
    return None, _MISSING


def _get_path(obj: Any, path: FieldPath) -> Any:
    value = obj
    for element in path:
        _, value = _find(value, element)
        if value is _MISSING:
            return _MISSING
    return value


def path_string(path: FieldPath) -> str:
    """structured-merge-diff's ``Path.String()``: ``.spec.containers[name="web"].image``."""

    def scalar(value: Any) -> str:
        if isinstance(value, str):
            return json.dumps(value, ensure_ascii=False)
        return _canonical(value)

    parts = []
    for kind, text in path:
        if kind == "f":
            parts.append("." + text)
        elif kind == "k":
            keys = json.loads(text)
            parts.append("[" + ",".join(f"{k}={scalar(v)}" for k, v in sorted(keys.items())) + "]")
        elif kind == "v":
            parts.append(f"[={scalar(json.loads(text))}]")
        else:
            parts.append(f"[{text}]")
    return "".join(parts)


def encode_fields(paths: Iterable[FieldPath]) -> Obj:
    """FieldsV1: ``{"f:spec": {"f:replicas": {}}, ...}``, ``.`` marking an owned parent."""
    trie: dict[str, Any] = {}
    members: set[int] = set()
    for path in paths:
        node = trie
        for kind, text in path:
            node = node.setdefault(f"{kind}:{text}", {})
        members.add(id(node))

    def render(node: dict[str, Any]) -> Obj:
        out: Obj = {}
        if node and id(node) in members:
            out["."] = {}
        for k in sorted(node, key=_element_sort_key):
            out[k] = render(node[k])
        return out

    return render(trie)


_ELEMENT_RANK = {"f": 0, "k": 1, "v": 2, "i": 3}


def _element_sort_key(key: str) -> tuple[int, str]:
    return (_ELEMENT_RANK.get(key[:1], 4), key)


def decode_fields(fields: Any) -> set[FieldPath]:
    """The paths of a FieldsV1 object (unknown keys are skipped)."""
    out: set[FieldPath] = set()

    def walk(node: Any, path: FieldPath) -> None:
        if not isinstance(node, dict):
            return
        for k, child in node.items():
            if k == ".":
                if path:
                    out.add(path)
                continue
            kind, sep, text = k.partition(":")
            if not sep or kind not in _ELEMENT_RANK:
                continue
            child_path = (*path, (kind, text))
            if isinstance(child, dict) and child and set(child) != {"."}:
                walk(child, child_path)
            else:
                out.add(child_path)

    walk(fields, ())
    return out


def _merge(lhs: Any, rhs: Any, node: SchemaNode) -> Any:
    """structured-merge-diff's merge of an applied value ``rhs`` into a live ``lhs``."""
    if isinstance(rhs, dict) and isinstance(lhs, dict) and not node.map_atomic:
        out = dict(lhs)
        for k, v in rhs.items():
            if v is None:
                out.pop(k, None)
            elif k in out:
                out[k] = _merge(out[k], v, node.child(k))
            else:
                out[k] = _copy(v)
        return out
    if isinstance(rhs, list) and isinstance(lhs, list) and node.list_type in ("map", "set"):
        return _merge_list(lhs, rhs, node)
    return _copy(rhs)


def _merge_list(lhs: list[Any], rhs: list[Any], node: SchemaNode) -> list[Any]:
    items = node.items()
    lpes = [_item_element(v, node, i) for i, v in enumerate(lhs)]
    rpes = [_item_element(v, node, i) for i, v in enumerate(rhs)]
    observed_l: dict[PathElement, Any] = {}
    for pe, v in zip(lpes, lhs, strict=True):
        observed_l.setdefault(pe, v)
    observed_r: dict[PathElement, Any] = {}
    for pe, v in zip(rpes, rhs, strict=True):
        observed_r.setdefault(pe, v)
    shared = [pe for pe in rpes if pe in observed_l]
    next_shared = shared.pop(0) if shared else None
    merged_r: set[PathElement] = set()
    out: list[Any] = []

    def item(pe: PathElement) -> Any:
        left = observed_l.get(pe, _MISSING)
        right = observed_r[pe]
        return _copy(right) if left is _MISSING else _merge(left, right, items)

    li = ri = 0
    while li < len(lpes) or ri < len(rpes):
        if li < len(lpes) and ri < len(rpes):
            pe = lpes[li]
            if pe == rpes[ri]:
                merged_r.add(pe)
                out.append(item(pe))
                li += 1
                ri += 1
                next_shared = shared.pop(0) if shared else None
                continue
            if pe in observed_r and next_shared is not None and next_shared != pe:
                li += 1
                continue
        if li < len(lpes):
            pe = lpes[li]
            if pe not in observed_r:
                out.append(lhs[li])
                li += 1
                continue
            if pe in merged_r:
                li += 1
        if ri < len(rpes):
            pe = rpes[ri]
            merged_r.add(pe)
            out.append(item(pe))
            ri += 1
            if next_shared is not None and next_shared == pe:
                next_shared = shared.pop(0) if shared else None
    return out


def _is_key_field(path: FieldPath) -> bool:
    return (
        len(path) >= 2
        and path[-1][0] == "f"
        and path[-2][0] == "k"
        and path[-1][1] in json.loads(path[-2][1])
    )


def _changed(live: Any, applied: Any, path: FieldPath) -> bool:
    """Whether applying ``applied`` changes the field at ``path`` of ``live``."""
    current = _get_path(live, path)
    if current is _MISSING:
        return True
    if path and path[-1][0] in ("k", "v"):
        return False  # the item exists: its own fields are compared one by one
    wanted = _get_path(applied, path)
    if isinstance(wanted, dict) and wanted and isinstance(current, dict):
        return False
    return not json_equal(current, wanted)


def _remove_path(obj: Any, path: FieldPath, node: SchemaNode) -> None:
    """Remove the field at ``path``; free-form maps and lists it leaves empty go too."""
    chain: list[tuple[Any, Any, SchemaNode]] = []  # (container, key, schema of the container)
    value = obj
    for kind, text in path:
        key, child = _find(value, (kind, text))
        if child is _MISSING:
            return
        chain.append((value, key, node))
        node = node.child(text) if kind == "f" else node.items()
        value = child
    container, key, _ = chain.pop()
    del container[key]
    while chain and not container:
        parent, key, parent_node = chain.pop()
        field_node = parent_node.child(key) if isinstance(key, str) else parent_node.items()
        if isinstance(container, dict) and field_node.properties:
            break  # an emptied struct stays, as the typed object would keep it
        del parent[key]
        container = parent


def _now(extra: dict[str, Any]) -> str:
    now = extra.get("now")
    if isinstance(now, str):
        return now
    moment = now if isinstance(now, datetime) else datetime.now(UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _manager_label(entry: Obj) -> str:
    label = json.dumps(entry.get("manager", ""))
    if entry.get("subresource"):
        label += f" with subresource {json.dumps(entry['subresource'])}"
    if entry.get("operation") == "Update":
        label += f" using {entry.get('apiVersion', '')}"
        if entry.get("time"):
            label += f" at {entry['time']}"
    return label


def _conflict_error(conflicts: list[tuple[Obj, FieldPath]]) -> StatusError:
    causes = [
        {
            "reason": "FieldManagerConflict",
            "message": f"conflict with {_manager_label(entry)}",
            "field": path_string(path),
        }
        for entry, path in conflicts
    ]
    if len(conflicts) == 1:
        entry, path = conflicts[0]
        message = (
            f"Apply failed with 1 conflict: conflict with {_manager_label(entry)}: "
            f"{path_string(path)}"
        )
    else:
        by_manager: dict[str, list[str]] = {}
        for entry, path in conflicts:
            by_manager.setdefault(_manager_label(entry), []).append(path_string(path))
        lines = []
        for label in sorted(by_manager):
            lines.append(f"conflicts with {label}:")
            lines.extend(f"- {p}" for p in by_manager[label])
        message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
    return StatusError(409, "Conflict", message, causes=causes)


class _ApplyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """A safe loader that keeps timestamps as strings, as the API server's YAML decoder does."""


_ApplyLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _load_apply_body(body: bytes) -> Obj:
    try:
        applied = yaml.load(body, Loader=_ApplyLoader)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise _bad_request(f"error decoding YAML: {exc}") from None
    if not isinstance(applied, dict):
        raise _bad_request(
            "error decoding YAML: error unmarshaling JSON: while decoding JSON: "
            "Object 'Kind' is missing in the applied configuration"
        )
    return applied


def _managed_entries(live: Obj) -> list[tuple[Obj, set[FieldPath]]]:
    entries = (live.get("metadata") or {}).get("managedFields") or []
    return [
        (entry, decode_fields(entry.get("fieldsV1")))
        for entry in entries
        if isinstance(entry, dict)
    ]


def _sort_entries(entries: list[Obj]) -> list[Obj]:
    return sorted(
        entries,
        key=lambda e: (
            e.get("operation", ""),
            e.get("time", ""),
            e.get("manager", ""),
            e.get("apiVersion", ""),
            e.get("subresource", ""),
        ),
    )


def _server_side_apply(original: Obj, request: PatchRequest, *, live_exists: bool) -> Obj:
    """Apply ``request.body`` as the configuration of ``request.field_manager``.

    Ownership is a set of field paths per manager (see ``field_set``). The applied configuration
    is merged into the live object (associative lists by their list-map keys, sets by value,
    atomic lists and maps replaced); a path in the configuration that another manager owns and
    whose value would change is a conflict (409) unless ``force``, which moves it to this manager.
    A path this manager applied last time and omits now is removed from the object unless
    another manager owns it (or something below it); emptied free-form maps and lists go with
    it. Its managedFields entry then holds exactly the applied paths.
    """
    manager = request.field_manager
    if not manager:
        raise _invalid_options(
            "fieldManager", "Required", "Required value: is required for apply patch"
        )
    key = request.key
    applied = _load_apply_body(request.body)
    version = applied.get("apiVersion")
    if version != key.api_version:
        raise _bad_request(
            "Incorrect version specified in apply patch. "
            f"Specified patch version: {version or ''}, expected: {key.api_version}"
        )
    metadata = applied.get("metadata")
    if isinstance(metadata, dict) and metadata.get("managedFields") is not None:
        raise _bad_request("metadata.managedFields must be nil")
    subresource = str(request.extra.get("subresource", ""))
    node = root_node(key, request.extra.get("schema"))
    live: Obj = _copy(original) if live_exists else {}

    applied_set = field_set(applied, node) - _STRIPPED
    previous: set[FieldPath] = set()
    others: list[tuple[Obj, set[FieldPath]]] = []
    for entry, paths in _managed_entries(live):
        if (
            entry.get("manager") == manager
            and entry.get("operation") == "Apply"
            and entry.get("subresource", "") == subresource
        ):
            previous = paths
        else:
            others.append((entry, paths))

    conflicts = [
        (entry, path)
        for entry, paths in others
        for path in sorted(applied_set & paths, key=path_string)
        if _changed(live, applied, path)
    ]
    if conflicts and not request.force:
        raise _conflict_error(conflicts)
    for entry, path in conflicts:
        for other, paths in others:
            if other is entry:
                paths.discard(path)

    merged: Obj = _merge(live, applied, node)
    protected = {path[:i] for _, paths in others for path in paths for i in range(1, len(path) + 1)}
    for path in sorted(previous - applied_set, key=len):
        if path in protected or any(path[:i] in applied_set for i in range(1, len(path))):
            continue  # another manager owns it or something below it; or it is applied whole
        if _is_key_field(path):
            continue  # a key field stays while its item does
        _remove_path(merged, path, node)

    entries: list[Obj] = []
    for entry, paths in others:
        if paths:
            entries.append({**entry, "fieldsV1": encode_fields(paths)})
    if applied_set:
        entries.append(
            _entry(
                manager=manager,
                operation="Apply",
                api_version=key.api_version,
                time=_now(request.extra),
                subresource=subresource,
                paths=applied_set,
            )
        )
    _set_managed_fields(merged, entries)
    return merged


def _entry(
    *,
    manager: str,
    operation: str,
    api_version: str,
    time: str,
    subresource: str,
    paths: set[FieldPath],
) -> Obj:
    """One ``managedFields`` entry (``subresource`` only when there is one, as the server)."""
    entry: Obj = {
        "manager": manager,
        "operation": operation,
        "apiVersion": api_version,
        "time": time,
        "fieldsType": "FieldsV1",
        "fieldsV1": encode_fields(paths),
    }
    if subresource:
        entry["subresource"] = subresource
    return entry


def _set_managed_fields(obj: Obj, entries: list[Obj]) -> None:
    metadata = obj.setdefault("metadata", {})
    if entries:
        metadata["managedFields"] = _sort_entries(entries)
    else:
        metadata.pop("managedFields", None)


def update_managed_fields(
    old: Obj | None,
    new: Obj,
    key: ResourceKey,
    *,
    manager: str,
    operation: str = "Update",
    subresource: str = "",
    now: datetime | str | None = None,
    schema: Obj | None = None,
) -> Obj:
    """``new`` with managedFields updated for a non-apply write (create, update, patch) by
    ``manager``, as the real server records them: the fields the write added or changed become
    this manager's (in its ``Update`` entry) and leave every other manager's set; fields it
    removed leave every set. ``new`` is not mutated; the server may call this after any write
    so that server-side apply sees the other writers' ownership (and conflicts with it).
    """
    node = root_node(key, schema)
    old_obj = old or {}
    old_paths = field_set(old_obj, node) - _STRIPPED
    new_paths = field_set(new, node) - _STRIPPED
    touched = {p for p in new_paths if _changed(old_obj, new, p)}
    removed = old_paths - new_paths
    result: Obj = _copy(new)
    entries = _managed_entries(result)
    if not entries and old is not None:
        entries = _managed_entries(_copy(old_obj))
    kept: list[Obj] = []
    mine: set[FieldPath] = set()
    for entry, paths in entries:
        is_mine = (
            entry.get("manager") == manager
            and entry.get("operation") == operation
            and entry.get("subresource", "") == subresource
        )
        if is_mine:
            mine = paths
            continue
        remaining = paths - touched - removed
        if remaining:
            kept.append({**entry, "fieldsV1": encode_fields(remaining)})
    mine = (mine | touched) - removed
    if mine:
        kept.append(
            _entry(
                manager=manager,
                operation=operation,
                api_version=key.api_version,
                time=_now({"now": now} if now is not None else {}),
                subresource=subresource,
                paths=mine,
            )
        )
    _set_managed_fields(result, kept)
    return result
