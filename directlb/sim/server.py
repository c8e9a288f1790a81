"""The simulator's API server over HTTP(S): what kubectl and lightkube talk to.

``ApiServer`` is the in-process handle (``await start()``, ``url``, ``write_kubeconfig()``,
``await stop()``), used by ``directlb sim``, the tests and the demo. Routing is by hand (one
catch-all route) because Kubernetes URLs are regular but deep: ``/api/v1/namespaces/N/pods/P/
status`` and ``/apis/G/V/R`` share one parser (``wire.parse_path``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from aiohttp import web

from directlb.sim import certs, discovery, meta, openapi, protobuf, wire
from directlb.sim.api import Api, ListQuery, ListResult, WriteOptions
from directlb.sim.contracts import Obj, PatchRequest, StatusError
from directlb.sim.gc import Collector
from directlb.sim.kubeconfig import kubeconfig, write_kubeconfig
from directlb.sim.persist import Journal
from directlb.sim.registry import ResourceInfo
from directlb.sim.storage import BOOKMARK, DEFAULT_HISTORY, ERROR, Store, Stored, Watcher
from directlb.sim.wire import JSON, Negotiated, Target

log = logging.getLogger("directlb.sim")

PUBLIC_PATHS = ("/healthz", "/livez", "/readyz", "/version")
DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
PATCH_TYPES = set(openapi.PATCH_TYPES)
UNKNOWN_FORMAT = "the body of the request was in an unknown format - accepted media types include: "
# How often a watch stream checks that its client is still there when no event flows.
IDLE_CHECK_SECONDS = 5.0

# A real BOOKMARK's object is the kind's zero value (``newFunc()``) with only the
# resourceVersion set, encoded as Go encodes it: the fields without ``omitempty`` are there,
# empty or null. For an EndpointSlice that is ``"addressType":""`` (required by typed clients
# such as lightkube, which failed to decode a bookmark without it), ``endpoints`` and ``ports``
# null; for a Pod an empty spec whose ``containers`` is null, and an empty status.
BOOKMARK_ZERO_FIELDS: dict[tuple[str, str], dict[str, Any]] = {
    ("discovery.k8s.io", "EndpointSlice"): {"addressType": "", "endpoints": None, "ports": None},
    ("", "Pod"): {"spec": {"containers": None}, "status": {}},
}


@dataclass
class SimConfig:
    """How the API server runs. ``token`` None: a random one. ``state_dir``: keep the token,
    the certificates and every object there (SQLite), so a restart resumes the cluster."""

    token: str | None = None
    git_version: str = "v1.32.4"
    tls: bool = True
    state_dir: Path | None = None
    history_size: int = DEFAULT_HISTORY
    bookmark_interval: float = 60.0
    # The real server ends a watch without timeoutSeconds after 30-60 minutes.
    default_watch_timeout: float = 1800.0


def _version_info(git_version: str) -> Obj:
    major, minor = git_version.lstrip("v").split(".")[:2]
    return {
        "major": major,
        "minor": minor,
        "gitVersion": git_version,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2024-12-10T00:00:00Z",
        "goVersion": "go1.22.9",
        "compiler": "gc",
        "platform": "linux/amd64",
    }


class ApiServer:
    """The Kubernetes API server stand-in, in-process."""

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self.token = self._load_token()
        store = Store(history_size=self.config.history_size)
        self.journal: Journal | None = None
        if self.config.state_dir is not None:
            self.journal = Journal(self.config.state_dir / "objects.sqlite")
            loaded = self.journal.load(store)
            log.info("event=state_loaded objects=%d resource_version=%d", loaded, store.rv)
        self.api = Api(store=store)
        self.api.load_crds()
        if self.journal is not None:
            self.journal.attach(store)
        self.collector = Collector(self.api)
        self.api.crd_listeners.append(self._invalidate)
        self._cache: dict[str, Obj] = {}
        self._runner: web.AppRunner | None = None
        self._watchers: set[Watcher] = set()
        self._certs: certs.ServingCerts | None = None
        self.host = "127.0.0.1"
        self.port = 0
        self._seed()

    # ----- lifecycle ---------------------------------------------------------------------

    def _load_token(self) -> str:
        if self.config.token:
            return self.config.token
        path = self.config.state_dir / "token" if self.config.state_dir else None
        if path is not None and path.exists():
            return path.read_text().strip()
        token = secrets.token_urlsafe(32)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(token + "\n")
            path.chmod(0o600)
        return token

    def _seed(self) -> None:
        """The namespaces every cluster starts with."""
        info = self.api.registry.get("", "v1", "namespaces")
        assert info is not None
        for name in DEFAULT_NAMESPACES:
            if self.api.store.get(info.store_key, ("", name)) is None:
                obj: Obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
                self.api.store.put(info.store_key, self._seeded(info, obj))

    def _seeded(self, info: ResourceInfo, obj: Obj) -> Obj:
        from directlb.sim import defaults

        obj["metadata"].update(uid=meta.new_uid(), creationTimestamp=meta.timestamp())
        defaults.apply_defaults(info, obj)
        defaults.prepare_for_create(info, obj)
        return obj

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        context = self._ssl_context(host) if self.config.tls else None
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=context, reuse_address=True)
        await site.start()
        server = cast(Any, site._server)
        self.port = server.sockets[0].getsockname()[1]
        self.collector.start()
        log.info("event=listening url=%s", self.url)

    def _ssl_context(self, host: str) -> ssl.SSLContext:
        cert_dir = self.config.state_dir / "pki" if self.config.state_dir else None
        self._certs = certs.load_or_generate(cert_dir, [host])
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        with tempfile.TemporaryDirectory() as tmp:
            cert, key = Path(tmp) / "tls.crt", Path(tmp) / "tls.key"
            cert.write_bytes(self._certs.cert_pem)
            key.write_bytes(self._certs.key_pem)
            context.load_cert_chain(cert, key)
        return context

    async def stop(self) -> None:
        await self.collector.stop()
        await self.api.plugins.close()
        for watcher in list(self._watchers):
            watcher.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.journal is not None:
            self.journal.close()
            self.journal = None

    @property
    def url(self) -> str:
        scheme = "https" if self.config.tls else "http"
        # Listening on every address: clients connect through loopback.
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)
        host = f"[{host}]" if ":" in host else host
        return f"{scheme}://{host}:{self.port}"

    @property
    def ca_pem(self) -> bytes | None:
        return self._certs.ca_pem if self._certs else None

    def kubeconfig(self, *, namespace: str = "default") -> Obj:
        return kubeconfig(
            server=self.url, token=self.token, ca_pem=self.ca_pem, namespace=namespace
        )

    def write_kubeconfig(self, path: Path, *, namespace: str = "default") -> Path:
        return write_kubeconfig(path, self.kubeconfig(namespace=namespace))

    def _invalidate(self) -> None:
        self._cache.clear()

    # ----- request handling ---------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        try:
            user = self._authenticate(request)
            return await self._route(request, user)
        except StatusError as error:
            return wire.status_response(error)
        except Exception as error:  # a simulator bug still answers like the server does
            log.exception("event=internal_error method=%s path=%s", request.method, request.path)
            return wire.status_response(
                StatusError(500, "InternalError", f"Internal error occurred: {error}")
            )

    def _authenticate(self, request: web.Request) -> str:
        if request.path.rstrip("/") in PUBLIC_PATHS or request.path.startswith("/healthz/"):
            return "system:anonymous"
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip(), self.token):
            raise StatusError(401, "Unauthorized", "Unauthorized")
        return "admin"

    async def _route(self, request: web.Request, user: str) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        simple = self._simple(request, path)
        if simple is not None:
            return simple
        parsed = wire.parse_path(self.api.registry, path)
        if parsed is None:
            raise wire.not_found_path()
        if isinstance(parsed, wire.DiscoveryPath):
            return self._resource_list(request, parsed)
        return await self._resource(request, parsed, user)

    def _simple(self, request: web.Request, path: str) -> web.Response | None:
        """Health, version, discovery roots and OpenAPI: the GET-only endpoints."""
        if path in ("/healthz", "/livez", "/readyz") or path.startswith("/healthz/"):
            return web.Response(text="ok", content_type="text/plain")
        if path == "/version":
            return wire.json_response(_version_info(self.config.git_version))
        if path in ("/api", "/apis"):
            return self._discovery_root(request, legacy=path == "/api")
        parts = path.strip("/").split("/")
        if len(parts) == 2 and parts[0] == "apis":
            if parts[1] not in self.api.registry.groups():
                raise wire.not_found_path()
            return wire.json_response(discovery.api_group(self.api.registry, parts[1]))
        if path.startswith("/openapi/"):
            return self._openapi(path)
        return None

    def _discovery_root(self, request: web.Request, *, legacy: bool) -> web.Response:
        registry = self.api.registry
        version = wire.discovery_form(request.headers.get("Accept", ""))
        if version is not None:
            body = aggregated = self._cached(
                f"agg/{legacy}/{version}",
                lambda: discovery.aggregated(registry, legacy=legacy, version=version),
            )
            content_type = wire.DISCOVERY_V2 if version == "v2" else wire.DISCOVERY_V2BETA1
            response = wire.json_response(body, content_type=content_type)
            response.headers["ETag"] = f'"{discovery.etag(aggregated)}"'
            return response
        if legacy:
            return wire.json_response(discovery.api_versions(f"{self.host}:{self.port}"))
        return wire.json_response(discovery.api_group_list(registry))

    def _cached(self, key: str, build: Any) -> Obj:
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    def _openapi(self, path: str) -> web.Response:
        if path == "/openapi/v3":
            return wire.json_response(
                self._cached("openapi", lambda: openapi.root(self.api.registry))
            )
        parts = path.removeprefix("/openapi/v3/").split("/")
        document = None
        if path.startswith("/openapi/v3/") and parts[0] == "api" and len(parts) == 2:
            document = openapi.group_version_document(self.api.registry, "", parts[1])
        elif path.startswith("/openapi/v3/") and parts[0] == "apis" and len(parts) == 3:
            document = openapi.group_version_document(self.api.registry, parts[1], parts[2])
        if document is None:
            raise wire.not_found_path()
        return wire.json_response(document)

    def _resource_list(self, request: web.Request, path: wire.DiscoveryPath) -> web.Response:
        if not self.api.registry.in_group_version(path.group, path.version):
            raise wire.not_found_path()
        return wire.json_response(
            discovery.api_resource_list(self.api.registry, path.group, path.version)
        )

    async def _resource(
        self, request: web.Request, target: Target, user: str
    ) -> web.StreamResponse:
        method = request.method
        info = target.info
        if info.key.namespaced and not target.namespace and (target.name or method != "GET"):
            raise wire.not_found_path()
        if not target.name:
            handlers = {
                "GET": self._get_collection,
                "POST": self._create,
                "DELETE": self._delete_collection,
            }
        elif not target.subresource:
            handlers = {
                "GET": self._get,
                "PUT": self._update,
                "PATCH": self._patch,
                "DELETE": self._delete,
            }
        elif (target.subresource == "status" and info.status) or (
            target.subresource == "scale" and info.scale
        ):
            handlers = {"GET": self._get, "PUT": self._update, "PATCH": self._patch}
        elif target.subresource == "binding" and info.store_key == ("", "pods"):
            handlers = {"POST": self._bind}
        else:
            raise wire.not_found_path()
        handler = handlers.get(method)
        if handler is None:
            raise StatusError(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            )
        return await handler(request, target, user)

    # ----- reads ---------------------------------------------------------------------------

    async def _get(self, request: web.Request, target: Target, user: str) -> web.StreamResponse:
        info = target.info
        if target.subresource == "scale":
            return wire.json_response(
                self.api.get_scale(info, namespace=target.namespace, name=target.name)
            )
        stored = self.api.require(info, target.namespace, target.name)
        form = wire.negotiate(request.headers.get("Accept", ""))
        if form.form == "json":
            return wire.json_response(self.api.render(info, stored))
        obj = self.api.out(info, stored)
        if form.form == "partial":
            return wire.json_response(_partial(obj, form))
        return wire.json_response(self._table(request, info, [obj], form))

    async def _get_collection(
        self, request: web.Request, target: Target, user: str
    ) -> web.StreamResponse:
        query = wire.list_query(request, target)
        form = wire.negotiate(request.headers.get("Accept", ""))
        if request.query.get("watch", "").lower() in ("true", "1"):
            return await self._watch(request, target, query, form)
        try:
            result = self.api.list(target.info, query)
        except StatusError as error:
            if error.code == 410 and query.continue_token:
                raise StatusError(410, "Expired", CONTINUE_EXPIRED) from None
            raise
        return self._list_response(request, target.info, result, form)

    def _list_response(
        self, request: web.Request, info: ResourceInfo, result: ListResult, form: Negotiated
    ) -> web.Response:
        list_meta: Obj = {"resourceVersion": result.resource_version}
        if result.continue_token:
            list_meta["continue"] = result.continue_token
        if result.remaining is not None:
            list_meta["remainingItemCount"] = result.remaining
        if form.form == "json":
            head = {
                "kind": f"{info.key.kind}List",
                "apiVersion": info.key.api_version,
                "metadata": list_meta,
            }
            prefix = json.dumps(head, separators=(",", ":")).encode()[:-1]
            items = b",".join(self.api.render(info, s) for s in result.items)
            return wire.json_response(prefix + b',"items":[' + items + b"]}")
        objects = [self.api.out(info, s) for s in result.items]
        if form.form == "partial":
            return wire.json_response(
                {
                    "kind": "PartialObjectMetadataList",
                    "apiVersion": f"meta.k8s.io/{form.version}",
                    "metadata": list_meta,
                    "items": [_partial(o, form) for o in objects],
                }
            )
        return wire.json_response(self._table(request, info, objects, form, list_meta=list_meta))

    def _table(
        self,
        request: web.Request,
        info: ResourceInfo,
        objects: list[Obj],
        form: Negotiated,
        *,
        list_meta: Obj | None = None,
        no_headers: bool = False,
    ) -> Obj:
        if list_meta is None and len(objects) == 1:
            list_meta = {"resourceVersion": objects[0]["metadata"].get("resourceVersion", "")}
        return self.api.plugins.to_table(
            info.key,
            objects,
            include_object=request.query.get("includeObject", ""),
            now=meta.now(),
            list_meta=list_meta,
            printer_columns=info.printer_columns,
            no_headers=no_headers,
            group_version=f"meta.k8s.io/{form.version}",
        )

    # ----- watch -----------------------------------------------------------------------------

    async def _watch(
        self, request: web.Request, target: Target, query: ListQuery, form: Negotiated
    ) -> web.StreamResponse:
        info = target.info
        timeout = (
            float(wire._int(request, "timeoutSeconds", 0)) or self.config.default_watch_timeout
        )
        bookmarks = request.query.get("allowWatchBookmarks", "").lower() == "true"
        response = web.StreamResponse(
            status=200, headers={"Content-Type": JSON, "Cache-Control": "no-cache, private"}
        )
        try:
            watcher = self.api.watch(info, query)
        except StatusError as error:
            if error.code != 410:
                raise
            # As the real server: the watch is accepted, then ends with an ERROR event.
            await response.prepare(request)
            await response.write(_event_line(ERROR, json.dumps(meta.status_of(error)).encode()))
            await response.write_eof()
            return response
        self._watchers.add(watcher)
        try:
            await response.prepare(request)
            stream = _WatchStream(self, request, info, form)
            await stream.run(response, watcher, timeout=timeout, bookmarks=bookmarks)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._watchers.discard(watcher)
            self.api.store.unwatch(info.store_key, watcher)
        with contextlib.suppress(ConnectionResetError, RuntimeError):
            await response.write_eof()
        return response

    # ----- writes ----------------------------------------------------------------------------

    async def _body(self, request: web.Request) -> Obj:
        content_type = request.headers.get("Content-Type", JSON).split(";")[0].strip()
        raw = await request.read()
        if content_type == protobuf.PROTOBUF:
            return protobuf.decode(raw)
        if content_type not in (JSON, "*/*", ""):
            raise StatusError(
                415, "UnsupportedMediaType", UNKNOWN_FORMAT + f"{JSON}, {protobuf.PROTOBUF}"
            )
        try:
            body = json.loads(raw)
        except ValueError as error:
            raise meta.bad_request(
                f"couldn't get version/kind; json parse error: {error}"
            ) from None
        if not isinstance(body, dict):
            raise meta.bad_request("the request body must be a JSON object")
        return body

    def _respond_object(
        self,
        request: web.Request,
        info: ResourceInfo,
        obj: Obj,
        *,
        status: int,
        opts: WriteOptions,
    ) -> web.Response:
        form = wire.negotiate(request.headers.get("Accept", ""))
        if form.form == "table":
            body = self._table(request, info, [obj], form)
        elif form.form == "partial":
            body = _partial(obj, form)
        else:
            body = obj
        return wire.json_response(body, status=status, warnings=list(dict.fromkeys(opts.warnings)))

    async def _create(self, request: web.Request, target: Target, user: str) -> web.StreamResponse:
        info = target.info
        if self.api.crd_terminating(info):
            raise StatusError(
                405,
                "MethodNotAllowed",
                "create not allowed while custom resource definition is terminating",
            )
        body = await self._body(request)
        opts = wire.write_options(request, user=user)
        obj = await self.api.create(info, namespace=target.namespace, body=body, opts=opts)
        return self._respond_object(request, info, obj, status=201, opts=opts)

    async def _update(self, request: web.Request, target: Target, user: str) -> web.StreamResponse:
        info = target.info
        body = await self._body(request)
        opts = wire.write_options(request, user=user)
        if target.subresource == "scale":
            scale = await self.api.update_scale(
                info, namespace=target.namespace, name=target.name, change=lambda _: body, opts=opts
            )
            return wire.json_response(scale)
        obj = await self.api.update(
            info,
            namespace=target.namespace,
            name=target.name,
            body=body,
            subresource=target.subresource,
            opts=opts,
        )
        return self._respond_object(request, info, obj, status=200, opts=opts)

    async def _patch(self, request: web.Request, target: Target, user: str) -> web.StreamResponse:
        info = target.info
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
        if content_type not in PATCH_TYPES:
            raise StatusError(
                415,
                "UnsupportedMediaType",
                UNKNOWN_FORMAT + ", ".join(sorted(PATCH_TYPES)),
            )
        opts = wire.write_options(request, user=user)
        raw = await request.read()
        if target.subresource == "scale":
            return await self._patch_scale(target, content_type, raw, opts)
        if content_type == "application/apply-patch+yaml" and not opts.field_manager:
            raise meta.bad_request(
                'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: '
                "is required for apply patch"
            )
        patch = PatchRequest(
            content_type=content_type,
            body=raw,
            key=info.key,
            field_manager=opts.field_manager,
            force=opts.force,
            extra={"subresource": target.subresource},
        )
        code, obj = await self.api.patch(
            info,
            namespace=target.namespace,
            name=target.name,
            request=patch,
            subresource=target.subresource,
            opts=opts,
        )
        return self._respond_object(request, info, obj, status=code, opts=opts)

    async def _patch_scale(
        self, target: Target, content_type: str, raw: bytes, opts: WriteOptions
    ) -> web.Response:
        from directlb.sim.api import SCALE_KEY

        patch = PatchRequest(
            content_type=content_type,
            body=raw,
            key=SCALE_KEY,
            field_manager=opts.field_manager,
            force=opts.force,
        )

        def change(scale: Obj) -> Obj:
            return self.api.plugins.apply_patch(scale, patch, live_exists=True)

        scale = await self.api.update_scale(
            target.info, namespace=target.namespace, name=target.name, change=change, opts=opts
        )
        return wire.json_response(scale)

    async def _delete(self, request: web.Request, target: Target, user: str) -> web.StreamResponse:
        options = wire.delete_options(request, await request.read())
        opts = wire.write_options(request, user=user)
        code, obj = await self.api.delete(
            target.info, namespace=target.namespace, name=target.name, options=options, opts=opts
        )
        return wire.json_response(obj, status=code)

    async def _delete_collection(
        self, request: web.Request, target: Target, user: str
    ) -> web.StreamResponse:
        options = wire.delete_options(request, await request.read())
        opts = wire.write_options(request, user=user)
        query = wire.list_query(request, target)
        result = await self.api.delete_collection(
            target.info, query=query, options=options, opts=opts
        )
        return wire.json_response(result)

    async def _bind(self, request: web.Request, target: Target, user: str) -> web.StreamResponse:
        body = await self._body(request)
        opts = wire.write_options(request, user=user)
        result = await self.api.bind(
            target.info, namespace=target.namespace, name=target.name, body=body, opts=opts
        )
        return wire.json_response(result, status=201)


CONTINUE_EXPIRED = (
    "The provided continue parameter is too old to display a consistent list result. You can "
    "start a new list without the continue parameter, or use the continue token in this "
    "response to retrieve the remainder of the results. Continuing with the provided token "
    "results in an inconsistent list - objects that were created, modified, or deleted "
    "between the time the first chunk was returned and now may show up in the list."
)


def _partial(obj: Obj, form: Negotiated) -> Obj:
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": f"meta.k8s.io/{form.version}",
        "metadata": obj["metadata"],
    }


def _event_line(kind: str, raw: bytes) -> bytes:
    return b'{"type":"' + kind.encode() + b'","object":' + raw + b"}\n"


class _WatchStream:
    """Writes one watch's events as newline-delimited JSON, in batches, until it ends."""

    def __init__(
        self, server: ApiServer, request: web.Request, info: ResourceInfo, form: Negotiated
    ) -> None:
        self.server = server
        self.request = request
        self.info = info
        self.form = form
        self.headers_sent = False

    def encode(self, kind: str, stored: Stored) -> bytes:
        api = self.server.api
        if self.form.form == "json":
            return _event_line(kind, api.render(self.info, stored))
        obj = api.out(self.info, stored)
        if self.form.form == "partial":
            return _event_line(kind, json.dumps(_partial(obj, self.form)).encode())
        # Only the first event carries the column definitions, as the real server sends them.
        table = self.server._table(
            self.request, self.info, [obj], self.form, no_headers=self.headers_sent
        )
        self.headers_sent = True
        return _event_line(kind, json.dumps(table).encode())

    def bookmark(self) -> bytes:
        obj = {
            "kind": self.info.key.kind,
            "apiVersion": self.info.key.api_version,
            "metadata": {
                "resourceVersion": str(self.server.api.store.rv),
                "creationTimestamp": None,
            },
        }
        zero = BOOKMARK_ZERO_FIELDS.get((self.info.key.group, self.info.key.kind), {})
        obj.update(zero)
        return _event_line(BOOKMARK, json.dumps(obj).encode())

    async def run(
        self, response: web.StreamResponse, watcher: Watcher, *, timeout: float, bookmarks: bool
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        interval = self.server.config.bookmark_interval
        next_bookmark = loop.time() + interval
        while True:
            now = loop.time()
            if now >= deadline:
                if bookmarks:
                    await response.write(self.bookmark())
                return
            if bookmarks and now >= next_bookmark and watcher.queue.empty():
                await response.write(self.bookmark())
                next_bookmark = now + interval
            wake = min(deadline, next_bookmark if bookmarks else deadline, now + IDLE_CHECK_SECONDS)
            try:
                first = await asyncio.wait_for(watcher.queue.get(), max(wake - now, 0.001))
            except TimeoutError:
                if self.request.transport is None or self.request.transport.is_closing():
                    return
                continue
            batch = [first]
            while not watcher.queue.empty():
                batch.append(watcher.queue.get_nowait())
            chunks = [self.encode(*item) for item in batch if item is not None]
            if chunks:
                await response.write(b"".join(chunks))
            if any(item is None for item in batch):
                return
