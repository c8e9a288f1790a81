"""Object metadata and metav1 Status helpers shared by the API server's modules."""

from __future__ import annotations

import pickle
import random
import time
import uuid
from datetime import UTC, datetime
from typing import Any, TypeVar

from directlb.sim.contracts import Obj, ResourceKey, StatusError

# The alphabet the real server draws generateName suffixes from (no vowels, no look-alikes).
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_T = TypeVar("_T")


def now() -> datetime:
    return datetime.now(UTC)


_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# The current second and its text: every write stamps something, strftime is not cheap.
_current_stamp: list[tuple[int, str]] = [(-1, "")]


def timestamp(at: datetime | None = None) -> str:
    """RFC 3339 at second precision, as metav1.Time serialises."""
    if at is not None:
        return at.strftime(_TIME_FORMAT)
    second = int(time.time())
    cached_second, text = _current_stamp[0]
    if second != cached_second:
        text = datetime.fromtimestamp(second, UTC).strftime(_TIME_FORMAT)
        _current_stamp[0] = (second, text)
    return text


def clone(value: _T) -> _T:
    """A deep copy of JSON data, as ``copy.deepcopy`` makes it (shared parts stay shared), by a
    pickle round trip: several times faster than ``copy.deepcopy`` or a JSON round trip."""
    copied: _T = pickle.loads(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
    return copied


def new_uid() -> str:
    return str(uuid.uuid4())


def generated_name(prefix: str) -> str:
    return prefix + "".join(random.choices(_NAME_ALPHABET, k=5))


def metadata(obj: Obj) -> dict[str, Any]:
    meta = obj.get("metadata")
    if meta is None:
        meta = obj["metadata"] = {}
    if not isinstance(meta, dict):
        raise StatusError(400, "BadRequest", "metadata must be an object")
    return meta


def qualified(key: ResourceKey) -> str:
    """``pods`` or ``deployments.apps``: how the server names a resource in messages."""
    return f"{key.resource}.{key.group}" if key.group else key.resource


def status(
    code: int,
    reason: str,
    message: str,
    *,
    details: Obj | None = None,
) -> Obj:
    result: Obj = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success" if code < 400 else "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        result["details"] = details
    if code < 400:
        del result["message"]
        del result["reason"]
    return result


def status_of(error: StatusError) -> Obj:
    details = dict(error.details)
    if error.causes:
        details["causes"] = error.causes
    return status(error.code, error.reason, error.message, details=details or None)


def not_found(key: ResourceKey, name: str) -> StatusError:
    return StatusError(
        404,
        "NotFound",
        f'{qualified(key)} "{name}" not found',
        details={"name": name, "group": key.group, "kind": key.resource},
    )


def already_exists(key: ResourceKey, name: str) -> StatusError:
    return StatusError(
        409,
        "AlreadyExists",
        f'{qualified(key)} "{name}" already exists',
        details={"name": name, "group": key.group, "kind": key.resource},
    )


def conflict(key: ResourceKey, name: str, why: str) -> StatusError:
    message = f'Operation cannot be fulfilled on {qualified(key)} "{name}": {why}'
    return StatusError(
        409, "Conflict", message, details={"name": name, "group": key.group, "kind": key.resource}
    )


MODIFIED_CONFLICT = (
    "the object has been modified; please apply your changes to the latest version and try again"
)


def invalid(key: ResourceKey, name: str, causes: list[dict[str, str]]) -> StatusError:
    """422 Invalid, with the message the real server composes from its field errors."""
    text = "; ".join(f"{c['field']}: {c['message']}" for c in causes)
    if len(causes) > 1:
        text = "[" + ", ".join(f"{c['field']}: {c['message']}" for c in causes) + "]"
    return StatusError(
        422,
        "Invalid",
        f'{key.kind} "{name}" is invalid: {text}',
        causes=causes,
        details={"name": name, "group": key.group, "kind": key.kind},
    )


def bad_request(message: str) -> StatusError:
    return StatusError(400, "BadRequest", message)
