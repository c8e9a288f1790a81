"""The manager: shared informers, one work queue per controller, leader election, endpoints.

What every replica does: run the informers (so a new leader starts with warm caches), serve
``/metrics``, ``/healthz`` and ``/readyz`` (ready once every informer has synced). What only the
leader does: run the controllers' workers. Losing the lease cancels the workers at once; the
queues keep their keys, so a replica that regains leadership carries on where it stopped, and
every reconcile being level-triggered makes that safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from lightkube import AsyncClient

from directlb.controllers.metrics import Metrics, health_app
from directlb.kube.informer import Informer
from directlb.kube.leader import LeaderElector, LeaseConfig
from directlb.kube.workqueue import WorkQueue, run_workers

log = logging.getLogger("directlb.controllers.manager")

Reconcile = Callable[[str], Awaitable[float | None]]


@dataclass
class _Controller:
    name: str
    queue: WorkQueue[str]
    reconcile: Reconcile
    workers: int


class Manager:
    def __init__(
        self,
        client: AsyncClient,
        *,
        metrics: Metrics | None = None,
        lease: LeaseConfig | None = None,
    ) -> None:
        self.client = client
        self.metrics = metrics or Metrics()
        self.lease = lease
        self.elector = LeaderElector(client, lease) if lease else None
        self._informers: dict[Any, Informer[Any]] = {}
        self._controllers: list[_Controller] = []
        self._runner: web.AppRunner | None = None
        self.metrics_port: int | None = None

    def informer(self, resource: type[Any], **options: Any) -> Informer[Any]:
        """The shared informer of ``resource`` (created on first use)."""
        informer = self._informers.get(resource)
        if informer is None:
            informer = self._informers[resource] = Informer(self.client, resource, **options)
        return informer

    def controller(self, name: str, reconcile: Reconcile, *, workers: int = 4) -> WorkQueue[str]:
        """Register a controller; enqueue its keys into the returned queue."""
        queue: WorkQueue[str] = WorkQueue(name=name)
        self.metrics.watch_queue(queue)
        timed = self.metrics.timed_reconcile(name, reconcile)
        self._controllers.append(_Controller(name, queue, timed, workers))
        return queue

    def ready(self) -> bool:
        return all(i.synced.is_set() for i in self._informers.values())

    def resync(self) -> None:
        """A full resync now: every informer hands every cached object to its handlers, as
        their ``resync_period`` timers do."""
        for informer in self._informers.values():
            informer.resync()

    def queue(self, name: str) -> WorkQueue[str]:
        """The work queue of the controller registered as ``name``."""
        return next(c.queue for c in self._controllers if c.name == name)

    def idle(self) -> bool:
        """Every controller's queue is drained and no reconcile is running."""
        return all(c.queue.idle() for c in self._controllers)

    async def serve_endpoints(self, host: str, port: int) -> int:
        """Serve /metrics, /healthz and /readyz; return the bound port."""
        self._runner = web.AppRunner(health_app(self.metrics, ready=self.ready), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server: Any = site._server
        self.metrics_port = int(server.sockets[0].getsockname()[1])
        return self.metrics_port

    async def run(self) -> None:
        """Run informers; reconcile while leader (always, without a lease). Until cancelled."""
        informers = [
            asyncio.create_task(i.run(), name=f"informer-{i.kind}")
            for i in self._informers.values()
        ]
        try:
            await asyncio.gather(*(i.synced.wait() for i in self._informers.values()))
            log.info("event=caches_synced informers=%d", len(informers))
            if self.elector is None:
                await self._lead()
            else:
                await self.elector.run(self._lead)
        finally:
            for task in informers:
                task.cancel()
            for task in informers:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for controller in self._controllers:
                controller.queue.shut_down()
            if self._runner is not None:
                await self._runner.cleanup()
                self._runner = None

    async def _lead(self) -> None:
        self.metrics.leader.set(1)
        log.info("event=leading controllers=%d", len(self._controllers))
        try:
            if not self._controllers:
                # Nothing to reconcile yet, but keep leading: returning would end the
                # election (and release the Lease) as if the work were done.
                await asyncio.Event().wait()
            await asyncio.gather(
                *(run_workers(c.queue, c.reconcile, workers=c.workers) for c in self._controllers)
            )
        finally:
            self.metrics.leader.set(0)
