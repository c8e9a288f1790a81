"""Services behind the simulated API server: address allocation and EndpointSlices.

* ``ServiceAllocator``: what kube-apiserver's Service registry does *at write time* (not a
  controller): a ClusterIP from ``service_cidr`` (``clusterIPs``; ``None`` stays headless), a
  node port per port for ``NodePort`` and ``LoadBalancer`` Services (``node_port_range``; TCP and
  UDP ports with the same number share one), a ``healthCheckNodePort`` for ``LoadBalancer`` with
  ``externalTrafficPolicy: Local``. Requested values are honoured or refused with the real
  server's errors (422 ``provided port is already allocated`` …). What is in use is counted
  from the stored Services (``AddressIndex``, built from the store at start and kept by its
  events), so a deleted Service releases its addresses by being gone, and loaded state needs
  no repair pass. Hooked into ``Api`` as ``api.service_allocator`` (called synchronously just
  before the Service is persisted).
* ``EndpointSliceController``: kubernetes/pkg/controller/endpointslice, in process: for every
  Service with a selector, slices ``<service>-<random>`` labelled ``kubernetes.io/service-name``
  and ``endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io``, owned by the
  Service, with one endpoint per selected pod that has an IP (terminating pods included), the
  real conditions, nodeName, zone, targetRef, ports resolved per pod (pods resolving a named
  ``targetPort`` differently land in different slices), at most 100 endpoints per slice, and a
  placeholder slice (no endpoints, no ports) when nothing matches. Woken by store events on
  Services, pods, nodes and its own slices; never polls. Indexes kept from those events (pods
  by label, Services by selector, slices by Service) spare it a scan of the namespace per
  event or sync.

Slice building is a pure function (``reconcile_slices``) of the Service, the pods, the nodes and
the existing slices, so it is tested without a server.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import random
from collections import Counter
from collections.abc import Container, Iterable, Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from directlb.sim import meta
from directlb.sim.api import Api, WriteOptions
from directlb.sim.cluster.config import ClusterConfig
from directlb.sim.cluster.indexes import LabelIndex, SelectorIndex
from directlb.sim.cluster.machinery import NODES, PODS, ZONE_LABEL, KeyedLoop, resource
from directlb.sim.contracts import Obj, ResourceKey, StatusError
from directlb.sim.storage import ADDED, DELETED, Event, ObjKey, StoreKey

log = logging.getLogger("directlb.sim.cluster.network")
_T = TypeVar("_T")

SERVICES: StoreKey = ("", "services")
SLICES: StoreKey = ("discovery.k8s.io", "endpointslices")
SERVICE_KEY = ResourceKey("", "v1", "services", "Service", True)

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
CONTROLLER_NAME = "endpointslice-controller.k8s.io"
HEADLESS_LABEL = "service.kubernetes.io/headless"
RESERVED_LABELS = frozenset({SERVICE_NAME_LABEL, MANAGED_BY_LABEL, HEADLESS_LABEL})
MAX_ENDPOINTS_PER_SLICE = 100

SLICE_WRITER = WriteOptions(
    user="system:serviceaccount:kube-system:endpointslice-controller", field_validation="Ignore"
)


# ----- Service allocation -------------------------------------------------------------------


def service_type(spec: Obj) -> str:
    return str(spec.get("type") or "ClusterIP")


def needs_cluster_ip(spec: Obj) -> bool:
    return service_type(spec) != "ExternalName"


def needs_node_ports(spec: Obj) -> bool:
    kind = service_type(spec)
    if kind == "NodePort":
        return True
    return kind == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is not False


def needs_health_check_port(spec: Obj) -> bool:
    return service_type(spec) == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"


@dataclass(frozen=True)
class InUse:
    """Addresses held by stored Services (other than the one being written)."""

    cluster_ips: AbstractSet[str] = frozenset()
    node_ports: AbstractSet[int] = frozenset()


def in_use(services: Iterable[Obj]) -> InUse:
    ips: set[str] = set()
    ports: set[int] = set()
    for service in services:
        spec = service.get("spec") or {}
        for ip in spec.get("clusterIPs") or [spec.get("clusterIP")]:
            if ip and ip != "None":
                ips.add(str(ip))
        for port in spec.get("ports") or []:
            if isinstance(port, dict) and port.get("nodePort"):
                ports.add(int(port["nodePort"]))
        if spec.get("healthCheckNodePort"):
            ports.add(int(spec["healthCheckNodePort"]))
    return InUse(frozenset(ips), frozenset(ports))


def _invalid(name: str, field_path: str, value: Any, detail: str) -> StatusError:
    shown = json.dumps(value) if isinstance(value, str) else _go_value(value)
    cause = {
        "field": field_path,
        "reason": "FieldValueInvalid",
        "message": f"Invalid value: {shown}: {detail}",
    }
    return meta.invalid(SERVICE_KEY, name, [cause])


def _go_value(value: Any) -> str:
    if isinstance(value, list):
        return "[]string{" + ", ".join(json.dumps(str(v)) for v in value) + "}"
    return str(value)


def _internal(message: str) -> StatusError:
    return StatusError(500, "InternalError", f"Internal error occurred: {message}")


def _pick(rng: random.Random, low: int, high: int, taken: Container[int]) -> int | None:
    """A random free number in [low, high]: random probes, then a scan from a random start."""
    size = high - low + 1
    for _ in range(32):
        candidate = rng.randint(low, high)
        if candidate not in taken:
            return candidate
    start = rng.randrange(size)
    for offset in range(size):
        candidate = low + (start + offset) % size
        if candidate not in taken:
            return candidate
    return None


def _drop_type_dependent(spec: Obj, old: Obj) -> None:
    """strategy.go dropTypeDependentFields: a type change clears what the new type does not use
    when the client left it as it was."""
    if not needs_cluster_ip(spec) and needs_cluster_ip(old):
        if spec.get("clusterIP") == old.get("clusterIP"):
            spec.pop("clusterIP", None)
        if spec.get("clusterIPs") == old.get("clusterIPs"):
            spec.pop("clusterIPs", None)
        for key in ("ipFamilies", "ipFamilyPolicy"):
            if spec.get(key) == old.get(key):
                spec.pop(key, None)
    if not needs_node_ports(spec) and needs_node_ports(old):
        new_ports = [p.get("nodePort") for p in spec.get("ports") or [] if isinstance(p, dict)]
        old_ports = [p.get("nodePort") for p in old.get("ports") or [] if isinstance(p, dict)]
        if new_ports == old_ports:
            for port in spec.get("ports") or []:
                if isinstance(port, dict):
                    port.pop("nodePort", None)
    unchanged = {k for k in spec if k in old and spec[k] == old[k]}
    if (
        not needs_health_check_port(spec)
        and needs_health_check_port(old)
        and "healthCheckNodePort" in unchanged
    ):
        spec.pop("healthCheckNodePort", None)
    if service_type(spec) not in ("NodePort", "LoadBalancer") and (
        "externalTrafficPolicy" in unchanged
    ):
        spec.pop("externalTrafficPolicy", None)
    if service_type(spec) != "LoadBalancer" and "allocateLoadBalancerNodePorts" in unchanged:
        spec.pop("allocateLoadBalancerNodePorts", None)


def _patch_allocated(spec: Obj, old: Obj) -> None:
    """storage.go patchAllocatedValues: an update that omits allocated values keeps them."""
    if needs_cluster_ip(old) and needs_cluster_ip(spec):
        if not spec.get("clusterIP") and old.get("clusterIP"):
            spec["clusterIP"] = old["clusterIP"]
        if not spec.get("clusterIPs") and old.get("clusterIPs"):
            spec["clusterIPs"] = list(old["clusterIPs"])
    if needs_node_ports(old) and needs_node_ports(spec):

        def used(ports: Any) -> set[int]:
            return {int(p["nodePort"]) for p in ports or [] if p.get("nodePort")}

        both = used(old.get("ports")) & used(spec.get("ports"))
        by_name = {str(p.get("name") or ""): p.get("nodePort") for p in old.get("ports") or []}
        for port in spec.get("ports") or []:
            if isinstance(port, dict) and not port.get("nodePort"):
                previous = by_name.get(str(port.get("name") or ""))
                if previous and int(previous) not in both:
                    port["nodePort"] = previous
    if (
        needs_health_check_port(old)
        and needs_health_check_port(spec)
        and not spec.get("healthCheckNodePort")
        and old.get("healthCheckNodePort")
    ):
        spec["healthCheckNodePort"] = old["healthCheckNodePort"]


def allocate_service(
    service: Obj,
    old: Obj | None,
    *,
    used: InUse,
    config: ClusterConfig,
    rng: random.Random,
) -> None:
    """Give ``service`` (being created, or updated from ``old``) its ClusterIP, node ports and
    health-check node port, in place; raise the real server's errors for refused requests.

    ``used`` must not include ``service``'s own stored addresses (an update keeps them)."""
    spec = service.setdefault("spec", {})
    name = str(service["metadata"].get("name", ""))
    old_spec: Obj = (old or {}).get("spec") or {}
    if old is not None:
        _drop_type_dependent(spec, old_spec)
        _patch_allocated(spec, old_spec)
    if needs_cluster_ip(spec):
        _allocate_cluster_ip(spec, old_spec, name=name, used=used, config=config, rng=rng)
    taken = set(used.node_ports)
    _allocate_node_ports(spec, name=name, taken=taken, config=config, rng=rng)
    _allocate_health_check_port(spec, name=name, taken=taken, config=config, rng=rng)


def _allocate_cluster_ip(
    spec: Obj,
    old_spec: Obj,
    *,
    name: str,
    used: InUse,
    config: ClusterConfig,
    rng: random.Random,
) -> None:
    ip = spec.get("clusterIP")
    ips = spec.get("clusterIPs")
    old_ip = old_spec.get("clusterIP") if needs_cluster_ip(old_spec) else None
    wanted = ip or (ips or [None])[0]
    if old_ip and wanted not in (None, old_ip):
        raise _invalid(name, "spec.clusterIPs[0]", wanted, "may not change once set")
    if ips and not ip:
        ip = ips[0]
    elif ip and not ips:
        ips = [ip]
    if ip and ips and ips[0] != ip:
        cause = {
            "field": "spec.clusterIPs[0]",
            "reason": "FieldValueInvalid",
            "message": f"Invalid value: {json.dumps(ips[0])}: must match `clusterIP` if specified",
        }
        raise meta.invalid(SERVICE_KEY, name, [cause])
    if ip == "None":
        spec["clusterIP"], spec["clusterIPs"] = "None", ["None"]
        return
    network = ipaddress.IPv4Network(config.service_cidr)
    if ip:
        if ip == old_ip:
            spec["clusterIP"], spec["clusterIPs"] = ip, [ip]
            return
        try:
            address = ipaddress.ip_address(str(ip))
        except ValueError:
            raise _invalid(
                name,
                "spec.clusterIPs[0]",
                ip,
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            ) from None
        if address not in network or address in (
            network.network_address,
            network.broadcast_address,
        ):
            raise _invalid(
                name,
                "spec.clusterIPs",
                [ip],
                f"failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. "
                f"The range of valid IPs is {network}",
            )
        if str(ip) in used.cluster_ips:
            raise _invalid(
                name,
                "spec.clusterIPs",
                [ip],
                f"failed to allocate IP {ip}: provided IP is already allocated",
            )
        spec["clusterIP"], spec["clusterIPs"] = str(ip), [str(ip)]
        return
    base = int(network.network_address)
    offset = _pick(rng, 1, network.num_addresses - 2, _TakenOffsets(base, used.cluster_ips))
    if offset is None:
        raise _internal("failed to allocate a serviceIP: range is full")
    chosen = str(ipaddress.IPv4Address(base + offset))
    spec["clusterIP"], spec["clusterIPs"] = chosen, [chosen]


class _TakenOffsets(Container[int]):
    """Offsets in the service CIDR of the addresses in use, looked up one by one (an address
    parses as IPv4 only in its one canonical spelling), not parsed all on each allocation."""

    def __init__(self, base: int, used: AbstractSet[str]) -> None:
        self.base = base
        self.used = used

    def __contains__(self, offset: object) -> bool:
        if not isinstance(offset, int):
            return False
        return str(ipaddress.IPv4Address(self.base + offset)) in self.used


def _allocate_node_ports(
    spec: Obj, *, name: str, taken: set[int], config: ClusterConfig, rng: random.Random
) -> None:
    low, high = config.node_port_range
    kind = service_type(spec)
    ports = [p for p in spec.get("ports") or [] if isinstance(p, dict)]
    if kind not in ("NodePort", "LoadBalancer"):
        for index, port in enumerate(ports):
            if port.get("nodePort"):
                cause = {
                    "field": f"spec.ports[{index}].nodePort",
                    "reason": "FieldValueForbidden",
                    "message": f"Forbidden: may not be used when `type` is '{kind}'",
                }
                raise meta.invalid(SERVICE_KEY, name, [cause])
        return
    # TCP and UDP ports with the same number share one node port (alloc.go initNodePorts).
    by_number: dict[int, int] = {}
    mine: dict[int, str] = {}  # node port -> protocol, within this Service
    for index, port in enumerate(ports):
        requested = port.get("nodePort")
        if not requested:
            continue
        requested = int(requested)
        protocol = str(port.get("protocol") or "TCP")
        if requested in mine:
            if mine[requested] == protocol:
                cause = {
                    "field": f"spec.ports[{index}].nodePort",
                    "reason": "FieldValueDuplicate",
                    "message": f'Duplicate value: "{requested}"',
                }
                raise meta.invalid(SERVICE_KEY, name, [cause])
            continue
        field_path = f"spec.ports[{index}].nodePort"
        if not low <= requested <= high:
            raise _invalid(
                name,
                field_path,
                requested,
                "provided port is not in the valid range. The range of valid ports is "
                f"{low}-{high}",
            )
        if requested in taken:
            raise _invalid(name, field_path, requested, "provided port is already allocated")
        taken.add(requested)
        mine[requested] = protocol
        by_number.setdefault(int(port.get("port") or 0), requested)
    if not needs_node_ports(spec):
        return
    for port in ports:
        if port.get("nodePort"):
            continue
        number = int(port.get("port") or 0)
        chosen = by_number.get(number)
        if chosen is None:
            chosen = _pick(rng, low, high, taken)
            if chosen is None:
                raise _internal("failed to allocate a nodePort: range is full")
            taken.add(chosen)
            by_number[number] = chosen
        port["nodePort"] = chosen


def _allocate_health_check_port(
    spec: Obj, *, name: str, taken: set[int], config: ClusterConfig, rng: random.Random
) -> None:
    requested = spec.get("healthCheckNodePort")
    if not needs_health_check_port(spec):
        if requested:
            raise _invalid(
                name,
                "spec.healthCheckNodePort",
                requested,
                "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is "
                "'Local'",
            )
        return
    low, high = config.node_port_range
    if requested:
        requested = int(requested)
        if not low <= requested <= high:
            raise _internal(
                f"failed to allocate requested HealthCheck NodePort {requested}: provided port "
                f"is not in the valid range. The range of valid ports is {low}-{high}"
            )
        if requested in taken:
            raise _internal(
                f"failed to allocate requested HealthCheck NodePort {requested}: provided port "
                "is already allocated"
            )
        taken.add(requested)
        return
    chosen = _pick(rng, low, high, taken)
    if chosen is None:
        raise _internal("failed to allocate a HealthCheck NodePort: range is full")
    taken.add(chosen)
    spec["healthCheckNodePort"] = chosen


class _Held(AbstractSet[_T]):
    """The values some stored Service other than ``mine`` holds, from per-value counts of
    holders (each Service holds a value at most once)."""

    def __init__(self, holders: Counter[_T], mine: AbstractSet[_T]) -> None:
        self.holders = holders
        self.mine = mine

    def __contains__(self, value: object) -> bool:
        if value not in self.holders:
            return False
        return self.holders[cast(_T, value)] > (1 if value in self.mine else 0)

    def __iter__(self) -> Iterator[_T]:
        return (v for v, n in self.holders.items() if n > (1 if v in self.mine else 0))

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _release(holders: Counter[_T], values: AbstractSet[_T]) -> None:
    for value in values:
        holders[value] -= 1
        if holders[value] <= 0:
            del holders[value]


class AddressIndex:
    """What each stored Service holds (``in_use`` of it alone), counted per address: what the
    Services other than one hold is then known without reading all of them on each write."""

    def __init__(self) -> None:
        self._held: dict[ObjKey, InUse] = {}
        self._ips: Counter[str] = Counter()
        self._ports: Counter[int] = Counter()

    def put(self, key: ObjKey, service: Obj) -> None:
        self.remove(key)
        held = self._held[key] = in_use([service])
        self._ips.update(held.cluster_ips)
        self._ports.update(held.node_ports)

    def remove(self, key: ObjKey) -> None:
        held = self._held.pop(key, None)
        if held is not None:
            _release(self._ips, held.cluster_ips)
            _release(self._ports, held.node_ports)

    def clear(self) -> None:
        self._held.clear()
        self._ips.clear()
        self._ports.clear()

    def others(self, key: ObjKey) -> InUse:
        mine = self._held.get(key, InUse())
        return InUse(_Held(self._ips, mine.cluster_ips), _Held(self._ports, mine.node_ports))


class ServiceAllocator:
    """Installs ``allocate_service`` as ``api.service_allocator`` while started."""

    def __init__(self, *, api: Api, config: ClusterConfig, rng: random.Random | None = None):
        self.api = api
        self.config = config
        self.rng = rng or random.Random()
        self._addresses = AddressIndex()  # kept from store events while started
        self._listening = False

    def start(self) -> None:
        if not self._listening:
            self._addresses.clear()
            for key, stored in self.api.store.items(SERVICES, None):
                self._addresses.put(key, stored.obj)
            self.api.store.listeners.append(self._on_event)
            self._listening = True
        self.api.service_allocator = self.allocate

    async def stop(self) -> None:
        if self._listening:
            self.api.store.listeners.remove(self._on_event)
            self._listening = False
        if self.api.service_allocator == self.allocate:
            self.api.service_allocator = None

    def _on_event(self, store_key: StoreKey, event: Event) -> None:
        if store_key != SERVICES:
            return
        if event.type == DELETED:
            self._addresses.remove(event.key)
        else:
            self._addresses.put(event.key, event.new.obj)

    def allocate(self, service: Obj, old: Obj | None) -> None:
        m = service["metadata"]
        me = (str(m.get("namespace") or ""), str(m.get("name") or ""))
        used = self._addresses.others(me)
        allocate_service(service, old, used=used, config=self.config, rng=self.rng)


# ----- EndpointSlices: pure building ----------------------------------------------------------


def selector_matches(selector: dict[str, str], labels: dict[str, str] | None) -> bool:
    labels = labels or {}
    return all(labels.get(k) == v for k, v in selector.items())


def pod_ready(pod: Obj) -> bool:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if isinstance(condition, dict) and condition.get("type") == "Ready":
            return condition.get("status") == "True"
    return False


def pod_ips(pod: Obj) -> list[str]:
    status = pod.get("status") or {}
    ips = [str(p["ip"]) for p in status.get("podIPs") or [] if isinstance(p, dict) and p.get("ip")]
    if not ips and status.get("podIP"):
        ips = [str(status["podIP"])]
    return ips


def should_be_in_endpoints(pod: Obj) -> bool:
    """endpointutil.ShouldPodBeInEndpoints with includeTerminating: an IP, not terminal."""
    if not pod_ips(pod):
        return False
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


def find_port(pod: Obj, service_port: Obj) -> int | None:
    """podutil.FindPort: a named targetPort is looked up in the pod's container ports (name and
    protocol); a number is used as it is."""
    target = service_port.get("targetPort", service_port.get("port"))
    protocol = service_port.get("protocol") or "TCP"
    if isinstance(target, str):
        spec = pod.get("spec") or {}
        containers = list(spec.get("containers") or [])
        containers += [
            c for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"
        ]
        for container in containers:
            for port in container.get("ports") or []:
                if port.get("name") == target and (port.get("protocol") or "TCP") == protocol:
                    return int(port["containerPort"])
        return None
    if isinstance(target, int):
        return target
    return None


def endpoint_ports(service: Obj, pod: Obj) -> list[Obj]:
    ports: list[Obj] = []
    for service_port in (service.get("spec") or {}).get("ports") or []:
        number = find_port(pod, service_port)
        if number is None:
            continue
        port: Obj = {
            "name": str(service_port.get("name") or ""),
            "port": number,
            "protocol": str(service_port.get("protocol") or "TCP"),
        }
        if service_port.get("appProtocol"):
            port["appProtocol"] = service_port["appProtocol"]
        ports.append(port)
    return ports


def pod_to_endpoint(pod: Obj, node: Obj | None, service: Obj) -> Obj:
    """endpointslice utils.go podToEndpoint: serving is pod Ready, terminating is a deletion
    timestamp, ready is serving and not terminating (or publishNotReadyAddresses)."""
    m = pod["metadata"]
    spec = pod.get("spec") or {}
    serving = pod_ready(pod)
    terminating = bool(m.get("deletionTimestamp"))
    publish = bool((service.get("spec") or {}).get("publishNotReadyAddresses"))
    endpoint: Obj = {
        "addresses": [ip for ip in pod_ips(pod) if ":" not in ip],
        "conditions": {
            "ready": publish or (serving and not terminating),
            "serving": serving,
            "terminating": terminating,
        },
        "targetRef": {
            "kind": "Pod",
            "namespace": m.get("namespace", ""),
            "name": m["name"],
            "uid": m.get("uid", ""),
        },
    }
    if spec.get("nodeName"):
        endpoint["nodeName"] = spec["nodeName"]
    zone = ((node or {}).get("metadata", {}).get("labels") or {}).get(ZONE_LABEL)
    if zone:
        endpoint["zone"] = zone
    service_name = service["metadata"]["name"]
    if spec.get("hostname") and spec.get("subdomain") == service_name:
        endpoint["hostname"] = spec["hostname"]
    return endpoint


def _ports_key(ports: list[Obj] | None) -> str:
    canonical = sorted(ports or [], key=lambda p: (str(p.get("name")), str(p.get("protocol"))))
    return json.dumps(canonical, sort_keys=True)


def _endpoint_key(endpoint: Obj) -> tuple[tuple[str, ...], str]:
    ref = endpoint.get("targetRef") or {}
    return tuple(endpoint.get("addresses") or []), f"{ref.get('namespace')}/{ref.get('name')}"


@dataclass
class _Group:
    ports: list[Obj]
    endpoints: dict[tuple[tuple[str, ...], str], Obj] = field(default_factory=dict)


def desired_endpoints(
    service: Obj, pods: Iterable[Obj], nodes: dict[str, Obj]
) -> dict[str, _Group]:
    """The endpoints a Service should have, grouped by their resolved ports."""
    spec = service.get("spec") or {}
    selector = spec.get("selector") or {}
    namespace = service["metadata"].get("namespace", "")
    publish = bool(spec.get("publishNotReadyAddresses"))
    groups: dict[str, _Group] = {}
    for pod in sorted(pods, key=lambda p: str(p["metadata"]["name"])):
        if pod["metadata"].get("namespace", "") != namespace:
            continue
        if not selector_matches(selector, pod["metadata"].get("labels")):
            continue
        if not should_be_in_endpoints(pod):
            continue
        node = nodes.get(str((pod.get("spec") or {}).get("nodeName") or ""))
        if node is None and not publish:
            continue  # the real controller skips a pod whose node does not exist (yet)
        endpoint = pod_to_endpoint(pod, node, service)
        if not endpoint["addresses"]:
            continue
        ports = endpoint_ports(service, pod)
        group = groups.setdefault(_ports_key(ports), _Group(ports))
        group.endpoints[_endpoint_key(endpoint)] = endpoint
    return groups


def slice_labels(service: Obj) -> dict[str, str]:
    labels = {
        k: v
        for k, v in (service["metadata"].get("labels") or {}).items()
        if k not in RESERVED_LABELS
    }
    cluster_ip = (service.get("spec") or {}).get("clusterIP")
    if not cluster_ip or cluster_ip == "None":
        labels[HEADLESS_LABEL] = ""
    labels[SERVICE_NAME_LABEL] = service["metadata"]["name"]
    labels[MANAGED_BY_LABEL] = CONTROLLER_NAME
    return labels


def owner_reference(service: Obj) -> Obj:
    m = service["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "name": m["name"],
        "uid": m.get("uid", ""),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def slice_prefix(service_name: str) -> str:
    prefix = f"{service_name}-"
    return prefix if len(prefix) + 5 <= 253 else service_name[:247] + "-"


def new_slice(service: Obj, *, ports: list[Obj], endpoints: list[Obj]) -> Obj:
    m = service["metadata"]
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "generateName": slice_prefix(str(m["name"])),
            "namespace": m.get("namespace", ""),
            "labels": slice_labels(service),
            "ownerReferences": [owner_reference(service)],
        },
        "addressType": "IPv4",
        # The real server serves an empty list as null; our schema check wants the (required)
        # endpoints present, so that one is written as [].
        "endpoints": endpoints,
        "ports": ports or None,
    }


@dataclass
class SlicePlan:
    """Writes, in the order the real reconciler makes them: create, update, delete."""

    create: list[Obj] = field(default_factory=list)
    update: list[Obj] = field(default_factory=list)
    delete: list[Obj] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.create or self.update or self.delete)


def _owned_by(slice_obj: Obj, service: Obj) -> bool:
    uid = service["metadata"].get("uid")
    return any(
        r.get("uid") == uid and r.get("kind") == "Service" and r.get("apiVersion") == "v1"
        for r in slice_obj["metadata"].get("ownerReferences") or []
    )


def _is_placeholder(slice_obj: Obj) -> bool:
    return not slice_obj.get("endpoints") and not slice_obj.get("ports")


def _refreshed(slice_obj: Obj, service: Obj, *, ports: list[Obj], endpoints: list[Obj]) -> Obj:
    """``slice_obj`` with the content it should have (metadata kept, labels/owner refreshed)."""
    obj: Obj = meta.clone(slice_obj)
    obj["metadata"]["labels"] = slice_labels(service)
    refs = [r for r in obj["metadata"].get("ownerReferences") or [] if r.get("kind") != "Service"]
    obj["metadata"]["ownerReferences"] = [owner_reference(service), *refs]
    obj["endpoints"] = endpoints
    obj["ports"] = ports or None
    return obj


def _content(slice_obj: Obj) -> tuple[Any, ...]:
    m = slice_obj["metadata"]
    return (
        m.get("labels") or {},
        m.get("ownerReferences") or [],
        slice_obj.get("addressType"),
        slice_obj.get("endpoints") or [],
        slice_obj.get("ports") or [],
    )


def reconcile_slices(
    *,
    service: Obj,
    pods: Iterable[Obj],
    nodes: dict[str, Obj],
    existing: list[Obj],
    max_per_slice: int = MAX_ENDPOINTS_PER_SLICE,
) -> SlicePlan:
    """What to write so the Service's managed slices hold exactly its desired endpoints.

    As the real reconciler: an existing slice keeps the endpoints it has that are still
    wanted (refreshed), loses the others, and is deleted when left empty; new endpoints first
    fill slices being updated anyway, then the unchanged slice closest to full, then new slices
    of at most ``max_per_slice``. With no endpoints at all one placeholder slice remains."""
    groups = desired_endpoints(service, pods, nodes)
    remaining = {key: dict(group.endpoints) for key, group in groups.items()}
    plan = SlicePlan()
    updated: dict[str, list[Obj]] = {}
    unchanged: dict[str, list[Obj]] = {}
    for slice_obj in sorted(existing, key=lambda s: str(s["metadata"]["name"])):
        key = _ports_key(slice_obj.get("ports"))
        if (
            not _owned_by(slice_obj, service)
            or slice_obj.get("addressType") != "IPv4"
            or key not in groups
        ):
            plan.delete.append(slice_obj)
            continue
        kept: list[Obj] = []
        for endpoint in slice_obj.get("endpoints") or []:
            endpoint_key = _endpoint_key(endpoint)
            if endpoint_key in remaining[key] and len(kept) < max_per_slice:
                kept.append(remaining[key].pop(endpoint_key))
        if not kept:
            plan.delete.append(slice_obj)
            continue
        fresh = _refreshed(slice_obj, service, ports=groups[key].ports, endpoints=kept)
        if _content(fresh) != _content(slice_obj):
            plan.update.append(fresh)
            updated.setdefault(key, []).append(fresh)
        else:
            unchanged.setdefault(key, []).append(slice_obj)
    for key, group in groups.items():
        todo = list(remaining[key].values())
        for fresh in updated.get(key, []):
            room = max_per_slice - len(fresh["endpoints"])
            if todo and room > 0:
                fresh["endpoints"].extend(todo[:room])
                todo = todo[room:]
        while todo and len(todo) < max_per_slice and unchanged.get(key):
            fits = [
                s
                for s in unchanged[key]
                if len(s.get("endpoints") or []) + len(todo) <= max_per_slice
            ]
            if not fits:
                break
            target = max(fits, key=lambda s: len(s.get("endpoints") or []))
            unchanged[key].remove(target)
            endpoints = [*(target.get("endpoints") or []), *todo]
            plan.update.append(_refreshed(target, service, ports=group.ports, endpoints=endpoints))
            todo = []
        while todo:
            chunk, todo = todo[:max_per_slice], todo[max_per_slice:]
            plan.create.append(new_slice(service, ports=group.ports, endpoints=chunk))
    if len(plan.delete) == len(existing) and not plan.create:
        # When no slice would exist, a placeholder does (reconciler.go), kept if already there.
        if (
            len(plan.delete) == 1
            and _is_placeholder(plan.delete[0])
            and _owned_by(plan.delete[0], service)
        ):
            placeholder = plan.delete.pop()
            fresh = _refreshed(placeholder, service, ports=[], endpoints=[])
            if _content(fresh) != _content(placeholder):
                plan.update.append(fresh)
        else:
            plan.create.append(new_slice(service, ports=[], endpoints=[]))
    return plan


# ----- EndpointSlices: the controller ---------------------------------------------------------


def _selector(service: Obj) -> dict[str, str]:
    return (service.get("spec") or {}).get("selector") or {}


def _managing_service(slice_obj: Obj) -> str | None:
    """The Service a slice this controller manages belongs to (None: not one of ours)."""
    labels = slice_obj["metadata"].get("labels") or {}
    if labels.get(MANAGED_BY_LABEL) != CONTROLLER_NAME:
        return None
    return str(labels[SERVICE_NAME_LABEL]) if labels.get(SERVICE_NAME_LABEL) else None


def _pod_projection(pod: Obj) -> tuple[Any, ...]:
    """What of a pod can change its endpoints (kubelet status churn elsewhere is ignored)."""
    m = pod["metadata"]
    spec = pod.get("spec") or {}
    return (
        m.get("uid"),
        json.dumps(m.get("labels") or {}, sort_keys=True),
        bool(m.get("deletionTimestamp")),
        tuple(pod_ips(pod)),
        pod_ready(pod),
        (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"),
        spec.get("nodeName"),
        spec.get("hostname"),
        spec.get("subdomain"),
        json.dumps([c.get("ports") for c in spec.get("containers") or []], sort_keys=True),
    )


class EndpointSliceController(KeyedLoop):
    """Keeps every selector Service's EndpointSlices in line with its pods (see module doc)."""

    def __init__(
        self,
        *,
        api: Api,
        config: ClusterConfig,
        max_endpoints_per_slice: int = MAX_ENDPOINTS_PER_SLICE,
    ) -> None:
        super().__init__("endpointslice")
        self.api = api
        self.config = config
        self.max_endpoints_per_slice = max_endpoints_per_slice
        self._slices = resource(api, "discovery.k8s.io", "v1", "endpointslices")
        self._listening = False
        # Kept from store events while listening, so that neither a pod event nor a sync
        # scans the namespace's pods, Services or slices (thousands at scale).
        self._pod_labels = LabelIndex()
        self._service_selectors = SelectorIndex()
        self._managed: dict[ObjKey, set[str]] = {}  # (namespace, service) -> its slices' names

    def start(self) -> None:
        if not self._listening:
            self._build_indexes()
            self.api.store.listeners.append(self._on_event)
            self._listening = True
        for key, _ in self.api.store.items(SERVICES, None):
            self.mark(key)
        for (namespace, _), stored in self.api.store.items(SLICES, None):
            self._mark_slice_owner(namespace, stored.obj)
        super().start()

    async def stop(self) -> None:
        if self._listening:
            self.api.store.listeners.remove(self._on_event)
            self._listening = False
        await super().stop()

    # ----- events ---------------------------------------------------------------------------

    def _build_indexes(self) -> None:
        self._pod_labels.clear()
        self._service_selectors.clear()
        self._managed.clear()
        for key, stored in self.api.store.items(PODS, None):
            self._pod_labels.put(key, stored.obj["metadata"].get("labels"))
        for key, stored in self.api.store.items(SERVICES, None):
            self._service_selectors.put(key, _selector(stored.obj))
        for key, stored in self.api.store.items(SLICES, None):
            self._file_slice(key, stored.obj)

    def _on_event(self, store_key: StoreKey, event: Event) -> None:
        if store_key == SERVICES:
            if event.type == DELETED:
                self._service_selectors.remove(event.key)
            else:
                self._service_selectors.put(event.key, _selector(event.new.obj))
            self.mark(event.key)
        elif store_key == PODS:
            if event.type == DELETED:
                self._pod_labels.remove(event.key)
            else:
                self._pod_labels.put(event.key, event.new.obj["metadata"].get("labels"))
            self._on_pod(event)
        elif store_key == NODES:
            self._on_node(event)
        elif store_key == SLICES:
            if event.old is not None:
                self._unfile_slice(event.key, event.old.obj)
            if event.type != DELETED:
                self._file_slice(event.key, event.new.obj)
            for state in (event.old, event.new):
                if state is not None:
                    self._mark_slice_owner(event.key[0], state.obj)

    def _file_slice(self, key: ObjKey, slice_obj: Obj) -> None:
        owner = _managing_service(slice_obj)
        if owner is not None:
            self._managed.setdefault((key[0], owner), set()).add(key[1])

    def _unfile_slice(self, key: ObjKey, slice_obj: Obj) -> None:
        owner = _managing_service(slice_obj)
        if owner is None:
            return
        names = self._managed.get((key[0], owner))
        if names is not None:
            names.discard(key[1])
            if not names:
                del self._managed[(key[0], owner)]

    def _mark_slice_owner(self, namespace: str, slice_obj: Obj) -> None:
        labels = slice_obj["metadata"].get("labels") or {}
        if labels.get(MANAGED_BY_LABEL) == CONTROLLER_NAME and labels.get(SERVICE_NAME_LABEL):
            self.mark((namespace, str(labels[SERVICE_NAME_LABEL])))

    def _on_pod(self, event: Event) -> None:
        new = None if event.type == DELETED else event.new.obj
        old = event.old.obj if event.old is not None else None
        if event.type == ADDED and not pod_ips(event.new.obj):
            return
        if old is not None and new is not None and _pod_projection(old) == _pod_projection(new):
            return
        namespace = event.key[0]
        for pod in (old, new):
            if pod is not None:
                labels = pod["metadata"].get("labels") or {}
                for key in self._service_selectors.matching(namespace, labels):
                    self.mark(key)

    def _on_node(self, event: Event) -> None:
        if event.type not in (ADDED, DELETED):
            old = (event.old.obj["metadata"].get("labels") or {}) if event.old else {}
            new = event.new.obj["metadata"].get("labels") or {}
            if old.get(ZONE_LABEL) == new.get(ZONE_LABEL):
                return
        for key in self._service_selectors.filed_keys():
            self.mark(key)

    # ----- sync -----------------------------------------------------------------------------

    async def sync(self, key: ObjKey) -> bool:
        namespace = key[0]
        stored = self.api.store.get(SERVICES, key)
        spec = (stored.obj.get("spec") or {}) if stored is not None else {}
        if stored is None or not spec.get("selector") or service_type(spec) == "ExternalName":
            # Gone (the garbage collector would get there too), or no longer selecting.
            plan = SlicePlan(delete=self._managed_slices(key, store_order=True))
        else:
            plan = reconcile_slices(
                service=stored.obj,
                pods=self._selected_pods(namespace, spec["selector"]),
                nodes={k[1]: s.obj for k, s in self.api.store.items(NODES, None)},
                existing=self._managed_slices(key, store_order=False),
                max_per_slice=self.max_endpoints_per_slice,
            )
        return await self._apply(namespace, plan)

    def _selected_pods(self, namespace: str, selector: dict[str, str]) -> list[Obj]:
        """The namespace's pods the selector may match (``reconcile_slices`` checks)."""
        pods: list[Obj] = []
        for name in self._pod_labels.selected(namespace, selector):
            stored = self.api.store.get(PODS, (namespace, name))
            if stored is not None:
                pods.append(stored.obj)
        return pods

    def _managed_slices(self, key: ObjKey, *, store_order: bool) -> list[Obj]:
        """The slices this controller manages for the Service ``key``. ``reconcile_slices``
        sorts them by name; deleting them all goes in the store's (creation) order, as the
        controller always has, which only that rare case pays a scan of the namespace for."""
        namespace, name = key
        names = self._managed.get(key, set())
        if store_order:
            found = (s for (_, n), s in self.api.store.items(SLICES, namespace) if n in names)
        else:
            found = (s for n in names if (s := self.api.store.get(SLICES, (namespace, n))))
        return [s.obj for s in found if _managing_service(s.obj) == name]

    async def _apply(self, namespace: str, plan: SlicePlan) -> bool:
        retry = False
        for body in plan.create:
            retry |= await self._write("create", namespace, body)
        for body in plan.update:
            retry |= await self._write("update", namespace, body)
        for body in plan.delete:
            retry |= await self._write("delete", namespace, body)
        return retry

    async def _write(self, verb: str, namespace: str, body: Obj) -> bool:
        name = str(body["metadata"].get("name") or "")
        try:
            if verb == "create":
                await self.api.create(
                    self._slices, namespace=namespace, body=body, opts=SLICE_WRITER
                )
            elif verb == "update":
                await self.api.update(
                    self._slices, namespace=namespace, name=name, body=body, opts=SLICE_WRITER
                )
            else:
                await self.api.delete(
                    self._slices,
                    namespace=namespace,
                    name=name,
                    options={"preconditions": {"uid": body["metadata"].get("uid")}},
                    opts=SLICE_WRITER,
                )
        except StatusError as error:
            if verb == "delete" and error.code == 404:
                return False
            if error.code not in (404, 409):
                log.warning(
                    "event=endpointslice_write_failed verb=%s slice=%s/%s code=%s message=%s",
                    verb,
                    namespace,
                    name,
                    error.code,
                    error.message,
                )
            return True
        return False


# What ``Cluster`` starts from this module (``ServiceAllocator`` first: Services created later
# get their addresses at once).
CONTROLLERS = (ServiceAllocator, EndpointSliceController)
