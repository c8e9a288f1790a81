"""The guardian's pure checks: what counts as a broken configuration, and the Secret's contents."""

from __future__ import annotations

import base64
import copy
import datetime
from typing import Any

import pytest
from lightkube.resources.admissionregistration_v1 import MutatingWebhookConfiguration
from lightkube.resources.core_v1 import Secret

from directlb.kube.informer import ADDED, DELETED, Event
from directlb.webhook import certs
from directlb.webhook.guardian import (
    Target,
    ca_certificates,
    configuration_problems,
    repaired_configuration,
    tls_from_secret,
    with_ca,
)
from directlb.webhook.server import ReloadingTLS

NOW = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
SERVICE_TARGET = Target(namespace="directlb-system")
URL_TARGET = Target(
    namespace="kube-system", service=None, url="https://127.0.0.1:9443/mutate-v1-pod"
)


@pytest.fixture(scope="module")
def bundle() -> certs.Bundle:
    return certs.new_bundle(SERVICE_TARGET.hosts, now=NOW)


def as_server_returns(configuration: MutatingWebhookConfiguration) -> dict[str, Any]:
    return copy.deepcopy(configuration.to_dict())


def codes(actual: dict[str, Any] | None, desired: MutatingWebhookConfiguration) -> list[str]:
    parsed = MutatingWebhookConfiguration.from_dict(actual) if actual is not None else None
    return [p.code for p in configuration_problems(parsed, desired)]


def test_target_hosts() -> None:
    assert SERVICE_TARGET.hosts == certs.service_dns_names("directlb-webhook", "directlb-system")
    assert URL_TARGET.hosts == ["127.0.0.1"]
    both = Target(namespace="ns", url="https://[::1]:1/x", service=None, extra_hosts=("a.b",))
    assert both.hosts == ["::1", "a.b"]
    with pytest.raises(ValueError):
        Target(namespace="ns", service="s", url="https://x/")
    with pytest.raises(ValueError):
        Target(namespace="ns", service=None)


def test_the_configuration_we_build_is_sound(bundle: certs.Bundle) -> None:
    desired = SERVICE_TARGET.configuration(bundle.ca_cert_pem)
    assert codes(as_server_returns(desired), desired) == []
    assert codes(None, desired) == ["missing"]


def test_server_defaults_are_not_differences(bundle: certs.Bundle) -> None:
    """A configuration written without the fields the API server defaults reads back with
    them; neither form is a problem."""
    desired = SERVICE_TARGET.configuration(bundle.ca_cert_pem)
    minimal = as_server_returns(desired)
    hook = minimal["webhooks"][0]
    for key in ("matchPolicy", "objectSelector", "reinvocationPolicy"):
        del hook[key]
    del hook["clientConfig"]["service"]["port"]
    assert codes(minimal, desired) == []


@pytest.mark.parametrize(
    ("path", "value", "code"),
    [
        (("rules", 0, "operations"), ["CREATE", "UPDATE"], "rules"),
        (("rules", 0, "resources"), ["pods", "services"], "rules"),
        (("rules", 0, "scope"), "*", "rules"),
        (("failurePolicy",), "Fail", "failure-policy"),
        (("namespaceSelector",), {}, "namespace-selector"),
        (("clientConfig", "service", "name"), "impostor", "client-config"),
        (("clientConfig", "service", "port"), 8443, "client-config"),
        (("clientConfig", "service", "path"), "/other", "client-config"),
        (("timeoutSeconds",), 30, "settings"),
        (("sideEffects",), "NoneOnDryRun", "settings"),
        (("objectSelector",), {"matchLabels": {"a": "b"}}, "settings"),
        (("reinvocationPolicy",), "IfNeeded", "settings"),
        (("admissionReviewVersions",), ["v1", "v1beta1"], "settings"),
    ],
)
def test_each_alteration_is_a_problem(
    bundle: certs.Bundle, path: tuple[Any, ...], value: Any, code: str
) -> None:
    desired = SERVICE_TARGET.configuration(bundle.ca_cert_pem)
    actual = as_server_returns(desired)
    node: Any = actual["webhooks"][0]
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    assert codes(actual, desired) == [code]


def test_removed_field_that_the_server_defaults_differently(bundle: certs.Bundle) -> None:
    desired = SERVICE_TARGET.configuration(bundle.ca_cert_pem)
    actual = as_server_returns(desired)
    del actual["webhooks"][0]["failurePolicy"]  # reads back as Fail
    del actual["webhooks"][0]["timeoutSeconds"]  # reads back as 10
    assert codes(actual, desired) == ["failure-policy", "settings"]


def test_ca_bundle(bundle: certs.Bundle) -> None:
    desired = SERVICE_TARGET.configuration(bundle.ca_cert_pem)
    other_ca, _ = certs.new_ca(now=NOW)
    cases = {
        "other": base64.b64encode(other_ca).decode(),
        "garbage": base64.b64encode(b"junk").decode(),
        "not base64": "%%%",
        "ours and another": base64.b64encode(bundle.ca_cert_pem + other_ca).decode(),
    }
    for name, ca_bundle in cases.items():
        actual = as_server_returns(desired)
        actual["webhooks"][0]["clientConfig"]["caBundle"] = ca_bundle
        assert codes(actual, desired) == ["ca-bundle"], name
    actual = as_server_returns(desired)
    del actual["webhooks"][0]["clientConfig"]["caBundle"]
    [problem] = configuration_problems(MutatingWebhookConfiguration.from_dict(actual), desired)
    assert problem.code == "ca-bundle" and "missing" in problem.detail
    # The same CA, re-encoded with other line breaks, is still ours.
    pem = bundle.ca_cert_pem.replace(b"\n", b"\r\n")
    actual = as_server_returns(desired)
    actual["webhooks"][0]["clientConfig"]["caBundle"] = base64.b64encode(pem).decode()
    assert codes(actual, desired) == []
    assert ca_certificates(None) is None


def test_ca_bundle_during_a_ca_rotation(bundle: certs.Bundle) -> None:
    """While a new CA rolls out, ours plus a replaced CA is fine; after, the replaced CA is a
    problem. A caBundle without our CA, or unreadable, is a problem at once."""
    desired = SERVICE_TARGET.configuration(bundle.ca_cert_pem)
    old_ca, _ = certs.new_ca(now=NOW)

    def problems(ca_bundle: str, *, old_cas_allowed: bool) -> list[str]:
        actual = as_server_returns(desired)
        actual["webhooks"][0]["clientConfig"]["caBundle"] = ca_bundle
        parsed = MutatingWebhookConfiguration.from_dict(actual)
        return [
            p.code for p in configuration_problems(parsed, desired, old_cas_allowed=old_cas_allowed)
        ]

    both = with_ca(base64.b64encode(old_ca).decode(), bundle.ca_cert_pem)
    assert ca_certificates(both) == (
        ca_certificates(base64.b64encode(old_ca + bundle.ca_cert_pem).decode())
    )
    assert problems(both, old_cas_allowed=True) == []
    assert problems(both, old_cas_allowed=False) == ["ca-bundle"]
    only_old = base64.b64encode(old_ca).decode()
    garbage = base64.b64encode(b"junk").decode()
    for broken in (only_old, garbage, ""):
        assert problems(broken, old_cas_allowed=True) == ["ca-bundle"]
    ours = base64.b64encode(bundle.ca_cert_pem).decode()
    assert problems(ours, old_cas_allowed=True) == []


def test_with_ca_keeps_readable_cas_once(bundle: certs.Bundle) -> None:
    ours = base64.b64encode(bundle.ca_cert_pem).decode()
    assert ca_certificates(with_ca(ours, bundle.ca_cert_pem)) == ca_certificates(ours)
    assert ca_certificates(with_ca("%%%", bundle.ca_cert_pem)) == ca_certificates(ours)
    assert ca_certificates(with_ca(None, bundle.ca_cert_pem)) == ca_certificates(ours)


def test_a_repair_during_a_ca_rotation_can_keep_the_live_ca_bundle(bundle: certs.Bundle) -> None:
    desired = SERVICE_TARGET.configuration(bundle.ca_cert_pem)
    old_ca, _ = certs.new_ca(now=NOW)
    both = with_ca(base64.b64encode(old_ca).decode(), bundle.ca_cert_pem)
    actual = as_server_returns(desired)
    actual["webhooks"][0]["clientConfig"]["caBundle"] = both
    actual["webhooks"][0]["rules"] = []
    live = MutatingWebhookConfiguration.from_dict(actual)
    kept = repaired_configuration(live, desired, keep_ca_bundle=True)
    assert (kept.webhooks or [])[0].clientConfig.caBundle == both
    assert configuration_problems(kept, desired, old_cas_allowed=True) == []
    restored = repaired_configuration(live, desired)
    assert configuration_problems(restored, desired) == []


def test_url_and_service_are_told_apart(bundle: certs.Bundle) -> None:
    by_url = URL_TARGET.configuration(bundle.ca_cert_pem)
    by_service = Target(namespace="kube-system").configuration(bundle.ca_cert_pem)
    [problem] = configuration_problems(by_service, by_url)
    assert problem.code == "client-config"
    assert "service kube-system/directlb-webhook:443/mutate-v1-pod" in problem.detail
    assert "https://127.0.0.1:9443/mutate-v1-pod" in problem.detail


def test_webhooks_missing_or_extra(bundle: certs.Bundle) -> None:
    desired = SERVICE_TARGET.configuration(bundle.ca_cert_pem)
    actual = as_server_returns(desired)
    actual["webhooks"].append({**actual["webhooks"][0], "name": "stranger.example.com"})
    [problem] = configuration_problems(MutatingWebhookConfiguration.from_dict(actual), desired)
    assert problem.code == "webhooks" and "stranger.example.com" in problem.detail
    actual["webhooks"] = actual["webhooks"][1:]
    assert codes(actual, desired) == ["webhooks", "webhooks"]  # ours missing, a stranger
    actual["webhooks"] = []
    assert codes(actual, desired) == ["webhooks"]


def test_several_problems_at_once(bundle: certs.Bundle) -> None:
    desired = SERVICE_TARGET.configuration(bundle.ca_cert_pem)
    actual = as_server_returns(desired)
    hook = actual["webhooks"][0]
    hook["rules"] = []
    hook["clientConfig"]["caBundle"] = ""
    hook["failurePolicy"] = "Fail"
    assert sorted(codes(actual, desired)) == ["ca-bundle", "failure-policy", "rules"]


def test_repair_keeps_metadata_and_restores_webhooks(bundle: certs.Bundle) -> None:
    desired = SERVICE_TARGET.configuration(bundle.ca_cert_pem)
    actual = as_server_returns(desired)
    actual["metadata"].update(
        resourceVersion="42",
        uid="u-1",
        labels={"team": "x", "app.kubernetes.io/name": "other"},
        annotations={"note": "kept"},
    )
    actual["webhooks"][0]["rules"] = []
    repaired = repaired_configuration(MutatingWebhookConfiguration.from_dict(actual), desired)
    assert repaired.metadata is not None
    assert repaired.metadata.resourceVersion == "42"
    assert repaired.metadata.annotations == {"note": "kept"}
    assert repaired.metadata.labels is not None and repaired.metadata.labels["team"] == "x"
    assert repaired.metadata.labels["app.kubernetes.io/name"] == "directlb"
    assert configuration_problems(repaired, desired) == []
    assert repaired_configuration(None, desired) is desired


# ----- the Secret --------------------------------------------------------------------------


def test_bundle_in_secret_keeps_the_ca_when_the_serving_half_is_damaged(
    bundle: certs.Bundle,
) -> None:
    data = certs.secret_data(bundle)
    assert certs.bundle_in_secret(data) == bundle
    for key in (certs.TLS_CRT, certs.TLS_KEY):
        damaged = {**data, key: "%%%"}
        kept = certs.bundle_in_secret(damaged)
        assert kept is not None and kept.ca_cert_pem == bundle.ca_cert_pem
        plan = certs.plan_bundle(kept, SERVICE_TARGET.hosts, now=NOW)
        assert plan.reason == "serving-invalid" and not plan.new_ca
        missing = {k: v for k, v in data.items() if k != key}
        assert certs.plan_bundle(
            certs.bundle_in_secret(missing), SERVICE_TARGET.hosts, now=NOW
        ).reason == ("serving-invalid")
    for key in (certs.CA_CRT, certs.CA_KEY):
        assert certs.bundle_in_secret({k: v for k, v in data.items() if k != key}) is None
    assert certs.bundle_in_secret(None) is None
    assert certs.bundle_in_secret({}) is None


def test_tls_follows_the_secret(bundle: certs.Bundle) -> None:
    first = certs.new_bundle(URL_TARGET.hosts, now=NOW)
    tls = ReloadingTLS(first.cert_pem, first.key_pem)
    handler = tls_from_secret(tls, name="tls", namespace="ns")

    def secret(name: str, namespace: str, data: dict[str, str]) -> Secret:
        return Secret.from_dict({"metadata": {"name": name, "namespace": namespace}, "data": data})

    rotated = certs.rotate_serving(first, URL_TARGET.hosts, now=NOW)
    handler(Event(ADDED, secret("other", "ns", certs.secret_data(rotated))))
    handler(Event(DELETED, secret("tls", "ns", certs.secret_data(rotated))))
    assert tls.reloads == 0
    handler(Event(ADDED, secret("tls", "ns", certs.secret_data(rotated))))
    assert tls.reloads == 1
    mismatched = certs.secret_data(rotated) | {certs.TLS_KEY: certs.secret_data(first)["tls.key"]}
    handler(Event(ADDED, secret("tls", "ns", mismatched)))
    assert (tls.reloads, tls.reload_errors) == (1, 1)  # refused, the rotated pair still served
    handler(Event(ADDED, secret("tls", "ns", {})))  # nothing usable: ignored
    assert (tls.reloads, tls.reload_errors) == (1, 1)
