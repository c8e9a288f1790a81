"""The Ingress controller end to end: simulated cluster, CLB emulator at time scale 0.01 and
the controller through ``runtime.run``. The cloud is read through the official SDK (and the
emulator's ledger for call counts), the cluster through lightkube, traffic through the CLB's
VIP (the emulator's data plane, the simulator's pod servers, which answer with their name)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import httpx
from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Pod, Secret, Service
from lightkube.resources.discovery_v1 import EndpointSlice
from lightkube.resources.networking_v1 import Ingress, IngressClass
from lightkube.types import PatchType

from directlb.emulator.dataplane import route
from directlb.webhook.server import GATE
from tests import support
from tests.e2e.stack import (
    DEADLINE,
    Stack,
    events_for,
    listeners,
    load_balancers,
    node_instances,
    pod_ips,
)

NS = "default"
ENI = {"tke.cloud.tencent.com/networks": "tke-route-eni"}
LB_ID = "kubernetes.io/ingress.qcloud-loadbalance-id"
DIRECT = {"ingress.cloud.tencent.com/direct-access": "true"}


# --- manifests -----------------------------------------------------------------------------------


def deployment(app: str, *, replicas: int = 2) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": app, "labels": {"app": app}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": app}},
            "template": {
                "metadata": {"labels": {"app": app}, "annotations": dict(ENI)},
                "spec": {
                    "containers": [
                        {"name": "app", "image": "nginx", "ports": [{"containerPort": 8080}]}
                    ]
                },
            },
        },
    }


def service(app: str, *, node_port: bool) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": app},
        "spec": {
            "type": "NodePort" if node_port else "ClusterIP",
            "selector": {"app": app},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
        },
    }


def path(url: str, path_type: str, backend: str, port: int | str = 80) -> dict[str, Any]:
    number = {"number": port} if isinstance(port, int) else {"name": port}
    return {
        "path": url,
        "pathType": path_type,
        "backend": {"service": {"name": backend, "port": number}},
    }


def rule(host: str, *paths: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = {"http": {"paths": list(paths)}}
    if host:
        doc["host"] = host
    return doc


def ingress(
    name: str,
    *rules: dict[str, Any],
    default: str | None = None,
    tls: Iterable[tuple[tuple[str, ...], str]] = (),
    annotations: dict[str, str] | None = None,
    class_name: str | None = "qcloud",
) -> dict[str, Any]:
    spec: dict[str, Any] = {"rules": list(rules)}
    if class_name is not None:
        spec["ingressClassName"] = class_name
    if default is not None:
        spec["defaultBackend"] = {"service": {"name": default, "port": {"number": 80}}}
    tls = list(tls)
    if tls:
        spec["tls"] = [{"hosts": list(hosts), "secretName": secret} for hosts, secret in tls]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": spec,
    }


def adopting_ingress(name: str, lb_id: str, *rules: dict[str, Any]) -> dict[str, Any]:
    """An Ingress of class qcloud (by the legacy annotation) on the existing CLB ``lb_id``."""
    annotations = {
        "kubernetes.io/ingress.class": "qcloud",
        "kubernetes.io/ingress.existLbId": lb_id,
    }
    return ingress(name, *rules, annotations=annotations, class_name=None)


QCLOUD_CLASS = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "IngressClass",
    "metadata": {"name": "qcloud"},
    "spec": {"controller": "directlb.io/ingress-controller"},
}


def cert_secret(name: str, cert_id: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "type": "Opaque",
        "data": {"qcloud_cert_id": base64.b64encode(cert_id.encode()).decode()},
    }


# --- helpers -------------------------------------------------------------------------------------


async def apps(stack: Stack, *names: str, node_port: bool) -> None:
    """Deployments and their Services, waited on until every pod is ready: by then the
    controller's caches hold the Services too, so an Ingress created next converges in one
    sync (which the call counts below rely on)."""
    for name in names:
        await stack.client.create(Deployment.from_dict(deployment(name)), namespace=NS)
        await stack.client.create(Service.from_dict(service(name, node_port=node_port)), NS)

    async def ready() -> bool:
        for name in names:
            slices = [
                s
                async for s in stack.client.list(
                    EndpointSlice, namespace=NS, labels={"kubernetes.io/service-name": name}
                )
            ]
            endpoints = [e for s in slices for e in s.endpoints or []]
            if len(endpoints) != 2 or not all(
                e.conditions and e.conditions.ready for e in endpoints
            ):
                return False
        return True

    await wait(ready)


async def setup_class(stack: Stack) -> None:
    await stack.client.create(IngressClass.from_dict(QCLOUD_CLASS))


async def register_certificates(stack: Stack, *ids: str) -> None:
    body = {"Certificates": [{"CertId": i, "CertType": "SVR"} for i in ids]}
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            f"http://{stack.emulator.endpoint}/_emulator/certificates", json=body
        )
        answer.raise_for_status()


async def lb_of(client: AsyncClient, name: str) -> str | None:
    try:
        obj = await client.get(Ingress, name, namespace=NS)
    except ApiError:
        return None
    return (obj.metadata.annotations or {}).get(LB_ID) if obj.metadata else None


async def vip_of(client: AsyncClient, name: str) -> str | None:
    obj = await client.get(Ingress, name, namespace=NS)
    found = obj.status.loadBalancer.ingress if obj.status and obj.status.loadBalancer else None
    return found[0].ip if found else None


async def rules_by_port(stack: Stack, lb_id: str) -> dict[int, dict[tuple[str, str], Any]]:
    """port -> (domain, url) -> the SDK's RuleOutput."""
    return {
        int(lst.Port): {(r.Domain, r.Url): r for r in lst.Rules or []}
        for lst in await listeners(stack.emulator, lb_id)
    }


async def rule_targets(
    stack: Stack, lb_id: str
) -> dict[tuple[int, str, str], set[tuple[str, int]]]:
    """(port, domain, url) -> {(instance id or ENI IP, port)}."""
    from tencentcloud.clb.v20180317 import models

    clb = support.async_client(stack.emulator)
    try:
        request = models.DescribeTargetsRequest()
        request.LoadBalancerId = lb_id
        answer = await clb.DescribeTargets(request)
    finally:
        await clb.close()
    found: dict[tuple[int, str, str], set[tuple[str, int]]] = {}
    for lst in answer.Listeners or []:
        for r in lst.Rules or []:
            found[(int(lst.Port), r.Domain, r.Url)] = {
                (t.InstanceId or (t.PrivateIpAddresses or [""])[0], int(t.Port))
                for t in r.Targets or []
            }
    return found


async def get_via(vip: str, host: str, url: str) -> str:
    """The pod (its name) that answered a request to the VIP with this Host; '' if none."""
    async with httpx.AsyncClient(timeout=3.0) as http:
        try:
            answer = await http.get(f"http://{vip}{url}", headers={"Host": host})
        except httpx.HTTPError:
            return ""
    if answer.status_code != 200:
        return ""
    try:
        return str(json.loads(answer.text).get("pod", ""))
    except ValueError:
        return ""


def routed(stack: Stack, lb_id: str, host: str, url: str) -> tuple[str, str] | None:
    """The (domain, URL) of the HTTP:80 rule the CLB sends this request to."""
    lb = stack.emulator.store.lbs[lb_id]
    http = next(x for x in lb.listeners.values() if x.port == 80)
    found = route(http, host, url)
    return (found.domain, found.url) if found is not None else None


def serving(stack: Stack, lb_id: str) -> bool:
    """The emulator's data plane holds the CLB's HTTP:80 listener on the VIP."""
    plane = stack.emulator.dataplane
    lb = stack.emulator.store.lbs[lb_id]
    http = next(x for x in lb.listeners.values() if x.port == 80)
    return plane is not None and http.listener_id not in plane._failed


def ledger_counts(stack: Stack, since: int = 0) -> dict[str, int]:
    counts: dict[str, int] = {}
    for entry in stack.emulator.ledger:
        if entry.seq > since and entry.code == "Success":
            counts[entry.action] = counts.get(entry.action, 0) + 1
    return counts


def ledger_mark(stack: Stack) -> int:
    return stack.emulator.ledger[-1].seq if stack.emulator.ledger else 0


async def warning(client: AsyncClient, name: str, reason: str) -> str | None:
    for event in await events_for(client, name, NS):
        if event.reason == reason and event.type == "Warning":
            return str(event.message)
    return None


async def wait(predicate: Any, timeout: float = DEADLINE) -> None:
    await support.wait_until(predicate, timeout=timeout, interval=0.1)


async def created_a_second_ago(client: AsyncClient, name: str) -> bool:
    """creationTimestamp has a resolution of a second: once the Service ``name`` is a full
    second old, an object created now is certainly ordered after it."""
    obj = await client.get(Service, name, namespace=NS)
    created = obj.metadata.creationTimestamp if obj.metadata else None
    return created is not None and (datetime.now(UTC) - created).total_seconds() >= 1.1


async def nodeports(client: AsyncClient, name: str) -> set[tuple[str, int]]:
    svc = await client.get(Service, name, namespace=NS)
    port = svc.spec.ports[0].nodePort
    return {(ins, port) for ins in await node_instances(client)}


# --- tests ---------------------------------------------------------------------------------------


async def test_hosts_paths_default_backend_nodeport_and_changes(stack: Stack) -> None:
    """Every pathType, a host-less rule and a default backend on NodePort backends: the rules,
    their targets (every node), the default domain (the VIP, DefaultServer), real traffic; then
    a rule added and one removed; then deletion takes the CLB with it."""
    client = stack.client
    await setup_class(stack)
    await apps(stack, "web", "api", node_port=True)
    mark = ledger_mark(stack)
    spec = ingress(
        "shop",
        rule(
            "a.example.com",
            path("/api/", "Prefix", "api"),
            path("/exact", "Exact", "web"),
            path("~* ^/re", "ImplementationSpecific", "api"),
        ),
        rule("b.example.com", path("/", "ImplementationSpecific", "api")),
        rule("", path("/any", "Prefix", "api")),
        default="web",
    )
    await client.create(Ingress.from_dict(spec), namespace=NS)

    web_nodes = await nodeports(client, "web")
    api_nodes = await nodeports(client, "api")

    async def converged() -> bool:
        lb_id, vip = await lb_of(client, "shop"), await vip_of(client, "shop")
        if not lb_id or not vip:
            return False
        targets = await rule_targets(stack, lb_id)
        want = {
            (80, "a.example.com", "/api"): api_nodes,
            (80, "a.example.com", "=/exact"): web_nodes,
            (80, "a.example.com", "~* ^/re"): api_nodes,
            (80, "a.example.com", "/"): web_nodes,  # the default backend on a known host
            (80, "b.example.com", "/"): api_nodes,
            (80, vip, "/any"): api_nodes,
            (80, vip, "/"): web_nodes,
        }
        return targets == want

    await wait(converged)
    lb_id, vip = await lb_of(client, "shop"), await vip_of(client, "shop")
    assert lb_id and vip
    [lb] = await load_balancers(stack.emulator)
    assert lb.LoadBalancerVips == [vip]
    [http] = await listeners(stack.emulator, lb_id)
    assert (http.Protocol, http.Port) == ("HTTP", 80)
    assert {r.Domain for r in http.Rules if r.DefaultServer} == {vip}
    assert all(r.HealthCheck.CheckType == "HTTP" for r in http.Rules)
    # Few calls: all rules in one CreateRule, all targets of all rules in one batch.
    counts = ledger_counts(stack, mark)
    assert counts.get("CreateRule") == 1
    assert counts.get("BatchRegisterTargets") == 1
    assert "RegisterTargets" not in counts

    # Requests routed by Host and path as the CLB routes them; and real traffic through the
    # VIP when the emulator could bind it (another emulator on this machine may hold it).
    async def serves(host: str, url: str, app: str) -> bool:
        return (await get_via(vip, host, url)).startswith(app + "-")

    for host, url, app, where in [
        ("a.example.com", "/api/items", "api", ("a.example.com", "/api")),
        ("a.example.com", "/exact", "web", ("a.example.com", "=/exact")),
        ("a.example.com", "/exactly", "web", ("a.example.com", "/")),  # the default backend
        ("a.example.com", "/REgex", "api", ("a.example.com", "~* ^/re")),
        ("b.example.com", "/anything", "api", ("b.example.com", "/")),
        ("unknown.example.com", "/any/x", "api", (vip, "/any")),  # the default domain
        ("unknown.example.com", "/", "web", (vip, "/")),
    ]:
        assert routed(stack, lb_id, host, url) == where, (host, url)
        if serving(stack, lb_id):
            await wait(lambda h=host, u=url, a=app: serves(h, u, a), timeout=20)

    # Add a host, drop one.
    await client.patch(
        Ingress,
        "shop",
        {
            "spec": {
                "rules": [
                    spec["spec"]["rules"][0],
                    rule("c.example.com", path("/c", "Prefix", "web")),
                    spec["spec"]["rules"][2],
                ]
            }
        },
        namespace=NS,
    )

    async def changed() -> bool:
        rules = (await rules_by_port(stack, lb_id))[80]
        domains = {d for d, _ in rules}
        targets = await rule_targets(stack, lb_id)
        return (
            "b.example.com" not in domains
            and targets.get((80, "c.example.com", "/c")) == web_nodes
            and targets.get((80, "c.example.com", "/")) == web_nodes
        )

    await wait(changed)
    assert routed(stack, lb_id, "c.example.com", "/c/1") == ("c.example.com", "/c")
    if serving(stack, lb_id):
        await wait(lambda: serves("c.example.com", "/c/1", "web"), timeout=20)

    await client.delete(Ingress, "shop", namespace=NS)

    async def gone() -> bool:
        return not await load_balancers(stack.emulator) and await lb_of(client, "shop") is None

    await wait(gone)


async def test_direct_backends_tls_sni_then_one_certificate(stack: Stack) -> None:
    """Direct access: pod IPs on every rule of HTTP and HTTPS. Two certificates make the HTTPS
    listener SNI (a certificate per domain); dropping one makes it a plain HTTPS listener with
    one certificate again (Tencent cannot switch SNI off: the listener is recreated)."""
    client = stack.client
    await register_certificates(stack, "cert-a", "cert-b")
    await setup_class(stack)
    await apps(stack, "web", node_port=False)
    await client.create(Secret.from_dict(cert_secret("tls-a", "cert-a")), namespace=NS)
    await client.create(Secret.from_dict(cert_secret("tls-b", "cert-b")), namespace=NS)
    spec = ingress(
        "secure",
        rule("a.example.com", path("/", "Prefix", "web")),
        rule("b.example.com", path("/", "Prefix", "web")),
        tls=[(("a.example.com",), "tls-a"), (("b.example.com",), "tls-b")],
        annotations=DIRECT,
    )
    await client.create(Ingress.from_dict(spec), namespace=NS)

    async def converged() -> bool:
        lb_id = await lb_of(client, "secure")
        ips = await pod_ips(client, {"app": "web"})
        if not lb_id or len(ips) != 2:
            return False
        want = {(ip, 8080) for ip in ips}
        targets = await rule_targets(stack, lb_id)
        keys = {(p, d, "/") for p in (80, 443) for d in ("a.example.com", "b.example.com")}
        return set(targets) == keys and all(t == want for t in targets.values())

    await wait(converged)
    lb_id = await lb_of(client, "secure")
    assert lb_id
    by_port = {int(x.Port): x for x in await listeners(stack.emulator, lb_id)}
    https = by_port[443]
    assert https.Protocol == "HTTPS" and https.SniSwitch == 1
    assert {r.Domain: r.Certificate.CertId for r in https.Rules} == {
        "a.example.com": "cert-a",
        "b.example.com": "cert-b",
    }
    # Direct mode: quick HTTP checks on the pod port.
    assert {r.HealthCheck.IntervalTime for r in https.Rules} == {5}

    # One certificate for both hosts: no SNI any more.
    await client.patch(
        Ingress,
        "secure",
        {"spec": {"tls": [{"hosts": ["a.example.com", "b.example.com"], "secretName": "tls-a"}]}},
        namespace=NS,
    )

    async def plain() -> bool:
        found = {int(x.Port): x for x in await listeners(stack.emulator, lb_id)}
        listener = found.get(443)
        return (
            listener is not None
            and not listener.SniSwitch
            and listener.Certificate is not None
            and listener.Certificate.CertId == "cert-a"
            and len(listener.Rules or []) == 2
        )

    await wait(plain)

    async def rebound() -> bool:
        ips = await pod_ips(client, {"app": "web"})
        targets = await rule_targets(stack, lb_id)
        return all(
            targets.get((443, d, "/")) == {(ip, 8080) for ip in ips}
            for d in ("a.example.com", "b.example.com")
        )

    await wait(rebound)

    # Backends added and removed: every rule follows the endpoints.
    for replicas in (3, 1):
        await client.patch(Deployment, "web", {"spec": {"replicas": replicas}}, namespace=NS)

        async def scaled(n: int = replicas) -> bool:
            ips = await pod_ips(client, {"app": "web"})
            targets = await rule_targets(stack, lb_id)
            return len(ips) == n and all(t == {(ip, 8080) for ip in ips} for t in targets.values())

        await wait(scaled)


async def test_missing_service_and_the_rule_quota(stack: Stack) -> None:
    """A rule to a Service that does not exist: a Warning, the other rules served. 55 paths on
    one host: a Warning naming the quota, the first 50 rules reconciled, in one CreateRule and
    one BatchRegisterTargets."""
    client = stack.client
    await setup_class(stack)
    await apps(stack, "web", node_port=True)
    mark = ledger_mark(stack)
    paths = [path(f"/p{i:02d}", "Prefix", "web") for i in range(54)]
    spec = ingress(
        "big",
        rule("a.example.com", path("/ghost", "Prefix", "ghost"), *paths),
    )
    await client.create(Ingress.from_dict(spec), namespace=NS)
    web_nodes = await nodeports(client, "web")

    async def converged() -> bool:
        lb_id = await lb_of(client, "big")
        if not lb_id:
            return False
        targets = await rule_targets(stack, lb_id)
        return len(targets) == 50 and sum(1 for t in targets.values() if t == web_nodes) == 49

    await wait(converged)
    lb_id = await lb_of(client, "big")
    assert lb_id
    targets = await rule_targets(stack, lb_id)
    assert targets[(80, "a.example.com", "/ghost")] == set()  # kept, with no targets (a 503)
    assert (80, "a.example.com", "/p48") in targets
    assert (80, "a.example.com", "/p49") not in targets

    async def warned() -> bool:
        missing = await warning(client, "big", "MissingBackendService")
        quota = await warning(client, "big", "TooManyRules")
        return bool(missing and "ghost" in missing and quota and "quota" in quota)

    await wait(warned)
    message = await warning(client, "big", "TooManyRules")
    assert message is not None and "50" in message and "rules per listener quota" in message
    counts = ledger_counts(stack, mark)
    assert counts.get("CreateRule") == 1
    assert counts.get("BatchRegisterTargets") == 1

    # The Service (and its pods) appear: its rule gets targets.
    await apps(stack, "ghost", node_port=True)
    ghost_nodes = await nodeports(client, "ghost")

    async def fixed() -> bool:
        found = await rule_targets(stack, lb_id)
        return found.get((80, "a.example.com", "/ghost")) == ghost_nodes

    await wait(fixed)


async def test_adopted_clb_survives_deletion(stack: Stack) -> None:
    """``kubernetes.io/ingress.existLbId``: our listeners go onto that CLB; a listener that is
    not ours stays; deleting the Ingress removes only ours, never the CLB. The legacy class
    annotation selects us too."""
    client = stack.client
    await apps(stack, "web", node_port=True)
    clb = support.async_client(stack.emulator)
    try:
        created = await support.api(clb, "CreateLoadBalancer", LoadBalancerType="OPEN")
        [lb_id] = created["LoadBalancerIds"]
        await support.wait_task(clb, created["RequestId"], timeout=DEADLINE)
        other = await support.api(
            clb, "CreateListener", LoadBalancerId=lb_id, Protocol="TCP", Ports=[9000]
        )
        await support.wait_task(clb, other["RequestId"], timeout=DEADLINE)
    finally:
        await clb.close()
    spec = adopting_ingress("adopt", lb_id, rule("a.example.com", path("/", "Prefix", "web")))
    await client.create(Ingress.from_dict(spec), namespace=NS)
    web_nodes = await nodeports(client, "web")

    async def converged() -> bool:
        if await lb_of(client, "adopt") != lb_id:
            return False
        return (await rule_targets(stack, lb_id)).get((80, "a.example.com", "/")) == web_nodes

    await wait(converged)
    assert {int(x.Port) for x in await listeners(stack.emulator, lb_id)} == {80, 9000}

    await client.delete(Ingress, "adopt", namespace=NS)

    async def released() -> bool:
        ports = {int(x.Port) for x in await listeners(stack.emulator, lb_id)}
        return ports == {9000} and await lb_of(client, "adopt") is None

    await wait(released)
    assert [lb.LoadBalancerId for lb in await load_balancers(stack.emulator)] == [lb_id]


async def test_a_service_tcp_port_refuses_the_same_port_to_a_later_ingress_on_a_shared_clb(
    stack: Stack,
) -> None:
    """A LoadBalancer Service holds TCP:80 on an adopted CLB; an Ingress adopting the same CLB
    later wants HTTP:80, the same port space on a CLB: it gets ListenerConflict naming the
    Service (not the cloud's PortCheckFailed through SyncLoadBalancerFailed), and the Service's
    listener stays the only one on port 80."""
    client = stack.client
    await apps(stack, "web", node_port=True)
    clb = support.async_client(stack.emulator)
    try:
        lb_id = await support.create_lb(clb, LoadBalancerName="shared-l4-l7")
    finally:
        await clb.close()
    holder = service("holder", node_port=True)
    holder["metadata"]["annotations"] = {"service.kubernetes.io/tke-existed-lbid": lb_id}
    holder["spec"]["type"] = "LoadBalancer"
    holder["spec"]["selector"] = {"app": "web"}
    await client.create(Service.from_dict(holder), namespace=NS)

    async def tcp_80() -> bool:
        found = await listeners(stack.emulator, lb_id)
        return [(x.Protocol, int(x.Port)) for x in found] == [("TCP", 80)]

    await wait(tcp_80)
    await wait(lambda: created_a_second_ago(client, "holder"))
    spec = adopting_ingress("later", lb_id, rule("a.example.com", path("/", "Prefix", "web")))
    await client.create(Ingress.from_dict(spec), namespace=NS)

    async def refused() -> str | None:
        return await warning(client, "later", "ListenerConflict")

    await wait(refused)
    message = await refused()
    assert message is not None and "Service default/holder" in message and "80" in message
    assert await warning(client, "later", "SyncLoadBalancerFailed") is None
    assert await tcp_80()


async def test_adopting_a_clb_deletes_the_one_created_for_the_ingress(stack: Stack) -> None:
    """An Ingress served by a CLB we created is annotated ``existLbId``: once the adopted CLB
    serves its rules, the created CLB is deleted; the adopted one never is."""
    client = stack.client
    await setup_class(stack)
    await apps(stack, "web", node_port=True)
    spec = ingress("switch", rule("a.example.com", path("/", "Prefix", "web")))
    await client.create(Ingress.from_dict(spec), namespace=NS)
    web_nodes = await nodeports(client, "web")

    async def served_by(lb_id: str | None) -> bool:
        if not lb_id or await lb_of(client, "switch") != lb_id:
            return False
        return (await rule_targets(stack, lb_id)).get((80, "a.example.com", "/")) == web_nodes

    async def served_by_ours() -> bool:
        return await served_by(await lb_of(client, "switch"))

    await wait(served_by_ours)
    created = await lb_of(client, "switch")
    assert created
    clb = support.async_client(stack.emulator)
    try:
        made = await support.api(clb, "CreateLoadBalancer", LoadBalancerType="OPEN")
        [adopted] = made["LoadBalancerIds"]
        await support.wait_task(clb, made["RequestId"], timeout=DEADLINE)
    finally:
        await clb.close()
    await client.patch(
        Ingress,
        "switch",
        {"metadata": {"annotations": {"kubernetes.io/ingress.existLbId": adopted}}},
        namespace=NS,
        patch_type=PatchType.MERGE,
    )

    async def only_the_adopted_one() -> bool:
        ids = {lb.LoadBalancerId for lb in await load_balancers(stack.emulator)}
        return ids == {adopted} and await served_by(adopted)

    await wait(only_the_adopted_one)

    await client.delete(Ingress, "switch", namespace=NS)

    async def released() -> bool:
        return (
            not await listeners(stack.emulator, adopted) and await lb_of(client, "switch") is None
        )

    await wait(released)
    assert [lb.LoadBalancerId for lb in await load_balancers(stack.emulator)] == [adopted]


async def test_not_ours_is_left_alone(stack: Stack) -> None:
    """An Ingress of another class gets no CLB, no finalizer."""
    client = stack.client
    await setup_class(stack)
    await apps(stack, "web", node_port=True)
    await client.create(
        Ingress.from_dict(
            ingress("other", rule("a.example.com", path("/", "Prefix", "web")), class_name="nginx")
        ),
        namespace=NS,
    )
    await client.create(
        Ingress.from_dict(ingress("mine", rule("a.example.com", path("/", "Prefix", "web")))),
        namespace=NS,
    )
    await wait(lambda: lb_of(client, "mine"))
    other = await client.get(Ingress, "other", namespace=NS)
    assert not (other.metadata.finalizers or []) and await lb_of(client, "other") is None
    assert len(await load_balancers(stack.emulator)) == 1


async def test_a_direct_ingress_holds_the_readiness_gates_of_its_pods(stack: Stack) -> None:
    """Pods behind a direct Ingress (and no direct Service) carry the gate: it turns True only
    once the CLB has them healthy on every rule, never as "no backend" while the Ingress's CLB
    is still being created (the pods are created right after the Ingress)."""
    client = stack.client
    await setup_class(stack)
    spec = ingress(
        "gated",
        rule("g.example.com", path("/", "Prefix", "gw"), path("/api", "Prefix", "gw")),
        annotations=DIRECT,
    )
    await client.create(Ingress.from_dict(spec), namespace=NS)
    manifest = deployment("gw")
    manifest["spec"]["template"]["spec"]["readinessGates"] = [{"conditionType": GATE}]
    await client.create(Deployment.from_dict(manifest), namespace=NS)
    await client.create(Service.from_dict(service("gw", node_port=False)), namespace=NS)

    async def gates() -> dict[str, Any]:
        found: dict[str, Any] = {}
        async for pod in client.list(Pod, namespace=NS, labels={"app": "gw"}):
            conditions = (pod.status.conditions if pod.status else None) or []
            found[pod.metadata.name] = next((c for c in conditions if c.type == GATE), None)
        return found

    async def all_true() -> bool:
        found = await gates()
        return len(found) == 2 and all(c is not None and c.status == "True" for c in found.values())

    await wait(all_true)
    lb_id = await lb_of(client, "gated")
    assert lb_id
    for name, condition in (await gates()).items():
        assert condition.reason == "LoadBalancerBackendHealthy", (name, condition.message)
        for url in ("/", "/api"):
            assert f"{lb_id} listener HTTP:80 rule g.example.com{url}" in condition.message
