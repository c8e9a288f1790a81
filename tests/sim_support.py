"""Helpers for the API server tests: an in-process server, lightkube clients, kubectl."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from lightkube import AsyncClient, KubeConfig

from directlb.sim.server import ApiServer, SimConfig

KUBECTL = os.environ.get("DIRECTLB_KUBECTL", "/usr/bin/kubectl")


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[ApiServer]:
    server = ApiServer(SimConfig(history_size=50, bookmark_interval=0.2))
    await server.start()
    server.write_kubeconfig(tmp_path / "kubeconfig")
    yield server
    await server.stop()


@pytest.fixture
async def kube(sim: ApiServer) -> AsyncIterator[AsyncClient]:
    kube = AsyncClient(config=KubeConfig.from_dict(sim.kubeconfig()), field_manager="tests")
    yield kube
    await kube.close()


@pytest.fixture
async def sim_http(sim: ApiServer) -> AsyncIterator[httpx.AsyncClient]:
    """Plain HTTPS with the token: for what lightkube does not expose (Accept, raw bodies)."""
    assert sim.ca_pem is not None
    context = ssl.create_default_context(cadata=sim.ca_pem.decode())
    headers = {"Authorization": f"Bearer {sim.token}"}
    async with httpx.AsyncClient(base_url=sim.url, verify=context, headers=headers) as http:
        yield http


@dataclass
class Kubectl:
    kubeconfig: Path
    cache: Path

    async def _spawn(self, args: tuple[str, ...], **pipes: Any) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            KUBECTL,
            "--kubeconfig",
            str(self.kubeconfig),
            "--cache-dir",
            str(self.cache),
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            **pipes,
        )

    async def run(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        process = await self._spawn(args, stdin=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(
            process.communicate(stdin.encode() if stdin else None), timeout=60
        )
        if check and process.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {err.decode()}{out.decode()}")
        return out.decode() + ("" if check else err.decode())

    async def json(self, *args: str) -> Any:
        return json.loads(await self.run(*args, "-o", "json"))

    async def start(self, *args: str) -> Running:
        """Start a long-running kubectl (``get -w``, ``rollout status``) to read line by line."""
        return Running(await self._spawn(args))


@dataclass
class Running:
    process: asyncio.subprocess.Process

    async def line(self, *, timeout: float = 20.0) -> str:
        assert self.process.stdout is not None
        text = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        if not text:
            assert self.process.stderr is not None
            raise AssertionError(f"kubectl ended: {(await self.process.stderr.read()).decode()}")
        return text.decode()

    async def finish(self, *, timeout: float = 20.0) -> int:
        return await asyncio.wait_for(self.process.wait(), timeout)

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()


@pytest.fixture
def kubectl(sim: ApiServer, tmp_path: Path) -> Kubectl:
    if not shutil.which(KUBECTL):
        pytest.skip(f"kubectl not found at {KUBECTL} (set DIRECTLB_KUBECTL to its path)")
    return Kubectl(tmp_path / "kubeconfig", tmp_path / "kubectl-cache")


async def wait_for(
    predicate: Callable[[], Awaitable[Any]], *, timeout: float = 10.0, interval: float = 0.02
) -> Any:
    """Await ``predicate()`` until it returns something truthy, with a deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = await predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


def pod(name: str, *, labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}], **spec},
    }


def deployment(name: str, *, replicas: int = 2) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {"name": "web", "image": "nginx:1.25", "ports": [{"containerPort": 80}]}
                    ]
                },
            },
        },
    }


@contextlib.asynccontextmanager
async def running_api_server(**config: Any) -> AsyncIterator[ApiServer]:
    """An in-process API server with ``SimConfig(**config)`` (bookmarks every 60 s unless set)."""
    config.setdefault("bookmark_interval", 60)
    server = ApiServer(SimConfig(**config))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def lightkube_client(server: ApiServer) -> AsyncClient:
    """A lightkube client of ``server`` (close it when done)."""
    return AsyncClient(config=KubeConfig.from_dict(server.kubeconfig()), field_manager="tests")
