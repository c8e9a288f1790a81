"""The admission webhook in the controller runtime: server on every replica, guardian on the leader.

:func:`start_webhook` (called by :func:`directlb.controllers.runtime.run` when ``--webhook`` is
on, the default):

* serves ``/mutate-v1-pod`` over HTTPS on ``--webhook-listen``, deciding from the shared Service
  and Ingress informers' caches. The first certificate is the Secret's when it is already there
  and sound, else a throwaway one (an API server call meanwhile fails TLS verification and, with
  ``failurePolicy: Ignore``, lets the pod through ungated) until the guardian has written the
  Secret;
* keeps every replica's certificate in step with the Secret through a namespaced Secret informer
  (:func:`directlb.webhook.guardian.tls_from_secret`);
* registers the guardian as the controller ``webhook`` of the manager: one key, triggered at
  start, by every change of the configuration or the Secret, and every
  ``--webhook-recheck-period``. The manager runs controllers on the leader only, so one replica
  repairs (``docs/webhook.md``, "Who repairs");
* exports the server's counters and one ``directlb_webhook_repairs`` increment per problem
  repaired.

The webhook package knows nothing of the manager or Prometheus (``lint-imports``); this module
is where the two meet.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from lightkube.resources.admissionregistration_v1 import MutatingWebhookConfiguration
from lightkube.resources.core_v1 import Secret, Service
from lightkube.resources.networking_v1 import Ingress

from directlb.controllers.config import WEBHOOK_URL_LOCAL, ControllerConfig
from directlb.controllers.manager import Manager
from directlb.controllers.metrics import Metrics
from directlb.kube.events import EventRecorder
from directlb.webhook import certs
from directlb.webhook.configuration import FailurePolicy
from directlb.webhook.guardian import KEY, Guardian, Target, read_bundle, tls_from_secret, utc_now
from directlb.webhook.server import PATH, Admission, ReloadingTLS, WebhookServer, in_namespace

log = logging.getLogger("directlb.controllers.webhook")

Clock = Callable[[], datetime.datetime]


@dataclass
class Webhook:
    """What :func:`start_webhook` started; :meth:`stop` stops the server."""

    server: WebhookServer
    guardian: Guardian
    url: str  # where the API server is told to call (a URL, or the Service's https name)

    async def stop(self) -> None:
        await self.server.stop()


def local_url(host: str, port: int) -> str:
    """``--webhook-url=local``: the bound address (a wildcard bind is reached on loopback)."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"https://{f'[{shown}]' if ':' in shown else shown}:{port}{PATH}"


def target_for(config: ControllerConfig, url: str | None) -> Target:
    return Target(
        namespace=config.webhook_namespace,
        service=None if url else config.webhook_service_name,
        url=url or None,
        failure_policy=cast(FailurePolicy, config.webhook_failure_policy),
    )


async def start_webhook(
    config: ControllerConfig,
    manager: Manager,
    recorder: EventRecorder,
    metrics: Metrics,
    *,
    clock: Clock | None = None,
) -> Webhook:
    """Start the HTTPS server and register the guardian with ``manager`` (before it runs)."""
    # A first Target to name the certificate's hosts; for --webhook-url=local the URL (and
    # so the final Target) is known once the server is bound.
    fixed_url = config.webhook_url if config.webhook_url != WEBHOOK_URL_LOCAL else None
    listen = config.webhook_listen
    provisional = target_for(config, fixed_url or local_url(listen.host, listen.port))
    bundle = await _initial_bundle(manager, provisional, clock or utc_now)
    tls = ReloadingTLS(bundle.cert_pem, bundle.key_pem)
    admission = Admission(
        in_namespace(manager.informer(Service).store),
        in_namespace(manager.informer(Ingress).store),
    )
    server = WebhookServer(admission, tls, host=listen.host, port=listen.port)
    await server.start()
    url = fixed_url or (local_url(listen.host, server.port) if config.webhook_url else None)
    target = target_for(config, url)
    guardian = Guardian(
        client=manager.client,
        target=target,
        events=recorder,
        tls=tls,
        clock=clock or utc_now,
        on_repair=lambda what, problem: metrics.webhook_repairs.labels(what, problem).inc(),
        recheck_period=config.webhook_recheck_period,
    )

    queue = manager.controller("webhook", guardian.reconcile, workers=1)
    queue.add(KEY)  # at start: nothing may exist yet, so no event would say so

    def changed(event: Any) -> None:
        if guardian.concerns(event.obj):
            queue.add(KEY)

    manager.informer(MutatingWebhookConfiguration).add_handler(changed)
    secrets = manager.informer(Secret, namespace=target.namespace)
    secrets.add_handler(changed)
    secrets.add_handler(tls_from_secret(tls, name=target.secret_name, namespace=target.namespace))
    metrics.watch_webhook(
        lambda: {
            "reviews": admission.reviews,
            "patched": admission.patched,
            "errors": admission.errors,
            "bad_requests": server.bad_requests,
            "tls_reloads": tls.reloads,
            "tls_reload_errors": tls.reload_errors,
        }
    )
    shown = url or (f"https://{target.service}.{target.namespace}.svc:{target.service_port}{PATH}")
    log.info(
        "event=webhook_serving listen=%s:%d calls=%s secret=%s/%s failure_policy=%s",
        listen.host,
        server.port,
        shown,
        target.namespace,
        target.secret_name,
        target.failure_policy,
    )
    return Webhook(server=server, guardian=guardian, url=shown)


async def _initial_bundle(manager: Manager, target: Target, clock: Clock) -> certs.Bundle:
    try:
        bundle = await read_bundle(manager.client, target, clock=clock)
    except Exception as error:  # unreachable API server, say: serve a throwaway meanwhile
        log.warning("event=webhook_secret_unreadable error=%r", error)
        bundle = None
    return bundle if bundle is not None else certs.new_bundle(target.hosts)
