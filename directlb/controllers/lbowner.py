"""What the Service (layer 4) and Ingress (layer 7) reconcilers share: owning one CLB on behalf
of one Kubernetes object.

Both reconcilers run the same pipeline; only "build desired" differs (the service model or the
ingress model). Everything around it is here, written once:

* **the CLB**: its :class:`~directlb.cloud.port.LoadBalancerSpec` (name, ownership tags, OPEN
  or INTERNAL, or the id of an existing CLB to adopt), found by tags, created, or adopted;
* **the finalizer**, added before the first cloud write and removed once the cloud is clean;
* **the sync** through the cloud port, with the listener scope on an adopted CLB: the keys we
  own there are recorded, with that CLB's id, in the annotation ``directlb.io/listeners``
  (``lb-1=TCP:80,TCP:443``) *before* we create them, so a crash in between never leaves a
  listener of ours that no later run would delete. When the adopted id changes (or goes), the
  listeners recorded on the old CLB are deleted there once the new one is synced; on any CLB
  only the listeners recorded for that very CLB may be deleted (a foreign listener on a port we
  own elsewhere stays). The format before CLB ids (``TCP:80,TCP:443``) is still read: its keys
  belong to the CLB of the CLB id annotation (the CLB last synced);
* **a shared adopted CLB** (:class:`ListenerClaims`): a listener another Service or Ingress of
  ours records on the same CLB is never deleted, and is refused (``ListenerConflict``) to
  whichever object was created later (creationTimestamp, then namespace, name, kind), by
  :func:`refused_listeners`, the rule the readiness gate expects listeners by too;
* **the report**: the CLB id annotation, ``status.loadBalancer.ingress[].ip``, and the Events
  EnsuringLoadBalancer, EnsuredLoadBalancer, SyncLoadBalancerFailed, DeletedLoadBalancer, plus
  one per model problem (the problem's reason, Warning or Normal by its severity);
* **the clean-up**: a CLB we created is deleted (found by its tags, so a restart finds it); on
  an adopted CLB only our listeners go, and the CLB itself is never deleted. When an object
  that had a CLB we created switches to adopting one (the adoption annotation added), the
  created CLB is deleted once the adopted one is synced: any CLB carrying all our ownership
  tags for the object (cluster, ``namespace/name`` and uid), never the adopted one. That
  look-up (one tag-filtered DescribeLoadBalancers) runs when the adopted CLB differs from the
  one the object last recorded, and once per adopted object after each controller start (it
  heals a CLB leaked before); release does it too.

What differs between the kinds is data (:class:`OwnerKind`): the resource and its status
subresource, the finalizer, the CLB id annotation, the tag names. Events only say what changed:
a resync of a converged object records nothing (problems aside, which the recorder folds into
one Event with a count).

Level-triggered and idempotent: every step finds what an earlier, interrupted run did (tags on
the cloud side, the finalizer and annotations on the object).
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.types import PatchType

from directlb.cloud.errors import CloudError
from directlb.cloud.port import (
    CloudLoadBalancers,
    DesiredLoadBalancer,
    LoadBalancer,
    LoadBalancerSpec,
    LoadBalancerType,
    Tags,
)
from directlb.kube.events import NORMAL, WARNING, EventRecorder
from directlb.kube.informer import Store
from directlb.model.problems import Problem
from directlb.model.service import LoadBalancerIntent
from directlb.plan.state import Listener, ListenerKey, ListenerProtocol

log = logging.getLogger("directlb.controllers.lbowner")

LISTENERS_ANNOTATION = "directlb.io/listeners"
TAG_CLUSTER = "directlb.io/cluster-id"
#: Tencent's limit on a CLB name (LoadBalancerName).
MAX_NAME = 60
#: Seconds before a failed sync is tried again (the work queue adds its own backoff on errors).
RETRY_AFTER = 5.0
LB_NOT_FOUND = "InvalidParameter.LBIdNotFound"
#: Finalizer patches tried (each after a 409 Conflict reads the object again).
FINALIZER_ATTEMPTS = 5
#: The store index of the adopted CLB ids an object records listeners on.
BY_RECORDED_LB = "recorded-lb"
#: The Warning of an object refused a listener another object of ours holds on a shared CLB.
LISTENER_CONFLICT = "ListenerConflict"
_NEVER = datetime.datetime.max.replace(tzinfo=datetime.UTC)


@dataclass(frozen=True)
class OwnerKind:
    """How one kind of object owns its CLB.

    ``kind`` names the tags (``directlb.io/<kind>`` = ``namespace/name``,
    ``directlb.io/<kind>-uid`` = the uid) and the CLB name (``<cluster>-<name_prefix><ns>-<name>``).
    """

    kind: str
    resource: type[Any]  # the lightkube resource: metadata patches
    status_resource: type[Any]  # its status subresource: status.loadBalancer.ingress
    finalizer: str
    lb_id_annotation: str
    name_prefix: str = ""

    @property
    def tag_owner(self) -> str:
        return f"directlb.io/{self.kind}"

    @property
    def tag_uid(self) -> str:
        return f"directlb.io/{self.kind}-uid"


def annotations_of(obj: Any) -> dict[str, str]:
    meta = obj.metadata
    return dict(meta.annotations or {}) if meta is not None else {}


ListenerRecord = dict[str, frozenset[ListenerKey]]


def parse_listener_record(raw: str | None, *, legacy_lb_id: str) -> ListenerRecord:
    """``lb-1=TCP:80,TCP:443;lb-2=UDP:53`` -> the keys we own per adopted CLB id.

    A part without ``=`` is the earlier format, keys only (``TCP:80,HTTPS:443``): they belong
    to ``legacy_lb_id`` (the CLB the object was last synced to), dropped if that is empty.
    Anything malformed is skipped; a CLB with no key is left out."""
    record: dict[str, set[ListenerKey]] = {}
    for part in (raw or "").split(";"):
        lb_id, sep, keys = part.strip().rpartition("=")
        lb_id = lb_id.strip() if sep else legacy_lb_id
        parsed = parse_listener_keys(keys)
        if lb_id and parsed:
            record.setdefault(lb_id, set()).update(parsed)
    return {lb_id: frozenset(keys) for lb_id, keys in record.items()}


def format_listener_record(record: ListenerRecord) -> str:
    return ";".join(
        f"{lb_id}={format_listener_keys(keys)}" for lb_id, keys in sorted(record.items()) if keys
    )


def parse_listener_keys(raw: str | None) -> frozenset[ListenerKey]:
    """``TCP:80,HTTPS:443`` -> listener keys (anything malformed is skipped)."""
    keys: set[ListenerKey] = set()
    for item in (raw or "").split(","):
        protocol, _, port = item.strip().partition(":")
        if protocol and port.isdigit():
            try:
                keys.add(ListenerKey(ListenerProtocol(protocol), int(port)))
            except ValueError:
                continue
    return frozenset(keys)


def format_listener_keys(keys: Iterable[ListenerKey]) -> str:
    return ",".join(sorted(str(k) for k in keys))


@dataclass(frozen=True, order=True)
class Claimant:
    """An object of ours, ordered as listener conflicts are decided: the one created first
    keeps the listener (creationTimestamp, then namespace, name and kind)."""

    created: datetime.datetime
    namespace: str
    name: str
    kind: str

    @classmethod
    def of(cls, obj: Any, kind: OwnerKind) -> Claimant:
        meta = obj.metadata
        created = meta.creationTimestamp
        if isinstance(created, str):
            created = datetime.datetime.fromisoformat(created.replace("Z", "+00:00"))
        if created is None:
            created = _NEVER  # not created yet: after every object that is
        elif created.tzinfo is None:
            created = created.replace(tzinfo=datetime.UTC)
        return cls(created, meta.namespace or "", meta.name or "", kind.kind)

    def __str__(self) -> str:
        return f"{self.kind.capitalize()} {self.namespace}/{self.name}"


def refused_listeners(
    wanted: Iterable[ListenerKey],
    *,
    claimant: Claimant,
    others: Mapping[ListenerKey, Sequence[Claimant]],
) -> dict[ListenerKey, Claimant]:
    """The rule of a shared adopted CLB: the keys of ``wanted`` that ``claimant`` is refused,
    each with the object that keeps it. ``others`` says who else records each key there; the
    first created of them keeps the key if it came before ``claimant``. A key recorded only by
    objects created later is ``claimant``'s to take (they refuse it at their next sync).

    A key is held by whoever records any key on the same port of the same port family: the
    CLB gives TCP, TCP_SSL, HTTP and HTTPS one port space (UDP and QUIC another), so a
    Service's TCP:80 and an Ingress's HTTP:80 cannot both be there (the cloud refuses the
    second with ``InvalidParameter.PortCheckFailed``).

    The one place this is decided: the sync (:meth:`LoadBalancerOwner._share`) and the
    readiness gate (:meth:`ListenerClaims.refused`) must agree on it, or a gate waits for a
    listener that is never synced."""
    holders: dict[tuple[str, int], list[Claimant]] = {}
    for key, claimants in others.items():
        holders.setdefault(_port_space(key), []).extend(claimants)
    refused: dict[ListenerKey, Claimant] = {}
    for key in wanted:
        holder = min(holders.get(_port_space(key), ()), default=None)
        if holder is not None and holder < claimant:
            refused[key] = holder
    return refused


def _port_space(key: ListenerKey) -> tuple[str, int]:
    """The part of a CLB's ports a listener occupies: its port within its protocol family."""
    return key.protocol.port_family, key.port


def recorded_lb_ids(kind: OwnerKind) -> Callable[[Any], list[str]]:
    """The ``BY_RECORDED_LB`` indexer of ``kind``'s store: the CLBs its record names."""

    def index(obj: Any) -> list[str]:
        annotations = annotations_of(obj)
        record = parse_listener_record(
            annotations.get(LISTENERS_ANNOTATION),
            legacy_lb_id=annotations.get(kind.lb_id_annotation) or "",
        )
        return sorted(record)

    return index


class ListenerClaims:
    """Who of ours records which listener keys on which adopted CLB, read from the caches of
    every kind we own (Services and Ingresses, indexed ``BY_RECORDED_LB``): two objects that
    adopt the same CLB must not share a listener (each sync would overwrite the other's, and
    deleting one would delete the listener the other uses)."""

    def __init__(self) -> None:
        self._sources: list[tuple[OwnerKind, Store[Any]]] = []

    def watch(self, kind: OwnerKind, store: Store[Any]) -> None:
        store.add_index(BY_RECORDED_LB, recorded_lb_ids(kind))
        self._sources.append((kind, store))

    def on(self, lb_id: str, *, besides: Claimant) -> dict[ListenerKey, list[Claimant]]:
        """The keys other objects than ``besides`` record on ``lb_id``, and who records each."""
        found: dict[ListenerKey, list[Claimant]] = {}
        for kind, store in self._sources:
            for obj in store.by_index(BY_RECORDED_LB, lb_id):
                claimant = Claimant.of(obj, kind)
                if (claimant.kind, claimant.namespace, claimant.name) == (
                    besides.kind,
                    besides.namespace,
                    besides.name,
                ):
                    continue
                annotations = annotations_of(obj)
                record = parse_listener_record(
                    annotations.get(LISTENERS_ANNOTATION),
                    legacy_lb_id=annotations.get(kind.lb_id_annotation) or "",
                )
                for key in record.get(lb_id, ()):
                    found.setdefault(key, []).append(claimant)
        return found

    def refused(
        self, lb_id: str, wanted: Iterable[ListenerKey], *, claimant: Claimant
    ) -> dict[ListenerKey, Claimant]:
        """The keys of ``wanted`` that ``claimant`` is refused on the adopted CLB ``lb_id``
        (:func:`refused_listeners`), each with the object that keeps it."""
        return refused_listeners(wanted, claimant=claimant, others=self.on(lb_id, besides=claimant))


class LoadBalancerOwner:
    """The CLB side of one reconciler: ``converge`` for a live object, ``release`` for one that
    is going away (or stopped being ours)."""

    def __init__(
        self,
        *,
        client: AsyncClient,
        cloud: CloudLoadBalancers,
        recorder: EventRecorder,
        cluster_id: str,
        kind: OwnerKind,
        claims: ListenerClaims | None = None,
    ) -> None:
        self.client = client
        #: The listeners other objects of ours record on adopted CLBs (None: not looked at).
        self.claims = claims
        self.cloud = cloud
        self.recorder = recorder
        self.cluster_id = cluster_id
        self.kind = kind
        #: (uid, adopted CLB id) already checked for created CLBs left over, this process.
        self._swept: set[tuple[str, str]] = set()

    # --- identity -------------------------------------------------------------------------------

    def tags(self, obj: Any) -> Tags:
        meta = obj.metadata
        return (
            (TAG_CLUSTER, self.cluster_id),
            (self.kind.tag_owner, f"{meta.namespace}/{meta.name}"),
            (self.kind.tag_uid, meta.uid or ""),
        )

    def spec(self, obj: Any, intent: LoadBalancerIntent) -> LoadBalancerSpec:
        meta = obj.metadata
        name = f"{self.cluster_id}-{self.kind.name_prefix}{meta.namespace}-{meta.name}"
        return LoadBalancerSpec(
            name=name[:MAX_NAME],
            tags=self.tags(obj),
            type=LoadBalancerType.INTERNAL if intent.internal else LoadBalancerType.OPEN,
            subnet_id=intent.internal_subnet_id,
            existing_id=intent.existing_id,
            known_id=annotations_of(obj).get(self.kind.lb_id_annotation, ""),
        )

    # --- Kubernetes writes ----------------------------------------------------------------------

    async def add_finalizer(self, obj: Any) -> None:
        """Before the first cloud write: deleting the object then waits for our clean-up."""
        if self.kind.finalizer not in (obj.metadata.finalizers or []):
            await self.patch_finalizers(
                obj,
                lambda finalizers: (
                    finalizers
                    if self.kind.finalizer in finalizers
                    else [*finalizers, self.kind.finalizer]
                ),
            )

    async def patch_finalizers(
        self,
        obj: Any,
        change: Callable[[list[str]], list[str]],
        *,
        meta: dict[str, Any] | None = None,
    ) -> None:
        """Merge-patch ``metadata.finalizers`` to ``change(finalizers)`` (and ``meta`` with it).

        A merge patch replaces the whole list, so it carries the object's resourceVersion as a
        precondition: if anyone wrote the object since (another controller adding its own
        finalizer, say), the API server answers 409 Conflict instead of dropping their change,
        and the list is computed again from the object read afresh. An object deleted meanwhile
        is not an error."""
        current = obj
        for attempt in range(FINALIZER_ATTEMPTS):
            finalizers = list(current.metadata.finalizers or [])
            wanted = change(finalizers)
            if wanted == finalizers and not meta:
                return  # someone else's write already has it so
            body = {
                **(meta or {}),
                "resourceVersion": current.metadata.resourceVersion,
                "finalizers": wanted,
            }
            try:
                await self.client.patch(
                    self.kind.resource,
                    obj.metadata.name,
                    {"metadata": body},
                    namespace=obj.metadata.namespace,
                    patch_type=PatchType.MERGE,
                )
                return
            except ApiError as error:
                if error.status.code == 404:
                    return
                if error.status.code != 409 or attempt == FINALIZER_ATTEMPTS - 1:
                    raise
            try:
                current = await self.client.get(
                    self.kind.resource, obj.metadata.name, namespace=obj.metadata.namespace
                )
            except ApiError as error:
                if error.status.code == 404:
                    return
                raise

    def has_finalizer(self, obj: Any) -> bool:
        return self.kind.finalizer in (obj.metadata.finalizers or [])

    async def patch_meta(self, obj: Any, meta: dict[str, Any]) -> None:
        """Merge-patch ``metadata``; an object deleted meanwhile is not an error."""
        try:
            await self.client.patch(
                self.kind.resource,
                obj.metadata.name,
                {"metadata": meta},
                namespace=obj.metadata.namespace,
                patch_type=PatchType.MERGE,
            )
        except ApiError as error:
            if error.status.code != 404:
                raise

    async def patch_status(self, obj: Any, vips: Sequence[str]) -> bool:
        """``status.loadBalancer.ingress`` = the VIPs; True if that changed anything."""
        ingress = [{"ip": vip} for vip in vips]
        status = obj.status
        current = status.loadBalancer.ingress if status and status.loadBalancer else None
        if [{"ip": i.ip} for i in (current or [])] == ingress:
            return False
        await self.client.patch(
            self.kind.status_resource,
            obj.metadata.name,
            {"status": {"loadBalancer": {"ingress": ingress or None}}},
            namespace=obj.metadata.namespace,
            patch_type=PatchType.MERGE,
        )
        return True

    # --- events ---------------------------------------------------------------------------------

    def report(self, obj: Any, problems: Iterable[Problem]) -> None:
        for problem in problems:
            self.recorder.event(
                obj,
                type=problem.severity.event_type,
                reason=problem.reason,
                message=problem.message,
            )

    def _event(self, obj: Any, type_: str, reason: str, message: str) -> None:
        self.recorder.event(obj, type=type_, reason=reason, message=message)

    # --- the pipeline around "build desired" ----------------------------------------------------

    async def converge(
        self,
        obj: Any,
        *,
        intent: LoadBalancerIntent,
        listeners: Callable[[LoadBalancer], Sequence[Listener]],
        explain: Callable[[CloudError], Problem | None] | None = None,
        synced: Callable[[tuple[Listener, ...]], None] | None = None,
    ) -> float | None:
        """Ensure the CLB, sync ``listeners(lb)`` onto it, report. Returns a requeue delay.

        ``listeners`` gets the CLB because some desired states depend on it (an Ingress's
        default domain is the CLB's VIP). ``explain`` turns a cloud error that is the user's
        own mistake (an adopted CLB that does not exist, ...) into a problem reported under
        its own reason instead of SyncLoadBalancerFailed. ``synced`` is told the listeners
        synced (those of ``listeners(lb)`` not refused on a shared adopted CLB). The finalizer
        must already be there.
        """
        annotations = annotations_of(obj)
        key = f"{obj.metadata.namespace}/{obj.metadata.name}"
        raw_record = annotations.get(LISTENERS_ANNOTATION) or ""
        record = self.listener_record(obj, adopted_id=intent.existing_id)
        # Only what is recorded for this very CLB (a CLB we create records nothing).
        owned = record.get(intent.existing_id, frozenset()) if intent.adopted else frozenset()
        # The first sync announces itself up front, since creating a CLB takes a while.
        first_sync = annotations.get(self.kind.lb_id_annotation) is None
        if first_sync:
            self._event(obj, NORMAL, "EnsuringLoadBalancer", "Ensuring load balancer")
        try:
            lb = await self.cloud.ensure_load_balancer(self.spec(obj, intent))
            desired = tuple(listeners(lb))
            wanted = frozenset(listener.key for listener in desired)
            if intent.adopted:
                desired, wanted, owned = self._share(obj, lb.lb_id, desired, wanted, owned)
            if intent.adopted and not wanted <= owned:
                # Record what we are about to create before creating it.
                record[intent.existing_id] = owned | wanted
                raw_record = format_listener_record(record)
                await self.patch_meta(obj, {"annotations": {LISTENERS_ANNOTATION: raw_record}})
            scope = (owned | wanted) if intent.adopted else None
            [result] = await self.cloud.sync([DesiredLoadBalancer(lb.lb_id, desired, scope)])
            if result.error is not None:
                raise result.error
        except CloudError as error:
            problem = explain(error) if explain is not None else None
            if problem is not None:
                self.report(obj, (problem,))
            else:
                self._event(
                    obj,
                    WARNING,
                    "SyncLoadBalancerFailed",
                    f"Error syncing load balancer: {error.code}: {error.message}",
                )
            log.warning("event=sync_failed %s=%s code=%s", self.kind.kind, key, error.code)
            return RETRY_AFTER
        if synced is not None:
            synced(desired)  # without any listener refused on a shared CLB
        if intent.adopted:
            record[intent.existing_id] = wanted
        # A CLB we created before the object adopted this one: delete it now that the adopted
        # CLB serves. Until that succeeds the CLB id annotation keeps its old value, so a
        # restarted controller still knows to look.
        created_gone = True
        sweep = (obj.metadata.uid or "", lb.lb_id)
        synced_to = annotations.get(self.kind.lb_id_annotation)
        cleaned, requeue = False, None
        if intent.adopted and (synced_to != lb.lb_id or sweep not in self._swept):
            try:
                deleted = await self.delete_created(obj, keep=lb.lb_id)
            except CloudError as error:
                created_gone = False
                self._event(
                    obj,
                    WARNING,
                    "SyncLoadBalancerFailed",
                    f"Error deleting the load balancer created for this {self.kind.kind} before "
                    f"it adopted {lb.lb_id}: {error.code}: {error.message}",
                )
                log.warning("event=cleanup_failed %s=%s code=%s", self.kind.kind, key, error.code)
                requeue = RETRY_AFTER
            else:
                self._swept.add(sweep)
                for lb_id in deleted:
                    cleaned = True
                    self._event(
                        obj,
                        NORMAL,
                        "DeletedLoadBalancer",
                        f"Deleted load balancer {lb_id} created for this {self.kind.kind}: it "
                        f"now uses the adopted load balancer {lb.lb_id}",
                    )
                    log.info(
                        "event=created_lb_deleted %s=%s lb=%s adopted=%s",
                        self.kind.kind,
                        key,
                        lb_id,
                        lb.lb_id,
                    )
        # Listeners of ours on a CLB we no longer adopt (its id changed, or went): the new CLB
        # serves now, so they go, and so does their record.
        for old_id, keys in sorted(record.items()):
            if intent.adopted and old_id == intent.existing_id:
                continue
            try:
                cleaned = (
                    await self.drop_listeners(old_id, self._unclaimed(obj, old_id, keys)) or cleaned
                )
            except CloudError as error:
                self._event(
                    obj,
                    WARNING,
                    "SyncLoadBalancerFailed",
                    f"Error deleting listeners {format_listener_keys(keys)} of ours from "
                    f"load balancer {old_id}: {error.code}: {error.message}",
                )
                log.warning("event=cleanup_failed %s=%s code=%s", self.kind.kind, key, error.code)
                requeue = RETRY_AFTER
                continue
            log.info("event=old_listeners_deleted %s=%s lb=%s", self.kind.kind, key, old_id)
            del record[old_id]
        meta: dict[str, Any] = {}
        if created_gone and synced_to != lb.lb_id:
            meta[self.kind.lb_id_annotation] = lb.lb_id
        if format_listener_record(record) != raw_record:
            meta[LISTENERS_ANNOTATION] = format_listener_record(record) or None
        if meta:
            await self.patch_meta(obj, {"annotations": meta})
        status_changed = await self.patch_status(obj, lb.vips)
        if result.operations or cleaned or meta or status_changed:
            if not first_sync:
                self._event(obj, NORMAL, "EnsuringLoadBalancer", "Ensuring load balancer")
            self._event(obj, NORMAL, "EnsuredLoadBalancer", "Ensured load balancer")
        return requeue

    def _others(self, obj: Any, lb_id: str) -> dict[ListenerKey, list[Claimant]]:
        if self.claims is None:
            return {}
        return self.claims.on(lb_id, besides=Claimant.of(obj, self.kind))

    def _unclaimed(
        self, obj: Any, lb_id: str, keys: frozenset[ListenerKey]
    ) -> frozenset[ListenerKey]:
        """``keys`` but those another object of ours records on ``lb_id`` (its listener now:
        never ours to delete)."""
        others = self._others(obj, lb_id)
        return frozenset(k for k in keys if k not in others)

    def _share(
        self,
        obj: Any,
        lb_id: str,
        desired: tuple[Listener, ...],
        wanted: frozenset[ListenerKey],
        owned: frozenset[ListenerKey],
    ) -> tuple[tuple[Listener, ...], frozenset[ListenerKey], frozenset[ListenerKey]]:
        """On an adopted CLB, leave alone the listeners another object of ours records there.

        A key we want that an object created before ours records is refused
        (:func:`refused_listeners`, which the readiness gate applies too), with a
        ``ListenerConflict`` Warning naming that object (the others are still synced); a key
        recorded by an object created after ours is taken (that object refuses it at its next
        sync). A key we recorded but want no more, if someone else records it too, is
        forgotten rather than deleted. Returns the desired listeners, the keys wanted and the
        keys owned, without what is refused or forgotten."""
        others = self._others(obj, lb_id)
        if not others:
            return desired, wanted, owned
        mine = Claimant.of(obj, self.kind)
        refused = refused_listeners(wanted, claimant=mine, others=others)
        for key, holder in sorted(refused.items(), key=lambda item: str(item[0])):
            self._event(
                obj,
                WARNING,
                LISTENER_CONFLICT,
                f"Port {key.port} ({key}) on load balancer {lb_id} is already used by "
                f"{holder}, created earlier: its listener is not synced for this "
                f"{self.kind.kind}; use another port or another load balancer",
            )
        shared = {key for key in owned - wanted if key in others}
        if refused:
            log.warning(
                "event=listener_conflict %s=%s/%s lb=%s keys=%s",
                self.kind.kind,
                mine.namespace,
                mine.name,
                lb_id,
                format_listener_keys(refused),
            )
        return (
            tuple(listener for listener in desired if listener.key not in refused),
            wanted - refused.keys(),
            owned - refused.keys() - shared,
        )

    def listener_record(self, obj: Any, *, adopted_id: str) -> ListenerRecord:
        """The listener keys we own per adopted CLB, from ``directlb.io/listeners``. Keys in the
        format without CLB ids are taken as on the CLB the object was last synced to (its CLB
        id annotation), else on ``adopted_id``."""
        annotations = annotations_of(obj)
        return parse_listener_record(
            annotations.get(LISTENERS_ANNOTATION),
            legacy_lb_id=annotations.get(self.kind.lb_id_annotation) or adopted_id,
        )

    async def drop_listeners(self, lb_id: str, keys: frozenset[ListenerKey]) -> bool:
        """Delete our listeners ``keys`` from the adopted CLB ``lb_id``, and nothing else there
        (a CLB already gone is fine). True if anything was deleted."""
        if not keys:
            return False
        [result] = await self.cloud.sync([DesiredLoadBalancer(lb_id, (), keys)])
        if result.error is not None:
            if result.error.code == LB_NOT_FOUND:
                return False
            raise result.error
        return bool(result.operations)

    async def delete_created(self, obj: Any, *, keep: str = "") -> list[str]:
        """Delete every CLB carrying all our ownership tags for ``obj`` (the CLBs we created for
        it), except ``keep`` (an adopted CLB, which is never ours to delete). A CLB without our
        tags is never found here. Returns the ids deleted."""
        deleted: list[str] = []
        for lb in await self.cloud.find_load_balancers(self.tags(obj)):
            if lb.lb_id != keep:
                await self.cloud.delete_load_balancer(lb.lb_id)
                deleted.append(lb.lb_id)
        return deleted

    async def release(self, obj: Any, *, existing_lb_id: str) -> None:
        """Undo what we made, then drop the finalizer. A CLB we created is deleted (also one
        left over from before the object adopted ``existing_lb_id``); on an adopted CLB only
        the listeners we recorded go, and so do those recorded on a CLB adopted earlier."""
        try:
            for lb_id, keys in sorted(self.listener_record(obj, adopted_id=existing_lb_id).items()):
                await self.drop_listeners(lb_id, self._unclaimed(obj, lb_id, keys))
            await self.delete_created(obj, keep=existing_lb_id)
            self._swept.discard((obj.metadata.uid or "", existing_lb_id))
        except CloudError as error:
            self._event(
                obj,
                WARNING,
                "SyncLoadBalancerFailed",
                f"Error deleting load balancer: {error.code}: {error.message}",
            )
            raise
        self._event(obj, NORMAL, "DeletedLoadBalancer", "Deleted load balancer")
        meta: dict[str, Any] = {}
        if obj.metadata.deletionTimestamp is None:
            # Still there but no longer ours: forget the CLB on the object too.
            meta["annotations"] = {self.kind.lb_id_annotation: None, LISTENERS_ANNOTATION: None}
            await self.patch_status(obj, ())
        await self.patch_finalizers(
            obj, lambda finalizers: [f for f in finalizers if f != self.kind.finalizer], meta=meta
        )
