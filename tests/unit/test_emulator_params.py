"""Typed reading of request parameters, and the official error codes for bad input."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from directlb.emulator.errors import ApiError
from directlb.emulator.params import Params


def error_of(read: Any, *args: Any, **kwargs: Any) -> ApiError:
    with pytest.raises(ApiError) as caught:
        read(*args, **kwargs)
    return caught.value


# ----- the body itself ----------------------------------------------------------------------


@pytest.mark.parametrize("body", [None, [], "x", 1, True])
def test_body_that_is_not_an_object_is_format_error(body: Any) -> None:
    error = error_of(Params, body)
    assert error.code == "InvalidParameter.FormatError"
    assert "`body`" in error.message


def test_nested_value_that_is_not_an_object_is_format_error_named() -> None:
    p = Params({"HealthCheck": "on"})
    error = error_of(p.object, "HealthCheck")
    assert error.code == "InvalidParameter.FormatError"
    assert "`HealthCheck`" in error.message


# ----- missing ------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [{}, {"LoadBalancerId": None}, {"LoadBalancerId": ""}])
def test_missing_or_empty_required_text_is_missing_parameter(body: dict[str, Any]) -> None:
    error = error_of(Params(body).req_text, "LoadBalancerId")
    assert error.code == "MissingParameter"
    assert "`LoadBalancerId`" in error.message


@pytest.mark.parametrize("body", [{}, {"Port": None}])
def test_missing_required_integer_is_missing_parameter(body: dict[str, Any]) -> None:
    error = error_of(Params(body).req_integer, "Port")
    assert error.code == "MissingParameter"
    assert "`Port`" in error.message


def test_required_integer_zero_is_present() -> None:
    assert Params({"Port": 0}).req_integer("Port") == 0


def test_missing_nested_parameter_is_named_with_its_path() -> None:
    body = {"Targets": [{"EniIp": "127.17.0.1", "Port": 80}, {"EniIp": "127.17.0.2"}]}
    first, second = Params(body).objects("Targets")
    assert first.req_integer("Port") == 80
    error = error_of(second.req_integer, "Port")
    assert error.code == "MissingParameter"
    assert "`Targets.1.Port`" in error.message


def test_deeply_nested_names() -> None:
    body = {"Targets": [{"HealthCheck": {"HttpCheckPath": 5}}]}
    [target] = Params(body).objects("Targets")
    health = target.object("HealthCheck")
    assert health is not None
    error = error_of(health.text, "HttpCheckPath")
    assert error.code == "InvalidParameter"
    assert "`Targets.0.HealthCheck.HttpCheckPath`" in error.message


@pytest.mark.parametrize("value", [None, []])
def test_missing_or_empty_required_list_is_missing_parameter(value: list[Any] | None) -> None:
    p = Params({"Targets": value})
    for read in (p.texts, p.integers, p.objects):
        error = error_of(read, "Targets", required=True)
        assert error.code == "MissingParameter"
        assert "`Targets`" in error.message


def test_optional_absent_values_take_defaults() -> None:
    p = Params({})
    assert p.text("Name") is None
    assert p.text("Name", default="x") == "x"
    assert p.integer("Weight") is None
    assert p.integer("Weight", default=10) == 10
    assert p.flag("Enabled") is False
    assert p.flag("Enabled", default=True) is True
    assert p.texts("Ids") == []
    assert p.integers("Ports") == []
    assert p.objects("Targets") == []
    assert p.object("HealthCheck") is None
    assert p.has("Name") is False


def test_optional_empty_text_is_returned_as_is() -> None:
    assert Params({"Name": ""}).text("Name") == ""
    assert Params({"Name": ""}).has("Name") is True


# ----- wrong types ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", [1, 1.5, True, [], {}, ["a"]])
def test_text_of_wrong_type_is_invalid_parameter(value: Any) -> None:
    error = error_of(Params({"Domain": value}).text, "Domain")
    assert error.code == "InvalidParameter"
    assert "`Domain`" in error.message
    assert "string" in error.message


@pytest.mark.parametrize("value", ["80", 80.0, 80.5, True, False, [80], {}])
def test_integer_of_wrong_type_is_invalid_parameter(value: Any) -> None:
    error = error_of(Params({"Port": value}).integer, "Port")
    assert error.code == "InvalidParameter"
    assert "`Port`" in error.message
    assert "integer" in error.message


@pytest.mark.parametrize("value", [0, 1, "true", [], {}])
def test_flag_of_wrong_type_is_invalid_parameter(value: Any) -> None:
    error = error_of(Params({"Enabled": value}).flag, "Enabled")
    assert error.code == "InvalidParameter"
    assert "`Enabled`" in error.message


@pytest.mark.parametrize("value", ["a", 1, {"a": 1}])
def test_list_of_wrong_type_is_invalid_parameter(value: Any) -> None:
    p = Params({"Ids": value})
    for read in (p.texts, p.integers, p.objects):
        error = error_of(read, "Ids")
        assert error.code == "InvalidParameter"
        assert "`Ids`" in error.message
        assert "array" in error.message


def test_list_item_of_wrong_type_is_named_by_index() -> None:
    error = error_of(Params({"Ids": ["lb-1", 2]}).texts, "Ids")
    assert error.code == "InvalidParameter"
    assert "`Ids.1`" in error.message
    error = error_of(Params({"Ports": [80, True]}).integers, "Ports")
    assert error.code == "InvalidParameter"
    assert "`Ports.1`" in error.message
    error = error_of(Params({"Targets": [{}, "x"]}).objects, "Targets")
    assert error.code == "InvalidParameter.FormatError"
    assert "`Targets.1`" in error.message


def test_well_typed_values_are_returned() -> None:
    p = Params(
        {
            "Name": "web",
            "Port": 80,
            "On": True,
            "Ids": ["a", "b"],
            "Ports": [1, 2],
            "Hc": {"X": 1},
        }
    )
    assert p.req_text("Name") == "web"
    assert p.req_integer("Port") == 80
    assert p.flag("On") is True
    assert p.texts("Ids") == ["a", "b"]
    assert p.integers("Ports") == [1, 2]
    hc = p.object("Hc")
    assert hc is not None
    assert hc.prefix == "Hc"
    assert hc.req_integer("X") == 1


# ----- ranges, lengths, choices, list sizes -------------------------------------------------


@pytest.mark.parametrize(("value", "ok"), [(0, False), (1, True), (65535, True), (65536, False)])
def test_integer_range_is_inclusive(value: int, ok: bool) -> None:
    p = Params({"Port": value})
    if ok:
        assert p.integer("Port", lo=1, hi=65535) == value
    else:
        error = error_of(p.integer, "Port", lo=1, hi=65535)
        assert error.code == "InvalidParameterValue.Range"
        assert "`Port`" in error.message
        assert str(value) in error.message


def test_integer_range_with_one_bound() -> None:
    assert Params({"Weight": 10**9}).integer("Weight", lo=0) == 10**9
    error = error_of(Params({"Weight": -1}).integer, "Weight", lo=0)
    assert error.code == "InvalidParameterValue.Range"
    error = error_of(Params({"Weight": 101}).integer, "Weight", hi=100)
    assert error.code == "InvalidParameterValue.Range"


def test_text_length_limit() -> None:
    assert Params({"Name": "x" * 60}).text("Name", max_len=60) == "x" * 60
    error = error_of(Params({"Name": "x" * 61}).text, "Name", max_len=60)
    assert error.code == "InvalidParameterValue.Length"
    assert "`Name`" in error.message
    assert "60" in error.message


def test_text_choices() -> None:
    p = Params({"Protocol": "TCP"})
    assert p.text("Protocol", choices=("TCP", "UDP")) == "TCP"
    error = error_of(p.text, "Protocol", choices=("HTTP", "HTTPS"))
    assert error.code == "InvalidParameterValue"
    assert "`Protocol`" in error.message
    assert "'TCP'" in error.message
    assert "HTTP, HTTPS" in error.message


def test_choices_are_case_sensitive() -> None:
    error = error_of(Params({"Protocol": "tcp"}).text, "Protocol", choices=("TCP", "UDP"))
    assert error.code == "InvalidParameterValue"


@pytest.mark.parametrize("reader", ["texts", "integers", "objects"])
def test_list_max_items_is_limit_exceeded(reader: str) -> None:
    item: Any = {"texts": "a", "integers": 1, "objects": {}}[reader]
    assert len(getattr(Params({"L": [item] * 20}), reader)("L", max_items=20)) == 20
    error = error_of(getattr(Params({"L": [item] * 21}), reader), "L", max_items=20)
    assert error.code == "LimitExceeded"
    assert "`L`" in error.message
    assert "21" in error.message
    assert "20" in error.message


def test_nested_list_limit_names_the_path() -> None:
    body = {"Targets": [{"Ids": ["a", "b", "c"]}]}
    [target] = Params(body).objects("Targets")
    error = error_of(target.texts, "Ids", max_items=2)
    assert error.code == "LimitExceeded"
    assert "`Targets.0.Ids`" in error.message


# ----- property: nothing but ApiError escapes ----------------------------------------------

KEYS = ["A", "B", "Targets", "Port", "Name"]
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(KEYS), children, max_size=4),
    ),
    max_leaves=20,
)


def _read_everything(data: Any, depth: int = 0) -> int:
    """Call every reader on every key; return how many reads succeeded."""
    try:
        p = Params(data, "X" if depth else "")
    except ApiError:
        return 0
    reads: list[Any] = [
        lambda k: p.text(k),
        lambda k: p.req_text(k, choices=("a", ""), max_len=3),
        lambda k: p.integer(k, lo=0, hi=10),
        lambda k: p.req_integer(k),
        lambda k: p.flag(k),
        lambda k: p.texts(k, required=True, max_items=2),
        lambda k: p.integers(k, max_items=3),
        lambda k: p.has(k),
    ]
    ok = 0
    for key in KEYS:
        for read in reads:
            try:
                read(key)
                ok += 1
            except ApiError:
                pass
        try:
            for child in p.objects(key, max_items=4):
                ok += _read_everything(child.data, depth + 1)
        except ApiError:
            pass
        try:
            nested = p.object(key)
            if nested is not None:
                ok += _read_everything(nested.data, depth + 1)
        except ApiError:
            pass
    return ok


@given(data=json_values)
@settings(max_examples=120, deadline=None)
def test_reading_any_json_raises_nothing_but_api_error(data: Any) -> None:
    reads = _read_everything(data)
    # has() never fails on an object, so an object body always yields at least one read per key.
    assert reads >= (len(KEYS) if isinstance(data, dict) else 0)


@given(
    data=st.dictionaries(st.sampled_from(KEYS), json_values, max_size=4), key=st.sampled_from(KEYS)
)
@settings(max_examples=80, deadline=None)
def test_errors_name_the_parameter_they_are_about(data: dict[str, Any], key: str) -> None:
    p = Params(data)
    for read in (p.req_text, p.req_integer, p.flag, p.texts, p.integers):
        try:
            read(key)
        except ApiError as error:
            assert error.code in {"MissingParameter", "InvalidParameter"}
            assert f"`{key}" in error.message
