"""Conversion between a served version and its storage, as the real server converts.

``events.k8s.io/v1`` Events are stored as ``v1`` Events (one storage, two APIs, like the real
server: a client writing one reads it back through the other). Custom resources are stored at
their CRD's storage version and served at any served version by rewriting ``apiVersion``
(conversion strategy ``None``).
"""

from __future__ import annotations

from directlb.sim.contracts import Obj
from directlb.sim.registry import ResourceInfo

# events.k8s.io/v1 field -> v1 field
_EVENT_FIELDS = {
    "regarding": "involvedObject",
    "note": "message",
    "reportingController": "reportingComponent",
    "deprecatedSource": "source",
    "deprecatedFirstTimestamp": "firstTimestamp",
    "deprecatedLastTimestamp": "lastTimestamp",
    "deprecatedCount": "count",
}
_EVENT_FIELDS_BACK = {v: k for k, v in _EVENT_FIELDS.items()}

EVENTS = ("", "events")
NEW_EVENTS = ("events.k8s.io", "events")

# Field selectors on events.k8s.io/v1 name the v1 fields they map to.
EVENT_FIELD_LABELS = {
    "regarding.kind": "involvedObject.kind",
    "regarding.namespace": "involvedObject.namespace",
    "regarding.name": "involvedObject.name",
    "regarding.uid": "involvedObject.uid",
    "regarding.apiVersion": "involvedObject.apiVersion",
    "regarding.resourceVersion": "involvedObject.resourceVersion",
    "regarding.fieldPath": "involvedObject.fieldPath",
    "reportingController": "reportingComponent",
}


def _rename(obj: Obj, mapping: dict[str, str], api_version: str) -> Obj:
    result = {mapping.get(k, k): v for k, v in obj.items()}
    result["apiVersion"] = api_version
    return result


def needs_conversion(info: ResourceInfo, obj: Obj) -> bool:
    return obj.get("apiVersion") != info.key.api_version


def to_storage(info: ResourceInfo, obj: Obj, *, storage_version: str) -> Obj:
    """Convert an object as written through ``info`` into its storage form."""
    if (info.key.group, info.key.resource) == NEW_EVENTS:
        return _rename(obj, _EVENT_FIELDS, "v1")
    obj["apiVersion"] = storage_version
    return obj


def from_storage(info: ResourceInfo, obj: Obj) -> Obj:
    """Convert a stored object (a private copy) into the form ``info`` serves."""
    if (info.key.group, info.key.resource) == NEW_EVENTS:
        return _rename(obj, _EVENT_FIELDS_BACK, info.key.api_version)
    obj["apiVersion"] = info.key.api_version
    return obj


def field_label(info: ResourceInfo, label: str) -> str:
    if (info.key.group, info.key.resource) == NEW_EVENTS:
        return EVENT_FIELD_LABELS.get(label, label)
    return label
