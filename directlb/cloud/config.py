"""Configuration of the Tencent adapter: where, who, how fast, and which strategy.

Credentials come from ``TENCENTCLOUD_SECRET_ID``/``TENCENTCLOUD_SECRET_KEY`` (the names the
official SDK and tccli use) or from a file, and are never logged: their ``repr`` shows only the
last four characters of the SecretId.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path

from directlb.plan.limits import Batching

ENV_SECRET_ID = "TENCENTCLOUD_SECRET_ID"
ENV_SECRET_KEY = "TENCENTCLOUD_SECRET_KEY"


@dataclass(frozen=True)
class Credentials:
    secret_id: str = field(repr=False)
    secret_key: str = field(repr=False)

    def __post_init__(self) -> None:
        if not self.secret_id or not self.secret_key:
            raise ValueError("credentials need both a SecretId and a SecretKey")

    def __repr__(self) -> str:
        return f"Credentials(secret_id='…{self.secret_id[-4:]}', secret_key=<hidden>)"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Credentials:
        env = os.environ if environ is None else environ
        secret_id = env.get(ENV_SECRET_ID, "")
        secret_key = env.get(ENV_SECRET_KEY, "")
        if not secret_id or not secret_key:
            raise ValueError(
                f"set {ENV_SECRET_ID} and {ENV_SECRET_KEY}, or give a credentials file"
            )
        return cls(secret_id=secret_id, secret_key=secret_key)

    @classmethod
    def from_file(cls, path: Path) -> Credentials:
        """Read a JSON file (``secretId``/``secretKey``, as tccli writes them, or ``SecretId``/
        ``SecretKey``) or ``NAME=VALUE`` lines with the two environment variable names."""
        text = path.read_text()
        values: dict[str, str] = {}
        if text.lstrip().startswith("{"):
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError(f"{path}: expected a JSON object")
            values = {k.lower(): str(v) for k, v in data.items()}
            secret_id = values.get("secretid", "")
            secret_key = values.get("secretkey", "")
        else:
            for line in text.splitlines():
                name, sep, value = line.strip().partition("=")
                if sep and not name.startswith("#"):
                    values[name.strip()] = value.strip().strip("'\"")
            secret_id = values.get(ENV_SECRET_ID, "")
            secret_key = values.get(ENV_SECRET_KEY, "")
        if not secret_id or not secret_key:
            raise ValueError(f"{path}: no SecretId/SecretKey found (the values are not shown)")
        return cls(secret_id=secret_id, secret_key=secret_key)


@dataclass(frozen=True)
class Timing:
    """Every duration and rate the adapter uses, in wall seconds.

    The defaults suit the real cloud: 20 requests per second per action, retries capped at
    10 s apart, tasks polled from 0.5 s up to every 1 s. Against the emulator at a time scale,
    :meth:`scaled` shrinks the durations and raises the rate in proportion.
    """

    rate: float = 20.0  # requests per second per action; 0 switches throttling off
    burst: float = 1.0  # tokens a bucket holds; 1 spaces calls evenly
    retry_base: float = 0.2
    retry_cap: float = 10.0
    attempts: int = 8  # tries per call (and per operation, for failed tasks)
    poll_first: float = 0.5
    poll_factor: float = 1.5
    # 1 s, not more: a CLB task usually takes seconds, and every second a finished task goes
    # unnoticed holds back the CLB's next mutation (a 2 s cap noticed a 5 s task ~1 s late).
    poll_cap: float = 1.0
    task_timeout: float = 300.0
    request_timeout: float = 30.0
    cache_ttl: float = 10.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.rate < 0 or self.burst < 1:
            raise ValueError("rate must be >= 0 and burst >= 1")

    def scaled(self, factor: float) -> Timing:
        """The same behaviour with time running ``factor`` times as fast as the cloud's.

        Use the emulator's ``--time-scale`` as ``factor``. The request timeout is left alone:
        it guards the connection, not the modeled cloud.
        """
        if factor <= 0:
            raise ValueError("factor must be > 0; for time scale 0 pick a small factor")
        return replace(
            self,
            rate=self.rate / factor if self.rate else 0.0,
            retry_base=self.retry_base * factor,
            retry_cap=self.retry_cap * factor,
            poll_first=self.poll_first * factor,
            poll_cap=self.poll_cap * factor,
            task_timeout=self.task_timeout * factor,
            cache_ttl=self.cache_ttl * factor,
        )


class SyncStrategy(StrEnum):
    """How :meth:`sync` drives the CLBs: the seed's before/after columns on the same code.

    * ``naive``: one CLB at a time; per listener or rule, one backend query per desired target
      (DescribeTargets filtered to its address), one call per rule, targets in chunks of 20.
    * ``batch``: the Batch* calls and many rules per CreateRule, but still the per-target
      backend queries; one CLB at a time.
    * ``optimized``: batch calls, one observation round per CLB (no per-target queries, with a
      short-lived cache), CLBs in parallel.
    """

    NAIVE = "naive"
    BATCH = "batch"
    OPTIMIZED = "optimized"

    @property
    def batching(self) -> Batching:
        return Batching.SINGLE if self is SyncStrategy.NAIVE else Batching.BATCH

    @property
    def per_target_queries(self) -> bool:
        return self is not SyncStrategy.OPTIMIZED

    @property
    def parallel(self) -> bool:
        return self is SyncStrategy.OPTIMIZED


@dataclass(frozen=True)
class TencentConfig:
    region: str
    credentials: Credentials
    vpc_id: str = ""
    endpoint: str = ""  # HOST:PORT of an emulator; empty: clb.tencentcloudapi.com
    protocol: str = "https"
    strategy: SyncStrategy = SyncStrategy.OPTIMIZED
    timing: Timing = field(default_factory=Timing)
    concurrency: int = 8  # CLBs worked on at once (optimized strategy)

    def __post_init__(self) -> None:
        if not self.region:
            raise ValueError("a region is required (e.g. ap-guangzhou)")
        if self.protocol not in ("http", "https"):
            raise ValueError(f"protocol must be http or https, not {self.protocol!r}")
        if self.endpoint:
            host, sep, port = self.endpoint.rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"endpoint {self.endpoint!r} is not HOST:PORT")
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        object.__setattr__(self, "strategy", SyncStrategy(self.strategy))
