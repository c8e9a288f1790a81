"""What the node, scheduler and kubelet controllers share: a keyed work loop woken by store
events (the ``directlb.sim.gc`` pattern), conditions, Events and the resource infos.

A ``KeyedLoop`` keeps a set of dirty keys; store listeners ``mark`` keys (synchronously, in the
writer's call stack) and one task drains the set, calling ``sync(key)`` for each. Marks made
while a key is being synced are kept for the next round, so nothing is lost and a burst of
events for one object costs one sync. Nothing polls the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import Any

from directlb.sim import meta
from directlb.sim.api import Api, WriteOptions
from directlb.sim.contracts import Obj, StatusError
from directlb.sim.registry import ResourceInfo
from directlb.sim.storage import ObjKey, StoreKey

log = logging.getLogger("directlb.sim.cluster")

PODS: StoreKey = ("", "pods")
NODES: StoreKey = ("", "nodes")
RETRY_SECONDS = 0.2

# Our own annotation: a node carrying it (value "true") is reported NotReady by its kubelet.
NOT_READY_ANNOTATION = "sim.directlb.io/not-ready"
ZONE_LABEL = "topology.kubernetes.io/zone"
REGION_LABEL = "topology.kubernetes.io/region"
HOSTNAME_LABEL = "kubernetes.io/hostname"
INSTANCE_LABEL = "cloud.tencent.com/node-instance-id"
TAINT_UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
TAINT_NOT_READY = "node.kubernetes.io/not-ready"


def resource(api: Api, group: str, version: str, name: str) -> ResourceInfo:
    info = api.registry.get(group, version, name)
    if info is None:  # pragma: no cover - built-in resources are always registered
        raise RuntimeError(f"{group}/{version} {name} is not served")
    return info


async def yield_to_loop() -> None:
    """Let the event loop run between two syncs. A write through ``Api`` completes without
    suspending, so a loop draining hundreds of keys would otherwise hold the event loop for
    seconds: HTTP clients and pod servers (a load balancer probing thousands of them) wait,
    and connections accepted meanwhile pile up."""
    await asyncio.sleep(0)


class KeyedLoop:
    """One task syncing dirty keys; subclasses implement ``sync`` (True: try again later)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._dirty: set[ObjKey] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._timers: set[asyncio.TimerHandle] = set()

    def mark(self, key: ObjKey) -> None:
        self._dirty.add(key)
        self._wake.set()

    def mark_later(self, delay: float, key: ObjKey) -> None:
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle

        def fire() -> None:
            self._timers.discard(handle)
            self.mark(key)

        handle = loop.call_later(delay, fire)
        self._timers.add(handle)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"sim-{self.name}")

    async def stop(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def sync(self, key: ObjKey) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            keys, self._dirty = self._dirty, set()
            for key in sorted(keys):
                try:
                    retry = await self.sync(key)
                except Exception:  # one bad object must not stop the others
                    log.exception("event=%s_error key=%s/%s", self.name, *key)
                    retry = True
                if retry:
                    self.mark_later(RETRY_SECONDS, key)
                await yield_to_loop()


def set_condition(
    conditions: list[Obj],
    *,
    type_: str,
    status: str,
    reason: str | None = None,
    message: str | None = None,
    now: str,
    heartbeat: bool = False,
) -> None:
    """Set one condition in place; ``lastTransitionTime`` moves only when the status flips.

    Pod conditions carry ``lastProbeTime: null``; node conditions (``heartbeat``) carry
    ``lastHeartbeatTime``, refreshed when the condition is written.
    """
    for existing in conditions:
        if existing.get("type") == type_:
            before = (existing.get("status"), existing.get("reason"), existing.get("message"))
            if existing.get("status") != status:
                existing["lastTransitionTime"] = now
            existing["status"] = status
            _reason(existing, reason, message)
            if heartbeat and before != (status, reason or None, message or None):
                existing["lastHeartbeatTime"] = now
            return
    condition: Obj = {"type": type_, "status": status}
    if heartbeat:
        condition["lastHeartbeatTime"] = now
    else:
        condition["lastProbeTime"] = None
    condition["lastTransitionTime"] = now
    _reason(condition, reason, message)
    conditions.append(condition)


def _reason(condition: Obj, reason: str | None, message: str | None) -> None:
    for key, value in (("reason", reason), ("message", message)):
        if value:
            condition[key] = value
        else:
            condition.pop(key, None)


def find_condition(obj: Obj, type_: str) -> Obj | None:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(condition, dict) and condition.get("type") == type_:
            return condition
    return None


def node_ready(node: Obj) -> bool:
    condition = find_condition(node, "Ready")
    return condition is not None and condition.get("status") == "True"


async def record_event(
    api: Api,
    *,
    involved: Obj,
    reason: str,
    message: str,
    component: str,
    host: str | None = None,
    warning: bool = False,
) -> None:
    """Write a core/v1 Event about ``involved`` as the real components do; never raises."""
    m = involved["metadata"]
    namespace = str(m.get("namespace") or "default")
    now = meta.timestamp()
    source: dict[str, Any] = {"component": component}
    if host:
        source["host"] = host
    event: Obj = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{m['name']}.{secrets.token_hex(8)}", "namespace": namespace},
        "involvedObject": {
            "apiVersion": involved.get("apiVersion", "v1"),
            "kind": involved.get("kind", ""),
            "name": m["name"],
            "uid": m.get("uid", ""),
            "resourceVersion": m.get("resourceVersion", ""),
        },
        "reason": reason,
        "message": message,
        "source": source,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
        "type": "Warning" if warning else "Normal",
        "reportingComponent": component,
        "reportingInstance": host or "",
    }
    if m.get("namespace"):
        event["involvedObject"]["namespace"] = m["namespace"]
    try:
        await api.create(
            resource(api, "", "v1", "events"),
            namespace=namespace,
            body=event,
            opts=WriteOptions(user=f"system:{component}", field_validation="Ignore"),
        )
    except StatusError as error:
        log.debug("event=event_dropped reason=%s code=%s", reason, error.code)
