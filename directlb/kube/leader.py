"""Leader election on a coordination.k8s.io/v1 Lease, the way client-go does it.

Only the leader reconciles; every replica keeps serving webhooks and metrics. The rules:

* A candidate takes the Lease when it is free (no holder) or expired. "Expired" is judged by
  the candidate's own clock: the record must not have changed for ``lease_duration`` seconds
  since the candidate *observed* it, so clock skew between machines cannot make two leaders.
* Every write is a PUT with the observed resourceVersion, so of two candidates racing for a
  free Lease exactly one wins (the other gets 409 Conflict).
* The leader renews every ``retry_period``; if it cannot renew for ``renew_deadline`` it stops
  leading at once (its reconcilers are cancelled) before anyone else can take over.
* On shutdown the leader releases the Lease (empty holder), so a successor need not wait for
  the lease to expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lightkube import ApiError, AsyncClient
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease

from directlb.kube.transport import TRANSIENT

log = logging.getLogger("directlb.kube.leader")


@dataclass(frozen=True)
class LeaseConfig:
    name: str
    namespace: str
    identity: str
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not self.lease_duration > self.renew_deadline > self.retry_period > 0:
            raise ValueError(
                "leader election needs lease_duration > renew_deadline > retry_period > 0"
            )


def _now() -> datetime:
    return datetime.now(UTC)


class LeaderElector:
    def __init__(self, client: AsyncClient, config: LeaseConfig) -> None:
        self.client = client
        self.config = config
        self.is_leader = False
        self._observed_version: str | None = None
        self._observed_at = 0.0  # loop time at which the record last changed, as we saw it
        self._observed_holder: str | None = None

    def _loop_time(self) -> float:
        return asyncio.get_running_loop().time()

    async def run(self, lead: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Campaign forever; while leader, run ``lead()`` and cancel it on losing the lease."""
        try:
            while True:
                await self._acquire()
                leading = asyncio.create_task(lead(), name="leader-work")
                renewing = asyncio.create_task(self._renew_until_lost(), name="lease-renew")
                try:
                    done, _pending = await asyncio.wait(
                        {leading, renewing}, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    # Also when we are cancelled: a renewer left running would keep a dead
                    # replica's lease alive.
                    for task in (leading, renewing):
                        task.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await task
                if leading in done and not leading.cancelled():
                    error = leading.exception()
                    if error is None:
                        await self.release()  # the work ended by itself: let others lead
                        return
                    log.error(
                        "event=leader_work_failed identity=%s",
                        self.config.identity,
                        exc_info=error,
                    )
                    # Not a hot loop: give the work (and the API) a retry period to recover.
                    await self.release()
                    await asyncio.sleep(self.config.retry_period)
                    continue
                self.is_leader = False
                log.warning("event=leadership_lost identity=%s", self.config.identity)
        finally:
            if self.is_leader:
                await self.release()

    async def _acquire(self) -> None:
        while True:
            try:
                if await self.try_acquire_or_renew():
                    break
            except TRANSIENT as error:
                log.warning("event=lease_acquire_failed error=%s", error)
            # A retry period, not an event: the other candidates' progress is only visible
            # by reading the Lease again.
            await asyncio.sleep(self.config.retry_period)
        log.info(
            "event=leadership_acquired identity=%s lease=%s/%s",
            self.config.identity,
            self.config.namespace,
            self.config.name,
        )

    async def _renew_until_lost(self) -> None:
        last_renew = self._loop_time()
        while True:
            await asyncio.sleep(self.config.retry_period)
            try:
                async with asyncio.timeout(self.config.renew_deadline):
                    renewed = await self.try_acquire_or_renew()
            except TRANSIENT as error:
                log.warning("event=lease_renew_failed error=%s", error)
                renewed = False
            if renewed:
                last_renew = self._loop_time()
            elif self._loop_time() - last_renew >= self.config.renew_deadline:
                return
            elif not self.is_leader:
                return  # someone else holds it now

    async def try_acquire_or_renew(self) -> bool:
        """One attempt; True if we hold the lease afterwards."""
        cfg = self.config
        now = _now()
        try:
            lease = await self.client.get(Lease, cfg.name, namespace=cfg.namespace)
        except ApiError as error:
            if error.status.code != 404:
                raise
            return await self._create(now)
        spec = lease.spec or LeaseSpec()
        self._observe(lease)
        holder = spec.holderIdentity or ""
        if holder and holder != cfg.identity and not self._expired(lease):
            self.is_leader = False
            return False
        transitions = spec.leaseTransitions or 0
        if holder != cfg.identity:
            spec.acquireTime = now
            transitions += 1
        spec.holderIdentity = cfg.identity
        spec.leaseDurationSeconds = round(cfg.lease_duration)
        spec.renewTime = now
        spec.leaseTransitions = transitions
        lease.spec = spec
        try:
            updated = await self.client.replace(lease)
        except ApiError as error:
            if error.status.code == 409:
                self.is_leader = False
                return False  # someone else wrote first
            raise
        self._observe(updated)
        self.is_leader = True
        return True

    async def _create(self, now: datetime) -> bool:
        cfg = self.config
        lease = Lease(
            metadata=ObjectMeta(name=cfg.name, namespace=cfg.namespace),
            spec=LeaseSpec(
                holderIdentity=cfg.identity,
                leaseDurationSeconds=round(cfg.lease_duration),
                acquireTime=now,
                renewTime=now,
                leaseTransitions=0,
            ),
        )
        try:
            created = await self.client.create(lease)
        except ApiError as error:
            if error.status.code == 409:
                return False
            raise
        self._observe(created)
        self.is_leader = True
        return True

    def _observe(self, lease: Lease) -> None:
        version = lease.metadata.resourceVersion if lease.metadata else None
        if version != self._observed_version:
            self._observed_version = version
            self._observed_at = self._loop_time()
            self._observed_holder = lease.spec.holderIdentity if lease.spec else None

    def _expired(self, lease: Lease) -> bool:
        duration = (lease.spec.leaseDurationSeconds if lease.spec else None) or (
            self.config.lease_duration
        )
        return self._loop_time() > self._observed_at + duration

    async def release(self) -> None:
        """Give the lease up (empty holder) so a successor takes over at once."""
        cfg = self.config
        try:
            lease = await self.client.get(Lease, cfg.name, namespace=cfg.namespace)
            if lease.spec is None or lease.spec.holderIdentity != cfg.identity:
                return
            lease.spec.holderIdentity = None
            lease.spec.leaseDurationSeconds = 1
            lease.spec.renewTime = _now()
            await self.client.replace(lease)
            log.info("event=leadership_released identity=%s", cfg.identity)
        except TRANSIENT as error:
            log.warning("event=lease_release_failed error=%s", error)
        finally:
            self.is_leader = False
