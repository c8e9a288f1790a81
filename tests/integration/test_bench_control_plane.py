"""``directlb bench control-plane --scenario smoke``: the real controller, every strategy.

Only what does not depend on the machine's speed is asserted: every strategy brings the CLBs
to the same final state (read back from the emulator through the SDK), and the API calls order
naive > batch > optimized. The timing figures are the benchmark's business (docs/benchmarks.md).
"""

from __future__ import annotations

import pytest

from directlb.bench.control_plane import STRATEGIES, check, run_bench
from directlb.bench.cp_bound import ClbChange, clb_bound
from directlb.bench.cp_scenario import SMOKE_ROWS

pytestmark = [pytest.mark.slow, pytest.mark.timeout(170)]


@pytest.mark.asyncio
async def test_smoke_every_strategy_converges_to_one_state_with_fewer_calls() -> None:
    result = await run_bench(
        SMOKE_ROWS,
        list(STRATEGIES),
        time_scales=dict.fromkeys(STRATEGIES, 0.02),
        command="test",
    )
    assert len(result.runs) == len(SMOKE_ROWS) * len(STRATEGIES)
    for run in result.runs:
        assert not run.problems, (run.label, run.strategy, run.problems)
    # Same final state per row (strategies compared), and calls naive > batch > optimized.
    assert check(result) == []


def test_lower_bound_of_a_node_surge_is_one_observation_and_the_batch_calls() -> None:
    # 50 rules gaining 49 nodes each: 2,450 targets, 5 BatchRegisterTargets of at most 500.
    bound = clb_bound(
        ClbChange(
            name="ing-00", new_clb=False, rules_before=50,
            targets_per_listener_before=(50,), register=2450,
        )
    )  # fmt: skip
    assert bound.calls == {"DescribeListeners": 1, "DescribeTargets": 1, "BatchRegisterTargets": 5}
    # (0.1 + 51 x 0.0005) + (0.1 + 50 x 0.0005) + 5 x 0.2 + 2450 x 0.008
    assert bound.seconds == pytest.approx(0.1255 + 0.125 + 1.0 + 19.6)
