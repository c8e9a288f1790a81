"""Hypothesis strategies for load-balancer states, shared by the planner's property tests."""

from __future__ import annotations

import itertools
from dataclasses import replace

from hypothesis import strategies as st

from directlb.plan.state import (
    Certificate,
    HealthCheck,
    Listener,
    ListenerProtocol,
    LoadBalancerState,
    Rule,
    Target,
    TargetKind,
)

IPS = [f"127.17.0.{i}" for i in range(1, 41)]
NODES = [(f"ins-{i}", f"127.20.0.{i}") for i in range(1, 6)]
PORTS = [80, 443, 8080, 9000]
DOMAINS = ["a.example.com", "B.example.com", "c.example.com"]
URLS = ["/", "/api", "/static"]

health_checks = st.one_of(
    st.none(),
    st.just(HealthCheck(enabled=False)),
    st.builds(
        HealthCheck,
        interval=st.sampled_from([None, 5, 10]),
        healthy_threshold=st.sampled_from([None, 2, 3]),
    ),
)

eni_targets = st.builds(
    Target,
    ip=st.sampled_from(IPS),
    port=st.sampled_from([80, 8080]),
    weight=st.integers(0, 100),
)
node_targets = st.builds(
    lambda node, port, weight: Target(
        ip=node[1], port=port, weight=weight, kind=TargetKind.NODE, instance_id=node[0]
    ),
    st.sampled_from(NODES),
    st.sampled_from([30080, 30443]),
    st.integers(0, 100),
)


def target_lists(max_size: int = 25) -> st.SearchStrategy[tuple[Target, ...]]:
    return st.lists(
        st.one_of(eni_targets, node_targets), max_size=max_size, unique_by=lambda t: t.key
    ).map(tuple)


rules = st.builds(
    Rule,
    domain=st.sampled_from(DOMAINS),
    url=st.sampled_from(URLS),
    health_check=health_checks,
    scheduler=st.sampled_from(["WRR", "LEAST_CONN"]),
    session_expire=st.sampled_from([0, 30]),
    targets=target_lists(),
)


@st.composite
def listeners(draw: st.DrawFn) -> Listener:
    protocol = draw(st.sampled_from(list(ListenerProtocol)[:4]))
    port = draw(st.sampled_from(PORTS))
    if protocol.layer7:
        return Listener(
            protocol=protocol,
            port=port,
            name=draw(st.sampled_from(["", "web"])),
            certificate=Certificate("cert-1") if protocol == ListenerProtocol.HTTPS else None,
            rules=tuple(draw(st.lists(rules, max_size=4, unique_by=lambda r: r.key))),
        )
    return Listener(
        protocol=protocol,
        port=port,
        health_check=draw(health_checks),
        scheduler=draw(st.sampled_from(["WRR", "LEAST_CONN"])),
        session_expire=draw(st.sampled_from([0, 60])),
        targets=draw(target_lists()),
    )


listener_sets = st.lists(
    listeners(), max_size=4, unique_by=lambda x: (x.protocol.port_family, x.port)
).map(tuple)


def observed_from(listeners: tuple[Listener, ...], *, lb_id: str = "lb-test") -> LoadBalancerState:
    """``listeners`` as the cloud reports them: with ids and concrete health checks."""
    ids = itertools.count(1)
    out = []
    for listener in listeners:
        rules = tuple(
            replace(r, location_id=f"loc-{next(ids)}", health_check=_concrete(r.health_check))
            for r in listener.rules
        )
        out.append(
            replace(
                listener,
                listener_id=f"lbl-{next(ids)}",
                rules=rules,
                health_check=None if listener.protocol.layer7 else _concrete(listener.health_check),
            )
        )
    return LoadBalancerState(lb_id=lb_id, listeners=tuple(out))


def _concrete(check: HealthCheck | None) -> HealthCheck:
    base = HealthCheck(
        check_type="TCP",
        timeout=2,
        interval=5,
        healthy_threshold=3,
        unhealthy_threshold=3,
        http_codes=31,
        http_path="",
        http_domain="",
        http_method="HEAD",
    )
    return base if check is None else check.merged_onto(base)
