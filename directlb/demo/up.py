"""``directlb up``: the simulated cluster, the CLB emulator and the controller in one process.

The developer environment that ``kind`` plus LocalStack would be elsewhere. Everything listens
on loopback with a random port; once the controller's caches are synced the connection details
are printed and, with ``--ready-file``, written as JSON (written to a temporary name and
renamed, so a reader never sees half a file):

``kubeconfig``, ``api_server``, ``clb_endpoint``, ``clb_protocol``, ``region``, ``vpc_id``,
``secret_id``, ``secret_key``, ``metrics_url``, ``state_dir``.

The controller runs through :func:`directlb.controllers.runtime.run`, the code path of
``directlb controller``, with its admission webhook on a loopback port
(``--webhook-url=local``: the simulator's API server calls it there over HTTPS, so pods behind a
direct-access Service get their readiness gate), and with **no leader election**: there is
exactly one replica, so a Lease would only add a namespace to create and a Lease object to
explain; ``directlb controller`` tests cover election against the same simulator.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
from lightkube import AsyncClient, KubeConfig
from lightkube.core.exceptions import ApiError
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.models.networking_v1 import IngressClassSpec
from lightkube.resources.core_v1 import Node
from lightkube.resources.networking_v1 import IngressClass

from directlb.cloud.config import Credentials
from directlb.controllers import runtime
from directlb.controllers.config import WEBHOOK_URL_LOCAL, ControllerConfig, HostPort
from directlb.emulator.config import EmulatorConfig
from directlb.emulator.server import Emulator
from directlb.model.ingress_annotations import INGRESS_CLASS, INGRESS_CONTROLLER
from directlb.sim.cluster.cluster import Cluster
from directlb.sim.cluster.config import ClusterConfig
from directlb.sim.cluster.machinery import INSTANCE_LABEL
from directlb.sim.server import ApiServer, SimConfig

log = logging.getLogger("directlb.demo.up")

REGION = "ap-guangzhou"
CLUSTER_ID = "cls-directlb-up"


async def register_instances(client: AsyncClient, emulator: Emulator) -> dict[str, str]:
    """Tell the emulator every node's CVM instance id -> InternalIP (what the cloud knows)."""
    instances: dict[str, str] = {}
    async for node in client.list(Node):
        labels = (node.metadata.labels if node.metadata else None) or {}
        instance = labels.get(INSTANCE_LABEL)
        addresses = (node.status.addresses if node.status else None) or []
        ip = next((a.address for a in addresses if a.type == "InternalIP"), None)
        if instance and ip:
            instances[instance] = ip
    body = {"Instances": [{"InstanceId": k, "PrivateIpAddress": v} for k, v in instances.items()]}
    async with httpx.AsyncClient() as http:
        answer = await http.post(f"http://{emulator.endpoint}/_emulator/instances", json=body)
        answer.raise_for_status()
    return instances


async def install_ingress_class(client: AsyncClient) -> None:
    """The IngressClass ``qcloud`` that deploy/ingressclass.yaml installs in a real cluster, so
    that Ingresses naming it are served; one that already exists is left as it is."""
    ingress_class = IngressClass(
        metadata=ObjectMeta(name=INGRESS_CLASS),
        spec=IngressClassSpec(controller=INGRESS_CONTROLLER),
    )
    try:
        await client.create(ingress_class)
    except ApiError as error:
        if error.status.code != 409:
            raise


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


async def up(*, nodes: int, state_dir: Path | None, ready_file: Path | None) -> None:
    persistent = state_dir is not None
    base = state_dir if state_dir is not None else Path(tempfile.mkdtemp(prefix="directlb-up-"))
    base.mkdir(parents=True, exist_ok=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    server = ApiServer(SimConfig(state_dir=base / "sim" if persistent else None))
    await server.start("127.0.0.1", 0)
    cluster = Cluster.for_server(server, ClusterConfig(nodes=nodes))
    emulator_config = EmulatorConfig(
        secret_id="AKID" + secrets.token_hex(16),
        secret_key=secrets.token_hex(16),
        region=REGION,
        time_scale=1.0,
        state_path=base / "clb.sqlite" if persistent else None,
    )
    emulator = Emulator(emulator_config)
    kubeconfig = server.write_kubeconfig(base / "kubeconfig")
    try:
        await cluster.start()
        await emulator.start("127.0.0.1", 0)
        client = AsyncClient(config=KubeConfig.from_file(kubeconfig), field_manager="directlb-up")
        try:
            instances = await register_instances(client, emulator)
            await install_ingress_class(client)
        finally:
            await client.close()
        log.info("event=instances_registered count=%d", len(instances))
        config = ControllerConfig(
            cluster_id=CLUSTER_ID,
            vpc_id=emulator_config.vpc_id,
            credentials=Credentials(
                secret_id=emulator_config.secret_id, secret_key=emulator_config.secret_key
            ),
            region=REGION,
            kubeconfig=kubeconfig,
            clb_endpoint=emulator.endpoint,
            clb_protocol="http",
            leader_elect=False,
            identity=f"directlb-up-{os.getpid()}",
            # The admission webhook runs here, outside the simulated cluster: the configuration
            # calls it at its loopback address (the certificate carries 127.0.0.1).
            webhook_listen=HostPort("127.0.0.1", 0),
            webhook_url=WEBHOOK_URL_LOCAL,
            metrics_listen=HostPort("127.0.0.1", 0),
        )

        def announce(started: runtime.Started) -> None:
            details: dict[str, Any] = {
                "kubeconfig": str(kubeconfig),
                "api_server": server.url,
                "clb_endpoint": emulator.endpoint,
                "clb_protocol": "http",
                "region": REGION,
                "vpc_id": emulator_config.vpc_id,
                "secret_id": emulator_config.secret_id,
                "secret_key": emulator_config.secret_key,
                "metrics_url": started.metrics_url,
                "state_dir": str(base),
            }
            if ready_file is not None:
                _write_atomically(ready_file, json.dumps(details, indent=2) + "\n")
            print(
                "directlb up: ready\n"
                f"  export KUBECONFIG={kubeconfig}\n"
                f"  Kubernetes API: {server.url} ({nodes} nodes)\n"
                f"  CLB endpoint:   http://{emulator.endpoint} region={REGION}\n"
                f"  TENCENTCLOUD_SECRET_ID={emulator_config.secret_id}\n"
                f"  TENCENTCLOUD_SECRET_KEY={emulator_config.secret_key}\n"
                f"  metrics:        {started.metrics_url}/metrics\n"
                + (f"  details:        {ready_file}\n" if ready_file else "")
                + "Ctrl-C stops everything.",
                flush=True,
            )

        await runtime.run(config, stop=stop, on_started=announce)
    finally:
        await emulator.stop()
        await cluster.stop()
        await server.stop()
        if ready_file is not None:
            with contextlib.suppress(FileNotFoundError):
                os.remove(ready_file)  # "ready" no longer holds


def main(args: argparse.Namespace) -> int:
    if args.nodes < 1:
        print(
            f'directlb up: --nodes must be a positive integer, got "{args.nodes}"', file=sys.stderr
        )
        return 2
    asyncio.run(up(nodes=args.nodes, state_dir=args.state_dir, ready_file=args.ready_file))
    return 0
