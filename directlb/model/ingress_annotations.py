"""Pure: the annotations and class that steer an Ingress, parsed and validated.

TKE's names, so Ingress manifests written for TKE work here (the Service ones live in
``directlb.model.annotations``; Ingress has its own keys for the same features):

* ``kubernetes.io/ingress.class: qcloud`` (the legacy annotation) or ``spec.ingressClassName``
  naming an IngressClass whose ``spec.controller`` is :data:`INGRESS_CONTROLLER`: the Ingress is
  ours. See :func:`directlb.model.ingress.is_ours` for the precedence.
* ``ingress.cloud.tencent.com/direct-access``: ``"true"`` binds pod IPs directly, ``"false"`` (or
  absent) binds nodes. Anything else is an ``InvalidDirectAccess`` error.
* ``kubernetes.io/ingress.existLbId``: adopt this existing CLB (``lb-…``); we never delete it.
  Malformed: ``InvalidExistingLoadBalancerId``.
* ``kubernetes.io/ingress.subnetId``: create an INTERNAL CLB in this subnet (``subnet-…``).
  Malformed: ``InvalidInternalSubnet``. Ignored when adopting (the CLB has its network type).
* TLS Secrets name the CLB certificate id in the data key :data:`TLS_CERT_KEY`
  (``qcloud_cert_id``); the caller reads it, the model gets ``secret name -> cert id``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from directlb.model.annotations import Annotations, annotation
from directlb.model.problems import Problem, Severity

INGRESS_CLASS_ANNOTATION = "kubernetes.io/ingress.class"
INGRESS_CLASS = "qcloud"
INGRESS_CONTROLLER = "directlb.io/ingress-controller"
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
INGRESS_DIRECT_ACCESS = "ingress.cloud.tencent.com/direct-access"
INGRESS_EXISTING_LB_ID = "kubernetes.io/ingress.existLbId"
INGRESS_SUBNET_ID = "kubernetes.io/ingress.subnetId"
TLS_CERT_KEY = "qcloud_cert_id"

_LB_ID = re.compile(r"lb-[0-9a-z]+")
_SUBNET_ID = re.compile(r"subnet-[0-9a-z]+")


@dataclass(frozen=True)
class IngressAnnotations:
    """What an Ingress's annotations ask for, once validated."""

    direct: bool = False
    existing_lb_id: str = ""
    internal_subnet_id: str = ""


def parse_ingress_annotations(
    annotations: Annotations,
) -> tuple[IngressAnnotations, tuple[Problem, ...]]:
    """Parse and validate; every problem is returned, none raised.

    As for Services, a malformed value is an ``ERROR``: guessing a mode or a CLB could swap every
    backend or create a CLB nobody asked for, so the controller leaves the CLB as it is.
    """
    problems: list[Problem] = []

    direct = False
    raw = annotation(annotations, INGRESS_DIRECT_ACCESS)
    if raw is not None:
        if raw == "true":
            direct = True
        elif raw != "false":
            problems.append(
                Problem(
                    "InvalidDirectAccess",
                    f'annotation {INGRESS_DIRECT_ACCESS} is "{raw}": set it to "true" (bind pod '
                    'IPs directly) or "false" (bind nodes), or remove it',
                    Severity.ERROR,
                )
            )

    existing = ""
    raw = annotation(annotations, INGRESS_EXISTING_LB_ID)
    if raw is not None:
        if _LB_ID.fullmatch(raw.strip()):
            existing = raw.strip()
        else:
            problems.append(
                Problem(
                    "InvalidExistingLoadBalancerId",
                    f'annotation {INGRESS_EXISTING_LB_ID} is "{raw}": set it to the id of an '
                    "existing CLB (lb-xxxxxxxx), or remove it to have one created",
                    Severity.ERROR,
                )
            )

    subnet = ""
    raw = annotation(annotations, INGRESS_SUBNET_ID)
    if raw is not None and not existing:
        if _SUBNET_ID.fullmatch(raw.strip()):
            subnet = raw.strip()
        else:
            problems.append(
                Problem(
                    "InvalidInternalSubnet",
                    f'annotation {INGRESS_SUBNET_ID} is "{raw}": an internal CLB needs the id of '
                    "a subnet of the cluster's VPC (subnet-xxxxxxxx); remove the annotation for "
                    "a public CLB",
                    Severity.ERROR,
                )
            )

    return (
        IngressAnnotations(direct=direct, existing_lb_id=existing, internal_subnet_id=subnet),
        tuple(problems),
    )
