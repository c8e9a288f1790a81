"""What the API server serves: built-in resources, and custom resources added by CRDs.

Each served resource is a ``ResourceInfo``: its ``ResourceKey`` (group, version, plural, kind,
scope) plus what discovery advertises (singular, short names, categories, subresources) and
what the write path needs (does it carry ``metadata.generation``, where is it stored). Two
served resources may share one storage, as the real server does for ``v1`` Events and
``events.k8s.io/v1`` Events.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from directlb.sim.contracts import Obj, ResourceKey, StatusError

VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ScalePaths:
    """Where a ``/scale`` subresource reads and writes (JSON paths, as CRDs declare them)."""

    spec_replicas: str = ".spec.replicas"
    status_replicas: str = ".status.replicas"
    label_selector: str | None = None


@dataclass(frozen=True)
class ResourceInfo:
    key: ResourceKey
    singular: str
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    status: bool = False
    scale: ScalePaths | None = None
    generation: bool = False
    # The (group, resource) whose objects this resource reads and writes; None: its own.
    storage: tuple[str, str] | None = None
    crd: bool = False
    verbs: tuple[str, ...] = VERBS
    # A custom resource's version entry from its CRD (schema, printer columns).
    crd_version: Obj | None = field(default=None, compare=False, hash=False)

    @property
    def schema(self) -> Obj | None:
        """The ``openAPIV3Schema`` a custom resource is validated against."""
        if self.crd_version is None:
            return None
        schema = (self.crd_version.get("schema") or {}).get("openAPIV3Schema")
        return schema if isinstance(schema, dict) else None

    @property
    def printer_columns(self) -> list[Obj] | None:
        if self.crd_version is None:
            return None
        return list(self.crd_version.get("additionalPrinterColumns") or [])

    @property
    def store_key(self) -> tuple[str, str]:
        return self.storage or (self.key.group, self.key.resource)

    @property
    def subresources(self) -> tuple[str, ...]:
        return tuple(s for s, on in (("status", self.status), ("scale", self.scale)) if on)


def _info(
    group: str,
    version: str,
    resource: str,
    kind: str,
    *,
    namespaced: bool = True,
    singular: str | None = None,
    **extra: object,
) -> ResourceInfo:
    key = ResourceKey(group, version, resource, kind, namespaced)
    return ResourceInfo(key=key, singular=singular or kind.lower(), **extra)  # type: ignore[arg-type]


DEPLOYMENT_SCALE = ScalePaths(label_selector=".status.selector")


def builtin_resources() -> list[ResourceInfo]:
    """The resources issue 4 lists, with the discovery details kubectl relies on."""
    return [
        _info(
            "", "v1", "namespaces", "Namespace", namespaced=False, short_names=("ns",), status=True
        ),
        _info("", "v1", "nodes", "Node", namespaced=False, short_names=("no",), status=True),
        _info("", "v1", "pods", "Pod", short_names=("po",), categories=("all",), status=True),
        _info(
            "", "v1", "services", "Service", short_names=("svc",), categories=("all",), status=True
        ),
        _info("", "v1", "secrets", "Secret"),
        _info("", "v1", "configmaps", "ConfigMap", short_names=("cm",)),
        _info("", "v1", "events", "Event", short_names=("ev",)),
        _info("", "v1", "serviceaccounts", "ServiceAccount", short_names=("sa",)),
        _info("", "v1", "endpoints", "Endpoints", short_names=("ep",), singular="endpoints"),
        _info(
            "apps",
            "v1",
            "deployments",
            "Deployment",
            short_names=("deploy",),
            categories=("all",),
            status=True,
            scale=DEPLOYMENT_SCALE,
            generation=True,
        ),
        _info(
            "apps",
            "v1",
            "replicasets",
            "ReplicaSet",
            short_names=("rs",),
            categories=("all",),
            status=True,
            scale=DEPLOYMENT_SCALE,
            generation=True,
        ),
        _info("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", generation=True),
        _info(
            "networking.k8s.io",
            "v1",
            "ingresses",
            "Ingress",
            short_names=("ing",),
            status=True,
            generation=True,
        ),
        _info(
            "networking.k8s.io",
            "v1",
            "ingressclasses",
            "IngressClass",
            namespaced=False,
            generation=True,
        ),
        _info("coordination.k8s.io", "v1", "leases", "Lease"),
        _info(
            "admissionregistration.k8s.io",
            "v1",
            "mutatingwebhookconfigurations",
            "MutatingWebhookConfiguration",
            namespaced=False,
            categories=("api-extensions",),
            generation=True,
        ),
        _info(
            "admissionregistration.k8s.io",
            "v1",
            "validatingwebhookconfigurations",
            "ValidatingWebhookConfiguration",
            namespaced=False,
            categories=("api-extensions",),
            generation=True,
        ),
        _info(
            "events.k8s.io", "v1", "events", "Event", short_names=("ev",), storage=("", "events")
        ),
        _info(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            namespaced=False,
            short_names=("crd", "crds"),
            categories=("api-extensions",),
            status=True,
            generation=True,
        ),
    ]


# Groups in the order discovery lists them (the real server orders by priority).
GROUP_ORDER = (
    "",
    "apps",
    "events.k8s.io",
    "discovery.k8s.io",
    "networking.k8s.io",
    "coordination.k8s.io",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
)


@dataclass
class Registry:
    """Lookup of served resources by URL parts, kind, or storage; CRDs add and remove theirs."""

    resources: dict[tuple[str, str, str], ResourceInfo] = field(default_factory=dict)

    @classmethod
    def default(cls) -> Registry:
        registry = cls()
        for info in builtin_resources():
            registry.add(info)
        return registry

    def add(self, info: ResourceInfo) -> None:
        self.resources[(info.key.group, info.key.version, info.key.resource)] = info

    def remove_group_resource(self, group: str, resource: str) -> None:
        for k in [k for k in self.resources if k[0] == group and k[2] == resource]:
            del self.resources[k]

    def get(self, group: str, version: str, resource: str) -> ResourceInfo | None:
        return self.resources.get((group, version, resource))

    def find(self, group: str, resource: str) -> ResourceInfo | None:
        """Any served version of group/resource (the first one: the storage version)."""
        for (g, _, r), info in self.resources.items():
            if g == group and r == resource:
                return info
        return None

    def by_kind(self, api_version: str, kind: str) -> ResourceInfo | None:
        group, _, version = api_version.rpartition("/")
        for info in self.resources.values():
            key = info.key
            if key.group == group and key.version == version and key.kind == kind:
                return info
        return None

    def versions(self, group: str) -> list[str]:
        seen: list[str] = []
        for g, v, _ in self.resources:
            if g == group and v not in seen:
                seen.append(v)
        return seen

    def groups(self) -> list[str]:
        present = {g for g, _, _ in self.resources if g}
        ordered = [g for g in GROUP_ORDER if g in present]
        return ordered + sorted(present - set(ordered))

    def in_group_version(self, group: str, version: str) -> list[ResourceInfo]:
        return [i for (g, v, _), i in self.resources.items() if g == group and v == version]

    def sharing_storage(self, store_key: tuple[str, str]) -> list[ResourceInfo]:
        return [i for i in self.resources.values() if i.store_key == store_key]


# ----- CustomResourceDefinitions --------------------------------------------------------


def crd_resources(crd: Obj) -> list[ResourceInfo]:
    """The resources a CRD serves: one per served version, storage version first."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group = str(spec.get("group", ""))
    plural = str(names.get("plural", ""))
    kind = str(names.get("kind", ""))
    if not group or not plural or not kind:
        raise StatusError(422, "Invalid", "spec.group, spec.names.plural and kind are required")
    versions = sorted(
        (v for v in spec.get("versions") or [] if v.get("served", True)),
        key=lambda v: not v.get("storage", False),
    )
    return [
        _crd_info(
            crd_spec=spec,
            version=v,
            key=ResourceKey(group, str(v["name"]), plural, kind, spec.get("scope") != "Cluster"),
        )
        for v in versions
    ]


def _crd_info(*, crd_spec: Obj, version: Obj, key: ResourceKey) -> ResourceInfo:
    names = crd_spec.get("names") or {}
    subresources = version.get("subresources") or crd_spec.get("subresources") or {}
    scale_spec = subresources.get("scale")
    scale = None
    if isinstance(scale_spec, dict):
        scale = ScalePaths(
            spec_replicas=str(scale_spec.get("specReplicasPath", ".spec.replicas")),
            status_replicas=str(scale_spec.get("statusReplicasPath", ".status.replicas")),
            label_selector=scale_spec.get("labelSelectorPath"),
        )
    return ResourceInfo(
        key=key,
        singular=str(names.get("singular") or key.kind.lower()),
        short_names=tuple(names.get("shortNames") or ()),
        categories=tuple(names.get("categories") or ()),
        status="status" in subresources,
        scale=scale,
        generation=True,
        crd=True,
        crd_version=version,
    )
