"""OpenAPI v3 documents: enough for kubectl's defaults, not a schema catalogue.

``kubectl apply`` (``--validate=strict`` by default) asks ``/openapi/v3`` whether the server
supports the ``fieldValidation`` query parameter on PATCH for the object's group/version/kind
(a PATCH operation tagged ``x-kubernetes-group-version-kind`` that lists the parameter). When it
does, kubectl leaves validation to the server instead of downloading ``/openapi/v2``, which this
server answers 404, as a server may. Without a schema for the kind in the v3 document, kubectl
computes its strategic merge patch from the types compiled into it (built-ins) or sends a JSON
merge patch (custom resources) -- what it does against any server.
"""

from __future__ import annotations

import hashlib
import json

from directlb.sim.contracts import Obj
from directlb.sim.registry import Registry, ResourceInfo

_QUERY_PARAMS = ("dryRun", "fieldManager", "fieldValidation", "force", "pretty")
PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
)


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _operation(info: ResourceInfo, action: str, *, patch: bool) -> Obj:
    key = info.key
    operation: Obj = {
        "operationId": f"{action}{key.kind}",
        "parameters": [
            {"name": p, "in": "query", "schema": {"type": "string"}} for p in _QUERY_PARAMS
        ],
        "responses": {"200": {"description": "OK"}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {
            "group": key.group,
            "version": key.version,
            "kind": key.kind,
        },
    }
    if patch:
        # No requestBody: kubectl then does not look for a schema here (see module docstring).
        operation["x-kubernetes-patch-types"] = list(PATCH_TYPES)
    return operation


def _paths(info: ResourceInfo) -> dict[str, Obj]:
    key = info.key
    base = "/" + _gv_path(key.group, key.version)
    scope = f"{base}/namespaces/{{namespace}}" if key.namespaced else base
    item = {
        "get": _operation(info, "get", patch=False),
        "put": _operation(info, "put", patch=False),
        "patch": _operation(info, "patch", patch=True),
        "delete": _operation(info, "delete", patch=False),
    }
    collection = {
        "get": _operation(info, "list", patch=False),
        "post": _operation(info, "post", patch=False),
    }
    return {f"{scope}/{key.resource}": collection, f"{scope}/{key.resource}/{{name}}": item}


def group_version_document(registry: Registry, group: str, version: str) -> Obj | None:
    infos = registry.in_group_version(group, version)
    if not infos:
        return None
    paths: dict[str, Obj] = {}
    for info in sorted(infos, key=lambda i: i.key.resource):
        paths.update(_paths(info))
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "unversioned"},
        "paths": paths,
        "components": {"schemas": {}},
    }


def root(registry: Registry) -> Obj:
    paths: dict[str, Obj] = {}
    groups = ["", *registry.groups()]
    for group in groups:
        for version in registry.versions(group):
            document = group_version_document(registry, group, version)
            digest = hashlib.sha512(json.dumps(document, sort_keys=True).encode()).hexdigest()
            path = _gv_path(group, version)
            paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest.upper()}"}
    return {"paths": paths}
