"""The demo's figures per mode, from the load's samples: the table, ``report.json``, the chart.

Everything here is computed from what the load generator recorded (:class:`Sample`) and the
instants the demo noted (rollout start, rollout complete, CLB converged); nothing is assumed.
matplotlib is imported inside :func:`write_chart` only, so nothing else pays for it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from directlb.demo.load import Sample

BIN_SECONDS = 0.25  # width of a bar of the chart


@dataclass(frozen=True)
class Persistence:
    """Session persistence at steady state: each client's requests, and the pods they hit."""

    clients: int
    requests_per_client: int
    clients_on_one_pod: int
    failed: int

    @property
    def held(self) -> bool:
        return self.clients > 0 and self.clients_on_one_pod == self.clients and not self.failed


@dataclass(frozen=True)
class ModeResult:
    """One row of the table. Times are seconds since the load started."""

    mode: str
    title: str
    namespace: str
    backends: str
    pods_with_gate: str  # e.g. "6/6": pods that had the readiness gate before the rollout
    requests: int
    failed: int
    errors: dict[str, int]
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    # The same, over the requests sent before the rollout started (the data path alone, without
    # the rollout's control-plane work sharing the stand-ins' event loop).
    steady_p50_ms: float | None
    steady_p99_ms: float | None
    source_ip_kept: float | None  # fraction of successful answers that saw the client's IP
    seen_sources: list[str]
    persistence: Persistence
    rollout_started: float
    rollout_seconds: float | None  # None: not complete in time
    clb_converged_after: float | None  # seconds after the rollout started
    load_seconds: float
    timeline: dict[str, list[float]] = field(default_factory=dict)

    @property
    def source_ip_label(self) -> str:
        if self.source_ip_kept is None:
            return "n/a"
        if self.source_ip_kept == 1.0:
            return "kept"
        if self.source_ip_kept == 0.0:
            return "lost"
        return f"partly ({self.source_ip_kept:.0%})"

    @property
    def persistence_label(self) -> str:
        p = self.persistence
        state = "held" if p.held else "broken"
        return f"{state} ({p.clients_on_one_pod}/{p.clients})"


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100), nearest rank on the sorted values; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def persistence_of(samples: Sequence[Sample], *, requests_per_client: int) -> Persistence:
    pods: dict[str, set[str]] = {}
    failed = 0
    for s in samples:
        if s.ok:
            pods.setdefault(s.client, set()).add(s.pod)
        else:
            failed += 1
    return Persistence(
        clients=len({s.client for s in samples}),
        requests_per_client=requests_per_client,
        clients_on_one_pod=sum(1 for seen in pods.values() if len(seen) == 1),
        failed=failed,
    )


def timeline(samples: Sequence[Sample], *, until: float) -> dict[str, list[float]]:
    """Per bin of :data:`BIN_SECONDS` (by start): requests/s answered and failed, and the
    slowest answer's latency (ms)."""
    # Whole bins only: the last one, cut short when the load stopped, would dip.
    last = max((s.start for s in samples), default=0.0)
    bins = max(1, int(min(until, last) / BIN_SECONDS))
    ok = [0.0] * bins
    bad = [0.0] * bins
    slowest = [0.0] * bins
    for s in samples:
        i = int(s.start / BIN_SECONDS)
        if not 0 <= i < bins:
            continue
        (ok if s.ok else bad)[i] += 1 / BIN_SECONDS
        if s.ok:
            slowest[i] = max(slowest[i], round(s.latency * 1000, 1))
    return {
        "t": [round(i * BIN_SECONDS, 3) for i in range(bins)],
        "ok": ok,
        "failed": bad,
        "max_ms": slowest,
    }


def mode_result(
    *,
    mode: str,
    title: str,
    namespace: str,
    backends: str,
    pods_with_gate: str,
    load: Sequence[Sample],
    probe: Sequence[Sample],
    requests_per_client: int,
    rollout_started: float,
    rollout_seconds: float | None,
    clb_converged_after: float | None,
    load_seconds: float,
) -> ModeResult:
    """The row of one mode: ``load`` is the steady load through the rollout, ``probe`` the
    steady-state session-persistence check (both count for the source-IP column)."""
    latencies = [s.latency * 1000 for s in load if s.ok]
    steady = [s.latency * 1000 for s in load if s.ok and s.start < rollout_started]
    answered = [s for s in (*probe, *load) if s.ok]
    kept = sum(1 for s in answered if s.seen_ip == s.client)

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value, 2)

    return ModeResult(
        mode=mode,
        title=title,
        namespace=namespace,
        backends=backends,
        pods_with_gate=pods_with_gate,
        requests=len(load),
        failed=sum(1 for s in load if not s.ok),
        errors=dict(Counter(s.error for s in load if not s.ok)),
        p50_ms=ms(percentile(latencies, 50)),
        p99_ms=ms(percentile(latencies, 99)),
        max_ms=ms(max(latencies) if latencies else None),
        steady_p50_ms=ms(percentile(steady, 50)),
        steady_p99_ms=ms(percentile(steady, 99)),
        source_ip_kept=round(kept / len(answered), 4) if answered else None,
        seen_sources=sorted({s.seen_ip for s in answered if s.seen_ip != s.client})[:10],
        persistence=persistence_of(probe, requests_per_client=requests_per_client),
        rollout_started=round(rollout_started, 3),
        rollout_seconds=None if rollout_seconds is None else round(rollout_seconds, 2),
        clb_converged_after=None if clb_converged_after is None else round(clb_converged_after, 2),
        load_seconds=round(load_seconds, 2),
        timeline=timeline(load, until=load_seconds),
    )


# --- the table ----------------------------------------------------------------------------------

HEADERS = (
    "mode",
    "requests",
    "failed",
    "p50 ms",
    "p99 ms",
    "source IP",
    "session persistence",
    "rollout s",
)


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def rows(results: Sequence[ModeResult]) -> list[list[str]]:
    return [
        [
            r.title,
            str(r.requests),
            f"{r.failed} ({r.failed / r.requests:.1%})" if r.requests else "0",
            _num(r.p50_ms),
            _num(r.p99_ms),
            r.source_ip_label,
            r.persistence_label,
            _num(r.rollout_seconds) if r.rollout_seconds is not None else "not done",
        ]
        for r in results
    ]


def text_table(results: Sequence[ModeResult]) -> str:
    body = rows(results)
    widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(HEADERS)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i in (0, 5, 6) else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(HEADERS), rule, *(line(r) for r in body)])


def markdown_table(results: Sequence[ModeResult]) -> str:
    out = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    out += ["| " + " | ".join(row) + " |" for row in rows(results)]
    return "\n".join(out)


# --- files ----------------------------------------------------------------------------------------


def to_json(results: Sequence[ModeResult], *, meta: dict[str, Any]) -> dict[str, Any]:
    modes = []
    for r in results:
        entry = asdict(r)
        entry["source_ip"] = r.source_ip_label
        entry["persistence"]["held"] = r.persistence.held
        modes.append(entry)
    return {**meta, "modes": modes}


def write_json(path: Path, results: Sequence[ModeResult], *, meta: dict[str, Any]) -> None:
    path.write_text(json.dumps(to_json(results, meta=meta), indent=2) + "\n")


def write_chart(path: Path, results: Sequence[ModeResult], *, subtitle: str) -> None:
    """One panel per mode: successful and failed requests/s over time, with the rollout's start,
    its end and the CLB's convergence marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 1, figsize=(10, 2.3 * len(results) + 0.8), sharex=True)
    axes_list = list(axes) if len(results) > 1 else [axes]
    top = max(
        (
            a + b
            for r in results
            for a, b in zip(r.timeline["ok"], r.timeline["failed"], strict=True)
        ),
        default=1.0,
    )
    for ax, r in zip(axes_list, results, strict=True):
        t = r.timeline["t"]
        ax.bar(t, r.timeline["ok"], width=0.25, align="edge", color="#3a9a5b", label="answered")
        ax.bar(
            t,
            r.timeline["failed"],
            width=0.25,
            align="edge",
            bottom=r.timeline["ok"],
            color="#d2453b",
            label="failed",
        )
        ax.axvline(r.rollout_started, color="#333", linestyle="--", linewidth=1)
        if r.rollout_seconds is not None:
            ax.axvline(r.rollout_started + r.rollout_seconds, color="#333", linewidth=1)
        if r.clb_converged_after is not None:
            ax.axvline(
                r.rollout_started + r.clb_converged_after, color="#3465a4", linestyle=":", lw=1.5
            )
        ax.set_ylim(0, top * 1.15)
        ax.set_ylabel("requests/s")
        p99 = "-" if r.p99_ms is None else f"{r.p99_ms:.1f} ms"
        ax.set_title(
            f"{r.title}: {r.failed} of {r.requests} failed, p99 {p99}, source IP "
            f"{r.source_ip_label}, persistence {r.persistence_label}",
            fontsize=9,
            loc="left",
        )
    axes_list[0].legend(loc="upper right", fontsize=8)
    axes_list[-1].set_xlabel(
        "seconds since the load started  (dashed: rollout starts, solid: rollout complete, "
        "dotted: CLB backends converged)",
        fontsize=8,
    )
    fig.suptitle(f"directlb demo: HTTP load through the CLB during a rolling update\n{subtitle}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
