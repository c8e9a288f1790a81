"""Typed cloud errors: what failed, with the cloud's own code, so callers can branch on it.

A controller turns a :class:`CloudError` into a Kubernetes Event: ``code`` is stable (Tencent's
official error code, or one of ours below, prefixed ``directlb.``), ``message`` says what was
wrong in the cloud's words.
"""

from __future__ import annotations

NETWORK_ERROR = "directlb.NetworkError"
TASK_FAILED = "directlb.TaskFailed"
TASK_TIMEOUT = "directlb.TaskTimeout"
PARTIAL_FAILURE = "directlb.PartialFailure"
STALE_PLAN = "directlb.StalePlan"
NOT_READY = "directlb.LoadBalancerNotReady"
PORT_CONFLICT = "directlb.PortConflict"
INVALID_DESIRED = "directlb.InvalidDesiredState"

# Retried with jittered backoff: the call may succeed if made again a little later.
RETRYABLE_CODES = frozenset(
    {
        "RequestLimitExceeded",
        "FailedOperation.ResourceInOperating",
        "InternalError",
        NETWORK_ERROR,
    }
)

# The plan was made from a picture of the CLB that is no longer true (or a call whose answer
# was lost did take effect): look again, then carry on from what is there.
STALE_CODES = frozenset(
    {
        "InvalidParameter.ListenerIdNotFound",
        "InvalidParameter.LocationNotFound",
        "InvalidParameter.PortCheckFailed",
        "InvalidParameterValue.Duplicate",
    }
)


def is_retryable(code: str) -> bool:
    head = code.split(".", 1)[0]
    return code in RETRYABLE_CODES or head in ("RequestLimitExceeded", "InternalError")


class CloudError(Exception):
    """A cloud call that did not succeed, and will not by being made again as it is."""

    def __init__(
        self,
        *,
        code: str,
        message: str,
        action: str = "",
        request_id: str = "",
        lb_id: str = "",
    ) -> None:
        where = " ".join(part for part in (action, lb_id) if part)
        super().__init__(f"{code}: {message}" + (f" ({where})" if where else ""))
        self.code = code
        self.message = message
        self.action = action
        self.request_id = request_id
        self.lb_id = lb_id

    @property
    def retryable(self) -> bool:
        """True for codes that are worth retrying (still raised once retries ran out)."""
        return is_retryable(self.code)

    @property
    def stale(self) -> bool:
        return self.code in STALE_CODES


class TaskFailed(CloudError):
    """An asynchronous task ended with status 1; ``message`` is the cloud's reason."""

    def __init__(self, *, message: str, action: str, task_id: str, lb_id: str = "") -> None:
        super().__init__(
            code=TASK_FAILED, message=message, action=action, request_id=task_id, lb_id=lb_id
        )
        self.task_id = task_id


class TaskTimeout(CloudError):
    def __init__(self, *, action: str, task_id: str, seconds: float, lb_id: str = "") -> None:
        super().__init__(
            code=TASK_TIMEOUT,
            message=f"task {task_id} still running after {seconds:g}s",
            action=action,
            request_id=task_id,
            lb_id=lb_id,
        )
        self.task_id = task_id


class PartialFailure(CloudError):
    """A batch call kept failing for some listeners (``FailListenerIdSet``) after retries."""

    def __init__(
        self, *, message: str, action: str, lb_id: str, failed_listener_ids: tuple[str, ...]
    ) -> None:
        super().__init__(code=PARTIAL_FAILURE, message=message, action=action, lb_id=lb_id)
        self.failed_listener_ids = failed_listener_ids


class StalePlan(CloudError):
    """The plan names a listener or rule the CLB does not have: plan again from a fresh look."""

    def __init__(self, *, message: str, action: str, lb_id: str) -> None:
        super().__init__(code=STALE_PLAN, message=message, action=action, lb_id=lb_id)
