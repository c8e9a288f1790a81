"""The health prober's bookkeeping and probes, without the API server.

The prober follows the store's changes (``Store.follow``) instead of rescanning every target
after each change. The property test below checks it against that full rescan, the way the
prober used to work: after any sequence of changes, at every point where it syncs, the same
targets have a state, with the same probe, and the same ones got a new state (a new state means
Unknown and probed at once, so the same targets are probed as before, as soon as before).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from directlb.emulator import health as health_module
from directlb.emulator.config import EmulatorConfig
from directlb.emulator.health import HealthProber, ProbeKey, ProbeState, key_of
from directlb.emulator.probes import ConnectProbe
from directlb.emulator.store import Change, Listener, LoadBalancer, Op, Rule, Store, Target, attrs
from tests import support

CREATED = "2024-01-01 00:00:00"
LBS = ("lb-a", "lb-b")
IPS = ("127.17.0.1", "127.17.0.2", "127.17.0.3")
INSTANCE = "ins-1"


def config(**overrides: Any) -> EmulatorConfig:
    values: dict[str, Any] = {"secret_id": "AKIDx", "secret_key": "key", "time_scale": 0.0}
    values.update(overrides)
    return EmulatorConfig(**values)


def lb_doc(lb_id: str, *, name: str = "web") -> dict[str, Any]:
    return attrs(
        LoadBalancer(
            lb_id=lb_id,
            name=name,
            lb_type="OPEN",
            forward=1,
            vpc_id="vpc-directlb",
            subnet_id="",
            vip="",
            tags=[],
            status=1,
            create_time=CREATED,
        )
    )


def check(*, switch: int = 1, interval: int = 5, port: int | None = None) -> dict[str, Any]:
    return {
        "HealthSwitch": switch,
        "IntervalTime": interval,
        "TimeOut": 2,
        "HealthNum": 3,
        "UnHealthNum": 3,
        "CheckPort": port,
        "CheckType": "TCP",
        "HttpCheckDomain": "",
    }


def l4_id(lb_id: str) -> str:
    return f"lbl-{lb_id}-4"


def l7_id(lb_id: str) -> str:
    return f"lbl-{lb_id}-7"


def rule_id(lb_id: str, n: int) -> str:
    return f"loc-{lb_id}-{n}"


def listener_doc(lb_id: str, *, layer7: bool, health: dict[str, Any] | None) -> dict[str, Any]:
    return attrs(
        Listener(
            listener_id=l7_id(lb_id) if layer7 else l4_id(lb_id),
            lb_id=lb_id,
            protocol="HTTP" if layer7 else "TCP",
            port=80 if layer7 else 81,
            name="",
            health_check=None if layer7 else health,
            certificate=None,
            scheduler="WRR",
            session_expire=0,
            sni_switch=0,
            create_time=CREATED,
        )
    )


def rule_doc(lb_id: str, n: int, health: dict[str, Any]) -> dict[str, Any]:
    return attrs(
        Rule(
            location_id=rule_id(lb_id, n),
            listener_id=l7_id(lb_id),
            lb_id=lb_id,
            domain=f"d{n}.example.com",
            url="/",
            health_check=health,
            session_expire=0,
            scheduler="WRR",
            forward_type="HTTP",
            certificate=None,
            default_server=n == 0,
            http2=False,
            create_time=CREATED,
        )
    )


def target_doc(address: str, *, port: int = 8080, weight: int = 10) -> dict[str, Any]:
    kind = "CVM" if address.startswith("ins-") else "ENI"
    return attrs(Target(kind=kind, address=address, port=port, weight=weight, registered=CREATED))


def full_rescan(prober: HealthProber) -> dict[ProbeKey, tuple[str, int, dict[str, Any], str]]:
    """What the prober used to compute after every change: every target with its check on."""
    wanted: dict[ProbeKey, tuple[str, int, dict[str, Any], str]] = {}
    for _lb, listener, rule, target in prober.store.all_targets():
        health = rule.health_check if rule else listener.health_check
        if not health or not health.get("HealthSwitch", 1):
            continue
        port = int(health.get("CheckPort") or target.port)
        domain = health.get("HttpCheckDomain") or (rule.domain if rule else "")
        wanted[key_of(listener, rule, target)] = (prober.ip_of(target), port, health, domain)
    return wanted


# ----- the property: incremental sync == full rescan ----------------------------------------

where = st.tuples(st.sampled_from(LBS), st.sampled_from(["", "0", "1"]))  # "": layer 4
addresses = st.lists(st.sampled_from((*IPS, INSTANCE)), min_size=1, max_size=3, unique=True)
commands = st.one_of(
    st.tuples(st.just("put_targets"), where, addresses, st.sampled_from([0, 10, 20])),
    st.tuples(st.just("del_targets"), where, addresses),
    st.tuples(
        st.just("put_listener"),
        st.sampled_from(LBS),
        st.sampled_from([0, 1]),
        st.sampled_from([5, 10]),
        st.sampled_from([None, 9000]),
    ),
    st.tuples(st.just("put_rule"), where, st.sampled_from([0, 1]), st.sampled_from([5, 10])),
    st.tuples(st.just("del_listener"), st.sampled_from(LBS), st.booleans()),
    st.tuples(st.just("del_rule"), where),
    st.tuples(st.just("put_lb"), st.sampled_from(LBS)),
    st.tuples(st.just("del_lb"), st.sampled_from(LBS)),
    st.tuples(st.just("move_instance"), st.sampled_from(["127.20.0.1", "127.20.0.2", ""])),
    st.tuples(st.just("sync"), st.sampled_from([1, 2, 1000])),
)


def parents(store: Store, lb_id: str, location: str) -> list[Op]:
    """Operations creating what a put on the CLB's listener (or rule ``location``) needs and
    is missing, so that most generated commands apply."""
    ops: list[Op] = []
    lb = store.lbs.get(lb_id)
    if lb is None:
        ops.append({"op": "put_lb", "lb": lb_doc(lb_id)})
    listeners = lb.listeners if lb else {}
    if l4_id(lb_id) not in listeners:
        listener = listener_doc(lb_id, layer7=False, health=check())
        ops.append({"op": "put_listener", "listener": listener})
    if l7_id(lb_id) not in listeners:
        ops.append(
            {"op": "put_listener", "listener": listener_doc(lb_id, layer7=True, health=None)}
        )
    layer7 = listeners.get(l7_id(lb_id))
    if location and (layer7 is None or rule_id(lb_id, int(location)) not in layer7.rules):
        ops.append({"op": "put_rule", "rule": rule_doc(lb_id, int(location), check())})
    return ops


def ops_for(store: Store, command: tuple[Any, ...]) -> list[Op] | None:
    """The store operations a command stands for; None when it does not apply right now."""
    kind = command[0]
    if kind == "put_lb":
        return [{"op": "put_lb", "lb": lb_doc(command[1], name=f"v{store.version}")}]
    if kind == "del_lb":
        return [{"op": "del_lb", "lb_id": command[1]}] if command[1] in store.lbs else None
    if kind == "put_listener":
        _, lb_id, switch, interval, port = command
        health = check(switch=switch, interval=interval, port=port)
        listener = listener_doc(lb_id, layer7=False, health=health)
        return [*parents(store, lb_id, ""), {"op": "put_listener", "listener": listener}]
    if kind == "del_listener":
        _, lb_id, layer7 = command
        listener_id = l7_id(lb_id) if layer7 else l4_id(lb_id)
        lb = store.lbs.get(lb_id)
        if lb is None or listener_id not in lb.listeners:
            return None
        return [{"op": "del_listener", "lb_id": lb_id, "listener_id": listener_id}]
    (lb_id, location), *rest = command[1:]
    listener_id = l7_id(lb_id) if location else l4_id(lb_id)
    location_id = rule_id(lb_id, int(location)) if location else ""
    scope = {"lb_id": lb_id, "listener_id": listener_id, "location_id": location_id}
    if kind == "put_rule":
        if not location_id:
            return None
        switch, interval = rest
        rule = rule_doc(lb_id, int(location), check(switch=switch, interval=interval))
        return [*parents(store, lb_id, location), {"op": "put_rule", "rule": rule}]
    if kind == "put_targets":
        targets = [target_doc(a, weight=rest[1]) for a in rest[0]]
        return [
            *parents(store, lb_id, location),
            {"op": "put_targets", **scope, "targets": targets},
        ]
    if parents(store, lb_id, location):
        return None  # nothing there to delete
    if kind == "del_rule":
        return [{"op": "del_rule", **scope}] if location_id else None
    return [{"op": "del_targets", **scope, "keys": [[a, 8080] for a in rest[0]]}]


class Reference:
    """The old prober's states, as far as a client can tell: which targets have one, since
    which sync point (a new state is Unknown and probed at once)."""

    def __init__(self) -> None:
        self.born: dict[ProbeKey, int] = {}

    def sync(self, prober: HealthProber, point: int) -> None:
        self.born = {key: self.born.get(key, point) for key in full_rescan(prober)}


def sync_fully(prober: HealthProber, *, now: float, budget: int) -> None:
    for _ in range(10_000):
        if not prober.sync(now, budget=budget):
            return
    raise AssertionError("the prober never finished syncing")


@settings(max_examples=300, deadline=None)
@given(st.lists(commands, min_size=5, max_size=40))
def test_incremental_sync_matches_a_full_rescan(steps: list[tuple[Any, ...]]) -> None:
    store = Store()
    emulator_config = config(instances={INSTANCE: "127.20.0.1"})
    prober = HealthProber(store, emulator_config)
    reference = Reference()
    born: dict[ProbeKey, int] = {}
    seen: dict[ProbeKey, ProbeState] = {}
    for point, command in enumerate([*steps, ("sync", 1000)]):
        if command[0] == "move_instance":
            emulator_config.instances[INSTANCE] = command[1]
            store.touch()
        elif command[0] != "sync":
            ops = ops_for(store, command)
            if ops is not None:
                store.apply(ops)
            continue
        now = float(point)
        sync_fully(prober, now=now, budget=command[1] if command[0] == "sync" else 1000)
        reference.sync(prober, point)
        born = {k: born[k] if seen.get(k) is s else point for k, s in prober.states.items()}
        seen = dict(prober.states)
        assert born == reference.born
        wanted = full_rescan(prober)
        for key, state in prober.states.items():
            spec = state.spec
            assert (spec.ip, spec.port, spec.check, spec.domain) == wanted[key]
            assert spec.check is wanted[key][2]  # the stored check itself, as before
            if born[key] == point:
                assert (state.status, state.due) == ("Unknown", now)
    store.close()


# ----- what a change does to one target -----------------------------------------------------


@pytest.fixture
def store() -> Iterator[Store]:
    store = Store()
    yield store
    store.close()


def one_listener(store: Store, *, health: dict[str, Any] | None = None) -> None:
    store.apply(
        [
            {"op": "put_lb", "lb": lb_doc("lb-a")},
            {
                "op": "put_listener",
                "listener": listener_doc("lb-a", layer7=False, health=health or check()),
            },
        ]
    )


def put(store: Store, *addresses: str, weight: int = 10, lb_id: str = "lb-a") -> None:
    store.apply(
        [
            {
                "op": "put_targets",
                "lb_id": lb_id,
                "listener_id": l4_id(lb_id),
                "location_id": "",
                "targets": [target_doc(a, weight=weight) for a in addresses],
            }
        ]
    )


def key(address: str, lb_id: str = "lb-a") -> ProbeKey:
    return (l4_id(lb_id), "", address, 8080)


def test_a_new_target_is_due_at_once_and_unknown(store: Store) -> None:
    prober = HealthProber(store, config())
    one_listener(store)
    put(store, IPS[0])
    assert prober.sync(12.5) is False
    state = prober.states[key(IPS[0])]
    assert (state.status, state.due, state.spec.ip, state.spec.port) == (
        "Unknown",
        12.5,
        IPS[0],
        8080,
    )


def test_a_re_registered_target_keeps_its_state(store: Store) -> None:
    """A weight change re-puts the target: its streaks and status stay (as before)."""
    prober = HealthProber(store, config())
    one_listener(store)
    put(store, IPS[0])
    prober.sync(1.0)
    state = prober.states[key(IPS[0])]
    state.status, state.ok_streak = "Alive", 4
    put(store, IPS[0], weight=50)
    prober.sync(2.0)
    assert prober.states[key(IPS[0])] is state
    assert (state.status, state.ok_streak, state.due) == ("Alive", 4, 1.0)


def test_a_changed_health_check_applies_to_kept_states(store: Store) -> None:
    prober = HealthProber(store, config())
    one_listener(store)
    put(store, IPS[0])
    prober.sync(1.0)
    state = prober.states[key(IPS[0])]
    one_listener(store, health=check(interval=10, port=9000))
    prober.sync(2.0)
    assert prober.states[key(IPS[0])] is state
    assert (state.spec.port, state.spec.check["IntervalTime"]) == (9000, 10)


def test_switching_the_check_off_and_on_starts_over_unknown(store: Store) -> None:
    prober = HealthProber(store, config())
    one_listener(store)
    put(store, IPS[0])
    prober.sync(1.0)
    prober.states[key(IPS[0])].status = "Alive"
    one_listener(store, health=check(switch=0))
    prober.sync(2.0)
    assert prober.states == {}
    one_listener(store, health=check(switch=1))
    prober.sync(3.0)
    assert (prober.states[key(IPS[0])].status, prober.states[key(IPS[0])].due) == (
        "Unknown",
        3.0,
    )


def test_a_deleted_clb_leaves_no_state_behind(store: Store) -> None:
    prober = HealthProber(store, config())
    one_listener(store)
    put(store, *IPS)
    prober.sync(1.0)
    assert len(prober.states) == 3
    store.apply([{"op": "del_lb", "lb_id": "lb-a"}])
    prober.sync(2.0)
    assert prober.states == {}
    assert (prober._keys_of_listener, prober._listeners_of_lb) == ({}, {})


def test_a_look_at_everything_includes_clbs_already_gone(store: Store) -> None:
    """A CLB deleted, then the instance registry changed, before the prober looked."""
    prober = HealthProber(store, config())
    one_listener(store)
    put(store, *IPS)
    prober.sync(1.0)
    store.apply([{"op": "del_lb", "lb_id": "lb-a"}])
    store.touch()
    prober.sync(2.0)
    assert prober.states == {}


def test_a_target_of_a_changed_instance_is_probed_at_its_new_address(store: Store) -> None:
    emulator_config = config(instances={INSTANCE: "127.20.0.1"})
    prober = HealthProber(store, emulator_config)
    one_listener(store)
    put(store, INSTANCE)
    prober.sync(1.0)
    assert prober.states[key(INSTANCE)].spec.ip == "127.20.0.1"
    emulator_config.instances[INSTANCE] = "127.20.0.9"
    store.touch()
    prober.sync(2.0)
    assert prober.states[key(INSTANCE)].spec.ip == "127.20.0.9"


def test_a_result_for_an_unbound_target_is_dropped(store: Store) -> None:
    """A probe in flight when its target is deregistered neither revives nor reschedules it."""
    prober = HealthProber(store, config())
    one_listener(store)
    put(store, IPS[0])
    prober.sync(1.0)
    state = prober.states[key(IPS[0])]
    store.apply(
        [
            {
                "op": "del_targets",
                "lb_id": "lb-a",
                "listener_id": l4_id("lb-a"),
                "location_id": "",
                "keys": [[IPS[0], 8080]],
            }
        ]
    )
    prober.sync(2.0)
    heap = list(prober._heap)
    prober._finished(key(IPS[0]), state, True, "")
    assert prober.states == {}
    assert prober._heap == heap


def test_sync_work_per_turn_is_bounded(store: Store) -> None:
    prober = HealthProber(store, config())
    store.apply([{"op": "put_lb", "lb": lb_doc(f"lb-{n}")} for n in range(50)])
    for n in range(50):
        lb_id = f"lb-{n}"
        store.apply(
            [{"op": "put_listener", "listener": listener_doc(lb_id, layer7=False, health=check())}]
        )
        put(store, *[f"127.17.{n}.{i}" for i in range(1, 11)], lb_id=lb_id)
    turns = 1
    while prober.sync(1.0, budget=100):
        turns += 1
        assert len(prober.states) <= 100 * turns
    assert turns == 5
    assert set(prober.states) == set(full_rescan(prober))


# ----- the store's change feed ------------------------------------------------------------


def test_the_store_says_what_each_operation_changed(store: Store) -> None:
    changes: list[Change] = []
    store.follow(changes.append)
    one_listener(store)
    put(store, IPS[0], IPS[1])
    store.apply([{"op": "del_lb", "lb_id": "lb-a"}])
    store.touch()
    assert changes == [
        Change(lb_id="lb-a"),
        Change(lb_id="lb-a", listener_id=l4_id("lb-a")),
        Change(
            lb_id="lb-a",
            listener_id=l4_id("lb-a"),
            location_id="",
            targets=((IPS[0], 8080), (IPS[1], 8080)),
        ),
        Change(lb_id="lb-a"),
        Change(),
    ]


def test_the_store_keeps_count_of_bound_targets(store: Store) -> None:
    one_listener(store)
    store.apply(
        [
            {"op": "put_listener", "listener": listener_doc("lb-a", layer7=True, health=None)},
            {"op": "put_rule", "rule": rule_doc("lb-a", 0, check())},
            {
                "op": "put_targets",
                "lb_id": "lb-a",
                "listener_id": l7_id("lb-a"),
                "location_id": rule_id("lb-a", 0),
                "targets": [target_doc(IPS[0]), target_doc(IPS[1])],
            },
        ]
    )
    put(store, *IPS)
    put(store, IPS[0], weight=99)  # already bound: not counted twice
    assert store.target_count == 5 == sum(1 for _ in store.all_targets())
    store.apply(
        [
            {
                "op": "del_rule",
                "lb_id": "lb-a",
                "listener_id": l7_id("lb-a"),
                "location_id": rule_id("lb-a", 0),
            }
        ]
    )
    assert store.target_count == 3
    store.apply([{"op": "del_lb", "lb_id": "lb-a"}])
    assert store.target_count == 0


# ----- probes on real sockets ---------------------------------------------------------------


@contextmanager
def listening(*, accept: bool = True) -> Iterator[tuple[str, int]]:
    """A listening socket on 127.0.0.1. With ``accept=False`` its queue is full: a connect to
    it is never answered (Linux drops the SYN), so a probe times out."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0 if not accept else 64)
    address = server.getsockname()
    fillers: list[socket.socket] = []
    if not accept:
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(address)
            fillers.append(filler)
    try:
        yield address
    finally:
        for filler in fillers:
            filler.close()
        server.close()


async def connect_probe(address: tuple[str, int], *, timeout: float = 2.0) -> tuple[bool, str]:
    outcome: asyncio.Future[tuple[bool, str]] = asyncio.get_running_loop().create_future()
    ConnectProbe(
        address=address,
        family=socket.AF_INET,
        timeout=timeout,
        done=lambda ok, error: outcome.set_result((ok, error)),
    ).start()
    return await asyncio.wait_for(outcome, 10)


async def test_a_connect_probe_succeeds_on_a_listening_port() -> None:
    with listening() as address:
        assert await connect_probe(address) == (True, "")


async def test_a_refused_connect_fails_with_asyncios_wording() -> None:
    with listening() as address:
        pass  # closed: nothing listens there any more
    ok, error = await connect_probe(address)
    assert not ok
    assert error == f"[Errno 111] Connect call failed {address}"


async def test_an_unanswered_connect_times_out() -> None:
    with listening(accept=False) as address:
        await asyncio.sleep(0.05)  # let the fillers take the queue
        assert await connect_probe(address, timeout=0.2) == (False, "timed out after 0.20s")


@asynccontextmanager
async def running(prober: HealthProber) -> AsyncIterator[None]:
    task = asyncio.create_task(prober.run())
    try:
        yield
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await prober.close()


def status(prober: HealthProber, key: ProbeKey) -> str:
    state = prober.states.get(key)
    return state.status if state else "(none)"


async def test_targets_turn_alive_and_dead_as_their_probes_say(store: Store) -> None:
    """IntervalTime 5 at time scale 0.01 is the 50 ms floor: HealthNum 3 takes ~0.1 s."""
    with listening() as (_, down_port):
        pass  # closed: connects are refused
    with listening() as (ip, up):
        prober = HealthProber(store, config(time_scale=0.01))
        one_listener(store, health=check(port=None))
        store.apply(
            [
                {
                    "op": "put_targets",
                    "lb_id": "lb-a",
                    "listener_id": l4_id("lb-a"),
                    "location_id": "",
                    "targets": [target_doc(ip, port=up), target_doc(ip, port=down_port)],
                }
            ]
        )
        alive, dead = (l4_id("lb-a"), "", ip, up), (l4_id("lb-a"), "", ip, down_port)
        async with running(prober):
            await support.wait_until(
                lambda: (status(prober, alive), status(prober, dead)) == ("Alive", "Dead"),
                timeout=10,
            )
        assert prober.states[alive].ok_streak >= 3
        assert prober.states[dead].fail_streak >= 3


async def test_probes_start_a_few_per_turn_and_never_beyond_the_cap(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(health_module, "MAX_CONCURRENT_PROBES", 6)
    with listening(accept=False) as (_ip, port):
        await asyncio.sleep(0.05)  # let the fillers take the queue
        prober = HealthProber(store, config(time_scale=1.0))  # TimeOut 2 s: probes hang
        one_listener(store, health=check(port=port))  # every target is checked there
        put(store, *[f"127.0.0.{n}" for n in range(1, 11)])
        now = asyncio.get_running_loop().time()
        prober.sync(now)
        try:
            assert prober._start_due(now, limit=4) is True  # 4 started, more are due
            assert prober._running == 4
            assert prober._start_due(now, limit=4) is False  # the cap (6) is reached
            assert (prober._running, prober._saturated) == (6, True)
        finally:
            await prober.close()
