"""The admission webhook: AdmissionReview v1 at ``/mutate-v1-pod``, over reloadable TLS.

On a pod CREATE, if a direct-access Service in the pod's namespace selects the pod (its selector
is a non-empty subset of the pod's labels), or a Service that a direct-access Ingress of the
namespace routes to does, the reply carries a JSONPatch adding our readiness gate; any other
request is allowed unchanged. The webhook never blocks a pod: whatever goes
wrong while deciding, the pod is allowed unpatched, the error is logged and counted
(:attr:`Admission.errors`), and the gate controller's "no backend selects this pod" rule
(issue 8) covers the rest.

The decision reads the informer's cache only (no API call), so a review is a few dictionary
lookups: well under the 5 ms goal (``tests/unit/test_webhook_admission.py`` prints the figure).

TLS: :class:`ReloadingTLS` owns one server ``SSLContext``; loading a new certificate chain into
it affects every handshake from then on, so a rotated certificate is served without a restart
and without dropping open connections. It can be fed PEM directly (the guardian, from the
Secret) or watch files (a mounted Secret, which the kubelet updates in place).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import os
import ssl
import tempfile
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from directlb.kube.informer import Store
from directlb.kube.mapping import (
    BY_NAMESPACE,
    index_by_namespace,
    ingress_backend_services,
    selects,
)

log = logging.getLogger("directlb.webhook")

PATH = "/mutate-v1-pod"
GATE = "cloud.tencent.com/load-balancer-backendgroup-ready"
DIRECT_ACCESS = "service.cloud.tencent.com/direct-access"
INGRESS_DIRECT_ACCESS = "ingress.cloud.tencent.com/direct-access"
ADMISSION_API_VERSION = "admission.k8s.io/v1"

# Objects of one namespace (lightkube Services or Ingresses, or anything shaped like them).
ServiceSource = Callable[[str], Iterable[Any]]
IngressSource = ServiceSource


def in_namespace(store: Store[Any]) -> ServiceSource:
    """A source over an informer's store, through its namespace index, which is added here if
    the store has none (the controller indexes Ingresses by backend Service only): without it
    every review scanned every object of the cluster."""
    try:
        store.by_index(BY_NAMESPACE, "")
    except KeyError:
        store.add_index(BY_NAMESPACE, index_by_namespace)

    def source(namespace: str) -> Iterable[Any]:
        return store.by_index(BY_NAMESPACE, namespace)

    return source


services_in = in_namespace


def _annotated(obj: Any, key: str) -> bool:
    annotations = (obj.metadata.annotations if obj.metadata else None) or {}
    return str(annotations.get(key, "")).strip().lower() == "true"


def is_direct_access(service: Any) -> bool:
    return _annotated(service, DIRECT_ACCESS)


def pod_is_selected(
    labels: Mapping[str, str], services: Iterable[Any], ingresses: Iterable[Any] = ()
) -> bool:
    """Whether a pod with ``labels`` is a direct backend: a direct-access Service among
    ``services`` selects it, or a Service that a direct-access Ingress among ``ingresses``
    routes to does (both of the pod's namespace)."""
    wanted = dict(labels)
    services = list(services)
    if any(is_direct_access(s) and selects(s, wanted) for s in services):
        return True
    routed = {
        key.partition("/")[2]
        for ingress in ingresses
        if _annotated(ingress, INGRESS_DIRECT_ACCESS)
        for key in ingress_backend_services(ingress)
    }
    return bool(routed) and any(s.metadata.name in routed and selects(s, wanted) for s in services)


def gate_patch(pod: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The JSONPatch that adds our gate to ``pod`` (a dict), or ``[]`` when it is there already.

    ``/spec/readinessGates/-`` only works when the list exists; when it is absent (or null) the
    whole list is added instead. Gates already present are kept."""
    spec = pod.get("spec")
    if not isinstance(spec, Mapping):
        return [
            {"op": "add", "path": "/spec", "value": {"readinessGates": [{"conditionType": GATE}]}}
        ]
    gates = spec.get("readinessGates")
    if isinstance(gates, list):
        if any(isinstance(g, Mapping) and g.get("conditionType") == GATE for g in gates):
            return []
        return [{"op": "add", "path": "/spec/readinessGates/-", "value": {"conditionType": GATE}}]
    return [{"op": "add", "path": "/spec/readinessGates", "value": [{"conditionType": GATE}]}]


class Admission:
    """The decision, apart from HTTP: AdmissionReview dict in, AdmissionReview dict out.

    Counters (plain ints, for the metrics collector to read): ``reviews``, ``patched`` and
    ``errors`` (internal errors, each of which allowed a pod unpatched)."""

    def __init__(self, services: ServiceSource, ingresses: IngressSource | None = None) -> None:
        self._services = services
        self._ingresses = ingresses
        self.reviews = 0
        self.patched = 0
        self.errors = 0

    def review(self, body: Any) -> dict[str, Any]:
        self.reviews += 1
        request = body.get("request") if isinstance(body, dict) else None
        uid = str(request.get("uid") or "") if isinstance(request, dict) else ""
        response: dict[str, Any] = {"uid": uid, "allowed": True}
        try:
            patch = self._patch(request) if isinstance(request, dict) else []
        except Exception:
            self.errors += 1
            log.exception("event=webhook_error uid=%s allowed=true patched=false", uid)
            patch = []
        if patch:
            self.patched += 1
            response["patchType"] = "JSONPatch"
            response["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
        return {
            "apiVersion": ADMISSION_API_VERSION,
            "kind": "AdmissionReview",
            "response": response,
        }

    def _patch(self, request: dict[str, Any]) -> list[dict[str, Any]]:
        kind = request.get("kind") or {}
        if request.get("operation") != "CREATE" or kind.get("kind") != "Pod" or kind.get("group"):
            return []
        pod = request.get("object")
        if not isinstance(pod, dict):
            return []
        metadata = pod.get("metadata") or {}
        namespace = str(request.get("namespace") or metadata.get("namespace") or "")
        labels = metadata.get("labels") or {}
        ingresses = self._ingresses(namespace) if self._ingresses is not None else ()
        if not labels or not pod_is_selected(labels, self._services(namespace), ingresses):
            return []
        patch = gate_patch(pod)
        if patch:
            name = metadata.get("name") or metadata.get("generateName") or ""
            log.debug("event=webhook_gate_added namespace=%s pod=%s", namespace, name)
        return patch


class ReloadingTLS:
    """A server ``SSLContext`` whose certificate chain can be replaced while serving."""

    def __init__(self, cert_pem: bytes, key_pem: bytes) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.reloads = 0
        self.reload_errors = 0
        self._digest = ""
        self.update(cert_pem, key_pem)

    def update(self, cert_pem: bytes, key_pem: bytes) -> bool:
        """Serve ``cert_pem``/``key_pem`` from the next handshake on; False if unchanged.

        Raises ``ssl.SSLError`` (and keeps the previous chain) for a bad or mismatched pair."""
        digest = hashlib.sha256(cert_pem + b"\0" + key_pem).hexdigest()
        if digest == self._digest:
            return False
        # load_cert_chain reads files only; a private directory keeps the key unreadable.
        with tempfile.TemporaryDirectory(prefix="directlb-tls-") as tmp:
            cert_path, key_path = Path(tmp, "tls.crt"), Path(tmp, "tls.key")
            cert_path.write_bytes(cert_pem)
            fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as key_file:
                key_file.write(key_pem)
            # A failed load_cert_chain can leave a context half-changed (OpenSSL drops the
            # certificate when a mismatched key is set), so the pair is tried on a scratch
            # context first: the live one only ever loads a pair known to be good.
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert_path, key_path)
            self.context.load_cert_chain(cert_path, key_path)
        first = not self._digest
        self._digest = digest
        if not first:
            self.reloads += 1
            log.info("event=webhook_tls_reloaded reloads=%d", self.reloads)
        return True

    def reload_files(self, cert_file: Path, key_file: Path) -> bool:
        """Load the pair from files if it changed; a failure is logged and counted."""
        try:
            return self.update(cert_file.read_bytes(), key_file.read_bytes())
        except (OSError, ssl.SSLError) as error:
            self.reload_errors += 1
            log.warning("event=webhook_tls_reload_failed error=%r", error)
            return False

    async def watch_files(self, cert_file: Path, key_file: Path, *, period: float = 5.0) -> None:
        """Poll ``cert_file``/``key_file`` and reload on change (runs until cancelled).

        Polling by content, not inotify: a mounted Secret changes by a symlink swap that
        file watchers easily miss, and a read every few seconds costs nothing."""
        while True:
            self.reload_files(cert_file, key_file)
            await asyncio.sleep(period)


class WebhookServer:
    """The aiohttp HTTPS server: ``POST /mutate-v1-pod`` and ``GET /healthz``."""

    def __init__(
        self,
        admission: Admission,
        tls: ReloadingTLS | None,
        *,
        host: str = "0.0.0.0",
        port: int = 9443,
        max_body: int = 3 * 1024 * 1024,
    ) -> None:
        self.admission = admission
        self.tls = tls
        self.host = host
        self.port = port
        self.bad_requests = 0
        self.app = web.Application(client_max_size=max_body)
        self.app.router.add_post(PATH, self._mutate)
        self.app.router.add_get("/healthz", self._healthz)
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner,
            self.host,
            self.port,
            ssl_context=self.tls.context if self.tls else None,
            reuse_address=True,
        )
        await site.start()
        if self.port == 0:
            self.port = int(self._runner.addresses[0][1])
        log.info("event=webhook_started host=%s port=%d", self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _mutate(self, request: web.Request) -> web.Response:
        try:
            body = await request.json(loads=json.loads)
        except (ValueError, UnicodeDecodeError):
            self.bad_requests += 1
            return web.json_response({"message": "the body is not an AdmissionReview"}, status=400)
        return web.json_response(self.admission.review(body))

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok")


@contextlib.asynccontextmanager
async def serving(server: WebhookServer) -> AsyncIterator[WebhookServer]:
    """``async with serving(server):`` start and always stop."""
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
