"""Tencent CLB wire format <-> the port's values. Pure functions, no I/O.

Request parameters are built as the JSON the SDK's request models accept (field names from
``tencentcloud.clb.v20180317.models``); answers are read from the models' JSON form.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from directlb.cloud.port import LoadBalancer, LoadBalancerType, TargetHealth
from directlb.plan.state import (
    Certificate,
    HealthCheck,
    Listener,
    ListenerKey,
    ListenerProtocol,
    Rule,
    RuleKey,
    Target,
    TargetKind,
)

Doc = dict[str, Any]
# Targets by listener id, then by location id ("" for a layer-4 listener's own targets).
TargetGroups = dict[str, dict[str, tuple[Target, ...]]]

_HEALTH_FIELDS = (
    ("check_type", "CheckType"),
    ("timeout", "TimeOut"),
    ("interval", "IntervalTime"),
    ("healthy_threshold", "HealthNum"),
    ("unhealthy_threshold", "UnHealthNum"),
    ("http_codes", "HttpCode"),
    ("http_path", "HttpCheckPath"),
    ("http_domain", "HttpCheckDomain"),
    ("http_method", "HttpCheckMethod"),
    ("check_port", "CheckPort"),
)


# ----- requests ------------------------------------------------------------------------------


def health_params(check: HealthCheck) -> Doc:
    doc: Doc = {"HealthSwitch": 1 if check.enabled else 0}
    if check.enabled:
        for attr, name in _HEALTH_FIELDS:
            value = getattr(check, attr)
            if value is not None:
                doc[name] = value
    return doc


def certificate_params(certificate: Certificate) -> Doc:
    doc: Doc = {"SSLMode": certificate.mode, "CertId": certificate.cert_id}
    if certificate.ca_cert_id:
        doc["CertCaId"] = certificate.ca_cert_id
    return doc


def _listener_settings(listener: Listener) -> Doc:
    doc: Doc = {}
    if listener.sni:
        # An SNI listener has no certificate of its own: each domain has one (CreateRule,
        # ModifyDomainAttributes). Tencent refuses Certificate together with SniSwitch=1.
        doc["SniSwitch"] = 1
    elif listener.certificate is not None:
        doc["Certificate"] = certificate_params(listener.certificate)
    if not listener.protocol.layer7:
        if listener.health_check is not None:
            doc["HealthCheck"] = health_params(listener.health_check)
        doc["Scheduler"] = listener.scheduler
        doc["SessionExpireTime"] = listener.session_expire
    return doc


def create_listener_params(lb_id: str, listeners: Sequence[Listener]) -> Doc:
    """One CreateListener call for listeners of one protocol and identical settings."""
    first = listeners[0]
    doc: Doc = {
        "LoadBalancerId": lb_id,
        "Protocol": str(first.protocol),
        "Ports": [listener.port for listener in listeners],
    }
    if any(listener.name for listener in listeners):
        doc["ListenerNames"] = [listener.name for listener in listeners]
    doc.update(_listener_settings(first))
    return doc


def modify_listener_params(*, lb_id: str, listener_id: str, listener: Listener) -> Doc:
    doc: Doc = {"LoadBalancerId": lb_id, "ListenerId": listener_id}
    if listener.name:
        doc["ListenerName"] = listener.name
    doc.update(_listener_settings(listener))
    return doc


def rule_params(rule: Rule, *, sni: bool = False) -> Doc:
    """A ``RuleInput`` of CreateRule; ``sni``: the listener is SNI, so the domain's
    certificate goes along (Tencent takes it only there)."""
    doc: Doc = {
        "Domain": rule.domain,
        "Url": rule.url,
        "Scheduler": rule.scheduler,
        "SessionExpireTime": rule.session_expire,
    }
    if rule.health_check is not None:
        doc["HealthCheck"] = health_params(rule.health_check)
    if sni and rule.certificate is not None:
        doc["Certificate"] = certificate_params(rule.certificate)
    if rule.default_server:
        doc["DefaultServer"] = True
    return doc


def modify_rule_params(*, lb_id: str, listener_id: str, location_id: str, rule: Rule) -> Doc:
    doc = rule_params(rule)
    doc.pop("DefaultServer", None)
    del doc["Domain"], doc["Url"]
    return doc | {"LoadBalancerId": lb_id, "ListenerId": listener_id, "LocationId": location_id}


def modify_domain_params(
    *,
    lb_id: str,
    listener_id: str,
    domain: str,
    certificate: Certificate | None,
    default_server: bool,
) -> Doc:
    """ModifyDomainAttributes: a domain's certificate (SNI listeners) and default flag."""
    doc: Doc = {"LoadBalancerId": lb_id, "ListenerId": listener_id, "Domain": domain}
    if certificate is not None:
        doc["Certificate"] = certificate_params(certificate)
    if default_server:
        doc["DefaultServer"] = True
    return doc


def target_params(target: Target) -> Doc:
    doc: Doc = {"Port": target.port, "Weight": target.weight}
    if target.kind is TargetKind.NODE:
        doc["InstanceId"] = target.instance_id
    else:
        doc["EniIp"] = target.ip
    return doc


def batch_target_params(*, listener_id: str, location_id: str, target: Target) -> Doc:
    doc = target_params(target) | {"ListenerId": listener_id}
    if location_id:
        doc["LocationId"] = location_id
    return doc


# ----- answers -------------------------------------------------------------------------------


def parse_health_check(doc: Mapping[str, Any] | None) -> HealthCheck | None:
    if not doc:
        return None
    values = {attr: doc.get(name) for attr, name in _HEALTH_FIELDS}
    return HealthCheck(enabled=bool(doc.get("HealthSwitch", 1)), **values)


def parse_certificate(doc: Mapping[str, Any] | None) -> Certificate | None:
    if not doc or not doc.get("CertId"):
        return None
    return Certificate(
        cert_id=str(doc["CertId"]),
        mode=str(doc.get("SSLMode") or "UNIDIRECTIONAL"),
        ca_cert_id=str(doc.get("CertCaId") or ""),
    )


def parse_rule(doc: Mapping[str, Any]) -> Rule:
    return Rule(
        domain=str(doc.get("Domain") or ""),
        url=str(doc.get("Url") or ""),
        health_check=parse_health_check(doc.get("HealthCheck")),
        scheduler=str(doc.get("Scheduler") or "WRR"),
        session_expire=int(doc.get("SessionExpireTime") or 0),
        location_id=str(doc["LocationId"]),
        certificate=parse_certificate(doc.get("Certificate")),
        default_server=bool(doc.get("DefaultServer")),
    )


def parse_listener(doc: Mapping[str, Any]) -> Listener:
    """A listener from DescribeListeners, with its rules but without targets."""
    protocol = ListenerProtocol(str(doc["Protocol"]))
    layer7 = protocol.layer7
    return Listener(
        protocol=protocol,
        port=int(doc["Port"]),
        name=str(doc.get("ListenerName") or ""),
        health_check=None if layer7 else parse_health_check(doc.get("HealthCheck")),
        scheduler=str(doc.get("Scheduler") or "WRR"),
        session_expire=int(doc.get("SessionExpireTime") or 0),
        certificate=parse_certificate(doc.get("Certificate")),
        sni=bool(doc.get("SniSwitch")),
        rules=tuple(parse_rule(r) for r in doc.get("Rules") or ()) if layer7 else (),
        listener_id=str(doc["ListenerId"]),
    )


def parse_backend(doc: Mapping[str, Any]) -> Target:
    ips = doc.get("PrivateIpAddresses") or []
    ip = str(ips[0]) if ips else ""
    weight = doc.get("Weight")
    if doc.get("Type") == "CVM":
        return Target(
            ip=ip,
            port=int(doc["Port"]),
            weight=10 if weight is None else int(weight),
            kind=TargetKind.NODE,
            instance_id=str(doc.get("InstanceId") or ""),
        )
    return Target(ip=ip, port=int(doc["Port"]), weight=10 if weight is None else int(weight))


def parse_target_groups(listeners: Iterable[Mapping[str, Any]]) -> TargetGroups:
    """DescribeTargets' ``Listeners``: targets by listener id and location id."""
    groups: TargetGroups = {}
    for doc in listeners:
        by_location = groups.setdefault(str(doc["ListenerId"]), {})
        for rule in doc.get("Rules") or ():
            by_location[str(rule["LocationId"])] = tuple(
                parse_backend(t) for t in rule.get("Targets") or ()
            )
        if doc.get("Targets") is not None:
            by_location[""] = tuple(parse_backend(t) for t in doc["Targets"])
    return groups


def with_targets(listener: Listener, groups: TargetGroups) -> Listener:
    """``listener`` (from DescribeListeners) with the targets DescribeTargets reported."""
    by_location = groups.get(listener.listener_id, {})
    if listener.protocol.layer7:
        rules = tuple(
            replace(rule, targets=by_location.get(rule.location_id, ())) for rule in listener.rules
        )
        return replace(listener, rules=rules)
    return replace(listener, targets=by_location.get("", ()))


def parse_load_balancer(doc: Mapping[str, Any]) -> LoadBalancer:
    tags = tuple(
        (str(t.get("TagKey") or ""), str(t.get("TagValue") or "")) for t in doc.get("Tags") or ()
    )
    return LoadBalancer(
        lb_id=str(doc["LoadBalancerId"]),
        name=str(doc.get("LoadBalancerName") or ""),
        type=LoadBalancerType(str(doc.get("LoadBalancerType") or "OPEN")),
        vips=tuple(str(v) for v in doc.get("LoadBalancerVips") or ()),
        tags=tags,
        ready=doc.get("Status") == 1,
        vpc_id=str(doc.get("VpcId") or ""),
        subnet_id=str(doc.get("SubnetId") or ""),
        created=str(doc.get("CreateTime") or ""),
    )


def parse_target_health(answer: Mapping[str, Any]) -> dict[str, tuple[TargetHealth, ...]]:
    """DescribeTargetHealth's answer, by CLB id."""
    out: dict[str, tuple[TargetHealth, ...]] = {}
    for lb in answer.get("LoadBalancers") or ():
        lb_id = str(lb["LoadBalancerId"])
        found: list[TargetHealth] = []
        for listener in lb.get("Listeners") or ():
            key = ListenerKey(ListenerProtocol(str(listener["Protocol"])), int(listener["Port"]))
            for rule in listener.get("Rules") or ():
                location_id = str(rule.get("LocationId") or "")
                rule_key = RuleKey(str(rule["Domain"]), str(rule["Url"])) if location_id else None
                found += [
                    TargetHealth(
                        lb_id=lb_id,
                        listener=key,
                        listener_id=str(listener["ListenerId"]),
                        rule=rule_key,
                        location_id=location_id,
                        ip=str(t.get("IP") or ""),
                        port=int(t["Port"]),
                        instance_id=str(t.get("TargetId") or ""),
                        healthy=bool(t.get("HealthStatus")),
                        detail=str(t.get("HealthStatusDetail") or ""),
                    )
                    for t in rule.get("Targets") or ()
                ]
        out[lb_id] = tuple(found)
    return out
