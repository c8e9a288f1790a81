"""The pure rollout arithmetic of the simulated Deployment/ReplicaSet controllers, checked
against the cases of Kubernetes' own tests (deployment_util_test.go, rolling_test.go,
sync_test.go, controller_utils_test.go)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from directlb.sim.cluster import rollout
from directlb.sim.cluster.rollout import (
    DeploymentFacts,
    PodView,
    RSView,
    Strategy,
    max_surge,
    max_unavailable,
    new_rs_new_replicas,
    pods_to_delete,
    proportional_sizes,
    reconcile_old_replica_sets,
    resolve_fenceposts,
)
from directlb.sim.contracts import ResourceKey
from directlb.sim.validation import validate_object

# ----- maxSurge / maxUnavailable -------------------------------------------------------------


@pytest.mark.parametrize(
    ("surge", "unavailable", "desired", "expected"),
    [
        ("0%", "0%", 0, (0, 1)),
        ("39%", "39%", 10, (4, 3)),  # surge rounds up, unavailable down
        (None, "39%", 10, (0, 3)),
        ("39%", None, 10, (4, 0)),
        (None, None, 10, (0, 1)),
        ("25%", "25%", 3, (1, 0)),  # the defaults on 3 replicas
        ("25%", "25%", 4, (1, 1)),
        ("34%", "50%", 3, (2, 1)),
        (2, 0, 5, (2, 0)),
        (0, "10%", 5, (0, 1)),  # 0.5 rounds down to 0: both 0 -> one may be unavailable
        ("100%", "100%", 7, (7, 7)),
    ],
)
def test_resolve_fenceposts(
    surge: int | str | None, unavailable: int | str | None, desired: int, expected: tuple[int, int]
) -> None:
    assert resolve_fenceposts(surge, unavailable, desired) == expected


@pytest.mark.parametrize(("surge", "unavailable"), [("oops", "39%"), ("55%", "urg"), ("5", 1)])
def test_resolve_fenceposts_refuses_non_percent_strings(surge: str, unavailable: str | int) -> None:
    with pytest.raises(ValueError):
        resolve_fenceposts(surge, unavailable, 10)


def test_max_unavailable_and_surge_by_strategy() -> None:
    rolling = Strategy("RollingUpdate", "25%", "25%")
    assert max_surge(rolling, 10) == 3 and max_unavailable(rolling, 10) == 2
    assert max_unavailable(rolling, 0) == 0
    assert max_unavailable(Strategy("RollingUpdate", 0, 20), 5) == 5  # never above replicas
    recreate = Strategy("Recreate", None, None)
    assert max_surge(recreate, 10) == 0 and max_unavailable(recreate, 10) == 0


@given(
    surge=st.one_of(st.integers(0, 50), st.integers(0, 100).map(lambda p: f"{p}%")),
    unavailable=st.one_of(st.integers(0, 50), st.integers(0, 100).map(lambda p: f"{p}%")),
    desired=st.integers(0, 200),
)
def test_fenceposts_always_let_a_rollout_move(
    surge: int | str, unavailable: int | str, desired: int
) -> None:
    s, u = resolve_fenceposts(surge, unavailable, desired)
    assert s >= 0 and u >= 0 and s + u >= 1


def test_validation_refuses_both_zero_and_bad_percentages() -> None:
    key = ResourceKey("apps", "v1", "deployments", "Deployment", True)

    def causes(rolling: dict[str, object], **spec: object) -> list[str]:
        obj = {
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx"}]},
                },
                "strategy": {"type": "RollingUpdate", "rollingUpdate": rolling},
                **spec,
            },
        }
        return [f"{c.field}: {c.message}" for c in validate_object(obj, key)]

    assert causes({"maxSurge": 0, "maxUnavailable": "0%"}) == [
        'spec.strategy.rollingUpdate.maxUnavailable: Invalid value: "0%": '
        "may not be 0 when `maxSurge` is 0"
    ]
    assert causes({"maxSurge": 1, "maxUnavailable": "101%"}) == [
        'spec.strategy.rollingUpdate.maxUnavailable: Invalid value: "101%": '
        "must not be greater than 100%"
    ]
    assert any(
        "a valid percent string" in c for c in causes({"maxSurge": "x", "maxUnavailable": 1})
    )
    assert causes({"maxSurge": 1, "maxUnavailable": 0}) == []
    assert causes({"maxSurge": 1}, minReadySeconds=5, progressDeadlineSeconds=5) == [
        "spec.progressDeadlineSeconds: Invalid value: 5: must be greater than minReadySeconds"
    ]


# ----- the new ReplicaSet ------------------------------------------------------------------


def test_new_rs_new_replicas() -> None:
    rolling = Strategy("RollingUpdate", 1, 0)
    # Cannot scale up: already at replicas + surge.
    new = RSView("new", replicas=5)
    assert (
        new_rs_new_replicas(
            strategy=rolling, replicas=1, all_rss=[new, RSView("old", replicas=5)], new_rs=new
        )
        == 5
    )
    # Scale up to the Deployment's replicas, not past them.
    new = RSView("new", replicas=2)
    assert (
        new_rs_new_replicas(
            strategy=Strategy("RollingUpdate", 10, 0),
            replicas=6,
            all_rss=[new, RSView("old", replicas=2)],
            new_rs=new,
        )
        == 6
    )
    # Surge-bound: 3 replicas, surge 1, 3 old -> the new one gets 1.
    new = RSView("new")
    assert (
        new_rs_new_replicas(
            strategy=rolling, replicas=3, all_rss=[new, RSView("old", replicas=3)], new_rs=new
        )
        == 1
    )
    # Recreate: all at once.
    assert (
        new_rs_new_replicas(
            strategy=Strategy("Recreate", None, None), replicas=3, all_rss=[new], new_rs=new
        )
        == 3
    )


# ----- old ReplicaSets ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("replicas", "unavailable", "old", "new", "old_ready", "new_ready", "steps"),
    [
        # rolling_test.go TestDeploymentController_reconcileOldReplicaSets
        (10, 0, 10, 0, 10, 0, []),
        (10, 2, 10, 0, 10, 0, [("old", 8)]),
        (10, 2, 10, 0, 8, 0, [("old", 8)]),  # unhealthy replicas go first
        (10, 2, 10, 0, 9, 0, [("old", 9), ("old", 8)]),  # one unhealthy, then one healthy
        (10, 2, 8, 2, 8, 0, []),  # new unavailable pods hold old ones back
        # the simulator's readiness-gate scenario: 3 replicas, surge 2, unavailable 1
        (3, 1, 3, 2, 3, 0, [("old", 2)]),
        (3, 1, 2, 3, 2, 0, []),  # stalled
        (3, 1, 2, 3, 2, 1, [("old", 1)]),
        (3, 1, 1, 3, 1, 3, [("old", 0)]),
        # status older than a scale-down (10 available, spec 9): cleanupUnhealthyReplicas'
        # "invalid request" ends it, the deleted pod is not counted as available
        (10, 0, 9, 4, 10, 3, []),
        (10, 0, 9, 4, 9, 3, [("old", 7)]),  # once the status has caught up
    ],
)
def test_reconcile_old_replica_sets(
    replicas: int,
    unavailable: int,
    old: int,
    new: int,
    old_ready: int,
    new_ready: int,
    steps: list[tuple[str, int]],
) -> None:
    assert (
        reconcile_old_replica_sets(
            replicas=replicas,
            max_unavailable=unavailable,
            new_rs=RSView("new", created="2", replicas=new, available=new_ready),
            old_rss=[RSView("old", created="1", replicas=old, available=old_ready)],
        )
        == steps
    )


def test_old_replica_sets_scale_down_oldest_first() -> None:
    olds = [
        RSView("b", created="2024-01-02T00:00:00Z", replicas=2, available=2),
        RSView("a", created="2024-01-01T00:00:00Z", replicas=2, available=2),
        RSView("idle", created="2023-01-01T00:00:00Z", replicas=0, available=1),
    ]
    steps = reconcile_old_replica_sets(
        replicas=4, max_unavailable=3, new_rs=RSView("n", replicas=1, available=0), old_rss=olds
    )
    # min available 1, 4 available in active old sets: 3 may go, the oldest set first.
    assert steps == [("a", 0), ("b", 1)]


def test_a_stale_old_replica_set_stops_the_scale_down_after_earlier_cleanups() -> None:
    """Go keeps the cleanups done before the error, and scales nothing after it."""
    olds = [
        RSView("a", created="2024-01-01T00:00:00Z", replicas=2, available=1),
        RSView("b", created="2024-01-02T00:00:00Z", replicas=8, available=9),
    ]
    steps = reconcile_old_replica_sets(
        replicas=10, max_unavailable=0, new_rs=RSView("n", replicas=3, available=3), old_rss=olds
    )
    assert steps == [("a", 1)]


@given(
    replicas=st.integers(1, 30),
    surge=st.integers(0, 10),
    unavailable=st.integers(0, 10),
    data=st.data(),
)
def test_a_simulated_rollout_respects_its_bounds_and_finishes(
    replicas: int, surge: int, unavailable: int, data: st.DataObject
) -> None:
    """Drive NewRSNewReplicas and reconcileOldReplicaSets with some new pods becoming available
    at each step: spec totals never exceed replicas + surge, availability never drops below
    replicas - unavailable, and the rollout ends with every replica new."""
    strategy = Strategy("RollingUpdate", surge, unavailable)
    s, u = max_surge(strategy, replicas), max_unavailable(strategy, replicas)
    old, new = replicas, 0
    new_available = 0
    for _ in range(10 * replicas + 20):
        old_view = RSView("old", created="1", replicas=old, available=old)
        new_view = RSView("new", created="2", replicas=new, available=new_available)
        new = new_rs_new_replicas(
            strategy=strategy, replicas=replicas, all_rss=[old_view, new_view], new_rs=new_view
        )
        new_view = RSView("new", created="2", replicas=new, available=new_available)
        for _, size in reconcile_old_replica_sets(
            replicas=replicas, max_unavailable=u, new_rs=new_view, old_rss=[old_view]
        ):
            old = size
        assert old + new <= replicas + s
        assert old + new_available >= min(replicas - u, replicas)
        if old == 0 and new_available == replicas:
            break
        if new_available < new:
            new_available += data.draw(st.integers(1, new - new_available))
    else:
        raise AssertionError(f"rollout did not finish: old={old} new={new}/{new_available}")


# ----- scaling -----------------------------------------------------------------------------


def rs(name: str, replicas: int, *, created: str, max_replicas: int | None) -> RSView:
    return RSView(name, created=created, replicas=replicas, max_annotation=max_replicas)


@pytest.mark.parametrize(
    ("before", "after", "new", "olds", "expected_new", "expected_olds"),
    [
        # sync_test.go TestScale (maxSurge 0)
        (5, 10, 2, [3], 4, [6]),
        (5, 3, 2, [3], 1, [2]),
        (9, 4, 8, [1], 4, [0]),
        (7, 10, 2, [3, 2], 3, [4, 3]),
        (13, 8, 2, [8, 3], 1, [5, 2]),
        (3, 4, 1, [1, 1], 2, [1, 1]),  # leftover to the newest of equal sizes when scaling up
        (4, 3, 1, [1, 2], 1, [1, 1]),  # leftover from the largest when scaling down
        (10, 0, 4, [6], 0, [0]),  # to zero
    ],
)
def test_proportional_scaling(
    before: int,
    after: int,
    new: int,
    olds: list[int],
    expected_new: int,
    expected_olds: list[int],
) -> None:
    views = [
        rs(f"old{i}", size, created=f"2024-01-0{i + 1}T00:00:00Z", max_replicas=before)
        for i, size in enumerate(olds)
    ]
    views.append(rs("new", new, created="2024-02-01T00:00:00Z", max_replicas=before))
    sizes = dict(proportional_sizes(replicas=after, surge=0, rss=views, status_replicas=before))
    assert sizes["new"] == expected_new
    assert [sizes[f"old{i}"] for i in range(len(olds))] == expected_olds


def test_proportional_scaling_with_surge_and_missing_annotations() -> None:
    # 4 replicas, surge 2, mid-rollout old 4 / new 2, scaled to 8 (surge 2): 10 to share.
    views = [
        rs("old", 4, created="1", max_replicas=6),
        rs("new", 2, created="2", max_replicas=6),
    ]
    assert proportional_sizes(replicas=8, surge=2, rss=views, status_replicas=6) == [
        ("old", 7),
        ("new", 3),
    ]
    # Without max-replicas annotations the Deployment's status.replicas is the base.
    views = [
        rs("old", 4, created="1", max_replicas=None),
        rs("new", 2, created="2", max_replicas=None),
    ]
    assert dict(proportional_sizes(replicas=12, surge=0, rss=views, status_replicas=6)) == {
        "old": 8,
        "new": 4,
    }


def test_find_active_or_latest_and_saturation() -> None:
    old = RSView("old", created="1", replicas=0)
    older = RSView("older", created="0", replicas=0)
    new = RSView("new", created="2", replicas=0)
    assert rollout.find_active_or_latest(new, [old]) == new  # none active: the new one
    assert rollout.find_active_or_latest(None, [older, old]) == old  # none active: the newest
    busy = RSView("old", created="1", replicas=3)
    assert rollout.find_active_or_latest(new, [busy]) == busy
    assert rollout.find_active_or_latest(RSView("new", replicas=1), [busy]) is None
    assert rollout.is_saturated(3, RSView("n", replicas=3, available=3, desired_annotation=3))
    assert not rollout.is_saturated(3, RSView("n", replicas=3, available=2, desired_annotation=3))
    assert not rollout.is_saturated(3, RSView("n", replicas=3, available=3))


# ----- which pods go -----------------------------------------------------------------------

NOW = 1_700_000_000.0


def test_pods_to_delete_order() -> None:
    base = {"node": "n1", "phase": "Running", "ready": True, "created": NOW - 3600}
    pods = [
        PodView("ready-old", uid="1", ready_since=NOW - 3600, **base),  # type: ignore[arg-type]
        PodView("unscheduled", uid="2", **(base | {"node": "", "ready": False})),  # type: ignore[arg-type]
        PodView("pending", uid="3", **(base | {"phase": "Pending", "ready": False})),  # type: ignore[arg-type]
        PodView("not-ready", uid="4", **(base | {"ready": False})),  # type: ignore[arg-type]
        PodView("cheap", uid="5", ready_since=NOW - 3600, deletion_cost=-10, **base),  # type: ignore[arg-type]
        PodView("doubled", uid="6", ready_since=NOW - 3600, rank=3, **base),  # type: ignore[arg-type]
        PodView("ready-recently", uid="7", ready_since=NOW - 5, **base),  # type: ignore[arg-type]
    ]
    order = [p.name for p in pods_to_delete(pods, 6, now=NOW)]
    assert order == ["unscheduled", "pending", "not-ready", "cheap", "doubled", "ready-recently"]
    assert len(pods_to_delete(pods, 10, now=NOW)) == len(pods)


def test_pods_to_delete_prefers_newer_and_restarted_pods() -> None:
    common = {"node": "n", "phase": "Running", "ready": False}
    older = PodView("older", uid="a", created=NOW - 10_000, **common)  # type: ignore[arg-type]
    newer = PodView("newer", uid="b", created=NOW - 10, **common)  # type: ignore[arg-type]
    restarted = PodView("restarted", uid="c", created=NOW - 10_000, restarts=3, **common)  # type: ignore[arg-type]
    assert [p.name for p in pods_to_delete([older, newer], 1, now=NOW)] == ["newer"]
    assert [p.name for p in pods_to_delete([older, newer, restarted], 1, now=NOW)] == ["restarted"]
    # Within the same logarithmic age bucket, the uid decides (stable, not random).
    a = PodView("a", uid="1", created=NOW - 100.0, **common)  # type: ignore[arg-type]
    b = PodView("b", uid="2", created=NOW - 101.0, **common)  # type: ignore[arg-type]
    assert [p.name for p in pods_to_delete([b, a], 1, now=NOW)] == ["a"]


# ----- hash and annotations ----------------------------------------------------------------


def test_pod_template_hash_is_stable_and_looks_real() -> None:
    template = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"image": "x"}]}}
    reordered = {"spec": {"containers": [{"image": "x"}]}, "metadata": {"labels": {"app": "web"}}}
    value = rollout.compute_hash(template, None)
    assert value == rollout.compute_hash(reordered, None)
    assert set(value) <= set("bcdfghjklmnpqrstvwxz2456789") and 1 <= len(value) <= 10
    assert rollout.compute_hash(template, 1) != value
    other = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"image": "y"}]}}
    assert rollout.compute_hash(other, None) != value
    with_hash = {"metadata": {"labels": {"app": "web", "pod-template-hash": value}}, **other}
    assert rollout.equal_ignore_hash(with_hash, other)
    # As kubectl's rollout undo sends it back (Go re-encoding): the same template.
    undone = {"metadata": {"labels": {"app": "web"}, "creationTimestamp": None}, **template}
    undone["metadata"] = {"labels": {"app": "web"}, "creationTimestamp": None}
    assert rollout.equal_ignore_hash(undone, template)
    assert rollout.compute_hash(undone, None) == value


def test_new_replica_set_annotations_and_rollback_history() -> None:
    deployment = {
        "metadata": {
            "annotations": {
                "kubernetes.io/change-cause": "v2",
                rollout.LAST_APPLIED: "{}",
                rollout.REVISION: "7",
            }
        }
    }
    created: dict[str, object] = {"metadata": {}}
    assert rollout.set_new_rs_annotations(
        deployment, created, 3, exists=False, desired=4, max_replicas=5
    )
    assert created["metadata"] == {
        "annotations": {
            "kubernetes.io/change-cause": "v2",
            rollout.REVISION: "3",
            rollout.DESIRED_REPLICAS: "4",
            rollout.MAX_REPLICAS: "5",
        }
    }
    # Rolled back to: the old revision goes into the history.
    back = {"metadata": {"annotations": {rollout.REVISION: "1"}}}
    rollout.set_new_rs_annotations(deployment, back, 4, exists=True, desired=4, max_replicas=5)
    assert back["metadata"]["annotations"][rollout.REVISION] == "4"
    assert back["metadata"]["annotations"][rollout.REVISION_HISTORY] == "1"
    assert rollout.DESIRED_REPLICAS not in back["metadata"]["annotations"]
    back["metadata"]["annotations"][rollout.REVISION] = "4"
    rollout.set_new_rs_annotations(deployment, back, 6, exists=True, desired=4, max_replicas=5)
    assert back["metadata"]["annotations"][rollout.REVISION_HISTORY] == "1,4"
    # Unchanged: nothing to write.
    assert not rollout.set_new_rs_annotations(
        deployment, back, 6, exists=True, desired=4, max_replicas=5
    )


# ----- status and conditions ---------------------------------------------------------------

T0 = "2024-01-01T00:00:00Z"
T1 = "2024-01-01T00:01:00Z"
FACTS = DeploymentFacts(name="web", generation=2, replicas=3, progress_deadline=600)


def test_calculate_status() -> None:
    status = rollout.calculate_status(
        deployment=FACTS,
        old_status={},
        all_rss=[
            RSView("old", replicas=1, actual=2, ready=2, available=2),
            RSView("new", replicas=3, actual=3, ready=1, available=0),
        ],
        new_rs=RSView("new", replicas=3, actual=3, ready=1, available=0),
        now=T0,
    )
    assert status == {
        "observedGeneration": 2,
        "replicas": 5,
        "updatedReplicas": 3,
        "readyReplicas": 3,
        "availableReplicas": 2,
        "unavailableReplicas": 2,  # spec replicas (4) - available
        "conditions": [
            {
                "type": "Available",
                "status": "False",  # 2 < 3 - 0 (25% of 3 rounds down to 0)
                "lastUpdateTime": T0,
                "lastTransitionTime": T0,
                "reason": "MinimumReplicasUnavailable",
                "message": "Deployment does not have minimum availability.",
            }
        ],
    }


def _status(
    updated: int, available: int, *, replicas: int = 3, reason: str, at: str
) -> dict[str, object]:
    return {
        "observedGeneration": 2,
        "replicas": replicas,
        "updatedReplicas": updated,
        "availableReplicas": available,
        "conditions": [
            {
                "type": "Progressing",
                "status": "True",
                "lastUpdateTime": at,
                "lastTransitionTime": T0,
                "reason": reason,
                "message": "",
            }
        ],
    }


def test_rollout_status_progressing_complete_and_timed_out() -> None:
    now = datetime(2024, 1, 1, 0, 2, tzinfo=UTC)
    old = _status(1, 1, reason="NewReplicaSetCreated", at=T0)
    progressed = rollout.rollout_status(
        deployment=FACTS,
        old_status=old,
        new_status=_status(2, 1, reason="NewReplicaSetCreated", at=T0),
        new_rs_name="web-abc",
        now=now,
        now_text=T1,
    )
    [cond] = progressed["conditions"]  # type: ignore[misc]
    assert (cond["reason"], cond["lastUpdateTime"], cond["lastTransitionTime"]) == (
        "ReplicaSetUpdated",
        T1,
        T0,
    )
    assert cond["message"] == 'ReplicaSet "web-abc" is progressing.'
    complete = rollout.rollout_status(
        deployment=FACTS,
        old_status=old,
        new_status=_status(3, 3, reason="ReplicaSetUpdated", at=T0),
        new_rs_name="web-abc",
        now=now,
        now_text=T1,
    )
    assert complete["conditions"][0]["reason"] == "NewReplicaSetAvailable"  # type: ignore[index]
    # No progress for longer than the deadline.
    late = datetime(2024, 1, 1, 0, 10, 1, tzinfo=UTC)
    stuck = rollout.rollout_status(
        deployment=FACTS,
        old_status=old,
        new_status=_status(1, 1, reason="NewReplicaSetCreated", at=T0),
        new_rs_name="web-abc",
        now=late,
        now_text=T1,
    )
    [cond] = stuck["conditions"]  # type: ignore[misc]
    assert (cond["status"], cond["reason"]) == ("False", "ProgressDeadlineExceeded")
    assert cond["message"] == 'ReplicaSet "web-abc" has timed out progressing.'
    # Not yet: a timer is due just after the deadline.
    after = rollout.progress_check_after(FACTS, old, old, now=now)
    assert after is not None and 479 < after < 481
    # No deadline: no Progressing condition at all.
    no_deadline = DeploymentFacts(name="web", generation=2, replicas=3, progress_deadline=None)
    plain = rollout.rollout_status(
        deployment=no_deadline,
        old_status=old,
        new_status=old,
        new_rs_name=None,
        now=now,
        now_text=T1,
    )
    assert "conditions" not in plain


def test_set_condition_keeps_transition_time_when_only_the_reason_changes() -> None:
    status: dict[str, object] = {}
    rollout.set_condition(status, rollout.new_condition("Available", "True", "A", "", now=T0))
    rollout.set_condition(status, rollout.new_condition("Available", "True", "A", "x", now=T1))
    assert status["conditions"][0]["lastUpdateTime"] == T0  # type: ignore[index]
    rollout.set_condition(status, rollout.new_condition("Available", "True", "B", "", now=T1))
    assert status["conditions"][0]["lastTransitionTime"] == T0  # type: ignore[index]
    assert status["conditions"][0]["reason"] == "B"  # type: ignore[index]
    rollout.set_condition(status, rollout.new_condition("Available", "False", "C", "", now=T1))
    assert status["conditions"][0]["lastTransitionTime"] == T1  # type: ignore[index]
