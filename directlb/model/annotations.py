"""Pure: the annotations (and ``loadBalancerClass``) that steer a Service, parsed and validated.

TKE's own names are used wherever TKE has the feature, so manifests written for TKE work here:

* ``service.cloud.tencent.com/direct-access``: ``"true"`` binds pod IPs directly (direct mode),
  ``"false"`` (or absent) binds nodes. Anything else is an ``InvalidDirectAccess`` error.
* ``service.kubernetes.io/tke-existed-lbid``: adopt this existing CLB (``lb-…``) instead of
  creating one; we never delete it, only the listeners we made. Malformed:
  ``InvalidExistingLoadBalancerId``. (Whether the CLB exists is for the controller to find out.)
* ``service.kubernetes.io/qcloud-loadbalancer-internal-subnetid``: create an INTERNAL (VPC-only)
  CLB in this subnet (``subnet-…``). Empty or malformed: ``InvalidInternalSubnet``. Ignored when
  adopting, since an adopted CLB already has its network type.
* ``spec.loadBalancerClass``: we take Services with no class or with :data:`LOAD_BALANCER_CLASS`.
* Pod annotation ``tke.cloud.tencent.com/networks`` containing ``tke-route-eni``: the pod runs in
  VPC-CNI ENI mode, so its IP is routable from the CLB.

Annotations arrive as ``(key, value)`` pairs, not as a dict, so that the values crossing into
the model are immutable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from directlb.model.problems import Problem, Severity

Annotations = tuple[tuple[str, str], ...]

DIRECT_ACCESS = "service.cloud.tencent.com/direct-access"
EXISTING_LB_ID = "service.kubernetes.io/tke-existed-lbid"
INTERNAL_SUBNET_ID = "service.kubernetes.io/qcloud-loadbalancer-internal-subnetid"
POD_NETWORKS = "tke.cloud.tencent.com/networks"
ENI_NETWORK = "tke-route-eni"
LOAD_BALANCER_CLASS = "directlb.io/clb"

_LB_ID = re.compile(r"lb-[0-9a-z]+")
_SUBNET_ID = re.compile(r"subnet-[0-9a-z]+")


def annotation(annotations: Annotations, key: str) -> str | None:
    """The value of ``key``, or None if absent (the last one wins, as in a JSON object)."""
    found: str | None = None
    for k, v in annotations:
        if k == key:
            found = v
    return found


@dataclass(frozen=True)
class LoadBalancerAnnotations:
    """What a Service's or an Ingress's annotations ask for, once validated."""

    direct: bool = False
    existing_lb_id: str = ""
    internal_subnet_id: str = ""


# Services and Ingresses ask for the same three things under different keys.
ServiceAnnotations = LoadBalancerAnnotations


def parse_load_balancer_annotations(
    annotations: Annotations,
    *,
    direct_access: str,
    existing_lb_id: str,
    internal_subnet_id: str,
) -> tuple[LoadBalancerAnnotations, tuple[Problem, ...]]:
    """Parse and validate the three keys; every problem found is returned (none is raised).

    On a problem the field keeps its default, and the problem (severity ``ERROR``) tells the
    controller not to act on it: guessing a mode or a load balancer could swap every backend
    or create a CLB nobody asked for.
    """
    problems: list[Problem] = []

    direct = False
    raw = annotation(annotations, direct_access)
    if raw is not None:
        if raw == "true":
            direct = True
        elif raw != "false":
            problems.append(
                Problem(
                    "InvalidDirectAccess",
                    f'annotation {direct_access} is "{raw}": set it to "true" (bind pod IPs '
                    'directly) or "false" (bind nodes), or remove it',
                    Severity.ERROR,
                )
            )

    existing = ""
    raw = annotation(annotations, existing_lb_id)
    if raw is not None:
        if _LB_ID.fullmatch(raw.strip()):
            existing = raw.strip()
        else:
            problems.append(
                Problem(
                    "InvalidExistingLoadBalancerId",
                    f'annotation {existing_lb_id} is "{raw}": set it to the id of an existing '
                    "CLB (lb-xxxxxxxx), or remove it to have one created",
                    Severity.ERROR,
                )
            )

    subnet = ""
    raw = annotation(annotations, internal_subnet_id)
    if raw is not None and not existing:
        if _SUBNET_ID.fullmatch(raw.strip()):
            subnet = raw.strip()
        else:
            problems.append(
                Problem(
                    "InvalidInternalSubnet",
                    f'annotation {internal_subnet_id} is "{raw}": an internal CLB needs the id '
                    "of a subnet of the cluster's VPC (subnet-xxxxxxxx); remove the annotation "
                    "for a public CLB",
                    Severity.ERROR,
                )
            )

    return (
        LoadBalancerAnnotations(direct=direct, existing_lb_id=existing, internal_subnet_id=subnet),
        tuple(problems),
    )


def parse_service_annotations(
    annotations: Annotations,
) -> tuple[LoadBalancerAnnotations, tuple[Problem, ...]]:
    """A Service's annotations (TKE's keys), parsed and validated."""
    return parse_load_balancer_annotations(
        annotations,
        direct_access=DIRECT_ACCESS,
        existing_lb_id=EXISTING_LB_ID,
        internal_subnet_id=INTERNAL_SUBNET_ID,
    )


def is_eni_pod(annotations: Annotations) -> bool:
    """True if the pod runs in VPC-CNI ENI mode (its IP is routable from the CLB)."""
    raw = annotation(annotations, POD_NETWORKS)
    if raw is None:
        return False
    return ENI_NETWORK in (part.strip() for part in raw.split(","))


def is_our_class(load_balancer_class: str | None) -> bool:
    """Services without a class are ours (we are the cluster's default); so is our own class."""
    return load_balancer_class is None or load_balancer_class == LOAD_BALANCER_CLASS
