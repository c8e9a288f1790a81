"""The readiness-gate wiring: a periodic resync of a Service does not re-check its pods for
missing gates (a scan of its namespace per Service), a real change does; a periodic resync of
a Service or an EndpointSlice does not re-check the namespace's pending pods (their own Pod
resync and recheck period do), a real change does."""

from __future__ import annotations

from typing import Any

from lightkube.resources.core_v1 import Pod, Service
from lightkube.resources.discovery_v1 import EndpointSlice

from directlb.kube.informer import ADDED, MODIFIED, Event
from directlb.webhook.server import GATE
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


def pending_pod(name: str) -> Any:
    """A pod with our readiness gate, not True yet."""
    return Pod.from_dict(
        {
            "metadata": {"name": name, "namespace": "ns", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c"}], "readinessGates": [{"conditionType": GATE}]},
            "status": {"phase": "Running"},
        }
    )


def endpoint_slice(name: str) -> Any:
    return EndpointSlice.from_dict(
        {
            "metadata": {
                "name": name,
                "namespace": "ns",
                "labels": {"kubernetes.io/service-name": "direct"},
            },
            "addressType": "IPv4",
            "endpoints": [],
        }
    )


async def test_a_pending_pod_is_tracked_and_its_own_resync_rechecks_it() -> None:
    manager, _, _ = wired()
    queue = manager.queue("gate")
    pod = pending_pod("p1")
    manager.informer(Pod)._emit(Event(ADDED, pod))
    assert await keys(queue) == {"ns/p1"}
    manager.informer(Pod)._emit(Event(MODIFIED, pod, pod))  # its resync: what heals it
    assert await keys(queue) == {"ns/p1"}


async def test_service_and_slice_resyncs_do_not_recheck_the_pending_pods() -> None:
    manager, _, _ = wired()
    queue = manager.queue("gate")
    manager.informer(Pod)._emit(Event(ADDED, pending_pod("p1")))
    await keys(queue)
    direct = service("direct", {"service.cloud.tencent.com/direct-access": "true"})
    emit(manager, Event(MODIFIED, direct, direct))
    piece = endpoint_slice("direct-abc")
    manager.informer(EndpointSlice)._emit(Event(MODIFIED, piece, piece))
    assert await keys(queue) == set()


async def test_service_and_slice_changes_recheck_the_pending_pods() -> None:
    manager, _, _ = wired()
    queue = manager.queue("gate")
    manager.informer(Pod)._emit(Event(ADDED, pending_pod("p1")))
    await keys(queue)
    before = service("direct")
    after = service("direct", {"service.cloud.tencent.com/direct-access": "true"})
    emit(manager, Event(MODIFIED, after, before))
    assert await keys(queue) == {"ns/p1"}
    manager.informer(EndpointSlice)._emit(Event(ADDED, endpoint_slice("direct-abc")))
    assert await keys(queue) == {"ns/p1"}
