"""Informers against the simulator's API server over real HTTPS."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from lightkube import AsyncClient, KubeConfig
from lightkube.core.generic_client import BasicRequest, WatchDriver
from lightkube.models.core_v1 import Container, PodSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap, Namespace, Pod
from lightkube.resources.discovery_v1 import EndpointSlice

from directlb.kube.informer import (
    ADDED,
    DELETED,
    MODIFIED,
    Event,
    Informer,
    decode_event,
    key_of,
)
from directlb.sim.server import ApiServer, SimConfig
from tests import support
from tests.sim_support import lightkube_client, running_api_server


@contextlib.asynccontextmanager
async def api_server(**config: Any) -> AsyncIterator[tuple[ApiServer, AsyncClient]]:
    async with running_api_server(**config) as server:
        client = lightkube_client(server)
        try:
            yield server, client
        finally:
            await client.close()


@contextlib.asynccontextmanager
async def running(informer: Informer[Any]) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(informer.run())
    try:
        await asyncio.wait_for(informer.synced.wait(), timeout=10)
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def recorder(events: list[tuple[str, str]]) -> Callable[[Event[Any]], None]:
    def record(event: Event[Any]) -> None:
        events.append((event.type, key_of(event.obj)))

    return record


def config_map(name: str, value: str = "1") -> ConfigMap:
    return ConfigMap(metadata=ObjectMeta(name=name, namespace="default"), data={"v": value})


async def test_the_informer_sees_every_change_in_order() -> None:
    async with api_server(bookmark_interval=0.2) as (_server, client):
        await client.create(config_map("before"))
        informer: Informer[ConfigMap] = Informer(client, ConfigMap, resync_period=None)
        events: list[tuple[str, str]] = []
        informer.add_handler(recorder(events))
        async with running(informer):
            assert events == [(ADDED, "default/before")]
            await client.create(config_map("a"))
            await client.replace(config_map("a", "2"))
            await client.delete(ConfigMap, "before", namespace="default")
            await support.wait_until(lambda: len(events) == 4, timeout=10)
            assert events[1:] == [
                (ADDED, "default/a"),
                (MODIFIED, "default/a"),
                (DELETED, "default/before"),
            ]
            assert informer.store.keys() == ["default/a"]
            cached = informer.store.get("default/a")
            assert cached is not None and cached.data == {"v": "2"}


async def test_after_410_the_relist_still_reports_the_delete_missed_in_the_gap() -> None:
    async with api_server(history_size=5, bookmark_interval=60) as (_server, client):
        for name in ("keep", "doomed"):
            await client.create(config_map(name))
        informer: Informer[ConfigMap] = Informer(client, ConfigMap, resync_period=None)
        events: list[tuple[str, str]] = []
        informer.add_handler(recorder(events))
        async with running(informer):
            pass  # synced, then stopped: the gap starts here
        # During the gap: a delete, then enough churn to push it out of the server's history.
        await client.delete(ConfigMap, "doomed", namespace="default")
        for i in range(10):
            await client.create(config_map(f"churn-{i}"))
        events.clear()
        async with running(informer):
            await support.wait_until(lambda: informer.relists >= 1, timeout=10)
            await support.wait_until(lambda: len(informer.store) == 11, timeout=10)
        assert (DELETED, "default/doomed") in events
        assert sorted(k for t, k in events if t == ADDED) == [
            f"default/churn-{i}" for i in range(10)
        ]
        assert (ADDED, "default/keep") not in events  # unchanged: no event


async def test_a_stalled_watch_is_restarted_and_changes_still_arrive() -> None:
    # No bookmarks and a long server timeout: the watch stays silent, which is what a stall
    # looks like from the client.
    async with api_server(bookmark_interval=3600) as (_server, client):
        informer: Informer[ConfigMap] = Informer(
            client, ConfigMap, resync_period=None, server_timeout=3600, stall_timeout=0.3
        )
        events: list[tuple[str, str]] = []
        informer.add_handler(recorder(events))
        async with running(informer):
            await support.wait_until(lambda: informer.watch_restarts >= 2, timeout=10)
            await client.create(config_map("late"))
            await support.wait_until(lambda: (ADDED, "default/late") in events, timeout=10)


async def test_bookmarks_keep_the_resume_version_fresh() -> None:
    async with api_server(bookmark_interval=0.1) as (_server, client):
        informer: Informer[ConfigMap] = Informer(client, ConfigMap, resync_period=None)
        async with running(informer):
            listed = informer._version
            # Changes of another kind move the global resourceVersion; bookmarks carry it.
            await client.create(Namespace(metadata=ObjectMeta(name="elsewhere")))
            await support.wait_until(
                lambda: int(informer._version or 0) > int(listed or 0), timeout=10
            )


async def test_a_bookmark_of_a_kind_with_required_fields_is_not_an_error() -> None:
    # A bookmark holds only metadata; decoded as an EndpointSlice (addressType is required)
    # it failed, and every bookmark of the slice watch became a failure and a relist.
    async with api_server(bookmark_interval=0.1) as (_server, client):
        informer: Informer[EndpointSlice] = Informer(client, EndpointSlice, resync_period=None)
        async with running(informer):
            listed = informer._version
            await client.create(Namespace(metadata=ObjectMeta(name="elsewhere")))
            await support.wait_until(
                lambda: int(informer._version or 0) > int(listed or 0), timeout=10
            )
            await asyncio.sleep(0.3)  # a few more bookmarks
            assert informer.watch_failures == 0 and informer.relists == 0


def test_a_bookmark_holding_only_metadata_is_decoded_as_a_bookmark() -> None:
    # The simulator now sends a bookmark as the real server does (the kind's zero value:
    # ``addressType: ""`` for a slice); a server that sends only metadata must not break the
    # watch either.
    line = (
        '{"type":"BOOKMARK","object":{"kind":"EndpointSlice","apiVersion":"discovery.k8s.io/v1",'
        '"metadata":{"resourceVersion":"42"}}}'
    )
    driver = WatchDriver(BasicRequest("GET", "", response_type=EndpointSlice), None)
    kind, obj = decode_event(driver, line)
    assert kind == "BOOKMARK" and obj.metadata.resourceVersion == "42"


async def test_resync_hands_every_object_to_the_handlers_again() -> None:
    async with api_server(bookmark_interval=60) as (_server, client):
        await client.create(config_map("x"))
        informer: Informer[ConfigMap] = Informer(client, ConfigMap, resync_period=0.2)
        resynced: list[str] = []

        def record(event: Event[Any]) -> None:
            if event.type == MODIFIED and event.old is event.obj:
                resynced.append(key_of(event.obj))

        informer.add_handler(record)
        async with running(informer):
            await support.wait_until(lambda: resynced.count("default/x") >= 2, timeout=10)


async def test_indexes_follow_changes() -> None:
    async with api_server(bookmark_interval=60) as (_server, client):
        informer: Informer[Pod] = Informer(client, Pod, resync_period=None)
        informer.store.add_index("node", lambda pod: [pod.spec.nodeName or ""])
        async with running(informer):
            for name, node in (("p1", "n1"), ("p2", "n1"), ("p3", "n2")):
                pod = Pod(
                    metadata=ObjectMeta(name=name, namespace="default"),
                    spec=PodSpec(containers=[Container(name="c", image="nginx")], nodeName=node),
                )
                await client.create(pod)
            await support.wait_until(lambda: len(informer.store) == 3, timeout=10)
            assert [key_of(p) for p in informer.store.by_index("node", "n1")] == [
                "default/p1",
                "default/p2",
            ]
            await client.delete(Pod, "p1", namespace="default", grace_period=0)
            await support.wait_until(
                lambda: (
                    [key_of(p) for p in informer.store.by_index("node", "n1")] == ["default/p2"]
                ),
                timeout=10,
            )


def test_a_failing_handler_does_not_stop_the_others() -> None:
    informer: Informer[Any] = Informer.__new__(Informer)
    informer._handlers = []
    seen: list[str] = []

    def broken(event: Event[Any]) -> None:
        raise RuntimeError("bug")

    informer._handlers.extend([broken, lambda e: seen.append(e.type)])
    informer.resource = ConfigMap
    informer._emit(Event(ADDED, config_map("x")))
    assert seen == [ADDED]


async def test_the_informer_survives_the_api_server_going_away(tmp_path: Path) -> None:
    """A restart of the API server (same state, same port) is a transport error, not a crash."""
    state = tmp_path / "state"
    first = ApiServer(SimConfig(state_dir=state, bookmark_interval=60))
    await first.start()
    port = int(first.url.rsplit(":", 1)[1])
    client = AsyncClient(config=KubeConfig.from_dict(first.kubeconfig()), field_manager="t")
    informer: Informer[ConfigMap] = Informer(client, ConfigMap, resync_period=None, retry_delay=0.1)
    events: list[tuple[str, str]] = []
    informer.add_handler(recorder(events))
    second: ApiServer | None = None
    try:
        async with running(informer) as task:
            await first.stop()
            await support.wait_until(lambda: informer.watch_failures >= 1, timeout=10)
            assert not task.done()
            second = ApiServer(SimConfig(state_dir=state, bookmark_interval=60))
            await second.start(port=port)
            await client.create(config_map("after-restart"))
            await support.wait_until(lambda: (ADDED, "default/after-restart") in events, timeout=15)
    finally:
        await client.close()
        if second is not None:
            await second.stop()
