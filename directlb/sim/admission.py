"""Dynamic admission: mutating and validating webhooks, called the way kube-apiserver calls them.

The simulator's API server hands every write to :class:`Admission`: :meth:`Admission.mutate`
calls the matching ``MutatingWebhookConfiguration`` webhooks one after the other and applies
their JSONPatches; :meth:`Admission.validate` calls the matching
``ValidatingWebhookConfiguration`` webhooks in parallel. Requests are real HTTPS POSTs of an
``admission.k8s.io/v1`` (or ``v1beta1``) ``AdmissionReview``, and the server certificate is
verified against the webhook's ``clientConfig.caBundle`` (the system trust store when it is
empty), so a webhook server that works here works behind a real API server, and the other way
round.

What is honoured, with kube-apiserver's semantics (``k8s.io/apiserver/pkg/admission/plugin/
webhook``):

* order: configurations sorted by name, webhooks in their order inside each configuration;
* ``rules`` (operations, apiGroups, apiVersions, resources with ``*``, ``pods/status`` and
  ``pods/*`` forms, scope ``Namespaced``/``Cluster``/``*``); ``matchPolicy`` is accepted but
  every resource is served in one version here, so ``Equivalent`` and ``Exact`` match alike;
* ``namespaceSelector`` against the labels of the request's Namespace (a cluster-scoped object
  other than a Namespace always matches; a Namespace being created or updated is matched
  against its own new labels); ``objectSelector`` against the labels of the object or the old
  object;
* ``timeoutSeconds`` (default 10, at most 30), sent to the webhook as ``?timeout=<N>s``;
* ``failurePolicy`` (default ``Fail``): a failed call (connection, TLS, timeout, non-2xx, an
  invalid AdmissionReview, an undecodable patch) fails the request with 500 InternalError
  ``Internal error occurred: failed calling webhook "<name>": ...``; under ``Ignore`` it is
  logged (``event=webhook_failed_open``) and skipped;
* ``sideEffects``: a dry-run request is rejected with 400 BadRequest
  ``admission webhook "<name>" does not support dry run`` unless the webhook declares ``None``
  or ``NoneOnDryRun``;
* ``admissionReviewVersions``: the first of ``v1``/``v1beta1`` the webhook lists is sent;
* ``reinvocationPolicy: IfNeeded``: after the first pass, a webhook that asked for it is called
  once more if a webhook after it changed the object (the single reinvocation round of the real
  server; webhooks not called in the first round are not called in the second);
* a denial (``allowed: false``) raises :class:`AdmissionDenied` with the webhook's status code
  (anything below 400 becomes 400), its reason, its ``details.causes`` and the message
  ``admission webhook "<name>" denied the request: <status.message>`` (or ``: <reason>``, or
  `` without explanation``). Denials and failures of mutating webhooks stop the chain; for
  validating webhooks, which run in parallel, the first error in webhook order is raised;
* configurations of admission itself (webhook configurations and admission policies) are never
  sent to webhooks, so a broken webhook cannot lock its own configuration.

Reaching a webhook that is a Service
------------------------------------

A real API server reaches ``clientConfig.service`` through cluster DNS or, with
``--enable-aggregator-routing``, by picking an endpoint of the Service itself; our pods are
real processes on loopback addresses and a webhook may run anywhere on this machine, so the
simulator always does the latter, from the objects it stores:

1. the Service ``<namespace>/<name>`` is read (missing: ``service "<name>" not found``;
   ``ExternalName``: ``unsupported service type``);
2. its port entry whose ``port`` equals ``clientConfig.service.port`` (default 443) is chosen
   (none: ``no service port <port> found for service "<name>"``);
3. the EndpointSlices labelled ``kubernetes.io/service-name=<name>`` in that namespace are read,
   in name order, and the first endpoint whose ``conditions.ready`` is not false is taken, at
   the slice port whose ``name`` equals the service port's name, or, failing that, whose
   ``port`` equals the service port's numeric ``targetPort`` (none: ``no endpoints available
   for service "<name>"``);
4. the webhook is called at ``https://<endpoint address>:<slice port><path>`` but the TLS
   server name (SNI) and the name the certificate is verified against are
   ``<name>.<namespace>.svc``, and the ``Host`` header and every error message say
   ``https://<name>.<namespace>.svc:<port><path>``, exactly as the real API server does for a
   service webhook. So a webhook's serving certificate must carry ``<name>.<namespace>.svc``,
   as in a real cluster; the endpoint's IP needs no SAN.

A URL webhook (``clientConfig.url``) is called at that URL as it is.

Not modelled: ``matchConditions`` (CEL; webhooks are called as if they matched), audit
annotations, response ``warnings`` (logged, not returned as ``Warning`` headers), conversion of
the object to another version for ``matchPolicy: Equivalent``, the overall request deadline,
and webhook client authentication (``--admission-control-config-file`` kubeconfigs).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime
import ipaddress
import json
import logging
import re
import ssl
import urllib.parse
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from cryptography import x509

from directlb.sim.contracts import (
    AdmissionAttributes,
    AdmissionDenied,
    Obj,
    ObjectReader,
    StatusError,
)
from directlb.sim.patch import apply_json_patch_operations
from directlb.sim.selectors import selector_from_label_selector

log = logging.getLogger("directlb.sim.admission")

ADMISSION_GROUP = "admissionregistration.k8s.io"
MUTATING = (ADMISSION_GROUP, "mutatingwebhookconfigurations")
VALIDATING = (ADMISSION_GROUP, "validatingwebhookconfigurations")
SERVICE_NAME_LABEL = "kubernetes.io/service-name"

DEFAULT_TIMEOUT_SECONDS = 10
MAX_TIMEOUT_SECONDS = 30

# Kinds whose writes never reach a webhook (rules.IsExemptAdmissionConfigurationResource).
_EXEMPT_KINDS = frozenset(
    {
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "MutatingAdmissionPolicy",
        "MutatingAdmissionPolicyBinding",
    }
)
_REVIEW_VERSIONS = ("v1", "v1beta1")
_OPTIONS_KIND = {"CREATE": "CreateOptions", "UPDATE": "UpdateOptions", "DELETE": "DeleteOptions"}
_USER_AGENT = "kube-apiserver-admission"


def _q(text: str) -> str:
    """Go's ``%q`` for the names that appear in messages."""
    return json.dumps(text, ensure_ascii=False)


# ----- webhook configurations --------------------------------------------------------------


@dataclass(frozen=True)
class Webhook:
    """One webhook of a configuration, with the v1 defaults applied where read."""

    configuration: str
    uid: str  # "<configuration>/<webhook name>/<n-th webhook of that name>", as the real server
    spec: Obj

    @property
    def name(self) -> str:
        return str(self.spec.get("name") or "")

    @property
    def failure_policy(self) -> str:
        return str(self.spec.get("failurePolicy") or "Fail")

    @property
    def ignore_failures(self) -> bool:
        return self.failure_policy == "Ignore"

    @property
    def timeout_seconds(self) -> int:
        value = self.spec.get("timeoutSeconds")
        if not isinstance(value, int) or isinstance(value, bool):
            return DEFAULT_TIMEOUT_SECONDS
        return max(1, min(MAX_TIMEOUT_SECONDS, value))

    @property
    def side_effects(self) -> str | None:
        value = self.spec.get("sideEffects")
        return str(value) if value is not None else None

    @property
    def reinvocation_policy(self) -> str:
        return str(self.spec.get("reinvocationPolicy") or "Never")

    @property
    def review_versions(self) -> list[str]:
        return [str(v) for v in self.spec.get("admissionReviewVersions") or []]

    @property
    def rules(self) -> list[Obj]:
        return [r for r in self.spec.get("rules") or [] if isinstance(r, dict)]

    @property
    def namespace_selector(self) -> Obj | None:
        value = self.spec.get("namespaceSelector")
        return value if isinstance(value, dict) else None

    @property
    def object_selector(self) -> Obj | None:
        value = self.spec.get("objectSelector")
        return value if isinstance(value, dict) else None

    @property
    def client_config(self) -> Obj:
        value = self.spec.get("clientConfig")
        return value if isinstance(value, dict) else {}


def webhooks_from(configurations: list[Obj]) -> list[Webhook]:
    """The webhooks of ``configurations`` in calling order: configurations by name, then listed."""
    hooks: list[Webhook] = []
    ordered = sorted(configurations, key=lambda c: str((c.get("metadata") or {}).get("name") or ""))
    for configuration in ordered:
        config_name = str((configuration.get("metadata") or {}).get("name") or "")
        seen: dict[str, int] = {}
        for spec in configuration.get("webhooks") or []:
            if not isinstance(spec, dict):
                continue
            name = str(spec.get("name") or "")
            index = seen.get(name, 0)
            seen[name] = index + 1
            hooks.append(Webhook(config_name, f"{config_name}/{name}/{index}", spec))
    return hooks


def is_exempt(attrs: AdmissionAttributes) -> bool:
    """Writes of admission's own configuration never go to webhooks."""
    return attrs.key.group == ADMISSION_GROUP and attrs.key.kind in _EXEMPT_KINDS


# ----- matching ----------------------------------------------------------------------------


def _is_namespace_resource(attrs: AdmissionAttributes) -> bool:
    key = attrs.key
    return key.group == "" and key.version == "v1" and key.resource == "namespaces"


def _exact_or_wildcard(items: list[Any], requested: str) -> bool:
    return any(item == "*" or item == requested for item in items)


def rule_matches(rule: Obj, attrs: AdmissionAttributes) -> bool:
    """One ``RuleWithOperations`` against a request (predicates/rules.Matcher)."""
    scope = rule.get("scope") or "*"
    if scope == "Namespaced":
        in_scope = not _is_namespace_resource(attrs) and attrs.namespace != ""
    elif scope == "Cluster":
        in_scope = _is_namespace_resource(attrs) or attrs.namespace == ""
    else:
        in_scope = scope == "*"
    if not in_scope:
        return False
    if not _exact_or_wildcard(list(rule.get("operations") or []), attrs.operation):
        return False
    if not _exact_or_wildcard(list(rule.get("apiGroups") or []), attrs.key.group):
        return False
    if not _exact_or_wildcard(list(rule.get("apiVersions") or []), attrs.key.version):
        return False
    for entry in rule.get("resources") or []:
        resource, _, sub = str(entry).partition("/")
        if (resource in ("*", attrs.key.resource)) and (sub in ("*", attrs.subresource)):
            return True
    return False


class SelectorError(ValueError):
    """A metav1.LabelSelector that cannot be turned into a selector."""


def label_selector_matches(selector: Obj | None, labels: Mapping[str, Any] | None) -> bool:
    """A metav1.LabelSelector (``matchLabels`` + ``matchExpressions``) against labels.

    An absent or empty selector matches everything. Raises :class:`SelectorError` for an
    invalid selector (checked before matching, as ``LabelSelectorAsSelector`` does); the
    callers answer it as a 500 InternalError, where a list's selector would be a 400.
    """
    try:
        parsed = selector_from_label_selector(selector)
    except StatusError as error:
        raise SelectorError(error.message) from None
    return parsed.matches({str(k): str(v) for k, v in (labels or {}).items()})


def _is_empty_selector(selector: Obj | None) -> bool:
    return not selector or (
        not selector.get("matchLabels") and not selector.get("matchExpressions")
    )


def _labels_of(obj: Obj | None) -> Mapping[str, Any]:
    if not isinstance(obj, dict):
        return {}
    labels = (obj.get("metadata") or {}).get("labels")
    return labels if isinstance(labels, dict) else {}


def _internal_error(message: str) -> AdmissionDenied:
    """apierrors.NewInternalError: 500, reason InternalError, the message as the only cause."""
    return AdmissionDenied(
        500, "InternalError", f"Internal error occurred: {message}", causes=[{"message": message}]
    )


def match_namespace(
    hook: Webhook, attrs: AdmissionAttributes, obj: Obj | None, reader: ObjectReader
) -> tuple[bool, AdmissionDenied | None]:
    """The namespaceSelector predicate (predicates/namespace.Matcher): ``(matches, error)``.

    ``obj`` is the object as it stands (patched by earlier webhooks): a Namespace being
    created or updated is matched by its own labels.
    """
    if attrs.namespace == "" and attrs.key.resource != "namespaces":
        # A cluster-scoped object other than a Namespace is never exempted.
        return True, None
    selector = hook.namespace_selector
    if _is_empty_selector(selector):
        return True, None
    if (
        attrs.key.resource == "namespaces"
        and attrs.subresource == ""
        and attrs.operation in ("CREATE", "UPDATE")
    ):
        labels = _labels_of(obj)
    else:
        name = attrs.namespace or attrs.name
        namespace = reader.get_object("", "namespaces", None, name)
        if namespace is None:
            return False, AdmissionDenied(
                404,
                "NotFound",
                f"namespaces {_q(name)} not found",
                details={"name": name, "kind": "namespaces"},
            )
        labels = _labels_of(namespace)
    try:
        return label_selector_matches(selector, labels), None
    except SelectorError as error:
        return False, _internal_error(str(error))


def match_object(
    hook: Webhook, attrs: AdmissionAttributes, obj: Obj | None
) -> tuple[bool, AdmissionDenied | None]:
    """The objectSelector predicate: the labels of the (current) object or of the old object."""
    selector = hook.object_selector
    if _is_empty_selector(selector):
        return True, None
    try:
        return (
            (obj is not None and label_selector_matches(selector, _labels_of(obj)))
            or (
                attrs.old_obj is not None
                and label_selector_matches(selector, _labels_of(attrs.old_obj))
            ),
            None,
        )
    except SelectorError as error:
        return False, _internal_error(str(error))


def should_call(
    hook: Webhook, attrs: AdmissionAttributes, obj: Obj | None, reader: ObjectReader
) -> bool:
    """Whether ``hook`` applies to the request (generic.Webhook.ShouldCallHook).

    A selector error or a missing Namespace only fails the request when the rules match, as in
    the real server: webhooks that do not apply never block a request.
    """
    ns_matches, ns_error = match_namespace(hook, attrs, obj, reader)
    if not ns_matches and ns_error is None:
        return False
    obj_matches, obj_error = match_object(hook, attrs, obj)
    if not obj_matches and obj_error is None:
        return False
    if not any(rule_matches(rule, attrs) for rule in hook.rules):
        return False
    if ns_error is not None:
        raise ns_error
    if obj_error is not None:
        raise obj_error
    return True


# ----- JSON Patch (RFC 6902) ---------------------------------------------------------------


class JsonPatchError(ValueError):
    """A patch that does not apply (answered as an internal error, like evanphx/json-patch)."""


# The shared applier (``patch.py``) words its failures for the PATCH verb; a webhook's patch
# that does not apply is reported in admission's own shorter wording (a 500 InternalError).
_ADMISSION_WORDING = (
    (re.compile(r"unable to access invalid index: (\d+)"), "array index out of bounds: {0}"),
    (re.compile(r'^JSON pointer must be empty or start with a "/": (.*)$'), "invalid path: {0}"),
    (re.compile(r"^invalid JSON pointer (.*): not a string$"), "invalid path: {0}"),
)


def _admission_wording(detail: str) -> str:
    for pattern, template in _ADMISSION_WORDING:
        match = pattern.search(detail)
        if match:
            return template.format(*match.groups())
    return detail.removesuffix(": missing value")


def apply_json_patch(doc: Any, operations: list[Any]) -> Any:
    """Apply RFC 6902 ``operations`` to a copy of ``doc`` and return the result.

    Raises :class:`JsonPatchError` for a patch that does not apply.
    """
    try:
        return apply_json_patch_operations(doc, operations)
    except StatusError as error:
        detail = error.causes[0]["message"] if error.causes else error.message
        raise JsonPatchError(_admission_wording(detail)) from None


# ----- reaching a webhook ------------------------------------------------------------------


class ResolveError(Exception):
    """A service reference that does not lead to an endpoint (the message is the real one)."""


def resolve_service(
    reader: ObjectReader, *, namespace: str, name: str, port: int
) -> tuple[str, int]:
    """The ``(address, port)`` a service webhook is called at (see the module docstring)."""
    service = reader.get_object("", "services", namespace, name)
    if service is None:
        raise ResolveError(f"service {_q(name)} not found")
    spec = service.get("spec") or {}
    service_type = str(spec.get("type") or "ClusterIP")
    if service_type not in ("ClusterIP", "NodePort", "LoadBalancer"):
        raise ResolveError(f"unsupported service type {_q(service_type)}")
    service_port = next((p for p in spec.get("ports") or [] if p.get("port") == port), None)
    if service_port is None:
        raise ResolveError(f"no service port {port} found for service {_q(name)}")
    port_name = str(service_port.get("name") or "")
    target = service_port.get("targetPort", service_port.get("port"))
    target_number = target if isinstance(target, int) and not isinstance(target, bool) else None
    slices = [
        s
        for s in reader.list_objects("discovery.k8s.io", "endpointslices", namespace)
        if _labels_of(s).get(SERVICE_NAME_LABEL) == name
    ]
    slices.sort(key=lambda s: str((s.get("metadata") or {}).get("name") or ""))
    for endpoint_slice in slices:
        if endpoint_slice.get("addressType", "IPv4") not in ("IPv4", "IPv6"):
            continue
        slice_port = _slice_port(endpoint_slice, port_name, target_number)
        if slice_port is None:
            continue
        for endpoint in endpoint_slice.get("endpoints") or []:
            conditions = endpoint.get("conditions") or {}
            addresses = endpoint.get("addresses") or []
            if conditions.get("ready") is False or not addresses:
                continue
            return str(addresses[0]), slice_port
    raise ResolveError(f"no endpoints available for service {_q(name)}")


def _slice_port(endpoint_slice: Obj, port_name: str, target_number: int | None) -> int | None:
    ports = [p for p in endpoint_slice.get("ports") or [] if isinstance(p.get("port"), int)]
    for entry in ports:
        if str(entry.get("name") or "") == port_name:
            return int(entry["port"])
    for entry in ports:
        if target_number is not None and entry["port"] == target_number:
            return int(entry["port"])
    return None


@dataclass(frozen=True)
class _Target:
    """Where a call goes: ``shown`` is what the real server would POST to (and every message
    says), ``url`` where the POST really goes, ``host:port`` the address dialled."""

    shown: str
    url: str
    host: str
    port: int
    server_hostname: str | None  # TLS SNI and the name the certificate must carry
    host_header: str | None


class _CallFailure(Exception):
    """webhookutil.ErrCallingWebhook: the one kind of error that failurePolicy decides on."""

    def __init__(self, webhook: str, reason: str) -> None:
        super().__init__(f"failed calling webhook {_q(webhook)}: {reason}")
        self.message = str(self)


@dataclass(frozen=True)
class _Reply:
    allowed: bool
    patch: bytes
    patch_type: str
    result: Obj | None
    warnings: list[str]


def _gvk(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


def _typed(obj: Obj | None, attrs: AdmissionAttributes) -> Obj | None:
    """The object as it is sent: with apiVersion and kind, like a versioned object."""
    if obj is None or attrs.subresource or (obj.get("apiVersion") and obj.get("kind")):
        return obj
    return {"apiVersion": attrs.key.api_version, "kind": attrs.key.kind, **obj}


def _request_kind(attrs: AdmissionAttributes) -> Obj:
    source = attrs.obj if attrs.obj is not None else attrs.old_obj
    if attrs.subresource and source and source.get("apiVersion") and source.get("kind"):
        group, version = _gvk(str(source["apiVersion"]))
        return {"group": group, "version": version, "kind": str(source["kind"])}
    return {"group": attrs.key.group, "version": attrs.key.version, "kind": attrs.key.kind}


def build_review(*, uid: str, version: str, attrs: AdmissionAttributes, obj: Obj | None) -> Obj:
    """The AdmissionReview for ``attrs`` and the current ``obj`` (CreateV1AdmissionReview)."""
    kind = _request_kind(attrs)
    resource = {
        "group": attrs.key.group,
        "version": attrs.key.version,
        "resource": attrs.key.resource,
    }
    options: Obj | None = None
    if attrs.operation in _OPTIONS_KIND:
        options = {"kind": _OPTIONS_KIND[attrs.operation], "apiVersion": "meta.k8s.io/v1"}
        if attrs.dry_run:
            options["dryRun"] = ["All"]
    request: Obj = {
        "uid": uid,
        "kind": kind,
        "resource": resource,
        "requestKind": dict(kind),
        "requestResource": dict(resource),
        "name": attrs.name,
        "namespace": attrs.namespace,
        "operation": attrs.operation,
        "userInfo": {"username": attrs.user, "groups": list(attrs.groups)},
        "object": _typed(obj, attrs),
        "oldObject": _typed(attrs.old_obj, attrs),
        "dryRun": attrs.dry_run,
        "options": options,
    }
    if attrs.subresource:
        request["subResource"] = attrs.subresource
        request["requestSubResource"] = attrs.subresource
    return {
        "kind": "AdmissionReview",
        "apiVersion": f"admission.k8s.io/{version}",
        "request": request,
    }


def verify_reply(*, review: Any, uid: str, version: str, mutating: bool) -> _Reply:
    """request.VerifyAdmissionResponse; raises ValueError with the real server's text."""
    if not isinstance(review, dict):
        raise ValueError("webhook response was absent")
    response = review.get("response")
    if not isinstance(response, dict):
        raise ValueError("webhook response was absent")
    raw_patch = response.get("patch")
    patch = _decode_patch_bytes(raw_patch) if raw_patch is not None else b""
    patch_type = response.get("patchType")
    if version == "v1":
        if response.get("uid") != uid:
            raise ValueError(
                f"expected response.uid={_q(uid)}, got {_q(str(response.get('uid') or ''))}"
            )
        group, got_version = _gvk(str(review.get("apiVersion") or ""))
        got_kind = str(review.get("kind") or "")
        if (group, got_version, got_kind) != ("admission.k8s.io", "v1", "AdmissionReview"):
            raise ValueError(
                "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, "
                f"got {group}/{got_version}, Kind={got_kind}"
            )
        if mutating:
            if patch and patch_type is None:
                raise ValueError("webhook returned response.patch but not response.patchType")
            if not patch and patch_type is not None:
                raise ValueError("webhook returned response.patchType but not response.patch")
            if patch_type is not None and not patch_type:
                raise ValueError(f"webhook returned invalid response.patchType of {_q('')}")
        else:
            if patch:
                raise ValueError("validating webhook may not return response.patch")
            if patch_type is not None:
                raise ValueError("validating webhook may not return response.patchType")
        kind = str(patch_type or "")
    else:
        # v1beta1 verified neither uid nor kind nor patchType; a patch is a JSONPatch.
        kind = "JSONPatch" if (mutating and patch) else ""
        if not mutating:
            patch = b""
    result = response.get("status")
    return _Reply(
        allowed=response.get("allowed") is True,
        patch=patch,
        patch_type=kind,
        result=result if isinstance(result, dict) else None,
        warnings=[str(w) for w in response.get("warnings") or []],
    )


def _decode_patch_bytes(value: Any) -> bytes:
    if not isinstance(value, str):
        raise _DecodeError(
            "json: cannot unmarshal into Go struct field AdmissionResponse.response.patch "
            "of type []uint8"
        )
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as error:
        raise _DecodeError(f"illegal base64 data: {error}") from None


class _DecodeError(Exception):
    """The response body could not be decoded into an AdmissionReview (a call failure)."""


def denial(webhook: str, result: Obj | None) -> AdmissionDenied:
    """errors.ToStatusErr: the status a webhook's ``allowed: false`` becomes."""
    result = result or {}
    code = result.get("code")
    code = code if isinstance(code, int) and not isinstance(code, bool) else 0
    code = max(code, 400)
    reason = str(result.get("reason") or "")
    message = str(result.get("message") or "")
    denied_by = f"admission webhook {_q(webhook)} denied the request"
    if message:
        text = f"{denied_by}: {message}"
    elif reason:
        text = f"{denied_by}: {reason}"
    else:
        text = f"{denied_by} without explanation"
    details = result.get("details")
    details = details if isinstance(details, dict) else {}
    causes = [
        {str(k): str(v) for k, v in cause.items()}
        for cause in details.get("causes") or []
        if isinstance(cause, dict)
    ]
    other = {k: v for k, v in details.items() if k != "causes"}
    return AdmissionDenied(code, reason, text, causes=causes, details=other)


# HTTP status answers of a webhook, as client-go's rest client words them.
_GENERIC_MESSAGES = {
    400: "the server rejected our request for an unknown reason",
    401: "the server has asked for the client to provide credentials",
    404: "the server could not find the requested resource",
    405: "the server does not allow this method on the requested resource",
    409: "the server reported a conflict",
    422: "the server rejected our request due to an error in our request",
    429: "the server has received too many requests and has asked us to try again later",
    503: "the server is currently unable to handle the request",
    504: (
        "the server was unable to return a response in the time allotted, "
        "but may still be processing the request"
    ),
}


def _status_text(status: int, body: bytes, content_type: str) -> str:
    try:
        decoded = json.loads(body)
    except ValueError:
        decoded = None
    if (
        isinstance(decoded, dict)
        and decoded.get("kind") == "Status"
        and decoded.get("status") == "Failure"
    ):
        return str(decoded.get("message") or "")
    server_message = "unknown"
    if content_type.startswith("text/"):
        server_message = body[:1024].decode("utf-8", "replace").strip()
    if status == 403:
        return server_message
    if status in _GENERIC_MESSAGES:
        return _GENERIC_MESSAGES[status]
    if status >= 500:
        return (
            f"an error on the server ({_q(server_message)}) "
            "has prevented the request from succeeding"
        )
    return f"the server responded with the status code {status} but did not return more information"


_UNKNOWN_AUTHORITY = frozenset({2, 7, 18, 19, 20, 21, 30, 32})  # X509_V_ERR_* of an unknown CA


def _x509_text(
    error: ssl.SSLCertVerificationError, host: str, cert: x509.Certificate | None
) -> str:
    """Go's x509 wording for an OpenSSL verification failure."""
    code = error.verify_code
    if code in (62, 64) and cert is not None:  # hostname / IP address mismatch
        return _hostname_error(cert, host)
    if code in (62, 64):
        return f"x509: certificate is not valid for {host}"
    if code in (9, 10):
        now = datetime.datetime.now(datetime.UTC)
        if cert is None:
            return "x509: certificate has expired or is not yet valid"
        if code == 10:
            after = cert.not_valid_after_utc
            return (
                "x509: certificate has expired or is not yet valid: current time "
                f"{now:%Y-%m-%dT%H:%M:%SZ} is after {after:%Y-%m-%dT%H:%M:%SZ}"
            )
        before = cert.not_valid_before_utc
        return (
            "x509: certificate has expired or is not yet valid: current time "
            f"{now:%Y-%m-%dT%H:%M:%SZ} is before {before:%Y-%m-%dT%H:%M:%SZ}"
        )
    if code in _UNKNOWN_AUTHORITY:
        return "x509: certificate signed by unknown authority"
    return f"x509: {error.verify_message}"


def _hostname_error(cert: x509.Certificate, host: str) -> str:
    """crypto/x509.HostnameError.Error()."""
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns_names = sans.get_values_for_type(x509.DNSName)
        ips = [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        dns_names, ips = [], []
        common = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        if common and str(common[0].value) == host:
            return "x509: certificate relies on legacy Common Name field, use SANs instead"
    try:
        ipaddress.ip_address(host)
        is_ip = True
    except ValueError:
        is_ip = False
    if is_ip:
        if not ips:
            return (
                f"x509: cannot validate certificate for {host} "
                "because it doesn't contain any IP SANs"
            )
        valid = ", ".join(ips)
    else:
        valid = ", ".join(dns_names)
    if not valid:
        return f"x509: certificate is not valid for any names, but wanted to match {host}"
    return f"x509: certificate is valid for {valid}, not {host}"


async def _peer_certificate(target: _Target, timeout: float) -> x509.Certificate | None:
    """The server's certificate, fetched without verification, to word a verification error."""
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    probe.check_hostname = False
    probe.verify_mode = ssl.CERT_NONE
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(
                target.host,
                target.port,
                ssl=probe,
                server_hostname=target.server_hostname or target.host,
            )
    except (OSError, TimeoutError):
        return None
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        return x509.load_der_x509_certificate(der) if der else None
    except ValueError:
        return None
    finally:
        writer.close()


# ----- the admission chain -----------------------------------------------------------------


class Admission:
    """The webhook admission chain of the simulator's API server.

    ``reader`` is the server's read access (configurations, Namespaces, Services,
    EndpointSlices are read on every request, so a change takes effect at once, as with the
    real server's informers). One aiohttp session, created on first use, carries every call;
    :meth:`close` releases it.
    """

    def __init__(self, reader: ObjectReader) -> None:
        self._reader = reader
        self._session: aiohttp.ClientSession | None = None
        self._contexts: dict[str, ssl.SSLContext] = {}

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None),
                trust_env=False,
                connector=aiohttp.TCPConnector(limit=0),
            )
        return self._session

    def _hooks(self, kind: tuple[str, str]) -> list[Webhook]:
        return webhooks_from(self._reader.list_objects(*kind))

    # -- mutating --

    async def mutate(self, attrs: AdmissionAttributes) -> Obj:
        """Run the mutating webhooks; return the object with every patch applied.

        For a request without an object (DELETE, CONNECT) the webhooks are still called (they
        may deny it) and an empty dict is returned. Raises :class:`AdmissionDenied`.
        """
        current = attrs.obj
        if is_exempt(attrs):
            return current if current is not None else {}
        hooks = self._hooks(MUTATING)
        reinvocable: set[str] = set()  # IfNeeded webhooks called since the last change
        reinvoke: set[str] = set()  # webhooks to call in the second round
        for round_ in (0, 1):
            if round_ == 1 and not reinvoke:
                break
            for hook in hooks:
                if not should_call(hook, attrs, current, self._reader):
                    continue
                if round_ == 1 and hook.uid not in reinvoke:
                    continue
                changed = False
                try:
                    changed, current = await self._call_mutating(hook, attrs, current)
                except _CallFailure as failure:
                    self._fail(hook, failure)
                if changed:
                    reinvoke |= reinvocable
                    reinvocable = set()
                if hook.reinvocation_policy == "IfNeeded":
                    reinvocable.add(hook.uid)
        return current if current is not None else {}

    async def _call_mutating(
        self, hook: Webhook, attrs: AdmissionAttributes, obj: Obj | None
    ) -> tuple[bool, Obj | None]:
        reply = await self._call(hook, attrs, obj, mutating=True)
        if not reply.allowed:
            raise denial(hook.name, reply.result)
        if not reply.patch:
            return False, obj
        try:
            operations = json.loads(reply.patch)
        except ValueError as error:
            raise _CallFailure(
                hook.name, f"received undecodable patch in webhook response: {error}"
            ) from None
        if not isinstance(operations, list):
            raise _CallFailure(
                hook.name,
                "received undecodable patch in webhook response: json: cannot unmarshal "
                f"{type(operations).__name__} into Go value of type jsonpatch.Patch",
            )
        if not operations:
            return False, obj
        if obj is None:
            raise _internal_error(
                f"admission webhook {_q(hook.name)} attempted to modify the object, "
                "which is not supported for this operation"
            )
        if reply.patch_type != "JSONPatch":
            raise _CallFailure(hook.name, f"unsupported patch type {_q(reply.patch_type)}")
        before = _typed(obj, attrs)
        try:
            patched = apply_json_patch(before, operations)
        except JsonPatchError as error:
            raise _internal_error(str(error)) from None
        if not isinstance(patched, dict):
            raise _internal_error("Object 'Kind' is missing in patched object")
        return patched != before, patched

    # -- validating --

    async def validate(self, attrs: AdmissionAttributes) -> None:
        """Run the validating webhooks in parallel; raise the first error in webhook order."""
        if is_exempt(attrs):
            return
        hooks = [
            h for h in self._hooks(VALIDATING) if should_call(h, attrs, attrs.obj, self._reader)
        ]
        if not hooks:
            return
        outcomes = await asyncio.gather(
            *(self._validate_one(hook, attrs) for hook in hooks), return_exceptions=True
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _validate_one(self, hook: Webhook, attrs: AdmissionAttributes) -> None:
        try:
            reply = await self._call(hook, attrs, attrs.obj, mutating=False)
        except _CallFailure as failure:
            self._fail(hook, failure)
            return
        if not reply.allowed:
            raise denial(hook.name, reply.result)

    # -- calling --

    def _fail(self, hook: Webhook, failure: _CallFailure) -> None:
        if hook.ignore_failures:
            log.warning(
                "event=webhook_failed_open webhook=%s configuration=%s error=%s",
                _q(hook.name),
                _q(hook.configuration),
                _q(failure.message),
            )
            return
        log.warning(
            "event=webhook_failed_closed webhook=%s configuration=%s error=%s",
            _q(hook.name),
            _q(hook.configuration),
            _q(failure.message),
        )
        raise _internal_error(failure.message) from None

    async def _call(
        self, hook: Webhook, attrs: AdmissionAttributes, obj: Obj | None, *, mutating: bool
    ) -> _Reply:
        if attrs.dry_run:
            if hook.side_effects is None:
                raise _CallFailure(hook.name, "Webhook SideEffects is nil")
            if hook.side_effects not in ("None", "NoneOnDryRun"):
                raise AdmissionDenied(
                    400,
                    "BadRequest",
                    f"admission webhook {_q(hook.name)} does not support dry run",
                )
        version = next((v for v in hook.review_versions if v in _REVIEW_VERSIONS), None)
        if version is None:
            raise _CallFailure(
                hook.name,
                "could not create admission objects: webhook does not accept known "
                "AdmissionReview versions (v1, v1beta1)",
            )
        uid = str(uuid.uuid4())
        body = json.dumps(build_review(uid=uid, version=version, attrs=attrs, obj=obj)).encode()
        context = self._ssl_context(hook)
        shown = self._shown_url(hook)
        failed_to_call = f"failed to call webhook: Post {_q(shown)}"
        try:
            target = self._target(hook, shown)
        except ResolveError as error:
            raise _CallFailure(hook.name, f"{failed_to_call}: {error}") from None
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json, */*",
            "User-Agent": _USER_AGENT,
        }
        if target.host_header:
            headers["Host"] = target.host_header
        try:
            async with asyncio.timeout(hook.timeout_seconds):
                status, content_type, payload = await self._post(target, body, headers, context)
        except TimeoutError:
            raise _CallFailure(hook.name, f"{failed_to_call}: context deadline exceeded") from None
        except aiohttp.ClientConnectorCertificateError as error:
            cause = await _certificate_cause(error, target)
            raise _CallFailure(hook.name, f"{failed_to_call}: {cause}") from None
        except (aiohttp.ClientError, ssl.SSLError, OSError) as error:
            cause = _connection_cause(error, target)
            raise _CallFailure(hook.name, f"{failed_to_call}: {cause}") from None
        if not 200 <= status <= 206:
            text = _status_text(status, payload, content_type)
            raise _CallFailure(hook.name, f"failed to call webhook: {text}")
        try:
            review = json.loads(payload)
        except ValueError as error:
            raise _CallFailure(
                hook.name,
                f"failed to call webhook: couldn't get version/kind; json parse error: {error}",
            ) from None
        try:
            reply = verify_reply(review=review, uid=uid, version=version, mutating=mutating)
        except _DecodeError as error:
            raise _CallFailure(hook.name, f"failed to call webhook: {error}") from None
        except ValueError as error:
            raise _CallFailure(hook.name, f"received invalid webhook response: {error}") from None
        for warning in reply.warnings:
            log.info("event=webhook_warning webhook=%s warning=%s", _q(hook.name), _q(warning))
        return reply

    async def _post(
        self, target: _Target, body: bytes, headers: dict[str, str], context: ssl.SSLContext
    ) -> tuple[int, str, bytes]:
        """POST once; again if a kept-alive connection turns out closed (as Go's transport)."""
        for attempt in (1, 2):
            try:
                async with self._client().post(
                    target.url,
                    data=body,
                    headers=headers,
                    ssl=context,
                    server_hostname=target.server_hostname,
                    allow_redirects=False,
                ) as response:
                    payload = await response.read()
                    return response.status, response.headers.get("Content-Type", ""), payload
            except aiohttp.ServerDisconnectedError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _ssl_context(self, hook: Webhook) -> ssl.SSLContext:
        bundle = str(hook.client_config.get("caBundle") or "")
        context = self._contexts.get(bundle)
        if context is not None:
            return context
        failure = _CallFailure(
            hook.name,
            "could not get REST client: unable to load root certificates: "
            "unable to parse bytes as PEM block",
        )
        if bundle:
            try:
                pem = base64.b64decode(bundle, validate=True).decode("ascii")
            except (binascii.Error, ValueError):
                raise failure from None
            if "-----BEGIN CERTIFICATE-----" not in pem:
                raise failure
            try:
                context = ssl.create_default_context(cadata=pem)
            except (ssl.SSLError, ValueError):
                raise failure from None
        else:
            context = ssl.create_default_context()
        if len(self._contexts) >= 64:  # rotated bundles: keep the cache bounded
            self._contexts.clear()
        # Go's verifier: no fallback to the subject's Common Name, no X509_STRICT extras.
        context.hostname_checks_common_name = False
        context.verify_flags &= ~getattr(ssl, "VERIFY_X509_STRICT", 0)
        self._contexts[bundle] = context
        return context

    def _shown_url(self, hook: Webhook) -> str:
        config = hook.client_config
        url = config.get("url")
        service = config.get("service")
        timeout = f"timeout={hook.timeout_seconds}s"
        if isinstance(url, str) and url:
            return f"{url}{'&' if '?' in url else '?'}{timeout}"
        if isinstance(service, dict):
            name = str(service.get("name") or "")
            namespace = str(service.get("namespace") or "")
            port = service.get("port") or 443
            path = str(service.get("path") or "")
            return f"https://{name}.{namespace}.svc:{port}{path}?{timeout}"
        raise _CallFailure(
            hook.name,
            "could not get REST client: webhook configuration must have either service or URL",
        )

    def _target(self, hook: Webhook, shown: str) -> _Target:
        service = hook.client_config.get("service")
        if hook.client_config.get("url") or not isinstance(service, dict):
            parts = urllib.parse.urlsplit(shown)
            default_port = 443 if parts.scheme == "https" else 80
            return _Target(
                shown, shown, parts.hostname or "", parts.port or default_port, None, None
            )
        name = str(service.get("name") or "")
        namespace = str(service.get("namespace") or "")
        port = int(service.get("port") or 443)
        address, endpoint_port = resolve_service(
            self._reader, namespace=namespace, name=name, port=port
        )
        host = f"[{address}]" if ":" in address else address
        query = urllib.parse.urlsplit(shown).query
        url = f"https://{host}:{endpoint_port}{service.get('path') or '/'}?{query}"
        server_name = f"{name}.{namespace}.svc"
        return _Target(shown, url, address, endpoint_port, server_name, f"{server_name}:{port}")


async def _certificate_cause(
    error: aiohttp.ClientConnectorCertificateError, target: _Target
) -> str:
    verification = error.certificate_error
    host = target.server_hostname or target.host
    if not isinstance(verification, ssl.SSLCertVerificationError):
        return f"tls: failed to verify certificate: x509: {verification}"
    cert = None
    if verification.verify_code in (9, 10, 62, 64):
        cert = await _peer_certificate(target, timeout=2.0)
    return f"tls: failed to verify certificate: {_x509_text(verification, host, cert)}"


def _connection_cause(error: BaseException, target: _Target) -> str:
    """Go's net/http wording for a failed connection or exchange."""
    host = f"[{target.host}]" if ":" in target.host else target.host
    address = f"{host}:{target.port}"
    if isinstance(error, aiohttp.ClientConnectorDNSError):
        return f"dial tcp: lookup {target.host}: no such host"
    os_error: BaseException = error
    if isinstance(error, aiohttp.ClientConnectorError):
        os_error = error.os_error
    if isinstance(os_error, ssl.SSLError):
        reason = str(os_error.reason or "")
        if reason == "WRONG_VERSION_NUMBER":
            return "tls: first record does not look like a TLS handshake"
        if "_ALERT_" in reason:
            alert = reason.split("_ALERT_", 1)[1].replace("_", " ").lower()
            return f"remote error: tls: {alert}"
        return f"tls: {reason.replace('_', ' ').lower() or os_error}"
    if isinstance(os_error, ConnectionRefusedError):
        return f"dial tcp {address}: connect: connection refused"
    if isinstance(error, aiohttp.ClientConnectorError):
        text = (error.os_error.strerror or str(error.os_error)).lower()
        return f"dial tcp {address}: connect: {text}"
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return "EOF"
    if isinstance(error, aiohttp.ClientPayloadError):
        return "unexpected EOF"
    if isinstance(error, ConnectionResetError):
        return f"read tcp {address}: read: connection reset by peer"
    return str(error) or type(error).__name__
