"""Running a plan on one CLB: one operation at a time, each made idempotent.

Operations name listeners and rules by key; the runner resolves keys to ids against the state
it holds (observed, then advanced by each success) just before each call, and:

* skips what is already done: a listener or rule to create that exists, one to delete that
  is gone, targets to deregister from a listener that is gone;
* on an answer that says its picture is out of date (ListenerIdNotFound, LocationNotFound,
  PortCheckFailed, Duplicate: typically a call whose answer was lost did take effect) reads
  the CLB's listeners again and resolves afresh;
* retries an operation whose task failed, and the failed part of a batch call
  (``FailListenerIdSet``) alone, with backoff;
* raises StalePlan when the plan needs a listener or rule the CLB does not have.

So a plan applied twice, or again after a crash part way, converges with no duplicates and no
errors.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from directlb.cloud.api import ClbApi
from directlb.cloud.errors import (
    PORT_CONFLICT,
    CloudError,
    PartialFailure,
    StalePlan,
    TaskFailed,
)
from directlb.cloud.observe import read_structure
from directlb.cloud.wire import (
    batch_target_params,
    create_listener_params,
    modify_domain_params,
    modify_listener_params,
    modify_rule_params,
    rule_params,
    target_params,
)
from directlb.plan.ops import (
    BatchDeregisterTargets,
    BatchModifyTargetWeight,
    BatchRegisterTargets,
    Binding,
    CreateListeners,
    CreateRules,
    DeleteListener,
    DeleteListeners,
    DeleteRules,
    DeregisterTargets,
    ModifyDomain,
    ModifyListener,
    ModifyRule,
    ModifyTargetWeight,
    Operation,
    Plan,
    RegisterTargets,
)
from directlb.plan.simulate import advance, apply_bindings
from directlb.plan.state import Listener, ListenerKey, LoadBalancerState, Rule, RuleKey, Target

# Fresh looks at the CLB allowed per operation before the plan is declared stale.
MAX_REFRESHES = 3

Doc = dict[str, Any]


@dataclass(frozen=True)
class _Remaining:
    """The part of a batch call the cloud refused, to be retried alone."""

    op: BatchRegisterTargets | BatchDeregisterTargets
    message: str
    failed_listener_ids: tuple[str, ...]


class PlanRunner:
    """Applies operations to one CLB, keeping ``state`` equal to what the CLB now has.

    ``complete`` says whether ``state`` includes targets (a full observation); after a
    re-read of listeners only, it does not, and the caller must not cache it.
    """

    def __init__(self, *, api: ClbApi, state: LoadBalancerState, complete: bool) -> None:
        self.api = api
        self.state = state
        self.complete = complete
        self.lb_id = state.lb_id

    async def run(self, plan: Plan) -> LoadBalancerState:
        for op in plan:
            await self._run(op)
        return self.state

    async def _run(self, op: Operation) -> None:
        failures = 0
        refreshes = 0
        current: Operation | None = op
        while current is not None:
            try:
                remaining = await self._step(current)
            except TaskFailed:
                failures += 1
                if failures >= self.api.timing.attempts:
                    raise
                await self._pause(failures)
                continue
            except CloudError as error:
                if not error.stale:
                    raise
                refreshes += 1
                if refreshes > MAX_REFRESHES:
                    raise StalePlan(
                        message=f"still {error.code} after {MAX_REFRESHES} fresh looks: "
                        f"{error.message}",
                        action=op.action,
                        lb_id=self.lb_id,
                    ) from error
                await self.refresh()
                continue
            if remaining is None:
                return
            failures += 1
            if failures >= self.api.timing.attempts:
                raise PartialFailure(
                    message=remaining.message,
                    action=op.action,
                    lb_id=self.lb_id,
                    failed_listener_ids=remaining.failed_listener_ids,
                )
            current = remaining.op
            await self._pause(failures)

    async def refresh(self) -> None:
        """Read the CLB's listeners and rules again (targets are then unknown)."""
        self.state = await read_structure(self.api, self.lb_id)
        self.complete = False

    async def _pause(self, failures: int) -> None:
        await asyncio.sleep(self.api.backoff.delay(failures - 1))

    async def _mutate(self, action: str, params: Doc) -> Doc:
        return await self.api.mutate(action, params, lb_id=self.lb_id)

    # ----- dispatch ---------------------------------------------------------------------------

    async def _step(self, op: Operation) -> _Remaining | None:
        if isinstance(op, DeleteListener | DeleteListeners):
            await self._delete_listeners(op)
        elif isinstance(op, CreateListeners):
            await self._create_listeners(op)
        elif isinstance(op, ModifyListener):
            await self._modify_listener(op)
        elif isinstance(op, DeleteRules):
            await self._delete_rules(op)
        elif isinstance(op, CreateRules):
            await self._create_rules(op)
        elif isinstance(op, ModifyRule):
            await self._modify_rule(op)
        elif isinstance(op, ModifyDomain):
            await self._modify_domain(op)
        elif isinstance(op, RegisterTargets | DeregisterTargets | ModifyTargetWeight):
            await self._targets(op)
        elif isinstance(op, BatchModifyTargetWeight):
            await self._batch_weights(op)
        else:
            return await self._batch_targets(op)
        return None

    # ----- resolution -------------------------------------------------------------------------

    def _stale(self, op: Operation, what: str) -> StalePlan:
        return StalePlan(
            message=f"{what} is not on {self.lb_id}", action=op.action, lb_id=self.lb_id
        )

    def _need_listener(self, key: ListenerKey, op: Operation) -> Listener:
        listener = self.state.listener(key)
        if listener is None:
            raise self._stale(op, f"listener {key}")
        return listener

    def _need_rule(self, listener: Listener, *, key: RuleKey, op: Operation) -> Rule:
        rule = listener.rule(key)
        if rule is None:
            raise self._stale(op, f"rule {key} of listener {listener.key}")
        return rule

    def _group_ids(self, key: ListenerKey, rule: RuleKey | None) -> tuple[str, str] | None:
        """(listener id, location id or "") of a target group, None if it does not exist."""
        listener = self.state.listener(key)
        if listener is None:
            return None
        if rule is None:
            return listener.listener_id, ""
        found = listener.rule(rule)
        return None if found is None else (listener.listener_id, found.location_id)

    def _pending(
        self, key: ListenerKey, *, rule: RuleKey | None, targets: Sequence[Target], bind: bool
    ) -> tuple[Target, ...]:
        """The targets still to (re)bind (``bind``) or to unbind. With a complete state, ones
        already so are skipped: a plan applied again makes no target calls it does not need."""
        if not self.complete:
            return tuple(targets)
        listener = self.state.listener(key)
        group = listener.rule(rule) if listener is not None and rule is not None else None
        bound_targets = (
            () if listener is None else group.targets if group is not None else listener.targets
        )
        bound = {t.key: t.weight for t in bound_targets}
        if bind:
            return tuple(t for t in targets if bound.get(t.key) != t.weight)
        return tuple(t for t in targets if t.key in bound)

    def _need_group(
        self, key: ListenerKey, *, rule: RuleKey | None, op: Operation
    ) -> tuple[str, str]:
        ids = self._group_ids(key, rule)
        if ids is None:
            raise self._stale(op, f"listener {key}" + (f" rule {rule}" if rule else ""))
        return ids

    # ----- listeners and rules ----------------------------------------------------------------

    async def _delete_listeners(self, op: DeleteListener | DeleteListeners) -> None:
        keys = [op.listener] if isinstance(op, DeleteListener) else list(op.listeners)
        present = [x for x in (self.state.listener(k) for k in keys) if x is not None]
        if not present:
            return
        if isinstance(op, DeleteListener):
            params: Doc = {"LoadBalancerId": self.lb_id, "ListenerId": present[0].listener_id}
        else:
            ids = [x.listener_id for x in present]
            params = {"LoadBalancerId": self.lb_id, "ListenerIds": ids}
        await self._mutate(op.action, params)
        self.state = advance(self.state, DeleteListeners(tuple(x.key for x in present)))

    async def _create_listeners(self, op: CreateListeners) -> None:
        missing = tuple(x for x in op.listeners if self.state.listener(x.key) is None)
        if not missing:
            return
        for listener in missing:
            self._check_port(listener)
        answer = await self._mutate(op.action, create_listener_params(self.lb_id, missing))
        created = [str(i) for i in answer.get("ListenerIds") or ()]
        self.state = advance(self.state, CreateListeners(missing), created=created)

    def _check_port(self, listener: Listener) -> None:
        for other in self.state.listeners:
            same_family = other.protocol.port_family == listener.protocol.port_family
            if other.port == listener.port and same_family:
                raise CloudError(
                    code=PORT_CONFLICT,
                    message=f"port {listener.port} is taken by {other.protocol} listener "
                    f"{other.listener_id}, which this desired state may not delete",
                    action="CreateListener",
                    lb_id=self.lb_id,
                )

    async def _modify_listener(self, op: ModifyListener) -> None:
        current = self._need_listener(op.listener.key, op)
        params = modify_listener_params(
            lb_id=self.lb_id, listener_id=current.listener_id, listener=op.listener
        )
        await self._mutate(op.action, params)
        self.state = advance(self.state, op)

    async def _delete_rules(self, op: DeleteRules) -> None:
        listener = self.state.listener(op.listener)
        if listener is None:
            return
        present = [r for r in (listener.rule(k) for k in op.rules) if r is not None]
        if not present:
            return
        params: Doc = {
            "LoadBalancerId": self.lb_id,
            "ListenerId": listener.listener_id,
            "LocationIds": [r.location_id for r in present],
        }
        await self._mutate(op.action, params)
        self.state = advance(self.state, DeleteRules(op.listener, tuple(r.key for r in present)))

    async def _create_rules(self, op: CreateRules) -> None:
        listener = self._need_listener(op.listener, op)
        missing = tuple(r for r in op.rules if listener.rule(r.key) is None)
        if not missing:
            return
        params: Doc = {
            "LoadBalancerId": self.lb_id,
            "ListenerId": listener.listener_id,
            "Rules": [rule_params(r, sni=listener.sni) for r in missing],
        }
        answer = await self._mutate(op.action, params)
        created = [str(i) for i in answer.get("LocationIds") or ()]
        self.state = advance(self.state, CreateRules(op.listener, missing), created=created)

    async def _modify_rule(self, op: ModifyRule) -> None:
        listener = self._need_listener(op.listener, op)
        rule = self._need_rule(listener, key=op.rule.key, op=op)
        params = modify_rule_params(
            lb_id=self.lb_id,
            listener_id=listener.listener_id,
            location_id=rule.location_id,
            rule=op.rule,
        )
        await self._mutate(op.action, params)
        self.state = advance(self.state, op)

    async def _modify_domain(self, op: ModifyDomain) -> None:
        listener = self._need_listener(op.listener, op)
        domain = op.domain.lower()
        if not any(r.domain == domain for r in listener.rules):
            raise self._stale(op, f"domain {domain} of listener {listener.key}")
        certificate = op.certificate
        if certificate is not None and listener.domain_certificate(domain) == certificate:
            certificate = None
        default_server = op.default_server and listener.default_domain != domain
        if certificate is None and not default_server:
            return  # done already
        params = modify_domain_params(
            lb_id=self.lb_id,
            listener_id=listener.listener_id,
            domain=domain,
            certificate=certificate,
            default_server=default_server,
        )
        await self._mutate(op.action, params)
        self.state = advance(self.state, op)

    # ----- targets ----------------------------------------------------------------------------

    async def _targets(self, op: RegisterTargets | DeregisterTargets | ModifyTargetWeight) -> None:
        if isinstance(op, DeregisterTargets):
            ids = self._group_ids(op.listener, op.rule)
            if ids is None:  # gone with its listener or rule
                return
        else:
            ids = self._need_group(op.listener, rule=op.rule, op=op)
        listener_id, location_id = ids
        targets = self._pending(
            op.listener,
            rule=op.rule,
            targets=op.targets,
            bind=not isinstance(op, DeregisterTargets),
        )
        if not targets:
            return
        params: Doc = {
            "LoadBalancerId": self.lb_id,
            "ListenerId": listener_id,
            "Targets": [target_params(t) for t in targets],
        }
        if location_id:
            params["LocationId"] = location_id
        await self._mutate(op.action, params)
        self.state = advance(self.state, op)

    async def _batch_weights(self, op: BatchModifyTargetWeight) -> None:
        entries: list[Doc] = []
        for entry in op.entries:
            listener_id, location_id = self._need_group(entry.listener, rule=entry.rule, op=op)
            targets = self._pending(
                entry.listener, rule=entry.rule, targets=entry.targets, bind=True
            )
            if not targets:
                continue
            doc: Doc = {
                "ListenerId": listener_id,
                "Targets": [target_params(t) for t in targets],
            }
            if location_id:
                doc["LocationId"] = location_id
            entries.append(doc)
        if not entries:
            return
        await self._mutate(op.action, {"LoadBalancerId": self.lb_id, "ModifyList": entries})
        self.state = advance(self.state, op)

    async def _batch_targets(
        self, op: BatchRegisterTargets | BatchDeregisterTargets
    ) -> _Remaining | None:
        register = isinstance(op, BatchRegisterTargets)
        kept: list[tuple[Binding, str]] = []
        params: list[Doc] = []
        for binding in op.bindings:
            ids = (
                self._need_group(binding.listener, rule=binding.rule, op=op)
                if register
                else self._group_ids(binding.listener, binding.rule)
            )
            if ids is None:  # deregistering from a listener or rule that is gone
                continue
            pending = self._pending(
                binding.listener, rule=binding.rule, targets=[binding.target], bind=register
            )
            if not pending:
                continue
            kept.append((binding, ids[0]))
            params.append(
                batch_target_params(listener_id=ids[0], location_id=ids[1], target=binding.target)
            )
        if not kept:
            return None
        answer = await self._mutate(op.action, {"LoadBalancerId": self.lb_id, "Targets": params})
        failed = {str(i) for i in answer.get("FailListenerIdSet") or ()}
        done = [b for b, listener_id in kept if listener_id not in failed]
        self.state = apply_bindings(self.state, done, register=register)
        if not failed:
            return None
        rest = tuple(b for b, listener_id in kept if listener_id in failed)
        return _Remaining(
            op=BatchRegisterTargets(rest) if register else BatchDeregisterTargets(rest),
            message=str(answer.get("Message") or f"failed for listeners {sorted(failed)}"),
            failed_listener_ids=tuple(sorted(failed)),
        )
