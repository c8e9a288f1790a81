"""The webhook behind the simulator's API server: real HTTPS admission calls, real pods."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from typing import Any

import pytest
from cryptography import x509
from lightkube import AsyncClient, KubeConfig
from lightkube.models.core_v1 import Container, PodReadinessGate, PodSpec, ServicePort, ServiceSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Pod, Service

from directlb.kube.informer import Informer
from directlb.kube.mapping import BY_NAMESPACE, index_by_namespace
from directlb.sim.server import ApiServer, SimConfig
from directlb.webhook import certs
from directlb.webhook.configuration import build_configuration
from directlb.webhook.server import (
    DIRECT_ACCESS,
    GATE,
    PATH,
    Admission,
    ReloadingTLS,
    WebhookServer,
    services_in,
)
from tests.support import wait_until

HOSTS = [*certs.service_dns_names("directlb-webhook", "directlb-system"), "127.0.0.1"]
OTHER = "example.com/other"


class Env:
    def __init__(self, client: AsyncClient, server: WebhookServer, bundle: certs.Bundle) -> None:
        self.client = client
        self.server = server
        self.bundle = bundle
        self.names = 0

    async def pod(self, labels: dict[str, str], gates: list[str] | None = None) -> Pod:
        self.names += 1
        created = await self.client.create(
            Pod(
                metadata=ObjectMeta(name=f"p{self.names}", namespace="default", labels=labels),
                spec=PodSpec(
                    containers=[Container(name="c", image="nginx")],
                    readinessGates=[PodReadinessGate(conditionType=g) for g in gates]
                    if gates
                    else None,
                ),
            )
        )
        assert created.metadata is not None and created.metadata.name is not None
        return await self.client.get(Pod, created.metadata.name, namespace="default")


def gates_of(pod: Pod) -> list[str]:
    assert pod.spec is not None
    return [g.conditionType for g in pod.spec.readinessGates or []]


async def served_serial(port: int, ca_pem: bytes) -> int:
    """A fresh, strictly verified TLS handshake: the serial of the certificate served."""
    context = ssl.create_default_context(cadata=ca_pem.decode())
    if hasattr(ssl, "VERIFY_X509_STRICT"):
        context.verify_flags |= ssl.VERIFY_X509_STRICT
    _, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname="127.0.0.1"
    )
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    api = ApiServer(SimConfig(bookmark_interval=60))
    await api.start()
    client = AsyncClient(config=KubeConfig.from_dict(api.kubeconfig()), field_manager="t")
    informer: Informer[Service] = Informer(client, Service)
    informer.store.add_index(BY_NAMESPACE, index_by_namespace)
    task = asyncio.create_task(informer.run())
    bundle = certs.new_bundle(HOSTS)
    server = WebhookServer(
        Admission(services_in(informer.store)),
        ReloadingTLS(bundle.cert_pem, bundle.key_pem),
        host="127.0.0.1",
        port=0,
    )
    try:
        await server.start()
        await asyncio.wait_for(informer.synced.wait(), timeout=10)
        await client.create(
            build_configuration(
                ca_bundle=bundle.ca_cert_pem,
                controller_namespace="directlb-system",
                url=f"https://127.0.0.1:{server.port}{PATH}",
            )
        )
        await client.create(
            Service(
                metadata=ObjectMeta(
                    name="web", namespace="default", annotations={DIRECT_ACCESS: "true"}
                ),
                spec=ServiceSpec(
                    type="LoadBalancer", selector={"app": "web"}, ports=[ServicePort(port=80)]
                ),
            )
        )
        await wait_until(lambda: informer.store.get("default/web") is not None)
        yield Env(client, server, bundle)
    finally:
        await server.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await client.close()
        await api.stop()


async def test_selected_pod_gets_the_gate_once(env: Env) -> None:
    pod = await env.pod({"app": "web", "v": "1"})
    assert gates_of(pod) == [GATE]
    assert env.server.admission.patched == 1 and env.server.admission.errors == 0


async def test_pod_not_selected_is_unchanged(env: Env) -> None:
    assert gates_of(await env.pod({"app": "api"})) == []
    assert env.server.admission.reviews >= 1 and env.server.admission.patched == 0


async def test_existing_gates_are_kept(env: Env) -> None:
    assert gates_of(await env.pod({"app": "web"}, [OTHER])) == [OTHER, GATE]
    assert gates_of(await env.pod({"app": "web"}, [GATE])) == [GATE]
    assert gates_of(await env.pod({"app": "web"}, [OTHER, GATE])) == [OTHER, GATE]


async def test_webhook_down_fails_open(env: Env) -> None:
    await env.server.stop()
    assert gates_of(await env.pod({"app": "web"})) == []


async def test_rotation_without_restart(env: Env) -> None:
    before = await served_serial(env.server.port, env.bundle.ca_cert_pem)
    assert before == env.bundle.cert.serial_number
    assert gates_of(await env.pod({"app": "web"})) == [GATE]
    rotated = certs.rotate_serving(env.bundle, HOSTS)
    assert env.server.tls is not None
    assert env.server.tls.update(rotated.cert_pem, rotated.key_pem)
    after = await served_serial(env.server.port, env.bundle.ca_cert_pem)
    assert after == rotated.cert.serial_number != before
    assert gates_of(await env.pod({"app": "web"})) == [GATE]
    assert env.server.tls.reloads == 1


async def test_rotation_from_files(env: Env, tmp_path: Any) -> None:
    assert env.server.tls is not None
    cert_file, key_file = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert_file.write_bytes(env.bundle.cert_pem)
    key_file.write_bytes(env.bundle.key_pem)
    watcher = asyncio.create_task(env.server.tls.watch_files(cert_file, key_file, period=0.05))
    try:
        rotated = certs.rotate_serving(env.bundle, HOSTS)
        before = await served_serial(env.server.port, env.bundle.ca_cert_pem)
        key_file.write_bytes(rotated.key_pem)  # a half-written pair is refused, not served
        tls = env.server.tls
        await wait_until(lambda: tls.reload_errors > 0, timeout=5)
        assert await served_serial(env.server.port, env.bundle.ca_cert_pem) == before
        cert_file.write_bytes(rotated.cert_pem)
        await wait_until(lambda: tls.reloads > 0, timeout=5)
        assert await served_serial(env.server.port, env.bundle.ca_cert_pem) == (
            rotated.cert.serial_number
        )
        assert gates_of(await env.pod({"app": "web"})) == [GATE]
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


async def test_healthz(env: Env) -> None:
    import aiohttp

    context = ssl.create_default_context(cadata=env.bundle.ca_cert_pem.decode())
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"https://127.0.0.1:{env.server.port}/healthz", ssl=context) as response,
    ):
        assert response.status == 200 and await response.text() == "ok"
