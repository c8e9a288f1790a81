"""Tencent Cloud API errors, as the emulator answers them."""

from __future__ import annotations


class ApiError(Exception):
    """An error answered in the API 3.0 envelope: ``{"Response": {"Error": {...}}}``.

    ``code`` is one of Tencent's official error codes, so that clients branch on it exactly as
    they would against the real cloud; ``message`` says what was wrong and what to change.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def missing(name: str) -> ApiError:
    return ApiError("MissingParameter", f"The request is missing a required parameter `{name}`.")


def invalid(name: str, why: str) -> ApiError:
    return ApiError("InvalidParameter", f"`{name}` is invalid: {why}.")


def invalid_value(name: str, why: str, *, code: str = "InvalidParameterValue") -> ApiError:
    return ApiError(code, f"The value of `{name}` is invalid: {why}.")


def limit_exceeded(what: str, limit: int) -> ApiError:
    return ApiError("LimitExceeded", f"{what} exceeds the limit of {limit}.")


def lb_not_found(ids: list[str]) -> ApiError:
    return ApiError(
        "InvalidParameter.LBIdNotFound", f"LoadBalancer ids {ids} do not exist in this region."
    )


def listener_not_found(lb_id: str, ids: list[str]) -> ApiError:
    return ApiError(
        "InvalidParameter.ListenerIdNotFound",
        f"Listener ids {ids} do not exist on LoadBalancer {lb_id}.",
    )


def location_not_found(listener_id: str, what: str) -> ApiError:
    return ApiError(
        "InvalidParameter.LocationNotFound",
        f"Rule {what} does not exist on listener {listener_id}.",
    )


def in_operation(lb_id: str) -> ApiError:
    return ApiError(
        "FailedOperation.ResourceInOperating",
        f"LoadBalancer {lb_id} is running another task; retry when DescribeTaskStatus says done.",
    )
