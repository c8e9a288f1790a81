"""The emulator's rate limiter (sliding window per action) and its fault injector."""

from __future__ import annotations

from collections import Counter

import pytest

from directlb.emulator.actions import Actions
from directlb.emulator.config import FAULT_KINDS, EmulatorConfig, FaultRule
from directlb.emulator.server import FaultInjector, RateLimiter, _kinds_for

DESCRIBE = "DescribeTargets"
ASYNC_MUTATION = "RegisterTargets"
SYNC_MUTATION = "BatchRegisterTargets"


# ----- rate limiter ------------------------------------------------------------------------


def test_admits_limit_then_refuses_within_the_window() -> None:
    limiter = RateLimiter(3, 1.0)
    assert [limiter.admit("A", t) for t in (0.0, 0.1, 0.2, 0.3, 0.999)] == [
        True,
        True,
        True,
        False,
        False,
    ]


def test_admits_again_once_the_oldest_leaves_the_window() -> None:
    limiter = RateLimiter(3, 1.0)
    for t in (0.0, 0.5, 0.6):
        assert limiter.admit("A", t)
    assert not limiter.admit("A", 0.99)
    assert limiter.admit("A", 1.0)  # the call at 0.0 has left the window
    assert not limiter.admit("A", 1.2)  # 0.5, 0.6 and 1.0 are still in it
    assert limiter.admit("A", 1.5)
    assert limiter.admit("A", 1.6)
    assert not limiter.admit("A", 1.7)


def test_refused_calls_do_not_count() -> None:
    limiter = RateLimiter(2, 1.0)
    assert limiter.admit("A", 0.0)
    assert limiter.admit("A", 0.0)
    for i in range(100):
        assert not limiter.admit("A", 0.01 * i)
    # Had the refusals counted, the window would still be full at 1.0.
    assert limiter.admit("A", 1.0)
    assert limiter.admit("A", 1.0)
    assert not limiter.admit("A", 1.0)


def test_limit_is_per_action() -> None:
    limiter = RateLimiter(1, 1.0)
    assert limiter.admit("A", 0.0)
    assert not limiter.admit("A", 0.0)
    assert limiter.admit("B", 0.0)
    assert not limiter.admit("B", 0.5)


def test_window_is_configurable() -> None:
    limiter = RateLimiter(20, 0.01)  # 20 per cloud second at time scale 0.01
    assert all(limiter.admit("A", i * 0.0001) for i in range(20))
    assert not limiter.admit("A", 0.0099)
    assert limiter.admit("A", 0.0100)


@pytest.mark.parametrize("limit", [0, -1])
def test_limit_zero_or_less_is_unlimited(limit: int) -> None:
    limiter = RateLimiter(limit, 1.0)
    assert all(limiter.admit("A", 0.0) for _ in range(10_000))


def test_default_config_rate_is_twenty_per_second() -> None:
    config = EmulatorConfig(secret_id="a", secret_key="b")
    limiter = RateLimiter(config.rate_limit, 1.0)
    assert sum(limiter.admit("A", i / 100) for i in range(100)) == 20


# ----- which faults apply to which action -----------------------------------------------------


def test_kinds_for_read_only_actions() -> None:
    assert _kinds_for(DESCRIBE) == ("internal", "throttle", "drop", "slow")
    assert _kinds_for("DescribeTaskStatus") == ("internal", "throttle", "drop", "slow")


def test_kinds_for_asynchronous_mutations_include_busy_and_taskfail() -> None:
    assert _kinds_for(ASYNC_MUTATION) == FAULT_KINDS


def test_kinds_for_synchronous_batches_include_busy_not_taskfail() -> None:
    assert _kinds_for(SYNC_MUTATION) == ("internal", "throttle", "busy", "drop", "slow")
    assert _kinds_for("BatchDeregisterTargets") == _kinds_for(SYNC_MUTATION)


@pytest.mark.parametrize("action", sorted(Actions.MUTATING))
def test_every_mutating_action_may_be_busy(action: str) -> None:
    kinds = _kinds_for(action)
    assert "busy" in kinds
    assert ("taskfail" in kinds) == (action in Actions.ASYNC)


# ----- fault injector --------------------------------------------------------------------------


def injector(*rules: str, seed: int | None = 1) -> FaultInjector:
    config = EmulatorConfig(
        secret_id="a", secret_key="b", faults=tuple(FaultRule.parse(r) for r in rules), seed=seed
    )
    return FaultInjector(config)


def test_no_rules_no_faults() -> None:
    faults = injector()
    assert all(faults.pick(ASYNC_MUTATION) is None for _ in range(200))


def test_same_seed_same_faults() -> None:
    first = injector("*=0.5", seed=42)
    second = injector("*=0.5", seed=42)
    actions = [DESCRIBE, ASYNC_MUTATION, SYNC_MUTATION] * 100
    picked = [first.pick(a) for a in actions]
    assert picked == [second.pick(a) for a in actions]
    assert 0 < picked.count(None) < len(picked)  # a coin, not a constant


def test_different_seed_different_faults() -> None:
    actions = [ASYNC_MUTATION] * 200
    first = injector("*=0.5", seed=1)
    second = injector("*=0.5", seed=2)
    assert [first.pick(a) for a in actions] != [second.pick(a) for a in actions]


def test_probability_zero_never_fires() -> None:
    faults = injector("*=0", f"{ASYNC_MUTATION}:taskfail=0")
    assert all(faults.pick(ASYNC_MUTATION) is None for _ in range(2000))


def test_probability_one_always_fires() -> None:
    faults = injector(f"{ASYNC_MUTATION}=1")
    picked = Counter(faults.pick(ASYNC_MUTATION) for _ in range(2000))
    assert None not in picked
    assert set(picked) == set(FAULT_KINDS)  # any kind that applies, each of them in time


def test_probability_is_roughly_honoured() -> None:
    faults = injector(f"{DESCRIBE}=0.2", seed=3)
    fired = sum(faults.pick(DESCRIBE) is not None for _ in range(5000))
    assert 800 < fired < 1200


def test_rule_for_one_action_leaves_others_alone() -> None:
    faults = injector(f"{ASYNC_MUTATION}=1")
    assert all(faults.pick(DESCRIBE) is None for _ in range(200))
    assert all(faults.pick("DeregisterTargets") is None for _ in range(200))


def test_star_matches_any_action() -> None:
    faults = injector("*:internal=1")
    for action in (DESCRIBE, ASYNC_MUTATION, SYNC_MUTATION, "DescribeQuota", "Anything"):
        assert faults.pick(action) == "internal"


def test_kind_given_is_the_kind_injected() -> None:
    faults = injector(f"{DESCRIBE}:slow=1")
    assert {faults.pick(DESCRIBE) for _ in range(100)} == {"slow"}


def test_busy_only_for_mutating_actions() -> None:
    faults = injector("*:busy=1")
    assert faults.pick(DESCRIBE) is None
    assert faults.pick("DescribeTaskStatus") is None
    assert faults.pick(SYNC_MUTATION) == "busy"
    assert faults.pick(ASYNC_MUTATION) == "busy"
    assert faults.pick("DeleteLoadBalancer") == "busy"


def test_taskfail_only_for_asynchronous_actions() -> None:
    faults = injector("*:taskfail=1")
    assert faults.pick(DESCRIBE) is None
    assert faults.pick(SYNC_MUTATION) is None
    assert faults.pick(ASYNC_MUTATION) == "taskfail"
    assert faults.pick("CreateLoadBalancer") == "taskfail"


def test_any_kind_rule_on_a_read_never_picks_a_mutation_fault() -> None:
    faults = injector("*=1", seed=5)
    picked = Counter(faults.pick(DESCRIBE) for _ in range(2000))
    assert set(picked) == {"internal", "throttle", "drop", "slow"}
    picked = Counter(faults.pick(SYNC_MUTATION) for _ in range(2000))
    assert set(picked) == {"internal", "throttle", "busy", "drop", "slow"}


def test_inapplicable_rule_falls_through_to_the_next() -> None:
    faults = injector("*:taskfail=1", f"{DESCRIBE}:throttle=1")
    assert faults.pick(DESCRIBE) == "throttle"
    assert faults.pick(ASYNC_MUTATION) == "taskfail"


def test_first_rule_that_fires_wins() -> None:
    faults = injector(f"{ASYNC_MUTATION}:busy=1", "*:internal=1")
    assert faults.pick(ASYNC_MUTATION) == "busy"
    assert faults.pick(DESCRIBE) == "internal"
