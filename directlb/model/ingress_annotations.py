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

from directlb.model.annotations import (
    Annotations,
    LoadBalancerAnnotations,
    parse_load_balancer_annotations,
)
from directlb.model.problems import Problem

INGRESS_CLASS_ANNOTATION = "kubernetes.io/ingress.class"
INGRESS_CLASS = "qcloud"
INGRESS_CONTROLLER = "directlb.io/ingress-controller"
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
INGRESS_DIRECT_ACCESS = "ingress.cloud.tencent.com/direct-access"
INGRESS_EXISTING_LB_ID = "kubernetes.io/ingress.existLbId"
INGRESS_SUBNET_ID = "kubernetes.io/ingress.subnetId"
TLS_CERT_KEY = "qcloud_cert_id"


IngressAnnotations = LoadBalancerAnnotations


def parse_ingress_annotations(
    annotations: Annotations,
) -> tuple[LoadBalancerAnnotations, tuple[Problem, ...]]:
    """An Ingress's annotations (TKE's Ingress keys), parsed and validated like a Service's."""
    return parse_load_balancer_annotations(
        annotations,
        direct_access=INGRESS_DIRECT_ACCESS,
        existing_lb_id=INGRESS_EXISTING_LB_ID,
        internal_subnet_id=INGRESS_SUBNET_ID,
    )
