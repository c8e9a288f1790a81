from __future__ import annotations

from tencentcloud.clb.v20180317 import clb_client_async

from tests import support


async def test_create_listener_register_and_describe(clb: clb_client_async.ClbClient) -> None:
    lb_id = await support.create_lb(clb)
    listener_id = await support.create_listener(clb, lb_id, port=80)
    await support.done(
        clb,
        "RegisterTargets",
        LoadBalancerId=lb_id,
        ListenerId=listener_id,
        Targets=[{"EniIp": "127.17.0.9", "Port": 8080}],
    )
    described = await support.api(clb, "DescribeTargets", LoadBalancerId=lb_id)
    [listener] = described["Listeners"]
    assert [(t["PrivateIpAddresses"], t["Port"], t["Weight"]) for t in listener["Targets"]] == [
        (["127.17.0.9"], 8080, 10)
    ]
