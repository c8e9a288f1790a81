"""The event recorder's memory is bounded: per-object correlation state goes once it can no
longer matter, and the least recently used entries beyond MAX_ENTRIES go (client-go's event
correlator keeps LRU caches of 4096). The gate controller records Events on pods, so without
that the recorder grew with every pod ever created."""

from __future__ import annotations

from typing import Any

from lightkube.codecs import from_dict

from directlb.kube import events
from directlb.kube.events import WARNING, EventRecorder


class FakeClient:
    def __init__(self) -> None:
        self.created: list[Any] = []
        self.patched: list[tuple[str, dict[str, Any]]] = []

    async def create(self, event: Any) -> Any:
        self.created.append(event)
        return event

    async def patch(self, resource: Any, name: str, body: dict[str, Any], **kwargs: Any) -> Any:
        self.patched.append((name, body))
        return None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def pod(name: str) -> Any:
    return from_dict(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}"},
        }
    )


def recorder() -> tuple[EventRecorder, FakeClient, Clock]:
    client, clock = FakeClient(), Clock()
    return EventRecorder(client, clock=clock), client, clock  # type: ignore[arg-type]


def sizes(r: EventRecorder) -> tuple[int, int, int]:
    return len(r._seen), len(r._similar), len(r._buckets)


async def record(r: EventRecorder, obj: Any, message: str = "fails its health check") -> None:
    r.event(obj, type=WARNING, reason="HealthCheckFailed", message=message)
    await r.flush()


async def test_state_of_objects_not_heard_of_for_a_window_is_forgotten() -> None:
    r, client, clock = recorder()
    for i in range(50):  # pods come and go (a rollout)
        await record(r, pod(f"web-{i}"))
        clock.now += 1.0
    assert sizes(r) == (50, 50, 50)
    clock.now += events.CORRELATION_WINDOW + 1
    await record(r, pod("new"))
    # Correlation state older than the window is useless: gone. The token buckets stay until
    # they would be full again anyway (forgetting them sooner would reset a spammer's limit).
    assert sizes(r)[:2] == (1, 1) and sizes(r)[2] == 51
    clock.now += events.BUCKET_IDLE
    await record(r, pod("newer"))
    assert sizes(r) == (1, 1, 1)
    assert len(client.created) == 52


async def test_never_more_than_max_entries_whatever_the_churn(monkeypatch: Any) -> None:
    monkeypatch.setattr(events, "MAX_ENTRIES", 100)
    r, client, clock = recorder()
    for i in range(1000):  # all within one window
        await record(r, pod(f"web-{i}"))
        clock.now += 0.01
    assert sizes(r) == (100, 100, 100)
    # The most recent are kept: a repeat of one is still correlated into a count.
    await record(r, pod("web-999"))
    assert client.patched and client.patched[-1][1]["count"] == 2
    assert len(client.created) == 1000


async def test_correlation_and_the_spam_limit_still_hold_for_a_live_object() -> None:
    r, client, clock = recorder()
    noisy = pod("noisy")
    for _ in range(3):
        await record(r, noisy)
        clock.now += 1.0
    assert len(client.created) == 1 and [b["count"] for _, b in client.patched] == [2, 3]
    for i in range(events.SPAM_BURST * 2):
        await record(r, noisy, message=f"message {i}")
    assert r.dropped > 0  # the bucket was kept while in use: the limit still applies
    # Quiet for a window: its correlation is over, but its drained bucket is not full yet, so
    # it is kept and the object stays limited.
    clock.now += events.CORRELATION_WINDOW + 1
    r._prune(clock.now)
    assert sizes(r) == (0, 0, 1)
    dropped = r.dropped
    for i in range(5):
        await record(r, noisy, message=f"later {i}")
    assert r.dropped > dropped
