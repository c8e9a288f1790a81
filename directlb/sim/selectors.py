"""Label and field selectors, parsed the way the real API server parses them.

Label selectors support ``=``, ``==``, ``!=``, ``in``, ``notin``, ``key`` (exists) and ``!key``
(does not exist); field selectors support ``=``, ``==`` and ``!=`` on the fields each resource
allows (``FIELDS_BY_RESOURCE``), anything else answers 400 like the real server.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from directlb.sim.contracts import Obj, StatusError

_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_SET_RE = re.compile(r"^\s*(!?)\s*([^\s!=()]+)\s+(in|notin)\s*\((.*)\)\s*$")


@dataclass(frozen=True)
class Requirement:
    """One clause: ``op`` is one of ``in``, ``notin``, ``exists``, ``!exists``."""

    key: str
    op: str
    values: frozenset[str]

    def matches(self, labels: dict[str, str]) -> bool:
        if self.op == "exists":
            return self.key in labels
        if self.op == "!exists":
            return self.key not in labels
        if self.op == "in":
            return self.key in labels and labels[self.key] in self.values
        return self.key not in labels or labels[self.key] not in self.values


@dataclass(frozen=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.requirements

    def matches(self, labels: dict[str, str] | None) -> bool:
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    def exact(self) -> dict[str, str]:
        """The ``key=value`` clauses: what an index by label can narrow down first."""
        return {r.key: next(iter(r.values)) for r in self.requirements if _single_in(r)}


def _single_in(requirement: Requirement) -> bool:
    return requirement.op == "in" and len(requirement.values) == 1


def _bad(message: str) -> StatusError:
    return StatusError(400, "BadRequest", message)


def _split_top(text: str) -> list[str]:
    """Split on commas outside parentheses (``a in (x,y),b`` is two clauses)."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _check_key(key: str, text: str) -> str:
    if not _KEY.match(key) or len(key.rpartition("/")[2]) > 63:
        raise _bad(f"unable to parse requirement: invalid label key {key!r} in {text!r}")
    return key


def _check_value(value: str, text: str) -> str:
    if len(value) > 63 or not _VALUE.match(value):
        raise _bad(f"unable to parse requirement: invalid label value {value!r} in {text!r}")
    return value


def _parse_clause(clause: str, text: str) -> Requirement:
    clause = clause.strip()
    set_match = _SET_RE.match(clause)
    if set_match:
        if set_match.group(1):
            raise _bad(f"unable to parse requirement: {clause!r}")
        values = [v.strip() for v in set_match.group(4).split(",")]
        key = _check_key(set_match.group(2), text)
        return Requirement(
            key, set_match.group(3), frozenset(_check_value(v, text) for v in values)
        )
    for op, name in (("!=", "notin"), ("==", "in"), ("=", "in")):
        if op in clause:
            key, _, value = clause.partition(op)
            key, value = key.strip(), value.strip()
            return Requirement(_check_key(key, text), name, frozenset({_check_value(value, text)}))
    if clause.startswith("!"):
        return Requirement(_check_key(clause[1:].strip(), text), "!exists", frozenset())
    return Requirement(_check_key(clause, text), "exists", frozenset())


def parse_label_selector(text: str | None) -> LabelSelector:
    if not text or not text.strip():
        return LabelSelector()
    return LabelSelector(tuple(_parse_clause(c, text) for c in _split_top(text)))


def selector_from_label_selector(spec: Obj | None) -> LabelSelector:
    """A metav1.LabelSelector (``matchLabels`` + ``matchExpressions``) as a LabelSelector."""
    if not spec:
        return LabelSelector()
    requirements = [
        Requirement(str(k), "in", frozenset({str(v)}))
        for k, v in (spec.get("matchLabels") or {}).items()
    ]
    for expression in spec.get("matchExpressions") or []:
        operator = str(expression.get("operator"))
        op = _OPERATORS.get(operator)
        if op is None:
            raise _bad(f"{json.dumps(operator)} is not a valid label selector operator")
        values = frozenset(str(v) for v in expression.get("values") or [])
        # labels.NewRequirement's checks, which LabelSelectorAsSelector runs.
        if op in ("in", "notin") and not values:
            raise _bad("for 'in', 'notin' operators, values set can't be empty")
        if op in ("exists", "!exists") and values:
            raise _bad("values set must be empty for exists and does not exist")
        requirements.append(Requirement(str(expression.get("key")), op, values))
    return LabelSelector(tuple(requirements))


_OPERATORS = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!exists"}


# ----- field selectors -------------------------------------------------------------------


def _path(*names: str) -> Callable[[Obj], str]:
    def get(obj: Obj) -> str:
        value: Any = obj
        for name in names:
            value = value.get(name) if isinstance(value, dict) else None
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    return get


def _common() -> dict[str, Callable[[Obj], str]]:
    return {
        "metadata.name": _path("metadata", "name"),
        "metadata.namespace": _path("metadata", "namespace"),
    }


_INVOLVED = {
    f"involvedObject.{f}": _path("involvedObject", f)
    for f in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")
}

FIELDS_BY_RESOURCE: dict[tuple[str, str], dict[str, Callable[[Obj], str]]] = {
    ("", "pods"): _common()
    | {
        "spec.nodeName": _path("spec", "nodeName"),
        "spec.restartPolicy": _path("spec", "restartPolicy"),
        "spec.schedulerName": _path("spec", "schedulerName"),
        "spec.serviceAccountName": _path("spec", "serviceAccountName"),
        "spec.hostNetwork": _path("spec", "hostNetwork"),
        "status.phase": _path("status", "phase"),
        "status.podIP": _path("status", "podIP"),
        "status.nominatedNodeName": _path("status", "nominatedNodeName"),
    },
    ("", "events"): _common()
    | _INVOLVED
    | {
        "reason": _path("reason"),
        "reportingComponent": _path("reportingComponent"),
        "source": _path("source", "component"),
        "type": _path("type"),
    },
    ("", "nodes"): _common() | {"spec.unschedulable": _path("spec", "unschedulable")},
    ("", "namespaces"): _common() | {"status.phase": _path("status", "phase")},
    ("", "secrets"): _common() | {"type": _path("type")},
    ("", "services"): _common() | {"spec.clusterIP": _path("spec", "clusterIP")},
    ("apps", "replicasets"): _common() | {"status.replicas": _path("status", "replicas")},
}


def fields_for(group: str, resource: str) -> dict[str, Callable[[Obj], str]]:
    return FIELDS_BY_RESOURCE.get((group, resource)) or _common()


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    equal: bool
    value: str
    get: Callable[[Obj], str]

    def matches(self, obj: Obj) -> bool:
        return (self.get(obj) == self.value) == self.equal


@dataclass(frozen=True)
class FieldSelector:
    requirements: tuple[FieldRequirement, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.requirements

    def matches(self, obj: Obj) -> bool:
        return all(r.matches(obj) for r in self.requirements)

    def exact(self, field: str) -> str | None:
        for r in self.requirements:
            if r.field == field and r.equal:
                return r.value
        return None


def parse_field_selector(
    text: str | None,
    *,
    fields: dict[str, Callable[[Obj], str]],
) -> FieldSelector:
    """Parse ``a=b,c!=d``; a field the resource does not support answers 400 as the server does."""
    if not text or not text.strip():
        return FieldSelector()
    requirements: list[FieldRequirement] = []
    for clause in _split_escaped(text):
        requirements.append(_field_clause(clause.strip(), fields))
    return FieldSelector(tuple(requirements))


def _split_escaped(text: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    escaped = False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ",":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _field_clause(clause: str, fields: dict[str, Callable[[Obj], str]]) -> FieldRequirement:
    for op, equal in (("!=", False), ("==", True), ("=", True)):
        if op in clause:
            name, _, value = clause.partition(op)
            name = name.strip()
            if name not in fields:
                raise _bad(f'field label not supported: "{name}"')
            return FieldRequirement(name, equal, value.strip(), fields[name])
    raise _bad(f"invalid selector: '{clause}'; can't understand '{clause}'")
