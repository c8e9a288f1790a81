"""Event-to-key mapping through real informers, and the event recorder, against the simulator."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from lightkube import AsyncClient
from lightkube.models.core_v1 import Container, PodSpec, ServicePort, ServiceSpec
from lightkube.models.discovery_v1 import EndpointPort
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.models.networking_v1 import (
    HTTPIngressPath,
    HTTPIngressRuleValue,
    IngressBackend,
    IngressRule,
    IngressServiceBackend,
    IngressSpec,
    ServiceBackendPort,
)
from lightkube.resources.core_v1 import ConfigMap, Event, Pod, Service
from lightkube.resources.discovery_v1 import EndpointSlice as SliceResource
from lightkube.resources.networking_v1 import Ingress

from directlb.kube import mapping
from directlb.kube.events import WARNING, EventRecorder
from directlb.kube.informer import Event as CacheEvent
from directlb.kube.informer import Informer
from directlb.kube.workqueue import WorkQueue
from tests import support
from tests.sim_support import lightkube_client, running_api_server


@contextlib.asynccontextmanager
async def cluster() -> AsyncIterator[AsyncClient]:
    async with running_api_server() as server:
        client = lightkube_client(server)
        try:
            yield client
        finally:
            await client.close()


@contextlib.asynccontextmanager
async def informing(*informers: Informer[Any]) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(i.run()) for i in informers]
    try:
        for informer in informers:
            await asyncio.wait_for(informer.synced.wait(), timeout=10)
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def service(name: str, selector: dict[str, str] | None) -> Service:
    return Service(
        metadata=ObjectMeta(name=name, namespace="default"),
        spec=ServiceSpec(selector=selector, ports=[ServicePort(port=80)]),
    )


def pod(name: str, labels: dict[str, str]) -> Pod:
    return Pod(
        metadata=ObjectMeta(name=name, namespace="default", labels=labels),
        spec=PodSpec(containers=[Container(name="c", image="nginx")]),
    )


async def drained(queue: WorkQueue[str]) -> set[str]:
    keys = set()
    while len(queue):
        key = await queue.get()
        keys.add(key)
        queue.done(key)
    return keys


async def test_a_pod_label_change_enqueues_the_services_that_selected_it_before_or_now() -> None:
    async with cluster() as client:
        for name, selector in (
            ("web", {"app": "web"}),
            ("web-canary", {"app": "web", "track": "canary"}),
            ("api", {"app": "api"}),
            ("headless-nothing", None),
        ):
            await client.create(service(name, selector))
        await client.create(pod("p", {"app": "web", "track": "canary"}))
        services: Informer[Service] = Informer(client, Service, resync_period=None)
        services.store.add_index(mapping.BY_NAMESPACE, mapping.index_by_namespace)
        pods: Informer[Pod] = Informer(client, Pod, resync_period=None)
        queue: WorkQueue[str] = WorkQueue(name="service")

        def on_pod(event: CacheEvent[Any]) -> None:
            mapping.enqueue(queue.add, mapping.services_for_pod(event, services.store))

        async with informing(services):
            pods.add_handler(on_pod)
            async with informing(pods):
                assert await drained(queue) == {"default/web", "default/web-canary"}
                # Relabel: leaves web and web-canary, joins api.
                relabel = {"metadata": {"labels": {"app": "api", "track": None}}}
                await client.patch(Pod, "p", relabel, namespace="default")
                await support.wait_until(lambda: len(queue) == 3, timeout=10)
                assert await drained(queue) == {
                    "default/web",
                    "default/web-canary",
                    "default/api",
                }
                # A change that touches no label still wakes only the current selector's Service.
                await client.patch(
                    Pod, "p", {"metadata": {"annotations": {"x": "1"}}}, namespace="default"
                )
                await support.wait_until(lambda: len(queue) == 1, timeout=10)
                assert await drained(queue) == {"default/api"}


async def test_slices_map_to_their_service_and_services_to_their_ingresses() -> None:
    async with cluster() as client:
        backend = IngressBackend(
            service=IngressServiceBackend(name="web", port=ServiceBackendPort(number=80))
        )
        ingress = Ingress(
            metadata=ObjectMeta(name="site", namespace="default"),
            spec=IngressSpec(
                defaultBackend=IngressBackend(
                    service=IngressServiceBackend(
                        name="fallback", port=ServiceBackendPort(number=80)
                    )
                ),
                rules=[
                    IngressRule(
                        host="a.example.com",
                        http=HTTPIngressRuleValue(
                            paths=[HTTPIngressPath(path="/", pathType="Prefix", backend=backend)]
                        ),
                    )
                ],
            ),
        )
        await client.create(ingress)
        ingresses: Informer[Ingress] = Informer(client, Ingress, resync_period=None)
        ingresses.store.add_index(mapping.BY_BACKEND_SERVICE, mapping.ingress_backend_services)
        slices: Informer[SliceResource] = Informer(client, SliceResource, resync_period=None)
        services: Informer[Service] = Informer(client, Service, resync_period=None)
        queue: WorkQueue[str] = WorkQueue(name="keys")
        slices.add_handler(lambda e: mapping.enqueue(queue.add, mapping.service_for_slice(e)))
        services.add_handler(
            lambda e: mapping.enqueue(queue.add, mapping.ingresses_for_service(e, ingresses.store))
        )
        async with informing(ingresses, slices, services):
            await client.create(
                SliceResource(
                    metadata=ObjectMeta(
                        name="web-abcde",
                        namespace="default",
                        labels={mapping.SERVICE_NAME_LABEL: "web"},
                    ),
                    addressType="IPv4",
                    endpoints=[],
                    ports=[EndpointPort(port=80)],
                )
            )
            await support.wait_until(lambda: len(queue) == 1, timeout=10)
            assert await drained(queue) == {"default/web"}
            await client.create(service("unrelated", {"app": "y"}))
            await client.create(service("fallback", {"app": "x"}))
            # Events arrive in order: once "fallback" is cached, "unrelated" was handled too.
            await support.wait_until(
                lambda: services.store.get("default/fallback") is not None, timeout=10
            )
            assert await drained(queue) == {"default/site"}


async def test_repeated_events_are_one_event_with_a_count() -> None:
    async with cluster() as client:
        target = await client.create(ConfigMap(metadata=ObjectMeta(name="cm", namespace="default")))
        recorder = EventRecorder(client, component="directlb-test")
        for _ in range(3):
            recorder.event(target, type=WARNING, reason="SyncLoadBalancerFailed", message="quota")
        recorder.event(target, type=WARNING, reason="SyncLoadBalancerFailed", message="other")
        await recorder.flush()
        events = [e async for e in client.list(Event, namespace="default")]
        by_message = {e.message: e for e in events}
        assert set(by_message) == {"quota", "other"}
        assert by_message["quota"].count == 3
        assert by_message["quota"].involvedObject.name == "cm"
        assert by_message["quota"].involvedObject.kind == "ConfigMap"
        assert by_message["quota"].source.component == "directlb-test"
        assert by_message["other"].count == 1


async def test_many_different_messages_are_combined() -> None:
    async with cluster() as client:
        target = await client.create(ConfigMap(metadata=ObjectMeta(name="cm", namespace="default")))
        recorder = EventRecorder(client)
        for i in range(14):
            recorder.event(target, type=WARNING, reason="Flapping", message=f"attempt {i}")
        await recorder.flush()
        events = [e async for e in client.list(Event, namespace="default")]
        combined = [e for e in events if e.message.startswith("(combined from similar events)")]
        assert len(events) == 11  # ten distinct, then one combined
        assert len(combined) == 1 and combined[0].count == 4


async def test_a_spamming_object_is_limited() -> None:
    async with cluster() as client:
        target = await client.create(ConfigMap(metadata=ObjectMeta(name="cm", namespace="default")))
        recorder = EventRecorder(client)
        for i in range(40):
            recorder.event(target, type=WARNING, reason=f"R{i}", message="m")
        await recorder.flush()
        events = [e async for e in client.list(Event, namespace="default")]
        assert len(events) == 25
        assert recorder.dropped == 15
