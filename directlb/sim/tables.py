"""Server-side Table responses (``Accept: application/json;as=Table;g=meta.k8s.io;v=v1``).

kubectl asks the API server for a ``meta.k8s.io/v1`` ``Table`` and prints its rows as they
come: the columns of ``kubectl get pod -o wide`` are decided by the *server*, not by kubectl.
This module reproduces what the real kube-apiserver (v1.32) answers:

* built-in resources use the printers of ``pkg/printers/internalversion/printers.go``. The
  server always prints in wide mode (``pkg/printers/storage``: ``GenerateOptions{Wide: true}``)
  and kubectl hides the columns whose ``priority`` is above 0 unless ``-o wide``;
* custom resources use the CRD's ``additionalPrinterColumns`` (apiextensions-apiserver's
  ``tableconvertor``), evaluated as simple JSONPath, or a single ``Age`` column when the CRD
  declares none;
* CustomResourceDefinitions themselves use the generic convertor (``Name``, ``Created At``).

Column definitions, descriptions included, are the real ones; cell values follow the real
printers line by line (pod STATUS, RESTARTS "(5m ago)", READINESS GATES, service EXTERNAL-IP,
``duration.HumanDuration`` ages …). Where a field would always have been filled in by the real
server's defaulting (a Service's ``type``, a port's ``protocol``, a Pod's ``phase`` …) and the
stored object lacks it, the default is printed, as a real cluster would show it.

The module is pure: objects in, one JSON-ready dict out; ``now`` is a parameter.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from directlb.sim.contracts import Obj, ResourceKey, StatusError

__all__ = ["INCLUDE_OBJECT_POLICIES", "TABLE_GROUP_VERSIONS", "human_duration", "to_table"]

#: Values of the ``includeObject`` query parameter ("" means the default, Metadata).
INCLUDE_OBJECT_POLICIES: Final = ("None", "Metadata", "Object")
#: The group versions a Table can be asked for in (kubectl 1.32 asks for v1, then v1beta1).
TABLE_GROUP_VERSIONS: Final = ("meta.k8s.io/v1", "meta.k8s.io/v1beta1")

Cell = str | int | float | bool | None

_DESCRIPTIONS: Final[dict[str, str]] = {
    "ObjectMeta.name": (
        "Name must be unique within a namespace. Is required when creating resources, "
        "although some resources may allow a client to request the generation of an "
        "appropriate name automatically. Name is primarily intended for creation "
        "idempotence and configuration definition. Cannot be updated. More info: "
        "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
    ),
    "ObjectMeta.creationTimestamp": (
        "CreationTimestamp is a timestamp representing the server time when this object "
        "was created. It is not guaranteed to be set in happens-before order across "
        "separate operations. Clients may not set this value. It is represented in "
        "RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for "
        "lists. More info: "
        "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
    ),
    "PodStatus.podIP": (
        "podIP address allocated to the pod. Routable at least within the cluster. Empty "
        "if not yet allocated."
    ),
    "PodSpec.nodeName": (
        "NodeName indicates in which node this pod is scheduled. If empty, this pod is a "
        "candidate for scheduling by the scheduler defined in schedulerName. Once this "
        "field is set, the kubelet for this node becomes responsible for the lifecycle "
        "of this pod. This field should not be used to express a desire for the pod to "
        "be scheduled on a specific node. "
        "https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/#nodename"
    ),
    "PodStatus.nominatedNodeName": (
        "nominatedNodeName is set only when this pod preempts other pods on the node, "
        "but it cannot be scheduled right away as preemption victims receive their "
        "graceful termination periods. This field does not guarantee that the pod will "
        "be scheduled on this node. Scheduler may decide to place the pod elsewhere if "
        "other nodes become available sooner. Scheduler may also decide to give the "
        "resources on this node to a higher priority pod that is created after "
        "preemption. As a result, this field may be different than PodSpec.nodeName when "
        "the pod is scheduled."
    ),
    "PodSpec.readinessGates": (
        "If specified, all readiness gates will be evaluated for pod readiness. A pod is "
        "ready when all its containers are ready AND all conditions specified in the "
        'readiness gates have status equal to "True" More info: '
        "https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates"
    ),
    "ServiceSpec.type": (
        "type determines how the Service is exposed. Defaults to ClusterIP. Valid "
        'options are ExternalName, ClusterIP, NodePort, and LoadBalancer. "ClusterIP" '
        "allocates a cluster-internal IP address for load-balancing to endpoints. "
        "Endpoints are determined by the selector or if that is not specified, by manual "
        "construction of an Endpoints object or EndpointSlice objects. If clusterIP is "
        '"None", no virtual IP is allocated and the endpoints are published as a set of '
        'endpoints rather than a virtual IP. "NodePort" builds on ClusterIP and '
        "allocates a port on every node which routes to the same endpoints as the "
        'clusterIP. "LoadBalancer" builds on NodePort and creates an external '
        "load-balancer (if supported in the current cloud) which routes to the same "
        'endpoints as the clusterIP. "ExternalName" aliases this service to the '
        "specified externalName. Several other fields do not apply to ExternalName "
        "services. More info: "
        "https://kubernetes.io/docs/concepts/services-networking/service/#publishing-services-service-types"
    ),
    "ServiceSpec.clusterIP": (
        "clusterIP is the IP address of the service and is usually assigned randomly. If "
        "an address is specified manually, is in-range (as per system configuration), "
        "and is not in use, it will be allocated to the service; otherwise creation of "
        "the service will fail. This field may not be changed through updates unless the "
        "type field is also being changed to ExternalName (which requires this field to "
        "be blank) or the type field is being changed from ExternalName (in which case "
        "this field may optionally be specified, as describe above).  Valid values are "
        '"None", empty string (""), or a valid IP address. Setting this to "None" makes '
        'a "headless service" (no virtual IP), which is useful when direct endpoint '
        "connections are preferred and proxying is not required.  Only applies to types "
        "ClusterIP, NodePort, and LoadBalancer. If this field is specified when creating "
        "a Service of type ExternalName, creation will fail. This field will be wiped "
        "when updating a Service to type ExternalName. More info: "
        "https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies"
    ),
    "ServiceSpec.externalIPs": (
        "externalIPs is a list of IP addresses for which nodes in the cluster will also "
        "accept traffic for this service.  These IPs are not managed by Kubernetes.  The "
        "user is responsible for ensuring that traffic arrives at a node with this IP.  "
        "A common example is external load-balancers that are not part of the Kubernetes "
        "system."
    ),
    "ServiceSpec.ports": (
        "The list of ports that are exposed by this service. More info: "
        "https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies"
    ),
    "ServiceSpec.selector": (
        "Route service traffic to pods with label keys and values matching this "
        "selector. If empty or not present, the service is assumed to have an external "
        "process managing its endpoints, which Kubernetes will not modify. Only applies "
        "to types ClusterIP, NodePort, and LoadBalancer. Ignored if type is "
        "ExternalName. More info: "
        "https://kubernetes.io/docs/concepts/services-networking/service/"
    ),
    "NodeSystemInfo.kubeletVersion": ("Kubelet Version reported by the node."),
    "NodeStatus.addresses": (
        "List of addresses reachable to the node. Queried from cloud provider, if "
        "available. More info: "
        "https://kubernetes.io/docs/reference/node/node-status/#addresses Note: This "
        "field is declared as mergeable, but the merge key is not sufficiently unique, "
        "which can cause data corruption when it is merged. Callers should instead use a "
        "full-replacement patch. See https://pr.k8s.io/79391 for an example. Consumers "
        "should assume that addresses can change during the lifetime of a Node. However, "
        "there are some exceptions where this may not be possible, such as Pods that "
        "inherit a Node's address in its own status or consumers of the downward API "
        "(status.hostIP)."
    ),
    "NodeSystemInfo.osImage": (
        "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy))."
    ),
    "NodeSystemInfo.kernelVersion": (
        "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64)."
    ),
    "NodeSystemInfo.containerRuntimeVersion": (
        "ContainerRuntime Version reported by the node through runtime remote API (e.g. "
        "containerd://1.4.2)."
    ),
    "Event.lastTimestamp": (
        "The time at which the most recent occurrence of this event was recorded."
    ),
    "Event.type": ("Type of this event (Normal, Warning), new types could be added in the future"),
    "Event.reason": (
        "This should be a short, machine understandable string that gives the reason for "
        "the transition into the object's current status."
    ),
    "Event.involvedObject": ("The object that this event is about."),
    "ObjectReference.fieldPath": (
        "If referring to a piece of an object instead of an entire object, this string "
        "should contain a valid JSON/Go field access statement, such as "
        "desiredState.manifest.containers[2]. For example, if the object reference is to "
        "a container within a pod, this would take on a value like: "
        '"spec.containers{name}" (where "name" refers to the name of the container that '
        'triggered the event) or if no container name is specified "spec.containers[2]" '
        "(container with index 2 in this pod). This syntax is chosen only to have some "
        "well-defined way of referencing a part of an object."
    ),
    "Event.source": (
        "The component reporting this event. Should be a short machine understandable string."
    ),
    "Event.message": ("A human-readable description of the status of this operation."),
    "Event.firstTimestamp": (
        "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)"
    ),
    "Event.count": ("The number of times this event has occurred."),
    "Secret.type": (
        "Used to facilitate programmatic handling of secret data. More info: "
        "https://kubernetes.io/docs/concepts/configuration/secret/#secret-types"
    ),
    "Secret.data": (
        "Data contains the secret data. Each key must consist of alphanumeric "
        "characters, '-', '_' or '.'. The serialized form of the secret data is a base64 "
        "encoded string, representing the arbitrary (possibly non-string) data value "
        "here. Described in https://tools.ietf.org/html/rfc4648#section-4"
    ),
    "ServiceAccount.secrets": (
        "Secrets is a list of the secrets in the same namespace that pods running using "
        "this ServiceAccount are allowed to use. Pods are only limited to this list if "
        'this service account has a "kubernetes.io/enforce-mountable-secrets" annotation '
        'set to "true". The "kubernetes.io/enforce-mountable-secrets" annotation is '
        "deprecated since v1.32. Prefer separate namespaces to isolate access to mounted "
        "secrets. This field should not be used to find auto-generated service account "
        "token secrets for use outside of pods. Instead, tokens can be requested "
        "directly using the TokenRequest API, or service account token secrets can be "
        "manually created. More info: "
        "https://kubernetes.io/docs/concepts/configuration/secret"
    ),
    "ConfigMap.data": (
        "Data contains the configuration data. Each key must consist of alphanumeric "
        "characters, '-', '_' or '.'. Values with non-UTF-8 byte sequences must use the "
        "BinaryData field. The keys stored in Data must not overlap with the keys in the "
        "BinaryData field, this is enforced during validation process."
    ),
    "extensions/v1beta1 ReplicaSetSpec.replicas": (
        "Replicas is the number of desired replicas. This is a pointer to distinguish "
        "between explicit zero and unspecified. Defaults to 1. More info: "
        "https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller/#what-is-a-replicationcontroller"
    ),
    "extensions/v1beta1 ReplicaSetStatus.replicas": (
        "Replicas is the most recently observed number of replicas. More info: "
        "https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller/#what-is-a-replicationcontroller"
    ),
    "extensions/v1beta1 ReplicaSetStatus.readyReplicas": (
        "The number of ready replicas for this replica set."
    ),
    "extensions/v1beta1 ReplicaSetSpec.selector": (
        "Selector is a label query over pods that should match the replica count. If the "
        "selector is empty, it is defaulted to the labels present on the pod template. "
        "Label keys and values that must match in order to be controlled by this replica "
        "set. More info: "
        "https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors"
    ),
    "extensions/v1beta1 DeploymentStatus.updatedReplicas": (
        "Total number of non-terminated pods targeted by this deployment that have the "
        "desired template spec."
    ),
    "extensions/v1beta1 DeploymentStatus.availableReplicas": (
        "Total number of available pods (ready for at least minReadySeconds) targeted by "
        "this deployment."
    ),
    "extensions/v1beta1 DeploymentSpec.selector": (
        "Label selector for pods. Existing ReplicaSets whose pods are selected by this "
        "will be the ones affected by this deployment."
    ),
    "discovery/v1beta1 EndpointSlice.addressType": (
        "addressType specifies the type of address carried by this EndpointSlice. All "
        "addresses in this slice must be the same type. This field is immutable after "
        "creation. The following address types are currently supported: * IPv4: "
        "Represents an IPv4 Address. * IPv6: Represents an IPv6 Address. * FQDN: "
        "Represents a Fully Qualified Domain Name."
    ),
    "discovery/v1beta1 EndpointSlice.ports": (
        "ports specifies the list of network ports exposed by each endpoint in this "
        "slice. Each port must have a unique name. When ports is empty, it indicates "
        "that there are no defined ports. When a port is defined with a nil port value, "
        'it indicates "all ports". Each slice may include a maximum of 100 ports.'
    ),
    "discovery/v1beta1 EndpointSlice.endpoints": (
        "endpoints is a list of unique endpoints in this slice. Each slice may include a "
        "maximum of 1000 endpoints."
    ),
    "LeaseSpec.holderIdentity": (
        "holderIdentity contains the identity of the holder of a current lease. If "
        "Coordinated Leader Election is used, the holder identity must be equal to the "
        "elected LeaseCandidate.metadata.name field."
    ),
}


# --------------------------------------------------------------------------------------------
# Columns


@dataclass(frozen=True)
class Column:
    """One ``TableColumnDefinition``."""

    name: str
    type: str
    description: str
    priority: int = 0
    format: str = ""

    def to_json(self) -> Obj:
        return {
            "name": self.name,
            "type": self.type,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        }


def _name_column(priority: int = 0) -> Column:
    return Column("Name", "string", _DESCRIPTIONS["ObjectMeta.name"], priority, "name")


def _age_column() -> Column:
    return Column("Age", "string", _DESCRIPTIONS["ObjectMeta.creationTimestamp"])


_CONTAINERS_DESC: Final = "Names of each container in the template."
_IMAGES_DESC: Final = "Images referenced by each container in the template."
_WEBHOOKS_DESC: Final = "Webhooks indicates the number of webhooks registered in this configuration"


def _d(key: str) -> str:
    return _DESCRIPTIONS[key]


_POD_COLUMNS: Final = (
    _name_column(),
    Column("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
    Column("Status", "string", "The aggregate status of the containers in this pod."),
    Column(
        "Restarts",
        "string",
        "The number of times the containers in this pod have been restarted and when the last "
        "container in this pod has restarted.",
    ),
    _age_column(),
    Column("IP", "string", _d("PodStatus.podIP"), 1),
    Column("Node", "string", _d("PodSpec.nodeName"), 1),
    Column("Nominated Node", "string", _d("PodStatus.nominatedNodeName"), 1),
    Column("Readiness Gates", "string", _d("PodSpec.readinessGates"), 1),
)
_SERVICE_COLUMNS: Final = (
    _name_column(),
    Column("Type", "string", _d("ServiceSpec.type")),
    Column("Cluster-IP", "string", _d("ServiceSpec.clusterIP")),
    Column("External-IP", "string", _d("ServiceSpec.externalIPs")),
    Column("Port(s)", "string", _d("ServiceSpec.ports")),
    _age_column(),
    Column("Selector", "string", _d("ServiceSpec.selector"), 1),
)
_NODE_COLUMNS: Final = (
    _name_column(),
    Column("Status", "string", "The status of the node"),
    Column("Roles", "string", "The roles of the node"),
    _age_column(),
    Column("Version", "string", _d("NodeSystemInfo.kubeletVersion")),
    Column("Internal-IP", "string", _d("NodeStatus.addresses"), 1),
    Column("External-IP", "string", _d("NodeStatus.addresses"), 1),
    Column("OS-Image", "string", _d("NodeSystemInfo.osImage"), 1),
    Column("Kernel-Version", "string", _d("NodeSystemInfo.kernelVersion"), 1),
    Column("Container-Runtime", "string", _d("NodeSystemInfo.containerRuntimeVersion"), 1),
)
_NAMESPACE_COLUMNS: Final = (
    _name_column(),
    Column("Status", "string", "The status of the namespace"),
    _age_column(),
)
_EVENT_COLUMNS: Final = (
    Column("Last Seen", "string", _d("Event.lastTimestamp")),
    Column("Type", "string", _d("Event.type")),
    Column("Reason", "string", _d("Event.reason")),
    Column("Object", "string", _d("Event.involvedObject")),
    Column("Subobject", "string", _d("ObjectReference.fieldPath"), 1),
    Column("Source", "string", _d("Event.source"), 1),
    Column("Message", "string", _d("Event.message")),
    Column("First Seen", "string", _d("Event.firstTimestamp"), 1),
    Column("Count", "string", _d("Event.count"), 1),
    _name_column(priority=1),
)
_SECRET_COLUMNS: Final = (
    _name_column(),
    Column("Type", "string", _d("Secret.type")),
    Column("Data", "string", _d("Secret.data")),
    _age_column(),
)
_CONFIGMAP_COLUMNS: Final = (
    _name_column(),
    Column("Data", "string", _d("ConfigMap.data")),
    _age_column(),
)
_SERVICEACCOUNT_COLUMNS: Final = (
    _name_column(),
    Column("Secrets", "string", _d("ServiceAccount.secrets")),
    _age_column(),
)
_DEPLOYMENT_COLUMNS: Final = (
    _name_column(),
    Column("Ready", "string", "Number of the pod with ready state"),
    Column("Up-to-date", "string", _d("extensions/v1beta1 DeploymentStatus.updatedReplicas")),
    Column("Available", "string", _d("extensions/v1beta1 DeploymentStatus.availableReplicas")),
    _age_column(),
    Column("Containers", "string", _CONTAINERS_DESC, 1),
    Column("Images", "string", _IMAGES_DESC, 1),
    Column("Selector", "string", _d("extensions/v1beta1 DeploymentSpec.selector"), 1),
)
_REPLICASET_COLUMNS: Final = (
    _name_column(),
    Column("Desired", "integer", _d("extensions/v1beta1 ReplicaSetSpec.replicas")),
    Column("Current", "integer", _d("extensions/v1beta1 ReplicaSetStatus.replicas")),
    Column("Ready", "integer", _d("extensions/v1beta1 ReplicaSetStatus.readyReplicas")),
    _age_column(),
    Column("Containers", "string", _CONTAINERS_DESC, 1),
    Column("Images", "string", _IMAGES_DESC, 1),
    Column("Selector", "string", _d("extensions/v1beta1 ReplicaSetSpec.selector"), 1),
)
_ENDPOINTSLICE_COLUMNS: Final = (
    _name_column(),
    Column("AddressType", "string", _d("discovery/v1beta1 EndpointSlice.addressType")),
    Column("Ports", "string", _d("discovery/v1beta1 EndpointSlice.ports")),
    Column("Endpoints", "string", _d("discovery/v1beta1 EndpointSlice.endpoints")),
    _age_column(),
)
_INGRESS_COLUMNS: Final = (
    _name_column(),
    Column(
        "Class",
        "string",
        "The name of the IngressClass resource that should be used for additional configuration",
    ),
    Column(
        "Hosts",
        "string",
        "Hosts that incoming requests are matched against before the ingress rule",
    ),
    Column(
        "Address", "string", "Address is a list containing ingress points for the load-balancer"
    ),
    Column("Ports", "string", "Ports of TLS configurations that open"),
    _age_column(),
)
_INGRESSCLASS_COLUMNS: Final = (
    _name_column(),
    Column("Controller", "string", "Controller that is responsible for handling this class"),
    Column("Parameters", "string", "A reference to a resource with additional parameters"),
    _age_column(),
)
_LEASE_COLUMNS: Final = (
    _name_column(),
    Column("Holder", "string", _d("LeaseSpec.holderIdentity")),
    _age_column(),
)
_WEBHOOK_COLUMNS: Final = (
    _name_column(),
    Column("Webhooks", "integer", _WEBHOOKS_DESC),
    _age_column(),
)
# apiserver's rest.NewDefaultTableConvertor, used for CustomResourceDefinitions.
_DEFAULT_COLUMNS: Final = (
    _name_column(),
    Column("Created At", "date", _d("ObjectMeta.creationTimestamp")),
)
# apiextensions-apiserver's serveDefaultColumnsIfEmpty: a CRD version without printer columns.
_CR_DEFAULT_PRINTER_COLUMNS: Final[tuple[Obj, ...]] = (
    {
        "name": "Age",
        "type": "date",
        "description": _d("ObjectMeta.creationTimestamp"),
        "jsonPath": ".metadata.creationTimestamp",
    },
)


# --------------------------------------------------------------------------------------------
# Small accessors: stored objects are plain JSON, and a missing field reads as Go's zero value.


def _get(obj: Any, *path: str) -> Any:
    for part in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _int(value: Any) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    return 0


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _name(obj: Obj) -> str:
    return _str(_get(obj, "metadata", "name"))


# --------------------------------------------------------------------------------------------
# Time


_RFC3339: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})"
)
_GO_ZERO_TIME: Final = datetime(1, 1, 1, tzinfo=UTC)


def _parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp; ``None`` for Go's zero time (absent, empty, null or year 1).

    Raises ``ValueError`` for a string that is not RFC 3339 (Go's ``time.Parse`` would fail).
    """
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"not a timestamp: {value!r}")
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise ValueError(f"not an RFC 3339 timestamp: {value!r}")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    offset = timedelta(0)
    if zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        offset = sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
    moment = datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tzinfo=UTC
    )
    moment -= offset
    return None if moment == _GO_ZERO_TIME else moment


def _trunc_div(a: int, b: int) -> int:
    """Go's integer division: truncate toward zero."""
    q = abs(a) // b
    return q if a >= 0 else -q


def human_duration(d: timedelta) -> str:
    """``k8s.io/apimachinery/pkg/util/duration.HumanDuration``: "24s", "6m5s", "6d4h", "2y"…"""
    nanos = (d.days * 86_400 + d.seconds) * 1_000_000_000 + d.microseconds * 1_000
    seconds = _trunc_div(nanos, 1_000_000_000)
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 60 * 2:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        s = seconds % 60
        return f"{minutes}m" if s == 0 else f"{minutes}m{s}s"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        years = hours // 24 // 365
        return f"{years}y" if dy == 0 else f"{years}y{dy}d"
    return f"{hours // 24 // 365}y"


def _since(value: Any, now: datetime) -> str:
    """The printers' ``translateTimestampSince``: "<unknown>" for a zero timestamp."""
    try:
        moment = _parse_time(value)
    except ValueError:
        moment = None
    if moment is None:
        return "<unknown>"
    return human_duration(now - moment)


def _rfc3339_utc(value: Any) -> str:
    """Go's ``t.UTC().Format(time.RFC3339)`` (the zero time is "0001-01-01T00:00:00Z")."""
    try:
        moment = _parse_time(value) or _GO_ZERO_TIME
    except ValueError:
        moment = _GO_ZERO_TIME
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
        f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}Z"
    )


# --------------------------------------------------------------------------------------------
# Labels and label selectors (k8s.io/apimachinery/pkg/labels, metav1.LabelSelectorAsSelector)


_QUALIFIED_NAME: Final = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_DNS1123_SUBDOMAIN: Final = re.compile(
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
)
_LABEL_VALUE: Final = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")


def _valid_label_key(key: str) -> bool:
    parts = key.split("/")
    if len(parts) > 2:
        return False
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix or len(prefix) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(prefix):
            return False
    name = parts[-1]
    return 0 < len(name) <= 63 and _QUALIFIED_NAME.fullmatch(name) is not None


def _valid_label_value(value: str) -> bool:
    return len(value) <= 63 and _LABEL_VALUE.fullmatch(value) is not None


def _format_labels(labels: Any) -> str:
    """``labels.FormatLabels``: sorted "k=v" pairs, or "<none>"."""
    pairs = sorted(f"{k}={_str(v)}" for k, v in _dict(labels).items())
    return ",".join(pairs) or "<none>"


_SELECTOR_OPERATORS: Final = {"In": " in ", "NotIn": " notin ", "Exists": "", "DoesNotExist": ""}


def _selector_string(selector: Any) -> str | None:
    """``LabelSelectorAsSelector(selector).String()``; ``None`` where Go returns an error."""
    if not isinstance(selector, dict):
        return ""  # labels.Nothing()
    match_labels = _dict(selector.get("matchLabels"))
    match_expressions = _list(selector.get("matchExpressions"))
    if not match_labels and not match_expressions:
        return ""  # labels.Everything()
    requirements: list[tuple[str, str]] = []
    for key, value in match_labels.items():
        value = _str(value)
        if not _valid_label_key(key) or not _valid_label_value(value):
            return None
        requirements.append((key, f"{key}={value}"))
    for expression in match_expressions:
        key = _str(_get(expression, "key"))
        operator = _get(expression, "operator")
        values = [_str(v) for v in _list(_get(expression, "values"))]
        if operator not in _SELECTOR_OPERATORS or not _valid_label_key(key):
            return None
        if not all(_valid_label_value(v) for v in values):
            return None
        if operator in ("In", "NotIn"):
            if not values:
                return None
            shown = values[0] if len(values) == 1 else ",".join(sorted(values))
            requirements.append((key, f"{key}{_SELECTOR_OPERATORS[operator]}({shown})"))
        else:
            if values:
                return None
            requirements.append((key, key if operator == "Exists" else f"!{key}"))
    requirements.sort(key=lambda requirement: requirement[0])
    return ",".join(text for _, text in requirements)


def _format_label_selector(selector: Any) -> str:
    """``metav1.FormatLabelSelector``: "<error>" for an invalid one, "<none>" for an empty one."""
    text = _selector_string(selector)
    if text is None:
        return "<error>"
    return text or "<none>"


def _layout_containers(containers: Any) -> tuple[str, str]:
    """``layoutContainerCells``: the containers' names and images, comma-separated."""
    items = _list(containers)
    names = ",".join(_str(_get(c, "name")) for c in items)
    images = ",".join(_str(_get(c, "image")) for c in items)
    return names, images


def _list_with_more(items: list[str], more: bool, count: int, limit: int) -> str:
    text = ",".join(items)
    if more:
        return f"{text} + {count - limit} more..."
    return text or "<unset>"


def _load_balancer_addresses(status: Any) -> list[str]:
    """``loadBalancerStatusStringer`` in wide mode: unique ``ip`` (else ``hostname``), sorted."""
    found: set[str] = set()
    for ingress in _list(_get(status, "ingress")):
        ip, hostname = _str(_get(ingress, "ip")), _str(_get(ingress, "hostname"))
        if ip:
            found.add(ip)
        elif hostname:
            found.add(hostname)
    return sorted(found)


# --------------------------------------------------------------------------------------------
# Printers: one function per kind, returning the wide row's cells.


def _condition(conditions: Any, condition_type: str) -> dict[str, Any] | None:
    for condition in _list(conditions):
        if _get(condition, "type") == condition_type:
            return _dict(condition)
    return None


def _terminated_reason(terminated: dict[str, Any], prefix: str) -> str:
    if reason := _str(terminated.get("reason")):
        return f"{prefix}{reason}" if prefix else reason
    if signal := _int(terminated.get("signal")):
        return f"{prefix}Signal:{signal}"
    return f"{prefix}ExitCode:{_int(terminated.get('exitCode'))}"


class _Restarts:
    """The restart count and the latest ``lastState.terminated.finishedAt`` among containers."""

    def __init__(self) -> None:
        self.count = 0
        self.last: datetime | None = None

    def add(self, status: Any) -> None:
        self.count += _int(_get(status, "restartCount"))
        terminated = _get(status, "lastState", "terminated")
        if isinstance(terminated, dict):
            try:
                finished = _parse_time(terminated.get("finishedAt"))
            except ValueError:
                finished = None
            if finished is not None and (self.last is None or finished > self.last):
                self.last = finished


def _print_pod(pod: Obj, now: datetime) -> list[Cell]:
    spec, status = _dict(pod.get("spec")), _dict(pod.get("status"))
    conditions = status.get("conditions")
    phase = _str(status.get("phase")) or "Pending"
    reason = _str(status.get("reason")) or phase
    if any(
        _get(c, "type") == "PodScheduled" and _get(c, "reason") == "SchedulingGated"
        for c in _list(conditions)
    ):
        reason = "SchedulingGated"

    init_specs = _list(spec.get("initContainers"))
    restartable = {
        _str(_get(c, "name")) for c in init_specs if _get(c, "restartPolicy") == "Always"
    }
    total = len(_list(spec.get("containers"))) + sum(
        1 for c in init_specs if _get(c, "restartPolicy") == "Always"
    )
    ready = 0
    restarts, sidecar_restarts = _Restarts(), _Restarts()

    initializing = False
    for index, container in enumerate(_list(status.get("initContainerStatuses"))):
        restarts.add(container)
        is_sidecar = _str(_get(container, "name")) in restartable
        if is_sidecar:
            sidecar_restarts.add(container)
        state = _dict(_get(container, "state"))
        terminated, waiting = state.get("terminated"), state.get("waiting")
        if isinstance(terminated, dict) and _int(terminated.get("exitCode")) == 0:
            continue
        if is_sidecar and _get(container, "started") is True:
            if _get(container, "ready") is True:
                ready += 1
            continue
        if isinstance(terminated, dict):
            reason = _terminated_reason(terminated, "Init:")
        elif isinstance(waiting, dict) and _str(waiting.get("reason")) not in (
            "",
            "PodInitializing",
        ):
            reason = "Init:" + _str(waiting.get("reason"))
        else:
            reason = f"Init:{index}/{len(init_specs)}"
        initializing = True
        break

    initialized = _get(_condition(conditions, "Initialized"), "status") == "True"
    if not initializing or initialized:
        restarts = sidecar_restarts
        has_running = False
        for container in reversed(_list(status.get("containerStatuses"))):
            restarts.add(container)
            state = _dict(_get(container, "state"))
            terminated, waiting = state.get("terminated"), state.get("waiting")
            if isinstance(waiting, dict) and _str(waiting.get("reason")):
                reason = _str(waiting.get("reason"))
            elif isinstance(terminated, dict):
                reason = _terminated_reason(terminated, "")
            elif _get(container, "ready") is True and isinstance(state.get("running"), dict):
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            pod_ready = _get(_condition(conditions, "Ready"), "status") == "True"
            reason = "Running" if pod_ready else "NotReady"

    if _get(pod, "metadata", "deletionTimestamp"):
        if _str(status.get("reason")) == "NodeLost":
            reason = "Unknown"
        elif phase not in ("Succeeded", "Failed"):
            reason = "Terminating"

    restarts_text = str(restarts.count)
    if restarts.count != 0 and restarts.last is not None:
        restarts_text = f"{restarts.count} ({human_duration(now - restarts.last)} ago)"

    # v1 -> internal conversion: status.podIP wins over podIPs[0] when both are set.
    pod_ip = _str(status.get("podIP"))
    if not pod_ip and (pod_ips := _list(status.get("podIPs"))):
        pod_ip = _str(_get(pod_ips[0], "ip"))

    gates = _list(spec.get("readinessGates"))
    readiness_gates = "<none>"
    if gates:
        true_conditions = sum(
            1
            for gate in gates
            if _get(_condition(conditions, _str(_get(gate, "conditionType"))), "status") == "True"
        )
        readiness_gates = f"{true_conditions}/{len(gates)}"

    return [
        _name(pod),
        f"{ready}/{total}",
        reason,
        restarts_text,
        _since(_get(pod, "metadata", "creationTimestamp"), now),
        pod_ip or "<none>",
        _str(spec.get("nodeName")) or "<none>",
        _str(status.get("nominatedNodeName")) or "<none>",
        readiness_gates,
    ]


_POD_COMPLETED: Final = {
    "Succeeded": {
        "type": "Completed",
        "status": "True",
        "reason": "Succeeded",
        "message": "The pod has completed successfully.",
    },
    "Failed": {
        "type": "Completed",
        "status": "True",
        "reason": "Failed",
        "message": "The pod failed.",
    },
}


def _pod_row_conditions(pod: Obj) -> list[Obj] | None:
    completed = _POD_COMPLETED.get(_str(_get(pod, "status", "phase")))
    return [dict(completed)] if completed else None


def _service_external_ip(service: Obj, service_type: str) -> str:
    external_ips = [_str(ip) for ip in _list(_get(service, "spec", "externalIPs"))]
    if service_type in ("ClusterIP", "NodePort"):
        return ",".join(external_ips) or "<none>"
    if service_type == "LoadBalancer":
        addresses = _load_balancer_addresses(_get(service, "status", "loadBalancer"))
        if external_ips:
            return ",".join(addresses + external_ips)
        return ",".join(addresses) or "<pending>"
    if service_type == "ExternalName":
        return _str(_get(service, "spec", "externalName"))
    return "<unknown>"


def _print_service(service: Obj, now: datetime) -> list[Cell]:
    spec = _dict(service.get("spec"))
    service_type = _str(spec.get("type")) or "ClusterIP"
    cluster_ips = _list(spec.get("clusterIPs"))
    cluster_ip = _str(cluster_ips[0]) if cluster_ips else _str(spec.get("clusterIP"))
    ports = []
    for port in _list(spec.get("ports")):
        protocol = _str(_get(port, "protocol")) or "TCP"
        number, node_port = _int(_get(port, "port")), _int(_get(port, "nodePort"))
        ports.append(
            f"{number}:{node_port}/{protocol}" if node_port > 0 else f"{number}/{protocol}"
        )
    return [
        _name(service),
        service_type,
        cluster_ip or "<none>",
        _service_external_ip(service, service_type),
        ",".join(ports) or "<none>",
        _since(_get(service, "metadata", "creationTimestamp"), now),
        _format_labels(spec.get("selector")),
    ]


def _node_address(node: Obj, address_type: str) -> str:
    for address in _list(_get(node, "status", "addresses")):
        if _get(address, "type") == address_type:
            return _str(_get(address, "address"))
    return "<none>"


def _print_node(node: Obj, now: datetime) -> list[Cell]:
    status: list[str] = []
    ready = _condition(_get(node, "status", "conditions"), "Ready")
    if ready is not None:
        status.append("Ready" if ready.get("status") == "True" else "NotReady")
    else:
        status.append("Unknown")
    if _get(node, "spec", "unschedulable") is True:
        status.append("SchedulingDisabled")
    roles: set[str] = set()
    for key, value in _dict(_get(node, "metadata", "labels")).items():
        if key.startswith("node-role.kubernetes.io/"):
            if role := key.removeprefix("node-role.kubernetes.io/"):
                roles.add(role)
        elif key == "kubernetes.io/role" and _str(value):
            roles.add(_str(value))
    info = _dict(_get(node, "status", "nodeInfo"))
    return [
        _name(node),
        ",".join(status),
        ",".join(sorted(roles)) or "<none>",
        _since(_get(node, "metadata", "creationTimestamp"), now),
        _str(info.get("kubeletVersion")),
        _node_address(node, "InternalIP"),
        _node_address(node, "ExternalIP"),
        _str(info.get("osImage")) or "<unknown>",
        _str(info.get("kernelVersion")) or "<unknown>",
        _str(info.get("containerRuntimeVersion")) or "<unknown>",
    ]


def _print_namespace(namespace: Obj, now: datetime) -> list[Cell]:
    return [
        _name(namespace),
        _str(_get(namespace, "status", "phase")) or "Active",
        _since(_get(namespace, "metadata", "creationTimestamp"), now),
    ]


def _event_fields(event: Obj, group: str) -> dict[str, Any]:
    """The internal ``core.Event`` fields the printer reads, from either API's shape."""
    if group == "events.k8s.io":  # events.k8s.io/v1 names (pkg/apis/events/v1 conversion)
        return {
            "involvedObject": _dict(event.get("regarding")),
            "message": event.get("note"),
            "source": _dict(event.get("deprecatedSource")),
            "firstTimestamp": event.get("deprecatedFirstTimestamp"),
            "lastTimestamp": event.get("deprecatedLastTimestamp"),
            "count": event.get("deprecatedCount"),
            "reportingController": event.get("reportingController"),
        }
    return {
        "involvedObject": _dict(event.get("involvedObject")),
        "message": event.get("message"),
        "source": _dict(event.get("source")),
        "firstTimestamp": event.get("firstTimestamp"),
        "lastTimestamp": event.get("lastTimestamp"),
        "count": event.get("count"),
        "reportingController": event.get("reportingComponent"),
    }


def _is_zero_time(value: Any) -> bool:
    try:
        return _parse_time(value) is None
    except ValueError:
        return True


def _print_event(event: Obj, now: datetime, group: str) -> list[Cell]:
    fields = _event_fields(event, group)
    first_seen = fields["firstTimestamp"]
    if _is_zero_time(first_seen):  # events from the new API only carry eventTime
        first_seen = event.get("eventTime")
    first = _since(first_seen, now)
    last = first if _is_zero_time(fields["lastTimestamp"]) else _since(fields["lastTimestamp"], now)
    count = _int(fields["count"])
    series = event.get("series")
    if isinstance(series, dict):
        last = _since(series.get("lastObservedTime"), now)
        count = _int(series.get("count"))
    elif count == 0:
        count = 1
    involved = fields["involvedObject"]
    kind, name = _str(involved.get("kind")).lower(), _str(involved.get("name"))
    source = fields["source"]
    component = _str(source.get("component")) or _str(fields["reportingController"])
    host = _str(source.get("host")) or _str(event.get("reportingInstance"))
    return [
        last,
        _str(event.get("type")),
        _str(event.get("reason")),
        f"{kind}/{name}" if name else kind,
        _str(involved.get("fieldPath")),
        f"{component}, {host}" if host else component,
        _str(fields["message"]).strip(),
        first,
        count,
        _name(event),
    ]


def _print_secret(secret: Obj, now: datetime) -> list[Cell]:
    return [
        _name(secret),
        _str(secret.get("type")) or "Opaque",
        len(_dict(secret.get("data"))),
        _since(_get(secret, "metadata", "creationTimestamp"), now),
    ]


def _print_configmap(configmap: Obj, now: datetime) -> list[Cell]:
    return [
        _name(configmap),
        len(_dict(configmap.get("data"))) + len(_dict(configmap.get("binaryData"))),
        _since(_get(configmap, "metadata", "creationTimestamp"), now),
    ]


def _print_serviceaccount(account: Obj, now: datetime) -> list[Cell]:
    return [
        _name(account),
        len(_list(account.get("secrets"))),
        _since(_get(account, "metadata", "creationTimestamp"), now),
    ]


def _replicas(obj: Obj) -> int:
    """``spec.replicas``, defaulted to 1 (apps/v1 SetDefaults) when absent."""
    replicas = _get(obj, "spec", "replicas")
    return 1 if replicas is None else _int(replicas)


def _print_deployment(deployment: Obj, now: datetime) -> list[Cell]:
    status = _dict(deployment.get("status"))
    names, images = _layout_containers(_get(deployment, "spec", "template", "spec", "containers"))
    selector = _selector_string(_get(deployment, "spec", "selector"))
    return [
        _name(deployment),
        f"{_int(status.get('readyReplicas'))}/{_replicas(deployment)}",
        _int(status.get("updatedReplicas")),
        _int(status.get("availableReplicas")),
        _since(_get(deployment, "metadata", "creationTimestamp"), now),
        names,
        images,
        "<invalid>" if selector is None else selector,
    ]


def _print_replicaset(replicaset: Obj, now: datetime) -> list[Cell]:
    status = _dict(replicaset.get("status"))
    names, images = _layout_containers(_get(replicaset, "spec", "template", "spec", "containers"))
    return [
        _name(replicaset),
        _replicas(replicaset),
        _int(status.get("replicas")),
        _int(status.get("readyReplicas")),
        _since(_get(replicaset, "metadata", "creationTimestamp"), now),
        names,
        images,
        _format_label_selector(_get(replicaset, "spec", "selector")),
    ]


def _print_endpointslice(endpointslice: Obj, now: datetime) -> list[Cell]:
    limit = 3
    ports: list[str] = []
    port_count = 0
    for port in _list(endpointslice.get("ports")):
        if len(ports) < limit:
            number, name = _get(port, "port"), _get(port, "name")
            if isinstance(number, int) and not isinstance(number, bool):
                ports.append(str(number))
            elif isinstance(name, str):
                ports.append(name)
            else:
                ports.append("*")
        port_count += 1
    addresses: list[str] = []
    address_count = 0
    for endpoint in _list(endpointslice.get("endpoints")):
        for address in _list(_get(endpoint, "addresses")):
            if len(addresses) < limit:
                addresses.append(_str(address))
            address_count += 1
    return [
        _name(endpointslice),
        _str(endpointslice.get("addressType")),
        _list_with_more(ports, port_count > limit, port_count, limit),
        _list_with_more(addresses, address_count > limit, address_count, limit),
        _since(_get(endpointslice, "metadata", "creationTimestamp"), now),
    ]


def _format_hosts(rules: Any) -> str:
    """``formatHosts``: at most three hosts, "*" when none."""
    items = _list(rules)
    hosts: list[str] = []
    more = False
    for rule in items:
        if len(hosts) == 3:
            more = True
        if not more and _str(_get(rule, "host")):
            hosts.append(_str(_get(rule, "host")))
    if not hosts:
        return "*"
    text = ",".join(hosts)
    return f"{text} + {len(items) - 3} more..." if more else text


def _print_ingress(ingress: Obj, now: datetime) -> list[Cell]:
    spec = _dict(ingress.get("spec"))
    class_name = spec.get("ingressClassName")
    return [
        _name(ingress),
        class_name if isinstance(class_name, str) else "<none>",
        _format_hosts(spec.get("rules")),
        ",".join(_load_balancer_addresses(_get(ingress, "status", "loadBalancer"))),
        "80, 443" if _list(spec.get("tls")) else "80",
        _since(_get(ingress, "metadata", "creationTimestamp"), now),
    ]


def _print_ingressclass(ingressclass: Obj, now: datetime) -> list[Cell]:
    spec = _dict(ingressclass.get("spec"))
    parameters = "<none>"
    reference = spec.get("parameters")
    if isinstance(reference, dict):
        parameters = _str(reference.get("kind"))
        if isinstance(reference.get("apiGroup"), str):
            parameters += "." + reference["apiGroup"]
        parameters += "/" + _str(reference.get("name"))
    return [
        _name(ingressclass),
        _str(spec.get("controller")),
        parameters,
        _since(_get(ingressclass, "metadata", "creationTimestamp"), now),
    ]


def _print_lease(lease: Obj, now: datetime) -> list[Cell]:
    return [
        _name(lease),
        _str(_get(lease, "spec", "holderIdentity")),
        _since(_get(lease, "metadata", "creationTimestamp"), now),
    ]


def _print_webhook_configuration(configuration: Obj, now: datetime) -> list[Cell]:
    return [
        _name(configuration),
        len(_list(configuration.get("webhooks"))),
        _since(_get(configuration, "metadata", "creationTimestamp"), now),
    ]


def _print_default(obj: Obj, now: datetime) -> list[Cell]:
    return [_name(obj), _rfc3339_utc(_get(obj, "metadata", "creationTimestamp"))]


RowPrinter = Callable[[Obj, datetime], list[Cell]]


@dataclass(frozen=True)
class _Printer:
    columns: tuple[Column, ...]
    cells: RowPrinter
    conditions: Callable[[Obj], list[Obj] | None] | None = None


_PRINTERS: Final[dict[tuple[str, str], _Printer]] = {
    ("", "pods"): _Printer(_POD_COLUMNS, _print_pod, _pod_row_conditions),
    ("", "services"): _Printer(_SERVICE_COLUMNS, _print_service),
    ("", "nodes"): _Printer(_NODE_COLUMNS, _print_node),
    ("", "namespaces"): _Printer(_NAMESPACE_COLUMNS, _print_namespace),
    ("", "events"): _Printer(_EVENT_COLUMNS, lambda o, now: _print_event(o, now, "")),
    ("events.k8s.io", "events"): _Printer(
        _EVENT_COLUMNS, lambda o, now: _print_event(o, now, "events.k8s.io")
    ),
    ("", "secrets"): _Printer(_SECRET_COLUMNS, _print_secret),
    ("", "configmaps"): _Printer(_CONFIGMAP_COLUMNS, _print_configmap),
    ("", "serviceaccounts"): _Printer(_SERVICEACCOUNT_COLUMNS, _print_serviceaccount),
    ("apps", "deployments"): _Printer(_DEPLOYMENT_COLUMNS, _print_deployment),
    ("apps", "replicasets"): _Printer(_REPLICASET_COLUMNS, _print_replicaset),
    ("discovery.k8s.io", "endpointslices"): _Printer(_ENDPOINTSLICE_COLUMNS, _print_endpointslice),
    ("networking.k8s.io", "ingresses"): _Printer(_INGRESS_COLUMNS, _print_ingress),
    ("networking.k8s.io", "ingressclasses"): _Printer(_INGRESSCLASS_COLUMNS, _print_ingressclass),
    ("coordination.k8s.io", "leases"): _Printer(_LEASE_COLUMNS, _print_lease),
    ("admissionregistration.k8s.io", "mutatingwebhookconfigurations"): _Printer(
        _WEBHOOK_COLUMNS, _print_webhook_configuration
    ),
    ("admissionregistration.k8s.io", "validatingwebhookconfigurations"): _Printer(
        _WEBHOOK_COLUMNS, _print_webhook_configuration
    ),
    ("apiextensions.k8s.io", "customresourcedefinitions"): _Printer(
        _DEFAULT_COLUMNS, _print_default
    ),
}


# --------------------------------------------------------------------------------------------
# Custom resources: additionalPrinterColumns, evaluated like client-go's util/jsonpath with
# AllowMissingKeys (what apiextensions-apiserver's tableconvertor does).


@dataclass(frozen=True)
class _Field:
    name: str


@dataclass(frozen=True)
class _Wildcard:
    pass


@dataclass(frozen=True)
class _Recursive:
    pass


@dataclass(frozen=True)
class _Slice:
    start: int | None
    end: int | None
    step: int | None
    single: bool  # ``[n]`` rather than ``[a:b]``


@dataclass(frozen=True)
class _Union:
    names: tuple[str, ...]


@dataclass(frozen=True)
class _Filter:
    left: tuple[_Step, ...]
    operator: str  # "exists", "==", "!=", "<", ">", "<=", ">="
    right: tuple[_Step, ...] | str | int | float | bool | None


_Step = _Field | _Wildcard | _Recursive | _Slice | _Union | _Filter


class _JSONPathError(ValueError):
    pass


class _PathParser:
    """A parser for the JSONPath subset CRD printer columns use (``.a.b``, ``['x.y']``,
    ``[0]``, ``[*]``, ``..``, ``[?(@.type=="Ready")]``)."""

    _FIELD_END = frozenset(".[]()=!<>, \t'\"")

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def peek(self, offset: int = 0) -> str:
        index = self.pos + offset
        return self.text[index] if index < len(self.text) else ""

    def skip_spaces(self) -> None:
        while self.peek() in (" ", "\t"):
            self.pos += 1

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise _JSONPathError(f"expected {char!r} at {self.pos} in {self.text!r}")
        self.pos += 1

    def parse(self) -> tuple[_Step, ...]:
        text = self.text.strip()
        if text.startswith("{") and text.endswith("}"):
            self.text, self.pos = text[1:-1], 0
        else:
            self.text, self.pos = text, 0
        steps = self.steps(top=True)
        if self.pos != len(self.text):
            raise _JSONPathError(f"unexpected {self.peek()!r} at {self.pos} in {self.text!r}")
        return steps

    def steps(self, *, top: bool) -> tuple[_Step, ...]:
        steps: list[_Step] = []
        if top and self.peek() == "$":
            self.pos += 1
        while True:
            char = self.peek()
            if char == ".":
                self.pos += 1
                if self.peek() == ".":
                    self.pos += 1
                    steps.append(_Recursive())
                    if self.peek() == "[":
                        continue
                if self.peek() == "*":
                    self.pos += 1
                    steps.append(_Wildcard())
                    continue
                name = self.field_name()
                if name:
                    steps.append(_Field(name))
                elif self.peek() not in ("", "["):
                    raise _JSONPathError(f"empty field name at {self.pos} in {self.text!r}")
            elif char == "[":
                self.pos += 1
                steps.append(self.bracket())
            else:
                return tuple(steps)

    def field_name(self) -> str:
        chars: list[str] = []
        while (char := self.peek()) and char not in self._FIELD_END:
            if char == "\\" and self.peek(1):
                chars.append(self.peek(1))
                self.pos += 2
                continue
            chars.append(char)
            self.pos += 1
        return "".join(chars)

    def quoted(self) -> str:
        quote = self.peek()
        self.pos += 1
        chars: list[str] = []
        while (char := self.peek()) != quote:
            if not char:
                raise _JSONPathError(f"unterminated string in {self.text!r}")
            if char == "\\" and self.peek(1):
                chars.append(self.peek(1))
                self.pos += 2
                continue
            chars.append(char)
            self.pos += 1
        self.pos += 1
        return "".join(chars)

    def bracket(self) -> _Step:
        self.skip_spaces()
        char = self.peek()
        step: _Step
        if char == "?":
            self.pos += 1
            self.skip_spaces()
            self.expect("(")
            step = self.filter()
            self.skip_spaces()
            self.expect(")")
        elif char == "*":
            self.pos += 1
            step = _Wildcard()
        elif char in ("'", '"'):
            names = [self.quoted()]
            self.skip_spaces()
            while self.peek() == ",":
                self.pos += 1
                self.skip_spaces()
                if self.peek() not in ("'", '"'):
                    raise _JSONPathError(f"expected a quoted name in {self.text!r}")
                names.append(self.quoted())
                self.skip_spaces()
            step = _Field(names[0]) if len(names) == 1 else _Union(tuple(names))
        else:
            step = self.slice()
        self.skip_spaces()
        self.expect("]")
        return step

    def integer(self) -> int | None:
        match = re.compile(r"-?\d+").match(self.text, self.pos)
        if match is None:
            return None
        self.pos = match.end()
        return int(match.group())

    def slice(self) -> _Slice:
        parts: list[int | None] = [self.integer()]
        while self.peek() == ":" and len(parts) < 3:
            self.pos += 1
            self.skip_spaces()
            parts.append(self.integer())
        self.skip_spaces()
        if len(parts) == 1:
            if parts[0] is None:
                raise _JSONPathError(f"bad array index in {self.text!r}")
            return _Slice(parts[0], None, None, single=True)
        parts += [None] * (3 - len(parts))
        return _Slice(parts[0], parts[1], parts[2], single=False)

    def filter(self) -> _Filter:
        self.skip_spaces()
        self.expect("@")
        left = self.steps(top=False)
        self.skip_spaces()
        match = re.compile(r"==|!=|<=|>=|<|>").match(self.text, self.pos)
        if match is None:
            return _Filter(left, "exists", None)
        self.pos = match.end()
        self.skip_spaces()
        right: tuple[_Step, ...] | str | int | float | bool | None
        char = self.peek()
        if char in ("'", '"'):
            right = self.quoted()
        elif char == "@":
            self.pos += 1
            right = self.steps(top=False)
        else:
            literal = re.compile(r"-?\d+(\.\d+)?([eE][-+]?\d+)?|true|false").match(
                self.text, self.pos
            )
            if literal is None:
                raise _JSONPathError(f"bad filter value at {self.pos} in {self.text!r}")
            self.pos = literal.end()
            word = literal.group()
            if word in ("true", "false"):
                right = word == "true"
            elif literal.group(1) or literal.group(2):
                right = float(word)
            else:
                right = int(word)
        return _Filter(left, match.group(), right)


def _descendants(value: Any) -> Iterable[Any]:
    yield value
    if isinstance(value, dict):
        for key in sorted(value):
            yield from _descendants(value[key])
    elif isinstance(value, list):
        for item in value:
            yield from _descendants(item)


def _compare(left: Any, operator: str, right: Any) -> bool:
    def number(value: Any) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool)

    if number(left) and number(right):
        pass
    elif type(left) is not type(right) or not isinstance(left, str | bool):
        raise _JSONPathError(f"incompatible types for comparison: {left!r} {operator} {right!r}")
    if operator == "==":
        return bool(left == right)
    if operator == "!=":
        return bool(left != right)
    if isinstance(left, bool):
        raise _JSONPathError(f"invalid type for comparison: {left!r}")
    if operator == "<":
        return bool(left < right)
    if operator == ">":
        return bool(left > right)
    if operator == "<=":
        return bool(left <= right)
    return bool(left >= right)


def _evaluate(steps: tuple[_Step, ...], values: list[Any]) -> list[Any]:
    for step in steps:
        found: list[Any] = []
        for value in values:
            if isinstance(step, _Field):
                if isinstance(value, dict) and step.name in value:
                    found.append(value[step.name])
            elif isinstance(step, _Union):
                if isinstance(value, dict):
                    found.extend(value[name] for name in step.names if name in value)
            elif isinstance(step, _Wildcard):
                if isinstance(value, dict):
                    found.extend(value[key] for key in sorted(value))
                elif isinstance(value, list):
                    found.extend(value)
            elif isinstance(step, _Recursive):
                found.extend(_descendants(value))
            elif isinstance(step, _Slice):
                if value is None:
                    continue
                if not isinstance(value, list):
                    raise _JSONPathError(f"{type(value).__name__} is not array or slice")
                if step.single:
                    index = step.start or 0
                    if index < 0:
                        index += len(value)
                    if not 0 <= index < len(value):
                        raise _JSONPathError("array index out of bounds")
                    found.append(value[index])
                else:
                    found.extend(value[step.start : step.end : step.step])
            elif isinstance(step, _Filter):
                if value is None:
                    continue
                if not isinstance(value, list):
                    raise _JSONPathError(f"{type(value).__name__} cannot be filtered")
                for item in value:
                    lefts = _evaluate(step.left, [item])
                    if step.operator == "exists":
                        if lefts:
                            found.append(item)
                        continue
                    if isinstance(step.right, tuple):
                        rights = _evaluate(step.right, [item])
                    else:
                        rights = [step.right]
                    if not lefts or not rights:
                        continue
                    if len(lefts) > 1 or len(rights) > 1:
                        raise _JSONPathError("can only compare one element at a time")
                    if _compare(lefts[0], step.operator, rights[0]):
                        found.append(item)
        values = found
    return values


def _go_float_parts(value: float) -> tuple[str, int]:
    """The shortest decimal digits of ``value`` and its decimal point position."""
    _, digits, exponent = Decimal(repr(abs(value))).normalize().as_tuple()
    assert isinstance(exponent, int)
    text = "".join(map(str, digits))
    return text, len(text) + exponent


def _go_format_float(value: float, *, json_style: bool) -> str:
    """Go's ``fmt.Sprint(f)`` (``json_style=False``) or ``json.Marshal(f)`` for a float64."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    sign = "-" if math.copysign(1.0, value) < 0 else ""
    if value == 0:
        return sign + "0"
    digits, point = _go_float_parts(value)
    exponent = point - 1
    if json_style:  # encoding/json: 'e' format outside [1e-6, 1e21)
        use_e = abs(value) < 1e-6 or abs(value) >= 1e21
    else:  # fmt %v: strconv 'g' with the shortest digits, which decides with precision 6
        use_e = exponent < -4 or exponent >= 6
    if use_e:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        width = 1 if json_style else 2
        return f"{sign}{mantissa}e{'-' if exponent < 0 else '+'}{abs(exponent):0{width}d}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return sign + digits + "0" * (point - len(digits))
    return f"{sign}{digits[:point]}.{digits[point:]}"


def _go_json(value: Any) -> str:
    """Go's ``json.Marshal`` of an unstructured value: compact, sorted keys, HTML-escaped."""
    if isinstance(value, dict):
        items = (f"{_go_json(str(k))}:{_go_json(value[k])}" for k in sorted(value))
        return "{" + ",".join(items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_go_json(item) for item in value) + "]"
    if isinstance(value, float):
        return _go_format_float(value, json_style=True)
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
            text = text.replace(char, escape)
        return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return json.dumps(value)


def _go_print(value: Any) -> str:
    """jsonpath ``PrintResults`` of one value: JSON for maps and lists, else ``fmt.Fprint``."""
    if isinstance(value, dict | list):
        return _go_json(value)
    if value is None:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _go_format_float(value, json_style=False)
    return str(value)


def _cr_cell(column_type: str, value: Any, now: datetime) -> Cell:
    """apiextensions-apiserver's ``cellForJSONValue`` (and the ``string`` special case)."""
    if column_type == "string":
        return _go_print(value)
    if value is None or isinstance(value, dict | list):
        return None
    if column_type == "integer":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return int(value) if math.isfinite(value) else None
        return None
    if column_type == "number":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        return None
    if column_type == "boolean":
        return value if isinstance(value, bool) else None
    if column_type == "date":
        if not isinstance(value, str):
            return None
        try:
            moment = _parse_time(value)
        except ValueError:
            return "<invalid>"
        return "<unknown>" if moment is None else human_duration(now - moment)
    return None


@dataclass(frozen=True)
class _CustomColumn:
    column: Column
    path: tuple[_Step, ...]


def _custom_columns(printer_columns: list[Obj]) -> list[_CustomColumn]:
    """The CRD's columns, as far as they parse (the real server also stops at a bad one)."""
    columns: list[_CustomColumn] = []
    for spec in printer_columns or list(_CR_DEFAULT_PRINTER_COLUMNS):
        json_path = _str(spec.get("jsonPath"))
        try:
            path = _PathParser(json_path).parse()
        except _JSONPathError:
            break
        description = _str(spec.get("description")) or (
            f"Custom resource definition column (in JSONPath format): {json_path}"
        )
        column = Column(
            _str(spec.get("name")),
            _str(spec.get("type")),
            description,
            _int(spec.get("priority")),
            _str(spec.get("format")),
        )
        columns.append(_CustomColumn(column, path))
    return columns


def _custom_printer(printer_columns: list[Obj]) -> _Printer:
    custom = _custom_columns(printer_columns)

    def cells(obj: Obj, now: datetime) -> list[Cell]:
        row: list[Cell] = [_name(obj)]
        for entry in custom:
            try:
                results = _evaluate(entry.path, [obj])
            except _JSONPathError:
                results = []
            row.append(_cr_cell(entry.column.type, results[0], now) if results else None)
        return row

    return _Printer((_name_column(), *(entry.column for entry in custom)), cells)


# --------------------------------------------------------------------------------------------
# The Table


def _row_object(obj: Obj, key: ResourceKey, include_object: str, group_version: str) -> Any:
    if include_object == "None":
        return None
    if include_object == "Object":
        if obj.get("apiVersion") and obj.get("kind"):
            return obj
        return {"apiVersion": key.api_version, "kind": key.kind, **obj}
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": group_version,
        "metadata": _dict(obj.get("metadata")),
    }


def to_table(
    key: ResourceKey,
    objects: list[Obj],
    *,
    include_object: str = "Metadata",
    now: datetime | None = None,
    list_meta: Obj | None = None,
    printer_columns: list[Obj] | None = None,
    no_headers: bool = False,
    group_version: str = "meta.k8s.io/v1",
) -> Obj:
    """The ``Table`` the real API server answers for ``objects`` of resource ``key``.

    ``include_object`` is the ``includeObject`` query parameter ("" is the default,
    ``Metadata``): each row's ``object`` is then a ``PartialObjectMetadata``, the full object
    (``Object``) or JSON ``null`` (``None``, as the real server writes it). Another value
    raises a 400 ``BadRequest`` :class:`StatusError`, like the real server.

    ``list_meta`` is the list's ``metadata`` (``resourceVersion``, ``continue``,
    ``remainingItemCount``); for a single-object GET pass ``{"resourceVersion": <the
    object's>}``, which is what the real server puts there.

    ``printer_columns`` is, for a custom resource, the served version's
    ``additionalPrinterColumns`` (``[]`` or ``None`` give the CRD default, ``Age``). It is
    ignored for built-in resources; any resource without a built-in printer is printed as a
    custom resource.

    ``no_headers`` leaves ``columnDefinitions`` null: the real server sends headers only with
    the first event of a ``watch`` in Table form. ``group_version`` is the Table's group
    version as negotiated (``meta.k8s.io/v1`` or ``meta.k8s.io/v1beta1``; else 406).
    """
    if include_object == "":
        include_object = "Metadata"
    if include_object not in INCLUDE_OBJECT_POLICIES:
        raise StatusError(
            400, "BadRequest", f"unrecognized includeObject value: {json.dumps(include_object)}"
        )
    if group_version not in TABLE_GROUP_VERSIONS:
        raise StatusError(406, "NotAcceptable", f"no Table exists in group version {group_version}")
    moment = now if now is not None else datetime.now(UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)

    printer = _PRINTERS.get((key.group, key.resource)) or _custom_printer(printer_columns or [])
    rows: list[Obj] = []
    for obj in objects:
        row: Obj = {"cells": printer.cells(obj, moment)}
        if printer.conditions is not None and (conditions := printer.conditions(obj)):
            row["conditions"] = conditions
        row["object"] = _row_object(obj, key, include_object, group_version)
        rows.append(row)

    metadata: Obj = {}
    for field in ("resourceVersion", "continue", "remainingItemCount"):
        value = (list_meta or {}).get(field)
        if value is not None and value != "":
            metadata[field] = value
    return {
        "kind": "Table",
        "apiVersion": group_version,
        "metadata": metadata,
        "columnDefinitions": None if no_headers else [c.to_json() for c in printer.columns],
        "rows": rows,
    }
