"""Server-side Tables (``directlb.sim.tables``) against the real kube-apiserver's printers.

Expected values come from kube-apiserver v1.32's ``pkg/printers/internalversion/printers.go``,
apiextensions-apiserver's ``tableconvertor`` and ``duration.HumanDuration``; the two seed
listings are the real ``kubectl get pod -o wide`` / ``get service -o wide`` output from
``seed/tke-direct-pod-connection.md``, re-rendered here with kubectl's column layout.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from directlb.sim.contracts import ResourceKey, StatusError
from directlb.sim.tables import INCLUDE_OBJECT_POLICIES, human_duration, to_table

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
GATE = "cloud.tencent.com/load-balancer-backendgroup-ready"

PODS = ResourceKey("", "v1", "pods", "Pod", True)
SERVICES = ResourceKey("", "v1", "services", "Service", True)
NODES = ResourceKey("", "v1", "nodes", "Node", False)
NAMESPACES = ResourceKey("", "v1", "namespaces", "Namespace", False)
EVENTS = ResourceKey("", "v1", "events", "Event", True)
EVENTS_V1 = ResourceKey("events.k8s.io", "v1", "events", "Event", True)
SECRETS = ResourceKey("", "v1", "secrets", "Secret", True)
CONFIGMAPS = ResourceKey("", "v1", "configmaps", "ConfigMap", True)
SERVICEACCOUNTS = ResourceKey("", "v1", "serviceaccounts", "ServiceAccount", True)
DEPLOYMENTS = ResourceKey("apps", "v1", "deployments", "Deployment", True)
REPLICASETS = ResourceKey("apps", "v1", "replicasets", "ReplicaSet", True)
ENDPOINTSLICES = ResourceKey("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True)
INGRESSES = ResourceKey("networking.k8s.io", "v1", "ingresses", "Ingress", True)
INGRESSCLASSES = ResourceKey("networking.k8s.io", "v1", "ingressclasses", "IngressClass", False)
LEASES = ResourceKey("coordination.k8s.io", "v1", "leases", "Lease", True)
MUTATING = ResourceKey(
    "admissionregistration.k8s.io",
    "v1",
    "mutatingwebhookconfigurations",
    "MutatingWebhookConfiguration",
    False,
)
VALIDATING = ResourceKey(
    "admissionregistration.k8s.io",
    "v1",
    "validatingwebhookconfigurations",
    "ValidatingWebhookConfiguration",
    False,
)
CRDS = ResourceKey(
    "apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False
)
WIDGETS = ResourceKey("example.com", "v1", "widgets", "Widget", True)


def ago(**delta: float) -> str:
    return (NOW - timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


def meta(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "namespace": "default", "creationTimestamp": ago(seconds=24), **extra}


def cells(key: ResourceKey, obj: dict[str, Any], **options: Any) -> list[Any]:
    table = to_table(key, [obj], **{"now": NOW, **options})
    row_cells: list[Any] = table["rows"][0]["cells"]
    return row_cells


def render(table: dict[str, Any], *, wide: bool) -> list[str]:
    """kubectl's table printer: visible columns, upper-cased headers, a tabwriter with
    padding 3 (minimum width 6), "<none>" for null cells, no padding after the last column."""
    shown = [i for i, c in enumerate(table["columnDefinitions"]) if wide or c["priority"] == 0]
    grid = [[table["columnDefinitions"][i]["name"].upper() for i in shown]]
    for row in table["rows"]:
        grid.append(["<none>" if row["cells"][i] is None else str(row["cells"][i]) for i in shown])
    widths = [max(6, max(len(line[i]) for line in grid) + 3) for i in range(len(shown))]
    return [
        "".join(text.ljust(widths[i]) for i, text in enumerate(line[:-1])) + line[-1]
        for line in grid
    ]


# --------------------------------------------------------------------------------------------
# The seed's listings


def seed_pod(name: str, ip: str, node: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta(name, labels={"app": "nginx"}),
        "spec": {
            "nodeName": node,
            "containers": [{"name": "nginx", "image": "nginx"}],
            "readinessGates": [{"conditionType": GATE}],
        },
        "status": {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "conditions": [
                {"type": "Initialized", "status": "True"},
                {"type": "Ready", "status": "True"},
                {"type": GATE, "status": "True"},
            ],
            "containerStatuses": [
                {
                    "name": "nginx",
                    "ready": True,
                    "started": True,
                    "restartCount": 0,
                    "state": {"running": {"startedAt": ago(seconds=20)}},
                }
            ],
        },
    }


SEED_PODS = [
    "NAME                                   READY   STATUS    RESTARTS   AGE   IP               NODE          NOMINATED NODE   READINESS GATES",  # noqa: E501
    "nginx-deployment-eni-bb7544db8-6ljkm   1/1     Running   0          24s   172.17.160.191   172.17.0.3    <none>           1/1",  # noqa: E501
    "nginx-deployment-eni-bb7544db8-xqqtv   1/1     Running   0          24s   172.17.160.190   172.17.0.46   <none>           1/1",  # noqa: E501
    "nginx-deployment-eni-bb7544db8-zk2cx   1/1     Running   0          24s   172.17.160.189   172.17.0.9    <none>           1/1",  # noqa: E501
]
SEED_SERVICES = [
    "NAME                TYPE           CLUSTER-IP      EXTERNAL-IP      PORT(S)        AGE    SELECTOR",  # noqa: E501
    "kubernetes          ClusterIP      10.187.252.1    <none>           443/TCP        6d4h   <none>",  # noqa: E501
    "nginx-service-eni   LoadBalancer   10.187.254.62   150.158.221.31   80:32693/TCP   6d1h   app=nginx",  # noqa: E501
]


def test_seed_kubectl_get_pod_wide() -> None:
    pods = [
        seed_pod("nginx-deployment-eni-bb7544db8-6ljkm", "172.17.160.191", "172.17.0.3"),
        seed_pod("nginx-deployment-eni-bb7544db8-xqqtv", "172.17.160.190", "172.17.0.46"),
        seed_pod("nginx-deployment-eni-bb7544db8-zk2cx", "172.17.160.189", "172.17.0.9"),
    ]
    table = to_table(PODS, pods, now=NOW)
    assert render(table, wide=True) == SEED_PODS
    narrow = [
        line[: len("NAME" + " " * 35 + "READY   STATUS    RESTARTS   AGE")] for line in SEED_PODS
    ]
    assert render(table, wide=False) == [line.rstrip() for line in narrow]


def test_seed_kubectl_get_service_wide() -> None:
    services = [
        {
            "metadata": {
                "name": "kubernetes",
                "creationTimestamp": ago(days=6, hours=4, minutes=7),
            },
            "spec": {
                "type": "ClusterIP",
                "clusterIP": "10.187.252.1",
                "clusterIPs": ["10.187.252.1"],
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}],
            },
        },
        {
            "metadata": {"name": "nginx-service-eni", "creationTimestamp": ago(days=6, hours=1)},
            "spec": {
                "type": "LoadBalancer",
                "clusterIP": "10.187.254.62",
                "clusterIPs": ["10.187.254.62"],
                "selector": {"app": "nginx"},
                "ports": [{"port": 80, "targetPort": 80, "nodePort": 32693, "protocol": "TCP"}],
            },
            "status": {"loadBalancer": {"ingress": [{"ip": "150.158.221.31"}]}},
        },
    ]
    assert render(to_table(SERVICES, services, now=NOW), wide=True) == SEED_SERVICES


# --------------------------------------------------------------------------------------------
# Column definitions: names, types, formats and priorities as the real server sends them


def columns(key: ResourceKey, **options: Any) -> list[tuple[str, str, str, int]]:
    table = to_table(key, [], now=NOW, **options)
    return [(c["name"], c["type"], c["format"], c["priority"]) for c in table["columnDefinitions"]]


NAME = ("Name", "string", "name", 0)
AGE = ("Age", "string", "", 0)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (
            PODS,
            [
                NAME,
                ("Ready", "string", "", 0),
                ("Status", "string", "", 0),
                ("Restarts", "string", "", 0),
                AGE,
                ("IP", "string", "", 1),
                ("Node", "string", "", 1),
                ("Nominated Node", "string", "", 1),
                ("Readiness Gates", "string", "", 1),
            ],
        ),
        (
            SERVICES,
            [
                NAME,
                ("Type", "string", "", 0),
                ("Cluster-IP", "string", "", 0),
                ("External-IP", "string", "", 0),
                ("Port(s)", "string", "", 0),
                AGE,
                ("Selector", "string", "", 1),
            ],
        ),
        (
            NODES,
            [
                NAME,
                ("Status", "string", "", 0),
                ("Roles", "string", "", 0),
                AGE,
                ("Version", "string", "", 0),
                ("Internal-IP", "string", "", 1),
                ("External-IP", "string", "", 1),
                ("OS-Image", "string", "", 1),
                ("Kernel-Version", "string", "", 1),
                ("Container-Runtime", "string", "", 1),
            ],
        ),
        (NAMESPACES, [NAME, ("Status", "string", "", 0), AGE]),
        (
            EVENTS,
            [
                ("Last Seen", "string", "", 0),
                ("Type", "string", "", 0),
                ("Reason", "string", "", 0),
                ("Object", "string", "", 0),
                ("Subobject", "string", "", 1),
                ("Source", "string", "", 1),
                ("Message", "string", "", 0),
                ("First Seen", "string", "", 1),
                ("Count", "string", "", 1),
                ("Name", "string", "name", 1),
            ],
        ),
        (SECRETS, [NAME, ("Type", "string", "", 0), ("Data", "string", "", 0), AGE]),
        (CONFIGMAPS, [NAME, ("Data", "string", "", 0), AGE]),
        (SERVICEACCOUNTS, [NAME, ("Secrets", "string", "", 0), AGE]),
        (
            DEPLOYMENTS,
            [
                NAME,
                ("Ready", "string", "", 0),
                ("Up-to-date", "string", "", 0),
                ("Available", "string", "", 0),
                AGE,
                ("Containers", "string", "", 1),
                ("Images", "string", "", 1),
                ("Selector", "string", "", 1),
            ],
        ),
        (
            REPLICASETS,
            [
                NAME,
                ("Desired", "integer", "", 0),
                ("Current", "integer", "", 0),
                ("Ready", "integer", "", 0),
                AGE,
                ("Containers", "string", "", 1),
                ("Images", "string", "", 1),
                ("Selector", "string", "", 1),
            ],
        ),
        (
            ENDPOINTSLICES,
            [
                NAME,
                ("AddressType", "string", "", 0),
                ("Ports", "string", "", 0),
                ("Endpoints", "string", "", 0),
                AGE,
            ],
        ),
        (
            INGRESSES,
            [
                NAME,
                ("Class", "string", "", 0),
                ("Hosts", "string", "", 0),
                ("Address", "string", "", 0),
                ("Ports", "string", "", 0),
                AGE,
            ],
        ),
        (
            INGRESSCLASSES,
            [NAME, ("Controller", "string", "", 0), ("Parameters", "string", "", 0), AGE],
        ),
        (LEASES, [NAME, ("Holder", "string", "", 0), AGE]),
        (MUTATING, [NAME, ("Webhooks", "integer", "", 0), AGE]),
        (VALIDATING, [NAME, ("Webhooks", "integer", "", 0), AGE]),
        (CRDS, [NAME, ("Created At", "date", "", 0)]),
        (WIDGETS, [NAME, ("Age", "date", "", 0)]),
    ],
    ids=lambda value: value.resource if isinstance(value, ResourceKey) else "",
)
def test_column_definitions(key: ResourceKey, expected: list[tuple[str, str, str, int]]) -> None:
    assert columns(key) == expected


def test_column_descriptions_are_the_real_swagger_docs() -> None:
    pod_columns = to_table(PODS, [], now=NOW)["columnDefinitions"]
    by_name = {c["name"]: c["description"] for c in pod_columns}
    assert by_name["Name"].startswith("Name must be unique within a namespace.")
    assert by_name["Age"].startswith("CreationTimestamp is a timestamp representing the server")
    assert by_name["IP"] == (
        "podIP address allocated to the pod. Routable at least within the cluster. "
        "Empty if not yet allocated."
    )
    assert by_name["Ready"] == "The aggregate readiness state of this pod for accepting traffic."
    replicaset = {c["name"]: c["description"] for c in columns_json(REPLICASETS)}
    # The printers cite extensions/v1beta1's docs, which differ from apps/v1's.
    assert replicaset["Ready"] == "The number of ready replicas for this replica set."
    widgets = columns_json(
        WIDGETS, printer_columns=[{"name": "X", "type": "string", "jsonPath": ".x"}]
    )
    assert widgets[1]["description"] == "Custom resource definition column (in JSONPath format): .x"


def columns_json(key: ResourceKey, **options: Any) -> list[dict[str, Any]]:
    definitions: list[dict[str, Any]] = to_table(key, [], now=NOW, **options)["columnDefinitions"]
    return definitions


# --------------------------------------------------------------------------------------------
# duration.HumanDuration


@pytest.mark.parametrize(
    ("delta", "expected"),
    [
        (timedelta(seconds=-5), "<invalid>"),
        (timedelta(seconds=-2), "<invalid>"),
        (timedelta(seconds=-1.5), "0s"),
        (timedelta(seconds=-1), "0s"),
        (timedelta(0), "0s"),
        (timedelta(seconds=0.9), "0s"),
        (timedelta(seconds=24), "24s"),
        (timedelta(seconds=119.9), "119s"),
        (timedelta(seconds=120), "2m"),
        (timedelta(seconds=125), "2m5s"),
        (timedelta(minutes=9, seconds=59), "9m59s"),
        (timedelta(minutes=10), "10m"),
        (timedelta(minutes=10, seconds=30), "10m"),
        (timedelta(minutes=179, seconds=59), "179m"),
        (timedelta(hours=3), "3h"),
        (timedelta(hours=3, minutes=5), "3h5m"),
        (timedelta(hours=7, minutes=59), "7h59m"),
        (timedelta(hours=8), "8h"),
        (timedelta(hours=47, minutes=59), "47h"),
        (timedelta(hours=48), "2d"),
        (timedelta(days=6, hours=4), "6d4h"),
        (timedelta(days=7, hours=23, minutes=59), "7d23h"),
        (timedelta(days=8), "8d"),
        (timedelta(days=729), "729d"),
        (timedelta(days=730), "2y"),
        (timedelta(days=731), "2y1d"),
        (timedelta(days=365 * 8 - 1), "7y364d"),
        (timedelta(days=365 * 8), "8y"),
        (timedelta(days=365 * 10 + 100), "10y"),
    ],
)
def test_human_duration(delta: timedelta, expected: str) -> None:
    assert human_duration(delta) == expected


@pytest.mark.parametrize(
    ("created", "expected"),
    [
        (None, "<unknown>"),
        ("", "<unknown>"),
        ("0001-01-01T00:00:00Z", "<unknown>"),
        ("yesterday", "<unknown>"),
        (ago(days=6, hours=4), "6d4h"),
        ("2024-05-01T16:00:00+08:00", "4h"),  # offsets count
        ("2024-05-01T11:59:30.123456789Z", "29s"),  # fractions are allowed (and truncated)
        ("2024-05-01T12:00:01Z", "0s"),  # a second of clock skew is "now"
        ("2024-05-01T12:00:05Z", "<invalid>"),
    ],
)
def test_age_column(created: str | None, expected: str) -> None:
    namespace = {"metadata": {"name": "n", "creationTimestamp": created}}
    assert cells(NAMESPACES, namespace)[2] == expected


# --------------------------------------------------------------------------------------------
# Pods: READY, STATUS, RESTARTS, IP, NODE, NOMINATED NODE, READINESS GATES


def pod(
    *,
    status: dict[str, Any] | None = None,
    spec: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "metadata": meta("p", **(metadata or {})),
        "spec": {"containers": [{"name": "app", "image": "nginx"}], **(spec or {})},
        "status": status if status is not None else {"phase": "Pending"},
    }


def running(name: str = "app", **extra: Any) -> dict[str, Any]:
    return {"name": name, "ready": True, "restartCount": 0, "state": {"running": {}}, **extra}


def waiting(reason: str, name: str = "app", **extra: Any) -> dict[str, Any]:
    state = {"waiting": {"reason": reason}}
    return {"name": name, "ready": False, "restartCount": 0, "state": state, **extra}


def terminated(name: str = "app", **state: Any) -> dict[str, Any]:
    return {"name": name, "ready": False, "restartCount": 0, "state": {"terminated": state}}


TWO_INITS = {
    "initContainers": [{"name": "init-a", "image": "busybox"}, {"name": "init-b", "image": "b"}]
}
SIDECAR = {"initContainers": [{"name": "proxy", "image": "envoy", "restartPolicy": "Always"}]}
READY_TRUE = {"type": "Ready", "status": "True"}


@pytest.mark.parametrize(
    ("the_pod", "ready", "status"),
    [
        (pod(), "0/1", "Pending"),
        (pod(status={}), "0/1", "Pending"),  # the server defaults the phase
        (pod(status={"phase": "Pending", "containerStatuses": [waiting("ContainerCreating")]}),
         "0/1", "ContainerCreating"),
        (pod(status={"phase": "Running", "containerStatuses": [running()]}), "1/1", "Running"),
        (pod(status={"phase": "Running", "containerStatuses": [waiting("CrashLoopBackOff")]}),
         "0/1", "CrashLoopBackOff"),
        (pod(status={"phase": "Running", "containerStatuses": [running(ready=False)]}),
         "0/1", "Running"),
        (pod(status={"phase": "Failed", "reason": "Evicted"}), "0/1", "Evicted"),
        (pod(status={"phase": "Running", "containerStatuses": [terminated(exitCode=137)]}),
         "0/1", "ExitCode:137"),
        (pod(status={"phase": "Running", "containerStatuses": [terminated(exitCode=1, signal=9)]}),
         "0/1", "Signal:9"),
        (pod(status={"phase": "Succeeded",
                     "containerStatuses": [terminated(exitCode=0, reason="Completed")]}),
         "0/1", "Completed"),
        (pod(spec={"containers": [{"name": "a"}, {"name": "b"}]},
             status={"phase": "Running", "conditions": [READY_TRUE],
                     "containerStatuses": [terminated("a", exitCode=0, reason="Completed"),
                                           running("b")]}),
         "1/2", "Running"),
        (pod(spec={"containers": [{"name": "a"}, {"name": "b"}]},
             status={"phase": "Running",
                     "containerStatuses": [terminated("a", exitCode=0, reason="Completed"),
                                           running("b")]}),
         "1/2", "NotReady"),
        (pod(spec=TWO_INITS, status={"phase": "Pending", "initContainerStatuses": [
            waiting("PodInitializing", "init-a"), waiting("PodInitializing", "init-b")]}),
         "0/1", "Init:0/2"),
        (pod(spec=TWO_INITS, status={"phase": "Pending", "initContainerStatuses": [
            terminated("init-a", exitCode=0), running("init-b")]}),
         "0/1", "Init:1/2"),
        (pod(spec=TWO_INITS, status={"phase": "Pending", "initContainerStatuses": [
            waiting("ImagePullBackOff", "init-a")]}),
         "0/1", "Init:ImagePullBackOff"),
        (pod(spec=TWO_INITS, status={"phase": "Pending", "initContainerStatuses": [
            terminated("init-a", exitCode=1, reason="Error")]}),
         "0/1", "Init:Error"),
        (pod(spec=TWO_INITS, status={"phase": "Pending", "initContainerStatuses": [
            terminated("init-a", exitCode=2)]}),
         "0/1", "Init:ExitCode:2"),
        (pod(spec=TWO_INITS, status={"phase": "Pending", "initContainerStatuses": [
            terminated("init-a", exitCode=2, signal=15)]}),
         "0/1", "Init:Signal:15"),
        (pod(spec=SIDECAR, status={"phase": "Running",
                                   "initContainerStatuses": [running("proxy", started=True)],
                                   "containerStatuses": [running()]}),
         "2/2", "Running"),
        (pod(spec=SIDECAR, status={"phase": "Pending",
                                   "initContainerStatuses": [waiting("PodInitializing", "proxy")],
                                   "containerStatuses": [waiting("PodInitializing")]}),
         "0/2", "Init:0/1"),
        (pod(status={"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}),
         "0/1", "SchedulingGated"),
        (pod(metadata={"deletionTimestamp": ago(seconds=1)},
             status={"phase": "Running", "containerStatuses": [running()]}),
         "1/1", "Terminating"),
        (pod(metadata={"deletionTimestamp": ago(seconds=1)},
             status={"phase": "Running", "reason": "NodeLost"}),
         "0/1", "Unknown"),
        (pod(metadata={"deletionTimestamp": ago(seconds=1)},
             status={"phase": "Succeeded",
                     "containerStatuses": [terminated(exitCode=0, reason="Completed")]}),
         "0/1", "Completed"),  # a finished pod is not "Terminating"
    ],
)  # fmt: skip
def test_pod_ready_and_status(the_pod: dict[str, Any], ready: str, status: str) -> None:
    assert cells(PODS, the_pod)[1:3] == [ready, status]


@pytest.mark.parametrize(
    ("container_statuses", "expected"),
    [
        ([], "0"),
        ([running(restartCount=3)], "3"),  # no lastState: no "(ago)"
        (
            [running(restartCount=5, lastState={"terminated": {"finishedAt": ago(minutes=3)}})],
            "5 (3m ago)",
        ),
        (
            [
                running(
                    "a", restartCount=1, lastState={"terminated": {"finishedAt": ago(hours=2)}}
                ),
                running(
                    "b", restartCount=2, lastState={"terminated": {"finishedAt": ago(seconds=40)}}
                ),
            ],
            "3 (40s ago)",
        ),
        ([running(restartCount=0, lastState={"terminated": {"finishedAt": ago(minutes=3)}})], "0"),
    ],
)
def test_pod_restarts(container_statuses: list[dict[str, Any]], expected: str) -> None:
    the_pod = pod(status={"phase": "Running", "containerStatuses": container_statuses})
    assert cells(PODS, the_pod)[3] == expected


def test_pod_restarts_count_init_containers_only_while_initializing() -> None:
    init_restarted = {
        "phase": "Pending",
        "initContainerStatuses": [
            {**waiting("CrashLoopBackOff", "init-a"), "restartCount": 4},
        ],
    }
    assert cells(PODS, pod(spec=TWO_INITS, status=init_restarted))[2:4] == [
        "Init:CrashLoopBackOff",
        "4",
    ]
    done = {
        "phase": "Running",
        "initContainerStatuses": [{**terminated("init-a", exitCode=0), "restartCount": 4}],
        "containerStatuses": [running(restartCount=1)],
    }
    assert cells(PODS, pod(spec=TWO_INITS, status=done))[3] == "1"


@pytest.mark.parametrize(
    ("spec", "status", "expected"),
    [
        ({}, {}, ["<none>", "<none>", "<none>", "<none>"]),
        (
            {"nodeName": "node-1"},
            {"podIP": "10.0.0.5", "nominatedNodeName": "node-2"},
            ["10.0.0.5", "node-1", "node-2", "<none>"],
        ),
        ({}, {"podIPs": [{"ip": "10.0.0.6"}, {"ip": "fd00::6"}]}, ["10.0.0.6", *["<none>"] * 3]),
        (
            {"readinessGates": [{"conditionType": GATE}]},
            {"conditions": [{"type": GATE, "status": "True"}]},
            ["<none>", "<none>", "<none>", "1/1"],
        ),
        (
            {"readinessGates": [{"conditionType": GATE}]},
            {"conditions": [{"type": GATE, "status": "False"}]},
            ["<none>", "<none>", "<none>", "0/1"],
        ),
        (
            {"readinessGates": [{"conditionType": GATE}, {"conditionType": "x/other"}]},
            {"conditions": [{"type": GATE, "status": "True"}]},  # the other one is missing
            ["<none>", "<none>", "<none>", "1/2"],
        ),
    ],
)
def test_pod_wide_columns(
    spec: dict[str, Any], status: dict[str, Any], expected: list[str]
) -> None:
    assert cells(PODS, pod(spec=spec, status={"phase": "Running", **status}))[5:] == expected


@pytest.mark.parametrize(
    ("phase", "conditions"),
    [
        ("Running", None),
        (
            "Succeeded",
            [
                {
                    "type": "Completed",
                    "status": "True",
                    "reason": "Succeeded",
                    "message": "The pod has completed successfully.",
                }
            ],
        ),
        (
            "Failed",
            [
                {
                    "type": "Completed",
                    "status": "True",
                    "reason": "Failed",
                    "message": "The pod failed.",
                }
            ],
        ),
    ],
)
def test_pod_row_conditions(phase: str, conditions: list[dict[str, str]] | None) -> None:
    row = to_table(PODS, [pod(status={"phase": phase})], now=NOW)["rows"][0]
    assert row.get("conditions") == conditions
    assert list(row) == (["cells", "conditions", "object"] if conditions else ["cells", "object"])


# --------------------------------------------------------------------------------------------
# Services


def service(spec: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {"metadata": meta("s"), "spec": spec}
    if status is not None:
        obj["status"] = status
    return obj


LB_SPEC = {"type": "LoadBalancer", "clusterIPs": ["10.0.0.1"], "ports": [{"port": 80}]}


@pytest.mark.parametrize(
    ("the_service", "expected"),
    [
        (service({"clusterIP": "10.0.0.1", "ports": [{"port": 80}]}),
         ["ClusterIP", "10.0.0.1", "<none>", "80/TCP"]),
        (service({"type": "ClusterIP", "clusterIP": "None", "clusterIPs": ["None"]}),
         ["ClusterIP", "None", "<none>", "<none>"]),
        (service({"type": "NodePort", "clusterIPs": ["10.0.0.1", "fd00::1"],
                  "externalIPs": ["1.2.3.4", "5.6.7.8"],
                  "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"},
                            {"port": 53, "nodePort": 30053, "protocol": "UDP"}]}),
         ["NodePort", "10.0.0.1", "1.2.3.4,5.6.7.8", "80:30080/TCP,53:30053/UDP"]),
        (service(LB_SPEC), ["LoadBalancer", "10.0.0.1", "<pending>", "80/TCP"]),
        (service(LB_SPEC, {"loadBalancer": {}}),
         ["LoadBalancer", "10.0.0.1", "<pending>", "80/TCP"]),
        (service(LB_SPEC, {"loadBalancer": {"ingress": [
            {"ip": "9.9.9.9"}, {"hostname": "lb.example.com"}, {"ip": "1.1.1.1"},
            {"ip": "9.9.9.9", "hostname": "ignored.example.com"}]}}),
         ["LoadBalancer", "10.0.0.1", "1.1.1.1,9.9.9.9,lb.example.com", "80/TCP"]),
        (service({**LB_SPEC, "externalIPs": ["7.7.7.7"]},
                 {"loadBalancer": {"ingress": [{"ip": "9.9.9.9"}]}}),
         ["LoadBalancer", "10.0.0.1", "9.9.9.9,7.7.7.7", "80/TCP"]),
        (service({**LB_SPEC, "externalIPs": ["7.7.7.7"]}),
         ["LoadBalancer", "10.0.0.1", "7.7.7.7", "80/TCP"]),
        (service({"type": "ExternalName", "externalName": "db.example.com"}),
         ["ExternalName", "<none>", "db.example.com", "<none>"]),
        (service({"type": "Weird"}), ["Weird", "<none>", "<unknown>", "<none>"]),
    ],
)  # fmt: skip
def test_service_cells(the_service: dict[str, Any], expected: list[str]) -> None:
    assert cells(SERVICES, the_service)[1:5] == expected


@pytest.mark.parametrize(
    ("selector", "expected"),
    [(None, "<none>"), ({}, "<none>"), ({"tier": "web", "app": "nginx"}, "app=nginx,tier=web")],
)
def test_service_selector(selector: dict[str, str] | None, expected: str) -> None:
    assert cells(SERVICES, service({"selector": selector}))[6] == expected


def test_long_load_balancer_address_is_not_clipped() -> None:
    # The server prints wide, so the 16-character clipping of narrow output never applies.
    hostname = "a-very-long-load-balancer-name.elb.example.com"
    the_service = service(LB_SPEC, {"loadBalancer": {"ingress": [{"hostname": hostname}]}})
    assert cells(SERVICES, the_service)[3] == hostname


# --------------------------------------------------------------------------------------------
# Nodes, namespaces and the small kinds


def node(**overrides: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "metadata": {"name": "node-1", "creationTimestamp": ago(days=30), "labels": {}},
        "spec": {},
        "status": {
            "conditions": [{"type": "MemoryPressure", "status": "False"}],
            "addresses": [
                {"type": "Hostname", "address": "node-1"},
                {"type": "InternalIP", "address": "10.1.0.1"},
                {"type": "InternalIP", "address": "10.1.0.2"},
            ],
            "nodeInfo": {"kubeletVersion": "v1.32.4"},
        },
    }
    for path, value in overrides.items():
        section, _, field = path.partition("__")
        obj[section][field] = value
    return obj


@pytest.mark.parametrize(
    ("the_node", "expected"),
    [
        (node(), ["Unknown", "<none>"]),
        (node(status__conditions=[{"type": "Ready", "status": "True"}]), ["Ready", "<none>"]),
        (node(status__conditions=[{"type": "Ready", "status": "Unknown"}]), ["NotReady", "<none>"]),
        (node(status__conditions=[{"type": "Ready", "status": "False"}], spec__unschedulable=True),
         ["NotReady,SchedulingDisabled", "<none>"]),
        (node(metadata__labels={"node-role.kubernetes.io/worker": "",
                                "node-role.kubernetes.io/control-plane": "",
                                "node-role.kubernetes.io/": "", "kubernetes.io/role": "infra"}),
         ["Unknown", "control-plane,infra,worker"]),
    ],
)  # fmt: skip
def test_node_status_and_roles(the_node: dict[str, Any], expected: list[str]) -> None:
    assert cells(NODES, the_node)[1:3] == expected


def test_node_wide_columns() -> None:
    assert cells(NODES, node()) == [
        "node-1",
        "Unknown",
        "<none>",
        "30d",
        "v1.32.4",
        "10.1.0.1",
        "<none>",
        "<unknown>",
        "<unknown>",
        "<unknown>",
    ]
    info = {
        "kubeletVersion": "v1.32.4",
        "osImage": "Ubuntu 22.04.4 LTS",
        "kernelVersion": "5.15.0-105-generic",
        "containerRuntimeVersion": "containerd://1.7.12",
    }
    addresses = [{"type": "ExternalIP", "address": "203.0.113.7"}]
    the_node = node(status__nodeInfo=info, status__addresses=addresses)
    assert cells(NODES, the_node)[5:] == [
        "<none>",
        "203.0.113.7",
        "Ubuntu 22.04.4 LTS",
        "5.15.0-105-generic",
        "containerd://1.7.12",
    ]


@pytest.mark.parametrize(
    ("key", "obj", "expected"),
    [
        (NAMESPACES, {"metadata": meta("kube-system"), "status": {"phase": "Active"}},
         ["kube-system", "Active", "24s"]),
        (NAMESPACES, {"metadata": meta("gone"), "status": {"phase": "Terminating"}},
         ["gone", "Terminating", "24s"]),
        (NAMESPACES, {"metadata": meta("fresh")}, ["fresh", "Active", "24s"]),
        (SECRETS, {"metadata": meta("tls"), "type": "kubernetes.io/tls",
                   "data": {"tls.crt": "eA==", "tls.key": "eQ=="}},
         ["tls", "kubernetes.io/tls", 2, "24s"]),
        (SECRETS, {"metadata": meta("plain")}, ["plain", "Opaque", 0, "24s"]),
        (CONFIGMAPS, {"metadata": meta("cm"), "data": {"a": "1", "b": "2"},
                      "binaryData": {"c": "AA=="}},
         ["cm", 3, "24s"]),
        (CONFIGMAPS, {"metadata": meta("empty")}, ["empty", 0, "24s"]),
        (SERVICEACCOUNTS, {"metadata": meta("default")}, ["default", 0, "24s"]),
        (SERVICEACCOUNTS, {"metadata": meta("old"), "secrets": [{"name": "old-token"}]},
         ["old", 1, "24s"]),
        (LEASES, {"metadata": meta("directlb"), "spec": {"holderIdentity": "pod-a_1234"}},
         ["directlb", "pod-a_1234", "24s"]),
        (LEASES, {"metadata": meta("free"), "spec": {}}, ["free", "", "24s"]),
        (MUTATING, {"metadata": meta("directlb"), "webhooks": [{"name": "a"}, {"name": "b"}]},
         ["directlb", 2, "24s"]),
        (VALIDATING, {"metadata": meta("none")}, ["none", 0, "24s"]),
        (INGRESSCLASSES, {"metadata": meta("clb"), "spec": {"controller": "directlb.io/clb"}},
         ["clb", "directlb.io/clb", "<none>", "24s"]),
        (INGRESSCLASSES, {"metadata": meta("p"), "spec": {"controller": "c", "parameters": {
            "apiGroup": "directlb.io", "kind": "ClbParams", "name": "default"}}},
         ["p", "c", "ClbParams.directlb.io/default", "24s"]),
        (INGRESSCLASSES, {"metadata": meta("q"), "spec": {"controller": "c", "parameters": {
            "kind": "ConfigMap", "name": "params"}}},
         ["q", "c", "ConfigMap/params", "24s"]),
        (CRDS, {"metadata": {"name": "widgets.example.com",
                             "creationTimestamp": "2024-04-30T10:00:00+08:00"}},
         ["widgets.example.com", "2024-04-30T02:00:00Z"]),
        (CRDS, {"metadata": {"name": "new.example.com"}},
         ["new.example.com", "0001-01-01T00:00:00Z"]),
    ],
)  # fmt: skip
def test_small_kinds(key: ResourceKey, obj: dict[str, Any], expected: list[Any]) -> None:
    assert cells(key, obj) == expected


# --------------------------------------------------------------------------------------------
# Deployments and ReplicaSets (label selectors)


def workload(selector: Any, **spec: Any) -> dict[str, Any]:
    containers = [{"name": "nginx", "image": "nginx:1.25"}, {"name": "log", "image": "fluentbit"}]
    return {
        "metadata": meta("web"),
        "spec": {"selector": selector, "template": {"spec": {"containers": containers}}, **spec},
        "status": {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
    }


def test_deployment_cells() -> None:
    assert cells(DEPLOYMENTS, workload({"matchLabels": {"app": "web"}}, replicas=3)) == [
        "web",
        "2/3",
        3,
        2,
        "24s",
        "nginx,log",
        "nginx:1.25,fluentbit",
        "app=web",
    ]
    # spec.replicas is defaulted to 1 by the real server; status counts default to 0.
    bare = {"metadata": meta("bare"), "spec": {}}
    assert cells(DEPLOYMENTS, bare) == ["bare", "0/1", 0, 0, "24s", "", "", ""]


def test_replicaset_cells() -> None:
    assert cells(REPLICASETS, workload({"matchLabels": {"app": "web"}}, replicas=4)) == [
        "web",
        4,
        3,
        2,
        "24s",
        "nginx,log",
        "nginx:1.25,fluentbit",
        "app=web",
    ]


@pytest.mark.parametrize(
    ("selector", "deployment", "replicaset"),
    [
        (None, "", "<none>"),
        ({}, "", "<none>"),
        ({"matchLabels": {}, "matchExpressions": []}, "", "<none>"),
        ({"matchLabels": {"tier": "web", "app": "nginx"}},
         "app=nginx,tier=web", "app=nginx,tier=web"),
        (
            {
                "matchLabels": {"zone": "a"},
                "matchExpressions": [
                    {"key": "env", "operator": "In", "values": ["prod", "dev"]},
                    {"key": "canary", "operator": "DoesNotExist"},
                    {"key": "app", "operator": "Exists"},
                    {"key": "tier", "operator": "NotIn", "values": ["db"]},
                ],
            },
            "app,!canary,env in (dev,prod),tier notin (db),zone=a",
            "app,!canary,env in (dev,prod),tier notin (db),zone=a",
        ),
        ({"matchExpressions": [{"key": "a", "operator": "Bogus"}]}, "<invalid>", "<error>"),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]},
         "<invalid>", "<error>"),
        ({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
         "<invalid>", "<error>"),
        ({"matchLabels": {"bad key!": "x"}}, "<invalid>", "<error>"),
        ({"matchLabels": {"app": "not a valid value"}}, "<invalid>", "<error>"),
        ({"matchLabels": {"example.com/app": "web"}}, "example.com/app=web", "example.com/app=web"),
    ],
)  # fmt: skip
def test_label_selectors(selector: Any, deployment: str, replicaset: str) -> None:
    assert cells(DEPLOYMENTS, workload(selector))[7] == deployment
    assert cells(REPLICASETS, workload(selector))[7] == replicaset


# --------------------------------------------------------------------------------------------
# EndpointSlices and Ingresses


@pytest.mark.parametrize(
    ("slice_", "expected"),
    [
        ({}, ["", "<unset>", "<unset>"]),
        (
            {
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
                "endpoints": [
                    {"addresses": ["172.17.160.191"], "conditions": {"ready": True}},
                    {"addresses": ["172.17.160.190"], "conditions": {"ready": False}},
                ],
            },
            ["IPv4", "80", "172.17.160.191,172.17.160.190"],
        ),
        (
            {
                "addressType": "IPv4",
                "ports": [{"port": 80}, {"name": "metrics"}, {}, {"port": 9000}],
                "endpoints": [{"addresses": [f"10.0.0.{i}"]} for i in range(1, 6)],
            },
            ["IPv4", "80,metrics,* + 1 more...", "10.0.0.1,10.0.0.2,10.0.0.3 + 2 more..."],
        ),
    ],
)
def test_endpointslice_cells(slice_: dict[str, Any], expected: list[str]) -> None:
    assert cells(ENDPOINTSLICES, {"metadata": meta("web-abc12"), **slice_})[1:4] == expected


@pytest.mark.parametrize(
    ("spec", "status", "expected"),
    [
        ({}, {}, ["<none>", "*", "", "80"]),
        (
            {
                "ingressClassName": "clb",
                "rules": [{"host": "a.example.com"}, {}, {"host": "b.example.com"}],
                "tls": [{"hosts": ["a.example.com"], "secretName": "tls"}],
            },
            {"loadBalancer": {"ingress": [{"ip": "150.158.221.31"}, {"hostname": "x.clb.io"}]}},
            ["clb", "a.example.com,b.example.com", "150.158.221.31,x.clb.io", "80, 443"],
        ),
        (
            {"rules": [{"host": f"h{i}.example.com"} for i in range(5)]},
            {},
            ["<none>", "h0.example.com,h1.example.com,h2.example.com + 2 more...", "", "80"],
        ),
    ],
)
def test_ingress_cells(spec: dict[str, Any], status: dict[str, Any], expected: list[str]) -> None:
    the_ingress = {"metadata": meta("web"), "spec": spec, "status": status}
    assert cells(INGRESSES, the_ingress) == ["web", *expected, "24s"]


# --------------------------------------------------------------------------------------------
# Events, in both APIs


def test_core_event_cells() -> None:
    event = {
        "metadata": meta("web-7d9c.17a"),
        "involvedObject": {"kind": "Pod", "name": "web-7d9c", "fieldPath": "spec.containers{app}"},
        "reason": "Unhealthy",
        "message": "  Readiness probe failed  \n",
        "source": {"component": "kubelet", "host": "node-1"},
        "firstTimestamp": ago(minutes=10),
        "lastTimestamp": ago(seconds=30),
        "count": 7,
        "type": "Warning",
    }
    assert cells(EVENTS, event) == [
        "30s",
        "Warning",
        "Unhealthy",
        "pod/web-7d9c",
        "spec.containers{app}",
        "kubelet, node-1",
        "Readiness probe failed",
        "10m",
        7,
        "web-7d9c.17a",
    ]


def test_new_style_core_event_uses_event_time_and_reporting_fields() -> None:
    event = {
        "metadata": meta("e"),
        "involvedObject": {"kind": "Service", "name": "web"},
        "reason": "EnsuredLoadBalancer",
        "type": "Normal",
        "eventTime": "2024-05-01T11:58:00.123456Z",
        "reportingComponent": "directlb",
        "reportingInstance": "directlb-0",
    }
    assert cells(EVENTS, event)[:9] == [
        "119s",
        "Normal",
        "EnsuredLoadBalancer",
        "service/web",
        "",
        "directlb, directlb-0",
        "",
        "119s",
        1,
    ]


def test_events_k8s_io_event_cells() -> None:
    event = {
        "metadata": meta("e2"),
        "regarding": {"kind": "Node"},
        "reason": "Rebooted",
        "note": "node rebooted",
        "type": "Warning",
        "eventTime": ago(hours=1),
        "reportingController": "kubelet",
        "series": {"count": 4, "lastObservedTime": ago(minutes=5)},
    }
    assert cells(EVENTS_V1, event) == [
        "5m",
        "Warning",
        "Rebooted",
        "node",
        "",
        "kubelet",
        "node rebooted",
        "60m",
        4,
        "e2",
    ]


# --------------------------------------------------------------------------------------------
# Custom resources: additionalPrinterColumns


WIDGET = {
    "apiVersion": "example.com/v1",
    "kind": "Widget",
    "metadata": meta("w1", labels={"app.kubernetes.io/name": "widget"}),
    "spec": {"replicas": 3, "ratio": 0.25, "big": 1500000.0, "paused": False, "ports": [80, 443]},
    "status": {
        "conditions": [
            {"type": "Progressing", "status": "False"},
            {"type": "Ready", "status": "True", "lastTransitionTime": ago(hours=3)},
        ],
        "nothing": None,
    },
}


@pytest.mark.parametrize(
    ("column_type", "json_path", "expected"),
    [
        ("integer", ".spec.replicas", 3),
        ("integer", ".spec.ratio", 0),  # truncated like Go's int64(float64)
        ("integer", ".spec.paused", None),
        ("number", ".spec.replicas", 3.0),
        ("number", ".spec.ratio", 0.25),
        ("boolean", ".spec.paused", False),
        ("boolean", ".spec.replicas", None),
        ("string", ".spec.replicas", "3"),
        ("string", ".spec.ratio", "0.25"),
        ("string", ".spec.big", "1.5e+06"),  # fmt.Sprint of a float64
        ("string", ".spec.paused", "false"),
        ("string", ".spec.ports", "[80,443]"),
        ("string", ".spec",
         '{"big":1500000,"paused":false,"ports":[80,443],"ratio":0.25,"replicas":3}'),
        ("string", ".status.nothing", "<no value>"),
        ("string", ".spec.missing", None),
        ("string", ".missing.deeper", None),
        ("string", '.status.conditions[?(@.type=="Ready")].status', "True"),
        ("string", ".status.conditions[?(@.type=='Progressing')].status", "False"),
        ("string", '.status.conditions[?(@.type=="Gone")].status', None),
        ("string", ".status.conditions[0].type", "Progressing"),
        ("string", ".status.conditions[-1].type", "Ready"),
        ("string", ".status.conditions[5].type", None),
        ("string", ".status.conditions[*].type", "Progressing"),
        ("string", ".spec.ports[1]", "443"),
        ("string", ".metadata.labels.app\\.kubernetes\\.io/name", "widget"),
        ("string", ".metadata.labels['app.kubernetes.io/name']", "widget"),
        ("string", ".spec.replicas.nope", None),
        ("string", ".spec[0]", None),  # indexing a map is an error: no value
        ("date", ".metadata.creationTimestamp", "24s"),
        ("date", '.status.conditions[?(@.type=="Ready")].lastTransitionTime', "3h"),
        ("date", ".metadata.name", "<invalid>"),
        ("date", ".spec.replicas", None),
    ],
)  # fmt: skip
def test_printer_column_values(column_type: str, json_path: str, expected: Any) -> None:
    column = {"name": "C", "type": column_type, "jsonPath": json_path}
    row = cells(WIDGETS, WIDGET, printer_columns=[column])
    assert row == ["w1", expected]
    assert type(row[1]) is type(expected)


def test_printer_columns_definitions() -> None:
    printer_columns: list[dict[str, Any]] = [
        {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
        {
            "name": "Ready",
            "type": "string",
            "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
            "description": "Whether the widget is ready",
        },
        {
            "name": "Ratio",
            "type": "number",
            "format": "float",
            "priority": 1,
            "jsonPath": ".spec.ratio",
        },
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    table = to_table(WIDGETS, [WIDGET], now=NOW, printer_columns=printer_columns)
    assert [
        (c["name"], c["type"], c["format"], c["priority"]) for c in table["columnDefinitions"]
    ] == [
        ("Name", "string", "name", 0),
        ("Replicas", "integer", "", 0),
        ("Ready", "string", "", 0),
        ("Ratio", "number", "float", 1),
        ("Age", "date", "", 0),
    ]
    assert table["columnDefinitions"][2]["description"] == "Whether the widget is ready"
    assert table["rows"][0]["cells"] == ["w1", 3, "True", 0.25, "24s"]


def test_custom_resource_without_printer_columns_gets_age() -> None:
    no_columns: list[dict[str, Any]] = []
    for printer_columns in (None, no_columns):
        table = to_table(WIDGETS, [WIDGET], now=NOW, printer_columns=printer_columns)
        assert table["rows"][0]["cells"] == ["w1", "24s"]
        assert table["columnDefinitions"][1]["name"] == "Age"


def test_unparsable_printer_column_ends_the_columns() -> None:
    printer_columns = [
        {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
        {"name": "Bad", "type": "string", "jsonPath": ".spec[?(@.x ~ 1)]"},
        {"name": "After", "type": "string", "jsonPath": ".spec.paused"},
    ]
    table = to_table(WIDGETS, [WIDGET], now=NOW, printer_columns=printer_columns)
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Replicas"]
    assert table["rows"][0]["cells"] == ["w1", 3]


def test_printer_columns_are_ignored_for_built_in_kinds() -> None:
    printer_columns = [{"name": "X", "type": "string", "jsonPath": ".spec"}]
    assert columns(PODS, printer_columns=printer_columns)[0] == NAME
    assert len(columns(PODS, printer_columns=printer_columns)) == 9


# --------------------------------------------------------------------------------------------
# The Table envelope: includeObject, list metadata, headers, group version


POD_OBJECT = seed_pod("p", "10.0.0.1", "node-1")


def test_include_object_metadata_is_the_default() -> None:
    for include_object in ("Metadata", ""):
        row = to_table(PODS, [POD_OBJECT], now=NOW, include_object=include_object)["rows"][0]
        assert row["object"] == {
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": POD_OBJECT["metadata"],
        }
    row = to_table(PODS, [POD_OBJECT], now=NOW)["rows"][0]
    assert row["object"]["kind"] == "PartialObjectMetadata"


def test_include_object_object_and_none() -> None:
    row = to_table(PODS, [POD_OBJECT], now=NOW, include_object="Object")["rows"][0]
    assert row["object"] == POD_OBJECT
    bare = {"metadata": {"name": "x"}, "spec": {}}
    row = to_table(DEPLOYMENTS, [bare], now=NOW, include_object="Object")["rows"][0]
    assert row["object"] == {"apiVersion": "apps/v1", "kind": "Deployment", **bare}
    row = to_table(PODS, [POD_OBJECT], now=NOW, include_object="None")["rows"][0]
    # The real server writes the empty RawExtension as JSON null.
    assert "object" in row
    assert row["object"] is None


def test_include_object_rejects_unknown_values() -> None:
    with pytest.raises(StatusError) as caught:
        to_table(PODS, [POD_OBJECT], now=NOW, include_object="Everything")
    assert (caught.value.code, caught.value.reason) == (400, "BadRequest")
    assert caught.value.message == 'unrecognized includeObject value: "Everything"'


@pytest.mark.parametrize(
    ("list_meta", "expected"),
    [
        (None, {}),
        ({}, {}),
        ({"resourceVersion": "42"}, {"resourceVersion": "42"}),
        ({"resourceVersion": "42", "continue": ""}, {"resourceVersion": "42"}),
        (
            {"resourceVersion": "42", "continue": "abc", "remainingItemCount": 7, "selfLink": "x"},
            {"resourceVersion": "42", "continue": "abc", "remainingItemCount": 7},
        ),
    ],
)
def test_table_metadata(list_meta: dict[str, Any] | None, expected: dict[str, Any]) -> None:
    table = to_table(PODS, [POD_OBJECT], now=NOW, list_meta=list_meta)
    assert table["metadata"] == expected
    assert list(table) == ["kind", "apiVersion", "metadata", "columnDefinitions", "rows"]
    assert (table["kind"], table["apiVersion"]) == ("Table", "meta.k8s.io/v1")


def test_no_headers_and_v1beta1() -> None:
    table = to_table(PODS, [POD_OBJECT], now=NOW, no_headers=True)
    assert table["columnDefinitions"] is None
    assert len(table["rows"][0]["cells"]) == 9
    table = to_table(PODS, [POD_OBJECT], now=NOW, group_version="meta.k8s.io/v1beta1")
    assert table["apiVersion"] == "meta.k8s.io/v1beta1"
    assert table["rows"][0]["object"]["apiVersion"] == "meta.k8s.io/v1beta1"
    with pytest.raises(StatusError) as caught:
        to_table(PODS, [POD_OBJECT], now=NOW, group_version="v1")
    assert caught.value.code == 406


def test_empty_list() -> None:
    table = to_table(PODS, [], now=NOW, list_meta={"resourceVersion": "9"})
    assert table["rows"] == []
    assert len(table["columnDefinitions"]) == 9


def test_now_defaults_to_the_clock_and_naive_now_is_utc() -> None:
    fresh = {"metadata": {"name": "n", "creationTimestamp": datetime.now(UTC).isoformat()}}
    assert cells(NAMESPACES, fresh, now=None)[2] in ("0s", "1s")
    naive = NOW.replace(tzinfo=None)
    assert cells(NAMESPACES, {"metadata": meta("n")}, now=naive)[2] == "24s"


EVERY_KIND = [
    (PODS, pod()),
    (SERVICES, service({})),
    (NODES, node()),
    (NAMESPACES, {"metadata": meta("n")}),
    (EVENTS, {"metadata": meta("e")}),
    (EVENTS_V1, {"metadata": meta("e")}),
    (SECRETS, {"metadata": meta("s")}),
    (CONFIGMAPS, {"metadata": meta("c")}),
    (SERVICEACCOUNTS, {"metadata": meta("a")}),
    (DEPLOYMENTS, {"metadata": meta("d")}),
    (REPLICASETS, {"metadata": meta("r")}),
    (ENDPOINTSLICES, {"metadata": meta("e")}),
    (INGRESSES, {"metadata": meta("i")}),
    (INGRESSCLASSES, {"metadata": meta("i")}),
    (LEASES, {"metadata": meta("l")}),
    (MUTATING, {"metadata": meta("m")}),
    (VALIDATING, {"metadata": meta("v")}),
    (CRDS, {"metadata": meta("c")}),
    (WIDGETS, {"metadata": meta("w")}),
    (PODS, {}),  # even an object with nothing in it prints
    (SERVICES, {"spec": None, "status": "garbage"}),
]


@pytest.mark.parametrize(("key", "obj"), EVERY_KIND, ids=lambda v: getattr(v, "resource", ""))
def test_every_row_fills_every_column_and_is_json(key: ResourceKey, obj: dict[str, Any]) -> None:
    for include_object in INCLUDE_OBJECT_POLICIES:
        table = to_table(key, [obj, obj], now=NOW, include_object=include_object)
        assert all(len(r["cells"]) == len(table["columnDefinitions"]) for r in table["rows"])
        assert json.loads(json.dumps(table)) == table
