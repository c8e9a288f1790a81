"""The ``directlb`` command: one CLI, one subcommand per job."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:9000)")
    return host, int(port)


def _instance(text: str) -> tuple[str, str]:
    instance_id, sep, ip = text.partition("=")
    if not sep or not instance_id or not ip:
        raise argparse.ArgumentTypeError(f"{text!r} is not INSTANCE_ID=IP (e.g. ins-1=127.20.0.1)")
    return instance_id, ip


def _quota(text: str) -> tuple[str, int]:
    name, sep, value = text.partition("=")
    if not sep or not value.isdigit():
        raise argparse.ArgumentTypeError(
            f"{text!r} is not QUOTA_ID=N (e.g. TOTAL_LISTENER_QUOTA=100)"
        )
    return name, int(value)


def _add_emulator(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "clb-emulator",
        help="run the Tencent Cloud CLB emulator (API 3.0, as the official SDK and tccli speak it)",
    )
    p.add_argument("--listen", type=_host_port, default=("127.0.0.1", 9000), metavar="HOST:PORT")
    p.add_argument("--secret-id", required=True, metavar="ID")
    p.add_argument("--secret-key", required=True, metavar="KEY")
    p.add_argument("--region", default="ap-guangzhou")
    p.add_argument(
        "--state",
        type=Path,
        metavar="FILE.sqlite",
        help="keep state in this SQLite file (survives kill -9); default: in memory",
    )
    p.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        metavar="F",
        help="wall seconds per modeled cloud second (0: instant)",
    )
    p.add_argument(
        "--latency-model",
        type=Path,
        metavar="FILE",
        help="JSON or TOML file overriding latency settings",
    )
    p.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="ACTION[:KIND]=PROBABILITY",
        help="inject faults; KIND: internal, throttle, busy, drop, slow, taskfail",
    )
    p.add_argument("--seed", type=int, help="seed for ids and faults (reproducible runs)")
    p.add_argument(
        "--rate-limit",
        type=int,
        default=20,
        metavar="N",
        help="requests per cloud second per action (0: no limit)",
    )
    p.add_argument("--vpc-id", default="vpc-directlb")
    p.add_argument(
        "--vpc-cidr",
        action="append",
        metavar="CIDR",
        help="a CIDR of the VPC (repeatable); default 127.17.0.0/16 and 127.20.0.0/16",
    )
    p.add_argument(
        "--instance",
        action="append",
        type=_instance,
        default=[],
        metavar="INSTANCE_ID=IP",
        help="a CVM instance targets may be bound by",
    )
    p.add_argument("--quota", action="append", type=_quota, default=[], metavar="QUOTA_ID=N")
    p.add_argument(
        "--slow-seconds",
        type=float,
        default=3.0,
        help="wall seconds a 'slow' fault holds an answer back",
    )
    p.set_defaults(run=_run_emulator)


def _emulator_config(args: argparse.Namespace) -> object:
    from directlb.emulator.config import (
        DEFAULT_QUOTAS,
        DEFAULT_VPC_CIDRS,
        EmulatorConfig,
        FaultRule,
        LatencyModel,
    )

    latency = LatencyModel.from_file(args.latency_model) if args.latency_model else LatencyModel()
    return EmulatorConfig(
        secret_id=args.secret_id,
        secret_key=args.secret_key,
        region=args.region,
        time_scale=args.time_scale,
        latency=latency,
        quotas=DEFAULT_QUOTAS | dict(args.quota),
        faults=tuple(FaultRule.parse(f) for f in args.fault),
        seed=args.seed,
        rate_limit=args.rate_limit,
        slow_seconds=args.slow_seconds,
        vpc_id=args.vpc_id,
        vpc_cidrs=tuple(args.vpc_cidr) if args.vpc_cidr else DEFAULT_VPC_CIDRS,
        state_path=args.state,
        instances=dict(args.instance),
    )


def _run_emulator(args: argparse.Namespace) -> int:
    from directlb.emulator.config import EmulatorConfig
    from directlb.emulator.server import Emulator

    try:
        config = _emulator_config(args)
    except (ValueError, OSError) as error:
        print(f"directlb clb-emulator: {error}", file=sys.stderr)
        return 2
    assert isinstance(config, EmulatorConfig)

    async def serve() -> None:
        emulator = Emulator(config)
        # The state is a large graph of long-lived objects; with the default thresholds a full
        # collection (tens of ms at 50k targets) lands in the middle of requests. A larger
        # young generation lets each request's garbage die young, and freezing what was loaded
        # keeps it out of later collections.
        gc.set_threshold(50_000, 20, 100)
        gc.freeze()
        host, port = args.listen
        await emulator.start(host, port)
        print(
            f"CLB emulator listening on http://{emulator.endpoint} region={config.region}",
            flush=True,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await emulator.stop()

    asyncio.run(serve())
    return 0


def _add_sim(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "sim",
        help="run the cluster simulator: a Kubernetes API server kubectl and lightkube use",
    )
    p.add_argument("--listen", type=_host_port, default=("127.0.0.1", 6443), metavar="HOST:PORT")
    p.add_argument(
        "--kubeconfig-out",
        type=Path,
        metavar="FILE",
        help="write a kubeconfig for this server (token and CA included)",
    )
    p.add_argument(
        "--state-dir",
        type=Path,
        metavar="DIR",
        help="keep objects, token and certificates here: a restart resumes the cluster and a "
        "kubeconfig stays valid",
    )
    p.add_argument("--token", help="the bearer token clients must send (default: random)")
    p.add_argument(
        "--git-version", default="v1.32.4", help="the version /version reports (vMAJOR.MINOR.PATCH)"
    )
    p.add_argument("--insecure-http", action="store_true", help="serve plain HTTP instead of HTTPS")
    p.add_argument(
        "--watch-history",
        type=int,
        default=5000,
        metavar="N",
        help="events kept per resource for watches to resume from (older: 410 Gone)",
    )
    p.set_defaults(run=_run_sim)


def _sim_config(args: argparse.Namespace) -> object:
    from directlb.sim.server import SimConfig

    return SimConfig(
        token=args.token,
        git_version=args.git_version,
        tls=not args.insecure_http,
        state_dir=args.state_dir,
        history_size=args.watch_history,
    )


def _run_sim(args: argparse.Namespace) -> int:
    from directlb.sim.server import ApiServer, SimConfig

    config = _sim_config(args)
    assert isinstance(config, SimConfig)

    async def serve() -> None:
        server = ApiServer(config)
        host, port = args.listen
        await server.start(host, port)
        if args.kubeconfig_out:
            server.write_kubeconfig(args.kubeconfig_out)
        print(f"Kubernetes API server (simulated) listening on {server.url}", flush=True)
        if args.kubeconfig_out:
            print(f"kubeconfig written to {args.kubeconfig_out}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await server.stop()

    asyncio.run(serve())
    return 0


def _add_bench(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bench = sub.add_parser("bench", help="benchmarks (figures recorded in docs/)")
    kinds = bench.add_subparsers(dest="bench", required=True)
    p = kinds.add_parser(
        "emulator",
        help="show the CLB emulator is never the bottleneck (Describe rate, 50k targets)",
    )
    p.add_argument("--clbs", type=int, default=500)
    p.add_argument("--targets-per-clb", type=int, default=100)
    p.add_argument(
        "--big-listener",
        type=int,
        default=500,
        help="targets on the listener whose DescribeTargets server time is measured",
    )
    p.add_argument("--calls", type=int, default=4000, help="Describe calls timed")
    p.add_argument("--samples", type=int, default=200, help="DescribeTargets calls sampled")
    p.add_argument("--concurrency", type=int, default=16, help="calls in flight per process")
    p.add_argument("--processes", type=int, default=2, help="load-generating processes")
    p.add_argument("--out", type=Path, metavar="DIR", help="write emulator.json and emulator.md")
    p.set_defaults(run=_run_bench_emulator)


def _run_bench_emulator(args: argparse.Namespace) -> int:
    from directlb.bench.emulator import main as bench_main

    return bench_main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="directlb", description=__doc__)
    parser.add_argument("--log-level", default="INFO")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_emulator(sub)
    _add_sim(sub)
    _add_bench(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="ts=%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
    )
    # httpx logs every request at INFO; that is the SDK's chatter, not ours.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return int(args.run(args))
