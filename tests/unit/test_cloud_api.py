"""Calls, throttling, retries and task polling, against a scripted sender (no network).

The tests run under ``looptime``: the event loop's clock is fake, sleeps take no wall time,
and the loop time says exactly how long the adapter waited.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from directlb.cloud.api import ClbApi, SdkSender, _request_model
from directlb.cloud.config import Credentials, TencentConfig, Timing
from directlb.cloud.errors import NETWORK_ERROR, CloudError, TaskFailed, TaskTimeout
from directlb.cloud.metrics import CallCounter
from directlb.cloud.retry import Backoff
from directlb.cloud.throttle import TokenBucket

Doc = dict[str, Any]
Step = Doc | CloudError


class Script:
    """A sender that answers each action from a list of steps (answers or errors)."""

    def __init__(self, steps: dict[str, list[Step]], *, default: Doc | None = None) -> None:
        self.steps = steps
        self.default = default
        self.sent: list[tuple[str, Doc]] = []

    async def __call__(self, action: str, params: Doc) -> Doc:
        self.sent.append((action, params))
        queue = self.steps.get(action, [])
        step = queue.pop(0) if queue else self.default
        if step is None:
            raise AssertionError(f"unexpected call {action}")
        if isinstance(step, CloudError):
            raise step
        return {"RequestId": f"req-{len(self.sent)}", **step}

    def count(self, action: str) -> int:
        return sum(1 for a, _ in self.sent if a == action)


def error(code: str) -> CloudError:
    return CloudError(code=code, message=f"{code} (scripted)")


def make_api(
    script: Callable[[str, Doc], Any], *, counter: CallCounter | None = None, **timing: Any
) -> ClbApi:
    values: dict[str, Any] = {"rate": 0.0}
    values.update(timing)
    return ClbApi(send=script, timing=Timing(**values), observer=counter, rng=random.Random(3))


@pytest.mark.looptime
@pytest.mark.parametrize(
    "code",
    [
        "RequestLimitExceeded",
        "FailedOperation.ResourceInOperating",
        "InternalError",
        "InternalError.ClusterBusy",
        NETWORK_ERROR,
    ],
)
async def test_retryable_codes_are_retried_until_success(code: str, looptime: Any) -> None:
    script = Script({"DescribeListeners": [error(code), error(code), {"Listeners": []}]})
    counter = CallCounter()
    api = make_api(script, counter=counter, retry_base=1.0, retry_cap=10.0)
    answer = await api.call("DescribeListeners", {"LoadBalancerId": "lb-1"})
    assert answer["Listeners"] == []
    assert counter.calls == {("DescribeListeners", code): 2, ("DescribeListeners", "Success"): 1}
    assert counter.retries == {code: 2}
    # Jittered in [d/2, d] with d = 1 then 2.
    assert 1.0 <= float(looptime) <= 3.0


@pytest.mark.looptime
async def test_a_non_retryable_error_is_raised_at_once_with_its_code() -> None:
    script = Script({"CreateRule": [error("InvalidParameterValue.Length")]})
    counter = CallCounter()
    api = make_api(script, counter=counter)
    with pytest.raises(CloudError) as info:
        await api.call("CreateRule", {"LoadBalancerId": "lb-1"}, lb_id="lb-1")
    assert info.value.code == "InvalidParameterValue.Length"
    assert info.value.lb_id == "lb-1" and not info.value.retryable
    assert script.count("CreateRule") == 1 and not counter.retries


@pytest.mark.looptime
async def test_retries_stop_after_the_attempts_and_raise_the_last_code(looptime: Any) -> None:
    script = Script({}, default=None)
    script.steps["DescribeTargets"] = [error("InternalError")] * 20
    api = make_api(script, attempts=8, retry_base=0.2, retry_cap=10.0)
    with pytest.raises(CloudError) as info:
        await api.call("DescribeTargets", {})
    assert info.value.code == "InternalError" and info.value.retryable
    assert script.count("DescribeTargets") == 8
    # 7 waits, each <= min(10, 0.2 * 2**n): 0.2+0.4+0.8+1.6+3.2+6.4+10 = 22.6 at most.
    assert 11.3 <= float(looptime) <= 22.6


def test_backoff_is_jittered_and_capped_at_ten_seconds() -> None:
    backoff = Backoff(base=0.2, cap=10.0, rng=random.Random(1))
    delays = [backoff.delay(n) for n in range(40)]
    assert all(0.1 <= d <= 10.0 for d in delays)
    assert max(delays) <= 10.0 and min(delays[10:]) >= 5.0
    assert len(set(delays)) == len(delays)  # jitter: no two alike
    with pytest.raises(ValueError):
        Backoff(base=2, cap=1)


@pytest.mark.looptime
async def test_the_token_bucket_spaces_calls_at_the_rate(looptime: Any) -> None:
    bucket = TokenBucket(rate=20.0)
    waits = [await bucket.acquire() for _ in range(41)]
    assert waits[0] == 0.0
    assert float(looptime) == pytest.approx(2.0)  # 40 more tokens at 20 per second


@pytest.mark.looptime
async def test_throttling_is_per_action_and_once_per_call(looptime: Any) -> None:
    script = Script({}, default={})
    api = make_api(script, rate=10.0)
    for _ in range(5):
        await api.call("DescribeListeners", {})
    assert float(looptime) == pytest.approx(0.4)
    await api.call("DescribeTargets", {})  # another action has its own bucket
    assert float(looptime) == pytest.approx(0.4)


@pytest.mark.looptime
async def test_a_retry_takes_a_token_too(looptime: Any) -> None:
    script = Script({"DescribeListeners": [error("InternalError"), {}]})
    api = make_api(script, rate=1.0, retry_base=0.0, retry_cap=0.0)
    await api.call("DescribeListeners", {})
    assert float(looptime) == pytest.approx(1.0)


@pytest.mark.looptime
async def test_a_task_is_polled_with_a_capped_backoff(looptime: Any) -> None:
    running = {"Status": 2}
    script = Script(
        {
            "RegisterTargets": [{}],
            "DescribeTaskStatus": [running] * 6 + [{"Status": 0}],
        }
    )
    counter = CallCounter()
    api = make_api(script, counter=counter, poll_first=0.5, poll_factor=2.0, poll_cap=2.0)
    await api.mutate("RegisterTargets", {"LoadBalancerId": "lb-1"}, lb_id="lb-1")
    # Polls after 0.5, 1, 2, 2, 2, 2, 2 seconds.
    assert float(looptime) == pytest.approx(11.5)
    assert script.sent[1] == ("DescribeTaskStatus", {"TaskId": "req-1"})
    assert counter.task_waits == {("RegisterTargets", "Success"): 1}
    assert counter.task_seconds == pytest.approx(11.5)


@pytest.mark.looptime
async def test_a_failed_task_carries_the_clouds_message() -> None:
    script = Script(
        {
            "CreateRule": [{}],
            "DescribeTaskStatus": [{"Status": 1, "Message": "domain is being audited"}],
        }
    )
    api = make_api(script)
    with pytest.raises(TaskFailed) as info:
        await api.mutate("CreateRule", {}, lb_id="lb-1")
    assert info.value.message == "domain is being audited"
    assert info.value.task_id == "req-1" and info.value.lb_id == "lb-1"


@pytest.mark.looptime
async def test_a_task_that_never_ends_times_out(looptime: Any) -> None:
    script = Script({"DeleteRule": [{}]}, default={"Status": 2})
    api = make_api(script, poll_first=1.0, poll_cap=1.0, task_timeout=30.0)
    with pytest.raises(TaskTimeout):
        await api.mutate("DeleteRule", {}, lb_id="lb-1")
    assert 30.0 <= float(looptime) <= 31.0


@pytest.mark.looptime
async def test_synchronous_batch_calls_are_not_polled() -> None:
    script = Script({"BatchRegisterTargets": [{"FailListenerIdSet": []}]})
    api = make_api(script)
    await api.mutate("BatchRegisterTargets", {}, lb_id="lb-1")
    assert [a for a, _ in script.sent] == ["BatchRegisterTargets"]


def test_request_models_refuse_fields_the_sdk_does_not_know() -> None:
    request = _request_model("DescribeTargets", {"LoadBalancerId": "lb-1", "ListenerIds": ["a"]})
    assert request.LoadBalancerId == "lb-1"
    with pytest.raises(ValueError, match="Listenerids"):
        _request_model("DescribeTargets", {"LoadBalancerId": "lb-1", "Listenerids": ["a"]})


async def test_an_unreachable_endpoint_is_a_retryable_network_error() -> None:
    from directlb.cloud.api import sdk_client

    config = TencentConfig(
        region="ap-guangzhou",
        credentials=Credentials("AKIDx", "key"),
        endpoint="127.0.0.1:9",  # discard: nothing listens
        protocol="http",
    )
    sender = SdkSender(sdk_client(config))
    try:
        with pytest.raises(CloudError) as info:
            await sender("DescribeQuota", {})
    finally:
        await sender.close()
    assert info.value.code == NETWORK_ERROR and info.value.retryable
