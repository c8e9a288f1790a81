"""The webhook's CA, serving certificate, Secret shape and rotation decisions."""

from __future__ import annotations

import datetime
import ssl

import pytest
from cryptography import x509

from directlb.webhook import certs

NOW = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
DAY = datetime.timedelta(days=1)
HOSTS = [*certs.service_dns_names("directlb-webhook", "directlb-system"), "127.0.0.1"]


@pytest.fixture(scope="module")
def bundle() -> certs.Bundle:
    return certs.new_bundle(HOSTS, now=NOW)


def test_service_dns_names() -> None:
    assert certs.service_dns_names("wh", "ns") == [
        "wh",
        "wh.ns",
        "wh.ns.svc",
        "wh.ns.svc.cluster.local",
    ]


def test_serving_certificate_names_and_usage(bundle: certs.Bundle) -> None:
    cert = bundle.cert
    assert certs.sans(cert) == {*HOSTS}
    assert certs.covers(cert, HOSTS)
    assert not certs.covers(cert, ["other.ns.svc"])
    ext = cert.extensions
    assert ext.get_extension_for_class(x509.BasicConstraints).value.ca is False
    eku = ext.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.SERVER_AUTH in eku
    aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = bundle.ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert certs.signed_by(cert, bundle.ca_cert)
    assert certs.key_matches(bundle.cert_pem, bundle.key_pem)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == (
        certs.SERVING_VALIDITY + certs.BACKDATE
    )


def test_ca_constraints(bundle: certs.Bundle) -> None:
    ca = bundle.ca_cert
    basic = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    ca.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    assert ca.subject == ca.issuer


def test_strict_verification_accepts_the_chain() -> None:
    """A real TLS client with X.509 strict checks (Python 3.13's default) accepts the chain."""
    bundle = certs.new_bundle(HOSTS)  # valid now
    context = ssl.create_default_context(cadata=bundle.ca_cert_pem.decode())
    if hasattr(ssl, "VERIFY_X509_STRICT"):
        context.verify_flags |= ssl.VERIFY_X509_STRICT
    # The handshake itself is exercised in the integration test; here: the CA loads as a CA.
    assert context.get_ca_certs()[0]["subject"][0][0][1] == "directlb-webhook-ca"


def test_needs_rotation_threshold(bundle: certs.Bundle) -> None:
    cert = bundle.cert
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    two_thirds = start + (end - start) * certs.ROTATE_AT
    assert not certs.needs_rotation(cert, NOW)
    assert not certs.needs_rotation(cert, two_thirds - DAY)
    assert certs.needs_rotation(cert, two_thirds + DAY)
    assert certs.needs_rotation(cert, end)  # expired
    assert certs.needs_rotation(cert, start - DAY)  # not yet valid
    assert certs.needs_rotation(cert, end - 5 * DAY, before=7 * DAY)
    assert not certs.needs_rotation(cert, end - 10 * DAY, before=7 * DAY)


def test_serving_never_outlives_ca() -> None:
    ca_pem, key_pem = certs.new_ca(now=NOW, validity=30 * DAY)
    cert_pem, _ = certs.issue_serving(ca_cert_pem=ca_pem, ca_key_pem=key_pem, hosts=["a"], now=NOW)
    cert = x509.load_pem_x509_certificate(cert_pem)
    assert cert.not_valid_after_utc == x509.load_pem_x509_certificate(ca_pem).not_valid_after_utc


def test_secret_round_trip(bundle: certs.Bundle) -> None:
    secret = certs.secret_for(bundle, name="directlb-webhook-tls", namespace="directlb-system")
    assert secret.type == "kubernetes.io/tls"
    assert secret.data is not None
    assert {*secret.data} == {"tls.crt", "tls.key", "ca.crt", "ca.key"}
    assert certs.bundle_from_data(secret.data) == bundle
    assert certs.bundle_from_data({"tls.crt": "x"}) is None
    assert certs.bundle_from_data({**secret.data, "tls.crt": "not base64!"}) is None


def test_plan_keeps_a_sound_bundle(bundle: certs.Bundle) -> None:
    plan = certs.plan_bundle(bundle, HOSTS, now=NOW + DAY)
    assert not plan.changed and plan.bundle is bundle


def test_plan_rotates_serving_under_the_same_ca(bundle: certs.Bundle) -> None:
    late = NOW + datetime.timedelta(days=300)
    plan = certs.plan_bundle(bundle, HOSTS, now=late)
    assert plan.reason == "serving-expiring" and not plan.new_ca
    assert plan.bundle.ca_cert_pem == bundle.ca_cert_pem
    assert plan.bundle.cert.serial_number != bundle.cert.serial_number
    assert certs.signed_by(plan.bundle.cert, bundle.ca_cert)


def test_plan_repairs_names_issuer_and_key(bundle: certs.Bundle) -> None:
    plan = certs.plan_bundle(bundle, [*HOSTS, "10.0.0.1"], now=NOW)
    assert plan.reason == "serving-names" and certs.covers(plan.bundle.cert, ["10.0.0.1"])
    other = certs.new_bundle(HOSTS, now=NOW)
    foreign = certs.Bundle(bundle.ca_cert_pem, bundle.ca_key_pem, other.cert_pem, other.key_pem)
    assert certs.plan_bundle(foreign, HOSTS, now=NOW).reason == "serving-issuer"
    mismatched = certs.Bundle(bundle.ca_cert_pem, bundle.ca_key_pem, bundle.cert_pem, other.key_pem)
    assert certs.plan_bundle(mismatched, HOSTS, now=NOW).reason == "serving-key"
    garbage = certs.Bundle(bundle.ca_cert_pem, bundle.ca_key_pem, b"junk", bundle.key_pem)
    assert certs.plan_bundle(garbage, HOSTS, now=NOW).reason == "serving-invalid"


def test_plan_replaces_a_missing_or_broken_ca(bundle: certs.Bundle) -> None:
    plan = certs.plan_bundle(None, HOSTS, now=NOW)
    assert plan.reason == "missing" and plan.new_ca
    other = certs.new_bundle(HOSTS, now=NOW)
    broken = certs.Bundle(bundle.ca_cert_pem, other.ca_key_pem, bundle.cert_pem, bundle.key_pem)
    plan = certs.plan_bundle(broken, HOSTS, now=NOW)
    assert plan.new_ca and plan.bundle.ca_cert_pem != bundle.ca_cert_pem
    assert certs.plan_bundle(bundle, HOSTS, now=NOW + 3000 * DAY).new_ca
