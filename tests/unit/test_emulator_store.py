"""The emulator's state: operations update memory and the SQLite file alike, and survive reopening.

Also what a restart does with it: tasks in flight at a crash are finished by
``TaskEngine.recover()``, and new ids never collide with stored ones.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from directlb.emulator.config import EmulatorConfig
from directlb.emulator.engine import Ids, TaskEngine
from directlb.emulator.store import (
    TASK_DONE,
    TASK_FAILED,
    TASK_RUNNING,
    Listener,
    LoadBalancer,
    Op,
    Rule,
    Store,
    Target,
    Task,
    attrs,
)

LB = "lb-00000001"
L4 = "lbl-0000000a"
L7 = "lbl-0000000b"
RULE = "loc-00000001"


def lb_doc(lb_id: str = LB, *, status: int = 1, name: str = "web") -> dict[str, Any]:
    return attrs(
        LoadBalancer(
            lb_id=lb_id,
            name=name,
            lb_type="OPEN",
            forward=1,
            vpc_id="vpc-directlb",
            subnet_id="",
            vip="127.100.0.1",
            tags=[{"TagKey": "owner", "TagValue": "directlb"}],
            status=status,
            create_time="2024-01-01 00:00:00",
        )
    )


def listener_doc(
    listener_id: str, *, lb_id: str = LB, protocol: str = "TCP", port: int = 80
) -> dict[str, Any]:
    return attrs(
        Listener(
            listener_id=listener_id,
            lb_id=lb_id,
            protocol=protocol,
            port=port,
            name=f"{protocol.lower()}-{port}",
            health_check={"HealthSwitch": 1} if protocol == "TCP" else None,
            certificate=None,
            scheduler="WRR",
            session_expire=0,
            sni_switch=0,
            create_time="2024-01-01 00:00:00",
        )
    )


def rule_doc(location_id: str = RULE, *, listener_id: str = L7, url: str = "/") -> dict[str, Any]:
    return attrs(
        Rule(
            location_id=location_id,
            listener_id=listener_id,
            lb_id=LB,
            domain="example.com",
            url=url,
            health_check={"HealthSwitch": 1},
            session_expire=0,
            scheduler="WRR",
            forward_type="HTTP",
            certificate=None,
            default_server=True,
            http2=False,
            create_time="2024-01-01 00:00:00",
        )
    )


def target_doc(ip: str, port: int = 8080, weight: int = 10) -> dict[str, Any]:
    return attrs(
        Target(kind="ENI", address=ip, port=port, weight=weight, registered="2024-01-01 00:00:00")
    )


def put_targets(listener_id: str, location_id: str, *ips: str, weight: int = 10) -> Op:
    return {
        "op": "put_targets",
        "lb_id": LB,
        "listener_id": listener_id,
        "location_id": location_id,
        "targets": [target_doc(ip, weight=weight) for ip in ips],
    }


def del_targets(listener_id: str, location_id: str, *ips: str) -> Op:
    return {
        "op": "del_targets",
        "lb_id": LB,
        "listener_id": listener_id,
        "location_id": location_id,
        "keys": [[ip, 8080] for ip in ips],
    }


def populated_ops() -> list[Op]:
    """One CLB with a TCP listener (2 targets) and an HTTP listener with a rule (1 target)."""
    return [
        {"op": "put_lb", "lb": lb_doc()},
        {"op": "put_listener", "listener": listener_doc(L4)},
        {"op": "put_listener", "listener": listener_doc(L7, protocol="HTTP", port=8080)},
        {"op": "put_rule", "rule": rule_doc()},
        put_targets(L4, "", "127.17.0.1", "127.17.0.2"),
        put_targets(L7, RULE, "127.17.0.3"),
    ]


def config(**overrides: Any) -> EmulatorConfig:
    return EmulatorConfig(secret_id="AKIDx", secret_key="key", time_scale=0.0, **overrides)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state.sqlite"


@pytest.fixture
def opened(state: Path) -> Iterator[list[Store]]:
    """Stores opened by a test (on ``state``), closed after it."""
    stores: list[Store] = []
    yield stores
    for store in stores:
        store.close()


def open_store(opened: list[Store], state: Path) -> Store:
    store = Store(state)
    opened.append(store)
    return store


def rows(state: Path, table: str) -> int:
    db = sqlite3.connect(state)
    try:
        return int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    finally:
        db.close()


def shape(store: Store) -> dict[str, Any]:
    """Everything the store holds, as plain values, to compare memory before and after reopen."""
    return {
        lb_id: {
            "lb": attrs(lb),
            "listeners": {
                listener_id: {
                    "listener": attrs(listener),
                    "targets": {k: attrs(t) for k, t in listener.targets.items()},
                    "rules": {
                        rule_id: {
                            "rule": attrs(rule),
                            "targets": {k: attrs(t) for k, t in rule.targets.items()},
                        }
                        for rule_id, rule in listener.rules.items()
                    },
                }
                for listener_id, listener in lb.listeners.items()
            },
        }
        for lb_id, lb in store.lbs.items()
    }


# ----- operations update memory and the file ----------------------------------------------------


def test_put_operations_update_memory(opened: list[Store], state: Path) -> None:
    store = open_store(opened, state)
    version = store.version
    store.apply(populated_ops())
    assert store.version == version + 1
    lb = store.lb(LB)
    assert lb is not None
    assert lb.tag_value("owner") == "directlb"
    assert list(lb.listeners) == [L4, L7]
    assert set(lb.listeners[L4].targets) == {("127.17.0.1", 8080), ("127.17.0.2", 8080)}
    assert lb.listeners[L7].layer7
    assert list(lb.listeners[L7].rules) == [RULE]
    assert set(lb.listeners[L7].rules[RULE].targets) == {("127.17.0.3", 8080)}
    assert sorted(t.address for _, _, _, t in store.all_targets()) == [
        "127.17.0.1",
        "127.17.0.2",
        "127.17.0.3",
    ]


def test_state_survives_reopening_the_file(opened: list[Store], state: Path) -> None:
    store = open_store(opened, state)
    store.apply(populated_ops())
    before = shape(store)
    store.close()
    opened.remove(store)
    reopened = open_store(opened, state)
    assert shape(reopened) == before
    assert reopened.lbs[LB].listeners[L7].rules[RULE].targets[("127.17.0.3", 8080)].weight == 10
    assert reopened.target_count == 3


def test_memory_store_is_not_a_file(opened: list[Store]) -> None:
    store = Store()
    opened.append(store)
    store.apply(populated_ops())
    assert store.path is None
    assert len(store.lbs) == 1


def test_put_replaces_attributes_and_keeps_children(opened: list[Store], state: Path) -> None:
    store = open_store(opened, state)
    store.apply(populated_ops())
    store.apply(
        [
            {"op": "put_lb", "lb": lb_doc(name="renamed")},
            {"op": "put_listener", "listener": listener_doc(L4, port=81)},
            {"op": "put_rule", "rule": rule_doc(url="/v2")},
            put_targets(L4, "", "127.17.0.1", weight=50),
        ]
    )
    expected = shape(store)
    lb = store.lbs[LB]
    assert lb.name == "renamed"
    assert lb.listeners[L4].port == 81
    assert len(lb.listeners[L4].targets) == 2  # children kept across a put of the parent
    assert lb.listeners[L4].targets[("127.17.0.1", 8080)].weight == 50
    assert lb.listeners[L7].rules[RULE].url == "/v2"
    assert len(lb.listeners[L7].rules[RULE].targets) == 1
    store.close()
    opened.remove(store)
    reopened = open_store(opened, state)
    assert shape(reopened) == expected
    assert rows(state, "targets") == 3
    # An updated record keeps its place in listings across a restart.
    assert list(reopened.lbs[LB].listeners) == [L4, L7]
    assert list(reopened.lbs[LB].listeners[L4].targets) == [
        ("127.17.0.1", 8080),
        ("127.17.0.2", 8080),
    ]


def test_del_targets(opened: list[Store], state: Path) -> None:
    store = open_store(opened, state)
    store.apply(populated_ops())
    store.apply([del_targets(L4, "", "127.17.0.1", "127.17.0.99"), del_targets(L7, RULE, "x")])
    assert set(store.lbs[LB].listeners[L4].targets) == {("127.17.0.2", 8080)}
    assert len(store.lbs[LB].listeners[L7].rules[RULE].targets) == 1
    assert rows(state, "targets") == 2
    store.close()
    opened.remove(store)
    reopened = open_store(opened, state)
    assert set(reopened.lbs[LB].listeners[L4].targets) == {("127.17.0.2", 8080)}


def test_same_target_on_listener_and_rule_are_distinct(opened: list[Store], state: Path) -> None:
    store = open_store(opened, state)
    store.apply(populated_ops())
    store.apply([put_targets(L7, RULE, "127.17.0.1")])  # same ip:port as on the L4 listener
    store.apply([del_targets(L7, RULE, "127.17.0.1")])
    assert ("127.17.0.1", 8080) in store.lbs[LB].listeners[L4].targets
    assert rows(state, "targets") == 3


# ----- cascades ------------------------------------------------------------------------------


def test_deleting_a_listener_removes_its_rules_and_targets(
    opened: list[Store], state: Path
) -> None:
    store = open_store(opened, state)
    store.apply(populated_ops())
    store.apply([{"op": "del_listener", "lb_id": LB, "listener_id": L7}])
    assert list(store.lbs[LB].listeners) == [L4]
    assert (rows(state, "listeners"), rows(state, "rules"), rows(state, "targets")) == (1, 0, 2)
    store.close()
    opened.remove(store)
    reopened = open_store(opened, state)
    assert list(reopened.lbs[LB].listeners) == [L4]
    assert len(reopened.lbs[LB].listeners[L4].targets) == 2


def test_deleting_a_rule_removes_its_targets(opened: list[Store], state: Path) -> None:
    store = open_store(opened, state)
    store.apply(populated_ops())
    store.apply([{"op": "del_rule", "lb_id": LB, "listener_id": L7, "location_id": RULE}])
    assert store.lbs[LB].listeners[L7].rules == {}
    assert (rows(state, "rules"), rows(state, "targets")) == (0, 2)
    store.close()
    opened.remove(store)
    assert open_store(opened, state).lbs[LB].listeners[L7].rules == {}


def test_deleting_a_load_balancer_removes_everything_under_it(
    opened: list[Store], state: Path
) -> None:
    store = open_store(opened, state)
    store.apply(populated_ops())
    other = "lb-00000002"
    store.apply(
        [
            {"op": "put_lb", "lb": lb_doc(other)},
            {"op": "put_listener", "listener": listener_doc("lbl-0000000c", lb_id=other)},
        ]
    )
    store.apply([{"op": "del_lb", "lb_id": LB}])
    assert list(store.lbs) == [other]
    assert list(store.all_targets()) == []
    counts = [rows(state, t) for t in ("lbs", "listeners", "rules", "targets")]
    assert counts == [1, 1, 0, 0]
    store.close()
    opened.remove(store)
    assert list(open_store(opened, state).lbs) == [other]


def test_a_failing_operation_changes_nothing(opened: list[Store], state: Path) -> None:
    store = open_store(opened, state)
    store.apply(populated_ops())
    before = shape(store)
    version = store.version
    with pytest.raises(KeyError):
        # a target row without an address: the write fails mid-transaction
        store.apply(
            [
                del_targets(L4, "", "127.17.0.1"),
                {**put_targets(L4, "", "127.17.0.5"), "targets": [{"port": 1}]},
            ]
        )
    assert shape(store) == before
    assert store.version == version
    assert rows(state, "targets") == 3


# ----- tasks and recovery --------------------------------------------------------------------


def running_task(task_id: str, ops: list[Op], *, message: str = "", created: float = 1.0) -> Task:
    return Task(
        task_id=task_id,
        action="RegisterTargets",
        lb_ids=[LB],
        status=TASK_RUNNING,
        message=message,
        ops=ops,
        created=created,
        deal_name=f"deal-{task_id}",
    )


def test_task_row_round_trips(opened: list[Store], state: Path) -> None:
    store = open_store(opened, state)
    store.apply(populated_ops())
    ops = [put_targets(L4, "", "127.17.0.7")]
    store.apply([], task=running_task("task-1", ops))
    store.close()
    opened.remove(store)
    reopened = open_store(opened, state)
    task = reopened.tasks["task-1"]
    assert (task.status, task.ops, task.lb_ids) == (TASK_RUNNING, ops, [LB])
    assert reopened.deals == {"deal-task-1": "task-1"}
    # ...and the ops are not applied by merely reopening.
    assert ("127.17.0.7", 8080) not in reopened.lbs[LB].listeners[L4].targets


def test_recover_finishes_a_running_task_with_its_ops(opened: list[Store], state: Path) -> None:
    store = open_store(opened, state)
    store.apply(populated_ops())
    store.apply([], task=running_task("task-1", [put_targets(L4, "", "127.17.0.7")]))
    store.close()  # the process dies here
    opened.remove(store)

    restarted = open_store(opened, state)
    engine = TaskEngine(restarted, config())
    assert engine.recover() == 1
    task = restarted.tasks["task-1"]
    assert (task.status, task.message, task.ops) == (TASK_DONE, "", [])
    assert ("127.17.0.7", 8080) in restarted.lbs[LB].listeners[L4].targets
    assert engine.busy == {}
    assert engine.recover() == 0  # nothing left in flight

    restarted.close()
    opened.remove(restarted)
    again = open_store(opened, state)
    assert again.tasks["task-1"].status == TASK_DONE
    assert ("127.17.0.7", 8080) in again.lbs[LB].listeners[L4].targets
    assert rows(state, "targets") == 4


def test_recover_fails_a_task_that_carried_a_failure(opened: list[Store], state: Path) -> None:
    store = open_store(opened, state)
    store.apply(populated_ops())
    # A CreateLoadBalancer-style task: the new CLB shows at once (status 0) and is removed if
    # the task fails; the ops stored are the fail ops.
    new_lb = "lb-00000009"
    store.apply([{"op": "put_lb", "lb": lb_doc(new_lb, status=0)}])
    failing = running_task("task-2", [{"op": "del_lb", "lb_id": new_lb}], message="boom")
    store.apply([], task=failing)
    store.close()
    opened.remove(store)

    restarted = open_store(opened, state)
    assert TaskEngine(restarted, config()).recover() == 1
    task = restarted.tasks["task-2"]
    assert (task.status, task.message) == (TASK_FAILED, "boom")
    assert new_lb not in restarted.lbs
    assert LB in restarted.lbs
    restarted.close()
    opened.remove(restarted)
    again = open_store(opened, state)
    assert again.tasks["task-2"].status == TASK_FAILED
    assert again.tasks["task-2"].message == "boom"
    assert new_lb not in again.lbs


def test_recover_runs_tasks_in_creation_order(opened: list[Store], state: Path) -> None:
    store = open_store(opened, state)
    store.apply(populated_ops())
    # Registered at weight 20 first, then re-weighted to 30: the later task must win.
    store.apply(
        [], task=running_task("b", [put_targets(L4, "", "127.17.0.1", weight=30)], created=2)
    )
    store.apply(
        [], task=running_task("a", [put_targets(L4, "", "127.17.0.1", weight=20)], created=1)
    )
    store.close()
    opened.remove(store)
    restarted = open_store(opened, state)
    assert TaskEngine(restarted, config()).recover() == 2
    assert restarted.lbs[LB].listeners[L4].targets[("127.17.0.1", 8080)].weight == 30


def test_recover_leaves_finished_tasks_alone(opened: list[Store], state: Path) -> None:
    store = open_store(opened, state)
    store.apply(populated_ops())
    done = running_task("done", [put_targets(L4, "", "127.17.0.9")])
    done.status = TASK_DONE
    store.apply([], task=done)
    store.close()
    opened.remove(store)
    restarted = open_store(opened, state)
    assert restarted.tasks["done"].ops == []  # a finished task keeps no ops
    assert TaskEngine(restarted, config()).recover() == 0
    assert ("127.17.0.9", 8080) not in restarted.lbs[LB].listeners[L4].targets


# ----- ids -----------------------------------------------------------------------------------


def ids_for(store: Store, seed: int | None, n: int = 5) -> list[str]:
    ids = Ids(store, seed)
    return [ids.resource("lb") for _ in range(n)]


def test_ids_are_reproducible_for_a_seed() -> None:
    stores = [Store() for _ in range(4)]
    try:
        assert ids_for(stores[0], 7) == ids_for(stores[1], 7)
        assert ids_for(stores[2], 7) != ids_for(stores[3], 8)
    finally:
        for store in stores:
            store.close()


def test_a_restart_on_the_same_state_never_repeats_earlier_ids(tmp_path: Path) -> None:
    """Deleted ids are not in the store any more; a new start must still not hand them out."""
    state = tmp_path / "clb.sqlite"
    first = Store(state)
    before = ids_for(first, 7, n=20)
    first.close()
    second = Store(state)
    try:
        after = ids_for(second, 7, n=20)
    finally:
        second.close()
    assert not set(before) & set(after)


def test_ids_are_shaped_like_tencents() -> None:
    empty = Store()
    try:
        ids = Ids(empty, 1)
        lb_id = ids.resource("lb")
        assert lb_id.startswith("lb-")
        assert len(lb_id) == len("lb-") + 8
        assert lb_id[3:].isalnum()
        assert lb_id[3:] == lb_id[3:].lower()
        request_id = ids.request()
        assert len(request_id) == 36
        assert request_id[14] == "4"  # a version-4 UUID
    finally:
        empty.close()


def test_ids_do_not_repeat_within_a_run() -> None:
    empty = Store()
    try:
        ids = Ids(empty, 3)
        made = [ids.resource("x") for _ in range(2000)] + [ids.request() for _ in range(2000)]
        assert len(set(made)) == len(made)
    finally:
        empty.close()


def test_ids_skip_ids_already_in_the_store(opened: list[Store], state: Path) -> None:
    empty = Store()
    try:
        fresh = Ids(empty, 7)
        lb_a, lb_b, lb_c, lb_d = (fresh.resource("lb") for _ in range(4))
    finally:
        empty.close()

    store = open_store(opened, state)
    # The seed's first lb id, listener id and rule id are taken by stored resources...
    store.apply(
        [
            {"op": "put_lb", "lb": lb_doc(lb_a)},
            {"op": "put_listener", "listener": listener_doc(lb_b, lb_id=lb_a)},
            {
                "op": "put_rule",
                "rule": rule_doc(lb_c, listener_id=lb_b) | {"lb_id": lb_a},
            },
        ]
    )
    store.close()
    opened.remove(store)

    restarted = open_store(opened, state)
    ids = Ids(restarted, 7)
    assert ids.resource("lb") == lb_d
    # Request ids are 122 random bits and are not checked against stored tasks.


def test_an_orphan_row_is_skipped_not_fatal(opened: list[Store], state: Path) -> None:
    """A listener whose CLB row is gone (a damaged file) must not stop the next start."""
    store = open_store(opened, state)
    store.apply(
        [{"op": "put_lb", "lb": lb_doc(LB)}, {"op": "put_listener", "listener": listener_doc(L4)}]
    )
    store.close()
    opened.remove(store)
    db = sqlite3.connect(state)
    db.execute("DELETE FROM lbs")
    db.commit()
    db.close()
    restarted = open_store(opened, state)
    assert restarted.lbs == {}


def test_finished_tasks_are_pruned_after_their_retention(opened: list[Store], state: Path) -> None:
    store = open_store(opened, state)
    old_done = running_task("old", [], created=100.0)
    old_done.status = TASK_DONE
    new_done = running_task("new", [], created=10_000.0)
    new_done.status = TASK_DONE
    still_running = running_task("busy", [], created=100.0)
    for task in (old_done, new_done, still_running):
        store.apply([], task=task)
    assert store.prune_tasks(older_than=5_000.0) == 1
    assert set(store.tasks) == {"new", "busy"}
    assert rows(state, "tasks") == 2
