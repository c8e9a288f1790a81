"""The two stand-ins of the control-plane benchmark, each in its own process.

``python -m directlb.bench.cp_stack emulator --time-scale F`` runs the CLB emulator with the
default latency model, API only: no data plane and **no health prober**. A real CLB's health
checks run on machines other than its API servers; here the prober would probe every bound
target every ``IntervalTime x F`` wall seconds (10,000 node targets at 0.1 s apart for the
nodes scenario) and take the CPU that the API answers and the controller need, distorting the
modeled times. Nothing the control plane does depends on it.

``python -m directlb.bench.cp_stack sim --nodes N --kubeconfig-out FILE`` runs the cluster
simulator (API server, nodes, scheduler, kubelet, workloads, Service allocation and
EndpointSlices) **without kube-proxy**: the benchmark sends no traffic, and 400 NodePort
Services on 50 nodes would be 20,000 listening sockets, this machine's file limit.

Each prints one line with its address once it serves (``listening on ...``), and stops on
SIGTERM. :func:`emulator_process` and :func:`sim_process` start them as children.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from directlb.bench.common import child_process

SECRET_ID = "AKIDdirectlbcontrolplane"
SECRET_KEY = "directlb-control-plane-bench"
REGION = "ap-guangzhou"
VPC_ID = "vpc-directlb"
LISTENING = re.compile(rb"listening on (https?://)?([\d.]+:\d+)")
SIM_PARTS = ("directlb.sim.cluster.workloads", "directlb.sim.cluster.network")


async def _serve_emulator(time_scale: float, rate_limit: int) -> None:
    from directlb.emulator.config import EmulatorConfig
    from directlb.emulator.server import Emulator

    config = EmulatorConfig(
        secret_id=SECRET_ID,
        secret_key=SECRET_KEY,
        region=REGION,
        time_scale=time_scale,
        seed=1,
        rate_limit=rate_limit,
        vpc_id=VPC_ID,
        data_plane=False,
        quotas={"TOTAL_OPEN_CLB_QUOTA": 1000},
    )
    emulator = Emulator(config)

    async def no_probes() -> None:
        await asyncio.Event().wait()

    # The prober is started by Emulator.start(); give it nothing to do (see the docstring).
    setattr(emulator.health, "run", no_probes)  # noqa: B010
    gc.set_threshold(50_000, 20, 100)
    gc.freeze()
    await emulator.start("127.0.0.1", 0)
    print(f"CLB emulator listening on http://{emulator.endpoint}", flush=True)
    await _until_signalled()
    await emulator.stop()


async def _serve_sim(nodes: int, kubeconfig: Path) -> None:
    from directlb.sim.cluster.cluster import Cluster
    from directlb.sim.cluster.config import ClusterConfig
    from directlb.sim.server import ApiServer, SimConfig

    server = ApiServer(SimConfig())
    await server.start("127.0.0.1", 0)
    cluster = Cluster.for_server(server, ClusterConfig(nodes=nodes), optional_parts=SIM_PARTS)
    await cluster.start()
    server.write_kubeconfig(kubeconfig)
    print(f"Kubernetes API server (simulated) listening on {server.url}", flush=True)
    await _until_signalled()
    await cluster.stop()
    await server.stop()


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


@contextlib.asynccontextmanager
async def emulator_process(*, time_scale: float, rate_limit: int = 20) -> AsyncIterator[str]:
    """Yield the endpoint (HOST:PORT) of an emulator child process."""
    argv = [
        sys.executable, "-m", "directlb.bench.cp_stack", "emulator",
        "--time-scale", repr(time_scale), "--rate-limit", str(rate_limit),
    ]  # fmt: skip
    async with child_process(argv, ready=LISTENING, timeout=60) as (match, _pid):
        yield match.group(2).decode()


@contextlib.asynccontextmanager
async def sim_process(*, nodes: int, kubeconfig: Path) -> AsyncIterator[int]:
    """Start a simulator child process with ``nodes`` nodes; yield its pid."""
    argv = [
        sys.executable, "-m", "directlb.bench.cp_stack", "sim",
        "--nodes", str(nodes), "--kubeconfig-out", str(kubeconfig),
    ]  # fmt: skip
    async with child_process(argv, ready=LISTENING, timeout=120) as (_match, pid):
        yield pid


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m directlb.bench.cp_stack")
    sub = parser.add_subparsers(dest="what", required=True)
    emu = sub.add_parser("emulator")
    emu.add_argument("--time-scale", type=float, required=True)
    emu.add_argument("--rate-limit", type=int, default=20)
    sim = sub.add_parser("sim")
    sim.add_argument("--nodes", type=int, required=True)
    sim.add_argument("--kubeconfig-out", type=Path, required=True)
    args = parser.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING)
    if args.what == "emulator":
        asyncio.run(_serve_emulator(args.time_scale, args.rate_limit))
    else:
        asyncio.run(_serve_sim(args.nodes, args.kubeconfig_out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
