"""Configuration of the emulator: latency model, quotas, faults, network."""

from __future__ import annotations

import ipaddress
import json
import math
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

DEFAULT_REGION = "ap-guangzhou"
DEFAULT_VPC_ID = "vpc-directlb"
# The simulator's address plan: pods in ENI mode (127.17/16) and nodes (127.20/16) are in the
# VPC; the cluster CIDR of non-ENI pods (127.30/16) is not, exactly as on TKE.
DEFAULT_VPC_CIDRS = ("127.17.0.0/16", "127.20.0.0/16")
VIP_CIDR = "127.100.0.0/16"
# The VPC's subnets: an INTERNAL CLB must name one of them, as on Tencent Cloud.
DEFAULT_SUBNETS = ("subnet-1",)


@dataclass(frozen=True)
class LatencyModel:
    """Modeled cloud seconds per call; multiplied by the time scale to get wall seconds.

    The defaults are calibrated on the seed's published control-plane figures; benchmarks may
    override them only through an explicit ``--latency-model`` file.
    """

    request: float = 0.05
    describe_base: float = 0.1
    describe_per_item: float = 0.0005
    task_base: float = 5.0
    task_per_target: float = 0.008
    batch_base: float = 0.2
    batch_per_target: float = 0.008
    task_status: float = 0.05

    def describe(self, items: int) -> float:
        return self.describe_base + self.describe_per_item * items

    def task(self, targets: int) -> float:
        return self.task_base + self.task_per_target * targets

    def batch(self, targets: int) -> float:
        return self.batch_base + self.batch_per_target * targets

    @classmethod
    def from_file(cls, path: Path) -> LatencyModel:
        """Read a JSON or TOML file of ``name = seconds``; unknown names are an error."""
        text = path.read_text()
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected an object of name = seconds")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{path}: unknown latency settings {unknown}; known: {sorted(known)}")
        values: dict[str, float] = {}
        for name, value in data.items():
            # bool is an int to Python, and NaN/inf pass a "< 0" test: refuse them by name.
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not (math.isfinite(value) and value >= 0)
            ):
                raise ValueError(f"{path}: {name} must be a number of seconds >= 0")
            values[name] = float(value)
        return replace(cls(), **values)


# Quota ids as DescribeQuota names them, with the defaults Tencent documents.
DEFAULT_QUOTAS: dict[str, int] = {
    "TOTAL_OPEN_CLB_QUOTA": 500,
    "TOTAL_INTERNAL_CLB_QUOTA": 500,
    "TOTAL_LISTENER_QUOTA": 50,
    "TOTAL_LISTENER_RULE_QUOTA": 50,
    "TOTAL_TARGET_BIND_QUOTA": 100,
}

FAULT_KINDS = ("internal", "throttle", "busy", "drop", "slow", "taskfail")


@dataclass(frozen=True)
class FaultRule:
    """Inject a fault into ``action`` (``*`` for any) with ``probability``.

    ``kind`` is one of FAULT_KINDS, or None for "any kind that applies to the action".
    """

    action: str
    probability: float
    kind: str | None = None

    @classmethod
    def parse(cls, text: str) -> FaultRule:
        """Parse ``ACTION[:KIND]=PROBABILITY``, e.g. ``RegisterTargets:taskfail=0.2``."""
        head, sep, prob = text.partition("=")
        if not sep:
            raise ValueError(f"--fault {text!r}: expected ACTION[:KIND]=PROBABILITY")
        action, _, kind = head.partition(":")
        try:
            probability = float(prob)
        except ValueError:
            raise ValueError(f"--fault {text!r}: probability {prob!r} is not a number") from None
        if not 0 <= probability <= 1:
            raise ValueError(f"--fault {text!r}: probability must be between 0 and 1")
        if kind and kind not in FAULT_KINDS:
            raise ValueError(f"--fault {text!r}: kind must be one of {', '.join(FAULT_KINDS)}")
        if not action:
            raise ValueError(f"--fault {text!r}: name an action, or * for every action")
        return cls(action=action, probability=probability, kind=kind or None)


@dataclass(frozen=True)
class EmulatorConfig:
    secret_id: str
    secret_key: str
    region: str = DEFAULT_REGION
    time_scale: float = 1.0
    latency: LatencyModel = field(default_factory=LatencyModel)
    quotas: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_QUOTAS))
    faults: tuple[FaultRule, ...] = ()
    seed: int | None = None
    # Requests per cloud second per action; 0 switches the limit off.
    rate_limit: int = 20
    # Wall seconds a "slow" fault holds the answer back.
    slow_seconds: float = 3.0
    vpc_id: str = DEFAULT_VPC_ID
    vpc_cidrs: tuple[str, ...] = DEFAULT_VPC_CIDRS
    subnets: tuple[str, ...] = DEFAULT_SUBNETS
    state_path: Path | None = None
    # CVM instances (InstanceId -> private IP) that targets may name instead of an EniIp.
    instances: dict[str, str] = field(default_factory=dict)
    # SSL certificates of the account (CertId -> "SVR" or "CA"). Empty: every CertId is taken
    # (the emulator cannot know your account); once one is registered, only known ids are.
    certificates: dict[str, str] = field(default_factory=dict)
    # Serve real traffic on every CLB's VIP (see dataplane.py); off: the API only.
    data_plane: bool = True

    def __post_init__(self) -> None:
        if not (math.isfinite(self.time_scale) and self.time_scale >= 0):
            raise ValueError("--time-scale must be >= 0")
        for cidr in self.vpc_cidrs:
            try:
                ipaddress.ip_network(cidr)
            except ValueError as error:
                raise ValueError(f"--vpc-cidr {cidr!r}: {error}") from None
        unknown = sorted(set(self.quotas) - set(DEFAULT_QUOTAS))
        if unknown:
            raise ValueError(f"unknown quota ids {unknown}; known: {sorted(DEFAULT_QUOTAS)}")
        # An override names only the quotas it changes; the rest keep Tencent's defaults.
        object.__setattr__(self, "quotas", DEFAULT_QUOTAS | self.quotas)

    def wall(self, cloud_seconds: float) -> float:
        """Wall seconds that ``cloud_seconds`` of modeled cloud time take."""
        return cloud_seconds * self.time_scale
