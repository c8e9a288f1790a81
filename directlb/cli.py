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
        "--subnet",
        action="append",
        metavar="SUBNET_ID",
        help="a subnet of the VPC, for INTERNAL CLBs (repeatable); default subnet-1",
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
    p.add_argument(
        "--data-plane",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="carry real TCP/UDP/HTTP traffic on every CLB's VIP (default: on)",
    )
    p.set_defaults(run=_run_emulator)


def _emulator_config(args: argparse.Namespace) -> object:
    from directlb.emulator.config import (
        DEFAULT_QUOTAS,
        DEFAULT_SUBNETS,
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
        subnets=tuple(args.subnet) if args.subnet else DEFAULT_SUBNETS,
        state_path=args.state,
        instances=dict(args.instance),
        data_plane=args.data_plane,
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
    cluster = p.add_argument_group("cluster (nodes, pods, services; all on loopback)")
    cluster.add_argument("--nodes", type=int, default=3, metavar="N", help="nodes registered")
    cluster.add_argument("--node-cidr", default="127.20.0.0/16", metavar="CIDR")
    cluster.add_argument(
        "--eni-pod-cidr", default="127.17.0.0/16", metavar="CIDR", help="VPC-CNI (ENI) pod IPs"
    )
    cluster.add_argument(
        "--cluster-cidr", default="127.30.0.0/16", metavar="CIDR", help="other pods' IPs"
    )
    cluster.add_argument("--service-cidr", default="127.96.0.0/16", metavar="CIDR")
    cluster.add_argument(
        "--node-port-range", type=_port_range, default=(30000, 32767), metavar="LOW-HIGH"
    )
    cluster.add_argument(
        "--zones",
        default="ap-guangzhou-3,ap-guangzhou-4,ap-guangzhou-6",
        help="comma-separated; nodes are spread over them round-robin",
    )
    cluster.add_argument(
        "--probe-time-scale",
        type=float,
        default=1.0,
        metavar="X",
        help="readiness probes' initialDelaySeconds and periodSeconds are multiplied by X",
    )
    p.set_defaults(run=_run_sim)


def _port_range(text: str) -> tuple[int, int]:
    low, sep, high = text.partition("-")
    if not sep or not low.isdigit() or not high.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not LOW-HIGH (e.g. 30000-32767)")
    return int(low), int(high)


def _sim_config(args: argparse.Namespace) -> object:
    from directlb.sim.server import SimConfig

    return SimConfig(
        token=args.token,
        git_version=args.git_version,
        tls=not args.insecure_http,
        state_dir=args.state_dir,
        history_size=args.watch_history,
    )


def _cluster_config(args: argparse.Namespace) -> object:
    from directlb.sim.cluster.config import ClusterConfig

    return ClusterConfig(
        nodes=args.nodes,
        node_cidr=args.node_cidr,
        eni_pod_cidr=args.eni_pod_cidr,
        cluster_cidr=args.cluster_cidr,
        service_cidr=args.service_cidr,
        node_port_range=args.node_port_range,
        zones=tuple(z.strip() for z in args.zones.split(",") if z.strip()),
    )


def _run_sim(args: argparse.Namespace) -> int:
    from directlb.sim.cluster.cluster import Cluster
    from directlb.sim.cluster.config import ClusterConfig
    from directlb.sim.server import ApiServer, SimConfig

    config = _sim_config(args)
    assert isinstance(config, SimConfig)
    try:
        cluster_config = _cluster_config(args)
    except ValueError as error:
        print(f"directlb sim: {error}", file=sys.stderr)
        return 2
    assert isinstance(cluster_config, ClusterConfig)

    async def serve() -> None:
        server = ApiServer(config)
        host, port = args.listen
        await server.start(host, port)
        cluster = Cluster.for_server(server, cluster_config, probe_time_scale=args.probe_time_scale)
        await cluster.start()
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
        await cluster.stop()
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
    p = kinds.add_parser(
        "sim-api",
        help="the simulated API server's list latency and watch throughput (5,000 pods)",
    )
    p.add_argument("--pods", type=int, default=5000)
    p.add_argument("--services", type=int, default=500)
    p.add_argument("--nodes", type=int, default=50)
    p.add_argument("--namespaces", type=int, default=10)
    p.add_argument("--list-runs", type=int, default=30, help="raw lists of all pods timed")
    p.add_argument("--lightkube-runs", type=int, default=10, help="lightkube lists timed")
    p.add_argument("--watchers", type=int, default=5)
    p.add_argument("--rate", type=float, default=200.0, help="pod status patches per second")
    p.add_argument("--seconds", type=float, default=10.0, help="how long the writer runs")
    p.add_argument("--concurrency", type=int, default=16, help="writes in flight at most")
    p.add_argument("--out", type=Path, metavar="DIR", help="write sim-api.json and sim-api.md")
    p.set_defaults(run=_run_bench_sim_api)
    p = kinds.add_parser(
        "sim-cluster",
        help="start a simulated cluster of N nodes and real pods; time to Ready, memory",
    )
    p.add_argument("--nodes", type=int, default=50)
    p.add_argument("--deployments", type=int, default=50)
    p.add_argument("--replicas", type=int, default=100, help="pods per Deployment")
    p.add_argument(
        "--out", type=Path, metavar="DIR", help="write sim-cluster.json and sim-cluster.md"
    )
    p.set_defaults(run=_run_bench_sim_cluster)
    p = kinds.add_parser(
        "services",
        help="the Service controller at 500 Services x 10 pods: resync cost, writes per pod "
        "change, serving-to-registered latency (issue 7)",
    )
    p.add_argument("--services", type=int, default=500)
    p.add_argument("--pods-per-service", type=int, default=10)
    p.add_argument("--nodes", type=int, default=50)
    p.add_argument("--samples", type=int, default=100, help="pod changes sampled one at a time")
    p.add_argument(
        "--resyncs",
        type=int,
        default=3,
        help="full resyncs measured (each after the observe cache expired; the figure is "
        "their median)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes (5 Services x 2 pods, 3 nodes, 3 samples, 1 resync)",
    )
    p.add_argument("--out", type=Path, metavar="DIR", help="write services.json and services.md")
    p.add_argument(
        "--cidr-base",
        type=int,
        default=117,
        metavar="B",
        help="loopback ranges 127.B/16..127.B+3/16 for pods, nodes, other pods, Services "
        "(default 117; give two runs at once different bases)",
    )
    p.add_argument(
        "--profile",
        type=Path,
        metavar="FILE",
        help="run the resyncs under cProfile and write their stats to FILE and "
        "FILE.service-keys (slows them)",
    )
    p.set_defaults(run=_run_bench_services)
    p = kinds.add_parser(
        "gates",
        help="readiness-gate flip latency: target healthy on the CLB -> pod condition True "
        "(issue 8)",
    )
    p.add_argument("--pods", type=int, default=200, help="gated pods, added one at a time")
    p.add_argument("--services", type=int, default=4, help="direct-access Services")
    p.add_argument("--nodes", type=int, default=5)
    p.add_argument(
        "--gap", type=float, default=0.25, help="mean pause between two pods added (seconds)"
    )
    p.add_argument(
        "--time-scale",
        type=float,
        default=0.01,
        help="the emulator's time scale; the health-check interval is 5 s times this "
        "(at least 0.05 s)",
    )
    p.add_argument("--quick", action="store_true", help="tiny sizes (6 pods, 2 Services, 2 nodes)")
    p.add_argument("--out", type=Path, metavar="DIR", help="write gates.json and gates.md")
    p.set_defaults(run=_run_bench_gates)
    _add_bench_control_plane(kinds)


def _add_bench_control_plane(kinds: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = kinds.add_parser(
        "control-plane",
        help="the seed's control-plane tables (node and rule surge) per sync strategy (issue 11)",
    )
    p.add_argument("--scenario", choices=("nodes", "rules", "smoke", "all"), default="smoke")
    p.add_argument(
        "--strategies",
        default="naive,batch,optimized",
        metavar="LIST",
        help="comma-separated sync strategies to run (naive, batch, optimized)",
    )
    p.add_argument(
        "--time-scale",
        default="0.02",
        metavar="F[,STRATEGY=F]",
        help="wall seconds per modeled cloud second, for the emulator and the adapter's pacing "
        "alike; per-strategy overrides allowed (e.g. 0.02,optimized=0.1)",
    )
    p.add_argument(
        "--driver",
        choices=("controller", "adapter"),
        default="controller",
        help="what reacts to the change: the real controller (default), or the Ingress model "
        "and the cloud adapter driven directly",
    )
    p.add_argument(
        "--out", type=Path, metavar="DIR", help="write report.md, results.csv/json, plot.png"
    )
    p.set_defaults(run=_run_bench_control_plane)


def _run_bench_control_plane(args: argparse.Namespace) -> int:
    from directlb.bench.control_plane import main as bench_main

    return bench_main(args)


def _run_bench_gates(args: argparse.Namespace) -> int:
    from directlb.bench.gates import main as bench_main

    return bench_main(args)


def _run_bench_services(args: argparse.Namespace) -> int:
    from directlb.bench.services import main as bench_main

    return bench_main(args)


def _run_bench_emulator(args: argparse.Namespace) -> int:
    from directlb.bench.emulator import main as bench_main

    return bench_main(args)


def _run_bench_sim_cluster(args: argparse.Namespace) -> int:
    from directlb.bench.sim_cluster import main as bench_main

    return bench_main(args)


def _run_bench_sim_api(args: argparse.Namespace) -> int:
    from directlb.bench.sim_api import main as bench_main

    return bench_main(args)


def _add_controller(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from directlb.controllers.config import add_arguments

    p = sub.add_parser(
        "controller",
        help="run the controller (every flag may also come from DIRECTLB_<FLAG>)",
    )
    add_arguments(p)
    p.set_defaults(run=_run_controller)


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def _run_controller(args: argparse.Namespace) -> int:
    from directlb.controllers import runtime
    from directlb.controllers.config import ConfigError, from_args

    try:
        config = from_args(args)
    except ConfigError as error:
        print(f"directlb controller: {error}", file=sys.stderr)
        return 2

    async def serve() -> None:
        await runtime.run(config, stop=_stop_on_signals())

    asyncio.run(serve())
    return 0


def _add_up(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "up",
        help="the whole local environment: simulated cluster, CLB emulator and controller",
    )
    p.add_argument("--nodes", type=int, default=3, metavar="N", help="nodes registered")
    p.add_argument(
        "--state-dir",
        type=Path,
        metavar="DIR",
        help="keep the cluster, the CLBs and the kubeconfig here (default: a temporary dir)",
    )
    p.add_argument(
        "--ready-file", type=Path, metavar="FILE", help="write the connection details as JSON"
    )
    p.set_defaults(run=_run_up)


def _run_up(args: argparse.Namespace) -> int:
    from directlb.demo.up import main as up_main

    return up_main(args)


def _add_demo(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo",
        help="measure the seed's comparison table: each backend mode through a rolling update",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("out/demo"),
        metavar="DIR",
        help="where report.json, demo.png and demo.log go (default: ./out/demo)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="shorter and lighter, for CI (about 35 s instead of 85)",
    )
    # Development: run some modes only (direct-gates,direct-no-gates,nodeport,local).
    p.add_argument("--modes", help=argparse.SUPPRESS)
    p.set_defaults(run=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from directlb.demo.demo import main as demo_main

    return demo_main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="directlb", description=__doc__)
    parser.add_argument("--log-level", default="INFO")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_emulator(sub)
    _add_sim(sub)
    _add_controller(sub)
    _add_up(sub)
    _add_demo(sub)
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
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    return int(args.run(args))
