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

The prober shares the event loop with the API, which must stay prompt with thousands of targets
probed (a thousand probes a second for 5,000 targets at the default 5 s). So it follows the
store's changes (:meth:`Store.follow`) target by target or listener by listener, never by
rescanning every target; a TCP probe is a few loop callbacks (:class:`probes.ConnectProbe`), not
a task; and each turn of its loop does bounded work (:data:`SYNC_BUDGET`,
:data:`STARTS_PER_TURN`) before it yields.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import logging
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

from directlb.emulator import probes
from directlb.emulator.config import EmulatorConfig
from directlb.emulator.store import Change, Doc, Listener, Rule, Store, Target

log = logging.getLogger("directlb.emulator.health")

MIN_INTERVAL = 0.05  # wall seconds
MIN_TIMEOUT = 0.2  # wall seconds
MAX_CONCURRENT_PROBES = 256
#: Targets brought in line with the store per turn of the prober's loop: a restart on a large
#: state file, or a changed instance registry, must not hold the loop for long.
SYNC_BUDGET = 200
#: Probes started per turn: a thousand targets due at once are started between API requests.
STARTS_PER_TURN = 16
#: Check types probed as a TCP connect (``GRPC`` and ``CUSTOM`` are approximated by one).
CONNECT_CHECKS = ("TCP", "GRPC", "CUSTOM")

ProbeKey = tuple[str, str, str, int]  # listener id, location id ("" on layer 4), address, port


@dataclass
class ProbeSpec:
    ip: str
    port: int
    check: Doc
    domain: str
    family: int = 0  # the socket family of ``ip``, 0 when it is not an IP address


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


@dataclass
class _Stale:
    """What the store changed since the prober last looked (fed by :meth:`Store.follow`)."""

    everything: bool = True  # at start, every stored target is new to the prober
    lbs: set[str] = field(default_factory=set)
    listeners: dict[str, str] = field(default_factory=dict)  # listener id -> its CLB id
    #: Single targets put or deleted, by listener id: (the CLB id, their keys). A listener
    #: resynced as a whole drops its entry here.
    targets: dict[str, tuple[str, set[ProbeKey]]] = field(default_factory=dict)

    def add(self, change: Change) -> None:
        if not change.lb_id:
            self.everything = True
        elif not change.listener_id:
            self.lbs.add(change.lb_id)
        elif change.targets is None:
            self.listeners[change.listener_id] = change.lb_id
        else:
            _lb_id, keys = self.targets.setdefault(change.listener_id, (change.lb_id, set()))
            for address, port in change.targets:
                keys.add((change.listener_id, change.location_id, address, port))

    def __bool__(self) -> bool:
        return bool(self.everything or self.lbs or self.listeners or self.targets)


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
    """Keeps :attr:`states` in line with the store (:meth:`sync`) and probes them (:meth:`run`)."""

    def __init__(self, store: Store, config: EmulatorConfig) -> None:
        super().__init__(store, config)
        self._stale = _Stale()
        self._keys_of_listener: dict[str, set[ProbeKey]] = {}
        self._listeners_of_lb: dict[str, set[str]] = {}
        self._heap: list[tuple[float, ProbeKey]] = []
        self._inflight: set[ProbeKey] = set()
        self._connects: dict[ProbeKey, probes.ConnectProbe] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._nap: asyncio.Future[None] | None = None
        self._saturated = False  # probes are due but every slot is taken
        self._tls = ssl.create_default_context()
        self._tls.check_hostname = False
        self._tls.verify_mode = ssl.CERT_NONE
        store.follow(self._stale.add)

    def _interval(self, check: Doc) -> float:
        return max(self.config.wall(float(check.get("IntervalTime", 5))), MIN_INTERVAL)

    def _timeout(self, check: Doc) -> float:
        return max(self.config.wall(float(check.get("TimeOut", 2))), MIN_TIMEOUT)

    # ----- following the store ------------------------------------------------------------

    def sync(self, now: float, budget: int = SYNC_BUDGET) -> bool:
        """Bring what the store changed in line: a new target gets a state due at ``now`` (the
        loop's clock: probed at once), a gone one loses it, a kept one takes its current health
        check. Stops once ``budget`` targets were looked at; True if work is left."""
        self._expand_stale()
        stale = self._stale
        while stale.listeners and budget > 0:
            listener_id = next(iter(stale.listeners))  # oldest first
            lb_id = stale.listeners.pop(listener_id)
            stale.targets.pop(listener_id, None)  # covered
            budget -= self._resync_listener(lb_id, listener_id, now)
        while stale.targets and budget > 0:
            listener_id = next(iter(stale.targets))
            lb_id, keys = stale.targets.pop(listener_id)
            for key in keys:
                self._resync_target(lb_id, key, now)
            budget -= len(keys)
        return bool(stale)

    def _expand_stale(self) -> None:
        """Turn "everything" and whole CLBs into the listeners they hold, now or before."""
        stale = self._stale
        if stale.everything:
            stale.everything = False
            stale.lbs.update(self.store.lbs)
            stale.lbs.update(self._listeners_of_lb)
        for lb_id in stale.lbs:
            lb = self.store.lbs.get(lb_id)
            held = self._listeners_of_lb.get(lb_id, set())
            for listener_id in (*held, *(lb.listeners if lb else ())):
                stale.listeners[listener_id] = lb_id
        stale.lbs.clear()

    def _resync_listener(self, lb_id: str, listener_id: str, now: float) -> int:
        """Resync one listener (and its rules); return how many targets that looked at."""
        wanted = self._wanted_specs(lb_id, listener_id)
        gone = self._keys_of_listener.get(listener_id, set()) - wanted.keys()
        for key in gone:
            self._forget(lb_id, key)
        for key, spec in wanted.items():
            self._keep(lb_id, key, spec, now)
        return max(len(wanted) + len(gone), 1)

    def _resync_target(self, lb_id: str, key: ProbeKey, now: float) -> None:
        """Resync one target after it was put or deleted."""
        spec = self._wanted_spec(lb_id, key)
        if spec is not None:
            self._keep(lb_id, key, spec, now)
        elif key in self.states:
            self._forget(lb_id, key)

    def _wanted_specs(self, lb_id: str, listener_id: str) -> dict[ProbeKey, ProbeSpec]:
        """What the store says should be probed on one listener: target key -> probe."""
        lb = self.store.lbs.get(lb_id)
        listener = lb.listeners.get(listener_id) if lb else None
        if listener is None:
            return {}
        wanted: dict[ProbeKey, ProbeSpec] = {}
        scopes = [(None, listener.targets)] + [(r, r.targets) for r in listener.rules.values()]
        for rule, targets in scopes:
            check = rule.health_check if rule else listener.health_check
            if not _enabled(check):
                continue
            assert check is not None
            for target in targets.values():
                wanted[key_of(listener, rule, target)] = self._spec(check, rule, target)
        return wanted

    def _wanted_spec(self, lb_id: str, key: ProbeKey) -> ProbeSpec | None:
        """What the store says should be probed for one target key, if anything."""
        listener_id, location_id, address, port = key
        lb = self.store.lbs.get(lb_id)
        listener = lb.listeners.get(listener_id) if lb else None
        if listener is None:
            return None
        rule = listener.rules.get(location_id) if location_id else None
        if location_id and rule is None:
            return None
        target = (rule or listener).targets.get((address, port))
        check = rule.health_check if rule else listener.health_check
        if target is None or not _enabled(check):
            return None
        assert check is not None
        return self._spec(check, rule, target)

    def _spec(self, check: Doc, rule: Rule | None, target: Target) -> ProbeSpec:
        ip = self.ip_of(target)
        port = check.get("CheckPort") or target.port
        domain = check.get("HttpCheckDomain") or (rule.domain if rule else "")
        family = probes.address_family(ip)
        return ProbeSpec(ip=ip, port=int(port), check=check, domain=domain, family=family)

    def _keep(self, lb_id: str, key: ProbeKey, spec: ProbeSpec, now: float) -> None:
        """A target to probe: a new one gets a state due at once; a known one, the new spec."""
        state = self.states.get(key)
        if state is not None:
            state.spec = spec
            return
        state = self.states[key] = ProbeState(spec=spec, due=now)
        self._keys_of_listener.setdefault(key[0], set()).add(key)
        self._listeners_of_lb.setdefault(lb_id, set()).add(key[0])
        heapq.heappush(self._heap, (now, key))

    def _forget(self, lb_id: str, key: ProbeKey) -> None:
        """Drop a target's state; its heap entry goes stale and a probe in flight is ignored."""
        del self.states[key]
        listener_id = key[0]
        keys = self._keys_of_listener[listener_id]
        keys.discard(key)
        if keys:
            return
        del self._keys_of_listener[listener_id]
        listeners = self._listeners_of_lb[lb_id]
        listeners.discard(listener_id)
        if not listeners:
            del self._listeners_of_lb[lb_id]

    # ----- probing ------------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            more_to_sync = self.sync(loop.time())
            more_due = self._start_due(loop.time())
            if more_to_sync or more_due:
                await asyncio.sleep(0)  # let the API, and probes' I/O, have a turn
                continue
            wait = MIN_INTERVAL
            if self._heap:
                wait = min(wait, max(self._heap[0][0] - loop.time(), 0.0))
            await self._doze(wait)

    async def _doze(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if a probe ends while all probe slots were taken."""
        loop = asyncio.get_running_loop()
        self._nap = loop.create_future()
        timer = loop.call_later(seconds, self._wake)
        try:
            await self._nap
        finally:
            timer.cancel()
            self._nap = None

    def _wake(self) -> None:
        if self._nap is not None and not self._nap.done():
            self._nap.set_result(None)

    @property
    def _running(self) -> int:
        return len(self._connects) + len(self._tasks)

    def _start_due(self, now: float, limit: int = STARTS_PER_TURN) -> bool:
        """Start the probes that are due, at most ``limit`` and while fewer than
        :data:`MAX_CONCURRENT_PROBES` run; True if more are due and can start now."""
        while self._heap and self._heap[0][0] <= now:
            if limit <= 0:
                return True
            if self._running >= MAX_CONCURRENT_PROBES:
                self._saturated = True  # the next probe to end wakes the loop (_finished)
                return False
            due, key = heapq.heappop(self._heap)
            state = self.states.get(key)
            if state is None or state.due != due:
                continue  # a stale entry: the target is gone or was rescheduled
            if key in self._inflight:
                self._schedule(key, state, now + self._interval(state.spec.check))
                continue
            limit -= 1
            self._start(key, state)
        return False

    def _start(self, key: ProbeKey, state: ProbeState) -> None:
        self._inflight.add(key)
        spec = state.spec
        if spec.family and spec.check.get("CheckType", "TCP") in CONNECT_CHECKS:
            self._start_connect(key, state)
            return
        task = asyncio.create_task(self._probe_and_record(key, state))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _start_connect(self, key: ProbeKey, state: ProbeState) -> None:
        spec = state.spec
        probe = probes.ConnectProbe(
            address=(spec.ip, spec.port),
            family=spec.family,
            timeout=self._timeout(spec.check),
            # Not a closure over ``probe``: that would be a reference cycle per probe, and a
            # thousand a second make the collector stop the loop for tens of milliseconds.
            done=functools.partial(self._connect_done, key, state),
        )
        self._connects[key] = probe
        probe.start()

    def _connect_done(self, key: ProbeKey, state: ProbeState, ok: bool, error: str) -> None:
        del self._connects[key]
        self._finished(key, state, ok, error)

    def _schedule(self, key: ProbeKey, state: ProbeState, due: float) -> None:
        state.due = due
        heapq.heappush(self._heap, (due, key))

    async def _probe_and_record(self, key: ProbeKey, state: ProbeState) -> None:
        try:
            ok, error = await self._probe(state.spec)
        except asyncio.CancelledError:
            self._inflight.discard(key)
            raise
        # Free the slot now, not from the done callback: the loop may look before that runs.
        task = asyncio.current_task()
        if task is not None:
            self._tasks.discard(task)
        self._finished(key, state, ok, error)

    def _finished(self, key: ProbeKey, state: ProbeState, ok: bool, error: str) -> None:
        """A probe ended: count it in its target's streaks and schedule the next one."""
        self._inflight.discard(key)
        if self._saturated:
            self._saturated = False
            self._wake()  # a slot is free for the probes that were due meanwhile
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
        loop = asyncio.get_running_loop()
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
        """A probe that is not a connect to an IP address (those are ConnectProbes)."""
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
                    tls = self._tls if check_type == "HTTPS" else None
                    host = spec.domain or spec.ip
                    return await probes.http(
                        ip=spec.ip, port=spec.port, check=spec.check, host=host, tls=tls
                    )
                return await probes.connect(spec.ip, spec.port)
        except TimeoutError:
            return False, f"timed out after {timeout:.2f}s"
        except OSError as error:
            return False, str(error) or type(error).__name__

    async def close(self) -> None:
        for probe in list(self._connects.values()):
            probe.abort()
        self._connects.clear()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
