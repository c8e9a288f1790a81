"""``tccli``, the official Tencent Cloud CLI, against the emulator: a client nobody here wrote.

tccli sends ``Host: http://127.0.0.1:PORT`` (scheme included) and signs that value, which the
emulator must accept as the real cloud does. Each call runs with HOME set to the test's
temporary directory, so tccli neither reads nor writes the user's configuration.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from tencentcloud.clb.v20180317 import clb_client_async

from directlb.emulator.server import Emulator
from tests import support

TCCLI = shutil.which("tccli")
TCCLI_TIMEOUT = 60.0  # wall seconds; tccli takes a second or two to start

pytestmark = pytest.mark.skipif(
    TCCLI is None,
    reason="tccli (the official Tencent Cloud CLI, a dev dependency from PyPI) is not installed",
)


async def tccli(
    emulator: Emulator,
    home: Path,
    *args: str,
    secret_key: str = support.SECRET_KEY,
) -> tuple[int, str, str]:
    """Run ``tccli clb ARGS`` against the emulator; return (exit code, stdout, stderr)."""
    assert TCCLI is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENCENTCLOUD_")}
    env["HOME"] = str(home)
    proc = await asyncio.create_subprocess_exec(
        TCCLI,
        "clb",
        *args,
        "--endpoint",
        f"http://{emulator.endpoint}",
        "--region",
        support.REGION,
        "--secretId",
        support.SECRET_ID,
        "--secretKey",
        secret_key,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=home,
    )
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=TCCLI_TIMEOUT)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, stdout.decode(), stderr.decode()


async def tccli_json(emulator: Emulator, home: Path, *args: str) -> dict[str, Any]:
    code, out, err = await tccli(emulator, home, *args)
    assert code == 0, f"tccli {' '.join(args)} exited {code}: {out}{err}"
    answer = json.loads(out)
    assert isinstance(answer, dict), answer
    return answer


async def test_tccli_describes_and_creates(
    emulator: Emulator, clb: clb_client_async.ClbClient, tmp_path: Path
) -> None:
    wanted = await support.create_lb(
        clb,
        LoadBalancerName="seen-by-tccli",
        Tags=[{"TagKey": "directlb.io/owner", "TagValue": "tccli-test"}],
    )
    other = await support.create_lb(clb, LoadBalancerName="not-asked-for")

    everything = await tccli_json(emulator, tmp_path, "DescribeLoadBalancers")
    assert everything["TotalCount"] == 2
    listed = {lb["LoadBalancerId"]: lb for lb in everything["LoadBalancerSet"]}
    assert set(listed) == {wanted, other}
    assert listed[wanted]["LoadBalancerName"] == "seen-by-tccli"
    assert listed[wanted]["Status"] == 1
    assert listed[wanted]["Tags"] == [{"TagKey": "directlb.io/owner", "TagValue": "tccli-test"}]
    assert everything["RequestId"]

    # Request parameters arrive as tccli encodes them: a list of ids filters the answer.
    filtered = await tccli_json(
        emulator, tmp_path, "DescribeLoadBalancers", "--LoadBalancerIds", json.dumps([wanted])
    )
    assert [lb["LoadBalancerId"] for lb in filtered["LoadBalancerSet"]] == [wanted]

    # A mutation through tccli: an asynchronous task the SDK then watches to its end.
    created = await tccli_json(
        emulator,
        tmp_path,
        "CreateListener",
        "--LoadBalancerId",
        wanted,
        "--Ports",
        "[8080]",
        "--Protocol",
        "TCP",
        "--ListenerNames",
        '["from-tccli"]',
    )
    [listener_id] = created["ListenerIds"]
    status = await support.wait_task(clb, created["RequestId"])
    assert status["Status"] == 0, status
    described = await support.api(clb, "DescribeListeners", LoadBalancerId=wanted)
    assert [(x["ListenerId"], x["Port"], x["ListenerName"]) for x in described["Listeners"]] == [
        (listener_id, 8080, "from-tccli")
    ]


async def test_tccli_with_a_wrong_key_fails_signature_check(
    emulator: Emulator, clb: clb_client_async.ClbClient, tmp_path: Path
) -> None:
    lb_id = await support.create_lb(clb)
    code, out, err = await tccli(
        emulator, tmp_path, "DescribeLoadBalancers", secret_key="not-the-key"
    )
    assert code != 0
    assert "AuthFailure.SignatureFailure" in out + err
    assert lb_id not in out + err  # nothing was answered beyond the error
