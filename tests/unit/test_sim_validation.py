"""The simulator's object validation: schemas from kubernetes-validate plus semantic checks."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from referencing import Registry, Resource

from directlb.sim import schema_catalog
from directlb.sim.contracts import Cause, Obj, ResourceKey
from directlb.sim.validation import _builtin_check, _crd_check, validate_object


def key(group: str, version: str, resource: str, kind: str, namespaced: bool = True) -> ResourceKey:
    return ResourceKey(group, version, resource, kind, namespaced)


POD = key("", "v1", "pods", "Pod")
SERVICE = key("", "v1", "services", "Service")
NAMESPACE = key("", "v1", "namespaces", "Namespace", False)
NODE = key("", "v1", "nodes", "Node", False)
CONFIGMAP = key("", "v1", "configmaps", "ConfigMap")
SECRET = key("", "v1", "secrets", "Secret")
SERVICEACCOUNT = key("", "v1", "serviceaccounts", "ServiceAccount")
EVENT = key("", "v1", "events", "Event")
EVENT2 = key("events.k8s.io", "v1", "events", "Event")
DEPLOYMENT = key("apps", "v1", "deployments", "Deployment")
REPLICASET = key("apps", "v1", "replicasets", "ReplicaSet")
SLICE = key("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice")
INGRESS = key("networking.k8s.io", "v1", "ingresses", "Ingress")
INGRESSCLASS = key("networking.k8s.io", "v1", "ingressclasses", "IngressClass", False)
LEASE = key("coordination.k8s.io", "v1", "leases", "Lease")
MWC = key(
    "admissionregistration.k8s.io",
    "v1",
    "mutatingwebhookconfigurations",
    "MutatingWebhookConfiguration",
    False,
)
VWC = key(
    "admissionregistration.k8s.io",
    "v1",
    "validatingwebhookconfigurations",
    "ValidatingWebhookConfiguration",
    False,
)
CRD = key(
    "apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False
)
WIDGET = key("example.com", "v1", "widgets", "Widget")

SEED_DEPLOYMENT = yaml.safe_load(
    """
apiVersion: apps/v1
kind: Deployment
metadata:
  labels:
    app: nginx
  name: nginx-deployment-eni
spec:
  replicas: 3
  selector:
    matchLabels:
      app: nginx
  template:
    metadata:
      annotations:
        tke.cloud.tencent.com/networks: tke-route-eni
      labels:
        app: nginx
    spec:
      containers:
        - image: nginx:1.7.9
          name: nginx
          ports:
            - containerPort: 80
              protocol: TCP
"""
)

SEED_SERVICE = yaml.safe_load(
    """
apiVersion: v1
kind: Service
metadata:
  annotations:
    service.cloud.tencent.com/direct-access: "true"
  labels:
    app: nginx
  name: nginx-service-eni
spec:
  externalTrafficPolicy: Cluster
  ports:
    - name: 80-80-no
      port: 80
      protocol: TCP
      targetPort: 80
  selector:
    app: nginx
  sessionAffinity: None
  type: LoadBalancer
"""
)

GATE = "cloud.tencent.com/load-balancer-backendgroup-ready"

POD_OBJ: Obj = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "name": "nginx-deployment-eni-bb7544db8-6ljkm",
        "namespace": "default",
        "labels": {"app": "nginx", "pod-template-hash": "bb7544db8"},
        "annotations": {"tke.cloud.tencent.com/networks": "tke-route-eni"},
        "ownerReferences": [
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": "nginx-deployment-eni-bb7544db8",
                "uid": "6d7c1f3e-0000-4000-8000-000000000001",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
        "finalizers": ["directlb.io/backend-deregistration"],
    },
    "spec": {
        "containers": [
            {
                "name": "nginx",
                "image": "nginx:1.7.9",
                "ports": [{"containerPort": 80, "protocol": "TCP", "name": "http"}],
                "env": [{"name": "A", "value": "1"}],
                "resources": {
                    "limits": {"cpu": "500m", "memory": "128Mi"},
                    "requests": {"cpu": 0.1},
                },
                "readinessProbe": {"httpGet": {"path": "/", "port": 80}, "periodSeconds": 10},
            }
        ],
        "readinessGates": [{"conditionType": GATE}],
        "nodeName": "node-1",
        "restartPolicy": "Always",
        "dnsPolicy": "ClusterFirst",
        "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
    },
    "status": {
        "phase": "Running",
        "podIP": "10.0.0.1",
        "podIPs": [{"ip": "10.0.0.1"}],
        "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"},
            {"type": GATE, "status": "True", "lastTransitionTime": "2024-01-01T00:00:00.5+08:00"},
        ],
        "containerStatuses": [
            {"name": "nginx", "ready": True, "restartCount": 0, "image": "nginx", "imageID": ""}
        ],
    },
}

VALID: list[tuple[str, Obj, ResourceKey]] = [
    ("seed deployment", SEED_DEPLOYMENT, DEPLOYMENT),
    ("seed service", SEED_SERVICE, SERVICE),
    ("pod", POD_OBJ, POD),
    ("pod from generateName", {"metadata": {"generateName": "web-"}, "spec": POD_OBJ["spec"]}, POD),
    ("namespace", {"metadata": {"name": "kube-system"}}, NAMESPACE),
    (
        "node",
        {
            "metadata": {"name": "10.0.0.3", "labels": {"kubernetes.io/hostname": "n3"}},
            "spec": {"podCIDR": "10.1.0.0/24", "taints": [{"key": "a", "effect": "NoSchedule"}]},
            "status": {
                "addresses": [{"type": "InternalIP", "address": "10.0.0.3"}],
                "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        },
        NODE,
    ),
    ("configmap", {"metadata": {"name": "c"}, "data": {"a.conf": "x", "B_2": "y"}}, CONFIGMAP),
    (
        "secret",
        {"metadata": {"name": "s"}, "data": {"tls.crt": "aGVsbG8="}, "type": "kubernetes.io/tls"},
        SECRET,
    ),
    ("serviceaccount", {"metadata": {"name": "default"}}, SERVICEACCOUNT),
    (
        "event",
        {
            "metadata": {"name": "web.17a8c1e2b3d4"},
            "involvedObject": {"kind": "Service", "name": "web", "namespace": "default"},
            "reason": "SyncLoadBalancerFailed",
            "message": "m",
            "type": "Warning",
            "count": 1,
            "firstTimestamp": "2024-01-01T00:00:00Z",
        },
        EVENT,
    ),
    (
        "events.k8s.io event",
        {"metadata": {"name": "e"}, "eventTime": "2024-01-01T00:00:00.000000Z", "reason": "R"},
        EVENT2,
    ),
    (
        "replicaset",
        {
            "metadata": {"name": "web-abc"},
            "spec": {
                "replicas": 2,
                "selector": {
                    "matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]
                },
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": POD_OBJ["spec"]},
            },
            "status": {
                "replicas": 2,
                "conditions": [{"type": "ReplicaFailure", "status": "False"}],
            },
        },
        REPLICASET,
    ),
    (
        "endpointslice",
        {
            "metadata": {"name": "web-x1", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "endpoints": [
                {
                    "addresses": ["10.0.0.1"],
                    "conditions": {"ready": True, "serving": True, "terminating": False},
                }
            ],
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
        },
        SLICE,
    ),
    (
        "ingress",
        {
            "metadata": {
                "name": "web",
                "annotations": {"ingress.cloud.tencent.com/direct-access": "true"},
            },
            "spec": {
                "ingressClassName": "qcloud",
                "rules": [
                    {
                        "host": "example.com",
                        "http": {
                            "paths": [
                                {
                                    "path": "/",
                                    "pathType": "Prefix",
                                    "backend": {"service": {"name": "web", "port": {"number": 80}}},
                                }
                            ]
                        },
                    }
                ],
            },
            "status": {"loadBalancer": {"ingress": [{"ip": "150.158.221.31"}]}},
        },
        INGRESS,
    ),
    (
        "ingressclass",
        {"metadata": {"name": "qcloud"}, "spec": {"controller": "directlb.io/ingress"}},
        INGRESSCLASS,
    ),
    (
        "lease",
        {
            "metadata": {"name": "directlb-leader"},
            "spec": {
                "holderIdentity": "a",
                "leaseDurationSeconds": 15,
                "renewTime": "2024-01-01T00:00:00.000000Z",
            },
        },
        LEASE,
    ),
    (
        "mutating webhook configuration",
        {
            "metadata": {"name": "directlb"},
            "webhooks": [
                {
                    "name": "readiness-gate.directlb.io",
                    "clientConfig": {
                        "service": {"name": "directlb", "namespace": "kube-system", "port": 9443},
                        "caBundle": "aGVsbG8=",
                    },
                    "rules": [
                        {
                            "operations": ["CREATE"],
                            "apiGroups": [""],
                            "apiVersions": ["v1"],
                            "resources": ["pods"],
                        }
                    ],
                    "sideEffects": "None",
                    "admissionReviewVersions": ["v1"],
                    "failurePolicy": "Ignore",
                    "timeoutSeconds": 5,
                    "reinvocationPolicy": "Never",
                }
            ],
        },
        MWC,
    ),
    (
        "validating webhook configuration",
        {
            "metadata": {"name": "v"},
            "webhooks": [
                {
                    "name": "a.b.c",
                    "clientConfig": {"url": "https://127.0.0.1:9443/validate"},
                    "sideEffects": "NoneOnDryRun",
                    "admissionReviewVersions": ["v1", "v1beta1"],
                }
            ],
        },
        VWC,
    ),
    (
        "crd",
        {
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com",
                "names": {"plural": "widgets", "kind": "Widget"},
                "scope": "Namespaced",
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "schema": {
                            "openAPIV3Schema": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            }
                        },
                        "subresources": {"status": {}},
                    }
                ],
            },
        },
        CRD,
    ),
]


@pytest.mark.parametrize(("obj", "key_"), [v[1:] for v in VALID], ids=[v[0] for v in VALID])
def test_valid_objects_pass(obj: Obj, key_: ResourceKey) -> None:
    assert validate_object(obj, key_) == []


NULL = "<null>"


def with_changes(base: Obj, changes: dict[str, Any]) -> Obj:
    """``base`` with dotted paths set (``None`` deletes, ``NULL`` sets null; ``[n]`` indexes)."""
    obj = copy.deepcopy(base)
    for dotted, value in changes.items():
        parts: list[Any] = []
        for part in dotted.split("."):
            name, _, index = part.partition("[")
            parts.append(name)
            if index:
                parts.append(int(index.rstrip("]")))
        node: Any = obj
        for part in parts[:-1]:
            node = node[part]
        if value is None:
            del node[parts[-1]]
        else:
            node[parts[-1]] = None if value == NULL else value
    return obj


INVALID: list[tuple[str, Obj, ResourceKey, str, str, str]] = [
    # (id, object, key, field, reason, message or a part of it)
    (
        "container name missing",
        with_changes(POD_OBJ, {"spec.containers[0].name": None}),
        POD,
        "spec.containers[0].name",
        "FieldValueRequired",
        "Required value",
    ),
    (
        "container name of the wrong type",
        with_changes(POD_OBJ, {"spec.containers[0].name": 0}),
        POD,
        "spec.containers[0].name",
        "FieldValueTypeInvalid",
        'Invalid value: "integer": spec.containers[0].name in body must be of type string: '
        '"integer"',
    ),
    (
        "containers missing",
        with_changes(POD_OBJ, {"spec.containers": None}),
        POD,
        "spec.containers",
        "FieldValueRequired",
        "Required value",
    ),
    (
        "containers empty",
        with_changes(POD_OBJ, {"spec.containers": []}),
        POD,
        "spec.containers",
        "FieldValueRequired",
        "Required value",
    ),
    (
        "container port as a string",
        with_changes(POD_OBJ, {"spec.containers[0].ports[0].containerPort": "80"}),
        POD,
        "spec.containers[0].ports[0].containerPort",
        "FieldValueTypeInvalid",
        "must be of type integer",
    ),
    (
        "container port zero",
        with_changes(POD_OBJ, {"spec.containers[0].ports[0].containerPort": 0}),
        POD,
        "spec.containers[0].ports[0].containerPort",
        "FieldValueInvalid",
        "Invalid value: 0: must be between 1 and 65535, inclusive",
    ),
    (
        "container port too big",
        with_changes(POD_OBJ, {"spec.containers[0].ports[0].containerPort": 65536}),
        POD,
        "spec.containers[0].ports[0].containerPort",
        "FieldValueInvalid",
        "must be between 1 and 65535, inclusive",
    ),
    (
        "container port protocol",
        with_changes(POD_OBJ, {"spec.containers[0].ports[0].protocol": "HTTP"}),
        POD,
        "spec.containers[0].ports[0].protocol",
        "FieldValueNotSupported",
        'Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP"',
    ),
    (
        "container port name",
        with_changes(POD_OBJ, {"spec.containers[0].ports[0].name": "http--web"}),
        POD,
        "spec.containers[0].ports[0].name",
        "FieldValueInvalid",
        "must not contain consecutive hyphens",
    ),
    (
        "duplicate container names",
        with_changes(
            POD_OBJ, {"spec.containers": [{"name": "a", "image": "x"}, {"name": "a", "image": "y"}]}
        ),
        POD,
        "spec.containers[1].name",
        "FieldValueDuplicate",
        'Duplicate value: "a"',
    ),
    (
        "init container clashes with container",
        with_changes(POD_OBJ, {"spec.initContainers": [{"name": "nginx", "image": "x"}]}),
        POD,
        "spec.containers[0].name",
        "FieldValueDuplicate",
        'Duplicate value: "nginx"',
    ),
    (
        "container name not a label",
        with_changes(POD_OBJ, {"spec.containers[0].name": "Web_1"}),
        POD,
        "spec.containers[0].name",
        "FieldValueInvalid",
        "a lowercase RFC 1123 label must consist of",
    ),
    (
        "image missing",
        with_changes(POD_OBJ, {"spec.containers[0].image": None}),
        POD,
        "spec.containers[0].image",
        "FieldValueRequired",
        "Required value",
    ),
    (
        "restart policy",
        with_changes(POD_OBJ, {"spec.restartPolicy": "Sometimes"}),
        POD,
        "spec.restartPolicy",
        "FieldValueNotSupported",
        '"Always", "Never", "OnFailure"',
    ),
    (
        "readiness gate type",
        with_changes(POD_OBJ, {"spec.readinessGates[0].conditionType": "a b"}),
        POD,
        "spec.readinessGates[0].conditionType",
        "FieldValueInvalid",
        "name part must consist of",
    ),
    (
        "bad quantity",
        with_changes(POD_OBJ, {"spec.containers[0].resources.limits": {"cpu": "lots"}}),
        POD,
        "spec.containers[0].resources.limits[cpu]",
        "FieldValueInvalid",
        "quantities must match the regular expression",
    ),
    (
        "bad time",
        with_changes(POD_OBJ, {"status.conditions[0].lastTransitionTime": "yesterday"}),
        POD,
        "status.conditions[0].lastTransitionTime",
        "FieldValueInvalid",
        "date-time",
    ),
    (
        "int32 overflow",
        with_changes(POD_OBJ, {"spec.containers[0].readinessProbe.periodSeconds": 2**31}),
        POD,
        "spec.containers[0].readinessProbe.periodSeconds",
        "FieldValueInvalid",
        "out of range",
    ),
    (
        "probe port of the wrong type",
        with_changes(POD_OBJ, {"spec.containers[0].readinessProbe.httpGet.port": True}),
        POD,
        "spec.containers[0].readinessProbe.httpGet.port",
        "FieldValueTypeInvalid",
        'must be of type integer,string: "boolean"',
    ),
    (
        "apiVersion",
        with_changes(POD_OBJ, {"apiVersion": "v2"}),
        POD,
        "apiVersion",
        "FieldValueNotSupported",
        'Unsupported value: "v2": supported values: "v1"',
    ),
    (
        "label value type",
        with_changes(POD_OBJ, {"metadata.labels": {"a": 1}}),
        POD,
        "metadata.labels[a]",
        "FieldValueTypeInvalid",
        "must be of type string",
    ),
    (
        "name not a subdomain",
        with_changes(POD_OBJ, {"metadata.name": "Web_1"}),
        POD,
        "metadata.name",
        "FieldValueInvalid",
        'Invalid value: "Web_1": a lowercase RFC 1123 subdomain must consist of lower case '
        "alphanumeric characters",
    ),
    (
        "name too long",
        with_changes(POD_OBJ, {"metadata.name": "a" * 254}),
        POD,
        "metadata.name",
        "FieldValueInvalid",
        "must be no more than 253 characters",
    ),
    (
        "no name",
        with_changes(POD_OBJ, {"metadata.name": None}),
        POD,
        "metadata.name",
        "FieldValueRequired",
        "Required value: name or generateName is required",
    ),
    (
        "namespace",
        with_changes(POD_OBJ, {"metadata.namespace": "a.b"}),
        POD,
        "metadata.namespace",
        "FieldValueInvalid",
        "RFC 1123 label",
    ),
    (
        "label key",
        with_changes(POD_OBJ, {"metadata.labels": {"bad key": "v"}}),
        POD,
        "metadata.labels",
        "FieldValueInvalid",
        'Invalid value: "bad key": name part must consist of alphanumeric characters',
    ),
    (
        "label key prefix",
        with_changes(POD_OBJ, {"metadata.labels": {"Ex.com/a": "v"}}),
        POD,
        "metadata.labels",
        "FieldValueInvalid",
        "prefix part a lowercase RFC 1123 subdomain",
    ),
    (
        "label value",
        with_changes(POD_OBJ, {"metadata.labels": {"a": "-x"}}),
        POD,
        "metadata.labels",
        "FieldValueInvalid",
        "a valid label must be an empty string or consist of",
    ),
    (
        "label value too long",
        with_changes(POD_OBJ, {"metadata.labels": {"a": "x" * 64}}),
        POD,
        "metadata.labels",
        "FieldValueInvalid",
        "must be no more than 63 characters",
    ),
    (
        "annotation key",
        with_changes(POD_OBJ, {"metadata.annotations": {"a/b/c": "v"}}),
        POD,
        "metadata.annotations",
        "FieldValueInvalid",
        "a qualified name must consist of",
    ),
    (
        "finalizer",
        with_changes(POD_OBJ, {"metadata.finalizers": ["a b"]}),
        POD,
        "metadata.finalizers[0]",
        "FieldValueInvalid",
        "name part must consist of",
    ),
    (
        "owner reference uid",
        with_changes(POD_OBJ, {"metadata.ownerReferences[0].uid": None}),
        POD,
        "metadata.ownerReferences[0].uid",
        "FieldValueRequired",
        "Required value",
    ),
    (
        "namespace name",
        {"metadata": {"name": "a.b"}},
        NAMESPACE,
        "metadata.name",
        "FieldValueInvalid",
        "a lowercase RFC 1123 label must consist of",
    ),
    (
        "service name",
        with_changes(SEED_SERVICE, {"metadata.name": "1web"}),
        SERVICE,
        "metadata.name",
        "FieldValueInvalid",
        "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with "
        "an alphabetic character",
    ),
    (
        "service type",
        with_changes(SEED_SERVICE, {"spec.type": "Foo"}),
        SERVICE,
        "spec.type",
        "FieldValueNotSupported",
        'Unsupported value: "Foo": supported values: "ClusterIP", "ExternalName", '
        '"LoadBalancer", "NodePort"',
    ),
    (
        "service port zero",
        with_changes(SEED_SERVICE, {"spec.ports[0].port": 0}),
        SERVICE,
        "spec.ports[0].port",
        "FieldValueInvalid",
        "Invalid value: 0: must be between 1 and 65535, inclusive",
    ),
    (
        "service port too big",
        with_changes(SEED_SERVICE, {"spec.ports[0].port": 65536}),
        SERVICE,
        "spec.ports[0].port",
        "FieldValueInvalid",
        "must be between 1 and 65535, inclusive",
    ),
    (
        "service port missing",
        with_changes(SEED_SERVICE, {"spec.ports[0].port": None}),
        SERVICE,
        "spec.ports[0].port",
        "FieldValueRequired",
        "Required value",
    ),
    (
        "service protocol",
        with_changes(SEED_SERVICE, {"spec.ports[0].protocol": "HTTP"}),
        SERVICE,
        "spec.ports[0].protocol",
        "FieldValueNotSupported",
        'supported values: "SCTP", "TCP", "UDP"',
    ),
    (
        "service ports missing",
        with_changes(SEED_SERVICE, {"spec.ports": None}),
        SERVICE,
        "spec.ports",
        "FieldValueRequired",
        "Required value",
    ),
    (
        "unnamed second port",
        with_changes(SEED_SERVICE, {"spec.ports": [{"name": "a", "port": 80}, {"port": 81}]}),
        SERVICE,
        "spec.ports[1].name",
        "FieldValueRequired",
        "Required value",
    ),
    (
        "duplicate port names",
        with_changes(
            SEED_SERVICE, {"spec.ports": [{"name": "a", "port": 80}, {"name": "a", "port": 81}]}
        ),
        SERVICE,
        "spec.ports[1].name",
        "FieldValueDuplicate",
        'Duplicate value: "a"',
    ),
    (
        "duplicate ports",
        with_changes(
            SEED_SERVICE, {"spec.ports": [{"name": "a", "port": 80}, {"name": "b", "port": 80}]}
        ),
        SERVICE,
        "spec.ports[1]",
        "FieldValueDuplicate",
        "Duplicate value",
    ),
    (
        "target port name",
        with_changes(SEED_SERVICE, {"spec.ports[0].targetPort": "Not_Valid"}),
        SERVICE,
        "spec.ports[0].targetPort",
        "FieldValueInvalid",
        "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
    ),
    (
        "target port number",
        with_changes(SEED_SERVICE, {"spec.ports[0].targetPort": 70000}),
        SERVICE,
        "spec.ports[0].targetPort",
        "FieldValueInvalid",
        "must be between 1 and 65535, inclusive",
    ),
    (
        "traffic policy",
        with_changes(SEED_SERVICE, {"spec.externalTrafficPolicy": "Nearest"}),
        SERVICE,
        "spec.externalTrafficPolicy",
        "FieldValueNotSupported",
        '"Cluster", "Local"',
    ),
    (
        "session affinity",
        with_changes(SEED_SERVICE, {"spec.sessionAffinity": "Sticky"}),
        SERVICE,
        "spec.sessionAffinity",
        "FieldValueNotSupported",
        '"ClientIP", "None"',
    ),
    (
        "negative replicas",
        with_changes(SEED_DEPLOYMENT, {"spec.replicas": -1}),
        DEPLOYMENT,
        "spec.replicas",
        "FieldValueInvalid",
        "Invalid value: -1: must be greater than or equal to 0",
    ),
    (
        "selector missing",
        with_changes(SEED_DEPLOYMENT, {"spec.selector": None}),
        DEPLOYMENT,
        "spec.selector",
        "FieldValueRequired",
        "Required value",
    ),
    (
        "empty selector",
        with_changes(SEED_DEPLOYMENT, {"spec.selector": {}}),
        DEPLOYMENT,
        "spec.selector",
        "FieldValueInvalid",
        "empty selector is invalid for deployment",
    ),
    (
        "selector mismatch",
        with_changes(SEED_DEPLOYMENT, {"spec.selector.matchLabels": {"app": "other"}}),
        DEPLOYMENT,
        "spec.template.metadata.labels",
        "FieldValueInvalid",
        "`selector` does not match template `labels`",
    ),
    (
        "template restart policy",
        with_changes(SEED_DEPLOYMENT, {"spec.template.spec.restartPolicy": "Never"}),
        DEPLOYMENT,
        "spec.template.spec.restartPolicy",
        "FieldValueNotSupported",
        'Unsupported value: "Never": supported values: "Always"',
    ),
    (
        "template container port",
        with_changes(
            SEED_DEPLOYMENT, {"spec.template.spec.containers[0].ports[0].containerPort": 0}
        ),
        DEPLOYMENT,
        "spec.template.spec.containers[0].ports[0].containerPort",
        "FieldValueInvalid",
        "must be between 1 and 65535, inclusive",
    ),
    (
        "strategy type",
        with_changes(SEED_DEPLOYMENT, {"spec.strategy": {"type": "BlueGreen"}}),
        DEPLOYMENT,
        "spec.strategy.type",
        "FieldValueNotSupported",
        '"Recreate", "RollingUpdate"',
    ),
    (
        "replicas as text",
        with_changes(SEED_DEPLOYMENT, {"spec.replicas": "3"}),
        DEPLOYMENT,
        "spec.replicas",
        "FieldValueTypeInvalid",
        'Invalid value: "string": spec.replicas in body must be of type integer: "string"',
    ),
    (
        "address type",
        {"metadata": {"name": "s"}, "addressType": "IPv5", "endpoints": []},
        SLICE,
        "addressType",
        "FieldValueNotSupported",
        '"FQDN", "IPv4", "IPv6"',
    ),
    (
        "address type missing",
        {"metadata": {"name": "s"}, "endpoints": []},
        SLICE,
        "addressType",
        "FieldValueRequired",
        "Required value",
    ),
    (
        "endpoint without addresses",
        {"metadata": {"name": "s"}, "addressType": "IPv4", "endpoints": [{"addresses": []}]},
        SLICE,
        "endpoints[0].addresses",
        "FieldValueRequired",
        "must contain at least 1 address",
    ),
    (
        "ingress path type",
        {
            "metadata": {"name": "i"},
            "spec": {"rules": [{"http": {"paths": [{"path": "/", "backend": {}}]}}]},
        },
        INGRESS,
        "spec.rules[0].http.paths[0].pathType",
        "FieldValueRequired",
        "Required value: pathType must be specified",
    ),
    (
        "ingress relative path",
        {
            "metadata": {"name": "i"},
            "spec": {
                "rules": [{"http": {"paths": [{"path": "x", "pathType": "Prefix", "backend": {}}]}}]
            },
        },
        INGRESS,
        "spec.rules[0].http.paths[0].path",
        "FieldValueInvalid",
        "must be an absolute path",
    ),
    (
        "configmap key",
        {"metadata": {"name": "c"}, "data": {"a b": "x"}},
        CONFIGMAP,
        "data[a b]",
        "FieldValueInvalid",
        "a valid config key must consist of alphanumeric characters",
    ),
    (
        "secret not base64",
        {"metadata": {"name": "s"}, "data": {"a": "not base64!"}},
        SECRET,
        "data[a]",
        "FieldValueInvalid",
        "illegal base64 data",
    ),
    (
        "webhook name",
        {
            "metadata": {"name": "w"},
            "webhooks": [
                {
                    "name": "a.b",
                    "clientConfig": {"url": "https://x"},
                    "sideEffects": "None",
                    "admissionReviewVersions": ["v1"],
                }
            ],
        },
        MWC,
        "webhooks[0].name",
        "FieldValueInvalid",
        "should be a domain with at least three segments separated by dots",
    ),
    (
        "webhook side effects",
        {
            "metadata": {"name": "w"},
            "webhooks": [
                {
                    "name": "a.b.c",
                    "clientConfig": {"url": "https://x"},
                    "admissionReviewVersions": ["v1"],
                }
            ],
        },
        MWC,
        "webhooks[0].sideEffects",
        "FieldValueRequired",
        "Required value: must specify one of None, NoneOnDryRun",
    ),
    (
        "webhook side effects value",
        {
            "metadata": {"name": "w"},
            "webhooks": [
                {
                    "name": "a.b.c",
                    "clientConfig": {"url": "https://x"},
                    "sideEffects": "Some",
                    "admissionReviewVersions": ["v1"],
                }
            ],
        },
        VWC,
        "webhooks[0].sideEffects",
        "FieldValueNotSupported",
        '"None", "NoneOnDryRun"',
    ),
    (
        "webhook review versions",
        {
            "metadata": {"name": "w"},
            "webhooks": [
                {"name": "a.b.c", "clientConfig": {"url": "https://x"}, "sideEffects": "None"}
            ],
        },
        MWC,
        "webhooks[0].admissionReviewVersions",
        "FieldValueRequired",
        "must specify one of v1, v1beta1",
    ),
    (
        "webhook timeout",
        {
            "metadata": {"name": "w"},
            "webhooks": [
                {
                    "name": "a.b.c",
                    "clientConfig": {"url": "https://x"},
                    "sideEffects": "None",
                    "admissionReviewVersions": ["v1"],
                    "timeoutSeconds": 31,
                }
            ],
        },
        MWC,
        "webhooks[0].timeoutSeconds",
        "FieldValueInvalid",
        "Invalid value: 31: the timeout value must be between 1 and 30 seconds",
    ),
    (
        "webhook failure policy",
        {
            "metadata": {"name": "w"},
            "webhooks": [
                {
                    "name": "a.b.c",
                    "clientConfig": {"url": "https://x"},
                    "sideEffects": "None",
                    "admissionReviewVersions": ["v1"],
                    "failurePolicy": "Retry",
                }
            ],
        },
        MWC,
        "webhooks[0].failurePolicy",
        "FieldValueNotSupported",
        '"Fail", "Ignore"',
    ),
    (
        "webhook client config",
        {
            "metadata": {"name": "w"},
            "webhooks": [
                {
                    "name": "a.b.c",
                    "clientConfig": {},
                    "sideEffects": "None",
                    "admissionReviewVersions": ["v1"],
                }
            ],
        },
        MWC,
        "webhooks[0].clientConfig",
        "FieldValueRequired",
        "exactly one of url or service is required",
    ),
    (
        "crd name",
        with_changes(VALID[-1][1], {"metadata.name": "widgets"}),
        CRD,
        "metadata.name",
        "FieldValueInvalid",
        'must be spec.names.plural+"."+spec.group',
    ),
    (
        "crd storage version",
        with_changes(VALID[-1][1], {"spec.versions[0].storage": False}),
        CRD,
        "spec.versions",
        "FieldValueInvalid",
        "must have exactly one version marked as storage version",
    ),
    (
        "crd scope",
        with_changes(VALID[-1][1], {"spec.scope": "Global"}),
        CRD,
        "spec.scope",
        "FieldValueNotSupported",
        '"Cluster", "Namespaced"',
    ),
]


@pytest.mark.parametrize(
    ("obj", "key_", "field", "reason", "message"),
    [c[1:] for c in INVALID],
    ids=[c[0] for c in INVALID],
)
def test_invalid_objects_give_the_servers_causes(
    obj: Obj, key_: ResourceKey, field: str, reason: str, message: str
) -> None:
    causes = validate_object(obj, key_)
    matching = [c for c in causes if c.field == field and c.reason == reason]
    assert matching, causes
    assert any(message in c.message for c in matching), matching


def test_every_cause_names_a_field_reason_and_message() -> None:
    obj = with_changes(
        POD_OBJ,
        {
            "spec.containers[0].name": None,
            "spec.containers[0].ports[0].containerPort": "x",
            "metadata.name": "Bad_Name",
        },
    )
    causes = validate_object(obj, POD)
    assert len(causes) >= 3
    assert all(isinstance(c, Cause) and c.field and c.reason and c.message for c in causes)


def test_a_required_null_is_reported_once() -> None:
    obj = with_changes(POD_OBJ, {})
    obj["spec"]["containers"][0]["name"] = None
    causes = [c for c in validate_object(obj, POD) if c.field == "spec.containers[0].name"]
    assert causes == [Cause("spec.containers[0].name", "FieldValueRequired", "Required value")]


def test_integral_floats_are_integers_and_unknown_fields_are_ignored() -> None:
    obj = with_changes(SEED_DEPLOYMENT, {"spec.replicas": 3.0, "spec.unknownField": {"x": 1}})
    assert validate_object(obj, DEPLOYMENT) == []
    assert validate_object(with_changes(SEED_DEPLOYMENT, {"spec.replicas": 2.5}), DEPLOYMENT)


def test_schemas_come_from_the_chosen_kubernetes_minor() -> None:
    assert schema_catalog.schema_version() == f"v{schema_catalog.KUBERNETES_MINOR}.0-local"
    assert schema_catalog.definition_name("", "v1", "Pod") == "io.k8s.api.core.v1.Pod"
    assert schema_catalog.definition_name("example.com", "v1", "Widget") is None


# --------------------------------------------------------------------------------------------
# custom resources against their CRD's openAPIV3Schema

WIDGET_SCHEMA: Obj = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["size"],
            "properties": {
                "size": {"type": "integer", "minimum": 1, "maximum": 10},
                "ratio": {
                    "type": "number",
                    "exclusiveMaximum": True,
                    "maximum": 1,
                    "multipleOf": 0.25,
                },
                "mode": {"type": "string", "enum": ["fast", "slow"]},
                "name": {"type": "string", "minLength": 2, "maxLength": 5, "pattern": "^[a-z]+$"},
                "port": {"x-kubernetes-int-or-string": True},
                "note": {"type": "string", "nullable": True},
                "tags": {
                    "type": "array",
                    "x-kubernetes-list-type": "set",
                    "items": {"type": "string"},
                    "maxItems": 3,
                    "minItems": 1,
                },
                "routes": {
                    "type": "array",
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["host"],
                    "items": {
                        "type": "object",
                        "required": ["host"],
                        "properties": {"host": {"type": "string"}},
                    },
                },
                "labels": {
                    "type": "object",
                    "additionalProperties": {"type": "string"},
                    "maxProperties": 2,
                },
                "raw": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "either": {"anyOf": [{"type": "string"}, {"type": "integer", "minimum": 5}]},
                "exactly": {"oneOf": [{"required": ["a"]}, {"required": ["b"]}], "type": "object"},
                "both": {"allOf": [{"minLength": 1}, {"maxLength": 3}], "type": "string"},
                "never": {"not": {"type": "string", "enum": ["forbidden"]}},
            },
        },
        "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
    },
}

GOOD_WIDGET: Obj = {
    "apiVersion": "example.com/v1",
    "kind": "Widget",
    "metadata": {"name": "w1", "namespace": "default", "labels": {"a": "b"}},
    "spec": {
        "size": 3,
        "ratio": 0.5,
        "mode": "fast",
        "name": "abc",
        "port": "http",
        "note": None,
        "tags": ["x", "y"],
        "routes": [{"host": "a"}, {"host": "b"}],
        "labels": {"k": "v"},
        "raw": {"anything": [1, {"goes": True}]},
        "either": 7,
        "exactly": {"a": 1},
        "both": "ab",
        "never": "fine",
        "extra": "unknown fields are pruned, not rejected",
    },
    "status": {"ready": True},
}


def test_a_valid_custom_resource_passes() -> None:
    assert validate_object(GOOD_WIDGET, WIDGET, schema=WIDGET_SCHEMA) == []


CR_INVALID: list[tuple[str, dict[str, Any], str, str, str]] = [
    ("required", {"spec.size": None}, "spec.size", "FieldValueRequired", "Required value"),
    (
        "type",
        {"spec.size": "3"},
        "spec.size",
        "FieldValueTypeInvalid",
        'Invalid value: "string": spec.size in body must be of type integer: "string"',
    ),
    (
        "minimum",
        {"spec.size": 0},
        "spec.size",
        "FieldValueInvalid",
        "Invalid value: 0: spec.size in body should be greater than or equal to 1",
    ),
    (
        "maximum",
        {"spec.size": 11},
        "spec.size",
        "FieldValueInvalid",
        "spec.size in body should be less than or equal to 10",
    ),
    (
        "exclusive maximum",
        {"spec.ratio": 1},
        "spec.ratio",
        "FieldValueInvalid",
        "spec.ratio in body should be less than 1",
    ),
    (
        "multiple of",
        {"spec.ratio": 0.3},
        "spec.ratio",
        "FieldValueInvalid",
        "should be a multiple of 0.25",
    ),
    (
        "enum",
        {"spec.mode": "medium"},
        "spec.mode",
        "FieldValueNotSupported",
        'Unsupported value: "medium": supported values: "fast", "slow"',
    ),
    (
        "min length",
        {"spec.name": "a"},
        "spec.name",
        "FieldValueInvalid",
        "should be at least 2 chars long",
    ),
    ("max length", {"spec.name": "abcdef"}, "spec.name", "FieldValueTooLong", "Too long"),
    (
        "pattern",
        {"spec.name": "AB"},
        "spec.name",
        "FieldValueInvalid",
        "spec.name in body should match '^[a-z]+$'",
    ),
    (
        "int or string",
        {"spec.port": 1.5},
        "spec.port",
        "FieldValueTypeInvalid",
        "must be of type integer,string",
    ),
    (
        "not nullable",
        {"spec.mode": NULL},
        "spec.mode",
        "FieldValueTypeInvalid",
        'Invalid value: "null"',
    ),
    (
        "set duplicate",
        {"spec.tags": ["x", "x"]},
        "spec.tags[1]",
        "FieldValueDuplicate",
        'Duplicate value: "x"',
    ),
    (
        "too many items",
        {"spec.tags": ["a", "b", "c", "d"]},
        "spec.tags",
        "FieldValueTooMany",
        "must have at most 3 items",
    ),
    (
        "too few items",
        {"spec.tags": []},
        "spec.tags",
        "FieldValueInvalid",
        "should have at least 1 items",
    ),
    (
        "map list duplicate key",
        {"spec.routes": [{"host": "a"}, {"host": "a"}]},
        "spec.routes[1]",
        "FieldValueDuplicate",
        "Duplicate value",
    ),
    (
        "map list item required key",
        {"spec.routes": [{}]},
        "spec.routes[0].host",
        "FieldValueRequired",
        "Required value",
    ),
    (
        "additional properties type",
        {"spec.labels": {"k": 1}},
        "spec.labels[k]",
        "FieldValueTypeInvalid",
        "must be of type string",
    ),
    (
        "max properties",
        {"spec.labels": {"a": "1", "b": "2", "c": "3"}},
        "spec.labels",
        "FieldValueTooMany",
        "must have at most 2",
    ),
    (
        "anyOf",
        {"spec.either": 2},
        "spec.either",
        "FieldValueInvalid",
        "must validate at least one schema (anyOf)",
    ),
    (
        "oneOf none",
        {"spec.exactly": {}},
        "spec.exactly",
        "FieldValueInvalid",
        "must validate one and only one schema (oneOf)",
    ),
    (
        "oneOf both",
        {"spec.exactly": {"a": 1, "b": 2}},
        "spec.exactly",
        "FieldValueInvalid",
        "must validate one and only one schema (oneOf)",
    ),
    ("allOf", {"spec.both": "abcd"}, "spec.both", "FieldValueTooLong", "Too long"),
    (
        "not",
        {"spec.never": "forbidden"},
        "spec.never",
        "FieldValueInvalid",
        "should not validate the schema (not)",
    ),
    (
        "status type",
        {"status.ready": "yes"},
        "status.ready",
        "FieldValueTypeInvalid",
        "must be of type boolean",
    ),
    (
        "metadata is an ObjectMeta",
        {"metadata.labels": {"a": 1}},
        "metadata.labels[a]",
        "FieldValueTypeInvalid",
        "must be of type string",
    ),
    (
        "metadata name",
        {"metadata.name": "W1"},
        "metadata.name",
        "FieldValueInvalid",
        "RFC 1123 subdomain",
    ),
]


@pytest.mark.parametrize(
    ("changes", "field", "reason", "message"),
    [c[1:] for c in CR_INVALID],
    ids=[c[0] for c in CR_INVALID],
)
def test_custom_resource_violations(
    changes: dict[str, Any], field: str, reason: str, message: str
) -> None:
    causes = validate_object(with_changes(GOOD_WIDGET, changes), WIDGET, schema=WIDGET_SCHEMA)
    matching = [c for c in causes if c.field == field and c.reason == reason]
    assert matching, causes
    assert any(message in c.message for c in matching), matching


def test_a_custom_resource_without_a_schema_only_checks_metadata() -> None:
    assert validate_object(with_changes(GOOD_WIDGET, {"spec.size": "x"}), WIDGET) == []
    causes = validate_object(with_changes(GOOD_WIDGET, {"metadata.name": "W"}), WIDGET)
    assert [c.field for c in causes] == ["metadata.name"]


def test_crd_checkers_are_compiled_once_per_schema_object() -> None:
    first = _crd_check(WIDGET_SCHEMA)
    assert _crd_check(WIDGET_SCHEMA) is first
    assert _crd_check(copy.deepcopy(WIDGET_SCHEMA)) is not first


def test_recursive_definitions_compile() -> None:
    # JSONSchemaProps refers to itself; a CRD with a nested schema must still validate.
    crd = with_changes(
        VALID[-1][1],
        {
            "spec.versions[0].schema.openAPIV3Schema": {
                "type": "object",
                "properties": {
                    "spec": {
                        "type": "object",
                        "properties": {"a": {"type": "array", "items": {"type": "string"}}},
                    }
                },
            }
        },
    )
    assert validate_object(crd, CRD) == []
    bad = with_changes(
        crd, {"spec.versions[0].schema.openAPIV3Schema.properties.spec.properties.a.type": 5}
    )
    assert [c.field for c in validate_object(bad, CRD)] == [
        "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[a].type"
    ]


# --------------------------------------------------------------------------------------------
# the compiled checker agrees with jsonschema on the same definitions


def _reference_validator() -> jsonschema.protocols.Validator:
    defs = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://kubernetes.io/api/_definitions.json",
        "$defs": schema_catalog.definitions(),
    }
    root = {
        "$ref": "/api/_definitions.json#/$defs/io.k8s.api.core.v1.Pod",
        "$id": "https://kubernetes.io/api/pod/v1",
    }
    registry: Registry[Any] = Resource.from_contents(defs) @ Registry()
    return jsonschema.Draft202012Validator(root, registry=registry)


REFERENCE = _reference_validator()


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _leaves(v, (*path, k))] + (
            [path] if path else []
        )
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _leaves(v, (*path, i))] + [path]
    return [path]


# Quantities, times and int ranges are checked here beyond what the schema says: leave them out.
PATHS = [
    p
    for p in _leaves(POD_OBJ)
    if not any(part in ("resources", "lastTransitionTime") for part in p)
]

replacements = st.one_of(
    st.integers(-5, 5),
    st.booleans(),
    st.text(alphabet="ab", max_size=2),
    st.lists(st.integers(0, 2), max_size=2),
    st.dictionaries(st.sampled_from(["name", "x"]), st.text(alphabet="ab", max_size=2), max_size=2),
)


@given(path=st.sampled_from(PATHS), replacement=replacements, delete=st.booleans())
@settings(max_examples=300, deadline=None)
def test_schema_checks_agree_with_jsonschema(
    path: tuple[Any, ...], replacement: Any, delete: bool
) -> None:
    obj = json.loads(json.dumps(POD_OBJ))
    parent: Any = obj
    for part in path[:-1]:
        parent = parent[part]
    if delete and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = replacement
    mine: list[Cause] = []
    _builtin_check("io.k8s.api.core.v1.Pod")(obj, None, mine)
    reference = list(REFERENCE.iter_errors(obj))
    assert bool(mine) == bool(reference), (mine, [e.message for e in reference])
