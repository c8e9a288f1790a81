"""Admission wired into the API server: webhook configurations stored through the API are
called on writes made over HTTPS, and their answers shape what is stored."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from lightkube import ApiError, AsyncClient
from lightkube.codecs import from_dict
from lightkube.resources.core_v1 import Pod

from tests.sim_certs import CertAuthority
from tests.sim_support import pod
from tests.sim_webhooks import GATE, WebhookServer, add_readiness_gate, mutating, webhook

pytestmark = pytest.mark.asyncio


@pytest.fixture
def ca() -> CertAuthority:
    return CertAuthority.create()


@pytest.fixture
async def hook(ca: CertAuthority) -> AsyncIterator[WebhookServer]:
    server = WebhookServer(ca.issue(dns=["webhook.ns.svc"], ips=["127.0.0.1"]))
    await server.start()
    yield server
    await server.stop()


async def test_mutating_webhook_adds_the_readiness_gate(
    kube: AsyncClient, hook: WebhookServer, ca: CertAuthority
) -> None:
    url = hook.route("/mutate", add_readiness_gate)
    config = mutating("directlb", webhook("pods.directlb.io", url=url, ca_bundle=ca.bundle()))
    await kube.create(from_dict(config))
    created = await kube.create(from_dict(pod("p")), namespace="default")
    assert created.spec is not None and created.spec.readinessGates is not None
    assert [g.conditionType for g in created.spec.readinessGates] == [GATE]
    stored = await kube.get(Pod, "p", namespace="default")
    assert stored.spec is not None and stored.spec.readinessGates is not None
    [call] = hook.calls_to("/mutate")
    assert call.request["operation"] == "CREATE"
    assert call.request["object"]["spec"]["restartPolicy"] == "Always"  # defaulted first


@pytest.mark.parametrize(("policy", "created"), [("Fail", False), ("Ignore", True)])
async def test_wrong_ca_bundle_under_each_failure_policy(
    kube: AsyncClient, hook: WebhookServer, policy: str, created: bool
) -> None:
    other = CertAuthority.create()
    url = hook.route("/mutate", add_readiness_gate)
    config = mutating(
        "directlb",
        webhook("pods.directlb.io", url=url, ca_bundle=other.bundle(), failure_policy=policy),
    )
    await kube.create(from_dict(config))
    if created:
        result = await kube.create(from_dict(pod("p")), namespace="default")
        assert result.spec is not None and not result.spec.readinessGates
        return
    with pytest.raises(ApiError) as error:
        await kube.create(from_dict(pod("p")), namespace="default")
    assert error.value.status.code == 500
    assert 'failed calling webhook "pods.directlb.io"' in (error.value.status.message or "")
    with pytest.raises(ApiError) as missing:
        await kube.get(Pod, "p", namespace="default")
    assert missing.value.status.code == 404
