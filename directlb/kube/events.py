"""Kubernetes Events, recorded the way client-go's recorder does, without ever blocking.

A reconciler calls :meth:`EventRecorder.event` and moves on: the event is queued and written by
a background task. The same event repeated (same object, type, reason, message) within the
correlation window becomes one Event whose ``count`` and ``lastTimestamp`` grow, instead of a
flood of objects. Once an object has had ``aggregate_after`` different messages for one reason
in the window, further ones are folded into a single "(combined from similar events)" Event.
A per-object token bucket stops one broken object from spamming the API server.

What this remembers per object is bounded, as client-go's correlator bounds it (LRU caches of
4096 entries): an entry goes once it can no longer matter (a correlation older than the window,
a token bucket idle long enough to be full again), and the least recently used go beyond
``MAX_ENTRIES`` per map. The gate controller records Events on pods, so without that the maps
would grow with every pod ever created.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from lightkube import AsyncClient
from lightkube.models.core_v1 import EventSource, ObjectReference
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Event

from directlb.kube.transport import TRANSIENT

log = logging.getLogger("directlb.kube.events")
_K = TypeVar("_K")
_V = TypeVar("_V")

NORMAL = "Normal"
WARNING = "Warning"
CORRELATION_WINDOW = 600.0  # seconds, as client-go's EventCorrelator
AGGREGATE_AFTER = 10  # distinct messages for one (object, reason) before they are combined
SPAM_BURST = 25
SPAM_REFILL_SECONDS = 300.0
QUEUE_SIZE = 1000
#: Entries per map at most (client-go's ``maxLruCacheEntries``); the least recently used go.
MAX_ENTRIES = 4096
#: Seconds after which an unused token bucket has refilled to a full burst, so it can go.
BUCKET_IDLE = SPAM_BURST * SPAM_REFILL_SECONDS


@dataclass
class _Seen:
    name: str
    namespace: str
    count: int
    last: float


@dataclass
class _Similar:
    messages: set[str] = field(default_factory=set)
    first: float = 0.0
    last: float = 0.0  # last used


@dataclass
class _Bucket:
    tokens: float
    last: float


@dataclass(frozen=True)
class _Pending:
    ref: ObjectReference
    type: str
    reason: str
    message: str


def reference(obj: Any) -> ObjectReference:
    """The ObjectReference of a lightkube object (kind and apiVersion from its class)."""
    meta = obj.metadata
    kind = getattr(obj, "kind", None) or type(obj).__name__
    api_version = getattr(obj, "apiVersion", None)
    if not api_version:
        info = obj._api_info.resource
        api_version = f"{info.group}/{info.version}" if info.group else info.version
    return ObjectReference(
        kind=kind,
        apiVersion=api_version,
        namespace=meta.namespace,
        name=meta.name,
        uid=meta.uid,
        resourceVersion=meta.resourceVersion,
    )


class EventRecorder:
    def __init__(
        self,
        client: AsyncClient,
        *,
        component: str = "directlb",
        instance: str = "",
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.client = client
        self.component = component
        self.instance = instance
        self._clock = clock
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(maxsize=QUEUE_SIZE)
        # In least recently used order (an entry moves to the end when used), so that what
        # has expired or is over MAX_ENTRIES is at the front.
        self._seen: OrderedDict[tuple[str, ...], _Seen] = OrderedDict()
        self._similar: OrderedDict[tuple[str, ...], _Similar] = OrderedDict()
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self.dropped = 0

    def _now(self) -> float:
        return self._clock() if self._clock else asyncio.get_running_loop().time()

    def event(self, obj: Any, *, type: str, reason: str, message: str) -> None:
        """Queue an event about ``obj``; never blocks, never raises."""
        try:
            self._queue.put_nowait(_Pending(reference(obj), type, reason, message))
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning("event=event_dropped reason=%s queue_full=true", reason)
        except Exception:  # a malformed object must not break the caller
            log.exception("event=event_reference_failed reason=%s", reason)

    async def run(self) -> None:
        while True:
            pending = await self._queue.get()
            await self._write(pending)

    async def flush(self) -> None:
        """Write everything queued so far (tests, and shutdown)."""
        while not self._queue.empty():
            await self._write(self._queue.get_nowait())

    def _allowed(self, ref: ObjectReference, now: float) -> bool:
        key = f"{ref.kind}/{ref.namespace}/{ref.name}/{ref.uid}"
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(tokens=SPAM_BURST, last=now)
        self._buckets.move_to_end(key)
        bucket.tokens = min(SPAM_BURST, bucket.tokens + (now - bucket.last) / SPAM_REFILL_SECONDS)
        bucket.last = now
        if bucket.tokens < 1:
            return False
        bucket.tokens -= 1
        return True

    def _correlate(self, pending: _Pending, now: float) -> tuple[str, tuple[str, ...]]:
        """The message to record and the dedupe key, after aggregation of similar events."""
        ref = pending.ref
        obj_key = (ref.kind or "", ref.namespace or "", ref.name or "", ref.uid or "")
        similar_key = (*obj_key, pending.type, pending.reason)
        similar = self._similar.get(similar_key)
        if similar is None or now - similar.first > CORRELATION_WINDOW:
            similar = self._similar[similar_key] = _Similar(first=now)
        similar.last = now
        self._similar.move_to_end(similar_key)
        similar.messages.add(pending.message)
        message = pending.message
        if len(similar.messages) > AGGREGATE_AFTER:
            message = f"(combined from similar events): {pending.message}"
            return message, (*similar_key, "combined")
        return message, (*similar_key, pending.message)

    def _prune(self, now: float) -> None:
        """Forget what can no longer matter, and the least recently used beyond MAX_ENTRIES."""
        _prune(self._seen, lambda seen: now - seen.last > CORRELATION_WINDOW)
        _prune(self._similar, lambda similar: now - similar.last > CORRELATION_WINDOW)
        _prune(self._buckets, lambda bucket: now - bucket.last >= BUCKET_IDLE)

    async def _write(self, pending: _Pending) -> None:
        now = self._now()
        self._prune(now)
        if not self._allowed(pending.ref, now):
            self.dropped += 1
            return
        message, key = self._correlate(pending, now)
        seen = self._seen.get(key)
        try:
            if seen is not None and now - seen.last <= CORRELATION_WINDOW:
                await self._bump(seen, message)
                seen.count += 1
                seen.last = now
                # Set again: a write running meanwhile (flush) may have pruned it.
                self._seen[key] = seen
                self._seen.move_to_end(key)
                return
            created = await self._create(pending, message)
            meta = created.metadata
            assert meta is not None and meta.name and meta.namespace
            self._seen[key] = _Seen(
                name=meta.name,
                namespace=meta.namespace,
                count=1,
                last=now,
            )
            self._seen.move_to_end(key)  # a key seen before keeps its place when set again
        except TRANSIENT as error:
            # Events are best effort: a lost one must never fail a reconcile.
            log.warning("event=event_write_failed reason=%s error=%s", pending.reason, error)
            self._seen.pop(key, None)

    async def _create(self, pending: _Pending, message: str) -> Event:
        stamp = datetime.now(UTC)
        ref = pending.ref
        event = Event(
            metadata=ObjectMeta(
                name=f"{ref.name}.{secrets.token_hex(8)}",
                namespace=ref.namespace or "default",
            ),
            involvedObject=ref,
            reason=pending.reason,
            message=message,
            type=pending.type,
            source=EventSource(component=self.component),
            reportingComponent=self.component,
            reportingInstance=self.instance or self.component,
            firstTimestamp=stamp,
            lastTimestamp=stamp,
            count=1,
        )
        return await self.client.create(event)

    async def _bump(self, seen: _Seen, message: str) -> None:
        patch = {
            "count": seen.count + 1,
            "lastTimestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "message": message,
        }
        await self.client.patch(Event, seen.name, patch, namespace=seen.namespace)

    async def close(self) -> None:
        with contextlib.suppress(*TRANSIENT):
            await self.flush()


def _prune(items: OrderedDict[_K, _V], expired: Callable[[_V], bool]) -> None:
    """Drop the oldest entries of ``items`` (least recently used first) while they have
    ``expired`` or leave no room for one more under MAX_ENTRIES. Amortised O(1): it stops at
    the first entry it keeps, every later one having been used since."""
    while items:
        key, value = next(iter(items.items()))
        if len(items) < MAX_ENTRIES and not expired(value):
            return
        del items[key]
