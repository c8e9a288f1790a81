"""The control-plane benchmark's side of the cloud: the adapter, the ledger, the final state.

:func:`reconcile_ingresses` is what a reconcile of each Ingress does with the cloud port
(ensure its CLB by ownership tags, then ``sync`` the desired listeners), run one Ingress after
another for the sequential strategies and all at once for ``optimized`` (whose ``sync``
bounds the CLBs in flight), the way per-key reconciles drive it: ``--driver adapter``, the
cloud port driven without the controller around it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from directlb.bench.cp_stack import REGION, SECRET_ID, SECRET_KEY, VPC_ID
from directlb.cloud.config import Credentials, SyncStrategy, TencentConfig, Timing
from directlb.cloud.port import DesiredLoadBalancer, LoadBalancerSpec
from directlb.cloud.tencent import TencentLoadBalancers
from directlb.plan.diff import diff
from directlb.plan.state import Listener, LoadBalancerState

CLUSTER_ID = "cls-controlplane"
TAG_CLUSTER = "directlb.io/cluster-id"
TAG_INGRESS = "directlb.io/ingress"


@dataclass
class ClientTimes:
    """A :class:`~directlb.cloud.metrics.CallObserver` summing each call's client-side time."""

    calls: int = 0
    seconds: float = 0.0
    retries: dict[str, int] = field(default_factory=dict)

    def api_call(self, *, action: str, result: str, seconds: float) -> None:
        self.calls += 1
        self.seconds += seconds

    def task_wait(self, *, action: str, result: str, seconds: float) -> None:
        pass

    def retry(self, *, action: str, code: str, delay: float) -> None:
        self.retries[code] = self.retries.get(code, 0) + 1


def adapter(
    endpoint: str,
    *,
    strategy: SyncStrategy,
    time_scale: float,
    observer: ClientTimes | None = None,
) -> TencentLoadBalancers:
    """The real adapter, its pacing on the emulator's scaled clock."""
    config = TencentConfig(
        region=REGION,
        credentials=Credentials(secret_id=SECRET_ID, secret_key=SECRET_KEY),
        vpc_id=VPC_ID,
        endpoint=endpoint,
        protocol="http",
        strategy=strategy,
        timing=Timing().scaled(time_scale),
    )
    return TencentLoadBalancers(config, observer=observer)


def spec_for(ingress: str) -> LoadBalancerSpec:
    return LoadBalancerSpec(
        name=f"{CLUSTER_ID}-default-{ingress}",
        tags=((TAG_CLUSTER, CLUSTER_ID), (TAG_INGRESS, f"default/{ingress}")),
    )


async def reconcile_ingresses(
    cloud: TencentLoadBalancers, desired: dict[str, tuple[Listener, ...]]
) -> dict[str, str]:
    """Ensure and sync every Ingress's CLB; return CLB id by Ingress. Raises the first error."""

    async def one(name: str) -> tuple[str, str]:
        lb = await cloud.ensure_load_balancer(spec_for(name))
        [result] = await cloud.sync([DesiredLoadBalancer(lb.lb_id, desired[name], None)])
        if result.error is not None:
            raise result.error
        return name, lb.lb_id

    names = sorted(desired)
    if cloud.strategy.parallel:
        pairs = await asyncio.gather(*(one(n) for n in names))
    else:
        pairs = [await one(n) for n in names]
    return dict(pairs)


# --- the final state, compared across strategies ---------------------------------------------

Canonical = tuple[tuple[str, tuple[Any, ...]], ...]


def canonical(states: dict[str, LoadBalancerState]) -> Canonical:
    """The CLBs' states without ids, by Ingress: comparable across runs."""
    out: list[tuple[str, tuple[Any, ...]]] = []
    for name, state in sorted(states.items()):
        listeners = []
        for listener in sorted(state.listeners, key=lambda x: x.key):
            rules = tuple(
                sorted(
                    (r.domain, r.url, tuple(sorted((t.key, t.weight) for t in r.targets)))
                    for r in listener.rules
                )
            )
            targets = tuple(sorted((t.key, t.weight) for t in listener.targets))
            listeners.append((str(listener.protocol), listener.port, rules, targets))
        out.append((name, tuple(listeners)))
    return tuple(out)


async def final_state(
    endpoint: str, *, time_scale: float, desired: dict[str, tuple[Listener, ...]]
) -> tuple[Canonical, list[str]]:
    """Read every Ingress's CLB afresh; return its canonical form and what still differs."""
    async with adapter(endpoint, strategy=SyncStrategy.OPTIMIZED, time_scale=time_scale) as cloud:
        states: dict[str, LoadBalancerState] = {}
        problems: list[str] = []
        for name, listeners in sorted(desired.items()):
            found = await cloud.find_load_balancers(spec_for(name).tags)
            if len(found) != 1:
                problems.append(f"{name}: {len(found)} CLBs carry its tags")
                continue
            state = await cloud.observe(found[0].lb_id, fresh=True)
            states[name] = state
            left = diff(desired=listeners, observed=state)
            if left:
                problems.append(f"{name}: not converged: {left.summary()}")
        return canonical(states), problems


# --- the emulator's ledger ----------------------------------------------------------------------


async def ledger_last(endpoint: str) -> int:
    async with httpx.AsyncClient(timeout=60) as http:
        answer = await http.get(f"http://{endpoint}/_emulator/ledger/summary?since=0")
        answer.raise_for_status()
        return int(answer.json()["last"])


@dataclass
class LedgerFigures:
    calls: dict[str, int]
    errors: dict[str, int]
    answer_cloud_seconds: float  # sum of every answer's modeled latency
    server_seconds: float  # the emulator's own work (wall), summed
    last: int


async def ledger_entries(endpoint: str, since: int, *, until: int = 0) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(timeout=120) as http:
        answer = await http.get(f"http://{endpoint}/_emulator/ledger?since={since}")
        answer.raise_for_status()
        entries: list[dict[str, Any]] = answer.json()["entries"]
    return [e for e in entries if not until or e["seq"] <= until]


async def ledger_since(
    endpoint: str, since: int, *, until: int = 0, until_time: float = 0.0
) -> LedgerFigures:
    """The calls after ``since``, up to ``until`` included and answered by ``until_time``
    (``time.time()``) unless those are 0."""
    async with httpx.AsyncClient(timeout=120) as http:
        answer = await http.get(f"http://{endpoint}/_emulator/ledger?since={since}")
        answer.raise_for_status()
        data = answer.json()
    calls: dict[str, int] = {}
    errors: dict[str, int] = {}
    cloud = server = 0.0
    for entry in data["entries"]:
        if (until and entry["seq"] > until) or (until_time and entry["at"] > until_time):
            continue
        calls[entry["action"]] = calls.get(entry["action"], 0) + 1
        if entry["code"] != "Success":
            errors[entry["code"]] = errors.get(entry["code"], 0) + 1
        cloud += float(entry["cloud_seconds"])
        server += float(entry["server_seconds"])
    return LedgerFigures(
        calls=dict(sorted(calls.items())),
        errors=errors,
        answer_cloud_seconds=cloud,
        server_seconds=server,
        last=int(data["last"]),
    )


def now() -> float:
    return time.perf_counter()
