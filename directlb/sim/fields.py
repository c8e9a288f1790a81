"""Unknown fields: dropped, warned about or refused, as ``fieldValidation`` asks.

The real server decodes a body into its Go type (or prunes a custom resource to its structural
schema), so a field the schema does not know is never stored. ``fieldValidation`` says what the
client hears about it: ``Ignore`` nothing, ``Warn`` (the default) a ``Warning`` header per
field, ``Strict`` a 400 (what ``kubectl apply`` asks for by default, so a typo in a manifest is
an error rather than silently lost). Schemas come from ``schema_catalog``.
"""

from __future__ import annotations

from typing import Any

from directlb.sim.contracts import Obj, ResourceKey, StatusError
from directlb.sim.schema_catalog import SchemaNode, root_node

MODES = ("Ignore", "Warn", "Strict")
_ALWAYS_KEPT = frozenset({"apiVersion", "kind", "metadata"})


# A path is a cons list, ``None`` (the object) or ``(parent, element)`` (an ``int`` element is a
# list index, a ``str`` a field): text is only built for the rare unknown field.
Path = tuple[Any, Any] | None


def _text(path: Path) -> str:
    parts: list[str] = []
    while path is not None:
        path, element = path
        parts.append(f"[{element}]" if isinstance(element, int) else f".{element}")
    return "".join(reversed(parts)).removeprefix(".")


def _prune(value: Any, node: SchemaNode, path: Path, found: list[str]) -> None:
    if isinstance(value, list):
        items = node.items()
        for index, item in enumerate(value):
            if isinstance(item, list | dict):
                _prune(item, items, (path, index), found)
        return
    if not isinstance(value, dict):
        return
    # Only an object that lists its properties (and allows nothing else) has unknown fields.
    closed = bool(node.properties) and node.additional is None and not node.preserve_unknown
    descend = closed or node.additional is not None
    for name in list(value):
        if closed and not node.has_field(name) and not (path is None and name in _ALWAYS_KEPT):
            found.append(_text((path, name)))
            del value[name]
            continue
        child = value[name]
        if descend and isinstance(child, list | dict):
            _prune(child, node.child(name), (path, name), found)


def drop_unknown(obj: Obj, key: ResourceKey, schema: Obj | None) -> list[str]:
    """Remove the fields ``obj`` has that its schema does not; return their paths."""
    found: list[str] = []
    _prune(obj, root_node(key, schema), None, found)
    return found


def check(obj: Obj, key: ResourceKey, schema: Obj | None, *, mode: str) -> list[str]:
    """Apply ``fieldValidation``: the warnings to send, or a 400 under ``Strict``."""
    if mode not in MODES:
        raise StatusError(
            400,
            "BadRequest",
            f'fieldValidation: Unsupported value: "{mode}": supported values: '
            '"Ignore", "Strict", "Warn"',
        )
    unknown = drop_unknown(obj, key, schema)
    if not unknown:
        return []
    if mode == "Strict":
        fields = ", ".join(f'unknown field "{f}"' for f in unknown)
        raise StatusError(
            400,
            "BadRequest",
            f'{key.kind} in version "{key.version}" cannot be handled as a {key.kind}: '
            f"strict decoding error: {fields}",
        )
    return [f'unknown field "{f}"' for f in unknown] if mode == "Warn" else []
