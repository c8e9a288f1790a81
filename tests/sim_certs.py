"""A throwaway certificate authority for tests that need real TLS (webhooks, the API server).

EC P-256 keys, so a CA and a few serving certificates cost milliseconds::

    ca = CertAuthority.create()
    serving = ca.issue(dns=["webhook.ns.svc"], ips=["127.0.0.1"])
    server_context = serving.server_context()       # for aiohttp / asyncio servers
    ca_bundle = ca.bundle()                          # base64 PEM, as in clientConfig.caBundle
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import ssl
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_DAY = datetime.timedelta(days=1)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass(frozen=True)
class ServingCert:
    """A leaf certificate and its key, in PEM."""

    cert_pem: bytes
    key_pem: bytes

    def server_context(self) -> ssl.SSLContext:
        """An SSL context serving this certificate."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        with tempfile.TemporaryDirectory() as directory:
            cert_file = Path(directory, "tls.crt")
            key_file = Path(directory, "tls.key")
            cert_file.write_bytes(self.cert_pem)
            key_file.write_bytes(self.key_pem)
            context.load_cert_chain(cert_file, key_file)
        return context


@dataclass(frozen=True)
class CertAuthority:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls, name: str = "directlb-test-ca") -> CertAuthority:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        public = key.public_key()
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - _DAY)
            .not_valid_after(_now() + 365 * _DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
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
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def bundle(self) -> str:
        """The CA as a ``caBundle`` value: base64 of the PEM."""
        return base64.b64encode(self.pem()).decode("ascii")

    def issue(
        self,
        *,
        dns: Sequence[str] = (),
        ips: Sequence[str] = (),
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
    ) -> ServingCert:
        """A serving certificate for ``dns`` names and ``ips``, signed by this CA."""
        key = ec.generate_private_key(ec.SECP256R1())
        common_name = dns[0] if dns else (ips[0] if ips else "server")
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or _now() - _DAY)
            .not_valid_after(not_after or _now() + 30 * _DAY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return ServingCert(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))
