"""The demo's HTTP load: every request on a new TCP connection, from a chosen client address.

Why a new connection per request (``Connection: close``, no keep-alive): a CLB layer-4 listener
balances *connections*, not requests. Over a kept-alive connection every request goes to the
backend chosen when the connection opened, so a rolling update would be seen through a handful
of long-lived connections, and what the load balancer decides at each instant (which targets
are healthy, registered, weighted, sticky) would not be measured. One connection per request
sends each request through that decision, as many independent clients do.

Why each client has its own source address (``127.200.0.N``, the "Internet" of the demo): the
pod server echoes the address it saw (``clientIP``), so comparing it with the address the request
was sent from tells whether the source IP survived the path; and session persistence is per
client IP, so distinct clients are needed to see it.

The load runs in its own process (``python -m directlb.demo.load``) so that its timing is not
distorted by the event loop of the simulator, the emulator and the controller, and theirs not by
it. Protocol on stdout, one JSON object per line: ``{"progress": {...}}`` about every 0.5 s, then
``{"samples": [...]}`` once stdin is closed (or says ``stop``) and the requests in flight ended.
A sample is ``[start_s, latency_s, ok, status, error, pod, seen_ip, client_ip]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

CLIENT_NET = "127.200.0."  # the demo's clients: an address range no stand-in uses
REQUEST_TIMEOUT = 3.0  # seconds for one request: connect, send, read the whole answer
PROGRESS_EVERY = 0.5


def client_addresses(count: int) -> list[str]:
    return [f"{CLIENT_NET}{i}" for i in range(1, count + 1)]


@dataclass(frozen=True)
class Sample:
    """One request. ``start`` is seconds since the load began; ``latency`` from the scheduled
    start to the answer's last byte (so a generator falling behind shows as latency, not as
    missing requests). ``error`` is empty when ``ok``."""

    start: float
    latency: float
    ok: bool
    status: int
    error: str
    pod: str
    seen_ip: str
    client: str

    def row(self) -> list[object]:
        return [
            round(self.start, 4),
            round(self.latency, 5),
            self.ok,
            self.status,
            self.error,
            self.pod,
            self.seen_ip,
            self.client,
        ]

    @classmethod
    def from_row(cls, row: Sequence[object]) -> Sample:
        start, latency, ok, status, error, pod, seen, client = row
        return cls(
            start=float(str(start)),
            latency=float(str(latency)),
            ok=bool(ok),
            status=int(str(status)),
            error=str(error),
            pod=str(pod),
            seen_ip=str(seen),
            client=str(client),
        )


async def get(
    *, host: str, port: int, source: str, timeout: float = REQUEST_TIMEOUT
) -> tuple[int, str, dict[str, object]]:
    """One ``GET /`` on a new connection from ``source``: (status, error, JSON body).

    ``status`` 0 and a short ``error`` (``refused``, ``reset``, ``timeout``, ``closed``,
    ``bad-answer``) when no complete HTTP answer came back."""
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
            writer.write(
                f"GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: directlb-demo\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            await writer.drain()
            raw = await reader.read()
    except TimeoutError:
        return 0, "timeout", {}
    except ConnectionRefusedError:
        return 0, "refused", {}
    except ConnectionResetError:
        return 0, "reset", {}
    except OSError as error:
        return 0, f"oserror:{error.errno}", {}
    finally:
        if writer is not None:
            writer.close()
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        return 0, "closed" if not raw else "bad-answer", {}
    parts = head.split(b"\r\n", 1)[0].split(b" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        return 0, "bad-answer", {}
    status = int(parts[1])
    try:
        answer = json.loads(body) if body else {}
    except ValueError:
        answer = {}
    if not isinstance(answer, dict):
        answer = {}
    return status, "" if 200 <= status < 400 else f"http-{status}", answer


async def one(*, host: str, port: int, client: str, t0: float, scheduled: float) -> Sample:
    status, error, answer = await get(host=host, port=port, source=client)
    now = time.monotonic()
    return Sample(
        start=scheduled - t0,
        latency=now - scheduled,
        ok=not error,
        status=status,
        error=error,
        pod=str(answer.get("pod", "")),
        seen_ip=str(answer.get("clientIP", "")),
        client=client,
    )


async def steady(
    *,
    host: str,
    port: int,
    clients: Sequence[str],
    rate: float,
    stop: asyncio.Event,
    on_progress: Callable[[dict[str, int]], None] | None = None,
) -> list[Sample]:
    """Open-loop load: ``rate`` requests/s in all, clients taking turns, each request started at
    its scheduled time whatever the earlier ones are doing, until ``stop`` is set. Waits for the
    requests in flight (each bounded by :data:`REQUEST_TIMEOUT`)."""
    t0 = time.monotonic()
    interval = 1.0 / rate
    samples: list[Sample] = []
    in_flight: set[asyncio.Task[Sample]] = set()
    counts = {"sent": 0, "done": 0, "failed": 0}
    last_progress = t0

    def finished(task: asyncio.Task[Sample]) -> None:
        in_flight.discard(task)
        sample = task.result()
        samples.append(sample)
        counts["done"] += 1
        counts["failed"] += 0 if sample.ok else 1

    n = 0
    while not stop.is_set():
        scheduled = t0 + n * interval
        delay = scheduled - time.monotonic()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            if stop.is_set():
                break
        client = clients[n % len(clients)]
        task = asyncio.create_task(
            one(host=host, port=port, client=client, t0=t0, scheduled=scheduled)
        )
        in_flight.add(task)
        task.add_done_callback(finished)
        counts["sent"] += 1
        n += 1
        now = time.monotonic()
        if on_progress is not None and now - last_progress >= PROGRESS_EVERY:
            last_progress = now
            on_progress(dict(counts))
    if in_flight:
        await asyncio.wait(set(in_flight))
    if on_progress is not None:
        on_progress(dict(counts))
    return sorted(samples, key=lambda s: s.start)


async def sequential(
    *, host: str, port: int, clients: Sequence[str], requests_per_client: int
) -> list[Sample]:
    """Each client sends ``requests_per_client`` requests one after the other (the clients run
    side by side): what a session-persistence check needs."""
    t0 = time.monotonic()

    async def client_run(client: str) -> list[Sample]:
        out = []
        for _ in range(requests_per_client):
            out.append(
                await one(host=host, port=port, client=client, t0=t0, scheduled=time.monotonic())
            )
        return out

    runs = await asyncio.gather(*(client_run(c) for c in clients))
    return sorted((s for run in runs for s in run), key=lambda s: s.start)


# --- the load process ---------------------------------------------------------------------------


async def _serve(args: argparse.Namespace) -> None:
    # Ctrl-C reaches the whole process group: the parent stops us through stdin (or its exit
    # closes it), so the load ends with its samples written instead of a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def emit(obj: object) -> None:
        sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
        sys.stdout.flush()

    async def watch_stdin() -> None:
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while True:
            line = await reader.readline()
            if not line or line.strip() == b"stop":
                stop.set()
                return

    watcher = asyncio.create_task(watch_stdin())
    emit({"started": True})
    samples = await steady(
        host=args.host,
        port=args.port,
        clients=client_addresses(args.clients),
        rate=args.rate,
        stop=stop,
        on_progress=lambda counts: emit({"progress": counts}),
    )
    watcher.cancel()
    emit({"samples": [s.row() for s in samples]})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m directlb.demo.load")
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--clients", type=int, default=12)
    parser.add_argument("--rate", type=float, default=200.0)
    args = parser.parse_args(argv)
    asyncio.run(_serve(args))
    return 0


class LoadProcess:
    """The load generator in a child process: ``start``, read ``progress``, then ``stop``."""

    def __init__(self, *, host: str, port: int, clients: int, rate: float) -> None:
        self.argv = [
            sys.executable,
            "-m",
            "directlb.demo.load",
            "--host",
            host,
            "--port",
            str(port),
            "--clients",
            str(clients),
            "--rate",
            str(rate),
        ]
        self.progress: dict[str, int] = {"sent": 0, "done": 0, "failed": 0}
        self.samples: list[Sample] = []
        self.started_at = 0.0  # time.monotonic() in this process when the child said "started"
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._started = asyncio.Event()
        self._done = asyncio.Event()

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=64 * 1024 * 1024,  # the final samples line
        )
        self._reader = asyncio.create_task(self._read())
        async with asyncio.timeout(30):
            await self._started.wait()

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        async for line in self._proc.stdout:
            message = json.loads(line)
            if "started" in message:
                self.started_at = time.monotonic()
                self._started.set()
            elif "progress" in message:
                self.progress = message["progress"]
            elif "samples" in message:
                self.samples = [Sample.from_row(r) for r in message["samples"]]
                self._done.set()
        self._done.set()  # the child is gone, with or without its samples

    async def stop(self) -> list[Sample]:
        assert self._proc is not None and self._proc.stdin is not None
        with contextlib.suppress(ConnectionError):
            self._proc.stdin.write(b"stop\n")
            await self._proc.stdin.drain()
        self._proc.stdin.close()
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT + 30):
                await self._done.wait()
                await self._proc.wait()
        finally:
            if self._proc.returncode is None:
                self._proc.kill()
                await self._proc.wait()
            if self._reader is not None:
                self._reader.cancel()
        return self.samples


if __name__ == "__main__":
    sys.exit(main())
