"""Crash safety of the Service controller (issue 7): killed at an exact call, restarted, it
converges, with no duplicate listener, no leaked CLB, no lost or stale target.

Each case runs a Service's life (create; then, for the points of that stage, scale 2 -> 3 -> 2,
change a port, or change the type to ClusterIP; delete) with one kill point armed (see
tests/e2e/crash_support.py): the controller dies at the ``nth`` call of a kind, counted from
the start of the stage, either before the call takes effect ("before": the request never
reached the server), after it took effect with its answer lost ("after"), or with the request
on the wire and applied only after the restarted controller made the same call ("late").
Cloud-side points are CLB API calls (emulator hook), Kubernetes-side points are the
controller's writes to the Service (finalizer, annotation, status, finalizer removal). The
test then starts a new controller, waits for the stage to converge and checks, through the
official SDK and the Kubernetes API:

* exactly one CLB for the Service, and no other CLB in the region (a CLB created by a run that
  died before its answer counts as leaked unless the new run found it by its tags);
* one listener per Service port (no duplicate);
* the bound targets exactly ``podIP:80`` of the current pods on each listener, each once;
* the load-balancer id annotation, ``status.loadBalancer.ingress`` and the finalizer;
* after deletion: no CLB left (an adopted CLB keeps only its foreign listener), and the
  Service gone (finalizer removed).

Every case also asserts that its kill point was reached, so a point that the controller's
code no longer passes through fails instead of testing nothing; a "slow_tasks" case asserts
that the restart came while the dead controller's CLB task was still running.

``test_controller_process_kill_9`` does the same with ``directlb controller`` as a child
process, killed with SIGKILL.

One stack (cluster, emulator, a 2-replica Deployment) serves the whole module; each case
uses its own Service name and leaves the region as it found it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from lightkube.core.exceptions import ApiError
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Pod, Service
from lightkube.types import PatchType
from tencentcloud.clb.v20180317 import models

from directlb.cloud.config import SyncStrategy
from tests import support
from tests.cluster_support import ENI
from tests.e2e.crash_support import (
    FINALIZER,
    SLOW_TASK_CLOUD_SECONDS,
    SLOW_TASK_RETRY_BASE,
    SLOW_TASK_RETRY_CAP,
    InProcessController,
    Killer,
    KillPoint,
    KubeWrite,
    ProcessController,
    When,
    crash_stack,
    install_cloud_hook,
    watch_kube_writes,
)
from tests.e2e.stack import (
    LB_ID_ANNOTATION,
    Stack,
    listeners,
    load_balancers,
    targets_by_listener,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

APP = "crash-web"
PORTS = (80, 8080)
PORTS_CHANGED = (80, 8081)
FOREIGN_PORT = 9000
TAG_SERVICE = "directlb.io/service"
LISTENERS_ANNOTATION = "directlb.io/listeners"
EXISTING_LB = "service.kubernetes.io/tke-existed-lbid"
DEADLINE = 30.0

DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": APP, "labels": {"app": APP}},
    "spec": {
        "replicas": 2,
        "selector": {"matchLabels": {"app": APP}},
        "template": {
            "metadata": {"annotations": dict(ENI), "labels": {"app": APP}},
            "spec": {
                "terminationGracePeriodSeconds": 0,
                "containers": [
                    {
                        "image": "nginx:1.7.9",
                        "name": "nginx",
                        "ports": [{"containerPort": 80, "protocol": "TCP"}],
                    }
                ],
            },
        },
    },
}


def service_ports(ports: tuple[int, ...]) -> list[dict[str, Any]]:
    return [
        {"name": f"p{port}", "port": port, "protocol": "TCP", "targetPort": 80} for port in ports
    ]


def service_manifest(name: str, *, adopt: str = "") -> dict[str, Any]:
    annotations = {"service.cloud.tencent.com/direct-access": "true"}
    if adopt:
        annotations[EXISTING_LB] = adopt
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {
            "type": "LoadBalancer",
            "selector": {"app": APP},
            "ports": service_ports(PORTS),
        },
    }


# --- the kill points ----------------------------------------------------------------------------


def cloud(stage: str, action: str, when: When, nth: int = 1, **extra: Any) -> KillPoint:
    """The ``nth`` call of the CLB API ``action``, counted from the start of ``stage``."""
    label = extra.pop("name", "") or f"{stage}-{action}-{when}" + (f"-{nth}" if nth > 1 else "")
    return KillPoint(label, stage, "cloud", action, nth, when, **extra)


def kube(stage: str, write: KubeWrite, when: When, nth: int = 1, **extra: Any) -> KillPoint:
    """The ``nth`` write of that kind to the Service, counted from the start of ``stage``."""
    label = extra.pop("name", "") or f"{stage}-{write}-{when}" + (f"-{nth}" if nth > 1 else "")
    return KillPoint(label, stage, "kube", write, nth, when, **extra)


OWNED_POINTS = [
    # creating: the finalizer comes before any cloud write
    kube("create", "finalizer", "before"),
    kube("create", "finalizer", "after"),
    # the CLB: not sent, created with its answer lost (found again by its tags), and while
    # its creation task runs
    cloud("create", "CreateLoadBalancer", "before"),
    cloud("create", "CreateLoadBalancer", "after", slow_tasks=True),
    cloud(
        "create",
        "CreateLoadBalancer",
        "after",
        delete_while_dead=True,
        name="create-CreateLoadBalancer-after-then-deleted-while-dead",
    ),
    cloud(
        "create", "DescribeTaskStatus", "before", slow_tasks=True, name="create-clb-task-running"
    ),
    # killed with CreateLoadBalancer on the wire; the cloud applies it after the restarted
    # controller, finding no CLB by its tags, created one: two CLBs carry the Service's tags
    cloud("create", "CreateLoadBalancer", "late", name="create-CreateLoadBalancer-delivered-late"),
    # the listeners (both ports in one call)
    cloud("create", "CreateListener", "before"),
    cloud("create", "CreateListener", "after", slow_tasks=True),
    cloud(
        "create",
        "DescribeTaskStatus",
        "before",
        following="CreateListener",
        slow_tasks=True,
        name="create-listener-task-running",
    ),
    # the targets
    cloud("create", "BatchRegisterTargets", "before"),
    cloud("create", "BatchRegisterTargets", "after"),
    # reporting
    kube("create", "annotation", "before"),
    kube("create", "annotation", "after"),
    kube("create", "status", "before"),
    kube("create", "status", "after"),
    # scale 2 -> 3 -> 2
    cloud("scale", "BatchRegisterTargets", "before"),
    cloud("scale", "BatchRegisterTargets", "after"),
    cloud("scale", "BatchDeregisterTargets", "before"),
    cloud("scale", "BatchDeregisterTargets", "after"),
    # mid-batch: the naive strategy registers listener by listener (one call each); killed
    # with the targets on one listener and not yet on the other
    cloud("create", "RegisterTargets", "after", strategy="naive", name="create-naive-mid-batch"),
    cloud("scale", "RegisterTargets", "before", 2, strategy="naive", name="scale-naive-mid-batch"),
    # a port change replaces one listener: killed with the old one deleted, the new not made
    cloud("ports", "DeleteLoadBalancerListeners", "after"),
    # changed away from LoadBalancer (type ClusterIP): the CLB goes, then the status, then
    # the finalizer and our annotations
    cloud("retype", "DeleteLoadBalancer", "after"),
    kube("retype", "status", "after"),
    kube("retype", "unfinalize", "before"),
    # deletion
    cloud("delete", "DeleteLoadBalancer", "before"),
    cloud("delete", "DeleteLoadBalancer", "after", slow_tasks=True),
    cloud(
        "delete", "DescribeTaskStatus", "before", slow_tasks=True, name="delete-clb-task-running"
    ),
    kube("delete", "unfinalize", "before"),
    kube("delete", "unfinalize", "after"),
]

ADOPTED_POINTS = [
    # the listeners we are about to create are recorded first: killed with the record made
    # and no listener yet, and the other way round (listener made, its answer lost)
    kube("create", "annotation", "before", name="adopted-listeners-record-before"),
    kube("create", "annotation", "after", name="adopted-listeners-recorded-not-created"),
    cloud("create", "CreateListener", "after", name="adopted-listener-created-answer-lost"),
    cloud(
        "create",
        "CreateListener",
        "after",
        delete_while_dead=True,
        name="adopted-listener-created-then-deleted-while-dead",
    ),
    cloud("create", "BatchRegisterTargets", "after", name="adopted-targets-answer-lost"),
    kube("create", "annotation", "after", 2, name="adopted-lb-id-recorded"),
    # a port change on the adopted CLB: the record grows first (old and new ports), then the
    # old listener goes, the new one comes, then the record shrinks
    kube("ports", "annotation", "after", name="adopted-ports-union-recorded"),
    cloud(
        "ports",
        "DeleteLoadBalancerListeners",
        "after",
        name="adopted-ports-old-listener-deleted",
    ),
    kube("ports", "annotation", "before", 2, name="adopted-ports-record-not-shrunk"),
    cloud("delete", "DeleteLoadBalancerListeners", "before", name="adopted-delete-before"),
    cloud(
        "delete",
        "DeleteLoadBalancerListeners",
        "after",
        slow_tasks=True,
        name="adopted-delete-answer-lost",
    ),
    kube("delete", "unfinalize", "after", name="adopted-unfinalize-answer-lost"),
]


# --- the shared stack ---------------------------------------------------------------------------


@dataclass
class Env:
    stack: Stack
    killer: Killer
    controller: InProcessController | ProcessController = field(init=False)
    foreign_lb: str = ""
    cases: int = 0
    replicas: int = 2
    tasks_at_restart: int = -1
    ports: tuple[int, ...] = PORTS


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    """One stack for the module: cluster, emulator (with the kill hooks), the Deployment."""
    tmp_path = tmp_path_factory.mktemp("crash")
    async with crash_stack(tmp_path) as stack:
        shared = Env(stack=stack, killer=Killer(kill=lambda: shared.controller.kill()))
        shared.controller = InProcessController(stack)
        install_cloud_hook(stack.emulator, shared.killer)
        watch_kube_writes(stack.server, shared.killer)
        await stack.client.create(Deployment.from_dict(DEPLOYMENT), namespace="default")
        await wait_replicas(stack, 2)
        yield shared


# --- reading what is there ----------------------------------------------------------------------


def is_ready(pod: Any) -> bool:
    conditions = (pod.status.conditions if pod.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


async def current_pods(stack: Stack, replicas: int) -> tuple[list[str], set[str]]:
    """(what keeps the Deployment's pods from being settled at ``replicas``, their IPs).
    Settled: exactly ``replicas`` pods, none terminating, each Ready (its readiness gate, set
    by the controller once its target is on the CLB and healthy, included)."""
    pods = [p async for p in stack.client.list(Pod, namespace="default", labels={"app": APP})]
    live = [p for p in pods if p.metadata.deletionTimestamp is None]
    ips = {p.status.podIP for p in live if p.status and p.status.podIP}
    ready = [p for p in live if is_ready(p)]
    if len(pods) == len(ready) == len(ips) == replicas:
        return [], ips
    return [f"pods {len(pods)}, live {len(live)}, ready {len(ready)}, want {replicas}"], ips


async def wait_replicas(stack: Stack, replicas: int) -> None:
    last: list[str] = []

    async def settled() -> bool:
        nonlocal last
        last, _ = await current_pods(stack, replicas)
        return not last

    try:
        await support.wait_until(settled, timeout=DEADLINE, interval=0.05)
    except TimeoutError:
        pytest.fail(f"{replicas} replicas not settled: {last}")


async def get_service(stack: Stack, name: str) -> Any | None:
    try:
        return await stack.client.get(Service, name, namespace="default")
    except ApiError as error:
        if error.status.code == 404:
            return None
        raise


async def foreign_listener_only(stack: Stack, lb_id: str) -> list[str]:
    found = await listeners(stack.emulator, lb_id)
    ports = sorted(int(x.Port) for x in found)
    return [] if ports == [FOREIGN_PORT] else [f"adopted CLB listeners {ports}"]


async def problems_present(env: Env, name: str, *, adopted: bool) -> list[str]:
    """What keeps the Service ``name`` from being converged (empty: converged)."""
    stack = env.stack
    problems: list[str] = []
    lbs = await load_balancers(stack.emulator)
    if adopted:
        ours = [lb for lb in lbs if lb.LoadBalancerId == env.foreign_lb]
    else:
        ours = [
            lb
            for lb in lbs
            if {t.TagKey: t.TagValue for t in lb.Tags or []}.get(TAG_SERVICE) == f"default/{name}"
        ]
    others = [
        lb.LoadBalancerId for lb in lbs if lb not in ours and lb.LoadBalancerId != env.foreign_lb
    ]
    if len(ours) != 1 or others:
        return [f"CLBs: ours {[lb.LoadBalancerId for lb in ours]}, others {others}"]
    [lb] = ours
    lb_id = lb.LoadBalancerId
    if lb.Status != 1:
        problems.append(f"{lb_id} status {lb.Status}")
    found = await listeners(stack.emulator, lb_id)
    ports = sorted(int(x.Port) for x in found)
    want_ports = sorted([*env.ports, FOREIGN_PORT] if adopted else env.ports)
    if ports != want_ports:
        problems.append(f"listener ports {ports}, want {want_ports}")
    unsettled, ips = await current_pods(stack, env.replicas)
    problems += unsettled
    bound = sorted(await targets_by_listener(stack.emulator, lb_id))
    want = sorted((port, ip, 80) for port in env.ports for ip in ips)
    if bound != want:
        problems.append(f"targets {bound}, want {want}")
    service = await get_service(stack, name)
    if service is None:
        return [*problems, "the Service is gone"]
    annotations = service.metadata.annotations or {}
    if annotations.get(LB_ID_ANNOTATION) != lb_id:
        problems.append(f"annotation {LB_ID_ANNOTATION}={annotations.get(LB_ID_ANNOTATION)}")
    if adopted:
        recorded = annotations.get(LISTENERS_ANNOTATION, "")
        # Our keys, with the CLB they are on.
        want_record = f"{lb_id}=" + ",".join(sorted(f"TCP:{port}" for port in env.ports))
        if recorded != want_record:
            problems.append(f"annotation {LISTENERS_ANNOTATION}={recorded!r}")
    ingress = service.status.loadBalancer.ingress if service.status else None
    if [i.ip for i in ingress or []] != list(lb.LoadBalancerVips):
        problems.append(f"status ingress {ingress}, VIPs {lb.LoadBalancerVips}")
    if FINALIZER not in (service.metadata.finalizers or []):
        problems.append("no finalizer")
    return problems


async def problems_deleted(env: Env, name: str, *, adopted: bool) -> list[str]:
    stack = env.stack
    problems: list[str] = []
    lbs = [lb.LoadBalancerId for lb in await load_balancers(stack.emulator)]
    want = [env.foreign_lb] if env.foreign_lb else []
    if sorted(lbs) != want:
        problems.append(f"CLBs left: {lbs}, want {want}")
    if adopted:
        problems += await foreign_listener_only(stack, env.foreign_lb)
    if await get_service(stack, name) is not None:
        problems.append("the Service is still there (finalizer not removed)")
    return problems


async def problems_released(env: Env, name: str) -> list[str]:
    """A Service no longer of type LoadBalancer: no CLB, nothing of ours left on it."""
    problems = [p for p in await problems_deleted(env, name, adopted=False) if "Service" not in p]
    service = await get_service(env.stack, name)
    if service is None:
        return [*problems, "the Service is gone"]
    annotations = service.metadata.annotations or {}
    left = sorted(k for k in annotations if k in (LB_ID_ANNOTATION, LISTENERS_ANNOTATION))
    if left:
        problems.append(f"annotations left: {left}")
    if FINALIZER in (service.metadata.finalizers or []):
        problems.append("finalizer left")
    ingress = service.status.loadBalancer.ingress if service.status else None
    if ingress:
        problems.append(f"status ingress left: {ingress}")
    return problems


# --- running a case -----------------------------------------------------------------------------


async def converge(env: Env, check: Callable[[], Awaitable[list[str]]], what: str) -> None:
    """Wait until ``check`` finds nothing wrong; restart the controller whenever it was
    killed (recording how many CLB tasks were still running then)."""
    stack = env.stack
    last: list[str] = []

    async def done() -> bool:
        nonlocal last
        controller = env.controller
        crash = controller.crashed()
        if crash is not None:
            raise AssertionError(f"the controller ended by itself: {crash!r}") from crash
        if env.killer.fired.is_set() and not controller.running:
            env.tasks_at_restart = stack.emulator.engine.running
            await controller.start()
        if not controller.running:
            return False
        last = await check()
        return not last

    try:
        await support.wait_until(done, timeout=DEADLINE, interval=0.05)
    except TimeoutError:
        pytest.fail(f"{what}: not converged: {last}; calls seen: {env.killer.seen}")


async def scale(env: Env, replicas: int) -> None:
    """Scale the Deployment; the next convergence waits for the pods (whose readiness gate
    may wait on the controller, so they are not waited for here)."""
    await env.stack.client.patch(
        Deployment, APP, {"spec": {"replicas": replicas}}, namespace="default"
    )
    env.replicas = replicas


async def run_life(env: Env, point: KillPoint | None, *, adopted: bool) -> None:
    stack = env.stack
    env.cases += 1
    name = f"crash-{env.cases}"
    killer = env.killer
    killer.arm(None)
    env.tasks_at_restart = -1
    env.ports = PORTS
    if isinstance(env.controller, InProcessController):
        env.controller.overrides = (
            {"sync_strategy": SyncStrategy(point.strategy)}
            if point is not None and point.strategy
            else {}
        )
    latency = stack.emulator.actions.latency
    timing = stack.timing
    if point is not None and point.slow_tasks:
        stack.emulator.actions.latency = replace(latency, task_base=SLOW_TASK_CLOUD_SECONDS)
        stack.timing = replace(
            timing, retry_base=SLOW_TASK_RETRY_BASE, retry_cap=SLOW_TASK_RETRY_CAP
        )

    def arm(stage: str) -> None:
        if point is not None and point.stage == stage:
            killer.arm(point)

    async def present() -> list[str]:
        return await problems_present(env, name, adopted=adopted)

    async def deleted() -> list[str]:
        return await problems_deleted(env, name, adopted=adopted)

    async def retyped() -> list[str]:
        return await problems_released(env, name)

    await env.controller.start()
    ok = False
    try:
        arm("create")
        manifest = service_manifest(name, adopt=env.foreign_lb if adopted else "")
        await stack.client.create(Service.from_dict(manifest), namespace="default")
        if point is not None and point.delete_while_dead:
            try:
                await asyncio.wait_for(killer.fired.wait(), DEADLINE)
            except TimeoutError:
                pytest.fail(f"kill point {point.name} never reached: {killer.seen}")
            await stack.client.delete(Service, name, namespace="default")
            await converge(env, deleted, "deleted while dead")
            ok = True
            return
        await converge(env, present, "create")
        if point is not None and point.stage == "scale":
            arm("scale")
            await scale(env, 3)
            await converge(env, present, "scale up")
            await scale(env, 2)
            await converge(env, present, "scale down")
        if point is not None and point.stage == "ports":
            arm("ports")
            env.ports = PORTS_CHANGED
            await stack.client.patch(
                Service,
                name,
                {"spec": {"ports": service_ports(PORTS_CHANGED)}},
                namespace="default",
                patch_type=PatchType.MERGE,
            )
            await converge(env, present, "port change")
        if point is not None and point.stage == "retype":
            arm("retype")
            await stack.client.patch(
                Service,
                name,
                {"spec": {"type": "ClusterIP", "ports": service_ports(env.ports)}},
                namespace="default",
                patch_type=PatchType.MERGE,
            )
            await converge(env, retyped, "changed to ClusterIP")
        arm("delete")
        await stack.client.delete(Service, name, namespace="default")
        await converge(env, deleted, "delete")
        ok = True
    finally:
        killer.disarm()
        stack.emulator.actions.latency = latency
        stack.timing = timing
        await env.controller.stop()
        if not ok:
            await reset(env, name)
    if point is not None:
        assert killer.fired.is_set(), f"kill point {point.name} never reached: {killer.seen}"
        if point.slow_tasks:
            # Otherwise the case would not test what it says: a restart during the task.
            assert env.tasks_at_restart > 0, "the task ended before the controller restarted"


async def reset(env: Env, name: str) -> None:
    """After a failed case: leave the region and the cluster as the next case expects."""
    stack = env.stack
    with contextlib.suppress(ApiError):
        await stack.client.patch(
            Service, name, {"metadata": {"finalizers": None}}, namespace="default"
        )
        await stack.client.delete(Service, name, namespace="default")
    clb = support.async_client(stack.emulator)
    try:
        for lb in await load_balancers(stack.emulator):
            request = models.DeleteLoadBalancerRequest()
            request.LoadBalancerIds = [lb.LoadBalancerId]
            with contextlib.suppress(Exception):
                await clb.DeleteLoadBalancer(request)
    finally:
        await clb.close()
    env.foreign_lb = ""  # a fresh one for the next adopted case

    async def empty() -> bool:
        return not await load_balancers(stack.emulator)

    await support.wait_until(empty, timeout=DEADLINE, interval=0.05)
    if env.replicas != 2:
        await scale(env, 2)
    await wait_replicas(stack, env.replicas)


async def ensure_foreign_lb(env: Env) -> str:
    """A CLB someone else made, with a listener of theirs, for the adopted cases."""
    if env.foreign_lb:
        return env.foreign_lb
    clb = support.async_client(env.stack.emulator)
    try:
        lb_id = await support.create_lb(clb, LoadBalancerName="foreign")
        await support.create_listener(clb, lb_id, port=FOREIGN_PORT)
    finally:
        await clb.close()
    env.foreign_lb = lb_id
    return lb_id


# --- the tests ----------------------------------------------------------------------------------


@pytest.mark.parametrize("point", OWNED_POINTS, ids=[p.name for p in OWNED_POINTS])
async def test_owned_clb_killed_and_restarted(env: Env, point: KillPoint) -> None:
    await run_life(env, point, adopted=False)


@pytest.mark.parametrize("point", ADOPTED_POINTS, ids=[p.name for p in ADOPTED_POINTS])
async def test_adopted_clb_killed_and_restarted(env: Env, point: KillPoint) -> None:
    await ensure_foreign_lb(env)
    await run_life(env, point, adopted=True)


PROCESS_POINTS = [
    cloud("create", "CreateListener", "after", name="process-CreateListener-answer-lost"),
]


@pytest.mark.parametrize("point", PROCESS_POINTS, ids=[p.name for p in PROCESS_POINTS])
async def test_controller_process_kill_9(env: Env, point: KillPoint, tmp_path: Path) -> None:
    """``directlb controller`` as its own process, killed with SIGKILL at the point, restarted
    (its cloud timing unscaled: what the binary does by default)."""
    in_process = env.controller
    process = ProcessController(env.stack, log_path=tmp_path / "controller.log")
    env.controller = process
    try:
        await run_life(env, point, adopted=False)
        assert process.starts == 2, f"killed and restarted once; see {process.log_path}"
    finally:
        await process.stop()
        env.controller = in_process
