"""Informers: a list+watch cache of one kind, with indexes and event handlers.

An informer lists the kind once, then watches from the list's resourceVersion with bookmarks
(so the resourceVersion it resumes from stays fresh on a quiet kind) and a server-side timeout
(so a connection silently lost is noticed). It keeps an indexed :class:`Store` and tells its
handlers about every change. The situations that make informers wrong in practice:

* **410 Gone** (the resourceVersion fell out of the server's history): relist, and diff the new
  list against the store, so an object deleted during the gap still produces a DELETED event.
* **A stalled watch** (no event, not even a bookmark, for ``stall_timeout``): restart it.
* **A missed event**: every ``resync_period`` every cached object is handed to the handlers
  again (as MODIFIED with old == new), so level-triggered reconcilers converge anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncGenerator, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from lightkube import ApiError, AsyncClient
from lightkube.core.generic_client import WatchDriver
from lightkube.core.resource import NamespacedResource
from lightkube.models.meta_v1 import ObjectMeta

from directlb.kube.transport import TRANSIENT

log = logging.getLogger("directlb.kube.informer")

R = TypeVar("R", bound=Any)

ADDED = "ADDED"
MODIFIED = "MODIFIED"
DELETED = "DELETED"


def key_of(obj: Any) -> str:
    """``namespace/name``, or ``name`` for cluster-scoped objects (client-go's MetaNamespaceKey)."""
    meta = obj.metadata
    return f"{meta.namespace}/{meta.name}" if meta.namespace else str(meta.name)


@dataclass(frozen=True)
class Event(Generic[R]):
    type: str  # ADDED | MODIFIED | DELETED
    obj: R  # the new object (for DELETED: the last state known)
    old: R | None = None


Indexer = Callable[[Any], Iterable[str]]


class Store(Generic[R]):
    """The cache: objects by key, plus secondary indexes (value -> keys)."""

    def __init__(self) -> None:
        self._objects: dict[str, R] = {}
        self._indexers: dict[str, Indexer] = {}
        self._indexes: dict[str, dict[str, set[str]]] = {}
        self._indexed: dict[str, dict[str, tuple[str, ...]]] = {}  # index -> key -> values

    def add_index(self, name: str, indexer: Indexer) -> None:
        self._indexers[name] = indexer
        self._indexes[name] = {}
        self._indexed[name] = {}
        for key, obj in self._objects.items():
            self._index_one(name, key, obj)

    def get(self, key: str) -> R | None:
        return self._objects.get(key)

    def items(self) -> list[R]:
        """A snapshot of every cached object."""
        return [*self._objects.values()]

    def keys(self) -> list[str]:
        return [*self._objects]

    def __len__(self) -> int:
        return len(self._objects)

    def by_index(self, name: str, value: str) -> list[R]:
        keys = self._indexes[name].get(value, set())
        return [self._objects[k] for k in sorted(keys)]

    def put(self, obj: R) -> R | None:
        key = key_of(obj)
        old = self._objects.get(key)
        self._objects[key] = obj
        for name in self._indexers:
            self._unindex_one(name, key)
            self._index_one(name, key, obj)
        return old

    def remove(self, key: str) -> R | None:
        old = self._objects.pop(key, None)
        for name in self._indexers:
            self._unindex_one(name, key)
        return old

    def _index_one(self, name: str, key: str, obj: R) -> None:
        values = tuple(dict.fromkeys(self._indexers[name](obj)))
        self._indexed[name][key] = values
        for value in values:
            self._indexes[name].setdefault(value, set()).add(key)

    def _unindex_one(self, name: str, key: str) -> None:
        for value in self._indexed[name].pop(key, ()):
            keys = self._indexes[name].get(value)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._indexes[name][value]


Handler = Callable[[Event[Any]], None]


def _version(obj: Any) -> str | None:
    return obj.metadata.resourceVersion if obj.metadata else None


class Informer(Generic[R]):
    def __init__(
        self,
        client: AsyncClient,
        resource: type[R],
        *,
        namespace: str | None = None,
        resync_period: float | None = 300.0,
        server_timeout: int = 290,
        stall_timeout: float | None = None,
        retry_delay: float = 1.0,
    ) -> None:
        self.client = client
        self.resource = resource
        self.namespace = namespace
        self.resync_period = resync_period
        self.server_timeout = server_timeout
        # Bookmarks arrive about once a minute on the real server; a watch that says nothing,
        # not even a bookmark, for longer than its own timeout plus a margin is dead.
        self.stall_timeout = stall_timeout or server_timeout + 30.0
        self.retry_delay = retry_delay
        self.store: Store[R] = Store()
        self.synced = asyncio.Event()
        self.relists = 0
        self.watch_restarts = 0
        self.watch_failures = 0
        self._handlers: list[Handler] = []
        self._version: str | None = None

    @property
    def kind(self) -> str:
        return getattr(self.resource, "__name__", str(self.resource))

    def add_handler(self, handler: Handler) -> None:
        self._handlers.append(handler)

    def _emit(self, event: Event[R]) -> None:
        for handler in self._handlers:
            try:
                handler(event)
            except Exception:  # one broken handler must not stop the cache
                log.exception("event=handler_failed kind=%s", self.kind)

    async def run(self) -> None:
        """List, then watch forever (relisting when needed); resync on a timer."""
        resync = asyncio.create_task(self._resync_loop(), name=f"resync-{self.kind}")
        try:
            while True:
                try:
                    await self._list()
                    await self._watch()
                except asyncio.CancelledError:
                    raise
                except ApiError as error:
                    if error.status.code != 410:
                        self.watch_failures += 1
                        log.warning("event=watch_failed kind=%s error=%s", self.kind, error)
                        await asyncio.sleep(self.retry_delay)
                except TRANSIENT as error:
                    self.watch_failures += 1
                    log.warning("event=watch_failed kind=%s error=%r", self.kind, error)
                    await asyncio.sleep(self.retry_delay)
                except Exception:
                    # Anything else (an undecodable event, say) must not freeze the cache for
                    # good: log it, then list again.
                    self.watch_failures += 1
                    log.exception("event=watch_failed kind=%s", self.kind)
                    await asyncio.sleep(self.retry_delay)
        finally:
            resync.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await resync

    async def _list(self) -> None:
        """List everything and reconcile the store with it (the diff makes missed deletes)."""
        kwargs: dict[str, Any] = {}
        if self.namespace is not None:
            kwargs["namespace"] = self.namespace
        elif _namespaced(self.resource):
            kwargs["namespace"] = "*"
        listing = self.client.list(self.resource, **kwargs)
        fresh: dict[str, R] = {}
        async for obj in listing:
            fresh[key_of(obj)] = obj
        self._version = listing.resourceVersion if fresh or _has_version(listing) else None
        if self.synced.is_set():
            self.relists += 1
        for key in self.store.keys():  # noqa: SIM118 (a snapshot: we remove while looping)
            if key not in fresh:
                old = self.store.remove(key)
                if old is not None:
                    self._emit(Event(DELETED, old))
        for obj in fresh.values():
            old = self.store.put(obj)
            if old is None:
                self._emit(Event(ADDED, obj))
            elif _version(old) != _version(obj):
                self._emit(Event(MODIFIED, obj, old))
        self.synced.set()

    async def _watch(self) -> None:
        """Watch from the listed version until the stream ends, stalls or needs a relist."""
        while True:
            events = self._stream()
            try:
                while True:
                    try:
                        async with asyncio.timeout(self.stall_timeout):
                            kind, obj = await anext(events)
                    except StopAsyncIteration:
                        break
                    except TimeoutError:
                        self.watch_restarts += 1
                        log.warning("event=watch_stalled kind=%s", self.kind)
                        break
                    self._apply(kind, obj)
            finally:
                await events.aclose()

    async def _stream(self) -> AsyncGenerator[tuple[str, Any], None]:
        """One watch request (ends when the server ends it); raises ApiError on ERROR."""
        params: dict[str, Any] = {
            "timeoutSeconds": self.server_timeout,
            "resourceVersion": self._version,
            "allowWatchBookmarks": "true",
        }
        namespace = self.namespace
        if namespace is None and _namespaced(self.resource):
            namespace = "*"
        # lightkube's own watch() reconnects by itself and takes no allowWatchBookmarks; we
        # drive one request at a time with its request builder and decoder instead, so that
        # this loop owns the resourceVersion, the bookmarks and the stall timer.
        generic: Any = self.client._client  # lightkube's generic client is untyped
        request = generic.prepare_request(
            "list", res=self.resource, namespace=namespace, watch=True, params=params
        )
        driver: Any = WatchDriver(request, generic._client.build_request)
        response = await generic.send(
            driver.get_request(timeout=generic._watch_timeout), stream=True
        )
        try:
            if response.status_code != 200:
                await response.aread()
                generic.raise_for_status(response)
            async for line in response.aiter_lines():
                if line.strip():
                    yield decode_event(driver, line)
        finally:
            await response.aclose()

    def _apply(self, kind: str, obj: Any) -> None:
        version = _version(obj)
        if version:
            self._version = version
        if kind == "BOOKMARK":
            return
        if kind == DELETED:
            old = self.store.remove(key_of(obj))
            self._emit(Event(DELETED, obj, old))
            return
        old = self.store.put(obj)
        self._emit(Event(ADDED if old is None else MODIFIED, obj, old))

    def resync(self) -> None:
        """Hand every cached object to the handlers again (MODIFIED, old is new): what the
        timer does every ``resync_period``; a benchmark may force one. No-op before sync."""
        if not self.synced.is_set():
            return
        for obj in self.store.items():
            self._emit(Event(MODIFIED, obj, obj))

    async def _resync_loop(self) -> None:
        if not self.resync_period:
            return
        while True:
            await asyncio.sleep(self.resync_period)
            self.resync()


@dataclass(frozen=True)
class Bookmark:
    """What a BOOKMARK event carries: only ``metadata.resourceVersion``."""

    metadata: ObjectMeta


def decode_event(driver: Any, line: str) -> tuple[str, Any]:
    """One line of a watch: (type, object). A BOOKMARK is not decoded as the kind: it holds
    only metadata, and the kinds with required fields (EndpointSlice's ``addressType``) fail
    lightkube's decoding, which turned every bookmark of the slice watch into an error and a
    full relist. (That was the simulator's bookmark: the real server sends the kind's zero
    value, ``"addressType":""`` included, and the simulator now does too; nothing but the
    resourceVersion is wanted from a bookmark, so it is not decoded as the kind either way.)"""
    if '"BOOKMARK"' in line:
        event = json.loads(line)
        if event.get("type") == "BOOKMARK":
            meta = (event.get("object") or {}).get("metadata") or {}
            return "BOOKMARK", Bookmark(ObjectMeta(resourceVersion=meta.get("resourceVersion")))
    return cast(tuple[str, Any], driver.process_one_line(line))


def _namespaced(resource: Any) -> bool:
    return isinstance(resource, type) and issubclass(resource, NamespacedResource)


def _has_version(listing: Any) -> bool:
    try:
        return bool(listing.resourceVersion)
    except Exception:
        return False
