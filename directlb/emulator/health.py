"""Real health checks of every bound target, as a CLB runs them.

Each target is probed on its listener's (layer 4) or rule's (layer 7) HealthCheck: a TCP
connect, or an HTTP(S) request whose status class must be in ``HttpCode``, every
``IntervalTime`` seconds with a ``TimeOut``; ``HealthNum`` successes in a row make it Alive,
``UnHealthNum`` failures in a row make it Dead. A new target starts Unknown (not healthy). A
target whose health check is switched off is reported healthy (detail ``Close``). Intervals and
timeouts are cloud seconds, scaled by the time scale, with floors so a scale of 0 does not spin.

Each state keeps the wall-clock time (``time.time()``) of its last status change, so a benchmark
can tell when the emulator started reporting a target healthy (``GET /_emulator/target-health``,
:meth:`HealthProber.transitions`). Reading it changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

from directlb.emulator.config import EmulatorConfig
from directlb.emulator.store import Doc, Listener, Rule, Store, Target

log = logging.getLogger("directlb.emulator.health")

MIN_INTERVAL = 0.05  # wall seconds
MIN_TIMEOUT = 0.2  # wall seconds
MAX_CONCURRENT_PROBES = 256

ProbeKey = tuple[str, str, str, int]  # listener id, location id ("" on layer 4), address, port


@dataclass
class ProbeSpec:
    ip: str
    port: int
    check: Doc
    domain: str


@dataclass
class ProbeState:
    spec: ProbeSpec
    status: str = "Unknown"
    ok_streak: int = 0
    fail_streak: int = 0
    due: float = 0.0
    last_error: str = ""
    #: ``time.time()`` of the last status change (of the state's creation while Unknown).
    changed_at: float = field(default_factory=time.time)


def key_of(listener: Listener, rule: Rule | None, target: Target) -> ProbeKey:
    return (listener.listener_id, rule.location_id if rule else "", target.address, target.port)


def _enabled(check: Doc | None) -> bool:
    return bool(check) and bool(check.get("HealthSwitch", 1)) if check else False


class HealthView:
    """What the API reports about target health; the prober below keeps it current."""

    def __init__(self, store: Store, config: EmulatorConfig) -> None:
        self.store = store
        self.config = config
        self.states: dict[ProbeKey, ProbeState] = {}

    def ip_of(self, target: Target) -> str:
        if target.kind == "CVM":
            return self.config.instances.get(target.address, "")
        return target.address

    def detail(
        self, listener: Listener, rule: Rule | None, target: Target, check: Doc | None
    ) -> str:
        if not _enabled(check):
            return "Close"
        state = self.states.get(key_of(listener, rule, target))
        return state.status if state else "Unknown"


class HealthProber(HealthView):
    def __init__(self, store: Store, config: EmulatorConfig) -> None:
        super().__init__(store, config)
        self._seen_version = -1
        self._heap: list[tuple[float, ProbeKey]] = []
        self._inflight: set[ProbeKey] = set()
        self._probes: set[asyncio.Task[None]] = set()
        self._sem = asyncio.Semaphore(MAX_CONCURRENT_PROBES)
        self._tls = ssl.create_default_context()
        self._tls.check_hostname = False
        self._tls.verify_mode = ssl.CERT_NONE

    def _interval(self, check: Doc) -> float:
        return max(self.config.wall(float(check.get("IntervalTime", 5))), MIN_INTERVAL)

    def _timeout(self, check: Doc) -> float:
        return max(self.config.wall(float(check.get("TimeOut", 2))), MIN_TIMEOUT)

    def _sync(self) -> None:
        """Follow the store: new targets get a state (probed at once), gone ones lose it."""
        loop = asyncio.get_running_loop()
        current: dict[ProbeKey, ProbeSpec] = {}
        for _lb, listener, rule, target in self.store.all_targets():
            check = rule.health_check if rule else listener.health_check
            if not _enabled(check):
                continue
            assert check is not None
            port = check.get("CheckPort") or target.port
            domain = check.get("HttpCheckDomain") or (rule.domain if rule else "")
            spec = ProbeSpec(ip=self.ip_of(target), port=int(port), check=check, domain=domain)
            current[key_of(listener, rule, target)] = spec
        for key in list(self.states):
            if key not in current:
                del self.states[key]
        now = loop.time()
        for key, spec in current.items():
            state = self.states.get(key)
            if state is None:
                state = self.states[key] = ProbeState(spec=spec, due=now)
                heapq.heappush(self._heap, (now, key))
            else:
                state.spec = spec
        self._seen_version = self.store.version

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if self.store.version != self._seen_version:
                self._sync()
            now = loop.time()
            while self._heap and self._heap[0][0] <= now:
                due, key = heapq.heappop(self._heap)
                state = self.states.get(key)
                if state is None or state.due != due:
                    continue  # a stale entry: the target is gone or was rescheduled
                if key in self._inflight:
                    self._schedule(key, state, now + self._interval(state.spec.check))
                    continue
                self._inflight.add(key)
                task = asyncio.create_task(self._probe_and_record(key, state))
                self._probes.add(task)
                task.add_done_callback(self._probes.discard)
            wait = MIN_INTERVAL
            if self._heap:
                wait = min(wait, max(self._heap[0][0] - loop.time(), 0.0))
            await asyncio.sleep(wait)

    def _schedule(self, key: ProbeKey, state: ProbeState, due: float) -> None:
        state.due = due
        heapq.heappush(self._heap, (due, key))

    async def _probe_and_record(self, key: ProbeKey, state: ProbeState) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with self._sem:
                ok, error = await self._probe(state.spec)
        finally:
            self._inflight.discard(key)
        if self.states.get(key) is not state:
            return  # unbound while we probed
        check = state.spec.check
        if ok:
            state.ok_streak += 1
            state.fail_streak = 0
            if state.ok_streak >= int(check.get("HealthNum", 3)):
                self._set_status(state, "Alive")
        else:
            state.fail_streak += 1
            state.ok_streak = 0
            state.last_error = error
            if state.fail_streak >= int(check.get("UnHealthNum", 3)):
                self._set_status(state, "Dead")
        self._schedule(key, state, loop.time() + self._interval(check))

    @staticmethod
    def _set_status(state: ProbeState, status: str) -> None:
        if state.status != status:
            state.status = status
            state.changed_at = time.time()

    def transitions(self) -> list[dict[str, Any]]:
        """Every probed target (health check on): its status, the wall-clock time of its last
        status change (``time.time()``, seconds) and its probe interval in wall seconds."""
        out: list[dict[str, Any]] = []
        for lb, listener, rule, target in self.store.all_targets():
            state = self.states.get(key_of(listener, rule, target))
            if state is None:
                continue
            out.append(
                {
                    "loadBalancerId": lb.lb_id,
                    "listenerId": listener.listener_id,
                    "locationId": rule.location_id if rule else "",
                    "ip": state.spec.ip,
                    "port": target.port,
                    "status": state.status,
                    "since": state.changed_at,
                    "intervalSeconds": self._interval(state.spec.check),
                }
            )
        return out

    async def _probe(self, spec: ProbeSpec) -> tuple[bool, str]:
        check_type = spec.check.get("CheckType", "TCP")
        if not spec.ip:
            return False, "no address for the target"
        if check_type == "PING":
            # Every address of 127.0.0.0/8 answers ICMP echo on Linux; UDP ports cannot be
            # probed by a connect, which is why Tencent pings UDP targets by default.
            return spec.ip.startswith("127."), "unreachable"
        timeout = self._timeout(spec.check)
        try:
            async with asyncio.timeout(timeout):
                if check_type in ("HTTP", "HTTPS"):
                    return await self._http(spec, tls=check_type == "HTTPS")
                return await self._tcp(spec)
        except TimeoutError:
            return False, f"timed out after {timeout:.2f}s"
        except OSError as error:
            return False, str(error) or type(error).__name__

    async def _tcp(self, spec: ProbeSpec) -> tuple[bool, str]:
        _reader, writer = await asyncio.open_connection(spec.ip, spec.port)
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True, ""

    async def _http(self, spec: ProbeSpec, *, tls: bool) -> tuple[bool, str]:
        reader, writer = await asyncio.open_connection(
            spec.ip, spec.port, ssl=self._tls if tls else None
        )
        try:
            method = spec.check.get("HttpCheckMethod") or "HEAD"
            path = spec.check.get("HttpCheckPath") or "/"
            host = spec.domain or spec.ip
            request = (
                f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: clb-healthcheck\r\n"
                "Connection: close\r\n\r\n"
            )
            writer.write(request.encode())
            await writer.drain()
            status_line = await reader.readline()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        parts = status_line.decode(errors="replace").split()
        if len(parts) < 2 or not parts[1].isdigit():
            return False, f"not an HTTP answer: {status_line[:60]!r}"
        code = int(parts[1])
        mask = int(spec.check.get("HttpCode") or 31)
        bit = {1: 1, 2: 2, 3: 4, 4: 8, 5: 16}.get(code // 100, 0)
        if mask & bit:
            return True, ""
        return False, f"HTTP {code} is not in HttpCode {mask}"

    async def close(self) -> None:
        for task in list(self._probes):
            task.cancel()
        for task in list(self._probes):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
