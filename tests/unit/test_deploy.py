"""The deployment in ``deploy/``: it renders, every object is valid Kubernetes, and its RBAC is
exactly what ``directlb/kube/permissions.py`` declares, which in turn covers every lightkube
call the controller packages make.

The code scan (``scan_lightkube_calls``) is static and deliberately simple. It finds calls
``<something>client.<verb>(<first argument>, ...)`` where ``<verb>`` is one of lightkube's client
methods, and resolves the first argument to a lightkube resource class when it is:

* a class imported from ``lightkube.resources.*`` (``Lease``), or a subresource of one
  (``Pod.Status``), or an attribute of such a module (``core_v1.Pod``);
* a call to such a class (``client.create(Lease(...))``);
* a variable whose name, lower-cased, is such a class's name lower-cased (``client.replace(lease)``
  in a file that imports ``Lease``): a heuristic.

Its limits: a call whose resource is a parameter (the generic informer's ``self.resource``) cannot
be resolved and must be listed in ``UNRESOLVED_ALLOWED`` with the reason it is covered anyway; a
request built by hand (the informer's watch goes through lightkube's ``prepare_request``) or made
without lightkube (raw httpx) is not seen at all; the scope (cluster or own namespace) of a call is
not checked, only that the group, resource and verb are declared somewhere. Those are what the
declared list in permissions.py, reviewed by people, is for.
"""

from __future__ import annotations

import ast
import importlib
import re
import shutil
import subprocess
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from directlb.kube import permissions
from directlb.kube.permissions import NonResourceAccess, ResourceAccess, Scope

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
# The Kubernetes minor the simulator serves and validates against (directlb/sim/schema_catalog.py).
KUBERNETES_MINOR = "1.33"
SCANNED_PACKAGES = ("directlb/kube", "directlb/controllers", "directlb/webhook")

# ---------------------------------------------------------------- rendering


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not on PATH: cannot render deploy/ with `kubectl kustomize`")
    result = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"kubectl kustomize deploy/ failed:\n{result.stderr}"
    rendered = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert rendered, "kubectl kustomize deploy/ rendered nothing"
    return rendered


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [obj for obj in objects if obj["kind"] == kind]
    assert len(found) == 1, f"expected exactly one {kind}, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def deployment(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return one(objects, "Deployment")


@pytest.fixture(scope="module")
def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def test_renders_the_expected_objects(objects: list[dict[str, Any]]) -> None:
    kinds = sorted(obj["kind"] for obj in objects)
    assert kinds == sorted(
        [
            "Namespace",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "ConfigMap",
            "Deployment",
            "Service",
            "PodDisruptionBudget",
            "IngressClass",
        ]
    )
    assert one(objects, "Namespace")["metadata"]["name"] == permissions.NAMESPACE
    ingress_class = one(objects, "IngressClass")
    assert ingress_class["metadata"]["name"] == "qcloud"
    assert ingress_class["spec"]["controller"] == "directlb.io/ingress-controller"
    for obj in objects:
        if obj["kind"] not in {"Namespace", "ClusterRole", "ClusterRoleBinding", "IngressClass"}:
            where = f"{obj['kind']}/{obj['metadata']['name']}"
            assert obj["metadata"].get("namespace") == permissions.NAMESPACE, where
    assert one(objects, "Service")["metadata"]["name"] == permissions.WEBHOOK_SERVICE_NAME


def test_every_object_validates_against_the_kubernetes_schemas(
    objects: list[dict[str, Any]],
) -> None:
    errors = []
    for obj in objects:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        try:
            # strict: unknown fields (a typo in a field name) are errors too.
            kubernetes_validate.validate(obj, KUBERNETES_MINOR, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(part) for part in error.path)
            errors.append(f"{where}: {path}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            errors.append(f"{where}: {error.message}")
    assert not errors, "\n".join(errors)


# ---------------------------------------------------------------- RBAC == permissions.py


@dataclass(frozen=True, order=True)
class Grant:
    """One verb on one resource (or URL), possibly limited to one name, in one scope."""

    scope: str
    group: str  # "(url)" for non-resource URLs
    resource: str  # "pods/status", or the URL
    verb: str
    name: str = ""  # "" = any name


def declared_grants() -> set[Grant]:
    grants = set()
    for access in permissions.PERMISSIONS:
        for verb in access.verbs:
            if isinstance(access, NonResourceAccess):
                grants.add(Grant(access.scope.value, "(url)", access.path, verb))
            else:
                for name in access.resource_names or ("",):
                    grants.add(
                        Grant(access.scope.value, access.group, access.rbac_resource, verb, name)
                    )
    return grants


def rule_grants(rules: list[dict[str, Any]], scope: Scope) -> Iterator[Grant]:
    for rule in rules:
        verbs = rule["verbs"]
        if "nonResourceURLs" in rule:
            assert scope is Scope.CLUSTER, "nonResourceURLs only work in a ClusterRole"
            for url in rule["nonResourceURLs"]:
                for verb in verbs:
                    yield Grant(scope.value, "(url)", url, verb)
            continue
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in verbs:
                    for name in rule.get("resourceNames") or [""]:
                        yield Grant(scope.value, group, resource, verb, name)


def granted(objects: list[dict[str, Any]]) -> set[Grant]:
    cluster_role = one(objects, "ClusterRole")
    role = one(objects, "Role")
    return set(rule_grants(cluster_role["rules"], Scope.CLUSTER)) | set(
        rule_grants(role["rules"], Scope.OWN_NAMESPACE)
    )


def test_rbac_grants_exactly_the_declared_permissions(objects: list[dict[str, Any]]) -> None:
    declared, actual = declared_grants(), granted(objects)
    missing = sorted(declared - actual)
    extra = sorted(actual - declared)
    assert not missing, "declared in permissions.py but not granted by deploy/rbac.yaml:\n" + (
        "\n".join(map(str, missing))
    )
    assert not extra, "granted by deploy/rbac.yaml but not declared in permissions.py:\n" + (
        "\n".join(map(str, extra))
    )


def test_rbac_has_no_wildcards(objects: list[dict[str, Any]]) -> None:
    for kind in ("ClusterRole", "Role"):
        for rule in one(objects, kind)["rules"]:
            for field in ("apiGroups", "resources", "verbs", "nonResourceURLs", "resourceNames"):
                assert not any("*" in value for value in rule.get(field) or []), (kind, rule)


def test_roles_are_bound_to_the_deployments_service_account(
    objects: list[dict[str, Any]], deployment: dict[str, Any]
) -> None:
    account = one(objects, "ServiceAccount")["metadata"]["name"]
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == account
    for binding_kind, role_kind in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        binding = one(objects, binding_kind)
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": role_kind,
            "name": one(objects, role_kind)["metadata"]["name"],
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account, "namespace": permissions.NAMESPACE}
        ]


def test_permissions_are_well_formed() -> None:
    seen: set[Grant] = set()
    for access in permissions.PERMISSIONS:
        assert access.verbs, access
        assert len(set(access.verbs)) == len(access.verbs), access
        assert access.reason and "\n" not in access.reason and "|" not in access.reason, access
        if isinstance(access, ResourceAccess):
            assert access.resource == access.resource.lower() and "/" not in access.resource
        else:
            assert access.scope is Scope.CLUSTER and access.path.startswith("/")
    for grant in declared_grants():
        assert grant not in seen
        seen.add(grant)
    # policy_rules() renders the same grants as declared_grants() expands.
    rendered = {
        grant
        for scope in Scope
        for grant in rule_grants(
            [rule.to_dict() for rule in permissions.policy_rules(scope)], scope
        )
    }
    assert rendered == declared_grants()


# ---------------------------------------------------------------- code uses only declared accesses

_CLIENT_VERBS = {
    "get": "get",
    "list": "list",
    "watch": "watch",
    "create": "create",
    "replace": "update",
    "patch": "patch",
    "apply": "patch",  # server-side apply is a PATCH
    "delete": "delete",
    "deletecollection": "deletecollection",
}


@dataclass(frozen=True, order=True)
class Call:
    path: str  # relative to the repository
    line: int
    verb: str  # the RBAC verb
    group: str | None = None  # None: unresolved
    resource: str | None = None  # "pods/status"
    text: str = ""


# Calls whose resource the scan cannot resolve, by (file, RBAC verb), and why they are covered.
UNRESOLVED_ALLOWED = {
    ("directlb/kube/informer.py", "list"): "the Informer lists the kind it is given; the "
    "controller builds informers only for kinds declared with list+watch in permissions.py",
    ("directlb/controllers/lbowner.py", "patch"): "the CLB owner patches its kind "
    "(OwnerKind.resource, .status_resource): services and services/status for the Service "
    "controller, ingresses and ingresses/status for the Ingress controller, all declared",
    ("directlb/controllers/lbowner.py", "get"): "the CLB owner reads its kind afresh after a "
    "409 on a finalizer patch (OwnerKind.resource): services for the Service controller, "
    "ingresses for the Ingress controller, both declared with get",
    ("directlb/kube/version.py", "get"): "GET /version, a non-resource URL: declared as "
    "NonResourceAccess('/version') in permissions.py (granted to every authenticated user by "
    "the default system:public-info-viewer ClusterRole)",
}


def _resource_class_info(cls: Any) -> tuple[str, str] | None:
    info = getattr(cls, "_api_info", None)
    if info is None:
        return None
    plural = info.plural + (f"/{info.action}" if info.action else "")
    return info.resource.group, plural


def scan_source(source: str, path: str) -> list[Call]:
    tree = ast.parse(source, filename=path)
    classes: dict[str, Any] = {}  # local name -> lightkube resource class
    modules: dict[str, Any] = {}  # local name -> lightkube.resources.* module
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
            "lightkube.resources"
        ):
            assert node.module is not None
            module = importlib.import_module(node.module)
            for alias in node.names:
                target = getattr(module, alias.name, None)
                if target is None or isinstance(target, types.ModuleType):
                    # a submodule: from lightkube.resources import core_v1
                    target = importlib.import_module(f"{node.module}.{alias.name}")
                    modules[alias.asname or alias.name] = target
                else:
                    classes[alias.asname or alias.name] = target
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("lightkube.resources.") and alias.asname:
                    modules[alias.asname] = importlib.import_module(alias.name)

    def resolve(arg: ast.expr) -> Any:
        if isinstance(arg, ast.Call):
            return resolve(arg.func)
        if isinstance(arg, ast.Name):
            if arg.id in classes:
                return classes[arg.id]
            by_lower = {name.lower(): cls for name, cls in classes.items()}
            return by_lower.get(arg.id.lower())  # the variable-name heuristic
        if isinstance(arg, ast.Attribute):
            if isinstance(arg.value, ast.Name) and arg.value.id in modules:
                return getattr(modules[arg.value.id], arg.attr, None)
            parent = resolve(arg.value)
            if parent is not None and isinstance(parent, type):
                return getattr(parent, arg.attr, None)  # Pod.Status
        return None

    calls = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        verb = _CLIENT_VERBS.get(node.func.attr)
        receiver = node.func.value
        receiver_name = (
            receiver.id
            if isinstance(receiver, ast.Name)
            else receiver.attr
            if isinstance(receiver, ast.Attribute)
            else ""
        )
        if verb is None or "client" not in receiver_name.lower() or not node.args:
            continue
        info = _resource_class_info(resolve(node.args[0]))
        text = ast.get_source_segment(source, node) or ""
        group, resource = info if info else (None, None)
        calls.append(Call(path, node.lineno, verb, group, resource, text.splitlines()[0]))
    return sorted(calls)


def scan_lightkube_calls() -> list[Call]:
    calls = []
    for package in SCANNED_PACKAGES:
        for file in sorted((REPO / package).rglob("*.py")):
            relative = file.relative_to(REPO).as_posix()
            calls += scan_source(file.read_text(), relative)
    return calls


def declared_uses() -> set[tuple[str, str, str]]:
    return {
        (access.group, access.rbac_resource, verb)
        for access in permissions.PERMISSIONS
        if isinstance(access, ResourceAccess)
        for verb in access.verbs
    }


def test_every_lightkube_call_in_the_controller_is_declared() -> None:
    declared = declared_uses()
    undeclared, unexplained = [], []
    for call in scan_lightkube_calls():
        where = f"{call.path}:{call.line}: {call.text}"
        if call.group is None or call.resource is None:
            if (call.path, call.verb) not in UNRESOLVED_ALLOWED:
                unexplained.append(where)
        elif (call.group, call.resource, call.verb) not in declared:
            undeclared.append(f"{where}  -> {call.group or 'core'} {call.resource} {call.verb}")
    assert not undeclared, (
        "add these accesses to directlb/kube/permissions.py and deploy/rbac.yaml:\n"
        + "\n".join(undeclared)
    )
    assert not unexplained, (
        "the scan cannot tell which resource these calls touch; make the resource visible "
        "(a lightkube class) or explain it in UNRESOLVED_ALLOWED:\n" + "\n".join(unexplained)
    )


def test_the_scan_sees_the_leader_election_calls() -> None:
    found = {
        (call.group, call.resource, call.verb)
        for call in scan_lightkube_calls()
        if call.path == "directlb/kube/leader.py"
    }
    assert found == {
        ("coordination.k8s.io", "leases", "get"),
        ("coordination.k8s.io", "leases", "create"),
        ("coordination.k8s.io", "leases", "update"),
    }


def test_the_scan_resolves_subresources_modules_constructors_and_variables() -> None:
    source = (
        "import lightkube.resources.apps_v1 as apps\n"
        "from lightkube.resources import core_v1\n"
        "from lightkube.resources.core_v1 import Pod, Service as Svc\n"
        "from lightkube.resources.events_v1 import Event\n"
        "async def f(client, self, pod, name):\n"
        "    await client.patch(Pod.Status, name, {})\n"
        "    await self.client.replace(pod)\n"
        "    await client.create(Event(reason='x'))\n"
        "    await self._client.delete(core_v1.Node, name)\n"
        "    await client.apply(apps.Deployment(), field_manager='x')\n"
        "    client.list(Svc, namespace='*')\n"
        "    await client.get(something_else, name)\n"
        "    self._objects.get(name)\n"
    )
    calls = [(c.group, c.resource, c.verb) for c in scan_source(source, "x.py")]
    assert calls == [
        ("", "pods/status", "patch"),
        ("", "pods", "update"),
        ("events.k8s.io", "events", "create"),
        ("", "nodes", "delete"),
        ("apps", "deployments", "patch"),
        ("", "services", "list"),
        (None, None, "get"),
    ]


# ---------------------------------------------------------------- the Deployment


def _flag(args: list[str], name: str) -> str:
    values = [arg.split("=", 1)[1] for arg in args if arg.startswith(f"{name}=")]
    assert len(values) == 1, f"{name}=... expected once in {args}"
    return values[0]


def _port(container: dict[str, Any], name: str) -> int:
    (port,) = [p["containerPort"] for p in container["ports"] if p["name"] == name]
    return int(port)


def test_deployment_runs_two_replicas_with_leader_election(
    deployment: dict[str, Any], container: dict[str, Any]
) -> None:
    assert deployment["spec"]["replicas"] == 2
    args = container["args"]
    assert args[0] == "controller"
    assert "--leader-elect" in args and "--no-leader-elect" not in args
    for flag in ("--cluster-id", "--region", "--vpc-id", "--webhook-listen", "--metrics-listen"):
        _flag(args, flag)
    # Upgrades never go below the two replicas serving the webhook.
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_probes_use_the_metrics_port(container: dict[str, Any]) -> None:
    metrics_port = int(_flag(container["args"], "--metrics-listen").rsplit(":", 1)[1])
    assert _port(container, "metrics") == metrics_port
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        http = container[probe]["httpGet"]
        assert http["path"] == path
        port = http["port"]
        assert port == metrics_port or (port == "metrics"), (probe, port)


def test_webhook_service_reaches_every_replica_on_the_webhook_port(
    objects: list[dict[str, Any]], deployment: dict[str, Any], container: dict[str, Any]
) -> None:
    webhook_port = int(_flag(container["args"], "--webhook-listen").rsplit(":", 1)[1])
    assert webhook_port == _port(container, "webhook") == 9443
    service = one(objects, "Service")
    (port,) = service["spec"]["ports"]
    assert port["port"] == 443
    assert port["targetPort"] in ("webhook", webhook_port)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()


def test_security_context_is_non_root_read_only_without_capabilities(
    deployment: dict[str, Any], container: dict[str, Any]
) -> None:
    pod = deployment["spec"]["template"]["spec"]["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0
    assert pod["seccompProfile"]["type"] == "RuntimeDefault"
    ctx = container["securityContext"]
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert "privileged" not in ctx or ctx["privileged"] is False


def test_resources_are_requested_and_limited(container: dict[str, Any]) -> None:
    resources = container["resources"]
    for bound in ("requests", "limits"):
        assert {"cpu", "memory"} <= resources[bound].keys(), bound


def test_credentials_and_settings_come_from_a_secret_and_the_config_map(
    objects: list[dict[str, Any]], container: dict[str, Any]
) -> None:
    env = {item["name"]: item for item in container["env"]}
    for name in ("TENCENTCLOUD_SECRET_ID", "TENCENTCLOUD_SECRET_KEY"):
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["name"] and ref["key"], name
        assert "value" not in env[name]
    config_maps = {
        obj["metadata"]["name"]: obj["data"] for obj in objects if obj["kind"] == "ConfigMap"
    }
    for name, item in env.items():
        ref = item.get("valueFrom", {}).get("configMapKeyRef")
        if ref:  # kustomize renamed the generated ConfigMap (hash suffix) in the reference too
            assert ref["key"] in config_maps.get(ref["name"], {}), name
    # Every $(VAR) in the args is defined in env, else Kubernetes passes it through literally.
    for arg in container["args"]:
        for var in re.findall(r"\$\((\w+)\)", arg):
            assert var in env, arg


def test_replicas_spread_across_nodes(deployment: dict[str, Any]) -> None:
    spec = deployment["spec"]["template"]["spec"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    spread = [
        c
        for c in spec.get("topologySpreadConstraints", [])
        if c["topologyKey"] == "kubernetes.io/hostname"
        and c["labelSelector"]["matchLabels"].items() <= labels.items()
    ]
    assert spread and spread[0]["maxSkew"] == 1
    assert spread[0]["whenUnsatisfiable"] == "DoNotSchedule"


def test_pdb_keeps_one_of_the_deployments_pods(
    objects: list[dict[str, Any]], deployment: dict[str, Any]
) -> None:
    pdb = one(objects, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    selector = pdb["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert selector == deployment["spec"]["selector"]["matchLabels"]


def test_deployment_args_parse_with_the_cli(
    objects: list[dict[str, Any]], container: dict[str, Any]
) -> None:
    """The manifest's args (with the ConfigMap values) are ones `directlb controller` accepts."""
    from directlb.cli import build_parser
    from directlb.controllers.config import from_args

    parser = build_parser()
    config = next(obj["data"] for obj in objects if obj["kind"] == "ConfigMap")
    env = {
        item["name"]: config[item["valueFrom"]["configMapKeyRef"]["key"]]
        for item in container["env"]
        if "configMapKeyRef" in item.get("valueFrom", {})
    }
    args = [re.sub(r"\$\((\w+)\)", lambda m: env[m[1]], arg) for arg in container["args"]]
    parsed = parser.parse_args(args)
    assert parsed.command == "controller"
    # ... and settings the controller accepts, with the pod's environment.
    pod_env = {
        **env,
        "TENCENTCLOUD_SECRET_ID": "AKIDexample",
        "TENCENTCLOUD_SECRET_KEY": "example",
        "POD_NAME": "directlb-controller-0",
        "POD_NAMESPACE": "directlb-system",
    }
    settings = from_args(parsed, pod_env)
    assert settings.leader_elect
    assert settings.leader_election_namespace == "directlb-system"
    assert settings.identity == "directlb-controller-0"
    assert (settings.metrics_listen.port, settings.webhook_listen.port) == (8080, 9443)


# ---------------------------------------------------------------- Dockerfile and docs


def test_dockerfile_runs_directlb_controller_as_non_root() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\s*$", text, re.M)
    assert re.search(r'^ENTRYPOINT \["directlb"\]\s*$', text, re.M)
    assert re.search(r'^CMD \["controller"\]\s*$', text, re.M)
    (user,) = re.findall(r"^USER (\S+)\s*$", text, re.M)
    assert user.split(":")[0].isdigit() and int(user.split(":")[0]) != 0
    uid = one_deployment_uid()
    assert int(user.split(":")[0]) == uid


def one_deployment_uid() -> int:
    text = (DEPLOY / "deployment.yaml").read_text()
    return int(yaml.safe_load(text)["spec"]["template"]["spec"]["securityContext"]["runAsUser"])


def test_docs_rbac_table_is_generated_from_permissions() -> None:
    text = (REPO / "docs" / "deploy.md").read_text()
    match = re.search(r"<!-- rbac-table:start -->\n(.*?)<!-- rbac-table:end -->", text, re.S)
    assert match, "docs/deploy.md lacks the <!-- rbac-table:start/end --> markers"
    assert match[1] == permissions.markdown_table(), (
        "docs/deploy.md's RBAC table is stale: replace it with the output of "
        "`python -m directlb.kube.permissions`"
    )
