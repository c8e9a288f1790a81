"""Decoding protobuf request bodies the way kubectl's typed clients encode them."""

from __future__ import annotations

import pytest

from directlb.sim.contracts import StatusError
from directlb.sim.protobuf import MAGIC, decode


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field(number: int, value: bytes | int) -> bytes:
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    return varint(number << 3 | 2) + varint(len(value)) + value


def envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    type_meta = field(1, api_version.encode()) + field(2, kind.encode())
    return (
        MAGIC
        + field(1, type_meta)
        + field(2, raw)
        + field(4, b"application/vnd.kubernetes.protobuf")
    )


def test_configmap_with_metadata_maps_and_bytes() -> None:
    labels = field(1, b"app") + field(2, b"web")
    meta = field(1, b"c") + field(2, b"") + field(11, labels) + field(8, b"")  # empty Time
    data = field(1, b"a") + field(2, b"b")
    binary = field(1, b"bin") + field(2, b"\x00\x01")
    body = envelope("v1", "ConfigMap", field(1, meta) + field(2, data) + field(3, binary))
    assert decode(body) == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c", "labels": {"app": "web"}},
        "data": {"a": "b"},
        "binaryData": {"bin": "AAE="},
    }


def test_deployment_keeps_meaningful_zeros_and_int_or_string() -> None:
    max_surge = field(1, 1) + field(3, b"25%")  # IntOrString, string form
    max_unavailable = field(1, 0) + field(2, 0)  # IntOrString, int 0
    rolling = field(1, max_unavailable) + field(2, max_surge)
    strategy = field(1, b"RollingUpdate") + field(2, rolling)
    spec = field(1, 0) + field(4, strategy) + field(5, 0)  # replicas 0, minReadySeconds 0
    body = envelope("apps/v1", "Deployment", field(1, field(1, b"d")) + field(2, spec))
    decoded = decode(body)
    assert decoded["spec"] == {
        "replicas": 0,
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"},
        },
    }


def test_unknown_types_and_fields_are_415_not_dropped() -> None:
    with pytest.raises(StatusError) as kind:
        decode(envelope("batch/v1", "Job", b""))
    assert kind.value.code == 415
    with pytest.raises(StatusError) as unknown_field:
        decode(envelope("v1", "ConfigMap", field(99, b"x")))
    assert unknown_field.value.code == 415
    volume = field(1, b"data")
    spec = field(1, volume)  # PodSpec.volumes: a type the schema does not transcribe
    template = field(2, spec)
    with pytest.raises(StatusError):
        decode(envelope("apps/v1", "Deployment", field(2, field(3, template))))


def test_body_without_magic_is_400() -> None:
    with pytest.raises(StatusError) as error:
        decode(b"{}")
    assert error.value.code == 400
