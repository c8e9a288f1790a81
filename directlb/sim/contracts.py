"""The seams between the simulator's API server and its pluggable parts.

The API server (``server.py`` and friends) stores objects and speaks HTTP; admission
(``admission.py``), patching (``patch.py``), schema validation (``validation.py``) and
server-side tables (``tables.py``) are separate modules with the interfaces below, so each can
be built and tested on its own and the server only wires them together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

Obj = dict[str, Any]


@dataclass(frozen=True)
class ResourceKey:
    """A served resource: ``group`` is "" for the core API; ``resource`` is the plural."""

    group: str
    version: str
    resource: str
    kind: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


class ObjectReader(Protocol):
    """Read access to the server's current objects (what admission needs to look up)."""

    def list_objects(
        self, group: str, resource: str, namespace: str | None = None
    ) -> list[Obj]: ...

    def get_object(
        self, group: str, resource: str, namespace: str | None, name: str
    ) -> Obj | None: ...


@dataclass(frozen=True)
class AdmissionAttributes:
    """One admission request, as the API server hands it to the admission chain."""

    operation: str  # "CREATE" | "UPDATE" | "DELETE" | "CONNECT"
    key: ResourceKey
    subresource: str  # "" for the main resource, e.g. "status"
    namespace: str  # "" for cluster-scoped resources
    name: str
    obj: Obj | None  # the object being written (None for DELETE)
    old_obj: Obj | None  # the stored object (None for CREATE)
    user: str = "admin"
    groups: tuple[str, ...] = ("system:masters", "system:authenticated")
    dry_run: bool = False


class StatusError(Exception):
    """An error the API server answers as a metav1 Status with this HTTP code.

    ``reason`` is the Status reason (``Invalid``, ``Conflict``, ``BadRequest``,
    ``InternalError``, ``Forbidden`` …); ``causes`` are ``{"field", "reason", "message"}``
    entries for ``details.causes``; ``details`` holds the other Status details (``name``,
    ``group``, ``kind``).
    """

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        causes: list[dict[str, str]] | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.causes = causes or []
        # Extra ``details`` fields (``name``, ``group``, ``kind``, ``retryAfterSeconds``); the
        # server adds ``causes`` itself.
        self.details = details or {}


class AdmissionDenied(StatusError):
    """A webhook denied the request, or failed under failurePolicy Fail."""


@dataclass(frozen=True)
class Cause:
    """One schema violation: ``field`` is a path like ``spec.containers[0].image``."""

    field: str
    reason: str  # "FieldValueRequired", "FieldValueInvalid", "FieldValueNotSupported", …
    message: str


@dataclass
class PatchRequest:
    """A PATCH as received: ``content_type`` selects the patch kind."""

    content_type: str  # application/json-patch+json | merge-patch+json |
    # strategic-merge-patch+json | apply-patch+yaml
    body: bytes
    key: ResourceKey
    field_manager: str | None = None
    force: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
