"""Every CLB action end to end, driven by the official SDK (typed models and plain JSON).

Most tests run at time scale 0 (a task ends the moment it is accepted) with the rate limit off,
so that they are quick; the task-lifecycle tests use a small time scale so a task is seen
running before it ends.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from tencentcloud.clb.v20180317 import clb_client_async, models

from directlb.emulator.config import FaultRule
from directlb.emulator.server import Emulator
from tests import support
from tests.conftest import EmulatorFactory

Client = clb_client_async.ClbClient


def target_rows(listener_or_rule: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(ip, port, weight) of the Targets of a DescribeTargets listener or rule, sorted."""
    return sorted(
        (t["PrivateIpAddresses"][0], t["Port"], t["Weight"]) for t in listener_or_rule["Targets"]
    )


async def described_targets(client: Client, lb_id: str, **params: Any) -> dict[str, Any]:
    """DescribeTargets keyed by ListenerId; layer-7 listeners keyed further by LocationId."""
    answer = await support.api(client, "DescribeTargets", LoadBalancerId=lb_id, **params)
    out: dict[str, Any] = {}
    for listener in answer["Listeners"]:
        if "Rules" in listener:
            out[listener["ListenerId"]] = {r["LocationId"]: r for r in listener["Rules"]}
        else:
            out[listener["ListenerId"]] = listener
    return out


async def http_layer7(client: Client, *, protocol: str = "HTTP") -> tuple[str, str, list[str]]:
    """A CLB with one layer-7 listener and two rules; returns (lb, listener, location ids)."""
    lb_id = await support.create_lb(client)
    params: dict[str, Any] = {}
    if protocol == "HTTPS":
        params["Certificate"] = {"SSLMode": "UNIDIRECTIONAL", "CertId": "cert-abc"}
    listener_id = await support.create_listener(client, lb_id, port=80, protocol=protocol, **params)
    answer = await support.done(
        client,
        "CreateRule",
        LoadBalancerId=lb_id,
        ListenerId=listener_id,
        Rules=[
            {"Domain": "a.example.com", "Url": "/"},
            {"Domain": "a.example.com", "Url": "/api"},
        ],
    )
    return lb_id, listener_id, list(answer["LocationIds"])


# ===== load balancers =====================================================================


async def test_create_load_balancer_is_status_0_while_its_task_runs_then_1(
    make_emulator: EmulatorFactory,
) -> None:
    # Time scale 0.05: the creation task takes 5 cloud seconds, 0.25 wall seconds.
    emulator = await make_emulator(time_scale=0.05)
    async with support.async_client(emulator) as client:
        request = models.CreateLoadBalancerRequest()
        request.LoadBalancerType = "OPEN"
        request.LoadBalancerName = "web"
        tag = models.TagInfo()
        tag.TagKey, tag.TagValue = "owner", "directlb"
        request.Tags = [tag]
        response = await client.CreateLoadBalancer(request)
        [lb_id] = response.LoadBalancerIds
        assert lb_id.startswith("lb-")
        assert response.DealName

        describe = models.DescribeLoadBalancersRequest()
        describe.LoadBalancerIds = [lb_id]
        during = await client.DescribeLoadBalancers(describe)
        assert during.TotalCount == 1
        [lb] = during.LoadBalancerSet
        assert (lb.LoadBalancerId, lb.LoadBalancerName, lb.Status) == (lb_id, "web", 0)
        assert [(t.TagKey, t.TagValue) for t in lb.Tags] == [("owner", "directlb")]

        by_deal = await support.api(client, "DescribeTaskStatus", DealName=response.DealName)
        assert (by_deal["Status"], by_deal["LoadBalancerIds"]) == (2, [lb_id])

        status = await support.wait_task(client, response.RequestId)
        assert status["Status"] == 0
        after = await client.DescribeLoadBalancers(describe)
        [lb] = after.LoadBalancerSet
        assert lb.Status == 1
        assert lb.LoadBalancerVips and lb.LoadBalancerVips[0].startswith("127.100.")
        by_deal = await support.api(client, "DescribeTaskStatus", DealName=response.DealName)
        assert (by_deal["Status"], by_deal["LoadBalancerIds"]) == (0, [lb_id])


async def test_create_several_load_balancers_with_tags_then_filter_and_page(
    client: Client,
) -> None:
    tags = [{"TagKey": "owner", "TagValue": "directlb"}, {"TagKey": "team", "TagValue": "net"}]
    answer = await support.done(
        client, "CreateLoadBalancer", LoadBalancerType="OPEN", Number=3, Tags=tags
    )
    ids = answer["LoadBalancerIds"]
    assert len(ids) == 3 and len(set(ids)) == 3
    other = await support.create_lb(client, Tags=[{"TagKey": "owner", "TagValue": "someone"}])
    untagged = await support.create_lb(client)

    everything = await support.api(client, "DescribeLoadBalancers")
    assert everything["TotalCount"] == 5
    vips = [lb["LoadBalancerVips"][0] for lb in everything["LoadBalancerSet"]]
    assert len(set(vips)) == 5

    by_tag = await support.api(
        client,
        "DescribeLoadBalancers",
        Filters=[{"Name": "tag:owner", "Values": ["directlb"]}],
    )
    assert by_tag["TotalCount"] == 3
    assert sorted(lb["LoadBalancerId"] for lb in by_tag["LoadBalancerSet"]) == sorted(ids)
    assert all(lb["Status"] == 1 for lb in by_tag["LoadBalancerSet"])

    by_key = await support.api(
        client, "DescribeLoadBalancers", Filters=[{"Name": "tag-key", "Values": ["owner"]}]
    )
    assert by_key["TotalCount"] == 4
    assert untagged not in [lb["LoadBalancerId"] for lb in by_key["LoadBalancerSet"]]
    assert other in [lb["LoadBalancerId"] for lb in by_key["LoadBalancerSet"]]

    both = await support.api(
        client,
        "DescribeLoadBalancers",
        Filters=[
            {"Name": "tag-key", "Values": ["owner"]},
            {"Name": "tag:team", "Values": ["net"]},
        ],
    )
    assert both["TotalCount"] == 3

    page = await support.api(client, "DescribeLoadBalancers", Offset=1, Limit=2)
    assert page["TotalCount"] == 5
    assert [lb["LoadBalancerId"] for lb in page["LoadBalancerSet"]] == [
        lb["LoadBalancerId"] for lb in everything["LoadBalancerSet"][1:3]
    ]
    last = await support.api(client, "DescribeLoadBalancers", Offset=4, Limit=20)
    assert [lb["LoadBalancerId"] for lb in last["LoadBalancerSet"]] == [untagged]
    past_end = await support.api(client, "DescribeLoadBalancers", Offset=10)
    assert (past_end["TotalCount"], past_end["LoadBalancerSet"]) == (5, [])

    by_ids = await support.api(client, "DescribeLoadBalancers", LoadBalancerIds=[ids[0], other])
    assert sorted(lb["LoadBalancerId"] for lb in by_ids["LoadBalancerSet"]) == sorted(
        [ids[0], other]
    )
    unknown = await support.api(client, "DescribeLoadBalancers", LoadBalancerIds=["lb-nothere"])
    assert (unknown["TotalCount"], unknown["LoadBalancerSet"]) == (0, [])


async def test_client_token_makes_create_load_balancer_idempotent(client: Client) -> None:
    first = await support.done(
        client, "CreateLoadBalancer", LoadBalancerType="OPEN", Number=2, ClientToken="tok-1"
    )
    again = await support.api(
        client, "CreateLoadBalancer", LoadBalancerType="OPEN", Number=2, ClientToken="tok-1"
    )
    assert again["LoadBalancerIds"] == first["LoadBalancerIds"]
    # The retry's answer can be polled like the original's.
    assert again["DealName"] == first["DealName"]
    status = await support.api(client, "DescribeTaskStatus", DealName=again["DealName"])
    assert (status["Status"], status["LoadBalancerIds"]) == (0, first["LoadBalancerIds"])
    listed = await support.api(client, "DescribeLoadBalancers")
    assert listed["TotalCount"] == 2
    other = await support.done(
        client, "CreateLoadBalancer", LoadBalancerType="OPEN", ClientToken="tok-2"
    )
    assert set(other["LoadBalancerIds"]).isdisjoint(first["LoadBalancerIds"])
    assert (await support.api(client, "DescribeLoadBalancers"))["TotalCount"] == 3


async def test_internal_load_balancer_needs_a_subnet(client: Client) -> None:
    await support.expect_error(
        support.api(client, "CreateLoadBalancer", LoadBalancerType="INTERNAL"),
        "MissingParameter",
        "SubnetId",
    )
    assert (await support.api(client, "DescribeLoadBalancers"))["TotalCount"] == 0
    lb_id = await support.create_lb(
        client, LoadBalancerType="INTERNAL", SubnetId="subnet-1", VpcId="vpc-directlb"
    )
    [lb] = (await support.api(client, "DescribeLoadBalancers", LoadBalancerIds=[lb_id]))[
        "LoadBalancerSet"
    ]
    assert (lb["LoadBalancerType"], lb["SubnetId"], lb["VpcId"]) == (
        "INTERNAL",
        "subnet-1",
        "vpc-directlb",
    )
    internal = await support.api(client, "DescribeLoadBalancers", LoadBalancerType="INTERNAL")
    assert [x["LoadBalancerId"] for x in internal["LoadBalancerSet"]] == [lb_id]


async def test_delete_load_balancer_removes_it_and_everything_under_it(client: Client) -> None:
    lb_id = await support.create_lb(client)
    keep = await support.create_lb(client)
    listener_id = await support.create_listener(client, lb_id, port=80)
    await support.done(
        client,
        "RegisterTargets",
        LoadBalancerId=lb_id,
        ListenerId=listener_id,
        Targets=[{"EniIp": "127.17.0.2", "Port": 80}],
    )
    request = models.DeleteLoadBalancerRequest()
    request.LoadBalancerIds = [lb_id]
    response = await client.DeleteLoadBalancer(request)
    assert (await support.wait_task(client, response.RequestId))["Status"] == 0
    remaining = await support.api(client, "DescribeLoadBalancers")
    assert [lb["LoadBalancerId"] for lb in remaining["LoadBalancerSet"]] == [keep]
    await support.expect_error(
        support.api(client, "DescribeListeners", LoadBalancerId=lb_id),
        "InvalidParameter.LBIdNotFound",
        lb_id,
    )


# ===== listeners ==========================================================================


async def test_create_layer4_listeners_with_names_health_check_session_and_scheduler(
    client: Client,
) -> None:
    lb_id = await support.create_lb(client)
    request = models.CreateListenerRequest()
    request.LoadBalancerId = lb_id
    request.Ports = [80, 443]
    request.Protocol = "TCP"
    request.ListenerNames = ["web", "tls"]
    check = models.HealthCheck()
    check.HealthSwitch = 1
    check.TimeOut = 3
    check.IntervalTime = 10
    check.HealthNum = 2
    check.UnHealthNum = 4
    request.HealthCheck = check
    request.SessionExpireTime = 60
    request.Scheduler = "LEAST_CONN"
    response = await client.CreateListener(request)
    assert len(response.ListenerIds) == 2
    assert (await support.wait_task(client, response.RequestId))["Status"] == 0

    udp = await support.create_listener(client, lb_id, port=80, protocol="UDP")

    described = await client.DescribeListeners(_describe_listeners_request(lb_id))
    assert described.TotalCount == 3
    by_id = {listener.ListenerId: listener for listener in described.Listeners}
    web = by_id[response.ListenerIds[0]]
    tls = by_id[response.ListenerIds[1]]
    assert (web.Protocol, web.Port, web.ListenerName) == ("TCP", 80, "web")
    assert (tls.Protocol, tls.Port, tls.ListenerName) == ("TCP", 443, "tls")
    for listener in (web, tls):
        assert (listener.Scheduler, listener.SessionExpireTime) == ("LEAST_CONN", 60)
        hc = listener.HealthCheck
        assert (hc.HealthSwitch, hc.TimeOut, hc.IntervalTime, hc.HealthNum, hc.UnHealthNum) == (
            1,
            3,
            10,
            2,
            4,
        )
        assert hc.CheckType == "TCP"
        assert listener.Rules is None
    assert (by_id[udp].Protocol, by_id[udp].Port, by_id[udp].Scheduler) == ("UDP", 80, "WRR")
    assert by_id[udp].HealthCheck.CheckType == "PING"

    only_udp = await support.api(client, "DescribeListeners", LoadBalancerId=lb_id, Protocol="UDP")
    assert [x["ListenerId"] for x in only_udp["Listeners"]] == [udp]
    port_443 = await support.api(client, "DescribeListeners", LoadBalancerId=lb_id, Port=443)
    assert [x["ListenerId"] for x in port_443["Listeners"]] == [response.ListenerIds[1]]
    by_ids = await support.api(client, "DescribeListeners", LoadBalancerId=lb_id, ListenerIds=[udp])
    assert by_ids["TotalCount"] == 1


def _describe_listeners_request(lb_id: str) -> models.DescribeListenersRequest:
    request = models.DescribeListenersRequest()
    request.LoadBalancerId = lb_id
    return request


async def test_layer7_listeners_show_their_rules(client: Client) -> None:
    lb_id = await support.create_lb(client)
    http = await support.create_listener(client, lb_id, port=80, protocol="HTTP")
    https = await support.create_listener(
        client,
        lb_id,
        port=443,
        protocol="HTTPS",
        Certificate={"SSLMode": "UNIDIRECTIONAL", "CertId": "cert-123"},
    )
    rules = await support.done(
        client,
        "CreateRule",
        LoadBalancerId=lb_id,
        ListenerId=https,
        Rules=[{"Domain": "shop.example.com", "Url": "/"}],
    )
    described = await support.api(client, "DescribeListeners", LoadBalancerId=lb_id)
    by_id = {x["ListenerId"]: x for x in described["Listeners"]}
    assert by_id[http]["Protocol"] == "HTTP"
    assert by_id[http]["Rules"] == []
    assert by_id[https]["Certificate"]["CertId"] == "cert-123"
    assert by_id[https]["Certificate"]["SSLMode"] == "UNIDIRECTIONAL"
    [rule] = by_id[https]["Rules"]
    assert (rule["LocationId"], rule["Domain"], rule["Url"], rule["ListenerId"]) == (
        rules["LocationIds"][0],
        "shop.example.com",
        "/",
        https,
    )
    assert rule["DefaultServer"] is True
    assert rule["HealthCheck"]["CheckType"] == "HTTP"


async def test_modify_listener_changes_only_what_is_given(client: Client) -> None:
    lb_id = await support.create_lb(client)
    listener_id = await support.create_listener(
        client, lb_id, port=80, HealthCheck={"IntervalTime": 10, "TimeOut": 4}
    )
    await support.done(
        client,
        "ModifyListener",
        LoadBalancerId=lb_id,
        ListenerId=listener_id,
        ListenerName="renamed",
        HealthCheck={"HealthNum": 5},
        SessionExpireTime=120,
        Scheduler="LEAST_CONN",
    )
    [listener] = (await support.api(client, "DescribeListeners", LoadBalancerId=lb_id))["Listeners"]
    assert listener["ListenerName"] == "renamed"
    assert (listener["SessionExpireTime"], listener["Scheduler"]) == (120, "LEAST_CONN")
    check = listener["HealthCheck"]
    assert (check["IntervalTime"], check["TimeOut"], check["HealthNum"]) == (10, 4, 5)

    https = await support.create_listener(
        client, lb_id, port=443, protocol="HTTPS", Certificate={"CertId": "cert-old"}
    )
    request = models.ModifyListenerRequest()
    request.LoadBalancerId = lb_id
    request.ListenerId = https
    certificate = models.CertificateInput()
    certificate.CertId = "cert-new"
    request.Certificate = certificate
    response = await client.ModifyListener(request)
    assert (await support.wait_task(client, response.RequestId))["Status"] == 0
    described = await support.api(
        client, "DescribeListeners", LoadBalancerId=lb_id, ListenerIds=[https]
    )
    assert described["Listeners"][0]["Certificate"]["CertId"] == "cert-new"


async def test_delete_listener_and_delete_load_balancer_listeners(client: Client) -> None:
    lb_id = await support.create_lb(client)
    answer = await support.done(
        client, "CreateListener", LoadBalancerId=lb_id, Ports=[80, 81, 82, 83], Protocol="TCP"
    )
    a, b, c, d = answer["ListenerIds"]
    request = models.DeleteListenerRequest()
    request.LoadBalancerId = lb_id
    request.ListenerId = a
    response = await client.DeleteListener(request)
    assert (await support.wait_task(client, response.RequestId))["Status"] == 0

    async def remaining() -> list[str]:
        described = await support.api(client, "DescribeListeners", LoadBalancerId=lb_id)
        return sorted(x["ListenerId"] for x in described["Listeners"])

    assert await remaining() == sorted([b, c, d])
    await support.done(client, "DeleteLoadBalancerListeners", LoadBalancerId=lb_id, ListenerIds=[b])
    assert await remaining() == sorted([c, d])
    # Without ListenerIds every listener of the CLB goes.
    await support.done(client, "DeleteLoadBalancerListeners", LoadBalancerId=lb_id)
    assert await remaining() == []
    await support.expect_error(
        support.api(client, "DeleteLoadBalancerListeners", LoadBalancerId=lb_id),
        "FailedOperation.NoListenerInLB",
        lb_id,
    )


# ===== rules ==============================================================================


async def test_create_modify_and_delete_rules(client: Client) -> None:
    lb_id = await support.create_lb(client)
    listener_id = await support.create_listener(client, lb_id, port=80, protocol="HTTP")
    request = models.CreateRuleRequest()
    request.LoadBalancerId = lb_id
    request.ListenerId = listener_id
    inputs = []
    for domain, url in [
        ("a.example.com", "/"),
        ("a.example.com", "/api"),
        ("b.example.com", "/"),
        ("c.example.com", "/static"),
    ]:
        rule = models.RuleInput()
        rule.Domain, rule.Url = domain, url
        inputs.append(rule)
    inputs[1].SessionExpireTime = 300
    inputs[1].Scheduler = "IP_HASH"
    check = models.HealthCheck()
    check.HttpCheckPath = "/healthz"
    check.HttpCode = 2
    inputs[1].HealthCheck = check
    request.Rules = inputs
    response = await client.CreateRule(request)
    assert len(response.LocationIds) == 4 and len(set(response.LocationIds)) == 4
    assert (await support.wait_task(client, response.RequestId))["Status"] == 0

    async def rules() -> dict[str, dict[str, Any]]:
        described = await support.api(client, "DescribeListeners", LoadBalancerId=lb_id)
        return {r["LocationId"]: r for r in described["Listeners"][0]["Rules"]}

    loc_a, loc_api, loc_b, loc_c = response.LocationIds
    got = await rules()
    assert [(got[i]["Domain"], got[i]["Url"]) for i in response.LocationIds] == [
        ("a.example.com", "/"),
        ("a.example.com", "/api"),
        ("b.example.com", "/"),
        ("c.example.com", "/static"),
    ]
    # The first domain becomes the default; DefaultServer is the domain's, on all its rules.
    assert [got[i]["DefaultServer"] for i in response.LocationIds] == [True, True, False, False]
    assert (got[loc_api]["SessionExpireTime"], got[loc_api]["Scheduler"]) == (300, "IP_HASH")
    assert (
        got[loc_api]["HealthCheck"]["HttpCheckPath"],
        got[loc_api]["HealthCheck"]["HttpCode"],
    ) == (
        "/healthz",
        2,
    )
    assert got[loc_a]["Scheduler"] == "WRR"

    await support.done(
        client,
        "ModifyRule",
        LoadBalancerId=lb_id,
        ListenerId=listener_id,
        LocationId=loc_api,
        Url="/v2",
        Scheduler="LEAST_CONN",
        SessionExpireTime=0,
        HealthCheck={"IntervalTime": 20},
    )
    got = await rules()
    assert (got[loc_api]["Url"], got[loc_api]["Scheduler"], got[loc_api]["SessionExpireTime"]) == (
        "/v2",
        "LEAST_CONN",
        0,
    )
    assert got[loc_api]["HealthCheck"]["IntervalTime"] == 20
    assert got[loc_api]["HealthCheck"]["HttpCheckPath"] == "/healthz"

    await support.done(
        client,
        "DeleteRule",
        LoadBalancerId=lb_id,
        ListenerId=listener_id,
        LocationIds=[loc_b, loc_c],
    )
    assert sorted(await rules()) == sorted([loc_a, loc_api])
    await support.done(
        client,
        "DeleteRule",
        LoadBalancerId=lb_id,
        ListenerId=listener_id,
        Domain="a.example.com",
        Url="/v2",
    )
    assert list(await rules()) == [loc_a]


# ===== targets ============================================================================


async def test_register_modify_and_deregister_layer4_targets(client: Client) -> None:
    lb_id = await support.create_lb(client)
    listener_id = await support.create_listener(client, lb_id, port=80)
    request = models.RegisterTargetsRequest()
    request.LoadBalancerId = lb_id
    request.ListenerId = listener_id
    targets = []
    for ip, port, weight in [("127.17.0.1", 8080, None), ("127.17.0.2", 8080, 30)]:
        target = models.Target()
        target.EniIp, target.Port = ip, port
        if weight is not None:
            target.Weight = weight
        targets.append(target)
    request.Targets = targets
    response = await client.RegisterTargets(request)
    assert (await support.wait_task(client, response.RequestId))["Status"] == 0
    listed = await described_targets(client, lb_id)
    assert target_rows(listed[listener_id]) == [
        ("127.17.0.1", 8080, 10),
        ("127.17.0.2", 8080, 30),
    ]
    [backend] = [t for t in listed[listener_id]["Targets"] if t["Weight"] == 30]
    assert (backend["Type"], backend["InstanceId"]) == ("ENI", "")

    # One weight for every target named, and a per-target weight that wins over it.
    await support.done(
        client,
        "ModifyTargetWeight",
        LoadBalancerId=lb_id,
        ListenerId=listener_id,
        Weight=50,
        Targets=[
            {"EniIp": "127.17.0.1", "Port": 8080},
            {"EniIp": "127.17.0.2", "Port": 8080, "Weight": 0},
        ],
    )
    listed = await described_targets(client, lb_id)
    assert target_rows(listed[listener_id]) == [
        ("127.17.0.1", 8080, 50),
        ("127.17.0.2", 8080, 0),
    ]

    deregister = models.DeregisterTargetsRequest()
    deregister.LoadBalancerId = lb_id
    deregister.ListenerId = listener_id
    gone = models.Target()
    gone.EniIp, gone.Port = "127.17.0.1", 8080
    deregister.Targets = [gone]
    response = await client.DeregisterTargets(deregister)
    assert (await support.wait_task(client, response.RequestId))["Status"] == 0
    listed = await described_targets(client, lb_id)
    assert target_rows(listed[listener_id]) == [("127.17.0.2", 8080, 0)]


async def test_layer7_targets_by_location_id_and_by_domain_and_url(client: Client) -> None:
    lb_id, listener_id, (root, api) = await http_layer7(client)
    await support.done(
        client,
        "RegisterTargets",
        LoadBalancerId=lb_id,
        ListenerId=listener_id,
        LocationId=root,
        Targets=[{"EniIp": "127.17.1.1", "Port": 80, "Weight": 5}],
    )
    await support.done(
        client,
        "RegisterTargets",
        LoadBalancerId=lb_id,
        ListenerId=listener_id,
        Domain="a.example.com",
        Url="/api",
        Targets=[{"EniIp": "127.17.1.2", "Port": 81}, {"EniIp": "127.17.1.3", "Port": 81}],
    )
    rules = (await described_targets(client, lb_id))[listener_id]
    assert target_rows(rules[root]) == [("127.17.1.1", 80, 5)]
    assert target_rows(rules[api]) == [("127.17.1.2", 81, 10), ("127.17.1.3", 81, 10)]
    assert (rules[api]["Domain"], rules[api]["Url"]) == ("a.example.com", "/api")

    await support.done(
        client,
        "ModifyTargetWeight",
        LoadBalancerId=lb_id,
        ListenerId=listener_id,
        Domain="a.example.com",
        Url="/api",
        Targets=[{"EniIp": "127.17.1.3", "Port": 81, "Weight": 77}],
    )
    await support.done(
        client,
        "ModifyTargetWeight",
        LoadBalancerId=lb_id,
        ListenerId=listener_id,
        LocationId=root,
        Targets=[{"EniIp": "127.17.1.1", "Port": 80}],
        Weight=6,
    )
    rules = (await described_targets(client, lb_id))[listener_id]
    assert target_rows(rules[root]) == [("127.17.1.1", 80, 6)]
    assert target_rows(rules[api]) == [("127.17.1.2", 81, 10), ("127.17.1.3", 81, 77)]

    await support.done(
        client,
        "DeregisterTargets",
        LoadBalancerId=lb_id,
        ListenerId=listener_id,
        Domain="a.example.com",
        Url="/api",
        Targets=[{"EniIp": "127.17.1.2", "Port": 81}],
    )
    await support.done(
        client,
        "DeregisterTargets",
        LoadBalancerId=lb_id,
        ListenerId=listener_id,
        LocationId=root,
        Targets=[{"EniIp": "127.17.1.1", "Port": 80}],
    )
    rules = (await described_targets(client, lb_id))[listener_id]
    assert rules[root]["Targets"] == []
    assert target_rows(rules[api]) == [("127.17.1.3", 81, 77)]


async def test_targets_by_instance_id_from_config_and_from_the_registry(
    fast: Emulator, client: Client
) -> None:
    lb_id = await support.create_lb(client)
    listener_id = await support.create_listener(client, lb_id, port=80)
    await support.done(
        client,
        "RegisterTargets",
        LoadBalancerId=lb_id,
        ListenerId=listener_id,
        Targets=[{"InstanceId": "ins-1", "Port": 30080}],
    )
    # A node added later is registered through the emulator's own endpoint.
    async with httpx.AsyncClient(base_url=f"http://{fast.endpoint}") as http:
        posted = await http.post(
            "/_emulator/instances",
            json={"Instances": [{"InstanceId": "ins-2", "PrivateIpAddress": "127.20.0.2"}]},
        )
        assert posted.status_code == 200
        listed = (await http.get("/_emulator/instances")).json()["Instances"]
    assert listed == [
        {"InstanceId": "ins-1", "PrivateIpAddress": "127.20.0.1"},
        {"InstanceId": "ins-2", "PrivateIpAddress": "127.20.0.2"},
    ]
    await support.done(
        client,
        "RegisterTargets",
        LoadBalancerId=lb_id,
        ListenerId=listener_id,
        Targets=[{"InstanceId": "ins-2", "Port": 30080, "Weight": 20}],
    )
    backends = (await described_targets(client, lb_id))[listener_id]["Targets"]
    assert sorted(
        (b["Type"], b["InstanceId"], b["PrivateIpAddresses"], b["Port"], b["Weight"])
        for b in backends
    ) == [
        ("CVM", "ins-1", ["127.20.0.1"], 30080, 10),
        ("CVM", "ins-2", ["127.20.0.2"], 30080, 20),
    ]
    by_ip = await described_targets(
        client, lb_id, Filters=[{"Name": "private-ip-address", "Values": ["127.20.0.2"]}]
    )
    assert [b["InstanceId"] for b in by_ip[listener_id]["Targets"]] == ["ins-2"]

    await support.done(
        client,
        "ModifyTargetWeight",
        LoadBalancerId=lb_id,
        ListenerId=listener_id,
        Targets=[{"InstanceId": "ins-1", "Port": 30080, "Weight": 1}],
    )
    await support.done(
        client,
        "DeregisterTargets",
        LoadBalancerId=lb_id,
        ListenerId=listener_id,
        Targets=[{"InstanceId": "ins-2", "Port": 30080}],
    )
    backends = (await described_targets(client, lb_id))[listener_id]["Targets"]
    assert [(b["InstanceId"], b["Weight"]) for b in backends] == [("ins-1", 1)]
    await support.expect_error(
        support.api(
            client,
            "RegisterTargets",
            LoadBalancerId=lb_id,
            ListenerId=listener_id,
            Targets=[{"InstanceId": "ins-nothere", "Port": 30080}],
        ),
        "InvalidParameterValue",
        "Targets.0.InstanceId",
    )


async def test_batch_register_is_synchronous_and_reports_partial_failure(
    client: Client,
) -> None:
    lb_id, l7, (root, api) = await http_layer7(client)
    answer = await support.done(
        client, "CreateListener", LoadBalancerId=lb_id, Ports=[1000, 1001], Protocol="TCP"
    )
    good, bad = answer["ListenerIds"]
    request = models.BatchRegisterTargetsRequest()
    request.LoadBalancerId = lb_id
    items: list[models.BatchTarget] = []
    for listener_id, location_id, ip, port in [
        (good, None, "127.17.2.1", 80),
        (good, None, "127.17.2.2", 80),
        (l7, root, "127.17.2.3", 80),
        (l7, api, "127.17.2.4", 80),
        (bad, None, "127.17.2.5", 80),
        (bad, None, "127.30.0.5", 80),  # outside the VPC: the whole of `bad` fails
        ("lbl-nothere", None, "127.17.2.6", 80),
    ]:
        item = models.BatchTarget()
        item.ListenerId, item.EniIp, item.Port = listener_id, ip, port
        if location_id:
            item.LocationId = location_id
        items.append(item)
    items[1].Weight = 40
    request.Targets = items
    response = await client.BatchRegisterTargets(request)
    assert sorted(response.FailListenerIdSet) == sorted([bad, "lbl-nothere"])
    assert "127.30.0.5" in response.Message and "lbl-nothere" in response.Message

    # Synchronous: no task to wait for, the targets are bound when the answer comes.
    listed = await described_targets(client, lb_id)
    assert target_rows(listed[good]) == [("127.17.2.1", 80, 10), ("127.17.2.2", 80, 40)]
    assert target_rows(listed[l7][root]) == [("127.17.2.3", 80, 10)]
    assert target_rows(listed[l7][api]) == [("127.17.2.4", 80, 10)]
    assert listed[bad]["Targets"] == []

    deregister = await support.api(
        client,
        "BatchDeregisterTargets",
        LoadBalancerId=lb_id,
        Targets=[
            {"ListenerId": good, "EniIp": "127.17.2.1", "Port": 80},
            {"ListenerId": l7, "LocationId": api, "EniIp": "127.17.2.4", "Port": 80},
            {"ListenerId": l7, "LocationId": "loc-nothere", "EniIp": "127.17.2.3", "Port": 80},
        ],
    )
    # The unknown rule fails all of l7's part, so 127.17.2.4 stays bound too.
    assert deregister["FailListenerIdSet"] == [l7]
    assert "loc-nothere" in deregister["Message"]
    listed = await described_targets(client, lb_id)
    assert target_rows(listed[good]) == [("127.17.2.2", 80, 40)]
    assert target_rows(listed[l7][api]) == [("127.17.2.4", 80, 10)]
    assert target_rows(listed[l7][root]) == [("127.17.2.3", 80, 10)]

    clean = await support.api(
        client,
        "BatchDeregisterTargets",
        LoadBalancerId=lb_id,
        Targets=[{"ListenerId": l7, "LocationId": api, "EniIp": "127.17.2.4", "Port": 80}],
    )
    assert (clean["FailListenerIdSet"], clean["Message"]) == ([], "")
    assert (await described_targets(client, lb_id))[l7][api]["Targets"] == []


async def test_batch_modify_target_weight_across_listeners_and_rules(client: Client) -> None:
    lb_id, l7, (root, api) = await http_layer7(client)
    l4 = await support.create_listener(client, lb_id, port=9000)
    await support.api(
        client,
        "BatchRegisterTargets",
        LoadBalancerId=lb_id,
        Targets=[
            {"ListenerId": l4, "EniIp": "127.17.3.1", "Port": 80},
            {"ListenerId": l4, "EniIp": "127.17.3.2", "Port": 80},
            {"ListenerId": l7, "LocationId": root, "EniIp": "127.17.3.3", "Port": 80},
            {"ListenerId": l7, "LocationId": api, "EniIp": "127.17.3.4", "Port": 80},
        ],
    )
    request = models.BatchModifyTargetWeightRequest()
    request.LoadBalancerId = lb_id
    entry_l4 = models.RsWeightRule()
    entry_l4.ListenerId = l4
    entry_l4.Weight = 25
    entry_targets = []
    for ip in ("127.17.3.1", "127.17.3.2"):
        target = models.Target()
        target.EniIp, target.Port = ip, 80
        entry_targets.append(target)
    entry_targets[1].Weight = 99
    entry_l4.Targets = entry_targets
    entry_root = models.RsWeightRule()
    entry_root.ListenerId, entry_root.LocationId, entry_root.Weight = l7, root, 3
    root_target = models.Target()
    root_target.EniIp, root_target.Port = "127.17.3.3", 80
    entry_root.Targets = [root_target]
    request.ModifyList = [entry_l4, entry_root]
    response = await client.BatchModifyTargetWeight(request)
    assert (await support.wait_task(client, response.RequestId))["Status"] == 0
    listed = await described_targets(client, lb_id)
    assert target_rows(listed[l4]) == [("127.17.3.1", 80, 25), ("127.17.3.2", 80, 99)]
    assert target_rows(listed[l7][root]) == [("127.17.3.3", 80, 3)]
    assert target_rows(listed[l7][api]) == [("127.17.3.4", 80, 10)]


async def test_describe_targets_filters(client: Client) -> None:
    lb_id, l7, (root, api) = await http_layer7(client)
    answer = await support.done(
        client, "CreateListener", LoadBalancerId=lb_id, Ports=[81, 82], Protocol="TCP"
    )
    a, b = answer["ListenerIds"]
    await support.api(
        client,
        "BatchRegisterTargets",
        LoadBalancerId=lb_id,
        Targets=[
            {"ListenerId": a, "EniIp": "127.17.4.1", "Port": 80},
            {"ListenerId": a, "EniIp": "127.17.4.2", "Port": 80},
            {"ListenerId": b, "EniIp": "127.17.4.1", "Port": 80},
            {"ListenerId": l7, "LocationId": root, "EniIp": "127.17.4.1", "Port": 80},
            {"ListenerId": l7, "LocationId": api, "EniIp": "127.17.4.3", "Port": 80},
        ],
    )
    everything = await described_targets(client, lb_id)
    assert sorted(everything) == sorted([l7, a, b])

    only_b = await described_targets(client, lb_id, ListenerIds=[b])
    assert list(only_b) == [b]
    assert target_rows(only_b[b]) == [("127.17.4.1", 80, 10)]

    by_ip = await described_targets(
        client, lb_id, Filters=[{"Name": "private-ip-address", "Values": ["127.17.4.1"]}]
    )
    assert target_rows(by_ip[a]) == [("127.17.4.1", 80, 10)]
    assert target_rows(by_ip[b]) == [("127.17.4.1", 80, 10)]
    assert target_rows(by_ip[l7][root]) == [("127.17.4.1", 80, 10)]
    assert by_ip[l7][api]["Targets"] == []

    by_location = await described_targets(
        client, lb_id, ListenerIds=[l7], Filters=[{"Name": "location-id", "Values": [api]}]
    )
    assert list(by_location) == [l7]
    assert list(by_location[l7]) == [api]
    assert target_rows(by_location[l7][api]) == [("127.17.4.3", 80, 10)]

    by_protocol = await described_targets(client, lb_id, Protocol="HTTP")
    assert list(by_protocol) == [l7]
    by_port = await described_targets(client, lb_id, Port=82)
    assert list(by_port) == [b]


async def _serve_tcp(host: str) -> tuple[asyncio.Server, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(handle, host, 0)
    return server, server.sockets[0].getsockname()[1]


async def test_describe_target_health_of_several_load_balancers(client: Client) -> None:
    server, port = await _serve_tcp("127.17.5.1")
    try:
        lb_a = await support.create_lb(client, LoadBalancerName="a")
        lb_b = await support.create_lb(client, LoadBalancerName="b")
        listener_a = await support.create_listener(
            client, lb_a, port=80, HealthCheck={"HealthNum": 2, "UnHealthNum": 2}
        )
        listener_off = await support.create_listener(
            client, lb_b, port=80, HealthCheck={"HealthSwitch": 0}
        )
        l7_answer = await support.done(
            client, "CreateListener", LoadBalancerId=lb_b, Ports=[8080], Protocol="HTTP"
        )
        [listener_l7] = l7_answer["ListenerIds"]
        rule = await support.done(
            client,
            "CreateRule",
            LoadBalancerId=lb_b,
            ListenerId=listener_l7,
            Rules=[{"Domain": "x.example.com", "Url": "/", "HealthCheck": {"HealthSwitch": 0}}],
        )
        [root] = rule["LocationIds"]
        await support.done(
            client,
            "RegisterTargets",
            LoadBalancerId=lb_a,
            ListenerId=listener_a,
            Targets=[
                {"EniIp": "127.17.5.1", "Port": port},  # a live server
                {"EniIp": "127.17.5.2", "Port": port},  # nothing listens there
            ],
        )
        await support.done(
            client,
            "RegisterTargets",
            LoadBalancerId=lb_b,
            ListenerId=listener_off,
            Targets=[{"EniIp": "127.17.5.3", "Port": 80}],
        )
        await support.done(
            client,
            "RegisterTargets",
            LoadBalancerId=lb_b,
            ListenerId=listener_l7,
            LocationId=root,
            Targets=[{"EniIp": "127.17.5.4", "Port": 80, "Weight": 7}],
        )

        async def health() -> dict[tuple[str, str, str, int], tuple[bool, str]]:
            answer = await support.api(client, "DescribeTargetHealth", LoadBalancerIds=[lb_a, lb_b])
            out: dict[tuple[str, str, str, int], tuple[bool, str]] = {}
            for lb in answer["LoadBalancers"]:
                for listener in lb["Listeners"]:
                    for r in listener["Rules"]:
                        for t in r["Targets"]:
                            key = (lb["LoadBalancerId"], listener["ListenerId"], t["IP"], t["Port"])
                            out[key] = (t["HealthStatus"], t["HealthStatusDetail"])
            return out

        first = await health()
        assert set(first) == {
            (lb_a, listener_a, "127.17.5.1", port),
            (lb_a, listener_a, "127.17.5.2", port),
            (lb_b, listener_off, "127.17.5.3", 80),
            (lb_b, listener_l7, "127.17.5.4", 80),
        }
        # Health checks switched off: reported healthy at once.
        assert first[(lb_b, listener_off, "127.17.5.3", 80)] == (True, "Close")
        assert first[(lb_b, listener_l7, "127.17.5.4", 80)] == (True, "Close")

        async def settled() -> bool:
            now = await health()
            return now[(lb_a, listener_a, "127.17.5.1", port)] == (True, "Alive") and now[
                (lb_a, listener_a, "127.17.5.2", port)
            ] == (False, "Dead")

        await support.wait_until(settled, timeout=10)

        answer = await support.api(
            client, "DescribeTargetHealth", LoadBalancerIds=[lb_b], LocationIds=[root]
        )
        [lb] = answer["LoadBalancers"]
        assert (lb["LoadBalancerId"], lb["LoadBalancerName"]) == (lb_b, "b")
        rules = [r for listener in lb["Listeners"] for r in listener["Rules"]]
        [only] = rules
        assert (only["LocationId"], only["Domain"], only["Url"]) == (root, "x.example.com", "/")
        assert [(t["IP"], t["Weight"]) for t in only["Targets"]] == [("127.17.5.4", 7)]
    finally:
        server.close()
        await server.wait_closed()


# ===== tasks and quotas ===================================================================


async def test_describe_task_status_goes_from_2_to_0(make_emulator: EmulatorFactory) -> None:
    # Time scale 0.05: a task runs 0.25 wall seconds, ample time to see it running.
    emulator = await make_emulator(time_scale=0.05)
    async with support.async_client(emulator) as clb:
        await _task_lifecycle(clb)


async def _task_lifecycle(clb: Client) -> None:
    lb_id = await support.create_lb(clb)
    listener_id = await support.create_listener(clb, lb_id, port=80)
    request = models.RegisterTargetsRequest()
    request.LoadBalancerId = lb_id
    request.ListenerId = listener_id
    target = models.Target()
    target.EniIp, target.Port = "127.17.0.7", 80
    request.Targets = [target]
    response = await clb.RegisterTargets(request)
    status_request = models.DescribeTaskStatusRequest()
    status_request.TaskId = response.RequestId
    during = await described_targets(clb, lb_id)
    running = await clb.DescribeTaskStatus(status_request)
    assert (running.Status, running.Message) == (2, "")
    # Described before the task was seen still running: not applied yet.
    assert during[listener_id]["Targets"] == []

    async def finished() -> bool:
        return (await clb.DescribeTaskStatus(status_request)).Status != 2

    await support.wait_until(finished, timeout=10)
    final = await clb.DescribeTaskStatus(status_request)
    assert (final.Status, final.Message) == (0, "")
    assert target_rows((await described_targets(clb, lb_id))[listener_id]) == [
        ("127.17.0.7", 80, 10)
    ]


async def test_a_failed_task_reports_1_with_a_message_and_changes_nothing(
    make_emulator: EmulatorFactory,
) -> None:
    emulator = await make_emulator(
        time_scale=0.05,
        faults=(FaultRule(action="RegisterTargets", probability=1.0, kind="taskfail"),),
    )
    async with support.async_client(emulator) as client:
        lb_id = await support.create_lb(client)
        listener_id = await support.create_listener(client, lb_id, port=80)
        answer = await support.api(
            client,
            "RegisterTargets",
            LoadBalancerId=lb_id,
            ListenerId=listener_id,
            Targets=[{"EniIp": "127.17.0.8", "Port": 80}],
        )
        assert (await support.api(client, "DescribeTaskStatus", TaskId=answer["RequestId"]))[
            "Status"
        ] == 2
        status = await support.wait_task(client, answer["RequestId"])
        assert status["Status"] == 1
        assert "RegisterTargets" in status["Message"] and lb_id in status["Message"]
        assert (await described_targets(client, lb_id))[listener_id]["Targets"] == []
        # The CLB is free again once the failed task has ended.
        await support.done(
            client,
            "ModifyListener",
            LoadBalancerId=lb_id,
            ListenerId=listener_id,
            ListenerName="after",
        )


async def test_describe_quota_reports_limits_and_usage(client: Client) -> None:
    await support.create_lb(client)
    await support.create_lb(client, LoadBalancerType="INTERNAL", SubnetId="subnet-1")
    await support.create_lb(client, LoadBalancerType="INTERNAL", SubnetId="subnet-1")
    response = await client.DescribeQuota(models.DescribeQuotaRequest())
    quotas = {q.QuotaId: (q.QuotaCurrent, q.QuotaLimit) for q in response.QuotaSet}
    assert quotas == {
        "TOTAL_OPEN_CLB_QUOTA": (1, 500),
        "TOTAL_INTERNAL_CLB_QUOTA": (2, 500),
        "TOTAL_LISTENER_QUOTA": (None, 50),
        "TOTAL_LISTENER_RULE_QUOTA": (None, 50),
        "TOTAL_TARGET_BIND_QUOTA": (None, 100),
    }


async def test_the_sync_client_drives_the_emulator_too(fast: Emulator, client: Client) -> None:
    sync = support.sync_client(fast)
    lb_id = await support.create_lb(client)
    listener_id = await support.create_listener(client, lb_id, port=80)

    def register() -> str:
        request = models.RegisterTargetsRequest()
        request.from_json_string(
            json.dumps(
                {
                    "LoadBalancerId": lb_id,
                    "ListenerId": listener_id,
                    "Targets": [{"EniIp": "127.17.6.1", "Port": 8080, "Weight": 12}],
                }
            )
        )
        return str(sync.RegisterTargets(request).RequestId)

    task_id = await asyncio.to_thread(register)
    assert (await support.wait_task(client, task_id))["Status"] == 0

    def describe() -> Any:
        request = models.DescribeTargetsRequest()
        request.LoadBalancerId = lb_id
        return sync.DescribeTargets(request)

    described = await asyncio.to_thread(describe)
    [listener] = described.Listeners
    [backend] = listener.Targets
    assert (backend.PrivateIpAddresses, backend.Port, backend.Weight) == (
        ["127.17.6.1"],
        8080,
        12,
    )


async def test_domains_are_case_insensitive_when_naming_a_rule(client: Client) -> None:
    # CreateRule stores domains in lower case (and refuses A.example.com next to
    # a.example.com as a duplicate), so naming a rule by Domain must ignore case too.
    lb_id, listener_id, (root, _api) = await http_layer7(client)
    await support.done(
        client,
        "RegisterTargets",
        LoadBalancerId=lb_id,
        ListenerId=listener_id,
        Domain="A.Example.COM",
        Url="/",
        Targets=[{"EniIp": "127.17.7.1", "Port": 80}],
    )
    rules = (await described_targets(client, lb_id))[listener_id]
    assert target_rows(rules[root]) == [("127.17.7.1", 80, 10)]
    await support.done(
        client,
        "DeleteRule",
        LoadBalancerId=lb_id,
        ListenerId=listener_id,
        Domain="A.EXAMPLE.com",
        Url="/",
    )
    assert root not in (await described_targets(client, lb_id))[listener_id]
