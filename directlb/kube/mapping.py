"""From a change of one object to the keys of the objects whose reconcile it affects.

Reconcilers are keyed by Service (layer 4) or Ingress (layer 7); their inputs are other kinds.
These functions say which keys to enqueue when an input changes. They look at the old *and*
the new object: a Pod whose labels change must wake the Services that selected it before (to
drop it) as well as those that select it now (to add it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from directlb.kube.informer import Event, Store, key_of

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
BY_NAMESPACE = "namespace"
BY_BACKEND_SERVICE = "backend-service"


def _labels(obj: Any) -> dict[str, str]:
    return dict(obj.metadata.labels or {}) if obj is not None and obj.metadata else {}


def selects(service: Any, labels: dict[str, str]) -> bool:
    """A Service's selector matches ``labels`` (an empty or missing selector matches nothing)."""
    selector: dict[str, str] = (service.spec.selector if service.spec else None) or {}
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def index_by_namespace(obj: Any) -> list[str]:
    return [obj.metadata.namespace or ""]


def is_resync(event: Event[Any]) -> bool:
    """An informer's periodic resync hands an unchanged object again (old is new)."""
    return event.old is event.obj


def services_for_pod(event: Event[Any], services: Store[Any]) -> set[str]:
    """Services (in the Pod's namespace) that select the Pod now or selected it before.

    A resync of a Pod maps to nothing: it changes no selection, and the Services resync
    themselves (their informer has the same period). Mapping it would test every Pod against
    every Service of its namespace at each resync, which at 5,000 pods and 500 Services cost
    seconds of CPU for keys the Service resync enqueues anyway.
    """
    if is_resync(event):
        return set()
    namespace = event.obj.metadata.namespace or ""
    label_sets = [_labels(event.obj)]
    if event.old is not None:
        label_sets.append(_labels(event.old))
    return {
        key_of(service)
        for service in services.by_index(BY_NAMESPACE, namespace)
        if any(selects(service, labels) for labels in label_sets)
    }


def service_for_slice(event: Event[Any]) -> set[str]:
    """The Service an EndpointSlice belongs to (its ``kubernetes.io/service-name`` label)."""
    keys = set()
    for obj in (event.obj, event.old):
        name = _labels(obj).get(SERVICE_NAME_LABEL)
        if obj is not None and name:
            keys.add(f"{obj.metadata.namespace}/{name}")
    return keys


def services_for_node(services: Store[Any], uses_nodes: Callable[[Any], bool]) -> set[str]:
    """Every Service whose backends are nodes (NodePort and Local modes decide via
    ``uses_nodes``, which is the model's knowledge, not the runtime's)."""
    return {key_of(service) for service in services.items() if uses_nodes(service)}


def ingress_backend_services(ingress: Any) -> list[str]:
    """``namespace/name`` of every Service an Ingress routes to (rules and default backend)."""
    spec = ingress.spec
    if spec is None:
        return []
    namespace = ingress.metadata.namespace or ""
    names: list[str] = []
    backends: list[Any] = []
    if spec.defaultBackend is not None:
        backends.append(spec.defaultBackend)
    for rule in spec.rules or []:
        for path in rule.http.paths if rule.http else []:
            backends.append(path.backend)
    for backend in backends:
        if backend is not None and backend.service is not None:
            names.append(f"{namespace}/{backend.service.name}")
    return list(dict.fromkeys(names))


def ingresses_for_service(event: Event[Any], ingresses: Store[Any]) -> set[str]:
    """Ingresses that route to the changed Service (needs the BY_BACKEND_SERVICE index)."""
    routed = ingresses.by_index(BY_BACKEND_SERVICE, key_of(event.obj))
    return {key_of(ingress) for ingress in routed}


def enqueue(add: Callable[[str], None], keys: Iterable[str]) -> None:
    for key in keys:
        add(key)
