"""Nodes: registration, the kubelet's node status, and the node controller's share (pod CIDRs,
taints).

``Nodes.create_initial()`` registers ``node-1..N`` (``ClusterConfig.node_prefix``) as their
kubelets would: ``InternalIP`` ``node_cidr`` host N (127.20.0.1, …), zone labels round-robin over
``config.zones``, ``spec.providerID`` ``qcloud:///<zone-id>/<instance-id>`` as on TKE, with a
stable instance id (``ins-node0001`` for ``node-1``; also in the label
``cloud.tencent.com/node-instance-id``) that the CLB emulator can be told about
(``POST /_emulator/instances``), capacity, allocatable, conditions and nodeInfo.

A Node created through the API (``kubectl create -f node.yaml`` with only a name) gets a
kubelet too: whatever it lacks is filled in (address, labels, providerID, podCIDR, status).

What changes a node, through the API:

* cordon: ``spec.unschedulable: true`` (``kubectl cordon``); the node controller adds the
  ``node.kubernetes.io/unschedulable:NoSchedule`` taint, the scheduler skips the node;
* NotReady: annotate the node ``sim.directlb.io/not-ready: "true"`` and its kubelet reports
  ``Ready=False`` (reason ``KubeletNotReady``) until the annotation goes. A ``Ready`` condition
  patched directly through ``nodes/status`` also stays as written: the simulated kubelet only
  rewrites ``Ready`` when its own view changes (registration, the annotation), it does not
  heartbeat. A node whose Ready is not True gets the ``node.kubernetes.io/not-ready:NoSchedule``
  taint and its pods are reported not Ready (the node lifecycle controller's work, done by the
  kubelet component here);
* delete: the node goes; its pods are stopped and deleted (the pod garbage collector's work).

Not modelled: node Leases (``kube-node-lease``) and heartbeats, NoExecute taint eviction.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re

from directlb.sim import meta
from directlb.sim.api import Api, WriteOptions
from directlb.sim.cluster.config import ClusterConfig
from directlb.sim.cluster.machinery import (
    HOSTNAME_LABEL,
    INSTANCE_LABEL,
    NODES,
    NOT_READY_ANNOTATION,
    REGION_LABEL,
    TAINT_NOT_READY,
    TAINT_UNSCHEDULABLE,
    ZONE_LABEL,
    KeyedLoop,
    find_condition,
    log,
    resource,
    set_condition,
)
from directlb.sim.contracts import Obj, StatusError
from directlb.sim.storage import DELETED, Event, ObjKey, StoreKey

NODE_USER = "system:node:{name}"
MAX_PODS = 110
# Tencent Cloud zone ids: <region number> * 100000 + <zone number> (ap-guangzhou-3 -> 100003).
_REGION_NUMBERS = {
    "ap-guangzhou": 1,
    "ap-shanghai": 2,
    "ap-hongkong": 5,
    "ap-beijing": 8,
    "ap-singapore": 9,
    "ap-chengdu": 16,
    "ap-chongqing": 19,
    "ap-nanjing": 33,
}
_NUMBERED = re.compile(r"^(.*?)-?(\d+)$")

CAPACITY = {
    "cpu": "4",
    "ephemeral-storage": "51473868Ki",
    "hugepages-1Gi": "0",
    "hugepages-2Mi": "0",
    "memory": "7896216Ki",
}
ALLOCATABLE = {
    "cpu": "3920m",
    "ephemeral-storage": "47438478872",
    "hugepages-1Gi": "0",
    "hugepages-2Mi": "0",
    "memory": "6833304Ki",
}
CONDITIONS = (
    ("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
    ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
)


def zone_id(zone: str) -> str:
    """``ap-guangzhou-3`` -> ``100003`` (TKE's numeric zone id in providerIDs)."""
    region, _, number = zone.rpartition("-")
    if not number.isdigit():
        return zone
    return str(_REGION_NUMBERS.get(region, 0) * 100000 + int(number))


def instance_id(name: str) -> str:
    """A stable CVM-like instance id: ``node-1`` -> ``ins-node0001``, else a hash."""
    match = _NUMBERED.match(name)
    if match and match.group(1):
        prefix = re.sub(r"[^a-z0-9]", "", match.group(1).lower())[:4]
        if prefix:
            return f"ins-{prefix}{int(match.group(2)):0{8 - len(prefix)}d}"[:12]
    return "ins-" + hashlib.sha256(name.encode()).hexdigest()[:8]


def node_index(name: str) -> int | None:
    match = _NUMBERED.match(name)
    return int(match.group(2)) if match else None


def internal_ip(node: Obj) -> str | None:
    for address in (node.get("status") or {}).get("addresses") or []:
        if isinstance(address, dict) and address.get("type") == "InternalIP":
            return str(address.get("address"))
    return None


def _uuid(hex32: str) -> str:
    return f"{hex32[:8]}-{hex32[8:12]}-{hex32[12:16]}-{hex32[16:20]}-{hex32[20:32]}"


def _region(zone: str) -> str:
    region, _, number = zone.rpartition("-")
    return region if number.isdigit() else zone


class Nodes(KeyedLoop):
    """The kubelets' node registration and status, plus pod CIDR and taint bookkeeping."""

    def __init__(
        self,
        *,
        api: Api,
        config: ClusterConfig,
        kubelet_version: str = "v1.32.4",
        max_pods: int = MAX_PODS,
    ) -> None:
        super().__init__("nodes")
        self.api = api
        self.config = config
        self.kubelet_version = kubelet_version
        self.max_pods = max_pods
        self.info = resource(api, "", "v1", "nodes")
        self._node_net = ipaddress.IPv4Network(config.node_cidr)
        cluster = ipaddress.IPv4Network(config.cluster_cidr)
        self._pod_cidrs = list(cluster.subnets(new_prefix=max(cluster.prefixlen, 24)))
        self._ips: dict[str, str] = {}  # node -> InternalIP
        self._cidrs: dict[str, str] = {}  # node -> podCIDR
        self._reported: dict[str, bool] = {}  # node -> readiness its kubelet last reported
        for _, stored in self.api.store.items(NODES, None):
            self._adopt(stored.obj)
        api.store.listeners.append(self._on_event)

    def _adopt(self, node: Obj) -> None:
        name = str(node["metadata"]["name"])
        ip = internal_ip(node)
        if ip:
            self._ips[name] = ip
        cidr = (node.get("spec") or {}).get("podCIDR")
        if cidr:
            self._cidrs[name] = str(cidr)
        ready = find_condition(node, "Ready")
        if ready is not None:
            self._reported[name] = ready.get("status") == "True"
        self.mark(("", name))

    def start(self) -> None:
        super().start()

    async def stop(self) -> None:
        if self._on_event in self.api.store.listeners:
            self.api.store.listeners.remove(self._on_event)
        await super().stop()

    def _on_event(self, store_key: StoreKey, event: Event) -> None:
        if store_key != NODES:
            return
        if event.type == DELETED:
            name = event.key[1]
            self._ips.pop(name, None)
            self._cidrs.pop(name, None)
            self._reported.pop(name, None)
            return
        self.mark(event.key)

    # ----- registration -------------------------------------------------------------------

    def node_name(self, index: int) -> str:
        return f"{self.config.node_prefix}-{index}"

    async def create_initial(self) -> list[str]:
        """Register ``node-1..N`` (those missing) and return every node's name."""
        for index in range(1, self.config.nodes + 1):
            name = self.node_name(index)
            if self.api.store.get(NODES, ("", name)) is not None:
                continue
            node: Obj = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}
            reported = self._fill(node)
            try:
                await self.api.create(self.info, namespace="", body=node, opts=self._opts(name))
            except StatusError as error:
                if error.code != 409:
                    raise
            else:
                if reported is not None:
                    self._reported[name] = reported
            log.info("event=node_registered node=%s ip=%s", name, self._ips.get(name))
        return sorted(key[1] for key, _ in self.api.store.items(NODES, None))

    def _opts(self, name: str) -> WriteOptions:
        return WriteOptions(
            user=NODE_USER.format(name=name),
            groups=("system:nodes", "system:authenticated"),
            field_validation="Ignore",
        )

    # ----- reconcile ------------------------------------------------------------------------

    async def sync(self, key: ObjKey) -> bool:
        stored = self.api.store.get(NODES, key)
        if stored is None:
            return False
        name = key[1]
        node = stored.copy()
        reported = self._fill(node)
        before = stored.obj
        try:
            if {k: v for k, v in node.items() if k != "status"} != {
                k: v for k, v in before.items() if k != "status"
            }:
                written = await self.api.update(
                    self.info, namespace="", name=name, body=node, opts=self._opts(name)
                )
                node["metadata"]["resourceVersion"] = written["metadata"]["resourceVersion"]
                if node.get("status") == written.get("status"):
                    return self._commit(name, reported)
            if node.get("status") != before.get("status"):
                await self.api.update(
                    self.info,
                    namespace="",
                    name=name,
                    body=node,
                    subresource="status",
                    opts=self._opts(name),
                )
        except StatusError as error:
            if error.code == 409:
                self.mark(key)  # changed meanwhile: redo from the fresh object
                return False
            if error.code == 404:
                return False
            raise
        return self._commit(name, reported)

    def _commit(self, name: str, reported: bool | None) -> bool:
        if reported is not None:
            self._reported[name] = reported
        return False

    def _fill(self, node: Obj) -> bool | None:
        """Everything a kubelet and the node controller would have set, where missing.

        Returns the readiness the kubelet newly reports (None: no news), to remember once
        written."""
        m = node["metadata"]
        name = str(m["name"])
        labels = m.setdefault("labels", {})
        index = node_index(name)
        zones = self.config.zones
        zone = str(
            labels.get(ZONE_LABEL) or zones[((index or len(self._ips) + 1) - 1) % len(zones)]
        )
        ins = instance_id(name)
        for label, value in (
            ("beta.kubernetes.io/arch", "amd64"),
            ("beta.kubernetes.io/os", "linux"),
            ("kubernetes.io/arch", "amd64"),
            ("kubernetes.io/os", "linux"),
            (HOSTNAME_LABEL, name),
            ("node.kubernetes.io/instance-type", "S5.LARGE8"),
            (ZONE_LABEL, zone),
            (REGION_LABEL, _region(zone)),
            ("failure-domain.beta.kubernetes.io/zone", zone_id(zone)),
            (INSTANCE_LABEL, ins),
        ):
            labels.setdefault(label, value)
        spec = node.setdefault("spec", {})
        spec.setdefault("providerID", f"qcloud:///{zone_id(zone)}/{ins}")
        cidr = self._pod_cidr(name, spec.get("podCIDR"))
        if cidr:
            spec.setdefault("podCIDR", cidr)
            spec.setdefault("podCIDRs", [cidr])
        status = node.setdefault("status", {})
        ip = self._node_ip(name, internal_ip(node))
        if not status.get("addresses") and ip:
            status["addresses"] = [
                {"type": "InternalIP", "address": ip},
                {"type": "Hostname", "address": name},
            ]
        status.setdefault("capacity", CAPACITY | {"pods": str(self.max_pods)})
        status.setdefault("allocatable", ALLOCATABLE | {"pods": str(self.max_pods)})
        status.setdefault("daemonEndpoints", {"kubeletEndpoint": {"Port": 10250}})
        status.setdefault("nodeInfo", self._node_info(name))
        status.setdefault("images", [])
        now = meta.timestamp()
        conditions = status.setdefault("conditions", [])
        for type_, reason, message in CONDITIONS:
            if find_condition(node, type_) is None:
                set_condition(
                    conditions,
                    type_=type_,
                    status="False",
                    reason=reason,
                    message=message,
                    now=now,
                    heartbeat=True,
                )
        reported = self._kubelet_ready(node, conditions, now)
        self._taints(node)
        return reported

    def _kubelet_ready(self, node: Obj, conditions: list[Obj], now: str) -> bool | None:
        name = str(node["metadata"]["name"])
        annotations = node["metadata"].get("annotations") or {}
        ready = str(annotations.get(NOT_READY_ANNOTATION, "")).lower() != "true"
        if find_condition(node, "Ready") is not None and self._reported.get(name) == ready:
            return None  # nothing new from the kubelet: leave what others may have written
        if ready:
            reason, message = "KubeletReady", "kubelet is posting ready status"
        else:
            reason = "KubeletNotReady"
            message = f'node marked not ready (annotation {NOT_READY_ANNOTATION}: "true")'
        set_condition(
            conditions,
            type_="Ready",
            status="True" if ready else "False",
            reason=reason,
            message=message,
            now=now,
            heartbeat=True,
        )
        return ready

    def _taints(self, node: Obj) -> None:
        spec = node["spec"]
        taints: list[Obj] = [t for t in spec.get("taints") or [] if isinstance(t, dict)]
        ready = find_condition(node, "Ready")
        wanted = {
            TAINT_UNSCHEDULABLE: bool(spec.get("unschedulable")),
            TAINT_NOT_READY: ready is None or ready.get("status") != "True",
        }
        for key, present in wanted.items():
            has = any(t.get("key") == key and t.get("effect") == "NoSchedule" for t in taints)
            if present and not has:
                taints.append({"key": key, "effect": "NoSchedule", "timeAdded": meta.timestamp()})
            elif has and not present:
                taints = [
                    t
                    for t in taints
                    if not (t.get("key") == key and t.get("effect") == "NoSchedule")
                ]
        if taints:
            spec["taints"] = taints
        else:
            spec.pop("taints", None)

    def _node_ip(self, name: str, current: str | None) -> str | None:
        if current:
            self._ips[name] = current
            return current
        if name in self._ips:
            return self._ips[name]
        used = set(self._ips.values())
        hosts = self._node_net.num_addresses - 2
        index = node_index(name)
        candidates = ([index] if index and 0 < index <= hosts else []) + list(range(1, hosts + 1))
        for offset in candidates:
            ip = str(self._node_net.network_address + offset)
            if ip not in used:
                self._ips[name] = ip
                return ip
        log.error("event=node_cidr_exhausted node=%s cidr=%s", name, self.config.node_cidr)
        return None

    def _pod_cidr(self, name: str, current: object) -> str | None:
        if current:
            self._cidrs[name] = str(current)
            return str(current)
        if name in self._cidrs:
            return self._cidrs[name]
        used = set(self._cidrs.values())
        index = node_index(name)
        count = len(self._pod_cidrs)
        order = ([index] if index is not None and 0 <= index < count else []) + list(range(count))
        for i in order:
            cidr = str(self._pod_cidrs[i])
            if cidr not in used:
                self._cidrs[name] = cidr
                return cidr
        log.error("event=cluster_cidr_exhausted node=%s cidr=%s", name, self.config.cluster_cidr)
        return None

    def _node_info(self, name: str) -> Obj:
        digest = hashlib.sha256(name.encode()).hexdigest()
        return {
            "architecture": "amd64",
            "bootID": _uuid(digest[:32]),
            "containerRuntimeVersion": "containerd://1.6.9-tke.8",
            "kernelVersion": "5.4.241-1-tlinux4-0017.7",
            "kubeProxyVersion": self.kubelet_version,
            "kubeletVersion": self.kubelet_version,
            "machineID": digest[32:64],
            "operatingSystem": "linux",
            "osImage": "TencentOS Server 3.1 (Final)",
            "systemUUID": _uuid(digest[32:64]).upper(),
        }
