"""The plan runner's idempotency rules, against a scripted sender (looptime: no waiting)."""

from __future__ import annotations

from typing import Any

import pytest

from directlb.cloud.apply import PlanRunner
from directlb.cloud.errors import PORT_CONFLICT, CloudError, PartialFailure, StalePlan
from directlb.plan.ops import (
    BatchDeregisterTargets,
    BatchRegisterTargets,
    Binding,
    CreateListeners,
    CreateRules,
    DeleteListeners,
    DeregisterTargets,
    Plan,
    RegisterTargets,
)
from directlb.plan.state import (
    Listener,
    ListenerKey,
    ListenerProtocol,
    LoadBalancerState,
    Rule,
    RuleKey,
    Target,
)
from tests.unit.test_cloud_api import Script, error, make_api

TCP80 = ListenerKey(ListenerProtocol.TCP, 80)
TCP81 = ListenerKey(ListenerProtocol.TCP, 81)
HTTP = ListenerKey(ListenerProtocol.HTTP, 8080)
DONE = {"Status": 0}


def state(*listeners: Listener) -> LoadBalancerState:
    return LoadBalancerState("lb-1", listeners)


def tcp(port: int, listener_id: str, *targets: Target) -> Listener:
    return Listener(protocol="TCP", port=port, listener_id=listener_id, targets=targets)


def listener_doc(port: int, listener_id: str, protocol: str = "TCP") -> dict[str, Any]:
    return {"ListenerId": listener_id, "Protocol": protocol, "Port": port, "Rules": []}


def pod(n: int) -> Target:
    return Target(f"127.17.0.{n}", 80)


@pytest.mark.looptime
async def test_only_the_failed_part_of_a_batch_is_retried() -> None:
    script = Script(
        {
            "BatchRegisterTargets": [
                {"FailListenerIdSet": ["lbl-81"], "Message": "lbl-81: busy"},
                {"FailListenerIdSet": []},
            ]
        }
    )
    runner = PlanRunner(
        api=make_api(script), state=state(tcp(80, "lbl-80"), tcp(81, "lbl-81")), complete=True
    )
    op = BatchRegisterTargets(
        (Binding(TCP80, None, pod(1)), Binding(TCP81, None, pod(2)), Binding(TCP81, None, pod(3)))
    )
    after = await runner.run(Plan("lb-1", (op,)))
    first, second = (params for action, params in script.sent)
    assert [t["ListenerId"] for t in first["Targets"]] == ["lbl-80", "lbl-81", "lbl-81"]
    assert [t["EniIp"] for t in second["Targets"]] == ["127.17.0.2", "127.17.0.3"]
    assert [x.targets for x in after.listeners] == [(pod(1),), (pod(2), pod(3))]


@pytest.mark.looptime
async def test_a_part_that_keeps_failing_is_a_partial_failure_with_the_message() -> None:
    failing = {"FailListenerIdSet": ["lbl-80"], "Message": "lbl-80: 127.17.0.1 not routable"}
    script = Script({"BatchRegisterTargets": [failing] * 8})
    runner = PlanRunner(
        api=make_api(script, attempts=3), state=state(tcp(80, "lbl-80")), complete=True
    )
    with pytest.raises(PartialFailure) as info:
        await runner.run(Plan("lb-1", (BatchRegisterTargets((Binding(TCP80, None, pod(1)),)),)))
    assert info.value.failed_listener_ids == ("lbl-80",)
    assert "not routable" in info.value.message and script.count("BatchRegisterTargets") == 3


@pytest.mark.looptime
async def test_a_failed_task_is_tried_again() -> None:
    script = Script(
        {
            "CreateRule": [{"LocationIds": ["loc-x"]}, {"LocationIds": ["loc-1"]}],
            "DescribeTaskStatus": [{"Status": 1, "Message": "injected"}, DONE],
        }
    )
    http = Listener(protocol="HTTP", port=8080, listener_id="lbl-h")
    runner = PlanRunner(api=make_api(script), state=state(http), complete=True)
    after = await runner.run(Plan("lb-1", (CreateRules(HTTP, (Rule("a.com", "/"),)),)))
    assert script.count("CreateRule") == 2
    assert after.listeners[0].rules[0].location_id == "loc-1"


@pytest.mark.looptime
async def test_a_create_whose_answer_was_lost_is_found_and_not_repeated() -> None:
    """PortCheckFailed after a lost answer: look again, find the listener, adopt it."""
    script = Script(
        {
            "CreateListener": [error("InvalidParameter.PortCheckFailed")],
            "DescribeListeners": [{"Listeners": [listener_doc(80, "lbl-80")]}],
        }
    )
    runner = PlanRunner(api=make_api(script), state=state(), complete=True)
    after = await runner.run(Plan("lb-1", (CreateListeners((Listener(protocol="TCP", port=80),)),)))
    assert after.listeners[0].listener_id == "lbl-80" and not runner.complete
    assert script.count("CreateListener") == 1


@pytest.mark.looptime
async def test_done_work_is_skipped_without_a_call() -> None:
    script = Script({})
    runner = PlanRunner(api=make_api(script), state=state(tcp(80, "lbl-80")), complete=True)
    plan = Plan(
        "lb-1",
        (
            CreateListeners((Listener(protocol="TCP", port=80),)),  # exists
            DeleteListeners((TCP81,)),  # gone
            DeregisterTargets(TCP81, None, (pod(1),)),  # gone with its listener
            BatchDeregisterTargets((Binding(TCP81, None, pod(1)),)),
        ),
    )
    await runner.run(plan)
    assert script.sent == []


@pytest.mark.looptime
async def test_a_plan_needing_a_missing_listener_is_stale() -> None:
    runner = PlanRunner(api=make_api(Script({})), state=state(), complete=True)
    with pytest.raises(StalePlan) as info:
        await runner.run(Plan("lb-1", (RegisterTargets(TCP80, None, (pod(1),)),)))
    assert "TCP:80" in info.value.message
    rule = RuleKey("a.com", "/")
    http = Listener(protocol="HTTP", port=8080, listener_id="lbl-h")
    runner = PlanRunner(api=make_api(Script({})), state=state(http), complete=True)
    with pytest.raises(StalePlan):
        await runner.run(Plan("lb-1", (BatchRegisterTargets((Binding(HTTP, rule, pod(1)),)),)))


@pytest.mark.looptime
async def test_a_port_held_by_a_listener_out_of_scope_is_a_conflict() -> None:
    runner = PlanRunner(
        api=make_api(Script({})),
        state=state(Listener(protocol="HTTP", port=80, listener_id="lbl-80")),
        complete=True,
    )
    with pytest.raises(CloudError) as info:
        await runner.run(Plan("lb-1", (CreateListeners((Listener(protocol="TCP", port=80),)),)))
    assert info.value.code == PORT_CONFLICT and "lbl-80" in info.value.message


@pytest.mark.looptime
async def test_an_answer_that_stays_stale_ends_as_a_stale_plan() -> None:
    script = Script(
        {"DeleteLoadBalancerListeners": [error("InvalidParameter.ListenerIdNotFound")] * 10},
        default={"Listeners": [listener_doc(80, "lbl-80")]},
    )
    runner = PlanRunner(api=make_api(script), state=state(tcp(80, "lbl-80")), complete=True)
    with pytest.raises(StalePlan):
        await runner.run(Plan("lb-1", (DeleteListeners((TCP80,)),)))
    assert script.count("DescribeListeners") == 3
