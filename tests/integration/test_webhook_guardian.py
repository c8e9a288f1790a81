"""The guardian against the simulator's API server: what it writes, that a sound state is left
alone, that a racing writer is never overwritten blindly, and its Events and repair counts."""

from __future__ import annotations

import base64
import datetime
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.resources.admissionregistration_v1 import MutatingWebhookConfiguration
from lightkube.resources.core_v1 import Secret

from directlb.sim.server import ApiServer, SimConfig
from directlb.webhook import certs, guardian
from directlb.webhook.guardian import Guardian, Target
from directlb.webhook.server import ReloadingTLS

TARGET = Target(namespace="kube-system")


@dataclass
class Recorded:
    events: list[tuple[str, str, str, str]] = field(
        default_factory=list
    )  # kind, name, type, reason
    repairs: list[tuple[str, str]] = field(default_factory=list)

    def event(self, obj: Any, *, type: str, reason: str, message: str) -> None:
        self.events.append((obj.__class__.__name__, obj.metadata.name, type, reason))

    def repaired(self, what: str, problem: str) -> None:
        self.repairs.append((what, problem))


class Clock:
    def __init__(self) -> None:
        self.now = datetime.datetime.now(datetime.UTC)

    def __call__(self) -> datetime.datetime:
        return self.now


@dataclass
class Env:
    client: AsyncClient
    guardian: Guardian
    recorded: Recorded
    clock: Clock


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    api = ApiServer(SimConfig(bookmark_interval=60))
    await api.start()
    client = AsyncClient(config=KubeConfig.from_dict(api.kubeconfig()), field_manager="t")
    recorded, clock = Recorded(), Clock()
    first = certs.new_bundle(TARGET.hosts)
    try:
        yield Env(
            client,
            Guardian(
                client=client,
                target=TARGET,
                events=recorded,
                tls=ReloadingTLS(first.cert_pem, first.key_pem),
                clock=clock,
                on_repair=recorded.repaired,
                recheck_period=7.0,
            ),
            recorded,
            clock,
        )
    finally:
        await client.close()
        await api.stop()


async def test_installs_then_leaves_a_sound_state_alone(env: Env) -> None:
    assert await env.guardian.reconcile() == 7.0
    assert env.recorded.repairs == [("secret", "missing"), ("configuration", "missing")]
    assert [e[3] for e in env.recorded.events] == [
        guardian.CERTIFICATE_CREATED,
        guardian.CONFIGURATION_CREATED,
    ]
    secret = await env.client.get(Secret, "directlb-webhook-tls", namespace="kube-system")
    configuration = await env.client.get(MutatingWebhookConfiguration, "directlb-pod-readiness")
    bundle = certs.bundle_in_secret(secret.data)
    assert bundle is not None and secret.type == "kubernetes.io/tls"
    hook = (configuration.webhooks or [])[0]
    assert hook.clientConfig.service is not None
    assert (hook.clientConfig.service.namespace, hook.clientConfig.service.name) == (
        "kube-system",
        "directlb-webhook",
    )
    assert certs.covers(bundle.cert, ["directlb-webhook.kube-system.svc"])
    tls = env.guardian.tls
    assert tls is not None and tls.reloads == 1  # now serving the Secret's certificate

    for _ in range(3):
        await env.guardian.reconcile()
    assert len(env.recorded.repairs) == 2 and len(env.recorded.events) == 2
    again = await env.client.get(Secret, "directlb-webhook-tls", namespace="kube-system")
    assert again.metadata.resourceVersion == secret.metadata.resourceVersion


async def test_a_racing_writer_is_not_overwritten_blindly(env: Env) -> None:
    """The guardian replaces what it read, with that resourceVersion: if someone wrote in
    between, the write fails (the work queue retries) and the next pass sees the new state."""
    await env.guardian.reconcile()
    configuration = await env.client.get(MutatingWebhookConfiguration, "directlb-pod-readiness")
    (configuration.webhooks or [])[0].failurePolicy = "Fail"
    await env.client.replace(configuration)

    read = env.guardian.read_configuration

    async def read_then_race() -> MutatingWebhookConfiguration | None:
        seen = await read()
        racing = await env.client.get(MutatingWebhookConfiguration, "directlb-pod-readiness")
        racing.metadata.labels = {**(racing.metadata.labels or {}), "raced": "yes"}
        await env.client.replace(racing)
        return seen

    env.guardian.read_configuration = read_then_race  # type: ignore[method-assign]
    with pytest.raises(ApiError) as conflict:
        await env.guardian.reconcile()
    assert conflict.value.status.code == 409
    env.guardian.read_configuration = read  # type: ignore[method-assign]
    await env.guardian.reconcile()
    repaired = await env.client.get(MutatingWebhookConfiguration, "directlb-pod-readiness")
    assert (repaired.webhooks or [])[0].failurePolicy == "Ignore"
    assert (repaired.metadata.labels or {}).get("raced") == "yes"  # the other write kept
    assert env.recorded.repairs[-1] == ("configuration", "failure-policy")


async def read_bundle(env: Env) -> certs.Bundle:
    secret = await env.client.get(Secret, "directlb-webhook-tls", namespace="kube-system")
    bundle = certs.bundle_in_secret(secret.data)
    assert bundle is not None
    return bundle


async def trusted_cas(env: Env) -> set[bytes] | None:
    """The CAs the configuration's caBundle trusts (DER)."""
    configuration = await env.client.get(MutatingWebhookConfiguration, "directlb-pod-readiness")
    return guardian.ca_certificates((configuration.webhooks or [])[0].clientConfig.caBundle)


def cas(*bundles: certs.Bundle) -> set[bytes] | None:
    pems = b"".join(b.ca_cert_pem for b in bundles)
    return guardian.ca_certificates(base64.b64encode(pems).decode())


async def test_clock_drives_rotation_and_a_new_ca_updates_the_ca_bundle(env: Env) -> None:
    await env.guardian.reconcile()
    before = await read_bundle(env)
    env.clock.now += datetime.timedelta(days=300)  # serving certificate: a third left
    await env.guardian.reconcile()
    assert env.recorded.repairs[-1] == ("secret", "serving-expiring")
    assert env.recorded.events[-1][2:] == ("Normal", guardian.CERTIFICATE_ROTATED)
    env.clock.now += datetime.timedelta(days=3000)  # the CA itself: renewed, caBundle follows
    await env.guardian.reconcile()
    assert env.recorded.repairs[-1] == ("secret", "ca-invalid-or-expiring")
    assert [e[3] for e in env.recorded.events[-2:]] == [
        guardian.CA_BUNDLE_EXTENDED,  # first the caBundle trusts both CAs ...
        guardian.CERTIFICATE_ROTATED,  # ... then the replicas switch to the new one
    ]
    after = await read_bundle(env)
    assert after.ca_cert_pem != before.ca_cert_pem
    assert await trusted_cas(env) == cas(before, after)
    await assert_old_ca_dropped_after_the_overlap(env, after)


async def test_a_deleted_secret_keeps_the_old_ca_trusted_for_a_while(env: Env) -> None:
    """The old CA's key is gone with the Secret, but the replicas still serve its certificate
    from memory until they reload: the caBundle trusts it until the overlap is over."""
    await env.guardian.reconcile()
    before = await read_bundle(env)
    await env.client.delete(Secret, "directlb-webhook-tls", namespace="kube-system")
    await env.guardian.reconcile()
    assert env.recorded.repairs[-1] == ("secret", "missing")
    after = await read_bundle(env)
    assert await trusted_cas(env) == cas(before, after)
    await assert_old_ca_dropped_after_the_overlap(env, after)


async def assert_old_ca_dropped_after_the_overlap(env: Env, current: certs.Bundle) -> None:
    repairs = len(env.recorded.repairs)
    env.clock.now += guardian.CA_OVERLAP - datetime.timedelta(seconds=1)
    await env.guardian.reconcile()
    assert len(env.recorded.repairs) == repairs  # both CAs are still trusted: no problem yet
    assert len(await trusted_cas(env) or ()) == 2
    env.clock.now += datetime.timedelta(seconds=1)
    await env.guardian.reconcile()
    assert env.recorded.repairs[repairs:] == [("configuration", "ca-bundle")]
    assert env.recorded.events[-1][2:] == ("Warning", guardian.CONFIGURATION_REPAIRED)
    assert await trusted_cas(env) == cas(current)


async def test_a_repair_during_the_overlap_keeps_both_cas(env: Env) -> None:
    await env.guardian.reconcile()
    before = await read_bundle(env)
    await env.client.delete(Secret, "directlb-webhook-tls", namespace="kube-system")
    await env.guardian.reconcile()
    after = await read_bundle(env)
    configuration = await env.client.get(MutatingWebhookConfiguration, "directlb-pod-readiness")
    (configuration.webhooks or [])[0].failurePolicy = "Fail"
    await env.client.replace(configuration)
    await env.guardian.reconcile()
    assert env.recorded.repairs[-1] == ("configuration", "failure-policy")
    assert await trusted_cas(env) == cas(before, after)


async def test_a_secret_without_a_ca_is_rewritten_in_place(env: Env) -> None:
    await env.client.create(
        Secret.from_dict(
            {
                "metadata": {"name": "directlb-webhook-tls", "namespace": "kube-system"},
                "type": "Opaque",
                "data": {"unrelated": "eA=="},
            }
        )
    )
    await env.guardian.reconcile()
    assert env.recorded.repairs[0] == ("secret", "unreadable")
    assert env.recorded.events[0][2:] == ("Warning", guardian.CERTIFICATE_ROTATED)
    secret = await env.client.get(Secret, "directlb-webhook-tls", namespace="kube-system")
    assert secret.type == "Opaque"  # the type is immutable: kept
    assert certs.bundle_in_secret(secret.data) is not None
