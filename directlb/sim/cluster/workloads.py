"""The ReplicaSet and Deployment controllers of the simulated cluster.

They follow kube-controller-manager's (``pkg/controller/replicaset``, ``pkg/controller/
deployment``) closely, so that ``kubectl rollout status`` waits as it does on a real cluster
and a rolling update only moves as far as maxSurge/maxUnavailable and pod readiness allow: a
pod held unready by a readiness gate stalls the rollout. The arithmetic lives in
``rollout.py`` (pure); this module reads the store and writes through ``Api``, so pods go
through admission (our webhook adds readiness gates there), woken by store events like
``directlb.sim.gc``, never polling. Timed work (minReadySeconds, progressDeadlineSeconds) is a
timer on the work queue.

Differences from the real controllers, all invisible to clients: the store is read directly
(no informer lag, so no "expectations" are needed) and a key is never synced by two workers at
once, as with client-go's work queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from directlb.sim import meta
from directlb.sim.api import Api, WriteOptions
from directlb.sim.cluster import rollout
from directlb.sim.cluster.config import ClusterConfig
from directlb.sim.cluster.machinery import yield_to_loop
from directlb.sim.cluster.rollout import HASH_LABEL, REVISION, DeploymentFacts, RSView, Strategy
from directlb.sim.contracts import Obj, StatusError
from directlb.sim.registry import ResourceInfo
from directlb.sim.selectors import LabelSelector, selector_from_label_selector
from directlb.sim.storage import DELETED, Event, StoreKey

log = logging.getLogger("directlb.sim.workloads")

RS_USER = WriteOptions(
    user="system:serviceaccount:kube-system:replicaset-controller", field_validation="Ignore"
)
DEPLOYMENT_USER = WriteOptions(
    user="system:serviceaccount:kube-system:deployment-controller", field_validation="Ignore"
)
BURST_REPLICAS = 500  # --replicaset-burst: creations/deletions per sync
WORKERS = 4
MAX_BACKOFF = 5.0

Key = tuple[str, str]  # (namespace, name)


def _info(api: Api, group: str, version: str, resource: str) -> ResourceInfo:
    info = api.registry.get(group, version, resource)
    if info is None:
        raise RuntimeError(f"{group}/{version} {resource} is not served")
    return info


# ----- a work queue --------------------------------------------------------------------------


class RetryLater(Exception):
    """A sync that did part of its work and must be retried with backoff (e.g. pods refused
    by admission), as a real controller returns its error to the work queue."""


class WorkQueue:
    """client-go's work queue semantics on asyncio: a key queued twice is synced once, a key is
    never synced by two workers at once, a key changed while syncing is synced again after;
    failures back off exponentially per key; ``add_after`` arms a timer (earliest wins)."""

    def __init__(
        self,
        name: str,
        handler: Callable[[Key], Awaitable[float | None]],
        *,
        workers: int = WORKERS,
    ) -> None:
        self.name = name
        self.handler = handler
        self.workers = workers
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._queued: set[Key] = set()
        self._processing: set[Key] = set()
        self._dirty: set[Key] = set()
        self._timers: dict[Key, tuple[float, asyncio.TimerHandle]] = {}
        self._failures: dict[Key, int] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def add(self, key: Key) -> None:
        if key in self._processing:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    def add_after(self, key: Key, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        at = loop.time() + delay
        existing = self._timers.get(key)
        if existing is not None:
            if existing[0] <= at:
                return
            existing[1].cancel()
        self._timers[key] = (at, loop.call_at(at, self._fire, key))

    def _fire(self, key: Key) -> None:
        self._timers.pop(key, None)
        self.add(key)

    @property
    def idle(self) -> bool:
        return not self._queued and not self._processing and not self._dirty

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._work(), name=f"sim-{self.name}-{i}")
                for i in range(self.workers)
            ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for _, handle in self._timers.values():
            handle.cancel()
        self._timers.clear()

    async def _work(self) -> None:
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            self._processing.add(key)
            after: float | None
            try:
                after = await self.handler(key)
                self._failures.pop(key, None)
            except asyncio.CancelledError:
                raise
            except RetryLater as retry:
                after = self._backoff(key)
                log.info(
                    "event=sync_retry controller=%s key=%s/%s reason=%s", self.name, *key, retry
                )
            except StatusError as error:
                after = self._backoff(key)
                if error.code not in (404, 409):
                    log.warning(
                        "event=sync_failed controller=%s key=%s/%s code=%s message=%s",
                        self.name,
                        *key,
                        error.code,
                        error.message,
                    )
            except Exception:  # one bad object must not stop the controller
                log.exception("event=sync_error controller=%s key=%s/%s", self.name, *key)
                after = self._backoff(key)
            finally:
                self._processing.discard(key)
            if key in self._dirty:
                self._dirty.discard(key)
                self.add(key)
            elif after is not None:
                self.add_after(key, after)
            await yield_to_loop()

    def _backoff(self, key: Key) -> float:
        failures = self._failures[key] = self._failures.get(key, 0) + 1
        return float(min(0.005 * 2**failures, MAX_BACKOFF))


# ----- object helpers ------------------------------------------------------------------------


def _meta(obj: Obj) -> dict[str, Any]:
    result: dict[str, Any] = obj.get("metadata") or {}
    return result


def _key(obj: Obj) -> Key:
    m = _meta(obj)
    return str(m.get("namespace") or ""), str(m.get("name") or "")


def controller_ref(obj: Obj) -> dict[str, Any] | None:
    for ref in _meta(obj).get("ownerReferences") or []:
        if isinstance(ref, dict) and ref.get("controller"):
            return ref
    return None


def owner_ref(owner: Obj) -> Obj:
    """``metav1.NewControllerRef``."""
    m = _meta(owner)
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": m["name"],
        "uid": m["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _spec(obj: Obj) -> dict[str, Any]:
    result: dict[str, Any] = obj.get("spec") or {}
    return result


def _status(obj: Obj) -> dict[str, Any]:
    result: dict[str, Any] = obj.get("status") or {}
    return result


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _ready_condition(pod: Obj) -> dict[str, Any] | None:
    for condition in _status(pod).get("conditions") or []:
        if isinstance(condition, dict) and condition.get("type") == "Ready":
            return condition
    return None


def pod_ready(pod: Obj) -> bool:
    condition = _ready_condition(pod)
    return condition is not None and condition.get("status") == "True"


def _ready_since(pod: Obj) -> float | None:
    condition = _ready_condition(pod)
    at = rollout.parse_time(condition.get("lastTransitionTime")) if condition else None
    return at.timestamp() if at else None


def available_at(pod: Obj, min_ready_seconds: int) -> float | None:
    """When a Ready pod counts as available (``IsPodAvailable``); None when not Ready."""
    if not pod_ready(pod):
        return None
    if min_ready_seconds == 0:
        return 0.0
    since = _ready_since(pod)
    return None if since is None else since + min_ready_seconds


def pod_active(pod: Obj) -> bool:
    """``IsPodActive``: not terminal, not being deleted."""
    phase = _status(pod).get("phase")
    return phase not in ("Succeeded", "Failed") and not _meta(pod).get("deletionTimestamp")


def _pod_view(pod: Obj, rank: int) -> rollout.PodView:
    m = _meta(pod)
    created = rollout.parse_time(m.get("creationTimestamp"))
    restarts = [
        _int(s.get("restartCount"))
        for s in _status(pod).get("containerStatuses") or []
        if isinstance(s, dict)
    ]
    try:
        cost = int((m.get("annotations") or {}).get(rollout.DELETION_COST, 0))
    except ValueError:
        cost = 0
    return rollout.PodView(
        name=str(m.get("name")),
        uid=str(m.get("uid", "")),
        node=str(_spec(pod).get("nodeName") or ""),
        phase=str(_status(pod).get("phase") or "Pending"),
        ready=pod_ready(pod),
        ready_since=_ready_since(pod),
        created=created.timestamp() if created else 0.0,
        restarts=max(restarts, default=0),
        deletion_cost=cost,
        rank=rank,
    )


class _Recorder:
    """Events as client-go's recorder writes them (core/v1, one per occurrence)."""

    def __init__(self, api: Api, component: str, opts: WriteOptions) -> None:
        self.api = api
        self.info = _info(api, "", "v1", "events")
        self.component = component
        self.opts = opts

    async def event(self, obj: Obj, kind: str, reason: str, message: str) -> None:
        m = _meta(obj)
        now = meta.timestamp()
        body: Obj = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{m['name']}.{time.time_ns():x}",
                "namespace": m.get("namespace") or "default",
            },
            "involvedObject": {
                "kind": obj.get("kind"),
                "namespace": m.get("namespace"),
                "name": m.get("name"),
                "uid": m.get("uid"),
                "apiVersion": obj.get("apiVersion"),
                "resourceVersion": m.get("resourceVersion"),
            },
            "reason": reason,
            "message": message,
            "source": {"component": self.component},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "type": kind,
            "reportingComponent": self.component,
            "reportingInstance": "",
        }
        try:
            await self.api.create(
                self.info, namespace=str(m.get("namespace") or ""), body=body, opts=self.opts
            )
        except StatusError as error:  # an event that cannot be written is dropped, as real
            log.debug("event=event_dropped reason=%s code=%s", reason, error.code)


# ----- the ReplicaSet controller -------------------------------------------------------------


class ReplicaSetController:
    """Keeps ``spec.replicas`` active pods from a ReplicaSet's template and reports them."""

    def __init__(self, *, api: Api, workers: int = WORKERS) -> None:
        self.api = api
        self.rs_info = _info(api, "apps", "v1", "replicasets")
        self.pod_info = _info(api, "", "v1", "pods")
        self.queue = WorkQueue("replicaset", self._sync, workers=workers)
        self.recorder = _Recorder(api, "replicaset-controller", RS_USER)
        self._orphans: dict[str, set[str]] = {}  # pods without a controller, by namespace
        api.store.listeners.append(self._on_event)
        for _, stored in self.api.store.items(self.pod_info.store_key, None):
            self._note_pod(stored.obj, gone=False)
        for key, _ in self.api.store.items(self.rs_info.store_key, None):
            self.queue.add(key)

    def start(self) -> None:
        self.queue.start()

    async def stop(self) -> None:
        await self.queue.stop()

    # ----- events ------------------------------------------------------------------------

    def _on_event(self, store_key: StoreKey, event: Event) -> None:
        if store_key == self.rs_info.store_key:
            self.queue.add(event.key)
        elif store_key == self.pod_info.store_key:
            gone = event.type == DELETED
            for obj in (event.new.obj, event.old.obj if event.old else None):
                if obj is None:
                    continue
                ref = controller_ref(obj)
                if ref is not None and ref.get("kind") == "ReplicaSet":
                    self.queue.add((event.key[0], str(ref.get("name"))))
            self._note_pod(event.new.obj, gone=gone)

    def _note_pod(self, pod: Obj, *, gone: bool) -> None:
        namespace, name = _key(pod)
        orphans = self._orphans.setdefault(namespace, set())
        if gone or controller_ref(pod) is not None or _meta(pod).get("deletionTimestamp"):
            orphans.discard(name)
            return
        orphans.add(name)
        labels = _meta(pod).get("labels") or {}
        for key, stored in self.api.store.items(self.rs_info.store_key, namespace):
            selector = selector_from_label_selector(_spec(stored.obj).get("selector"))
            if not selector.empty and selector.matches(labels):
                self.queue.add(key)

    # ----- sync --------------------------------------------------------------------------

    async def _sync(self, key: Key) -> float | None:
        stored = self.api.store.get(self.rs_info.store_key, key)
        if stored is None:
            return None  # its pods go with the garbage collector
        rs = stored.obj
        deleting = bool(_meta(rs).get("deletionTimestamp"))
        selector = selector_from_label_selector(_spec(rs).get("selector"))
        pods = await self._claim(rs, selector, deleting=deleting)
        active = [p for p in pods if pod_active(p)]
        error: str | None = None
        if not deleting:
            error = await self._manage(rs, active)
        after = await self._update_status(key, active, error)
        if error is not None:
            raise RetryLater(error)
        return after

    def _owned_pods(self, uid: str) -> list[Obj]:
        pods: list[Obj] = []
        for store_key, pod_key in sorted(self.api.store.dependents.get(uid, ())):
            if store_key != self.pod_info.store_key:
                continue
            stored = self.api.store.get(store_key, pod_key)
            if stored is None:
                continue
            ref = controller_ref(stored.obj)
            if ref is not None and ref.get("uid") == uid:
                pods.append(stored.obj)
        return pods

    async def _claim(self, rs: Obj, selector: LabelSelector, *, deleting: bool) -> list[Obj]:
        """``ClaimPods``: owned pods that still match; release those that do not; adopt
        orphans that match (not while the ReplicaSet is being deleted)."""
        uid = str(_meta(rs).get("uid"))
        namespace = _key(rs)[0]
        claimed: list[Obj] = []
        for pod in self._owned_pods(uid):
            if selector.matches(_meta(pod).get("labels")):
                claimed.append(pod)
            elif not _meta(pod).get("deletionTimestamp"):
                await self._set_owner(pod, drop_uid=uid)
        if deleting or selector.empty:
            return claimed
        for name in sorted(self._orphans.get(namespace, set())):
            stored = self.api.store.get(self.pod_info.store_key, (namespace, name))
            if stored is None:
                continue
            pod = stored.obj
            if controller_ref(pod) is not None or _meta(pod).get("deletionTimestamp"):
                continue
            if selector.matches(_meta(pod).get("labels")):
                adopted = await self._set_owner(pod, add=owner_ref(rs))
                if adopted is not None:
                    claimed.append(adopted)
        return claimed

    async def _set_owner(
        self, pod: Obj, *, add: Obj | None = None, drop_uid: str | None = None
    ) -> Obj | None:
        body = meta.clone(pod)
        refs = [r for r in _meta(body).get("ownerReferences") or [] if r.get("uid") != drop_uid]
        if add is not None:
            refs.append(add)
        if refs:
            body["metadata"]["ownerReferences"] = refs
        else:
            body["metadata"].pop("ownerReferences", None)
        namespace, name = _key(pod)
        try:
            return await self.api.update(
                self.pod_info, namespace=namespace, name=name, body=body, opts=RS_USER
            )
        except StatusError as error:
            if error.code not in (404, 409):
                raise
            return None

    async def _manage(self, rs: Obj, active: list[Obj]) -> str | None:
        """``manageReplicas``: create or delete pods (at most BURST_REPLICAS per sync)."""
        diff = len(active) - _int(_spec(rs).get("replicas"), 1)
        if diff < 0:
            return await self._create_pods(rs, min(-diff, BURST_REPLICAS))
        if diff > 0:
            return await self._delete_pods(rs, active, min(diff, BURST_REPLICAS))
        return None

    async def _create_pods(self, rs: Obj, count: int) -> str | None:
        """``slowStartBatch``: 1, 2, 4, … creations at once, stopping at the first failure
        (a webhook that refuses pods is not asked 500 times)."""
        batch = min(count, 1)
        remaining = count
        while batch > 0:
            results = await asyncio.gather(
                *(self._create_pod(rs) for _ in range(batch)), return_exceptions=True
            )
            for result in results:
                if isinstance(result, BaseException):
                    if not isinstance(result, StatusError):
                        raise result
                    message = f"Error creating: {result.message}"
                    await self.recorder.event(rs, "Warning", "FailedCreate", message)
                    return message
            remaining -= batch
            batch = min(2 * batch, remaining)
        return None

    async def _create_pod(self, rs: Obj) -> None:
        """``GetPodFromTemplate``: labels, annotations and finalizers of the template, the
        name generated from the ReplicaSet's, a controller reference."""
        template = _spec(rs).get("template") or {}
        tmeta = template.get("metadata") or {}
        metadata: Obj = {
            "generateName": f"{_meta(rs)['name']}-",
            "ownerReferences": [owner_ref(rs)],
        }
        for field in ("labels", "annotations", "finalizers"):
            if tmeta.get(field):
                metadata[field] = meta.clone(tmeta[field])
        body: Obj = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": metadata,
            "spec": meta.clone(template.get("spec") or {}),
        }
        namespace = _key(rs)[0]
        pod = await self.api.create(self.pod_info, namespace=namespace, body=body, opts=RS_USER)
        await self.recorder.event(
            rs, "Normal", "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}"
        )

    def _ranks(self, rs: Obj) -> dict[str, int]:
        """Active pods of the same owner per node (``getIndirectlyRelatedPods``)."""
        ref = controller_ref(rs)
        owners = [str(_meta(rs).get("uid"))]
        if ref is not None:
            owners = [
                str(_meta(s.obj).get("uid"))
                for sk, k in self.api.store.dependents.get(str(ref.get("uid")), ())
                if sk == self.rs_info.store_key and (s := self.api.store.get(sk, k)) is not None
            ] or owners
        per_node: dict[str, int] = {}
        for uid in owners:
            for pod in self._owned_pods(uid):
                if pod_active(pod):
                    node = str(_spec(pod).get("nodeName") or "")
                    per_node[node] = per_node.get(node, 0) + 1
        return per_node

    async def _delete_pods(self, rs: Obj, active: list[Obj], count: int) -> str | None:
        ranks = self._ranks(rs) if count < len(active) else {}
        views = [_pod_view(p, ranks.get(str(_spec(p).get("nodeName") or ""), 0)) for p in active]
        victims = rollout.pods_to_delete(views, count, now=time.time())
        namespace = _key(rs)[0]
        results = await asyncio.gather(
            *(self._delete_pod(rs, namespace, v) for v in victims), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                if not isinstance(result, StatusError):
                    raise result
                return f"Error deleting: {result.message}"
        return None

    async def _delete_pod(self, rs: Obj, namespace: str, pod: rollout.PodView) -> None:
        try:
            await self.api.delete(
                self.pod_info,
                namespace=namespace,
                name=pod.name,
                options={"preconditions": {"uid": pod.uid}},
                opts=RS_USER,
            )
        except StatusError as error:
            if error.code == 404:
                return
            await self.recorder.event(
                rs, "Warning", "FailedDelete", f"Error deleting: {error.message}"
            )
            raise
        await self.recorder.event(rs, "Normal", "SuccessfulDelete", f"Deleted pod: {pod.name}")

    async def _update_status(self, key: Key, active: list[Obj], error: str | None) -> float | None:
        """``calculateStatus`` + ``updateReplicaSetStatus``; answers when to look again for
        pods that become available after minReadySeconds."""
        stored = self.api.store.get(self.rs_info.store_key, key)
        if stored is None:
            return None
        rs = stored.obj
        min_ready = _int(_spec(rs).get("minReadySeconds"))
        template_labels = ((_spec(rs).get("template") or {}).get("metadata") or {}).get(
            "labels"
        ) or {}
        now = time.time()
        fully = ready = available = 0
        next_check: float | None = None
        for pod in active:
            labels = _meta(pod).get("labels") or {}
            if all(labels.get(k) == v for k, v in template_labels.items()):
                fully += 1
            at = available_at(pod, min_ready)
            if at is None:
                continue
            ready += 1
            if min_ready == 0 or at < now:
                available += 1
            else:
                next_check = at if next_check is None else min(next_check, at)
        old = _status(rs)
        status: Obj = {k: v for k, v in old.items() if k == "conditions"}
        failure = rollout.get_condition(old, "ReplicaFailure")
        if error is not None and failure is None:
            diff = len(active) - _int(_spec(rs).get("replicas"), 1)
            reason = "FailedCreate" if diff < 0 else "FailedDelete" if diff > 0 else ""
            condition = {
                "type": "ReplicaFailure",
                "status": "True",
                "lastTransitionTime": meta.timestamp(),
                "reason": reason,
                "message": error,
            }
            rollout.set_condition(status, condition)
        elif error is None and failure is not None:
            rollout.remove_condition(status, "ReplicaFailure")
        status["replicas"] = len(active)
        for field, value in (
            ("fullyLabeledReplicas", fully),
            ("readyReplicas", ready),
            ("availableReplicas", available),
            ("observedGeneration", _int(_meta(rs).get("generation"))),
        ):
            if value:
                status[field] = value
        after = None if next_check is None else max(next_check - now, 0) + 0.05
        if status == old:
            return after
        body = stored.copy()
        body["status"] = status
        await self.api.update(
            self.rs_info,
            namespace=key[0],
            name=key[1],
            body=body,
            subresource="status",
            opts=RS_USER,
        )
        return after


# ----- the Deployment controller -------------------------------------------------------------


def _view(rs: Obj) -> RSView:
    annotations = _meta(rs).get("annotations") or {}

    def number(name: str) -> int | None:
        try:
            return int(annotations[name])
        except (KeyError, ValueError):
            return None

    status = _status(rs)
    return RSView(
        name=str(_meta(rs)["name"]),
        created=str(_meta(rs).get("creationTimestamp") or ""),
        replicas=_int(_spec(rs).get("replicas"), 1),
        actual=_int(status.get("replicas")),
        ready=_int(status.get("readyReplicas")),
        available=_int(status.get("availableReplicas")),
        revision=rollout.revision_of(rs) or 0,
        desired_annotation=number(rollout.DESIRED_REPLICAS),
        max_annotation=number(rollout.MAX_REPLICAS),
    )


def _facts(d: Obj) -> DeploymentFacts:
    spec = _spec(d)
    deadline = spec.get("progressDeadlineSeconds")
    return DeploymentFacts(
        name=str(_meta(d)["name"]),
        generation=_int(_meta(d).get("generation")),
        replicas=_int(spec.get("replicas"), 1),
        strategy=Strategy.of(d),
        progress_deadline=deadline if isinstance(deadline, int) else None,
    )


def _by_creation(rss: list[Obj]) -> list[Obj]:
    return sorted(rss, key=lambda rs: (str(_meta(rs).get("creationTimestamp")), _meta(rs)["name"]))


class _Requeue(Exception):
    def __init__(self, after: float) -> None:
        super().__init__(after)
        self.after = after


class DeploymentController:
    """Rolls Deployments out through ReplicaSets, as ``pkg/controller/deployment`` does."""

    def __init__(self, *, api: Api, workers: int = WORKERS) -> None:
        self.api = api
        self.d_info = _info(api, "apps", "v1", "deployments")
        self.rs_info = _info(api, "apps", "v1", "replicasets")
        self.pod_info = _info(api, "", "v1", "pods")
        self.queue = WorkQueue("deployment", self._sync, workers=workers)
        self.recorder = _Recorder(api, "deployment-controller", DEPLOYMENT_USER)
        api.store.listeners.append(self._on_event)
        for key, _ in self.api.store.items(self.d_info.store_key, None):
            self.queue.add(key)

    def start(self) -> None:
        self.queue.start()

    async def stop(self) -> None:
        await self.queue.stop()

    # ----- events ------------------------------------------------------------------------

    def _on_event(self, store_key: StoreKey, event: Event) -> None:
        if store_key == self.d_info.store_key:
            self.queue.add(event.key)
        elif store_key == self.rs_info.store_key:
            for obj in (event.new.obj, event.old.obj if event.old else None):
                ref = controller_ref(obj) if obj is not None else None
                if ref is not None and ref.get("kind") == "Deployment":
                    self.queue.add((event.key[0], str(ref.get("name"))))
        elif store_key == self.pod_info.store_key and event.type == DELETED:
            # Recreate waits for the old pods to be gone, not only scaled down.
            self._pod_deleted(event.key[0], event.new.obj)

    def _pod_deleted(self, namespace: str, pod: Obj) -> None:
        ref = controller_ref(pod)
        if ref is None or ref.get("kind") != "ReplicaSet":
            return
        rs = self.api.store.get(self.rs_info.store_key, (namespace, str(ref.get("name"))))
        d_ref = controller_ref(rs.obj) if rs is not None else None
        if d_ref is None or d_ref.get("kind") != "Deployment":
            return
        key = (namespace, str(d_ref.get("name")))
        d = self.api.store.get(self.d_info.store_key, key)
        if d is not None and Strategy.of(d.obj).type == "Recreate":
            self.queue.add(key)

    # ----- reads -------------------------------------------------------------------------

    def _replica_sets(self, d: Obj) -> dict[str, Obj]:
        """The ReplicaSets this Deployment controls (copies, to be changed and written)."""
        uid = str(_meta(d).get("uid"))
        found: dict[str, Obj] = {}
        for store_key, key in self.api.store.dependents.get(uid, ()):
            if store_key != self.rs_info.store_key:
                continue
            stored = self.api.store.get(store_key, key)
            ref = controller_ref(stored.obj) if stored is not None else None
            if stored is not None and ref is not None and ref.get("uid") == uid:
                found[key[1]] = stored.copy()
        return found

    def _pods_of(self, rs: Obj) -> list[Obj]:
        uid = str(_meta(rs).get("uid"))
        pods: list[Obj] = []
        for store_key, key in self.api.store.dependents.get(uid, ()):
            stored = (
                self.api.store.get(store_key, key) if store_key == self.pod_info.store_key else None
            )
            ref = controller_ref(stored.obj) if stored is not None else None
            if stored is not None and ref is not None and ref.get("uid") == uid:
                pods.append(stored.obj)
        return pods

    # ----- sync --------------------------------------------------------------------------

    async def _sync(self, key: Key) -> float | None:
        """``syncDeployment``."""
        stored = self.api.store.get(self.d_info.store_key, key)
        if stored is None:
            return None
        d = stored.copy()
        rss = self._replica_sets(d)
        try:
            if _meta(d).get("deletionTimestamp"):
                await self._sync_status_only(d, rss)
                return None
            selector = _spec(d).get("selector") or {}
            if not selector.get("matchLabels") and not selector.get("matchExpressions"):
                return None  # selects everything: the real controller refuses too
            d = await self._check_paused_conditions(d)
            if _spec(d).get("paused"):
                await self._scale_sync(d, rss)
                return None
            if self._is_scaling_event(d, rss):
                await self._scale_sync(d, rss)
                return None
            if Strategy.of(d).type == "Recreate":
                return await self._rollout_recreate(d, rss)
            return await self._rollout_rolling(d, rss)
        except _Requeue as requeue:
            return requeue.after

    async def _save(self, d: Obj) -> Obj:
        """Write what changed of a Deployment: annotations (the revision) through the main
        resource, status through /status; preconditioned on the version read."""
        namespace, name = _key(d)
        stored = self.api.store.get(self.d_info.store_key, (namespace, name))
        if stored is None:
            raise _Requeue(0.0)
        current = stored.obj
        if _meta(current).get("resourceVersion") != _meta(d).get("resourceVersion"):
            raise _Requeue(0.0)
        result = stored.copy()
        if (_meta(current).get("annotations") or {}) != (_meta(d).get("annotations") or {}):
            # (``Api.update`` decodes a copy of the body: nothing here needs copying.)
            result = await self.api.update(
                self.d_info,
                namespace=namespace,
                name=name,
                body=d,
                opts=DEPLOYMENT_USER,
            )
        if _status(result) != _status(d):
            body = {**result, "status": _status(d)}
            result = await self.api.update(
                self.d_info,
                namespace=namespace,
                name=name,
                body=body,
                subresource="status",
                opts=DEPLOYMENT_USER,
            )
        return result

    def _find_new(self, d: Obj, rss: dict[str, Obj]) -> Obj | None:
        """``FindNewReplicaSet``: the oldest ReplicaSet whose template is the Deployment's."""
        template = _spec(d).get("template") or {}
        for rs in _by_creation(list(rss.values())):
            if rollout.equal_ignore_hash(_spec(rs).get("template") or {}, template):
                return rs
        return None

    def _is_scaling_event(self, d: Obj, rss: dict[str, Obj]) -> bool:
        """``isScalingEvent``: an active ReplicaSet was annotated for another size."""
        replicas = _facts(d).replicas
        for rs in rss.values():
            view = _view(rs)
            if view.replicas > 0 and view.desired_annotation not in (None, replicas):
                return True
        return False

    async def _get_all(
        self, d: Obj, rss: dict[str, Obj], *, create: bool
    ) -> tuple[Obj, Obj | None, list[Obj]]:
        """``getAllReplicaSetsAndSyncRevision`` / ``getNewReplicaSet``."""
        existing = self._find_new(d, rss)
        olds = _by_creation([rs for rs in rss.values() if rs is not existing])
        max_old = max((r for rs in olds if (r := rollout.revision_of(rs)) is not None), default=0)
        new_revision = max_old + 1
        facts = _facts(d)
        surge = rollout.max_surge(facts.strategy, facts.replicas)
        min_ready = _int(_spec(d).get("minReadySeconds"))
        if existing is not None:
            rs_copy = meta.clone(existing)
            changed = rollout.set_new_rs_annotations(
                d,
                rs_copy,
                new_revision,
                exists=True,
                desired=facts.replicas,
                max_replicas=facts.replicas + surge,
            )
            if changed or _int(_spec(rs_copy).get("minReadySeconds")) != min_ready:
                _set_min_ready(rs_copy, min_ready)
                updated = await self._write_rs(rs_copy)
                rss[_meta(updated)["name"]] = updated
                return d, updated, olds
            revision = str((_meta(rs_copy).get("annotations") or {}).get(REVISION, ""))
            needs_update = rollout.set_deployment_revision(d, revision)
            status = d.setdefault("status", {})
            if facts.has_progress_deadline and rollout.get_condition(status, "Progressing") is None:
                rollout.set_condition(
                    status,
                    rollout.new_condition(
                        "Progressing",
                        "True",
                        rollout.FOUND_NEW_RS_REASON,
                        f'Found new replica set "{_meta(rs_copy)["name"]}"',
                        now=meta.timestamp(),
                    ),
                )
                needs_update = True
            if needs_update:
                d.update(await self._save(d))
            return d, rs_copy, olds
        if not create:
            return d, None, olds
        created = await self._create_new(d, olds, new_revision=new_revision, surge=surge)
        rss[_meta(created)["name"]] = created
        return d, created, olds

    async def _create_new(self, d: Obj, olds: list[Obj], *, new_revision: int, surge: int) -> Obj:
        facts = _facts(d)
        status = d.setdefault("status", {})
        collisions = status.get("collisionCount")
        template = meta.clone(_spec(d).get("template") or {})
        pod_hash = rollout.compute_hash(
            template, collisions if isinstance(collisions, int) else None
        )
        labels = dict((template.get("metadata") or {}).get("labels") or {})
        labels[HASH_LABEL] = pod_hash
        template.setdefault("metadata", {})["labels"] = labels
        selector = meta.clone(_spec(d).get("selector") or {})
        selector.setdefault("matchLabels", {})[HASH_LABEL] = pod_hash
        name = f"{facts.name}-{pod_hash}"
        namespace = _key(d)[0]
        rs: Obj = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": dict(labels),
                "ownerReferences": [owner_ref(d)],
            },
            "spec": {"replicas": 0, "selector": selector, "template": template},
        }
        _set_min_ready(rs, _int(_spec(d).get("minReadySeconds")))
        new_view = RSView(name=name, replicas=0)
        replicas = rollout.new_rs_new_replicas(
            strategy=facts.strategy,
            replicas=facts.replicas,
            all_rss=[*(_view(o) for o in olds), new_view],
            new_rs=new_view,
        )
        rs["spec"]["replicas"] = replicas
        rollout.set_new_rs_annotations(
            d,
            rs,
            new_revision,
            exists=False,
            desired=facts.replicas,
            max_replicas=facts.replicas + surge,
        )
        already = False
        try:
            created = await self.api.create(
                self.rs_info, namespace=namespace, body=rs, opts=DEPLOYMENT_USER
            )
        except StatusError as error:
            if error.code == 409 and error.reason == "AlreadyExists":
                found = self.api.store.get(self.rs_info.store_key, (namespace, name))
                ref = controller_ref(found.obj) if found is not None else None
                if (
                    found is not None
                    and ref is not None
                    and ref.get("uid") == _meta(d).get("uid")
                    and rollout.equal_ignore_hash(
                        _spec(found.obj).get("template") or {}, _spec(d).get("template") or {}
                    )
                ):
                    created, already = found.copy(), True
                else:
                    # A hash collision: count it, so the next hash differs.
                    status["collisionCount"] = _int(collisions) + 1
                    await self._save(d)
                    raise _Requeue(0.0) from None
            else:
                message = f'Failed to create new replica set "{name}": {error.message}'
                if facts.has_progress_deadline:
                    rollout.set_condition(
                        status,
                        rollout.new_condition(
                            "Progressing",
                            "False",
                            rollout.FAILED_RS_CREATE_REASON,
                            message,
                            now=meta.timestamp(),
                        ),
                    )
                    with contextlib.suppress(StatusError, _Requeue):
                        await self._save(d)
                await self.recorder.event(d, "Warning", rollout.FAILED_RS_CREATE_REASON, message)
                raise
        if not already and replicas > 0:
            await self.recorder.event(
                d,
                "Normal",
                "ScalingReplicaSet",
                f"Scaled up replica set {name} from 0 to {replicas}",
            )
        needs_update = rollout.set_deployment_revision(d, str(new_revision))
        if not already and facts.has_progress_deadline:
            rollout.set_condition(
                status,
                rollout.new_condition(
                    "Progressing",
                    "True",
                    rollout.NEW_RS_REASON,
                    f'Created new replica set "{name}"',
                    now=meta.timestamp(),
                ),
            )
            needs_update = True
        if needs_update:
            d.update(await self._save(d))
        return created

    async def _write_rs(self, rs: Obj) -> Obj:
        namespace, name = _key(rs)
        return await self.api.update(
            self.rs_info, namespace=namespace, name=name, body=rs, opts=DEPLOYMENT_USER
        )

    async def _scale_rs(self, rs: Obj, size: int, d: Obj, operation: str) -> tuple[bool, Obj]:
        """``scaleReplicaSet``: new size and the desired/max-replicas annotations."""
        facts = _facts(d)
        max_replicas = facts.replicas + rollout.max_surge(facts.strategy, facts.replicas)
        old_size = _int(_spec(rs).get("replicas"), 1)
        size_changed = old_size != size
        if not size_changed and not rollout.replicas_annotations_need_update(
            rs, facts.replicas, max_replicas
        ):
            return False, rs
        body = meta.clone(rs)
        body["spec"]["replicas"] = size
        rollout.set_replicas_annotations(body, facts.replicas, max_replicas)
        updated = await self._write_rs(body)
        if size_changed:
            await self.recorder.event(
                d,
                "Normal",
                "ScalingReplicaSet",
                f"Scaled {operation} replica set {_meta(rs)['name']} from {old_size} to {size}",
            )
        return size_changed, updated

    async def _scale_and_record(self, rs: Obj, size: int, d: Obj) -> tuple[bool, Obj]:
        """``scaleReplicaSetAndRecordEvent``."""
        current = _int(_spec(rs).get("replicas"), 1)
        if current == size:
            return False, rs
        return await self._scale_rs(rs, size, d, "up" if current < size else "down")

    # ----- rolling update ----------------------------------------------------------------

    async def _rollout_rolling(self, d: Obj, rss: dict[str, Obj]) -> float | None:
        """``rolloutRolling``: scale the new ReplicaSet up if the surge allows, else the old
        ones down if availability allows; then report."""
        d, new, olds = await self._get_all(d, rss, create=True)
        assert new is not None
        olds = [rss.get(_meta(o)["name"], o) for o in olds]
        facts = _facts(d)
        # reconcileNewReplicaSet
        new_size = _int(_spec(new).get("replicas"), 1)
        scaled = False
        if new_size > facts.replicas:
            scaled, new = await self._scale_and_record(new, facts.replicas, d)
        elif new_size < facts.replicas:
            target = rollout.new_rs_new_replicas(
                strategy=facts.strategy,
                replicas=facts.replicas,
                all_rss=[*(_view(o) for o in olds), _view(new)],
                new_rs=_view(new),
            )
            scaled, new = await self._scale_and_record(new, target, d)
        if scaled:
            return await self._sync_rollout_status(d, new, olds)
        # reconcileOldReplicaSets
        steps = rollout.reconcile_old_replica_sets(
            replicas=facts.replicas,
            max_unavailable=rollout.max_unavailable(facts.strategy, facts.replicas),
            new_rs=_view(new),
            old_rss=[_view(o) for o in olds],
        )
        by_name = {_meta(o)["name"]: o for o in olds}
        scaled_down = False
        for name, size in steps:
            did, by_name[name] = await self._scale_and_record(by_name[name], size, d)
            scaled_down |= did
        olds = [by_name[_meta(o)["name"]] for o in olds]
        if scaled_down:
            return await self._sync_rollout_status(d, new, olds)
        if rollout.deployment_complete(facts, _status(d)):
            await self._cleanup(d, olds)
        return await self._sync_rollout_status(d, new, olds)

    # ----- recreate ----------------------------------------------------------------------

    async def _rollout_recreate(self, d: Obj, rss: dict[str, Obj]) -> float | None:
        """``rolloutRecreate``: old ReplicaSets to 0, wait until their pods are gone, then the
        new ReplicaSet at full size."""
        d, new, olds = await self._get_all(d, rss, create=False)
        scaled_down = False
        updated: list[Obj] = []
        for rs in olds:
            if _int(_spec(rs).get("replicas"), 1) > 0:
                did, rs = await self._scale_and_record(rs, 0, d)
                scaled_down |= did
            updated.append(rs)
        olds = updated
        if scaled_down or self._old_pods_running(new, olds):
            return await self._sync_rollout_status(d, new, olds)
        if new is None:
            d, new, olds = await self._get_all(d, rss, create=True)
            assert new is not None
        facts = _facts(d)
        _, new = await self._scale_and_record(new, facts.replicas, d)
        if rollout.deployment_complete(facts, _status(d)):
            await self._cleanup(d, olds)
        return await self._sync_rollout_status(d, new, olds)

    def _old_pods_running(self, new: Obj | None, olds: list[Obj]) -> bool:
        """``oldPodsRunning``: old ReplicaSets report pods, or any of their pods (terminating
        ones included) is not in a terminal phase."""
        if sum(_int(_status(rs).get("replicas")) for rs in olds) > 0:
            return True
        new_uid = _meta(new).get("uid") if new is not None else None
        for rs in olds:
            if _meta(rs).get("uid") == new_uid:
                continue
            for pod in self._pods_of(rs):
                if _status(pod).get("phase") not in ("Failed", "Succeeded"):
                    return True
        return False

    # ----- scaling (also while paused) ---------------------------------------------------

    async def _scale_sync(self, d: Obj, rss: dict[str, Obj]) -> None:
        """``sync``: a resize without a rollout; proportional across ReplicaSets mid-rollout."""
        d, new, olds = await self._get_all(d, rss, create=False)
        new, olds = await self._scale(d, new, olds)
        if _spec(d).get("paused"):
            await self._cleanup(d, olds)
        await self._sync_deployment_status(d, new, olds)

    async def _scale(
        self, d: Obj, new: Obj | None, olds: list[Obj]
    ) -> tuple[Obj | None, list[Obj]]:
        facts = _facts(d)
        every = {_meta(rs)["name"]: rs for rs in [*olds, *([new] if new else [])]}
        latest = rollout.find_active_or_latest(
            _view(new) if new else None, [_view(o) for o in olds]
        )
        if latest is not None:
            if latest.replicas != facts.replicas:
                _, every[latest.name] = await self._scale_and_record(
                    every[latest.name], facts.replicas, d
                )
        elif rollout.is_saturated(facts.replicas, _view(new) if new else None):
            for rs in olds:
                if _int(_spec(rs).get("replicas"), 1) > 0:
                    _, every[_meta(rs)["name"]] = await self._scale_and_record(rs, 0, d)
        elif facts.strategy.rolling:
            surge = rollout.max_surge(facts.strategy, facts.replicas)
            views = [_view(rs) for rs in every.values()]
            allowed = facts.replicas + surge if facts.replicas > 0 else 0
            to_add = allowed - sum(v.replicas for v in rollout.active(views))
            operation = "up" if to_add > 0 else "down" if to_add < 0 else ""
            for name, size in rollout.proportional_sizes(
                replicas=facts.replicas,
                surge=surge,
                rss=views,
                status_replicas=_int(_status(d).get("replicas")),
            ):
                _, every[name] = await self._scale_rs(every[name], size, d, operation)
        return (
            every[_meta(new)["name"]] if new else None,
            [every[_meta(o)["name"]] for o in olds],
        )

    async def _check_paused_conditions(self, d: Obj) -> Obj:
        """``checkPausedConditions``: Progressing Unknown DeploymentPaused/Resumed."""
        if not _facts(d).has_progress_deadline:
            return d
        status = d.setdefault("status", {})
        condition = rollout.get_condition(status, "Progressing")
        if condition is not None and condition.get("reason") == rollout.TIMED_OUT_REASON:
            return d
        paused_shown = condition is not None and condition.get("reason") == rollout.PAUSED_REASON
        paused = bool(_spec(d).get("paused"))
        if paused and not paused_shown:
            reason, message = rollout.PAUSED_REASON, "Deployment is paused"
        elif not paused and paused_shown:
            reason, message = rollout.RESUMED_REASON, "Deployment is resumed"
        else:
            return d
        rollout.set_condition(
            status,
            rollout.new_condition("Progressing", "Unknown", reason, message, now=meta.timestamp()),
        )
        return await self._save(d)

    async def _cleanup(self, d: Obj, olds: list[Obj]) -> None:
        """``cleanupDeployment``: delete the oldest empty ReplicaSets beyond
        revisionHistoryLimit."""
        limit = _spec(d).get("revisionHistoryLimit")
        if not isinstance(limit, int):
            return
        alive = [rs for rs in olds if not _meta(rs).get("deletionTimestamp")]
        diff = len(alive) - limit
        if diff <= 0:
            return

        def order(rs: Obj) -> tuple[int, str, str]:
            revision = rollout.revision_of(rs)
            return (revision or 0, str(_meta(rs).get("creationTimestamp")), _meta(rs)["name"])

        for rs in sorted(alive, key=order)[:diff]:
            status = _status(rs)
            if (
                _int(status.get("replicas")) != 0
                or _int(_spec(rs).get("replicas"), 1) != 0
                or _int(_meta(rs).get("generation")) > _int(status.get("observedGeneration"))
            ):
                continue
            namespace, name = _key(rs)
            try:
                await self.api.delete(
                    self.rs_info,
                    namespace=namespace,
                    name=name,
                    options={"preconditions": {"uid": _meta(rs).get("uid")}},
                    opts=DEPLOYMENT_USER,
                )
            except StatusError as error:
                if error.code not in (404, 409):
                    raise

    # ----- status ------------------------------------------------------------------------

    def _replica_failure(self, new: Obj | None, every: list[Obj]) -> Obj | None:
        """``getReplicaFailures``: the new ReplicaSet's ReplicaFailure, else an old one's."""
        for rs in [*([new] if new else []), *every]:
            condition = rollout.get_condition(_status(rs), "ReplicaFailure")
            if condition is not None:
                return {
                    "type": "ReplicaFailure",
                    "status": condition.get("status"),
                    "lastUpdateTime": condition.get("lastTransitionTime"),
                    "lastTransitionTime": condition.get("lastTransitionTime"),
                    "reason": condition.get("reason"),
                    "message": condition.get("message"),
                }
        return None

    def _calculate(self, d: Obj, new: Obj | None, olds: list[Obj]) -> Obj:
        every = [*olds, *([new] if new else [])]
        return rollout.calculate_status(
            deployment=_facts(d),
            old_status=_status(d),
            all_rss=[_view(rs) for rs in every],
            new_rs=_view(new) if new else None,
            now=meta.timestamp(),
        )

    async def _sync_deployment_status(self, d: Obj, new: Obj | None, olds: list[Obj]) -> None:
        status = self._calculate(d, new, olds)
        if status != _status(d):
            d["status"] = status
            await self._save(d)

    async def _sync_status_only(self, d: Obj, rss: dict[str, Obj]) -> None:
        d, new, olds = await self._get_all(d, rss, create=False)
        await self._sync_deployment_status(d, new, olds)

    async def _sync_rollout_status(self, d: Obj, new: Obj | None, olds: list[Obj]) -> float | None:
        """``syncRolloutStatus``; answers when the progress deadline needs a look."""
        facts = _facts(d)
        now = meta.now()
        status = rollout.rollout_status(
            deployment=facts,
            old_status=_status(d),
            new_status=self._calculate(d, new, olds),
            new_rs_name=_meta(new)["name"] if new else None,
            now=now,
            now_text=meta.timestamp(now),
        )
        failure = self._replica_failure(new, olds)
        if failure is not None:
            rollout.set_condition(status, failure)
        else:
            rollout.remove_condition(status, "ReplicaFailure")
        if status == _status(d):
            return rollout.progress_check_after(facts, _status(d), status, now=now)
        d["status"] = status
        await self._save(d)
        return None


def _set_min_ready(rs: Obj, seconds: int) -> None:
    if seconds:
        rs["spec"]["minReadySeconds"] = seconds
    else:
        rs["spec"].pop("minReadySeconds", None)


# ----- both ----------------------------------------------------------------------------------


class WorkloadControllers:
    """The ReplicaSet and Deployment controllers, started and stopped together."""

    def __init__(self, *, api: Api, config: ClusterConfig) -> None:
        self.config = config
        self.replicasets = ReplicaSetController(api=api)
        self.deployments = DeploymentController(api=api)

    def start(self) -> None:
        self.replicasets.start()
        self.deployments.start()

    async def stop(self) -> None:
        await self.deployments.stop()
        await self.replicasets.stop()

    @property
    def idle(self) -> bool:
        return self.replicasets.queue.idle and self.deployments.queue.idle


# What ``Cluster`` (cluster.py) starts from this module.
CONTROLLERS = (WorkloadControllers,)
