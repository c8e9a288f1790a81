"""Keeping the API server's objects in SQLite, so a restarted simulator has its cluster back.

A store listener writes every event through (one row per object, the global resourceVersion
beside it); a restart loads the rows without events. Watch history is not kept: a client
resuming from a resourceVersion older than the restart gets 410 Gone and relists, exactly as
after a real API server's watch cache is rebuilt.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from directlb.sim.storage import DELETED, Event, Store, StoreKey

SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    store_key TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (store_key, namespace, name)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def _key_text(store_key: StoreKey) -> str:
    return f"{store_key[0]}/{store_key[1]}"


class Journal:
    """Write-through persistence of a ``Store`` (attach after loading)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        # NORMAL: a crash may lose the last writes, never corrupt; fast enough for benchmarks.
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)

    def load(self, store: Store) -> int:
        """Put every persisted object into ``store``; return how many."""
        count = 0
        for key_text, body in self.db.execute("SELECT store_key, body FROM objects"):
            group, _, resource = str(key_text).partition("/")
            store.load((group, resource), json.loads(body))
            count += 1
        row = self.db.execute("SELECT value FROM meta WHERE key = 'rv'").fetchone()
        if row is not None:
            store.rv = max(store.rv, int(row[0]))
        for table in store.tables.values():
            table.floor = store.rv
        return count

    def attach(self, store: Store) -> None:
        store.listeners.append(self.record)

    def record(self, store_key: StoreKey, event: Event) -> None:
        namespace, name = event.key
        if event.type == DELETED:
            self.db.execute(
                "DELETE FROM objects WHERE store_key = ? AND namespace = ? AND name = ?",
                (_key_text(store_key), namespace, name),
            )
        else:
            self.db.execute(
                "INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?)",
                (_key_text(store_key), namespace, name, event.new.raw),
            )
        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('rv', ?)", (str(event.rv),))

    def close(self) -> None:
        self.db.close()
