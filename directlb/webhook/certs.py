"""The webhook's certificate authority and serving certificate, and the Secret that keeps them.

The API server calls the webhook over HTTPS and verifies it against the configuration's
``caBundle``. We therefore run our own small CA: a long-lived self-signed CA (its certificate is
the ``caBundle``) and a shorter-lived serving certificate for the webhook Service's DNS names,
signed by it. Rotating the serving certificate under the same CA changes nothing the API server
knows about, so rotation never breaks pod creation; only a new CA needs a new ``caBundle``.

Everything here is a pure function of its inputs (keys are random, the clock is a parameter), so
the self-healing guardian can decide *what* to repair with :func:`plan_bundle` and then write the
result with :func:`secret_data` / :func:`secret_for`.

The Secret has the ``kubernetes.io/tls`` shape (``tls.crt``, ``tls.key``, ``ca.crt``) plus
``ca.key``, the CA's private key, so whichever replica rotates the serving certificate signs it
with the same CA.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Secret

CA_VALIDITY = datetime.timedelta(days=3650)
SERVING_VALIDITY = datetime.timedelta(days=365)
# Certificates are valid from a little before "now", for clocks that lag ours.
BACKDATE = datetime.timedelta(minutes=5)
# Rotate once this fraction of a certificate's lifetime is gone (a third is left).
ROTATE_AT = 2 / 3

TLS_CRT = "tls.crt"
TLS_KEY = "tls.key"
CA_CRT = "ca.crt"
CA_KEY = "ca.key"
SECRET_TYPE = "kubernetes.io/tls"

Key = ec.EllipticCurvePrivateKey


def service_dns_names(service: str, namespace: str) -> list[str]:
    """The names the API server may use for a service webhook (it verifies ``<svc>.<ns>.svc``)."""
    return [
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
    ]


@dataclass(frozen=True)
class Bundle:
    """A CA and a serving certificate signed by it, all PEM."""

    ca_cert_pem: bytes
    ca_key_pem: bytes
    cert_pem: bytes
    key_pem: bytes

    @property
    def ca_cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.ca_cert_pem)

    @property
    def cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)

    def ca_key(self) -> Key:
        key = serialization.load_pem_private_key(self.ca_key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("the CA key is not an EC private key")
        return key


def _utc(now: datetime.datetime | None) -> datetime.datetime:
    return now if now is not None else datetime.datetime.now(datetime.UTC)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: Key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _general_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def new_ca(
    *,
    now: datetime.datetime | None = None,
    validity: datetime.timedelta = CA_VALIDITY,
    common_name: str = "directlb-webhook-ca",
) -> tuple[bytes, bytes]:
    """A self-signed CA: ``(cert_pem, key_pem)``.

    basicConstraints CA (critical), keyUsage keyCertSign+cRLSign (critical) and both key
    identifiers: Python 3.13's ``VERIFY_X509_STRICT`` and Go's verifier reject CAs without them.
    """
    start = _utc(now)
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - BACKDATE)
        .not_valid_after(start + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return _pem(cert), _key_pem(key)


def issue_serving(
    *,
    ca_cert_pem: bytes,
    ca_key_pem: bytes,
    hosts: Sequence[str],
    now: datetime.datetime | None = None,
    validity: datetime.timedelta = SERVING_VALIDITY,
) -> tuple[bytes, bytes]:
    """A serving certificate for ``hosts`` (DNS names or IP addresses): ``(cert_pem, key_pem)``.

    Never valid beyond its CA. The first host is the common name (informational only: verifiers
    look at the SANs)."""
    if not hosts:
        raise ValueError("a serving certificate needs at least one host")
    start = _utc(now)
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    ca_key = Bundle(ca_cert_pem, ca_key_pem, b"", b"").ca_key()
    key = ec.generate_private_key(ec.SECP256R1())
    not_after = min(start + validity, ca_cert.not_valid_after_utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0][:64]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(_general_names(hosts)), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return _pem(cert), _key_pem(key)


def new_bundle(
    hosts: Sequence[str],
    *,
    now: datetime.datetime | None = None,
    ca_validity: datetime.timedelta = CA_VALIDITY,
    validity: datetime.timedelta = SERVING_VALIDITY,
) -> Bundle:
    """A fresh CA and a serving certificate for ``hosts``."""
    ca_cert_pem, ca_key_pem = new_ca(now=now, validity=ca_validity)
    return rotate_serving(
        Bundle(ca_cert_pem, ca_key_pem, b"", b""), hosts, now=now, validity=validity
    )


def rotate_serving(
    bundle: Bundle,
    hosts: Sequence[str],
    *,
    now: datetime.datetime | None = None,
    validity: datetime.timedelta = SERVING_VALIDITY,
) -> Bundle:
    """The same CA with a new serving certificate (the ``caBundle`` stays valid)."""
    cert_pem, key_pem = issue_serving(
        ca_cert_pem=bundle.ca_cert_pem,
        ca_key_pem=bundle.ca_key_pem,
        hosts=hosts,
        now=now,
        validity=validity,
    )
    return Bundle(bundle.ca_cert_pem, bundle.ca_key_pem, cert_pem, key_pem)


# ----- checks ------------------------------------------------------------------------------


def needs_rotation(
    cert: x509.Certificate,
    now: datetime.datetime,
    *,
    before: datetime.timedelta | None = None,
) -> bool:
    """Whether ``cert`` should be replaced at ``now``.

    ``before``: rotate when less than this is left; by default, when less than a third of the
    certificate's lifetime is left (at 2/3 of it: 4 months early for a 1-year certificate).
    Not yet valid or already expired certificates always need rotation."""
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    if now < start or now >= end:
        return True
    margin = before if before is not None else (end - start) * (1 - ROTATE_AT)
    return end - now <= margin


def sans(cert: x509.Certificate) -> set[str]:
    """The DNS names and IP addresses (as text) a certificate is valid for."""
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {*names.get_values_for_type(x509.DNSName)} | {
        str(ip) for ip in names.get_values_for_type(x509.IPAddress)
    }


def covers(cert: x509.Certificate, hosts: Sequence[str]) -> bool:
    """Whether ``cert`` carries every one of ``hosts`` among its SANs."""
    have = sans(cert)
    return all(_canonical(h) in have for h in hosts)


def _canonical(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    """Whether ``ca`` signed ``cert`` (issuer name and signature)."""
    if cert.issuer != ca.subject:
        return False
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def key_matches(cert_pem: bytes, key_pem: bytes) -> bool:
    cert = x509.load_pem_x509_certificate(cert_pem)
    key = serialization.load_pem_private_key(key_pem, password=None)
    return cert.public_key() == key.public_key()


@dataclass(frozen=True)
class Plan:
    """What :func:`plan_bundle` decided: the bundle to keep, and why it changed (if it did)."""

    bundle: Bundle
    reason: str | None  # None: keep the existing bundle as it is
    new_ca: bool = False  # the caBundle of the webhook configuration must change too

    @property
    def changed(self) -> bool:
        return self.reason is not None


def plan_bundle(
    existing: Bundle | None,
    hosts: Sequence[str],
    *,
    now: datetime.datetime,
    before: datetime.timedelta | None = None,
) -> Plan:
    """Keep ``existing`` if it is sound; otherwise repair it with as little change as possible.

    A broken or expiring CA means a new CA (and a new ``caBundle``); a serving certificate that
    is missing, expiring, not for ``hosts``, not signed by the CA or not matching its key is
    re-issued under the same CA."""
    if existing is None:
        return Plan(new_bundle(hosts, now=now), "missing", new_ca=True)
    try:
        ca = existing.ca_cert
        existing.ca_key()
        ca_ok = key_matches(existing.ca_cert_pem, existing.ca_key_pem)
    except ValueError:
        ca_ok = False
    if not ca_ok or needs_rotation(ca, now, before=before):
        return Plan(new_bundle(hosts, now=now), "ca-invalid-or-expiring", new_ca=True)
    try:
        cert = existing.cert
        reason = (
            "serving-expiring"
            if needs_rotation(cert, now, before=before)
            else "serving-names"
            if not covers(cert, hosts)
            else "serving-issuer"
            if not signed_by(cert, ca)
            else "serving-key"
            if not key_matches(existing.cert_pem, existing.key_pem)
            else None
        )
    except ValueError:
        reason = "serving-invalid"
    if reason is None:
        return Plan(existing, None)
    return Plan(rotate_serving(existing, hosts, now=now), reason)


# ----- the Secret --------------------------------------------------------------------------


def secret_data(bundle: Bundle) -> dict[str, str]:
    """The Secret's ``data`` (base64, as the API carries it)."""
    raw = {
        TLS_CRT: bundle.cert_pem,
        TLS_KEY: bundle.key_pem,
        CA_CRT: bundle.ca_cert_pem,
        CA_KEY: bundle.ca_key_pem,
    }
    return {k: base64.b64encode(v).decode() for k, v in raw.items()}


def bundle_from_data(data: Mapping[str, str] | None) -> Bundle | None:
    """The bundle in a Secret's ``data``; None when a key is missing or not base64."""
    if not data or any(k not in data for k in (TLS_CRT, TLS_KEY, CA_CRT, CA_KEY)):
        return None
    try:
        decoded = {k: base64.b64decode(data[k], validate=True) for k in data}
    except ValueError:
        return None
    return Bundle(
        ca_cert_pem=decoded[CA_CRT],
        ca_key_pem=decoded[CA_KEY],
        cert_pem=decoded[TLS_CRT],
        key_pem=decoded[TLS_KEY],
    )


def bundle_in_secret(data: Mapping[str, str] | None) -> Bundle | None:
    """The bundle in a Secret's ``data``, tolerating a damaged serving half.

    None when the CA (``ca.crt`` and ``ca.key``) is missing or not base64: then nothing can be
    kept. A missing or undecodable ``tls.crt``/``tls.key`` becomes empty bytes, so that
    :func:`plan_bundle` re-issues the serving certificate under the same CA (``serving-invalid``)
    instead of replacing a CA the API server already trusts."""
    if not data:
        return None

    def decoded(key: str) -> bytes | None:
        value = data.get(key)
        if not value:
            return None
        try:
            return base64.b64decode(value, validate=True)
        except ValueError:
            return None

    ca_cert_pem, ca_key_pem = decoded(CA_CRT), decoded(CA_KEY)
    if not ca_cert_pem or not ca_key_pem:
        return None
    return Bundle(
        ca_cert_pem=ca_cert_pem,
        ca_key_pem=ca_key_pem,
        cert_pem=decoded(TLS_CRT) or b"",
        key_pem=decoded(TLS_KEY) or b"",
    )


def secret_for(
    bundle: Bundle, *, name: str, namespace: str, labels: Mapping[str, str] | None = None
) -> Secret:
    """The ``kubernetes.io/tls`` Secret that keeps ``bundle``."""
    return Secret(
        metadata=ObjectMeta(name=name, namespace=namespace, labels=dict(labels or {})),
        type=SECRET_TYPE,
        data=secret_data(bundle),
    )
