"""Helpers for the cloud adapter's integration tests: adapters, the fixed scenario, checks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from directlb.cloud import (
    CallCounter,
    Credentials,
    DesiredLoadBalancer,
    LoadBalancerSpec,
    SyncResult,
    SyncStrategy,
    TencentConfig,
    TencentLoadBalancers,
    Timing,
)
from directlb.cloud.api import Sender
from directlb.emulator.server import Emulator
from directlb.plan.diff import diff
from directlb.plan.state import (
    Certificate,
    HealthCheck,
    Listener,
    LoadBalancerState,
    Rule,
    Target,
    TargetKind,
)
from tests import support

# Client timing for an emulator at time scale 0 (or 0.01): waits of a millisecond or so.
# Ten tries (not eight) per call: at the 20% fault rate of the fault tests, eight drops in a
# row somewhere in a run (0.2**8 per call) would otherwise be a rare but real flake.
FAST = Timing(
    rate=0.0,
    attempts=10,
    retry_base=0.001,
    retry_cap=0.01,
    poll_first=0.0005,
    poll_cap=0.005,
    task_timeout=20.0,
    cache_ttl=30.0,
)

INSTANCES = {f"ins-node{i}": f"127.20.0.{i}" for i in range(1, 7)}

Desired = dict[str, tuple[Listener, ...]]


def config(
    emulator: Emulator,
    *,
    strategy: SyncStrategy | str = SyncStrategy.OPTIMIZED,
    timing: Timing = FAST,
) -> TencentConfig:
    return TencentConfig(
        region=support.REGION,
        credentials=Credentials(support.SECRET_ID, support.SECRET_KEY),
        endpoint=emulator.endpoint,
        protocol="http",
        strategy=SyncStrategy(strategy),
        timing=timing,
    )


def adapter(
    emulator: Emulator,
    *,
    strategy: SyncStrategy | str = SyncStrategy.OPTIMIZED,
    observer: CallCounter | None = None,
    timing: Timing = FAST,
    send: Sender | None = None,
) -> TencentLoadBalancers:
    settings = config(emulator, strategy=strategy, timing=timing)
    return TencentLoadBalancers(settings, observer=observer, send=send)


def spec(name: str) -> LoadBalancerSpec:
    return LoadBalancerSpec(name=name, tags=(("directlb.io/test", name),))


async def ensure_all(clb: TencentLoadBalancers, names: list[str]) -> dict[str, str]:
    return {name: (await clb.ensure_load_balancer(spec(name))).lb_id for name in names}


async def sync(
    clb: TencentLoadBalancers, ids: Mapping[str, str], desired: Desired
) -> list[SyncResult]:
    return await clb.sync(
        [DesiredLoadBalancer(ids[n], listeners) for n, listeners in desired.items()]
    )


def pods(first: int, count: int, *, port: int = 80, weight: int = 10) -> tuple[Target, ...]:
    """``count`` pod targets with distinct ENI IPs in 127.17/16, from number ``first``."""
    return tuple(
        Target(f"127.17.{n // 250}.{n % 250 + 1}", port, weight=weight)
        for n in range(first, first + count)
    )


def nodes(port: int, *, weight: int = 10, count: int = 5) -> tuple[Target, ...]:
    return tuple(
        Target(ip, port, weight=weight, kind=TargetKind.NODE, instance_id=instance)
        for instance, ip in list(INSTANCES.items())[:count]
    )


def reweighed(targets: tuple[Target, ...], every: int, weight: int) -> tuple[Target, ...]:
    return tuple(
        Target(
            t.ip,
            t.port,
            weight=weight if i % every == 0 else t.weight,
            kind=t.kind,
            instance_id=t.instance_id,
        )
        for i, t in enumerate(targets)
    )


# Health checks are switched off where many targets are bound: the emulator really probes
# every checked target (every 50 ms at time scale 0), which would only slow these tests down.
OFF = HealthCheck(enabled=False)


def phase_one() -> Desired:
    """Two CLBs, six listeners (TCP, UDP, HTTP, HTTPS), seven rules, 320 targets."""
    return {
        "alpha": (
            Listener(protocol="TCP", port=80, name="web", health_check=OFF, targets=pods(0, 90)),
            Listener(protocol="UDP", port=53, health_check=OFF, targets=pods(100, 20, port=53)),
            Listener(
                protocol="HTTP",
                port=8080,
                rules=(
                    Rule("a.example.com", "/", health_check=OFF, targets=pods(200, 40, port=8080)),
                    Rule(
                        "a.example.com",
                        "/api",
                        health_check=HealthCheck(http_path="/healthz", interval=10),
                        targets=pods(240, 4, port=8080),
                    ),
                    Rule("b.example.com", "/", health_check=OFF, targets=pods(300, 30, port=8080)),
                ),
            ),
            Listener(
                protocol="HTTPS",
                port=443,
                certificate=Certificate("cert-demo"),
                rules=(
                    Rule("a.example.com", "/", health_check=OFF, targets=pods(200, 30, port=8443)),
                    Rule("c.example.com", "/static", targets=nodes(30443)),
                ),
            ),
        ),
        "beta": (
            Listener(protocol="TCP", port=9000, targets=nodes(30900)),
            Listener(
                protocol="HTTP",
                port=80,
                rules=(
                    Rule("x.example.com", "/", health_check=OFF, targets=pods(400, 96)),
                    Rule("y.example.com", "/", session_expire=60, targets=pods(400, 5)),
                ),
            ),
        ),
    }


def phase_two() -> Desired:
    """Weight changes, removals and additions of targets, rules and listeners."""
    return {
        "alpha": (
            Listener(
                protocol="TCP",
                port=80,
                name="web",
                health_check=HealthCheck(interval=10),
                targets=reweighed(pods(20, 80), 5, 50),  # 20 gone, 10 new, 16 reweighed
            ),
            # UDP:53 is gone.
            Listener(
                protocol="HTTP",
                port=8080,
                rules=(
                    Rule("a.example.com", "/", targets=reweighed(pods(200, 40, port=8080), 4, 0)),
                    # a.example.com/api is gone.
                    Rule(
                        "b.example.com",
                        "/",
                        scheduler="LEAST_CONN",
                        targets=pods(310, 20, port=8080),
                    ),
                    Rule("d.example.com", "/v2", targets=pods(500, 20, port=8080)),
                ),
            ),
            Listener(
                protocol="HTTPS",
                port=443,
                certificate=Certificate("cert-demo"),
                rules=(
                    Rule("a.example.com", "/", targets=pods(200, 30, port=8443)),
                    Rule("c.example.com", "/static", targets=nodes(30443, count=6)),
                ),
            ),
            Listener(protocol="TCP", port=9000, targets=pods(600, 10, port=9000)),
        ),
        "beta": (
            Listener(protocol="TCP", port=9000, targets=nodes(30900, weight=30)),
            Listener(
                protocol="HTTP",
                port=80,
                rules=(
                    Rule("x.example.com", "/", targets=pods(430, 50)),
                    Rule("y.example.com", "/", session_expire=60, targets=pods(400, 5)),
                ),
            ),
        ),
    }


def assert_matches(desired: tuple[Listener, ...], observed: LoadBalancerState) -> None:
    """``observed`` is exactly ``desired``: nothing missing, nothing extra, nothing to change."""
    plan = diff(desired=desired, observed=observed)
    assert not plan, plan.summary()
    assert sorted(x.key for x in observed.listeners) == sorted(x.key for x in desired)
    for want in desired:
        got = observed.listener(want.key)
        assert got is not None
        assert sorted(got.targets) == sorted(want.targets), want.key
        assert sorted(r.key for r in got.rules) == sorted(r.key for r in want.rules), want.key
        for rule in want.rules:
            got_rule = got.rule(rule.key)
            assert got_rule is not None
            assert sorted(got_rule.targets) == sorted(rule.targets), (want.key, rule.key)


def store_counts(emulator: Emulator) -> dict[str, int]:
    """What the emulator holds, counted from its own store (not through the adapter)."""
    counts = {"load_balancers": 0, "listeners": 0, "rules": 0, "targets": 0}
    for lb in emulator.store.lbs.values():
        counts["load_balancers"] += 1
        for listener in lb.listeners.values():
            counts["listeners"] += 1
            counts["rules"] += len(listener.rules)
            counts["targets"] += len(listener.targets)
            counts["targets"] += sum(len(r.targets) for r in listener.rules.values())
    return counts


def desired_counts(desired: Desired) -> dict[str, int]:
    listeners = [x for group in desired.values() for x in group]
    return {
        "load_balancers": len(desired),
        "listeners": len(listeners),
        "rules": sum(len(x.rules) for x in listeners),
        "targets": sum(len(x.targets) + sum(len(r.targets) for r in x.rules) for x in listeners),
    }


async def ledger_summary(emulator: Emulator, *, since: int = 0) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        answer = await http.get(
            f"http://{emulator.endpoint}/_emulator/ledger/summary", params={"since": since}
        )
    answer.raise_for_status()
    document: dict[str, Any] = answer.json()
    return document


async def ledger(emulator: Emulator, *, since: int = 0) -> list[dict[str, Any]]:
    async with httpx.AsyncClient() as http:
        answer = await http.get(
            f"http://{emulator.endpoint}/_emulator/ledger", params={"since": since}
        )
    answer.raise_for_status()
    entries: list[dict[str, Any]] = answer.json()["entries"]
    return entries


def calls(summary: dict[str, Any]) -> dict[str, int]:
    return {action: row["calls"] for action, row in summary["actions"].items()}
