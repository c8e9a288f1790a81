"""TC3-HMAC-SHA256 verification against requests signed by the official SDK's own signer.

The requests are built by ``ClbClient._build_req_with_tc3_signature`` (sync and async clients),
exactly as they would be sent, without sending them; then mutated one field at a time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tencentcloud.clb.v20180317 import clb_client, clb_client_async
from tencentcloud.common.credential import Credential
from tencentcloud.common.http.request import RequestInternal
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile

from directlb.emulator import auth
from directlb.emulator.errors import ApiError

SECRET_ID = "AKIDunittest0001"
SECRET_KEY = "unit-test-secret-key"
REGION = "ap-guangzhou"
ENDPOINT = "127.0.0.1:9"
PARAMS: dict[str, Any] = {"LoadBalancerIds": ["lb-abcdefgh"], "Limit": 20}


@dataclass(frozen=True)
class Signed:
    """A request as it leaves the SDK: what ``auth.verify`` needs to see of it."""

    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-case names, as the server hands them to verify
    payload: bytes

    @property
    def timestamp(self) -> int:
        return int(self.headers["x-tc-timestamp"])

    def with_headers(self, **changes: str | None) -> Signed:
        headers = dict(self.headers)
        for name, value in changes.items():
            key = name.replace("_", "-")
            if value is None:
                headers.pop(key, None)
            else:
                headers[key] = value
        return replace(self, headers=headers)


def _profile(endpoint: str, *, unsigned: bool) -> ClientProfile:
    profile = ClientProfile(httpProfile=HttpProfile(endpoint=endpoint, protocol="http"))
    profile.unsignedPayload = unsigned
    return profile


def sdk_sign(
    params: dict[str, Any] | None = None,
    *,
    secret_id: str = SECRET_ID,
    secret_key: str = SECRET_KEY,
    endpoint: str = ENDPOINT,
    unsigned: bool = False,
    action: str = "DescribeLoadBalancers",
) -> Signed:
    """Sign a request with the synchronous client's signer, the one tccli also goes through."""
    client = clb_client.ClbClient(
        Credential(secret_id, secret_key), REGION, _profile(endpoint, unsigned=unsigned)
    )
    req = RequestInternal(client._get_endpoint(), "POST", client._requestPath, header={})
    client._build_req_with_tc3_signature(action, PARAMS if params is None else params, req)
    data = req.data.encode() if isinstance(req.data, str) else req.data
    return Signed(
        method=req.method,
        path=req.uri,
        query="",
        headers={k.lower(): str(v) for k, v in req.header.items()},
        payload=data,
    )


async def sdk_sign_async(*, endpoint: str = ENDPOINT, unsigned: bool = False) -> Signed:
    """Sign with the async client (``clb_client_async``), which builds an httpx.Request."""
    client = clb_client_async.ClbClient(
        Credential(SECRET_ID, SECRET_KEY), REGION, _profile(endpoint, unsigned=unsigned)
    )
    try:
        request = client._build_req("DescribeLoadBalancers", PARAMS, {}, {})
    finally:
        await client.close()
    return Signed(
        method=request.method,
        path=request.url.path,
        query=request.url.query.decode(),
        headers={k.lower(): v for k, v in request.headers.items()},
        payload=request.content,
    )


def check(
    signed: Signed,
    *,
    now: float | None = None,
    secret_id: str = SECRET_ID,
    secret_key: str = SECRET_KEY,
) -> None:
    auth.verify(
        secret_id=secret_id,
        secret_key=secret_key,
        method=signed.method,
        path=signed.path,
        query=signed.query,
        headers=signed.headers,
        payload=signed.payload,
        now=signed.timestamp if now is None else now,
    )


def rejected(signed: Signed, **kwargs: Any) -> ApiError:
    with pytest.raises(ApiError) as caught:
        check(signed, **kwargs)
    return caught.value


# ----- what the SDK sends verifies -------------------------------------------------------------


def test_sdk_signed_request_verifies() -> None:
    signed = sdk_sign()
    assert signed.headers["authorization"].startswith(f"TC3-HMAC-SHA256 Credential={SECRET_ID}/")
    assert json.loads(signed.payload) == PARAMS
    check(signed)  # raises on failure


def test_verify_uses_the_real_clock_when_now_is_omitted() -> None:
    signed = sdk_sign()  # stamped with time.time() a moment ago
    auth.verify(
        secret_id=SECRET_ID,
        secret_key=SECRET_KEY,
        method=signed.method,
        path=signed.path,
        query=signed.query,
        headers=signed.headers,
        payload=signed.payload,
    )


async def test_async_sdk_signed_request_verifies() -> None:
    signed = await sdk_sign_async()
    assert signed.headers["host"] == ENDPOINT
    assert signed.path == "/"
    check(signed)


def test_tc3_signature_reproduces_the_sdk_signature() -> None:
    signed = sdk_sign()
    sent = signed.headers["authorization"].rsplit("Signature=", 1)[1]
    date = signed.headers["authorization"].split("/")[1]
    expected = auth.tc3_signature(
        secret_key=SECRET_KEY,
        method="POST",
        path="/",
        query="",
        headers=signed.headers,
        signed_headers=["content-type", "host"],
        payload=signed.payload,
        timestamp=signed.timestamp,
        date=date,
        service="clb",
    )
    assert expected == sent


def test_host_with_scheme_verifies_when_signed_that_way() -> None:
    # tccli passes --endpoint with its scheme; the SDK then signs and sends Host: http://...
    signed = sdk_sign(endpoint=f"http://{ENDPOINT}")
    assert signed.headers["host"] == f"http://{ENDPOINT}"
    check(signed)
    # ...and the scheme is part of what was signed.
    assert rejected(signed.with_headers(host=ENDPOINT)).code == "AuthFailure.SignatureFailure"


@given(
    params=st.dictionaries(
        st.text(min_size=1, max_size=12),
        st.one_of(
            st.integers(), st.text(max_size=20), st.booleans(), st.lists(st.integers(), max_size=3)
        ),
        max_size=5,
    )
)
@settings(max_examples=40, deadline=None)
def test_any_sdk_body_verifies_and_any_body_change_fails(params: dict[str, Any]) -> None:
    signed = sdk_sign(params)
    check(signed)
    tampered = replace(signed, payload=signed.payload + b" ")
    assert rejected(tampered).code == "AuthFailure.SignatureFailure"


# ----- credentials, body, headers ------------------------------------------------------------


def test_unknown_secret_id_is_secret_id_not_found() -> None:
    signed = sdk_sign(secret_id="AKIDsomebodyelse")
    error = rejected(signed)
    assert error.code == "AuthFailure.SecretIdNotFound"


def test_wrong_secret_key_is_signature_failure() -> None:
    signed = sdk_sign(secret_key="not-the-key")
    error = rejected(signed)
    assert error.code == "AuthFailure.SignatureFailure"
    assert "could not be validated" in error.message


def test_tampered_body_is_signature_failure() -> None:
    signed = sdk_sign()
    tampered = replace(signed, payload=signed.payload.replace(b"20", b"21"))
    assert tampered.payload != signed.payload
    assert rejected(tampered).code == "AuthFailure.SignatureFailure"


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("host", "127.0.0.1:10"),
        ("content-type", "application/json; charset=utf-8"),
        ("content-type", "application/x-www-form-urlencoded"),
    ],
)
def test_changed_signed_header_is_signature_failure(header: str, value: str) -> None:
    signed = sdk_sign()
    assert rejected(signed.with_headers(**{header: value})).code == "AuthFailure.SignatureFailure"


def test_unsigned_header_may_change() -> None:
    # Only content-type and host are signed by the SDK; X-TC-Action is not.
    signed = sdk_sign()
    check(signed.with_headers(x_tc_action="DescribeTargets"))


def test_different_path_or_method_is_signature_failure() -> None:
    signed = sdk_sign()
    assert rejected(replace(signed, path="/other")).code == "AuthFailure.SignatureFailure"
    assert rejected(replace(signed, method="GET")).code == "AuthFailure.SignatureFailure"


# ----- timestamp --------------------------------------------------------------------------


@pytest.mark.parametrize("skew", [-300, -1, 0, 1, 300])
def test_clock_skew_within_five_minutes_verifies(skew: int) -> None:
    signed = sdk_sign()
    check(signed, now=signed.timestamp + skew)


@pytest.mark.parametrize("skew", [-3600, -301, 301, 86400])
def test_clock_skew_beyond_five_minutes_is_signature_expire(skew: int) -> None:
    signed = sdk_sign()
    error = rejected(signed, now=signed.timestamp + skew)
    assert error.code == "AuthFailure.SignatureExpire"
    assert str(signed.timestamp) in error.message


def test_expiry_is_checked_before_the_signature() -> None:
    # A stale request with a wrong key still reports the clock, which is what to fix first.
    signed = sdk_sign(secret_key="not-the-key")
    error = rejected(signed, now=signed.timestamp + 301)
    assert error.code == "AuthFailure.SignatureExpire"


def test_changed_timestamp_is_signature_failure() -> None:
    signed = sdk_sign()
    moved = signed.with_headers(x_tc_timestamp=str(signed.timestamp + 1))
    error = rejected(moved, now=signed.timestamp)
    assert error.code == "AuthFailure.SignatureFailure"


@pytest.mark.parametrize("value", [None, "", "soon", "1.5"])
def test_missing_or_bad_timestamp_is_missing_parameter(value: str | None) -> None:
    signed = sdk_sign().with_headers(x_tc_timestamp=value)
    error = rejected(signed, now=0)
    assert error.code == "MissingParameter"
    assert "X-TC-Timestamp" in error.message


def test_scope_date_not_matching_timestamp_is_signature_failure() -> None:
    signed = sdk_sign()
    authorization = signed.headers["authorization"]
    date = authorization.split("/")[1]
    year, month, day = date.split("-")
    other = f"{int(year) - 1:04d}-{month}-{day}"
    # Re-sign consistently with the other date, so that only the date/timestamp pairing is off.
    signature = auth.tc3_signature(
        secret_key=SECRET_KEY,
        method="POST",
        path="/",
        query="",
        headers=signed.headers,
        signed_headers=["content-type", "host"],
        payload=signed.payload,
        timestamp=signed.timestamp,
        date=other,
        service="clb",
    )
    forged = (
        f"TC3-HMAC-SHA256 Credential={SECRET_ID}/{other}/clb/tc3_request, "
        f"SignedHeaders=content-type;host, Signature={signature}"
    )
    error = rejected(signed.with_headers(authorization=forged))
    assert error.code == "AuthFailure.SignatureFailure"
    assert "scope date" in error.message


# ----- the Authorization header ------------------------------------------------------------


def _malformed(authorization: str) -> list[str]:
    head, signature = authorization.rsplit("Signature=", 1)
    return [
        "",
        "Bearer abc",
        authorization.replace("TC3-HMAC-SHA256", "HMAC-SHA256", 1),
        authorization.replace("/tc3_request", "/tc2_request", 1),
        authorization.replace(", SignedHeaders=", ", Headers=", 1),
        head.rstrip(", "),  # no Signature
        head + "Signature=" + signature[:-1],  # 63 hex digits
        head + "Signature=" + signature.upper(),  # not lower-case hex
        head + "Signature=" + "z" * 64,
        authorization.replace(f"Credential={SECRET_ID}/", "Credential=", 1),  # no SecretId
        authorization + " trailing",
    ]


@pytest.mark.parametrize("index", range(11))
def test_malformed_authorization_is_invalid_authorization(index: int) -> None:
    signed = sdk_sign()
    authorization = _malformed(signed.headers["authorization"])[index]
    error = rejected(signed.with_headers(authorization=authorization))
    assert error.code == "AuthFailure.InvalidAuthorization"
    assert "not a TC3-HMAC-SHA256 signature" in error.message


def test_missing_authorization_is_invalid_authorization() -> None:
    error = rejected(sdk_sign().with_headers(authorization=None))
    assert error.code == "AuthFailure.InvalidAuthorization"


def test_signed_headers_without_host_are_refused() -> None:
    signed = sdk_sign()
    authorization = signed.headers["authorization"].replace(
        "SignedHeaders=content-type;host", "SignedHeaders=content-type"
    )
    error = rejected(signed.with_headers(authorization=authorization))
    assert error.code == "AuthFailure.SignatureFailure"
    assert "SignedHeaders" in error.message


def test_extra_signed_header_is_verified_too() -> None:
    signed = sdk_sign().with_headers(x_tc_region=REGION)
    date = signed.headers["authorization"].split("/")[1]
    names = ["content-type", "host", "x-tc-region"]
    signature = auth.tc3_signature(
        secret_key=SECRET_KEY,
        method="POST",
        path="/",
        query="",
        headers=signed.headers,
        signed_headers=names,
        payload=signed.payload,
        timestamp=signed.timestamp,
        date=date,
        service="clb",
    )
    three = signed.with_headers(
        authorization=f"TC3-HMAC-SHA256 Credential={SECRET_ID}/{date}/clb/tc3_request, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    check(three)
    error = rejected(three.with_headers(x_tc_region="ap-shanghai"))
    assert error.code == "AuthFailure.SignatureFailure"


# ----- UNSIGNED-PAYLOAD ------------------------------------------------------------------------


def test_unsigned_payload_request_verifies() -> None:
    signed = sdk_sign(unsigned=True)
    assert signed.headers["x-tc-content-sha256"] == "UNSIGNED-PAYLOAD"
    check(signed)


async def test_async_unsigned_payload_request_verifies() -> None:
    signed = await sdk_sign_async(unsigned=True)
    assert signed.headers["x-tc-content-sha256"] == "UNSIGNED-PAYLOAD"
    check(signed)


def test_unsigned_payload_body_is_not_covered_by_the_signature() -> None:
    signed = sdk_sign(unsigned=True)
    check(replace(signed, payload=b'{"Limit": 1}'))


def test_unsigned_payload_header_removed_is_signature_failure() -> None:
    signed = sdk_sign(unsigned=True).with_headers(x_tc_content_sha256=None)
    assert rejected(signed).code == "AuthFailure.SignatureFailure"


def test_unsigned_payload_header_added_to_signed_request_is_signature_failure() -> None:
    signed = sdk_sign().with_headers(x_tc_content_sha256="UNSIGNED-PAYLOAD")
    assert rejected(signed).code == "AuthFailure.SignatureFailure"
