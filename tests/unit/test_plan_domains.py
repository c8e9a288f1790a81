"""The planner's domain-level attributes of layer-7 rules: SNI certificates and the default
domain (ModifyDomainAttributes), and an HTTPS listener whose SNI must go (recreated)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from directlb.plan.diff import diff
from directlb.plan.limits import Batching
from directlb.plan.ops import (
    CreateListeners,
    CreateRules,
    DeleteListeners,
    ModifyDomain,
    ModifyListener,
    Operation,
)
from directlb.plan.simulate import advance
from directlb.plan.state import (
    Certificate,
    Listener,
    ListenerKey,
    ListenerProtocol,
    LoadBalancerState,
    Rule,
    Target,
)

HTTPS = ListenerKey(ListenerProtocol.HTTPS, 443)
A, B = Certificate("cert-a"), Certificate("cert-b")
T = Target("127.17.0.5", 8080)


def https(*rules: Rule, sni: bool = True, certificate: Certificate | None = None) -> Listener:
    return Listener(
        protocol=ListenerProtocol.HTTPS,
        port=443,
        sni=sni,
        certificate=certificate,
        rules=rules,
    )


def rule(
    domain: str,
    url: str = "/",
    *,
    cert: Certificate | None = None,
    default: bool = False,
    location: str = "",
) -> Rule:
    return Rule(
        domain, url, certificate=cert, default_server=default, targets=(T,), location_id=location
    )


def observed(*listeners: Listener) -> LoadBalancerState:
    ids = iter(range(1, 1000))
    return LoadBalancerState(
        "lb-1",
        tuple(
            replace(
                x,
                listener_id=f"lbl-{next(ids)}",
                rules=tuple(replace(r, location_id=f"loc-{next(ids)}") for r in x.rules),
            )
            for x in listeners
        ),
    )


def converge(state: LoadBalancerState, ops: tuple[Operation, ...]) -> LoadBalancerState:
    for op in ops:
        state = advance(state, op)
    return state


def domains(listener: Listener) -> dict[str, tuple[Certificate | None, bool]]:
    return {r.domain: (r.certificate, r.default_server) for r in listener.rules}


def test_new_sni_listener_gets_certificates_and_default_from_create_rule() -> None:
    want = https(rule("a.com", cert=A), rule("1.2.3.4", cert=B, default=True))
    plan = diff(desired=[want], observed=LoadBalancerState("lb-1"))
    created = [op for op in plan if isinstance(op, CreateListeners)]
    assert created and created[0].listeners[0].sni
    assert not [op for op in plan if isinstance(op, ModifyDomain)]
    [rules] = [op for op in plan if isinstance(op, CreateRules)]
    assert {(r.domain, r.certificate, r.default_server) for r in rules.rules} == {
        ("a.com", A, False),
        ("1.2.3.4", B, True),
    }
    after = converge(LoadBalancerState("lb-1"), plan.operations)
    assert domains(after.listeners[0]) == domains(want)


def test_certificate_of_a_kept_domain_changes_before_its_new_rules() -> None:
    have = observed(https(rule("a.com", cert=A), rule("b.com", cert=B, default=True)))
    want = https(
        rule("a.com", cert=B),
        rule("a.com", "/new", cert=B),
        rule("b.com", cert=B, default=True),
    )
    plan = diff(desired=[want], observed=have)
    kinds = [type(op) for op in plan if not isinstance(op, CreateListeners)]
    assert kinds.index(ModifyDomain) < kinds.index(CreateRules)
    [modify] = [op for op in plan if isinstance(op, ModifyDomain)]
    assert (modify.domain, modify.certificate, modify.default_server) == ("a.com", B, False)
    after = converge(have, plan.operations)
    assert domains(after.listeners[0]) == domains(want)
    assert not diff(desired=[want], observed=after)  # replayed: nothing left


def test_default_domain_switches_after_rules_are_created() -> None:
    have = observed(https(rule("a.com", cert=A, default=True), rule("b.com", cert=A)))
    want = https(rule("a.com", cert=A), rule("b.com", cert=A, default=True))
    plan = diff(desired=[want], observed=have)
    assert [op for op in plan] == [ModifyDomain(HTTPS, "b.com", default_server=True)]
    after = converge(have, plan.operations)
    assert after.listeners[0].default_domain == "b.com"
    # A new default domain comes with its CreateRule; the old default steps down.
    want_new = https(rule("a.com", cert=A), rule("c.com", cert=A, default=True))
    plan = diff(desired=[want_new], observed=have)
    assert not [op for op in plan if isinstance(op, ModifyDomain)]
    assert converge(have, plan.operations).listeners[0].default_domain == "c.com"


def test_no_default_wanted_leaves_the_clouds_choice() -> None:
    have = observed(https(rule("a.com", cert=A, default=True), rule("b.com", cert=B)))
    want = https(rule("a.com", cert=A), rule("b.com", cert=B))
    assert not diff(desired=[want], observed=have)


def test_sni_is_switched_on_in_place_but_off_by_recreating() -> None:
    plain = https(rule("a.com"), sni=False, certificate=A)
    have = observed(plain)
    want = https(rule("a.com", cert=B))
    plan = diff(desired=[want], observed=have)
    assert isinstance(plan.operations[0], ModifyListener) and plan.operations[0].listener.sni
    assert ModifyDomain(HTTPS, "a.com", certificate=B) in plan.operations
    back = diff(desired=[plain], observed=observed(want))
    assert isinstance(back.operations[0], DeleteListeners)
    assert any(isinstance(op, CreateListeners) and not op.listeners[0].sni for op in back)
    after = converge(observed(want), back.operations)
    assert not after.listeners[0].sni and after.listeners[0].certificate == A


@pytest.mark.parametrize("batching", list(Batching))
def test_one_domain_must_agree(batching: Batching) -> None:
    with pytest.raises(ValueError, match="differ"):
        diff(
            desired=[https(rule("a.com", cert=A), rule("a.com", "/x", cert=B))],
            observed=LoadBalancerState("lb-1"),
            batching=batching,
        )
    with pytest.raises(ValueError, match="default"):
        diff(
            desired=[
                https(rule("a.com", cert=A, default=True), rule("b.com", cert=A, default=True))
            ],
            observed=LoadBalancerState("lb-1"),
        )
