"""The API server's operations, independent of HTTP: get, list, watch, create, update, patch,
delete, and the status, scale and binding subresources.

Every write follows the real server's order: decode, metadata and defaults, mutating admission,
schema validation, validating admission, then persist. Between reading the stored object and
persisting, admission webhooks may ``await``; a write that finds the object changed in the
meantime is retried from the fresh object (PATCH, or PUT without a resourceVersion) or answered
409 Conflict (PUT with one), as the real server's optimistic concurrency does.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, TypeVar

from directlb.sim import convert, defaults, fields, meta
from directlb.sim.contracts import (
    AdmissionAttributes,
    Obj,
    PatchRequest,
    ResourceKey,
    StatusError,
)
from directlb.sim.plugins import Plugins
from directlb.sim.registry import Registry, ResourceInfo, crd_resources
from directlb.sim.selectors import (
    FieldSelector,
    LabelSelector,
    fields_for,
    parse_field_selector,
    parse_label_selector,
    selector_from_label_selector,
)
from directlb.sim.storage import DELETED, Event, Store, Stored, StoreKey, Watcher

log = logging.getLogger("directlb.sim")

CRDS: StoreKey = ("apiextensions.k8s.io", "customresourcedefinitions")
NAMESPACES: StoreKey = ("", "namespaces")
SERVICES: StoreKey = ("", "services")
CRD_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"
SCALE_KEY = ResourceKey("autoscaling", "v1", "scale", "Scale", True)
RETRIES = 8
T = TypeVar("T")

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_LABEL_RESOURCES = {("", "namespaces"), ("", "services")}


class _Retry(Exception):
    """The object changed while admission ran; start the write again from the fresh object."""


@dataclass(frozen=True)
class WriteOptions:
    dry_run: bool = False
    field_manager: str | None = None
    force: bool = False
    user: str = "admin"
    groups: tuple[str, ...] = ("system:masters", "system:authenticated")
    field_validation: str = "Warn"
    # Filled by the write: what the answer's Warning headers say (unknown fields dropped).
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ListQuery:
    namespace: str | None = None
    label_selector: str | None = None
    field_selector: str | None = None
    limit: int = 0
    continue_token: str | None = None
    resource_version: str | None = None
    resource_version_match: str | None = None


@dataclass(frozen=True)
class ListResult:
    items: list[Stored]
    resource_version: str
    continue_token: str | None
    remaining: int | None


@dataclass(frozen=True)
class Selection:
    labels: LabelSelector
    fields: FieldSelector

    def matches(self, obj: Obj) -> bool:
        if not self.labels.empty and not self.labels.matches(obj["metadata"].get("labels")):
            return False
        return self.fields.empty or self.fields.matches(obj)


def _name_cause(info: ResourceInfo, name: str) -> dict[str, str] | None:
    dns_label = (info.key.group, info.key.resource) in _DNS_LABEL_RESOURCES
    pattern, limit = (_LABEL, 63) if dns_label else (_SUBDOMAIN, 253)
    if pattern.match(name) and len(name) <= limit:
        return None
    what = "RFC 1123 label" if dns_label else "RFC 1123 subdomain"
    allowed = "'-'" if dns_label else "'-' or '.'"
    return {
        "field": "metadata.name",
        "reason": "FieldValueInvalid",
        "message": f'Invalid value: "{name}": a lowercase {what} must consist of lower case '
        f"alphanumeric characters, {allowed}, and must start and end with an alphanumeric "
        f"character (at most {limit} characters)",
    }


def _spec_of(obj: Obj, *, with_status: bool) -> Obj:
    """The part of an object whose change bumps ``metadata.generation``."""
    skip = {"metadata", "apiVersion", "kind"} | ({"status"} if with_status else set())
    return {k: v for k, v in obj.items() if k not in skip}


def _same(a: Obj, b: Obj) -> bool:
    """Equal but for what a no-op write would only touch: the resourceVersion and the times
    in managedFields (the real server does not persist a timestamp-only change either)."""

    def strip(obj: Obj) -> Obj:
        m = {k: v for k, v in obj["metadata"].items() if k != "resourceVersion"}
        if isinstance(m.get("managedFields"), list):
            m["managedFields"] = [
                {k: v for k, v in e.items() if k != "time"} if isinstance(e, dict) else e
                for e in m["managedFields"]
            ]
        return obj | {"metadata": m}

    return strip(a) == strip(b)


class Api:
    """The served API over a ``Store``: what the HTTP layer and in-process users call."""

    def __init__(
        self,
        *,
        store: Store | None = None,
        registry: Registry | None = None,
        plugins: Plugins | None = None,
    ) -> None:
        self.store = store or Store()
        self.registry = registry or Registry.default()
        self.plugins = plugins or Plugins.load(self)
        self.store.listeners.append(self._on_event)
        self.crd_listeners: list[Callable[[], None]] = []
        # Cluster behaviour (``directlb.sim.cluster.network.ServiceAllocator`` sets it): called
        # as ``(new, old)`` with a Service about to be persisted (``old`` None on create) to
        # assign its ClusterIP and node ports, or raise 422, as kube-apiserver's Service
        # registry does at write time. None: Services are stored as written.
        self.service_allocator: Callable[[Obj, Obj | None], None] | None = None

    # ----- ObjectReader (what admission looks objects up with) ---------------------------

    def list_objects(self, group: str, resource: str, namespace: str | None = None) -> list[Obj]:
        info = self.registry.find(group, resource)
        store_key = info.store_key if info else (group, resource)
        items = sorted(self.store.items(store_key, namespace), key=lambda kv: kv[0])
        return [self._out(info, s) if info else s.copy() for _, s in items]

    def get_object(self, group: str, resource: str, namespace: str | None, name: str) -> Obj | None:
        info = self.registry.find(group, resource)
        store_key = info.store_key if info else (group, resource)
        stored = self.store.get(store_key, (namespace or "", name))
        if stored is None:
            return None
        return self._out(info, stored) if info else stored.copy()

    # ----- reads -------------------------------------------------------------------------

    def _out(self, info: ResourceInfo, stored: Stored) -> Obj:
        obj = stored.copy()
        if convert.needs_conversion(info, stored.obj):
            obj = convert.from_storage(info, obj)
        return obj

    def render(self, info: ResourceInfo, stored: Stored) -> bytes:
        """The JSON of a stored object as ``info`` serves it (cached bytes when no conversion)."""
        if not convert.needs_conversion(info, stored.obj):
            return stored.raw
        return json.dumps(self._out(info, stored), separators=(",", ":")).encode()

    def out(self, info: ResourceInfo, stored: Stored) -> Obj:
        return self._out(info, stored)

    def require(self, info: ResourceInfo, namespace: str, name: str) -> Stored:
        stored = self.store.get(info.store_key, (namespace if info.key.namespaced else "", name))
        if stored is None:
            raise meta.not_found(info.key, name)
        return stored

    def get(self, info: ResourceInfo, *, namespace: str, name: str) -> Obj:
        return self._out(info, self.require(info, namespace, name))

    def selection(self, info: ResourceInfo, query: ListQuery) -> Selection:
        fields = fields_for(*info.store_key)
        if info.store_key == convert.EVENTS:
            fields = fields | {a: fields[t] for a, t in convert.EVENT_FIELD_LABELS.items()}
        return Selection(
            parse_label_selector(query.label_selector),
            parse_field_selector(query.field_selector, fields=fields),
        )

    def list(self, info: ResourceInfo, query: ListQuery) -> ListResult:
        selection = self.selection(info, query)
        namespace = query.namespace if info.key.namespaced else None
        start, rv = "", self.store.rv
        if query.continue_token:
            rv, start = _decode_continue(query.continue_token)
        elif query.resource_version_match == "Exact" and query.resource_version:
            rv = _parse_rv(query.resource_version)
        if rv != self.store.rv:
            items = self.store.snapshot(info.store_key, rv=rv, namespace=namespace)
        else:
            items = dict(self.store.items(info.store_key, namespace))
        ordered = sorted(items.items(), key=lambda kv: kv[0])
        matching = [s for k, s in ordered if _after(k, start) and selection.matches(s.obj)]
        if query.limit <= 0 or len(matching) <= query.limit:
            return ListResult(matching, str(rv), None, None)
        page = matching[: query.limit]
        last = page[-1].obj["metadata"]
        token = _encode_continue(rv, _key_text(last.get("namespace") or "", last["name"]))
        return ListResult(page, str(rv), token, len(matching) - query.limit)

    def watch(self, info: ResourceInfo, query: ListQuery) -> Watcher:
        selection = self.selection(info, query)
        since: int | None = None
        if query.resource_version not in (None, "", "0"):
            since = _parse_rv(str(query.resource_version))
        return self.store.watch(
            info.store_key,
            namespace=query.namespace if info.key.namespaced else None,
            matches=selection.matches,
            since=since,
        )

    # ----- create ------------------------------------------------------------------------

    async def create(
        self, info: ResourceInfo, *, namespace: str, body: Obj, opts: WriteOptions
    ) -> Obj:
        obj = self._decode(info, body, opts)
        self._create_metadata(info, obj, namespace)
        defaults.apply_defaults(info, obj)
        defaults.prepare_for_create(info, obj)
        self._check_namespace(info, obj)
        self._crd_pre_create(info, obj)
        obj = await self._admit(info, "CREATE", obj=obj, old=None, subresource="", opts=opts)
        stored_key = (obj["metadata"].get("namespace") or "", obj["metadata"]["name"])
        if self.store.get(info.store_key, stored_key) is not None:
            raise meta.already_exists(info.key, stored_key[1])
        if self.service_allocator is not None and info.store_key == SERVICES:
            self.service_allocator(obj, None)  # synchronous: nothing runs before the put
        if opts.dry_run:
            return obj
        self._check_namespace(info, obj)  # it may have started terminating meanwhile
        event = self.store.put(info.store_key, self._to_storage(info, obj))
        return self._out(info, event.new)

    def _decode(self, info: ResourceInfo, body: Any, opts: WriteOptions) -> Obj:
        if not isinstance(body, dict):
            raise meta.bad_request("the request body must be a JSON object")
        kind = body.get("kind")
        api_version = body.get("apiVersion")
        if kind is not None and kind != info.key.kind:
            raise meta.bad_request(
                f"the kind of the object ({kind}) does not match the resource "
                f"{meta.qualified(info.key)} (kind {info.key.kind})"
            )
        if api_version is not None and api_version != info.key.api_version:
            raise meta.bad_request(
                f"the API version in the data ({api_version}) does not match the expected "
                f"API version ({info.key.api_version})"
            )
        obj: Obj = json.loads(json.dumps(body))
        obj["kind"], obj["apiVersion"] = info.key.kind, info.key.api_version
        meta.metadata(obj)
        opts.warnings.extend(fields.check(obj, info.key, info.schema, mode=opts.field_validation))
        return obj

    def _create_metadata(self, info: ResourceInfo, obj: Obj, namespace: str) -> None:
        m = obj["metadata"]
        if m.get("resourceVersion"):
            raise StatusError(
                500, "InternalError", "resourceVersion should not be set on objects to be created"
            )
        self._namespace_from_url(info, m, namespace)
        if not m.get("name") and m.get("generateName"):
            m["name"] = meta.generated_name(str(m["generateName"]))
        name = str(m.get("name") or "")
        if not name:
            cause = {
                "field": "metadata.name",
                "reason": "FieldValueRequired",
                "message": "Required value: name or generateName is required",
            }
            raise meta.invalid(info.key, "", [cause])
        for key in ("uid", "deletionTimestamp", "deletionGracePeriodSeconds"):
            m.pop(key, None)
        m["uid"] = meta.new_uid()
        m["creationTimestamp"] = meta.timestamp()
        if info.generation:
            m["generation"] = 1
        else:
            m.pop("generation", None)

    def _namespace_from_url(self, info: ResourceInfo, m: dict[str, Any], namespace: str) -> None:
        if not info.key.namespaced:
            m.pop("namespace", None)
            return
        given = m.get("namespace")
        if given and namespace and given != namespace:
            raise meta.bad_request(
                "the namespace of the provided object does not match the namespace sent on "
                "the request"
            )
        m["namespace"] = given or namespace or "default"

    def _check_namespace(self, info: ResourceInfo, obj: Obj) -> None:
        """What the NamespaceLifecycle admission plugin checks before anything else."""
        if not info.key.namespaced:
            return
        namespace = str(obj["metadata"]["namespace"])
        stored = self.store.get(NAMESPACES, ("", namespace))
        if stored is None:
            raise StatusError(
                404,
                "NotFound",
                f'namespaces "{namespace}" not found',
                details={"name": namespace, "kind": "namespaces"},
            )
        if stored.obj["metadata"].get("deletionTimestamp"):
            raise StatusError(
                403,
                "Forbidden",
                f'{info.key.resource} "{obj["metadata"]["name"]}" is forbidden: unable to '
                f"create new content in namespace {namespace} because it is being terminated",
                details={"name": obj["metadata"]["name"], "kind": info.key.resource},
            )

    def _to_storage(self, info: ResourceInfo, obj: Obj) -> Obj:
        storage = self.registry.find(*info.store_key)
        version = storage.key.api_version if storage else info.key.api_version
        if (info.key.group, info.key.resource) == convert.NEW_EVENTS:
            return convert.to_storage(info, obj, storage_version="v1")
        return convert.to_storage(info, obj, storage_version=version)

    async def _admit(
        self,
        info: ResourceInfo,
        operation: str,
        *,
        obj: Obj,
        old: Obj | None,
        subresource: str,
        opts: WriteOptions,
    ) -> Obj:
        m = obj["metadata"]
        attrs = AdmissionAttributes(
            operation=operation,
            key=info.key,
            subresource=subresource,
            namespace=str(m.get("namespace") or ""),
            name=str(m.get("name") or ""),
            obj=obj,
            old_obj=old,
            user=opts.user,
            groups=opts.groups,
            dry_run=opts.dry_run,
        )
        obj = await self.plugins.admission.mutate(attrs)
        if not subresource:
            # A webhook's patch is decoded into the typed object, which defaults it again.
            defaults.apply_defaults(info, obj)
        self._validate(info, obj, old)
        await self.plugins.admission.validate(replace(attrs, obj=obj))
        return obj

    def _validate(self, info: ResourceInfo, obj: Obj, old: Obj | None) -> None:
        name = str(obj["metadata"].get("name", ""))
        causes: list[dict[str, str]] = []
        name_cause = _name_cause(info, name) if old is None else None
        if name_cause:
            causes.append(name_cause)
        causes += [
            {"field": c.field, "reason": c.reason, "message": c.message}
            for c in self.plugins.validate_object(obj, info.key, info.schema)
        ]
        if old is not None:
            causes += _immutable_causes(info, obj, old)
        if causes:
            raise meta.invalid(info.key, name, causes)

    # ----- update and patch --------------------------------------------------------------

    async def update(
        self,
        info: ResourceInfo,
        *,
        namespace: str,
        name: str,
        body: Obj,
        subresource: str = "",
        opts: WriteOptions,
    ) -> Obj:
        obj = self._decode(info, body, opts)
        m = obj["metadata"]
        if m.get("name") not in (None, name):
            raise meta.bad_request(
                f"the name of the object ({m.get('name')}) does not match the name on the URL "
                f"({name})"
            )
        m["name"] = name
        self._namespace_from_url(info, m, namespace)

        async def attempt() -> Obj:
            old = self.require(info, namespace, name)
            precondition = bool(m.get("resourceVersion"))
            if precondition and m["resourceVersion"] != old.obj["metadata"]["resourceVersion"]:
                raise meta.conflict(info.key, name, meta.MODIFIED_CONFLICT)
            return await self._write(
                info, old=old, new=meta.clone(obj), subresource=subresource, opts=opts
            )

        return await _retrying(attempt)

    async def patch(
        self,
        info: ResourceInfo,
        *,
        namespace: str,
        name: str,
        request: PatchRequest,
        subresource: str = "",
        opts: WriteOptions,
    ) -> tuple[int, Obj]:
        """Apply a patch; an apply patch to a missing object creates it (201)."""

        async def attempt() -> tuple[int, Obj]:
            stored = self.store.get(
                info.store_key, (namespace if info.key.namespaced else "", name)
            )
            is_apply = request.content_type.startswith("application/apply-patch")
            if stored is None and not (is_apply and not subresource):
                raise meta.not_found(info.key, name)
            original = self._out(info, stored) if stored else {}
            patched = self.plugins.apply_patch(original, request, live_exists=stored is not None)
            if stored is None:
                patched.setdefault("metadata", {}).setdefault("name", name)
                created = await self.create(info, namespace=namespace, body=patched, opts=opts)
                return 201, created
            if patched.get("metadata", {}).get("resourceVersion") != original["metadata"].get(
                "resourceVersion"
            ):
                raise meta.conflict(info.key, name, meta.MODIFIED_CONFLICT)
            new = self._decode(info, patched, opts)
            new["metadata"]["name"] = name
            self._namespace_from_url(info, new["metadata"], namespace)
            return 200, await self._write(
                info, old=stored, new=new, subresource=subresource, opts=opts
            )

        return await _retrying(attempt)

    async def _write(
        self, info: ResourceInfo, *, old: Stored, new: Obj, subresource: str, opts: WriteOptions
    ) -> Obj:
        """The shared tail of PUT and PATCH: merge with what the caller may not change, admit,
        and persist unless nothing changed."""
        old_obj = self._out(info, old)
        new = self._merge_update(info, old=old_obj, new=new, subresource=subresource)
        if _same(new, old_obj):
            return old_obj
        new = await self._admit(
            info, "UPDATE", obj=new, old=old_obj, subresource=subresource, opts=opts
        )
        current = self.store.get(info.store_key, _obj_key(old.obj))
        if current is None or current.rv != old.rv:
            raise _Retry
        if self.service_allocator is not None and info.store_key == SERVICES and not subresource:
            self.service_allocator(new, old_obj)  # keeps, fills in or allocates; may raise 422
            if _same(new, old_obj):
                return old_obj
        if opts.dry_run:
            return new
        return self._persist(info, new)

    def _persist(self, info: ResourceInfo, obj: Obj) -> Obj:
        """Store an updated object; one being deleted whose last finalizer went is removed."""
        m = obj["metadata"]
        if m.get("deletionTimestamp") and not m.get("finalizers") and not self._graceful(info, obj):
            key = (str(m.get("namespace") or ""), str(m["name"]))
            event = self.store.remove(info.store_key, key, final=self._to_storage(info, obj))
            return self._out(info, event.new)
        event = self.store.put(info.store_key, self._to_storage(info, obj))
        return self._out(info, event.new)

    def _graceful(self, info: ResourceInfo, obj: Obj) -> bool:
        """A pod on a node waits for its kubelet; a namespace for its content to go."""
        if info.store_key == NAMESPACES:
            return bool((obj.get("spec") or {}).get("finalizers"))
        if info.store_key == ("", "pods"):
            return bool((obj.get("spec") or {}).get("nodeName")) and bool(
                obj["metadata"].get("deletionGracePeriodSeconds")
            )
        return False

    def _merge_update(self, info: ResourceInfo, *, old: Obj, new: Obj, subresource: str) -> Obj:
        om, nm = old["metadata"], new["metadata"]
        if nm.get("uid") and nm["uid"] != om.get("uid"):
            # rest.BeforeUpdate keeps the stored UID only when none is given; a different one
            # fails validation (ValidateObjectMetaUpdate). That makes ``metadata.uid`` in a
            # patch a precondition: a pod recreated under the same name refuses it.
            cause = {
                "field": "metadata.uid",
                "reason": "FieldValueInvalid",
                "message": f"Invalid value: {json.dumps(nm['uid'])}: field is immutable",
            }
            raise meta.invalid(info.key, str(nm.get("name") or om.get("name")), [cause])
        for key in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"):
            if key in om:
                nm[key] = om[key]
            else:
                nm.pop(key, None)
        if "managedFields" not in nm and "managedFields" in om:
            nm["managedFields"] = om["managedFields"]
        nm["resourceVersion"] = om.get("resourceVersion")
        if subresource == "status":
            # /status writes only status: everything else is what is stored.
            merged: Obj = meta.clone(old)
            merged["status"] = new.get("status")
            if merged["status"] is None:
                del merged["status"]
            return merged
        if info.status:
            if "status" in old:
                new["status"] = old["status"]
            else:
                new.pop("status", None)
        if om.get("deletionTimestamp"):
            added = set(nm.get("finalizers") or []) - set(om.get("finalizers") or [])
            if added:
                cause = {
                    "field": "metadata.finalizers",
                    "reason": "FieldValueForbidden",
                    "message": "Forbidden: no new finalizers can be added if the object is "
                    f"being deleted, found new finalizers {sorted(added)}",
                }
                raise meta.invalid(info.key, str(nm["name"]), [cause])
        if info.generation:
            generation = int(om.get("generation") or 1)
            with_status = info.status
            if _spec_of(new, with_status=with_status) != _spec_of(old, with_status=with_status):
                generation += 1
            nm["generation"] = generation
        else:
            nm.pop("generation", None)
        defaults.apply_defaults(info, new)
        return new

    # ----- delete ------------------------------------------------------------------------

    async def delete(
        self,
        info: ResourceInfo,
        *,
        namespace: str,
        name: str,
        options: Obj,
        opts: WriteOptions,
    ) -> tuple[int, Obj]:
        """Delete now, or mark for deletion when finalizers (or a kubelet) must act first."""
        old = self._out(info, self.require(info, namespace, name))
        _check_preconditions(info, old, options)
        dry_run = opts.dry_run or bool(options.get("dryRun"))
        await self.plugins.admission.validate(_delete_attrs(info, old, opts, dry_run=dry_run))
        stored = self.require(info, namespace, name)  # admission may have taken a while
        obj = self._out(info, stored)
        marked = self._mark_deleting(info, obj, options)
        if dry_run or (marked and _same(obj, self._out(info, stored))):
            return 200, obj  # a dry run, or already being deleted: nothing new to record
        if not marked:
            return 200, self._remove_now(info, obj)
        result = self._persist(info, obj)
        if self.store.get(info.store_key, _obj_key(obj)) is None:
            return 200, result  # nothing held it after all
        return (202 if _policy(options) == "Foreground" else 200), result

    def _remove_now(self, info: ResourceInfo, obj: Obj) -> Obj:
        """Remove; answer the object for pods (as the real registry does), else a Status."""
        m = obj["metadata"]
        event = self.store.remove(info.store_key, _obj_key(obj))
        if info.store_key == ("", "pods"):
            return self._out(info, event.new)
        details = {"name": m["name"], "group": info.key.group, "kind": info.key.resource}
        details["uid"] = str(m.get("uid", ""))
        return meta.status(200, "", "", details=details)

    def _mark_deleting(self, info: ResourceInfo, obj: Obj, options: Obj) -> bool:
        """Set deletionTimestamp and the finalizers the policy needs; False: delete now."""
        m = obj["metadata"]
        finalizers: list[str] = list(m.get("finalizers") or [])
        policy = _policy(options)
        if policy == "Orphan" and "orphan" not in finalizers:
            finalizers.append("orphan")
        if policy == "Foreground" and "foregroundDeletion" not in finalizers:
            finalizers.append("foregroundDeletion")
        grace = self._grace_seconds(info, obj, options)
        namespace_pending = info.store_key == NAMESPACES
        if not finalizers and not grace and not namespace_pending:
            return False
        unchanged = finalizers == list(m.get("finalizers") or [])
        not_sooner = not grace or grace >= int(m.get("deletionGracePeriodSeconds") or 0)
        if m.get("deletionTimestamp") and unchanged and not_sooner:
            return True  # nothing new to record: the caller answers the object as it is
        at = meta.now() + timedelta(seconds=grace or 0)
        if not m.get("deletionTimestamp") or grace:
            m["deletionTimestamp"] = meta.timestamp(at)
        m["deletionGracePeriodSeconds"] = grace or 0
        m["finalizers"] = finalizers
        if not finalizers:
            del m["finalizers"]
        if m.get("generation"):
            m["generation"] = int(m["generation"]) + 1
        if namespace_pending:
            obj.setdefault("status", {})["phase"] = "Terminating"
        if info.store_key == CRDS:
            _set_condition(obj, "Terminating", "True", "InstanceDeletionPending", "")
        return True

    def _grace_seconds(self, info: ResourceInfo, obj: Obj, options: Obj) -> int:
        if info.store_key != ("", "pods") or not (obj.get("spec") or {}).get("nodeName"):
            return 0
        grace = options.get("gracePeriodSeconds")
        if grace is None:
            grace = (obj.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
        return max(int(grace), 0)

    async def delete_collection(
        self, info: ResourceInfo, *, query: ListQuery, options: Obj, opts: WriteOptions
    ) -> Obj:
        listed = self.list(info, replace(query, limit=0, continue_token=None))
        items: list[Obj] = []
        for stored in listed.items:
            m = stored.obj["metadata"]
            try:
                await self.delete(
                    info,
                    namespace=str(m.get("namespace") or ""),
                    name=str(m["name"]),
                    options=options,
                    opts=opts,
                )
            except StatusError as error:
                if error.code != 404:
                    raise
                continue
            items.append(self._out(info, stored))
        return {
            "kind": f"{info.key.kind}List",
            "apiVersion": info.key.api_version,
            "metadata": {"resourceVersion": str(self.store.rv)},
            "items": items,
        }

    # ----- scale and binding --------------------------------------------------------------

    def get_scale(self, info: ResourceInfo, *, namespace: str, name: str) -> Obj:
        return _scale_of(info, self.get(info, namespace=namespace, name=name))

    async def update_scale(
        self,
        info: ResourceInfo,
        *,
        namespace: str,
        name: str,
        change: Callable[[Obj], Obj],
        opts: WriteOptions,
    ) -> Obj:
        """Read the Scale, let ``change`` produce the new one (PUT body or patched), write it."""

        async def attempt() -> Obj:
            stored = self.require(info, namespace, name)
            obj = self._out(info, stored)
            scale = change(_scale_of(info, obj))
            wanted_rv = (scale.get("metadata") or {}).get("resourceVersion")
            if wanted_rv and wanted_rv != obj["metadata"]["resourceVersion"]:
                raise meta.conflict(info.key, name, meta.MODIFIED_CONFLICT)
            replicas = (scale.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or replicas < 0:
                cause = {
                    "field": "spec.replicas",
                    "reason": "FieldValueInvalid",
                    "message": f"Invalid value: {replicas!r}: must be greater than or equal to 0",
                }
                raise meta.invalid(SCALE_KEY, name, [cause])
            assert info.scale is not None
            _set_path(obj, info.scale.spec_replicas, replicas)
            await self._write(info, old=stored, new=obj, subresource="scale", opts=opts)
            return self.get_scale(info, namespace=namespace, name=name)

        return await _retrying(attempt)

    async def bind(
        self, info: ResourceInfo, *, namespace: str, name: str, body: Obj, opts: WriteOptions
    ) -> Obj:
        """``pods/binding``: what a scheduler posts to place a pod on a node."""
        target = (body.get("target") or {}) if isinstance(body, dict) else {}
        node = str(target.get("name") or "")
        if not node:
            raise meta.invalid(
                ResourceKey("", "v1", "bindings", "Binding", True),
                name,
                [
                    {
                        "field": "target.name",
                        "reason": "FieldValueRequired",
                        "message": "Required value",
                    }
                ],
            )

        async def attempt() -> Obj:
            stored = self.require(info, namespace, name)
            obj = self._out(info, stored)
            spec = obj.setdefault("spec", {})
            if spec.get("nodeName"):
                raise meta.conflict(
                    info.key, name, f'pod {name} is already assigned to node "{spec["nodeName"]}"'
                )
            if obj["metadata"].get("deletionTimestamp"):
                raise meta.conflict(
                    info.key, name, f"pod {name} is being deleted, cannot be assigned to a host"
                )
            spec["nodeName"] = node
            await self._write(info, old=stored, new=obj, subresource="binding", opts=opts)
            return meta.status(201, "", "")

        return await _retrying(attempt)

    # ----- CustomResourceDefinitions -------------------------------------------------------

    def _crd_pre_create(self, info: ResourceInfo, obj: Obj) -> None:
        if info.store_key != CRDS:
            return
        resources = crd_resources(obj)
        spec = obj["spec"]
        expected = f"{spec['names']['plural']}.{spec['group']}"
        if obj["metadata"]["name"] != expected:
            cause = {
                "field": "metadata.name",
                "reason": "FieldValueInvalid",
                "message": f'Invalid value: "{obj["metadata"]["name"]}": '
                'must be spec.names.plural+"."+spec.group',
            }
            raise meta.invalid(info.key, str(obj["metadata"]["name"]), [cause])
        if self.registry.find(spec["group"], spec["names"]["plural"]) is not None:
            raise meta.already_exists(info.key, expected)
        obj["metadata"].setdefault("finalizers", [])
        if CRD_FINALIZER not in obj["metadata"]["finalizers"]:
            obj["metadata"]["finalizers"].append(CRD_FINALIZER)
        names = dict(spec["names"])
        obj["status"] = {
            "acceptedNames": names,
            "storedVersions": [resources[0].key.version] if resources else [],
            "conditions": [],
        }
        _set_condition(obj, "NamesAccepted", "True", "NoConflicts", "no conflicts found")
        _set_condition(
            obj,
            "Established",
            "True",
            "InitialNamesAccepted",
            "the initial names have been accepted",
        )

    def _on_event(self, store_key: StoreKey, event: Event) -> None:
        if store_key == CRDS:
            self._sync_crd(event)

    def _sync_crd(self, event: Event) -> None:
        """Serving follows the stored CRDs: a new one starts serving, a removed one stops."""
        spec = event.new.obj.get("spec") or {}
        group = str(spec.get("group", ""))
        plural = str((spec.get("names") or {}).get("plural", ""))
        self.registry.remove_group_resource(group, plural)
        if event.type == DELETED:
            self.store.drop_table((group, plural))
        else:
            for info in crd_resources(event.new.obj):
                self.registry.add(info)
        for listener in self.crd_listeners:
            listener()

    def load_crds(self) -> None:
        """Serve the CRDs already in the store (after loading persisted state)."""
        for _, stored in self.store.items(CRDS, None):
            for info in crd_resources(stored.obj):
                self.registry.add(info)

    def crd_terminating(self, info: ResourceInfo) -> bool:
        if not info.crd:
            return False
        crd = self.store.get(CRDS, ("", f"{info.key.resource}.{info.key.group}"))
        return crd is not None and bool(crd.obj["metadata"].get("deletionTimestamp"))


# ----- helpers ----------------------------------------------------------------------------


async def _retrying(attempt: Callable[[], Awaitable[T]]) -> T:
    for _ in range(RETRIES - 1):
        try:
            return await attempt()
        except _Retry:
            continue
    try:
        return await attempt()
    except _Retry:
        raise StatusError(
            409, "Conflict", "the object kept changing while this request was admitted"
        ) from None


def _delete_attrs(
    info: ResourceInfo, old: Obj, opts: WriteOptions, *, dry_run: bool
) -> AdmissionAttributes:
    return AdmissionAttributes(
        operation="DELETE",
        key=info.key,
        subresource="",
        namespace=str(old["metadata"].get("namespace") or ""),
        name=str(old["metadata"]["name"]),
        obj=None,
        old_obj=old,
        user=opts.user,
        groups=opts.groups,
        dry_run=dry_run,
    )


def _policy(options: Obj) -> str:
    policy = options.get("propagationPolicy")
    if policy in ("Orphan", "Background", "Foreground"):
        return str(policy)
    if policy is not None:
        raise meta.bad_request(
            f"propagationPolicy {policy!r} is not one of Orphan, Background, Foreground"
        )
    orphan = options.get("orphanDependents")
    if orphan is not None:
        return "Orphan" if orphan else "Background"
    return "Background"


def _check_preconditions(info: ResourceInfo, obj: Obj, options: Obj) -> None:
    pre = options.get("preconditions") or {}
    m = obj["metadata"]
    name = str(m["name"])
    uid, rv = pre.get("uid"), pre.get("resourceVersion")
    if uid and uid != m.get("uid"):
        why = f"Precondition failed: UID in precondition: {uid}, UID in object meta: {m.get('uid')}"
        raise meta.conflict(info.key, name, why)
    if rv and rv != m.get("resourceVersion"):
        why = (
            "Precondition failed: ResourceVersion in precondition: "
            f"{rv}, ResourceVersion in object meta: {m.get('resourceVersion')}"
        )
        raise meta.conflict(info.key, name, why)


def _set_condition(obj: Obj, kind: str, status: str, reason: str, message: str) -> None:
    conditions = obj.setdefault("status", {}).setdefault("conditions", [])
    for condition in conditions:
        if condition.get("type") == kind:
            condition.update(status=status, reason=reason, message=message)
            return
    conditions.append(
        {
            "type": kind,
            "status": status,
            "lastTransitionTime": meta.timestamp(),
            "reason": reason,
            "message": message,
        }
    )


def _immutable_causes(info: ResourceInfo, obj: Obj, old: Obj) -> list[dict[str, str]]:
    causes: list[dict[str, str]] = []
    group_resource = (info.key.group, info.key.resource)
    if group_resource in (("apps", "deployments"), ("apps", "replicasets")):
        new_sel = (obj.get("spec") or {}).get("selector")
        if new_sel != (old.get("spec") or {}).get("selector"):
            causes.append(
                {
                    "field": "spec.selector",
                    "reason": "FieldValueInvalid",
                    "message": f"Invalid value: {json.dumps(new_sel)}: field is immutable",
                }
            )
    if group_resource == ("", "pods") and _pod_spec_changed(obj, old):
        causes.append(
            {
                "field": "spec",
                "reason": "FieldValueForbidden",
                "message": "Forbidden: pod updates may not change fields other than "
                "`spec.containers[*].image`,`spec.initContainers[*].image`,"
                "`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing "
                "tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if "
                "it was previously negative)",
            }
        )
    return causes


def _pod_spec_changed(obj: Obj, old: Obj) -> bool:
    def mutable_stripped(spec: Obj) -> Obj:
        spec = meta.clone(spec or {})
        for key in ("containers", "initContainers"):
            for container in spec.get(key) or []:
                container.pop("image", None)
        for key in ("activeDeadlineSeconds", "tolerations"):
            spec.pop(key, None)
        if not old.get("spec", {}).get("nodeName"):
            spec.pop("nodeName", None)  # the binding sets it once
        return spec

    return mutable_stripped(obj.get("spec") or {}) != mutable_stripped(old.get("spec") or {})


def _scale_of(info: ResourceInfo, obj: Obj) -> Obj:
    assert info.scale is not None
    m = obj["metadata"]
    status: Obj = {"replicas": _get_path(obj, info.scale.status_replicas) or 0}
    selector = (obj.get("spec") or {}).get("selector")
    if info.scale.label_selector and not info.crd and isinstance(selector, dict):
        status["selector"] = _selector_text(selector)
    elif info.scale.label_selector:
        found = _get_path(obj, info.scale.label_selector)
        if found:
            status["selector"] = found
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: m[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if k in m
        },
        "spec": {"replicas": _get_path(obj, info.scale.spec_replicas) or 0},
        "status": status,
    }


def _selector_text(selector: Obj) -> str:
    parsed = selector_from_label_selector(selector)
    parts: list[str] = []
    for r in parsed.requirements:
        values = ",".join(sorted(r.values))
        if r.op == "in" and len(r.values) == 1:
            parts.append(f"{r.key}={values}")
        elif r.op in ("in", "notin"):
            parts.append(f"{r.key} {r.op} ({values})")
        else:
            parts.append(r.key if r.op == "exists" else f"!{r.key}")
    return ",".join(sorted(parts))


def _get_path(obj: Obj, path: str) -> Any:
    value: Any = obj
    for part in path.strip(".").split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _set_path(obj: Obj, path: str, value: Any) -> None:
    parts = path.strip(".").split(".")
    target = obj
    for part in parts[:-1]:
        target = target.setdefault(part, {})
    target[parts[-1]] = value


def _obj_key(obj: Obj) -> tuple[str, str]:
    m = obj["metadata"]
    return str(m.get("namespace") or ""), str(m["name"])


def _parse_rv(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise meta.bad_request(f"invalid resource version {text!r}") from None


def _key_text(namespace: str, name: str) -> str:
    return f"{namespace}/{name}" if namespace else name


def _after(key: tuple[str, str], start: str) -> bool:
    return not start or _key_text(*key) > start


def _encode_continue(rv: int, start: str) -> str:
    token = {"v": "meta.k8s.io/v1", "rv": rv, "start": start + "\x00"}
    return base64.urlsafe_b64encode(json.dumps(token).encode()).decode().rstrip("=")


def _decode_continue(token: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        rv, start = int(data["rv"]), str(data["start"]).rstrip("\x00")
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise meta.bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion "
            "(version meta.k8s.io/v1)"
        ) from None
    if data.get("v") != "meta.k8s.io/v1":
        raise meta.bad_request(
            "continue key is not valid: server does not recognize this encoded version"
        )
    return rv, start
