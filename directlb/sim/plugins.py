"""The API server's pluggable parts, gathered in one value so tests and callers can swap them.

``admission`` (webhooks), ``patch`` (the four patch types), ``validation`` (schemas) and
``tables`` (server-side printing) are separate modules with the interfaces in
``contracts.py``; the server only calls them through ``Plugins``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from directlb.sim.admission import Admission
from directlb.sim.contracts import AdmissionAttributes, Cause, Obj, ObjectReader, ResourceKey
from directlb.sim.patch import apply_patch
from directlb.sim.tables import to_table
from directlb.sim.validation import validate_object

ApplyPatch = Callable[..., Obj]
ValidateObject = Callable[[Obj, ResourceKey, Obj | None], list[Cause]]
ToTable = Callable[..., Obj]


class AdmissionChain(Protocol):
    def mutate(self, attrs: AdmissionAttributes) -> Awaitable[Obj]: ...

    def validate(self, attrs: AdmissionAttributes) -> Awaitable[None]: ...


@dataclass(frozen=True)
class Plugins:
    admission: AdmissionChain
    apply_patch: ApplyPatch
    validate_object: ValidateObject
    to_table: ToTable

    @classmethod
    def load(cls, reader: ObjectReader) -> Plugins:
        return cls(
            admission=Admission(reader),
            apply_patch=apply_patch,
            validate_object=validate_object,
            to_table=to_table,
        )

    async def close(self) -> None:
        close: Any = getattr(self.admission, "close", None)
        if close is not None:
            await close()
