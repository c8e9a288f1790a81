"""The emulator's ledger of calls: bounded, read oldest first, cheap for the garbage collector."""

from __future__ import annotations

import gc

from directlb.emulator.server import Ledger, LedgerEntry


def entry(seq: int, *, action: str = "DescribeTargets") -> LedgerEntry:
    return LedgerEntry(
        seq=seq,
        at=1700000000.0 + seq,
        action=action,
        code="Success",
        request_id=f"req-{seq}",
        cloud_seconds=0.1,
        task_cloud_seconds=0.0,
        wall_seconds=0.002,
        server_seconds=0.001,
        load_balancer_ids=("lb-1",),
        fault="",
    )


def test_reads_give_entries_oldest_first_and_keep_the_newest() -> None:
    ledger = Ledger(3)
    assert not ledger
    for seq in range(1, 6):
        ledger.append(entry(seq))
    assert len(ledger) == 3
    assert [e.seq for e in ledger] == [3, 4, 5]
    assert (ledger[0], ledger[-1]) == (entry(3), entry(5))


def test_since_gives_the_entries_after_a_sequence_number() -> None:
    ledger = Ledger(100)
    for seq in range(1, 8):
        ledger.append(entry(seq))
    assert ledger.since(5) == [entry(6), entry(7)]
    assert ledger.since(7) == []
    assert [e.seq for e in ledger.since(0)] == list(range(1, 8))
    assert [e.seq for e in ledger.since(-3)] == list(range(1, 8))


def test_an_entry_reads_as_the_endpoint_reports_it() -> None:
    ledger = Ledger(10)
    ledger.append(entry(1))
    assert ledger.since(0)[0]._asdict() == {
        "seq": 1,
        "at": 1700000001.0,
        "action": "DescribeTargets",
        "code": "Success",
        "request_id": "req-1",
        "cloud_seconds": 0.1,
        "task_cloud_seconds": 0.0,
        "wall_seconds": 0.002,
        "server_seconds": 0.001,
        "load_balancer_ids": ("lb-1",),
        "fault": "",
    }


def test_stored_entries_leave_the_garbage_collectors_care() -> None:
    """Collections stop tracking them, so later ones do not traverse the ledger. (A tuple is
    untracked once its items are, so it may take a second collection.)"""
    ledger = Ledger(10)
    ledger.append(entry(1))
    gc.collect()
    gc.collect()
    assert not any(gc.is_tracked(row) for row in ledger._rows)
