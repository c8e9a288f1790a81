"""``directlb bench gates --quick``: the benchmark runs end to end and writes its report.

Tiny sizes (6 gated pods, 2 Services, 2 nodes). Nothing about speed is asserted: the figures are
the benchmark's business (docs/benchmarks.md, "Readiness gates (issue 8)"). What is asserted
does not depend on the machine: every pod's gate turned True because its target was healthy, and
each was matched to the emulator's record of that target turning healthy.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(170)]


def test_quick_run_writes_its_report(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "directlb", "bench", "gates", "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=160,
    )
    # 0: the target met; 1: missed (a loaded machine may miss a latency target).
    assert done.returncode in (0, 1), done.stderr[-3000:]
    assert "# directlb bench gates" in done.stdout
    assert (out / "gates.md").read_text().startswith("# directlb bench gates")
    result = json.loads((out / "gates.json").read_text())
    assert result["pods"] == 6
    assert result["samples"] == 6 == len(result["per_pod"])
    assert result["excluded"] == {}
    assert result["health_check_interval_wall_seconds"] > 0
    assert set(result["latency_ms"]) >= {"p50", "p90", "p99", "max"}
    assert set(result["met"]) == {"p99_under_period_plus_interval"}
