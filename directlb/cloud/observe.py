"""Reading a CLB's state: one round per CLB, or the per-target queries of the old way.

``read_full`` is the seed's "backend instance query optimization": DescribeListeners, then
DescribeTargets for every listener, 20 listener ids per call, pages in parallel. That is the
whole CLB in 1 + ceil(listeners / 20) calls, however many targets it has.

``read_per_target`` is what the naive and batch strategies do: for each listener or rule that
stays, list its targets, then ask about each desired target on its own (DescribeTargets
filtered to that target's address: is it bound, and with what weight?).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from directlb.cloud.api import ClbApi
from directlb.cloud.errors import CloudError
from directlb.cloud.port import TargetHealth
from directlb.cloud.wire import (
    TargetGroups,
    parse_listener,
    parse_target_groups,
    parse_target_health,
    with_targets,
)
from directlb.plan.batching import chunks
from directlb.plan.state import Listener, LoadBalancerState, Rule, Target

LISTENER_IDS_PER_DESCRIBE = 20
LBS_PER_HEALTH_CALL = 30
LB_NOT_FOUND = "InvalidParameter.LBIdNotFound"


async def read_structure(api: ClbApi, lb_id: str) -> LoadBalancerState:
    """Listeners and rules (with their ids), without targets: one DescribeListeners."""
    answer = await api.call("DescribeListeners", {"LoadBalancerId": lb_id}, lb_id=lb_id)
    listeners = tuple(parse_listener(doc) for doc in answer.get("Listeners") or ())
    return LoadBalancerState(lb_id=lb_id, listeners=listeners)


async def read_full(api: ClbApi, lb_id: str) -> LoadBalancerState:
    """The whole CLB, targets included, in one round."""
    structure = await read_structure(api, lb_id)
    ids = [listener.listener_id for listener in structure.listeners]
    pages = await asyncio.gather(
        *(
            api.call(
                "DescribeTargets", {"LoadBalancerId": lb_id, "ListenerIds": list(part)}, lb_id=lb_id
            )
            for part in chunks(ids, LISTENER_IDS_PER_DESCRIBE)
        )
    )
    groups: TargetGroups = {}
    for page in pages:
        groups.update(parse_target_groups(page.get("Listeners") or ()))
    return replace(structure, listeners=tuple(with_targets(x, groups) for x in structure.listeners))


async def read_per_target(
    api: ClbApi, lb_id: str, *, desired: Sequence[Listener]
) -> LoadBalancerState:
    """The CLB as the old control plane saw it: structure, then targets group by group and
    desired target by desired target. Listeners and rules that are not desired keep no
    targets (they are deleted whole, or are not ours to look at)."""
    structure = await read_structure(api, lb_id)
    wanted = {listener.key: listener for listener in desired}
    listeners: list[Listener] = []
    for listener in structure.listeners:
        want = wanted.get(listener.key)
        if want is None:
            listeners.append(listener)
        elif listener.protocol.layer7:
            rules = [
                await _rule_targets(api, lb_id=lb_id, listener=listener, rule=rule, want=want)
                for rule in listener.rules
            ]
            listeners.append(replace(listener, rules=tuple(rules)))
        else:
            targets = await _group_targets(
                api,
                lb_id=lb_id,
                listener_id=listener.listener_id,
                location_id="",
                want=want.targets,
            )
            listeners.append(replace(listener, targets=targets))
    return replace(structure, listeners=tuple(listeners))


async def _rule_targets(
    api: ClbApi, *, lb_id: str, listener: Listener, rule: Rule, want: Listener
) -> Rule:
    wanted = want.rule(rule.key)
    if wanted is None:
        return rule
    targets = await _group_targets(
        api,
        lb_id=lb_id,
        listener_id=listener.listener_id,
        location_id=rule.location_id,
        want=wanted.targets,
    )
    return replace(rule, targets=targets)


async def _group_targets(
    api: ClbApi, *, lb_id: str, listener_id: str, location_id: str, want: Sequence[Target]
) -> tuple[Target, ...]:
    scope: list[dict[str, Any]] = []
    if location_id:
        scope.append({"Name": "location-id", "Values": [location_id]})
    bound = await _describe_group(
        api, lb_id=lb_id, listener_id=listener_id, location_id=location_id, filters=scope
    )
    wanted = {t.key for t in want}
    found: list[Target] = [t for t in bound if t.key not in wanted]
    for target in want:
        ip_filter = {"Name": "private-ip-address", "Values": [target.ip]}
        answer = await _describe_group(
            api,
            lb_id=lb_id,
            listener_id=listener_id,
            location_id=location_id,
            filters=[*scope, ip_filter],
        )
        found += [t for t in answer if t.key == target.key]
    return tuple(found)


async def _describe_group(
    api: ClbApi,
    *,
    lb_id: str,
    listener_id: str,
    location_id: str,
    filters: list[dict[str, Any]],
) -> tuple[Target, ...]:
    params: dict[str, Any] = {"LoadBalancerId": lb_id, "ListenerIds": [listener_id]}
    if filters:
        params["Filters"] = filters
    answer = await api.call("DescribeTargets", params, lb_id=lb_id)
    groups = parse_target_groups(answer.get("Listeners") or ())
    return groups.get(listener_id, {}).get(location_id, ())


async def read_health(api: ClbApi, lb_ids: Sequence[str]) -> dict[str, tuple[TargetHealth, ...]]:
    """Target health of many CLBs, 30 per DescribeTargetHealth call, calls in parallel.

    A CLB that no longer exists fails its whole call (``InvalidParameter.LBIdNotFound``); that
    call's CLBs are then asked about one by one, so the others still answer, and the missing
    one reports no targets.
    """
    unique = list(dict.fromkeys(lb_ids))
    parts = await asyncio.gather(
        *(_health_part(api, part) for part in chunks(unique, LBS_PER_HEALTH_CALL))
    )
    health: dict[str, tuple[TargetHealth, ...]] = {lb_id: () for lb_id in unique}
    for part in parts:
        health.update(part)
    return health


async def _health_part(
    api: ClbApi, lb_ids: Sequence[str], *, alone: bool = False
) -> dict[str, tuple[TargetHealth, ...]]:
    try:
        answer = await api.call("DescribeTargetHealth", {"LoadBalancerIds": list(lb_ids)})
    except CloudError as error:
        if error.code != LB_NOT_FOUND:
            raise
        if alone:
            return {}
        singles = await asyncio.gather(*(_health_part(api, [i], alone=True) for i in lb_ids))
        return {k: v for single in singles for k, v in single.items()}
    return parse_target_health(answer)
