"""The Tencent adapter against the emulator over real HTTP, beyond the three strategies:
load balancers, one-round observation and its cache, target health, idempotent and
crash-safe apply, typed errors, one mutation at a time per CLB, metrics hooks."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import replace
from typing import Any

import pytest

from directlb.cloud import (
    CallCounter,
    CloudError,
    DesiredLoadBalancer,
    LoadBalancerSpec,
    SyncStrategy,
    tencent,
)
from directlb.cloud.api import ASYNC_ACTIONS, SdkSender, sdk_client
from directlb.cloud.errors import INVALID_DESIRED, PARTIAL_FAILURE, PORT_CONFLICT
from directlb.emulator.server import Emulator
from directlb.plan.diff import diff
from directlb.plan.limits import Batching
from directlb.plan.state import Listener, ListenerKey, ListenerProtocol, Rule, Target
from tests import support
from tests.conftest import EmulatorFactory
from tests.integration.cloud_support import (
    FAST,
    INSTANCES,
    OFF,
    adapter,
    assert_matches,
    calls,
    config,
    desired_counts,
    ensure_all,
    ledger,
    ledger_summary,
    phase_one,
    pods,
    spec,
    store_counts,
    sync,
)

MUTATIONS = ASYNC_ACTIONS | {"BatchRegisterTargets", "BatchDeregisterTargets"}


async def start(make_emulator: EmulatorFactory, **config: Any) -> Emulator:
    config.setdefault("rate_limit", 0)
    config.setdefault("time_scale", 0.0)
    return await make_emulator(instances=dict(INSTANCES), **config)


async def test_a_load_balancer_is_created_once_found_by_its_tags_and_adopted_by_id(
    make_emulator: EmulatorFactory,
) -> None:
    emulator = await start(make_emulator, time_scale=0.01)
    async with adapter(emulator) as clb:
        created = await clb.ensure_load_balancer(spec("web"))
        assert created.ready and created.vips and created.tag("directlb.io/test") == "web"
        again = await clb.ensure_load_balancer(spec("web"))
        assert again == created
        adopted = await clb.ensure_load_balancer(
            LoadBalancerSpec(name="any", tags=(), existing_id=created.lb_id)
        )
        assert adopted.lb_id == created.lb_id
        assert [lb.lb_id for lb in await clb.find_load_balancers(spec("web").tags)] == [
            created.lb_id
        ]
        assert await clb.find_load_balancers((("directlb.io/test", "other"),)) == []
        with pytest.raises(CloudError) as info:
            await clb.ensure_load_balancer(LoadBalancerSpec("x", (), existing_id="lb-nothere"))
        assert info.value.code == "InvalidParameter.LBIdNotFound"
        await clb.delete_load_balancer(created.lb_id)
        await clb.delete_load_balancer(created.lb_id)  # gone already: not an error
        assert await clb.find_load_balancers(spec("web").tags) == []
    assert calls(await ledger_summary(emulator))["CreateLoadBalancer"] == 1


async def test_a_clb_is_observed_in_one_round_and_then_from_the_cache(
    make_emulator: EmulatorFactory,
) -> None:
    emulator = await start(make_emulator)
    desired = tuple(
        Listener(protocol="TCP", port=1000 + i, health_check=OFF, targets=pods(i * 3, 3))
        for i in range(45)
    )
    async with adapter(emulator) as clb:
        (lb_id,) = (await ensure_all(clb, ["many"])).values()
        assert all(r.ok for r in await clb.sync([DesiredLoadBalancer(lb_id, desired)]))
        since = (await ledger_summary(emulator))["last"]
        state = await clb.observe(lb_id, fresh=True)
        # 1 DescribeListeners, then 45 listener ids in pages of 20.
        assert calls(await ledger_summary(emulator, since=since)) == {
            "DescribeListeners": 1,
            "DescribeTargets": 3,
        }
        assert_matches(desired, state)
        since = (await ledger_summary(emulator))["last"]
        assert await clb.observe(lb_id) == state
        assert (await ledger_summary(emulator, since=since))["actions"] == {}


async def test_our_writes_keep_the_cache_equal_to_the_cloud(make_emulator: EmulatorFactory) -> None:
    emulator = await start(make_emulator)
    async with adapter(emulator) as clb:
        ids = await ensure_all(clb, ["alpha", "beta"])
        for name, listeners in phase_one().items():
            await clb.observe(ids[name])  # cached now, then updated by the sync's writes
            assert all(r.ok for r in await clb.sync([DesiredLoadBalancer(ids[name], listeners)]))
            since = (await ledger_summary(emulator))["last"]
            cached = await clb.observe(ids[name])
            assert (await ledger_summary(emulator, since=since))["actions"] == {}
            # Everything the cache says holds in the cloud, and the cloud has nothing more.
            # (Fields a creation left to the cloud's defaults are None in the cache.)
            assert_matches(cached.listeners, await clb.observe(ids[name], fresh=True))


async def test_target_health_asks_about_30_clbs_per_call(make_emulator: EmulatorFactory) -> None:
    emulator = await start(make_emulator)
    async with adapter(emulator) as clb:
        ids = await ensure_all(clb, [f"lb{i}" for i in range(31)])
        first = ids["lb0"]
        desired = (
            Listener(protocol="TCP", port=80, health_check=OFF, targets=pods(0, 3)),
            Listener(protocol="HTTP", port=8080, rules=(Rule("a.com", "/", targets=pods(10, 2)),)),
        )
        assert (await clb.sync([DesiredLoadBalancer(first, desired)]))[0].ok
        since = (await ledger_summary(emulator))["last"]
        health = await clb.target_health(list(ids.values()))
        assert calls(await ledger_summary(emulator, since=since)) == {"DescribeTargetHealth": 2}
    assert sorted(health) == sorted(ids.values())
    assert all(health[lb_id] == () for name, lb_id in ids.items() if name != "lb0")
    by_listener = Counter((h.listener.port, h.detail) for h in health[first])
    # Health check off: reported healthy as "Close"; on: "Unknown" until probed.
    assert by_listener[(80, "Close")] == 3
    assert by_listener[(8080, "Unknown")] + by_listener[(8080, "Dead")] == 2
    rule_entries = [h for h in health[first] if h.rule is not None]
    assert {h.rule.url for h in rule_entries if h.rule} == {"/"} and len(rule_entries) == 2


async def test_target_health_of_a_deleted_clb_does_not_hide_the_others(
    make_emulator: EmulatorFactory,
) -> None:
    """DescribeTargetHealth fails a whole call for one unknown CLB id; the adapter then asks
    about that call's CLBs one by one: the gone one reports nothing, the others their targets."""
    emulator = await start(make_emulator)
    async with adapter(emulator) as clb:
        ids = await ensure_all(clb, ["kept", "gone"])
        desired = (Listener(protocol="TCP", port=80, health_check=OFF, targets=pods(0, 2)),)
        assert (await clb.sync([DesiredLoadBalancer(ids["kept"], desired)]))[0].ok
        await clb.delete_load_balancer(ids["gone"])
        since = (await ledger_summary(emulator))["last"]
        health = await clb.target_health([ids["kept"], ids["gone"]])
        assert calls(await ledger_summary(emulator, since=since)) == {"DescribeTargetHealth": 3}
    assert health[ids["gone"]] == ()
    assert [h.detail for h in health[ids["kept"]]] == ["Close", "Close"]


@pytest.mark.parametrize("batching", list(Batching))
async def test_a_plan_applied_twice_converges_without_duplicates_or_errors(
    make_emulator: EmulatorFactory, batching: Batching
) -> None:
    emulator = await start(make_emulator)
    desired = phase_one()["alpha"]
    async with adapter(emulator) as clb:
        (lb_id,) = (await ensure_all(clb, ["alpha"])).values()
        plan = diff(desired=desired, observed=await clb.observe(lb_id), batching=batching)
        await clb.apply(plan)
        since = (await ledger_summary(emulator))["last"]
        await clb.apply(plan)  # from our cache: everything is already done
        assert (await ledger_summary(emulator, since=since))["actions"] == {}
    async with adapter(emulator) as fresh:  # no cache: a new process
        await fresh.apply(plan)
        assert_matches(desired, await fresh.observe(lb_id))
    summary = await ledger_summary(emulator, since=since)
    assert all(not row["errors"] for row in summary["actions"].values()), summary
    created = calls(summary).keys() & {"CreateListener", "CreateRule"}
    assert not created  # found, not made again
    assert store_counts(emulator) == desired_counts({"alpha": desired})


class Crash(Exception):
    """The process died: the call just made took effect, its answer was never read."""


@pytest.mark.parametrize("crash_after", [1, 3, 6])
@pytest.mark.parametrize("batching", list(Batching))
async def test_a_plan_reapplied_after_a_crash_converges(
    make_emulator: EmulatorFactory, batching: Batching, crash_after: int
) -> None:
    emulator = await start(make_emulator)
    desired = phase_one()["alpha"]
    async with adapter(emulator) as setup:
        (lb_id,) = (await ensure_all(setup, ["alpha"])).values()
        plan = diff(desired=desired, observed=await setup.observe(lb_id), batching=batching)
    sdk = SdkSender(sdk_client(config(emulator)))
    made = 0

    async def dying(action: str, params: dict[str, Any]) -> dict[str, Any]:
        nonlocal made
        answer = await sdk(action, params)
        made += action in MUTATIONS
        if made == crash_after:
            raise Crash
        return answer

    with pytest.raises(Crash):
        await adapter(emulator, send=dying).apply(plan)
    await sdk.close()
    async with adapter(emulator) as restarted:
        await restarted.apply(plan)
        assert_matches(desired, await restarted.observe(lb_id, fresh=True))
    assert store_counts(emulator) == desired_counts({"alpha": desired})


@pytest.mark.parametrize("strategy", list(SyncStrategy))
async def test_a_cloud_error_is_typed_and_does_not_stop_other_clbs(
    make_emulator: EmulatorFactory, strategy: SyncStrategy
) -> None:
    emulator = await start(make_emulator)
    # 127.30.0.9 is outside the VPC: the cloud refuses to bind it.
    bad = (Listener(protocol="TCP", port=80, targets=(*pods(0, 3), Target("127.30.0.9", 80))),)
    good = phase_one()["beta"]
    async with adapter(emulator, strategy=strategy) as clb:
        ids = await ensure_all(clb, ["bad", "good"])
        results = await sync(clb, ids, {"bad": bad, "good": good})
        assert_matches(good, await clb.observe(ids["good"], fresh=True))
    failed, ok = results
    assert ok.ok and failed.error is not None
    expected = "InvalidParameterValue" if strategy is SyncStrategy.NAIVE else PARTIAL_FAILURE
    assert failed.error.code == expected
    assert "127.30.0.9" in failed.error.message and failed.error.lb_id == ids["bad"]


async def test_a_port_held_outside_our_scope_is_a_conflict_and_bad_input_an_error(
    make_emulator: EmulatorFactory,
) -> None:
    emulator = await start(make_emulator)
    async with adapter(emulator) as clb:
        (lb_id,) = (await ensure_all(clb, ["shared"])).values()
        async with support.async_client(emulator) as raw:
            await support.create_listener(raw, lb_id, port=80, protocol="HTTP")
        mine = (Listener(protocol="TCP", port=80),)
        key = ListenerKey(ListenerProtocol.TCP, 80)
        (conflict,) = await clb.sync([DesiredLoadBalancer(lb_id, mine, scope=frozenset({key}))])
        assert conflict.error is not None and conflict.error.code == PORT_CONFLICT
        twice = (Listener(protocol="TCP", port=81), Listener(protocol="HTTP", port=81))
        (invalid,) = await clb.sync([DesiredLoadBalancer(lb_id, twice)])
        assert invalid.error is not None and invalid.error.code == INVALID_DESIRED
        # Owning the whole CLB, the HTTP listener is replaced.
        (replaced,) = await clb.sync([DesiredLoadBalancer(lb_id, mine)])
        assert replaced.ok
        assert_matches(mine, await clb.observe(lb_id, fresh=True))


async def test_one_mutation_at_a_time_per_clb_and_clbs_in_parallel(
    make_emulator: EmulatorFactory,
) -> None:
    """At time scale 0.01 a task takes ~50 ms: enough to collide if we did not wait."""
    emulator = await start(make_emulator, time_scale=0.01)
    timing = replace(FAST, cache_ttl=0)
    async with adapter(emulator, timing=timing) as clb:
        ids = await ensure_all(clb, ["a", "b", "c"])
        since = (await ledger_summary(emulator))["last"]
        one = (Listener(protocol="TCP", port=80, health_check=OFF, targets=pods(0, 30)),)
        two = (Listener(protocol="TCP", port=81, health_check=OFF, targets=pods(0, 30)),)
        plans = [
            diff(desired=d, observed=await clb.observe(ids["a"]), batching=Batching.SINGLE)
            for d in (one, two)
        ]
        await asyncio.gather(*(clb.apply(p) for p in plans))  # same CLB, at once
        results = await sync(clb, ids, {"a": one + two, "b": one, "c": two})
        assert all(r.ok for r in results)
    entries = await ledger(emulator, since=since)
    assert not [e for e in entries if e["code"] == "FailedOperation.ResourceInOperating"]
    # The sync's mutations on b and c interleave: different CLBs progress in parallel.
    order = [e["load_balancer_ids"][0] for e in entries if e["action"] in MUTATIONS]
    # Either may start first: their spans of mutations overlap (one CLB's mutation falls
    # between the other's first and last), which a one-CLB-at-a-time sync could never do.
    b_at = [i for i, lb in enumerate(order) if lb == ids["b"]]
    c_at = [i for i, lb in enumerate(order) if lb == ids["c"]]
    assert len(b_at) >= 2 and len(c_at) >= 2
    assert b_at[0] < c_at[-1] and c_at[0] < b_at[-1]


async def test_metrics_hooks_count_every_call_and_task(make_emulator: EmulatorFactory) -> None:
    emulator = await start(make_emulator)
    counter = CallCounter()
    async with adapter(emulator, observer=counter) as clb:
        ids = await ensure_all(clb, ["alpha", "beta"])
        await sync(clb, ids, phase_one())
    assert counter.by_action() == calls(await ledger_summary(emulator))
    assert counter.total("DescribeTaskStatus") == sum(counter.task_waits.values())
    assert set(counter.task_waits) >= {("CreateRule", "Success"), ("CreateListener", "Success")}


async def test_credentials_never_reach_the_logs(
    make_emulator: EmulatorFactory, caplog: pytest.LogCaptureFixture
) -> None:
    emulator = await start(make_emulator)
    with caplog.at_level(logging.DEBUG):
        async with adapter(emulator) as clb:
            ids = await ensure_all(clb, ["alpha"])
            await sync(clb, ids, {"alpha": phase_one()["alpha"]})
            logging.getLogger("test").info("config=%r", clb.config)
    assert caplog.records
    assert support.SECRET_KEY not in caplog.text
    # Ours never show the SecretId either (the SDK's own DEBUG dump of a request shows it, as
    # the Authorization header carries it by protocol).
    ours = [r.getMessage() for r in caplog.records if not r.name.startswith(("tencent", "http"))]
    assert ours and not any(support.SECRET_ID in m for m in ours)


async def test_what_the_adapter_keeps_per_clb_does_not_outlive_its_use(
    make_emulator: EmulatorFactory,
) -> None:
    """Per-CLB locks live while a task holds or awaits them; the CLBs found for a spec are
    forgotten when deleted, and past KNOWN_LB_TTL when another is remembered. Before, both
    maps kept every CLB ever seen, deleted ones included, for the process's life."""
    emulator = await start(make_emulator, time_scale=0.01)
    async with adapter(emulator) as clb:
        names = ["a", "b", "c"]
        ids = await ensure_all(clb, names)
        await ensure_all(clb, names)  # found by their tags: now trusted
        assert {lb.lb_id for lb, _ in clb._known.values()} == set(ids.values())
        one = (Listener(protocol="TCP", port=80, health_check=OFF, targets=pods(0, 3)),)
        results = await sync(clb, ids, dict.fromkeys(names, one))
        assert all(r.ok for r in results)
        assert clb._locks == {}

        # Still one holder at a time while it lives.
        held: list[str] = []

        async def hold(name: str) -> None:
            async with clb._lock(ids["a"]):
                held.append(f"{name}+")
                await asyncio.sleep(0.02)
                held.append(f"{name}-")

        await asyncio.gather(hold("x"), hold("y"), hold("z"))
        assert held == ["x+", "x-", "y+", "y-", "z+", "z-"] and clb._locks == {}
        # A waiter cancelled before its turn leaves nothing behind either.
        async with clb._lock(ids["a"]):
            waiter = asyncio.create_task(hold("w"))
            await asyncio.sleep(0.01)
            assert clb._locks[ids["a"]].users == 2
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
        assert clb._locks == {}

        for lb_id in ids.values():
            await clb.delete_load_balancer(lb_id)
        assert clb._locks == {} and clb._known == {}

        # Entries past the TTL (a Service deleted without its CLB: an adopted one released)
        # go when another CLB is remembered.
        adopted = (await ensure_all(clb, ["d"]))["d"]
        await clb.ensure_load_balancer(LoadBalancerSpec("any", (), existing_id=adopted))
        assert len(clb._known) == 1
        key = next(iter(clb._known))
        lb, at = clb._known[key]
        clb._known[key] = (lb, at - tencent.KNOWN_LB_TTL)
        fresh = await ensure_all(clb, ["e"])
        await ensure_all(clb, ["e"])
        assert [lb.lb_id for lb, _ in clb._known.values()] == [fresh["e"]]


async def test_quotas_are_read_from_describe_quota(make_emulator: EmulatorFactory) -> None:
    """Each quota that shapes a desired state comes from DescribeQuota, the rules per layer-7
    listener (TOTAL_LISTENER_RULE_QUOTA) among them."""
    emulator = await start(
        make_emulator,
        quotas={
            "TOTAL_LISTENER_QUOTA": 7,
            "TOTAL_LISTENER_RULE_QUOTA": 12,
            "TOTAL_TARGET_BIND_QUOTA": 250,
        },
    )
    async with adapter(emulator) as clb:
        quotas = await clb.quotas()
    assert (quotas.listeners_per_lb, quotas.rules_per_listener, quotas.targets_per_group) == (
        7,
        12,
        250,
    )
