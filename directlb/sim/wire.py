"""HTTP details of the Kubernetes API: URL parsing, query options, content negotiation."""

from __future__ import annotations

import json
from dataclasses import dataclass

from aiohttp import web

from directlb.sim import meta
from directlb.sim.api import ListQuery, WriteOptions
from directlb.sim.contracts import Obj, StatusError
from directlb.sim.registry import Registry, ResourceInfo

JSON = "application/json"
DISCOVERY_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
DISCOVERY_V2BETA1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"


@dataclass(frozen=True)
class Target:
    """What a resource URL names: ``name`` "" for the collection."""

    info: ResourceInfo
    namespace: str
    name: str
    subresource: str


@dataclass(frozen=True)
class DiscoveryPath:
    group: str
    version: str


def not_found_path() -> StatusError:
    return StatusError(404, "NotFound", "the server could not find the requested resource")


def parse_path(registry: Registry, path: str) -> Target | DiscoveryPath | None:
    """``/api/v1/...`` or ``/apis/G/V/...`` into a target; None when it is neither."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    if not rest:
        return DiscoveryPath(group, version)
    namespace = ""
    if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
        namespace, rest = rest[1], rest[2:]
    if len(rest) > 3:
        raise not_found_path()
    info = registry.get(group, version, rest[0])
    if info is None:
        raise not_found_path()
    if namespace and not info.key.namespaced:
        raise not_found_path()
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    return Target(info, namespace, name, subresource)


def _int(request: web.Request, name: str, default: int = 0) -> int:
    text = request.query.get(name)
    if text in (None, ""):
        return default
    try:
        return int(text)
    except ValueError:
        raise meta.bad_request(f"{name}: invalid value {text!r}: not an integer") from None


def list_query(request: web.Request, target: Target) -> ListQuery:
    q = request.query
    limit = _int(request, "limit")
    if limit < 0:
        raise meta.bad_request("limit must not be negative")
    return ListQuery(
        namespace=target.namespace or None,
        label_selector=q.get("labelSelector"),
        field_selector=q.get("fieldSelector"),
        limit=limit,
        continue_token=q.get("continue") or None,
        resource_version=q.get("resourceVersion"),
        resource_version_match=q.get("resourceVersionMatch"),
    )


def write_options(request: web.Request, *, user: str) -> WriteOptions:
    dry_run = request.query.getall("dryRun", [])
    for value in dry_run:
        if value != "All":
            raise meta.bad_request(f'dryRun: Unsupported value: "{value}": supported values: "All"')
    force = request.query.get("force", "").lower() == "true"
    return WriteOptions(
        dry_run=bool(dry_run),
        field_manager=request.query.get("fieldManager"),
        force=force,
        user=user,
        field_validation=request.query.get("fieldValidation") or "Warn",
    )


def delete_options(request: web.Request, body: bytes) -> Obj:
    options: Obj = {}
    if body.strip():
        try:
            parsed = json.loads(body)
        except ValueError:
            raise meta.bad_request("the DeleteOptions body is not valid JSON") from None
        if isinstance(parsed, dict):
            options.update(parsed)
    q = request.query
    if "propagationPolicy" in q:
        options["propagationPolicy"] = q["propagationPolicy"]
    if "gracePeriodSeconds" in q:
        options["gracePeriodSeconds"] = _int(request, "gracePeriodSeconds")
    if "orphanDependents" in q:
        options["orphanDependents"] = q["orphanDependents"].lower() == "true"
    if q.get("dryRun"):
        options["dryRun"] = q.getall("dryRun")
    return options


@dataclass(frozen=True)
class Negotiated:
    """What form the answer takes: ``json`` (the object), ``table`` or ``partial``
    (PartialObjectMetadata), with the Table/metadata version the client asked for."""

    form: str
    version: str = "v1"


def _media(entry: str) -> tuple[str, dict[str, str]]:
    kind, *params = (p.strip() for p in entry.split(";"))
    values = {}
    for param in params:
        name, _, value = param.partition("=")
        values[name.strip()] = value.strip()
    return kind.lower(), values


def negotiate(accept: str) -> Negotiated:
    """Pick the first acceptable entry of the Accept header, as the real server does."""
    if not accept.strip():
        return Negotiated("json")
    for entry in accept.split(","):
        kind, params = _media(entry)
        if kind not in (JSON, "application/*", "*/*", "application/yaml"):
            continue
        as_kind = params.get("as")
        if as_kind is None:
            return Negotiated("json")
        if params.get("g") != "meta.k8s.io" or params.get("v") not in ("v1", "v1beta1"):
            continue
        if as_kind == "Table":
            return Negotiated("table", params["v"])
        if as_kind in ("PartialObjectMetadata", "PartialObjectMetadataList"):
            return Negotiated("partial", params["v"])
    raise StatusError(
        406, "NotAcceptable", "only the following media types are accepted: application/json"
    )


def discovery_form(accept: str) -> str | None:
    """The aggregated discovery version asked for (v2, v2beta1), or None for legacy."""
    for entry in accept.split(","):
        kind, params = _media(entry)
        if kind != JSON:
            continue
        if params.get("as") == "APIGroupDiscoveryList" and params.get("g") == "apidiscovery.k8s.io":
            if params.get("v") in ("v2", "v2beta1"):
                return params["v"]
            continue
        if not params.get("as"):
            return None
    return None


def json_response(
    body: Obj | bytes,
    *,
    status: int = 200,
    content_type: str = JSON,
    warnings: list[str] | None = None,
) -> web.Response:
    data = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
    response = web.Response(body=data, status=status, headers={"Content-Type": content_type})
    for warning in warnings or []:
        # RFC 7234 warn-code 299, agent "-": how kube-apiserver sends field-validation and
        # deprecation warnings (kubectl prints them as "Warning: ...").
        response.headers.add("Warning", f"299 - {json.dumps(warning)}")
    return response


def status_response(error: StatusError) -> web.Response:
    return json_response(meta.status_of(error), status=error.code)
