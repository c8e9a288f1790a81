"""Bad input to the Service controller, end to end (issue 7): each mistake gets a Warning Event
with a stable reason and a message that says what to change; whatever can be reconciled still
is; and a healthy Service beside them all is reconciled as usual, never blocked.

One stack for the whole matrix, so the bad Services really sit beside the healthy one. The
emulator runs with small quotas (2 listeners per CLB, 3 targets per listener) so that "more
ports than the listener quota" and "more backends than the target quota" need only a handful
of objects; the controller learns those quotas from the cloud (DescribeQuota).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Service

from tests import support
from tests.e2e.stack import (
    DEADLINE,
    Stack,
    events_for,
    external_ip,
    lb_id_of,
    listeners,
    load_balancers,
    node_instances,
    pod_ips,
    running_stack,
    targets,
    targets_by_listener,
)
from tests.e2e.test_service_modes import deployment, node_ports, service

NS = "default"
DIRECT_ACCESS = "service.cloud.tencent.com/direct-access"
EXISTING_LB_ID = "service.kubernetes.io/tke-existed-lbid"
INTERNAL_SUBNET = "service.kubernetes.io/qcloud-loadbalancer-internal-subnetid"
QUOTAS = {"TOTAL_LISTENER_QUOTA": 2, "TOTAL_TARGET_BIND_QUOTA": 3}


async def warning(stack: Stack, name: str, reason: str, *needles: str) -> Any:
    """Wait for a Warning Event ``reason`` on Service ``name``; its message holds ``needles``."""

    async def found() -> list[Any]:
        return [e for e in await events_for(stack.client, name) if e.reason == reason]

    try:
        await support.wait_until(found, timeout=DEADLINE, interval=0.1)
    except TimeoutError:
        seen = [(e.reason, e.message) for e in await events_for(stack.client, name)]
        raise AssertionError(f"{name}: no {reason} event; events: {seen}") from None
    [event, *_] = await found()
    assert event.type == "Warning", event
    for needle in needles:
        assert needle in event.message, (needle, event.message)
    return event


async def clb_of(stack: Stack, name: str) -> str:
    async def ensured() -> str | None:
        return await lb_id_of(stack.client, name) if await external_ip(stack.client, name) else None

    await support.wait_until(ensured, timeout=DEADLINE, interval=0.1)
    lb_id = await ensured()
    assert lb_id
    return lb_id


async def test_bad_input_matrix_beside_a_healthy_service(tmp_path: Path) -> None:
    async with running_stack(tmp_path, emulator_overrides={"quotas": QUOTAS}) as stack:
        await run_matrix(stack)


async def run_matrix(stack: Stack) -> None:
    # The emulator refuses a subnet its VPC does not have, as Tencent does.
    clb = support.async_client(stack.emulator)
    try:
        await support.expect_error(
            support.api(
                clb, "CreateLoadBalancer", LoadBalancerType="INTERNAL", SubnetId="subnet-x"
            ),
            "InvalidParameterValue",
            "subnet-x",
        )
    finally:
        await clb.close()

    manifests: list[dict[str, Any]] = [
        deployment("web", replicas=2),
        deployment("many", replicas=4, eni=True),
        service("healthy", app="web"),
        service("bad-direct", app="web", annotations={DIRECT_ACCESS: "yes"}),
        service("unknown-lb", app="web", annotations={EXISTING_LB_ID: "lb-404404"}),
        service("empty-subnet", app="web", annotations={INTERNAL_SUBNET: ""}),
        service("unknown-subnet", app="web", annotations={INTERNAL_SUBNET: "subnet-x"}),
        service("internal", app="web", annotations={INTERNAL_SUBNET: "subnet-1"}),
        service("many-ports", app="web", ports=(80, 81, 82)),
        service("many-pods", app="many", annotations={DIRECT_ACCESS: "true"}),
        service("selects-nothing", app="nobody"),
    ]
    sctp = service("sctp", app="web", ports=(80, 90))
    sctp["spec"]["ports"][1]["protocol"] = "SCTP"
    manifests.append(sctp)
    for manifest in manifests:
        kind = Deployment if manifest["kind"] == "Deployment" else Service
        await stack.client.create(kind.from_dict(manifest), namespace=NS)

    # The healthy Service: every node bound, Ensured, and not one Warning.
    port = (await node_ports(stack, "healthy"))[80]
    healthy = await clb_of(stack, "healthy")

    async def all_nodes() -> bool:
        want = {(ins, port) for ins in await node_instances(stack.client)}
        return await targets(stack.emulator, healthy) == want

    await support.wait_until(all_nodes, timeout=DEADLINE, interval=0.1)

    # Non-boolean direct-access: the mode is unknown, so the Service's CLB is left alone
    # (none is made) rather than guessed.
    await warning(stack, "bad-direct", "InvalidDirectAccess", '"yes"', '"true"', '"false"')
    # An existing-LB id that names no CLB.
    await warning(stack, "unknown-lb", "ExistingLoadBalancerNotFound", "lb-404404", EXISTING_LB_ID)
    # An internal-subnet annotation that is empty, or names a subnet the VPC does not have.
    await warning(stack, "empty-subnet", "InvalidInternalSubnet", INTERNAL_SUBNET, "subnet-")
    await warning(stack, "unknown-subnet", "InternalSubnetNotFound", "subnet-x", INTERNAL_SUBNET)
    # ... while a subnet the VPC has gets an INTERNAL CLB in it.
    internal = await clb_of(stack, "internal")
    [lb] = [x for x in await load_balancers(stack.emulator) if x.LoadBalancerId == internal]
    assert (lb.LoadBalancerType, lb.SubnetId) == ("INTERNAL", "subnet-1")

    # SCTP: that port is skipped, the TCP one is reconciled.
    await warning(stack, "sctp", "UnsupportedProtocol", "90/SCTP", "TCP or UDP")
    sctp_lb = await clb_of(stack, "sctp")

    async def sctp_tcp_only() -> bool:
        found = await listeners(stack.emulator, sctp_lb)
        return [(x.Protocol, int(x.Port)) for x in found] == [("TCP", 80)]

    await support.wait_until(sctp_tcp_only, timeout=DEADLINE, interval=0.1)

    # More ports than the listener quota (2): the first two are exposed.
    await warning(stack, "many-ports", "TooManyPorts", "p82/TCP", "at most 2 listeners")
    ports_lb = await clb_of(stack, "many-ports")

    async def two_listeners() -> bool:
        return sorted(int(x.Port) for x in await listeners(stack.emulator, ports_lb)) == [80, 81]

    await support.wait_until(two_listeners, timeout=DEADLINE, interval=0.1)

    # More backends than the target quota (3): three of the four pods are bound.
    await warning(stack, "many-pods", "TooManyBackends", "at most 3", "target quota")
    pods_lb = await clb_of(stack, "many-pods")

    async def three_of_four() -> bool:
        ips = {(ip, 80) for ip in await pod_ips(stack.client, {"app": "many"})}
        bound = await targets(stack.emulator, pods_lb)
        return len(ips) == 4 and len(bound) == 3 and bound <= ips

    await support.wait_until(three_of_four, timeout=DEADLINE, interval=0.1)

    # A Service selecting nothing: its CLB and listener exist, with no backend.
    await warning(stack, "selects-nothing", "NoEndpoints", "spec.selector")
    empty_lb = await clb_of(stack, "selects-nothing")
    assert [int(x.Port) for x in await listeners(stack.emulator, empty_lb)] == [80]
    assert await targets_by_listener(stack.emulator, empty_lb) == []

    # Nothing was made for the Services whose load balancer could not be known or made.
    for name in ("bad-direct", "unknown-lb", "empty-subnet", "unknown-subnet"):
        assert await lb_id_of(stack.client, name) is None, name
        assert await external_ip(stack.client, name) is None, name
    owned = {
        next((t.TagValue for t in lb.Tags or [] if t.TagKey == "directlb.io/service"), "")
        for lb in await load_balancers(stack.emulator)
    }
    assert owned == {
        f"{NS}/{n}"
        for n in ("healthy", "internal", "sctp", "many-ports", "many-pods", "selects-nothing")
    }

    # And the healthy Service never saw a Warning, while everything around it went wrong.
    events = await events_for(stack.client, "healthy")
    assert not [(e.reason, e.message) for e in events if e.type == "Warning"]
    assert any(e.reason == "EnsuredLoadBalancer" for e in events)
    assert await all_nodes()
