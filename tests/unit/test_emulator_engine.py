"""Asynchronous tasks and the one-mutation-at-a-time rule of a CLB.

Tests with a time scale above 0 run under ``looptime``: the event loop's clock is fake and
fast-forwards through sleeps and timers, so a 5-second task takes no wall time and the loop
time (the ``looptime`` fixture) says exactly when things happened.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from directlb.emulator.config import EmulatorConfig
from directlb.emulator.engine import TaskEngine
from directlb.emulator.errors import ApiError
from directlb.emulator.store import (
    TASK_DONE,
    TASK_FAILED,
    TASK_RUNNING,
    Listener,
    LoadBalancer,
    Op,
    Store,
    Target,
    attrs,
)

LB = "lb-00000001"
OTHER = "lb-00000002"
LISTENER = "lbl-0000000a"
BUSY = "FailedOperation.ResourceInOperating"


def lb_doc(lb_id: str, *, status: int = 1) -> dict[str, Any]:
    return attrs(
        LoadBalancer(
            lb_id=lb_id,
            name=lb_id,
            lb_type="OPEN",
            forward=1,
            vpc_id="vpc-directlb",
            subnet_id="",
            vip="127.100.0.1",
            tags=[],
            status=status,
            create_time="2024-01-01 00:00:00",
        )
    )


def listener_doc() -> dict[str, Any]:
    return attrs(
        Listener(
            listener_id=LISTENER,
            lb_id=LB,
            protocol="TCP",
            port=80,
            name="tcp-80",
            health_check=None,
            certificate=None,
            scheduler="WRR",
            session_expire=0,
            sni_switch=0,
            create_time="2024-01-01 00:00:00",
        )
    )


def register(*ips: str) -> list[Op]:
    targets = [
        attrs(Target(kind="ENI", address=ip, port=8080, weight=10, registered="now")) for ip in ips
    ]
    return [
        {
            "op": "put_targets",
            "lb_id": LB,
            "listener_id": LISTENER,
            "location_id": "",
            "targets": targets,
        }
    ]


def targets(store: Store) -> set[str]:
    return {t.address for t in store.lbs[LB].listeners[LISTENER].targets.values()}


def config(time_scale: float) -> EmulatorConfig:
    return EmulatorConfig(secret_id="AKIDx", secret_key="key", time_scale=time_scale)


@pytest.fixture
def store() -> Iterator[Store]:
    store = Store()
    store.apply(
        [
            {"op": "put_lb", "lb": lb_doc(LB)},
            {"op": "put_lb", "lb": lb_doc(OTHER)},
            {"op": "put_listener", "listener": listener_doc()},
        ]
    )
    yield store
    store.close()


def assert_busy(engine: TaskEngine, lb_id: str) -> None:
    with pytest.raises(ApiError) as caught:
        engine.ensure_idle([lb_id])
    assert caught.value.code == BUSY
    assert lb_id in caught.value.message


# ----- time scale 0 ----------------------------------------------------------------------------


async def test_time_scale_zero_finishes_at_once(store: Store) -> None:
    engine = TaskEngine(store, config(0.0))
    task = engine.start(
        task_id="t1",
        action="RegisterTargets",
        lb_ids=[LB],
        ops=register("127.17.0.1"),
        cloud_seconds=5.0,
    )
    assert task.status == TASK_DONE
    assert task.ops == []
    assert store.tasks["t1"] is task
    assert targets(store) == {"127.17.0.1"}
    assert engine.busy == {}
    engine.ensure_idle([LB])  # idle: the next mutation may start right away
    again = engine.start(
        task_id="t2",
        action="RegisterTargets",
        lb_ids=[LB],
        ops=register("127.17.0.2"),
        cloud_seconds=5.0,
    )
    assert again.status == TASK_DONE
    assert targets(store) == {"127.17.0.1", "127.17.0.2"}


async def test_zero_cloud_seconds_finishes_at_once_at_any_scale(store: Store) -> None:
    engine = TaskEngine(store, config(1.0))
    task = engine.start(
        task_id="t1",
        action="RegisterTargets",
        lb_ids=[LB],
        ops=register("127.17.0.1"),
        cloud_seconds=0,
    )
    assert task.status == TASK_DONE
    assert engine.busy == {}


async def test_failed_task_applies_fail_ops_and_not_ops(store: Store) -> None:
    engine = TaskEngine(store, config(0.0))
    task = engine.start(
        task_id="t1",
        action="CreateLoadBalancer",
        lb_ids=["lb-new"],
        ops=[{"op": "put_lb", "lb": lb_doc("lb-new", status=1)}],
        cloud_seconds=5.0,
        immediate_ops=[{"op": "put_lb", "lb": lb_doc("lb-new", status=0)}],
        failure="injected fault: task failed",
        fail_ops=[{"op": "del_lb", "lb_id": "lb-new"}],
        deal_name="deal-1",
    )
    assert (task.status, task.message) == (TASK_FAILED, "injected fault: task failed")
    assert "lb-new" not in store.lbs
    assert store.deals == {"deal-1": "t1"}


async def test_failed_task_without_fail_ops_changes_nothing(store: Store) -> None:
    engine = TaskEngine(store, config(0.0))
    task = engine.start(
        task_id="t1",
        action="RegisterTargets",
        lb_ids=[LB],
        ops=register("127.17.0.1"),
        cloud_seconds=5.0,
        failure="boom",
    )
    assert task.status == TASK_FAILED
    assert targets(store) == set()


# ----- time scale > 0: the CLB is held until the timer fires --------------------------------


@pytest.mark.looptime
async def test_task_holds_the_clb_until_its_timer_fires(store: Store, looptime: Any) -> None:
    engine = TaskEngine(store, config(1.0))
    start = float(looptime)
    task = engine.start(
        task_id="t1",
        action="RegisterTargets",
        lb_ids=[LB],
        ops=register("127.17.0.1"),
        cloud_seconds=5.04,
        immediate_ops=[],
    )
    assert task.status == TASK_RUNNING
    assert store.tasks["t1"].status == TASK_RUNNING
    assert engine.busy == {LB: "t1"}
    assert_busy(engine, LB)
    engine.ensure_idle([OTHER])  # other CLBs are not held
    with pytest.raises(ApiError) as caught:
        engine.start(task_id="t2", action="DeleteListener", lb_ids=[LB], ops=[], cloud_seconds=5)
    assert caught.value.code == BUSY
    assert "t2" not in store.tasks  # a refused task leaves no trace

    await asyncio.sleep(5.0)
    assert task.status == TASK_RUNNING
    assert targets(store) == set()  # the change happens when the task finishes, not before
    assert_busy(engine, LB)

    await asyncio.sleep(0.05)
    assert float(looptime) - start == pytest.approx(5.05)
    assert task.status == TASK_DONE
    assert targets(store) == {"127.17.0.1"}
    engine.ensure_idle([LB])
    assert engine.busy == {}


@pytest.mark.looptime
async def test_time_scale_shrinks_the_hold(store: Store, looptime: Any) -> None:
    engine = TaskEngine(store, config(0.01))
    task = engine.start(
        task_id="t1",
        action="RegisterTargets",
        lb_ids=[LB],
        ops=register("127.17.0.1"),
        cloud_seconds=5.0,
    )
    await asyncio.sleep(0.049)
    assert task.status == TASK_RUNNING
    assert_busy(engine, LB)
    await asyncio.sleep(0.002)
    assert task.status == TASK_DONE
    assert engine.busy == {}


@pytest.mark.looptime
async def test_task_on_several_clbs_holds_them_all(store: Store) -> None:
    engine = TaskEngine(store, config(1.0))
    engine.start(
        task_id="t1", action="DeleteLoadBalancer", lb_ids=[LB, OTHER], ops=[], cloud_seconds=1
    )
    assert_busy(engine, LB)
    assert_busy(engine, OTHER)
    await asyncio.sleep(1.01)
    engine.ensure_idle([LB, OTHER])


@pytest.mark.looptime
async def test_immediate_ops_show_at_once_and_ops_when_done(store: Store) -> None:
    engine = TaskEngine(store, config(1.0))
    engine.start(
        task_id="t1",
        action="CreateLoadBalancer",
        lb_ids=["lb-new"],
        ops=[{"op": "put_lb", "lb": lb_doc("lb-new", status=1)}],
        cloud_seconds=5.0,
        immediate_ops=[{"op": "put_lb", "lb": lb_doc("lb-new", status=0)}],
    )
    assert store.lbs["lb-new"].status == 0
    assert_busy(engine, "lb-new")
    await asyncio.sleep(5.01)
    assert store.lbs["lb-new"].status == 1
    assert engine.busy == {}


@pytest.mark.looptime
async def test_failing_task_under_time_scale(store: Store) -> None:
    engine = TaskEngine(store, config(1.0))
    task = engine.start(
        task_id="t1",
        action="RegisterTargets",
        lb_ids=[LB],
        ops=register("127.17.0.1"),
        cloud_seconds=2,
        failure="boom",
        fail_ops=register("127.17.0.66"),
    )
    assert task.status == TASK_RUNNING
    await asyncio.sleep(2.01)
    assert task.status == TASK_FAILED
    assert targets(store) == {"127.17.0.66"}
    engine.ensure_idle([LB])


@pytest.mark.looptime
async def test_close_cancels_timers_and_recover_finishes_after_restart(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    store = Store(path)
    store.apply(
        [{"op": "put_lb", "lb": lb_doc(LB)}, {"op": "put_listener", "listener": listener_doc()}]
    )
    engine = TaskEngine(store, config(1.0))
    task = engine.start(
        task_id="t1",
        action="RegisterTargets",
        lb_ids=[LB],
        ops=register("127.17.0.1"),
        cloud_seconds=5,
    )
    engine.close()  # the process dies with the task in flight
    await asyncio.sleep(10)
    assert task.status == TASK_RUNNING  # the timer did not fire after close
    store.close()

    restarted = Store(path)
    try:
        assert restarted.tasks["t1"].status == TASK_RUNNING
        engine = TaskEngine(restarted, config(1.0))
        assert engine.recover() == 1
        assert restarted.tasks["t1"].status == TASK_DONE
        assert targets(restarted) == {"127.17.0.1"}
        assert engine.busy == {}
    finally:
        restarted.close()


# ----- hold(): synchronous mutations --------------------------------------------------------


@pytest.mark.looptime
async def test_hold_takes_its_modeled_time_and_releases_on_exit(
    store: Store, looptime: Any
) -> None:
    engine = TaskEngine(store, config(1.0))
    start = float(looptime)
    inside = asyncio.Event()
    release = asyncio.Event()

    async def batch() -> float:
        async with engine.hold([LB], "call-1", 0.2):
            inside.set()
            await release.wait()
            return float(looptime) - start

    holder = asyncio.create_task(batch())
    await asyncio.sleep(0.1)
    assert not inside.is_set()  # still in the modeled 0.2 s
    assert engine.busy == {LB: "call-1"}
    assert_busy(engine, LB)
    await inside.wait()
    assert float(looptime) - start == pytest.approx(0.2)
    assert_busy(engine, LB)
    release.set()
    assert await holder == pytest.approx(0.2)
    assert engine.busy == {}
    engine.ensure_idle([LB])


async def test_hold_at_time_scale_zero_does_not_wait(store: Store) -> None:
    engine = TaskEngine(store, config(0.0))
    async with engine.hold([LB, OTHER], "call-1", 10.0):
        assert engine.busy == {LB: "call-1", OTHER: "call-1"}
    assert engine.busy == {}


async def test_hold_releases_on_exception(store: Store) -> None:
    engine = TaskEngine(store, config(0.0))
    with pytest.raises(RuntimeError, match="half-way"):
        async with engine.hold([LB], "call-1", 0.2):
            assert_busy(engine, LB)
            raise RuntimeError("half-way")
    assert engine.busy == {}
    engine.ensure_idle([LB])


@pytest.mark.looptime
async def test_hold_releases_when_cancelled_while_waiting(store: Store) -> None:
    engine = TaskEngine(store, config(1.0))

    async def batch() -> None:
        async with engine.hold([LB], "call-1", 5.0):
            pytest.fail("the body must not run after cancellation")

    holder = asyncio.create_task(batch())
    await asyncio.sleep(1.0)
    assert engine.busy == {LB: "call-1"}
    holder.cancel()
    with pytest.raises(asyncio.CancelledError):
        await holder
    assert engine.busy == {}


@pytest.mark.looptime
async def test_hold_is_refused_while_a_task_runs_and_leaves_the_task_alone(store: Store) -> None:
    engine = TaskEngine(store, config(1.0))
    engine.start(task_id="t1", action="RegisterTargets", lb_ids=[LB], ops=[], cloud_seconds=5)
    with pytest.raises(ApiError) as caught:
        async with engine.hold([OTHER, LB], "call-1", 0.2):
            pytest.fail("must not be entered")
    assert caught.value.code == BUSY
    # Nothing was half-held: OTHER was not taken, the task still owns LB.
    assert engine.busy == {LB: "t1"}
    await asyncio.sleep(5.01)
    assert engine.busy == {}


@pytest.mark.looptime
async def test_task_is_refused_while_a_hold_runs(store: Store) -> None:
    engine = TaskEngine(store, config(1.0))

    async def batch() -> None:
        async with engine.hold([LB], "call-1", 0.2):
            pass

    holder = asyncio.create_task(batch())
    await asyncio.sleep(0.1)
    with pytest.raises(ApiError) as caught:
        engine.start(task_id="t1", action="RegisterTargets", lb_ids=[LB], ops=[], cloud_seconds=5)
    assert caught.value.code == BUSY
    await holder
    task = engine.start(
        task_id="t2", action="RegisterTargets", lb_ids=[LB], ops=[], cloud_seconds=0
    )
    assert task.status == TASK_DONE


@pytest.mark.looptime
async def test_a_task_that_cannot_be_applied_fails_instead_of_running_forever(
    store: Store,
) -> None:
    engine = TaskEngine(store, config(1.0))
    # Operations on a listener that does not exist: applying them raises.
    broken = [{"op": "put_targets", "lb_id": LB, "listener_id": "lbl-missing",
               "location_id": "", "targets": []}]  # fmt: skip
    task = engine.start(
        task_id="t-broken", action="RegisterTargets", lb_ids=[LB], ops=broken, cloud_seconds=5.0
    )
    await asyncio.sleep(6)
    assert task.status == TASK_FAILED
    assert "could not apply" in task.message
    engine.ensure_idle([LB])  # the CLB is free again
