"""Lease leader election against the simulator's API server (short durations, real time)."""

from __future__ import annotations

import asyncio
import contextlib
import time

from lightkube import AsyncClient
from lightkube.resources.coordination_v1 import Lease

from directlb.kube.leader import LeaderElector, LeaseConfig
from tests import support
from tests.sim_support import lightkube_client, running_api_server

# Long enough that one slow round trip on a loaded machine cannot cost the leader its lease.
DURATION, RENEW, RETRY = 3.0, 2.0, 0.2


cluster = running_api_server
client_of = lightkube_client


def elector(client: AsyncClient, identity: str) -> LeaderElector:
    return LeaderElector(
        client,
        LeaseConfig(
            name="directlb",
            namespace="default",
            identity=identity,
            lease_duration=DURATION,
            renew_deadline=RENEW,
            retry_period=RETRY,
        ),
    )


class Candidate:
    """An elector whose "work" records when it led, until cancelled."""

    def __init__(self, client: AsyncClient, identity: str) -> None:
        self.elector = elector(client, identity)
        self.leading = False
        self.started_at: float | None = None
        self.task: asyncio.Task[None] | None = None

    async def _lead(self) -> None:
        self.leading = True
        self.started_at = time.monotonic()
        try:
            await asyncio.Event().wait()
        finally:
            self.leading = False

    def start(self) -> None:
        self.task = asyncio.create_task(self.elector.run(self._lead))

    async def stop(self) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def test_exactly_one_of_two_candidates_leads() -> None:
    async with cluster() as server:
        a, b = Candidate(client_of(server), "a"), Candidate(client_of(server), "b")
        a.start()
        b.start()
        await support.wait_until(lambda: a.leading or b.leading, timeout=10)
        for _ in range(20):  # over a lease duration: never both at once
            assert not (a.leading and b.leading)
            await asyncio.sleep(RETRY)
        await a.stop()
        await b.stop()


async def test_release_on_shutdown_hands_over_at_once() -> None:
    async with cluster() as server:
        first = Candidate(client_of(server), "first")
        first.start()
        await support.wait_until(lambda: first.leading, timeout=10)
        second = Candidate(client_of(server), "second")
        second.start()
        await asyncio.sleep(3 * RETRY)
        assert not second.leading
        stopped = time.monotonic()
        await first.stop()  # releases the lease
        await support.wait_until(lambda: second.leading, timeout=10)
        assert second.started_at is not None
        assert second.started_at - stopped < DURATION  # no wait for expiry
        lease = await client_of(server).get(Lease, "directlb", namespace="default")
        assert lease.spec.holderIdentity == "second"
        assert lease.spec.leaseTransitions == 1
        await second.stop()


async def test_a_killed_leader_is_replaced_after_the_lease_expires() -> None:
    async with cluster() as server:
        victim_client = client_of(server)
        victim = Candidate(victim_client, "victim")
        victim.start()
        await support.wait_until(lambda: victim.leading, timeout=10)
        heir = Candidate(client_of(server), "heir")
        heir.start()
        await asyncio.sleep(2 * RETRY)
        # A crash: the leader stops renewing without releasing anything.
        killed = time.monotonic()
        assert victim.task is not None
        victim.elector.release = _no_release  # type: ignore[method-assign]
        await victim.stop()
        await support.wait_until(lambda: heir.leading, timeout=10)
        assert heir.started_at is not None
        waited = heir.started_at - killed
        assert waited >= DURATION * 0.9  # not before the lease expired: no split brain
        await heir.stop()


async def test_a_leader_that_loses_its_lease_stops_leading() -> None:
    async with cluster() as server:
        client = client_of(server)
        leader = Candidate(client, "leader")
        leader.start()
        await support.wait_until(lambda: leader.leading, timeout=10)
        # Someone else takes the lease over (an operator, or a split brain being resolved).
        lease = await client.get(Lease, "directlb", namespace="default")
        lease.spec.holderIdentity = "usurper"
        await client.replace(lease)
        await support.wait_until(lambda: not leader.leading, timeout=10)
        await leader.stop()


async def _no_release() -> None:
    return None
