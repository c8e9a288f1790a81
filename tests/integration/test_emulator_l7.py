"""Layer 7 on the emulator, through the official SDK and through our adapter: SNI listeners with
a certificate per domain, the default domain, ModifyDomainAttributes, the certificate registry,
and the routing of the data plane (``=``, ``^~``, regexes, prefixes, the default domain)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from tencentcloud.common.exception.tencent_cloud_sdk_exception import (
    TencentCloudSDKException,
)

from directlb.cloud import DesiredLoadBalancer, LoadBalancerSpec
from directlb.emulator.dataplane import route
from directlb.emulator.server import Emulator
from directlb.plan.state import Certificate, Listener, ListenerProtocol, Rule
from tests import support
from tests.integration import cloud_support


async def _lb(client: Any) -> str:
    created = await support.api(client, "CreateLoadBalancer", LoadBalancerType="OPEN")
    await support.wait_task(client, created["RequestId"])
    return str(created["LoadBalancerIds"][0])


async def _mutate(client: Any, action: str, **params: Any) -> dict[str, Any]:
    answer = await support.api(client, action, **params)
    task = await support.wait_task(client, answer["RequestId"])
    assert task["Status"] == 0, task
    return answer


async def _rules(client: Any, lb_id: str, port: int) -> dict[tuple[str, str], dict[str, Any]]:
    described = await support.api(client, "DescribeListeners", LoadBalancerId=lb_id, Port=port)
    [listener] = described["Listeners"]
    return {(r["Domain"], r["Url"]): r for r in listener["Rules"]}


async def _code(coro: Any) -> str:
    with pytest.raises(TencentCloudSDKException) as caught:
        await coro
    return str(caught.value.code)


async def test_sni_listener_certificates_per_domain_and_default(emulator: Emulator) -> None:
    client = support.async_client(emulator)
    try:
        lb_id = await _lb(client)
        # SNI takes no listener certificate; SNI is for HTTPS only.
        assert (
            await _code(
                support.api(
                    client,
                    "CreateListener",
                    LoadBalancerId=lb_id,
                    Protocol="HTTPS",
                    Ports=[443],
                    SniSwitch=1,
                    Certificate={"CertId": "cert-a"},
                )
            )
            == "InvalidParameter"
        )
        created = await _mutate(
            client,
            "CreateListener",
            LoadBalancerId=lb_id,
            Protocol="HTTPS",
            Ports=[443],
            SniSwitch=1,
        )
        [listener_id] = created["ListenerIds"]
        # A new domain on an SNI listener needs its certificate.
        assert (
            await _code(
                support.api(
                    client,
                    "CreateRule",
                    LoadBalancerId=lb_id,
                    ListenerId=listener_id,
                    Rules=[{"Domain": "a.com", "Url": "/"}],
                )
            )
            == "MissingParameter"
        )
        await _mutate(
            client,
            "CreateRule",
            LoadBalancerId=lb_id,
            ListenerId=listener_id,
            Rules=[
                {"Domain": "a.com", "Url": "/", "Certificate": {"CertId": "cert-a"}},
                {"Domain": "a.com", "Url": "/x"},  # the domain's certificate
                {"Domain": "b.com", "Url": "/", "Certificate": {"CertId": "cert-b"}},
            ],
        )
        rules = await _rules(client, lb_id, 443)
        assert {k: (r["Certificate"]["CertId"], r["DefaultServer"]) for k, r in rules.items()} == {
            ("a.com", "/"): ("cert-a", True),  # the first domain is the default
            ("a.com", "/x"): ("cert-a", True),
            ("b.com", "/"): ("cert-b", False),
        }
        # Another certificate for a.com through CreateRule: refused, use ModifyDomainAttributes.
        assert (
            await _code(
                support.api(
                    client,
                    "CreateRule",
                    LoadBalancerId=lb_id,
                    ListenerId=listener_id,
                    Rules=[{"Domain": "a.com", "Url": "/y", "Certificate": {"CertId": "cert-c"}}],
                )
            )
            == "InvalidParameterValue"
        )
        await _mutate(
            client,
            "ModifyDomainAttributes",
            LoadBalancerId=lb_id,
            ListenerId=listener_id,
            Domain="a.com",
            Certificate={"CertId": "cert-c"},
        )
        await _mutate(
            client,
            "ModifyDomainAttributes",
            LoadBalancerId=lb_id,
            ListenerId=listener_id,
            Domain="b.com",
            DefaultServer=True,
        )
        rules = await _rules(client, lb_id, 443)
        assert {k: (r["Certificate"]["CertId"], r["DefaultServer"]) for k, r in rules.items()} == {
            ("a.com", "/"): ("cert-c", False),
            ("a.com", "/x"): ("cert-c", False),
            ("b.com", "/"): ("cert-b", True),
        }
        # The default cannot just be switched off; it can be handed over.
        off = {"LoadBalancerId": lb_id, "ListenerId": listener_id, "Domain": "b.com"}
        assert (
            await _code(support.api(client, "ModifyDomainAttributes", **off, DefaultServer=False))
            == "MissingParameter"
        )
        await _mutate(
            client,
            "ModifyDomainAttributes",
            **off,
            DefaultServer=False,
            NewDefaultServerDomain="a.com",
        )
        assert (await _rules(client, lb_id, 443))[("a.com", "/")]["DefaultServer"] is True
        # SNI cannot be switched off.
        assert (
            await _code(
                support.api(
                    client,
                    "ModifyListener",
                    LoadBalancerId=lb_id,
                    ListenerId=listener_id,
                    SniSwitch=0,
                )
            )
            == "InvalidParameterValue"
        )
        # Deleting the default domain's rules hands the default to the oldest domain left.
        locations = [r["LocationId"] for k, r in rules.items() if k[0] == "a.com"]
        await _mutate(
            client,
            "DeleteRule",
            LoadBalancerId=lb_id,
            ListenerId=listener_id,
            LocationIds=locations,
        )
        assert (await _rules(client, lb_id, 443))[("b.com", "/")]["DefaultServer"] is True
        assert (
            await _code(
                support.api(
                    client,
                    "ModifyDomainAttributes",
                    LoadBalancerId=lb_id,
                    ListenerId=listener_id,
                    Domain="nope.com",
                    DefaultServer=True,
                )
            )
            == "InvalidParameter.LocationNotFound"
        )
    finally:
        await client.close()


async def test_registered_certificates_are_checked(emulator: Emulator) -> None:
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            f"http://{emulator.endpoint}/_emulator/certificates",
            json={"Certificates": [{"CertId": "cert-ok", "CertType": "SVR"}]},
        )
        assert answer.status_code == 200
        listed = await http.get(f"http://{emulator.endpoint}/_emulator/certificates")
        assert listed.json() == {"Certificates": [{"CertId": "cert-ok", "CertType": "SVR"}]}
    client = support.async_client(emulator)
    try:
        lb_id = await _lb(client)
        params = {"LoadBalancerId": lb_id, "Protocol": "HTTPS", "Ports": [443]}
        assert (
            await _code(
                support.api(client, "CreateListener", **params, Certificate={"CertId": "cert-x"})
            )
            == "InvalidParameterValue"
        )
        await _mutate(client, "CreateListener", **params, Certificate={"CertId": "cert-ok"})
    finally:
        await client.close()


async def test_adapter_converges_sni_certificates_default_domain_and_back(
    emulator: Emulator,
) -> None:
    """Our adapter: an SNI listener from nothing; a certificate changed and the default domain
    moved; then one certificate for all, which recreates the listener without SNI."""
    a, b = Certificate("cert-a"), Certificate("cert-b")

    def https(rules: tuple[Rule, ...], *, sni: bool, cert: Certificate | None = None) -> Listener:
        return Listener(
            protocol=ListenerProtocol.HTTPS, port=443, sni=sni, certificate=cert, rules=rules
        )

    first = https(
        (
            Rule("a.com", "/", certificate=a),
            Rule("b.com", "/", certificate=b),
            Rule("127.100.9.9", "/", certificate=b, default_server=True),
        ),
        sni=True,
    )
    second = https(
        (
            Rule("a.com", "/", certificate=b, default_server=True),
            Rule("a.com", "/new", certificate=b, default_server=True),
            Rule("b.com", "/", certificate=b),
            Rule("127.100.9.9", "/", certificate=b),
        ),
        sni=True,
    )
    third = https(
        (Rule("a.com", "/"), Rule("b.com", "/"), Rule("127.100.9.9", "/", default_server=True)),
        sni=False,
        cert=a,
    )
    async with cloud_support.adapter(emulator) as clb:
        lb = await clb.ensure_load_balancer(LoadBalancerSpec(name="l7", tags=(("t", "l7"),)))
        for want in (first, second, third):
            [result] = await clb.sync([DesiredLoadBalancer(lb.lb_id, (want,))])
            assert result.error is None, result.error
            [got] = (await clb.observe(lb.lb_id, fresh=True)).listeners
            assert got.sni == want.sni
            if not want.sni:
                assert got.certificate == want.certificate
            for rule in want.rules:
                found = got.rule(rule.key)
                assert found is not None
                if want.sni:
                    assert found.certificate == rule.certificate
                assert found.default_server == (rule.domain == want.default_domain)
            [again] = await clb.sync([DesiredLoadBalancer(lb.lb_id, (want,))])
            assert again.error is None and not again.operations


def test_data_plane_routing_order() -> None:
    from directlb.emulator.store import Listener as StoredListener
    from directlb.emulator.store import Rule as StoredRule

    def stored(location: str, domain: str, url: str, *, default: bool = False) -> StoredRule:
        return StoredRule(
            location_id=location,
            listener_id="lbl-1",
            lb_id="lb-1",
            domain=domain,
            url=url,
            health_check={},
            session_expire=0,
            scheduler="WRR",
            forward_type="HTTP",
            certificate=None,
            default_server=default,
            http2=False,
            create_time="",
        )

    rules = [
        stored("1", "a.com", "/"),
        stored("2", "a.com", "/img"),
        stored("3", "a.com", "~* \\.PNG$"),
        stored("4", "a.com", "^~ /img/raw"),
        stored("5", "a.com", "=/exact"),
        stored("6", "vip", "/", default=True),
    ]
    listener = StoredListener(
        listener_id="lbl-1",
        lb_id="lb-1",
        protocol="HTTP",
        port=80,
        name="",
        health_check=None,
        certificate=None,
        scheduler="WRR",
        session_expire=0,
        sni_switch=0,
        create_time="",
        rules={r.location_id: r for r in rules},
    )

    def where(host: str, path: str) -> str:
        found = route(listener, host, path)
        return found.location_id if found else ""

    assert where("a.com", "/exact") == "5"
    assert where("a.com", "/exact/") == "1"
    assert where("a.com", "/img/a.png") == "3"  # a regex beats a plain prefix
    assert where("a.com", "/img/raw/a.png") == "4"  # ^~ beats regexes
    assert where("a.com", "/img/a.jpg") == "2"
    assert where("other.com", "/anything") == "6"  # the default domain
