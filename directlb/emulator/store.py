"""The emulator's state: load balancers, listeners, rules, targets and tasks.

Reads are served from memory (the object graph below); every acknowledged change is written
through to SQLite first, in one transaction, so a ``kill -9`` loses nothing that a client was
told had happened. Changes are expressed as *operations* (plain JSON values), which is also how
an asynchronous task carries the change it will make when it finishes: a task in flight at a
crash is found in the ``tasks`` table on restart and finished from its stored operations.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

log = logging.getLogger("directlb.emulator.store")

Doc = dict[str, Any]
Op = dict[str, Any]
TargetKey = tuple[str, int]

TASK_DONE = 0
TASK_FAILED = 1
TASK_RUNNING = 2


@dataclass
class Target:
    """A backend bound to a listener (layer 4) or a rule (layer 7)."""

    kind: str  # "ENI" (bound by EniIp) or "CVM" (bound by InstanceId)
    address: str  # the EniIp, or the InstanceId
    port: int
    weight: int
    registered: str
    tag: str = ""

    @property
    def key(self) -> TargetKey:
        return (self.address, self.port)


@dataclass
class Rule:
    location_id: str
    listener_id: str
    lb_id: str
    domain: str
    url: str
    health_check: Doc
    session_expire: int
    scheduler: str
    forward_type: str
    certificate: Doc | None
    default_server: bool
    http2: bool
    create_time: str
    targets: dict[TargetKey, Target] = field(default_factory=dict)


@dataclass
class Listener:
    listener_id: str
    lb_id: str
    protocol: str
    port: int
    name: str
    health_check: Doc | None
    certificate: Doc | None
    scheduler: str
    session_expire: int
    sni_switch: int
    create_time: str
    rules: dict[str, Rule] = field(default_factory=dict)
    targets: dict[TargetKey, Target] = field(default_factory=dict)

    @property
    def layer7(self) -> bool:
        return self.protocol in ("HTTP", "HTTPS")


@dataclass
class LoadBalancer:
    lb_id: str
    name: str
    lb_type: str
    forward: int
    vpc_id: str
    subnet_id: str
    vip: str
    tags: list[Doc]
    status: int
    create_time: str
    client_token: str = ""
    listeners: dict[str, Listener] = field(default_factory=dict)

    def tag_value(self, key: str) -> str | None:
        for tag in self.tags:
            if tag.get("TagKey") == key:
                return str(tag.get("TagValue", ""))
        return None


@dataclass
class Task:
    task_id: str
    action: str
    lb_ids: list[str]
    status: int
    message: str
    ops: list[Op]
    created: float
    deal_name: str = ""


_CHILDREN = {"listeners", "rules", "targets"}


@dataclass(frozen=True)
class Change:
    """Where an applied change may have altered targets or their health checks.

    Everything when no ``lb_id`` is set (see :meth:`Store.touch`); every listener of a CLB when
    no ``listener_id`` is; one listener with its rules when no ``targets`` are; else just those
    targets, of the listener (layer 4) or of its rule ``location_id``.
    """

    lb_id: str = ""
    listener_id: str = ""
    location_id: str = ""
    targets: tuple[TargetKey, ...] | None = None


#: Told of every change right after it is applied (see :meth:`Store.follow`).
ChangeFollower = Callable[[Change], None]


def attrs(record: Any) -> Doc:
    """The record's own fields as a JSON-able dict, without its children."""
    return {f.name: getattr(record, f.name) for f in fields(record) if f.name not in _CHILDREN}


def _target_from(doc: Doc) -> Target:
    return Target(**doc)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS lbs (id TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS listeners (id TEXT PRIMARY KEY, lb_id TEXT NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS listeners_lb ON listeners (lb_id);
CREATE TABLE IF NOT EXISTS rules (
    id TEXT PRIMARY KEY, lb_id TEXT NOT NULL, listener_id TEXT NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS rules_listener ON rules (listener_id);
CREATE INDEX IF NOT EXISTS rules_lb ON rules (lb_id);
CREATE TABLE IF NOT EXISTS targets (
    lb_id TEXT NOT NULL, listener_id TEXT NOT NULL, location_id TEXT NOT NULL,
    address TEXT NOT NULL, port INTEGER NOT NULL, doc TEXT NOT NULL,
    PRIMARY KEY (listener_id, location_id, address, port));
CREATE INDEX IF NOT EXISTS targets_lb ON targets (lb_id);
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY, action TEXT NOT NULL, lb_ids TEXT NOT NULL, status INTEGER NOT NULL,
    message TEXT NOT NULL, ops TEXT NOT NULL, created REAL NOT NULL, deal_name TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
"""


class Store:
    """In-memory state with a write-through SQLite journal (``:memory:`` when no path)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.db = sqlite3.connect(str(path) if path else ":memory:", isolation_level=None)
        if path:
            # WAL with synchronous=NORMAL: a committed transaction survives a process crash.
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        self.lbs: dict[str, LoadBalancer] = {}
        self.tasks: dict[str, Task] = {}
        self.deals: dict[str, str] = {}  # DealName -> TaskId
        self.version = 0  # bumped on every applied change; the data plane watches it
        #: Bound targets in all: kept as changes are applied, so counting them costs nothing.
        self.target_count = 0
        self._followers: list[ChangeFollower] = []
        self._load()

    # ----- reading -----------------------------------------------------------------------

    def lb(self, lb_id: str) -> LoadBalancer | None:
        return self.lbs.get(lb_id)

    def all_targets(self) -> Iterator[tuple[LoadBalancer, Listener, Rule | None, Target]]:
        for lb in self.lbs.values():
            for listener in lb.listeners.values():
                for target in listener.targets.values():
                    yield lb, listener, None, target
                for rule in listener.rules.values():
                    for target in rule.targets.values():
                        yield lb, listener, rule, target

    def follow(self, follower: ChangeFollower) -> None:
        """Call ``follower`` after every applied operation with what it may have changed, so
        that a follower (the health prober) updates only that instead of rescanning every
        target."""
        self._followers.append(follower)

    def touch(self) -> None:
        """Something every target may depend on changed outside the store (the instance
        registry, which maps an InstanceId to its address): followers look at everything."""
        self.version += 1
        self._tell(Change())

    def _tell(self, change: Change) -> None:
        for follower in self._followers:
            follower(change)

    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT v FROM meta WHERE k = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)", (key, value))

    # ----- writing -----------------------------------------------------------------------

    def apply(self, ops: Iterable[Op], *, task: Task | None = None) -> None:
        """Write ``ops`` (and the task row, if any) in one transaction, then to memory."""
        ops = list(ops)
        cur = self.db.cursor()
        cur.execute("BEGIN")
        try:
            for op in ops:
                self._write(cur, op)
            if task is not None:
                self._write_task(cur, task)
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        for op in ops:
            self._mutate(op)
            self._tell(_change_of(op))
        if task is not None:
            self.tasks[task.task_id] = task
            if task.deal_name:
                self.deals[task.deal_name] = task.task_id
        self.version += 1

    def _write_task(self, cur: sqlite3.Cursor, task: Task) -> None:
        cur.execute(
            "INSERT OR REPLACE INTO tasks (id, action, lb_ids, status, message, ops, created,"
            " deal_name) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                task.task_id,
                task.action,
                json.dumps(task.lb_ids),
                task.status,
                task.message,
                json.dumps(task.ops) if task.status == TASK_RUNNING else "[]",
                task.created,
                task.deal_name,
            ),
        )

    def _write(self, cur: sqlite3.Cursor, op: Op) -> None:
        kind = op["op"]
        if kind == "put_lb":
            doc = op["lb"]
            cur.execute(
                # An upsert, not INSERT OR REPLACE: the row keeps its rowid, so a changed
                # record keeps its place in every listing after a restart.
                "INSERT INTO lbs (id, doc) VALUES (?, ?)"
                " ON CONFLICT (id) DO UPDATE SET doc = excluded.doc",
                (doc["lb_id"], json.dumps(doc)),
            )
        elif kind == "del_lb":
            for table in ("targets", "rules", "listeners"):
                cur.execute(f"DELETE FROM {table} WHERE lb_id = ?", (op["lb_id"],))
            cur.execute("DELETE FROM lbs WHERE id = ?", (op["lb_id"],))
        elif kind == "put_listener":
            doc = op["listener"]
            cur.execute(
                "INSERT INTO listeners (id, lb_id, doc) VALUES (?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET doc = excluded.doc",
                (doc["listener_id"], doc["lb_id"], json.dumps(doc)),
            )
        elif kind == "del_listener":
            for table in ("targets", "rules"):
                cur.execute(f"DELETE FROM {table} WHERE listener_id = ?", (op["listener_id"],))
            cur.execute("DELETE FROM listeners WHERE id = ?", (op["listener_id"],))
        elif kind == "put_rule":
            doc = op["rule"]
            cur.execute(
                "INSERT INTO rules (id, lb_id, listener_id, doc) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET doc = excluded.doc",
                (doc["location_id"], doc["lb_id"], doc["listener_id"], json.dumps(doc)),
            )
        elif kind == "del_rule":
            cur.execute(
                "DELETE FROM targets WHERE listener_id = ? AND location_id = ?",
                (op["listener_id"], op["location_id"]),
            )
            cur.execute("DELETE FROM rules WHERE id = ?", (op["location_id"],))
        elif kind == "put_targets":
            cur.executemany(
                "INSERT INTO targets (lb_id, listener_id, location_id, address, port, doc)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (listener_id, location_id, address, port)"
                " DO UPDATE SET doc = excluded.doc",
                [
                    (
                        op["lb_id"],
                        op["listener_id"],
                        op["location_id"],
                        t["address"],
                        t["port"],
                        json.dumps(t),
                    )
                    for t in op["targets"]
                ],
            )
        elif kind == "del_targets":
            cur.executemany(
                "DELETE FROM targets WHERE listener_id = ? AND location_id = ? AND address = ?"
                " AND port = ?",
                [
                    (op["listener_id"], op["location_id"], address, port)
                    for address, port in op["keys"]
                ],
            )
        else:  # pragma: no cover - a programming error, not user input
            raise ValueError(f"unknown operation {kind!r}")

    def _mutate(self, op: Op) -> None:
        kind = op["op"]
        if kind == "put_lb":
            doc = op["lb"]
            old = self.lbs.get(doc["lb_id"])
            lb = LoadBalancer(**doc)
            if old is not None:
                lb.listeners = old.listeners
            self.lbs[lb.lb_id] = lb
        elif kind == "del_lb":
            gone = self.lbs.pop(op["lb_id"], None)
            if gone is not None:
                self.target_count -= sum(_bound_count(lis) for lis in gone.listeners.values())
        elif kind == "put_listener":
            doc = op["listener"]
            lb = self.lbs[doc["lb_id"]]
            old_listener = lb.listeners.get(doc["listener_id"])
            listener = Listener(**doc)
            if old_listener is not None:
                listener.rules = old_listener.rules
                listener.targets = old_listener.targets
            lb.listeners[listener.listener_id] = listener
        elif kind == "del_listener":
            gone_listener = self.lbs[op["lb_id"]].listeners.pop(op["listener_id"], None)
            if gone_listener is not None:
                self.target_count -= _bound_count(gone_listener)
        elif kind == "put_rule":
            doc = op["rule"]
            listener = self.lbs[doc["lb_id"]].listeners[doc["listener_id"]]
            old_rule = listener.rules.get(doc["location_id"])
            rule = Rule(**doc)
            if old_rule is not None:
                rule.targets = old_rule.targets
            listener.rules[rule.location_id] = rule
        elif kind == "del_rule":
            rules = self.lbs[op["lb_id"]].listeners[op["listener_id"]].rules
            gone_rule = rules.pop(op["location_id"], None)
            if gone_rule is not None:
                self.target_count -= len(gone_rule.targets)
        elif kind == "put_targets":
            bound = self._targets_of(op)
            before = len(bound)
            for doc in op["targets"]:
                target = _target_from(doc)
                bound[target.key] = target
            self.target_count += len(bound) - before
        elif kind == "del_targets":
            bound = self._targets_of(op)
            before = len(bound)
            for address, port in op["keys"]:
                bound.pop((address, port), None)
            self.target_count += len(bound) - before

    def _targets_of(self, op: Op) -> dict[TargetKey, Target]:
        listener = self.lbs[op["lb_id"]].listeners[op["listener_id"]]
        if op["location_id"]:
            return listener.rules[op["location_id"]].targets
        return listener.targets

    # ----- loading -----------------------------------------------------------------------

    def _load(self) -> None:
        for (doc,) in self.db.execute("SELECT doc FROM lbs ORDER BY rowid"):
            lb = LoadBalancer(**json.loads(doc))
            self.lbs[lb.lb_id] = lb
        # A row whose parent is missing (a state file damaged by hand, say) is skipped and
        # logged: one orphan must not stop the emulator from starting on its state.
        for (doc,) in self.db.execute("SELECT doc FROM listeners ORDER BY rowid"):
            listener = Listener(**json.loads(doc))
            parent = self.lbs.get(listener.lb_id)
            if parent is None:
                log.warning("event=orphan_row kind=listener id=%s", listener.listener_id)
                continue
            parent.listeners[listener.listener_id] = listener
        for (doc,) in self.db.execute("SELECT doc FROM rules ORDER BY rowid"):
            rule = Rule(**json.loads(doc))
            owner = self.lbs.get(rule.lb_id)
            owner_listener = owner.listeners.get(rule.listener_id) if owner else None
            if owner_listener is None:
                log.warning("event=orphan_row kind=rule id=%s", rule.location_id)
                continue
            owner_listener.rules[rule.location_id] = rule
        for lb_id, listener_id, location_id, doc in self.db.execute(
            "SELECT lb_id, listener_id, location_id, doc FROM targets ORDER BY rowid"
        ):
            target = _target_from(json.loads(doc))
            try:
                bound = self._targets_of(
                    {"lb_id": lb_id, "listener_id": listener_id, "location_id": location_id}
                )
            except KeyError:
                log.warning("event=orphan_row kind=target listener=%s", listener_id)
                continue
            bound[target.key] = target
        self.target_count = sum(1 for _ in self.all_targets())
        for row in self.db.execute(
            "SELECT id, action, lb_ids, status, message, ops, created, deal_name FROM tasks"
        ):
            task = Task(
                task_id=row[0],
                action=row[1],
                lb_ids=json.loads(row[2]),
                status=row[3],
                message=row[4],
                ops=json.loads(row[5]),
                created=row[6],
                deal_name=row[7],
            )
            self.tasks[task.task_id] = task
            if task.deal_name:
                self.deals[task.deal_name] = task.task_id

    def prune_tasks(self, *, older_than: float) -> int:
        """Forget finished tasks created before ``older_than`` (epoch seconds)."""
        stale = [
            t.task_id
            for t in self.tasks.values()
            if t.status != TASK_RUNNING and t.created < older_than
        ]
        with self.db:
            self.db.executemany("DELETE FROM tasks WHERE id = ?", [(i,) for i in stale])
        for task_id in stale:
            task = self.tasks.pop(task_id)
            if task.deal_name:
                self.deals.pop(task.deal_name, None)
        return len(stale)

    def close(self) -> None:
        self.db.close()


def _bound_count(listener: Listener) -> int:
    """Targets bound to a listener, directly (layer 4) or through its rules (layer 7)."""
    return len(listener.targets) + sum(len(rule.targets) for rule in listener.rules.values())


def _change_of(op: Op) -> Change:
    """What an operation touches: targets, a listener (a rule is part of its listener's) or a
    whole CLB."""
    kind = op["op"]
    if kind == "put_lb":
        return Change(lb_id=op["lb"]["lb_id"])
    if kind == "del_lb":
        return Change(lb_id=op["lb_id"])
    if kind == "put_listener":
        return Change(lb_id=op["listener"]["lb_id"], listener_id=op["listener"]["listener_id"])
    if kind == "put_rule":
        return Change(lb_id=op["rule"]["lb_id"], listener_id=op["rule"]["listener_id"])
    if kind in ("put_targets", "del_targets"):
        keys = [(t["address"], t["port"]) for t in op["targets"]] if "targets" in op else op["keys"]
        return Change(
            lb_id=op["lb_id"],
            listener_id=op["listener_id"],
            location_id=op["location_id"],
            targets=tuple((str(address), int(port)) for address, port in keys),
        )
    # del_listener and del_rule
    return Change(lb_id=op["lb_id"], listener_id=op["listener_id"])
