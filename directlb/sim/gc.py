"""Background deletion work the real control plane does behind the API server.

* the garbage collector: a dependent whose owners (``ownerReferences``) are all gone is deleted;
  dangling references next to a live owner are removed; an owner deleted with
  ``propagationPolicy: Foreground`` keeps its ``foregroundDeletion`` finalizer until its
  dependents are gone; one deleted with ``Orphan`` has its dependents' references removed first;
* the namespace controller: a terminating namespace's content is deleted, then the namespace;
* the CRD finalizer: a deleted CRD's custom resources are deleted, then the CRD (which stops
  serving its resource).

It works through ``Api`` like the real controllers work through the API (admission included),
woken by store events, never polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from directlb.sim.api import CRD_FINALIZER, CRDS, NAMESPACES, Api, WriteOptions
from directlb.sim.contracts import Obj, StatusError
from directlb.sim.registry import ResourceInfo
from directlb.sim.storage import ADDED, DELETED, Event, ObjKey, Stored, StoreKey

log = logging.getLogger("directlb.sim.gc")

GC_USER = WriteOptions(
    user="system:serviceaccount:kube-system:generic-garbage-collector", field_validation="Ignore"
)
RETRY_SECONDS = 0.2

Ref = tuple[StoreKey, ObjKey]


class Collector:
    def __init__(self, api: Api) -> None:
        self.api = api
        self._wake = asyncio.Event()
        self._gone_owners: set[str] = set()
        self._new_dependents: set[Ref] = set()
        self._deleting: set[Ref] = set()
        self._task: asyncio.Task[None] | None = None
        api.store.listeners.append(self._on_event)
        self._scan()

    def _scan(self) -> None:
        """Pick up work present before the collector started (e.g. loaded state)."""
        for store_key, table in self.api.store.tables.items():
            for key, stored in table.objects.items():
                self._note(store_key, key, stored.obj, added=True)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="sim-gc")
            self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # ----- events ---------------------------------------------------------------------------

    def _on_event(self, store_key: StoreKey, event: Event) -> None:
        if event.type == DELETED:
            uid = str(event.old.obj["metadata"].get("uid", "")) if event.old else ""
            if self.api.store.dependents.get(uid):
                self._gone_owners.add(uid)
                self._wake.set()
            self._deleting.discard((store_key, event.key))
            if self._deleting:
                self._wake.set()  # an owner, namespace or CRD may be waiting for this one
            return
        self._note(store_key, event.key, event.new.obj, added=event.type == ADDED)

    def _note(self, store_key: StoreKey, key: ObjKey, obj: Obj, *, added: bool) -> None:
        m = obj["metadata"]
        if added and m.get("ownerReferences"):
            self._new_dependents.add((store_key, key))
            self._wake.set()
        if m.get("deletionTimestamp") and self._handles(store_key, obj):
            self._deleting.add((store_key, key))
            self._wake.set()

    def _handles(self, store_key: StoreKey, obj: Obj) -> bool:
        finalizers = obj["metadata"].get("finalizers") or []
        return (
            store_key in (NAMESPACES, CRDS)
            or "foregroundDeletion" in finalizers
            or "orphan" in finalizers
        )

    # ----- the loop -------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            # Cleared before the work, so events raised by the work itself wake us again.
            self._wake.clear()
            try:
                retry = await self._process()
            except Exception:  # one bad object must not stop collection for all others
                log.exception("event=gc_error")
                retry = True
            if retry:
                asyncio.get_running_loop().call_later(RETRY_SECONDS, self._wake.set)

    async def _process(self) -> bool:
        retry = False
        gone, self._gone_owners = self._gone_owners, set()
        new, self._new_dependents = self._new_dependents, set()
        refs = set(new)
        for uid in gone:
            refs |= set(self.api.store.dependents.get(uid, ()))
        for ref in sorted(refs):
            retry |= await self._collect(ref)
        for ref in sorted(self._deleting):
            retry |= await self._finish(ref)
        return retry

    def _info(self, store_key: StoreKey) -> ResourceInfo | None:
        return self.api.registry.find(*store_key)

    def _owner_alive(self, ref: Obj) -> bool:
        return self.api.store.by_uid(str(ref.get("uid", ""))) is not None

    async def _collect(self, ref: Ref) -> bool:
        """Delete a dependent whose owners are all gone; drop dangling references otherwise."""
        stored = self.api.store.get(*ref)
        info = self._info(ref[0])
        if stored is None or info is None:
            return False
        owners = stored.obj["metadata"].get("ownerReferences") or []
        alive = [o for o in owners if self._owner_alive(o)]
        if len(alive) == len(owners):
            return False
        if alive:
            obj = self.api.out(info, stored)
            obj["metadata"]["ownerReferences"] = alive
            return await self._update(info, obj)
        return await self._delete(info, stored, policy="Background")

    async def _finish(self, ref: Ref) -> bool:
        stored = self.api.store.get(*ref)
        info = self._info(ref[0])
        if stored is None or info is None:
            self._deleting.discard(ref)
            return False
        finalizers = stored.obj["metadata"].get("finalizers") or []
        if "orphan" in finalizers:
            return await self._orphan(info, stored)
        if "foregroundDeletion" in finalizers:
            return await self._foreground(info, stored)
        if ref[0] == NAMESPACES:
            return await self._namespace(info, stored)
        if ref[0] == CRDS and CRD_FINALIZER in finalizers:
            return await self._crd(info, stored)
        self._deleting.discard(ref)
        return False

    def _dependents(self, stored: Stored) -> list[tuple[ResourceInfo, Stored]]:
        uid = str(stored.obj["metadata"].get("uid", ""))
        found: list[tuple[ResourceInfo, Stored]] = []
        for store_key, key in sorted(self.api.store.dependents.get(uid, ())):
            info = self._info(store_key)
            dependent = self.api.store.get(store_key, key)
            if info is not None and dependent is not None:
                found.append((info, dependent))
        return found

    async def _orphan(self, info: ResourceInfo, stored: Stored) -> bool:
        uid = stored.obj["metadata"].get("uid")
        retry = False
        for dep_info, dependent in self._dependents(stored):
            obj = self.api.out(dep_info, dependent)
            refs = [r for r in obj["metadata"].get("ownerReferences") or [] if r.get("uid") != uid]
            obj["metadata"]["ownerReferences"] = refs
            if not refs:
                del obj["metadata"]["ownerReferences"]
            retry |= await self._update(dep_info, obj)
        if retry:
            return True
        return await self._drop_finalizer(info, stored, "orphan")

    async def _foreground(self, info: ResourceInfo, stored: Stored) -> bool:
        dependents = self._dependents(stored)
        retry = False
        for dep_info, dependent in dependents:
            if not dependent.obj["metadata"].get("deletionTimestamp"):
                uid = str(dependent.obj["metadata"].get("uid", ""))
                policy = "Foreground" if self.api.store.dependents.get(uid) else "Background"
                retry |= await self._delete(dep_info, dependent, policy=policy)
        if dependents:
            return retry
        return await self._drop_finalizer(info, stored, "foregroundDeletion")

    async def _namespace(self, info: ResourceInfo, stored: Stored) -> bool:
        name = stored.obj["metadata"]["name"]
        remaining = False
        retry = False
        store_keys = {i.store_key for i in self.api.registry.resources.values() if i.key.namespaced}
        for store_key in sorted(store_keys):
            content_info = self._info(store_key)
            for _, item in self.api.store.items(store_key, name):
                remaining = True
                if content_info is not None and not item.obj["metadata"].get("deletionTimestamp"):
                    retry |= await self._delete(content_info, item, policy="Background")
        if remaining:
            return retry
        obj = self.api.out(info, stored)
        obj.setdefault("spec", {})["finalizers"] = []
        return await self._update(info, obj)

    async def _crd(self, info: ResourceInfo, stored: Stored) -> bool:
        spec = stored.obj.get("spec") or {}
        store_key = (str(spec.get("group", "")), str((spec.get("names") or {}).get("plural", "")))
        cr_info = self._info(store_key)
        items = self.api.store.items(store_key, None)
        retry = False
        for _, item in items:
            if cr_info is not None and not item.obj["metadata"].get("deletionTimestamp"):
                retry |= await self._delete(cr_info, item, policy="Background")
        if items:
            return retry
        return await self._drop_finalizer(info, stored, CRD_FINALIZER)

    # ----- writes through the API -------------------------------------------------------------

    async def _delete(self, info: ResourceInfo, stored: Stored, *, policy: str) -> bool:
        m = stored.obj["metadata"]
        try:
            await self.api.delete(
                info,
                namespace=str(m.get("namespace") or ""),
                name=str(m["name"]),
                options={
                    "propagationPolicy": policy,
                    "preconditions": {"uid": m.get("uid")},
                },
                opts=GC_USER,
            )
        except StatusError as error:
            return _retry_after(error)
        return False

    async def _update(self, info: ResourceInfo, obj: Obj) -> bool:
        m = obj["metadata"]
        try:
            await self.api.update(
                info,
                namespace=str(m.get("namespace") or ""),
                name=str(m["name"]),
                body=obj,
                opts=GC_USER,
            )
        except StatusError as error:
            return _retry_after(error)
        return False

    async def _drop_finalizer(self, info: ResourceInfo, stored: Stored, finalizer: str) -> bool:
        obj = self.api.out(info, stored)
        obj["metadata"]["finalizers"] = [
            f for f in obj["metadata"].get("finalizers") or [] if f != finalizer
        ]
        return await self._update(info, obj)


def _retry_after(error: StatusError) -> bool:
    if error.code == 404:
        return False
    if error.code != 409:
        log.warning("event=gc_write_failed code=%s message=%s", error.code, error.message)
    return True
