"""Every Kubernetes API access the controller makes, or will make, declared in one place.

This list is the source of truth for the RBAC in ``deploy/rbac.yaml`` (ClusterRole for the
cluster-wide accesses, Role in the controller's own namespace for the rest) and for the table in
``docs/deploy.md``. ``tests/unit/test_deploy.py`` keeps the three in step: every declared access
is granted, nothing is granted that is not declared, and every lightkube call found in the
controller packages is declared. When code starts making a new call, add a line here (with the
reason) and to ``deploy/rbac.yaml``; the test says which one is missing.

Accesses planned by the issues but not written yet are declared already, with the issue named in
the reason, so that the deployment describes the controller the issues specify. Whatever is not
here the controller must not need: least privilege is the point.

Regenerate the docs table with ``python -m directlb.kube.permissions``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal

from lightkube.models.rbac_v1 import PolicyRule

Verb = Literal["get", "list", "watch", "create", "update", "patch", "delete"]

#: The namespace the controller is deployed in (``deploy/namespace.yaml``); the Lease and the
#: webhook certificate Secret live there.
NAMESPACE = "directlb-system"
#: coordination.k8s.io/v1 Lease used for leader election.
LEASE_NAME = "directlb-controller"
#: The MutatingWebhookConfiguration the webhook guardian owns (issue 8).
WEBHOOK_CONFIGURATION_NAME = "directlb-pod-readiness"
#: The Secret holding the webhook's CA and serving certificate (issue 8).
WEBHOOK_SECRET_NAME = "directlb-webhook-tls"
#: The Service in front of every replica's webhook server (``deploy/service.yaml``).
WEBHOOK_SERVICE_NAME = "directlb-webhook"


class Scope(enum.Enum):
    """Where an access is granted."""

    CLUSTER = "cluster"  # ClusterRole + ClusterRoleBinding: every namespace, or cluster-scoped
    OWN_NAMESPACE = "own namespace"  # Role + RoleBinding in NAMESPACE only


@dataclass(frozen=True)
class ResourceAccess:
    """Verbs on one resource (or subresource) of one API group, with why we need them."""

    group: str  # "" is the core group
    resource: str  # plural, as in RBAC: "pods", "leases"
    verbs: tuple[Verb, ...]
    scope: Scope
    reason: str
    subresource: str | None = None  # "status"
    resource_names: tuple[str, ...] = ()  # empty: any name

    @property
    def rbac_resource(self) -> str:
        """The name RBAC uses: ``pods`` or ``pods/status``."""
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


@dataclass(frozen=True)
class NonResourceAccess:
    """A GET on a URL outside the resource API (``/version``)."""

    path: str
    verbs: tuple[Verb, ...]
    reason: str
    scope: Scope = Scope.CLUSTER  # non-resource URLs exist only in ClusterRoles


Access = ResourceAccess | NonResourceAccess

_INFORMER = "informer cache (directlb/kube/informer.py)"

PERMISSIONS: tuple[Access, ...] = (
    # --- leader election (issue 6), directlb/kube/leader.py ---
    ResourceAccess(
        group="coordination.k8s.io",
        resource="leases",
        verbs=("get", "create", "update"),
        scope=Scope.OWN_NAMESPACE,
        reason="leader election: read, create and renew/release (PUT) the Lease "
        "(directlb/kube/leader.py)",
    ),
    # --- what the reconcilers read (issues 6, 7, 9) ---
    ResourceAccess(
        group="",
        resource="services",
        verbs=("list", "watch"),
        scope=Scope.CLUSTER,
        reason=f"{_INFORMER}: LoadBalancer Services, and Services referenced by Ingresses",
    ),
    ResourceAccess(
        group="",
        resource="pods",
        verbs=("list", "watch"),
        scope=Scope.CLUSTER,
        reason=f"{_INFORMER}: direct-mode backends, ENI annotation, readiness gates",
    ),
    ResourceAccess(
        group="discovery.k8s.io",
        resource="endpointslices",
        verbs=("list", "watch"),
        scope=Scope.CLUSTER,
        reason=f"{_INFORMER}: which pods back a Service and whether they are ready/serving",
    ),
    ResourceAccess(
        group="",
        resource="nodes",
        verbs=("list", "watch"),
        scope=Scope.CLUSTER,
        reason=f"{_INFORMER}: NodePort and Local mode backends (node IPs, readiness, cordon)",
    ),
    ResourceAccess(
        group="networking.k8s.io",
        resource="ingresses",
        verbs=("list", "watch"),
        scope=Scope.CLUSTER,
        reason=f"{_INFORMER}: layer-7 rules (issue 9)",
    ),
    ResourceAccess(
        group="networking.k8s.io",
        resource="ingressclasses",
        verbs=("list", "watch"),
        scope=Scope.CLUSTER,
        reason=f"{_INFORMER}: which ingressClassName is ours (issue 9)",
    ),
    ResourceAccess(
        group="",
        resource="secrets",
        verbs=("get",),
        scope=Scope.CLUSTER,
        reason="Ingress spec.tls Secrets: read the CLB certificate id (qcloud_cert_id, issue 9)",
    ),
    # --- what the reconcilers write back (issues 7, 8, 9) ---
    ResourceAccess(
        group="",
        resource="services",
        verbs=("get", "patch"),
        scope=Scope.CLUSTER,
        reason="finalizer and service.kubernetes.io/loadbalance-id annotation (issue 7); get: "
        "a finalizer patch refused with 409 (resourceVersion precondition) reads it afresh",
    ),
    ResourceAccess(
        group="",
        resource="services",
        subresource="status",
        verbs=("patch",),
        scope=Scope.CLUSTER,
        reason="status.loadBalancer.ingress = the CLB VIP (issue 7)",
    ),
    ResourceAccess(
        group="networking.k8s.io",
        resource="ingresses",
        verbs=("get", "patch"),
        scope=Scope.CLUSTER,
        reason="finalizer and load-balancer id annotation (issue 9); get: a finalizer patch "
        "refused with 409 (resourceVersion precondition) reads it afresh",
    ),
    ResourceAccess(
        group="networking.k8s.io",
        resource="ingresses",
        subresource="status",
        verbs=("patch",),
        scope=Scope.CLUSTER,
        reason="status.loadBalancer.ingress = the CLB VIP (issue 9)",
    ),
    ResourceAccess(
        group="",
        resource="pods",
        subresource="status",
        verbs=("patch",),
        scope=Scope.CLUSTER,
        reason="readiness-gate condition, strategic merge with a UID precondition (issue 8)",
    ),
    ResourceAccess(
        group="",
        resource="events",
        verbs=("create", "patch"),
        scope=Scope.CLUSTER,
        reason="Events on Services, Ingresses and Pods; patch bumps the count of a repeat "
        "(issue 6)",
    ),
    # --- webhook guardian (issue 8) ---
    ResourceAccess(
        group="admissionregistration.k8s.io",
        resource="mutatingwebhookconfigurations",
        verbs=("list", "watch"),
        scope=Scope.CLUSTER,
        reason="webhook guardian watches its configuration to repair it within seconds "
        "(directlb/webhook/guardian.py)",
    ),
    ResourceAccess(
        group="admissionregistration.k8s.io",
        resource="mutatingwebhookconfigurations",
        verbs=("create",),
        scope=Scope.CLUSTER,
        reason="webhook guardian recreates a deleted configuration (RBAC cannot limit create "
        "by name)",
    ),
    ResourceAccess(
        group="admissionregistration.k8s.io",
        resource="mutatingwebhookconfigurations",
        verbs=("get", "update"),
        scope=Scope.CLUSTER,
        resource_names=(WEBHOOK_CONFIGURATION_NAME,),
        reason="webhook guardian reads and rewrites (caBundle, rules, service) only its own "
        "configuration",
    ),
    ResourceAccess(
        group="",
        resource="secrets",
        verbs=("get", "list", "watch", "create", "update"),
        scope=Scope.OWN_NAMESPACE,
        reason="webhook CA and serving certificate: every replica watches it (TLS reload), "
        "the guardian creates and rotates it (directlb/webhook/guardian.py)",
    ),
    # --- cluster version check (issue 7) ---
    NonResourceAccess(
        path="/version",
        verbs=("get",),
        reason="direct access needs Kubernetes >= 1.12 (issue 7)",
    ),
)


def policy_rules(scope: Scope) -> list[PolicyRule]:
    """The RBAC rules granting exactly the declared accesses of ``scope``, one rule each."""
    rules: list[PolicyRule] = []
    for access in PERMISSIONS:
        if access.scope is not scope:
            continue
        if isinstance(access, NonResourceAccess):
            rules.append(PolicyRule(nonResourceURLs=[access.path], verbs=list(access.verbs)))
        else:
            rules.append(
                PolicyRule(
                    apiGroups=[access.group],
                    resources=[access.rbac_resource],
                    resourceNames=list(access.resource_names) or None,
                    verbs=list(access.verbs),
                )
            )
    return rules


def markdown_table() -> str:
    """The RBAC table of ``docs/deploy.md`` (a test keeps the two identical)."""
    lines = [
        "| API group | resource | verbs | scope | why |",
        "|---|---|---|---|---|",
    ]
    for access in PERMISSIONS:
        if isinstance(access, NonResourceAccess):
            group, resource = "(non-resource URL)", f"`{access.path}`"
        else:
            group = f"`{access.group}`" if access.group else "core"
            resource = f"`{access.rbac_resource}`"
            if access.resource_names:
                names = ", ".join(f"`{name}`" for name in access.resource_names)
                resource += f" (only {names})"
        verbs = ", ".join(access.verbs)
        lines.append(f"| {group} | {resource} | {verbs} | {access.scope.value} | {access.reason} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
