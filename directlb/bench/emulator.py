"""``directlb bench emulator``: show the CLB emulator is never the bottleneck.

The emulator runs as its own process at time scale 0 (no modeled latency) with the rate limit
off, so what is measured is the emulator's own cost. The official async SDK drives it from this
process. Two figures answer the issue's targets:

* Describe calls per second, several actions mixed, with ``--concurrency`` calls in flight;
* server time of DescribeTargets on a 500-target listener, while the emulator holds 50,000+
  targets across 500 CLBs, read from the emulator's ledger (``server_seconds``: the time
  between receiving the request and having the answer ready, without any modeled latency).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import sys
import time
from collections.abc import AsyncIterator, Awaitable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from tencentcloud.clb.v20180317 import clb_client_async
from tencentcloud.common import credential
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile

from directlb.bench.common import (
    child_process,
    cpu_seconds,
    gather_limited,
    percentiles,
    report,
    rss_mib,
)
from directlb.emulator.auth import tc3_signature

SECRET_ID = "AKIDdirectlbbench"
SECRET_KEY = "directlb-bench-key"
REGION = "ap-guangzhou"
BATCH = 500  # BatchRegisterTargets limit


@dataclass
class DescribeRow:
    """Throughput of one kind of Describe call (or of all of them in turn: "mixed")."""

    action: str
    what: str
    calls: int
    seconds: float
    calls_per_second: float
    emulator_cpu_ms_per_call: float
    errors: int


@dataclass
class EmulatorBenchResult:
    clbs: int
    targets: int
    populate_seconds: float
    describe: list[DescribeRow]
    load_processes: int
    big_listener_targets: int
    describe_targets_samples: int
    describe_targets_server_ms: dict[str, float]
    describe_targets_client_ms: dict[str, float]
    emulator_rss_mib: float
    concurrency: int
    cpu_count: int
    python: str = field(default_factory=lambda: sys.version.split()[0])


@contextlib.asynccontextmanager
async def _emulator_process(quota_targets: int) -> AsyncIterator[tuple[str, int]]:
    """Start ``directlb clb-emulator`` as a child process; yield (endpoint, pid)."""
    argv = [
        sys.executable, "-m", "directlb", "--log-level", "WARNING", "clb-emulator",
        "--listen", "127.0.0.1:0", "--secret-id", SECRET_ID, "--secret-key", SECRET_KEY,
        "--time-scale", "0", "--rate-limit", "0", "--seed", "1",
        "--quota", f"TOTAL_TARGET_BIND_QUOTA={quota_targets}",
        "--quota", "TOTAL_OPEN_CLB_QUOTA=1000",
    ]  # fmt: skip
    async with child_process(argv, ready=re.compile(rb"http://([\d.]+:\d+)")) as (match, pid):
        yield match.group(1).decode(), pid


def _client(endpoint: str) -> clb_client_async.ClbClient:
    http = HttpProfile(endpoint=endpoint, protocol="http", keepAlive=True, reqTimeout=60)
    return clb_client_async.ClbClient(
        credential.Credential(SECRET_ID, SECRET_KEY), REGION, ClientProfile(httpProfile=http)
    )


async def _api(client: clb_client_async.ClbClient, action: str, **params: Any) -> dict[str, Any]:
    answer = await client.call_and_deserialize(action, params, dict)
    return dict(answer["Response"])


def _ip(n: int) -> str:
    # 127.17.0.0/16 is the VPC's pod subnet; skip .0 and .255 host bytes for realism.
    return f"127.17.{n // 250}.{n % 250 + 1}"


async def _populate(
    client: clb_client_async.ClbClient, *, clbs: int, per_clb: int, big: int, concurrency: int
) -> tuple[list[str], str, str]:
    """Create the CLBs, one listener each (+ a big one on the first), and bind the targets."""
    lb_ids: list[str] = []
    while len(lb_ids) < clbs:
        number = min(20, clbs - len(lb_ids))
        answer = await _api(client, "CreateLoadBalancer", LoadBalancerType="OPEN", Number=number)
        lb_ids.extend(answer["LoadBalancerIds"])
    no_check = {"HealthSwitch": 0}

    async def listener(lb_id: str, port: int) -> str:
        answer = await _api(
            client, "CreateListener", LoadBalancerId=lb_id, Ports=[port], Protocol="TCP",
            HealthCheck=no_check,
        )  # fmt: skip
        return str(answer["ListenerIds"][0])

    listeners = await gather_limited([listener(lb_id, 80) for lb_id in lb_ids], concurrency)
    big_listener = await listener(lb_ids[0], 8080)
    counter = iter(range(10**9))
    jobs: list[Awaitable[Any]] = []
    for lb_id, listener_id in zip(lb_ids, listeners, strict=True):
        targets = [
            {"ListenerId": listener_id, "EniIp": _ip(next(counter)), "Port": 80}
            for _ in range(per_clb)
        ]
        for start in range(0, len(targets), BATCH):
            chunk = targets[start : start + BATCH]
            jobs.append(_api(client, "BatchRegisterTargets", LoadBalancerId=lb_id, Targets=chunk))
    big_targets = [
        {"ListenerId": big_listener, "EniIp": _ip(next(counter)), "Port": 8080} for _ in range(big)
    ]
    for start in range(0, len(big_targets), BATCH):
        chunk = big_targets[start : start + BATCH]
        jobs.append(_api(client, "BatchRegisterTargets", LoadBalancerId=lb_ids[0], Targets=chunk))
    answers = await gather_limited(jobs, concurrency)
    failed = [a for a in answers if a.get("FailListenerIdSet")]
    if failed:
        raise RuntimeError(f"registration failed: {failed[0]}")
    return lb_ids, listeners[1], big_listener


def _signed_headers(endpoint: str, action: str, body: bytes) -> dict[str, str]:
    """Headers of a TC3-signed request, computed the way the official SDK computes them."""
    timestamp = int(time.time())
    date = time.strftime("%Y-%m-%d", time.gmtime(timestamp))
    headers = {"content-type": "application/json", "host": endpoint}
    signature = tc3_signature(
        secret_key=SECRET_KEY, method="POST", path="/", query="", headers=headers,
        signed_headers=["content-type", "host"], payload=body, timestamp=timestamp, date=date,
        service="clb",
    )  # fmt: skip
    return {
        "Content-Type": "application/json",
        "Host": endpoint,
        "X-TC-Action": action,
        "X-TC-Version": "2018-03-17",
        "X-TC-Region": REGION,
        "X-TC-Timestamp": str(timestamp),
        "Authorization": f"TC3-HMAC-SHA256 Credential={SECRET_ID}/{date}/clb/tc3_request, "
        f"SignedHeaders=content-type;host, Signature={signature}",
    }


def _describe_kinds(
    lb_ids: list[str], listener_id: str, per_clb: int
) -> list[tuple[str, str, dict[str, Any]]]:
    health_lbs = lb_ids[1:31]
    return [
        ("DescribeLoadBalancers", "20 CLBs by id", {"LoadBalancerIds": lb_ids[:20]}),
        ("DescribeListeners", "one CLB", {"LoadBalancerId": lb_ids[1]}),
        (
            "DescribeTargets",
            f"one {per_clb}-target listener",
            {"LoadBalancerId": lb_ids[1], "ListenerIds": [listener_id]},
        ),
        (
            "DescribeTargetHealth",
            f"{len(health_lbs)} CLBs, {len(health_lbs) * per_clb} targets",
            {"LoadBalancerIds": health_lbs},
        ),
    ]


async def _load_worker(
    endpoint: str, kinds: list[tuple[str, dict[str, Any]]], calls: int, concurrency: int
) -> tuple[dict[str, int], int]:
    """Send ``calls`` signed Describe calls over keep-alive connections; count the answers."""
    by_action: dict[str, int] = {}
    errors = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(i: int) -> None:
            nonlocal errors
            action, params = kinds[i % len(kinds)]
            body = json.dumps(params).encode()
            headers = _signed_headers(endpoint, action, body)
            async with session.post(f"http://{endpoint}/", data=body, headers=headers) as resp:
                answer = await resp.json(content_type=None)
            if "Error" in answer["Response"]:
                errors += 1
            else:
                by_action[action] = by_action.get(action, 0) + 1

        await gather_limited([one(i) for i in range(calls)], concurrency)
    return by_action, errors


def _load_process(
    endpoint: str, kinds: list[tuple[str, dict[str, Any]]], calls: int, concurrency: int
) -> tuple[dict[str, int], int]:
    return asyncio.run(_load_worker(endpoint, kinds, calls, concurrency))


async def _describe_mix(
    endpoint: str,
    *,
    kinds: list[tuple[str, dict[str, Any]]],
    calls: int,
    concurrency: int,
    processes: int,
) -> tuple[float, dict[str, int], int]:
    """Run ``calls`` Describe calls from ``processes`` load processes; (seconds, counts, errors).

    The load comes from separate processes so that the client's own CPU (JSON, signing) is
    spread out and what saturates is the emulator, which is what this measures.
    """
    loop = asyncio.get_running_loop()
    share = calls // processes
    with ProcessPoolExecutor(max_workers=processes) as pool:
        # Start the workers (interpreter start-up is not the emulator's cost).
        await asyncio.gather(*(loop.run_in_executor(pool, time.sleep, 0.01)
                               for _ in range(processes)))  # fmt: skip
        started = time.perf_counter()
        results = await asyncio.gather(
            *(
                loop.run_in_executor(pool, _load_process, endpoint, kinds, share, concurrency)
                for _ in range(processes)
            )
        )
        seconds = time.perf_counter() - started
    by_action: dict[str, int] = {}
    errors = 0
    for counts, errs in results:
        errors += errs
        for action, n in counts.items():
            by_action[action] = by_action.get(action, 0) + n
    return seconds, by_action, errors


async def _ledger_since(endpoint: str, since: int) -> list[dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{endpoint}/_emulator/ledger", params={"since": since}) as resp,
    ):
        data = await resp.json()
    return list(data["entries"])


async def _ledger_last(endpoint: str) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{endpoint}/_emulator/health") as resp,
    ):
        data = await resp.json()
    return int(data["calls"])


async def _measure(
    endpoint: str,
    pid: int,
    *,
    action: str,
    what: str,
    kinds: list[tuple[str, dict[str, Any]]],
    calls: int,
    concurrency: int,
    processes: int,
) -> DescribeRow:
    cpu_before = cpu_seconds(pid)
    seconds, _counts, errors = await _describe_mix(
        endpoint, kinds=kinds, calls=calls, concurrency=concurrency, processes=processes
    )
    cpu = cpu_seconds(pid) - cpu_before
    return DescribeRow(
        action=action,
        what=what,
        calls=calls,
        seconds=round(seconds, 3),
        calls_per_second=round(calls / seconds, 1),
        emulator_cpu_ms_per_call=round(cpu / calls * 1000, 3),
        errors=errors,
    )


async def run_emulator_bench(
    *,
    clbs: int = 500,
    per_clb: int = 100,
    big: int = 500,
    calls: int = 4000,
    samples: int = 200,
    concurrency: int = 16,
    processes: int = 2,
) -> EmulatorBenchResult:
    async with _emulator_process(quota_targets=max(per_clb, big)) as (endpoint, pid):
        client = _client(endpoint)
        try:
            started = time.perf_counter()
            lb_ids, listener_id, big_listener = await _populate(
                client, clbs=clbs, per_clb=per_clb, big=big, concurrency=concurrency
            )
            populate_seconds = time.perf_counter() - started
            kinds = _describe_kinds(lb_ids, listener_id, per_clb)
            rows = [
                await _measure(
                    endpoint,
                    pid,
                    action=action,
                    what=what,
                    kinds=[(action, params)],
                    calls=calls,
                    concurrency=concurrency,
                    processes=processes,
                )
                for action, what, params in kinds
            ]
            rows.append(
                await _measure(
                    endpoint,
                    pid,
                    action="mixed",
                    what="the four above in turn",
                    kinds=[(a, p) for a, _, p in kinds],
                    calls=calls,
                    concurrency=concurrency,
                    processes=processes,
                )
            )
            since = await _ledger_last(endpoint)
            client_times: list[float] = []
            for _ in range(samples):
                t0 = time.perf_counter()
                answer = await _api(
                    client, "DescribeTargets", LoadBalancerId=lb_ids[0], ListenerIds=[big_listener]
                )
                client_times.append(time.perf_counter() - t0)
                assert len(answer["Listeners"][0]["Targets"]) == big
            entries = [
                e for e in await _ledger_since(endpoint, since) if e["action"] == "DescribeTargets"
            ]
            server_times = [float(e["server_seconds"]) for e in entries]
            rss = rss_mib(pid)
        finally:
            await client.close()
    return EmulatorBenchResult(
        clbs=clbs,
        targets=clbs * per_clb + big,
        populate_seconds=round(populate_seconds, 2),
        describe=rows,
        load_processes=processes,
        big_listener_targets=big,
        describe_targets_samples=len(server_times),
        describe_targets_server_ms=percentiles(server_times),
        describe_targets_client_ms=percentiles(client_times),
        emulator_rss_mib=rss,
        concurrency=concurrency,
        cpu_count=os.cpu_count() or 0,
    )


def render(result: EmulatorBenchResult) -> str:
    server = result.describe_targets_server_ms
    client = result.describe_targets_client_ms
    lines = [
        "# directlb bench emulator",
        "",
        f"- machine: {result.cpu_count} CPUs, Python {result.python}; emulator at time scale 0, "
        "rate limit off, in its own process",
        f"- load: {result.load_processes} processes sending TC3-signed calls, "
        f"{result.concurrency} in flight each; populated and sampled with the official async SDK",
        f"- state: {result.clbs} CLBs, {result.targets} targets "
        f"(populated in {result.populate_seconds} s)",
        "",
        "| Describe call | calls/s (target >= 500) | emulator CPU per call | errors |",
        "|---|---|---|---|",
        *(
            f"| {row.action} ({row.what}) | {row.calls_per_second} | "
            f"{row.emulator_cpu_ms_per_call} ms | {row.errors} |"
            for row in result.describe
        ),
        "",
        "| figure | target | measured |",
        "|---|---|---|",
        f"| DescribeTargets of a {result.big_listener_targets}-target listener, server time | "
        f"< 20 ms | p50 {server['p50']} ms, p99 {server['p99']} ms, max {server['max']} ms "
        f"({result.describe_targets_samples} calls) |",
        f"| same call, client round trip (SDK parsing included) | - | p50 {client['p50']} ms, "
        f"p99 {client['p99']} ms |",
        f"| emulator resident memory | - | {result.emulator_rss_mib} MiB |",
        "",
    ]
    return "\n".join(lines)


def main(args: Any) -> int:
    result = asyncio.run(
        run_emulator_bench(
            clbs=args.clbs,
            per_clb=args.targets_per_clb,
            big=args.big_listener,
            calls=args.calls,
            samples=args.samples,
            concurrency=args.concurrency,
            processes=args.processes,
        )
    )
    report(result, render(result), out=args.out, name="emulator")
    server_ok = result.describe_targets_server_ms["p99"] < 20
    light = [r for r in result.describe if r.action not in ("DescribeTargetHealth", "mixed")]
    rate_ok = all(r.calls_per_second >= 500 for r in light)
    return 0 if rate_ok and server_ok else 1
