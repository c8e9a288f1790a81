"""Faults on demand (``--fault``), their reproducibility under ``--seed``, and the ledger."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from tencentcloud.clb.v20180317 import clb_client_async, models
from tencentcloud.common.exception.tencent_cloud_sdk_exception import (
    TencentCloudSDKException,
)

from directlb.emulator.config import FaultRule
from directlb.emulator.server import Emulator
from tests import support
from tests.conftest import EmulatorFactory

Client = clb_client_async.ClbClient


async def ledger(emulator: Emulator, *, since: int = 0) -> list[dict[str, Any]]:
    async with httpx.AsyncClient() as http:
        answer = await http.get(f"http://{emulator.endpoint}/_emulator/ledger?since={since}")
    assert answer.status_code == 200
    entries: list[dict[str, Any]] = answer.json()["entries"]
    return entries


async def summary(emulator: Emulator, *, since: int = 0) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        answer = await http.get(
            f"http://{emulator.endpoint}/_emulator/ledger/summary", params={"since": since}
        )
    assert answer.status_code == 200
    document: dict[str, Any] = answer.json()
    return document


async def faulty(make_emulator: EmulatorFactory, *rules: FaultRule, **config: Any) -> Emulator:
    config.setdefault("rate_limit", 0)
    return await make_emulator(faults=rules, seed=11, **config)


async def test_internal_fault(make_emulator: EmulatorFactory) -> None:
    emulator = await faulty(
        make_emulator, FaultRule(action="DescribeLoadBalancers", probability=1.0, kind="internal")
    )
    async with support.async_client(emulator) as client:
        for _ in range(3):
            await support.expect_error(
                support.api(client, "DescribeLoadBalancers"), "InternalError"
            )
        # Other actions are untouched.
        lb_id = await support.create_lb(client)
        assert lb_id.startswith("lb-")
    entries = await ledger(emulator)
    faulted = [e for e in entries if e["action"] == "DescribeLoadBalancers"]
    assert [(e["code"], e["fault"]) for e in faulted] == [("InternalError", "internal")] * 3


async def test_throttle_fault(make_emulator: EmulatorFactory) -> None:
    emulator = await faulty(
        make_emulator, FaultRule(action="DescribeQuota", probability=1.0, kind="throttle")
    )
    async with support.async_client(emulator) as client:
        await support.expect_error(
            support.api(client, "DescribeQuota"), "RequestLimitExceeded", "DescribeQuota"
        )
        assert (await support.api(client, "DescribeLoadBalancers"))["TotalCount"] == 0


async def test_busy_fault_refuses_a_mutation_and_changes_nothing(
    make_emulator: EmulatorFactory,
) -> None:
    emulator = await faulty(
        make_emulator,
        FaultRule(action="RegisterTargets", probability=1.0, kind="busy"),
        # "busy" applies to mutations only: a Describe* rule for it never fires.
        FaultRule(action="DescribeTargets", probability=1.0, kind="busy"),
    )
    async with support.async_client(emulator) as client:
        lb_id = await support.create_lb(client)
        listener_id = await support.create_listener(client, lb_id, port=80)
        await support.expect_error(
            support.api(
                client,
                "RegisterTargets",
                LoadBalancerId=lb_id,
                ListenerId=listener_id,
                Targets=[{"EniIp": "127.17.0.1", "Port": 80}],
            ),
            "FailedOperation.ResourceInOperating",
        )
        described = await support.api(client, "DescribeTargets", LoadBalancerId=lb_id)
        assert described["Listeners"][0]["Targets"] == []
        # The CLB itself is not held: another mutation goes through.
        await support.done(
            client, "CreateListener", LoadBalancerId=lb_id, Ports=[81], Protocol="TCP"
        )


async def test_slow_fault_delays_the_answer(make_emulator: EmulatorFactory) -> None:
    emulator = await faulty(
        make_emulator,
        FaultRule(action="DescribeQuota", probability=1.0, kind="slow"),
        slow_seconds=0.3,
    )
    async with support.async_client(emulator) as client:
        started = time.monotonic()
        answer = await support.api(client, "DescribeQuota")
        slow = time.monotonic() - started
        assert "QuotaSet" in answer  # slow, but answered in full
        assert slow >= 0.3
        started = time.monotonic()
        await support.api(client, "DescribeLoadBalancers")
        quick = time.monotonic() - started
        assert quick < slow
    [entry] = [e for e in await ledger(emulator) if e["action"] == "DescribeQuota"]
    assert (entry["code"], entry["fault"]) == ("Success", "slow")
    assert entry["wall_seconds"] >= 0.3


async def test_drop_fault_is_a_network_error_for_the_sdk(make_emulator: EmulatorFactory) -> None:
    emulator = await faulty(
        make_emulator, FaultRule(action="DescribeLoadBalancers", probability=1.0, kind="drop")
    )
    async with support.async_client(emulator) as client:
        # The async client lets httpx's transport error through.
        with pytest.raises(httpx.TransportError):
            await support.api(client, "DescribeLoadBalancers")
        # The connection pool recovers: the next call of another action succeeds.
        assert "QuotaSet" in await support.api(client, "DescribeQuota")
    # The sync client wraps it as ClientNetworkError.
    sync = support.sync_client(emulator)
    with pytest.raises(TencentCloudSDKException) as info:
        await asyncio.to_thread(sync.DescribeLoadBalancers, models.DescribeLoadBalancersRequest())
    assert info.value.code == "ClientNetworkError"
    entries = await ledger(emulator)
    assert [(e["action"], e["code"], e["fault"]) for e in entries] == [
        ("DescribeLoadBalancers", "Dropped", "drop"),
        ("DescribeQuota", "Success", ""),
        ("DescribeLoadBalancers", "Dropped", "drop"),
    ]


async def test_a_dropped_mutation_may_still_have_happened(make_emulator: EmulatorFactory) -> None:
    """A dropped answer is either lost before the cloud saw the call, or after it did the work."""
    emulator = await faulty(
        make_emulator, FaultRule(action="CreateLoadBalancer", probability=1.0, kind="drop")
    )
    async with support.async_client(emulator) as client:
        for i in range(12):
            with pytest.raises(httpx.TransportError):
                await support.api(
                    client, "CreateLoadBalancer", LoadBalancerType="OPEN", ClientToken=f"t{i}"
                )
        created = (await support.api(client, "DescribeLoadBalancers", Limit=100))["TotalCount"]
    # Seeded: both outcomes occur, and the ledger says Dropped for every one.
    assert 0 < created < 12
    codes = [e["code"] for e in await ledger(emulator) if e["action"] == "CreateLoadBalancer"]
    assert codes == ["Dropped"] * 12


async def outcomes(emulator: Emulator, calls: int) -> list[str]:
    """The code each of ``calls`` DescribeQuota calls got ("Success", an error, or "network")."""
    out: list[str] = []
    async with support.async_client(emulator) as client:
        for _ in range(calls):
            try:
                await support.api(client, "DescribeQuota")
            except TencentCloudSDKException as error:
                out.append(str(error.code))
            except httpx.TransportError:
                out.append("network")
            else:
                out.append("Success")
    return out


async def test_the_same_seed_gives_the_same_faults(make_emulator: EmulatorFactory) -> None:
    rules = (FaultRule(action="*", probability=0.5),)
    first = await make_emulator(faults=rules, seed=42, slow_seconds=0.01, rate_limit=0)
    second = await make_emulator(faults=rules, seed=42, slow_seconds=0.01, rate_limit=0)
    other = await make_emulator(faults=rules, seed=43, slow_seconds=0.01, rate_limit=0)
    a = await outcomes(first, 40)
    b = await outcomes(second, 40)
    c = await outcomes(other, 40)
    assert a == b
    assert a != c
    # Every kind that applies to a read shows up, and so do successes.
    assert set(a) == {"Success", "InternalError", "RequestLimitExceeded", "network"}
    slow = [e for e in await ledger(first) if e["fault"] == "slow"]
    assert slow and all(e["code"] == "Success" for e in slow)
    # Request ids are seeded too: the two ledgers are the same call for call.
    assert [(e["request_id"], e["code"], e["fault"]) for e in await ledger(first)] == [
        (e["request_id"], e["code"], e["fault"]) for e in await ledger(second)
    ]


async def test_fault_probability_applies_per_call(make_emulator: EmulatorFactory) -> None:
    emulator = await faulty(
        make_emulator, FaultRule(action="DescribeQuota", probability=0.3, kind="internal")
    )
    got = await outcomes(emulator, 100)
    failures = got.count("InternalError")
    assert set(got) == {"Success", "InternalError"}
    assert 10 <= failures <= 55, failures


async def test_ledger_records_every_call(make_emulator: EmulatorFactory) -> None:
    emulator = await make_emulator(rate_limit=0)
    async with support.async_client(emulator) as client:
        lb_id = await support.create_lb(client)
        listener_id = await support.create_listener(client, lb_id, port=80)
        register = await support.api(
            client,
            "RegisterTargets",
            LoadBalancerId=lb_id,
            ListenerId=listener_id,
            Targets=[{"EniIp": "127.17.0.1", "Port": 80}, {"EniIp": "127.17.0.2", "Port": 80}],
        )
        await support.expect_error(
            support.api(client, "DescribeListeners", LoadBalancerId="lb-nothere"),
            "InvalidParameter.LBIdNotFound",
        )
        await support.api(client, "DescribeTargets", LoadBalancerId=lb_id)

    entries = await ledger(emulator)
    assert [(e["action"], e["code"]) for e in entries] == [
        ("CreateLoadBalancer", "Success"),
        ("DescribeTaskStatus", "Success"),
        ("CreateListener", "Success"),
        ("DescribeTaskStatus", "Success"),
        ("RegisterTargets", "Success"),
        ("DescribeListeners", "InvalidParameter.LBIdNotFound"),
        ("DescribeTargets", "Success"),
    ]
    assert [e["seq"] for e in entries] == list(range(1, 8))
    # The entry's fields, in order: the ledger's format, which benchmarks read.
    assert all(
        list(e)
        == [
            "seq",
            "at",
            "action",
            "code",
            "request_id",
            "cloud_seconds",
            "task_cloud_seconds",
            "wall_seconds",
            "server_seconds",
            "load_balancer_ids",
            "fault",
        ]
        for e in entries
    )
    by_action = {e["action"]: e for e in entries}
    registered = by_action["RegisterTargets"]
    assert registered["request_id"] == register["RequestId"]
    assert registered["load_balancer_ids"] == [lb_id]
    # The modeled cost of the call and of its task (5 s + 0.008 s per target).
    assert registered["cloud_seconds"] == 0.05
    assert registered["task_cloud_seconds"] == pytest.approx(5.016)
    assert by_action["DescribeTargets"]["cloud_seconds"] == pytest.approx(0.1 + 2 * 0.0005)
    assert by_action["DescribeTaskStatus"]["cloud_seconds"] == 0.05
    assert all(e["wall_seconds"] >= e["server_seconds"] >= 0 for e in entries)

    assert [e["seq"] for e in await ledger(emulator, since=5)] == [6, 7]
    assert await ledger(emulator, since=7) == []

    totals = await summary(emulator)
    assert totals["last"] == 7
    actions = totals["actions"]
    assert {name: row["calls"] for name, row in actions.items()} == {
        "CreateLoadBalancer": 1,
        "DescribeTaskStatus": 2,
        "CreateListener": 1,
        "RegisterTargets": 1,
        "DescribeListeners": 1,
        "DescribeTargets": 1,
    }
    assert actions["DescribeListeners"]["errors"] == {"InvalidParameter.LBIdNotFound": 1}
    assert actions["RegisterTargets"]["errors"] == {}
    assert actions["DescribeTaskStatus"]["cloud_seconds"] == pytest.approx(0.1)
    recent = await summary(emulator, since=5)
    assert set(recent["actions"]) == {"DescribeListeners", "DescribeTargets"}

    async with httpx.AsyncClient() as http:
        bad = await http.get(f"http://{emulator.endpoint}/_emulator/ledger?since=x")
        health = await http.get(f"http://{emulator.endpoint}/_emulator/health")
    assert bad.status_code == 400
    assert health.status_code == 200
    state = health.json()
    assert (state["status"], state["loadBalancers"], state["targets"]) == ("ok", 1, 2)
    assert state["calls"] == 7


async def test_ledger_summary_counts_faults_and_refusals_by_code(
    make_emulator: EmulatorFactory,
) -> None:
    emulator = await make_emulator(
        rate_limit=3,
        faults=(FaultRule(action="DescribeQuota", probability=1.0, kind="internal"),),
    )
    async with support.async_client(emulator) as client:
        for _ in range(2):
            await support.expect_error(support.api(client, "DescribeQuota"), "InternalError")
        results = await asyncio.gather(
            *(support.api(client, "DescribeLoadBalancers") for _ in range(5)),
            return_exceptions=True,
        )
    codes = sorted(
        r.code if isinstance(r, TencentCloudSDKException) else "Success" for r in results
    )
    assert codes == ["RequestLimitExceeded"] * 2 + ["Success"] * 3
    actions = (await summary(emulator))["actions"]
    assert actions["DescribeQuota"]["calls"] == 2
    assert actions["DescribeQuota"]["errors"] == {"InternalError": 2}
    assert actions["DescribeLoadBalancers"]["calls"] == 5
    assert actions["DescribeLoadBalancers"]["errors"] == {"RequestLimitExceeded": 2}
