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
import ssl
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from directlb.sim import certs

_DAY = datetime.timedelta(days=1)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


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
        key, cert = certs.new_ca(name, not_before=_now() - _DAY, not_after=_now() + 365 * _DAY)
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
        common_name = dns[0] if dns else (ips[0] if ips else "server")
        key, cert = certs.issue(
            self.key,
            self.cert,
            [*dns, *ips],
            common_name=common_name,
            not_before=not_before or _now() - _DAY,
            not_after=not_after or _now() + 30 * _DAY,
        )
        return ServingCert(
            cert.public_bytes(serialization.Encoding.PEM), certs.private_key_pem(key)
        )
