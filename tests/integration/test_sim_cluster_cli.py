"""``directlb sim`` runs the cluster: nodes registered, address plan options honoured."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from lightkube import AsyncClient, KubeConfig
from lightkube.codecs import from_dict
from lightkube.resources.core_v1 import Node, Pod

from tests.cluster_support import pod_manifest, pod_when, running

pytestmark = pytest.mark.asyncio


async def test_directlb_sim_with_nodes_and_address_plan(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "directlb",
        "sim",
        "--listen",
        "127.0.0.1:0",
        "--kubeconfig-out",
        str(kubeconfig),
        "--nodes",
        "2",
        "--node-cidr",
        "127.21.0.0/16",
        "--eni-pod-cidr",
        "127.18.0.0/16",
        "--zones",
        "ap-shanghai-2",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        assert b"listening on" in line, line
        kube = AsyncClient(config=KubeConfig.from_file(kubeconfig), field_manager="tests")
        try:
            nodes = [n async for n in kube.list(Node)]
            assert [n.metadata.name for n in nodes if n.metadata] == ["node-1", "node-2"]
            addresses = [a.address for n in nodes for a in (n.status.addresses or [])]  # type: ignore[union-attr]
            assert "127.21.0.1" in addresses and "127.21.0.2" in addresses
            assert nodes[0].spec is not None
            assert nodes[0].spec.providerID == "qcloud:///200002/ins-node0001"
            await kube.create(from_dict(pod_manifest("p", eni=True)), namespace="default")
            pod = await pod_when(kube, "p", running)
            assert pod.status is not None and pod.status.podIP is not None
            assert pod.status.podIP.startswith("127.18.")
            await kube.delete(Pod, "p", namespace="default", grace_period=0)
        finally:
            await kube.close()
    finally:
        if process.returncode is None:
            process.terminate()
        code = await asyncio.wait_for(process.wait(), 30)
    assert code == 0
