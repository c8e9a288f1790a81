"""The MutatingWebhookConfiguration ``directlb-pod-readiness``, as a lightkube object.

One webhook, for pod CREATE only. ``failurePolicy: Ignore`` by default: if the webhook is down,
pods are still created (without the gate, so their rolling update is unprotected, which the
controller reports), instead of a broken webhook stopping every Deployment in the cluster. The
namespaceSelector keeps kube-system and the controller's own namespace out, so the webhook can
never stand in the way of the pods that would repair it.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Literal

from lightkube.models.admissionregistration_v1 import (
    MutatingWebhook,
    RuleWithOperations,
    ServiceReference,
    WebhookClientConfig,
)
from lightkube.models.meta_v1 import LabelSelector, LabelSelectorRequirement, ObjectMeta
from lightkube.resources.admissionregistration_v1 import MutatingWebhookConfiguration

from directlb.webhook.server import PATH

NAME = "directlb-pod-readiness"
WEBHOOK_NAME = "pod-readiness.directlb.io"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
TIMEOUT_SECONDS = 5
FailurePolicy = Literal["Ignore", "Fail"]


def build_configuration(
    *,
    ca_bundle: bytes,
    controller_namespace: str,
    service: str | None = None,
    service_port: int = 443,
    url: str | None = None,
    failure_policy: FailurePolicy = "Ignore",
    excluded_namespaces: Sequence[str] = ("kube-system",),
    name: str = NAME,
    labels: dict[str, str] | None = None,
) -> MutatingWebhookConfiguration:
    """The configuration, calling the webhook Service ``service`` in ``controller_namespace``
    (in a cluster) or ``url`` (``directlb up``, a webhook outside the cluster); exactly one.

    ``ca_bundle`` is the CA certificate, PEM (it is base64-encoded here, as the API wants)."""
    if (service is None) == (url is None):
        raise ValueError("give exactly one of service and url")
    if url is not None:
        client = WebhookClientConfig(url=url, caBundle=base64.b64encode(ca_bundle).decode())
    else:
        client = WebhookClientConfig(
            service=ServiceReference(
                name=str(service), namespace=controller_namespace, path=PATH, port=service_port
            ),
            caBundle=base64.b64encode(ca_bundle).decode(),
        )
    excluded = list(dict.fromkeys([*excluded_namespaces, controller_namespace]))
    webhook = MutatingWebhook(
        name=WEBHOOK_NAME,
        admissionReviewVersions=["v1"],
        clientConfig=client,
        sideEffects="None",
        failurePolicy=failure_policy,
        timeoutSeconds=TIMEOUT_SECONDS,
        matchPolicy="Equivalent",
        reinvocationPolicy="Never",
        rules=[
            RuleWithOperations(
                operations=["CREATE"],
                apiGroups=[""],
                apiVersions=["v1"],
                resources=["pods"],
                scope="Namespaced",
            )
        ],
        namespaceSelector=LabelSelector(
            matchExpressions=[
                LabelSelectorRequirement(
                    key=NAMESPACE_NAME_LABEL, operator="NotIn", values=excluded
                )
            ]
        ),
        objectSelector=LabelSelector(),
    )
    return MutatingWebhookConfiguration(
        metadata=ObjectMeta(
            name=name, labels=dict(labels or {"app.kubernetes.io/name": "directlb"})
        ),
        webhooks=[webhook],
    )
