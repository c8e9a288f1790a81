"""The readiness-gate wiring: a periodic resync of a Service does not re-check its pods for
missing gates (a scan of its namespace per Service), a real change does."""

from __future__ import annotations

from typing import Any

from lightkube.resources.core_v1 import Service

from directlb.kube.informer import ADDED, MODIFIED, Event
from tests.unit.test_runtime_nodes import keys, service, wired


def emit(manager: Any, event: Event[Any]) -> None:
    manager.informer(Service)._emit(event)


async def test_a_service_resync_does_not_recheck_unprotected_pods() -> None:
    manager, _, _ = wired()
    queue = manager.queue("gate-unprotected")
    direct = service("direct", {"service.cloud.tencent.com/direct-access": "true"})
    emit(manager, Event(MODIFIED, direct, direct))  # old is new: the informer's resync
    assert await keys(queue) == set()


async def test_a_service_change_rechecks_unprotected_pods() -> None:
    manager, _, _ = wired()
    queue = manager.queue("gate-unprotected")
    before = service("direct")
    after = service("direct", {"service.cloud.tencent.com/direct-access": "true"})
    emit(manager, Event(MODIFIED, after, before))
    emit(manager, Event(ADDED, service("new")))
    assert await keys(queue) == {"ns/direct", "ns/new"}
