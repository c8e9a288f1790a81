"""Problems a user can cause, as values: a stable reason and a message that says what to change.

The model never raises for bad input. It returns :class:`Problem` values; the controller turns
each into a Kubernetes Event (``reason`` is the Event's reason, ``severity.event_type`` its type).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Severity(StrEnum):
    """How much of the object a problem stops.

    ``ERROR``: the desired state cannot be known (for example a direct-access value that is
    neither true nor false), so the controller must leave the load balancer as it is.
    ``WARNING``: part of the object is skipped; the rest is reconciled.
    """

    ERROR = "Error"
    WARNING = "Warning"

    @property
    def event_type(self) -> str:
        """Kubernetes Events are ``Normal`` or ``Warning``: every problem is a Warning."""
        return "Warning"


@dataclass(frozen=True, order=True)
class Problem:
    reason: str  # stable, CamelCase, like Kubernetes Event reasons
    message: str  # what is wrong and what to change
    severity: Severity = Severity.WARNING

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"
