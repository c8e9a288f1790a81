"""``directlb bench sim-cluster``: can this machine run a 50-node cluster of 5,000 real pods?

``directlb sim --nodes N`` runs in its own process; this process creates ``deployments``
Deployments of ``replicas`` pods each (ENI mode, one HTTP container port, no readiness gate)
through the API and measures, from the simulator's side of things:

* how long the N nodes take to be Ready after start;
* how long from the first Deployment created until every pod is Ready (every Deployment's
  ``readyReplicas`` equals its ``replicas``), i.e. scheduled, given an IP, its server bound and
  its status written;
* the simulator's resident memory and CPU seconds at the end;
* a sample of pods answering HTTP on podIP:80, to show the servers are real.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from lightkube import AsyncClient, KubeConfig
from lightkube.models.apps_v1 import DeploymentSpec
from lightkube.models.core_v1 import Container, ContainerPort, PodSpec, PodTemplateSpec
from lightkube.models.meta_v1 import LabelSelector, ObjectMeta
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Node, Pod

from directlb.bench.common import child_process, cpu_seconds, gather_limited, report, rss_mib

READY_LINE = re.compile(rb"listening on (https?://[\d.]+:\d+)")


@dataclass
class ClusterBenchResult:
    nodes: int
    deployments: int
    replicas: int
    pods: int
    nodes_ready_seconds: float
    pods_ready_seconds: float
    pods_per_second: float
    sim_rss_mib: float
    sim_cpu_seconds: float
    http_sampled: int
    http_answered: int
    cpu_count: int = field(default_factory=lambda: os.cpu_count() or 0)
    python: str = field(default_factory=lambda: sys.version.split()[0])


def _deployment(name: str, replicas: int) -> Deployment:
    labels = {"app": name}
    return Deployment(
        metadata=ObjectMeta(name=name, namespace="default"),
        spec=DeploymentSpec(
            replicas=replicas,
            selector=LabelSelector(matchLabels=labels),
            template=PodTemplateSpec(
                metadata=ObjectMeta(
                    labels=labels,
                    annotations={"tke.cloud.tencent.com/networks": "tke-route-eni"},
                ),
                spec=PodSpec(
                    containers=[
                        Container(
                            name="web",
                            image="nginx:1.7.9",
                            ports=[ContainerPort(containerPort=80)],
                        )
                    ]
                ),
            ),
        ),
    )


async def _wait(predicate: Any, *, timeout: float, interval: float = 0.25) -> float:
    """Poll ``await predicate()`` until true; return the seconds it took (raise on timeout)."""
    started = time.perf_counter()
    while not await predicate():
        if time.perf_counter() - started > timeout:
            raise TimeoutError(f"not reached within {timeout:.0f}s")
        await asyncio.sleep(interval)
    return time.perf_counter() - started


async def _nodes_ready(client: AsyncClient, want: int) -> bool:
    ready = 0
    async for node in client.list(Node):
        conditions = node.status.conditions if node.status else None
        if any(c.type == "Ready" and c.status == "True" for c in conditions or []):
            ready += 1
    return ready >= want


async def _deployments_ready(client: AsyncClient, want: int, replicas: int) -> bool:
    done = 0
    async for deployment in client.list(Deployment, namespace="default"):
        status = deployment.status
        if status is not None and (status.readyReplicas or 0) == replicas:
            done += 1
    return done >= want


async def _http_sample(client: AsyncClient, sample: int) -> tuple[int, int]:
    pods = [p async for p in client.list(Pod, namespace="default")]
    chosen = random.Random(1).sample(pods, min(sample, len(pods)))
    answered = 0
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for pod in chosen:
            ip = pod.status.podIP if pod.status else None
            try:
                async with session.get(f"http://{ip}:80/") as resp:
                    answered += resp.status == 200
            except (aiohttp.ClientError, TimeoutError):
                pass
    return len(chosen), answered


async def run_cluster_bench(
    *, nodes: int = 50, deployments: int = 50, replicas: int = 100, timeout: float = 900
) -> ClusterBenchResult:
    with tempfile.TemporaryDirectory() as tmp:
        kubeconfig = Path(tmp) / "kubeconfig"
        argv = [
            sys.executable, "-m", "directlb", "--log-level", "WARNING", "sim",
            "--listen", "127.0.0.1:0", "--nodes", str(nodes),
            "--kubeconfig-out", str(kubeconfig),
        ]  # fmt: skip
        started = time.perf_counter()
        async with child_process(argv, ready=READY_LINE, timeout=120) as (_match, pid):
            client = AsyncClient(config=KubeConfig.from_file(kubeconfig), field_manager="bench")
            try:
                await _wait(lambda: _nodes_ready(client, nodes), timeout=timeout)
                nodes_ready = time.perf_counter() - started
                created = time.perf_counter()
                await gather_limited(
                    [
                        client.create(_deployment(f"app-{i:03d}", replicas))
                        for i in range(deployments)
                    ],
                    8,
                )
                await _wait(
                    lambda: _deployments_ready(client, deployments, replicas),
                    timeout=timeout,
                    interval=1.0,
                )
                pods_ready = time.perf_counter() - created
                sampled, answered = await _http_sample(client, 50)
                rss = rss_mib(pid)
                cpu = cpu_seconds(pid)
            finally:
                await client.close()
    total = deployments * replicas
    return ClusterBenchResult(
        nodes=nodes,
        deployments=deployments,
        replicas=replicas,
        pods=total,
        nodes_ready_seconds=round(nodes_ready, 2),
        pods_ready_seconds=round(pods_ready, 2),
        pods_per_second=round(total / pods_ready, 1),
        sim_rss_mib=rss,
        sim_cpu_seconds=round(cpu, 1),
        http_sampled=sampled,
        http_answered=answered,
    )


def render(result: ClusterBenchResult) -> str:
    return "\n".join(
        [
            "# directlb bench sim-cluster",
            "",
            f"- machine: {result.cpu_count} CPUs, Python {result.python}; `directlb sim` in its "
            "own process, driven with lightkube",
            f"- workload: {result.deployments} Deployments x {result.replicas} replicas = "
            f"{result.pods} pods (ENI mode, one HTTP server each) on {result.nodes} nodes",
            "",
            "| figure | measured |",
            "|---|---|",
            f"| {result.nodes} nodes Ready after start | {result.nodes_ready_seconds} s |",
            f"| all {result.pods} pods Ready after the Deployments were created | "
            f"{result.pods_ready_seconds} s ({result.pods_per_second} pods/s) |",
            f"| simulator resident memory | {result.sim_rss_mib} MiB |",
            f"| simulator CPU time, start to end | {result.sim_cpu_seconds} s |",
            f"| pods answering HTTP on podIP:80 (sample) | {result.http_answered}/"
            f"{result.http_sampled} |",
            "",
        ]
    )


def main(args: Any) -> int:
    result = asyncio.run(
        run_cluster_bench(nodes=args.nodes, deployments=args.deployments, replicas=args.replicas)
    )
    report(result, render(result), out=args.out, name="sim-cluster")
    return 0 if result.http_answered == result.http_sampled else 1
