"""What the Service (layer 4) and Ingress (layer 7) reconcilers share: owning one CLB on behalf
of one Kubernetes object.

Both reconcilers run the same pipeline; only "build desired" differs (the service model or the
ingress model). Everything around it is here, written once:

* **the CLB**: its :class:`~directlb.cloud.port.LoadBalancerSpec` (name, ownership tags, OPEN
  or INTERNAL, or the id of an existing CLB to adopt), found by tags, created, or adopted;
* **the finalizer**, added before the first cloud write and removed once the cloud is clean;
* **the sync** through the cloud port, with the listener scope on an adopted CLB: the keys we
  own there are recorded in the annotation ``directlb.io/listeners`` *before* we create them,
  so a crash in between never leaves a listener of ours that no later run would delete;
* **the report**: the CLB id annotation, ``status.loadBalancer.ingress[].ip``, and the Events
  EnsuringLoadBalancer, EnsuredLoadBalancer, SyncLoadBalancerFailed, DeletedLoadBalancer, plus
  one per model problem (the problem's reason, Warning or Normal by its severity);
* **the clean-up**: a CLB we created is deleted (found by its tags, so a restart finds it); on
  an adopted CLB only our listeners go, and the CLB itself is never deleted.

What differs between the kinds is data (:class:`OwnerKind`): the resource and its status
subresource, the finalizer, the CLB id annotation, the tag names. Events only say what changed:
a resync of a converged object records nothing (problems aside, which the recorder folds into
one Event with a count).

Level-triggered and idempotent: every step finds what an earlier, interrupted run did (tags on
the cloud side, the finalizer and annotations on the object).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
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
    ) -> None:
        self.client = client
        self.cloud = cloud
        self.recorder = recorder
        self.cluster_id = cluster_id
        self.kind = kind

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
        finalizers = list(obj.metadata.finalizers or [])
        if self.kind.finalizer not in finalizers:
            await self.patch_meta(obj, {"finalizers": [*finalizers, self.kind.finalizer]})

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
    ) -> float | None:
        """Ensure the CLB, sync ``listeners(lb)`` onto it, report. Returns a requeue delay.

        ``listeners`` gets the CLB because some desired states depend on it (an Ingress's
        default domain is the CLB's VIP). ``explain`` turns a cloud error that is the user's
        own mistake (an adopted CLB that does not exist, ...) into a problem reported under
        its own reason instead of SyncLoadBalancerFailed. The finalizer must already be there.
        """
        annotations = annotations_of(obj)
        key = f"{obj.metadata.namespace}/{obj.metadata.name}"
        owned = parse_listener_keys(annotations.get(LISTENERS_ANNOTATION))
        # The first sync announces itself up front, since creating a CLB takes a while.
        first_sync = annotations.get(self.kind.lb_id_annotation) is None
        if first_sync:
            self._event(obj, NORMAL, "EnsuringLoadBalancer", "Ensuring load balancer")
        try:
            lb = await self.cloud.ensure_load_balancer(self.spec(obj, intent))
            desired = tuple(listeners(lb))
            wanted = frozenset(listener.key for listener in desired)
            if intent.adopted and not wanted <= owned:
                # Record what we are about to create before creating it.
                await self.patch_meta(
                    obj,
                    {"annotations": {LISTENERS_ANNOTATION: format_listener_keys(owned | wanted)}},
                )
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
        meta: dict[str, Any] = {}
        if annotations.get(self.kind.lb_id_annotation) != lb.lb_id:
            meta[self.kind.lb_id_annotation] = lb.lb_id
        if intent.adopted and owned != wanted:
            meta[LISTENERS_ANNOTATION] = format_listener_keys(wanted)
        if meta:
            await self.patch_meta(obj, {"annotations": meta})
        status_changed = await self.patch_status(obj, lb.vips)
        if result.operations or meta or status_changed:
            if not first_sync:
                self._event(obj, NORMAL, "EnsuringLoadBalancer", "Ensuring load balancer")
            self._event(obj, NORMAL, "EnsuredLoadBalancer", "Ensured load balancer")
        return None

    async def release(self, obj: Any, *, existing_lb_id: str) -> None:
        """Undo what we made, then drop the finalizer. A CLB we created is deleted; on an
        adopted CLB (``existing_lb_id``) only the listeners we recorded go."""
        annotations = annotations_of(obj)
        try:
            if existing_lb_id:
                owned = parse_listener_keys(annotations.get(LISTENERS_ANNOTATION))
                if owned:
                    [result] = await self.cloud.sync(
                        [DesiredLoadBalancer(existing_lb_id, (), owned)]
                    )
                    if result.error is not None and result.error.code != LB_NOT_FOUND:
                        raise result.error
            else:
                for lb in await self.cloud.find_load_balancers(self.tags(obj)):
                    await self.cloud.delete_load_balancer(lb.lb_id)
        except CloudError as error:
            self._event(
                obj,
                WARNING,
                "SyncLoadBalancerFailed",
                f"Error deleting load balancer: {error.code}: {error.message}",
            )
            raise
        self._event(obj, NORMAL, "DeletedLoadBalancer", "Deleted load balancer")
        finalizers = [f for f in obj.metadata.finalizers or [] if f != self.kind.finalizer]
        patch: dict[str, Any] = {"finalizers": finalizers}
        if obj.metadata.deletionTimestamp is None:
            # Still there but no longer ours: forget the CLB on the object too.
            patch["annotations"] = {self.kind.lb_id_annotation: None, LISTENERS_ANNOTATION: None}
            await self.patch_status(obj, ())
        await self.patch_meta(obj, patch)
