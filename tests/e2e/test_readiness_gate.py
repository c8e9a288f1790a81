"""The readiness-gate controller end to end: simulated cluster, CLB emulator, the controller
through ``runtime.run``. Pods carry the gate in their template (what the webhook would add), so
these tests hold whether or not the webhook runs. The cloud is read with the official SDK, the
cluster with lightkube and ``kubectl``, never through the controller's code.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from lightkube import AsyncClient, KubeConfig
from lightkube.codecs import from_dict
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Pod, Service
from lightkube.types import PatchType
from tencentcloud.clb.v20180317 import models

from directlb.controllers.gate import GateController, HealthPoller, ServiceBindings
from directlb.controllers.metrics import Metrics
from directlb.kube.events import EventRecorder
from directlb.kube.informer import Store
from directlb.kube.mapping import BY_NAMESPACE, index_by_namespace
from directlb.sim.contracts import PatchRequest
from tests import support
from tests.e2e.stack import (
    DEADLINE,
    Stack,
    events_for,
    has_event,
    lb_id_of,
    running_stack,
    targets_by_listener,
)
from tests.integration.cloud_support import calls, ledger_summary
from tests.integration.test_sim_cluster_stack import DEPLOYMENT, SERVICE

GATE = "cloud.tencent.com/load-balancer-backendgroup-ready"
KUBECTL = "/usr/bin/kubectl"
#: The controller re-checks pending gates every 2 s; a gate that must stay as it is is watched
#: for a few of those periods.
SETTLE = 5.0


# --- manifests ---------------------------------------------------------------------------------


def deployment(
    name: str = "nginx-deployment-eni",
    *,
    app: str = "nginx",
    replicas: int = 3,
    gated: bool = True,
    env: dict[str, str] | None = None,
    strategy: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The seed's Deployment; with ``gated``, its pods carry our readiness gate."""
    manifest = copy.deepcopy(DEPLOYMENT)
    manifest["metadata"] = {"labels": {"app": app}, "name": name}
    spec = manifest["spec"]
    spec["replicas"] = replicas
    spec["selector"] = {"matchLabels": {"app": app}}
    spec["template"]["metadata"]["labels"] = {"app": app}
    pod_spec = spec["template"]["spec"]
    if gated:
        pod_spec["readinessGates"] = [{"conditionType": GATE}]
    if env:
        pod_spec["containers"][0]["env"] = [{"name": k, "value": v} for k, v in env.items()]
    if strategy:
        spec["strategy"] = strategy
    return manifest


def service(
    name: str = "nginx-service-eni", *, app: str = "nginx", target_port: int = 80
) -> dict[str, Any]:
    """The seed's direct-access Service (``target_port`` other than 80: nothing listens)."""
    manifest = copy.deepcopy(SERVICE)
    manifest["metadata"]["name"] = name
    manifest["metadata"]["labels"] = {"app": app}
    manifest["spec"]["selector"] = {"app": app}
    manifest["spec"]["ports"][0]["targetPort"] = target_port
    return manifest


# --- reading ------------------------------------------------------------------------------------


def condition(pod: Any, kind: str) -> Any | None:
    for c in (pod.status.conditions if pod.status else None) or []:
        if c.type == kind:
            return c
    return None


def gate_of(pod: Any) -> Any | None:
    return condition(pod, GATE)


def gate_status(pod: Any) -> str | None:
    gate = gate_of(pod)
    return gate.status if gate is not None else None


def gate_reason(pod: Any) -> str | None:
    gate = gate_of(pod)
    return gate.reason if gate is not None else None


def is_ready(pod: Any) -> bool:
    ready = condition(pod, "Ready")
    return ready is not None and ready.status == "True"


def containers_ready(pod: Any) -> bool:
    ready = condition(pod, "ContainersReady")
    return ready is not None and ready.status == "True"


async def pods_of(client: AsyncClient, app: str) -> list[Any]:
    return [p async for p in client.list(Pod, namespace="default", labels={"app": app})]


def live(pods: list[Any]) -> list[Any]:
    return [p for p in pods if p.metadata.deletionTimestamp is None]


async def healthy_targets(clb: Any, lb_id: str) -> set[tuple[str, int]]:
    """``ip:port`` of every target the CLB reports healthy (DescribeTargetHealth, SDK)."""
    request = models.DescribeTargetHealthRequest()
    request.LoadBalancerIds = [lb_id]
    answer = await clb.DescribeTargetHealth(request)
    found: set[tuple[str, int]] = set()
    for lb in answer.LoadBalancers or []:
        for listener in lb.Listeners or []:
            for rule in listener.Rules or []:
                for target in rule.Targets or []:
                    if target.HealthStatus:
                        found.add((target.IP, int(target.Port)))
    return found


async def kubectl(stack: Stack, *args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        KUBECTL,
        f"--kubeconfig={stack.config.kubeconfig}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out.decode()


async def wide_rows(stack: Stack, app: str) -> dict[str, tuple[str, str]]:
    """``kubectl get pod -o wide``: pod name -> (READY, READINESS GATES)."""
    text = await kubectl(stack, "get", "pod", "-o", "wide", "-l", f"app={app}")
    lines = text.splitlines()
    assert lines[0].split()[-2:] == ["READINESS", "GATES"], lines[0]
    rows = {}
    for line in lines[1:]:
        words = line.split()
        rows[words[0]] = (words[1], words[-1])
    return rows


async def until(predicate: Callable[[], Awaitable[Any]], timeout: float = DEADLINE) -> None:
    await support.wait_until(predicate, timeout=timeout, interval=0.1)


@pytest.fixture
async def clb(stack: Stack) -> AsyncIterator[Any]:
    client = support.async_client(stack.emulator)
    try:
        yield client
    finally:
        await client.close()


# --- patches the controller sends (counted at the simulator) ------------------------------------


@dataclass
class StatusPatches:
    """Every pods/status PATCH the controller sends, as the simulator receives it."""

    by_pod: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)

    def total(self) -> int:
        return sum(len(v) for v in self.by_pod.values())


def count_status_patches(stack: Stack) -> StatusPatches:
    seen = StatusPatches()
    api = stack.server.api
    original = api.patch

    async def patch(info: Any, *, request: PatchRequest, **kwargs: Any) -> Any:
        if (
            kwargs.get("subresource") == "status"
            and info.key.resource == "pods"
            and request.field_manager == "directlb"
        ):
            body = json.loads(request.body)
            [ours] = [c for c in body["status"]["conditions"] if c["type"] == GATE]
            seen.by_pod.setdefault(kwargs["name"], []).append(
                (ours["status"], ours["reason"], ours["message"])
            )
        return await original(info, request=request, **kwargs)

    api.patch = patch  # type: ignore[method-assign]
    return seen


# --- the seed's manifests -------------------------------------------------------------------------


async def test_seed_pods_turn_ready_once_their_clb_target_is_healthy_and_not_before(
    stack: Stack, clb: Any
) -> None:
    client = stack.client
    patches = count_status_patches(stack)
    await client.create(from_dict(deployment()), namespace="default")
    await client.create(from_dict(SERVICE), namespace="default")

    held = 0  # samples of a pod whose containers are ready but whose gate holds it
    samples = 0
    while True:
        pods = live(await pods_of(client, "nginx"))  # first the pods, then the cloud
        lb_id = await lb_id_of(client, "nginx-service-eni")
        healthy = await healthy_targets(clb, lb_id) if lb_id else set()
        samples += 1
        for pod in pods:
            gate = gate_of(pod)
            if gate is not None and gate.status == "True":
                # True only once the CLB reports the target healthy (and health, once
                # reached, does not go back here, so the later read still shows it).
                assert (pod.status.podIP, 80) in healthy, (pod.metadata.name, gate.message)
                assert gate.reason == "LoadBalancerBackendHealthy"
                assert f"CLB {lb_id} listener TCP:80" in gate.message
            else:
                assert not is_ready(pod), pod.metadata.name
                if containers_ready(pod):
                    held += 1
        gated = [p for p in pods if gate_status(p) == "True"]
        if len(pods) == 3 and len(gated) == 3:
            break
        assert samples < DEADLINE / 0.05, "the gates did not all turn True"
        await asyncio.sleep(0.05)
    assert held > 0, "never saw a gate hold a pod whose containers were ready"

    async def all_one_of_one() -> bool:
        rows = await wide_rows(stack, "nginx")
        return len(rows) == 3 and all(row == ("1/1", "1/1") for row in rows.values())

    await until(all_one_of_one)

    # Nothing is polled for pods whose gate is True, and nothing is written again.
    written = patches.total()
    since = (await ledger_summary(stack.emulator))["last"]
    await asyncio.sleep(SETTLE)
    assert "DescribeTargetHealth" not in calls(await ledger_summary(stack.emulator, since=since))
    assert patches.total() == written
    for name, sent in patches.by_pod.items():
        assert sent[-1][0] == "True", name
        assert all(a != b for a, b in itertools.pairwise(sent)), "\n".join(map(str, sent))


async def test_a_failing_health_check_holds_the_gate_false(stack: Stack, clb: Any) -> None:
    """The Service's targetPort is a port no container serves: the CLB binds the pods, its
    health check fails (Dead), and the gates stay False with HealthCheckFailed. Another workload
    that never gets healthy containers (SIM_READY_FAIL) is never bound: BackendNotRegistered."""
    client = stack.client
    patches = count_status_patches(stack)
    await client.create(
        from_dict(deployment("broken", app="broken", replicas=2)), namespace="default"
    )
    await client.create(
        from_dict(service("broken", app="broken", target_port=81)), namespace="default"
    )
    sick = deployment("sick", app="sick", replicas=1, env={"SIM_READY_FAIL": "true"})
    await client.create(from_dict(sick), namespace="default")
    await client.create(from_dict(service("sick", app="sick")), namespace="default")

    async def failed() -> bool:
        pods = live(await pods_of(client, "broken"))
        return len(pods) == 2 and all(gate_reason(p) == "HealthCheckFailed" for p in pods)

    await until(failed)
    lb_id = await lb_id_of(client, "broken")
    for pod in live(await pods_of(client, "broken")):
        gate = gate_of(pod)
        assert gate.status == "False"
        assert gate.message == (
            f"target {pod.status.podIP}:81 fails the health check of CLB {lb_id} listener "
            "TCP:80 (Dead): check that the pod answers on that port"
        )
    assert await healthy_targets(clb, lb_id) == set()

    async def sick_waits() -> bool:
        [pod] = live(await pods_of(client, "sick"))
        return gate_reason(pod) == "BackendNotRegistered"

    await until(sick_waits)
    [pod] = live(await pods_of(client, "sick"))
    assert "once its containers are ready" in gate_of(pod).message

    written = patches.total()
    deadline = time.monotonic() + SETTLE
    while time.monotonic() < deadline:  # the gates hold: False, and nothing rewritten
        for pod in live(await pods_of(client, "broken")) + live(await pods_of(client, "sick")):
            assert gate_of(pod).status == "False" and not is_ready(pod)
        await asyncio.sleep(0.2)
    assert patches.total() == written
    rows = await wide_rows(stack, "broken")
    # READY counts ready containers; READINESS GATES the gates that are True.
    assert sorted(rows.values()) == [("1/1", "0/1"), ("1/1", "0/1")]
    assert any(e.reason == "HealthCheckFailed" for e in await events_for(client, pod_name(rows)))


def pod_name(rows: dict[str, tuple[str, str]]) -> str:
    return sorted(rows)[0]


async def test_pods_no_direct_backend_selects_are_released_at_once(stack: Stack) -> None:
    client = stack.client
    await client.create(
        from_dict(deployment("lonely", app="lonely", replicas=2)), namespace="default"
    )
    # A ClusterIP Service with the direct-access annotation has no load balancer either.
    plain = service("lonely", app="lonely")
    plain["spec"] = {k: v for k, v in plain["spec"].items() if k != "externalTrafficPolicy"}
    plain["spec"]["type"] = "ClusterIP"
    await client.create(from_dict(plain), namespace="default")

    async def released() -> bool:
        pods = live(await pods_of(client, "lonely"))
        return len(pods) == 2 and all(is_ready(p) for p in pods)

    await until(released)
    for pod in live(await pods_of(client, "lonely")):
        gate = gate_of(pod)
        assert (gate.status, gate.reason) == ("True", "NoLoadBalancerBackend")


# --- a CLB two Services adopt ------------------------------------------------------------------


def adopting(name: str, *, lb_id: str) -> dict[str, Any]:
    """The seed's direct-access Service, on the existing CLB ``lb_id``, selecting ``app: name``."""
    manifest = service(name, app=name)
    manifest["metadata"]["annotations"]["service.kubernetes.io/tke-existed-lbid"] = lb_id
    return manifest


async def test_pods_of_a_service_refused_its_port_on_a_shared_clb_are_released_at_once(
    stack: Stack, clb: Any
) -> None:
    """Two direct Services adopt one CLB on port 80. ``shared-a``, created first, keeps the
    listener: its pods turn True once healthy there. ``shared-b`` is refused it
    (ListenerConflict), so nothing will ever register its pods: their gates turn True at once
    with NoLoadBalancerBackend (one write each), never waiting for the gate's timeout."""
    client = stack.client
    patches = count_status_patches(stack)
    lb_id = await support.create_lb(clb, LoadBalancerName="shared")
    await client.create(
        from_dict(deployment("shared-a", app="shared-a", replicas=2)), namespace="default"
    )
    await client.create(from_dict(adopting("shared-a", lb_id=lb_id)), namespace="default")

    async def a_healthy() -> bool:
        pods = live(await pods_of(client, "shared-a"))
        return len(pods) == 2 and all(
            gate_reason(p) == "LoadBalancerBackendHealthy" and is_ready(p) for p in pods
        )

    await until(a_healthy)
    # shared-a records TCP:80 before shared-b exists: shared-b is the later one, whatever
    # the clock's one-second resolution makes of their creation times (then "-a" < "-b").
    a = await client.get(Service, "shared-a", namespace="default")
    assert a.metadata.annotations["directlb.io/listeners"] == f"{lb_id}=TCP:80"

    # shared-b's pods only once the controller has refused shared-b the port: they are then
    # selected by a Service the gate knows (a Service not cached yet would release them too).
    await client.create(from_dict(adopting("shared-b", lb_id=lb_id)), namespace="default")
    await until(lambda: has_event(client, "shared-b", "ListenerConflict"))
    [conflict] = [e for e in await events_for(client, "shared-b") if e.reason == "ListenerConflict"]
    assert conflict.type == "Warning" and "Service default/shared-a" in conflict.message
    started = time.monotonic()
    await client.create(
        from_dict(deployment("shared-b", app="shared-b", replicas=2)), namespace="default"
    )

    async def b_released() -> bool:
        pods = live(await pods_of(client, "shared-b"))
        return len(pods) == 2 and all(is_ready(p) for p in pods)

    await until(b_released)
    released_after = time.monotonic() - started
    assert released_after < stack.config.readiness_gate_timeout / 10, released_after
    message = "no direct-access load balancer backend selects the pod"
    for pod in live(await pods_of(client, "shared-b")):
        assert patches.by_pod[pod.metadata.name] == [("True", "NoLoadBalancerBackend", message)]
    # Listener 80 carries shared-a's pods only, as it did; shared-a's gates stay True.
    a_ips = {p.status.podIP for p in live(await pods_of(client, "shared-a"))}
    assert set(await targets_by_listener(stack.emulator, lb_id)) == {(80, ip, 80) for ip in a_ips}
    assert await a_healthy()


# --- never stuck: the timeout ---------------------------------------------------------------------


@pytest.fixture
async def bare_stack(tmp_path: Path) -> AsyncIterator[Stack]:
    """The stack without a running controller (the test starts it, with its overrides)."""
    async with running_stack(tmp_path, start_controller=False) as running:
        yield running


async def test_a_gate_the_clb_never_confirms_times_out_true_with_a_warning(
    bare_stack: Stack,
) -> None:
    stack = bare_stack
    stack.start_controller(readiness_gate_timeout=3.0)
    client = stack.client
    await client.create(from_dict(deployment("late", app="late", replicas=1)), namespace="default")
    await client.create(from_dict(service("late", app="late", target_port=81)), namespace="default")

    async def failing() -> bool:
        pods = live(await pods_of(client, "late"))
        return len(pods) == 1 and gate_status(pods[0]) == "False"

    await until(failing)

    async def timed_out() -> bool:
        [pod] = live(await pods_of(client, "late"))
        return gate_reason(pod) == "Timeout" and is_ready(pod)

    await until(timed_out, timeout=30)
    [pod] = live(await pods_of(client, "late"))
    gate = gate_of(pod)
    assert gate.status == "True"
    assert "did not confirm the pod within 3s" in gate.message
    assert "last: HealthCheck" in gate.message  # pending or failed, whichever it was last
    waited = gate.lastTransitionTime - condition(pod, "ContainersReady").lastTransitionTime
    assert waited.total_seconds() >= 3
    events = await events_for(client, pod.metadata.name)
    [warning] = [e for e in events if e.reason == "ReadinessGateTimeout"]
    assert warning.type == "Warning" and warning.message == gate.message


# --- the UID precondition ----------------------------------------------------------------------


async def test_a_decision_for_a_deleted_pod_is_not_applied_to_its_namesake(
    bare_stack: Stack,
) -> None:
    """The race: the controller decides for pod ``solo`` (UID 1) from its cache while ``solo``
    is deleted and created again (UID 2). Its patch carries UID 1, so the API server refuses
    it, and the new pod is decided on its own, once the cache has it."""
    stack = bare_stack
    client = stack.client
    manifest = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "solo", "labels": {"app": "solo"}},
        "spec": {
            "containers": [{"name": "app", "image": "nginx", "ports": [{"containerPort": 80}]}],
            "readinessGates": [{"conditionType": GATE}],
        },
    }
    old = await client.create(from_dict(manifest), namespace="default")
    await client.delete(Pod, "solo", namespace="default", grace_period=0)
    await until(lambda: _gone(client, "solo", old.metadata.uid))
    new = await client.create(from_dict(manifest), namespace="default")
    assert new.metadata.uid != old.metadata.uid

    # The controller's own code, with a cache that still holds the old pod.
    pods: Store[Any] = Store()
    pods.put(old)
    empty: Store[Any] = Store()
    for store in (pods, empty):
        store.add_index(BY_NAMESPACE, index_by_namespace)
    metrics = Metrics()
    kubeconfig = KubeConfig.from_file(stack.config.kubeconfig)
    controller_client = AsyncClient(config=kubeconfig, field_manager="directlb")
    try:
        controller = GateController(
            client=controller_client,
            recorder=EventRecorder(controller_client),
            pods=pods,
            poller=HealthPoller(stack_cloud_unused()),
            metrics=metrics,
            sources=[ServiceBindings(services=empty, slices=empty, pods=pods)],
        )
        assert await controller.reconcile("default/solo") is None  # NoLoadBalancerBackend
    finally:
        await controller_client.close()
    assert metrics.gate_patches.labels("stale")._value.get() == 1
    assert metrics.gate_patches.labels("patched")._value.get() == 0
    current = await client.get(Pod, "solo", namespace="default")
    assert current.metadata.uid == new.metadata.uid and gate_of(current) is None

    stack.start_controller()  # the real one decides the new pod from its own cache

    async def decided() -> bool:
        pod = await client.get(Pod, "solo", namespace="default")
        return gate_reason(pod) == "NoLoadBalancerBackend"

    await until(decided)


def stack_cloud_unused() -> Any:
    class NoCloud:
        async def target_health(self, lb_ids: Any) -> Any:
            raise AssertionError("no CLB to ask about")

    return NoCloud()


async def _gone(client: AsyncClient, name: str, uid: str | None) -> bool:
    pods = [p async for p in client.list(Pod, namespace="default")]
    return not any(p.metadata.name == name and p.metadata.uid == uid for p in pods)


# --- pods created before their Service ------------------------------------------------------------


async def test_pods_created_before_their_service_are_reported_once(stack: Stack) -> None:
    client = stack.client
    await client.create(
        from_dict(deployment("early", app="early", gated=False)), namespace="default"
    )

    async def running() -> bool:
        pods = live(await pods_of(client, "early"))
        return len(pods) == 3 and all(is_ready(p) for p in pods)

    await until(running)
    await asyncio.sleep(1.1)  # creation times have a one-second resolution
    await client.create(from_dict(service("early", app="early")), namespace="default")

    async def warned() -> list[Any]:
        events = await events_for(client, "early")
        return [e for e in events if e.reason == "PodsWithoutReadinessGate"]

    await until(warned)
    await client.patch(
        Service,
        "early",
        {"metadata": {"labels": {"touched": "yes"}}},
        namespace="default",
        patch_type=PatchType.MERGE,
    )
    await asyncio.sleep(1.0)
    [event] = await warned()
    assert event.type == "Warning" and event.count == 1
    assert event.message.startswith("3 pod(s) selected by this direct-access Service have no")
    assert "Rolling updates of those pods are not protected until they are recreated" in (
        event.message
    )


async def test_pods_created_while_the_webhook_was_down_are_reported(stack: Stack) -> None:
    """The Service exists (direct); the controller, and with it the webhook, is down while
    its pods are created (failure policy Ignore: created without the gate). Once it is back:
    one Event naming them, not repeated while nothing new joins."""
    client = stack.client
    await client.create(from_dict(service("down", app="down")), namespace="default")
    await until(lambda: lb_id_of(client, "down"))
    await stack.stop_controller()
    await client.create(
        from_dict(deployment("down", app="down", replicas=2, gated=False)), namespace="default"
    )

    async def created() -> bool:
        return len(live(await pods_of(client, "down"))) == 2

    await until(created)
    assert not any(p.spec.readinessGates for p in live(await pods_of(client, "down")))
    stack.start_controller()

    async def warned() -> list[Any]:
        events = await events_for(client, "down")
        return [e for e in events if e.reason == "PodsWithoutReadinessGate"]

    await until(warned)
    names = sorted(p.metadata.name for p in live(await pods_of(client, "down")))
    [event] = await warned()
    assert event.type == "Warning" and event.message.startswith("2 pod(s)")
    assert f"({', '.join(names)})" in event.message
    assert "webhook was unavailable" in event.message
    # Pod and Service changes that bring no new pod without the gate say nothing more.
    await client.patch(
        Service,
        "down",
        {"metadata": {"labels": {"touched": "yes"}}},
        namespace="default",
        patch_type=PatchType.MERGE,
    )
    await asyncio.sleep(1.0)
    [event] = await warned()
    assert event.count == 1


# --- rolling updates ------------------------------------------------------------------------------


ROLLING = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}}
REPLICAS = 10
#: Emulator time scale for the rollouts: health checks every 0.25 s (5 s cloud time), so a
#: target needs about half a second to become healthy, as a real one needs seconds.
ROLLOUT_TIME_SCALE = 0.05


@pytest.fixture
async def slow_health_stack(tmp_path: Path) -> AsyncIterator[Stack]:
    overrides = {"time_scale": ROLLOUT_TIME_SCALE}
    async with running_stack(tmp_path, start_controller=False, emulator_overrides=overrides) as s:
        yield s


@dataclass
class Rollout:
    counts: list[int]
    seconds: float


async def roll(stack: Stack, *, gated: bool) -> Rollout:
    """A 10-replica direct-access Deployment (maxSurge 25%, maxUnavailable 0) rolled to a new
    revision; every 100 ms, the number of pods that are Ready, not terminating and reported
    healthy by the CLB (the pods are read first, then DescribeTargetHealth)."""
    client = stack.client
    manifest = deployment("web", app="web", replicas=REPLICAS, gated=gated, strategy=ROLLING)
    await client.create(from_dict(manifest), namespace="default")
    await client.create(from_dict(service("web", app="web")), namespace="default")
    clb = support.async_client(stack.emulator)
    lb_id = ""
    try:

        async def count() -> int:
            pods = [p for p in live(await pods_of(client, "web")) if is_ready(p)]
            healthy = await healthy_targets(clb, lb_id)
            return sum((p.status.podIP, 80) in healthy for p in pods)

        async def settled() -> bool:
            nonlocal lb_id
            lb_id = await lb_id_of(client, "web") or ""
            pods = live(await pods_of(client, "web"))
            return bool(lb_id) and len(pods) == REPLICAS and await count() == REPLICAS

        await until(settled, timeout=120)
        await client.patch(
            Deployment,
            "web",
            {"spec": {"template": {"metadata": {"annotations": {"directlb.io/revision": "2"}}}}},
            namespace="default",
            patch_type=PatchType.MERGE,
        )
        started = time.monotonic()
        counts: list[int] = []
        while True:
            tick = time.monotonic()
            counts.append(await count())
            deployment_ = await client.get(Deployment, "web", namespace="default")
            status = deployment_.status
            pods = live(await pods_of(client, "web"))  # old ones may still be terminating
            revision = {(p.metadata.annotations or {}).get("directlb.io/revision") for p in pods}
            done = (
                status is not None
                and status.observedGeneration == deployment_.metadata.generation
                and status.updatedReplicas == REPLICAS
                and status.replicas == REPLICAS
                and len(pods) == REPLICAS
                and revision == {"2"}
                and counts[-1] == REPLICAS
            )
            if done:
                return Rollout(counts, time.monotonic() - started)
            assert time.monotonic() - started < 120, "the rollout did not finish"
            await asyncio.sleep(max(0.0, 0.1 - (time.monotonic() - tick)))
    finally:
        await clb.close()


async def test_a_rolling_update_with_gates_never_has_fewer_than_10_healthy_ready_pods(
    slow_health_stack: Stack,
) -> None:
    slow_health_stack.start_controller()
    patches = count_status_patches(slow_health_stack)
    rollout = await roll(slow_health_stack, gated=True)
    per_pod = sorted(len(sent) for sent in patches.by_pod.values())
    print(
        f"gated rollout: {rollout.seconds:.1f}s, {len(rollout.counts)} samples, "
        f"min {min(rollout.counts)}; status patches per pod {per_pod}"
    )
    assert len(rollout.counts) >= 10
    assert min(rollout.counts) >= REPLICAS, rollout.counts
    for sent in patches.by_pod.values():  # each patch a change, True the last
        assert all(a != b for a, b in itertools.pairwise(sent)), "\n".join(map(str, sent))


async def test_the_same_rolling_update_without_gates_drops_below_10(
    slow_health_stack: Stack,
) -> None:
    """The problem the seed describes: without the gate (no webhook, no gate in the template)
    the rollout deletes old pods as soon as new containers are ready, before the CLB has the
    new targets healthy."""
    slow_health_stack.start_controller(webhook=False)
    rollout = await roll(slow_health_stack, gated=False)
    print(
        f"ungated rollout: {rollout.seconds:.1f}s, {len(rollout.counts)} samples, "
        f"min {min(rollout.counts)}"
    )
    assert min(rollout.counts) < REPLICAS, rollout.counts
