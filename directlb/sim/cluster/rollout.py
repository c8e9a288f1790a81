"""The pure decisions of the Deployment and ReplicaSet controllers, transcribed from Kubernetes.

Sources (kubernetes/kubernetes): ``pkg/controller/deployment/util/deployment_util.go``
(fenceposts, ``NewRSNewReplicas``, proportions, conditions, complete/progressing/timed out),
``pkg/controller/deployment/rolling.go`` (``reconcileOldReplicaSets``,
``cleanupUnhealthyReplicas``, ``scaleDownOldReplicaSetsForRollingUpdate``),
``pkg/controller/deployment/sync.go`` (``scale``, ``calculateStatus``),
``pkg/controller/controller_utils.go`` (``ComputeHash``, ``ActivePodsWithRanks``) and
``pkg/controller/replicaset/replica_set.go`` (``calculateStatus``).

Everything here is a function of its arguments (the clock is a parameter), so the rollout
arithmetic is tested exhaustively without an API server; ``workloads.py`` does the I/O.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from directlb.sim.meta import clone

Obj = dict[str, Any]

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
ROLLBACK_TO = "deprecated.deployment.rollback.to"
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
MAX_REVISION_HISTORY_CHARS = 2000
NO_PROGRESS_DEADLINE = 2**31 - 1  # math.MaxInt32: "no deadline"

# Condition reasons (deployment_util.go).
NEW_RS_REASON = "NewReplicaSetCreated"
FOUND_NEW_RS_REASON = "FoundNewReplicaSet"
RS_UPDATED_REASON = "ReplicaSetUpdated"
NEW_RS_AVAILABLE_REASON = "NewReplicaSetAvailable"
TIMED_OUT_REASON = "ProgressDeadlineExceeded"
PAUSED_REASON = "DeploymentPaused"
RESUMED_REASON = "DeploymentResumed"
FAILED_RS_CREATE_REASON = "ReplicaSetCreateError"
MIN_AVAILABLE = "MinimumReplicasAvailable"
MIN_UNAVAILABLE = "MinimumReplicasUnavailable"

_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"  # rand.SafeEncodeString's alphabet

IntOrPercent = int | str | None


# ----- maxSurge / maxUnavailable -----------------------------------------------------------


def scaled_value(value: IntOrPercent, total: int, *, round_up: bool) -> int:
    """``intstr.GetScaledValueFromIntOrPercent``: an int as is, ``"N%"`` of ``total`` rounded
    up or down; any other string is an error (as in Go: "string is not a percentage")."""
    if value is None:
        return 0
    if isinstance(value, bool):
        raise ValueError(f"invalid value for IntOrString: {value!r}")
    if isinstance(value, int):
        return value
    if not value.endswith("%"):
        raise ValueError(
            f"invalid value for IntOrString: invalid type: {value!r} is not a percentage"
        )
    try:
        percent = int(value[:-1])
    except ValueError as error:
        raise ValueError(f"invalid value {value!r}: {error}") from None
    if round_up:
        return -(-percent * total // 100)
    return percent * total // 100


def resolve_fenceposts(
    max_surge: IntOrPercent, max_unavailable: IntOrPercent, desired: int
) -> tuple[int, int]:
    """``ResolveFenceposts``: surge rounds up, unavailable rounds down; if both come out 0
    (validation forbids both being 0 literally, rounding down may still get there), one pod
    may be unavailable so that a rollout can move at all."""
    surge = scaled_value(max_surge, desired, round_up=True)
    unavailable = scaled_value(max_unavailable, desired, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


@dataclass(frozen=True)
class Strategy:
    """``spec.strategy`` of a Deployment."""

    type: str = "RollingUpdate"
    max_surge: IntOrPercent = "25%"
    max_unavailable: IntOrPercent = "25%"

    @property
    def rolling(self) -> bool:
        return self.type == "RollingUpdate"

    @classmethod
    def of(cls, deployment: Obj) -> Strategy:
        strategy = (deployment.get("spec") or {}).get("strategy") or {}
        kind = str(strategy.get("type") or "RollingUpdate")
        rolling = strategy.get("rollingUpdate") or {}
        return cls(kind, rolling.get("maxSurge", "25%"), rolling.get("maxUnavailable", "25%"))


def max_surge(strategy: Strategy, replicas: int) -> int:
    """``MaxSurge``: 0 for Recreate."""
    if not strategy.rolling:
        return 0
    return resolve_fenceposts(strategy.max_surge, strategy.max_unavailable, replicas)[0]


def max_unavailable(strategy: Strategy, replicas: int) -> int:
    """``MaxUnavailable``: 0 for Recreate or no replicas; never more than the replicas."""
    if not strategy.rolling or replicas == 0:
        return 0
    unavailable = resolve_fenceposts(strategy.max_surge, strategy.max_unavailable, replicas)[1]
    return min(unavailable, replicas)


# ----- ReplicaSets as the rollout arithmetic sees them ------------------------------------


@dataclass(frozen=True)
class RSView:
    """What the deployment controller's arithmetic reads from a ReplicaSet."""

    name: str
    created: str = ""  # creationTimestamp (RFC 3339, compares as text)
    replicas: int = 0  # spec.replicas
    actual: int = 0  # status.replicas
    ready: int = 0  # status.readyReplicas
    available: int = 0  # status.availableReplicas
    revision: int = 0
    desired_annotation: int | None = None
    max_annotation: int | None = None


def by_creation(rss: Iterable[RSView]) -> list[RSView]:
    """``ReplicaSetsByCreationTimestamp``: oldest first, then by name."""
    return sorted(rss, key=lambda rs: (rs.created, rs.name))


def active(rss: Iterable[RSView]) -> list[RSView]:
    """``FilterActiveReplicaSets``: those with spec.replicas > 0."""
    return [rs for rs in rss if rs.replicas > 0]


def new_rs_new_replicas(
    *, strategy: Strategy, replicas: int, all_rss: Sequence[RSView], new_rs: RSView
) -> int:
    """``NewRSNewReplicas``: how far the new ReplicaSet may scale up now."""
    if not strategy.rolling:
        return replicas
    surge = max_surge(strategy, replicas)
    current = sum(rs.replicas for rs in all_rss)
    max_total = replicas + surge
    if current >= max_total:
        return new_rs.replicas  # cannot scale up
    scale_up = min(max_total - current, replicas - new_rs.replicas)
    return new_rs.replicas + scale_up


def reconcile_old_replica_sets(
    *, replicas: int, max_unavailable: int, new_rs: RSView, old_rss: Sequence[RSView]
) -> list[tuple[str, int]]:
    """``reconcileOldReplicaSets``: the scale-downs of old ReplicaSets a rolling update may
    do now, in order, as ``(name, new spec.replicas)`` steps: first unhealthy replicas
    (``cleanupUnhealthyReplicas``, bounded by ``maxScaledDown``), then available ones while
    more than ``replicas - maxUnavailable`` stay available
    (``scaleDownOldReplicaSetsForRollingUpdate``).

    An old ReplicaSet reporting more available pods than its spec.replicas stops it all
    there: that status predates a scale-down whose pods are still counted (the ReplicaSet
    controller reports the pods it listed before deleting some). Go's
    ``cleanupUnhealthyReplicas`` answers "invalid request to scale down" and
    ``reconcileOldReplicaSets`` returns without scaling anything more; going on to
    ``scaleDownOldReplicaSetsForRollingUpdate`` would count the deleted pods as available
    and scale below ``replicas - maxUnavailable``."""
    old_rss = active(rs for rs in old_rss if rs.name != new_rs.name)
    if sum(rs.replicas for rs in old_rss) == 0:
        return []
    all_count = sum(rs.replicas for rs in old_rss) + new_rs.replicas
    min_available = replicas - max_unavailable
    new_unavailable = new_rs.replicas - new_rs.available
    max_scaled_down = all_count - min_available - new_unavailable
    if max_scaled_down <= 0:
        return []
    steps: list[tuple[str, int]] = []

    # cleanupUnhealthyReplicas
    sizes = {rs.name: rs.replicas for rs in old_rss}
    cleaned = 0
    for rs in by_creation(old_rss):
        if cleaned >= max_scaled_down:
            break
        if rs.replicas == 0 or rs.replicas == rs.available:
            continue
        count = min(max_scaled_down - cleaned, rs.replicas - rs.available)
        new_size = rs.replicas - count
        if new_size > rs.replicas:
            # Go's sanity check (status.availableReplicas > spec.replicas): an error that
            # ends reconcileOldReplicaSets; scale-downs already done stay done.
            return steps
        steps.append((rs.name, new_size))
        sizes[rs.name] = new_size
        cleaned += count

    # scaleDownOldReplicaSetsForRollingUpdate
    available = sum(rs.available for rs in old_rss) + new_rs.available
    if available <= min_available:
        return steps
    to_scale_down = available - min_available
    scaled = 0
    for rs in by_creation(old_rss):
        if scaled >= to_scale_down:
            break
        size = sizes[rs.name]
        if size == 0:
            continue
        count = min(size, to_scale_down - scaled)
        steps.append((rs.name, size - count))
        scaled += count
    return steps


def find_active_or_latest(new_rs: RSView | None, old_rss: Sequence[RSView]) -> RSView | None:
    """``FindActiveOrLatest``: the only active ReplicaSet, or the newest when none is active;
    None when several are active."""
    if new_rs is None and not old_rss:
        return None
    olds = sorted(old_rss, key=lambda rs: (rs.created, rs.name), reverse=True)
    candidates = active([*olds, *([new_rs] if new_rs else [])])
    if len(candidates) == 0:
        return new_rs if new_rs is not None else olds[0]
    if len(candidates) == 1:
        return candidates[0]
    return None


def is_saturated(replicas: int, rs: RSView | None) -> bool:
    """``IsSaturated``: the new ReplicaSet runs all the Deployment's replicas, available."""
    if rs is None or rs.desired_annotation is None:
        return False
    return (
        rs.replicas == replicas and rs.desired_annotation == replicas and rs.available == replicas
    )


def _round(value: float) -> int:
    """``integer.RoundToInt32`` (math.Round: halves away from zero)."""
    return math.floor(value + 0.5) if value >= 0 else -math.floor(-value + 0.5)


def _fraction(rs: RSView, *, replicas: int, surge: int, status_replicas: int) -> int:
    """``getReplicaSetFraction``: this ReplicaSet's share of a Deployment resize."""
    if replicas == 0:
        return -rs.replicas
    max_now = replicas + surge
    before = rs.max_annotation or 0
    if before == 0:
        before = status_replicas  # someone scaled the ReplicaSet by hand
        if before == 0:
            return rs.replicas
    return _round(rs.replicas * max_now / before) - rs.replicas


def proportional_sizes(
    *, replicas: int, surge: int, rss: Sequence[RSView], status_replicas: int
) -> list[tuple[str, int]]:
    """The proportional part of ``scale``: a Deployment resized in the middle of a rollout
    spreads the change over its active ReplicaSets by their size (larger first; newer first
    when scaling up, older first when scaling down), leftovers to the first one. Answers the
    size of every active ReplicaSet, in the order the controller writes them."""
    active_rss = active(rss)
    allowed = replicas + surge if replicas > 0 else 0
    to_add = allowed - sum(rs.replicas for rs in active_rss)
    if to_add > 0:
        # ReplicaSetsBySizeNewer: larger first; same size: newer first.
        ordered = sorted(active_rss, key=lambda rs: (rs.created, rs.name), reverse=True)
        ordered.sort(key=lambda rs: -rs.replicas)
    else:
        # ReplicaSetsBySizeOlder (also the order when nothing is added).
        ordered = sorted(active_rss, key=lambda rs: (rs.created, rs.name))
        ordered.sort(key=lambda rs: -rs.replicas)
    added = 0
    sizes: list[tuple[str, int]] = []
    for rs in ordered:
        if to_add == 0:
            sizes.append((rs.name, rs.replicas))
            continue
        proportion = 0
        if rs.replicas != 0 and to_add != added:
            fraction = _fraction(
                rs, replicas=replicas, surge=surge, status_replicas=status_replicas
            )
            remaining = to_add - added
            proportion = min(fraction, remaining) if to_add > 0 else max(fraction, remaining)
        sizes.append((rs.name, rs.replicas + proportion))
        added += proportion
    if sizes and to_add != 0:
        name, size = sizes[0]
        sizes[0] = (name, max(size + to_add - added, 0))
    return sizes


# ----- annotations -------------------------------------------------------------------------

_SKIP_COPY = {LAST_APPLIED, REVISION, REVISION_HISTORY, DESIRED_REPLICAS, MAX_REPLICAS, ROLLBACK_TO}


def revision_of(obj: Obj) -> int | None:
    """``Revision``: the revision annotation as a number; None when absent or not a number."""
    text = ((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION)
    if text is None:
        return 0
    try:
        return int(str(text))
    except ValueError:
        return None


def _annotations(obj: Obj) -> dict[str, str]:
    metadata = obj.setdefault("metadata", {})
    annotations = metadata.get("annotations")
    if not isinstance(annotations, dict):
        annotations = metadata["annotations"] = {}
    result: dict[str, str] = annotations
    return result


def copy_deployment_annotations(deployment: Obj, rs: Obj) -> bool:
    """``copyDeploymentAnnotationsToReplicaSet``: the Deployment's annotations but kubectl's
    last-applied configuration and the rollout bookkeeping."""
    changed = False
    target = _annotations(rs)
    for key, value in ((deployment.get("metadata") or {}).get("annotations") or {}).items():
        if key in _SKIP_COPY or target.get(key) == value:
            continue
        target[key] = value
        changed = True
    return changed


def replicas_annotations_need_update(rs: Obj, desired: int, max_replicas: int) -> bool:
    annotations = (rs.get("metadata") or {}).get("annotations") or {}
    return annotations.get(DESIRED_REPLICAS) != str(desired) or annotations.get(
        MAX_REPLICAS
    ) != str(max_replicas)


def set_replicas_annotations(rs: Obj, desired: int, max_replicas: int) -> bool:
    """``SetReplicasAnnotations``: desired-replicas and max-replicas (replicas + surge)."""
    annotations = _annotations(rs)
    changed = replicas_annotations_need_update(rs, desired, max_replicas)
    annotations[DESIRED_REPLICAS] = str(desired)
    annotations[MAX_REPLICAS] = str(max_replicas)
    return changed


def set_new_rs_annotations(
    deployment: Obj, rs: Obj, new_revision: int, *, exists: bool, desired: int, max_replicas: int
) -> bool:
    """``SetNewReplicaSetAnnotations``: copy the Deployment's annotations, raise the revision
    (keeping the previous one in revision-history when an old ReplicaSet comes back, as on
    a rollback), and give a ReplicaSet about to be created its replicas annotations."""
    changed = copy_deployment_annotations(deployment, rs)
    annotations = _annotations(rs)
    old_text = annotations.get(REVISION)
    try:
        old = int(old_text) if old_text is not None else 0
    except ValueError:
        return False
    if old < new_revision:
        annotations[REVISION] = str(new_revision)
        changed = True
        if old_text is not None:
            history = annotations.get(REVISION_HISTORY, "")
            if not history:
                annotations[REVISION_HISTORY] = old_text
            else:
                revisions = history.split(",")
                total = len(history) + len(old_text) + 1
                start = 0
                while total > MAX_REVISION_HISTORY_CHARS and start < len(revisions):
                    total -= len(revisions[start]) + 1
                    start += 1
                if total <= MAX_REVISION_HISTORY_CHARS:
                    annotations[REVISION_HISTORY] = ",".join([*revisions[start:], old_text])
    if not exists and set_replicas_annotations(rs, desired, max_replicas):
        changed = True
    return changed


def set_deployment_revision(deployment: Obj, revision: str) -> bool:
    """``SetDeploymentRevision``."""
    annotations = _annotations(deployment)
    if annotations.get(REVISION) == revision:
        return False
    annotations[REVISION] = revision
    return True


# ----- pod template hash -------------------------------------------------------------------


def _fnv32a(data: bytes) -> int:
    value = 0x811C9DC5
    for byte in data:
        value ^= byte
        value = (value * 0x01000193) & 0xFFFFFFFF
    return value


def compute_hash(template: Obj, collision_count: int | None) -> str:
    """``controller.ComputeHash``: FNV-32a of the template (its ``semantic`` canonical JSON
    here, where Go hashes its spew dump), plus the collision count, encoded with
    ``SafeEncodeString``; so the value is stable for a template and looks like the real one
    (``5d8f7b9c6``)."""
    data = json.dumps(semantic(template), sort_keys=True, separators=(",", ":")).encode()
    if collision_count is not None:
        data += (collision_count & 0xFFFFFFFF).to_bytes(4, "little") + b"\0\0\0\0"
    digits = str(_fnv32a(data))
    return "".join(_ALPHANUMS[ord(c) % len(_ALPHANUMS)] for c in digits)


def semantic(value: Any) -> Any:
    """A template as Go's typed comparison sees it: ``null`` fields and empty maps and lists
    are the same as absent ones (kubectl's ``rollout undo`` sends the ReplicaSet's template
    re-encoded from Go, with ``creationTimestamp: null``)."""
    if isinstance(value, dict):
        result = {k: semantic(v) for k, v in value.items()}
        return {k: v for k, v in result.items() if v is not None and v != {} and v != []}
    if isinstance(value, list):
        return [semantic(v) for v in value]
    return value


def without_hash(template: Obj) -> Obj:
    result: Obj = semantic(template)  # new dicts and lists throughout: a copy already
    labels = (result.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(HASH_LABEL, None)
        if not labels:
            del result["metadata"]["labels"]
    if "metadata" in result and not result["metadata"]:
        del result["metadata"]
    return result


def equal_ignore_hash(a: Obj, b: Obj) -> bool:
    """``EqualIgnoreHash``: the same pod template but for the pod-template-hash label."""
    return without_hash(a) == without_hash(b)


# ----- deleting surplus pods ---------------------------------------------------------------


@dataclass(frozen=True)
class PodView:
    """What ``ActivePodsWithRanks`` compares."""

    name: str
    uid: str = ""
    node: str = ""
    phase: str = "Pending"
    ready: bool = False
    ready_since: float | None = None  # Ready's lastTransitionTime, epoch seconds
    created: float = 0.0
    restarts: int = 0
    deletion_cost: int = 0
    rank: int = 0  # active pods of the same owner on the same node


_PHASE_ORDINAL = {"Pending": 0, "Unknown": 1, "Running": 2}


def _log_rank(at: float, now: float) -> int:
    elapsed = (now - at) * 1e9  # Go compares durations in nanoseconds
    return int(math.log2(elapsed)) if elapsed > 0 else -1


def _younger(a: float | None, b: float | None, now: float) -> int:
    """<0 when ``a`` goes first (``afterOrZero`` bucketed by ``logarithmicRankDiff``)."""
    if a == b:
        return 0
    if a is None:
        return -1
    if b is None:
        return 1
    diff = _log_rank(a, now) - _log_rank(b, now)
    return diff


def _compare(a: PodView, b: PodView, now: float) -> int:
    """``ActivePodsWithRanks.Less`` as a comparison (LogarithmicScaleDown and PodDeletionCost
    on, their defaults): negative when ``a`` is deleted before ``b``."""
    if a.node != b.node and (not a.node or not b.node):
        return -1 if not a.node else 1  # 1. unassigned first
    pa, pb = _PHASE_ORDINAL.get(a.phase, 0), _PHASE_ORDINAL.get(b.phase, 0)
    if pa != pb:
        return pa - pb  # 2. Pending < Unknown < Running
    if a.ready != b.ready:
        return -1 if not a.ready else 1  # 3. not ready first
    if a.deletion_cost != b.deletion_cost:
        return -1 if a.deletion_cost < b.deletion_cost else 1  # 4. lower cost first
    if a.rank != b.rank:
        return -1 if a.rank > b.rank else 1  # 5. doubled up first
    if a.ready and b.ready and a.ready_since != b.ready_since:
        diff = _younger(a.ready_since, b.ready_since, now)  # 6. ready more recently first
        if diff != 0:
            return diff
        return -1 if a.uid < b.uid else (1 if a.uid > b.uid else 0)
    if a.restarts != b.restarts:
        return -1 if a.restarts > b.restarts else 1  # 7. more restarts first
    if a.created != b.created:
        diff = _younger(a.created, b.created, now)  # 8. newer first
        if diff != 0:
            return diff
        return -1 if a.uid < b.uid else (1 if a.uid > b.uid else 0)
    return 0


def pods_to_delete(pods: Sequence[PodView], count: int, *, now: float) -> list[PodView]:
    """``getPodsToDelete``: the ``count`` pods a ReplicaSet removes first when too many run:
    unscheduled, then pending, not ready, lower deletion cost, doubled up on a node, ready
    for less time, restarted more, newer."""
    if count >= len(pods):
        return list(pods)

    def compare(a: PodView, b: PodView) -> int:
        return _compare(a, b, now)

    ordered = sorted(pods, key=functools.cmp_to_key(compare))
    return ordered[:count]


# ----- conditions --------------------------------------------------------------------------


def get_condition(status: Obj, kind: str) -> Obj | None:
    for condition in status.get("conditions") or []:
        if isinstance(condition, dict) and condition.get("type") == kind:
            return condition
    return None


def new_condition(kind: str, status: str, reason: str, message: str, *, now: str) -> Obj:
    """``NewDeploymentCondition`` (a ReplicaSet condition has no lastUpdateTime)."""
    return {
        "type": kind,
        "status": status,
        "lastUpdateTime": now,
        "lastTransitionTime": now,
        "reason": reason,
        "message": message,
    }


def set_condition(status: Obj, condition: Obj) -> None:
    """``SetDeploymentCondition``: nothing when status and reason are unchanged; the
    transition time kept when only the reason changes; the condition moves to the end."""
    current = get_condition(status, condition["type"])
    if (
        current is not None
        and current.get("status") == condition["status"]
        and current.get("reason") == condition["reason"]
    ):
        return
    condition = dict(condition)
    if current is not None and current.get("status") == condition["status"]:
        condition["lastTransitionTime"] = current.get("lastTransitionTime")
    remove_condition(status, condition["type"])
    status.setdefault("conditions", []).append(condition)


def remove_condition(status: Obj, kind: str) -> None:
    conditions = [c for c in status.get("conditions") or [] if c.get("type") != kind]
    if conditions:
        status["conditions"] = conditions
    else:
        status.pop("conditions", None)


# ----- deployment status -------------------------------------------------------------------


@dataclass(frozen=True)
class DeploymentFacts:
    """What the status computations read from a Deployment."""

    name: str
    generation: int
    replicas: int
    strategy: Strategy = field(default_factory=Strategy)
    progress_deadline: int | None = 600

    @property
    def has_progress_deadline(self) -> bool:
        return self.progress_deadline is not None and self.progress_deadline != NO_PROGRESS_DEADLINE


def _put(status: Obj, key: str, value: int) -> None:
    if value:
        status[key] = value


def calculate_status(
    *,
    deployment: DeploymentFacts,
    old_status: Obj,
    all_rss: Sequence[RSView],
    new_rs: RSView | None,
    now: str,
) -> Obj:
    """``calculateStatus`` (sync.go), with the Available condition. Zero counts are left out,
    as the Go type's ``omitempty`` does."""
    available = sum(rs.available for rs in all_rss)
    total = sum(rs.replicas for rs in all_rss)
    status: Obj = {}
    _put(status, "observedGeneration", deployment.generation)
    _put(status, "replicas", sum(rs.actual for rs in all_rss))
    _put(status, "updatedReplicas", new_rs.actual if new_rs else 0)
    _put(status, "readyReplicas", sum(rs.ready for rs in all_rss))
    _put(status, "availableReplicas", available)
    _put(status, "unavailableReplicas", max(total - available, 0))
    conditions = [dict(c) for c in old_status.get("conditions") or []]
    if conditions:
        status["conditions"] = conditions
    if "collisionCount" in old_status:
        status["collisionCount"] = old_status["collisionCount"]
    unavailable = max_unavailable(deployment.strategy, deployment.replicas)
    if available >= deployment.replicas - unavailable:
        condition = new_condition(
            "Available", "True", MIN_AVAILABLE, "Deployment has minimum availability.", now=now
        )
    else:
        condition = new_condition(
            "Available",
            "False",
            MIN_UNAVAILABLE,
            "Deployment does not have minimum availability.",
            now=now,
        )
    set_condition(status, condition)
    return status


def _count(status: Obj, key: str) -> int:
    return int(status.get(key) or 0)


def deployment_complete(deployment: DeploymentFacts, status: Obj) -> bool:
    """``DeploymentComplete``: every replica updated and available, the spec observed."""
    replicas = deployment.replicas
    return (
        _count(status, "updatedReplicas") == replicas
        and _count(status, "replicas") == replicas
        and _count(status, "availableReplicas") == replicas
        and _count(status, "observedGeneration") >= deployment.generation
    )


def deployment_progressing(old_status: Obj, new_status: Obj) -> bool:
    """``DeploymentProgressing``: more updated, fewer old, more ready or more available."""
    old_old = _count(old_status, "replicas") - _count(old_status, "updatedReplicas")
    new_old = _count(new_status, "replicas") - _count(new_status, "updatedReplicas")
    return (
        _count(new_status, "updatedReplicas") > _count(old_status, "updatedReplicas")
        or new_old < old_old
        or _count(new_status, "readyReplicas") > _count(old_status, "readyReplicas")
        or _count(new_status, "availableReplicas") > _count(old_status, "availableReplicas")
    )


def parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def deployment_timed_out(deployment: DeploymentFacts, status: Obj, *, now: datetime) -> bool:
    """``DeploymentTimedOut``: no progress reported for progressDeadlineSeconds."""
    if not deployment.has_progress_deadline or deployment.progress_deadline is None:
        return False
    condition = get_condition(status, "Progressing")
    if condition is None or condition.get("reason") == NEW_RS_AVAILABLE_REASON:
        return False
    if condition.get("reason") == TIMED_OUT_REASON:
        return True
    since = parse_time(condition.get("lastUpdateTime"))
    if since is None:
        return False
    return since.timestamp() + deployment.progress_deadline < now.timestamp()


def rollout_status(
    *,
    deployment: DeploymentFacts,
    old_status: Obj,
    new_status: Obj,
    new_rs_name: str | None,
    now: datetime,
    now_text: str,
) -> Obj:
    """The Progressing part of ``syncRolloutStatus`` applied to ``new_status`` (from
    ``calculate_status``): NewReplicaSetAvailable once complete, ReplicaSetUpdated (with a
    fresh lastUpdateTime) on any progress, ProgressDeadlineExceeded after the deadline."""
    status = clone(new_status)
    if not deployment.has_progress_deadline:
        remove_condition(status, "Progressing")
    current = get_condition(old_status, "Progressing")
    complete_before = (
        _count(status, "replicas") == _count(status, "updatedReplicas")
        and current is not None
        and current.get("reason") == NEW_RS_AVAILABLE_REASON
    )
    if deployment.has_progress_deadline and not complete_before:
        if deployment_complete(deployment, status):
            what = (
                f'ReplicaSet "{new_rs_name}"' if new_rs_name else f'Deployment "{deployment.name}"'
            )
            set_condition(
                status,
                new_condition(
                    "Progressing",
                    "True",
                    NEW_RS_AVAILABLE_REASON,
                    f"{what} has successfully progressed.",
                    now=now_text,
                ),
            )
        elif deployment_progressing(old_status, status):
            what = (
                f'ReplicaSet "{new_rs_name}"' if new_rs_name else f'Deployment "{deployment.name}"'
            )
            condition = new_condition(
                "Progressing", "True", RS_UPDATED_REASON, f"{what} is progressing.", now=now_text
            )
            if current is not None:
                if current.get("status") == "True":
                    condition["lastTransitionTime"] = current.get("lastTransitionTime")
                remove_condition(status, "Progressing")
            set_condition(status, condition)
        elif deployment_timed_out(deployment, status, now=now):
            what = (
                f'ReplicaSet "{new_rs_name}"' if new_rs_name else f'Deployment "{deployment.name}"'
            )
            set_condition(
                status,
                new_condition(
                    "Progressing",
                    "False",
                    TIMED_OUT_REASON,
                    f"{what} has timed out progressing.",
                    now=now_text,
                ),
            )
    return status


def progress_check_after(
    deployment: DeploymentFacts, old_status: Obj, new_status: Obj, *, now: datetime
) -> float | None:
    """``requeueStuckDeployment``: seconds until the deadline check is due (plus the second
    Go adds), or None when no check is needed."""
    current = get_condition(old_status, "Progressing")
    if (
        not deployment.has_progress_deadline
        or current is None
        or deployment.progress_deadline is None
    ):
        return None
    if deployment_complete(deployment, new_status) or current.get("reason") == TIMED_OUT_REASON:
        return None
    since = parse_time(current.get("lastUpdateTime"))
    if since is None:
        return None
    # Go requeues a second late (or rate-limited when under a second); an exact timer just
    # after the deadline does the same without spinning.
    after = since.timestamp() + deployment.progress_deadline - now.timestamp()
    return max(after, 0.0) + 0.05
