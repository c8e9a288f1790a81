"""The simulator's own certificate authority and serving certificate (``cryptography``).

The CA signs one serving certificate for the listen address (plus ``localhost`` and
``127.0.0.1``); the kubeconfig carries the CA, so kubectl and lightkube verify the server as
they would a real cluster. With a state directory both are kept and reused across restarts, so
a kubeconfig written once stays valid.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=3650)


@dataclass(frozen=True)
class ServingCerts:
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes

    def write(self, directory: Path) -> tuple[Path, Path, Path]:
        directory.mkdir(parents=True, exist_ok=True)
        paths = (directory / "ca.crt", directory / "apiserver.crt", directory / "apiserver.key")
        for path, data in zip(paths, (self.ca_pem, self.cert_pem, self.key_pem), strict=True):
            path.write_bytes(data)
        paths[2].chmod(0o600)
        return paths

    @classmethod
    def read(cls, directory: Path) -> ServingCerts | None:
        paths = (directory / "ca.crt", directory / "apiserver.crt", directory / "apiserver.key")
        if not all(p.exists() for p in paths):
            return None
        ca, cert, key = (p.read_bytes() for p in paths)
        return cls(ca, cert, key)

    def covers(self, host: str) -> bool:
        cert = x509.load_pem_x509_certificate(self.cert_pem)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        try:
            return ipaddress.ip_address(host) in names.get_values_for_type(x509.IPAddress)
        except ValueError:
            return host in names.get_values_for_type(x509.DNSName)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _san(hosts: list[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            entries.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(entries)


CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)
Key = ec.EllipticCurvePrivateKey


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    key: Key,
    *,
    not_before: datetime.datetime | None,
    not_after: datetime.datetime | None,
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - datetime.timedelta(minutes=5))
        .not_valid_after(not_after or now + VALIDITY)
    )


def private_key_pem(key: Key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def new_ca(
    common_name: str,
    *,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
) -> tuple[Key, x509.Certificate]:
    """A self-signed CA (EC P-256; valid from 5 minutes ago for ``VALIDITY`` by default)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name)
    cert = (
        _builder(name, name, key, not_before=not_before, not_after=not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(CA_KEY_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def issue(
    ca_key: Key,
    ca_cert: x509.Certificate,
    hosts: Sequence[str],
    *,
    common_name: str,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
) -> tuple[Key, x509.Certificate]:
    """A serving certificate for ``hosts`` (IPs or DNS names; no SAN when empty) by the CA.

    It carries the authority key identifier, which strict verifiers (Python 3.13's default
    ``VERIFY_X509_STRICT``) require.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        _builder(
            _name(common_name), ca_cert.subject, key, not_before=not_before, not_after=not_after
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if hosts:
        builder = builder.add_extension(_san(list(hosts)), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def generate(hosts: list[str]) -> ServingCerts:
    """A fresh CA and a serving certificate for ``hosts`` (IPs or DNS names)."""
    ca_key, ca_cert = new_ca("directlb-sim-ca")
    names = [*hosts, "localhost", "127.0.0.1", "kubernetes", "kubernetes.default"]
    key, cert = issue(ca_key, ca_cert, names, common_name="kube-apiserver")
    return ServingCerts(
        ca_pem=ca_cert.public_bytes(serialization.Encoding.PEM),
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=private_key_pem(key),
    )


def load_or_generate(directory: Path | None, hosts: list[str]) -> ServingCerts:
    """Reuse the certificates in ``directory`` when they cover ``hosts``; else make new ones."""
    if directory is not None:
        existing = ServingCerts.read(directory)
        if existing is not None and all(existing.covers(h) for h in hosts):
            return existing
    certs = generate(hosts)
    if directory is not None:
        certs.write(directory)
    return certs
