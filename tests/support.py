"""Helpers shared by the tests: an in-process CLB emulator and official-SDK clients."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from tencentcloud.clb.v20180317 import clb_client, clb_client_async, models
from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile

from directlb.emulator.config import EmulatorConfig
from directlb.emulator.server import Emulator

SECRET_ID = "AKIDdirectlbtest"
SECRET_KEY = "directlb-test-key"
REGION = "ap-guangzhou"


def config(**overrides: Any) -> EmulatorConfig:
    values: dict[str, Any] = {
        "secret_id": SECRET_ID,
        "secret_key": SECRET_KEY,
        "time_scale": 0.0,
        "seed": 7,
    }
    values.update(overrides)
    return EmulatorConfig(**values)


def profile(endpoint: str) -> ClientProfile:
    return ClientProfile(httpProfile=HttpProfile(endpoint=endpoint, protocol="http", reqTimeout=30))


def async_client(
    emulator: Emulator, *, secret_id: str = SECRET_ID, secret_key: str = SECRET_KEY
) -> clb_client_async.ClbClient:
    return clb_client_async.ClbClient(
        credential.Credential(secret_id, secret_key), REGION, profile(emulator.endpoint)
    )


def sync_client(
    emulator: Emulator, *, secret_id: str = SECRET_ID, secret_key: str = SECRET_KEY
) -> clb_client.ClbClient:
    return clb_client.ClbClient(
        credential.Credential(secret_id, secret_key), REGION, profile(emulator.endpoint)
    )


async def expect_error(call: Any, code: str, *needles: str) -> TencentCloudSDKException:
    """Await ``call``; it must fail with exactly ``code`` and a message holding ``needles``."""
    with pytest.raises(TencentCloudSDKException) as info:
        await call
    error = info.value
    assert error.code == code, f"{error.code}: {error.message}"
    for needle in needles:
        assert needle in str(error.message), error.message
    return error


async def api(client: clb_client_async.ClbClient, action: str, **params: Any) -> dict[str, Any]:
    """Call ``action`` with plain JSON parameters; raise TencentCloudSDKException on error."""
    answer = await client.call_and_deserialize(action, params, dict)
    return dict(answer["Response"])


async def wait_task(
    client: clb_client_async.ClbClient, task_id: str, *, timeout: float = 20.0
) -> dict[str, Any]:
    """Poll DescribeTaskStatus until the task leaves status 2 (running), with a deadline."""
    deadline = time.monotonic() + timeout
    while True:
        status = await api(client, "DescribeTaskStatus", TaskId=task_id)
        if status["Status"] != 2:
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(f"task {task_id} still running after {timeout}s")
        await asyncio.sleep(0.01)


async def done(client: clb_client_async.ClbClient, action: str, **params: Any) -> dict[str, Any]:
    """Call an asynchronous action and wait for its task to succeed."""
    answer = await api(client, action, **params)
    status = await wait_task(client, answer["RequestId"])
    assert status["Status"] == 0, status
    return answer


async def wait_until(predicate: Any, *, timeout: float = 20.0, interval: float = 0.02) -> None:
    """Wait until ``await predicate()`` (or ``predicate()``) is truthy, with a deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


async def create_lb(client: clb_client_async.ClbClient, **params: Any) -> str:
    params.setdefault("LoadBalancerType", "OPEN")
    answer = await done(client, "CreateLoadBalancer", **params)
    return str(answer["LoadBalancerIds"][0])


async def create_listener(
    client: clb_client_async.ClbClient,
    lb_id: str,
    *,
    port: int,
    protocol: str = "TCP",
    **params: Any,
) -> str:
    answer = await done(
        client, "CreateListener", LoadBalancerId=lb_id, Ports=[port], Protocol=protocol, **params
    )
    return str(answer["ListenerIds"][0])


__all__ = ["models"]
