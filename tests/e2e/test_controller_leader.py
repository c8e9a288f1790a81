"""Two `directlb controller` processes, one Lease: exactly one leads; kill -9 it, the other takes
over within the lease duration plus a retry period."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.resources.coordination_v1 import Lease

from directlb.emulator.server import Emulator
from directlb.kube.permissions import LEASE_NAME
from directlb.sim.server import ApiServer, SimConfig
from tests import support

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD = 3.0, 2.0, 0.5
NAMESPACE = "default"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Replica:
    def __init__(self, name: str, kubeconfig: Path, emulator: Emulator, log: Path) -> None:
        self.name = name
        self.port = free_port()
        self.log_path = log
        self._log = log.open("w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "directlb",
                "controller",
                f"--kubeconfig={kubeconfig}",
                "--cluster-id=cls-test",
                "--vpc-id=vpc-directlb",
                f"--clb-endpoint={emulator.endpoint}",
                "--clb-protocol=http",
                "--leader-elect",
                f"--leader-election-namespace={NAMESPACE}",
                f"--metrics-listen=127.0.0.1:{self.port}",
                "--webhook-listen=127.0.0.1:0",  # two replicas on one machine: a port each
                f"--lease-duration={LEASE_DURATION}",
                f"--renew-deadline={RENEW_DEADLINE}",
                f"--retry-period={RETRY_PERIOD}",
            ],
            cwd=REPO,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={
                **os.environ,
                "POD_NAME": name,
                "TENCENTCLOUD_SECRET_ID": support.SECRET_ID,
                "TENCENTCLOUD_SECRET_KEY": support.SECRET_KEY,
            },
        )

    async def leading(self) -> bool:
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"http://127.0.0.1:{self.port}/metrics")).text
        return "directlb_leader 1.0" in text

    async def healthy(self) -> bool:
        try:
            async with httpx.AsyncClient() as http:
                return (await http.get(f"http://127.0.0.1:{self.port}/readyz")).status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


async def holder(client: AsyncClient) -> str | None:
    try:
        lease = await client.get(Lease, LEASE_NAME, namespace=NAMESPACE)
    except ApiError:
        return None
    return lease.spec.holderIdentity if lease.spec else None


async def test_one_leader_and_failover_after_kill_9(tmp_path: Path) -> None:
    server = ApiServer(SimConfig())
    await server.start()
    emulator = Emulator(support.config())
    await emulator.start()
    kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
    client = AsyncClient(config=KubeConfig.from_file(kubeconfig))
    replicas = [Replica(n, kubeconfig, emulator, tmp_path / f"{n}.log") for n in ("a", "b")]
    try:
        for replica in replicas:
            await support.wait_until(replica.healthy, timeout=60, interval=0.1)
        await support.wait_until(lambda: holder(client), timeout=30, interval=0.1)
        first = await holder(client)
        assert first in ("a", "b")
        (leader,) = [r for r in replicas if r.name == first]
        (other,) = [r for r in replicas if r.name != first]
        # Exactly one leads: the holder says so, the other only waits (several retry periods).
        await support.wait_until(leader.leading, timeout=10, interval=0.1)
        for _ in range(4):
            assert await holder(client) == first
            assert not await other.leading()
            await asyncio.sleep(RETRY_PERIOD)

        leader.proc.send_signal(signal.SIGKILL)
        leader.proc.wait()
        killed = time.monotonic()

        async def taken_over() -> bool:
            return await holder(client) == other.name

        await support.wait_until(
            taken_over,
            timeout=LEASE_DURATION + RETRY_PERIOD + 5,
            interval=0.05,
        )
        took = time.monotonic() - killed
        # A client-go style candidate waits out the lease from when it last saw it change.
        assert took <= LEASE_DURATION + 2 * RETRY_PERIOD + 1.0, took
        await support.wait_until(other.leading, timeout=10, interval=0.1)
        assert other.proc.poll() is None

        # SIGTERM: the survivor exits 0 and releases the Lease (empty holder).
        other.proc.send_signal(signal.SIGTERM)
        rc = await asyncio.to_thread(other.proc.wait, 30)
        assert rc == 0, other.log_path.read_text()
        assert not await holder(client)
    finally:
        for replica in replicas:
            replica.stop()
        await client.close()
        await emulator.stop()
        await server.stop()
