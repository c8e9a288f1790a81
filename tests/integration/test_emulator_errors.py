"""Every error path: the official code, a message naming the parameter, and no change.

Authentication errors are also checked on the wire, with requests signed here (TC3-HMAC-SHA256)
rather than by the SDK, so that the timestamp, the key and the headers can be chosen freely.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from tencentcloud.clb.v20180317 import clb_client_async, models
from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import (
    TencentCloudSDKException,
)

from directlb.emulator.auth import tc3_signature
from directlb.emulator.server import Emulator
from tests import support
from tests.conftest import EmulatorFactory

Client = clb_client_async.ClbClient


@dataclass
class World:
    """A CLB with a layer-4 and a layer-7 listener, each with a target, and its snapshot."""

    lb_id: str
    l4: str
    l7: str
    location_id: str
    before: dict[str, Any]


async def snapshot(client: Client, lb_id: str) -> dict[str, Any]:
    lbs = await support.api(client, "DescribeLoadBalancers")
    listeners = await support.api(client, "DescribeListeners", LoadBalancerId=lb_id)
    targets = await support.api(client, "DescribeTargets", LoadBalancerId=lb_id)
    return {
        "lbs": lbs["LoadBalancerSet"],
        "listeners": listeners["Listeners"],
        "targets": targets["Listeners"],
    }


@pytest.fixture
async def world(client: Client) -> World:
    lb_id = await support.create_lb(client)
    l4 = await support.create_listener(client, lb_id, port=80)
    l7 = await support.create_listener(client, lb_id, port=8080, protocol="HTTP")
    rules = await support.done(
        client,
        "CreateRule",
        LoadBalancerId=lb_id,
        ListenerId=l7,
        Rules=[{"Domain": "a.example.com", "Url": "/"}],
    )
    [location_id] = rules["LocationIds"]
    await support.done(
        client,
        "RegisterTargets",
        LoadBalancerId=lb_id,
        ListenerId=l4,
        Targets=[{"EniIp": "127.17.0.1", "Port": 80}],
    )
    await support.done(
        client,
        "RegisterTargets",
        LoadBalancerId=lb_id,
        ListenerId=l7,
        LocationId=location_id,
        Targets=[{"EniIp": "127.17.0.2", "Port": 80}],
    )
    return World(lb_id, l4, l7, location_id, await snapshot(client, lb_id))


async def unchanged(client: Client, world: World) -> None:
    assert await snapshot(client, world.lb_id) == world.before


# ===== the wire: signing our own requests =================================================


def signed_request(
    emulator: Emulator,
    *,
    action: str,
    params: dict[str, Any] | None = None,
    body: bytes | None = None,
    secret_id: str = support.SECRET_ID,
    secret_key: str = support.SECRET_KEY,
    timestamp: int | None = None,
    version: str = "2018-03-17",
    region: str = support.REGION,
    content_type: str = "application/json",
) -> tuple[dict[str, str], bytes]:
    """Headers and body of a POST / that a TC3-HMAC-SHA256 client would send."""
    payload = body if body is not None else json.dumps(params or {}).encode()
    stamp = int(time.time()) if timestamp is None else timestamp
    date = datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d")
    signed = {"content-type": content_type, "host": emulator.endpoint}
    signature = tc3_signature(
        secret_key=secret_key,
        method="POST",
        path="/",
        query="",
        headers=signed,
        signed_headers=["content-type", "host"],
        payload=payload,
        timestamp=stamp,
        date=date,
        service="clb",
    )
    headers = {
        "Content-Type": content_type,
        "Host": emulator.endpoint,
        "X-TC-Timestamp": str(stamp),
        "X-TC-Version": version,
        "X-TC-Region": region,
        "Authorization": f"TC3-HMAC-SHA256 Credential={secret_id}/{date}/clb/tc3_request, "
        f"SignedHeaders=content-type;host, Signature={signature}",
    }
    if action:
        headers["X-TC-Action"] = action
    return headers, payload


async def post(emulator: Emulator, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """POST / and check the envelope every answer has; return ``Response``."""
    async with httpx.AsyncClient() as http:
        answer = await http.post(f"http://{emulator.endpoint}/", headers=headers, content=body)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/json"
    document = answer.json()
    assert list(document) == ["Response"]
    response: dict[str, Any] = document["Response"]
    assert isinstance(response["RequestId"], str) and len(response["RequestId"]) == 36
    return response


def wire_error(response: dict[str, Any]) -> tuple[str, str]:
    assert set(response) == {"Error", "RequestId"}
    assert set(response["Error"]) == {"Code", "Message"}
    return response["Error"]["Code"], response["Error"]["Message"]


async def test_a_request_signed_here_succeeds(fast: Emulator) -> None:
    headers, body = signed_request(fast, action="DescribeQuota")
    response = await post(fast, headers, body)
    assert "Error" not in response
    assert {q["QuotaId"] for q in response["QuotaSet"]} >= {"TOTAL_LISTENER_QUOTA"}


async def test_wrong_secret_key_is_signature_failure(fast: Emulator, client: Client) -> None:
    headers, body = signed_request(fast, action="DescribeQuota", secret_key="not-the-key")
    code, message = wire_error(await post(fast, headers, body))
    assert code == "AuthFailure.SignatureFailure"
    assert "signature" in message
    async with support.async_client(fast, secret_key="not-the-key") as wrong:
        await support.expect_error(
            support.api(wrong, "CreateLoadBalancer", LoadBalancerType="OPEN"),
            "AuthFailure.SignatureFailure",
        )
    # The sync client sees the same.
    sync = support.sync_client(fast, secret_key="not-the-key")
    with pytest.raises(TencentCloudSDKException) as info:
        await asyncio.to_thread(sync.DescribeLoadBalancers, models.DescribeLoadBalancersRequest())
    assert info.value.code == "AuthFailure.SignatureFailure"
    # Nothing was created by the refused CreateLoadBalancer.
    assert (await support.api(client, "DescribeLoadBalancers"))["TotalCount"] == 0


async def test_a_body_changed_after_signing_is_signature_failure(fast: Emulator) -> None:
    headers, _ = signed_request(fast, action="DescribeLoadBalancers", params={"Limit": 1})
    code, _message = wire_error(await post(fast, headers, b'{"Limit": 2}'))
    assert code == "AuthFailure.SignatureFailure"


async def test_unknown_secret_id_is_secret_id_not_found(fast: Emulator) -> None:
    headers, body = signed_request(fast, action="DescribeQuota", secret_id="AKIDnobody")
    code, message = wire_error(await post(fast, headers, body))
    assert (code, message) == ("AuthFailure.SecretIdNotFound", "The SecretId is not found.")
    async with support.async_client(fast, secret_id="AKIDnobody") as stranger:
        await support.expect_error(
            support.api(stranger, "DescribeQuota"), "AuthFailure.SecretIdNotFound"
        )


# 302, not 301: int() truncation and the time to the server may eat most of a second.
@pytest.mark.parametrize("skew", [-600, -302, 302, 3600])
async def test_timestamp_more_than_5_minutes_off_is_signature_expire(
    fast: Emulator, skew: int
) -> None:
    headers, body = signed_request(fast, action="DescribeQuota", timestamp=int(time.time()) + skew)
    code, message = wire_error(await post(fast, headers, body))
    assert code == "AuthFailure.SignatureExpire"
    assert "X-TC-Timestamp" in message


async def test_timestamp_within_5_minutes_is_accepted(fast: Emulator) -> None:
    for skew in (-240, 240):
        headers, body = signed_request(
            fast, action="DescribeQuota", timestamp=int(time.time()) + skew
        )
        assert "Error" not in await post(fast, headers, body)


async def test_wrong_region(fast: Emulator) -> None:
    headers, body = signed_request(fast, action="DescribeQuota", region="ap-shanghai")
    code, message = wire_error(await post(fast, headers, body))
    assert code == "InvalidParameter.RegionNotFound"
    assert "ap-shanghai" in message and support.REGION in message
    shanghai = clb_client_async.ClbClient(
        credential.Credential(support.SECRET_ID, support.SECRET_KEY),
        "ap-shanghai",
        support.profile(fast.endpoint),
    )
    async with shanghai:
        await support.expect_error(
            support.api(shanghai, "DescribeLoadBalancers"),
            "InvalidParameter.RegionNotFound",
            "ap-shanghai",
        )


async def test_wrong_version(fast: Emulator) -> None:
    headers, body = signed_request(fast, action="DescribeQuota", version="2017-03-20")
    code, message = wire_error(await post(fast, headers, body))
    assert code == "NoSuchVersion"
    assert "2017-03-20" in message and "2018-03-17" in message


async def test_missing_action_header(fast: Emulator) -> None:
    headers, body = signed_request(fast, action="")
    code, message = wire_error(await post(fast, headers, body))
    assert code == "MissingParameter"
    assert "X-TC-Action" in message


async def test_unknown_action_is_invalid_action(fast: Emulator, client: Client) -> None:
    headers, body = signed_request(fast, action="DescribeEverything")
    code, message = wire_error(await post(fast, headers, body))
    assert code == "InvalidAction"
    assert "DescribeEverything" in message
    await support.expect_error(
        support.api(client, "CreateLoadBalancers", LoadBalancerType="OPEN"),
        "InvalidAction",
        "CreateLoadBalancers",
    )


async def test_body_that_is_not_json_is_a_format_error(fast: Emulator) -> None:
    headers, body = signed_request(fast, action="DescribeLoadBalancers", body=b"{not json")
    code, _message = wire_error(await post(fast, headers, body))
    assert code == "InvalidParameter.FormatError"
    headers, body = signed_request(fast, action="DescribeLoadBalancers", body=b"[1, 2]")
    code, _message = wire_error(await post(fast, headers, body))
    assert code == "InvalidParameter.FormatError"


async def test_a_body_that_is_not_json_content_type_is_refused(fast: Emulator) -> None:
    headers, body = signed_request(
        fast, action="DescribeLoadBalancers", content_type="application/x-www-form-urlencoded"
    )
    code, message = wire_error(await post(fast, headers, body))
    assert code == "InvalidParameter"
    assert "Content-Type" in message


async def test_error_answers_are_http_200_json_on_the_wire_for_api_errors(
    fast: Emulator, world: World, client: Client
) -> None:
    headers, body = signed_request(
        fast,
        action="RegisterTargets",
        params={
            "LoadBalancerId": world.lb_id,
            "ListenerId": world.l4,
            "Targets": [{"EniIp": "127.30.0.5", "Port": 80}],
        },
    )
    code, message = wire_error(await post(fast, headers, body))
    assert code == "InvalidParameterValue"
    assert "Targets.0.EniIp" in message
    await unchanged(client, world)


# ===== MissingParameter and InvalidParameter ==============================================


async def test_missing_parameters_are_named(client: Client, world: World) -> None:
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("CreateLoadBalancer", {}, "`LoadBalancerType`"),
        ("CreateListener", {"LoadBalancerId": world.lb_id, "Ports": [81]}, "`Protocol`"),
        ("CreateListener", {"LoadBalancerId": world.lb_id, "Protocol": "TCP"}, "`Ports`"),
        (
            "CreateListener",
            {"LoadBalancerId": world.lb_id, "Protocol": "TCP", "Ports": []},
            "`Ports`",
        ),
        ("RegisterTargets", {"LoadBalancerId": world.lb_id, "ListenerId": world.l4}, "`Targets`"),
        (
            "RegisterTargets",
            {
                "LoadBalancerId": world.lb_id,
                "ListenerId": world.l4,
                "Targets": [{"EniIp": "127.17.0.3"}],
            },
            "`Targets.0.Port`",
        ),
        ("RegisterTargets", {"ListenerId": world.l4, "Targets": []}, "`LoadBalancerId`"),
        (
            "RegisterTargets",
            {
                "LoadBalancerId": world.lb_id,
                "ListenerId": world.l7,
                "Targets": [{"EniIp": "127.17.0.3", "Port": 80}],
            },
            "LocationId",
        ),
        (
            "CreateRule",
            {"LoadBalancerId": world.lb_id, "ListenerId": world.l7, "Rules": [{"Url": "/x"}]},
            "`Rules.0.Domain`",
        ),
        (
            "BatchRegisterTargets",
            {"LoadBalancerId": world.lb_id, "Targets": [{"EniIp": "127.17.0.3", "Port": 80}]},
            "`Targets.0.ListenerId`",
        ),
        (
            "CreateListener",
            {"LoadBalancerId": world.lb_id, "Protocol": "HTTPS", "Ports": [443]},
            "Certificate",
        ),
        ("DescribeTaskStatus", {}, "TaskId"),
        ("DescribeTargetHealth", {}, "`LoadBalancerIds`"),
        ("DeleteLoadBalancer", {}, "`LoadBalancerIds`"),
    ]
    for action, params, needle in cases:
        await support.expect_error(
            support.api(client, action, **params), "MissingParameter", needle
        )
    await unchanged(client, world)


async def test_wrong_types_are_invalid_parameter(client: Client, world: World) -> None:
    cases: list[tuple[str, dict[str, Any], str]] = [
        (
            "CreateListener",
            {"LoadBalancerId": world.lb_id, "Protocol": "TCP", "Ports": 81},
            "`Ports`",
        ),
        (
            "CreateListener",
            {"LoadBalancerId": world.lb_id, "Protocol": "TCP", "Ports": ["81"]},
            "`Ports.0`",
        ),
        ("DescribeListeners", {"LoadBalancerId": 12}, "`LoadBalancerId`"),
        (
            "RegisterTargets",
            {
                "LoadBalancerId": world.lb_id,
                "ListenerId": world.l4,
                "Targets": [{"EniIp": "127.17.0.3", "Port": "80"}],
            },
            "`Targets.0.Port`",
        ),
        (
            "RegisterTargets",
            {
                "LoadBalancerId": world.lb_id,
                "ListenerId": world.l4,
                "Targets": [{"EniIp": "127.17.0.3", "Port": 80, "Weight": True}],
            },
            "`Targets.0.Weight`",
        ),
        (
            "CreateRule",
            {
                "LoadBalancerId": world.lb_id,
                "ListenerId": world.l7,
                "Rules": [{"Domain": "b.example.com", "Url": "/", "Http2": "yes"}],
            },
            "`Rules.0.Http2`",
        ),
        (
            "ModifyListener",
            {
                "LoadBalancerId": world.lb_id,
                "ListenerId": world.l4,
                "HealthCheck": {"TimeOut": 2.5},
            },
            "`HealthCheck.TimeOut`",
        ),
    ]
    for action, params, needle in cases:
        await support.expect_error(
            support.api(client, action, **params), "InvalidParameter", needle
        )
    await unchanged(client, world)


@pytest.mark.parametrize(
    "target",
    [
        {"Port": 80},
        {"Port": 80, "EniIp": "127.17.0.3", "InstanceId": "ins-1"},
        {"Port": 80, "EniIp": "", "InstanceId": ""},
    ],
    ids=["neither", "both", "both-empty"],
)
async def test_exactly_one_of_eni_ip_and_instance_id(
    client: Client, world: World, target: dict[str, Any]
) -> None:
    for action in ("RegisterTargets", "DeregisterTargets", "ModifyTargetWeight"):
        await support.expect_error(
            support.api(
                client,
                action,
                LoadBalancerId=world.lb_id,
                ListenerId=world.l4,
                Weight=5,
                Targets=[{"EniIp": "127.17.0.1", "Port": 80}, target],
            ),
            "InvalidParameter",
            "`Targets.1.EniIp`",
            "InstanceId",
        )
    await unchanged(client, world)


async def test_layer_mismatches_are_refused(client: Client, world: World) -> None:
    await support.expect_error(
        support.api(
            client,
            "RegisterTargets",
            LoadBalancerId=world.lb_id,
            ListenerId=world.l4,
            LocationId=world.location_id,
            Targets=[{"EniIp": "127.17.0.3", "Port": 80}],
        ),
        "InvalidParameter",
        "LocationId",
        world.l4,
    )
    await support.expect_error(
        support.api(
            client,
            "CreateRule",
            LoadBalancerId=world.lb_id,
            ListenerId=world.l4,
            Rules=[{"Domain": "b.example.com", "Url": "/"}],
        ),
        "InvalidParameter.ProtocolCheckFailed",
        world.l4,
    )
    await support.expect_error(
        support.api(
            client,
            "ModifyDomainAttributes",
            LoadBalancerId=world.lb_id,
            ListenerId=world.l4,
            Domain="b.example.com",
            DefaultServer=True,
        ),
        "InvalidParameter.ProtocolCheckFailed",
        "domains need an HTTP or HTTPS listener",
    )
    for key, value in (("Scheduler", "WRR"), ("SessionExpireTime", 60), ("HealthCheck", {})):
        await support.expect_error(
            support.api(
                client,
                "CreateListener",
                LoadBalancerId=world.lb_id,
                Ports=[9090],
                Protocol="HTTP",
                **{key: value},
            ),
            "InvalidParameter",
            f"`{key}`",
        )
        await support.expect_error(
            support.api(
                client,
                "ModifyListener",
                LoadBalancerId=world.lb_id,
                ListenerId=world.l7,
                **{key: value},
            ),
            "InvalidParameter",
            f"`{key}`",
        )
    await support.expect_error(
        support.api(
            client,
            "ModifyListener",
            LoadBalancerId=world.lb_id,
            ListenerId=world.l4,
            Certificate={"CertId": "cert-1"},
        ),
        "InvalidParameter",
        "`Certificate`",
    )
    await unchanged(client, world)


async def test_weight_change_of_a_target_not_bound(client: Client, world: World) -> None:
    await support.expect_error(
        support.api(
            client,
            "ModifyTargetWeight",
            LoadBalancerId=world.lb_id,
            ListenerId=world.l4,
            Weight=5,
            Targets=[{"EniIp": "127.17.0.1", "Port": 80}, {"EniIp": "127.17.0.99", "Port": 80}],
        ),
        "InvalidParameter",
        "127.17.0.99:80",
        world.l4,
    )
    await support.expect_error(
        support.api(
            client,
            "ModifyTargetWeight",
            LoadBalancerId=world.lb_id,
            ListenerId=world.l4,
            Targets=[{"EniIp": "127.17.0.1", "Port": 80}],
        ),
        "MissingParameter",
        "Weight",
    )
    await unchanged(client, world)


async def test_unknown_filters(client: Client, world: World) -> None:
    await support.expect_error(
        support.api(
            client, "DescribeLoadBalancers", Filters=[{"Name": "colour", "Values": ["red"]}]
        ),
        "InvalidParameter.InvalidFilter",
        "colour",
    )
    await support.expect_error(
        support.api(
            client,
            "DescribeTargets",
            LoadBalancerId=world.lb_id,
            Filters=[{"Name": "instance-name", "Values": ["x"]}],
        ),
        "InvalidParameter.InvalidFilter",
        "instance-name",
    )


# ===== InvalidParameterValue ==============================================================


async def test_eni_ip_outside_the_vpc_is_refused(client: Client, world: World) -> None:
    # 127.30/16 is the cluster CIDR of non-ENI pods: the VPC cannot route to it.
    for action in ("RegisterTargets", "DeregisterTargets"):
        await support.expect_error(
            support.api(
                client,
                action,
                LoadBalancerId=world.lb_id,
                ListenerId=world.l4,
                Targets=[{"EniIp": "127.17.0.4", "Port": 80}, {"EniIp": "127.30.0.5", "Port": 80}],
            ),
            "InvalidParameterValue",
            "`Targets.1.EniIp`",
            "127.30.0.5",
            "vpc-directlb",
        )
    await support.expect_error(
        support.api(
            client,
            "RegisterTargets",
            LoadBalancerId=world.lb_id,
            ListenerId=world.l4,
            Targets=[{"EniIp": "not-an-ip", "Port": 80}],
        ),
        "InvalidParameterValue",
        "`Targets.0.EniIp`",
        "not-an-ip",
    )
    await unchanged(client, world)


async def test_vpc_cidrs_are_configurable(make_emulator: EmulatorFactory) -> None:
    emulator = await make_emulator(vpc_cidrs=("127.30.0.0/16",))
    async with support.async_client(emulator) as client:
        lb_id = await support.create_lb(client)
        listener_id = await support.create_listener(client, lb_id, port=80)
        await support.done(
            client,
            "RegisterTargets",
            LoadBalancerId=lb_id,
            ListenerId=listener_id,
            Targets=[{"EniIp": "127.30.0.5", "Port": 80}],
        )
        await support.expect_error(
            support.api(
                client,
                "RegisterTargets",
                LoadBalancerId=lb_id,
                ListenerId=listener_id,
                Targets=[{"EniIp": "127.17.0.5", "Port": 80}],
            ),
            "InvalidParameterValue",
            "127.17.0.5",
        )


async def test_bad_domains_and_urls(client: Client, world: World) -> None:
    for domain in ("bad domain", "-x.example.com", "a..example.com", "exa_mple.com"):
        await support.expect_error(
            support.api(
                client,
                "CreateRule",
                LoadBalancerId=world.lb_id,
                ListenerId=world.l7,
                Rules=[{"Domain": "ok.example.com", "Url": "/"}, {"Domain": domain, "Url": "/"}],
            ),
            "InvalidParameterValue",
            "`Rules.1.Domain`",
        )
    await support.expect_error(
        support.api(
            client,
            "CreateRule",
            LoadBalancerId=world.lb_id,
            ListenerId=world.l7,
            Rules=[{"Domain": "ok.example.com", "Url": "api"}],
        ),
        "InvalidParameterValue",
        "`Rules.0.Url`",
    )
    await support.expect_error(
        support.api(
            client,
            "CreateRule",
            LoadBalancerId=world.lb_id,
            ListenerId=world.l7,
            Rules=[{"Domain": "ok.example.com", "Url": "/", "Scheduler": "RANDOM"}],
        ),
        "InvalidParameterValue",
        "`Rules.0.Scheduler`",
    )
    await unchanged(client, world)


async def test_health_check_timeout_must_be_less_than_interval(
    client: Client, world: World
) -> None:
    for check in ({"TimeOut": 5, "IntervalTime": 5}, {"TimeOut": 10}):
        await support.expect_error(
            support.api(
                client,
                "CreateListener",
                LoadBalancerId=world.lb_id,
                Ports=[90],
                Protocol="TCP",
                HealthCheck=check,
            ),
            "InvalidParameterValue",
            "`HealthCheck.TimeOut`",
            "IntervalTime",
        )
    # Against the values already set: the listener's interval is 5 (the default).
    await support.expect_error(
        support.api(
            client,
            "ModifyListener",
            LoadBalancerId=world.lb_id,
            ListenerId=world.l4,
            HealthCheck={"TimeOut": 6},
        ),
        "InvalidParameterValue",
        "`HealthCheck.TimeOut`",
    )
    await support.expect_error(
        support.api(
            client,
            "ModifyRule",
            LoadBalancerId=world.lb_id,
            ListenerId=world.l7,
            LocationId=world.location_id,
            HealthCheck={"IntervalTime": 2},
        ),
        "InvalidParameterValue",
        "`HealthCheck.TimeOut`",
    )
    await support.expect_error(
        support.api(
            client,
            "ModifyRule",
            LoadBalancerId=world.lb_id,
            ListenerId=world.l7,
            LocationId=world.location_id,
            HealthCheck={"HttpCheckPath": "healthz"},
        ),
        "InvalidParameterValue",
        "`HealthCheck.HttpCheckPath`",
    )
    await unchanged(client, world)


async def test_values_out_of_range(client: Client, world: World) -> None:
    target_call = {"LoadBalancerId": world.lb_id, "ListenerId": world.l4}
    cases: list[tuple[str, dict[str, Any], str]] = [
        (
            "RegisterTargets",
            target_call | {"Targets": [{"EniIp": "127.17.0.3", "Port": 80, "Weight": 101}]},
            "`Targets.0.Weight`",
        ),
        (
            "RegisterTargets",
            target_call | {"Targets": [{"EniIp": "127.17.0.3", "Port": 0}]},
            "`Targets.0.Port`",
        ),
        (
            "RegisterTargets",
            target_call | {"Targets": [{"EniIp": "127.17.0.3", "Port": 65536}]},
            "`Targets.0.Port`",
        ),
        (
            "ModifyTargetWeight",
            target_call | {"Weight": -1, "Targets": [{"EniIp": "127.17.0.1", "Port": 80}]},
            "`Weight`",
        ),
        (
            "CreateListener",
            {"LoadBalancerId": world.lb_id, "Protocol": "TCP", "Ports": [81, 70000]},
            "`Ports.1`",
        ),
        (
            "CreateListener",
            {
                "LoadBalancerId": world.lb_id,
                "Protocol": "TCP",
                "Ports": [81],
                "SessionExpireTime": 10,
            },
            "`SessionExpireTime`",
        ),
        (
            "CreateListener",
            {
                "LoadBalancerId": world.lb_id,
                "Protocol": "TCP",
                "Ports": [81],
                "SessionExpireTime": 3601,
            },
            "`SessionExpireTime`",
        ),
        (
            "CreateListener",
            {
                "LoadBalancerId": world.lb_id,
                "Protocol": "TCP",
                "Ports": [81],
                "HealthCheck": {"IntervalTime": 1},
            },
            "`HealthCheck.IntervalTime`",
        ),
        (
            "CreateListener",
            {
                "LoadBalancerId": world.lb_id,
                "Protocol": "TCP",
                "Ports": [81],
                "HealthCheck": {"HealthNum": 11},
            },
            "`HealthCheck.HealthNum`",
        ),
        ("CreateLoadBalancer", {"LoadBalancerType": "OPEN", "Number": 21}, "`Number`"),
        ("DescribeLoadBalancers", {"Limit": 101}, "`Limit`"),
        ("DescribeLoadBalancers", {"Offset": -1}, "`Offset`"),
    ]
    for action, params, needle in cases:
        await support.expect_error(
            support.api(client, action, **params), "InvalidParameterValue.Range", needle
        )
    await unchanged(client, world)


async def test_bad_choices_are_invalid_parameter_value(client: Client, world: World) -> None:
    await support.expect_error(
        support.api(client, "CreateLoadBalancer", LoadBalancerType="PUBLIC"),
        "InvalidParameterValue",
        "`LoadBalancerType`",
        "PUBLIC",
    )
    await support.expect_error(
        support.api(
            client, "CreateListener", LoadBalancerId=world.lb_id, Ports=[81], Protocol="SCTP"
        ),
        "InvalidParameterValue",
        "`Protocol`",
    )
    await support.expect_error(
        support.api(client, "CreateLoadBalancer", LoadBalancerType="OPEN", VpcId="vpc-other"),
        "InvalidParameterValue",
        "`VpcId`",
    )
    await unchanged(client, world)


# ===== InvalidParameterValue.Duplicate and PortCheckFailed ================================


async def test_duplicate_targets_in_one_call(client: Client, world: World) -> None:
    twice = [
        {"EniIp": "127.17.0.5", "Port": 80},
        {"EniIp": "127.17.0.6", "Port": 80},
        {"EniIp": "127.17.0.5", "Port": 80, "Weight": 3},
    ]
    for action in ("RegisterTargets", "DeregisterTargets"):
        await support.expect_error(
            support.api(
                client, action, LoadBalancerId=world.lb_id, ListenerId=world.l4, Targets=twice
            ),
            "InvalidParameterValue.Duplicate",
            "`Targets.2.Port`",
            "127.17.0.5:80",
        )
    # Same address on another port is another target.
    await support.done(
        client,
        "RegisterTargets",
        LoadBalancerId=world.lb_id,
        ListenerId=world.l4,
        Targets=[{"EniIp": "127.17.0.1", "Port": 81}],
    )
    described = await support.api(
        client, "DescribeTargets", LoadBalancerId=world.lb_id, ListenerIds=[world.l4]
    )
    assert sorted(t["Port"] for t in described["Listeners"][0]["Targets"]) == [80, 81]


async def test_duplicate_rules(client: Client, world: World) -> None:
    # Against an existing rule (domains are case-insensitive), and within one call.
    for rules in (
        [{"Domain": "b.example.com", "Url": "/"}, {"Domain": "A.example.com", "Url": "/"}],
        [{"Domain": "b.example.com", "Url": "/x"}, {"Domain": "b.example.com", "Url": "/x"}],
    ):
        await support.expect_error(
            support.api(
                client,
                "CreateRule",
                LoadBalancerId=world.lb_id,
                ListenerId=world.l7,
                Rules=rules,
            ),
            "InvalidParameterValue.Duplicate",
            "`Rules.1.Url`",
        )
    await unchanged(client, world)
    second = await support.done(
        client,
        "CreateRule",
        LoadBalancerId=world.lb_id,
        ListenerId=world.l7,
        Rules=[{"Domain": "a.example.com", "Url": "/api"}],
    )
    [api] = second["LocationIds"]
    before = await snapshot(client, world.lb_id)
    await support.expect_error(
        support.api(
            client,
            "ModifyRule",
            LoadBalancerId=world.lb_id,
            ListenerId=world.l7,
            LocationId=api,
            Url="/",
        ),
        "InvalidParameterValue.Duplicate",
        "`Url`",
        "a.example.com/",
    )
    assert await snapshot(client, world.lb_id) == before


async def test_duplicate_ports_and_ports_in_use(client: Client, world: World) -> None:
    await support.expect_error(
        support.api(
            client, "CreateListener", LoadBalancerId=world.lb_id, Ports=[81, 81], Protocol="TCP"
        ),
        "InvalidParameterValue.Duplicate",
        "`Ports`",
    )
    # TCP, HTTP and HTTPS share one port space; port 80 is taken by the TCP listener.
    for protocol in ("TCP", "HTTP"):
        await support.expect_error(
            support.api(
                client,
                "CreateListener",
                LoadBalancerId=world.lb_id,
                Ports=[81, 80],
                Protocol=protocol,
            ),
            "InvalidParameter.PortCheckFailed",
            "80",
            world.l4,
        )
    await support.expect_error(
        support.api(
            client, "CreateListener", LoadBalancerId=world.lb_id, Ports=[8080], Protocol="TCP"
        ),
        "InvalidParameter.PortCheckFailed",
        world.l7,
    )
    await unchanged(client, world)
    # UDP has a port space of its own.
    await support.create_listener(client, world.lb_id, port=80, protocol="UDP")


# ===== not found ==========================================================================


async def test_unknown_load_balancer(client: Client, world: World) -> None:
    cases: list[tuple[str, dict[str, Any]]] = [
        ("DescribeListeners", {"LoadBalancerId": "lb-nothere"}),
        ("DescribeTargets", {"LoadBalancerId": "lb-nothere"}),
        ("CreateListener", {"LoadBalancerId": "lb-nothere", "Ports": [80], "Protocol": "TCP"}),
        (
            "RegisterTargets",
            {
                "LoadBalancerId": "lb-nothere",
                "ListenerId": world.l4,
                "Targets": [{"EniIp": "127.17.0.3", "Port": 80}],
            },
        ),
        ("DeleteLoadBalancer", {"LoadBalancerIds": [world.lb_id, "lb-nothere"]}),
        ("DescribeTargetHealth", {"LoadBalancerIds": [world.lb_id, "lb-nothere"]}),
    ]
    for action, params in cases:
        await support.expect_error(
            support.api(client, action, **params), "InvalidParameter.LBIdNotFound", "lb-nothere"
        )
    await unchanged(client, world)


async def test_unknown_listener(client: Client, world: World) -> None:
    cases: list[tuple[str, dict[str, Any]]] = [
        (
            "RegisterTargets",
            {
                "LoadBalancerId": world.lb_id,
                "ListenerId": "lbl-nothere",
                "Targets": [{"EniIp": "127.17.0.3", "Port": 80}],
            },
        ),
        ("ModifyListener", {"LoadBalancerId": world.lb_id, "ListenerId": "lbl-nothere"}),
        ("DeleteListener", {"LoadBalancerId": world.lb_id, "ListenerId": "lbl-nothere"}),
        (
            "DeleteLoadBalancerListeners",
            {"LoadBalancerId": world.lb_id, "ListenerIds": [world.l4, "lbl-nothere"]},
        ),
        ("DescribeTargets", {"LoadBalancerId": world.lb_id, "ListenerIds": ["lbl-nothere"]}),
        (
            "BatchModifyTargetWeight",
            {
                "LoadBalancerId": world.lb_id,
                "ModifyList": [
                    {
                        "ListenerId": "lbl-nothere",
                        "Weight": 1,
                        "Targets": [{"EniIp": "127.17.0.1", "Port": 80}],
                    }
                ],
            },
        ),
    ]
    for action, params in cases:
        await support.expect_error(
            support.api(client, action, **params),
            "InvalidParameter.ListenerIdNotFound",
            "lbl-nothere",
        )
    await unchanged(client, world)


async def test_unknown_rule(client: Client, world: World) -> None:
    targets = [{"EniIp": "127.17.0.3", "Port": 80}]
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("RegisterTargets", {"LocationId": "loc-nothere", "Targets": targets}, "loc-nothere"),
        (
            "RegisterTargets",
            {"Domain": "a.example.com", "Url": "/nothere", "Targets": targets},
            "a.example.com/nothere",
        ),
        (
            "DeregisterTargets",
            {"Domain": "z.example.com", "Url": "/", "Targets": targets},
            "z.example.com/",
        ),
        ("ModifyRule", {"LocationId": "loc-nothere", "Url": "/x"}, "loc-nothere"),
        ("DeleteRule", {"LocationIds": [world.location_id, "loc-nothere"]}, "loc-nothere"),
        ("DeleteRule", {"Domain": "a.example.com", "Url": "/nothere"}, "a.example.com/nothere"),
    ]
    for action, params, needle in cases:
        await support.expect_error(
            support.api(client, action, LoadBalancerId=world.lb_id, ListenerId=world.l7, **params),
            "InvalidParameter.LocationNotFound",
            needle,
            world.l7,
        )
    await unchanged(client, world)


async def test_unknown_task_is_resource_not_found(client: Client) -> None:
    await support.expect_error(
        support.api(client, "DescribeTaskStatus", TaskId="00000000-0000-4000-8000-000000000000"),
        "ResourceNotFound",
        "00000000-0000-4000-8000-000000000000",
    )
    await support.expect_error(
        support.api(client, "DescribeTaskStatus", DealName="20260000000000000000"),
        "ResourceNotFound",
        "20260000000000000000",
    )


async def test_limit_exceeded_changes_nothing(client: Client, world: World) -> None:
    await support.expect_error(
        support.api(
            client,
            "RegisterTargets",
            LoadBalancerId=world.lb_id,
            ListenerId=world.l4,
            Targets=[{"EniIp": f"127.17.1.{i}", "Port": 80} for i in range(1, 22)],
        ),
        "LimitExceeded",
        "`Targets`",
        "21",
        "20",
    )
    await unchanged(client, world)
