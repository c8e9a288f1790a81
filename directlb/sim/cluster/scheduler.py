"""The scheduler: binds pending pods to nodes through ``pods/binding``.

A pod is pending when it has no ``spec.nodeName``, asks for ``default-scheduler`` and is not
being deleted. A node fits when it is Ready, not cordoned (``spec.unschedulable``; a pod
tolerating ``node.kubernetes.io/unschedulable`` may still go), every NoSchedule/NoExecute taint is
tolerated, ``nodeSelector`` and required node affinity (``matchExpressions`` with In, NotIn,
Exists, DoesNotExist, Gt, Lt; ``matchFields`` on ``metadata.name``) match, and it holds fewer
pods than its allocatable ``pods``. Among fitting nodes the pod goes where its controller (its
controller ownerReference) has the fewest pods, then to the zone where it has the fewest, then to
the least loaded node, then by name: replicas spread over nodes and zones.

A pod that fits nowhere gets ``PodScheduled=False``, reason ``Unschedulable``, and the real
scheduler's message (``0/3 nodes are available: 1 node(s) were unschedulable, 2 node(s) didn't
match Pod's node affinity/selector. preemption: …``), plus a ``FailedScheduling`` Event; it is
tried again whenever a node changes or a pod leaves a node. Bound pods get a ``Scheduled`` Event.

Not modelled: resource requests, pod (anti-)affinity, topology spread constraints, preemption,
host ports, volumes.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from directlb.sim import meta
from directlb.sim.api import Api, WriteOptions
from directlb.sim.cluster.config import ClusterConfig
from directlb.sim.cluster.machinery import (
    NODES,
    PODS,
    TAINT_NOT_READY,
    TAINT_UNSCHEDULABLE,
    ZONE_LABEL,
    KeyedLoop,
    record_event,
    resource,
    set_condition,
)
from directlb.sim.contracts import Obj, StatusError
from directlb.sim.storage import DELETED, Event, ObjKey, StoreKey

SCHEDULER = "default-scheduler"
SCHEDULER_OPTS = WriteOptions(user="system:kube-scheduler", field_validation="Ignore")

UNSCHEDULABLE = "node(s) were unschedulable"
SELECTOR = "node(s) didn't match Pod's node affinity/selector"
TOO_MANY_PODS = "Too many pods"


def _owner(pod: Obj) -> str | None:
    for ref in pod["metadata"].get("ownerReferences") or []:
        if isinstance(ref, dict) and ref.get("controller"):
            return str(ref.get("uid"))
    return None


def _pending(pod: Obj) -> bool:
    spec = pod.get("spec") or {}
    return (
        not spec.get("nodeName")
        and spec.get("schedulerName", SCHEDULER) == SCHEDULER
        and not pod["metadata"].get("deletionTimestamp")
        and (pod.get("status") or {}).get("phase", "Pending") == "Pending"
    )


def _tolerates(tolerations: list[Any], taint: Obj) -> bool:
    for t in tolerations:
        if not isinstance(t, dict):
            continue
        if t.get("effect") and t.get("effect") != taint.get("effect"):
            continue
        operator = t.get("operator") or "Equal"
        if not t.get("key") and operator == "Exists":
            return True
        if t.get("key") != taint.get("key"):
            continue
        if operator == "Exists" or (t.get("value") or "") == (taint.get("value") or ""):
            return True
    return False


def _expression(requirement: Obj, value: str | None) -> bool:
    operator = requirement.get("operator")
    values = [str(v) for v in requirement.get("values") or []]
    if operator == "In":
        return value is not None and value in values
    if operator == "NotIn":
        return value is None or value not in values
    if operator == "Exists":
        return value is not None
    if operator == "DoesNotExist":
        return value is None
    if operator in ("Gt", "Lt") and value is not None and values:
        try:
            left, right = int(value), int(values[0])
        except ValueError:
            return False
        return left > right if operator == "Gt" else left < right
    return False


def _affinity_matches(pod: Obj, node: Obj) -> bool:
    spec = pod.get("spec") or {}
    labels: dict[str, str] = node["metadata"].get("labels") or {}
    for key, value in (spec.get("nodeSelector") or {}).items():
        if labels.get(key) != value:
            return False
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = [t for t in required.get("nodeSelectorTerms") or [] if isinstance(t, dict)]
    if not terms:
        return True
    fields = {"metadata.name": str(node["metadata"]["name"])}
    for term in terms:  # terms are ORed, requirements within a term ANDed
        expressions = term.get("matchExpressions") or []
        field_reqs = term.get("matchFields") or []
        if not expressions and not field_reqs:
            continue
        if all(_expression(r, labels.get(str(r.get("key")))) for r in expressions) and all(
            _expression(r, fields.get(str(r.get("key")))) for r in field_reqs
        ):
            return True
    return False


def _taint_text(taint: Obj) -> str:
    return f"node(s) had untolerated taint {{{taint.get('key')}: {taint.get('value') or ''}}}"


class Scheduler(KeyedLoop):
    """Binds pending pods; keeps per-node and per-owner pod counts from store events."""

    def __init__(self, *, api: Api, config: ClusterConfig) -> None:
        super().__init__("scheduler")
        self.api = api
        self.config = config
        self.pods_info = resource(api, "", "v1", "pods")
        self._pending: set[ObjKey] = set()
        self._placed: dict[ObjKey, tuple[str, str | None]] = {}  # pod -> (node, owner)
        self._per_node: Counter[str] = Counter()
        # owner -> node -> pods: scoring reads one owner's row, not every owner's.
        self._per_owner: dict[str | None, Counter[str]] = {}
        self._failed: dict[ObjKey, str] = {}  # pod -> last FailedScheduling message
        for key, stored in self.api.store.items(PODS, None):
            self._note(key, stored.obj)
        api.store.listeners.append(self._on_event)

    async def stop(self) -> None:
        if self._on_event in self.api.store.listeners:
            self.api.store.listeners.remove(self._on_event)
        await super().stop()

    # ----- bookkeeping from events ------------------------------------------------------------

    def _on_event(self, store_key: StoreKey, event: Event) -> None:
        if store_key == NODES:
            self._retry_all()
        elif store_key == PODS:
            if event.type == DELETED:
                freed = self._forget(event.key)
                self._pending.discard(event.key)
                self._failed.pop(event.key, None)
                if freed:
                    self._retry_all()
            else:
                self._note(event.key, event.new.obj)

    def _note(self, key: ObjKey, pod: Obj) -> None:
        node = (pod.get("spec") or {}).get("nodeName")
        if node:
            self._pending.discard(key)
            self._failed.pop(key, None)
            if key not in self._placed:
                owner = _owner(pod)
                self._placed[key] = (str(node), owner)
                self._per_node[str(node)] += 1
                self._per_owner.setdefault(owner, Counter())[str(node)] += 1
        elif _pending(pod):
            if key not in self._pending:
                self._pending.add(key)
                self.mark(key)
        else:
            self._pending.discard(key)

    def _forget(self, key: ObjKey) -> bool:
        placed = self._placed.pop(key, None)
        if placed is None:
            return False
        node, owner = placed
        self._per_node[node] -= 1
        self._per_owner[owner][node] -= 1
        return True

    def _retry_all(self) -> None:
        for key in self._pending:
            self.mark(key)

    # ----- scheduling -----------------------------------------------------------------------

    async def sync(self, key: ObjKey) -> bool:
        stored = self.api.store.get(PODS, key)
        if stored is None or not _pending(stored.obj):
            self._pending.discard(key)
            return False
        pod = stored.obj
        nodes = [s.obj for _, s in self.api.store.items(NODES, None)]
        fits, reasons = self._filter(pod, nodes)
        if not fits:
            return await self._unschedulable(stored.copy(), len(nodes), reasons)
        owner = _owner(pod)
        per_zone: Counter[str] = Counter()
        zone_of = {str(n["metadata"]["name"]): _zone(n) for n in nodes}
        owned: Counter[str] = self._per_owner.get(owner, Counter()) if owner else Counter()
        for node, count in owned.items():
            per_zone[zone_of.get(node, "")] += count

        def score(node: Obj) -> tuple[int, int, int, str]:
            name = str(node["metadata"]["name"])
            mine = owned[name] if owner else 0
            zone = per_zone[_zone(node)] if owner else 0
            return (mine, zone, self._per_node[name], name)

        chosen = min(fits, key=score)
        name = str(chosen["metadata"]["name"])
        namespace = key[0]
        try:
            await self.api.bind(
                self.pods_info,
                namespace=namespace,
                name=key[1],
                body={
                    "apiVersion": "v1",
                    "kind": "Binding",
                    "metadata": {"name": key[1], "namespace": namespace},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": name},
                },
                opts=SCHEDULER_OPTS,
            )
        except StatusError as error:
            if error.code in (404, 409):
                return False  # gone, bound or being deleted meanwhile
            raise
        await record_event(
            self.api,
            involved=pod,
            reason="Scheduled",
            message=f"Successfully assigned {namespace}/{key[1]} to {name}",
            component=SCHEDULER,
        )
        return False

    def _filter(self, pod: Obj, nodes: list[Obj]) -> tuple[list[Obj], Counter[str]]:
        spec = pod.get("spec") or {}
        tolerations: list[Any] = spec.get("tolerations") or []
        fits: list[Obj] = []
        reasons: Counter[str] = Counter()
        for node in nodes:
            reason = self._unfit(node, pod, tolerations)
            if reason is None:
                fits.append(node)
            else:
                reasons[reason] += 1
        return fits, reasons

    def _unfit(self, node: Obj, pod: Obj, tolerations: list[Any]) -> str | None:
        """Why ``pod`` cannot go to ``node`` (the first failing filter, as the real one)."""
        node_spec = node.get("spec") or {}
        unschedulable_taint = {"key": TAINT_UNSCHEDULABLE, "effect": "NoSchedule"}
        if node_spec.get("unschedulable") and not _tolerates(tolerations, unschedulable_taint):
            return UNSCHEDULABLE
        taints = [t for t in node_spec.get("taints") or [] if isinstance(t, dict)]
        ready = next(
            (
                c
                for c in (node.get("status") or {}).get("conditions") or []
                if isinstance(c, dict) and c.get("type") == "Ready"
            ),
            None,
        )
        if ready is None or ready.get("status") != "True":
            not_ready = {"key": TAINT_NOT_READY, "effect": "NoSchedule"}
            if not any(t.get("key") == TAINT_NOT_READY for t in taints):
                taints.append(not_ready)
        for taint in taints:
            if taint.get("effect") not in ("NoSchedule", "NoExecute"):
                continue
            if taint.get("key") == TAINT_UNSCHEDULABLE and node_spec.get("unschedulable"):
                continue  # already judged above
            if not _tolerates(tolerations, taint):
                return _taint_text(taint)
        if not _affinity_matches(pod, node):
            return SELECTOR
        allocatable = ((node.get("status") or {}).get("allocatable") or {}).get("pods")
        try:
            limit = int(allocatable) if allocatable is not None else None
        except (TypeError, ValueError):
            limit = None
        if limit is not None and self._per_node[str(node["metadata"]["name"])] >= limit:
            return TOO_MANY_PODS
        return None

    async def _unschedulable(self, pod: Obj, total: int, reasons: Counter[str]) -> bool:
        if total == 0:
            message = "no nodes available to schedule pods"
        else:
            parts = sorted(f"{count} {reason}" for reason, count in reasons.items())
            message = (
                f"0/{total} nodes are available: {', '.join(parts)}. preemption: 0/{total} "
                f"nodes are available: {total} Preemption is not helpful for scheduling."
            )
        m = pod["metadata"]
        key = (str(m.get("namespace") or ""), str(m["name"]))
        status = pod.setdefault("status", {})
        conditions = status.setdefault("conditions", [])
        before = [dict(c) for c in conditions]
        set_condition(
            conditions,
            type_="PodScheduled",
            status="False",
            reason="Unschedulable",
            message=message,
            now=meta.timestamp(),
        )
        if conditions != before:
            try:
                await self.api.update(
                    self.pods_info,
                    namespace=key[0],
                    name=key[1],
                    body=pod,
                    subresource="status",
                    opts=SCHEDULER_OPTS,
                )
            except StatusError as error:
                if error.code == 409:
                    self.mark(key)
                    return False
                if error.code == 404:
                    return False
                raise
        if self._failed.get(key) != message:
            self._failed[key] = message
            await record_event(
                self.api,
                involved=pod,
                reason="FailedScheduling",
                message=message,
                component=SCHEDULER,
                warning=True,
            )
        return False


def _zone(node: Obj) -> str:
    return str((node["metadata"].get("labels") or {}).get(ZONE_LABEL, ""))
