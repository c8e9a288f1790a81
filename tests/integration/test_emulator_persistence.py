"""The emulator as a real process: state survives ``kill -9``, tasks in flight end on restart.

Each test runs ``python -m directlb clb-emulator --state FILE.sqlite`` as a subprocess on a
free port (``--listen 127.0.0.1:0``; the port is read from the "listening" line), drives it
with the official async SDK, kills it with SIGKILL, and starts it again on the same file.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from tencentcloud.clb.v20180317 import clb_client_async
from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException

from tests import support

REPO = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 30.0  # wall seconds for the process to print its "listening" line
LISTENING = re.compile(r"CLB emulator listening on http://(\S+)")
FAST = 0.01  # time scale: a task takes 50 ms of wall time
SEED = "7"


@dataclass
class EmulatorProcess:
    """A running ``directlb clb-emulator`` subprocess; ``endpoint`` is what the SDK needs."""

    proc: asyncio.subprocess.Process
    endpoint: str

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}"

    async def kill_9(self) -> None:
        """SIGKILL: no shutdown code runs, exactly like a crash."""
        self.proc.send_signal(signal.SIGKILL)
        code = await asyncio.wait_for(self.proc.wait(), timeout=STARTUP_TIMEOUT)
        assert code == -signal.SIGKILL


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    return env


def _command(args: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "directlb", "clb-emulator", *args]


@asynccontextmanager
async def emulator_process(
    state: Path, *, time_scale: float, extra: Sequence[str] = ()
) -> AsyncIterator[EmulatorProcess]:
    """Start the emulator on ``state``; always kill it on the way out."""
    log = state.with_name(f"{state.stem}.{os.urandom(3).hex()}.log")
    args = [
        "--listen",
        "127.0.0.1:0",
        "--secret-id",
        support.SECRET_ID,
        "--secret-key",
        support.SECRET_KEY,
        "--state",
        str(state),
        "--time-scale",
        str(time_scale),
        "--seed",
        SEED,
        "--rate-limit",
        "0",
        *extra,
    ]
    with log.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            *_command(args),
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            cwd=REPO,
            env=_env(),
        )
    try:
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), timeout=STARTUP_TIMEOUT)
        except TimeoutError:
            raise AssertionError(
                f"no 'listening' line within {STARTUP_TIMEOUT}s; log:\n{log.read_text()}"
            ) from None
        match = LISTENING.search(line.decode())
        assert match, f"unexpected first line {line!r}; log:\n{log.read_text()}"
        yield EmulatorProcess(proc=proc, endpoint=match[1])
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@asynccontextmanager
async def sdk(process: EmulatorProcess) -> AsyncIterator[clb_client_async.ClbClient]:
    client = clb_client_async.ClbClient(
        credential.Credential(support.SECRET_ID, support.SECRET_KEY),
        support.REGION,
        support.profile(process.endpoint),
    )
    try:
        yield client
    finally:
        await client.close()


def _without_request_id(answer: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in answer.items() if k != "RequestId"}


async def snapshot(clb: clb_client_async.ClbClient, lb_ids: list[str]) -> dict[str, Any]:
    """What Describe* says about these CLBs: must be identical across a restart."""
    lbs = await support.api(clb, "DescribeLoadBalancers", LoadBalancerIds=lb_ids)
    view: dict[str, Any] = {"lbs": _without_request_id(lbs)}
    for lb_id in lb_ids:
        listeners = await support.api(clb, "DescribeListeners", LoadBalancerId=lb_id)
        targets = await support.api(clb, "DescribeTargets", LoadBalancerId=lb_id)
        view[lb_id] = {
            "listeners": _without_request_id(listeners),
            "targets": _without_request_id(targets),
        }
    return view


def _ids_in(view: Any) -> set[str]:
    """Every resource id (lb-, lbl-, loc-) that occurs anywhere in a snapshot."""
    found: set[str] = set()
    if isinstance(view, dict):
        for key, value in view.items():
            found |= _ids_in(key) | _ids_in(value)
    elif isinstance(view, list):
        for value in view:
            found |= _ids_in(value)
    elif isinstance(view, str) and re.fullmatch(r"(lb|lbl|loc)-[a-z0-9]{8}", view):
        found.add(view)
    return found


async def test_acknowledged_state_survives_kill_9(tmp_path: Path) -> None:
    state = tmp_path / "clb.sqlite"
    async with emulator_process(state, time_scale=FAST) as first, sdk(first) as clb:
        # The very first call, and a CLB that is gone before the crash: with the same --seed
        # a restarted emulator replays the same random sequence, so its first CreateLoadBalancer
        # below is exactly where an id could be handed out twice.
        gone_lb = await support.create_lb(clb, LoadBalancerName="deleted-before-crash")
        await support.done(clb, "DeleteLoadBalancer", LoadBalancerIds=[gone_lb])
        lb_id = await support.create_lb(
            clb,
            LoadBalancerName="persisted",
            Tags=[{"TagKey": "directlb.io/owner", "TagValue": "persistence-test"}],
        )
        tcp_a = await support.create_listener(
            clb, lb_id, port=80, HealthCheck={"IntervalTime": 10, "HealthNum": 4}
        )
        tcp_b = await support.create_listener(clb, lb_id, port=81, SessionExpireTime=60)
        doomed = await support.create_listener(clb, lb_id, port=82)
        http = await support.create_listener(clb, lb_id, port=8080, protocol="HTTP")
        rules = await support.done(
            clb,
            "CreateRule",
            LoadBalancerId=lb_id,
            ListenerId=http,
            Rules=[
                {"Domain": "www.example.com", "Url": "/"},
                {"Domain": "www.example.com", "Url": "/api", "HealthCheck": {"HttpCode": 2}},
            ],
        )
        root, api_rule = rules["LocationIds"]
        await support.done(
            clb,
            "RegisterTargets",
            LoadBalancerId=lb_id,
            ListenerId=tcp_a,
            Targets=[
                {"EniIp": "127.17.1.1", "Port": 8080},
                {"EniIp": "127.17.1.2", "Port": 8080, "Weight": 30},
            ],
        )
        await support.done(
            clb,
            "RegisterTargets",
            LoadBalancerId=lb_id,
            ListenerId=tcp_b,
            Targets=[{"EniIp": "127.17.1.3", "Port": 9000}],
        )
        for location_id, ip in ((root, "127.17.2.1"), (api_rule, "127.17.2.2")):
            await support.done(
                clb,
                "RegisterTargets",
                LoadBalancerId=lb_id,
                ListenerId=http,
                LocationId=location_id,
                Targets=[{"EniIp": ip, "Port": 8000}, {"EniIp": "127.17.2.9", "Port": 8000}],
            )
        # Changes to records made earlier: they must keep their place in every listing.
        await support.done(
            clb, "ModifyListener", LoadBalancerId=lb_id, ListenerId=tcp_a, ListenerName="renamed"
        )
        await support.done(
            clb,
            "ModifyRule",
            LoadBalancerId=lb_id,
            ListenerId=http,
            LocationId=root,
            HealthCheck={"HttpCheckPath": "/healthz"},
        )
        await support.done(
            clb,
            "ModifyTargetWeight",
            LoadBalancerId=lb_id,
            ListenerId=tcp_a,
            Targets=[{"EniIp": "127.17.1.1", "Port": 8080}],
            Weight=55,
        )
        await support.done(clb, "DeleteListener", LoadBalancerId=lb_id, ListenerId=doomed)
        create_task = await support.api(clb, "DescribeTaskStatus", TaskId=rules["RequestId"])
        assert create_task["Status"] == 0

        before = await snapshot(clb, [lb_id])
        await first.kill_9()

    # Sanity of what was captured, so that "identical" below means something.
    [lb_before] = before["lbs"]["LoadBalancerSet"]
    assert (lb_before["LoadBalancerName"], lb_before["Status"], lb_before["TargetCount"]) == (
        "persisted",
        1,
        7,
    )
    listed = [(x["ListenerId"], x["ListenerName"]) for x in before[lb_id]["listeners"]["Listeners"]]
    assert listed == [(tcp_a, "renamed"), (tcp_b, ""), (http, "")]
    [listener_a] = [x for x in before[lb_id]["targets"]["Listeners"] if x["ListenerId"] == tcp_a]
    assert [(t["PrivateIpAddresses"], t["Weight"]) for t in listener_a["Targets"]] == [
        (["127.17.1.1"], 55),
        (["127.17.1.2"], 30),
    ]

    async with emulator_process(state, time_scale=FAST) as second, sdk(second) as clb:
        # New resources after the restart get ids never handed out before the crash, even
        # with the same --seed and although some of the old ones were deleted.
        new_lb = await support.create_lb(clb)
        new_listener = await support.create_listener(clb, new_lb, port=80)

        after = await snapshot(clb, [lb_id])
        assert after == before
        # The task ledger survived too, and the deleted resources stayed deleted.
        create_task = await support.api(clb, "DescribeTaskStatus", TaskId=rules["RequestId"])
        assert create_task["Status"] == 0
        with pytest.raises(TencentCloudSDKException) as gone:
            await support.api(clb, "DescribeListeners", LoadBalancerId=gone_lb)
        assert gone.value.code == "InvalidParameter.LBIdNotFound"

        new_http = await support.create_listener(clb, lb_id, port=8081, protocol="HTTP")
        new_rules = await support.done(
            clb,
            "CreateRule",
            LoadBalancerId=lb_id,
            ListenerId=new_http,
            Rules=[{"Domain": "new.example.com", "Url": "/"}],
        )
        old_ids = _ids_in(before) | {doomed, gone_lb, lb_id}
        new_ids = {new_lb, new_listener, new_http, *new_rules["LocationIds"]}
        assert len(new_ids) == 4
        assert not new_ids & old_ids, new_ids & old_ids


async def test_task_in_flight_at_kill_is_finished_on_restart(tmp_path: Path) -> None:
    state = tmp_path / "clb.sqlite"
    async with emulator_process(state, time_scale=FAST) as setup, sdk(setup) as clb:
        lb_id = await support.create_lb(clb)
        listener_id = await support.create_listener(clb, lb_id, port=80)
        other_lb = await support.create_lb(clb)
        await setup.kill_9()

    # At time scale 1 a task takes ~5 s of wall time: kill the process while it runs. Every
    # CreateListener task fails (an injected fault), to show a failing task ends failed too.
    targets = [{"EniIp": f"127.17.3.{i}", "Port": 8080, "Weight": 10 + i} for i in range(1, 4)]
    slow = emulator_process(state, time_scale=1.0, extra=["--fault", "CreateListener:taskfail=1"])
    async with slow as crashing, sdk(crashing) as clb:
        registered = await support.api(
            clb, "RegisterTargets", LoadBalancerId=lb_id, ListenerId=listener_id, Targets=targets
        )
        failing = await support.api(
            clb, "CreateListener", LoadBalancerId=other_lb, Ports=[443], Protocol="TCP"
        )
        task_id, failing_id = registered["RequestId"], failing["RequestId"]
        running = await support.api(clb, "DescribeTaskStatus", TaskId=task_id)
        assert running["Status"] == 2  # really in flight at the kill
        await crashing.kill_9()

    async with emulator_process(state, time_scale=FAST) as second, sdk(second) as clb:
        # No waiting: recovery happens before the emulator listens.
        finished = await support.api(clb, "DescribeTaskStatus", TaskId=task_id)
        assert (finished["Status"], finished["Message"]) == (0, "")
        described = await support.api(
            clb, "DescribeTargets", LoadBalancerId=lb_id, ListenerIds=[listener_id]
        )
        [listener] = described["Listeners"]
        bound = sorted(
            (t["PrivateIpAddresses"][0], t["Port"], t["Weight"]) for t in listener["Targets"]
        )
        assert bound == [(t["EniIp"], t["Port"], t["Weight"]) for t in targets]

        failed = await support.api(clb, "DescribeTaskStatus", TaskId=failing_id)
        assert failed["Status"] == 1
        assert "CreateListener" in failed["Message"]
        listeners = await support.api(clb, "DescribeListeners", LoadBalancerId=other_lb)
        assert listeners["Listeners"] == []

        # Neither CLB is still held by its dead task: the next mutation is accepted.
        await support.done(
            clb,
            "DeregisterTargets",
            LoadBalancerId=lb_id,
            ListenerId=listener_id,
            Targets=[{"EniIp": "127.17.3.1", "Port": 8080}],
        )
        await support.create_listener(clb, other_lb, port=443)


async def test_registered_instances_survive_restart(tmp_path: Path) -> None:
    state = tmp_path / "clb.sqlite"
    instances = {"Instances": [{"InstanceId": "ins-node1", "PrivateIpAddress": "127.20.0.21"}]}
    async with emulator_process(state, time_scale=FAST) as first, aiohttp.ClientSession() as http:
        async with http.post(f"{first.url}/_emulator/instances", json=instances) as answer:
            assert answer.status == 200
            assert (await answer.json())["Instances"] == instances["Instances"]
        await first.kill_9()

    async with (
        emulator_process(state, time_scale=FAST) as second,
        sdk(second) as clb,
        aiohttp.ClientSession() as http,
    ):
        async with http.get(f"{second.url}/_emulator/instances") as answer:
            assert answer.status == 200
            assert (await answer.json())["Instances"] == instances["Instances"]
        lb_id = await support.create_lb(clb)
        listener_id = await support.create_listener(clb, lb_id, port=80)
        await support.done(
            clb,
            "RegisterTargets",
            LoadBalancerId=lb_id,
            ListenerId=listener_id,
            Targets=[{"InstanceId": "ins-node1", "Port": 30080}],
        )
        described = await support.api(clb, "DescribeTargets", LoadBalancerId=lb_id)
        [listener] = described["Listeners"]
        assert [
            (t["Type"], t["InstanceId"], t["PrivateIpAddresses"], t["Port"])
            for t in listener["Targets"]
        ] == [("CVM", "ins-node1", ["127.20.0.21"], 30080)]


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--fault", "nonsense"], "--fault"),
        (["--fault", "RegisterTargets=2"], "--fault"),
        (["--time-scale", "-1"], "--time-scale"),
        (["--vpc-cidr", "10.0.0.300/8"], "--vpc-cidr"),
        (["--quota", "NO_SUCH_QUOTA=3"], "NO_SUCH_QUOTA"),
        (["--listen", "nowhere"], "--listen"),
    ],
)
async def test_bad_argument_exits_non_zero_naming_the_setting(
    tmp_path: Path, args: list[str], named: str
) -> None:
    proc = await asyncio.create_subprocess_exec(
        *_command(
            [
                "--secret-id",
                support.SECRET_ID,
                "--secret-key",
                support.SECRET_KEY,
                "--state",
                str(tmp_path / "clb.sqlite"),
                "--listen",
                "127.0.0.1:0",
                *args,
            ]
        ),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=REPO,
        env=_env(),
    )
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=STARTUP_TIMEOUT)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode not in (0, None)
    assert b"listening" not in stdout
    assert named in stderr.decode(), stderr.decode()
