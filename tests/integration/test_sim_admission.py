"""The simulator's admission chain against a real HTTPS webhook server on loopback.

Each test starts an aiohttp webhook with a certificate from a throwaway CA (valid for
127.0.0.1 and webhook.ns.svc) and points webhook configurations, stored in an in-memory
ObjectReader, at it. Nothing sleeps: the timeout cases hang the webhook on an event the
fixture releases at teardown, and the clock that expires is the webhook's own timeoutSeconds.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from directlb.sim.admission import Admission
from directlb.sim.contracts import AdmissionAttributes, AdmissionDenied
from tests.sim_certs import CertAuthority
from tests.sim_webhooks import (
    GATE,
    MUTATING_CONFIG,
    POD_CREATE,
    Behaviour,
    MemoryReader,
    WebhookServer,
    add_label,
    add_readiness_gate,
    allow,
    deny,
    mutating,
    patch_answer,
    pod,
    pod_attrs,
    validating,
    webhook,
)


@pytest.fixture
def ca() -> CertAuthority:
    return CertAuthority.create()


@pytest.fixture
async def server(ca: CertAuthority) -> AsyncIterator[WebhookServer]:
    hook = WebhookServer(ca.issue(dns=["webhook.ns.svc"], ips=["127.0.0.1"]))
    await hook.start()
    yield hook
    await hook.stop()


@pytest.fixture
def reader() -> MemoryReader:
    objects = MemoryReader()
    for name in ("default", "kube-system", "ns"):
        objects.namespace(name)
    return objects


@pytest.fixture
async def admission(reader: MemoryReader) -> AsyncIterator[Admission]:
    chain = Admission(reader)
    yield chain
    await chain.close()


def failed_calling(name: str, url: str, cause: str) -> str:
    return (
        f'Internal error occurred: failed calling webhook "{name}": '
        f'failed to call webhook: Post "{url}": {cause}'
    )


# ----- mutation ----------------------------------------------------------------------------


async def test_readiness_gate_is_added_by_json_patch_on_pod_create(
    server: WebhookServer, reader: MemoryReader, admission: Admission, ca: CertAuthority
) -> None:
    url = server.route("/mutate-pods", add_readiness_gate)
    reader.configuration(
        mutating("directlb", webhook("pods.directlb.io", url=url, ca_bundle=ca.bundle()))
    )
    original = pod()

    result = await admission.mutate(pod_attrs(original))

    assert result["spec"]["readinessGates"] == [{"conditionType": GATE}]
    assert result["spec"]["containers"] == original["spec"]["containers"]
    assert "readinessGates" not in original["spec"], "the caller's object is not modified"
    [call] = server.calls
    assert call.query == {"timeout": "10s"}
    assert call.headers["Content-Type"] == "application/json"
    assert call.review["apiVersion"] == "admission.k8s.io/v1"
    assert call.review["kind"] == "AdmissionReview"
    request = call.request
    assert request["kind"] == {"group": "", "version": "v1", "kind": "Pod"}
    assert request["resource"] == {"group": "", "version": "v1", "resource": "pods"}
    assert request["requestKind"] == request["kind"]
    assert request["requestResource"] == request["resource"]
    assert request["operation"] == "CREATE"
    assert (request["namespace"], request["name"]) == ("default", "web-1")
    assert request["userInfo"] == {
        "username": "admin",
        "groups": ["system:masters", "system:authenticated"],
    }
    assert request["object"] == original
    assert request["oldObject"] is None
    assert request["dryRun"] is False
    assert request["options"] == {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
    assert len(request["uid"]) == 36


async def test_webhooks_run_in_order_and_each_sees_the_previous_patch(
    server: WebhookServer, reader: MemoryReader, admission: Admission, ca: CertAuthority
) -> None:
    first = server.route("/first", add_label("order", "first"))
    seen: list[dict[str, str]] = []

    def second(request: dict[str, Any]) -> Any:
        labels = request["object"]["metadata"]["labels"]
        seen.append(dict(labels))
        return add_label("second", "saw-" + labels.get("order", "nothing"))(request)

    second_url = server.route("/second", second)
    bundle = ca.bundle()
    # Stored in reverse: the configuration name decides the order, not the storage order.
    reader.configuration(
        mutating("b-second", webhook("second.example.com", url=second_url, ca_bundle=bundle))
    )
    reader.configuration(
        mutating("a-first", webhook("first.example.com", url=first, ca_bundle=bundle))
    )

    result = await admission.mutate(pod_attrs(pod()))

    assert [c.path for c in server.calls] == ["/first", "/second"]
    assert seen == [{"order": "first"}]
    assert result["metadata"]["labels"] == {"order": "first", "second": "saw-first"}


async def test_webhooks_inside_one_configuration_run_in_their_order(
    server: WebhookServer, reader: MemoryReader, admission: Admission, ca: CertAuthority
) -> None:
    bundle = ca.bundle()
    z = webhook("z.example.com", url=server.route("/z", add_label("z", "1")), ca_bundle=bundle)
    a = webhook("a.example.com", url=server.route("/a", add_label("a", "1")), ca_bundle=bundle)
    reader.configuration(mutating("only", z, a))

    await admission.mutate(pod_attrs(pod()))

    assert [c.path for c in server.calls] == ["/z", "/a"]


async def test_rules_that_do_not_match_skip_the_webhook(
    server: WebhookServer, reader: MemoryReader, admission: Admission, ca: CertAuthority
) -> None:
    url = server.route("/mutate", add_label("touched", "yes"))
    bundle = ca.bundle()
    update_only = dict(POD_CREATE, operations=["UPDATE"])
    services = dict(POD_CREATE, resources=["services"])
    status_only = dict(POD_CREATE, operations=["*"], resources=["pods/status"])
    apps_group = dict(POD_CREATE, apiGroups=["apps"], resources=["*"])
    reader.configuration(
        mutating(
            "nothing-matches",
            webhook("update.example.com", url=url, ca_bundle=bundle, rules=[update_only]),
            webhook("services.example.com", url=url, ca_bundle=bundle, rules=[services]),
            webhook("status.example.com", url=url, ca_bundle=bundle, rules=[status_only]),
            webhook("apps.example.com", url=url, ca_bundle=bundle, rules=[apps_group]),
        )
    )
    original = pod()

    result = await admission.mutate(pod_attrs(original))

    assert result == original
    assert server.calls == []

    # The same webhooks do apply to what their rules name: an UPDATE, a status write.
    updated = await admission.mutate(pod_attrs(pod(), operation="UPDATE", old=pod()))
    status = await admission.mutate(
        pod_attrs(pod(), operation="UPDATE", old=pod(), subresource="status")
    )
    assert updated["metadata"]["labels"] == {"touched": "yes"}
    assert status["metadata"]["labels"] == {"touched": "yes"}
    assert [c.request.get("subResource") for c in server.calls] == [None, "status"]


async def test_namespace_selector_excludes_kube_system(
    server: WebhookServer, reader: MemoryReader, admission: Admission, ca: CertAuthority
) -> None:
    url = server.route("/mutate", add_readiness_gate)
    not_system = {
        "matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system"]}
        ]
    }
    reader.configuration(
        mutating(
            "directlb",
            webhook(
                "pods.directlb.io", url=url, ca_bundle=ca.bundle(), namespace_selector=not_system
            ),
        )
    )

    system_pod = await admission.mutate(pod_attrs(pod("dns", "kube-system")))
    user_pod = await admission.mutate(pod_attrs(pod("web", "default")))

    assert "readinessGates" not in system_pod["spec"]
    assert user_pod["spec"]["readinessGates"] == [{"conditionType": GATE}]
    assert [c.request["namespace"] for c in server.calls] == ["default"]


async def test_object_selector_matches_new_or_old_labels(
    server: WebhookServer, reader: MemoryReader, admission: Admission, ca: CertAuthority
) -> None:
    url = server.route("/mutate", add_readiness_gate)
    inject = {"matchLabels": {"directlb.io/inject": "true"}}
    any_operation = dict(POD_CREATE, operations=["CREATE", "UPDATE"])
    reader.configuration(
        mutating(
            "directlb",
            webhook(
                "pods.directlb.io",
                url=url,
                ca_bundle=ca.bundle(),
                object_selector=inject,
                rules=[any_operation],
            ),
        )
    )
    labelled = pod("a", labels={"directlb.io/inject": "true"})

    plain = await admission.mutate(pod_attrs(pod("b")))
    chosen = await admission.mutate(pod_attrs(labelled))
    # An UPDATE that removes the label still matches through the old object.
    unlabelled = await admission.mutate(pod_attrs(pod("a"), operation="UPDATE", old=labelled))

    assert "readinessGates" not in plain["spec"]
    assert chosen["spec"]["readinessGates"] == [{"conditionType": GATE}]
    assert unlabelled["spec"]["readinessGates"] == [{"conditionType": GATE}]
    assert [c.request["name"] for c in server.calls] == ["a", "a"]


async def test_if_needed_webhook_is_reinvoked_once_after_a_later_change(
    server: WebhookServer, reader: MemoryReader, admission: Admission, ca: CertAuthority
) -> None:
    bundle = ca.bundle()
    first = webhook(
        "first.example.com",
        url=server.route("/first", add_label("first", "yes")),
        ca_bundle=bundle,
        reinvocation_policy="IfNeeded",
    )
    second = webhook(
        "second.example.com",
        url=server.route("/second", add_label("second", "yes")),
        ca_bundle=bundle,
    )
    reader.configuration(mutating("chain", first, second))

    result = await admission.mutate(pod_attrs(pod()))

    assert [c.path for c in server.calls] == ["/first", "/second", "/first"]
    assert server.calls[2].request["object"]["metadata"]["labels"] == {
        "first": "yes",
        "second": "yes",
    }
    assert result["metadata"]["labels"] == {"first": "yes", "second": "yes"}


async def test_never_reinvoked_by_default(
    server: WebhookServer, reader: MemoryReader, admission: Admission, ca: CertAuthority
) -> None:
    bundle = ca.bundle()
    reader.configuration(
        mutating(
            "chain",
            webhook("first.example.com", url=server.route("/first", allow()), ca_bundle=bundle),
            webhook(
                "second.example.com",
                url=server.route("/second", add_label("x", "y")),
                ca_bundle=bundle,
            ),
        )
    )

    await admission.mutate(pod_attrs(pod()))

    assert [c.path for c in server.calls] == ["/first", "/second"]


# ----- TLS and failure policy --------------------------------------------------------------


@pytest.mark.parametrize("policy", ["Fail", None])  # None: the v1 default, Fail
async def test_wrong_ca_bundle_fails_closed(
    server: WebhookServer, reader: MemoryReader, admission: Admission, policy: str | None
) -> None:
    url = server.route("/mutate", add_readiness_gate)
    other_ca = CertAuthority.create("someone-else")
    reader.configuration(
        mutating(
            "directlb",
            webhook(
                "pods.directlb.io", url=url, ca_bundle=other_ca.bundle(), failure_policy=policy
            ),
        )
    )

    with pytest.raises(AdmissionDenied) as denied:
        await admission.mutate(pod_attrs(pod()))

    assert denied.value.code == 500
    assert denied.value.reason == "InternalError"
    assert denied.value.message == failed_calling(
        "pods.directlb.io",
        f"{url}?timeout=10s",
        "tls: failed to verify certificate: x509: certificate signed by unknown authority",
    )
    assert denied.value.causes == [
        {"message": denied.value.message.removeprefix("Internal error occurred: ")}
    ]
    assert server.calls == []


async def test_wrong_ca_bundle_is_ignored_under_ignore(
    server: WebhookServer,
    reader: MemoryReader,
    admission: Admission,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = server.route("/mutate", add_readiness_gate)
    other_ca = CertAuthority.create("someone-else")
    reader.configuration(
        mutating(
            "directlb",
            webhook(
                "pods.directlb.io", url=url, ca_bundle=other_ca.bundle(), failure_policy="Ignore"
            ),
        )
    )
    original = pod()

    with caplog.at_level(logging.WARNING, logger="directlb.sim.admission"):
        result = await admission.mutate(pod_attrs(original))

    assert result == original
    assert server.calls == []
    [record] = caplog.records
    assert "event=webhook_failed_open" in record.getMessage()
    assert "certificate signed by unknown authority" in record.getMessage()


async def test_certificate_for_another_host_is_worded_like_go(
    ca: CertAuthority, reader: MemoryReader, admission: Admission
) -> None:
    # Listens on 127.0.0.1 with a certificate for 127.0.0.2 only.
    server = WebhookServer(ca.issue(dns=["elsewhere.example.com"], ips=["127.0.0.2"]))
    await server.start()
    try:
        url = server.route("/mutate", add_readiness_gate)
        reader.configuration(
            mutating("c", webhook("pods.directlb.io", url=url, ca_bundle=ca.bundle()))
        )
        with pytest.raises(AdmissionDenied) as denied:
            await admission.mutate(pod_attrs(pod()))
    finally:
        await server.stop()

    assert denied.value.message == failed_calling(
        "pods.directlb.io",
        f"{url}?timeout=10s",
        "tls: failed to verify certificate: "
        "x509: certificate is valid for 127.0.0.2, not 127.0.0.1",
    )


async def test_webhook_timeout_under_each_failure_policy(
    server: WebhookServer, reader: MemoryReader, admission: Admission, ca: CertAuthority
) -> None:
    url = server.route("/slow", server.hang)
    bundle = ca.bundle()
    strict = POD_CREATE
    lenient = dict(POD_CREATE, operations=["UPDATE"])
    reader.configuration(
        mutating(
            "slow",
            webhook(
                "strict.example.com", url=url, ca_bundle=bundle, timeout_seconds=1, rules=[strict]
            ),
            webhook(
                "lenient.example.com",
                url=url,
                ca_bundle=bundle,
                timeout_seconds=1,
                failure_policy="Ignore",
                rules=[lenient],
            ),
        )
    )
    original = pod()

    strict_call = admission.mutate(pod_attrs(original))
    lenient_call = admission.mutate(pod_attrs(pod(), operation="UPDATE", old=pod()))
    async with asyncio.timeout(10):
        outcomes = await asyncio.gather(strict_call, lenient_call, return_exceptions=True)

    denied, updated = outcomes
    assert isinstance(denied, AdmissionDenied)
    assert denied.code == 500
    assert denied.message == failed_calling(
        "strict.example.com", f"{url}?timeout=1s", "context deadline exceeded"
    )
    assert updated == pod()
    assert [c.query for c in server.calls] == [{"timeout": "1s"}] * 2


async def test_connection_refused_fails_closed(
    reader: MemoryReader, admission: Admission, ca: CertAuthority
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"https://127.0.0.1:{port}/mutate"
    reader.configuration(
        mutating("gone", webhook("gone.example.com", url=url, ca_bundle=ca.bundle()))
    )

    with pytest.raises(AdmissionDenied) as denied:
        await admission.mutate(pod_attrs(pod()))

    assert denied.value.message == failed_calling(
        "gone.example.com",
        f"{url}?timeout=10s",
        f"dial tcp 127.0.0.1:{port}: connect: connection refused",
    )


async def test_invalid_responses_are_call_failures(
    server: WebhookServer, reader: MemoryReader, admission: Admission, ca: CertAuthority
) -> None:
    bundle = ca.bundle()
    wrong_uid = server.route("/uid", lambda request: {"uid": "nope", "allowed": True})
    error_500 = server.route("/500", lambda request: web.Response(status=500, text="boom"))
    reader.configuration(mutating("a", webhook("uid.example.com", url=wrong_uid, ca_bundle=bundle)))

    with pytest.raises(AdmissionDenied) as uid_failure:
        await admission.mutate(pod_attrs(pod()))
    reader.configuration(
        mutating("a", webhook("http500.example.com", url=error_500, ca_bundle=bundle))
    )
    with pytest.raises(AdmissionDenied) as status_failure:
        await admission.mutate(pod_attrs(pod()))

    uid = server.calls[0].request["uid"]
    assert uid_failure.value.message == (
        'Internal error occurred: failed calling webhook "uid.example.com": '
        f'received invalid webhook response: expected response.uid="{uid}", got "nope"'
    )
    assert status_failure.value.message == (
        'Internal error occurred: failed calling webhook "http500.example.com": failed to call '
        'webhook: an error on the server ("boom") has prevented the request from succeeding'
    )


async def test_patch_that_does_not_apply_is_an_internal_error_even_under_ignore(
    server: WebhookServer, reader: MemoryReader, admission: Admission, ca: CertAuthority
) -> None:
    broken = [{"op": "add", "path": "/spec/readinessGates/-", "value": {"conditionType": GATE}}]
    url = server.route("/broken", lambda request: patch_answer(broken))
    reader.configuration(
        mutating(
            "b",
            webhook("broken.example.com", url=url, ca_bundle=ca.bundle(), failure_policy="Ignore"),
        )
    )

    with pytest.raises(AdmissionDenied) as denied:
        await admission.mutate(pod_attrs(pod()))

    assert denied.value.code == 500
    assert denied.value.message == (
        "Internal error occurred: add operation does not apply: "
        'doc is missing path: "/spec/readinessGates/-"'
    )


# ----- denials -----------------------------------------------------------------------------


async def test_denial_carries_the_webhook_message_and_code(
    server: WebhookServer, reader: MemoryReader, admission: Admission, ca: CertAuthority
) -> None:
    bundle = ca.bundle()
    reader.configuration(
        mutating(
            "policy",
            webhook(
                "policy.example.com",
                url=server.route(
                    "/deny", deny("pods must not run as root", code=403, reason="Forbidden")
                ),
                ca_bundle=bundle,
            ),
        )
    )

    with pytest.raises(AdmissionDenied) as denied:
        await admission.mutate(pod_attrs(pod()))

    assert denied.value.code == 403
    assert denied.value.reason == "Forbidden"
    assert denied.value.message == (
        'admission webhook "policy.example.com" denied the request: pods must not run as root'
    )


@pytest.mark.parametrize(
    ("behaviour", "code", "message"),
    [
        (
            deny(),
            400,
            'admission webhook "policy.example.com" denied the request without explanation',
        ),
        (
            deny(code=200, reason="NotAllowed"),
            400,
            'admission webhook "policy.example.com" denied the request: NotAllowed',
        ),
        (
            deny("quota", code=429),
            429,
            'admission webhook "policy.example.com" denied the request: quota',
        ),
    ],
)
async def test_denial_defaults(
    server: WebhookServer,
    reader: MemoryReader,
    admission: Admission,
    ca: CertAuthority,
    behaviour: Behaviour,
    code: int,
    message: str,
) -> None:
    url = server.route("/deny", behaviour)
    reader.configuration(
        validating("policy", webhook("policy.example.com", url=url, ca_bundle=ca.bundle()))
    )

    with pytest.raises(AdmissionDenied) as denied:
        await admission.validate(pod_attrs(pod()))

    assert (denied.value.code, denied.value.message) == (code, message)


async def test_validating_webhook_denial_and_parallel_calls(
    server: WebhookServer, reader: MemoryReader, admission: Admission, ca: CertAuthority
) -> None:
    bundle = ca.bundle()
    both_arrived = asyncio.Event()
    arrived: list[str] = []

    async def wait_for_both(name: str, answer: dict[str, object]) -> dict[str, object]:
        arrived.append(name)
        if len(arrived) == 2:
            both_arrived.set()
        await both_arrived.wait()  # only returns if the two calls are in flight together
        return answer

    reader.configuration(
        validating(
            "checks",
            webhook(
                "ok.example.com",
                url=server.route("/ok", lambda r: wait_for_both("ok", {"allowed": True})),
                ca_bundle=bundle,
            ),
            webhook(
                "no.example.com",
                url=server.route(
                    "/no",
                    lambda r: wait_for_both(
                        "no", {"allowed": False, "status": {"message": "nope"}}
                    ),
                ),
                ca_bundle=bundle,
            ),
        )
    )

    with pytest.raises(AdmissionDenied) as denied:
        async with asyncio.timeout(5):
            await admission.validate(pod_attrs(pod()))

    assert sorted(arrived) == ["no", "ok"]
    assert denied.value.message == 'admission webhook "no.example.com" denied the request: nope'
    assert denied.value.code == 400


async def test_validating_webhook_may_not_patch(
    server: WebhookServer, reader: MemoryReader, admission: Admission, ca: CertAuthority
) -> None:
    url = server.route("/patching", add_readiness_gate)
    reader.configuration(validating("v", webhook("v.example.com", url=url, ca_bundle=ca.bundle())))

    with pytest.raises(AdmissionDenied) as denied:
        await admission.validate(pod_attrs(pod()))

    assert denied.value.message == (
        'Internal error occurred: failed calling webhook "v.example.com": '
        "received invalid webhook response: validating webhook may not return response.patch"
    )


async def test_validating_webhook_allows(
    server: WebhookServer, reader: MemoryReader, admission: Admission, ca: CertAuthority
) -> None:
    url = server.route("/ok", allow())
    reader.configuration(validating("v", webhook("v.example.com", url=url, ca_bundle=ca.bundle())))

    await admission.validate(pod_attrs(pod()))

    assert len(server.calls) == 1


# ----- dry run -----------------------------------------------------------------------------


async def test_dry_run_needs_side_effect_free_webhooks(
    server: WebhookServer, reader: MemoryReader, admission: Admission, ca: CertAuthority
) -> None:
    bundle = ca.bundle()
    url = server.route("/mutate", add_readiness_gate)
    reader.configuration(mutating("a", webhook("safe.example.com", url=url, ca_bundle=bundle)))

    result = await admission.mutate(pod_attrs(pod(), dry_run=True))

    assert result["spec"]["readinessGates"] == [{"conditionType": GATE}]
    assert server.calls[0].request["dryRun"] is True
    assert server.calls[0].request["options"]["dryRun"] == ["All"]

    reader.configuration(
        mutating(
            "a",
            webhook(
                "unsafe.example.com",
                url=url,
                ca_bundle=bundle,
                side_effects="Unknown",
                failure_policy="Ignore",
            ),
        )
    )
    with pytest.raises(AdmissionDenied) as denied:
        await admission.mutate(pod_attrs(pod(), dry_run=True))
    assert (denied.value.code, denied.value.reason) == (400, "BadRequest")
    assert denied.value.message == 'admission webhook "unsafe.example.com" does not support dry run'
    assert len(server.calls) == 1


# ----- service references ------------------------------------------------------------------


def _service(reader: MemoryReader, server: WebhookServer, *, ready: bool = True) -> None:
    reader.put(
        "",
        "services",
        {
            "metadata": {"name": "webhook", "namespace": "ns"},
            "spec": {
                "type": "ClusterIP",
                "ports": [{"name": "https", "port": 443, "targetPort": "webhook"}],
            },
        },
    )
    reader.put(
        "discovery.k8s.io",
        "endpointslices",
        {
            "metadata": {
                "name": "webhook-abcde",
                "namespace": "ns",
                "labels": {"kubernetes.io/service-name": "webhook"},
            },
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["127.0.0.9"], "conditions": {"ready": False}},
                {"addresses": [server.host], "conditions": {"ready": ready}},
            ],
            "ports": [{"name": "https", "port": server.port, "protocol": "TCP"}],
        },
    )


async def test_service_reference_resolves_through_service_and_endpointslice(
    ca: CertAuthority, reader: MemoryReader, admission: Admission
) -> None:
    # The certificate names only the service: the endpoint address needs no SAN.
    server = WebhookServer(ca.issue(dns=["webhook.ns.svc"]))
    await server.start()
    try:
        server.route("/mutate-pods", add_readiness_gate)
        _service(reader, server)
        service = {"namespace": "ns", "name": "webhook", "path": "/mutate-pods"}
        reader.configuration(
            mutating(
                "directlb", webhook("pods.directlb.io", service=service, ca_bundle=ca.bundle())
            )
        )

        result = await admission.mutate(pod_attrs(pod()))
    finally:
        await server.stop()

    assert result["spec"]["readinessGates"] == [{"conditionType": GATE}]
    [call] = server.calls
    assert call.headers["Host"] == "webhook.ns.svc:443"
    assert call.query == {"timeout": "10s"}


async def test_service_without_ready_endpoints_fails_like_the_real_server(
    server: WebhookServer, reader: MemoryReader, admission: Admission, ca: CertAuthority
) -> None:
    server.route("/mutate-pods", add_readiness_gate)
    _service(reader, server, ready=False)
    service = {"namespace": "ns", "name": "webhook", "path": "/mutate-pods"}
    reader.configuration(
        mutating("directlb", webhook("pods.directlb.io", service=service, ca_bundle=ca.bundle()))
    )

    with pytest.raises(AdmissionDenied) as denied:
        await admission.mutate(pod_attrs(pod()))

    assert denied.value.message == failed_calling(
        "pods.directlb.io",
        "https://webhook.ns.svc:443/mutate-pods?timeout=10s",
        'no endpoints available for service "webhook"',
    )
    assert server.calls == []


async def test_service_certificate_must_name_the_service(
    ca: CertAuthority, reader: MemoryReader, admission: Admission
) -> None:
    server = WebhookServer(ca.issue(dns=["other.ns.svc"], ips=["127.0.0.1"]))
    await server.start()
    try:
        server.route("/mutate-pods", add_readiness_gate)
        _service(reader, server)
        service = {"namespace": "ns", "name": "webhook", "path": "/mutate-pods"}
        reader.configuration(
            mutating(
                "directlb", webhook("pods.directlb.io", service=service, ca_bundle=ca.bundle())
            )
        )
        with pytest.raises(AdmissionDenied) as denied:
            await admission.mutate(pod_attrs(pod()))
    finally:
        await server.stop()

    assert denied.value.message == failed_calling(
        "pods.directlb.io",
        "https://webhook.ns.svc:443/mutate-pods?timeout=10s",
        "tls: failed to verify certificate: x509: certificate is valid for other.ns.svc, "
        "not webhook.ns.svc",
    )


# ----- exemptions --------------------------------------------------------------------------


async def test_webhook_configurations_never_go_to_webhooks(
    server: WebhookServer, reader: MemoryReader, admission: Admission, ca: CertAuthority
) -> None:
    everything = {"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"]}
    config = mutating(
        "all",
        webhook(
            "all.example.com",
            url=server.route("/all", deny("no")),
            ca_bundle=ca.bundle(),
            rules=[everything],
        ),
    )
    reader.configuration(config)
    attrs = AdmissionAttributes(
        operation="UPDATE",
        key=MUTATING_CONFIG,
        subresource="",
        namespace="",
        name="all",
        obj=config,
        old_obj=config,
    )

    assert await admission.mutate(attrs) == config
    await admission.validate(attrs)
    assert server.calls == []


# ----- review versions and certificates ----------------------------------------------------


async def test_v1beta1_webhook_gets_a_v1beta1_review(
    server: WebhookServer, reader: MemoryReader, admission: Admission, ca: CertAuthority
) -> None:
    operations = [{"op": "add", "path": "/metadata/labels/legacy", "value": "yes"}]

    def legacy(request: dict[str, Any]) -> Any:
        # v1beta1 webhooks often leave out patchType; the real server assumes JSONPatch.
        answer = patch_answer(operations)
        del answer["patchType"]
        return answer

    url = server.route("/legacy", legacy)
    reader.configuration(
        mutating(
            "legacy",
            webhook(
                "legacy.example.com",
                url=url,
                ca_bundle=ca.bundle(),
                review_versions=("v1beta1", "v1"),
            ),
        )
    )

    result = await admission.mutate(pod_attrs(pod()))

    assert server.calls[0].review["apiVersion"] == "admission.k8s.io/v1beta1"
    assert result["metadata"]["labels"] == {"legacy": "yes"}


async def test_unknown_review_versions_are_a_call_failure(
    server: WebhookServer, reader: MemoryReader, admission: Admission, ca: CertAuthority
) -> None:
    url = server.route("/future", allow())
    reader.configuration(
        mutating(
            "f",
            webhook("future.example.com", url=url, ca_bundle=ca.bundle(), review_versions=["v2"]),
        )
    )

    with pytest.raises(AdmissionDenied) as denied:
        await admission.mutate(pod_attrs(pod()))

    assert denied.value.message == (
        'Internal error occurred: failed calling webhook "future.example.com": could not create '
        "admission objects: webhook does not accept known AdmissionReview versions (v1, v1beta1)"
    )
    assert server.calls == []


async def test_expired_certificate_is_worded_like_go(
    ca: CertAuthority, reader: MemoryReader, admission: Admission
) -> None:
    expired_at = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    server = WebhookServer(
        ca.issue(
            ips=["127.0.0.1"],
            not_before=expired_at - datetime.timedelta(days=30),
            not_after=expired_at,
        )
    )
    await server.start()
    try:
        url = server.route("/mutate", allow())
        reader.configuration(
            mutating("e", webhook("e.example.com", url=url, ca_bundle=ca.bundle()))
        )
        with pytest.raises(AdmissionDenied) as denied:
            await admission.mutate(pod_attrs(pod()))
    finally:
        await server.stop()

    assert (
        "tls: failed to verify certificate: x509: certificate has expired or is not yet valid: "
        in (denied.value.message)
    )
    assert denied.value.message.endswith("is after 2024-01-01T00:00:00Z")


async def test_validating_webhook_sees_a_delete(
    server: WebhookServer, reader: MemoryReader, admission: Admission, ca: CertAuthority
) -> None:
    rule = dict(POD_CREATE, operations=["DELETE"])
    url = server.route("/guard", deny("protected"))
    reader.configuration(
        validating(
            "guard", webhook("guard.example.com", url=url, ca_bundle=ca.bundle(), rules=[rule])
        )
    )
    stored = pod(labels={"protected": "true"})

    with pytest.raises(AdmissionDenied):
        await admission.validate(pod_attrs(None, operation="DELETE", old=stored))

    request = server.calls[0].request
    assert request["operation"] == "DELETE"
    assert request["object"] is None
    assert request["oldObject"] == stored
    assert request["options"] == {"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1"}
