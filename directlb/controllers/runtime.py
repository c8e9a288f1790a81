"""``directlb controller``: wire the Kubernetes client, the cloud adapter and the manager.

The runtime runs the shared informers (Services, Pods, EndpointSlices, Nodes, Ingresses,
IngressClasses), the Service controller (:mod:`directlb.controllers.service`, issue 7), the
readiness-gate controller (:mod:`directlb.controllers.gate`, issue 8), the Ingress controller
(:mod:`directlb.controllers.ingress`, issue 9), the Event recorder, leader election,
``/metrics``, ``/healthz`` and ``/readyz``, a check that the CLB endpoint answers, and (unless
``--no-webhook``) the admission webhook on every replica with its guardian on the leader
(:mod:`directlb.controllers.webhook`). The start-up log line says which controllers run and
where the webhook is called.

The cloud is checked in the background, never at start: a cloud API briefly unreachable must
not crash-loop the pod (the webhook and the health endpoints do not depend on it).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lightkube import AsyncClient, KubeConfig
from lightkube.resources.core_v1 import Node, Pod, Service
from lightkube.resources.discovery_v1 import EndpointSlice
from lightkube.resources.networking_v1 import Ingress, IngressClass

from directlb.cloud.config import TencentConfig, Timing
from directlb.cloud.errors import CloudError
from directlb.cloud.port import CloudLoadBalancers
from directlb.cloud.tencent import TencentLoadBalancers
from directlb.controllers import gate
from directlb.controllers import ingress as ingress_controller
from directlb.controllers import service as service_controller
from directlb.controllers.config import ControllerConfig
from directlb.controllers.gate import GateController
from directlb.controllers.ingress import INGRESS_KIND, IngressController
from directlb.controllers.lbowner import ListenerClaims
from directlb.controllers.manager import Manager
from directlb.controllers.metrics import Metrics
from directlb.controllers.service import SERVICE_KIND, ServiceController
from directlb.controllers.webhook import Webhook, start_webhook
from directlb.kube import mapping
from directlb.kube.events import EventRecorder
from directlb.kube.informer import Event, key_of
from directlb.kube.leader import LeaseConfig
from directlb.kube.permissions import LEASE_NAME
from directlb.kube.version import VersionCache

log = logging.getLogger("directlb.controllers.runtime")

FIELD_MANAGER = "directlb"
#: The kinds the reconcilers of issues 7-9 read from caches (docs/deploy.md, RBAC table).
INFORMED: tuple[type[Any], ...] = (Service, Pod, EndpointSlice, Node, Ingress, IngressClass)
#: Seconds between two checks of an unreachable cloud endpoint.
CLOUD_CHECK_INTERVAL = 30.0


@dataclass(frozen=True)
class Started:
    """What a caller (``directlb up``, tests) needs once the runtime is up and synced."""

    metrics_url: str
    identity: str
    #: For in-process callers (benchmarks, tests): its informers, queues and metrics.
    manager: Manager


def kube_config(config: ControllerConfig) -> KubeConfig:
    if config.kubeconfig is not None:
        return KubeConfig.from_file(config.kubeconfig)
    # In a pod: the service account; elsewhere lightkube's usual KUBECONFIG/~/.kube/config.
    return KubeConfig.from_env()


def tencent_config(config: ControllerConfig, timing: Timing | None = None) -> TencentConfig:
    return TencentConfig(
        timing=timing or Timing(),
        region=config.region,
        credentials=config.credentials,
        vpc_id=config.vpc_id,
        endpoint=config.clb_endpoint,
        protocol=config.clb_protocol,
        strategy=config.sync_strategy,
    )


def build_manager(
    config: ControllerConfig,
    client: AsyncClient,
    metrics: Metrics,
    *,
    cloud: CloudLoadBalancers | None = None,
    recorder: EventRecorder | None = None,
) -> Manager:
    """The manager with its informers; with ``cloud`` and ``recorder``, the Service controller
    too (Service -> itself, EndpointSlice -> its Service, Pod -> the Services selecting it,
    Node -> every node-backed Service, when the node changed in what the model reads)."""
    lease = (
        LeaseConfig(
            name=LEASE_NAME,
            namespace=config.leader_election_namespace,
            identity=config.identity,
            lease_duration=config.lease_duration,
            renew_deadline=config.renew_deadline,
            retry_period=config.retry_period,
        )
        if config.leader_elect
        else None
    )
    manager = Manager(client, metrics=metrics, lease=lease)
    for resource in INFORMED:
        manager.informer(resource)
    if cloud is not None and recorder is not None:
        # Who records which listener on an adopted CLB, across Services and Ingresses: two
        # objects adopting one CLB must not share a listener (docs/services.md).
        claims = ListenerClaims()
        claims.watch(SERVICE_KIND, manager.informer(Service).store)
        claims.watch(INGRESS_KIND, manager.informer(Ingress).store)
        services = register_service_controller(manager, config, cloud, recorder, claims=claims)
        # The gate models Services with the Service controller's cluster version, and leaves
        # out the listeners it refuses on a shared CLB by the same claims.
        gates = register_gate_controller(
            manager, config, cloud, recorder, version=services.version, claims=claims
        )
        register_ingress_controller(manager, config, cloud, recorder, gates=gates, claims=claims)
    return manager


def register_service_controller(
    manager: Manager,
    config: ControllerConfig,
    cloud: CloudLoadBalancers,
    recorder: EventRecorder,
    *,
    claims: ListenerClaims | None = None,
) -> ServiceController:
    """``claims``: the listeners recorded on adopted CLBs by every object of ours (else by the
    Services only)."""
    services = manager.informer(Service)
    slices = manager.informer(EndpointSlice)
    pods = manager.informer(Pod)
    nodes = manager.informer(Node)
    services.store.add_index(mapping.BY_NAMESPACE, mapping.index_by_namespace)
    pods.store.add_index(mapping.BY_NAMESPACE, mapping.index_by_namespace)
    slices.store.add_index(service_controller.BY_SERVICE, service_controller.slice_service)
    if claims is None:
        claims = ListenerClaims()
        claims.watch(SERVICE_KIND, services.store)
    controller = ServiceController(
        client=manager.client,
        cloud=cloud,
        recorder=recorder,
        cluster_id=config.cluster_id,
        services=services.store,
        slices=slices.store,
        pods=pods.store,
        nodes=nodes.store,
        direct_routable_cidrs=config.direct_routable_cidrs,
        claims=claims,
    )
    queue = manager.controller("service", controller.reconcile, workers=config.workers)
    services.add_handler(lambda event: queue.add(key_of(event.obj)))
    slices.add_handler(lambda event: mapping.enqueue(queue.add, mapping.service_for_slice(event)))
    pods.add_handler(
        lambda event: mapping.enqueue(queue.add, mapping.services_for_pod(event, services.store))
    )

    def on_node(event: Event[Any]) -> None:
        if mapping.is_resync(event):
            return  # the same keys for every node; the Services resync themselves
        if not service_controller.node_changed(event):
            return  # a kubelet status update: nothing the model reads changed
        mapping.enqueue(queue.add, mapping.services_for_node(services.store, controller.uses_nodes))

    nodes.add_handler(on_node)
    return controller


def register_gate_controller(
    manager: Manager,
    config: ControllerConfig,
    cloud: CloudLoadBalancers,
    recorder: EventRecorder,
    *,
    version: VersionCache | None = None,
    claims: ListenerClaims | None = None,
) -> GateController:
    """The readiness-gate controller (pods), its health poller (one key) and the Service
    check for pods without a gate. Any Service, EndpointSlice or Pod change re-checks the
    pending pods of its namespace (a periodic resync is no change); an Ingress source adds
    itself with ``add_source``.
    ``version``: the Service controller's cluster-version cache (else one of its own).
    ``claims``: the Service controller's listener claims on adopted CLBs (else the Services'
    records only), so that a gate never expects a listener refused to its Service."""
    services = manager.informer(Service)
    slices = manager.informer(EndpointSlice)
    pods = manager.informer(Pod)
    services.store.add_index(mapping.BY_NAMESPACE, mapping.index_by_namespace)
    pods.store.add_index(mapping.BY_NAMESPACE, mapping.index_by_namespace)
    slices.store.add_index(service_controller.BY_SERVICE, service_controller.slice_service)
    if claims is None:
        claims = ListenerClaims()
        claims.watch(SERVICE_KIND, services.store)
    bindings = gate.ServiceBindings(
        services=services.store,
        slices=slices.store,
        pods=pods.store,
        direct_routable_cidrs=config.direct_routable_cidrs,
        cloud=cloud,
        version=version if version is not None else VersionCache.for_client(manager.client),
        claims=claims,
    )
    poller = gate.HealthPoller(cloud)
    controller = GateController(
        client=manager.client,
        recorder=recorder,
        pods=pods.store,
        poller=poller,
        metrics=manager.metrics,
        sources=[bindings],
        timeout=config.readiness_gate_timeout,
    )
    queue = manager.controller("gate", controller.reconcile, workers=config.workers)
    health = manager.controller("gate-health", poller.poll, workers=1)
    controller.enqueue = queue.add
    poller.on_change = controller.enqueue_pods
    poller.wake = lambda: health.add(gate.POLL_KEY)
    unprotected = gate.UnprotectedPods(
        services=services.store, pods=pods.store, bindings=bindings, recorder=recorder
    )
    unprotected_queue = manager.controller("gate-unprotected", unprotected.reconcile, workers=1)

    def changed(event: Event[Any]) -> None:
        # A periodic resync of a Service or an EndpointSlice changes no binding (observe
        # ignores it) and has nothing to heal here: every pending pod is re-checked every
        # ``period`` by its own reconcile, and at the same resync by its own Pod event
        # (``on_pod`` enqueues each pending pod). Re-checking the namespace's pending pods per
        # Service and per slice cost O(pending pods) per event, O(objects x pending) per resync.
        if mapping.is_resync(event):
            return
        bindings.observe(event)
        controller.enqueue_namespace(event.obj.metadata.namespace or "")

    def on_service(event: Event[Any]) -> None:
        changed(event)
        # A periodic resync changes no pod set: re-checking every direct Service's pods then
        # (each a scan of its namespace) was most of a resync's CPU at 500 Services.
        if not mapping.is_resync(event):
            unprotected_queue.add(key_of(event.obj))

    def on_pod(event: Event[Any]) -> None:
        bindings.observe(event)
        controller.on_pod(event)
        mapping.enqueue(unprotected_queue.add, unprotected.services_for_pod(event))

    services.add_handler(on_service)
    slices.add_handler(changed)
    pods.add_handler(on_pod)
    return controller


def register_ingress_controller(
    manager: Manager,
    config: ControllerConfig,
    cloud: CloudLoadBalancers,
    recorder: EventRecorder,
    *,
    gates: GateController | None = None,
    claims: ListenerClaims | None = None,
) -> IngressController:
    """The Ingress controller (issue 9): Ingress -> itself; IngressClass -> every Ingress;
    Service, its EndpointSlices and the pods it selects -> the Ingresses routing to it; Node
    -> every node-backed Ingress (an add, a delete, or a change the model reads). With
    ``gates``, direct Ingress rules hold the readiness gates of their pods too
    (:class:`~directlb.controllers.ingress.IngressBindings`). ``claims``: the listeners
    recorded on adopted CLBs by every object of ours (else by the Services and Ingresses)."""
    ingresses = manager.informer(Ingress)
    classes = manager.informer(IngressClass)
    services = manager.informer(Service)
    slices = manager.informer(EndpointSlice)
    pods = manager.informer(Pod)
    nodes = manager.informer(Node)
    ingresses.store.add_index(mapping.BY_BACKEND_SERVICE, mapping.ingress_backend_services)
    services.store.add_index(mapping.BY_NAMESPACE, mapping.index_by_namespace)
    pods.store.add_index(mapping.BY_NAMESPACE, mapping.index_by_namespace)
    slices.store.add_index(service_controller.BY_SERVICE, service_controller.slice_service)
    if claims is None:
        claims = ListenerClaims()
        claims.watch(SERVICE_KIND, services.store)
        claims.watch(INGRESS_KIND, ingresses.store)
    controller = IngressController(
        client=manager.client,
        cloud=cloud,
        recorder=recorder,
        cluster_id=config.cluster_id,
        ingresses=ingresses.store,
        classes=classes.store,
        services=services.store,
        slices=slices.store,
        pods=pods.store,
        nodes=nodes.store,
        direct_routable_cidrs=config.direct_routable_cidrs,
        claims=claims,
    )
    queue = manager.controller("ingress", controller.reconcile, workers=config.workers)

    def routing_to(service_keys: set[str]) -> None:
        mapping.enqueue(
            queue.add, ingress_controller.ingresses_for_services(ingresses.store, service_keys)
        )

    # Resyncs of the inputs map to nothing: the Ingresses resync themselves (same period).
    def changed(handler: Callable[[Event[Any]], None]) -> Callable[[Event[Any]], None]:
        return lambda event: None if mapping.is_resync(event) else handler(event)

    ingresses.add_handler(lambda event: queue.add(key_of(event.obj)))
    classes.add_handler(
        changed(
            lambda event: mapping.enqueue(
                queue.add, ingress_controller.all_ingresses(event, ingresses.store)
            )
        )
    )
    services.add_handler(changed(lambda event: routing_to({key_of(event.obj)})))
    slices.add_handler(changed(lambda event: routing_to(mapping.service_for_slice(event))))
    pods.add_handler(
        changed(lambda event: routing_to(mapping.services_for_pod(event, services.store)))
    )
    # A Node: only an add, a delete or a change of what the model reads (not the kubelet's
    # status updates, every few seconds per node).
    nodes.add_handler(
        changed(
            lambda event: mapping.enqueue(
                queue.add,
                ingress_controller.ingresses_for_nodes(ingresses.store, controller.known_version())
                if service_controller.node_changed(event)
                else (),
            )
        )
    )
    if gates is not None:
        gates.add_source(
            ingress_controller.IngressBindings(controller=controller, services=services.store)
        )
        controller.on_synced = gates.enqueue_namespace
    return controller


async def check_cloud(cloud: TencentLoadBalancers, *, interval: float) -> None:
    """Log whether the CLB API answers; retry until it does. Never raises."""
    while True:
        try:
            await cloud.api.call("DescribeLoadBalancers", {"Limit": 1})
        except CloudError as error:
            log.warning(
                "event=cloud_unreachable region=%s code=%s retry_in=%gs",
                cloud.config.region,
                error.code,
                interval,
            )
        except Exception as error:  # a check must never take the process down
            log.warning("event=cloud_check_failed error=%s retry_in=%gs", error, interval)
        else:
            log.info("event=cloud_reachable region=%s", cloud.config.region)
            return
        await asyncio.sleep(interval)


async def run(
    config: ControllerConfig,
    *,
    stop: asyncio.Event,
    on_started: Callable[[Started], None] | None = None,
    cloud_check_interval: float = CLOUD_CHECK_INTERVAL,
    timing: Timing | None = None,
    webhook_clock: Callable[[], datetime.datetime] | None = None,
) -> None:
    """Run until ``stop`` is set; then stop leading (releasing the Lease) and close clients.

    ``webhook_clock``: the webhook guardian's clock (tests make certificates expire)."""
    client = AsyncClient(config=kube_config(config), field_manager=FIELD_MANAGER)
    metrics = Metrics()
    cloud = TencentLoadBalancers(tencent_config(config, timing), observer=metrics)
    recorder = EventRecorder(client, instance=config.identity)
    manager = build_manager(config, client, metrics, cloud=cloud, recorder=recorder)
    tasks: list[asyncio.Task[None]] = []
    webhook: Webhook | None = None
    try:
        if config.webhook:
            # Before manager.run(): it registers informers and the guardian's controller.
            webhook = await start_webhook(config, manager, recorder, metrics, clock=webhook_clock)
        port = await manager.serve_endpoints(config.metrics_listen.host, config.metrics_listen.port)
        host = config.metrics_listen.host
        shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
        metrics_url = f"http://{f'[{shown}]' if ':' in shown else shown}:{port}"
        log.info(
            "event=started identity=%s region=%s vpc=%s cluster=%s clb_endpoint=%s "
            "strategy=%s leader_elect=%s lease=%s metrics=%s controllers=service,gate,ingress "
            "webhook=%s",
            config.identity,
            config.region,
            config.vpc_id,
            config.cluster_id,
            config.clb_endpoint or "clb.tencentcloudapi.com",
            config.sync_strategy.value,
            config.leader_elect,
            f"{config.leader_election_namespace}/{LEASE_NAME}" if config.leader_elect else "-",
            metrics_url,
            webhook.url if webhook is not None else "off",
        )
        running = asyncio.create_task(manager.run(), name="manager")
        tasks.append(running)
        tasks.append(asyncio.create_task(recorder.run(), name="events"))
        tasks.append(
            asyncio.create_task(
                check_cloud(cloud, interval=cloud_check_interval), name="cloud-check"
            )
        )
        if on_started is not None:
            synced = asyncio.create_task(_when_synced(manager), name="wait-synced")
            tasks.append(synced)
            await asyncio.wait({synced, running}, return_when=asyncio.FIRST_COMPLETED)
            if synced.done() and not running.done():
                on_started(
                    Started(metrics_url=metrics_url, identity=config.identity, manager=manager)
                )
        stopping = asyncio.create_task(stop.wait(), name="stop")
        try:
            await asyncio.wait({stopping, running}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if running.done():
            running.result()  # the manager ended by itself: surface why
        log.info("event=stopping identity=%s", config.identity)
    finally:
        for task in tasks:
            task.cancel()
        # The manager's own cleanup (releasing the Lease) runs inside its cancellation.
        await asyncio.gather(*tasks, return_exceptions=True)
        if webhook is not None:
            await webhook.stop()
        await recorder.close()
        await cloud.aclose()
        await client.close()
        log.info("event=stopped identity=%s", config.identity)


async def _when_synced(manager: Manager) -> None:
    await asyncio.gather(*(manager.informer(r).synced.wait() for r in INFORMED))
