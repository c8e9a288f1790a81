"""The simulator's object store: resourceVersions, snapshots, history and watcher fan-out."""

from __future__ import annotations

from typing import Any

import pytest

from directlb.sim.contracts import StatusError
from directlb.sim.storage import Store

PODS = ("", "pods")


def obj(name: str, namespace: str = "default", **labels: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}", "labels": labels}
    }


def test_resource_versions_are_global_and_monotonic() -> None:
    store = Store()
    a = store.put(PODS, obj("a"))
    b = store.put(("", "configmaps"), obj("b"))
    c = store.put(PODS, obj("a"))
    assert (a.rv, b.rv, c.rv) == (1, 2, 3)
    assert c.type == "MODIFIED" and a.type == "ADDED"
    assert store.get(PODS, ("default", "a")).obj["metadata"]["resourceVersion"] == "3"  # type: ignore[union-attr]
    gone = store.remove(PODS, ("default", "a"))
    assert gone.type == "DELETED" and gone.new.obj["metadata"]["resourceVersion"] == "4"
    assert store.get(PODS, ("default", "a")) is None


def test_stored_objects_are_not_shared_with_callers() -> None:
    store = Store()
    store.put(PODS, obj("a"))
    stored = store.get(PODS, ("default", "a"))
    assert stored is not None
    copy = stored.copy()
    copy["metadata"]["name"] = "changed"
    assert stored.obj["metadata"]["name"] == "a"


def test_namespace_index() -> None:
    store = Store()
    store.put(PODS, obj("a", "x"))
    store.put(PODS, obj("b", "y"))
    assert [k for k, _ in store.items(PODS, "x")] == [("x", "a")]
    assert len(store.items(PODS, None)) == 2
    store.remove(PODS, ("x", "a"))
    assert store.items(PODS, "x") == []


def test_snapshot_undoes_later_events() -> None:
    store = Store()
    store.put(PODS, obj("a"))
    store.put(PODS, obj("b"))
    at = store.rv
    store.put(PODS, obj("c"))
    store.remove(PODS, ("default", "a"))
    changed = obj("b")
    changed["metadata"]["labels"] = {"v": "2"}
    store.put(PODS, changed)
    snapshot = store.snapshot(PODS, rv=at, namespace=None)
    assert sorted(k[1] for k in snapshot) == ["a", "b"]
    assert snapshot[("default", "b")].obj["metadata"]["labels"] == {}


def test_history_is_bounded_and_older_versions_expire() -> None:
    store = Store(history_size=3)
    for i in range(6):
        store.put(PODS, obj(f"p{i}"))
    assert [e.rv for e in store.events_since(PODS, 3)] == [4, 5, 6]
    with pytest.raises(StatusError) as error:
        store.events_since(PODS, 2)
    assert error.value.code == 410 and error.value.reason == "Expired"
    assert error.value.message == "too old resource version: 2 (4)"
    with pytest.raises(StatusError):
        store.snapshot(PODS, rv=1, namespace=None)


def test_new_resource_has_no_history_before_it() -> None:
    store = Store()
    store.put(PODS, obj("a"))
    with pytest.raises(StatusError):
        store.events_since(("example.com", "widgets"), 0)
    assert store.events_since(("example.com", "widgets"), 1) == []


def test_watchers_see_selection_changes_as_added_and_deleted() -> None:
    store = Store()
    watcher = store.watch(
        PODS,
        namespace="default",
        matches=lambda o: o["metadata"]["labels"].get("app") == "x",
        since=0,
    )
    store.put(PODS, obj("a", app="x"))
    store.put(PODS, obj("a", app="y"))
    store.put(PODS, obj("a", app="x"))
    store.put(PODS, obj("b", "other", app="x"))
    store.remove(PODS, ("default", "a"))
    seen = []
    while not watcher.queue.empty():
        item = watcher.queue.get_nowait()
        assert item is not None
        seen.append((item[0], item[1].obj["metadata"]["name"], item[1].rv))
    assert seen == [("ADDED", "a", 1), ("DELETED", "a", 2), ("ADDED", "a", 3), ("DELETED", "a", 5)]


def test_watch_without_version_lists_current_objects_first() -> None:
    store = Store()
    store.put(PODS, obj("b"))
    store.put(PODS, obj("a"))
    watcher = store.watch(PODS, namespace=None, matches=lambda o: True, since=None)
    store.put(PODS, obj("c"))
    names = []
    while not watcher.queue.empty():
        item = watcher.queue.get_nowait()
        assert item is not None
        names.append((item[0], item[1].obj["metadata"]["name"]))
    assert names == [("ADDED", "a"), ("ADDED", "b"), ("ADDED", "c")]


def test_slow_watcher_is_closed_not_buffered_forever() -> None:
    store = Store()
    watcher = store.watch(PODS, namespace=None, matches=lambda o: True, since=0)
    watcher.limit = 2
    for i in range(4):
        store.put(PODS, obj(f"p{i}"))
    assert watcher.closed
    assert watcher not in store.tables[PODS].watchers


def test_dependents_index_follows_owner_references() -> None:
    store = Store()
    child = obj("c")
    child["metadata"]["ownerReferences"] = [{"uid": "owner-1", "kind": "ReplicaSet", "name": "o"}]
    store.put(PODS, child)
    assert store.dependents["owner-1"] == {(PODS, ("default", "c"))}
    orphan = obj("c")
    store.put(PODS, orphan)
    assert not store.dependents["owner-1"]
    assert store.by_uid("uid-c") is not None
