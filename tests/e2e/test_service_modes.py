"""The Service controller's three backend modes and a Service's life, end to end (issue 7).

Simulated cluster (3 nodes), CLB emulator at time scale 0.01, the controller through
``runtime.run``. What the CLB holds is read with the official SDK, what the cluster holds with
lightkube, never through the controller's own code. Every wait has a deadline.

* NodePort: every Ready, schedulable node : nodePort, following cordon, a node added and a
  node removed; deleting the Service deletes the CLB.
* Local: only nodes with a Ready pod, through scaling up and down and a deleted pod, health
  checked over HTTP on healthCheckNodePort.
* direct: the pods' IPs through scaling and a deleted pod.
* a port change replaces that listener only; ClientIP affinity sets a clamped SessionExpireTime.
* an adopted CLB outlives its Service with its foreign listener untouched; switching from a
  created CLB to an adopted one deletes the created CLB; of two Services adopting one CLB on
  one port, the later is refused that port (ListenerConflict) and keeps its others.
* toggling direct access swaps the backend set with never a moment at zero targets.
* on a cluster older than 1.12, direct access is refused with a Warning and the Service is
  bound through its nodes; the Services beside it are reconciled as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Node, Pod, Service
from lightkube.types import PatchType
from tencentcloud.clb.v20180317 import models

from directlb.demo.up import register_instances
from directlb.emulator.config import LatencyModel
from tests import support
from tests.cluster_support import ENI
from tests.e2e.stack import (
    DEADLINE,
    Stack,
    events_for,
    has_event,
    lb_id_of,
    listeners,
    load_balancers,
    node_instances,
    pod_ips,
    running_stack,
    service_gone,
    targets,
    targets_by_listener,
)

NS = "default"
INSTANCE_LABEL = "cloud.tencent.com/node-instance-id"
DIRECT_ACCESS = "service.cloud.tencent.com/direct-access"
EXISTING_LB_ID = "service.kubernetes.io/tke-existed-lbid"
LISTENERS = "directlb.io/listeners"


def deployment(name: str, *, replicas: int, eni: bool = False) -> dict[str, Any]:
    template_meta: dict[str, Any] = {"labels": {"app": name}}
    if eni:
        template_meta["annotations"] = dict(ENI)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": template_meta,
                "spec": {
                    # Short: scale-downs and deletions here wait for pods to be gone.
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {
                            "name": "web",
                            "image": "nginx:1.7.9",
                            "ports": [{"containerPort": 80, "protocol": "TCP"}],
                        }
                    ],
                },
            },
        },
    }


def service(
    name: str,
    *,
    app: str,
    ports: tuple[int, ...] = (80,),
    annotations: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "annotations": dict(annotations or {})},
        "spec": {
            "type": "LoadBalancer",
            "selector": {"app": app},
            "ports": [
                {"name": f"p{port}", "port": port, "protocol": "TCP", "targetPort": 80}
                for port in ports
            ],
            **spec,
        },
    }


async def create(stack: Stack, *manifests: dict[str, Any]) -> None:
    for manifest in manifests:
        kind = Deployment if manifest["kind"] == "Deployment" else Service
        await stack.client.create(kind.from_dict(manifest), namespace=NS)


async def scale(stack: Stack, name: str, replicas: int) -> None:
    await stack.client.patch(
        Deployment, name, {"spec": {"replicas": replicas}}, namespace=NS, patch_type=PatchType.MERGE
    )


async def node_ports(stack: Stack, name: str) -> dict[int, int]:
    svc = await stack.client.get(Service, name, namespace=NS)
    return {int(p.port): int(p.nodePort) for p in svc.spec.ports if p.nodePort}


async def schedulable_instances(stack: Stack) -> set[str]:
    """Instance ids of the Ready, schedulable nodes (what NodePort mode binds)."""
    found: set[str] = set()
    async for n in stack.client.list(Node):
        ready = any(c.type == "Ready" and c.status == "True" for c in (n.status.conditions or []))
        instance = (n.metadata.labels or {}).get(INSTANCE_LABEL)
        if ready and instance and not (n.spec and n.spec.unschedulable):
            found.add(instance)
    return found


async def ready_pod_instances(stack: Stack, app: str) -> set[str]:
    """Instance ids of the nodes holding a Ready, not deleted pod of ``app`` (Local mode)."""
    nodes = {
        n.metadata.name: (n.metadata.labels or {}).get(INSTANCE_LABEL)
        async for n in stack.client.list(Node)
    }
    found: set[str] = set()
    async for p in stack.client.list(Pod, namespace=NS, labels={"app": app}):
        ready = any(c.type == "Ready" and c.status == "True" for c in (p.status.conditions or []))
        if ready and p.metadata.deletionTimestamp is None and p.spec.nodeName:
            instance = nodes.get(p.spec.nodeName)
            if instance:
                found.add(instance)
    return found


async def wait_ready_pods(stack: Stack, app: str, count: int) -> None:
    """Wait until ``app`` has exactly ``count`` pods, all Ready and none being deleted."""

    async def settled() -> bool:
        pods = [p async for p in stack.client.list(Pod, namespace=NS, labels={"app": app})]
        ready = [
            p
            for p in pods
            if p.metadata.deletionTimestamp is None
            and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
        ]
        return len(pods) == len(ready) == count

    await support.wait_until(settled, timeout=DEADLINE, interval=0.1)


async def wait_targets(stack: Stack, name: str, expected: Any, *, what: str) -> str:
    """Wait until the Service's CLB binds exactly ``await expected()``; return the CLB id."""
    seen: dict[str, Any] = {}

    async def converged() -> bool:
        lb_id = await lb_id_of(stack.client, name)
        if not lb_id:
            return False
        want, got = await expected(), await targets(stack.emulator, lb_id)
        seen.update(lb=lb_id, want=want, got=got)
        return bool(want) and got == want

    try:
        await support.wait_until(converged, timeout=DEADLINE, interval=0.1)
    except TimeoutError:
        raise AssertionError(f"{what}: {seen}") from None
    return str(seen["lb"])


async def wait_gone(stack: Stack, name: str) -> None:
    async def gone() -> bool:
        return await service_gone(stack, name) and not await load_balancers(stack.emulator)

    await support.wait_until(gone, timeout=DEADLINE, interval=0.1)


# --- NodePort ----------------------------------------------------------------------------------


async def test_nodeport_mode_follows_cordon_and_nodes_coming_and_going(stack: Stack) -> None:
    await create(stack, deployment("np", replicas=2), service("np-svc", app="np"))
    port = (await node_ports(stack, "np-svc"))[80]

    async def expected() -> set[tuple[str, int]]:
        return {(ins, port) for ins in await schedulable_instances(stack)}

    lb_id = await wait_targets(stack, "np-svc", expected, what="every node")
    assert {ins for ins, _ in await targets(stack.emulator, lb_id)} == await node_instances(
        stack.client
    )

    # Cordon: the node leaves the backends; uncordon: it comes back.
    await stack.client.patch(Node, "node-2", {"spec": {"unschedulable": True}})
    await wait_targets(stack, "np-svc", expected, what="cordoned node-2")
    assert ("ins-node0002", port) not in await targets(stack.emulator, lb_id)
    await stack.client.patch(Node, "node-2", {"spec": {"unschedulable": False}})
    await wait_targets(stack, "np-svc", expected, what="uncordoned node-2")
    assert ("ins-node0002", port) in await targets(stack.emulator, lb_id)

    # A node joins: once its kubelet has registered it (and the cloud knows the instance),
    # it is a backend.
    await stack.client.create(Node.from_dict({"metadata": {"name": "node-4"}}))

    async def registered() -> bool:
        node = await stack.client.get(Node, "node-4")
        return bool(node.status and node.status.addresses)

    await support.wait_until(registered, timeout=DEADLINE, interval=0.1)
    await register_instances(stack.client, stack.emulator)
    await wait_targets(stack, "np-svc", expected, what="node-4 added")
    assert ("ins-node0004", port) in await targets(stack.emulator, lb_id)

    # A node goes away: it is no backend any more.
    await stack.client.delete(Node, "node-3")
    await wait_targets(stack, "np-svc", expected, what="node-3 removed")
    assert ("ins-node0003", port) not in await targets(stack.emulator, lb_id)

    # Deleting the Service deletes the CLB it made.
    await stack.client.delete(Service, "np-svc", namespace=NS)
    await wait_gone(stack, "np-svc")


# --- Local -------------------------------------------------------------------------------------


async def test_local_mode_binds_nodes_with_ready_pods_and_checks_health_node_port(
    stack: Stack,
) -> None:
    await create(
        stack,
        deployment("loc", replicas=1),
        service("loc-svc", app="loc", externalTrafficPolicy="Local"),
    )
    port = (await node_ports(stack, "loc-svc"))[80]

    async def expected() -> set[tuple[str, int]]:
        return {(ins, port) for ins in await ready_pod_instances(stack, "loc")}

    await wait_ready_pods(stack, "loc", 1)
    lb_id = await wait_targets(stack, "loc-svc", expected, what="one pod's node")
    assert len(await targets(stack.emulator, lb_id)) == 1

    svc = await stack.client.get(Service, "loc-svc", namespace=NS)
    health_port = svc.spec.healthCheckNodePort
    assert health_port
    [listener] = await listeners(stack.emulator, lb_id)
    check = listener.HealthCheck
    assert (check.HealthSwitch, check.CheckType, check.CheckPort) == (1, "HTTP", health_port)
    assert (check.HttpCheckPath, check.HttpCheckMethod.upper()) == ("/healthz", "GET")
    assert check.HttpCode == 2  # 2xx: kube-proxy answers 200 only where a local pod is

    await scale(stack, "loc", 3)
    await wait_ready_pods(stack, "loc", 3)
    await wait_targets(stack, "loc-svc", expected, what="scaled up to 3")
    assert len(await targets(stack.emulator, lb_id)) == 3  # the scheduler spreads replicas

    await scale(stack, "loc", 1)
    await wait_ready_pods(stack, "loc", 1)
    await wait_targets(stack, "loc-svc", expected, what="scaled down to 1")
    assert len(await targets(stack.emulator, lb_id)) == 1

    # The one pod deleted: its node leaves, the replacement's node is bound once it is Ready.
    [pod] = [p async for p in stack.client.list(Pod, namespace=NS, labels={"app": "loc"})]
    await stack.client.delete(Pod, pod.metadata.name, namespace=NS)
    await wait_ready_pods(stack, "loc", 1)
    await wait_targets(stack, "loc-svc", expected, what="pod replaced")


# --- direct ------------------------------------------------------------------------------------


async def test_direct_mode_follows_scaling_and_deleted_pods(stack: Stack) -> None:
    await create(
        stack,
        deployment("dir", replicas=2, eni=True),
        service("dir-svc", app="dir", annotations={DIRECT_ACCESS: "true"}),
    )

    async def expected() -> set[tuple[str, int]]:
        return {(ip, 80) for ip in await pod_ips(stack.client, {"app": "dir"})}

    lb_id = await wait_targets(stack, "dir-svc", expected, what="two pods")
    await scale(stack, "dir", 5)
    await wait_ready_pods(stack, "dir", 5)
    await wait_targets(stack, "dir-svc", expected, what="scaled up to 5")
    assert len(await targets(stack.emulator, lb_id)) == 5
    await scale(stack, "dir", 2)
    await wait_ready_pods(stack, "dir", 2)
    await wait_targets(stack, "dir-svc", expected, what="scaled down to 2")
    assert len(await targets(stack.emulator, lb_id)) == 2

    pods = [p async for p in stack.client.list(Pod, namespace=NS, labels={"app": "dir"})]
    victim = pods[0].status.podIP
    await stack.client.delete(Pod, pods[0].metadata.name, namespace=NS)
    await wait_ready_pods(stack, "dir", 2)
    await wait_targets(stack, "dir-svc", expected, what="pod deleted")
    got = await targets(stack.emulator, lb_id)
    assert (victim, 80) not in got and len(got) == 2


# --- listeners ---------------------------------------------------------------------------------


async def test_port_change_replaces_that_listener_only_and_affinity_is_clamped(
    stack: Stack,
) -> None:
    await create(
        stack,
        deployment("ports", replicas=1),
        service(
            "ports-svc",
            app="ports",
            ports=(80, 81),
            sessionAffinity="ClientIP",
            sessionAffinityConfig={"clientIP": {"timeoutSeconds": 10}},
        ),
    )

    async def by_port() -> dict[int, Any]:
        lb_id = await lb_id_of(stack.client, "ports-svc")
        if not lb_id:
            return {}
        return {int(x.Port): x for x in await listeners(stack.emulator, lb_id)}

    async def has_ports(*ports: int) -> bool:
        return sorted(await by_port()) == sorted(ports)

    await support.wait_until(lambda: has_ports(80, 81), timeout=DEADLINE, interval=0.1)
    before = await by_port()
    # ClientIP affinity of 10 s: the CLB's minimum session persistence is 30 s.
    assert {x.SessionExpireTime for x in before.values()} == {30}

    svc = await stack.client.get(Service, "ports-svc", namespace=NS)
    ports = [
        {
            "name": p.name,
            "port": 82 if p.port == 81 else p.port,
            "protocol": "TCP",
            "targetPort": 80,
        }
        for p in svc.spec.ports
    ]
    await stack.client.patch(
        Service,
        "ports-svc",
        [{"op": "replace", "path": "/spec/ports", "value": ports}],
        namespace=NS,
        patch_type=PatchType.JSON,
    )
    await support.wait_until(lambda: has_ports(80, 82), timeout=DEADLINE, interval=0.1)
    after = await by_port()
    assert after[80].ListenerId == before[80].ListenerId  # untouched
    assert after[82].ListenerId != before[81].ListenerId

    # The new listener gets its backends too: every node on its own nodePort.
    node_port = (await node_ports(stack, "ports-svc"))[82]
    lb_id = await lb_id_of(stack.client, "ports-svc")
    assert lb_id

    async def bound_82() -> bool:
        got = {
            (ins, tp) for p, ins, tp in await targets_by_listener(stack.emulator, lb_id) if p == 82
        }
        return got == {(ins, node_port) for ins in await schedulable_instances(stack)}

    await support.wait_until(bound_82, timeout=DEADLINE, interval=0.1)

    # A timeout above the CLB's maximum is clamped to 3600 s.
    await stack.client.patch(
        Service,
        "ports-svc",
        {"spec": {"sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 86400}}}},
        namespace=NS,
        patch_type=PatchType.MERGE,
    )

    async def clamped() -> bool:
        return {x.SessionExpireTime for x in (await by_port()).values()} == {3600}

    await support.wait_until(clamped, timeout=DEADLINE, interval=0.1)


# --- an adopted CLB ----------------------------------------------------------------------------


async def test_adopted_clb_survives_with_its_foreign_listener(stack: Stack) -> None:
    clb = support.async_client(stack.emulator)
    try:
        lb_id = await support.create_lb(clb, LoadBalancerName="shared")
        foreign = await support.create_listener(clb, lb_id, port=9999)
        await support.done(
            clb,
            "RegisterTargets",
            LoadBalancerId=lb_id,
            ListenerId=foreign,
            Targets=[{"InstanceId": "ins-node0001", "Port": 8080}],
        )
    finally:
        await clb.close()

    await create(
        stack,
        deployment("adopt", replicas=1),
        service("adopt-svc", app="adopt", annotations={EXISTING_LB_ID: lb_id}),
    )
    port = (await node_ports(stack, "adopt-svc"))[80]

    async def expected() -> set[tuple[str, int]]:
        nodes = {(ins, port) for ins in await schedulable_instances(stack)}
        return nodes | {("ins-node0001", 8080)}

    assert await wait_targets(stack, "adopt-svc", expected, what="adopted") == lb_id
    assert sorted(int(x.Port) for x in await listeners(stack.emulator, lb_id)) == [80, 9999]

    await stack.client.delete(Service, "adopt-svc", namespace=NS)
    await support.wait_until(
        lambda: service_gone(stack, "adopt-svc"), timeout=DEADLINE, interval=0.1
    )
    [lb] = await load_balancers(stack.emulator)
    assert lb.LoadBalancerId == lb_id
    [left] = await listeners(stack.emulator, lb_id)
    assert (left.ListenerId, int(left.Port)) == (foreign, 9999)
    assert await targets_by_listener(stack.emulator, lb_id) == [(9999, "ins-node0001", 8080)]


async def test_changing_the_adopted_clb_moves_our_listeners_and_spares_foreign_ones(
    stack: Stack,
) -> None:
    """Adopted lb-A (ports 80 and 81), then the user names lb-B and drops port 81 in the same
    change. Ours go from A (its foreign listener stays); B gets 80, and B's foreign listener on
    81, a port we had recorded on A, is not ours to delete."""
    clb = support.async_client(stack.emulator)
    try:
        first = await support.create_lb(clb, LoadBalancerName="first")
        foreign_a = await support.create_listener(clb, first, port=9999)
        second = await support.create_lb(clb, LoadBalancerName="second")
        foreign_b = await support.create_listener(clb, second, port=81)
    finally:
        await clb.close()

    async def ports_of(lb_id: str) -> list[tuple[str, int]]:
        return sorted(
            (str(x.ListenerId), int(x.Port)) for x in await listeners(stack.emulator, lb_id)
        )

    await create(
        stack,
        deployment("move", replicas=1),
        service("move-svc", app="move", ports=(80, 81), annotations={EXISTING_LB_ID: first}),
    )

    async def on(lb_id: str, ports: list[int]) -> bool:
        return sorted(p for _, p in await ports_of(lb_id)) == ports

    await support.wait_until(lambda: on(first, [80, 81, 9999]), timeout=DEADLINE, interval=0.1)
    svc = await stack.client.get(Service, "move-svc", namespace=NS)
    assert svc.metadata.annotations[LISTENERS] == f"{first}=TCP:80,TCP:81"

    await stack.client.patch(
        Service,
        "move-svc",
        {
            "metadata": {"annotations": {EXISTING_LB_ID: second}},
            "spec": {"ports": [{"name": "p80", "port": 80, "protocol": "TCP", "targetPort": 80}]},
        },
        namespace=NS,
        patch_type=PatchType.MERGE,
    )
    await support.wait_until(lambda: on(first, [9999]), timeout=DEADLINE, interval=0.1)
    await support.wait_until(lambda: on(second, [80, 81]), timeout=DEADLINE, interval=0.1)
    assert (foreign_a, 9999) in await ports_of(first)
    assert (foreign_b, 81) in await ports_of(second)

    async def recorded_on_second_only() -> bool:
        svc = await stack.client.get(Service, "move-svc", namespace=NS)
        return (svc.metadata.annotations or {}).get(LISTENERS) == f"{second}=TCP:80"

    await support.wait_until(recorded_on_second_only, timeout=DEADLINE, interval=0.1)
    assert await lb_id_of(stack.client, "move-svc") == second

    # Deleting the Service takes our listener off B and leaves both CLBs and their foreign
    # listeners.
    await stack.client.delete(Service, "move-svc", namespace=NS)
    await support.wait_until(
        lambda: service_gone(stack, "move-svc"), timeout=DEADLINE, interval=0.1
    )
    assert await ports_of(second) == [(foreign_b, 81)]
    assert await ports_of(first) == [(foreign_a, 9999)]
    assert {lb.LoadBalancerId for lb in await load_balancers(stack.emulator)} == {first, second}


async def test_switching_from_a_created_clb_to_an_adopted_one_deletes_the_created_clb(
    stack: Stack,
) -> None:
    """A Service with a CLB we created is then annotated to adopt another: once the adopted
    CLB serves, the created one is deleted (the adopted one, and its foreign listener, stay)."""
    await create(stack, deployment("switch", replicas=1), service("switch-svc", app="switch"))
    port = (await node_ports(stack, "switch-svc"))[80]

    async def nodes() -> set[tuple[str, int]]:
        return {(ins, port) for ins in await schedulable_instances(stack)}

    created = await wait_targets(stack, "switch-svc", nodes, what="created")
    clb = support.async_client(stack.emulator)
    try:
        adopted = await support.create_lb(clb, LoadBalancerName="shared")
        foreign = await support.create_listener(clb, adopted, port=9999)
    finally:
        await clb.close()

    await stack.client.patch(
        Service,
        "switch-svc",
        {"metadata": {"annotations": {EXISTING_LB_ID: adopted}}},
        namespace=NS,
        patch_type=PatchType.MERGE,
    )

    async def only_the_adopted_one_left() -> bool:
        ids = {lb.LoadBalancerId for lb in await load_balancers(stack.emulator)}
        return ids == {adopted} and await lb_id_of(stack.client, "switch-svc") == adopted

    await support.wait_until(only_the_adopted_one_left, timeout=DEADLINE, interval=0.1)
    assert created != adopted
    assert sorted(int(x.Port) for x in await listeners(stack.emulator, adopted)) == [80, 9999]

    await stack.client.delete(Service, "switch-svc", namespace=NS)
    await support.wait_until(
        lambda: service_gone(stack, "switch-svc"), timeout=DEADLINE, interval=0.1
    )
    [lb] = await load_balancers(stack.emulator)
    assert lb.LoadBalancerId == adopted
    [left] = await listeners(stack.emulator, adopted)
    assert (left.ListenerId, int(left.Port)) == (foreign, 9999)


async def test_two_services_adopting_one_clb_on_one_port_the_later_is_refused(
    stack: Stack,
) -> None:
    """share-a holds port 80 on the adopted CLB; share-b, created later, wants 80 and 81: it
    gets a ListenerConflict Warning and 81 only, and deleting it leaves share-a's listener."""
    clb = support.async_client(stack.emulator)
    try:
        lb_id = await support.create_lb(clb, LoadBalancerName="shared")
    finally:
        await clb.close()
    adopt = {EXISTING_LB_ID: lb_id}
    await create(stack, deployment("share", replicas=1))
    await create(stack, service("share-a", app="share", annotations=adopt))
    port_a = (await node_ports(stack, "share-a"))[80]

    async def bound() -> dict[int, set[int]]:
        found: dict[int, set[int]] = {}
        for listener_port, _, target_port in await targets_by_listener(stack.emulator, lb_id):
            found.setdefault(listener_port, set()).add(target_port)
        return found

    async def served_by_a() -> bool:
        return (await bound()).get(80) == {port_a}

    await support.wait_until(served_by_a, timeout=DEADLINE, interval=0.1)
    await asyncio.sleep(1.1)  # creationTimestamp has a resolution of a second
    await create(stack, service("share-b", app="share", ports=(80, 81), annotations=adopt))
    port_b = (await node_ports(stack, "share-b"))[81]

    async def b_on_81_only() -> bool:
        return await bound() == {80: {port_a}, 81: {port_b}} and await has_event(
            stack.client, "share-b", "ListenerConflict"
        )

    await support.wait_until(b_on_81_only, timeout=DEADLINE, interval=0.1)
    [conflict] = [
        e for e in await events_for(stack.client, "share-b") if e.reason == "ListenerConflict"
    ]
    assert conflict.type == "Warning"
    assert "Service default/share-a" in conflict.message and "Port 80" in conflict.message
    svc = await stack.client.get(Service, "share-b", namespace=NS)
    assert svc.metadata.annotations[LISTENERS] == f"{lb_id}=TCP:81"
    # share-a's listener is left as it is, sync after sync.
    await asyncio.sleep(0.5)
    assert (await bound())[80] == {port_a}

    await stack.client.delete(Service, "share-b", namespace=NS)
    await support.wait_until(lambda: service_gone(stack, "share-b"), timeout=DEADLINE, interval=0.1)
    assert await bound() == {80: {port_a}}
    assert not await has_event(stack.client, "share-a", "ListenerConflict")


# --- mode toggle -------------------------------------------------------------------------------


class Sampler:
    """Reads the CLB's targets every ~50 ms in the background and keeps every sample."""

    def __init__(self, stack: Stack, lb_id: str) -> None:
        self.stack, self.lb_id = stack, lb_id
        self.samples: list[tuple[float, set[tuple[str, int]]]] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        clb = support.async_client(self.stack.emulator)
        request = models.DescribeTargetsRequest()
        request.LoadBalancerId = self.lb_id
        try:
            while True:
                answer = await clb.DescribeTargets(request)
                got = {
                    (t.InstanceId or (t.PrivateIpAddresses or [""])[0], int(t.Port))
                    for listener in answer.Listeners or []
                    for t in listener.Targets or []
                }
                self.samples.append((time.monotonic(), got))
                await asyncio.sleep(0.05)
        finally:
            await clb.close()

    def __enter__(self) -> Sampler:
        self._task = asyncio.create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()  # on an error; stop() is the normal way out

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def test_toggling_direct_access_never_leaves_zero_backends(tmp_path: Path) -> None:
    # Slow target calls (0.2 s each): each swap lasts long enough for the sampler to watch it
    # happen, not just its two ends.
    slow = {"time_scale": 0.2, "latency": LatencyModel(batch_base=1.0)}
    async with running_stack(tmp_path, emulator_overrides=slow) as stack:
        await toggle_both_ways(stack)


async def toggle_both_ways(stack: Stack) -> None:
    await create(
        stack,
        deployment("tog", replicas=3, eni=True),
        service("tog-svc", app="tog", annotations={DIRECT_ACCESS: "true"}),
    )
    port = (await node_ports(stack, "tog-svc"))[80]

    async def pods() -> set[tuple[str, int]]:
        ips = await pod_ips(stack.client, {"app": "tog"})
        return {(ip, 80) for ip in ips} if len(ips) == 3 else set()

    async def nodes() -> set[tuple[str, int]]:
        return {(ins, port) for ins in await schedulable_instances(stack)}

    lb_id = await wait_targets(stack, "tog-svc", pods, what="direct")

    async def toggle(value: str) -> None:
        await stack.client.patch(
            Service,
            "tog-svc",
            {"metadata": {"annotations": {DIRECT_ACCESS: value}}},
            namespace=NS,
            patch_type=PatchType.MERGE,
        )

    with Sampler(stack, lb_id) as sampler:
        await toggle("false")
        await wait_targets(stack, "tog-svc", nodes, what="toggled to nodes")
        await toggle("true")
        await wait_targets(stack, "tog-svc", pods, what="toggled back to pods")
        await sampler.stop()

    samples = [got for _, got in sampler.samples]
    empty = [round(at - sampler.samples[0][0], 3) for at, got in sampler.samples if not got]
    assert not empty, f"the CLB had no target at {empty} s into the toggles"
    assert len(samples) >= 6, len(samples)  # four target calls of 0.2 s, sampled every 50 ms
    # The sampler saw both backend sets, so it watched the swaps happen.
    node_set, pod_set = await nodes(), await pods()
    assert any(got == node_set for got in samples) and any(got == pod_set for got in samples)
    # ... and caught at least one in the middle: both sets bound at once (registered first).
    assert any(got == node_set | pod_set for got in samples)


# --- cluster version ---------------------------------------------------------------------------


async def test_direct_access_is_refused_below_1_12(tmp_path: Path) -> None:
    async with running_stack(tmp_path, start_controller=False) as stack:
        stack.server.config.git_version = "v1.11.10"
        stack.start_controller()
        await create(
            stack,
            deployment("old", replicas=2, eni=True),
            service("old-direct", app="old", annotations={DIRECT_ACCESS: "true"}),
            service("old-nodes", app="old"),
        )
        direct_port = (await node_ports(stack, "old-direct"))[80]
        plain_port = (await node_ports(stack, "old-nodes"))[80]

        async def nodes_of(port: int) -> Any:
            async def expected() -> set[tuple[str, int]]:
                return {(ins, port) for ins in await schedulable_instances(stack)}

            return expected

        # The direct Service is bound through its nodes, its neighbour as usual.
        await wait_targets(stack, "old-direct", await nodes_of(direct_port), what="fallback")
        await wait_targets(stack, "old-nodes", await nodes_of(plain_port), what="neighbour")

        async def warned() -> list[Any]:
            return [
                e
                for e in await events_for(stack.client, "old-direct")
                if e.reason == "DirectAccessUnsupported"
            ]

        await support.wait_until(warned, timeout=DEADLINE, interval=0.1)
        [event, *_] = await warned()
        assert event.type == "Warning"
        assert "v1.11.10" in event.message and "1.12" in event.message
        assert DIRECT_ACCESS in event.message
        assert not [e for e in await events_for(stack.client, "old-nodes") if e.type == "Warning"]

        # Bound through its nodes, the direct Service follows node changes like its neighbour
        # (the node-event filter asks the model's question, not the annotation's).
        await stack.client.patch(Node, "node-2", {"spec": {"unschedulable": True}})
        await wait_targets(stack, "old-nodes", await nodes_of(plain_port), what="cordon (nodes)")
        old_direct = await wait_targets(
            stack, "old-direct", await nodes_of(direct_port), what="cordon"
        )
        assert ("ins-node0002", direct_port) not in await targets(stack.emulator, old_direct)
