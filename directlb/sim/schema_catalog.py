"""The built-in types' OpenAPI schemas, as shipped by the ``kubernetes-validate`` package.

``kubernetes-validate`` carries, per Kubernetes minor version, one JSON Schema document
(``_definitions.json``) holding every definition of the API's OpenAPI document, with the
Kubernetes extensions kept: ``x-kubernetes-group-version-kind`` (which definition is a served
kind), ``x-kubernetes-patch-strategy`` / ``x-kubernetes-patch-merge-key`` (strategic merge
patch), ``x-kubernetes-list-type`` / ``x-kubernetes-list-map-keys`` / ``x-kubernetes-map-type``
(server-side apply). Strategic merge, server-side apply and validation all read them from here,
so the list merge keys are the real API's, not a hand-written table.

The file is read once (about 1.5 MB of JSON, ~20 ms) the first time a schema is needed; nothing
else in this module does I/O. ``SchemaNode`` wraps one schema (a built-in definition or a CRD's
``openAPIV3Schema``) with the few questions the patch code asks of it; nodes are memoised.
"""

from __future__ import annotations

import importlib.util
import json
import re
from functools import cache
from pathlib import Path

from directlb.sim.contracts import Obj, ResourceKey

# The Kubernetes minor whose schemas are used: kubectl 1.32 (the one on our machines) supports
# servers up to one minor newer without a skew warning, and the server's /version should say the
# same minor. If a future kubernetes-validate drops it, the nearest older (else the oldest newer)
# one is used: see ``schema_version``.
KUBERNETES_MINOR = "1.33"

_REF_PREFIXES = ("#/$defs/", "/api/_definitions.json#/$defs/")


def _minor_key(name: str) -> tuple[int, int] | None:
    match = re.fullmatch(r"v(\d+)\.(\d+)\.\d+-local", name)
    return (int(match[1]), int(match[2])) if match else None


@cache
def _schema_root() -> Path:
    spec = importlib.util.find_spec("kubernetes_validate")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the kubernetes-validate package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "kubernetes-json-schema"


@cache
def schema_version() -> str:
    """The ``vX.Y.0-local`` schema folder used: ``KUBERNETES_MINOR``, else the nearest one."""
    want = tuple(int(part) for part in KUBERNETES_MINOR.split("."))
    found = {
        key: child.name
        for child in _schema_root().iterdir()
        if (key := _minor_key(child.name)) is not None
    }
    if not found:
        raise RuntimeError(f"no schemas found under {_schema_root()}")
    older = [key for key in found if key <= want]
    return found[max(older)] if older else found[min(found)]


@cache
def definitions() -> dict[str, Obj]:
    """Every definition of the built-in API, by OpenAPI name (``io.k8s.api.core.v1.Pod``)."""
    path = _schema_root() / schema_version() / "_definitions.json"
    with path.open("rb") as f:
        document = json.load(f)
    defs: dict[str, Obj] = document["$defs"]
    return defs


@cache
def _kinds() -> dict[tuple[str, str, str], str]:
    index: dict[tuple[str, str, str], str] = {}
    for name, schema in definitions().items():
        gvks = schema.get("x-kubernetes-group-version-kind") or []
        if len(gvks) != 1:
            continue  # meta types (DeleteOptions, WatchEvent …) are registered under many kinds
        gvk = gvks[0]
        index[(gvk.get("group", ""), gvk["version"], gvk["kind"])] = name
    return index


def definition_name(group: str, version: str, kind: str) -> str | None:
    """The definition of a served built-in kind, or None (a custom resource, or unknown)."""
    return _kinds().get((group, version, kind))


def is_builtin(key: ResourceKey) -> bool:
    return definition_name(key.group, key.version, key.kind) is not None


def resolve(schema: Obj) -> Obj:
    """Follow ``$ref`` (to a definition) until a schema without one."""
    seen = 0
    while "$ref" in schema:
        ref = schema["$ref"]
        for prefix in _REF_PREFIXES:
            if ref.startswith(prefix):
                schema = definitions()[ref[len(prefix) :]]
                break
        else:
            raise ValueError(f"unsupported $ref {ref!r}")
        seen += 1
        if seen > 64:
            raise ValueError(f"$ref loop at {ref!r}")
    return schema


class SchemaNode:
    """One schema position: a property's schema (annotations included) and what it resolves to.

    List annotations (patch strategy, merge key, list type) sit on the property that holds the
    list; map annotations on the resolved object. ``child``/``items`` walk on; an unknown field,
    or a node built from no schema at all (``SchemaNode(None)``), answers like a schemaless
    field: lists are atomic (replaced), maps granular (merged key by key).
    """

    __slots__ = (
        "_children",
        "_items",
        "additional",
        "list_map_keys",
        "list_type",
        "map_atomic",
        "merge_key",
        "preserve_unknown",
        "properties",
        "schema",
        "strategies",
    )

    def __init__(self, schema: Obj | None) -> None:
        raw = schema or {}
        target = resolve(raw) if "$ref" in raw else raw
        self.schema = target
        strategy = raw.get("x-kubernetes-patch-strategy") or target.get(
            "x-kubernetes-patch-strategy", ""
        )
        self.strategies = frozenset(s for s in strategy.split(",") if s)
        self.merge_key: str | None = raw.get("x-kubernetes-patch-merge-key")
        list_type = raw.get("x-kubernetes-list-type") or target.get("x-kubernetes-list-type")
        self.list_type: str = list_type or "atomic"
        self.list_map_keys: tuple[str, ...] = tuple(
            raw.get("x-kubernetes-list-map-keys") or target.get("x-kubernetes-list-map-keys") or ()
        )
        map_type = raw.get("x-kubernetes-map-type") or target.get("x-kubernetes-map-type")
        self.map_atomic = map_type == "atomic"
        self.properties: dict[str, Obj] = target.get("properties") or {}
        additional = target.get("additionalProperties")
        self.additional: Obj | None = additional if isinstance(additional, dict) else None
        self.preserve_unknown = bool(target.get("x-kubernetes-preserve-unknown-fields"))
        self._children: dict[str, SchemaNode] = {}
        self._items: SchemaNode | None = None

    def has_field(self, name: str) -> bool:
        return name in self.properties

    def child(self, name: str) -> SchemaNode:
        node = self._children.get(name)
        if node is None:
            if name in self.properties:
                node = SchemaNode(self.properties[name])
            elif self.additional is not None:
                node = SchemaNode(self.additional)
            else:
                node = _EMPTY
            self._children[name] = node
        return node

    def items(self) -> SchemaNode:
        if self._items is None:
            items = self.schema.get("items")
            self._items = SchemaNode(items) if isinstance(items, dict) else _EMPTY
        return self._items


_EMPTY = SchemaNode(None)


@cache
def _builtin_root(name: str) -> SchemaNode:
    return SchemaNode(definitions()[name])


def root_node(key: ResourceKey, schema: Obj | None = None) -> SchemaNode:
    """The schema of a whole object of ``key``: its built-in definition, else ``schema`` (a
    CRD's ``openAPIV3Schema``), else an empty node (everything schemaless)."""
    name = definition_name(key.group, key.version, key.kind)
    if name is not None:
        return _builtin_root(name)
    if schema is not None:
        return _crd_root(schema)
    return _EMPTY


_CRD_ROOTS: dict[int, tuple[Obj, SchemaNode]] = {}


def _crd_root(schema: Obj) -> SchemaNode:
    cached = _CRD_ROOTS.get(id(schema))
    if cached is not None and cached[0] is schema:
        return cached[1]
    # A custom resource's metadata is an ObjectMeta whatever its schema says: give it the
    # built-in one, so ownerReferences and finalizers merge as everywhere else.
    properties = dict(schema.get("properties") or {})
    properties["metadata"] = {"$ref": "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
    node = SchemaNode({**schema, "properties": properties})
    if len(_CRD_ROOTS) >= 256:
        _CRD_ROOTS.pop(next(iter(_CRD_ROOTS)))
    _CRD_ROOTS[id(schema)] = (schema, node)  # the schema is held, so its id stays unique
    return node
