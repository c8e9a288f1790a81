"""One task at a time per CLB, the documented per-call limits, quotas and the rate limit.

Every refused call must change nothing: each test describes the state before and after.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from tencentcloud.clb.v20180317 import clb_client_async, models
from tencentcloud.common.exception.tencent_cloud_sdk_exception import (
    TencentCloudSDKException,
)

from tests import support
from tests.conftest import EmulatorFactory

Client = clb_client_async.ClbClient


async def snapshot(client: Client, *lb_ids: str) -> dict[str, Any]:
    """Everything the API says about these CLBs (RequestIds left out)."""
    state: dict[str, Any] = {}
    lbs = await support.api(client, "DescribeLoadBalancers", LoadBalancerIds=list(lb_ids))
    state["lbs"] = lbs["LoadBalancerSet"]
    for lb_id in lb_ids:
        listeners = await support.api(client, "DescribeListeners", LoadBalancerId=lb_id)
        targets = await support.api(client, "DescribeTargets", LoadBalancerId=lb_id)
        state[lb_id] = (listeners["Listeners"], targets["Listeners"])
    return state


def eni_targets(count: int, *, subnet: int = 0, port: int = 80) -> list[dict[str, Any]]:
    return [
        {"EniIp": f"127.17.{subnet + i // 250}.{1 + i % 250}", "Port": port} for i in range(count)
    ]


async def lb_with_listener(client: Client, *, protocol: str = "TCP") -> tuple[str, str]:
    lb_id = await support.create_lb(client)
    listener_id = await support.create_listener(client, lb_id, port=80, protocol=protocol)
    return lb_id, listener_id


# ===== one task at a time =================================================================


async def test_a_clb_running_a_task_refuses_other_mutations_but_not_other_clbs(
    make_emulator: EmulatorFactory,
) -> None:
    # Time scale 0.05: a task takes 0.25 wall seconds, long enough to be caught running.
    emulator = await make_emulator(time_scale=0.05)
    async with support.async_client(emulator) as client:
        created = await support.done(
            client, "CreateLoadBalancer", LoadBalancerType="OPEN", Number=2
        )
        busy, other = created["LoadBalancerIds"]
        busy_listener, other_listener = await asyncio.gather(
            support.create_listener(client, busy, port=80),
            support.create_listener(client, other, port=80),
        )
        before = await snapshot(client, busy, other)

        first = await support.api(
            client,
            "RegisterTargets",
            LoadBalancerId=busy,
            ListenerId=busy_listener,
            Targets=[{"EniIp": "127.17.0.1", "Port": 80}],
        )
        refused: list[tuple[str, dict[str, Any]]] = [
            ("CreateListener", {"LoadBalancerId": busy, "Ports": [81], "Protocol": "TCP"}),
            (
                "RegisterTargets",
                {
                    "LoadBalancerId": busy,
                    "ListenerId": busy_listener,
                    "Targets": [{"EniIp": "127.17.0.2", "Port": 80}],
                },
            ),
            ("ModifyListener", {"LoadBalancerId": busy, "ListenerId": busy_listener}),
            (
                "BatchRegisterTargets",
                {
                    "LoadBalancerId": busy,
                    "Targets": [{"ListenerId": busy_listener, "EniIp": "127.17.0.3", "Port": 80}],
                },
            ),
            ("DeleteLoadBalancer", {"LoadBalancerIds": [busy]}),
        ]
        for action, params in refused:
            await support.expect_error(
                support.api(client, action, **params),
                "FailedOperation.ResourceInOperating",
                busy,
            )
        # Still running: every refusal above happened while the first task held the CLB.
        assert (await support.api(client, "DescribeTaskStatus", TaskId=first["RequestId"]))[
            "Status"
        ] == 2
        # Reads are not blocked, and neither is another CLB.
        during = await support.api(client, "DescribeTargets", LoadBalancerId=busy)
        assert during["Listeners"][0]["Targets"] == []
        second = await support.api(
            client,
            "RegisterTargets",
            LoadBalancerId=other,
            ListenerId=other_listener,
            Targets=[{"EniIp": "127.17.0.9", "Port": 80}],
        )
        assert (await support.wait_task(client, first["RequestId"]))["Status"] == 0
        assert (await support.wait_task(client, second["RequestId"]))["Status"] == 0

        after = await snapshot(client, busy, other)
        assert after["lbs"] == [
            lb | {"TargetCount": 1} for lb in before["lbs"]
        ]  # nothing but the two accepted tasks changed
        busy_listeners, busy_targets = after[busy]
        assert busy_listeners == before[busy][0]
        assert [(t["PrivateIpAddresses"], t["Port"]) for t in busy_targets[0]["Targets"]] == [
            (["127.17.0.1"], 80)
        ]
        other_targets = after[other][1]
        assert [t["PrivateIpAddresses"] for t in other_targets[0]["Targets"]] == [["127.17.0.9"]]
        # Free again once the task has ended.
        await support.done(
            client, "CreateListener", LoadBalancerId=busy, Ports=[81], Protocol="TCP"
        )


async def test_a_synchronous_batch_holds_the_clb_while_it_runs(
    make_emulator: EmulatorFactory,
) -> None:
    # 500 targets: 0.2 + 500 * 0.008 = 4.2 cloud seconds, 0.21 wall seconds at scale 0.05.
    emulator = await make_emulator(
        time_scale=0.05, quotas={"TOTAL_TARGET_BIND_QUOTA": 500}, rate_limit=0
    )
    async with support.async_client(emulator) as client:
        lb_id, listener_id = await lb_with_listener(client)
        batch = asyncio.create_task(
            support.api(
                client,
                "BatchRegisterTargets",
                LoadBalancerId=lb_id,
                Targets=[t | {"ListenerId": listener_id} for t in eni_targets(500)],
            )
        )
        await support.wait_until(lambda: lb_id in emulator.engine.busy, timeout=10)
        await support.expect_error(
            support.api(client, "DeleteListener", LoadBalancerId=lb_id, ListenerId=listener_id),
            "FailedOperation.ResourceInOperating",
            lb_id,
        )
        answer = await batch
        assert answer["FailListenerIdSet"] == []
        described = await support.api(client, "DescribeTargets", LoadBalancerId=lb_id)
        assert len(described["Listeners"][0]["Targets"]) == 500


# ===== per-call limits ====================================================================


async def test_at_most_20_targets_per_register_and_deregister(client: Client) -> None:
    lb_id, listener_id = await lb_with_listener(client)
    await support.done(
        client,
        "RegisterTargets",
        LoadBalancerId=lb_id,
        ListenerId=listener_id,
        Targets=eni_targets(20),
    )
    before = await snapshot(client, lb_id)
    for action in ("RegisterTargets", "DeregisterTargets"):
        await support.expect_error(
            support.api(
                client,
                action,
                LoadBalancerId=lb_id,
                ListenerId=listener_id,
                Targets=eni_targets(21),
            ),
            "LimitExceeded",
            "Targets",
            "20",
        )
    await support.expect_error(
        support.api(
            client,
            "ModifyTargetWeight",
            LoadBalancerId=lb_id,
            ListenerId=listener_id,
            Weight=1,
            Targets=eni_targets(21),
        ),
        "LimitExceeded",
        "Targets",
    )
    assert await snapshot(client, lb_id) == before
    # Exactly 20 is fine.
    await support.done(
        client,
        "DeregisterTargets",
        LoadBalancerId=lb_id,
        ListenerId=listener_id,
        Targets=eni_targets(20),
    )
    described = await support.api(client, "DescribeTargets", LoadBalancerId=lb_id)
    assert described["Listeners"][0]["Targets"] == []


async def test_at_most_500_targets_per_batch_register_and_deregister(
    make_emulator: EmulatorFactory,
) -> None:
    emulator = await make_emulator(rate_limit=0, quotas={"TOTAL_TARGET_BIND_QUOTA": 600})
    async with support.async_client(emulator) as client:
        lb_id, listener_id = await lb_with_listener(client)
        before = await snapshot(client, lb_id)
        too_many = [t | {"ListenerId": listener_id} for t in eni_targets(501)]
        for action in ("BatchRegisterTargets", "BatchDeregisterTargets"):
            await support.expect_error(
                support.api(client, action, LoadBalancerId=lb_id, Targets=too_many),
                "LimitExceeded",
                "Targets",
                "500",
            )
        assert await snapshot(client, lb_id) == before
        answer = await support.api(
            client, "BatchRegisterTargets", LoadBalancerId=lb_id, Targets=too_many[:500]
        )
        assert answer["FailListenerIdSet"] == []
        described = await support.api(client, "DescribeTargets", LoadBalancerId=lb_id)
        assert len(described["Listeners"][0]["Targets"]) == 500


async def test_batch_modify_target_weight_limits(make_emulator: EmulatorFactory) -> None:
    emulator = await make_emulator(rate_limit=0, quotas={"TOTAL_TARGET_BIND_QUOTA": 500})
    async with support.async_client(emulator) as client:
        lb_id, listener_id = await lb_with_listener(client)
        bound = eni_targets(500)
        await support.api(
            client,
            "BatchRegisterTargets",
            LoadBalancerId=lb_id,
            Targets=[t | {"ListenerId": listener_id} for t in bound],
        )
        before = await snapshot(client, lb_id)

        def entry(targets: list[dict[str, Any]]) -> dict[str, Any]:
            return {"ListenerId": listener_id, "Weight": 1, "Targets": targets}

        # More than 100 entries.
        await support.expect_error(
            support.api(
                client,
                "BatchModifyTargetWeight",
                LoadBalancerId=lb_id,
                ModifyList=[entry(bound[i : i + 1]) for i in range(101)],
            ),
            "LimitExceeded",
            "ModifyList",
            "100",
        )
        # More than 50 targets in one entry.
        await support.expect_error(
            support.api(
                client,
                "BatchModifyTargetWeight",
                LoadBalancerId=lb_id,
                ModifyList=[entry(bound[:51])],
            ),
            "LimitExceeded",
            "ModifyList.0.Targets",
            "50",
        )
        # More than 500 targets in all (11 entries of 50).
        await support.expect_error(
            support.api(
                client,
                "BatchModifyTargetWeight",
                LoadBalancerId=lb_id,
                ModifyList=[entry(bound[(i % 10) * 50 : (i % 10) * 50 + 50]) for i in range(11)],
            ),
            "LimitExceeded",
            "500",
        )
        assert await snapshot(client, lb_id) == before
        # 100 entries of 5 targets, 500 in all, is fine.
        await support.done(
            client,
            "BatchModifyTargetWeight",
            LoadBalancerId=lb_id,
            ModifyList=[entry(bound[i * 5 : i * 5 + 5]) for i in range(100)],
        )
        described = await support.api(client, "DescribeTargets", LoadBalancerId=lb_id)
        assert {t["Weight"] for t in described["Listeners"][0]["Targets"]} == {1}


async def test_describe_and_delete_id_limits(client: Client) -> None:
    lb_id, listener_id = await lb_with_listener(client)
    before = await snapshot(client, lb_id)
    await support.expect_error(
        support.api(
            client, "DescribeLoadBalancers", LoadBalancerIds=[f"lb-{i:08d}" for i in range(21)]
        ),
        "LimitExceeded",
        "LoadBalancerIds",
        "20",
    )
    ok = await support.api(
        client,
        "DescribeLoadBalancers",
        LoadBalancerIds=[lb_id] + [f"lb-{i:08d}" for i in range(19)],
    )
    assert ok["TotalCount"] == 1
    await support.expect_error(
        support.api(
            client,
            "DescribeTargets",
            LoadBalancerId=lb_id,
            ListenerIds=[listener_id] * 21,
        ),
        "LimitExceeded",
        "ListenerIds",
        "20",
    )
    await support.expect_error(
        support.api(client, "DescribeTargetHealth", LoadBalancerIds=[lb_id] * 31),
        "LimitExceeded",
        "LoadBalancerIds",
        "30",
    )
    health = await support.api(client, "DescribeTargetHealth", LoadBalancerIds=[lb_id] * 30)
    assert [lb["LoadBalancerId"] for lb in health["LoadBalancers"]] == [lb_id]
    request = models.DeleteLoadBalancerListenersRequest()
    request.LoadBalancerId = lb_id
    request.ListenerIds = [listener_id] * 21
    with pytest.raises(TencentCloudSDKException) as info:
        await client.DeleteLoadBalancerListeners(request)
    assert info.value.code == "LimitExceeded"
    assert "ListenerIds" in str(info.value.message)
    assert await snapshot(client, lb_id) == before


# ===== quotas =============================================================================


async def test_listener_quota_per_clb(make_emulator: EmulatorFactory) -> None:
    emulator = await make_emulator(rate_limit=0, quotas={"TOTAL_LISTENER_QUOTA": 3})
    async with support.async_client(emulator) as client:
        lb_id = await support.create_lb(client)
        await support.done(
            client, "CreateListener", LoadBalancerId=lb_id, Ports=[80, 81], Protocol="TCP"
        )
        before = await snapshot(client, lb_id)
        await support.expect_error(
            support.api(
                client, "CreateListener", LoadBalancerId=lb_id, Ports=[82, 83], Protocol="TCP"
            ),
            "LimitExceeded",
            "3",
        )
        # More ports in one call than the quota allows at all.
        await support.expect_error(
            support.api(
                client, "CreateListener", LoadBalancerId=lb_id, Ports=[1, 2, 3, 4], Protocol="UDP"
            ),
            "LimitExceeded",
            "Ports",
        )
        assert await snapshot(client, lb_id) == before
        await support.done(
            client, "CreateListener", LoadBalancerId=lb_id, Ports=[82], Protocol="UDP"
        )
        await support.expect_error(
            support.api(client, "CreateListener", LoadBalancerId=lb_id, Ports=[84], Protocol="TCP"),
            "LimitExceeded",
        )
        listed = await support.api(client, "DescribeListeners", LoadBalancerId=lb_id)
        assert listed["TotalCount"] == 3


async def test_rule_quota_per_listener(make_emulator: EmulatorFactory) -> None:
    emulator = await make_emulator(rate_limit=0, quotas={"TOTAL_LISTENER_RULE_QUOTA": 2})
    async with support.async_client(emulator) as client:
        lb_id, listener_id = await lb_with_listener(client, protocol="HTTP")
        other = await support.create_listener(client, lb_id, port=8080, protocol="HTTP")
        await support.done(
            client,
            "CreateRule",
            LoadBalancerId=lb_id,
            ListenerId=listener_id,
            Rules=[{"Domain": "a.example.com", "Url": "/"}],
        )
        before = await snapshot(client, lb_id)
        await support.expect_error(
            support.api(
                client,
                "CreateRule",
                LoadBalancerId=lb_id,
                ListenerId=listener_id,
                Rules=[
                    {"Domain": "b.example.com", "Url": "/"},
                    {"Domain": "c.example.com", "Url": "/"},
                ],
            ),
            "LimitExceeded",
            listener_id,
            "2",
        )
        assert await snapshot(client, lb_id) == before
        # The quota is per listener: another listener takes two at once.
        await support.done(
            client,
            "CreateRule",
            LoadBalancerId=lb_id,
            ListenerId=other,
            Rules=[
                {"Domain": "b.example.com", "Url": "/"},
                {"Domain": "c.example.com", "Url": "/"},
            ],
        )
        await support.done(
            client,
            "CreateRule",
            LoadBalancerId=lb_id,
            ListenerId=listener_id,
            Rules=[{"Domain": "b.example.com", "Url": "/"}],
        )
        listeners = (await support.api(client, "DescribeListeners", LoadBalancerId=lb_id))[
            "Listeners"
        ]
        assert sorted(len(x["Rules"]) for x in listeners) == [2, 2]


async def test_target_quota_per_listener_and_per_rule(make_emulator: EmulatorFactory) -> None:
    emulator = await make_emulator(rate_limit=0, quotas={"TOTAL_TARGET_BIND_QUOTA": 3})
    async with support.async_client(emulator) as client:
        lb_id, l4 = await lb_with_listener(client)
        l7 = await support.create_listener(client, lb_id, port=8080, protocol="HTTP")
        rules = await support.done(
            client,
            "CreateRule",
            LoadBalancerId=lb_id,
            ListenerId=l7,
            Rules=[
                {"Domain": "a.example.com", "Url": "/"},
                {"Domain": "a.example.com", "Url": "/x"},
            ],
        )
        root, other_rule = rules["LocationIds"]
        targets = eni_targets(4)
        await support.done(
            client, "RegisterTargets", LoadBalancerId=lb_id, ListenerId=l4, Targets=targets[:2]
        )
        await support.done(
            client,
            "RegisterTargets",
            LoadBalancerId=lb_id,
            ListenerId=l7,
            LocationId=root,
            Targets=targets[:3],
        )
        before = await snapshot(client, lb_id)
        await support.expect_error(
            support.api(
                client,
                "RegisterTargets",
                LoadBalancerId=lb_id,
                ListenerId=l4,
                Targets=targets[2:4],
            ),
            "LimitExceeded",
            l4,
            "3",
        )
        await support.expect_error(
            support.api(
                client,
                "RegisterTargets",
                LoadBalancerId=lb_id,
                ListenerId=l7,
                LocationId=root,
                Targets=targets[3:4],
            ),
            "LimitExceeded",
            root,
        )
        # Through a batch, the listener over quota fails alone.
        batch = await support.api(
            client,
            "BatchRegisterTargets",
            LoadBalancerId=lb_id,
            Targets=[
                {"ListenerId": l4, "EniIp": "127.17.9.1", "Port": 80},
                {"ListenerId": l4, "EniIp": "127.17.9.2", "Port": 80},
            ],
        )
        assert batch["FailListenerIdSet"] == [l4]
        assert "3" in batch["Message"]
        assert await snapshot(client, lb_id) == before
        # Re-registering targets already bound adds nothing, so it is within quota.
        await support.done(
            client, "RegisterTargets", LoadBalancerId=lb_id, ListenerId=l4, Targets=targets[:2]
        )
        # The quota is per rule: another rule of the same listener has room.
        await support.done(
            client,
            "RegisterTargets",
            LoadBalancerId=lb_id,
            ListenerId=l7,
            LocationId=other_rule,
            Targets=targets[:3],
        )
        await support.done(
            client, "RegisterTargets", LoadBalancerId=lb_id, ListenerId=l4, Targets=targets[2:3]
        )
        described = await support.api(client, "DescribeTargets", LoadBalancerId=lb_id)
        counts = {
            (x["ListenerId"], r["LocationId"]): len(r["Targets"])
            for x in described["Listeners"]
            for r in x.get("Rules", [])
        }
        counts |= {
            (x["ListenerId"], ""): len(x["Targets"])
            for x in described["Listeners"]
            if "Targets" in x
        }
        assert counts == {(l4, ""): 3, (l7, root): 3, (l7, other_rule): 3}


async def test_describe_quota_reports_overrides(make_emulator: EmulatorFactory) -> None:
    emulator = await make_emulator(
        quotas={"TOTAL_LISTENER_QUOTA": 7, "TOTAL_TARGET_BIND_QUOTA": 250}
    )
    async with support.async_client(emulator) as client:
        answer = await support.api(client, "DescribeQuota")
        limits = {q["QuotaId"]: q["QuotaLimit"] for q in answer["QuotaSet"]}
        assert limits == {
            "TOTAL_OPEN_CLB_QUOTA": 500,
            "TOTAL_INTERNAL_CLB_QUOTA": 500,
            "TOTAL_LISTENER_QUOTA": 7,
            "TOTAL_LISTENER_RULE_QUOTA": 50,
            "TOTAL_TARGET_BIND_QUOTA": 250,
        }


async def test_load_balancer_quota(make_emulator: EmulatorFactory) -> None:
    emulator = await make_emulator(rate_limit=0, quotas={"TOTAL_OPEN_CLB_QUOTA": 2})
    async with support.async_client(emulator) as client:
        await support.create_lb(client)
        await support.expect_error(
            support.api(client, "CreateLoadBalancer", LoadBalancerType="OPEN", Number=2),
            "LimitExceeded",
            "2",
        )
        assert (await support.api(client, "DescribeLoadBalancers"))["TotalCount"] == 1
        await support.create_lb(client)
        # INTERNAL load balancers have a quota of their own.
        await support.create_lb(client, LoadBalancerType="INTERNAL", SubnetId="subnet-1")
        assert (await support.api(client, "DescribeLoadBalancers"))["TotalCount"] == 3


# ===== rate limit =========================================================================


async def test_rate_limit_per_action(make_emulator: EmulatorFactory) -> None:
    # Time scale 5: the window is one cloud second = 5 wall seconds, wide enough that the
    # calls below land in one window however loaded the machine is.
    emulator = await make_emulator(rate_limit=5, time_scale=5)
    async with support.async_client(emulator) as client:
        started = time.monotonic()
        results = await asyncio.gather(
            *(support.api(client, "DescribeLoadBalancers") for _ in range(6)),
            return_exceptions=True,
        )
        # Another action has a budget of its own.
        quota = await support.api(client, "DescribeQuota")
        elapsed = time.monotonic() - started
        assert elapsed < 5.0, "the calls must land inside one window for this test to mean much"
        failures = [r for r in results if isinstance(r, BaseException)]
        assert len(failures) == 1, results
        [failure] = failures
        assert isinstance(failure, TencentCloudSDKException)
        assert failure.code == "RequestLimitExceeded"
        assert "DescribeLoadBalancers" in str(failure.message)
        assert "QuotaSet" in quota

        async def admitted_again() -> bool:
            try:
                await support.api(client, "DescribeLoadBalancers")
            except TencentCloudSDKException as error:
                assert error.code == "RequestLimitExceeded"
                return False
            return True

        # The window slides: a window later the action is admitted again.
        await support.wait_until(admitted_again, timeout=20, interval=0.5)
