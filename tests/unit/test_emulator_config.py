"""The emulator's configuration: latency model, latency files, fault rules, validation."""

from __future__ import annotations

import math
from dataclasses import fields
from pathlib import Path

import pytest

from directlb.emulator.config import (
    DEFAULT_QUOTAS,
    DEFAULT_VPC_CIDRS,
    FAULT_KINDS,
    EmulatorConfig,
    FaultRule,
    LatencyModel,
)


def config(**overrides: object) -> EmulatorConfig:
    return EmulatorConfig(secret_id="AKIDx", secret_key="key", **overrides)  # type: ignore[arg-type]


# ----- latency model defaults (issue 2: calibrated on the seed's figures, keep them) ---------


def test_latency_defaults_match_the_issue() -> None:
    model = LatencyModel()
    assert model.request == 0.05
    assert model.describe_base == 0.1
    assert model.describe_per_item == 0.0005
    assert model.task_base == 5.0
    assert model.task_per_target == 0.008
    assert model.batch_base == 0.2
    assert model.batch_per_target == 0.008
    assert model.task_status == 0.05


@pytest.mark.parametrize(("items", "seconds"), [(0, 0.1), (1, 0.1005), (200, 0.2), (500, 0.35)])
def test_describe_latency(items: int, seconds: float) -> None:
    assert LatencyModel().describe(items) == pytest.approx(seconds)


@pytest.mark.parametrize(("targets", "seconds"), [(0, 5.0), (20, 5.16), (100, 5.8)])
def test_task_latency(targets: int, seconds: float) -> None:
    assert LatencyModel().task(targets) == pytest.approx(seconds)


@pytest.mark.parametrize(("targets", "seconds"), [(0, 0.2), (20, 0.36), (500, 4.2)])
def test_batch_latency(targets: int, seconds: float) -> None:
    assert LatencyModel().batch(targets) == pytest.approx(seconds)


def test_default_config_uses_default_latency_and_quotas() -> None:
    c = config()
    assert c.latency == LatencyModel()
    assert c.quotas == DEFAULT_QUOTAS
    assert c.quotas is not DEFAULT_QUOTAS  # each config owns its copy
    assert c.quotas["TOTAL_LISTENER_QUOTA"] == 50
    assert c.quotas["TOTAL_LISTENER_RULE_QUOTA"] == 50
    assert c.quotas["TOTAL_TARGET_BIND_QUOTA"] == 100
    assert c.rate_limit == 20
    assert c.time_scale == 1.0
    assert c.vpc_cidrs == DEFAULT_VPC_CIDRS


# ----- latency files -----------------------------------------------------------------------


def test_from_file_json_overrides_only_what_it_names(tmp_path: Path) -> None:
    path = tmp_path / "latency.json"
    path.write_text('{"task_base": 1, "describe_per_item": 0.001}')
    model = LatencyModel.from_file(path)
    assert model.task_base == 1.0
    assert isinstance(model.task_base, float)
    assert model.describe_per_item == 0.001
    assert model.request == 0.05
    assert model.task(10) == pytest.approx(1.08)


def test_from_file_toml(tmp_path: Path) -> None:
    path = tmp_path / "latency.toml"
    path.write_text("request = 0\ntask_base = 0.5\nbatch_per_target = 0.01\n")
    model = LatencyModel.from_file(path)
    assert model == LatencyModel(request=0.0, task_base=0.5, batch_per_target=0.01)


def test_from_file_every_field_can_be_set(tmp_path: Path) -> None:
    names = [f.name for f in fields(LatencyModel)]
    path = tmp_path / "all.json"
    path.write_text("{" + ", ".join(f'"{n}": {i + 1}' for i, n in enumerate(names)) + "}")
    model = LatencyModel.from_file(path)
    assert [getattr(model, n) for n in names] == [float(i + 1) for i in range(len(names))]


def test_from_file_empty_object_is_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "empty.json"
    path.write_text("{}")
    assert LatencyModel.from_file(path) == LatencyModel()


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("bad.json", '{"task_base": 1, "tasks_base": 2, "zzz": 0}'),
        ("bad.toml", "task_base = 1\ntasks_base = 2\nzzz = 0\n"),
    ],
)
def test_from_file_unknown_keys_are_named(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ValueError, match="unknown latency settings") as caught:
        LatencyModel.from_file(path)
    message = str(caught.value)
    assert "'tasks_base'" in message
    assert "'zzz'" in message
    assert str(path) in message
    assert "task_status" in message  # the known names are listed to help fix it


@pytest.mark.parametrize(
    "text",
    [
        '{"batch_base": -0.1}',
        '{"batch_base": "0.2"}',
        '{"batch_base": null}',
        '{"batch_base": [0.2]}',
        '{"batch_base": true}',
        '{"batch_base": NaN}',
        '{"batch_base": Infinity}',
    ],
)
def test_from_file_bad_json_values_are_named(tmp_path: Path, text: str) -> None:
    path = tmp_path / "latency.json"
    path.write_text(text)
    with pytest.raises(ValueError, match="batch_base must be a number of seconds >= 0"):
        LatencyModel.from_file(path)


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "true", '"fast"'])
def test_from_file_bad_toml_values_are_named(tmp_path: Path, value: str) -> None:
    path = tmp_path / "latency.toml"
    path.write_text(f"task_per_target = {value}\n")
    with pytest.raises(ValueError, match="task_per_target must be a number of seconds >= 0"):
        LatencyModel.from_file(path)


@pytest.mark.parametrize("text", ["[1, 2]", "5", '"task_base"', "null"])
def test_from_file_json_that_is_not_an_object_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "latency.json"
    path.write_text(text)
    with pytest.raises(ValueError, match="object"):
        LatencyModel.from_file(path)


@pytest.mark.parametrize(("name", "text"), [("x.json", "{task_base: 1"), ("x.toml", "task_base")])
def test_from_file_syntax_errors_are_value_errors(tmp_path: Path, name: str, text: str) -> None:
    # The CLI turns ValueError into a one-line message; a syntax error must be one too.
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ValueError):
        LatencyModel.from_file(path)


def test_from_file_missing_file_is_os_error(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        LatencyModel.from_file(tmp_path / "absent.json")


# ----- fault rules -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("RegisterTargets=0.2", FaultRule("RegisterTargets", 0.2)),
        ("RegisterTargets:taskfail=0.2", FaultRule("RegisterTargets", 0.2, "taskfail")),
        ("*=1", FaultRule("*", 1.0)),
        ("*:busy=0", FaultRule("*", 0.0, "busy")),
        ("DescribeTargets:slow=0.5", FaultRule("DescribeTargets", 0.5, "slow")),
        ("DescribeTargets:=0.5", FaultRule("DescribeTargets", 0.5)),
        ("X=1e-3", FaultRule("X", 0.001)),
    ],
)
def test_fault_rule_accepted_forms(text: str, rule: FaultRule) -> None:
    assert FaultRule.parse(text) == rule


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_fault_rule_every_kind_parses(kind: str) -> None:
    assert FaultRule.parse(f"*:{kind}=0.5").kind == kind


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("RegisterTargets", "expected ACTION"),
        ("RegisterTargets:busy", "expected ACTION"),
        ("=0.5", "name an action"),
        (":busy=0.5", "name an action"),
        ("RegisterTargets=", "is not a number"),
        ("RegisterTargets=often", "is not a number"),
        ("RegisterTargets=1.5", "between 0 and 1"),
        ("RegisterTargets=-0.1", "between 0 and 1"),
        ("RegisterTargets=nan", "between 0 and 1"),
        ("RegisterTargets=inf", "between 0 and 1"),
        ("RegisterTargets:explode=0.5", "kind must be one of"),
        ("RegisterTargets:BUSY=0.5", "kind must be one of"),
    ],
)
def test_fault_rule_rejected_forms(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why) as caught:
        FaultRule.parse(text)
    assert repr(text) in str(caught.value)


# ----- EmulatorConfig validation -------------------------------------------------------------


@pytest.mark.parametrize("scale", [-0.001, -1.0, math.nan, math.inf])
def test_config_rejects_bad_time_scale(scale: float) -> None:
    with pytest.raises(ValueError, match="--time-scale"):
        config(time_scale=scale)


@pytest.mark.parametrize("scale", [0.0, 0.01, 1.0, 10.0])
def test_config_accepts_time_scale(scale: float) -> None:
    assert config(time_scale=scale).time_scale == scale


@pytest.mark.parametrize("cidr", ["10.0.0.0/33", "not-a-cidr", "10.0.0.1/8", "300.0.0.0/8", ""])
def test_config_rejects_bad_cidrs(cidr: str) -> None:
    with pytest.raises(ValueError):
        config(vpc_cidrs=("10.0.0.0/8", cidr))


def test_config_accepts_cidrs() -> None:
    c = config(vpc_cidrs=("10.0.0.0/8", "192.168.1.0/24", "fd00::/8"))
    assert c.vpc_cidrs == ("10.0.0.0/8", "192.168.1.0/24", "fd00::/8")


def test_config_rejects_unknown_quota_ids() -> None:
    quotas = dict(DEFAULT_QUOTAS) | {"TOTAL_LISTENER_QUOTA": 5, "LISTENERS": 5}
    with pytest.raises(ValueError, match="unknown quota ids") as caught:
        config(quotas=quotas)
    assert "'LISTENERS'" in str(caught.value)
    assert "TOTAL_TARGET_BIND_QUOTA" in str(caught.value)


def test_config_accepts_known_quota_overrides() -> None:
    quotas = dict(DEFAULT_QUOTAS) | {"TOTAL_TARGET_BIND_QUOTA": 7}
    assert config(quotas=quotas).quotas["TOTAL_TARGET_BIND_QUOTA"] == 7


@pytest.mark.parametrize(
    ("scale", "cloud", "wall"),
    [(1.0, 5.0, 5.0), (0.01, 5.0, 0.05), (0.0, 5.0, 0.0), (2.0, 0.05, 0.1), (0.5, 0.0, 0.0)],
)
def test_wall_scales_cloud_seconds(scale: float, cloud: float, wall: float) -> None:
    assert config(time_scale=scale).wall(cloud) == pytest.approx(wall)
