"""The emulator's HTTP server: Tencent Cloud API 3.0 on ``POST /``, plus its own endpoints.

``POST /`` answers exactly as Tencent Cloud does: always HTTP 200 with ``Content-Type:
application/json``, ``{"Response": {..., "RequestId"}}`` or ``{"Response": {"Error": {"Code",
"Message"}, "RequestId"}}``. The endpoints under ``/_emulator/`` are the emulator's own: a
health check, the ledger of calls that benchmarks count, and the CVM instance registry.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Literal, NamedTuple, cast

from aiohttp import web

from directlb.emulator import auth
from directlb.emulator.actions import Actions, Call
from directlb.emulator.config import FAULT_KINDS, EmulatorConfig
from directlb.emulator.dataplane import DataPlane
from directlb.emulator.engine import Ids, TaskEngine
from directlb.emulator.errors import ApiError
from directlb.emulator.health import HealthProber
from directlb.emulator.params import Params
from directlb.emulator.store import Store

log = logging.getLogger("directlb.emulator")

API_VERSION = "2018-03-17"
SERVICE = "clb"
JSON = "application/json"
# The newest calls kept for /_emulator/ledger (a benchmark reads them as it goes).
LEDGER_SIZE = 200_000

#: When :attr:`Emulator.hook` is called: a request was admitted and is about to be applied
#: ("received"), or was applied and its answer is about to be sent ("applied").
HookPhase = Literal["received", "applied"]
#: ``await hook(phase, call)``; True drops the connection with no answer: at "received" the
#: request is never applied (as if the client died before sending it), at "applied" the work
#: is done and the answer lost. Crash tests use it to kill a client at an exact call.
CallHook = Callable[[HookPhase, "Call"], Awaitable[bool]]


class LedgerEntry(NamedTuple):
    """One call, as ``/_emulator/ledger`` reports it."""

    seq: int
    at: float
    action: str
    code: str
    request_id: str
    cloud_seconds: float
    task_cloud_seconds: float
    wall_seconds: float
    server_seconds: float
    load_balancer_ids: tuple[str, ...]
    fault: str


class Ledger:
    """The newest calls, oldest first (at most ``size``); read as :class:`LedgerEntry` values.

    Entries are stored as plain tuples of strings and numbers, which the garbage collector stops
    tracking after their first collection. As objects they would stay tracked, and up to 200,000
    of them would be traversed by every older-generation collection: tens of ms, during which
    the API does not answer.
    """

    def __init__(self, size: int) -> None:
        self._rows: collections.deque[tuple[Any, ...]] = collections.deque(maxlen=size)

    def append(self, entry: LedgerEntry) -> None:
        self._rows.append(tuple(entry))

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[LedgerEntry]:
        return map(LedgerEntry._make, self._rows)

    def __getitem__(self, index: int) -> LedgerEntry:
        return LedgerEntry._make(self._rows[index])

    def since(self, seq: int) -> list[LedgerEntry]:
        """The entries after sequence number ``seq``, oldest first. Read from the newest end:
        a benchmark polls for its last few calls, and a scan of the whole ledger would hold
        the loop for milliseconds."""
        newer: list[LedgerEntry] = []
        for row in reversed(self._rows):
            if row[0] <= seq:
                break
            newer.append(LedgerEntry._make(row))
        newer.reverse()
        return newer


class RateLimiter:
    """At most ``limit`` requests per action per cloud second (a sliding window)."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._seen: dict[str, collections.deque[float]] = {}

    def admit(self, action: str, now: float) -> bool:
        if self.limit <= 0:
            return True
        seen = self._seen.setdefault(action, collections.deque())
        while seen and now - seen[0] >= self.window:
            seen.popleft()
        if len(seen) >= self.limit:
            return False
        seen.append(now)
        return True


class FaultInjector:
    def __init__(self, config: EmulatorConfig) -> None:
        self.rules = config.faults
        self.rng = random.Random(config.seed)

    def pick(self, action: str) -> str | None:
        for rule in self.rules:
            if rule.action not in ("*", action):
                continue
            kinds = [rule.kind] if rule.kind else list(_kinds_for(action))
            if rule.kind and rule.kind not in _kinds_for(action):
                continue
            if self.rng.random() < rule.probability:
                return self.rng.choice(kinds)
        return None


def _kinds_for(action: str) -> tuple[str, ...]:
    kinds = ["internal", "throttle", "drop", "slow"]
    if action in Actions.MUTATING:
        kinds.append("busy")
    if action in Actions.ASYNC:
        kinds.append("taskfail")
    return tuple(k for k in FAULT_KINDS if k in kinds)


def _raise_injected(fault: str, action: str) -> None:
    """Answer an injected error fault (after ``fault`` is known, so the ledger records it)."""
    if fault == "internal":
        raise ApiError("InternalError", "injected fault: internal error")
    if fault == "throttle":
        raise ApiError("RequestLimitExceeded", f"injected fault: {action} throttled")
    if fault == "busy":
        raise ApiError(
            "FailedOperation.ResourceInOperating", "injected fault: resource in operation"
        )


class _Dropped(Exception):
    """The fault injector dropped this connection: no answer is sent."""


class Emulator:
    """The CLB emulator, in-process: ``await start()``, then point the SDK at ``endpoint``."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.store = Store(config.state_path)
        self._load_instances()
        self.engine = TaskEngine(self.store, config)
        recovered = self.engine.recover()
        if recovered:
            log.info("event=tasks_recovered count=%d", recovered)
        self.ids = Ids(self.store, config.seed)
        self.health = HealthProber(self.store, config)
        self.actions = Actions(
            store=self.store, engine=self.engine, ids=self.ids, config=config, health=self.health
        )
        self.rate = RateLimiter(config.rate_limit, config.time_scale or 1.0)
        self.faults = FaultInjector(config)
        self.ledger = Ledger(LEDGER_SIZE)
        self._seq = 0
        #: Optional test hook around every admitted request (see :data:`CallHook`).
        self.hook: CallHook | None = None
        self._runner: web.AppRunner | None = None
        self._prober: asyncio.Task[None] | None = None
        self.dataplane: DataPlane | None = None
        if config.data_plane:
            self.dataplane = DataPlane(store=self.store, health=self.health, config=config)
        self._dataplane_task: asyncio.Task[None] | None = None
        self.host = "127.0.0.1"
        self.port = 0

    # ----- lifecycle ----------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/", self._api)
        app.router.add_get("/_emulator/health", self._health)
        app.router.add_get("/_emulator/ledger", self._ledger)
        app.router.add_get("/_emulator/ledger/summary", self._ledger_summary)
        app.router.add_get("/_emulator/target-health", self._target_health)
        app.router.add_get("/_emulator/instances", self._instances_get)
        app.router.add_post("/_emulator/instances", self._instances_post)
        app.router.add_get("/_emulator/certificates", self._certificates_get)
        app.router.add_post("/_emulator/certificates", self._certificates_post)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        await site.start()
        server = cast(Any, site._server)
        self.host, self.port = server.sockets[0].getsockname()[:2]
        self._prober = asyncio.create_task(self.health.run(), name="health-prober")
        if self.dataplane is not None:
            self._dataplane_task = asyncio.create_task(self.dataplane.run(), name="data-plane")
        log.info(
            "event=listening endpoint=%s region=%s time_scale=%s",
            self.endpoint,
            self.config.region,
            self.config.time_scale,
        )

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    async def stop(self) -> None:
        if self._dataplane_task is not None:
            self._dataplane_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dataplane_task
            self._dataplane_task = None
        if self.dataplane is not None:
            await self.dataplane.close()
        if self._prober is not None:
            self._prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prober
            self._prober = None
        await self.health.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.engine.close()
        self.store.close()

    # ----- the API ------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        request_id = self.ids.request()
        action = request.headers.get("X-TC-Action", "")
        call = Call(request_id=request_id, action=action, cloud_seconds=self.config.latency.request)
        fault = ""
        body = await request.read()
        # Server time counts from a complete request to a ready answer: the emulator's own work.
        processing = time.perf_counter()
        try:
            fault = self._admit(request, action, body) or ""
            _raise_injected(fault, action)
            if fault == "drop" and self.faults.rng.random() < 0.5:
                raise _Dropped  # lost before the cloud saw it
            if fault == "taskfail":
                call.fail_task = True
            if self.hook is not None and await self.hook("received", call):
                raise _Dropped
            result = await self._dispatch(action, body, call)
            if self.hook is not None and await self.hook("applied", call):
                raise _Dropped
            response: dict[str, Any] = dict(result)
            response["RequestId"] = request_id
            code = "Success"
        except ApiError as error:
            response = {
                "Error": {"Code": error.code, "Message": error.message},
                "RequestId": request_id,
            }
            code = error.code
        except _Dropped:
            code = "Dropped"
        except Exception:  # an emulator bug must still answer like the cloud does
            log.exception("event=internal_error action=%s", action)
            response = {
                "Error": {"Code": "InternalError", "Message": "An internal error occurred."},
                "RequestId": request_id,
            }
            code = "InternalError"
        server_seconds = time.perf_counter() - processing
        # Answer no sooner than the latency model says; a synchronous batch has already held
        # its CLB for its modeled time inside the handler.
        remaining = self.config.wall(call.cloud_seconds) - (time.perf_counter() - started)
        if remaining > 0:
            await asyncio.sleep(remaining)
        if fault == "slow":
            await asyncio.sleep(self.config.slow_seconds)
        if fault == "drop" and code != "Dropped":
            code = "Dropped"  # the cloud did the work; the answer is lost
        self._record(call, code, started, server_seconds, fault)
        if code == "Dropped":
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError
        return web.Response(
            body=json.dumps({"Response": response}).encode(),
            headers={"Content-Type": JSON},
        )

    def _admit(self, request: web.Request, action: str, body: bytes) -> str | None:
        """Authenticate and route-check a request; return the fault to inject, if any."""
        headers = {k.lower(): v for k, v in request.headers.items()}
        auth.verify(
            secret_id=self.config.secret_id,
            secret_key=self.config.secret_key,
            method=request.method,
            path=request.path,
            query=request.query_string,
            headers=headers,
            payload=body,
        )
        if not action:
            raise ApiError("MissingParameter", "The X-TC-Action header is missing.")
        version = headers.get("x-tc-version", "")
        if version != API_VERSION:
            raise ApiError(
                "NoSuchVersion", f"Version {version!r} is not supported; CLB uses {API_VERSION}."
            )
        region = headers.get("x-tc-region", "")
        if region != self.config.region:
            raise ApiError(
                "InvalidParameter.RegionNotFound",
                f"Region {region!r} is not served here; this endpoint serves {self.config.region}.",
            )
        if action not in self.actions.handlers:
            raise ApiError(
                "InvalidAction", f"The action {action!r} does not exist or is not emulated."
            )
        content_type = headers.get("content-type", "").split(";")[0].strip()
        if content_type != JSON:
            raise ApiError(
                "InvalidParameter",
                f"Content-Type {content_type!r} is not supported here; POST application/json.",
            )
        if not self.rate.admit(action, time.monotonic()):
            raise ApiError(
                "RequestLimitExceeded",
                f"{action} is limited to {self.rate.limit} requests per second.",
            )
        return self.faults.pick(action)

    async def _dispatch(self, action: str, body: bytes, call: Call) -> dict[str, Any]:
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            raise ApiError("InvalidParameter.FormatError", "The body is not valid JSON.") from None
        handler = self.actions.handlers[action]
        result = handler(Params(data), call)
        if inspect.isawaitable(result):
            result = await result
        return cast(dict[str, Any], result)

    def _record(
        self, call: Call, code: str, started: float, server_seconds: float, fault: str
    ) -> None:
        self._seq += 1
        entry = LedgerEntry(
            seq=self._seq,
            at=time.time(),
            action=call.action,
            code=code,
            request_id=call.request_id,
            cloud_seconds=round(call.cloud_seconds, 6),
            task_cloud_seconds=round(call.task_cloud_seconds, 6),
            wall_seconds=round(time.perf_counter() - started, 6),
            server_seconds=round(server_seconds, 6),
            load_balancer_ids=tuple(call.lb_ids),
            fault=fault,
        )
        self.ledger.append(entry)

    # ----- the emulator's own endpoints ---------------------------------------------------

    async def _health(self, request: web.Request) -> web.Response:
        running = self.engine.running
        return web.json_response(
            {
                "status": "ok",
                "region": self.config.region,
                "timeScale": self.config.time_scale,
                "loadBalancers": len(self.store.lbs),
                "targets": self.store.target_count,
                "tasksRunning": running,
                "calls": self._seq,
            }
        )

    async def _ledger(self, request: web.Request) -> web.Response:
        try:
            since = int(request.query.get("since", "0"))
        except ValueError:
            raise web.HTTPBadRequest(text="since must be an integer") from None
        entries = [entry._asdict() for entry in self.ledger.since(since)]
        return web.json_response({"entries": entries, "last": self._seq})

    async def _target_health(self, request: web.Request) -> web.Response:
        """Read-only: every probed target's status and when it last changed (wall clock)."""
        return web.json_response({"now": time.time(), "targets": self.health.transitions()})

    async def _ledger_summary(self, request: web.Request) -> web.Response:
        try:
            since = int(request.query.get("since", "0"))
        except ValueError:
            raise web.HTTPBadRequest(text="since must be an integer") from None
        by_action: dict[str, dict[str, Any]] = {}
        for entry in self.ledger.since(since):
            row = by_action.setdefault(
                entry.action, {"calls": 0, "errors": {}, "cloud_seconds": 0.0}
            )
            row["calls"] += 1
            row["cloud_seconds"] = round(row["cloud_seconds"] + entry.cloud_seconds, 6)
            if entry.code != "Success":
                row["errors"][entry.code] = row["errors"].get(entry.code, 0) + 1
        return web.json_response({"actions": by_action, "last": self._seq})

    def _load_instances(self) -> None:
        stored = self.store.meta("instances")
        if stored:
            for instance_id, ip in json.loads(stored).items():
                self.config.instances.setdefault(instance_id, ip)
        certificates = self.store.meta("certificates")
        if certificates:
            for cert_id, cert_type in json.loads(certificates).items():
                self.config.certificates.setdefault(cert_id, cert_type)

    async def _certificates_get(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "Certificates": [
                    {"CertId": k, "CertType": v}
                    for k, v in sorted(self.config.certificates.items())
                ]
            }
        )

    async def _certificates_post(self, request: web.Request) -> web.Response:
        """Register SSL certificates of the account (``CertType`` SVR or CA). From the first
        one on, listeners and rules may name only registered certificates."""
        try:
            data = await request.json()
            pairs = {
                str(c["CertId"]): str(c.get("CertType") or "SVR") for c in data["Certificates"]
            }
            if any(t not in ("SVR", "CA") for t in pairs.values()):
                raise ValueError("CertType")
        except (ValueError, KeyError, TypeError):
            raise web.HTTPBadRequest(
                text='expected {"Certificates": [{"CertId": ..., "CertType": "SVR" or "CA"}]}'
            ) from None
        self.config.certificates.update(pairs)
        self.store.set_meta("certificates", json.dumps(self.config.certificates))
        return await self._certificates_get(request)

    async def _instances_get(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "Instances": [
                    {"InstanceId": k, "PrivateIpAddress": v}
                    for k, v in sorted(self.config.instances.items())
                ]
            }
        )

    async def _instances_post(self, request: web.Request) -> web.Response:
        """Register CVM instances (what a node is to the cloud) so targets may name them."""
        try:
            data = await request.json()
            items = data["Instances"]
            pairs = {str(i["InstanceId"]): str(i["PrivateIpAddress"]) for i in items}
        except (ValueError, KeyError, TypeError):
            raise web.HTTPBadRequest(
                text='expected {"Instances": [{"InstanceId": ..., "PrivateIpAddress": ...}]}'
            ) from None
        self.config.instances.update(pairs)
        self.store.set_meta("instances", json.dumps(self.config.instances))
        self.store.touch()  # health probes follow the new addresses
        return await self._instances_get(request)
