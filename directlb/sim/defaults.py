"""Defaulting of built-in types, as the real server applies it before admission.

Only the defaults a client can observe and relies on are applied (kubectl's ``rollout status``
dereferences ``spec.replicas``; ``describe`` prints restart and pull policies; controllers
compare ports with their protocol). What the server does on create besides defaulting (reset a
status written by the client, set a pod Pending, a namespace Active) lives here too.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from directlb.sim.contracts import Obj
from directlb.sim.registry import ResourceInfo


def _set(mapping: dict[str, Any], key: str, value: Any) -> None:
    if mapping.get(key) is None:
        mapping[key] = value


def _dict(mapping: dict[str, Any], key: str) -> dict[str, Any]:
    value = mapping.get(key)
    if not isinstance(value, dict):
        value = mapping[key] = {}
    return value


def _container(container: dict[str, Any]) -> None:
    image = str(container.get("image", ""))
    tag = image.rpartition("/")[2].partition("@")[0]
    latest = ":" not in tag or tag.endswith(":latest")
    _set(container, "imagePullPolicy", "Always" if latest and "@" not in image else "IfNotPresent")
    _set(container, "terminationMessagePath", "/dev/termination-log")
    _set(container, "terminationMessagePolicy", "File")
    _set(container, "resources", {})
    for port in container.get("ports") or []:
        if isinstance(port, dict):
            _set(port, "protocol", "TCP")
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        if isinstance(container.get(probe), dict):
            _probe(container[probe])


def _probe(probe: dict[str, Any]) -> None:
    for key, value in (
        ("timeoutSeconds", 1),
        ("periodSeconds", 10),
        ("successThreshold", 1),
        ("failureThreshold", 3),
    ):
        _set(probe, key, value)
    http = probe.get("httpGet")
    if isinstance(http, dict):
        _set(http, "path", "/")
        _set(http, "scheme", "HTTP")


def pod_spec(spec: dict[str, Any]) -> None:
    _set(spec, "restartPolicy", "Always")
    _set(spec, "terminationGracePeriodSeconds", 30)
    _set(spec, "dnsPolicy", "ClusterFirst")
    _set(spec, "securityContext", {})
    _set(spec, "schedulerName", "default-scheduler")
    for key in ("containers", "initContainers"):
        for container in spec.get(key) or []:
            if isinstance(container, dict):
                _container(container)


def _pod(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    pod_spec(spec)
    _set(spec, "enableServiceLinks", True)
    _set(spec, "priority", 0)
    _set(spec, "preemptionPolicy", "PreemptLowerPriority")
    # What the ServiceAccount admission plugin sets (without mounting a token).
    _set(spec, "serviceAccountName", "default")
    _set(spec, "serviceAccount", spec["serviceAccountName"])


def _template(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    _set(spec, "replicas", 1)
    _set(spec, "revisionHistoryLimit", 10)
    template = _dict(spec, "template")
    pod_spec(_dict(template, "spec"))


def _deployment(obj: Obj) -> None:
    _template(obj)
    spec = obj["spec"]
    _set(spec, "progressDeadlineSeconds", 600)
    strategy = _dict(spec, "strategy")
    _set(strategy, "type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = _dict(strategy, "rollingUpdate")
        _set(rolling, "maxSurge", "25%")
        _set(rolling, "maxUnavailable", "25%")


def _replicaset(obj: Obj) -> None:
    _template(obj)
    obj["spec"].pop("revisionHistoryLimit", None)


def _service(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    _set(spec, "type", "ClusterIP")
    _set(spec, "sessionAffinity", "None")
    if spec["type"] != "ExternalName":
        _set(spec, "ipFamilyPolicy", "SingleStack")
        _set(spec, "ipFamilies", ["IPv4"])
        _set(spec, "internalTrafficPolicy", "Cluster")
    if spec["type"] in ("NodePort", "LoadBalancer"):
        _set(spec, "externalTrafficPolicy", "Cluster")
    if spec["type"] == "LoadBalancer":
        _set(spec, "allocateLoadBalancerNodePorts", True)
    for port in spec.get("ports") or []:
        if isinstance(port, dict):
            _set(port, "protocol", "TCP")
            _set(port, "targetPort", port.get("port"))


def _namespace(obj: Obj) -> None:
    name = obj["metadata"].get("name")
    if name:
        _dict(obj["metadata"], "labels")["kubernetes.io/metadata.name"] = name
    _set(_dict(obj, "spec"), "finalizers", ["kubernetes"])


def _secret(obj: Obj) -> None:
    _set(obj, "type", "Opaque")
    # stringData is write-only: the real conversion folds it into data, base64-encoded.
    string_data = obj.pop("stringData", None)
    if isinstance(string_data, dict) and string_data:
        data = _dict(obj, "data")
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()


def _endpointslice(obj: Obj) -> None:
    for port in obj.get("ports") or []:
        if isinstance(port, dict):
            _set(port, "protocol", "TCP")


def _webhooks(obj: Obj) -> None:
    for hook in obj.get("webhooks") or []:
        if not isinstance(hook, dict):
            continue
        _set(hook, "failurePolicy", "Fail")
        _set(hook, "matchPolicy", "Equivalent")
        _set(hook, "namespaceSelector", {})
        _set(hook, "objectSelector", {})
        _set(hook, "timeoutSeconds", 10)
        if obj.get("kind") == "MutatingWebhookConfiguration":
            _set(hook, "reinvocationPolicy", "Never")
        service = (hook.get("clientConfig") or {}).get("service")
        if isinstance(service, dict):
            _set(service, "port", 443)  # SetDefaults_ServiceReference
        for rule in hook.get("rules") or []:
            if isinstance(rule, dict):
                _set(rule, "scope", "*")


def _crd(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    names = _dict(spec, "names")
    kind = str(names.get("kind", ""))
    _set(names, "singular", kind.lower())
    _set(names, "listKind", f"{kind}List")
    _set(_dict(spec, "conversion"), "strategy", "None")


DEFAULTERS: dict[tuple[str, str], Callable[[Obj], None]] = {
    ("", "pods"): _pod,
    ("", "services"): _service,
    ("", "namespaces"): _namespace,
    ("", "secrets"): _secret,
    ("apps", "deployments"): _deployment,
    ("apps", "replicasets"): _replicaset,
    ("discovery.k8s.io", "endpointslices"): _endpointslice,
    ("admissionregistration.k8s.io", "mutatingwebhookconfigurations"): _webhooks,
    ("admissionregistration.k8s.io", "validatingwebhookconfigurations"): _webhooks,
    ("apiextensions.k8s.io", "customresourcedefinitions"): _crd,
}


def apply_defaults(info: ResourceInfo, obj: Obj) -> None:
    defaulter = DEFAULTERS.get((info.key.group, info.key.resource))
    if defaulter is not None:
        defaulter(obj)


def _qos(spec: dict[str, Any]) -> str:
    requests: list[dict[str, Any]] = []
    limits: list[dict[str, Any]] = []
    for container in spec.get("containers") or []:
        resources = container.get("resources") or {}
        requests.append(resources.get("requests") or {})
        limits.append(resources.get("limits") or {})
    if not any(requests) and not any(limits):
        return "BestEffort"
    guaranteed = all(
        set(lim) >= {"cpu", "memory"} and all(req.get(k, lim[k]) == lim[k] for k in lim)
        for req, lim in zip(requests, limits, strict=True)
    )
    return "Guaranteed" if guaranteed else "Burstable"


def prepare_for_create(info: ResourceInfo, obj: Obj) -> None:
    """What the real strategies do on create: a client does not get to write status."""
    group, resource = info.key.group, info.key.resource
    if (group, resource) == ("", "pods"):
        obj["status"] = {"phase": "Pending", "qosClass": _qos(obj.get("spec") or {})}
    elif (group, resource) == ("", "namespaces"):
        obj["status"] = {"phase": "Active"}
    elif (group, resource) == ("", "nodes"):
        return  # a node registers with its status (the kubelet does)
    elif info.status:
        obj.pop("status", None)
        if not info.crd:
            obj["status"] = {}
        # Fields the Go types always serialise (no omitempty) appear on a new object.
        if (group, resource) in (("", "services"), ("networking.k8s.io", "ingresses")):
            obj["status"] = {"loadBalancer": {}}
        if (group, resource) == ("apps", "replicasets"):
            obj["status"] = {"replicas": 0}
