"""Prometheus metrics of the controller, and the HTTP endpoints that serve them.

Every replica serves ``/metrics``, ``/healthz`` and ``/readyz``, leader or not. The metrics
are the ones an operator needs to see the control plane's health and speed:

* reconciles: duration and outcome per controller;
* work queues: depth, adds, retries, and how long keys wait for a worker;
* cloud API: calls by action and result, call latency, retries by error code, and the time
  spent waiting for asynchronous CLB tasks (the seed's "waiting time of asynchronous APIs");
* readiness gates: latency from a pod's containers being ready to its gate turning True,
  transitions by reason, timeouts, status patches (and the ones skipped), pods pending.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from directlb.kube.workqueue import WorkQueue

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class _QueueCollector(Collector):
    """Reads the queues' own counters at scrape time (the queue stays free of Prometheus)."""

    def __init__(self) -> None:
        self.queues: list[WorkQueue[Any]] = []

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        depth = GaugeMetricFamily(
            "directlb_workqueue_depth", "Keys ready and waiting for a worker.", labels=["name"]
        )
        adds = CounterMetricFamily(
            "directlb_workqueue_adds", "Keys added to the queue.", labels=["name"]
        )
        retries = CounterMetricFamily(
            "directlb_workqueue_retries", "Rate-limited re-adds after a failure.", labels=["name"]
        )
        wait = CounterMetricFamily(
            "directlb_workqueue_wait_seconds",
            "Total seconds keys waited from ready to taken by a worker.",
            labels=["name"],
        )
        longest = GaugeMetricFamily(
            "directlb_workqueue_longest_wait_seconds",
            "Longest a key has waited for a worker.",
            labels=["name"],
        )
        for queue in self.queues:
            stats = queue.stats
            depth.add_metric([queue.name], len(queue))
            adds.add_metric([queue.name], stats.adds)
            retries.add_metric([queue.name], stats.retries)
            wait.add_metric([queue.name], stats.total_wait_seconds)
            longest.add_metric([queue.name], stats.longest_wait_seconds)
        yield from (depth, adds, retries, wait, longest)


_WEBHOOK_COUNTERS = {
    "reviews": "AdmissionReviews answered by the webhook.",
    "patched": "Pods the webhook gave the readiness gate.",
    "errors": "Internal errors of the webhook; each allowed a pod without the gate.",
    "bad_requests": "Requests to the webhook that were not an AdmissionReview (HTTP 400).",
    "tls_reloads": "Serving certificates loaded without a restart (rotations).",
    "tls_reload_errors": "Certificate pairs refused by the webhook's TLS (the old one kept).",
}


class _WebhookCollector(Collector):
    """The admission webhook's counters, kept as plain ints by the webhook package (which does
    not know Prometheus)."""

    def __init__(self) -> None:
        self.source: Callable[[], Mapping[str, float]] | None = None

    def collect(self) -> Iterator[CounterMetricFamily]:
        if self.source is None:
            return
        values = self.source()
        for name, documentation in _WEBHOOK_COUNTERS.items():
            family = CounterMetricFamily(f"directlb_webhook_{name}", documentation)
            family.add_metric([], float(values.get(name, 0)))
            yield family


class Metrics:
    """The controller's metrics; also the cloud adapter's ``CallObserver``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.reconcile_seconds = Histogram(
            "directlb_reconcile_duration_seconds",
            "Time per reconcile.",
            ["controller", "result"],
            registry=r,
            buckets=_LATENCY_BUCKETS,
        )
        self.reconcile_errors = Counter(
            "directlb_reconcile_errors", "Reconciles that raised.", ["controller"], registry=r
        )
        self.cloud_calls = Counter(
            "directlb_cloud_api_calls", "Cloud API calls by action and result.",
            ["action", "result"], registry=r,
        )  # fmt: skip
        self.cloud_call_seconds = Histogram(
            "directlb_cloud_api_call_duration_seconds", "Latency of cloud API calls.",
            ["action"], registry=r, buckets=_LATENCY_BUCKETS,
        )  # fmt: skip
        self.cloud_retries = Counter(
            "directlb_cloud_api_retries", "Cloud API calls retried, by the error that caused it.",
            ["action", "code"], registry=r,
        )  # fmt: skip
        self.task_wait_seconds = Histogram(
            "directlb_cloud_task_wait_seconds", "Time waiting for asynchronous CLB tasks.",
            ["action", "result"], registry=r, buckets=_LATENCY_BUCKETS,
        )  # fmt: skip
        self.gate_flip_seconds = Histogram(
            "directlb_readiness_gate_flip_seconds",
            "From a pod's containers being ready to its readiness gate turning True.",
            registry=r, buckets=_LATENCY_BUCKETS,
        )  # fmt: skip
        self.gate_transitions = Counter(
            "directlb_readiness_gate_transitions",
            "Readiness-gate conditions written with a new status or reason, by both.",
            ["status", "reason"], registry=r,
        )  # fmt: skip
        self.gate_timeouts = Counter(
            "directlb_readiness_gate_timeouts",
            "Gates set True because the load balancer did not confirm the pod in time.",
            registry=r,
        )
        self.gate_patches = Counter(
            "directlb_readiness_gate_patches",
            "Gate decisions by what was written: patched, unchanged (no request), stale (the "
            "pod was gone or recreated), error.",
            ["result"], registry=r,
        )  # fmt: skip
        self.gate_pending = Gauge(
            "directlb_readiness_gate_pending",
            "Pods whose readiness gate is not True yet (their CLBs' health is polled).",
            registry=r,
        )
        self.leader = Gauge(
            "directlb_leader", "1 while this replica holds the leader lease.", registry=r
        )
        self.webhook_repairs = Counter(
            "directlb_webhook_repairs",
            "Repairs of the admission webhook's configuration and certificate Secret, one per "
            "problem found (object: configuration|secret; problem: missing, ca-bundle, rules, "
            "serving-expiring, ...).",
            ["object", "problem"],
            registry=r,
        )
        self._queues = _QueueCollector()
        r.register(self._queues)
        self._webhook = _WebhookCollector()
        r.register(self._webhook)

    def watch_queue(self, queue: WorkQueue[Any]) -> None:
        self._queues.queues.append(queue)

    def watch_webhook(self, counters: Callable[[], Mapping[str, float]]) -> None:
        """Export the webhook server's own counters (read at scrape time): ``reviews``,
        ``patched``, ``errors``, ``bad_requests``, ``tls_reloads``, ``tls_reload_errors``."""
        self._webhook.source = counters

    def timed_reconcile(
        self, controller: str, reconcile: Callable[[Any], Any]
    ) -> Callable[[Any], Any]:
        """Wrap an async ``reconcile(key)`` so its duration and errors are recorded."""

        async def timed(key: Any) -> Any:
            started = time.perf_counter()
            try:
                result = await reconcile(key)
            except Exception:
                self.reconcile_errors.labels(controller).inc()
                self.reconcile_seconds.labels(controller, "error").observe(
                    time.perf_counter() - started
                )
                raise
            outcome = "requeue" if result is not None else "success"
            self.reconcile_seconds.labels(controller, outcome).observe(
                time.perf_counter() - started
            )
            return result

        return timed

    # ----- CallObserver (directlb.cloud.metrics) -------------------------------------------

    def api_call(self, *, action: str, result: str, seconds: float) -> None:
        self.cloud_calls.labels(action, result).inc()
        self.cloud_call_seconds.labels(action).observe(seconds)

    def task_wait(self, *, action: str, result: str, seconds: float) -> None:
        self.task_wait_seconds.labels(action, result).observe(seconds)

    def retry(self, *, action: str, code: str, delay: float) -> None:
        self.cloud_retries.labels(action, code).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


def health_app(metrics: Metrics, *, ready: Callable[[], bool]) -> web.Application:
    """``/metrics``; ``/healthz`` (the process answers); ``/readyz`` (``ready()`` holds)."""

    async def metrics_handler(request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(request: web.Request) -> web.Response:
        if ready():
            return web.Response(text="ok")
        return web.Response(status=503, text="not ready: caches not synced")

    app = web.Application()
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app
