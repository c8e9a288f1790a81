"""The readiness-gate controller: a pod with our gate turns Ready only once the CLB has it.

Our admission webhook gives every pod behind a direct-access Service the readiness gate
``cloud.tencent.com/load-balancer-backendgroup-ready``. The kubelet keeps such a pod un-Ready
until a condition of that type is True, and the Deployment controller waits for Ready before it
deletes an old pod. This controller sets the condition, so that a rolling update advances at
the pace of the load balancer rather than of the containers (the seed's "only after the TKE
access-layer components confirm that the backend binding is successful and the health check
is passed").

**Where a pod should be bound** comes from :class:`BindingSource` s, one per kind of direct
backend: :class:`ServiceBindings` (layer 4, here) asks the Service model
(:func:`directlb.model.service.desired_for_service`, the very function the Service controller
syncs from) which listeners of which CLB should carry the pod's ``ip:port``. An Ingress source
(layer 7: the same, per rule) plugs in with :meth:`GateController.add_source`. Each source
answers, for one pod, an :class:`Expectation` per backend that selects it: the
:class:`Binding` s (CLB, listener, rule or None, target) it should have, or why it cannot have
them yet (:class:`Waiting`).

**The decision** (:func:`decide`, pure) compares those bindings with what the CLB reports
(``DescribeTargetHealth``):

* no backend selects the pod: True, ``NoLoadBalancerBackend`` (a gate must never hold a pod
  that nothing will ever bind). A backend refused every listener that would carry the pod, on
  a CLB it shares with an object of ours created earlier (``ListenerConflict``), expects
  nothing of it, so it counts as not selecting it;
* every binding registered and healthy: True, ``LoadBalancerBackendHealthy``;
* otherwise False, with the first blocking reason in this order: ``NotDirectlyReachable`` (the
  CLB cannot reach the pod's IP), ``HealthCheckFailed``, ``BackendNotRegistered``,
  ``HealthCheckPending``; the message names the CLB, the listener (and rule) and the target.

**Never stuck** (:func:`with_timeout`): a gate still False ``--readiness-gate-timeout`` after
the pod's containers became ready turns True with reason ``Timeout`` and a Warning Event. The
clock starts at the ``ContainersReady`` transition: before it the pod cannot be Ready anyway,
and it is a time the API server keeps, so a restarted controller keeps counting.

**Polling** (:class:`HealthPoller`): health is asked only for the CLBs of pods whose gate is not
True yet, all of them in one ``target_health`` call (30 CLBs per DescribeTargetHealth), at most
once per ``period`` (2 s) per CLB. A change in a CLB's report wakes the pods that wait on it at
once; every pending pod is also re-checked every ``period``, a fixed delay (the work queue's
``add_after``), never the exponential backoff of failures. A True gate is final for that pod
(its UID): nothing polls for it any more.

**Writing** (:func:`condition_patch`): a strategic-merge patch of ``pods/status`` that carries
only our condition (the conditions list merges by ``type``, so the kubelet's are untouched) and
the pod's UID (a pod deleted and recreated under the same name refuses a decision made for the
old one: 422). Nothing is written when status, reason and message are what the pod has, or
what we wrote last and the cache does not show yet.

**Unprotected pods** (:class:`UnprotectedPods`): pods selected by a direct-access Service but
created before it have no gate (the webhook only acts at creation). One Warning Event on the
Service names them: rolling updates of those pods are not protected until they are recreated.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.resources.core_v1 import Pod, Service
from lightkube.types import PatchType

from directlb.cloud.port import CloudLoadBalancers, CloudQuotas, TargetHealth
from directlb.controllers.lbowner import Claimant, ListenerClaims
from directlb.controllers.metrics import Metrics
from directlb.controllers.service import (
    BY_SERVICE,
    LB_ID_ANNOTATION,
    SERVICE_KIND,
    desired_from_caches,
    endpoint_views,
    known_cluster_version,
    pod_view,
    service_view,
    slice_service,
)
from directlb.kube.events import WARNING, EventRecorder
from directlb.kube.informer import DELETED, Event, Store, key_of
from directlb.kube.mapping import BY_NAMESPACE, is_resync, selects, services_for_pod
from directlb.kube.transport import TRANSIENT
from directlb.kube.version import VersionCache
from directlb.model.service import (
    BackendMode,
    IPNetwork,
    KubeVersion,
    ServiceDesired,
    directly_routable,
    effective_mode,
    is_ours,
)
from directlb.plan.state import Listener, ListenerKey, RuleKey, TargetKind
from directlb.webhook.server import GATE

log = logging.getLogger("directlb.controllers.gate")

#: Seconds between two checks of a gate that is not True yet (fixed, never backed off).
RECHECK_PERIOD = 2.0
#: Health older than this many periods (the cloud failing meanwhile) is not trusted.
STALE_PERIODS = 3
#: A report this fraction of the period old is due (a little early: the period is a target,
#: and a read that comes back just short of it must not wait a whole period more).
DUE_FRACTION = 0.95
POLL_KEY = "target-health"

# Condition reasons. True:
HEALTHY = "LoadBalancerBackendHealthy"
NO_BACKEND = "NoLoadBalancerBackend"
TIMEOUT = "Timeout"
# False, in the order decide() reports them when several apply:
NOT_REACHABLE = "NotDirectlyReachable"
CHECK_FAILED = "HealthCheckFailed"
NOT_REGISTERED = "BackendNotRegistered"
CHECK_PENDING = "HealthCheckPending"
_PRIORITY = (NOT_REACHABLE, CHECK_FAILED, NOT_REGISTERED, CHECK_PENDING)

# Events
TIMEOUT_EVENT = "ReadinessGateTimeout"
UNPROTECTED_EVENT = "PodsWithoutReadinessGate"


# --- values ------------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Binding:
    """One place where a pod's target should be: a CLB listener (layer 4) or rule (layer 7)."""

    lb_id: str
    listener: ListenerKey
    rule: RuleKey | None
    ip: str
    port: int

    @property
    def where(self) -> str:
        rule = f" rule {self.rule}" if self.rule is not None else ""
        return f"CLB {self.lb_id} listener {self.listener}{rule}"

    @property
    def target(self) -> str:
        return f"{self.ip}:{self.port}"


@dataclass(frozen=True)
class Waiting:
    """Why a backend that selects the pod cannot have its bindings yet (a False reason)."""

    reason: str  # BackendNotRegistered or NotDirectlyReachable
    message: str


@dataclass(frozen=True)
class Expectation:
    """What one direct backend (a Service, an Ingress) that selects a pod expects of it.

    Either ``bindings`` (where the pod's target should be registered and healthy) or
    ``waiting`` (why it cannot be bound yet). ``source`` names the backend in messages
    (``Service default/web``).
    """

    source: str
    bindings: tuple[Binding, ...] = ()
    waiting: Waiting | None = None

    @property
    def lb_ids(self) -> frozenset[str]:
        return frozenset(b.lb_id for b in self.bindings)


@dataclass(frozen=True)
class Decision:
    """The gate condition to write: status True or False, a stable reason, a message."""

    ready: bool
    reason: str
    message: str

    @property
    def status(self) -> str:
        return "True" if self.ready else "False"


class BindingSource(Protocol):
    """Where pods should be bound, for one kind of direct backend.

    :class:`ServiceBindings` is the layer-4 one. An Ingress source (layer 7) implements the
    same method, returning per selecting Ingress the rules (``Binding.rule`` set) that should
    carry the pod, computed with the Ingress model the Ingress controller syncs from; then
    :meth:`GateController.add_source` it and call :meth:`GateController.enqueue_namespace` from
    its informers' handlers (an Ingress change may concern any waiting pod of its namespace).
    """

    def expectations(self, pod: Any) -> Sequence[Expectation]:
        """An :class:`Expectation` per direct backend of this kind that selects ``pod`` (a
        lightkube Pod from the cache); empty when none does. Reads caches only, no I/O."""
        ...


@runtime_checkable
class RefreshingSource(Protocol):
    """A :class:`BindingSource` whose expectations depend on values read with I/O (the
    cloud's quotas, the cluster version): the gate controller awaits ``refresh`` before it
    asks for expectations, and the source caches what it reads."""

    async def refresh(self) -> None: ...


# --- the decision (pure) -------------------------------------------------------------------------


HealthIndex = Mapping[tuple[str, ListenerKey, RuleKey | None, str, int], TargetHealth]


def index_health(health: Mapping[str, Sequence[TargetHealth]]) -> HealthIndex:
    """``target_health``'s answer, by (CLB, listener, rule, ip, port)."""
    return {(h.lb_id, h.listener, h.rule, h.ip, h.port): h for hs in health.values() for h in hs}


def _problem(
    binding: Binding, health: Mapping[str, Sequence[TargetHealth]], index: HealthIndex
) -> tuple[str, str] | None:
    """(reason, message) if ``binding`` is not yet registered and healthy; None if it is."""
    if binding.lb_id not in health:
        return (
            CHECK_PENDING,
            f"waiting for the health of target {binding.target} on {binding.where}",
        )
    found = index.get((binding.lb_id, binding.listener, binding.rule, binding.ip, binding.port))
    if found is None:
        return NOT_REGISTERED, f"target {binding.target} is not registered on {binding.where}"
    if found.healthy:
        return None
    if found.detail == "Dead":
        return (
            CHECK_FAILED,
            f"target {binding.target} fails the health check of {binding.where} (Dead): check "
            "that the pod answers on that port",
        )
    detail = found.detail or "Unknown"
    return (
        CHECK_PENDING,
        f"target {binding.target} has not passed the health check of {binding.where} yet "
        f"({detail})",
    )


def decide(
    expectations: Sequence[Expectation], health: Mapping[str, Sequence[TargetHealth]]
) -> Decision:
    """The gate of one pod, from what its backends expect and what the CLBs report.

    ``health`` is ``target_health``'s answer by CLB id; a CLB missing from it has not been
    observed yet (HealthCheckPending). See the module docstring for the reasons and their order.
    """
    if not expectations:
        return Decision(True, NO_BACKEND, "no direct-access load balancer backend selects the pod")
    index = index_health(health)
    problems: list[tuple[str, str]] = []
    healthy: list[Binding] = []
    for expectation in expectations:
        if expectation.waiting is not None:
            problems.append((expectation.waiting.reason, expectation.waiting.message))
            continue
        if not expectation.bindings:
            problems.append(
                (NOT_REGISTERED, f"{expectation.source} does not bind the pod on its CLB yet")
            )
            continue
        for binding in sorted(expectation.bindings):
            problem = _problem(binding, health, index)
            if problem is None:
                healthy.append(binding)
            else:
                problems.append(problem)
    if not problems:
        places = sorted({b.where.removeprefix("CLB ") for b in healthy})
        return Decision(True, HEALTHY, f"registered and healthy on CLB {', '.join(places)}")
    reason, message = min(problems, key=lambda p: _PRIORITY.index(p[0]))
    others = len(problems) - 1
    if others:
        message += f" (and {others} more)"
    return Decision(False, reason, message)


def with_timeout(decision: Decision, *, waited: float | None, timeout: float) -> Decision:
    """True with reason Timeout once a False gate has waited ``timeout`` seconds (``waited``
    None: the clock has not started, the pod's containers are not ready)."""
    if decision.ready or waited is None or waited < timeout:
        return decision
    return Decision(
        True,
        TIMEOUT,
        f"the load balancer did not confirm the pod within {timeout:g}s of its containers being "
        f"ready (last: {decision.reason}: {decision.message}); set True so that the rollout "
        "can proceed",
    )


@dataclass(frozen=True)
class Current:
    """Our condition as the pod has it (None fields: the pod has no such condition)."""

    status: str | None = None
    reason: str | None = None
    message: str | None = None
    last_transition: str | None = None  # RFC 3339, as on the wire


def current_condition(pod: Any) -> Current:
    for condition in (pod.status.conditions if pod.status else None) or []:
        if condition.type == GATE:
            stamp = condition.lastTransitionTime
            return Current(
                status=condition.status,
                reason=condition.reason,
                message=condition.message,
                last_transition=_rfc3339(stamp) if isinstance(stamp, datetime) else stamp,
            )
    return Current()


def unchanged(current: Current, decision: Decision) -> bool:
    return (current.status, current.reason or "", current.message or "") == (
        decision.status,
        decision.reason,
        decision.message,
    )


def condition_patch(
    uid: str, decision: Decision, current: Current, *, now: datetime
) -> dict[str, Any]:
    """The strategic-merge patch of ``pods/status`` that sets our condition and nothing else.

    ``conditions`` merges by ``type``, so the other conditions stay as they are; ``metadata.uid``
    is a precondition (a recreated pod of the same name has another UID and refuses the patch).
    ``lastTransitionTime`` moves only when the status does.
    """
    moved = current.status != decision.status or current.last_transition is None
    return {
        "metadata": {"uid": uid},
        "status": {
            "conditions": [
                {
                    "type": GATE,
                    "status": decision.status,
                    "reason": decision.reason,
                    "message": decision.message,
                    "lastTransitionTime": _rfc3339(now) if moved else current.last_transition,
                }
            ]
        },
    }


def _rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def has_gate(pod: Any) -> bool:
    gates = (pod.spec.readinessGates if pod.spec else None) or []
    return any(g.conditionType == GATE for g in gates)


def containers_ready_since(pod: Any) -> datetime | None:
    """When the pod's containers became ready (the ``ContainersReady`` condition turned True),
    or None while they are not."""
    for condition in (pod.status.conditions if pod.status else None) or []:
        if condition.type == "ContainersReady":
            if condition.status != "True":
                return None
            stamp = condition.lastTransitionTime
            if isinstance(stamp, datetime):
                return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
            # Ready without a time (should not happen): count from the pod's start.
            started = pod.status.startTime or pod.metadata.creationTimestamp
            return started if isinstance(started, datetime) else None
    return None


def _finished(pod: Any) -> bool:
    phase = pod.status.phase if pod.status else None
    return pod.metadata.deletionTimestamp is not None or phase in ("Succeeded", "Failed")


# --- the layer-4 source --------------------------------------------------------------------------


class ServiceBindings:
    """:class:`BindingSource` for direct-access ``type: LoadBalancer`` Services.

    For each Service of the pod's namespace whose selector matches the pod and which is ours and
    in direct mode, the Service model (the same function and the same views as the Service
    controller) gives the targets each listener should have; the pod's are its bindings, on the
    CLB named by the Service's ``service.kubernetes.io/loadbalance-id`` annotation (written by
    the Service controller once the CLB exists). When the model does not bind the pod, the
    expectation says why: not reachable from the CLB, containers not ready, not yet in the
    Service's endpoints, or the Service's own problems (see its Events).

    The model's inputs are built exactly as the Service controller builds them, by the same
    function (:func:`~directlb.controllers.service.desired_from_caches`): the Service's
    EndpointSlices, only the pods they name, the cloud's quotas (``cloud``, read by
    :meth:`refresh`) and the cluster version (``version``, the Service controller's
    :class:`~directlb.kube.version.VersionCache`: below 1.12 a direct Service is bound through
    its nodes, so it expects nothing of its pods).

    The model runs once per Service and change, not once per pod: its answer is kept per
    Service until that Service, one of its EndpointSlices or a pod it selects changes (the same
    mapping that re-syncs it in the Service controller), or the quotas or version change. A
    resync changes nothing and keeps it.

    On a CLB several objects adopt, a listener an object created earlier records is refused to
    this Service (``ListenerConflict``) and never synced for it, so the gate expects none of
    its bindings: ``claims`` (the Service controller's :class:`ListenerClaims`) decides which,
    by the rule the sync uses. It is read at each check, not kept with the model's answer:
    another object's record changes it, and that is no event of this Service. Reading it
    costs one index look-up, and only for a Service that adopts a CLB.
    """

    def __init__(
        self,
        *,
        services: Store[Any],
        slices: Store[Any],
        pods: Store[Any],
        direct_routable_cidrs: Sequence[IPNetwork] = (),
        cloud: CloudLoadBalancers | None = None,
        version: VersionCache | None = None,
        claims: ListenerClaims | None = None,
    ) -> None:
        self.services = services
        self.slices = slices
        self.pods = pods
        self.cidrs = tuple(direct_routable_cidrs)
        self.cloud = cloud
        self.version = version
        #: Who records which listener on adopted CLBs (None: no listener is ever refused).
        self.claims = claims
        #: The cloud's quotas as :meth:`refresh` last read them (Tencent's defaults before).
        self.quotas = CloudQuotas()
        #: How many times the model ran (the memo missed).
        self.runs = 0
        self._memo: dict[str, tuple[str, CloudQuotas, KubeVersion | None, ServiceDesired]] = {}

    async def refresh(self) -> None:
        """Read the quotas and the cluster version, as the Service controller does before each
        sync. Both are cached where they come from (an API call at most hourly), so the gate
        controller calls this before each reconcile."""
        if self.cloud is not None:
            self.quotas = await self.cloud.quotas()
        if self.version is not None:
            await self.version.get()

    @property
    def cluster_version(self) -> KubeVersion | None:
        return known_cluster_version(self.version) if self.version is not None else None

    def invalidate(self, key: str) -> None:
        """Forget the model's answer for the Service ``key`` (``namespace/name``)."""
        self._memo.pop(key, None)

    def observe(self, event: Event[Any]) -> None:
        """An informer event of a Service, an EndpointSlice or a Pod: forget the answers of the
        Services it concerns, and only theirs."""
        if is_resync(event):
            return  # nothing changed
        obj = event.obj
        if isinstance(obj, Service):
            keys: Iterable[str] = [key_of(obj)]
        elif isinstance(obj, Pod):
            keys = services_for_pod(event, self.services)
        else:  # an EndpointSlice
            keys = [k for o in (obj, event.old) if o is not None for k in slice_service(o)]
        for key in keys:
            self.invalidate(key)

    def desired(self, service: Any) -> ServiceDesired:
        key = key_of(service)
        rv = service.metadata.resourceVersion or ""
        quotas, version = self.quotas, self.cluster_version
        memo = self._memo.get(key)
        if memo is not None and memo[:3] == (rv, quotas, version):
            return memo[3]
        self.runs += 1
        desired = desired_from_caches(
            service_view(service),
            slices=self.slices,
            pods=self.pods,
            nodes=None,  # the gate acts on direct Services only, whose model reads no node
            direct_routable_cidrs=self.cidrs,
            quotas=quotas,
            cluster_version=version,
        )
        self._memo[key] = (rv, quotas, version, desired)
        return desired

    def expectations(self, pod: Any) -> list[Expectation]:
        namespace = pod.metadata.namespace or ""
        labels = dict(pod.metadata.labels or {})
        found: list[Expectation] = []
        for service in self.services.by_index(BY_NAMESPACE, namespace):
            if service.metadata.deletionTimestamp is not None or not selects(service, labels):
                continue
            if not is_ours(service_view(service)):
                continue
            desired = self.desired(service)
            if desired.mode is not BackendMode.DIRECT:
                continue
            expectation = self._expectation(service, desired, pod)
            if expectation is not None:
                found.append(expectation)
        return found

    def refused(self, service: Any, desired: ServiceDesired) -> frozenset[ListenerKey]:
        """The listeners of ``desired`` the Service controller does not sync for ``service``:
        on its adopted CLB, those an object of ours created earlier records."""
        intent = desired.load_balancer
        if self.claims is None or intent is None or not intent.adopted:
            return frozenset()
        keys = (listener.key for listener in desired.listeners)
        mine = Claimant.of(service, SERVICE_KIND)
        return frozenset(self.claims.refused(intent.existing_id, keys, claimant=mine))

    def _expectation(self, service: Any, desired: ServiceDesired, pod: Any) -> Expectation | None:
        """What ``service`` expects of ``pod``; None when it will never bind the pod: every
        place it would have is on a listener refused to it (no pod backend, as if it did not
        select the pod)."""
        refused = self.refused(service, desired)
        if desired.actionable and desired.listeners and refused >= _keys(desired.listeners):
            return None  # before anything about the pod: the Service binds no pod at all
        source = f"Service {key_of(service)}"
        name = pod.metadata.name or ""
        ip = (pod.status.podIP if pod.status else None) or ""
        lb_id = (service.metadata.annotations or {}).get(LB_ID_ANNOTATION, "")

        def waiting(reason: str, message: str) -> Expectation:
            return Expectation(source, waiting=Waiting(reason, message))

        view = pod_view(pod)
        if not view.containers_ready:
            # First, so that the message stays the same from the pod's creation until then
            # (no status write per step of its start): no backend binds a pod before.
            return waiting(
                NOT_REGISTERED, f"{source} binds the pod on its CLB once its containers are ready"
            )
        if not desired.actionable:
            reasons = ", ".join(sorted({p.reason for p in desired.problems}))
            return waiting(
                NOT_REGISTERED,
                f"{source} has errors ({reasons}), so its CLB is not updated: see its Events",
            )
        if not lb_id:
            return waiting(NOT_REGISTERED, f"the CLB of {source} does not exist yet")
        if not ip:
            return waiting(NOT_REGISTERED, "the pod has no IP yet")
        places = tuple(
            Binding(lb_id, listener.key, None, target.ip, target.port)
            for listener in desired.listeners
            for target in listener.targets
            if target.kind is TargetKind.ENI and target.ip == ip
        )
        bindings = tuple(b for b in places if b.listener not in refused)
        if bindings:
            return Expectation(source, bindings=bindings)
        if places:
            return None  # only on refused listeners: nothing will register the pod there
        if not directly_routable(view, ip, self.cidrs):
            return waiting(
                NOT_REACHABLE,
                f"CLB {lb_id} of {source} cannot reach the pod's IP {ip}: run the pod in VPC-CNI "
                "ENI mode (pod template annotation tke.cloud.tencent.com/networks: "
                "tke-route-eni) or add its CIDR to --direct-routable-cidrs",
            )
        listed = any(
            e.pod_name == name or e.address == ip
            for s in self.slices.by_index(BY_SERVICE, key_of(service))
            for e in endpoint_views(s)
        )
        if not listed:
            return waiting(NOT_REGISTERED, f"the pod is not in the endpoints of {source} yet")
        reasons = ", ".join(sorted({p.reason for p in desired.problems})) or "none"
        return waiting(
            NOT_REGISTERED,
            f"{source} does not bind the pod on CLB {lb_id} (its problems: {reasons}; see its "
            "Events)",
        )


def _keys(listeners: Iterable[Listener]) -> frozenset[ListenerKey]:
    return frozenset(listener.key for listener in listeners)


# --- health polling ------------------------------------------------------------------------------


@dataclass
class _Snapshot:
    at: float
    targets: tuple[TargetHealth, ...]


@dataclass
class HealthPoller:
    """Target health of the CLBs that pending pods wait on, read in batches and shared.

    ``want(pod, lb_ids)`` registers what a pending pod needs; ``poll`` (the reconcile of a
    one-key queue, so it runs only on the leader) asks for every wanted CLB whose report is a
    ``period`` old, in one ``target_health`` call (30 CLBs per DescribeTargetHealth), and wakes
    (``on_change``) the pods of every CLB whose report changed. It returns the delay until the
    next CLB falls due, or None once nothing is wanted (``want`` of a CLB never read wakes it).
    """

    cloud: CloudLoadBalancers
    period: float = RECHECK_PERIOD
    clock: Callable[[], float] = field(default=lambda: asyncio.get_running_loop().time())
    on_change: Callable[[set[str]], None] = field(default=lambda keys: None)
    wake: Callable[[], None] = field(default=lambda: None)
    polls: int = 0
    failures: int = 0
    _wanted: dict[str, frozenset[str]] = field(default_factory=dict)
    _snapshots: dict[str, _Snapshot] = field(default_factory=dict)

    def want(self, pod: str, lb_ids: frozenset[str]) -> None:
        self._wanted[pod] = lb_ids
        if any(lb not in self._snapshots for lb in lb_ids):
            self.wake()

    def drop(self, pod: str) -> None:
        self._wanted.pop(pod, None)

    @property
    def pending(self) -> int:
        return len(self._wanted)

    def health(self, lb_ids: Iterable[str]) -> dict[str, tuple[TargetHealth, ...]]:
        """The latest reports of these CLBs; a CLB never read, or whose report is stale (the
        cloud failing), is left out."""
        now = self.clock()
        horizon = self.period * STALE_PERIODS
        out: dict[str, tuple[TargetHealth, ...]] = {}
        for lb in lb_ids:
            snapshot = self._snapshots.get(lb)
            if snapshot is not None and now - snapshot.at <= horizon:
                out[lb] = snapshot.targets
        return out

    def has(self, lb_ids: Iterable[str]) -> bool:
        return all(lb in self._snapshots for lb in lb_ids)

    async def poll(self, _key: str = POLL_KEY) -> float | None:
        wanted = set().union(*self._wanted.values()) if self._wanted else set()
        for gone in set(self._snapshots) - wanted:
            del self._snapshots[gone]
        if not wanted:
            return None
        now = self.clock()
        due = self._due(wanted, now)
        if due:
            self.polls += 1
            try:
                report = await self.cloud.target_health(due)
            except Exception as error:  # the cloud failing must not stop the re-checks
                self.failures += 1
                log.warning("event=gate_health_failed lbs=%d error=%s", len(due), error)
                return self.period
            # A report is as old as the call's start: timing the next read from the answer
            # would stretch the period by every call's duration.
            at = now
            changed: set[str] = set()
            for lb in due:
                targets = tuple(sorted(report.get(lb, ()), key=_health_key))
                old = self._snapshots.get(lb)
                if old is None or old.targets != targets:
                    changed.add(lb)
                self._snapshots[lb] = _Snapshot(at, targets)
            if changed:
                self.on_change({p for p, lbs in self._wanted.items() if lbs & changed})
        now = self.clock()
        next_due = min(self._snapshots[lb].at + self.period for lb in wanted)
        return max(next_due - now, 0.05)

    def _due(self, wanted: set[str], now: float) -> list[str]:
        """The CLBs to read now: those never read or a period old and, when any is, also
        those at least half a period old. Without the second part, CLBs first wanted at
        different moments stay out of step for good and are read one per call; with it, they
        fall into one batched call (30 CLBs per DescribeTargetHealth) within a period, and no
        CLB is read more often than every half period."""
        ages = {lb: now - self._snapshots[lb].at for lb in wanted if lb in self._snapshots}
        if all(lb in ages and ages[lb] < self.period * DUE_FRACTION for lb in wanted):
            return []
        return sorted(lb for lb in wanted if ages.get(lb, self.period) >= self.period * 0.5)


def _health_key(h: TargetHealth) -> tuple[str, str, str, int, str]:
    return (str(h.listener), str(h.rule or ""), h.ip, h.port, h.detail)


# --- the controller ------------------------------------------------------------------------------


@dataclass
class _Written:
    """What we last wrote to a pod. Until the cache shows it (``seen``), the cache lags our
    write, possibly through versions others wrote meanwhile, and must not make us write the
    same decision again; after ``CACHE_LAG`` seconds we stop trusting that and write anyway."""

    uid: str
    decision: Decision
    at: float
    seen: bool = False


#: Seconds a write may take to come back through the watch before it is sent again.
CACHE_LAG = 10.0

# What became of a decision (the ``directlb_readiness_gate_patches`` result label).
PATCHED = "patched"  # sent and accepted
UNCHANGED = "unchanged"  # the pod has it, or our accepted write of it is on its way to the cache
STALE = "stale"  # the pod is gone or was recreated: the informer brings the new one
ERROR = "error"  # not written, the API failing: sent again after the fixed period


class GateController:
    """Reconciles one pod (``namespace/name``) with our gate; see the module docstring."""

    def __init__(
        self,
        *,
        client: AsyncClient,
        recorder: EventRecorder,
        pods: Store[Any],
        poller: HealthPoller,
        metrics: Metrics,
        sources: Sequence[BindingSource] = (),
        timeout: float = 600.0,
        period: float = RECHECK_PERIOD,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.recorder = recorder
        self.pods = pods
        self.poller = poller
        self.metrics = metrics
        self.sources: list[BindingSource] = list(sources)
        self.timeout = timeout
        self.period = period
        self.now = now
        self.monotonic = monotonic
        self.enqueue: Callable[[str], None] = lambda key: None
        self._waiting: dict[str, set[str]] = {}  # namespace -> pods whose gate is not True
        self._written: dict[str, _Written] = {}

    def add_source(self, source: BindingSource) -> None:
        self.sources.append(source)

    # ----- what to enqueue ----------------------------------------------------------------

    def pending(self, pod: Any) -> bool:
        """The pod has our gate, not True yet, and may still become Ready."""
        return has_gate(pod) and not _finished(pod) and current_condition(pod).status != "True"

    def on_pod(self, event: Event[Any]) -> None:
        """Track the pods whose gate is not True yet; enqueue those, and those we stop tracking."""
        key = key_of(event.obj)
        namespace = event.obj.metadata.namespace or ""
        waiting = self._waiting.setdefault(namespace, set())
        if event.type != DELETED and self.pending(event.obj):
            waiting.add(key)
            self.enqueue(key)
        elif key in waiting:
            waiting.discard(key)
            self.enqueue(key)  # forgets it
        if not waiting:
            self._waiting.pop(namespace, None)

    def enqueue_namespace(self, namespace: str) -> None:
        """Re-check every pending pod of ``namespace`` (a backend there changed)."""
        for key in sorted(self._waiting.get(namespace, ())):
            self.enqueue(key)

    def enqueue_pods(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.enqueue(key)

    # ----- reconcile ------------------------------------------------------------------------

    def _forget(self, key: str) -> None:
        self.poller.drop(key)
        self._written.pop(key, None)
        self.metrics.gate_pending.set(self.poller.pending)

    async def reconcile(self, key: str) -> float | None:
        pod = self.pods.get(key)
        if pod is None or not self.pending(pod):
            self._forget(key)
            return None
        for source in self.sources:
            if isinstance(source, RefreshingSource):
                await source.refresh()
        expectations = [e for source in self.sources for e in source.expectations(pod)]
        lb_ids = frozenset().union(*(e.lb_ids for e in expectations))
        self.poller.want(key, lb_ids)
        self.metrics.gate_pending.set(self.poller.pending)
        decision = decide(expectations, self.poller.health(lb_ids))
        ready_since = containers_ready_since(pod)
        now = self.now()
        waited = (now - ready_since).total_seconds() if ready_since is not None else None
        decision = with_timeout(decision, waited=waited, timeout=self.timeout)
        if not decision.ready and not self.poller.has(lb_ids):
            # The health of a CLB is being read right now; the poll wakes us with it.
            return self._recheck(waited)
        outcome = await self._write(key, pod, decision, now=now)
        if outcome == ERROR:
            # Not written and the pod does not show it: nothing else would come back to it
            # before the informer's resync (minutes), so try again after the fixed period,
            # never the work queue's exponential backoff. The pod stays polled meanwhile.
            return self.period
        if decision.ready:
            if outcome == PATCHED:
                self._flipped(pod, decision, waited)
            # Nothing to poll for any more; what we wrote is kept until the cache shows it, so
            # that a re-check meanwhile neither writes nor counts the flip again.
            self.poller.drop(key)
            self.metrics.gate_pending.set(self.poller.pending)
            return None
        return self._recheck(waited)

    def _recheck(self, waited: float | None) -> float:
        if waited is None:
            return self.period
        return max(min(self.period, self.timeout - waited), 0.05)

    async def _write(self, key: str, pod: Any, decision: Decision, *, now: datetime) -> str:
        """Write ``decision`` unless the pod has it (or will: our last write of it is still on
        its way to the cache); the outcome: PATCHED, UNCHANGED, STALE or ERROR."""
        meta = pod.metadata
        uid = meta.uid or ""
        current = current_condition(pod)
        written = self._written.get(key)
        if written is not None and written.uid == uid and unchanged(current, written.decision):
            written.seen = True
        lagging = (
            written is not None
            and not written.seen
            and written.uid == uid
            and written.decision == decision
            and self.monotonic() - written.at < CACHE_LAG
        )
        if unchanged(current, decision) or lagging:
            self.metrics.gate_patches.labels(UNCHANGED).inc()
            return UNCHANGED
        body = condition_patch(uid, decision, current, now=now)
        try:
            await self.client.patch(
                Pod.Status,
                meta.name,
                body,
                namespace=meta.namespace,
                patch_type=PatchType.STRATEGIC,
            )
        except ApiError as error:
            code = error.status.code
            if code in (404, 409, 422):
                # Gone, or deleted and recreated under the same name (another UID): the
                # informer brings the new pod, which is decided afresh.
                self.metrics.gate_patches.labels(STALE).inc()
                log.info("event=gate_patch_refused pod=%s uid=%s code=%s", key, uid, code)
                return STALE
            if code != 429 and (code or 0) < 500:
                raise  # our request is wrong (a bug, or RBAC): not a blip to wait out
            self.metrics.gate_patches.labels(ERROR).inc()
            log.warning("event=gate_patch_failed pod=%s code=%s error=%s", key, code, error)
            return ERROR
        except TRANSIENT as error:
            self.metrics.gate_patches.labels(ERROR).inc()
            log.warning("event=gate_patch_failed pod=%s error=%s", key, error)
            return ERROR
        self.metrics.gate_patches.labels(PATCHED).inc()
        self._written[key] = _Written(uid, decision, self.monotonic())
        # What the pod had: our last write if the cache has not shown it yet.
        before = (
            (written.decision.status, written.decision.reason)
            if written is not None and written.uid == uid and not written.seen
            else (current.status, current.reason)
        )
        if before != (decision.status, decision.reason):
            self.metrics.gate_transitions.labels(decision.status, decision.reason).inc()
            log.info(
                "event=gate_set pod=%s status=%s reason=%s message=%r",
                key,
                decision.status,
                decision.reason,
                decision.message,
            )
            if decision.reason in (NOT_REACHABLE, CHECK_FAILED):
                self.recorder.event(
                    pod, type=WARNING, reason=decision.reason, message=decision.message
                )
        return PATCHED

    def _flipped(self, pod: Any, decision: Decision, waited: float | None) -> None:
        if decision.reason == TIMEOUT:
            self.metrics.gate_timeouts.inc()
            self.recorder.event(pod, type=WARNING, reason=TIMEOUT_EVENT, message=decision.message)
        elif decision.reason == HEALTHY and waited is not None and math.isfinite(waited):
            self.metrics.gate_flip_seconds.observe(max(waited, 0.0))


# --- pods without the gate ----------------------------------------------------------------------


class UnprotectedPods:
    """A Warning Event on a direct-access Service that selects pods without the gate.

    Keyed by Service. The webhook adds the gate only when a pod is created, so a pod created
    before the Service (or before it turned direct), or while the webhook was down (its
    failure policy is Ignore), stays Ready on its containers alone: a rolling update of such
    pods can outrun the CLB. Every selected pod without the gate counts, whatever its age
    (finished and terminating pods aside). One Event names a few of them and the count.

    Not spamming: a Service is reported again only when a pod not reported yet joins its set
    (per Service UID, in memory). A set that only shrinks (the pods being recreated, say) says
    nothing new; an empty set forgets, so pods without the gate later are reported again.
    Re-checked on every change of the Service and of the pods without the gate it selects.
    """

    def __init__(
        self,
        *,
        services: Store[Any],
        pods: Store[Any],
        bindings: ServiceBindings,
        recorder: EventRecorder,
        shown: int = 5,
    ) -> None:
        self.services = services
        self.pods = pods
        self.bindings = bindings
        self.recorder = recorder
        self.shown = shown
        #: Service UID -> the pods without the gate it was last reported (or found) with.
        self.warned: dict[str, frozenset[str]] = {}

    async def reconcile(self, key: str) -> float | None:
        service = self.services.get(key)
        if service is None or service.metadata.deletionTimestamp is not None:
            return None
        uid = service.metadata.uid or ""
        view = service_view(service)
        # The mode the model binds in (cheap: no model run on every pod change). Below 1.12
        # direct access is refused: the Service binds nodes and no gate is expected.
        mode = effective_mode(view, self.bindings.cluster_version)
        if not is_ours(view) or mode is not BackendMode.DIRECT:
            self.warned.pop(uid, None)
            return None
        namespace = service.metadata.namespace or ""
        names = frozenset(
            p.metadata.name or ""
            for p in self.pods.by_index(BY_NAMESPACE, namespace)
            if selects(service, dict(p.metadata.labels or {}))
            and not has_gate(p)
            and not _finished(p)
            and p.metadata.deletionTimestamp is None
        )
        known = self.warned.get(uid, frozenset())
        if names:
            self.warned[uid] = names
        else:
            self.warned.pop(uid, None)
        if names <= known:
            return None  # nothing new (or nothing at all)
        ordered = sorted(names)
        listed = ", ".join(ordered[: self.shown]) + (
            f" and {len(ordered) - self.shown} more" if len(ordered) > self.shown else ""
        )
        self.recorder.event(
            service,
            type=WARNING,
            reason=UNPROTECTED_EVENT,
            message=(
                f"{len(ordered)} pod(s) selected by this direct-access Service have no "
                f"readiness gate ({listed}): they were created before the Service turned "
                f"direct, or while the admission webhook was unavailable. Rolling updates of "
                f"those pods are not protected until they are recreated (for example kubectl "
                f"rollout restart)"
            ),
        )
        return None

    def services_for_pod(self, event: Event[Any]) -> set[str]:
        """The Services to re-check after a change of a pod: those selecting it (now or
        before), if it has no gate; a pod with the gate changes no set."""
        if has_gate(event.obj) and (event.old is None or has_gate(event.old)):
            return set()
        return services_for_pod(event, self.services)
