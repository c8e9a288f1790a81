"""Typed reading of request parameters, answering bad input with Tencent's error codes."""

from __future__ import annotations

from typing import Any

from directlb.emulator.errors import ApiError, invalid, invalid_value, limit_exceeded, missing


class Params:
    """A view of one JSON object of the request; ``prefix`` names it in error messages."""

    def __init__(self, data: Any, prefix: str = "") -> None:
        if not isinstance(data, dict):
            raise ApiError(
                "InvalidParameter.FormatError", f"`{prefix or 'body'}` must be an object."
            )
        self.data: dict[str, Any] = data
        self.prefix = prefix

    def name(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def text(
        self,
        key: str,
        *,
        required: bool = False,
        default: str | None = None,
        choices: tuple[str, ...] | None = None,
        max_len: int | None = None,
    ) -> str | None:
        value = self.data.get(key)
        if value is None:
            if required:
                raise missing(self.name(key))
            return default
        if not isinstance(value, str):
            raise invalid(self.name(key), "must be a string")
        if required and not value:
            raise missing(self.name(key))
        if choices is not None and value not in choices:
            raise invalid_value(self.name(key), f"{value!r} is not one of {', '.join(choices)}")
        if max_len is not None and len(value) > max_len:
            raise invalid_value(
                self.name(key),
                f"longer than {max_len} characters",
                code="InvalidParameterValue.Length",
            )
        return value

    def req_text(self, key: str, **kwargs: Any) -> str:
        value = self.text(key, required=True, **kwargs)
        assert value is not None
        return value

    def integer(
        self,
        key: str,
        *,
        required: bool = False,
        default: int | None = None,
        lo: int | None = None,
        hi: int | None = None,
    ) -> int | None:
        value = self.data.get(key)
        if value is None:
            if required:
                raise missing(self.name(key))
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid(self.name(key), "must be an integer")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise invalid_value(
                self.name(key),
                f"{value} is outside the range {_bounds(lo, hi)}",
                code="InvalidParameterValue.Range",
            )
        return value

    def req_integer(self, key: str, **kwargs: Any) -> int:
        value = self.integer(key, required=True, **kwargs)
        assert value is not None
        return value

    def flag(self, key: str, *, default: bool = False) -> bool:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise invalid(self.name(key), "must be a boolean")
        return value

    def _list(self, key: str, *, required: bool, max_items: int | None) -> list[Any]:
        value = self.data.get(key)
        if value is None:
            if required:
                raise missing(self.name(key))
            return []
        if not isinstance(value, list):
            raise invalid(self.name(key), "must be an array")
        if required and not value:
            raise missing(self.name(key))
        if max_items is not None and len(value) > max_items:
            raise limit_exceeded(f"`{self.name(key)}` with {len(value)} items", max_items)
        return value

    def texts(self, key: str, *, required: bool = False, max_items: int | None = None) -> list[str]:
        values = self._list(key, required=required, max_items=max_items)
        for i, value in enumerate(values):
            if not isinstance(value, str):
                raise invalid(f"{self.name(key)}.{i}", "must be a string")
        return values

    def integers(
        self, key: str, *, required: bool = False, max_items: int | None = None
    ) -> list[int]:
        values = self._list(key, required=required, max_items=max_items)
        for i, value in enumerate(values):
            if isinstance(value, bool) or not isinstance(value, int):
                raise invalid(f"{self.name(key)}.{i}", "must be an integer")
        return values

    def objects(
        self, key: str, *, required: bool = False, max_items: int | None = None
    ) -> list[Params]:
        values = self._list(key, required=required, max_items=max_items)
        return [Params(value, f"{self.name(key)}.{i}") for i, value in enumerate(values)]

    def object(self, key: str) -> Params | None:
        value = self.data.get(key)
        return None if value is None else Params(value, self.name(key))


def _bounds(lo: int | None, hi: int | None) -> str:
    if lo is not None and hi is not None:
        return f"{lo}..{hi}"
    return f">= {lo}" if lo is not None else f"<= {hi}"
