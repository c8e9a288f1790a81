"""The admission webhook heals itself (issue 8, "Self-healing"), end to end.

Simulated cluster + CLB emulator + the controller through ``runtime.run``, the webhook called by
the simulator's API server over real HTTPS (``--webhook-url=local``, ``caBundle`` verified,
``failurePolicy`` honoured). Each case breaks something the way a user could (delete, edit,
let expire), waits until the controller has repaired it (checked from outside: the
configuration, the Secret, the certificate actually served), then creates one pod selected by a
direct-access Service and asserts that it got the readiness gate. Every repair must leave an
Event with a stable reason and an increment of ``directlb_webhook_repairs_total``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import re
import socket
import ssl
import urllib.parse
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lightkube import ApiError
from lightkube.models.core_v1 import Container, ContainerPort, PodSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.admissionregistration_v1 import MutatingWebhookConfiguration
from lightkube.resources.core_v1 import Pod, Secret, Service
from lightkube.resources.discovery_v1 import EndpointSlice
from lightkube.resources.networking_v1 import Ingress

from directlb.controllers import runtime
from directlb.controllers.config import HostPort
from directlb.kube.permissions import WEBHOOK_CONFIGURATION_NAME, WEBHOOK_SECRET_NAME
from directlb.webhook import certs, guardian
from directlb.webhook import server as webhook_server
from directlb.webhook.server import GATE
from tests import support
from tests.cluster_support import ENI
from tests.e2e.stack import DEADLINE, Stack, events_for, has_event, running_stack

NAMESPACE = "default"
# The stack's controller has no POD_NAMESPACE: its namespace is the leader-election default.
CONTROLLER_NAMESPACE = "kube-system"
SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {
        "name": "web",
        "annotations": {"service.cloud.tencent.com/direct-access": "true"},
    },
    "spec": {
        "type": "LoadBalancer",
        "selector": {"app": "web"},
        "ports": [{"port": 80, "targetPort": 80, "protocol": "TCP"}],
    },
}


class Clock:
    """The guardian's clock, moved by the test."""

    def __init__(self, now: datetime.datetime) -> None:
        self.now = now

    def __call__(self) -> datetime.datetime:
        return self.now


class Harness:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.client = stack.client
        self.metrics_url = ""
        self.pods = 0

    async def start(
        self, *, clock: Callable[[], datetime.datetime] | None = None, **overrides: Any
    ) -> None:
        """Start the controller (as ``Stack.start_controller``), keeping its metrics URL."""
        stack = self.stack
        assert stack.controller is None or stack.controller.done()
        stack.stop_event = asyncio.Event()
        started: asyncio.Future[runtime.Started] = asyncio.get_running_loop().create_future()
        config = replace(stack.config, webhook_recheck_period=0.2, **overrides)
        stack.controller = asyncio.create_task(
            runtime.run(
                config,
                stop=stack.stop_event,
                timing=stack.timing,
                webhook_clock=clock,
                on_started=lambda s: started.done() or started.set_result(s),
            )
        )
        done, _ = await asyncio.wait(
            {started, stack.controller}, timeout=DEADLINE, return_when=asyncio.FIRST_COMPLETED
        )
        assert started in done, "the controller did not start"
        self.metrics_url = started.result().metrics_url

    # -- reading what the controller maintains --

    async def configuration(self) -> MutatingWebhookConfiguration | None:
        try:
            return await self.client.get(MutatingWebhookConfiguration, WEBHOOK_CONFIGURATION_NAME)
        except ApiError as error:
            if error.status.code == 404:
                return None
            raise

    async def secret(self) -> Secret | None:
        try:
            return await self.client.get(
                Secret, WEBHOOK_SECRET_NAME, namespace=CONTROLLER_NAMESPACE
            )
        except ApiError as error:
            if error.status.code == 404:
                return None
            raise

    async def sound(self) -> bool:
        """Everything a pod's gate depends on holds, seen from outside the controller: the
        configuration calls a live URL for pod CREATE, Ignore, trusting the Secret's CA (and
        during a CA rotation the replaced one too), and the server there presents the Secret's
        certificate, valid now for its host."""
        configuration, secret = await self.configuration(), await self.secret()
        if configuration is None or secret is None:
            return False
        if len(configuration.webhooks or []) != 1:
            return False
        [hook] = configuration.webhooks or []
        if hook.failurePolicy != "Ignore" or len(hook.rules or []) != 1:
            return False
        [rule] = hook.rules or []
        if (rule.operations, rule.resources) != (["CREATE"], ["pods"]):
            return False
        data = secret.data or {}
        if not trusts(hook.clientConfig.caBundle, data.get(certs.CA_CRT)):
            return False
        if not hook.clientConfig.url:
            return False
        served = await served_certificate(hook.clientConfig.url, base64.b64decode(data["ca.crt"]))
        return served == base64.b64decode(data[certs.TLS_CRT])

    async def repairs(self, what: str, problem: str) -> float:
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"{self.metrics_url}/metrics")).text
        return metric(
            text, "directlb_webhook_repairs_total", f'object="{what}",problem="{problem}"'
        )

    async def counter(self, name: str) -> float:
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"{self.metrics_url}/metrics")).text
        return metric(text, name, "")

    async def pod_gates(self, labels: dict[str, str] | None = None) -> list[str]:
        """Create one pod (selected by the Service ``web`` by default); its readiness gates."""
        self.pods += 1
        created = await self.client.create(
            Pod(
                metadata=ObjectMeta(
                    name=f"web-{self.pods}",
                    namespace=NAMESPACE,
                    labels=labels if labels is not None else {"app": "web"},
                    annotations=dict(ENI),
                ),
                spec=PodSpec(
                    containers=[
                        Container(
                            name="web", image="nginx", ports=[ContainerPort(containerPort=80)]
                        )
                    ]
                ),
            )
        )
        assert created.spec is not None
        return [g.conditionType for g in created.spec.readinessGates or []]

    async def healed(self, what: str, problem: str, before: float = 0.0) -> None:
        """Wait for the repair to be counted and for the whole chain to be sound again."""

        async def counted() -> bool:
            return await self.repairs(what, problem) > before

        await support.wait_until(counted, timeout=DEADLINE, interval=0.05)
        await support.wait_until(self.sound, timeout=DEADLINE, interval=0.05)


def trusts(ca_bundle: str | None, ca: str | None) -> bool:
    """Whether the base64 ``ca_bundle`` trusts the base64 CA certificate ``ca``."""
    trusted, wanted = guardian.ca_certificates(ca_bundle), guardian.ca_certificates(ca)
    return trusted is not None and wanted is not None and wanted <= trusted


def metric(text: str, name: str, labels: str) -> float:
    pattern = (
        "^" + re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else "") + r" (\S+)$"
    )
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def served_certificate(
    url: str, ca_pem: bytes, *, server_name: str | None = None
) -> bytes | None:
    """The certificate (PEM) served at ``url``, through a handshake verified against
    ``ca_pem`` for ``server_name`` (default: the URL's host); None if the handshake fails."""
    parts = urllib.parse.urlsplit(url)
    context = ssl.create_default_context(cadata=ca_pem.decode())
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(
                parts.hostname,
                parts.port,
                ssl=context,
                server_hostname=server_name or parts.hostname,
            ),
            timeout=5,
        )
    except (OSError, ssl.SSLError, TimeoutError):
        return None
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_stack(tmp_path, start_controller=False) as stack:
        harness = Harness(stack)
        await stack.client.create(Service.from_dict(SERVICE), namespace=NAMESPACE)
        yield harness


async def started(harness: Harness, **options: Any) -> Harness:
    await harness.start(**options)
    await support.wait_until(harness.sound, timeout=DEADLINE, interval=0.05)
    return harness


# ----- installation ------------------------------------------------------------------------


async def test_installs_at_start_and_gates_selected_pods_only(harness: Harness) -> None:
    h = await started(harness)
    assert await h.pod_gates() == [GATE]
    assert await h.pod_gates({"app": "other"}) == []
    client = h.client
    assert await has_event(client, WEBHOOK_CONFIGURATION_NAME, guardian.CONFIGURATION_CREATED)
    assert await has_event(
        client, WEBHOOK_SECRET_NAME, guardian.CERTIFICATE_CREATED, CONTROLLER_NAMESPACE
    )
    assert await h.repairs("configuration", "missing") == 1
    assert await h.repairs("secret", "missing") == 1
    assert await h.counter("directlb_webhook_patched_total") == 1
    assert await h.counter("directlb_webhook_errors_total") == 0


async def test_restart_keeps_a_sound_installation(harness: Harness) -> None:
    """A restart on a port of its own repoints the URL, but keeps the CA and the Secret."""
    h = await started(harness)
    secret = await h.secret()
    await h.stack.stop_controller()
    await started(h)
    again = await h.secret()
    assert secret is not None and again is not None
    assert again.metadata.resourceVersion == secret.metadata.resourceVersion
    assert await h.repairs("secret", "missing") == 0
    assert await h.pod_gates() == [GATE]


# ----- each self-healing case --------------------------------------------------------------


async def test_deleted_configuration_is_recreated(harness: Harness) -> None:
    h = await started(harness)
    await h.client.delete(MutatingWebhookConfiguration, WEBHOOK_CONFIGURATION_NAME)
    await h.healed("configuration", "missing", before=1)
    assert await h.pod_gates() == [GATE]


async def test_deleted_secret_is_recreated_with_a_new_ca(harness: Harness) -> None:
    """A new CA: the caBundle trusts the old and the new one for a while (the replicas switch
    certificates meanwhile), then only the new one."""
    clock = Clock(datetime.datetime.now(datetime.UTC))
    h = await started(harness, clock=clock)
    before = await h.secret()
    assert before is not None
    await h.client.delete(Secret, WEBHOOK_SECRET_NAME, namespace=CONTROLLER_NAMESPACE)
    await h.healed("secret", "missing", before=1)
    after = await h.secret()
    assert after is not None and after.data is not None and before.data is not None
    assert after.data[certs.CA_CRT] != before.data[certs.CA_CRT]  # a new CA ...
    configuration = await h.configuration()
    assert configuration is not None
    ca_bundle = (configuration.webhooks or [])[0].clientConfig.caBundle
    assert trusts(ca_bundle, before.data[certs.CA_CRT])  # ... trusted next to the old one
    assert trusts(ca_bundle, after.data[certs.CA_CRT])
    assert await h.repairs("configuration", "ca-bundle") == 0
    assert await h.pod_gates() == [GATE]

    clock.now += guardian.CA_OVERLAP
    await h.healed("configuration", "ca-bundle")

    async def only_the_new_ca() -> bool:
        configuration = await h.configuration()
        assert configuration is not None
        hook = (configuration.webhooks or [])[0]
        return hook.clientConfig.caBundle == after.data[certs.CA_CRT]

    await support.wait_until(only_the_new_ca, timeout=DEADLINE, interval=0.05)
    assert await h.repairs("configuration", "ca-bundle") == 1
    assert await h.pod_gates() == [GATE]


def _corrupt_ca_bundle(hook: Any) -> str:
    other_ca, _ = certs.new_ca()
    hook.clientConfig.caBundle = base64.b64encode(other_ca).decode()
    return "ca-bundle"


def _garbage_ca_bundle(hook: Any) -> str:
    hook.clientConfig.caBundle = base64.b64encode(b"not a certificate").decode()
    return "ca-bundle"


def _alter_rules(hook: Any) -> str:
    hook.rules[0].operations = ["UPDATE"]
    return "rules"


def _redirect(hook: Any) -> str:
    hook.clientConfig.url = "https://127.0.0.1:1/mutate-v1-pod"
    return "client-config"


def _fail_policy(hook: Any) -> str:
    hook.failurePolicy = "Fail"
    return "failure-policy"


def _select_nothing(hook: Any) -> str:
    hook.namespaceSelector.matchExpressions[0].operator = "In"
    return "namespace-selector"


def _longer_timeout(hook: Any) -> str:
    hook.timeoutSeconds = 30
    return "settings"


@pytest.mark.parametrize(
    "alter",
    [
        _corrupt_ca_bundle,
        _garbage_ca_bundle,
        _alter_rules,
        _redirect,
        _fail_policy,
        _select_nothing,
        _longer_timeout,
    ],
    ids=lambda f: f.__name__.strip("_"),
)
async def test_altered_configuration_is_restored(
    harness: Harness, alter: Callable[[Any], str]
) -> None:
    h = await started(harness)
    configuration = await h.configuration()
    assert configuration is not None and configuration.webhooks
    problem = alter(configuration.webhooks[0])
    await h.client.replace(configuration)
    await h.healed("configuration", problem)
    assert await has_event(h.client, WEBHOOK_CONFIGURATION_NAME, guardian.CONFIGURATION_REPAIRED)
    assert await h.pod_gates() == [GATE]


async def test_extra_webhook_in_our_configuration_is_removed(harness: Harness) -> None:
    h = await started(harness)
    configuration = await h.configuration()
    assert configuration is not None and configuration.webhooks
    stranger = configuration.webhooks[0].__class__.from_dict(
        {**configuration.webhooks[0].to_dict(), "name": "stranger.example.com"}
    )
    configuration.webhooks.append(stranger)
    await h.client.replace(configuration)
    await h.healed("configuration", "webhooks")
    repaired = await h.configuration()
    assert repaired is not None and [w.name for w in repaired.webhooks or []] == [
        "pod-readiness.directlb.io"
    ]
    assert await h.pod_gates() == [GATE]


async def test_damaged_serving_certificate_is_reissued_under_the_same_ca(
    harness: Harness,
) -> None:
    h = await started(harness)
    secret = await h.secret()
    assert secret is not None and secret.data is not None
    ca = secret.data[certs.CA_CRT]
    secret.data[certs.TLS_KEY] = base64.b64encode(b"garbage").decode()
    await h.client.replace(secret)
    await h.healed("secret", "serving-invalid")
    after = await h.secret()
    assert after is not None and after.data is not None and after.data[certs.CA_CRT] == ca
    assert await h.repairs("configuration", "ca-bundle") == 0  # nothing for the API server
    assert await has_event(
        h.client, WEBHOOK_SECRET_NAME, guardian.CERTIFICATE_ROTATED, CONTROLLER_NAMESPACE
    )
    assert await h.pod_gates() == [GATE]


async def test_expired_certificate_is_rotated(harness: Harness) -> None:
    """Let the certificate expire. The guardian's clock starts 366 days back, so the serving
    certificate it issues (valid a year) has expired for the API server, whose clock is the
    real one: with failurePolicy Ignore the pod is created *without* its gate, silently, the
    failure this guardian exists for. Once the guardian's clock reaches the present it sees
    the certificate expired and rotates it under the same CA; the next pod gets its gate."""
    now = datetime.datetime.now(datetime.UTC)
    clock = Clock(now - datetime.timedelta(days=366))
    h = harness
    await h.start(clock=clock)

    async def installed() -> bool:
        return await h.repairs("configuration", "missing") == 1 and (
            await h.configuration() is not None
        )

    await support.wait_until(installed, timeout=DEADLINE, interval=0.05)
    assert not await h.sound()  # the served certificate is expired, for everyone but us
    assert await h.pod_gates() == []
    secret = await h.secret()
    assert secret is not None and secret.data is not None
    ca = secret.data[certs.CA_CRT]

    clock.now = now
    await h.healed("secret", "serving-expiring")
    after = await h.secret()
    assert after is not None and after.data is not None and after.data[certs.CA_CRT] == ca
    assert await has_event(
        h.client, WEBHOOK_SECRET_NAME, guardian.CERTIFICATE_ROTATED, CONTROLLER_NAMESPACE
    )
    assert await h.pod_gates() == [GATE]


async def test_certificate_is_rotated_well_before_expiry(harness: Harness) -> None:
    """250 days into a one-year certificate (less than a third left), it is replaced: the API server
    never meets an expired certificate."""
    now = datetime.datetime.now(datetime.UTC)
    clock = Clock(now - datetime.timedelta(days=250))
    await started(harness, clock=clock)
    h = harness
    assert await h.repairs("secret", "serving-expiring") == 0
    clock.now = now
    await h.healed("secret", "serving-expiring")
    assert await h.pod_gates() == [GATE]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_in_cluster_mode_calls_the_service(harness: Harness) -> None:
    """As deployed (deploy/): the configuration names the Service ``directlb-webhook`` in the
    controller's namespace; the API server reaches a replica through its endpoints and checks
    the certificate for ``directlb-webhook.kube-system.svc``."""
    h = harness
    port = free_port()
    await h.client.create(
        Service.from_dict(
            {
                "metadata": {"name": "directlb-webhook"},
                "spec": {"ports": [{"name": "webhook", "port": 443, "targetPort": port}]},
            }
        ),
        namespace=CONTROLLER_NAMESPACE,
    )
    await h.client.create(
        EndpointSlice.from_dict(
            {
                "metadata": {
                    "name": "directlb-webhook-1",
                    "labels": {"kubernetes.io/service-name": "directlb-webhook"},
                },
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
                "ports": [{"name": "webhook", "port": port, "protocol": "TCP"}],
            }
        ),
        namespace=CONTROLLER_NAMESPACE,
    )
    await h.start(webhook_url="", webhook_listen=HostPort("127.0.0.1", port))

    async def serving() -> bool:
        configuration, secret = await h.configuration(), await h.secret()
        if configuration is None or secret is None or not secret.data:
            return False
        [hook] = configuration.webhooks or []
        reference = hook.clientConfig.service
        if reference is None or hook.clientConfig.caBundle != secret.data[certs.CA_CRT]:
            return False
        assert (reference.namespace, reference.name, reference.port) == (
            CONTROLLER_NAMESPACE,
            "directlb-webhook",
            443,
        )
        served = await served_certificate(
            f"https://127.0.0.1:{port}/",
            base64.b64decode(secret.data[certs.CA_CRT]),
            server_name="directlb-webhook.kube-system.svc",
        )
        return served == base64.b64decode(secret.data[certs.TLS_CRT])

    await support.wait_until(serving, timeout=DEADLINE, interval=0.05)
    assert await h.pod_gates() == [GATE]


async def test_pods_behind_a_direct_access_ingress_get_the_gate(harness: Harness) -> None:
    """A plain Service (not direct itself) behind an Ingress annotated
    ``ingress.cloud.tencent.com/direct-access``: its pods are CLB backends too."""
    h = harness
    await h.client.create(
        Service.from_dict(
            {
                "metadata": {"name": "api"},
                "spec": {"selector": {"app": "api"}, "ports": [{"port": 80, "targetPort": 80}]},
            }
        ),
        namespace=NAMESPACE,
    )
    await h.client.create(
        Ingress.from_dict(
            {
                "metadata": {
                    "name": "front",
                    "annotations": {"ingress.cloud.tencent.com/direct-access": "true"},
                },
                "spec": {"defaultBackend": {"service": {"name": "api", "port": {"number": 80}}}},
            }
        ),
        namespace=NAMESPACE,
    )
    await started(h)
    assert await h.pod_gates({"app": "api"}) == [GATE]
    assert await h.pod_gates({"app": "other"}) == []


# ----- the webhook down --------------------------------------------------------------------


async def gate_status(client: Any, name: str) -> str | None:
    pod = await client.get(Pod, name, namespace=NAMESPACE)
    conditions = (pod.status.conditions if pod.status else None) or []
    return next((c.status for c in conditions if c.type == GATE), None)


async def test_webhook_down_pods_are_still_created_and_gated_once_back(
    harness: Harness,
) -> None:
    h = await started(harness)
    assert await h.pod_gates() == [GATE]  # web-1, gated; its condition not necessarily set
    await h.stack.stop_controller()  # the process (and its webhook server) is gone

    # failurePolicy Ignore: created, without the gate (the gate controller reports those).
    assert await h.pod_gates() == []  # web-2
    assert await h.configuration() is not None  # left in place for the next start

    await started(h)  # a new port: the guardian repoints the configuration
    assert await h.repairs("configuration", "client-config") == 1
    assert await h.pod_gates() == [GATE]  # web-3

    # The gates are handled: both gated pods end up with the condition True (bound and
    # healthy on the CLB, set by the gate controller); the one that slipped through has none.
    async def handled() -> bool:
        return all([await gate_status(h.client, n) == "True" for n in ("web-1", "web-3")])

    await support.wait_until(handled, timeout=DEADLINE, interval=0.1)
    assert await gate_status(h.client, "web-2") is None


async def test_failure_policy_fail_is_configurable_and_spares_the_controller_namespace(
    harness: Harness,
) -> None:
    h = harness
    await h.start(webhook_failure_policy="Fail")

    async def fail_installed() -> bool:
        configuration = await h.configuration()
        return configuration is not None and (configuration.webhooks or [])[0].failurePolicy == (
            "Fail"
        )

    await support.wait_until(fail_installed, timeout=DEADLINE, interval=0.05)
    await h.stack.stop_controller()
    with pytest.raises(ApiError) as refused:
        await h.pod_gates()
    assert "pod-readiness.directlb.io" in str(refused.value.status.message)
    # The controller's own namespace is never sent to the webhook: its pods still start.
    await h.client.create(
        Pod(
            metadata=ObjectMeta(name="controller-0", namespace=CONTROLLER_NAMESPACE),
            spec=PodSpec(containers=[Container(name="c", image="directlb")]),
        )
    )


async def test_webhook_off_installs_nothing(harness: Harness) -> None:
    await harness.start(webhook=False)
    await asyncio.sleep(0.5)  # give a wrongly started guardian the time to act
    assert await harness.configuration() is None and await harness.secret() is None
    assert await harness.pod_gates() == []


@dataclass
class Replica:
    task: asyncio.Task[None]
    stop: asyncio.Event
    metrics_url: str

    async def leading(self) -> bool:
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"{self.metrics_url}/metrics")).text
        return metric(text, "directlb_leader", "") == 1.0

    async def stopped(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 30)


async def replica(stack: Stack, identity: str) -> Replica:
    """One more in-process `directlb controller` with leader election (short lease)."""
    stop = asyncio.Event()
    started: asyncio.Future[runtime.Started] = asyncio.get_running_loop().create_future()
    config = replace(
        stack.config,
        identity=identity,
        leader_elect=True,
        lease_duration=3.0,
        renew_deadline=2.0,
        retry_period=0.5,
        webhook_recheck_period=0.2,
    )
    task = asyncio.create_task(
        runtime.run(
            config,
            stop=stop,
            timing=stack.timing,
            on_started=lambda s: started.done() or started.set_result(s),
        )
    )
    await asyncio.wait({started, task}, timeout=DEADLINE, return_when=asyncio.FIRST_COMPLETED)
    assert started.done(), "the replica did not start"
    return Replica(task, stop, started.result().metrics_url)


async def test_only_the_leader_repairs_and_a_new_leader_takes_over(harness: Harness) -> None:
    """Two replicas, each serving its own webhook (``--webhook-url=local``: each would point
    the configuration at itself). Only the leader repairs: the configuration never flaps
    between them; once the leader is gone the other one repairs, at once."""
    h = harness
    a = await replica(h.stack, "replica-a")
    await support.wait_until(a.leading, timeout=DEADLINE, interval=0.1)
    b = await replica(h.stack, "replica-b")
    try:
        await support.wait_until(h.sound, timeout=DEADLINE, interval=0.05)
        configuration = await h.configuration()
        assert configuration is not None and configuration.webhooks
        url_a = configuration.webhooks[0].clientConfig.url

        await h.client.delete(MutatingWebhookConfiguration, WEBHOOK_CONFIGURATION_NAME)
        await support.wait_until(h.sound, timeout=DEADLINE, interval=0.05)
        for _ in range(10):  # and it stays so: replica b never writes
            repaired = await h.configuration()
            assert repaired is not None and repaired.webhooks
            assert repaired.webhooks[0].clientConfig.url == url_a
            await asyncio.sleep(0.1)
        assert not await b.leading()
        assert await h.pod_gates() == [GATE]

        await a.stopped()  # releases the Lease: b leads and repoints the configuration
        await support.wait_until(b.leading, timeout=DEADLINE, interval=0.1)

        async def repointed() -> bool:
            moved = await h.configuration()
            return bool(moved and moved.webhooks) and (
                moved.webhooks[0].clientConfig.url != url_a and await h.sound()
            )

        await support.wait_until(repointed, timeout=DEADLINE, interval=0.05)
        assert await h.pod_gates() == [GATE]
        instances = {
            e.reportingInstance
            for e in await events_for(h.client, WEBHOOK_CONFIGURATION_NAME)
            if e.reason in (guardian.CONFIGURATION_CREATED, guardian.CONFIGURATION_REPAIRED)
        }
        assert instances == {"replica-a", "replica-b"}
    finally:
        for r in (a, b):
            if not r.task.done():
                await r.stopped()


# ----- an internal error -------------------------------------------------------------------


async def test_internal_error_allows_the_pod_and_is_counted(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = await started(harness)
    real = webhook_server.pod_is_selected

    def broken(labels: Any, services: Any, ingresses: Any = ()) -> bool:
        if labels.get("boom"):
            raise RuntimeError("injected")
        return real(labels, services, ingresses)

    monkeypatch.setattr(webhook_server, "pod_is_selected", broken)
    assert await h.pod_gates({"app": "web", "boom": "1"}) == []  # allowed, unpatched
    assert await h.counter("directlb_webhook_errors_total") == 1
    assert await h.pod_gates() == [GATE]  # the next pod is not affected
