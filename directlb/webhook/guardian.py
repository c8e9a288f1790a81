"""The webhook guardian: keeps the webhook's configuration and certificates whole, continuously.

The seed's "disaster recovery" checks the webhook's resources at start and rebuilds them. Users
delete and edit things at any time, so the guardian checks at start **and** whenever the
configuration or the Secret changes (informer events), and re-checks on a period for what no
event announces (a certificate getting old). Each pass (:meth:`Guardian.reconcile`):

1. reads the Secret ``directlb-webhook-tls`` and decides with :func:`certs.plan_bundle` whether
   its CA and serving certificate are sound for our names at ``clock()``; creates or rewrites it
   when they are not (a new serving certificate under the same CA whenever the CA is sound);
2. serves that certificate (:class:`ReloadingTLS`, no restart);
3. reads the MutatingWebhookConfiguration ``directlb-pod-readiness`` and compares it with the one
   we want (:func:`configuration_problems`, pure): our webhook present and alone, calling our
   Service (or URL), ``caBundle`` exactly our CA, rules, failure policy, namespace selector and
   the other settings as built; creates or rewrites it when something differs.

A new CA is rolled out without a gap: before the Secret gets it, the ``caBundle`` trusts it next
to the old CA (:func:`with_ca`); the old CA is dropped only after :data:`CA_OVERLAP`, once every
replica serves a certificate of the new one.

Every repair emits an Event with a stable reason (:data:`CONFIGURATION_CREATED`,
:data:`CONFIGURATION_REPAIRED`, :data:`CERTIFICATE_CREATED`, :data:`CERTIFICATE_ROTATED`) and
calls ``on_repair(object, problem)`` once per problem, which the runtime turns into a metric.

Reads go to the API server (two small GETs), not to a cache: right after our own write a cache
may still show the old object, and acting on it would repair twice. Writes carry the
resourceVersion they read (optimistic concurrency), so a pass that raced another writer fails
with a conflict and the work queue runs it again.

The guardian is meant to run on the leader only (``docs/webhook.md`` says why), while every
replica serves the webhook: :func:`tls_from_secret` is the informer handler that keeps each
replica's TLS in step with the Secret.
"""

from __future__ import annotations

import base64
import binascii
import copy
import datetime
import logging
import ssl
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lightkube import ApiError, AsyncClient
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.admissionregistration_v1 import (
    MutatingWebhookConfiguration as Configuration,
)
from lightkube.resources.core_v1 import Secret

from directlb.kube.events import NORMAL, WARNING
from directlb.kube.informer import DELETED, Event, Handler
from directlb.kube.permissions import (
    WEBHOOK_CONFIGURATION_NAME,
    WEBHOOK_SECRET_NAME,
    WEBHOOK_SERVICE_NAME,
)
from directlb.webhook import certs
from directlb.webhook.configuration import (
    FailurePolicy,
    build_configuration,
)
from directlb.webhook.server import ReloadingTLS

log = logging.getLogger("directlb.webhook.guardian")

#: The one work-queue key of the guardian (there is one configuration and one Secret).
KEY = "webhook"
#: Seconds between two checks when nothing changes (certificate age has no event).
RECHECK_PERIOD = 300.0
#: How long the caBundle keeps trusting a replaced CA next to the new one. Every replica must
#: have reloaded the new serving certificate by then: it follows the Secret through a watch
#: event (a second or so), and a replica whose watch broke catches up when it relists, well
#: within that. A fixed span is simpler than asking each replica what it serves, and keeping an
#: old CA of ours a little longer costs nothing.
CA_OVERLAP = datetime.timedelta(minutes=5)

# Event reasons (stable: alerts and docs refer to them).
CONFIGURATION_CREATED = "WebhookConfigurationCreated"
CONFIGURATION_REPAIRED = "WebhookConfigurationRepaired"
CERTIFICATE_CREATED = "WebhookCertificateCreated"
CERTIFICATE_ROTATED = "WebhookCertificateRotated"
CA_BUNDLE_EXTENDED = "WebhookCABundleExtended"

# What on_repair is told (the metric's "object" label).
CONFIGURATION = "configuration"
SECRET = "secret"

LABELS = {"app.kubernetes.io/name": "directlb", "app.kubernetes.io/component": "webhook"}

# plan_bundle reasons that mean "getting old" (Normal), as opposed to "broken" (Warning).
_AGEING = {"serving-expiring"}


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class EventSink(Protocol):
    """What the guardian needs of :class:`directlb.kube.events.EventRecorder`."""

    def event(self, obj: Any, *, type: str, reason: str, message: str) -> None: ...


RepairCallback = Callable[[str, str], None]  # (object, problem)


@dataclass(frozen=True)
class Target:
    """Where the API server calls the webhook, and where its certificates live.

    Exactly one of ``service`` (a Service named so in ``namespace``: in a cluster) and ``url``
    (``directlb up`` and tests, where the webhook runs outside the cluster)."""

    namespace: str  # the controller's namespace: the Secret, the Service; never mutated
    service: str | None = WEBHOOK_SERVICE_NAME
    service_port: int = 443
    url: str | None = None
    failure_policy: FailurePolicy = "Ignore"
    secret_name: str = WEBHOOK_SECRET_NAME
    configuration_name: str = WEBHOOK_CONFIGURATION_NAME
    excluded_namespaces: tuple[str, ...] = ("kube-system",)
    extra_hosts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if (self.service is None) == (self.url is None):
            raise ValueError("give exactly one of service and url")

    @property
    def hosts(self) -> list[str]:
        """The names the serving certificate must carry: the Service's DNS names, the URL's
        host, and any extra ones."""
        hosts: list[str] = []
        if self.service is not None:
            hosts += certs.service_dns_names(self.service, self.namespace)
        if self.url is not None:
            host = urllib.parse.urlsplit(self.url).hostname
            if host:
                hosts.append(host)
        return list(dict.fromkeys([*hosts, *self.extra_hosts]))

    def configuration(self, ca_cert_pem: bytes) -> Configuration:
        """The configuration we want, trusting ``ca_cert_pem``."""
        return build_configuration(
            ca_bundle=ca_cert_pem,
            controller_namespace=self.namespace,
            service=self.service,
            service_port=self.service_port,
            url=self.url,
            failure_policy=self.failure_policy,
            excluded_namespaces=self.excluded_namespaces,
            name=self.configuration_name,
            labels=dict(LABELS),
        )


# ----- pure checks ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the configuration: a stable ``code`` (the metric label) and what
    exactly (for the Event message)."""

    code: str  # missing | webhooks | client-config | ca-bundle | rules | failure-policy |
    # namespace-selector | settings
    detail: str


# The API server's defaults for a v1 webhook (pkg/apis/admissionregistration/v1/defaults.go):
# a field left out reads back with these, and must not count as a difference.
_HOOK_DEFAULTS: dict[str, Any] = {
    "failurePolicy": "Fail",
    "matchPolicy": "Equivalent",
    "namespaceSelector": {},
    "objectSelector": {},
    "timeoutSeconds": 10,
    "reinvocationPolicy": "Never",
}
# Field -> problem code; every other field of a webhook counts as "settings".
_FIELD_CODES = {
    "rules": "rules",
    "failurePolicy": "failure-policy",
    "namespaceSelector": "namespace-selector",
}


def _defaulted(hook: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(hook))
    for key, value in _HOOK_DEFAULTS.items():
        if out.get(key) is None:
            out[key] = copy.deepcopy(value)
    rules = []
    for rule in out.get("rules") or []:
        rule = dict(rule)
        rule.setdefault("scope", "*")
        rules.append(rule)
    out["rules"] = rules
    call = dict(out.get("clientConfig") or {})
    service = call.get("service")
    if isinstance(service, Mapping):
        service = dict(service)
        service.setdefault("port", 443)
        call["service"] = service
    out["clientConfig"] = call
    return {k: v for k, v in out.items() if v is not None}


def ca_certificates(ca_bundle: str | None) -> set[bytes] | None:
    """The certificates (DER) of a configuration's base64 ``caBundle``; None if unreadable."""
    if not ca_bundle:
        return None
    try:
        pem = base64.b64decode(ca_bundle, validate=True)
        return {
            c.public_bytes(serialization.Encoding.DER) for c in x509.load_pem_x509_certificates(pem)
        }
    except (ValueError, binascii.Error):
        return None


def with_ca(ca_bundle: str | None, ca_cert_pem: bytes) -> str:
    """A base64 ``caBundle`` trusting ``ca_cert_pem`` and the readable certificates of
    ``ca_bundle`` (the CAs the API server trusts now, which the replicas may still serve)."""
    new = x509.load_pem_x509_certificate(ca_cert_pem).public_bytes(serialization.Encoding.DER)
    kept = sorted((ca_certificates(ca_bundle) or set()) - {new})
    pems = [
        x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM) for der in kept
    ]
    return base64.b64encode(b"".join([ca_cert_pem, *pems])).decode()


def _ca_bundle_problem(
    have_ca: str | None, want_ca: str | None, *, old_cas_allowed: bool
) -> Problem | None:
    """What is wrong with a live ``caBundle``. Our CA plus replaced ones is fine while
    ``old_cas_allowed`` (a CA rotation in progress); without our CA it never is."""
    have, want = ca_certificates(have_ca), ca_certificates(want_ca)
    if have == want:
        return None
    if have is None:
        return Problem("ca-bundle", "caBundle is missing or not a certificate")
    if want is not None and want < have:
        return None if old_cas_allowed else Problem("ca-bundle", "caBundle trusts a replaced CA")
    return Problem("ca-bundle", "caBundle is not our CA")


def _where(call: Mapping[str, Any]) -> str:
    """Where a webhook ``clientConfig`` sends requests, for messages."""
    if call.get("url"):
        return str(call["url"])
    service = call.get("service")
    if isinstance(service, Mapping):
        return (
            f"service {service.get('namespace')}/{service.get('name')}:"
            f"{service.get('port')}{service.get('path') or ''}"
        )
    return "nothing"


def configuration_problems(
    actual: Configuration | None, desired: Configuration, *, old_cas_allowed: bool = False
) -> list[Problem]:
    """What differs between the configuration in the cluster and the one we want (pure).

    Server defaults are applied to both sides first, so a field the API server filled in is not
    a difference. Other webhooks added to *our* configuration are a problem too: they would run
    under our name, and a broken one would be blamed on us. ``old_cas_allowed``: during a CA
    rotation, a ``caBundle`` trusting replaced CAs besides ours is not a problem yet."""
    if actual is None:
        return [Problem("missing", "the configuration does not exist")]
    want = [_defaulted(h) for h in desired.to_dict().get("webhooks") or []]
    have = [_defaulted(h) for h in actual.to_dict().get("webhooks") or []]
    problems: list[Problem] = []
    have_by_name = {str(h.get("name")): h for h in have}
    want_names = {str(h.get("name")) for h in want}
    extra = sorted(n for n in have_by_name if n not in want_names)
    if extra:
        problems.append(Problem("webhooks", f"unexpected webhooks {', '.join(extra)}"))
    for wanted in want:
        name = str(wanted.get("name"))
        hook = have_by_name.get(name)
        if hook is None:
            problems.append(Problem("webhooks", f"webhook {name} is missing"))
            continue
        have_call, want_call = dict(hook["clientConfig"]), dict(wanted["clientConfig"])
        have_ca, want_ca = have_call.pop("caBundle", None), want_call.pop("caBundle", None)
        if have_call != want_call:
            problems.append(
                Problem(
                    "client-config",
                    f"calls {_where(have_call)} instead of {_where(want_call)}",
                )
            )
        ca_problem = _ca_bundle_problem(have_ca, want_ca, old_cas_allowed=old_cas_allowed)
        if ca_problem is not None:
            problems.append(ca_problem)
        settings: list[str] = []
        for key in sorted((set(hook) | set(wanted)) - {"name", "clientConfig"}):
            if hook.get(key) == wanted.get(key):
                continue
            code = _FIELD_CODES.get(key)
            if code is None:
                settings.append(key)
            else:
                problems.append(Problem(code, f"{key} was altered"))
        if settings:
            problems.append(Problem("settings", f"{', '.join(settings)} altered"))
    return problems


def repaired_configuration(
    actual: Configuration | None, desired: Configuration, *, keep_ca_bundle: bool = False
) -> Configuration:
    """``desired``, carrying over the live object's metadata (resourceVersion for the
    optimistic-concurrency check; labels and annotations others may have added).
    ``keep_ca_bundle``: keep the live ``caBundle`` of our webhook (it trusts our CA and, during a
    CA rotation, the replaced one, which must not be dropped by repairing something else)."""
    if actual is None or actual.metadata is None:
        return desired
    meta = copy.deepcopy(actual.metadata)
    meta.labels = {
        **(meta.labels or {}),
        **((desired.metadata.labels if desired.metadata else None) or {}),
    }
    meta.managedFields = None
    webhooks = copy.deepcopy(desired.webhooks)
    if keep_ca_bundle:
        live = {h.name: h.clientConfig.caBundle for h in actual.webhooks or []}
        for hook in webhooks or []:
            hook.clientConfig.caBundle = live.get(hook.name, hook.clientConfig.caBundle)
    return Configuration(metadata=meta, webhooks=webhooks)


def _codes(problems: Sequence[Problem]) -> list[str]:
    return list(dict.fromkeys(p.code for p in problems))


# ----- the guardian --------------------------------------------------------------------------


@dataclass(frozen=True)
class Repair:
    """One repair made: which object, the Event reason, the problem codes, the message."""

    object: str  # CONFIGURATION | SECRET
    reason: str
    problems: tuple[str, ...]
    message: str


@dataclass
class Guardian:
    """Checks and repairs the webhook's Secret and configuration; see the module docstring.

    ``clock`` is injectable (tests make certificates expire); ``tls`` is the server's context,
    updated as soon as a new certificate is written (the other replicas follow the Secret
    through :func:`tls_from_secret`)."""

    client: AsyncClient
    target: Target
    events: EventSink
    tls: ReloadingTLS | None = None
    clock: Callable[[], datetime.datetime] = utc_now
    on_repair: RepairCallback | None = None
    recheck_period: float = RECHECK_PERIOD
    repairs: list[Repair] = field(default_factory=list)
    checks: int = 0
    # Since when the caBundle may trust replaced CAs besides the Secret's (CA_OVERLAP). Kept in
    # memory: a new leader cannot know when the replicas last reloaded, so it counts from its
    # own first check, which at worst keeps an old CA of ours a few minutes longer. That is
    # simpler than an annotation (another write, one more field users can edit) and as safe.
    old_cas_trusted_since: datetime.datetime | None = None

    def concerns(self, obj: Any) -> bool:
        """Whether an informer event about ``obj`` is about our configuration or Secret."""
        meta: ObjectMeta | None = getattr(obj, "metadata", None)
        if meta is None:
            return False
        if isinstance(obj, Configuration):
            return meta.name == self.target.configuration_name
        if isinstance(obj, Secret):
            return (meta.name, meta.namespace) == (self.target.secret_name, self.target.namespace)
        return False

    async def reconcile(self, key: str = KEY) -> float | None:
        """One pass: Secret, TLS, configuration. Returns the re-check delay."""
        self.checks += 1
        if self.old_cas_trusted_since is None:
            self.old_cas_trusted_since = self.clock()
        bundle = await self.ensure_secret()
        self.serve(bundle)
        await self.ensure_configuration(bundle)
        return self.recheck_period

    # -- the Secret --

    async def read_secret(self) -> Secret | None:
        try:
            return await self.client.get(
                Secret, self.target.secret_name, namespace=self.target.namespace
            )
        except ApiError as error:
            if error.status.code == 404:
                return None
            raise

    async def ensure_secret(self) -> certs.Bundle:
        """The sound bundle in the Secret, after creating or rewriting the Secret if needed."""
        secret = await self.read_secret()
        existing = certs.bundle_in_secret(secret.data if secret is not None else None)
        plan = certs.plan_bundle(existing, self.target.hosts, now=self.clock())
        if not plan.changed:
            return plan.bundle
        if plan.new_ca:
            await self.trust_new_ca(plan.bundle.ca_cert_pem)
        if secret is None:
            secret = certs.secret_for(
                plan.bundle,
                name=self.target.secret_name,
                namespace=self.target.namespace,
                labels=LABELS,
            )
            written = await self.client.create(secret)
            self._repaired(
                SECRET,
                written,
                reason=CERTIFICATE_CREATED,
                problems=["missing"],
                type=NORMAL,
                message=f"created a new CA and a serving certificate for "
                f"{', '.join(self.target.hosts)} in Secret "
                f"{self.target.namespace}/{self.target.secret_name}",
            )
            return plan.bundle
        problem = "unreadable" if existing is None else str(plan.reason)
        secret = Secret(
            metadata=_fresh_meta(secret.metadata),
            type=secret.type,
            data=certs.secret_data(plan.bundle),
        )
        written = await self.client.replace(secret)
        self._repaired(
            SECRET,
            written,
            reason=CERTIFICATE_ROTATED,
            problems=[problem],
            type=NORMAL if problem in _AGEING else WARNING,
            message=_rotation_message(problem, plan.new_ca, plan.bundle),
        )
        return plan.bundle

    def serve(self, bundle: certs.Bundle) -> None:
        if self.tls is None:
            return
        try:
            self.tls.update(bundle.cert_pem, bundle.key_pem)
        except ssl.SSLError as error:  # plan_bundle checked the pair; this would be a bug
            self.tls.reload_errors += 1
            log.error("event=webhook_tls_reload_failed error=%r", error)

    # -- the configuration --

    async def read_configuration(self) -> Configuration | None:
        try:
            return await self.client.get(Configuration, self.target.configuration_name)
        except ApiError as error:
            if error.status.code == 404:
                return None
            raise

    def old_cas_allowed(self) -> bool:
        since = self.old_cas_trusted_since
        return since is not None and self.clock() - since < CA_OVERLAP

    async def trust_new_ca(self, ca_cert_pem: bytes) -> None:
        """Make the live caBundle trust ``ca_cert_pem`` besides the CAs it trusts now, before the
        Secret switches the replicas to a certificate the new CA signed: a replica still serving
        the old certificate and one serving the new are both verified, so no call fails. The
        old CAs stay for :data:`CA_OVERLAP` (:meth:`old_cas_allowed`)."""
        actual = await self.read_configuration()
        ours = self.target.configuration(ca_cert_pem).webhooks or []
        names = {hook.name for hook in ours}
        hooks = [h for h in (actual.webhooks or []) if h.name in names] if actual else []
        if actual is None or not hooks:  # nothing trusts the old CA: nothing to keep
            return
        for hook in hooks:
            hook.clientConfig.caBundle = with_ca(hook.clientConfig.caBundle, ca_cert_pem)
        configuration = Configuration(
            metadata=_fresh_meta(actual.metadata), webhooks=actual.webhooks
        )
        written = await self.client.replace(configuration)
        self.old_cas_trusted_since = self.clock()
        self._repaired(
            CONFIGURATION,
            written,
            reason=CA_BUNDLE_EXTENDED,
            problems=[],  # a step of the Secret's repair, counted there
            type=NORMAL,
            message=f"caBundle trusts a new CA besides the current one for {CA_OVERLAP}, "
            "while the webhook switches to a certificate it signed",
        )

    async def ensure_configuration(self, bundle: certs.Bundle) -> None:
        actual = await self.read_configuration()
        desired = self.target.configuration(bundle.ca_cert_pem)
        old_cas_allowed = self.old_cas_allowed()
        problems = configuration_problems(actual, desired, old_cas_allowed=old_cas_allowed)
        if not problems:
            return
        details = "; ".join(p.detail for p in problems)
        if actual is None:
            configuration = desired
            written = await self.client.create(configuration)
            self._repaired(
                CONFIGURATION,
                written,
                reason=CONFIGURATION_CREATED,
                problems=["missing"],
                type=NORMAL,
                message=f"created MutatingWebhookConfiguration {self.target.configuration_name}"
                f" calling {_where(desired.to_dict()['webhooks'][0]['clientConfig'])}",
            )
            return
        keep_ca_bundle = old_cas_allowed and "ca-bundle" not in _codes(problems)
        configuration = repaired_configuration(actual, desired, keep_ca_bundle=keep_ca_bundle)
        written = await self.client.replace(configuration)
        self._repaired(
            CONFIGURATION,
            written,
            reason=CONFIGURATION_REPAIRED,
            problems=_codes(problems),
            type=WARNING,
            message=f"restored MutatingWebhookConfiguration {self.target.configuration_name}: "
            f"{details}",
        )

    # -- reporting --

    def _repaired(
        self,
        what: str,
        obj: Any,
        *,
        reason: str,
        problems: Sequence[str],
        type: str,
        message: str,
    ) -> None:
        repair = Repair(what, reason, tuple(problems), message)
        self.repairs.append(repair)
        del self.repairs[:-100]
        log.log(
            logging.WARNING if type == WARNING else logging.INFO,
            "event=webhook_repaired object=%s reason=%s problems=%s message=%r",
            what,
            reason,
            ",".join(problems),
            message,
        )
        self.events.event(obj, type=type, reason=reason, message=message)
        if self.on_repair is not None:
            for problem in problems:
                try:
                    self.on_repair(what, problem)
                except Exception:  # a metric must never fail a repair
                    log.exception("event=webhook_repair_callback_failed")


def _fresh_meta(meta: ObjectMeta | None) -> ObjectMeta:
    fresh = copy.deepcopy(meta) if meta is not None else ObjectMeta()
    fresh.managedFields = None
    return fresh


def _rotation_message(problem: str, new_ca: bool, bundle: certs.Bundle) -> str:
    why = {
        "unreadable": "the Secret held no usable CA",
        "ca-invalid-or-expiring": "the CA was invalid or close to expiry",
        "serving-expiring": "the serving certificate was close to expiry",
        "serving-names": "the serving certificate lacked one of our names",
        "serving-issuer": "the serving certificate was not signed by our CA",
        "serving-key": "the serving certificate did not match its key",
        "serving-invalid": "the serving certificate or its key was unreadable",
    }.get(problem, problem)
    until = bundle.cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    what = "a new CA and serving certificate" if new_ca else "a new serving certificate"
    return f"{why}: issued {what}, valid until {until}"


async def read_bundle(
    client: AsyncClient,
    target: Target,
    *,
    clock: Callable[[], datetime.datetime] = utc_now,
) -> certs.Bundle | None:
    """The bundle in the Secret if it is there and sound now, else None (start-up: serve the
    real certificate from the first handshake when we can)."""
    try:
        secret = await client.get(Secret, target.secret_name, namespace=target.namespace)
    except ApiError:
        return None
    bundle = certs.bundle_in_secret(secret.data)
    if bundle is None:
        return None
    plan = certs.plan_bundle(bundle, target.hosts, now=clock())
    return None if plan.changed else bundle


def tls_from_secret(tls: ReloadingTLS, *, name: str, namespace: str) -> Handler:
    """An informer handler serving the certificate of the Secret ``namespace/name`` as it
    changes (every replica; the leader's guardian writes it). A pair that does not load is
    counted in ``tls.reload_errors`` and the previous certificate stays in service."""

    def handler(event: Event[Any]) -> None:
        obj = event.obj
        meta = getattr(obj, "metadata", None)
        if event.type == DELETED or meta is None:
            return
        if meta.name != name or meta.namespace != namespace:
            return
        bundle = certs.bundle_in_secret(obj.data)
        if bundle is None or not bundle.cert_pem or not bundle.key_pem:
            return
        try:
            tls.update(bundle.cert_pem, bundle.key_pem)
        except (ssl.SSLError, ValueError) as error:
            tls.reload_errors += 1
            log.warning("event=webhook_tls_reload_failed source=secret error=%r", error)

    return handler
