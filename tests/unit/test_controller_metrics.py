from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from directlb.controllers.metrics import Metrics, health_app
from directlb.kube.workqueue import WorkQueue


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_cloud_calls_retries_and_task_waits_are_counted() -> None:
    metrics = Metrics()
    metrics.api_call(action="RegisterTargets", result="Success", seconds=0.05)
    metrics.api_call(action="RegisterTargets", result="Success", seconds=0.07)
    metrics.api_call(action="RegisterTargets", result="RequestLimitExceeded", seconds=0.01)
    metrics.retry(action="RegisterTargets", code="RequestLimitExceeded", delay=0.2)
    metrics.task_wait(action="RegisterTargets", result="Success", seconds=5.2)
    got = samples(metrics)
    ok = (("action", "RegisterTargets"), ("result", "Success"))
    limited = (("action", "RegisterTargets"), ("result", "RequestLimitExceeded"))
    assert got[("directlb_cloud_api_calls_total", ok)] == 2
    assert got[("directlb_cloud_api_calls_total", limited)] == 1
    retry = (("action", "RegisterTargets"), ("code", "RequestLimitExceeded"))
    assert got[("directlb_cloud_api_retries_total", retry)] == 1
    assert got[("directlb_cloud_task_wait_seconds_sum", ok)] == pytest.approx(5.2)
    assert got[("directlb_cloud_api_call_duration_seconds_count", (ok[0],))] == 3


async def test_reconcile_outcomes_and_errors() -> None:
    metrics = Metrics()

    async def reconcile(key: str) -> float | None:
        if key == "bad":
            raise RuntimeError("boom")
        return 5.0 if key == "later" else None

    timed = metrics.timed_reconcile("service", reconcile)
    assert await timed("ok") is None
    assert await timed("later") == 5.0
    with pytest.raises(RuntimeError):
        await timed("bad")
    got = samples(metrics)
    for outcome in ("success", "requeue", "error"):
        labels = (("controller", "service"), ("result", outcome))
        assert got[("directlb_reconcile_duration_seconds_count", labels)] == 1
    assert got[("directlb_reconcile_errors_total", (("controller", "service"),))] == 1


async def test_queue_depth_and_counters_are_read_at_scrape_time() -> None:
    metrics = Metrics()
    queue: WorkQueue[str] = WorkQueue(name="service")
    metrics.watch_queue(queue)
    queue.add("a")
    queue.add("b")
    queue.add("a")
    labels = (("name", "service"),)
    got = samples(metrics)
    assert got[("directlb_workqueue_depth", labels)] == 2
    assert got[("directlb_workqueue_adds_total", labels)] == 2
    queue.done(await queue.get())
    assert samples(metrics)[("directlb_workqueue_depth", labels)] == 1


async def test_health_endpoints() -> None:
    metrics = Metrics()
    synced = False
    async with TestClient(TestServer(health_app(metrics, ready=lambda: synced))) as client:
        assert (await client.get("/healthz")).status == 200
        assert (await client.get("/readyz")).status == 503
        synced = True
        assert (await client.get("/readyz")).status == 200
        response = await client.get("/metrics")
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert "directlb_leader" in await response.text()
