"""The Deployment and ReplicaSet controllers behind an in-process API server.

A test-only kubelet (``FakeKubelet``) makes every pod Running with its containers ready; the
pod is Ready only when all its readiness gates are True, as with the real kubelet. The gate is
added by a real HTTPS mutating webhook (what directlb's own webhook does), so pods created by
the ReplicaSet controller stay unready until a test opens their gate, and a rolling update
stalls exactly where maxSurge/maxUnavailable say it must.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from directlb.sim import meta
from directlb.sim.api import Api, WriteOptions
from directlb.sim.cluster import rollout
from directlb.sim.cluster.config import ClusterConfig
from directlb.sim.cluster.workloads import WorkloadControllers, controller_ref, pod_ready
from directlb.sim.contracts import Obj, StatusError
from directlb.sim.server import ApiServer
from directlb.sim.storage import DELETED, Event, StoreKey
from tests.sim_certs import CertAuthority
from tests.sim_support import Kubectl, wait_for
from tests.sim_webhooks import (
    GATE,
    WebhookServer,
    add_readiness_gate,
    deny,
    mutating,
    validating,
    webhook,
)

pytestmark = pytest.mark.asyncio

NS = "default"
KUBELET = WriteOptions(user="system:node:fake", field_validation="Ignore")


# ----- a fake kubelet ------------------------------------------------------------------------


class FakeKubelet:
    """Runs every pod at once: phase Running, ContainersReady True; Ready when every readiness
    gate condition is True (reason ReadinessGatesNotReady otherwise), like the real kubelet."""

    def __init__(self, api: Api) -> None:
        self.api = api
        info = api.registry.get("", "v1", "pods")
        assert info is not None
        self.info = info
        self._dirty: set[tuple[str, str]] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        api.store.listeners.append(self._on_event)

    def _on_event(self, store_key: StoreKey, event: Event) -> None:
        if store_key == self.info.store_key and event.type != DELETED:
            self._dirty.add(event.key)
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            dirty, self._dirty = self._dirty, set()
            for key in sorted(dirty):
                await self._sync(key)

    async def _sync(self, key: tuple[str, str]) -> None:
        stored = self.api.store.get(self.info.store_key, key)
        if stored is None or stored.obj["metadata"].get("deletionTimestamp"):
            return
        pod = stored.copy()
        status = pod.setdefault("status", {})
        now = meta.timestamp()
        conditions = {c["type"]: c for c in status.get("conditions") or []}
        gates = [g["conditionType"] for g in pod["spec"].get("readinessGates") or []]
        missing = [g for g in gates if conditions.get(g, {}).get("status") != "True"]
        ready = "False" if missing else "True"
        wanted = {
            "PodScheduled": ("True", None),
            "Initialized": ("True", None),
            "ContainersReady": ("True", None),
            "Ready": (ready, "ReadinessGatesNotReady" if missing else None),
        }
        changed = status.get("phase") != "Running"
        status["phase"] = "Running"
        for kind, (value, reason) in wanted.items():
            current = conditions.get(kind)
            if current is not None and current.get("status") == value:
                continue
            condition: Obj = {"type": kind, "status": value, "lastTransitionTime": now}
            if reason:
                condition["reason"] = reason
                condition["message"] = f"corresponding condition of pod readiness gate {missing}"
            conditions[kind] = condition
            changed = True
        if not changed:
            return
        status["conditions"] = list(conditions.values())
        try:
            await self.api.update(
                self.info,
                namespace=key[0],
                name=key[1],
                body=pod,
                subresource="status",
                opts=KUBELET,
            )
        except StatusError as error:
            if error.code in (404, 409):
                self._dirty.add(key)
                self._wake.set()
                return
            raise


# ----- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def ca() -> CertAuthority:
    return CertAuthority.create()


@pytest.fixture
async def gate_hook(sim: ApiServer, ca: CertAuthority) -> AsyncIterator[WebhookServer]:
    """directlb's webhook stand-in: every pod created gets the load-balancer readiness gate."""
    server = WebhookServer(ca.issue(dns=["webhook.ns.svc"], ips=["127.0.0.1"]))
    await server.start()
    url = server.route("/mutate", add_readiness_gate)
    config = mutating("directlb", webhook("pods.directlb.io", url=url, ca_bundle=ca.bundle()))
    info = sim.api.registry.get(
        "admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations"
    )
    assert info is not None
    await sim.api.create(info, namespace="", body=config, opts=WriteOptions())
    yield server
    await server.stop()


@pytest.fixture
async def cluster(sim: ApiServer) -> AsyncIterator[Cluster]:
    controllers = WorkloadControllers(api=sim.api, config=ClusterConfig(nodes=0))
    kubelet = FakeKubelet(sim.api)
    controllers.start()
    kubelet.start()
    yield Cluster(sim.api, controllers)
    await kubelet.stop()
    await controllers.stop()


class Cluster:
    """Reads and writes for the tests, in process."""

    def __init__(self, api: Api, controllers: WorkloadControllers) -> None:
        self.api = api
        self.controllers = controllers
        self.pods = self._info("", "v1", "pods")
        self.deployments = self._info("apps", "v1", "deployments")
        self.replicasets = self._info("apps", "v1", "replicasets")

    def _info(self, group: str, version: str, resource: str) -> Any:
        info = self.api.registry.get(group, version, resource)
        assert info is not None
        return info

    def deployment(self, name: str) -> Obj:
        return self.api.get(self.deployments, namespace=NS, name=name)

    def pod_list(self, app: str) -> list[Obj]:
        return [
            s.obj
            for _, s in self.api.store.items(self.pods.store_key, NS)
            if (s.obj["metadata"].get("labels") or {}).get("app") == app
        ]

    def replica_sets(self, deployment: str) -> list[Obj]:
        uid = self.deployment(deployment)["metadata"]["uid"]
        found = [
            s.obj
            for _, s in self.api.store.items(self.replicasets.store_key, NS)
            if (controller_ref(s.obj) or {}).get("uid") == uid
        ]
        return sorted(found, key=lambda rs: int(rs["metadata"]["annotations"][rollout.REVISION]))

    async def create(self, body: Obj) -> Obj:
        return await self.api.create(self.deployments, namespace=NS, body=body, opts=WriteOptions())

    async def change(self, name: str, edit: Callable[[Obj], None]) -> Obj:
        while True:
            obj = self.deployment(name)
            edit(obj)
            try:
                return await self.api.update(
                    self.deployments, namespace=NS, name=name, body=obj, opts=WriteOptions()
                )
            except StatusError as error:
                if error.code != 409:
                    raise

    async def open_gates(self, pods: list[Obj]) -> None:
        for pod in pods:
            await self._set_gate(pod["metadata"]["name"], "True")

    async def _set_gate(self, name: str, value: str) -> None:
        while True:
            stored = self.api.store.get(self.pods.store_key, (NS, name))
            if stored is None:
                return
            pod = stored.copy()
            status = pod.setdefault("status", {})
            conditions = [c for c in status.get("conditions") or [] if c["type"] != GATE]
            conditions.append(
                {"type": GATE, "status": value, "lastTransitionTime": meta.timestamp()}
            )
            status["conditions"] = conditions
            try:
                await self.api.update(
                    self.pods,
                    namespace=NS,
                    name=name,
                    body=pod,
                    subresource="status",
                    opts=WriteOptions(),
                )
                return
            except StatusError as error:
                if error.code != 409:
                    raise

    async def settled(self, check: Callable[[], bool], *, timeout: float = 10.0) -> None:
        """Wait until the controllers have nothing left to do and ``check()`` holds."""

        async def done() -> bool:
            return self.controllers.idle and check()

        await wait_for(done, timeout=timeout)


class Census:
    """Counts an app's pods and Ready pods at every pod event: the most pods and the fewest
    Ready ones ever seen, once armed."""

    def __init__(self, cluster: Cluster, app: str) -> None:
        self.cluster = cluster
        self.app = app
        self.max_pods = 0
        self.min_ready: int | None = None
        self.samples: list[tuple[int, int]] = []
        cluster.api.store.listeners.append(self._on_event)

    def _on_event(self, store_key: StoreKey, event: Event) -> None:
        if store_key != self.cluster.pods.store_key:
            return
        pods = self.cluster.pod_list(self.app)
        ready = sum(1 for p in pods if pod_ready(p))
        self.samples.append((len(pods), ready))
        self.max_pods = max(self.max_pods, len(pods))
        self.min_ready = ready if self.min_ready is None else min(self.min_ready, ready)


def web(
    name: str = "web",
    *,
    replicas: int = 3,
    strategy: Obj | None = None,
    image: str = "nginx:1.25",
    **spec: Any,
) -> Obj:
    labels = {"app": name}
    body: Obj = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "web", "image": image}]},
            },
            **spec,
        },
    }
    if strategy is not None:
        body["spec"]["strategy"] = strategy
    return body


def set_image(image: str) -> Callable[[Obj], None]:
    def edit(d: Obj) -> None:
        d["spec"]["template"]["spec"]["containers"][0]["image"] = image

    return edit


def images(pods: list[Obj]) -> list[str]:
    return sorted(p["spec"]["containers"][0]["image"] for p in pods)


def condition(obj: Obj, kind: str) -> Obj:
    found = rollout.get_condition(obj.get("status") or {}, kind)
    assert found is not None, f"no {kind} condition in {obj.get('status')}"
    return found


# ----- tests ---------------------------------------------------------------------------------


async def test_deployment_creates_a_replica_set_and_its_pods(
    cluster: Cluster, gate_hook: WebhookServer
) -> None:
    await cluster.create(web(replicas=3))
    await cluster.settled(lambda: len(cluster.pod_list("web")) == 3)
    [rs] = cluster.replica_sets("web")
    d = cluster.deployment("web")
    pod_hash = rs["metadata"]["labels"][rollout.HASH_LABEL]
    assert rs["metadata"]["name"] == f"web-{pod_hash}"
    assert len(pod_hash) >= 8 and set(pod_hash) <= set("bcdfghjklmnpqrstvwxz2456789")
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", rollout.HASH_LABEL: pod_hash}
    assert controller_ref(rs) == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "web",
        "uid": d["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    annotations = rs["metadata"]["annotations"]
    assert annotations[rollout.REVISION] == "1"
    assert annotations[rollout.DESIRED_REPLICAS] == "3"
    assert annotations[rollout.MAX_REPLICAS] == "4"  # 3 + 25% rounded up
    assert d["metadata"]["annotations"][rollout.REVISION] == "1"
    for pod in cluster.pod_list("web"):
        assert pod["metadata"]["name"].startswith(f"web-{pod_hash}-")
        assert len(pod["metadata"]["name"]) == len(f"web-{pod_hash}-") + 5
        assert pod["metadata"]["labels"] == {"app": "web", rollout.HASH_LABEL: pod_hash}
        assert controller_ref(pod)["uid"] == rs["metadata"]["uid"]  # type: ignore[index]
        # Through admission: the webhook's readiness gate holds the pod unready.
        assert [g["conditionType"] for g in pod["spec"]["readinessGates"]] == [GATE]
        assert not pod_ready(pod)
    # 0/3 Ready: the Deployment is not Available and its rollout is still progressing.
    d = cluster.deployment("web")
    assert d["status"]["replicas"] == 3 and d["status"]["updatedReplicas"] == 3
    assert "readyReplicas" not in d["status"]
    assert d["status"]["unavailableReplicas"] == 3
    assert condition(d, "Available")["status"] == "False"
    assert condition(d, "Available")["reason"] == "MinimumReplicasUnavailable"
    assert condition(d, "Progressing")["reason"] in ("NewReplicaSetCreated", "ReplicaSetUpdated")

    await cluster.open_gates(cluster.pod_list("web"))

    def complete() -> bool:
        status = cluster.deployment("web").get("status") or {}
        return status.get("availableReplicas") == 3

    await cluster.settled(complete)
    d = cluster.deployment("web")
    assert d["status"]["observedGeneration"] == d["metadata"]["generation"]
    assert d["status"]["readyReplicas"] == 3 and "unavailableReplicas" not in d["status"]
    assert condition(d, "Available")["reason"] == "MinimumReplicasAvailable"
    progressing = condition(d, "Progressing")
    assert progressing["status"] == "True"
    assert progressing["reason"] == "NewReplicaSetAvailable"
    assert progressing["message"] == f'ReplicaSet "web-{pod_hash}" has successfully progressed.'
    [rs] = cluster.replica_sets("web")
    assert rs["status"] == {
        "replicas": 3,
        "fullyLabeledReplicas": 3,
        "readyReplicas": 3,
        "availableReplicas": 3,
        "observedGeneration": 1,
    }


async def test_rolling_update_moves_only_as_far_as_surge_and_unavailability_allow(
    cluster: Cluster, gate_hook: WebhookServer
) -> None:
    # 3 replicas, maxSurge 34% -> 2 (rounded up), maxUnavailable 50% -> 1 (rounded down):
    # at most 5 pods, at least 2 Ready at every moment of the rollout.
    strategy = {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": "34%", "maxUnavailable": "50%"},
    }
    await cluster.create(web(replicas=3, strategy=strategy))
    await cluster.settled(lambda: len(cluster.pod_list("web")) == 3)
    await cluster.open_gates(cluster.pod_list("web"))
    await cluster.settled(
        lambda: (cluster.deployment("web").get("status") or {}).get("availableReplicas") == 3
    )
    census = Census(cluster, "web")

    await cluster.change("web", set_image("nginx:1.26"))

    # The new ReplicaSet surges to 2, one old pod goes, the new one takes the third slot; then
    # nothing moves while the new pods are unready.
    def stalled() -> bool:
        rss = cluster.replica_sets("web")
        return len(rss) == 2 and [r["spec"]["replicas"] for r in rss] == [2, 3]

    await cluster.settled(stalled)
    assert images(cluster.pod_list("web")) == ["nginx:1.25"] * 2 + ["nginx:1.26"] * 3
    d = cluster.deployment("web")
    assert d["metadata"]["annotations"][rollout.REVISION] == "2"
    assert d["status"]["updatedReplicas"] == 3 and d["status"]["availableReplicas"] == 2
    assert condition(d, "Available")["status"] == "True"  # 2 >= 3 - 1
    assert condition(d, "Progressing")["reason"] == "ReplicaSetUpdated"

    # Each new pod that becomes Ready lets exactly one old pod go.
    new_pods = sorted(
        (p for p in cluster.pod_list("web") if images([p]) == ["nginx:1.26"]),
        key=lambda p: p["metadata"]["name"],
    )
    await cluster.open_gates(new_pods[:1])
    await cluster.settled(
        lambda: [r["spec"]["replicas"] for r in cluster.replica_sets("web")] == [1, 3]
    )
    assert len(cluster.pod_list("web")) == 4
    await cluster.open_gates(new_pods[1:])

    def done() -> bool:
        status = cluster.deployment("web").get("status") or {}
        return (
            status.get("availableReplicas") == 3
            and status.get("replicas") == 3
            and condition(cluster.deployment("web"), "Progressing")["reason"]
            == "NewReplicaSetAvailable"
        )

    await cluster.settled(done)
    assert images(cluster.pod_list("web")) == ["nginx:1.26"] * 3
    assert [r["spec"]["replicas"] for r in cluster.replica_sets("web")] == [0, 3]
    assert census.max_pods == 5
    assert census.min_ready == 2
    assert all(total <= 5 and ready >= 2 for total, ready in census.samples)


async def test_max_surge_zero_replaces_one_pod_at_a_time(
    cluster: Cluster, gate_hook: WebhookServer
) -> None:
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
    await cluster.create(web(replicas=3, strategy=strategy))
    await cluster.settled(lambda: len(cluster.pod_list("web")) == 3)
    await cluster.open_gates(cluster.pod_list("web"))
    await cluster.settled(
        lambda: (cluster.deployment("web").get("status") or {}).get("availableReplicas") == 3
    )
    census = Census(cluster, "web")
    await cluster.change("web", set_image("nginx:1.26"))
    for step in range(1, 4):
        # One old pod down, one new up; the rollout waits for it to be Ready.
        await cluster.settled(
            lambda step=step: (
                [r["spec"]["replicas"] for r in cluster.replica_sets("web")]  # type: ignore[misc]
                == [3 - step, step]
                and len(cluster.pod_list("web")) == 3
            )
        )
        new = [p for p in cluster.pod_list("web") if images([p]) == ["nginx:1.26"]]
        await cluster.open_gates([p for p in new if not pod_ready(p)])
    await cluster.settled(
        lambda: (
            (cluster.deployment("web").get("status") or {}).get("availableReplicas") == 3
            and len(cluster.pod_list("web")) == 3
        )
    )
    assert census.max_pods == 3 and census.min_ready == 2


async def test_recreate_removes_every_old_pod_before_creating_new_ones(
    cluster: Cluster, gate_hook: WebhookServer
) -> None:
    await cluster.create(web(replicas=2, strategy={"type": "Recreate"}))
    await cluster.settled(lambda: len(cluster.pod_list("web")) == 2)
    await cluster.open_gates(cluster.pod_list("web"))
    await cluster.settled(
        lambda: (cluster.deployment("web").get("status") or {}).get("availableReplicas") == 2
    )
    mixed: list[list[str]] = []

    def watch(store_key: StoreKey, event: Event) -> None:
        if store_key == cluster.pods.store_key and len(set(images(cluster.pod_list("web")))) > 1:
            mixed.append(images(cluster.pod_list("web")))

    cluster.api.store.listeners.append(watch)
    await cluster.change("web", set_image("nginx:1.26"))
    await cluster.settled(lambda: images(cluster.pod_list("web")) == ["nginx:1.26"] * 2)
    assert mixed == []
    rss = cluster.replica_sets("web")
    assert [r["spec"]["replicas"] for r in rss] == [0, 2]
    assert rss[1]["metadata"]["annotations"][rollout.MAX_REPLICAS] == "2"  # no surge


async def test_scaling_up_and_down_deletes_unready_pods_first(
    cluster: Cluster, gate_hook: WebhookServer
) -> None:
    await cluster.create(web(replicas=2))
    await cluster.settled(lambda: len(cluster.pod_list("web")) == 2)
    await cluster.open_gates(cluster.pod_list("web"))
    ready = {p["metadata"]["name"] for p in cluster.pod_list("web")}

    def set_replicas(n: int) -> Callable[[Obj], None]:
        def edit(d: Obj) -> None:
            d["spec"]["replicas"] = n

        return edit

    await cluster.change("web", set_replicas(5))
    await cluster.settled(lambda: len(cluster.pod_list("web")) == 5)
    [rs] = cluster.replica_sets("web")
    assert rs["spec"]["replicas"] == 5
    assert rs["metadata"]["annotations"][rollout.DESIRED_REPLICAS] == "5"
    assert rs["metadata"]["annotations"][rollout.MAX_REPLICAS] == "7"
    # Scale down to 2: the three new pods are not Ready, so they are the ones to go.
    await cluster.change("web", set_replicas(2))
    await cluster.settled(lambda: len(cluster.pod_list("web")) == 2)
    assert {p["metadata"]["name"] for p in cluster.pod_list("web")} == ready
    await cluster.change("web", set_replicas(0))
    await cluster.settled(lambda: not cluster.pod_list("web"))
    d = cluster.deployment("web")
    assert condition(d, "Available")["status"] == "True"  # 0 of 0 is enough
    assert cluster.deployment("web")["metadata"]["annotations"][rollout.REVISION] == "1"


async def test_replica_set_adopts_releases_and_replaces_pods(cluster: Cluster) -> None:
    labels = {"app": "solo"}
    stray = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "stray", "labels": labels},
        "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]},
    }
    await cluster.api.create(cluster.pods, namespace=NS, body=stray, opts=WriteOptions())
    rs_body = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": "solo"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": copy.deepcopy(stray) | {"metadata": {"labels": labels}},
        },
    }
    del rs_body["spec"]["template"]["apiVersion"]  # type: ignore[index]
    del rs_body["spec"]["template"]["kind"]  # type: ignore[index]
    rs = await cluster.api.create(
        cluster.replicasets, namespace=NS, body=rs_body, opts=WriteOptions()
    )
    uid = rs["metadata"]["uid"]

    def owned() -> set[str]:
        return {
            p["metadata"]["name"]
            for p in cluster.pod_list("solo")
            if (controller_ref(p) or {}).get("uid") == uid
        }

    # The orphan that matches is adopted: one pod created, not two.
    await cluster.settled(lambda: len(owned()) == 2 and "stray" in owned())
    assert len(cluster.pod_list("solo")) == 2
    [other] = owned() - {"stray"}
    assert other.startswith("solo-") and len(other) == len("solo-") + 5
    # A deleted pod is replaced.
    await cluster.api.delete(
        cluster.pods, namespace=NS, name=other, options={}, opts=WriteOptions()
    )
    await cluster.settled(lambda: len(owned()) == 2 and other not in owned())
    # A pod relabelled out of the selector is released and replaced.
    pod = cluster.api.get(cluster.pods, namespace=NS, name="stray")
    pod["metadata"]["labels"] = {"app": "elsewhere"}
    await cluster.api.update(
        cluster.pods, namespace=NS, name="stray", body=pod, opts=WriteOptions()
    )
    await cluster.settled(lambda: len(owned()) == 2 and "stray" not in owned())
    assert controller_ref(cluster.api.get(cluster.pods, namespace=NS, name="stray")) is None
    status = cluster.api.get(cluster.replicasets, namespace=NS, name="solo")["status"]
    assert status["replicas"] == 2 and status["observedGeneration"] == 1


async def test_revisions_history_limit_and_rollback(
    cluster: Cluster, gate_hook: WebhookServer
) -> None:
    await cluster.create(web(replicas=1, revisionHistoryLimit=1))
    await cluster.settled(lambda: len(cluster.pod_list("web")) == 1)

    async def roll(image: str) -> None:
        await cluster.change("web", set_image(image))
        await cluster.settled(lambda: image in images(cluster.pod_list("web")))
        await cluster.open_gates(cluster.pod_list("web"))
        await cluster.settled(
            lambda: (
                images(cluster.pod_list("web")) == [image]
                and condition(cluster.deployment("web"), "Progressing")["reason"]
                == "NewReplicaSetAvailable"
                and (cluster.deployment("web").get("status") or {}).get("replicas") == 1
            )
        )

    await cluster.open_gates(cluster.pod_list("web"))
    await roll("nginx:1.26")
    await roll("nginx:1.27")
    await cluster.settled(lambda: len(cluster.replica_sets("web")) == 2)
    # Revision 1 was cleaned up (history limit 1); 2 and 3 remain.
    rss = cluster.replica_sets("web")
    assert [r["metadata"]["annotations"][rollout.REVISION] for r in rss] == ["2", "3"]
    assert cluster.deployment("web")["metadata"]["annotations"][rollout.REVISION] == "3"
    # Rolling back to the 1.26 template reuses its ReplicaSet with a new revision.
    first_26 = rss[0]["metadata"]["name"]
    await roll("nginx:1.26")
    rss = cluster.replica_sets("web")
    assert [r["metadata"]["name"] for r in rss][-1] == first_26
    annotations = rss[-1]["metadata"]["annotations"]
    assert annotations[rollout.REVISION] == "4"
    assert annotations[rollout.REVISION_HISTORY] == "2"
    assert cluster.deployment("web")["metadata"]["annotations"][rollout.REVISION] == "4"


async def test_min_ready_seconds_delays_availability(
    cluster: Cluster, gate_hook: WebhookServer
) -> None:
    # Ready times have second precision: 2 s leaves at least one second to look in.
    await cluster.create(web(replicas=1, minReadySeconds=2))
    await cluster.settled(lambda: len(cluster.pod_list("web")) == 1)
    [rs] = cluster.replica_sets("web")
    assert rs["spec"]["minReadySeconds"] == 2
    await cluster.open_gates(cluster.pod_list("web"))
    await cluster.settled(
        lambda: cluster.replica_sets("web")[0]["status"].get("readyReplicas") == 1
    )
    assert "availableReplicas" not in cluster.replica_sets("web")[0]["status"]
    await cluster.settled(
        lambda: (cluster.deployment("web").get("status") or {}).get("availableReplicas") == 1,
        timeout=6,
    )


async def test_progress_deadline_exceeded(cluster: Cluster, gate_hook: WebhookServer) -> None:
    await cluster.create(web(replicas=1, progressDeadlineSeconds=1))

    def timed_out() -> bool:
        found = rollout.get_condition(cluster.deployment("web").get("status") or {}, "Progressing")
        return found is not None and found["reason"] == "ProgressDeadlineExceeded"

    await cluster.settled(timed_out, timeout=8)
    progressing = condition(cluster.deployment("web"), "Progressing")
    assert progressing["status"] == "False"
    rs_name = cluster.replica_sets("web")[0]["metadata"]["name"]
    assert progressing["message"] == f'ReplicaSet "{rs_name}" has timed out progressing.'
    # Progress afterwards turns it back.
    await cluster.open_gates(cluster.pod_list("web"))
    await cluster.settled(
        lambda: (
            condition(cluster.deployment("web"), "Progressing")["reason"]
            == "NewReplicaSetAvailable"
        )
    )


async def test_kubectl_rollout_status_waits_then_succeeds(
    cluster: Cluster, gate_hook: WebhookServer, kubectl: Kubectl
) -> None:
    await cluster.create(web(replicas=2))
    await cluster.settled(lambda: len(cluster.pod_list("web")) == 2)
    watcher = await kubectl.start("rollout", "status", "deployment/web", "--timeout=60s")
    try:
        line = await watcher.line()
        assert line.startswith('Waiting for deployment "web" rollout to finish: 0 of 2 updated')
        await cluster.open_gates(cluster.pod_list("web"))
        assert await watcher.finish() == 0
        assert watcher.process.stdout is not None
        rest = (await watcher.process.stdout.read()).decode()
        assert 'deployment "web" successfully rolled out' in rest
    finally:
        await watcher.stop()
    # A rollout that cannot finish before its deadline makes kubectl fail.
    await cluster.change("web", lambda d: d["spec"].__setitem__("progressDeadlineSeconds", 1))
    await cluster.change("web", set_image("nginx:1.26"))
    out = await kubectl.run("rollout", "status", "deployment/web", "--timeout=30s", check=False)
    assert 'deployment "web" exceeded its progress deadline' in out
    history = await kubectl.run("rollout", "history", "deployment/web")
    assert "1" in history and "2" in history
    # kubectl's client-side undo puts revision 1's template back: its ReplicaSet is reused
    # (revision 3) and the stuck new pod goes.
    await kubectl.run("rollout", "undo", "deployment/web")
    out = await kubectl.run("rollout", "status", "deployment/web", "--timeout=30s")
    assert 'deployment "web" successfully rolled out' in out
    await cluster.settled(lambda: images(cluster.pod_list("web")) == ["nginx:1.25"] * 2)
    assert cluster.deployment("web")["metadata"]["annotations"][rollout.REVISION] == "3"


async def test_paused_deployment_scales_but_does_not_roll(
    cluster: Cluster, gate_hook: WebhookServer
) -> None:
    await cluster.create(web(replicas=2))
    await cluster.settled(lambda: len(cluster.pod_list("web")) == 2)

    def pause(d: Obj) -> None:
        d["spec"]["paused"] = True
        d["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.26"
        d["spec"]["replicas"] = 3

    await cluster.change("web", pause)
    await cluster.settled(lambda: len(cluster.pod_list("web")) == 3)
    assert images(cluster.pod_list("web")) == ["nginx:1.25"] * 3
    assert condition(cluster.deployment("web"), "Progressing")["reason"] == "DeploymentPaused"
    await cluster.change("web", lambda d: d["spec"].__setitem__("paused", False))
    await cluster.settled(lambda: "nginx:1.26" in images(cluster.pod_list("web")))


async def test_scaling_mid_rollout_is_proportional(
    cluster: Cluster, gate_hook: WebhookServer
) -> None:
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 2, "maxUnavailable": 0}}
    await cluster.create(web(replicas=4, strategy=strategy))
    await cluster.settled(lambda: len(cluster.pod_list("web")) == 4)
    await cluster.open_gates(cluster.pod_list("web"))
    await cluster.settled(
        lambda: (cluster.deployment("web").get("status") or {}).get("availableReplicas") == 4
    )
    await cluster.change("web", set_image("nginx:1.26"))
    await cluster.settled(
        lambda: [r["spec"]["replicas"] for r in cluster.replica_sets("web")] == [4, 2]
    )

    def scale(d: Obj) -> None:
        d["spec"]["replicas"] = 8

    await cluster.change("web", scale)
    # 6 of 8+2 → old 4 * 10/6 = 6.67 → 7, new 2 * 10/6 = 3.33 → 3 (total 10).
    await cluster.settled(
        lambda: [r["spec"]["replicas"] for r in cluster.replica_sets("web")] == [7, 3]
    )
    assert all(
        r["metadata"]["annotations"][rollout.DESIRED_REPLICAS] == "8"
        for r in cluster.replica_sets("web")
    )
    assert copy.deepcopy(cluster.deployment("web"))["spec"]["replicas"] == 8


async def test_a_stale_old_replica_set_status_does_not_scale_below_min_available(
    cluster: Cluster, gate_hook: WebhookServer
) -> None:
    """The race real controllers run: the ReplicaSet controller scales an old ReplicaSet down
    and reports the pods it listed before deleting one (spec 9, available 10); a Deployment
    sync that reads that status before the next ReplicaSet sync must not take the deleted pod
    for an available one (cleanupUnhealthyReplicas' "invalid request to scale down" ends
    reconcileOldReplicaSets). Driven by hand, sync by sync, so the interleaving is certain."""
    strategy = {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0},
    }
    await cluster.create(web(replicas=10, strategy=strategy))
    await cluster.settled(lambda: len(cluster.pod_list("web")) == 10)
    await cluster.open_gates(cluster.pod_list("web"))
    await cluster.settled(
        lambda: (cluster.deployment("web").get("status") or {}).get("availableReplicas") == 10
    )
    await cluster.change("web", set_image("nginx:1.26"))
    await cluster.settled(
        lambda: [r["spec"]["replicas"] for r in cluster.replica_sets("web")] == [10, 3]
    )
    census = Census(cluster, "web")
    await cluster.controllers.stop()  # from here on, syncs run only when the test says so
    replicasets = cluster.controllers.replicasets
    deployments = cluster.controllers.deployments
    old, new = ((NS, r["metadata"]["name"]) for r in cluster.replica_sets("web"))
    new_pods = sorted(
        (p for p in cluster.pod_list("web") if images([p]) == ["nginx:1.26"]),
        key=lambda p: p["metadata"]["name"],
    )

    def ready() -> int:
        return sum(pod_ready(p) for p in cluster.pod_list("web"))

    def sizes() -> list[int]:
        return [r["spec"]["replicas"] for r in cluster.replica_sets("web")]

    async def make_ready(pods: list[Obj]) -> None:
        names = {p["metadata"]["name"] for p in pods}
        await cluster.open_gates(pods)

        async def all_ready() -> bool:
            pods = cluster.pod_list("web")
            return sum(pod_ready(p) for p in pods if p["metadata"]["name"] in names) == len(names)

        await wait_for(all_ready)

    await make_ready(new_pods[:1])
    await replicasets._sync(new)  # new: 3 pods, 1 available
    await deployments._sync((NS, "web"))  # 10 + 1 available: one old pod may go
    assert sizes() == [9, 3]
    await replicasets._sync(old)  # deletes a pod, reports the 10 it listed before
    status = cluster.replica_sets("web")[0]["status"]
    assert (status["replicas"], status["availableReplicas"]) == (10, 10)
    assert ready() == 10
    await deployments._sync((NS, "web"))  # room for one more new pod
    assert sizes() == [9, 4]

    await make_ready(new_pods[1:])
    await replicasets._sync(new)  # new: spec 4, 3 available
    assert ready() == 12  # 9 old + 3 new
    # maxScaledDown = 13 - 10 - (4 - 3) = 2, but the old ReplicaSet's status (spec 9,
    # available 10) stops reconcileOldReplicaSets; counting its 10 would scale it to 6, for
    # 9 Ready pods.
    await deployments._sync((NS, "web"))
    assert sizes() == [9, 4]
    await replicasets._sync(old)  # now reports 9 available
    assert cluster.replica_sets("web")[0]["status"]["availableReplicas"] == 9
    await deployments._sync((NS, "web"))  # 12 available: 2 old pods may go
    assert sizes() == [7, 4]
    await replicasets._sync(old)
    assert ready() == 10

    cluster.controllers.start()  # the rest of the rollout, opening gates as pods come

    async def finished() -> bool:
        pods = cluster.pod_list("web")
        unready = [p for p in pods if not pod_ready(p) and images([p]) == ["nginx:1.26"]]
        await cluster.open_gates(unready)
        status = cluster.deployment("web").get("status") or {}
        return (
            cluster.controllers.idle
            and images(pods) == ["nginx:1.26"] * 10
            and status.get("availableReplicas") == 10
        )

    await wait_for(finished)
    assert census.min_ready is not None and census.min_ready >= 10


async def test_refused_pods_show_as_replica_failure_until_admitted(
    sim: ApiServer, cluster: Cluster, ca: CertAuthority
) -> None:
    hook = WebhookServer(ca.issue(dns=["webhook.ns.svc"], ips=["127.0.0.1"]))
    await hook.start()
    try:
        url = hook.route("/deny", deny("no pods today"))
        config = validating("refuse", webhook("refuse.directlb.io", url=url, ca_bundle=ca.bundle()))
        info = sim.api.registry.get(
            "admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations"
        )
        assert info is not None
        await sim.api.create(info, namespace="", body=config, opts=WriteOptions())
        await cluster.create(web(replicas=2))

        def failing() -> bool:
            status = cluster.deployment("web").get("status") or {}
            return rollout.get_condition(status, "ReplicaFailure") is not None

        await wait_for(lambda: _true(failing()))
        failure = condition(cluster.deployment("web"), "ReplicaFailure")
        assert failure["reason"] == "FailedCreate"
        assert "no pods today" in failure["message"]
        [rs] = cluster.replica_sets("web")
        assert condition(rs, "ReplicaFailure")["status"] == "True"
        await sim.api.delete(info, namespace="", name="refuse", options={}, opts=WriteOptions())
        # Retried with backoff: the pods come, the condition goes.
        await cluster.settled(lambda: len(cluster.pod_list("web")) == 2 and not failing())
        assert "conditions" not in cluster.replica_sets("web")[0]["status"]
    finally:
        await hook.stop()


async def _true(value: bool) -> bool:
    return value


# ----- with the real cluster -----------------------------------------------------------------


@pytest.fixture
async def real_cluster(sim: ApiServer) -> AsyncIterator[Cluster]:
    from directlb.sim.cluster.cluster import Cluster as SimCluster

    running = SimCluster.for_server(
        sim,
        ClusterConfig(nodes=2, kubelet_sync_seconds=0.05),
        probe_time_scale=0.05,
        optional_parts=("directlb.sim.cluster.workloads",),
    )
    [controllers] = [c for c in running.others if isinstance(c, WorkloadControllers)]
    await running.start()
    yield Cluster(sim.api, controllers)
    await running.stop()


async def test_rollout_on_the_real_cluster_waits_for_readiness_gates(
    real_cluster: Cluster,
) -> None:
    cluster = real_cluster
    body = web(
        replicas=3,
        strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
    )
    template_spec = body["spec"]["template"]["spec"]
    template_spec["readinessGates"] = [{"conditionType": GATE}]
    template_spec["terminationGracePeriodSeconds"] = 0
    await cluster.create(body)

    def running() -> bool:
        pods = cluster.pod_list("web")
        return len(pods) == 3 and all(
            p["spec"].get("nodeName") and (p.get("status") or {}).get("phase") == "Running"
            for p in pods
        )

    await cluster.settled(running)
    assert not any(pod_ready(p) for p in cluster.pod_list("web"))
    assert "readyReplicas" not in cluster.deployment("web")["status"]
    await cluster.open_gates(cluster.pod_list("web"))
    await cluster.settled(
        lambda: (cluster.deployment("web").get("status") or {}).get("availableReplicas") == 3
    )
    census = Census(cluster, "web")
    await cluster.change("web", set_image("nginx:1.26"))

    def rolled() -> bool:
        pods = cluster.pod_list("web")
        return images(pods) == ["nginx:1.26"] * 3 and all(pod_ready(p) for p in pods)

    def waiting() -> bool:
        return any(
            images([p]) == ["nginx:1.26"]
            and not pod_ready(p)
            and (p.get("status") or {}).get("phase") == "Running"
            for p in cluster.pod_list("web")
        )

    opened = 0
    while True:
        # One surge pod at a time; no old pod goes before it is Ready.
        await cluster.settled(lambda: rolled() or waiting())
        if rolled():
            break
        assert len(cluster.pod_list("web")) == 4
        await cluster.open_gates([p for p in cluster.pod_list("web") if not pod_ready(p)])
        opened += 1
    assert opened == 3
    await cluster.settled(
        lambda: (
            condition(cluster.deployment("web"), "Progressing")["reason"]
            == "NewReplicaSetAvailable"
        )
    )
    assert census.max_pods == 4 and census.min_ready == 3
