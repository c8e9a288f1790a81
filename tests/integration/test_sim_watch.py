"""Watches on the simulator's API server: resume, 410 relist, bookmarks, timeouts, selectors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from lightkube import ApiError, AsyncClient
from lightkube.codecs import from_dict
from lightkube.core.generic_client import BasicRequest, WatchDriver
from lightkube.resources.core_v1 import ConfigMap, Pod
from lightkube.resources.discovery_v1 import EndpointSlice

from tests.sim_support import pod

pytestmark = pytest.mark.asyncio


def configmap(name: str, **labels: str) -> Any:
    return from_dict(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}}
    )


async def take(stream: AsyncIterator[Any], count: int, *, timeout: float = 10.0) -> list[Any]:
    async def collect() -> list[Any]:
        items = []
        async for item in stream:
            items.append(item)
            if len(items) == count:
                break
        return items

    return await asyncio.wait_for(collect(), timeout)


async def test_watch_from_a_resource_version_sees_only_later_events(kube: AsyncClient) -> None:
    await kube.create(configmap("before"), namespace="default")
    listing = kube.list(ConfigMap, namespace="default")
    assert [c.metadata.name async for c in listing] == ["before"]  # type: ignore[union-attr]
    rv = listing.resourceVersion
    await kube.create(configmap("after"), namespace="default")
    await kube.delete(ConfigMap, "before", namespace="default")
    events = await take(kube.watch(ConfigMap, namespace="default", resource_version=rv), 2)
    assert [(kind, obj.metadata.name) for kind, obj in events] == [
        ("ADDED", "after"),
        ("DELETED", "before"),
    ]


async def test_watch_without_resource_version_starts_with_current_objects(
    kube: AsyncClient,
) -> None:
    await kube.create(configmap("a"), namespace="default")
    stream = kube.watch(ConfigMap, namespace="default")
    first = await take(stream, 1)
    assert first[0][0] == "ADDED" and first[0][1].metadata.name == "a"


async def test_watch_resumes_from_the_last_seen_version(kube: AsyncClient) -> None:
    await kube.create(configmap("a"), namespace="default")
    events = await take(kube.watch(ConfigMap, namespace="default"), 1)
    last = events[0][1].metadata.resourceVersion
    # The watch is gone (the client disconnected); changes happen meanwhile.
    await kube.patch(ConfigMap, "a", {"data": {"x": "1"}}, namespace="default")
    await kube.create(configmap("b"), namespace="default")
    resumed = await take(kube.watch(ConfigMap, namespace="default", resource_version=last), 2)
    assert [(k, o.metadata.name) for k, o in resumed] == [("MODIFIED", "a"), ("ADDED", "b")]
    versions = [int(o.metadata.resourceVersion) for _, o in resumed]
    assert versions == sorted(versions) and versions[0] > int(last)


async def test_too_old_resource_version_is_410_and_a_relist_recovers(
    kube: AsyncClient, sim_http: httpx.AsyncClient
) -> None:
    await kube.create(configmap("a"), namespace="default")
    listing = kube.list(ConfigMap, namespace="default")
    _ = [c async for c in listing]
    old = listing.resourceVersion
    for i in range(60):  # the fixture keeps 50 events per resource
        await kube.patch(ConfigMap, "a", {"data": {"n": str(i)}}, namespace="default")
    with pytest.raises(ApiError) as gone:
        await take(kube.watch(ConfigMap, namespace="default", resource_version=old), 1)
    assert gone.value.status.code == 410 and gone.value.status.reason == "Expired"
    # On the wire: a 200 watch whose only event is an ERROR carrying the Status.
    url = "/api/v1/namespaces/default/configmaps"
    answer = await sim_http.get(url, params={"watch": "true", "resourceVersion": old})
    assert answer.status_code == 200
    event = json.loads(answer.text.splitlines()[0])
    assert event["type"] == "ERROR"
    assert event["object"]["kind"] == "Status" and event["object"]["code"] == 410
    assert event["object"]["message"].startswith(f"too old resource version: {old} (")
    # Relist and watch from the new version: later changes arrive.
    relist = kube.list(ConfigMap, namespace="default")
    _ = [c async for c in relist]
    await kube.patch(ConfigMap, "a", {"data": {"n": "last"}}, namespace="default")
    after = await take(
        kube.watch(ConfigMap, namespace="default", resource_version=relist.resourceVersion), 1
    )
    assert after[0][1].data == {"n": "last"}


async def test_bookmarks_and_timeout(kube: AsyncClient, sim_http: httpx.AsyncClient) -> None:
    await kube.create(configmap("a"), namespace="default")
    rv = (await sim_http.get("/api/v1/namespaces/default/configmaps")).json()["metadata"][
        "resourceVersion"
    ]
    params = {
        "watch": "true",
        "resourceVersion": rv,
        "allowWatchBookmarks": "true",
        "timeoutSeconds": "1",
    }
    lines = []
    async with asyncio.timeout(10):
        async with sim_http.stream(
            "GET", "/api/v1/namespaces/default/configmaps", params=params
        ) as r:
            async for line in r.aiter_lines():  # ends by itself after timeoutSeconds
                if line:
                    lines.append(json.loads(line))
    kinds = {e["type"] for e in lines}
    assert kinds == {"BOOKMARK"}  # the fixture bookmarks every 0.2 s; nothing else changed
    bookmark = lines[0]["object"]
    assert bookmark["kind"] == "ConfigMap" and int(bookmark["metadata"]["resourceVersion"]) >= int(
        rv
    )


async def test_an_endpoint_slice_bookmark_is_what_the_real_server_sends(
    sim_http: httpx.AsyncClient,
) -> None:
    """The real server's bookmark is the kind's zero value, encoded as Go does: an
    EndpointSlice's ``addressType`` (no ``omitempty``) is there, empty. Without it lightkube's
    typed decoding failed (``missing required field addressType``), which turned every slice
    bookmark into a watch failure and a relist in the controller (seen in the leader e2e)."""
    params = {"watch": "true", "allowWatchBookmarks": "true", "timeoutSeconds": "1"}
    rv = (await sim_http.get("/apis/discovery.k8s.io/v1/endpointslices")).json()["metadata"][
        "resourceVersion"
    ]
    lines: list[str] = []
    async with asyncio.timeout(10):
        async with sim_http.stream(
            "GET",
            "/apis/discovery.k8s.io/v1/endpointslices",
            params={**params, "resourceVersion": rv},
        ) as r:
            lines = [line async for line in r.aiter_lines() if line]
    assert lines and {json.loads(line)["type"] for line in lines} == {"BOOKMARK"}
    event = json.loads(lines[0])["object"]
    assert (event["addressType"], event["endpoints"], event["ports"]) == ("", None, None)
    # lightkube's own watch decoding takes it as an EndpointSlice.
    driver = WatchDriver(BasicRequest("GET", "", response_type=EndpointSlice), None)
    kind, obj = driver.process_one_line(lines[0])
    assert kind == "BOOKMARK" and int(obj.metadata.resourceVersion) >= int(rv)


async def test_selector_watch_reports_objects_entering_and_leaving(kube: AsyncClient) -> None:
    await kube.create(configmap("a", app="x"), namespace="default")
    stream = kube.watch(ConfigMap, namespace="default", labels={"app": "x"})
    assert [k for k, _ in await take(stream, 1)] == ["ADDED"]
    current = await kube.get(ConfigMap, "a", namespace="default")
    assert current.metadata is not None
    stream = kube.watch(
        ConfigMap,
        namespace="default",
        labels={"app": "x"},
        resource_version=current.metadata.resourceVersion,
    )
    await kube.patch(ConfigMap, "a", {"metadata": {"labels": {"app": "y"}}}, namespace="default")
    await kube.create(configmap("b", app="y"), namespace="default")
    await kube.patch(ConfigMap, "b", {"metadata": {"labels": {"app": "x"}}}, namespace="default")
    events = await take(stream, 2)
    assert [(k, o.metadata.name) for k, o in events] == [("DELETED", "a"), ("ADDED", "b")]


async def test_namespaced_and_cluster_wide_watches(kube: AsyncClient) -> None:
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}}
    await kube.create(from_dict(ns))
    listing = kube.list(Pod, namespace="*")
    _ = [p async for p in listing]
    start = listing.resourceVersion
    await kube.create(from_dict(pod("p1")), namespace="other")
    await kube.create(from_dict(pod("p2")), namespace="default")
    everywhere = await take(kube.watch(Pod, namespace="*", resource_version=start), 2)
    assert [(o.metadata.namespace, o.metadata.name) for _, o in everywhere] == [
        ("other", "p1"),
        ("default", "p2"),
    ]
    one = await take(kube.watch(Pod, namespace="default", resource_version=start), 1)
    assert one[0][1].metadata.name == "p2"


async def test_watch_of_a_single_object_by_field_selector(kube: AsyncClient) -> None:
    await kube.create(configmap("a"), namespace="default")
    await kube.create(configmap("b"), namespace="default")
    stream = kube.watch(ConfigMap, namespace="default", fields={"metadata.name": "b"})
    first = await take(stream, 1)
    assert first[0][1].metadata.name == "b"


async def test_many_watchers_each_get_every_event(kube: AsyncClient) -> None:
    listing = kube.list(ConfigMap, namespace="default")
    _ = [c async for c in listing]
    start = listing.resourceVersion
    for i in range(40):
        await kube.create(configmap(f"c{i:02d}"), namespace="default")
    streams = [
        take(kube.watch(ConfigMap, namespace="default", resource_version=start), 40)
        for _ in range(5)
    ]
    results = await asyncio.gather(*streams)
    for events in results:
        assert [o.metadata.name for _, o in events] == [f"c{i:02d}" for i in range(40)]
