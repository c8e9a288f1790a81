"""TC3-HMAC-SHA256 request signatures, verified the way Tencent Cloud API 3.0 does."""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime

from directlb.emulator.errors import ApiError

MAX_CLOCK_SKEW = 300  # seconds, as documented for X-TC-Timestamp
_AUTH_RE = re.compile(
    r"^TC3-HMAC-SHA256\s+Credential=(?P<id>[^/]+)/(?P<date>\d{4}-\d{2}-\d{2})/(?P<service>[^/]+)"
    r"/tc3_request,\s*SignedHeaders=(?P<headers>[a-z0-9;\-]+),\s*Signature=(?P<sig>[0-9a-f]{64})$"
)


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def tc3_signature(
    *,
    secret_key: str,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    signed_headers: list[str],
    payload: bytes,
    timestamp: int,
    date: str,
    service: str,
    unsigned_payload: bool = False,
) -> str:
    """The hex signature a client holding ``secret_key`` would have sent."""
    canonical_headers = "".join(
        f"{name}:{headers.get(name, '').strip()}\n" for name in signed_headers
    )
    # With X-TC-Content-SHA256: UNSIGNED-PAYLOAD the SDKs hash the literal string instead of
    # the body (tencentcloud/common/abstract_client.py: payload = "UNSIGNED-PAYLOAD").
    payload_hash = hashlib.sha256(b"UNSIGNED-PAYLOAD" if unsigned_payload else payload).hexdigest()
    canonical_request = "\n".join(
        [method, path, query, canonical_headers, ";".join(signed_headers), payload_hash]
    )
    scope = f"{date}/{service}/tc3_request"
    string_to_sign = "\n".join(
        [
            "TC3-HMAC-SHA256",
            str(timestamp),
            scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    key = _hmac(_hmac(_hmac(f"TC3{secret_key}".encode(), date), service), "tc3_request")
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def verify(
    *,
    secret_id: str,
    secret_key: str,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    payload: bytes,
    now: float | None = None,
) -> None:
    """Raise the AuthFailure.* error Tencent answers, or return if the signature holds.

    ``headers`` must be keyed by lower-case names.
    """
    authorization = headers.get("authorization", "")
    match = _AUTH_RE.match(authorization.strip())
    if not match:
        raise ApiError(
            "AuthFailure.InvalidAuthorization",
            "The Authorization header is not a TC3-HMAC-SHA256 signature.",
        )
    if match["id"] != secret_id:
        raise ApiError("AuthFailure.SecretIdNotFound", "The SecretId is not found.")
    try:
        timestamp = int(headers.get("x-tc-timestamp", ""))
    except ValueError:
        raise ApiError("MissingParameter", "The X-TC-Timestamp header is missing.") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > MAX_CLOCK_SKEW:
        raise ApiError(
            "AuthFailure.SignatureExpire",
            f"The signature expired: X-TC-Timestamp {timestamp} is more than "
            f"{MAX_CLOCK_SKEW} s from the server time {int(current)}.",
        )
    date = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")
    if match["date"] != date:
        raise ApiError(
            "AuthFailure.SignatureFailure",
            "The credential scope date does not match X-TC-Timestamp.",
        )
    if match["service"] != "clb":
        raise ApiError(
            "AuthFailure.SignatureFailure",
            f"The credential scope names service {match['service']!r}; this endpoint is clb.",
        )
    signed_headers = match["headers"].split(";")
    if "host" not in signed_headers or "content-type" not in signed_headers:
        raise ApiError(
            "AuthFailure.SignatureFailure", "SignedHeaders must include content-type and host."
        )
    expected = tc3_signature(
        secret_key=secret_key,
        method=method,
        path=path,
        query=query,
        headers=headers,
        signed_headers=signed_headers,
        payload=payload,
        timestamp=timestamp,
        date=match["date"],
        service=match["service"],
        unsigned_payload=headers.get("x-tc-content-sha256") == "UNSIGNED-PAYLOAD",
    )
    if not hmac.compare_digest(expected, match["sig"]):
        raise ApiError(
            "AuthFailure.SignatureFailure",
            "The provided credentials could not be validated; check your signature is correct.",
        )
