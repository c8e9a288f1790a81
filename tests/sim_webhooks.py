"""Test support for the simulator's admission chain: an in-memory ObjectReader, a real HTTPS
admission webhook server (aiohttp), and builders for webhook configurations and requests."""

from __future__ import annotations

import asyncio
import base64
import copy
import inspect
import json
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from aiohttp import web

from directlb.sim.contracts import AdmissionAttributes, Obj, ResourceKey
from tests.sim_certs import ServingCert

POD = ResourceKey("", "v1", "pods", "Pod", True)
SERVICE = ResourceKey("", "v1", "services", "Service", True)
NAMESPACE = ResourceKey("", "v1", "namespaces", "Namespace", False)
NODE = ResourceKey("", "v1", "nodes", "Node", False)
DEPLOYMENT = ResourceKey("apps", "v1", "deployments", "Deployment", True)
MUTATING_CONFIG = ResourceKey(
    "admissionregistration.k8s.io",
    "v1",
    "mutatingwebhookconfigurations",
    "MutatingWebhookConfiguration",
    False,
)

POD_CREATE = {
    "operations": ["CREATE"],
    "apiGroups": [""],
    "apiVersions": ["v1"],
    "resources": ["pods"],
}
GATE = "cloud.tencent.com/load-balancer-backendgroup-ready"


class MemoryReader:
    """The ObjectReader of the API server, over plain dicts."""

    def __init__(self) -> None:
        self._objects: dict[tuple[str, str], list[Obj]] = {}

    def put(self, group: str, resource: str, obj: Obj) -> Obj:
        meta = obj.setdefault("metadata", {})
        items = self._objects.setdefault((group, resource), [])
        items[:] = [
            o
            for o in items
            if (o["metadata"].get("namespace"), o["metadata"].get("name"))
            != (meta.get("namespace"), meta.get("name"))
        ]
        items.append(obj)
        return obj

    def delete(self, group: str, resource: str, namespace: str | None, name: str) -> None:
        items = self._objects.get((group, resource), [])
        items[:] = [
            o
            for o in items
            if (o["metadata"].get("namespace"), o["metadata"].get("name")) != (namespace, name)
        ]

    def list_objects(self, group: str, resource: str, namespace: str | None = None) -> list[Obj]:
        return [
            copy.deepcopy(o)
            for o in self._objects.get((group, resource), [])
            if namespace is None or o["metadata"].get("namespace") == namespace
        ]

    def get_object(self, group: str, resource: str, namespace: str | None, name: str) -> Obj | None:
        for o in self._objects.get((group, resource), []):
            if o["metadata"].get("name") == name and o["metadata"].get("namespace") == namespace:
                return copy.deepcopy(o)
        return None

    def namespace(self, name: str, **labels: str) -> None:
        all_labels = {"kubernetes.io/metadata.name": name, **labels}
        self.put("", "namespaces", {"metadata": {"name": name, "labels": all_labels}})

    def configuration(self, config: Obj) -> None:
        kind = config["kind"]
        resource = (
            "mutatingwebhookconfigurations"
            if kind == "MutatingWebhookConfiguration"
            else "validatingwebhookconfigurations"
        )
        self.put("admissionregistration.k8s.io", resource, config)


# ----- configurations ----------------------------------------------------------------------


def webhook(
    name: str,
    *,
    url: str | None = None,
    service: Obj | None = None,
    ca_bundle: str = "",
    rules: Sequence[Obj] = (POD_CREATE,),
    failure_policy: str | None = None,
    timeout_seconds: int | None = None,
    namespace_selector: Obj | None = None,
    object_selector: Obj | None = None,
    side_effects: str | None = "None",
    reinvocation_policy: str | None = None,
    review_versions: Sequence[str] = ("v1",),
) -> Obj:
    client_config: Obj = {"caBundle": ca_bundle} if ca_bundle else {}
    if url is not None:
        client_config["url"] = url
    if service is not None:
        client_config["service"] = service
    spec: Obj = {
        "name": name,
        "clientConfig": client_config,
        "rules": [dict(r) for r in rules],
        "admissionReviewVersions": list(review_versions),
    }
    optional = {
        "failurePolicy": failure_policy,
        "timeoutSeconds": timeout_seconds,
        "namespaceSelector": namespace_selector,
        "objectSelector": object_selector,
        "sideEffects": side_effects,
        "reinvocationPolicy": reinvocation_policy,
    }
    spec.update({k: v for k, v in optional.items() if v is not None})
    return spec


def _configuration(kind: str, name: str, webhooks: tuple[Obj, ...]) -> Obj:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": kind,
        "metadata": {"name": name},
        "webhooks": list(webhooks),
    }


def mutating(name: str, *webhooks: Obj) -> Obj:
    return _configuration("MutatingWebhookConfiguration", name, webhooks)


def validating(name: str, *webhooks: Obj) -> Obj:
    return _configuration("ValidatingWebhookConfiguration", name, webhooks)


def pod(
    name: str = "web-1", namespace: str = "default", labels: Mapping[str, str] | None = None
) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels or {})},
        "spec": {"containers": [{"name": "nginx", "image": "nginx"}]},
    }


def pod_attrs(
    obj: Obj | None = None,
    *,
    operation: str = "CREATE",
    old: Obj | None = None,
    subresource: str = "",
    dry_run: bool = False,
) -> AdmissionAttributes:
    target = obj if obj is not None else old
    assert target is not None
    meta = target["metadata"]
    return AdmissionAttributes(
        operation=operation,
        key=POD,
        subresource=subresource,
        namespace=meta["namespace"],
        name=meta["name"],
        obj=obj,
        old_obj=old,
        dry_run=dry_run,
    )


# ----- the webhook server ------------------------------------------------------------------

Answer = Obj | web.StreamResponse
Behaviour = Callable[[Obj], Answer | Awaitable[Answer]]


def patch_answer(operations: list[Obj]) -> Obj:
    encoded = base64.b64encode(json.dumps(operations).encode()).decode()
    return {"allowed": True, "patch": encoded, "patchType": "JSONPatch"}


def allow(operations: list[Obj] | None = None) -> Behaviour:
    """Allow, applying ``operations`` (a JSONPatch) when given."""
    return lambda request: patch_answer(operations) if operations else {"allowed": True}


def deny(message: str = "", *, code: int | None = None, reason: str = "") -> Behaviour:
    status: Obj = {}
    if message:
        status["message"] = message
    if code is not None:
        status["code"] = code
    if reason:
        status["reason"] = reason
    return lambda request: {"allowed": False, "status": status} if status else {"allowed": False}


def add_readiness_gate(request: Obj) -> Obj:
    """What directlb's own webhook does: append the readiness gate to a Pod."""
    spec = request["object"]["spec"]
    gate = {"conditionType": GATE}
    operations: list[Obj]
    if "readinessGates" in spec:
        operations = [{"op": "add", "path": "/spec/readinessGates/-", "value": gate}]
    else:
        operations = [{"op": "add", "path": "/spec/readinessGates", "value": [gate]}]
    return patch_answer(operations)


def add_label(key: str, value: str) -> Behaviour:
    def behaviour(request: Obj) -> Obj:
        escaped = key.replace("~", "~0").replace("/", "~1")
        labels = request["object"]["metadata"].get("labels")
        if labels is None:
            operations = [{"op": "add", "path": "/metadata/labels", "value": {key: value}}]
        elif labels.get(key) == value:
            return {"allowed": True}
        else:
            operations = [{"op": "add", "path": f"/metadata/labels/{escaped}", "value": value}]
        return patch_answer(operations)

    return behaviour


@dataclass
class Call:
    path: str
    review: Obj
    headers: dict[str, str]
    query: dict[str, str]

    @property
    def request(self) -> Obj:
        return dict(self.review["request"])


@dataclass
class WebhookServer:
    """An HTTPS admission webhook on a loopback address; routes are set per test."""

    serving: ServingCert
    host: str = "127.0.0.1"
    port: int = 0
    routes: dict[str, Behaviour] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{path:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((self.host, 0))
        self.port = int(sock.getsockname()[1])
        site = web.SockSite(self._runner, sock, ssl_context=self.serving.server_context())
        await site.start()

    async def stop(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def url(self, path: str) -> str:
        return f"https://{self.host}:{self.port}{path}"

    def route(self, path: str, behaviour: Behaviour) -> str:
        """Serve ``behaviour`` at ``path``; return the URL to configure."""
        self.routes[path] = behaviour
        return self.url(path)

    def calls_to(self, path: str) -> list[Call]:
        return [c for c in self.calls if c.path == path]

    async def hang(self, request: Obj) -> Obj:
        """A behaviour that answers only when the test ends (for timeouts)."""
        await self.release.wait()
        return {"allowed": True}

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        review = await request.json()
        call = Call(request.path, review, dict(request.headers), dict(request.query))
        self.calls.append(call)
        behaviour = self.routes.get(request.path)
        if behaviour is None:
            return web.Response(status=404, text="404 page not found")
        answer = behaviour(review["request"])
        if inspect.isawaitable(answer):
            answer = await answer
        if isinstance(answer, web.StreamResponse):
            return answer
        response = {"uid": review["request"]["uid"], **answer}
        return web.json_response(
            {"apiVersion": review["apiVersion"], "kind": "AdmissionReview", "response": response}
        )
