"""Schema and semantic validation of objects, answering causes like the real API server's.

``validate_object(obj, key, schema=None)`` returns the list of ``Cause`` s (empty when valid):

* Schema: built-in kinds are checked against their OpenAPI definitions from
  ``kubernetes-validate`` (``schema_catalog``); custom resources against the CRD's
  ``openAPIV3Schema`` when the server passes it as ``schema`` (their ``metadata`` always against
  the built-in ObjectMeta). Required fields (``FieldValueRequired``, "Required value"; a null
  counts as missing), types (``FieldValueTypeInvalid`` with the message the real server gives
  for custom resources, ``spec.replicas in body must be of type integer: "string"``; for a
  built-in kind the real server answers a wrong type with a 400 decoding error instead, which
  the server may reproduce by mapping these causes), enums (``FieldValueNotSupported``),
  quantities, int32/int64 ranges, base64 ``byte`` fields and RFC 3339 times; for CRD schemas
  also ``nullable``, ``x-kubernetes-int-or-string``, numeric, string, array and object bounds,
  ``pattern``, ``allOf``/``anyOf``/``oneOf``/``not``, and duplicate items of ``set``/``map``
  lists. Unknown fields are not errors (the server prunes or ignores them); CEL rules
  (``x-kubernetes-validations``), ``x-kubernetes-embedded-resource`` and other formats are not
  checked.
* Semantics the real server checks and a controller or kubectl user runs into: object names
  (DNS-1123 subdomain; namespaces a DNS-1123 label; services a DNS-1035 label; CRDs
  ``<plural>.<group>``), namespaces, label keys and values, annotation keys, finalizers; pod
  specs (and the templates of deployments and replica sets): at least one container, unique
  container names that are DNS-1123 labels, an image, container ports 1-65535 with protocol
  TCP/UDP/SCTP and IANA port names, restart and DNS policies, readiness-gate condition types;
  services: type, ports (1-65535, protocol, names required when several and unique, target
  ports), traffic and affinity policies; deployments/replica sets: replicas, selector present,
  non-empty and matching the template labels; deployment strategies (maxSurge/maxUnavailable
  int or percent, not both 0) and progressDeadlineSeconds > minReadySeconds; endpoint slices,
  ingress path types, config map and secret keys, webhook configurations (names, sideEffects,
  admissionReviewVersions, failurePolicy, timeoutSeconds, clientConfig), CRD names, scope and
  storage versions.

Compiled checkers are cached per definition (built-ins) and per schema object (CRDs): after the
first call, validating a typical pod takes some tens of microseconds.
"""

from __future__ import annotations

import binascii
import json
import re
from collections.abc import Callable, Iterable
from typing import Any

from directlb.sim.contracts import Cause, Obj, ResourceKey
from directlb.sim.schema_catalog import definition_name, definitions

# A path is a cons list: ``None`` (the object) or ``(parent, element)``; an ``int`` element is a
# list index, a ``_Key`` a map key, a ``str`` a field. Strings are only built for errors.
Path = tuple[Any, Any] | None
Check = Callable[[Any, Path, list[Cause]], None]


class _Key(str):
    __slots__ = ()


def field_path(path: Path) -> str:
    """``spec.containers[0].name``, ``metadata.labels[app]``."""
    parts: list[str] = []
    while path is not None:
        path, element = path
        if isinstance(element, int | _Key):
            parts.append(f"[{element}]")
        else:
            parts.append(f".{element}")
    text = "".join(reversed(parts))
    return text[1:] if text.startswith(".") else text


def _value(value: Any) -> str:
    """A value as Go's ``%v``/``%q`` in field errors shows it."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


# What ``json.loads`` produces, looked up before the isinstance chain (subclasses fall through).
_JSON_TYPES: dict[type, str] = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
}


def _json_type(value: Any) -> str:
    exact = _JSON_TYPES.get(type(value))
    if exact is not None:
        return exact
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def required(path: Path, detail: str = "") -> Cause:
    return Cause(field_path(path), "FieldValueRequired", "Required value" + _detail(detail))


def invalid(path: Path, value: Any, detail: str) -> Cause:
    return Cause(field_path(path), "FieldValueInvalid", f"Invalid value: {_value(value)}: {detail}")


def not_supported(path: Path, value: Any, supported: Iterable[str]) -> Cause:
    choices = ", ".join(json.dumps(s) for s in sorted(supported))
    return Cause(
        field_path(path),
        "FieldValueNotSupported",
        f"Unsupported value: {_value(value)}: supported values: {choices}",
    )


def duplicate(path: Path, value: Any) -> Cause:
    return Cause(field_path(path), "FieldValueDuplicate", f"Duplicate value: {_value(value)}")


def _detail(detail: str) -> str:
    return f": {detail}" if detail else ""


def _child(path: Path, element: Any) -> Path:
    return (path, element)


# --------------------------------------------------------------------------------------------
# schema compilation

_INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_QUANTITY_DEF = "io.k8s.apimachinery.pkg.api.resource.Quantity"
_REF_PREFIXES = ("#/$defs/", "/api/_definitions.json#/$defs/")


def _no_check(value: Any, path: Path, out: list[Cause]) -> None:
    return None


class _Compiler:
    """Turns a schema into a ``Check``; ``$ref`` s resolve to shared, memoised definitions."""

    def __init__(self) -> None:
        self.refs: dict[str, Check] = {}

    def ref(self, name: str) -> Check:
        check = self.refs.get(name)
        if check is not None:
            return check
        cell: list[Check] = []

        def deferred(value: Any, path: Path, out: list[Cause]) -> None:
            cell[0](value, path, out)

        self.refs[name] = deferred  # a recursive definition refers to itself through this
        if name == _QUANTITY_DEF:
            compiled: Check = _quantity
        else:
            compiled = self.compile(definitions()[name])
        cell.append(compiled)
        self.refs[name] = compiled
        return compiled

    def compile(self, schema: Obj) -> Check:
        ref = schema.get("$ref")
        if isinstance(ref, str):
            for prefix in _REF_PREFIXES:
                if ref.startswith(prefix):
                    return self.ref(ref[len(prefix) :])
            return _no_check
        checks: list[Check] = []
        types = self._types(schema)
        nullable = types is None or "null" in types or bool(schema.get("nullable"))
        if types is not None:
            types = frozenset(t for t in types if t != "null")
        if schema.get("x-kubernetes-int-or-string"):
            types = frozenset({"integer", "string"})
        for build in (
            self._object,
            self._array,
            self._enum,
            self._numbers,
            self._strings,
            self._combinators,
        ):
            check = build(schema)
            if check is not None:
                checks.append(check)
        return _typed(types, nullable, tuple(checks))

    @staticmethod
    def _types(schema: Obj) -> frozenset[str] | None:
        declared = schema.get("type")
        if isinstance(declared, str):
            return frozenset({declared})
        if isinstance(declared, list):
            return frozenset(declared)
        branches = schema.get("oneOf") or schema.get("anyOf")
        if (
            isinstance(branches, list)
            and branches
            and all(isinstance(b, dict) and set(b) <= {"type", "format"} for b in branches)
        ):
            merged: set[str] = set()
            for branch in branches:
                kind = branch.get("type")
                merged.update([kind] if isinstance(kind, str) else kind or [])
            return frozenset(merged) if merged else None
        return None

    def _object(self, schema: Obj) -> Check | None:
        properties = {
            name: self.compile(sub)
            for name, sub in (schema.get("properties") or {}).items()
            if isinstance(sub, dict)
        }
        additional_schema = schema.get("additionalProperties")
        additional = (
            self.compile(additional_schema) if isinstance(additional_schema, dict) else None
        )
        names = tuple(schema.get("required") or ())
        min_props, max_props = schema.get("minProperties"), schema.get("maxProperties")
        if not properties and additional is None and not names and min_props is max_props is None:
            return None

        def check(value: Any, path: Path, out: list[Cause]) -> None:
            if not isinstance(value, dict):
                return
            for name in names:
                if value.get(name) is None:
                    out.append(required((path, name)))
            for name, item in value.items():
                sub = properties.get(name)
                if sub is not None:
                    if item is not None or name not in names:
                        sub(item, (path, name), out)
                elif additional is not None:
                    additional(item, (path, _Key(name)), out)
            if min_props is not None and len(value) < min_props:
                out.append(
                    invalid(
                        path,
                        value,
                        f"{field_path(path)} in body should have at least {min_props} properties",
                    )
                )
            if max_props is not None and len(value) > max_props:
                out.append(
                    Cause(
                        field_path(path),
                        "FieldValueTooMany",
                        f"Too many: {len(value)}: must have at most {max_props} items",
                    )
                )

        return check

    def _array(self, schema: Obj) -> Check | None:
        items_schema = schema.get("items")
        items = self.compile(items_schema) if isinstance(items_schema, dict) else None
        min_items, max_items = schema.get("minItems"), schema.get("maxItems")
        list_type = schema.get("x-kubernetes-list-type")
        map_keys = tuple(schema.get("x-kubernetes-list-map-keys") or ())
        unique = bool(schema.get("uniqueItems")) or list_type == "set"
        keyed = list_type == "map" and bool(map_keys)
        if items is None and min_items is max_items is None and not unique and not keyed:
            return None

        def check(value: Any, path: Path, out: list[Cause]) -> None:
            if not isinstance(value, list):
                return
            if items is not None:
                for index, item in enumerate(value):
                    items(item, (path, index), out)
            if min_items is not None and len(value) < min_items:
                out.append(
                    invalid(
                        path,
                        value,
                        f"{field_path(path)} in body should have at least {min_items} items",
                    )
                )
            if max_items is not None and len(value) > max_items:
                out.append(
                    Cause(
                        field_path(path),
                        "FieldValueTooMany",
                        f"Too many: {len(value)}: must have at most {max_items} items",
                    )
                )
            if unique or keyed:
                seen: set[str] = set()
                for index, item in enumerate(value):
                    if keyed and isinstance(item, dict):
                        ident: Any = {k: item.get(k) for k in map_keys}
                    else:
                        ident = item
                    text = json.dumps(ident, sort_keys=True)
                    if text in seen:
                        out.append(duplicate((path, index), ident))
                    seen.add(text)

        return check

    @staticmethod
    def _enum(schema: Obj) -> Check | None:
        choices = schema.get("enum")
        if not isinstance(choices, list) or not choices:
            return None
        allowed = {json.dumps(c, sort_keys=True) for c in choices}
        shown = [c if isinstance(c, str) else json.dumps(c) for c in choices]

        def check(value: Any, path: Path, out: list[Cause]) -> None:
            if value is not None and json.dumps(value, sort_keys=True) not in allowed:
                out.append(not_supported(path, value, shown))

        return check

    @staticmethod
    def _numbers(schema: Obj) -> Check | None:
        minimum, maximum = schema.get("minimum"), schema.get("maximum")
        exclusive_min = schema.get("exclusiveMinimum") is True
        exclusive_max = schema.get("exclusiveMaximum") is True
        multiple = schema.get("multipleOf")
        bounds = _INT_RANGES.get(schema.get("format", ""))
        if minimum is None and maximum is None and multiple is None and bounds is None:
            return None

        def check(value: Any, path: Path, out: list[Cause]) -> None:
            if isinstance(value, bool) or not isinstance(value, int | float):
                return
            if bounds is not None and isinstance(value, int):
                low, high = bounds
                if not low <= value <= high:
                    out.append(invalid(path, value, f"{field_path(path)} in body is out of range"))
            if minimum is not None and (value <= minimum if exclusive_min else value < minimum):
                word = "greater than" if exclusive_min else "greater than or equal to"
                detail = f"{field_path(path)} in body should be {word} {minimum}"
                out.append(invalid(path, value, detail))
            if maximum is not None and (value >= maximum if exclusive_max else value > maximum):
                word = "less than" if exclusive_max else "less than or equal to"
                detail = f"{field_path(path)} in body should be {word} {maximum}"
                out.append(invalid(path, value, detail))
            if multiple and (value / multiple) % 1:
                detail = f"{field_path(path)} in body should be a multiple of {multiple}"
                out.append(invalid(path, value, detail))

        return check

    @staticmethod
    def _strings(schema: Obj) -> Check | None:
        min_len, max_len = schema.get("minLength"), schema.get("maxLength")
        pattern_text = schema.get("pattern")
        fmt = schema.get("format")
        try:
            pattern = re.compile(pattern_text) if isinstance(pattern_text, str) else None
        except re.error:
            pattern = None
        if (
            min_len is None
            and max_len is None
            and pattern is None
            and fmt
            not in (
                "byte",
                "date-time",
            )
        ):
            return None

        def check(value: Any, path: Path, out: list[Cause]) -> None:
            if not isinstance(value, str):
                return
            if min_len is not None and len(value) < min_len:
                detail = f"{field_path(path)} in body should be at least {min_len} chars long"
                out.append(invalid(path, value, detail))
            if max_len is not None and len(value) > max_len:
                out.append(
                    Cause(
                        field_path(path),
                        "FieldValueTooLong",
                        f"Too long: may not be more than {max_len} bytes",
                    )
                )
            if pattern is not None and not pattern.search(value):
                detail = f"{field_path(path)} in body should match '{pattern_text}'"
                out.append(invalid(path, value, detail))
            if fmt == "byte":
                try:
                    binascii.a2b_base64(value.encode("ascii"), strict_mode=True)
                except (binascii.Error, UnicodeEncodeError, ValueError):
                    out.append(invalid(path, "<value omitted>", "illegal base64 data"))
            elif fmt == "date-time" and not _DATE_TIME.match(value):
                detail = f"{field_path(path)} in body must be of type date-time"
                out.append(invalid(path, value, detail))

        return check

    def _combinators(self, schema: Obj) -> Check | None:
        checks: list[Check] = []
        for keyword in ("allOf", "anyOf", "oneOf"):
            branches = schema.get(keyword)
            if not isinstance(branches, list) or not branches:
                continue
            if keyword != "allOf" and all(
                isinstance(b, dict) and set(b) <= {"type", "format"} for b in branches
            ):
                continue  # a union of types, folded into the type check
            compiled = [self.compile(b) for b in branches if isinstance(b, dict)]
            checks.append(_combinator(keyword, compiled))
        negated = schema.get("not")
        if isinstance(negated, dict):
            checks.append(_negation(self.compile(negated)))
        if not checks:
            return None
        if len(checks) == 1:
            return checks[0]

        def check(value: Any, path: Path, out: list[Cause]) -> None:
            for sub in checks:
                sub(value, path, out)

        return check


def _typed(types: frozenset[str] | None, nullable: bool, checks: tuple[Check, ...]) -> Check:
    wants_integer = types is not None and "integer" in types and "number" not in types
    expected = ",".join(sorted(types)) if types else ""

    def check(value: Any, path: Path, out: list[Cause]) -> None:
        if value is None:
            if not nullable:
                name = field_path(path)
                out.append(
                    Cause(
                        name,
                        "FieldValueTypeInvalid",
                        f'Invalid value: "null": {name} in body must be of type {expected}: "null"',
                    )
                )
            return
        if types:
            kind = _json_type(value)
            ok = kind in types or (kind == "integer" and "number" in types)
            if not ok and kind == "number" and wants_integer and float(value).is_integer():
                ok = True
            if not ok:
                name = field_path(path)
                out.append(
                    Cause(
                        name,
                        "FieldValueTypeInvalid",
                        f'Invalid value: "{kind}": {name} in body must be of type {expected}: '
                        f'"{kind}"',
                    )
                )
                return
        for sub in checks:
            sub(value, path, out)

    return check


def _combinator(keyword: str, branches: list[Check]) -> Check:
    def check(value: Any, path: Path, out: list[Cause]) -> None:
        results = []
        for branch in branches:
            errors: list[Cause] = []
            branch(value, path, errors)
            results.append(errors)
        passed = sum(1 for errors in results if not errors)
        name = field_path(path)
        if keyword == "allOf":
            for errors in results:
                out.extend(errors)
        elif keyword == "anyOf" and passed == 0:
            out.append(
                invalid(path, value, f"{name} in body must validate at least one schema (anyOf)")
            )
            out.extend(results[0])
        elif keyword == "oneOf" and passed != 1:
            out.append(
                invalid(
                    path, value, f"{name} in body must validate one and only one schema (oneOf)"
                )
            )
            if passed == 0:
                out.extend(results[0])

    return check


def _negation(sub: Check) -> Check:
    def check(value: Any, path: Path, out: list[Cause]) -> None:
        errors: list[Cause] = []
        sub(value, path, errors)
        if not errors:
            out.append(
                invalid(
                    path, value, f"{field_path(path)} in body should not validate the schema (not)"
                )
            )

    return check


def _quantity(value: Any, path: Path, out: list[Cause]) -> None:
    if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
        return
    if not isinstance(value, str):
        name = field_path(path)
        kind = _json_type(value)
        out.append(
            Cause(
                name,
                "FieldValueTypeInvalid",
                f'Invalid value: "{kind}": {name} in body must be of type number,string: "{kind}"',
            )
        )
    elif not _QUANTITY.match(value):
        out.append(
            invalid(
                path,
                value,
                "quantities must match the regular expression "
                "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
            )
        )


_BUILTINS = _Compiler()
_CRD_CACHE: dict[int, tuple[Obj, Check]] = {}
_CRD_CACHE_SIZE = 256


def _builtin_check(name: str) -> Check:
    return _BUILTINS.ref(name)


def _crd_check(schema: Obj) -> Check:
    cached = _CRD_CACHE.get(id(schema))
    if cached is not None and cached[0] is schema:
        return cached[1]
    check = _Compiler().compile(schema)
    if len(_CRD_CACHE) >= _CRD_CACHE_SIZE:
        _CRD_CACHE.pop(next(iter(_CRD_CACHE)))
    _CRD_CACHE[id(schema)] = (schema, check)  # the schema is held, so its id stays unique
    return check


# --------------------------------------------------------------------------------------------
# semantic checks

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL = re.compile(rf"^{_LABEL}$")
_DNS1123_SUBDOMAIN = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")

_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
    r"for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
    "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex "
    "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
_DNS1035_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
    "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or "
    "'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)
_QUALIFIED_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
    "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
    "'my_value',  or '12345', regex used for validation is "
    "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)
_CONFIG_KEY_MSG = (
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. "
    "'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
)
_PORT_RANGE_MSG = "must be between 1 and 65535, inclusive"
_PROTOCOLS = ("SCTP", "TCP", "UDP")


def dns1123_subdomain_errors(value: str) -> list[str]:
    errors = []
    if len(value) > 253:
        errors.append("must be no more than 253 characters")
    if not _DNS1123_SUBDOMAIN.match(value):
        errors.append(_SUBDOMAIN_MSG)
    return errors


def dns1123_label_errors(value: str) -> list[str]:
    errors = []
    if len(value) > 63:
        errors.append("must be no more than 63 characters")
    if not _DNS1123_LABEL.match(value):
        errors.append(_LABEL_MSG)
    return errors


def dns1035_label_errors(value: str) -> list[str]:
    errors = []
    if len(value) > 63:
        errors.append("must be no more than 63 characters")
    if not _DNS1035_LABEL.match(value):
        errors.append(_DNS1035_MSG)
    return errors


def qualified_name_errors(value: str) -> list[str]:
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            return ["prefix part must be non-empty"]
        prefix_errors = dns1123_subdomain_errors(prefix)
        if prefix_errors:
            return ["prefix part " + e for e in prefix_errors]
    else:
        return [
            "a qualified name " + _QUALIFIED_MSG + " with an optional DNS subdomain prefix and "
            "'/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        return ["name part must be non-empty"]
    errors = []
    if len(name) > 63:
        errors.append("name part must be no more than 63 characters")
    if not _QUALIFIED_NAME.match(name):
        errors.append("name part " + _QUALIFIED_MSG)
    return errors


def label_value_errors(value: str) -> list[str]:
    errors = []
    if len(value) > 63:
        errors.append("must be no more than 63 characters")
    if not _LABEL_VALUE.match(value):
        errors.append(_LABEL_VALUE_MSG)
    return errors


def port_name_errors(value: str) -> list[str]:
    """IANA_SVC_NAME, as container port names and named target ports must be."""
    errors = []
    if len(value) > 15:
        errors.append("must be no more than 15 characters")
    if not re.fullmatch(r"[-a-z0-9]+", value):
        errors.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if "--" in value:
        errors.append("must not contain consecutive hyphens")
    if not re.search(r"[a-z]", value):
        errors.append("must contain at least one letter (a-z)")
    if value.startswith("-") or value.endswith("-"):
        errors.append("must not begin or end with a hyphen")
    return errors


def _each(out: list[Cause], path: Path, value: Any, errors: list[str]) -> None:
    out.extend(invalid(path, value, e) for e in errors)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _root(*names: str) -> Path:
    path: Path = None
    for name in names:
        path = (path, name)
    return path


def _metadata(obj: Obj, key: ResourceKey, out: list[Cause]) -> None:
    meta = _dict(obj.get("metadata"))
    path = _root("metadata")
    name = meta.get("name")
    if not name:
        if not meta.get("generateName"):
            out.append(required((path, "name"), "name or generateName is required"))
    elif isinstance(name, str):
        if key.group == "" and key.resource == "namespaces":
            errors = dns1123_label_errors(name)
        elif key.group == "" and key.resource == "services":
            errors = dns1035_label_errors(name)
        elif key.group == "apiextensions.k8s.io" and key.resource == "customresourcedefinitions":
            errors = []  # checked with the spec (``<plural>.<group>``)
        else:
            errors = dns1123_subdomain_errors(name)
        _each(out, (path, "name"), name, errors)
    namespace = meta.get("namespace")
    if key.namespaced and isinstance(namespace, str) and namespace:
        _each(out, (path, "namespace"), namespace, dns1123_label_errors(namespace))
    for label, value in _dict(meta.get("labels")).items():
        _each(out, (path, "labels"), label, qualified_name_errors(label))
        if isinstance(value, str):
            _each(out, (path, "labels"), value, label_value_errors(value))
    annotations = _dict(meta.get("annotations"))
    for annotation in annotations:
        _each(out, (path, "annotations"), annotation, qualified_name_errors(annotation.lower()))
    size = sum(len(k) + len(v) for k, v in annotations.items() if isinstance(v, str))
    if size > 256 * 1024:
        out.append(
            Cause(
                "metadata.annotations",
                "FieldValueTooLong",
                f"Too long: may not be more than {256 * 1024} bytes",
            )
        )
    for index, finalizer in enumerate(_list(meta.get("finalizers"))):
        if isinstance(finalizer, str):
            _each(out, ((path, "finalizers"), index), finalizer, qualified_name_errors(finalizer))


def _port_number(out: list[Cause], path: Path, value: Any, *, allow_zero: bool = False) -> None:
    if isinstance(value, int) and not isinstance(value, bool):
        if allow_zero and value == 0:
            return
        if not 1 <= value <= 65535:
            out.append(invalid(path, value, _PORT_RANGE_MSG))


def _protocol(out: list[Cause], path: Path, value: Any) -> None:
    if isinstance(value, str) and value not in _PROTOCOLS:
        out.append(not_supported(path, value, _PROTOCOLS))


def _supported(out: list[Cause], path: Path, value: Any, choices: Iterable[str]) -> None:
    if isinstance(value, str) and value not in choices:
        out.append(not_supported(path, value, choices))


def _pod_spec(spec: Obj, path: Path, out: list[Cause], *, template: bool = False) -> None:
    if spec.get("containers") == []:
        out.append(required((path, "containers")))
    names: set[str] = set()
    for field in ("initContainers", "containers"):
        for index, container in enumerate(_list(spec.get(field))):
            if not isinstance(container, dict):
                continue
            cpath: Path = ((path, field), index)
            name = container.get("name")
            if isinstance(name, str) and name:
                if name in names:
                    out.append(duplicate((cpath, "name"), name))
                names.add(name)
                _each(out, (cpath, "name"), name, dns1123_label_errors(name))
            if not container.get("image"):
                out.append(required((cpath, "image")))
            port_names: set[str] = set()
            for pindex, port in enumerate(_list(container.get("ports"))):
                if not isinstance(port, dict):
                    continue
                ppath: Path = ((cpath, "ports"), pindex)
                _port_number(out, (ppath, "containerPort"), port.get("containerPort"))
                _port_number(out, (ppath, "hostPort"), port.get("hostPort"), allow_zero=True)
                _protocol(out, (ppath, "protocol"), port.get("protocol"))
                port_name = port.get("name")
                if isinstance(port_name, str) and port_name:
                    _each(out, (ppath, "name"), port_name, port_name_errors(port_name))
                    if port_name in port_names:
                        out.append(duplicate((ppath, "name"), port_name))
                    port_names.add(port_name)
    restart = spec.get("restartPolicy")
    if template:
        _supported(out, (path, "restartPolicy"), restart, ("Always",))
    else:
        _supported(out, (path, "restartPolicy"), restart, ("Always", "Never", "OnFailure"))
    _supported(
        out,
        (path, "dnsPolicy"),
        spec.get("dnsPolicy"),
        ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"),
    )
    for index, gate in enumerate(_list(spec.get("readinessGates"))):
        condition = _dict(gate).get("conditionType")
        if isinstance(condition, str):
            gpath: Path = (((path, "readinessGates"), index), "conditionType")
            _each(out, gpath, condition, qualified_name_errors(condition))


def _pod(obj: Obj, key: ResourceKey, out: list[Cause]) -> None:
    spec = obj.get("spec")
    if isinstance(spec, dict):
        _pod_spec(spec, _root("spec"), out)


def _selector_matches(selector: Obj, labels: dict[str, Any]) -> bool:
    for k, v in _dict(selector.get("matchLabels")).items():
        if labels.get(k) != v:
            return False
    for item in _list(selector.get("matchExpressions")):
        expression = _dict(item)
        name, op = expression.get("key"), expression.get("operator")
        if not isinstance(name, str):
            return False
        values = _list(expression.get("values"))
        if op == "In" and labels.get(name) not in values:
            return False
        if op == "NotIn" and name in labels and labels[name] in values:
            return False
        if op == "Exists" and name not in labels:
            return False
        if op == "DoesNotExist" and name in labels:
            return False
    return True


def _workload(obj: Obj, key: ResourceKey, out: list[Cause]) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    path = _root("spec")
    replicas = spec.get("replicas")
    if isinstance(replicas, int) and not isinstance(replicas, bool) and replicas < 0:
        out.append(invalid((path, "replicas"), replicas, "must be greater than or equal to 0"))
    selector = spec.get("selector")
    template = _dict(spec.get("template"))
    if isinstance(selector, dict):
        if not selector.get("matchLabels") and not selector.get("matchExpressions"):
            detail = f"empty selector is invalid for {key.kind.lower()}"
            out.append(invalid((path, "selector"), selector, detail))
        else:
            labels = _dict(_dict(template.get("metadata")).get("labels"))
            if not _selector_matches(selector, labels):
                labels_path: Path = (((path, "template"), "metadata"), "labels")
                out.append(
                    invalid(labels_path, labels, "`selector` does not match template `labels`")
                )
    template_spec = template.get("spec")
    if isinstance(template_spec, dict):
        _pod_spec(template_spec, ((path, "template"), "spec"), out, template=True)
    strategy = _dict(spec.get("strategy"))
    if key.kind == "Deployment":
        _supported(
            out, ((path, "strategy"), "type"), strategy.get("type"), ("Recreate", "RollingUpdate")
        )
        _deployment_strategy(strategy, (path, "strategy"), out)
        deadline = spec.get("progressDeadlineSeconds")
        min_ready = spec.get("minReadySeconds") or 0
        if isinstance(deadline, int) and isinstance(min_ready, int) and deadline <= min_ready:
            detail = "must be greater than minReadySeconds"
            out.append(invalid((path, "progressDeadlineSeconds"), deadline, detail))


_PERCENT = re.compile(r"^[0-9]+%$")


def _int_or_percent_value(value: Any) -> int:
    """``getIntOrPercentValue``: the number, a percentage's number, 0 when unparsable."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        return int(str(value).removesuffix("%"))
    except ValueError:
        return 0


def _deployment_strategy(strategy: dict[str, Any], path: Path, out: list[Cause]) -> None:
    """``ValidateDeploymentStrategy``: maxSurge/maxUnavailable non-negative ints or percents,
    not both 0, maxUnavailable at most 100%; no rollingUpdate with Recreate."""
    rolling = strategy.get("rollingUpdate")
    if strategy.get("type") == "Recreate":
        if rolling is not None:
            message = "Forbidden: may not be specified when strategy `type` is 'Recreate'"
            out.append(Cause(field_path((path, "rollingUpdate")), "FieldValueForbidden", message))
        return
    if not isinstance(rolling, dict):
        return
    rpath: Path = (path, "rollingUpdate")
    for name in ("maxUnavailable", "maxSurge"):
        value = rolling.get(name)
        if isinstance(value, str) and not _PERCENT.match(value):
            out.append(
                invalid(
                    (rpath, name),
                    value,
                    "a valid percent string must be a numeric string followed by an ending '%' "
                    "(e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                )
            )
        elif isinstance(value, int) and not isinstance(value, bool) and value < 0:
            out.append(invalid((rpath, name), value, "must be greater than or equal to 0"))
    unavailable = rolling.get("maxUnavailable")
    if (
        _int_or_percent_value(unavailable) == 0
        and _int_or_percent_value(rolling.get("maxSurge")) == 0
    ):
        out.append(
            invalid((rpath, "maxUnavailable"), unavailable, "may not be 0 when `maxSurge` is 0")
        )
    percent = isinstance(unavailable, str) and _PERCENT.match(unavailable)
    if percent and _int_or_percent_value(unavailable) > 100:
        out.append(invalid((rpath, "maxUnavailable"), unavailable, "must not be greater than 100%"))


def _service(obj: Obj, key: ResourceKey, out: list[Cause]) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    path = _root("spec")
    kind = spec.get("type", "ClusterIP")
    _supported(out, (path, "type"), kind, ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort"))
    ports = _list(spec.get("ports"))
    headless = spec.get("clusterIP") == "None"
    if not ports and kind != "ExternalName" and not headless:
        out.append(required((path, "ports")))
    names: set[str] = set()
    seen: set[tuple[Any, Any]] = set()
    for index, port in enumerate(ports):
        if not isinstance(port, dict):
            continue
        ppath: Path = ((path, "ports"), index)
        name = port.get("name")
        if len(ports) > 1 and not name:
            out.append(required((ppath, "name")))
        elif isinstance(name, str) and name:
            _each(out, (ppath, "name"), name, dns1123_label_errors(name))
            if name in names:
                out.append(duplicate((ppath, "name"), name))
            names.add(name)
        number = port.get("port")
        if isinstance(number, int) and not isinstance(number, bool):
            _port_number(out, (ppath, "port"), number)
        elif number is None:
            out.append(required((ppath, "port")))
        _protocol(out, (ppath, "protocol"), port.get("protocol"))
        target = port.get("targetPort")
        if isinstance(target, int) and not isinstance(target, bool):
            _port_number(out, (ppath, "targetPort"), target, allow_zero=False)
        elif isinstance(target, str):
            if target.isdigit():
                _port_number(out, (ppath, "targetPort"), int(target))
            else:
                _each(out, (ppath, "targetPort"), target, port_name_errors(target))
        _port_number(out, (ppath, "nodePort"), port.get("nodePort"), allow_zero=True)
        ident = (number, port.get("protocol", "TCP"))
        if ident in seen:
            out.append(duplicate(ppath, {"port": number, "protocol": ident[1]}))
        seen.add(ident)
    _supported(
        out,
        (path, "externalTrafficPolicy"),
        spec.get("externalTrafficPolicy"),
        ("Cluster", "Local"),
    )
    _supported(
        out,
        (path, "internalTrafficPolicy"),
        spec.get("internalTrafficPolicy"),
        ("Cluster", "Local"),
    )
    _supported(out, (path, "sessionAffinity"), spec.get("sessionAffinity"), ("ClientIP", "None"))


def _endpoint_slice(obj: Obj, key: ResourceKey, out: list[Cause]) -> None:
    address_type = obj.get("addressType")
    _supported(out, _root("addressType"), address_type, ("FQDN", "IPv4", "IPv6"))
    for index, endpoint in enumerate(_list(obj.get("endpoints"))):
        addresses = _dict(endpoint).get("addresses")
        epath: Path = ((_root("endpoints"), index), "addresses")
        if isinstance(addresses, list):
            if not addresses:
                out.append(required(epath, "must contain at least 1 address"))
            elif len(addresses) > 100:
                out.append(
                    Cause(
                        field_path(epath),
                        "FieldValueTooMany",
                        f"Too many: {len(addresses)}: must have at most 100 items",
                    )
                )
    for index, port in enumerate(_list(obj.get("ports"))):
        ppath: Path = (_root("ports"), index)
        port = _dict(port)
        _port_number(out, (ppath, "port"), port.get("port"))
        _protocol(out, (ppath, "protocol"), port.get("protocol"))


def _ingress(obj: Obj, key: ResourceKey, out: list[Cause]) -> None:
    spec = _dict(obj.get("spec"))
    for rindex, rule in enumerate(_list(spec.get("rules"))):
        http = _dict(_dict(rule).get("http"))
        for pindex, item in enumerate(_list(http.get("paths"))):
            item = _dict(item)
            ppath: Path = (((((_root("spec"), "rules"), rindex), "http"), "paths"), pindex)
            path_type = item.get("pathType")
            if path_type is None:
                out.append(required((ppath, "pathType"), "pathType must be specified"))
            else:
                _supported(
                    out,
                    (ppath, "pathType"),
                    path_type,
                    ("Exact", "ImplementationSpecific", "Prefix"),
                )
            value = item.get("path")
            if (
                path_type in ("Exact", "Prefix")
                and isinstance(value, str)
                and not value.startswith("/")
            ):
                out.append(invalid((ppath, "path"), value, "must be an absolute path"))


def _config_keys(obj: Obj, key: ResourceKey, out: list[Cause]) -> None:
    for field in ("data", "binaryData", "stringData"):
        for name in _dict(obj.get(field)):
            errors = []
            if len(name) > 253:
                errors.append("must be no more than 253 characters")
            if not _CONFIG_KEY.match(name):
                errors.append(_CONFIG_KEY_MSG)
            _each(out, (_root(field), _Key(name)), name, errors)


def _webhooks(obj: Obj, key: ResourceKey, out: list[Cause]) -> None:
    mutating = key.resource == "mutatingwebhookconfigurations"
    names: set[str] = set()
    for index, hook in enumerate(_list(obj.get("webhooks"))):
        if not isinstance(hook, dict):
            continue
        path: Path = (_root("webhooks"), index)
        name = hook.get("name")
        if isinstance(name, str) and name:
            errors = dns1123_subdomain_errors(name)
            if len(name.split(".")) < 3:
                errors.append("should be a domain with at least three segments separated by dots")
            _each(out, (path, "name"), name, errors)
            if name in names:
                out.append(duplicate((path, "name"), name))
            names.add(name)
        side_effects = hook.get("sideEffects")
        if side_effects is None:
            out.append(required((path, "sideEffects"), "must specify one of None, NoneOnDryRun"))
        else:
            _supported(out, (path, "sideEffects"), side_effects, ("None", "NoneOnDryRun"))
        if not hook.get("admissionReviewVersions"):
            out.append(
                required((path, "admissionReviewVersions"), "must specify one of v1, v1beta1")
            )
        _supported(out, (path, "failurePolicy"), hook.get("failurePolicy"), ("Fail", "Ignore"))
        _supported(out, (path, "matchPolicy"), hook.get("matchPolicy"), ("Equivalent", "Exact"))
        if mutating:
            _supported(
                out,
                (path, "reinvocationPolicy"),
                hook.get("reinvocationPolicy"),
                ("IfNeeded", "Never"),
            )
        timeout = hook.get("timeoutSeconds")
        if isinstance(timeout, int) and not isinstance(timeout, bool) and not 1 <= timeout <= 30:
            out.append(
                invalid(
                    (path, "timeoutSeconds"),
                    timeout,
                    "the timeout value must be between 1 and 30 seconds",
                )
            )
        client = _dict(hook.get("clientConfig"))
        if ("url" in client) == ("service" in client):
            out.append(
                required((path, "clientConfig"), "exactly one of url or service is required")
            )


def _crd(obj: Obj, key: ResourceKey, out: list[Cause]) -> None:
    spec = _dict(obj.get("spec"))
    names = _dict(spec.get("names"))
    plural, group = names.get("plural"), spec.get("group")
    name = _dict(obj.get("metadata")).get("name")
    if (
        isinstance(name, str)
        and name
        and isinstance(plural, str)
        and isinstance(group, str)
        and name != f"{plural}.{group}"
    ):
        out.append(
            invalid(_root("metadata", "name"), name, 'must be spec.names.plural+"."+spec.group')
        )
    _supported(out, _root("spec", "scope"), spec.get("scope"), ("Cluster", "Namespaced"))
    versions = _list(spec.get("versions"))
    if versions:
        storage = sum(1 for v in versions if _dict(v).get("storage") is True)
        if storage != 1:
            out.append(
                invalid(
                    _root("spec", "versions"),
                    [_dict(v).get("name") for v in versions],
                    "must have exactly one version marked as storage version",
                )
            )


_SEMANTIC: dict[tuple[str, str], Callable[[Obj, ResourceKey, list[Cause]], None]] = {
    ("", "pods"): _pod,
    ("", "services"): _service,
    ("", "configmaps"): _config_keys,
    ("", "secrets"): _config_keys,
    ("apps", "deployments"): _workload,
    ("apps", "replicasets"): _workload,
    ("discovery.k8s.io", "endpointslices"): _endpoint_slice,
    ("networking.k8s.io", "ingresses"): _ingress,
    ("admissionregistration.k8s.io", "mutatingwebhookconfigurations"): _webhooks,
    ("admissionregistration.k8s.io", "validatingwebhookconfigurations"): _webhooks,
    ("apiextensions.k8s.io", "customresourcedefinitions"): _crd,
}


# --------------------------------------------------------------------------------------------
# entry point


def validate_object(obj: Obj, key: ResourceKey, schema: Obj | None = None) -> list[Cause]:
    """Every violation in ``obj`` (a whole object of ``key``), schema first, then semantics.

    ``schema`` is the served version's ``openAPIV3Schema`` for a custom resource; it is ignored
    for built-in kinds, which use their own definitions. A custom resource without one is only
    checked for its metadata.
    """
    out: list[Cause] = []
    name = definition_name(key.group, key.version, key.kind)
    if name is not None:
        _builtin_check(name)(obj, None, out)
    elif schema is not None:
        # The metadata of a custom resource is always an ObjectMeta, whatever its schema says.
        meta_check = _builtin_check("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
        body = {k: v for k, v in obj.items() if k != "metadata"}
        _crd_check(schema)(body, None, out)
        if "metadata" in obj:
            meta_check(obj["metadata"], (None, "metadata"), out)
    _metadata(obj, key, out)
    semantic = _SEMANTIC.get((key.group, key.resource))
    if semantic is not None:
        semantic(obj, key, out)
    return out
