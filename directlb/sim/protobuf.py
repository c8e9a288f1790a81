"""Decoding Kubernetes protobuf request bodies (``application/vnd.kubernetes.protobuf``).

kubectl's typed commands (``create namespace|configmap|secret|serviceaccount|service|
deployment|ingress``) send protobuf bodies and take JSON answers, so the server only needs to
*decode*. A body is the ``k8s\\x00`` magic and a ``runtime.Unknown`` envelope holding the type's
message. Decoding is driven by ``SCHEMA``: field numbers, JSON names and types of the messages
those commands send, transcribed from the ``generated.proto`` files of k8s.io/api and
k8s.io/apimachinery. A field whose type is not transcribed (``?Type``) is refused with 415 when
present, so an object is never silently truncated; the client can send JSON instead.

Go's protobuf encoding writes non-pointer fields even when they hold zero values; like Go's
``omitempty`` JSON, empty strings, zero numbers and empty timestamps are dropped.
"""

from __future__ import annotations

import base64
import struct
from datetime import UTC, datetime
from typing import Any

from directlb.sim.contracts import Obj, StatusError

MAGIC = b"k8s\x00"
PROTOBUF = "application/vnd.kubernetes.protobuf"

# One message per unindented line; its fields (``number name type``, ``*`` repeated, ``%`` map
# from string) on the indented lines after it, separated by ``;``.
SCHEMA_TEXT = """\
Unknown
    1 typeMeta TypeMeta; 2 raw bytes; 3 contentEncoding string; 4 contentType string
TypeMeta
    1 apiVersion string; 2 kind string
ObjectMeta
    1 name string; 2 generateName string; 3 namespace string; 4 selfLink string; 5 uid
    string; 6 resourceVersion string; 7 generation int64; 8 creationTimestamp Time; 9
    deletionTimestamp Time; 10 deletionGracePeriodSeconds int64; 11 labels %string; 12
    annotations %string; 13 ownerReferences *OwnerReference; 14 finalizers *string; 17
    managedFields *?ManagedFieldsEntry
OwnerReference
    1 kind string; 3 name string; 4 uid string; 5 apiVersion string; 6 controller bool; 7
    blockOwnerDeletion bool
LabelSelector
    1 matchLabels %string; 2 matchExpressions *LabelSelectorRequirement
LabelSelectorRequirement
    1 key string; 2 operator string; 3 values *string
Namespace
    1 metadata ObjectMeta; 2 spec NamespaceSpec; 3 status NamespaceStatus
NamespaceSpec
    1 finalizers *string
NamespaceStatus
    1 phase string; 2 conditions *NamespaceCondition
NamespaceCondition
    1 type string; 2 status string; 4 lastTransitionTime Time; 5 reason string; 6 message
    string
ConfigMap
    1 metadata ObjectMeta; 2 data %string; 3 binaryData %bytes; 4 immutable bool
Secret
    1 metadata ObjectMeta; 2 data %bytes; 3 type string; 4 stringData %string; 5 immutable
    bool
ServiceAccount
    1 metadata ObjectMeta; 2 secrets *ObjectReference; 3 imagePullSecrets
    *LocalObjectReference; 4 automountServiceAccountToken bool
ObjectReference
    1 kind string; 2 namespace string; 3 name string; 4 uid string; 5 apiVersion string; 6
    resourceVersion string; 7 fieldPath string
LocalObjectReference
    1 name string
Service
    1 metadata ObjectMeta; 2 spec ServiceSpec; 3 status ServiceStatus
ServiceSpec
    1 ports *ServicePort; 2 selector %string; 3 clusterIP string; 4 type string; 5
    externalIPs *string; 7 sessionAffinity string; 8 loadBalancerIP string; 9
    loadBalancerSourceRanges *string; 10 externalName string; 11 externalTrafficPolicy
    string; 12 healthCheckNodePort int32; 13 publishNotReadyAddresses bool; 14
    sessionAffinityConfig SessionAffinityConfig; 17 ipFamilyPolicy string; 18 clusterIPs
    *string; 19 ipFamilies *string; 20 allocateLoadBalancerNodePorts bool; 21
    loadBalancerClass string; 22 internalTrafficPolicy string; 23 trafficDistribution string
ServicePort
    1 name string; 2 protocol string; 3 port int32; 4 targetPort IntOrString; 5 nodePort
    int32; 6 appProtocol string
ServiceStatus
    1 loadBalancer LoadBalancerStatus; 2 conditions *Condition
LoadBalancerStatus
    1 ingress *LoadBalancerIngress
LoadBalancerIngress
    1 ip string; 2 hostname string; 3 ipMode string; 4 ports *PortStatus
PortStatus
    1 port int32; 2 protocol string; 3 error string
SessionAffinityConfig
    1 clientIP ClientIPConfig
ClientIPConfig
    1 timeoutSeconds int32
Condition
    1 type string; 2 status string; 3 observedGeneration int64; 4 lastTransitionTime Time; 5
    reason string; 6 message string
PodTemplateSpec
    1 metadata ObjectMeta; 2 spec PodSpec
PodSpec
    1 volumes *?Volume; 2 containers *Container; 3 restartPolicy string; 4
    terminationGracePeriodSeconds int64; 5 activeDeadlineSeconds int64; 6 dnsPolicy string;
    7 nodeSelector %string; 8 serviceAccountName string; 9 serviceAccount string; 10
    nodeName string; 11 hostNetwork bool; 12 hostPID bool; 13 hostIPC bool; 14
    securityContext ?PodSecurityContext; 15 imagePullSecrets *LocalObjectReference; 16
    hostname string; 17 subdomain string; 18 affinity ?Affinity; 19 schedulerName string; 20
    initContainers *Container; 21 automountServiceAccountToken bool; 22 tolerations
    *Toleration; 23 hostAliases *?HostAlias; 24 priorityClassName string; 25 priority int32;
    26 dnsConfig ?PodDNSConfig; 27 shareProcessNamespace bool; 28 readinessGates
    *PodReadinessGate; 29 runtimeClassName string; 30 enableServiceLinks bool; 31
    preemptionPolicy string; 32 overhead %Quantity; 33 topologySpreadConstraints
    *?TopologySpreadConstraint; 34 ephemeralContainers *?EphemeralContainer; 35
    setHostnameAsFQDN bool; 36 os ?PodOS; 37 hostUsers bool; 38 schedulingGates
    *?PodSchedulingGate; 39 resourceClaims *?PodResourceClaim; 40 resources
    ResourceRequirements; 41 hostnameOverride string; 43 schedulingGroup
    ?PodSchedulingGroup; 44 evictionResponders *?EvictionResponder
Container
    1 name string; 2 image string; 3 command *string; 4 args *string; 5 workingDir string; 6
    ports *ContainerPort; 7 env *EnvVar; 8 resources ResourceRequirements; 9 volumeMounts
    *?VolumeMount; 10 livenessProbe ?Probe; 11 readinessProbe ?Probe; 12 lifecycle
    ?Lifecycle; 13 terminationMessagePath string; 14 imagePullPolicy string; 15
    securityContext ?SecurityContext; 16 stdin bool; 17 stdinOnce bool; 18 tty bool; 19
    envFrom *?EnvFromSource; 20 terminationMessagePolicy string; 21 volumeDevices
    *?VolumeDevice; 22 startupProbe ?Probe; 23 resizePolicy *?ContainerResizePolicy; 24
    restartPolicy string; 25 restartPolicyRules *?ContainerRestartRule
ContainerPort
    1 name string; 2 hostPort int32; 3 containerPort int32; 4 protocol string; 5 hostIP
    string
EnvVar
    1 name string; 2 value string; 3 valueFrom ?EnvVarSource
ResourceRequirements
    1 limits %Quantity; 2 requests %Quantity; 3 claims *ResourceClaim
ResourceClaim
    1 name string; 2 request string
Toleration
    1 key string; 2 operator string; 3 value string; 4 effect string; 5 tolerationSeconds
    int64
PodReadinessGate
    1 conditionType string
Deployment
    1 metadata ObjectMeta; 2 spec DeploymentSpec; 3 status DeploymentStatus
DeploymentSpec
    1 replicas int32; 2 selector LabelSelector; 3 template PodTemplateSpec; 4 strategy
    DeploymentStrategy; 5 minReadySeconds int32; 6 revisionHistoryLimit int32; 7 paused
    bool; 9 progressDeadlineSeconds int32
DeploymentStrategy
    1 type string; 2 rollingUpdate RollingUpdateDeployment
RollingUpdateDeployment
    1 maxUnavailable IntOrString; 2 maxSurge IntOrString
DeploymentStatus
    1 observedGeneration int64; 2 replicas int32; 3 updatedReplicas int32; 4
    availableReplicas int32; 5 unavailableReplicas int32; 6 conditions *DeploymentCondition;
    7 readyReplicas int32; 8 collisionCount int32; 9 terminatingReplicas int32
DeploymentCondition
    1 type string; 2 status string; 4 reason string; 5 message string; 6 lastUpdateTime
    Time; 7 lastTransitionTime Time
Ingress
    1 metadata ObjectMeta; 2 spec IngressSpec; 3 status IngressStatus
IngressSpec
    1 defaultBackend IngressBackend; 2 tls *IngressTLS; 3 rules *IngressRule; 4
    ingressClassName string
IngressBackend
    3 resource TypedLocalObjectReference; 4 service IngressServiceBackend
IngressServiceBackend
    1 name string; 2 port ServiceBackendPort
ServiceBackendPort
    1 name string; 2 number int32
IngressRule
    1 host string; 2 ingressRuleValue IngressRuleValue
IngressRuleValue
    1 http HTTPIngressRuleValue
HTTPIngressRuleValue
    1 paths *HTTPIngressPath
HTTPIngressPath
    1 path string; 2 backend IngressBackend; 3 pathType string
IngressTLS
    1 hosts *string; 2 secretName string
IngressStatus
    1 loadBalancer IngressLoadBalancerStatus
IngressLoadBalancerStatus
    1 ingress *IngressLoadBalancerIngress
IngressLoadBalancerIngress
    1 ip string; 2 hostname string; 4 ports *IngressPortStatus
IngressPortStatus
    1 port int32; 2 protocol string; 3 error string
TypedLocalObjectReference
    1 apiGroup string; 2 kind string; 3 name string
Lease
    1 metadata ObjectMeta; 2 spec LeaseSpec
LeaseSpec
    1 holderIdentity string; 2 leaseDurationSeconds int32; 3 acquireTime MicroTime; 4
    renewTime MicroTime; 5 leaseTransitions int32; 6 strategy string; 7 preferredHolder
    string
"""

Field = tuple[str, str, str]  # (json name, "" | "*" | "%", type)


def _parse_schema(text: str) -> dict[str, dict[int, Field]]:
    schema: dict[str, dict[int, Field]] = {}
    name = ""
    chunks: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith(" "):
            name = line.strip()
            chunks[name] = []
        elif line.strip():
            chunks[name].append(line.strip())
    for message, parts in chunks.items():
        fields: dict[int, Field] = {}
        for item in " ".join(parts).split(";"):
            number, field_name, kind = item.split()
            mode = kind[0] if kind[0] in "*%" else ""
            fields[int(number)] = (field_name, mode, kind.lstrip("*%"))
        schema[message] = fields
    return schema


SCHEMA = _parse_schema(SCHEMA_TEXT)
SPECIAL = {"Time", "MicroTime", "IntOrString", "Quantity"}


def _unsupported(message: str) -> StatusError:
    return StatusError(
        415,
        "UnsupportedMediaType",
        f"the protobuf body uses {message}, which this server does not decode; send "
        "application/json",
    )


def _varint(data: bytes, at: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if at >= len(data):
            raise StatusError(400, "BadRequest", "truncated protobuf varint")
        byte = data[at]
        at += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, at
        shift += 7


def _wire_fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """The (number, value) pairs of one message: ints for varints/fixed, bytes otherwise."""
    fields: list[tuple[int, int | bytes]] = []
    at = 0
    while at < len(data):
        key, at = _varint(data, at)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, at = _varint(data, at)
        elif wire == 2:
            length, at = _varint(data, at)
            value, at = data[at : at + length], at + length
        elif wire == 1:
            value, at = struct.unpack_from("<q", data, at)[0], at + 8
        elif wire == 5:
            value, at = struct.unpack_from("<i", data, at)[0], at + 4
        else:
            raise StatusError(400, "BadRequest", f"unsupported protobuf wire type {wire}")
        fields.append((number, value))
    return fields


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _special(kind: str, data: bytes) -> Any:
    values = dict(_wire_fields(data))
    if kind in ("Time", "MicroTime"):
        seconds = _signed(int(values.get(1, 0)))
        nanos = int(values.get(2, 0))
        if not seconds and not nanos:
            return None
        at = datetime.fromtimestamp(seconds, UTC)
        if kind == "Time":
            return at.strftime("%Y-%m-%dT%H:%M:%SZ")
        return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{nanos // 1000:06d}Z"
    if kind == "Quantity":
        return bytes(values.get(1, b"")).decode()
    # IntOrString: type 0 is an int, 1 a string
    if int(values.get(1, 0)) == 1:
        return bytes(values.get(3, b"")).decode()
    return _signed(int(values.get(2, 0)))


def _scalar(kind: str, value: int | bytes) -> Any:
    if kind == "string":
        return bytes(value).decode()
    if kind == "bytes":
        return base64.b64encode(bytes(value)).decode()
    if kind == "bool":
        return bool(value)
    if kind in ("int32", "int64"):
        return _signed(int(value))
    if kind == "double":
        return struct.unpack("<d", struct.pack("<q", int(value)))[0]
    return _message(kind, bytes(value))


def _value(kind: str, value: int | bytes) -> Any:
    if kind.startswith("?"):
        if value:  # an empty message of an unknown type carries nothing
            raise _unsupported(kind[1:])
        return None
    if kind in SPECIAL:
        return _special(kind, bytes(value))
    return _scalar(kind, value)


# Go pointer fields whose zero value means something (omitempty drops only nil pointers).
KEEP_ZERO = {
    "activeDeadlineSeconds",
    "allocateLoadBalancerNodePorts",
    "automountServiceAccountToken",
    "blockOwnerDeletion",
    "controller",
    "deletionGracePeriodSeconds",
    "enableServiceLinks",
    "hostUsers",
    "immutable",
    "priority",
    "replicas",
    "revisionHistoryLimit",
    "setHostnameAsFQDN",
    "shareProcessNamespace",
    "terminationGracePeriodSeconds",
    "tolerationSeconds",
}
# Go structs embedded in their parent: their fields are inlined in JSON.
EMBEDDED = {("IngressRule", "ingressRuleValue")}
SCALARS = {"string", "bytes", "bool", "int32", "int64", "double"}


def _omitted(json_name: str, kind: str, value: Any) -> bool:
    if value is None:
        return True
    if kind not in SCALARS or json_name in KEEP_ZERO:
        return False
    return value in ("", 0, False)


def _message(name: str, data: bytes) -> Obj:
    schema = SCHEMA.get(name)
    if schema is None:
        raise _unsupported(name)
    obj: Obj = {}
    for number, raw in _wire_fields(data):
        field = schema.get(number)
        if field is None:
            raise _unsupported(f"field {number} of {name}")
        json_name, mode, kind = field
        if mode == "%":
            entry = dict(_wire_fields(bytes(raw)))
            key = bytes(entry.get(1, b"")).decode()
            obj.setdefault(json_name, {})[key] = _value(kind, entry.get(2, b""))
        elif mode == "*":
            obj.setdefault(json_name, []).append(_value(kind, raw))
        elif (name, json_name) in EMBEDDED:
            obj.update(_value(kind, raw) or {})
        else:
            value = _value(kind, raw)
            if not _omitted(json_name, kind, value):
                obj[json_name] = value
    return obj


def decode(body: bytes) -> Obj:
    """A protobuf request body as the JSON object it stands for (apiVersion and kind set)."""
    if not body.startswith(MAGIC):
        raise StatusError(400, "BadRequest", "the protobuf body does not start with the k8s magic")
    envelope = _message("Unknown", body[len(MAGIC) :])
    type_meta = envelope.get("typeMeta") or {}
    kind = str(type_meta.get("kind", ""))
    raw = base64.b64decode(envelope.get("raw", ""))
    if kind not in SCHEMA:
        raise _unsupported(kind or "an object without a kind")
    obj = _message(kind, raw)
    obj["apiVersion"] = type_meta.get("apiVersion", "")
    obj["kind"] = kind
    return {"apiVersion": obj.pop("apiVersion"), "kind": obj.pop("kind"), **obj}
