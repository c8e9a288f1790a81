"""The Tencent Cloud CLB adapter: :class:`CloudLoadBalancers` on the official async SDK.

Concurrency: a CLB takes one mutation at a time, so everything that changes one CLB (a plan,
a deletion) holds that CLB's lock; different CLBs progress in parallel, at most
``config.concurrency`` at once when :meth:`sync` works on many. Reads take no lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from directlb.cloud.api import ClbApi, SdkSender, Sender, sdk_client
from directlb.cloud.apply import PlanRunner
from directlb.cloud.cache import ObservedCache
from directlb.cloud.config import SyncStrategy, TencentConfig
from directlb.cloud.errors import (
    INVALID_DESIRED,
    NOT_READY,
    CloudError,
    StalePlan,
)
from directlb.cloud.metrics import CallObserver
from directlb.cloud.observe import read_full, read_health, read_per_target, read_structure
from directlb.cloud.port import (
    CloudQuotas,
    DesiredLoadBalancer,
    LoadBalancer,
    LoadBalancerSpec,
    LoadBalancerType,
    SyncResult,
    Tags,
    TargetHealth,
)
from directlb.cloud.wire import parse_load_balancer
from directlb.plan.diff import diff, index_desired
from directlb.plan.ops import Plan
from directlb.plan.state import LoadBalancerState

log = logging.getLogger("directlb.cloud")

# Observe-plan-apply rounds per CLB and sync when plans keep going stale.
MAX_SYNC_ROUNDS = 3
MAX_TAG_FILTERS = 10
DESCRIBE_PAGE = 100
# Seconds the CLB found for a spec (by its tags, or adopted by id) is trusted without asking
# again: a CLB's identity and VIPs do not change, and asking at every reconcile was a third of
# a steady-state resync's calls. A CLB deleted behind our back is still noticed at the next
# sync (reading it fails), which forgets it here, so the retry finds or creates it again.
KNOWN_LB_TTL = 3600.0
# Seconds between two reads of the account's quotas (they change when a ticket raises them),
# and before asking again after a failed read.
QUOTA_REFRESH = 3600.0
QUOTA_RETRY = 60.0


@dataclass
class _LbLock:
    """One CLB's lock and how many tasks hold it or wait for it."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class TencentLoadBalancers:
    """Tencent Cloud CLB behind the cloud port. Use as ``async with``, or call ``aclose()``.

    ``send`` replaces the SDK (tests use a fake); ``observer`` receives per-call metrics.
    """

    def __init__(
        self,
        config: TencentConfig,
        *,
        observer: CallObserver | None = None,
        send: Sender | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self._sdk: SdkSender | None = None
        if send is None:
            self._sdk = SdkSender(sdk_client(config))
            send = self._sdk
        self.api = ClbApi(send=send, timing=config.timing, observer=observer, rng=rng)
        self.cache = ObservedCache(ttl=config.timing.cache_ttl)
        self._locks: dict[str, _LbLock] = {}  # only the CLBs being changed right now
        self._slots = asyncio.Semaphore(config.concurrency)
        self._known: dict[tuple[str, Tags], tuple[LoadBalancer, float]] = {}
        self._quotas = CloudQuotas()
        self._quotas_until = 0.0  # monotonic time of the next read; 0: never read
        self._quotas_lock = asyncio.Lock()

    @property
    def strategy(self) -> SyncStrategy:
        return self.config.strategy

    async def __aenter__(self) -> TencentLoadBalancers:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._sdk is not None:
            await self._sdk.close()

    @contextlib.asynccontextmanager
    async def _lock(self, lb_id: str) -> AsyncIterator[None]:
        """Hold ``lb_id``'s lock. It lives only while a task holds or awaits it, so the map
        keeps the CLBs being changed now, not every CLB ever changed (deleted ones included)."""
        entry = self._locks.get(lb_id)
        if entry is None:
            entry = self._locks[lb_id] = _LbLock()
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._locks[lb_id]

    # ----- load balancers ---------------------------------------------------------------------

    async def ensure_load_balancer(self, spec: LoadBalancerSpec) -> LoadBalancer:
        key = (spec.existing_id or "", spec.tags)
        known = self._known.get(key)
        if known is not None and time.monotonic() - known[1] < KNOWN_LB_TTL:
            return known[0]
        lb, settled = await self._ensure_load_balancer(spec)
        if settled:
            self._remember(key, lb)
        return lb

    def _remember(self, key: tuple[str, Tags], lb: LoadBalancer) -> None:
        """Trust ``lb`` for ``key`` for KNOWN_LB_TTL, and forget what is past it: the entries of
        a Service deleted (or recreated: another UID tag) or of an adopted CLB released, which
        nothing would ever ask for again. So the map holds the CLBs ensured in the last TTL."""
        now = time.monotonic()
        for old in [k for k, (_, at) in self._known.items() if now - at >= KNOWN_LB_TTL]:
            del self._known[old]
        self._known[key] = (lb, now)

    def _forget(self, lb_id: str) -> None:
        """Stop trusting what we know of ``lb_id`` (deleted, or a sync of it failed)."""
        for key in [k for k, (lb, _) in self._known.items() if lb.lb_id == lb_id]:
            del self._known[key]

    async def _ensure_load_balancer(self, spec: LoadBalancerSpec) -> tuple[LoadBalancer, bool]:
        """The load balancer, and whether it may be remembered: one we just created may not,
        so the next look finds a duplicate (see below) while one can still turn up."""
        if spec.existing_id:
            found = await self._describe_lb(spec.existing_id)
            if found is None:
                raise CloudError(
                    code="InvalidParameter.LBIdNotFound",
                    message=f"load balancer {spec.existing_id} does not exist in "
                    f"{self.config.region}",
                    action="DescribeLoadBalancers",
                    lb_id=spec.existing_id,
                )
            return await self._wait_ready(found), True
        owned = await self.find_load_balancers(spec.tags)
        if owned:
            # Several: a CreateLoadBalancer sent by a run that died (or lost its lease) took
            # effect after a later run had created one too. Keep the one the owner recorded,
            # else the oldest; the others carry all our tags, so they are ours to delete.
            keep, *surplus = sorted(
                owned, key=lambda lb: (lb.lb_id != spec.known_id, lb.created, lb.lb_id)
            )
            for extra in surplus:
                log.warning(
                    "event=surplus_load_balancer lb=%s kept=%s name=%s",
                    extra.lb_id,
                    keep.lb_id,
                    spec.name,
                )
                await self.delete_load_balancer(extra.lb_id)
            return await self._wait_ready(keep), True
        return await self._create(spec), False

    async def _create(self, spec: LoadBalancerSpec) -> LoadBalancer:
        params: dict[str, Any] = {
            "LoadBalancerType": str(spec.type),
            "LoadBalancerName": spec.name[:60],
            "Tags": [{"TagKey": k, "TagValue": v} for k, v in spec.tags],
            # Makes our own retries of this call (after a lost answer) idempotent. A crash
            # before the answer is covered by the tags: the next run finds the CLB by them.
            "ClientToken": uuid.uuid4().hex,
        }
        if self.config.vpc_id:
            params["VpcId"] = self.config.vpc_id
        if spec.type is LoadBalancerType.INTERNAL:
            params["SubnetId"] = spec.subnet_id
        answer = await self.api.call("CreateLoadBalancer", params)
        lb_id = str(answer["LoadBalancerIds"][0])
        await self.api.wait_task(
            action="CreateLoadBalancer", deal_name=str(answer.get("DealName") or ""), lb_id=lb_id
        )
        log.info("event=load_balancer_created lb=%s name=%s", lb_id, spec.name)
        created = await self._describe_lb(lb_id)
        if created is None:
            raise CloudError(
                code=NOT_READY,
                message=f"{lb_id} was created but is not listed",
                action="DescribeLoadBalancers",
                lb_id=lb_id,
            )
        return await self._wait_ready(created)

    async def find_load_balancers(self, tags: Tags) -> list[LoadBalancer]:
        filters = [{"Name": f"tag:{k}", "Values": [v]} for k, v in tags[:MAX_TAG_FILTERS]]
        found: list[LoadBalancer] = []
        offset = 0
        while True:
            params: dict[str, Any] = {"Offset": offset, "Limit": DESCRIBE_PAGE}
            if filters:
                params["Filters"] = filters
            answer = await self.api.call("DescribeLoadBalancers", params)
            page = [parse_load_balancer(d) for d in answer.get("LoadBalancerSet") or ()]
            found += page
            offset += len(page)
            if not page or offset >= int(answer.get("TotalCount") or 0):
                break
        return [lb for lb in found if all(lb.tag(k) == v for k, v in tags)]

    async def _describe_lb(self, lb_id: str) -> LoadBalancer | None:
        answer = await self.api.call("DescribeLoadBalancers", {"LoadBalancerIds": [lb_id]})
        for doc in answer.get("LoadBalancerSet") or ():
            if doc.get("LoadBalancerId") == lb_id:
                return parse_load_balancer(doc)
        return None

    async def _wait_ready(self, lb: LoadBalancer) -> LoadBalancer:
        timing = self.config.timing
        waited = 0.0
        delay = timing.poll_first
        while not lb.ready:
            if waited >= timing.task_timeout:
                raise CloudError(
                    code=NOT_READY,
                    message=f"{lb.lb_id} still not ready after {waited:g}s",
                    action="DescribeLoadBalancers",
                    lb_id=lb.lb_id,
                )
            await asyncio.sleep(delay)
            waited += delay
            delay = min(delay * timing.poll_factor, timing.poll_cap)
            found = await self._describe_lb(lb.lb_id)
            if found is None:
                raise CloudError(
                    code="InvalidParameter.LBIdNotFound",
                    message=f"{lb.lb_id} disappeared while being created",
                    action="DescribeLoadBalancers",
                    lb_id=lb.lb_id,
                )
            lb = found
        return lb

    async def delete_load_balancer(self, lb_id: str) -> None:
        async with self._lock(lb_id):
            self.cache.invalidate(lb_id)
            self._forget(lb_id)
            try:
                await self.api.mutate(
                    "DeleteLoadBalancer", {"LoadBalancerIds": [lb_id]}, lb_id=lb_id
                )
            except CloudError as error:
                if error.code != "InvalidParameter.LBIdNotFound":
                    raise
            log.info("event=load_balancer_deleted lb=%s", lb_id)

    # ----- state ------------------------------------------------------------------------------

    async def observe(self, lb_id: str, *, fresh: bool = False) -> LoadBalancerState:
        if not fresh:
            cached = self.cache.get(lb_id)
            if cached is not None:
                return cached
        state = await read_full(self.api, lb_id)
        self.cache.observed(state)
        return state

    async def apply(self, plan: Plan) -> LoadBalancerState:
        cached = self.cache.get(plan.lb_id)
        return await self._apply(plan, state=cached, complete=cached is not None)

    async def _apply(
        self, plan: Plan, *, state: LoadBalancerState | None, complete: bool
    ) -> LoadBalancerState:
        """Run ``plan`` from ``state`` (None: read the CLB's listeners first) under the lock."""
        async with self._lock(plan.lb_id):
            if state is None:
                state = await read_structure(self.api, plan.lb_id)
            runner = PlanRunner(api=self.api, state=state, complete=complete)
            try:
                result = await runner.run(plan)
            except BaseException:
                self.cache.invalidate(plan.lb_id)
                raise
            if runner.complete:
                self.cache.written(result)
            else:
                self.cache.invalidate(plan.lb_id)
            log.info(
                "event=plan_applied lb=%s operations=%d calls=%s",
                plan.lb_id,
                len(plan),
                plan.summary(),
            )
            return result

    async def target_health(self, lb_ids: Sequence[str]) -> dict[str, tuple[TargetHealth, ...]]:
        return await read_health(self.api, lb_ids)

    async def quotas(self) -> CloudQuotas:
        """DescribeQuota, at most once per QUOTA_REFRESH; Tencent's defaults until it answers."""
        async with self._quotas_lock:
            if time.monotonic() < self._quotas_until:
                return self._quotas
            try:
                answer = await self.api.call("DescribeQuota", {})
            except CloudError as error:
                log.warning("event=quota_read_failed code=%s retry_in=%gs", error.code, QUOTA_RETRY)
                self._quotas_until = time.monotonic() + QUOTA_RETRY
                return self._quotas
            limits = {
                str(q.get("QuotaId")): q.get("QuotaLimit") for q in answer.get("QuotaSet") or ()
            }
            defaults = CloudQuotas()
            self._quotas = CloudQuotas(
                listeners_per_lb=_positive(
                    limits.get("TOTAL_LISTENER_QUOTA"), defaults.listeners_per_lb
                ),
                targets_per_group=_positive(
                    limits.get("TOTAL_TARGET_BIND_QUOTA"), defaults.targets_per_group
                ),
                rules_per_listener=_positive(
                    limits.get("TOTAL_LISTENER_RULE_QUOTA"), defaults.rules_per_listener
                ),
            )
            self._quotas_until = time.monotonic() + QUOTA_REFRESH
            log.info(
                "event=quotas_read listeners_per_lb=%d targets_per_group=%d rules_per_listener=%d",
                self._quotas.listeners_per_lb,
                self._quotas.targets_per_group,
                self._quotas.rules_per_listener,
            )
            return self._quotas

    # ----- sync -------------------------------------------------------------------------------

    async def sync(self, desired: Sequence[DesiredLoadBalancer]) -> list[SyncResult]:
        if self.strategy.parallel:
            return list(await asyncio.gather(*(self._sync_slot(d) for d in desired)))
        return [await self._sync_one(d) for d in desired]

    async def _sync_slot(self, desired: DesiredLoadBalancer) -> SyncResult:
        async with self._slots:
            return await self._sync_one(desired)

    async def _sync_one(self, desired: DesiredLoadBalancer) -> SyncResult:
        try:
            index_desired(desired.listeners)
        except ValueError as error:  # the desired state contradicts itself
            invalid = CloudError(code=INVALID_DESIRED, message=str(error), lb_id=desired.lb_id)
            return SyncResult(desired.lb_id, error=invalid)
        try:
            return await self._converge(desired)
        except CloudError as error:
            log.warning(
                "event=sync_failed lb=%s code=%s message=%s", desired.lb_id, error.code, error
            )
            self._forget(desired.lb_id)  # it may be gone: the next ensure asks the cloud
            return SyncResult(desired.lb_id, error=error)

    async def _converge(self, desired: DesiredLoadBalancer) -> SyncResult:
        """Observe, plan, apply; observe and plan again if the plan went stale."""
        for rounds in range(1, MAX_SYNC_ROUNDS + 1):
            state, complete = await self._observe_for_sync(desired)
            plan = diff(
                desired=desired.listeners,
                observed=state,
                scope=desired.scope,
                batching=self.strategy.batching,
                target_quota=(await self.quotas()).targets_per_group,
            )
            if not plan:
                return SyncResult(desired.lb_id, rounds=rounds)
            try:
                await self._apply(plan, state=state, complete=complete)
            except StalePlan as stale:
                log.info("event=plan_stale lb=%s reason=%s", desired.lb_id, stale.message)
                self.cache.invalidate(desired.lb_id)
                continue
            return SyncResult(desired.lb_id, operations=len(plan), rounds=rounds)
        raise StalePlan(
            message=f"the plan went stale {MAX_SYNC_ROUNDS} times in a row",
            action="sync",
            lb_id=desired.lb_id,
        )

    async def _observe_for_sync(
        self, desired: DesiredLoadBalancer
    ) -> tuple[LoadBalancerState, bool]:
        if self.strategy.per_target_queries:
            state = await read_per_target(self.api, desired.lb_id, desired=desired.listeners)
            return state, False
        return await self.observe(desired.lb_id), True


def _positive(value: object, default: int) -> int:
    """A quota limit from the wire, or ``default`` if it is missing or not a positive number."""
    try:
        number = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return default
    return number if number > 0 else default
