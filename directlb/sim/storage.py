"""The object store: current objects, one global resourceVersion, watch history and fan-out.

Objects are kept as plain dicts that are never mutated once stored, next to their JSON
encoding, so a list of 5,000 pods is a join of cached bytes and a watch event is encoded once
for every watcher. Each resource keeps a bounded history of events, as the real server's
watch cache does: a watch (or a paginated list) from a resourceVersion older than that history
is answered 410 Gone with reason Expired, and the client relists.

The store knows nothing about HTTP, admission or validation; it is synchronous, so that on one
event loop a write and the fan-out of its event to every watcher happen atomically.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from directlb.sim.contracts import Obj, StatusError

StoreKey = tuple[str, str]  # (group, resource) of the storage
ObjKey = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped objects

ADDED, MODIFIED, DELETED, BOOKMARK, ERROR = "ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"
DEFAULT_HISTORY = 5000
WATCH_QUEUE_LIMIT = 100_000


def encode(obj: Obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Stored:
    """A stored object and its JSON; ``obj`` is shared and must never be mutated."""

    obj: Obj
    raw: bytes

    @property
    def rv(self) -> int:
        return int(self.obj["metadata"]["resourceVersion"])

    def copy(self) -> Obj:
        """A private, mutable copy (decoding the cached JSON is faster than deepcopy)."""
        result: Obj = json.loads(self.raw)
        return result


@dataclass(frozen=True)
class Event:
    type: str
    rv: int
    key: ObjKey
    new: Stored
    old: Stored | None  # the state before a MODIFIED or DELETED


def expired(message: str) -> StatusError:
    return StatusError(410, "Expired", message)


class Watcher:
    """One watch stream's queue; the store pushes matching events, the HTTP side drains."""

    def __init__(
        self,
        *,
        namespace: str | None,
        matches: Callable[[Obj], bool],
        limit: int = WATCH_QUEUE_LIMIT,
    ) -> None:
        self.namespace = namespace
        self.matches = matches
        self.queue: asyncio.Queue[tuple[str, Stored] | None] = asyncio.Queue()
        self.limit = limit
        self.closed = False
        self.last_rv = 0

    def offer(self, event: Event) -> None:
        """Translate a store event into what this watcher sees (selectors move objects in/out)."""
        if self.closed or (self.namespace is not None and event.key[0] != self.namespace):
            return
        new_match = event.type != DELETED and self.matches(event.new.obj)
        old_match = event.old is not None and self.matches(event.old.obj)
        if event.type == DELETED:
            if old_match:
                self.push(DELETED, event.new)
        elif new_match:
            self.push(MODIFIED if old_match else ADDED, event.new)
        elif old_match:
            # The real watch cache reports an object that left the selection as DELETED, with
            # its previous content at the new resourceVersion.
            assert event.old is not None
            self.push(DELETED, _with_rv(event.old, event.rv))

    def push(self, kind: str, stored: Stored) -> None:
        if self.queue.qsize() >= self.limit:
            # A watcher that cannot keep up is closed, as the real server does; its client
            # resumes from the last resourceVersion it saw.
            self.close()
            return
        self.queue.put_nowait((kind, stored))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.queue.put_nowait(None)


def _with_rv(stored: Stored, rv: int) -> Stored:
    obj = stored.copy()
    obj["metadata"]["resourceVersion"] = str(rv)
    return Stored(obj, encode(obj))


@dataclass
class ResourceTable:
    """The objects of one storage resource, their namespace index and their event history."""

    history_size: int
    objects: dict[ObjKey, Stored] = field(default_factory=dict)
    by_namespace: dict[str, dict[str, Stored]] = field(default_factory=dict)
    history: deque[Event] = field(default_factory=deque)
    floor: int = 0  # every event with rv > floor is still in history
    watchers: set[Watcher] = field(default_factory=set)

    def set(self, key: ObjKey, stored: Stored) -> None:
        self.objects[key] = stored
        self.by_namespace.setdefault(key[0], {})[key[1]] = stored

    def drop(self, key: ObjKey) -> None:
        del self.objects[key]
        names = self.by_namespace.get(key[0])
        if names is not None:
            names.pop(key[1], None)
            if not names:
                del self.by_namespace[key[0]]

    def record(self, event: Event) -> None:
        self.history.append(event)
        while len(self.history) > self.history_size:
            self.floor = self.history.popleft().rv
        for watcher in list(self.watchers):
            watcher.offer(event)
            if watcher.closed:
                self.watchers.discard(watcher)

    def items(self, namespace: str | None) -> Iterable[tuple[ObjKey, Stored]]:
        if namespace is None:
            return self.objects.items()
        return (((namespace, n), s) for n, s in self.by_namespace.get(namespace, {}).items())


Listener = Callable[[StoreKey, Event], None]


class Store:
    """All objects of the simulated cluster, with one resourceVersion counter for all of them."""

    def __init__(self, *, history_size: int = DEFAULT_HISTORY) -> None:
        self.rv = 0
        self.history_size = history_size
        self.tables: dict[StoreKey, ResourceTable] = {}
        self.uids: dict[str, tuple[StoreKey, ObjKey]] = {}
        self.dependents: dict[str, set[tuple[StoreKey, ObjKey]]] = {}
        self.listeners: list[Listener] = []

    # ----- reads ---------------------------------------------------------------------------

    def table(self, store_key: StoreKey) -> ResourceTable:
        table = self.tables.get(store_key)
        if table is None:
            table = self.tables[store_key] = ResourceTable(self.history_size)
            # A new table cannot replay events from before it existed.
            table.floor = self.rv
        return table

    def get(self, store_key: StoreKey, key: ObjKey) -> Stored | None:
        table = self.tables.get(store_key)
        return table.objects.get(key) if table else None

    def by_uid(self, uid: str) -> Stored | None:
        where = self.uids.get(uid)
        return self.get(*where) if where else None

    def items(self, store_key: StoreKey, namespace: str | None) -> list[tuple[ObjKey, Stored]]:
        table = self.tables.get(store_key)
        return list(table.items(namespace)) if table else []

    def snapshot(
        self, store_key: StoreKey, *, rv: int, namespace: str | None
    ) -> dict[ObjKey, Stored]:
        """The objects as they were at ``rv``, undoing later events from the history."""
        table = self.table(store_key)
        current = dict(table.items(namespace))
        if not table.history or table.history[-1].rv <= rv:
            return current
        if rv < table.floor:
            raise expired(f"too old resource version: {rv} ({table.floor + 1})")
        for event in reversed(table.history):
            if event.rv <= rv:
                break
            if namespace is not None and event.key[0] != namespace:
                continue
            if event.type == ADDED:
                current.pop(event.key, None)
            elif event.old is not None:
                current[event.key] = event.old
        return current

    def events_since(self, store_key: StoreKey, rv: int) -> list[Event]:
        table = self.table(store_key)
        if rv < table.floor:
            raise expired(f"too old resource version: {rv} ({table.floor + 1})")
        return [e for e in table.history if e.rv > rv]

    # ----- writes --------------------------------------------------------------------------

    def next_rv(self) -> int:
        self.rv += 1
        return self.rv

    def put(self, store_key: StoreKey, obj: Obj) -> Event:
        """Store ``obj`` (taken over by the store) at a new resourceVersion; emit its event."""
        meta = obj["metadata"]
        key = (str(meta.get("namespace") or ""), str(meta["name"]))
        table = self.table(store_key)
        old = table.objects.get(key)
        rv = self.next_rv()
        meta["resourceVersion"] = str(rv)
        stored = Stored(obj, encode(obj))
        table.set(key, stored)
        self._index(store_key, key, old=old, new=stored)
        event = Event(MODIFIED if old else ADDED, rv, key, stored, old)
        self._emit(store_key, table, event)
        return event

    def remove(self, store_key: StoreKey, key: ObjKey, *, final: Obj | None = None) -> Event:
        """Delete an object; ``final`` is its last state if that differs from what is stored
        (an update that removed the last finalizer deletes the object in the same step)."""
        table = self.table(store_key)
        old = table.objects[key]
        rv = self.next_rv()
        table.drop(key)
        self._index(store_key, key, old=old, new=None)
        if final is not None:
            final["metadata"]["resourceVersion"] = str(rv)
            gone = Stored(final, encode(final))
        else:
            gone = _with_rv(old, rv)
        event = Event(DELETED, rv, key, gone, old)
        self._emit(store_key, table, event)
        return event

    def load(self, store_key: StoreKey, obj: Obj) -> None:
        """Restore an object from persistence: no event, its resourceVersion kept."""
        meta = obj["metadata"]
        key = (str(meta.get("namespace") or ""), str(meta["name"]))
        stored = Stored(obj, encode(obj))
        table = self.table(store_key)
        table.set(key, stored)
        self._index(store_key, key, old=None, new=stored)
        self.rv = max(self.rv, stored.rv)
        table.floor = self.rv

    def drop_table(self, store_key: StoreKey) -> None:
        table = self.tables.pop(store_key, None)
        if table is not None:
            for watcher in list(table.watchers):
                watcher.close()

    def _emit(self, store_key: StoreKey, table: ResourceTable, event: Event) -> None:
        table.record(event)
        for listener in self.listeners:
            listener(store_key, event)

    def _index(
        self, store_key: StoreKey, key: ObjKey, *, old: Stored | None, new: Stored | None
    ) -> None:
        if old is not None:
            self.uids.pop(str(old.obj["metadata"].get("uid", "")), None)
            for owner in _owner_uids(old.obj):
                self.dependents.get(owner, set()).discard((store_key, key))
        if new is not None:
            self.uids[str(new.obj["metadata"].get("uid", ""))] = (store_key, key)
            for owner in _owner_uids(new.obj):
                self.dependents.setdefault(owner, set()).add((store_key, key))

    # ----- watches -------------------------------------------------------------------------

    def watch(
        self,
        store_key: StoreKey,
        *,
        namespace: str | None,
        matches: Callable[[Obj], bool],
        since: int | None,
    ) -> Watcher:
        """Register a watcher; ``since`` None starts with ADDED events for current objects."""
        table = self.table(store_key)
        watcher = Watcher(namespace=namespace, matches=matches)
        if since is None:
            for _, stored in sorted(table.items(namespace), key=lambda kv: kv[0]):
                if matches(stored.obj):
                    watcher.push(ADDED, stored)
        else:
            for event in self.events_since(store_key, since):
                watcher.offer(event)
        table.watchers.add(watcher)
        return watcher

    def unwatch(self, store_key: StoreKey, watcher: Watcher) -> None:
        table = self.tables.get(store_key)
        if table is not None:
            table.watchers.discard(watcher)


def _owner_uids(obj: Obj) -> list[str]:
    refs: list[Any] = obj["metadata"].get("ownerReferences") or []
    return [str(r.get("uid")) for r in refs if isinstance(r, dict) and r.get("uid")]
