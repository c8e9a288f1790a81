"""Discovery documents: legacy (/api, /apis, /apis/G/V) and aggregated (apidiscovery v2).

kubectl 1.32 asks ``/api`` and ``/apis`` for the aggregated form first (``Accept:
application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList``) and recognises it by
the response's Content-Type; it then needs no per-group-version requests.
"""

from __future__ import annotations

import hashlib
import json

from directlb.sim.contracts import Obj
from directlb.sim.registry import Registry, ResourceInfo

SUBRESOURCE_VERBS = ["get", "patch", "update"]


def _hash(info: ResourceInfo) -> str:
    text = f"{info.key.group}/{info.key.version}/{info.key.kind}"
    return hashlib.sha256(text.encode()).hexdigest()[:11]


def api_versions(address: str) -> Obj:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}],
    }


def _group_entry(registry: Registry, group: str) -> Obj:
    versions = [{"groupVersion": f"{group}/{v}", "version": v} for v in registry.versions(group)]
    return {"name": group, "versions": versions, "preferredVersion": versions[0]}


def api_group_list(registry: Registry) -> Obj:
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_group_entry(registry, g) for g in registry.groups()],
    }


def api_group(registry: Registry, group: str) -> Obj:
    return {"kind": "APIGroup", "apiVersion": "v1"} | _group_entry(registry, group)


def _legacy_resource(info: ResourceInfo) -> list[Obj]:
    key = info.key
    main: Obj = {
        "name": key.resource,
        "singularName": info.singular,
        "namespaced": key.namespaced,
        "kind": key.kind,
        "verbs": list(info.verbs),
        "storageVersionHash": _hash(info),
    }
    if info.short_names:
        main["shortNames"] = list(info.short_names)
    if info.categories:
        main["categories"] = list(info.categories)
    entries = [main]
    if info.status:
        entries.append(
            {
                "name": f"{key.resource}/status",
                "singularName": "",
                "namespaced": key.namespaced,
                "kind": key.kind,
                "verbs": SUBRESOURCE_VERBS,
            }
        )
    if info.scale:
        entries.append(
            {
                "name": f"{key.resource}/scale",
                "singularName": "",
                "namespaced": key.namespaced,
                "group": "autoscaling",
                "version": "v1",
                "kind": "Scale",
                "verbs": SUBRESOURCE_VERBS,
            }
        )
    if (key.group, key.resource) == ("", "pods"):
        entries.append(
            {
                "name": "pods/binding",
                "singularName": "",
                "namespaced": True,
                "kind": "Binding",
                "verbs": ["create"],
            }
        )
    return entries


def api_resource_list(registry: Registry, group: str, version: str) -> Obj:
    resources: list[Obj] = []
    for info in sorted(registry.in_group_version(group, version), key=lambda i: i.key.resource):
        resources.extend(_legacy_resource(info))
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }


# ----- aggregated discovery (apidiscovery.k8s.io) ---------------------------------------


def _aggregated_resource(info: ResourceInfo) -> Obj:
    key = info.key
    entry: Obj = {
        "resource": key.resource,
        "responseKind": {"group": key.group, "version": key.version, "kind": key.kind},
        "scope": "Namespaced" if key.namespaced else "Cluster",
        "singularResource": info.singular,
        "verbs": list(info.verbs),
    }
    if info.short_names:
        entry["shortNames"] = list(info.short_names)
    if info.categories:
        entry["categories"] = list(info.categories)
    subresources: list[Obj] = []
    if info.status:
        subresources.append(
            {
                "subresource": "status",
                "responseKind": entry["responseKind"],
                "verbs": SUBRESOURCE_VERBS,
            }
        )
    if info.scale:
        subresources.append(
            {
                "subresource": "scale",
                "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
                "verbs": SUBRESOURCE_VERBS,
            }
        )
    if subresources:
        entry["subresources"] = subresources
    return entry


def _aggregated_group(registry: Registry, group: str) -> Obj:
    versions = []
    for version in registry.versions(group):
        infos = sorted(registry.in_group_version(group, version), key=lambda i: i.key.resource)
        versions.append(
            {
                "version": version,
                "resources": [_aggregated_resource(i) for i in infos],
                "freshness": "Current",
            }
        )
    metadata: Obj = (
        {"name": group, "creationTimestamp": None} if group else {"creationTimestamp": None}
    )
    return {"metadata": metadata, "versions": versions}


def aggregated(registry: Registry, *, legacy: bool, version: str) -> Obj:
    """The APIGroupDiscoveryList for ``/api`` (legacy) or ``/apis``; version v2 or v2beta1."""
    groups = [""] if legacy else registry.groups()
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": f"apidiscovery.k8s.io/{version}",
        "metadata": {},
        "items": [_aggregated_group(registry, g) for g in groups],
    }


def etag(document: Obj) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()
