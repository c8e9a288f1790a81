"""The manager against the simulator: informers feed queues, only the leader reconciles."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap

from directlb.controllers.manager import Manager
from directlb.kube.informer import Event, key_of
from directlb.kube.leader import LeaseConfig
from directlb.sim.server import ApiServer
from tests import support
from tests.sim_support import lightkube_client, running_api_server

api_server = running_api_server
client_of = lightkube_client


class Recorder:
    """A controller that records which keys it reconciled, and by which replica."""

    def __init__(self, replica: str, log: list[tuple[str, str]]) -> None:
        self.replica = replica
        self.log = log

    async def reconcile(self, key: str) -> float | None:
        self.log.append((self.replica, key))
        return None


def build(server: ApiServer, replica: str, log: list[tuple[str, str]], **lease: Any) -> Manager:
    lease_config = (
        LeaseConfig(name="directlb", namespace="default", identity=replica, **lease)
        if lease
        else None
    )
    manager = Manager(client_of(server), lease=lease_config)
    queue = manager.controller("configmaps", Recorder(replica, log).reconcile, workers=2)
    informer = manager.informer(ConfigMap, resync_period=None)

    def on_change(event: Event[Any]) -> None:
        queue.add(key_of(event.obj))

    informer.add_handler(on_change)
    return manager


def config_map(name: str) -> ConfigMap:
    return ConfigMap(metadata=ObjectMeta(name=name, namespace="default"))


async def test_changes_are_reconciled_and_endpoints_report_it() -> None:
    async with api_server() as server:
        log: list[tuple[str, str]] = []
        manager = build(server, "solo", log)
        port = await manager.serve_endpoints("127.0.0.1", 0)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            assert (await http.get("/readyz")).status_code == 503  # informers not synced
            running = asyncio.create_task(manager.run())
            await client_of(server).create(config_map("a"))
            await support.wait_until(lambda: ("solo", "default/a") in log, timeout=10)
            assert (await http.get("/readyz")).status_code == 200
            metrics = (await http.get("/metrics")).text
            assert 'directlb_reconcile_duration_seconds_count{controller="configmaps"' in metrics
            assert "directlb_leader 1.0" in metrics
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running


async def test_only_the_leader_reconciles_and_the_other_takes_over() -> None:
    async with api_server() as server:
        log: list[tuple[str, str]] = []
        timing = {"lease_duration": 1.0, "renew_deadline": 0.6, "retry_period": 0.1}
        first = asyncio.create_task(build(server, "first", log, **timing).run())
        second_manager = build(server, "second", log, **timing)
        second = asyncio.create_task(second_manager.run())
        client = client_of(server)
        for name in ("a", "b", "c"):
            await client.create(config_map(name))
        await support.wait_until(lambda: len({k for _, k in log}) == 3, timeout=10)
        leaders = {replica for replica, _ in log}
        assert len(leaders) == 1
        [leader] = leaders
        survivor, doomed = (second, first) if leader == "first" else (first, second)
        doomed.cancel()  # a shutdown: releases the lease
        with contextlib.suppress(asyncio.CancelledError):
            await doomed
        await client.create(config_map("after"))
        heir = "second" if leader == "first" else "first"
        await support.wait_until(lambda: (heir, "default/after") in log, timeout=10)
        # The heir's informer was warm: it reconciles what it had queued while following too.
        assert {k for r, k in log if r == heir} >= {"default/after"}
        survivor.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await survivor
