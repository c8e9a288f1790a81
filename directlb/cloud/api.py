"""Calling the CLB API: the official async SDK, throttled, retried, with task polling.

:class:`SdkSender` makes one call through ``tencentcloud.clb.v20180317.clb_client_async``
(the action's typed request model, the client's ``call_and_deserialize``; aiohttp under its
httpx client, :func:`sdk_client`) and turns every failure into a :class:`CloudError`
carrying the cloud's code. :class:`ClbApi` wraps any sender with a token
bucket per action, retries with jittered backoff for the codes worth retrying, and waits for
asynchronous tasks. Tests swap the sender for a fake; everything above it stays the same.
"""

from __future__ import annotations

import asyncio
import logging
import random
import warnings
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport
from tencentcloud.clb.v20180317 import clb_client_async, models
from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import (
    TencentCloudSDKException,
)
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile

from directlb.cloud.config import TencentConfig, Timing
from directlb.cloud.errors import NETWORK_ERROR, CloudError, TaskFailed, TaskTimeout
from directlb.cloud.metrics import SUCCESS, CallObserver, NullObserver
from directlb.cloud.retry import Backoff
from directlb.cloud.throttle import Throttle, loop_clock

log = logging.getLogger("directlb.cloud")

Doc = dict[str, Any]
Sender = Callable[[str, Doc], Awaitable[Doc]]

# Mutations answered at once with a RequestId, whose change happens when the task finishes.
# (BatchRegisterTargets and BatchDeregisterTargets are synchronous.)
ASYNC_ACTIONS = frozenset(
    {
        "CreateLoadBalancer",
        "DeleteLoadBalancer",
        "CreateListener",
        "ModifyListener",
        "DeleteListener",
        "DeleteLoadBalancerListeners",
        "CreateRule",
        "ModifyRule",
        "DeleteRule",
        "ModifyDomainAttributes",
        "RegisterTargets",
        "DeregisterTargets",
        "ModifyTargetWeight",
        "BatchModifyTargetWeight",
    }
)

# What the SDK raises for transport trouble it noticed itself (a non-200 answer).
_SDK_NETWORK_CODES = frozenset({"ServerNetworkError", "ClientNetworkError"})


def sdk_client(config: TencentConfig) -> Any:
    """An official async CLB client for ``config`` (endpoint override for the emulator)."""
    http = HttpProfile(
        endpoint=config.endpoint or None,
        protocol=config.protocol,
        reqTimeout=config.timing.request_timeout,
        keepAlive=True,
    )
    creds = credential.Credential(config.credentials.secret_id, config.credentials.secret_key)
    client = clb_client_async.ClbClient(creds, config.region, ClientProfile(httpProfile=http))
    # The SDK sends through an httpx client (its ``http_client``). httpx's own transport is
    # pure Python and writes each request in two sends; aiohttp's (C-accelerated parser, one
    # write) costs about a third less CPU per call, most of a resync's cost at 500 Services
    # (docs/benchmarks.md). Same SDK, same signing, same answers: only the bytes' carrier.
    client.http_client = httpx.AsyncClient(
        transport=AiohttpTransport(), timeout=client.http_client.timeout
    )
    return client


class SdkSender:
    """One call through the SDK's typed method for ``action``; failures become CloudError."""

    def __init__(self, client: Any) -> None:
        self.client = client

    async def __call__(self, action: str, params: Doc) -> Doc:
        request = _request_model(action, params)
        try:
            # The request goes through the action's typed model (which refuses misspelt
            # fields); the answer comes back as the API's JSON through the SDK's own untyped
            # path: the parsers read dicts, and the typed response model would be built and
            # serialised back for them, a tenth of a call's CPU.
            response = await self.client.call_and_deserialize(
                action, request._serialize(), dict, request.headers
            )
        except TencentCloudSDKException as error:
            code = str(error.code or "")
            raise CloudError(
                code=NETWORK_ERROR if code in _SDK_NETWORK_CODES else code,
                message=str(error.message),
                action=action,
                request_id=str(error.requestId or ""),
            ) from None
        except (httpx.TransportError, aiohttp.ClientError, OSError, TimeoutError) as error:
            raise CloudError(
                code=NETWORK_ERROR, message=f"{type(error).__name__}: {error}", action=action
            ) from None
        except (ValueError, KeyError) as error:  # an answer that is not the API's JSON
            raise CloudError(
                code=NETWORK_ERROR, message=f"unreadable answer: {error}", action=action
            ) from None
        answer: Doc = response["Response"]
        return answer

    async def close(self) -> None:
        await self.client.close()


def _request_model(action: str, params: Doc) -> Any:
    """The SDK's request model for ``action``, filled from ``params``.

    The SDK only warns about parameters its model does not have; we refuse them, so a
    misspelled field is a bug found at once rather than a setting silently dropped.
    """
    request = getattr(models, f"{action}Request")()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        request._deserialize(params)
    useless = [str(w.message) for w in caught if "useless" in str(w.message)]
    if useless:
        raise ValueError(f"{action}: parameters the SDK model does not know: {useless}")
    return request


class ClbApi:
    """Throttled, retried calls and task waits on top of a :data:`Sender`."""

    def __init__(
        self,
        *,
        send: Sender,
        timing: Timing,
        observer: CallObserver | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = loop_clock,
    ) -> None:
        self._send = send
        self.timing = timing
        self.observer: CallObserver = observer or NullObserver()
        self.throttle = Throttle(rate=timing.rate, burst=timing.burst, clock=clock)
        self.backoff = Backoff(base=timing.retry_base, cap=timing.retry_cap, rng=rng)
        self._clock = clock

    async def call(self, action: str, params: Mapping[str, Any], *, lb_id: str = "") -> Doc:
        """Make one API call, retrying the codes worth retrying; raise CloudError otherwise."""
        attempt = 0
        while True:
            await self.throttle.acquire(action)
            started = self._clock()
            try:
                answer = await self._send(action, dict(params))
            except CloudError as error:
                self.observer.api_call(
                    action=action, result=error.code, seconds=self._clock() - started
                )
                attempt += 1
                if not error.retryable or attempt >= self.timing.attempts:
                    error.lb_id = error.lb_id or lb_id
                    raise
                delay = self.backoff.delay(attempt - 1)
                self.observer.retry(action=action, code=error.code, delay=delay)
                log.debug(
                    "event=retry action=%s lb=%s code=%s attempt=%d delay=%.3f",
                    action,
                    lb_id,
                    error.code,
                    attempt,
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            self.observer.api_call(action=action, result=SUCCESS, seconds=self._clock() - started)
            return answer

    async def mutate(self, action: str, params: Mapping[str, Any], *, lb_id: str) -> Doc:
        """Make a mutating call and, for an asynchronous action, wait for its task to end."""
        answer = await self.call(action, params, lb_id=lb_id)
        if action in ASYNC_ACTIONS:
            await self.wait_task(action=action, task_id=str(answer["RequestId"]), lb_id=lb_id)
        return answer

    async def wait_task(
        self, *, action: str, task_id: str = "", deal_name: str = "", lb_id: str = ""
    ) -> None:
        """Poll DescribeTaskStatus (by TaskId or DealName) with a capped backoff until the task
        ends; raise TaskFailed with the cloud's message, or TaskTimeout."""
        query = {"TaskId": task_id} if task_id else {"DealName": deal_name}
        ident = task_id or deal_name
        started = self._clock()
        delay = self.timing.poll_first
        while True:
            await asyncio.sleep(delay)
            status = await self.call("DescribeTaskStatus", query, lb_id=lb_id)
            code = int(status.get("Status", 2))
            waited = self._clock() - started
            if code == 0:
                self.observer.task_wait(action=action, result=SUCCESS, seconds=waited)
                return
            if code == 1:
                failed = TaskFailed(
                    message=str(status.get("Message") or "the task failed"),
                    action=action,
                    task_id=ident,
                    lb_id=lb_id,
                )
                self.observer.task_wait(action=action, result=failed.code, seconds=waited)
                raise failed
            if waited >= self.timing.task_timeout:
                timeout = TaskTimeout(action=action, task_id=ident, seconds=waited, lb_id=lb_id)
                self.observer.task_wait(action=action, result=timeout.code, seconds=waited)
                raise timeout
            delay = min(delay * self.timing.poll_factor, self.timing.poll_cap)
