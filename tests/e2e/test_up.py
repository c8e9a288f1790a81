"""`directlb up` as a user runs it: a subprocess, checked only through its published details."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO

import httpx
import pytest
from lightkube import AsyncClient, KubeConfig
from lightkube.resources.admissionregistration_v1 import MutatingWebhookConfiguration
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Node, Pod, Service
from lightkube.resources.networking_v1 import IngressClass
from tencentcloud.clb.v20180317 import clb_client_async, models
from tencentcloud.common import credential
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile

from directlb.webhook.server import GATE
from tests import support
from tests.integration.test_sim_cluster_stack import DEPLOYMENT, SERVICE

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def ready(node: Node) -> bool:
    conditions = (node.status.conditions if node.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


async def check_seed_pods_get_the_gate(client: AsyncClient) -> None:
    """The seed's manifests, as `kubectl apply` sends them: the webhook `directlb up` installs
    gives every pod of the Deployment the readiness gate."""
    await client.create(Service.from_dict(SERVICE), namespace="default")
    await client.create(Deployment.from_dict(DEPLOYMENT), namespace="default")
    configuration = await client.get(MutatingWebhookConfiguration, "directlb-pod-readiness")
    assert (configuration.webhooks or [])[0].clientConfig.url.startswith("https://127.0.0.1:")

    async def gated() -> bool:
        pods = [p async for p in client.list(Pod, namespace="default", labels={"app": "nginx"})]
        return len(pods) == 3 and all(
            [g.conditionType for g in (p.spec.readinessGates if p.spec else None) or []] == [GATE]
            for p in pods
        )

    await support.wait_until(gated, timeout=30, interval=0.1)


def start_up(ready_file: Path, log: IO[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "directlb", "up", "--nodes", "2", "--ready-file", str(ready_file)],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


async def test_up_serves_kubernetes_the_clb_api_and_health(tmp_path: Path) -> None:
    ready_file = tmp_path / "ready.json"
    log = (tmp_path / "up.log").open("w")
    proc = start_up(ready_file, log)
    try:
        await support.wait_until(
            lambda: ready_file.exists() or proc.poll() is not None, timeout=60, interval=0.1
        )
        assert proc.poll() is None, (tmp_path / "up.log").read_text()
        details = json.loads(ready_file.read_text())

        client = AsyncClient(config=KubeConfig.from_file(details["kubeconfig"]))
        try:

            async def two_ready_nodes() -> bool:
                nodes = [n async for n in client.list(Node)]
                return len(nodes) == 2 and all(ready(n) for n in nodes)

            await support.wait_until(two_ready_nodes, timeout=30, interval=0.1)
            qcloud = await client.get(IngressClass, "qcloud")
            assert qcloud.spec.controller == "directlb.io/ingress-controller"
        finally:
            await client.close()

        clb = clb_client_async.ClbClient(
            credential.Credential(details["secret_id"], details["secret_key"]),
            details["region"],
            ClientProfile(
                httpProfile=HttpProfile(
                    endpoint=details["clb_endpoint"], protocol=details["clb_protocol"]
                )
            ),
        )
        try:
            answer = await clb.DescribeLoadBalancers(models.DescribeLoadBalancersRequest())
            assert answer.TotalCount == 0
        finally:
            await clb.close()

        client = AsyncClient(config=KubeConfig.from_file(details["kubeconfig"]))
        try:
            await check_seed_pods_get_the_gate(client)
        finally:
            await client.close()

        async with httpx.AsyncClient(base_url=details["metrics_url"]) as http:
            assert (await http.get("/readyz")).status_code == 200
            assert "directlb_" in (await http.get("/metrics")).text

        proc.send_signal(signal.SIGTERM)
        rc = await asyncio.to_thread(proc.wait, 30)
        assert rc == 0, (tmp_path / "up.log").read_text()
        assert not ready_file.exists()  # no stale "ready" left behind
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
