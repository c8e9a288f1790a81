"""The CLB actions: validation, limits and quotas, then a task or an answer.

Each handler reads its parameters through :class:`Params` (bad input becomes the official error
code with a message that names the parameter, and changes nothing), checks the CLB is not
running another task, and either answers at once (Describe*) or starts a task whose operations
are applied when it finishes. Request and response fields follow the SDK's ``models.py``.
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from directlb.emulator.config import VIP_CIDR, EmulatorConfig
from directlb.emulator.engine import Ids, TaskEngine
from directlb.emulator.errors import (
    ApiError,
    invalid,
    invalid_value,
    lb_not_found,
    limit_exceeded,
    listener_not_found,
    location_not_found,
    missing,
)
from directlb.emulator.health import HealthView
from directlb.emulator.params import Params
from directlb.emulator.store import (
    TASK_RUNNING,
    Doc,
    Listener,
    LoadBalancer,
    Op,
    Rule,
    Store,
    Target,
    TargetKey,
    attrs,
)

L4_PROTOCOLS = ("TCP", "UDP", "TCP_SSL", "QUIC")
L7_PROTOCOLS = ("HTTP", "HTTPS")
PROTOCOLS = L4_PROTOCOLS + L7_PROTOCOLS
# Protocols that share the TCP port space of a CLB (UDP and QUIC share the UDP one).
_TCP_FAMILY = {"TCP", "TCP_SSL", "HTTP", "HTTPS"}

MAX_IDS_PER_DESCRIBE = 20
MAX_TARGETS_PER_CALL = 20
MAX_BATCH_TARGETS = 500
MAX_WEIGHT_ENTRIES = 100
MAX_WEIGHT_TARGETS_PER_ENTRY = 50
MAX_HEALTH_LBS = 30
MAX_LISTENER_IDS = 100
MAX_DELETE_LISTENERS = 20
MAX_CREATE_LBS = 20

_DOMAIN_RE = re.compile(
    r"^(\*\.)?([a-z0-9]([a-z0-9\-]{0,61}[a-z0-9])?\.)*[a-z0-9\-]*[a-z0-9](\.?)$|^\*$"
)


def now_text() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())


@dataclass
class Call:
    """What one request did, for the response latency, the ledger and the fault injector."""

    request_id: str
    action: str
    cloud_seconds: float
    task_cloud_seconds: float = 0.0
    fail_task: bool = False
    lb_ids: tuple[str, ...] = ()


Handler = Callable[[Params, Call], Any]


class Actions:
    def __init__(
        self,
        *,
        store: Store,
        engine: TaskEngine,
        ids: Ids,
        config: EmulatorConfig,
        health: HealthView,
    ) -> None:
        self.store = store
        self.engine = engine
        self.ids = ids
        self.config = config
        self.health = health
        self.latency = config.latency
        self._vpc = [ipaddress.ip_network(c) for c in config.vpc_cidrs]
        self._vip_pool = ipaddress.ip_network(VIP_CIDR)
        self.handlers: dict[str, Handler] = {
            name: getattr(self, name)
            for name in dir(self)
            if name[:1].isupper() and callable(getattr(self, name))
        }

    # Actions that change state (and so take the CLB's lock); the rest only read.
    MUTATING = frozenset(
        {
            "CreateLoadBalancer",
            "DeleteLoadBalancer",
            "CreateListener",
            "ModifyListener",
            "DeleteListener",
            "DeleteLoadBalancerListeners",
            "CreateRule",
            "ModifyRule",
            "DeleteRule",
            "ModifyDomainAttributes",
            "RegisterTargets",
            "DeregisterTargets",
            "ModifyTargetWeight",
            "BatchRegisterTargets",
            "BatchDeregisterTargets",
            "BatchModifyTargetWeight",
        }
    )
    ASYNC = MUTATING - {"BatchRegisterTargets", "BatchDeregisterTargets"}

    # ----- lookups ------------------------------------------------------------------------

    def _lb(self, p: Params, key: str = "LoadBalancerId") -> LoadBalancer:
        lb_id = p.req_text(key)
        lb = self.store.lb(lb_id)
        if lb is None:
            raise lb_not_found([lb_id])
        return lb

    def _mutable_lb(self, p: Params, call: Call) -> LoadBalancer:
        lb = self._lb(p)
        self.engine.ensure_idle([lb.lb_id])
        call.lb_ids = (lb.lb_id,)
        return lb

    def _listener(self, lb: LoadBalancer, p: Params, key: str = "ListenerId") -> Listener:
        listener_id = p.req_text(key)
        listener = lb.listeners.get(listener_id)
        if listener is None:
            raise listener_not_found(lb.lb_id, [listener_id])
        return listener

    def _layer7_listener(self, lb: LoadBalancer, p: Params, *, what: str) -> Listener:
        """The listener named by ListenerId, which must be HTTP or HTTPS (``what`` needs it)."""
        listener = self._listener(lb, p)
        if not listener.layer7:
            raise ApiError(
                "InvalidParameter.ProtocolCheckFailed",
                f"Listener {listener.listener_id} is {listener.protocol}; {what} need an HTTP or "
                "HTTPS listener.",
            )
        return listener

    def _rule_of(self, listener: Listener, p: Params, *, required: bool) -> Rule | None:
        """The rule named by LocationId, or by Domain and Url (layer 7 only)."""
        location_id = p.text("LocationId")
        domain = p.text("Domain")
        url = p.text("Url")
        if not listener.layer7:
            if location_id or domain or url:
                raise invalid(
                    p.name("LocationId"),
                    f"listener {listener.listener_id} is {listener.protocol}: layer-4 listeners "
                    "have no rules, leave LocationId/Domain/Url out",
                )
            return None
        if location_id:
            rule = listener.rules.get(location_id)
            if rule is None:
                raise location_not_found(listener.listener_id, location_id)
            return rule
        if domain and url:
            for rule in listener.rules.values():
                # Stored in lower case by CreateRule: domain names ignore case.
                if rule.domain == domain.lower() and rule.url == url:
                    return rule
            raise location_not_found(listener.listener_id, f"{domain}{url}")
        if required:
            raise missing(
                p.name("LocationId")
                + f" (or Domain and Url): listener {listener.listener_id} is {listener.protocol}"
            )
        return None

    # ----- values -------------------------------------------------------------------------

    def _health_check(
        self, p: Params | None, *, protocol: str, base: Doc | None, rule: bool
    ) -> Doc:
        doc: Doc = dict(base) if base else _default_health_check(protocol)
        if p is None:
            return doc
        checks: dict[str, tuple[int, int]] = {
            "HealthSwitch": (0, 1),
            "TimeOut": (2, 60),
            "IntervalTime": (2, 300),
            "HealthNum": (2, 10),
            "UnHealthNum": (2, 10),
            "HttpCode": (1, 31),
        }
        for key, (lo, hi) in checks.items():
            value = p.integer(key, lo=lo, hi=hi)
            if value is not None:
                doc[key] = value
        check_port = p.integer("CheckPort", lo=-1, hi=65535)
        if check_port is not None:
            doc["CheckPort"] = None if check_port == -1 else check_port
        for key in ("HttpCheckPath", "HttpCheckDomain", "SendContext", "RecvContext"):
            text = p.text(key, max_len=200)
            if text is not None:
                doc[key] = text
        method = p.text("HttpCheckMethod", choices=("HEAD", "GET"))
        if method is not None:
            doc["HttpCheckMethod"] = method
        allowed = _check_types(protocol, rule=rule)
        check_type = p.text("CheckType", choices=allowed)
        if check_type is not None:
            doc["CheckType"] = check_type
        if doc["HttpCheckPath"] and not str(doc["HttpCheckPath"]).startswith("/"):
            raise invalid_value(p.name("HttpCheckPath"), "must start with /")
        if doc["TimeOut"] >= doc["IntervalTime"]:
            raise invalid_value(
                p.name("TimeOut"),
                f"TimeOut {doc['TimeOut']} must be less than IntervalTime {doc['IntervalTime']}",
            )
        return doc

    def _session_expire(self, p: Params, key: str = "SessionExpireTime") -> int | None:
        value = p.integer(key, lo=0, hi=3600)
        if value is not None and 0 < value < 30:
            raise invalid_value(
                p.name(key),
                "must be 0 (off) or between 30 and 3600 seconds",
                code="InvalidParameterValue.Range",
            )
        return value

    def _target(self, p: Params, *, default_weight: int | None = 10) -> Target:
        port = p.req_integer("Port", lo=1, hi=65535)
        weight = p.integer("Weight", lo=0, hi=100, default=default_weight)
        eni_ip = p.text("EniIp")
        instance_id = p.text("InstanceId")
        if bool(eni_ip) == bool(instance_id):
            raise invalid(p.name("EniIp"), "pass exactly one of InstanceId and EniIp")
        if eni_ip:
            try:
                address = ipaddress.ip_address(eni_ip)
            except ValueError:
                raise invalid_value(p.name("EniIp"), f"{eni_ip!r} is not an IP address") from None
            if not any(address in net for net in self._vpc):
                raise invalid_value(
                    p.name("EniIp"),
                    f"{eni_ip} is not routable from VPC {self.config.vpc_id} "
                    f"(CIDRs {', '.join(self.config.vpc_cidrs)})",
                )
            kind, key = "ENI", eni_ip
        else:
            assert instance_id is not None
            if instance_id not in self.config.instances:
                raise invalid_value(
                    p.name("InstanceId"), f"instance {instance_id} does not exist in this region"
                )
            kind, key = "CVM", instance_id
        return Target(
            kind=kind,
            address=key,
            port=port,
            # -1 marks "no weight given" where the caller has no default (weight changes).
            weight=weight if weight is not None else -1,
            registered=now_text(),
            tag=p.text("Tag", default="") or "",
        )

    def _targets(self, ps: list[Params], *, default_weight: int | None = 10) -> list[Target]:
        targets = [self._target(tp, default_weight=default_weight) for tp in ps]
        seen: set[TargetKey] = set()
        for tp, target in zip(ps, targets, strict=True):
            if target.key in seen:
                raise invalid_value(
                    tp.name("Port"),
                    f"target {target.address}:{target.port} appears twice",
                    code="InvalidParameterValue.Duplicate",
                )
            seen.add(target.key)
        return targets

    def _next_vip(self) -> str:
        used = {lb.vip for lb in self.store.lbs.values()}
        for host in self._vip_pool.hosts():
            text = str(host)
            if host.packed[-1] != 0 and text not in used:
                return text
        raise ApiError("ResourceInsufficient", f"no free VIP left in {VIP_CIDR}")

    # ----- task plumbing ------------------------------------------------------------------

    def _task(
        self,
        call: Call,
        lb: LoadBalancer,
        ops: list[Op],
        *,
        touched: int,
        immediate_ops: list[Op] | None = None,
        fail_ops: list[Op] | None = None,
        lb_ids: list[str] | None = None,
        deal_name: str = "",
    ) -> None:
        seconds = self.latency.task(touched)
        call.task_cloud_seconds = seconds
        failure = ""
        if call.fail_task:
            failure = f"injected fault: task {call.action} on {lb.lb_id} failed"
        self.engine.start(
            task_id=call.request_id,
            action=call.action,
            lb_ids=lb_ids or [lb.lb_id],
            ops=ops,
            cloud_seconds=seconds,
            immediate_ops=immediate_ops,
            failure=failure,
            fail_ops=fail_ops,
            deal_name=deal_name,
        )

    def _quota(self, name: str) -> int:
        return self.config.quotas[name]

    # ===== load balancers =================================================================

    def CreateLoadBalancer(self, p: Params, call: Call) -> Doc:
        lb_type = p.req_text("LoadBalancerType", choices=("OPEN", "INTERNAL"))
        forward = p.integer("Forward", default=1, lo=0, hi=1)
        name = p.text("LoadBalancerName", max_len=60) or ""
        vpc_id = p.text("VpcId") or self.config.vpc_id
        if vpc_id != self.config.vpc_id:
            raise invalid_value(
                "VpcId", f"VPC {vpc_id} does not exist; this region has {self.config.vpc_id}"
            )
        subnet_id = p.text("SubnetId") or ""
        if lb_type == "INTERNAL" and not subnet_id:
            raise missing("SubnetId (an INTERNAL load balancer needs a subnet)")
        if lb_type == "OPEN" and subnet_id:
            raise invalid("SubnetId", "an OPEN IPv4 load balancer takes no SubnetId")
        if subnet_id and subnet_id not in self.config.subnets:
            raise invalid_value(
                "SubnetId",
                f"subnet {subnet_id} does not exist in VPC {vpc_id} "
                f"(its subnets: {', '.join(self.config.subnets) or 'none'})",
            )
        number = p.req_integer("Number", lo=1, hi=MAX_CREATE_LBS) if p.has("Number") else 1
        tags = [
            {"TagKey": tp.req_text("TagKey", max_len=127), "TagValue": tp.text("TagValue") or ""}
            for tp in p.objects("Tags", max_items=50)
        ]
        token = p.text("ClientToken", max_len=64) or ""
        if token:
            earlier = [lb.lb_id for lb in self.store.lbs.values() if lb.client_token == token]
            if earlier:
                # A retry gets the original answer, DealName included, so it can be polled.
                deal = next(
                    (
                        t.deal_name
                        for t in self.store.tasks.values()
                        if t.deal_name and t.lb_ids == earlier
                    ),
                    "",
                )
                return {"LoadBalancerIds": earlier, "DealName": deal}
        quota_id = "TOTAL_OPEN_CLB_QUOTA" if lb_type == "OPEN" else "TOTAL_INTERNAL_CLB_QUOTA"
        current = sum(1 for lb in self.store.lbs.values() if lb.lb_type == lb_type)
        if current + number > self._quota(quota_id):
            raise limit_exceeded(
                f"{current} {lb_type} load balancers plus {number} new", self._quota(quota_id)
            )
        created: list[LoadBalancer] = []
        for _ in range(number):
            vip = self._next_vip()
            lb = LoadBalancer(
                lb_id=self.ids.resource("lb"),
                name=name or "",
                lb_type=lb_type,
                forward=forward if forward is not None else 1,
                vpc_id=vpc_id,
                subnet_id=subnet_id,
                vip=vip,
                tags=tags,
                status=0,
                create_time=now_text(),
                client_token=token,
            )
            if not lb.name:
                lb.name = lb.lb_id
            created.append(lb)
            # Reserve the VIP now: the next one in this call must differ.
            self.store.lbs[lb.lb_id] = lb
        for lb in created:
            del self.store.lbs[lb.lb_id]
        ids = [lb.lb_id for lb in created]
        deal_name = "2026" + call.request_id.replace("-", "")[:16]
        immediate = [{"op": "put_lb", "lb": attrs(lb)} for lb in created]
        ready = [{"op": "put_lb", "lb": attrs(lb) | {"status": 1}} for lb in created]
        removed = [{"op": "del_lb", "lb_id": lb_id} for lb_id in ids]
        call.lb_ids = tuple(ids)
        self._task(
            call,
            created[0],
            ready,
            touched=0,
            immediate_ops=immediate,
            fail_ops=removed,
            lb_ids=ids,
            deal_name=deal_name,
        )
        return {"LoadBalancerIds": ids, "DealName": deal_name}

    def DescribeLoadBalancers(self, p: Params, call: Call) -> Doc:
        ids = p.texts("LoadBalancerIds", max_items=MAX_IDS_PER_DESCRIBE)
        lb_type = p.text("LoadBalancerType", choices=("OPEN", "INTERNAL"))
        forward = p.integer("Forward", lo=-1, hi=1)
        name = p.text("LoadBalancerName")
        vips = set(p.texts("LoadBalancerVips"))
        backend_ips = set(p.texts("BackendPrivateIps"))
        vpc_id = p.text("VpcId")
        offset = p.integer("Offset", default=0, lo=0) or 0
        limit = p.integer("Limit", default=20, lo=1, hi=100) or 20
        with_rs = p.integer("WithRs", lo=-1, hi=1)
        filters = p.objects("Filters", max_items=10)
        predicates: list[Callable[[LoadBalancer], bool]] = []
        if ids:
            wanted = set(ids)
            predicates.append(lambda lb: lb.lb_id in wanted)
        if lb_type:
            predicates.append(lambda lb: lb.lb_type == lb_type)
        if forward is not None and forward != -1:
            predicates.append(lambda lb: lb.forward == forward)
        if name:
            predicates.append(lambda lb: lb.name == name)
        if vips:
            predicates.append(lambda lb: lb.vip in vips)
        if vpc_id:
            predicates.append(lambda lb: lb.vpc_id == vpc_id)
        if backend_ips:
            predicates.append(lambda lb: bool(self._backend_ips(lb) & backend_ips))
        if with_rs is not None and with_rs != -1:
            predicates.append(lambda lb: bool(self._backend_ips(lb)) == bool(with_rs))
        for fp in filters:
            predicates.append(self._lb_filter(fp))
        matched = [lb for lb in self.store.lbs.values() if all(pred(lb) for pred in predicates)]
        page = matched[offset : offset + limit]
        call.cloud_seconds = self.latency.describe(len(page))
        return {"TotalCount": len(matched), "LoadBalancerSet": [self._lb_doc(lb) for lb in page]}

    def _lb_filter(self, fp: Params) -> Callable[[LoadBalancer], bool]:
        name = fp.req_text("Name")
        values = set(fp.texts("Values", required=True, max_items=100))
        if name == "tag-key":
            return lambda lb: any(t["TagKey"] in values for t in lb.tags)
        if name.startswith("tag:"):
            key = name[4:]
            return lambda lb: lb.tag_value(key) in values
        if name == "load-balancer-id":
            return lambda lb: lb.lb_id in values
        if name == "vip":
            return lambda lb: lb.vip in values
        if name == "vpc-id":
            return lambda lb: lb.vpc_id in values
        if name == "load-balancer-name":
            return lambda lb: lb.name in values
        raise ApiError(
            "InvalidParameter.InvalidFilter",
            f"Filter {name!r} is not supported; use tag-key, tag:<key>, load-balancer-id, vip, "
            "vpc-id or load-balancer-name.",
        )

    def _backend_ips(self, lb: LoadBalancer) -> set[str]:
        ips: set[str] = set()
        for listener in lb.listeners.values():
            groups = [listener.targets] + [r.targets for r in listener.rules.values()]
            for group in groups:
                ips.update(self.health.ip_of(t) for t in group.values())
        return ips

    def _lb_doc(self, lb: LoadBalancer) -> Doc:
        targets = sum(
            len(listener.targets) + sum(len(r.targets) for r in listener.rules.values())
            for listener in lb.listeners.values()
        )
        return {
            "LoadBalancerId": lb.lb_id,
            "LoadBalancerName": lb.name,
            "LoadBalancerType": lb.lb_type,
            "Forward": lb.forward,
            "Domain": "",
            "LoadBalancerVips": [lb.vip],
            "Status": lb.status,
            "CreateTime": lb.create_time,
            "StatusTime": lb.create_time,
            "ProjectId": 0,
            "VpcId": lb.vpc_id,
            "SubnetId": lb.subnet_id,
            "Tags": [dict(t) for t in lb.tags],
            "AddressIPVersion": "ipv4",
            "ChargeType": "POSTPAID_BY_HOUR",
            "Isolation": 0,
            "IsDDos": False,
            "TargetCount": targets,
            "Zones": [],
        }

    def DeleteLoadBalancer(self, p: Params, call: Call) -> Doc:
        ids = p.texts("LoadBalancerIds", required=True, max_items=MAX_IDS_PER_DESCRIBE)
        missing_ids = [i for i in ids if i not in self.store.lbs]
        if missing_ids:
            raise lb_not_found(missing_ids)
        unique = list(dict.fromkeys(ids))
        self.engine.ensure_idle(unique)
        call.lb_ids = tuple(unique)
        touched = sum(self._target_count(self.store.lbs[i]) for i in unique)
        ops: list[Op] = [{"op": "del_lb", "lb_id": lb_id} for lb_id in unique]
        self._task(call, self.store.lbs[unique[0]], ops, touched=touched, lb_ids=unique)
        return {}

    @staticmethod
    def _target_count(lb: LoadBalancer) -> int:
        return sum(
            len(listener.targets) + sum(len(r.targets) for r in listener.rules.values())
            for listener in lb.listeners.values()
        )

    # ===== listeners ======================================================================

    def CreateListener(self, p: Params, call: Call) -> Doc:
        lb = self._mutable_lb(p, call)
        protocol = p.req_text("Protocol", choices=PROTOCOLS)
        ports = p.integers("Ports", required=True, max_items=self._quota("TOTAL_LISTENER_QUOTA"))
        names = p.texts("ListenerNames")
        if names and len(names) != len(ports):
            raise invalid("ListenerNames", "must have one name per port, in the order of Ports")
        for i, port in enumerate(ports):
            if not 1 <= port <= 65535:
                raise invalid_value(
                    f"Ports.{i}", f"{port} is outside 1..65535", code="InvalidParameterValue.Range"
                )
        if len(set(ports)) != len(ports):
            raise invalid_value(
                "Ports", "the same port appears twice", code="InvalidParameterValue.Duplicate"
            )
        family = _port_family(protocol)
        for listener in lb.listeners.values():
            if listener.port in ports and _port_family(listener.protocol) == family:
                raise ApiError(
                    "InvalidParameter.PortCheckFailed",
                    f"Port {listener.port} of {lb.lb_id} is already used by {listener.protocol} "
                    f"listener {listener.listener_id}.",
                )
        quota = self._quota("TOTAL_LISTENER_QUOTA")
        if len(lb.listeners) + len(ports) > quota:
            raise limit_exceeded(
                f"{len(lb.listeners)} listeners on {lb.lb_id} plus {len(ports)} new", quota
            )
        layer7 = protocol in L7_PROTOCOLS
        health = self._health_check(
            p.object("HealthCheck"), protocol=protocol, base=None, rule=False
        )
        sni = p.integer("SniSwitch", default=0, lo=0, hi=1) or 0
        certificate = self._certificate(p.object("Certificate"))
        if sni and protocol != "HTTPS":
            raise invalid("SniSwitch", f"SNI is for HTTPS listeners, not {protocol}")
        if sni and certificate is not None:
            raise invalid(
                "Certificate",
                "an SNI listener has a certificate per domain (CreateRule, "
                "ModifyDomainAttributes), not one of its own",
            )
        if protocol in ("HTTPS", "TCP_SSL") and certificate is None and not sni:
            raise missing("Certificate (an HTTPS listener without SNI needs a certificate)")
        if protocol not in ("HTTPS", "TCP_SSL") and certificate is not None:
            raise invalid("Certificate", f"a {protocol} listener has no certificate")
        if layer7:
            for key in ("SessionExpireTime", "Scheduler", "HealthCheck"):
                if p.has(key):
                    raise invalid(
                        key, f"{protocol} listeners set it per rule (CreateRule), not per listener"
                    )
        session = self._session_expire(p) or 0
        scheduler = p.text("Scheduler", choices=("WRR", "LEAST_CONN"), default="WRR") or "WRR"
        ids = [self.ids.resource("lbl") for _ in ports]
        ops: list[Op] = []
        for i, (listener_id, port) in enumerate(zip(ids, ports, strict=True)):
            listener = Listener(
                listener_id=listener_id,
                lb_id=lb.lb_id,
                protocol=protocol,
                port=port,
                name=names[i] if names else "",
                health_check=None if layer7 else health,
                certificate=certificate,
                scheduler=scheduler,
                session_expire=session,
                sni_switch=sni,
                create_time=now_text(),
            )
            ops.append({"op": "put_listener", "listener": attrs(listener)})
        self._task(call, lb, ops, touched=0)
        return {"ListenerIds": ids}

    def _certificate(self, p: Params | None) -> Doc | None:
        if p is None:
            return None
        mode = p.text("SSLMode", choices=("UNIDIRECTIONAL", "MUTUAL"), default="UNIDIRECTIONAL")
        cert_id = p.text("CertId")
        if not cert_id and not p.has("CertContent"):
            raise missing(p.name("CertId"))
        ca_id = p.text("CertCaId")
        if mode == "MUTUAL" and not ca_id:
            raise missing(p.name("CertCaId") + " (MUTUAL SSLMode needs a CA certificate)")
        known = self.config.certificates
        if known:
            if cert_id and known.get(cert_id) != "SVR":
                raise invalid_value(
                    p.name("CertId"), f"{cert_id} is not a server certificate of this account"
                )
            if ca_id and known.get(ca_id) != "CA":
                raise invalid_value(
                    p.name("CertCaId"), f"{ca_id} is not a CA certificate of this account"
                )
        return {"SSLMode": mode, "CertId": cert_id or "cert-uploaded", "CertCaId": ca_id}

    def DescribeListeners(self, p: Params, call: Call) -> Doc:
        lb = self._lb(p)
        ids = p.texts("ListenerIds", max_items=MAX_LISTENER_IDS)
        protocol = p.text("Protocol", choices=PROTOCOLS)
        port = p.integer("Port", lo=1, hi=65535)
        listeners = [
            listener
            for listener in lb.listeners.values()
            if (not ids or listener.listener_id in ids)
            and (protocol is None or listener.protocol == protocol)
            and (port is None or listener.port == port)
        ]
        items = len(listeners) + sum(len(listener.rules) for listener in listeners)
        call.cloud_seconds = self.latency.describe(items)
        return {
            "Listeners": [self._listener_doc(listener) for listener in listeners],
            "TotalCount": len(listeners),
        }

    def _listener_doc(self, listener: Listener) -> Doc:
        doc: Doc = {
            "ListenerId": listener.listener_id,
            "Protocol": listener.protocol,
            "Port": listener.port,
            "ListenerName": listener.name,
            "CreateTime": listener.create_time,
            "Certificate": listener.certificate,
            "SniSwitch": listener.sni_switch,
            "EndPort": 0,
            "TargetType": "NODE",
            "SessionType": "NORMAL",
            "KeepaliveEnable": 0,
            "DeregisterTargetRst": False,
        }
        if listener.layer7:
            doc["Rules"] = [self._rule_doc(rule) for rule in listener.rules.values()]
        else:
            doc["HealthCheck"] = listener.health_check
            doc["Scheduler"] = listener.scheduler
            doc["SessionExpireTime"] = listener.session_expire
        return doc

    def _rule_doc(self, rule: Rule) -> Doc:
        return {
            "LocationId": rule.location_id,
            "ListenerId": rule.listener_id,
            "Domain": rule.domain,
            "Url": rule.url,
            "SessionExpireTime": rule.session_expire,
            "HealthCheck": rule.health_check,
            "Certificate": rule.certificate,
            "Scheduler": rule.scheduler,
            "ForwardType": rule.forward_type,
            "DefaultServer": rule.default_server,
            "Http2": rule.http2,
            "HttpGzip": True,
            "BeAutoCreated": False,
            "CreateTime": rule.create_time,
            "TargetType": "NODE",
        }

    def ModifyListener(self, p: Params, call: Call) -> Doc:
        lb = self._mutable_lb(p, call)
        listener = self._listener(lb, p)
        doc = attrs(listener)
        name = p.text("ListenerName", max_len=80)
        if name is not None:
            doc["name"] = name
        if listener.layer7:
            for key in ("SessionExpireTime", "Scheduler", "HealthCheck"):
                if p.has(key):
                    raise invalid(
                        key,
                        f"{listener.protocol} listeners set it per rule (ModifyRule), "
                        "not per listener",
                    )
        else:
            health = p.object("HealthCheck")
            if health is not None:
                doc["health_check"] = self._health_check(
                    health, protocol=listener.protocol, base=listener.health_check, rule=False
                )
            session = self._session_expire(p)
            if session is not None:
                doc["session_expire"] = session
            scheduler = p.text("Scheduler", choices=("WRR", "LEAST_CONN"))
            if scheduler is not None:
                doc["scheduler"] = scheduler
        sni = p.integer("SniSwitch", lo=0, hi=1)
        if sni is not None:
            if listener.protocol != "HTTPS":
                raise invalid("SniSwitch", f"SNI is for HTTPS listeners, not {listener.protocol}")
            if listener.sni_switch and not sni:
                raise invalid_value(
                    "SniSwitch",
                    f"listener {listener.listener_id} has SNI on, and SNI cannot be switched "
                    "off; create the listener again",
                )
            doc["sni_switch"] = sni
        certificate = self._certificate(p.object("Certificate"))
        if certificate is not None:
            if listener.protocol not in ("HTTPS", "TCP_SSL"):
                raise invalid("Certificate", f"a {listener.protocol} listener has no certificate")
            if doc["sni_switch"]:
                raise invalid(
                    "Certificate",
                    "an SNI listener has a certificate per domain: use ModifyDomainAttributes",
                )
            doc["certificate"] = certificate
        self._task(call, lb, [{"op": "put_listener", "listener": doc}], touched=0)
        return {}

    def DeleteListener(self, p: Params, call: Call) -> Doc:
        lb = self._mutable_lb(p, call)
        listener = self._listener(lb, p)
        self._delete_listeners(call, lb, [listener])
        return {}

    def DeleteLoadBalancerListeners(self, p: Params, call: Call) -> Doc:
        lb = self._mutable_lb(p, call)
        ids = p.texts("ListenerIds", max_items=MAX_DELETE_LISTENERS)
        if ids:
            unknown = [i for i in ids if i not in lb.listeners]
            if unknown:
                raise listener_not_found(lb.lb_id, unknown)
            listeners = [lb.listeners[i] for i in dict.fromkeys(ids)]
        else:
            listeners = list(lb.listeners.values())
        if not listeners:
            raise ApiError("FailedOperation.NoListenerInLB", f"{lb.lb_id} has no listeners.")
        self._delete_listeners(call, lb, listeners)
        return {}

    def _delete_listeners(self, call: Call, lb: LoadBalancer, listeners: list[Listener]) -> None:
        touched = sum(
            len(listener.targets) + sum(len(r.targets) for r in listener.rules.values())
            for listener in listeners
        )
        ops: list[Op] = [
            {"op": "del_listener", "lb_id": lb.lb_id, "listener_id": listener.listener_id}
            for listener in listeners
        ]
        self._task(call, lb, ops, touched=touched)

    # ===== rules ==========================================================================

    def CreateRule(self, p: Params, call: Call) -> Doc:
        """Rules on an HTTP/HTTPS listener. A domain's certificate (SNI listeners) and its
        default flag belong to the domain: a rule on an existing domain takes them from it.

        The first domain of a listener becomes its default domain, as on Tencent; a rule with
        ``DefaultServer: true`` makes its domain the default instead (the old one stops being
        it: a listener has exactly one).
        """
        lb = self._mutable_lb(p, call)
        listener = self._layer7_listener(lb, p, what="rules")
        quota = self._quota("TOTAL_LISTENER_RULE_QUOTA")
        inputs = p.objects("Rules", required=True)
        if len(listener.rules) + len(inputs) > quota:
            raise limit_exceeded(
                f"{len(listener.rules)} rules on {listener.listener_id} plus {len(inputs)} new",
                quota,
            )
        existing = {(r.domain, r.url) for r in listener.rules.values()}
        # Domain attributes as they stand, then as this call changes them.
        certificates: dict[str, Doc | None] = {}
        default: str | None = None
        for r in listener.rules.values():
            certificates.setdefault(r.domain, r.certificate)
            if r.default_server:
                default = r.domain
        new_rules: list[Rule] = []
        for rp in inputs:
            domain = rp.req_text("Domain", max_len=80).lower()
            if not _DOMAIN_RE.match(domain):
                raise invalid_value(rp.name("Domain"), f"{domain!r} is not a domain name")
            url = _url(rp)
            if (domain, url) in existing:
                raise invalid_value(
                    rp.name("Url"),
                    f"a rule for {domain}{url} already exists on {listener.listener_id}",
                    code="InvalidParameterValue.Duplicate",
                )
            existing.add((domain, url))
            certificate = self._certificate(rp.object("Certificate"))
            if certificate is not None and not listener.sni_switch:
                raise invalid(
                    rp.name("Certificate"),
                    f"listener {listener.listener_id} does not have SNI on; its certificate is "
                    "the listener's",
                )
            if domain in certificates:
                current = certificates[domain]
                if certificate is not None and current is not None and certificate != current:
                    raise invalid_value(
                        rp.name("Certificate"),
                        f"domain {domain} already has certificate {current['CertId']}; change "
                        "a domain's certificate with ModifyDomainAttributes",
                    )
                if current is None:
                    certificates[domain] = certificate
            else:
                if listener.sni_switch and certificate is None:
                    raise missing(
                        rp.name("Certificate")
                        + f" (domain {domain} is new on SNI listener {listener.listener_id})"
                    )
                certificates[domain] = certificate
            if rp.flag("DefaultServer") or default is None:
                default = domain
            new_rules.append(
                Rule(
                    location_id=self.ids.resource("loc"),
                    listener_id=listener.listener_id,
                    lb_id=lb.lb_id,
                    domain=domain,
                    url=url,
                    health_check=self._health_check(
                        rp.object("HealthCheck"), protocol=listener.protocol, base=None, rule=True
                    ),
                    session_expire=self._session_expire(rp) or 0,
                    scheduler=rp.text(
                        "Scheduler", choices=("WRR", "LEAST_CONN", "IP_HASH"), default="WRR"
                    )
                    or "WRR",
                    forward_type=rp.text(
                        "ForwardType",
                        choices=("HTTP", "HTTPS", "GRPC", "GRPCS", "TRPC"),
                        default="HTTP",
                    )
                    or "HTTP",
                    certificate=None,
                    default_server=False,
                    http2=rp.flag("Http2"),
                    create_time=now_text(),
                )
            )
        ops: list[Op] = []
        for rule in new_rules:
            rule.certificate = certificates[rule.domain]
            rule.default_server = rule.domain == default
            ops.append({"op": "put_rule", "rule": attrs(rule)})
        ops += self._domain_ops(listener, certificates=certificates, default=default)
        self._task(call, lb, ops, touched=0)
        return {"LocationIds": [r.location_id for r in new_rules]}

    def _domain_ops(
        self, listener: Listener, *, certificates: dict[str, Doc | None], default: str | None
    ) -> list[Op]:
        """put_rule for every existing rule whose domain attributes change."""
        ops: list[Op] = []
        for rule in listener.rules.values():
            certificate = certificates.get(rule.domain, rule.certificate)
            is_default = rule.domain == default
            if certificate != rule.certificate or is_default != rule.default_server:
                doc = attrs(rule) | {"certificate": certificate, "default_server": is_default}
                ops.append({"op": "put_rule", "rule": doc})
        return ops

    def ModifyDomainAttributes(self, p: Params, call: Call) -> Doc:
        """A domain's attributes, on all its rules: its name (NewDomain), certificate (SNI
        listeners only) and whether it is the default domain. A listener always has one
        default domain: DefaultServer false on the default needs NewDefaultServerDomain."""
        lb = self._mutable_lb(p, call)
        listener = self._layer7_listener(lb, p, what="domains")
        domain = p.req_text("Domain", max_len=80).lower()
        rules = [r for r in listener.rules.values() if r.domain == domain]
        if not rules:
            raise location_not_found(listener.listener_id, f"with domain {domain}")
        domains = {r.domain for r in listener.rules.values()}
        new_domain = p.text("NewDomain", max_len=80)
        if new_domain is not None:
            new_domain = new_domain.lower()
            if not _DOMAIN_RE.match(new_domain):
                raise invalid_value("NewDomain", f"{new_domain!r} is not a domain name")
            if new_domain != domain and new_domain in domains:
                raise invalid_value(
                    "NewDomain",
                    f"domain {new_domain} already exists on {listener.listener_id}",
                    code="InvalidParameterValue.Duplicate",
                )
        certificate = self._certificate(p.object("Certificate"))
        if certificate is not None and not listener.sni_switch:
            raise invalid(
                "Certificate",
                f"listener {listener.listener_id} does not have SNI on; its certificate is the "
                "listener's (ModifyListener)",
            )
        default = next((r.domain for r in listener.rules.values() if r.default_server), None)
        if p.has("DefaultServer"):
            if p.flag("DefaultServer"):
                default = domain
            elif default == domain:
                successor = (p.text("NewDefaultServerDomain") or "").lower()
                if not successor:
                    raise missing(
                        "NewDefaultServerDomain (a listener needs a default domain: name the "
                        f"one that replaces {domain})"
                    )
                if successor not in domains or successor == domain:
                    raise invalid_value(
                        "NewDefaultServerDomain",
                        f"{successor} is not another domain of {listener.listener_id}",
                    )
                default = successor
        http2 = p.flag("Http2") if p.has("Http2") else None
        ops: list[Op] = []
        for rule in listener.rules.values():
            doc = attrs(rule)
            if rule.domain == domain:
                if certificate is not None:
                    doc["certificate"] = certificate
                if http2 is not None:
                    doc["http2"] = http2
            doc["default_server"] = rule.domain == default
            if rule.domain == domain and new_domain is not None:
                doc["domain"] = new_domain
            if doc != attrs(rule):
                ops.append({"op": "put_rule", "rule": doc})
        self._task(call, lb, ops, touched=0)
        return {}

    def ModifyRule(self, p: Params, call: Call) -> Doc:
        lb = self._mutable_lb(p, call)
        listener = self._listener(lb, p)
        location_id = p.req_text("LocationId")
        rule = listener.rules.get(location_id)
        if rule is None:
            raise location_not_found(listener.listener_id, location_id)
        doc = attrs(rule)
        if p.has("Url"):
            url = _url(p)
            clash = [
                r
                for r in listener.rules.values()
                if r.domain == rule.domain and r.url == url and r.location_id != location_id
            ]
            if clash:
                raise invalid_value(
                    "Url",
                    f"a rule for {rule.domain}{url} already exists",
                    code="InvalidParameterValue.Duplicate",
                )
            doc["url"] = url
        health = p.object("HealthCheck")
        if health is not None:
            doc["health_check"] = self._health_check(
                health, protocol=listener.protocol, base=rule.health_check, rule=True
            )
        scheduler = p.text("Scheduler", choices=("WRR", "LEAST_CONN", "IP_HASH"))
        if scheduler is not None:
            doc["scheduler"] = scheduler
        session = self._session_expire(p)
        if session is not None:
            doc["session_expire"] = session
        forward_type = p.text("ForwardType", choices=("HTTP", "HTTPS", "GRPC", "GRPCS", "TRPC"))
        if forward_type is not None:
            doc["forward_type"] = forward_type
        self._task(call, lb, [{"op": "put_rule", "rule": doc}], touched=0)
        return {}

    def DeleteRule(self, p: Params, call: Call) -> Doc:
        lb = self._mutable_lb(p, call)
        listener = self._listener(lb, p)
        location_ids = p.texts("LocationIds")
        if location_ids:
            unknown = [i for i in location_ids if i not in listener.rules]
            if unknown:
                raise location_not_found(listener.listener_id, ", ".join(unknown))
            rules = [listener.rules[i] for i in dict.fromkeys(location_ids)]
        else:
            rule = self._rule_of(listener, p, required=True)
            assert rule is not None
            rules = [rule]
        ops: list[Op] = [
            {
                "op": "del_rule",
                "lb_id": lb.lb_id,
                "listener_id": listener.listener_id,
                "location_id": r.location_id,
            }
            for r in rules
        ]
        gone = {r.location_id for r in rules}
        remaining = [r for r in listener.rules.values() if r.location_id not in gone]
        if remaining and not any(r.default_server for r in remaining):
            # The default domain lost its last rule: the oldest domain left takes over.
            heir = remaining[0].domain
            ops += [
                {"op": "put_rule", "rule": attrs(r) | {"default_server": True}}
                for r in remaining
                if r.domain == heir
            ]
        self._task(call, lb, ops, touched=sum(len(r.targets) for r in rules))
        return {}

    # ===== targets ========================================================================

    def _bound(self, listener: Listener, rule: Rule | None) -> dict[TargetKey, Target]:
        return rule.targets if rule is not None else listener.targets

    def _check_target_quota(
        self, listener: Listener, rule: Rule | None, adding: Iterable[Target]
    ) -> None:
        bound = self._bound(listener, rule)
        new = {t.key for t in adding} - set(bound)
        quota = self._quota("TOTAL_TARGET_BIND_QUOTA")
        if len(bound) + len(new) > quota:
            where = rule.location_id if rule else listener.listener_id
            raise limit_exceeded(f"{len(bound)} targets on {where} plus {len(new)} new", quota)

    @staticmethod
    def _target_op(
        kind: str, lb: LoadBalancer, listener: Listener, rule: Rule | None, payload: list[Any]
    ) -> Op:
        op: Op = {
            "op": kind,
            "lb_id": lb.lb_id,
            "listener_id": listener.listener_id,
            "location_id": rule.location_id if rule else "",
        }
        op["targets" if kind == "put_targets" else "keys"] = payload
        return op

    def RegisterTargets(self, p: Params, call: Call) -> Doc:
        lb = self._mutable_lb(p, call)
        listener = self._listener(lb, p)
        rule = self._rule_of(listener, p, required=True)
        targets = self._targets(p.objects("Targets", required=True, max_items=MAX_TARGETS_PER_CALL))
        self._check_target_quota(listener, rule, targets)
        ops = [self._target_op("put_targets", lb, listener, rule, [attrs(t) for t in targets])]
        self._task(call, lb, ops, touched=len(targets))
        return {}

    def DeregisterTargets(self, p: Params, call: Call) -> Doc:
        lb = self._mutable_lb(p, call)
        listener = self._listener(lb, p)
        rule = self._rule_of(listener, p, required=True)
        targets = self._targets(p.objects("Targets", required=True, max_items=MAX_TARGETS_PER_CALL))
        # Deregistering a target that is not bound is a no-op, so a retry after a lost reply
        # succeeds.
        ops = [self._target_op("del_targets", lb, listener, rule, [list(t.key) for t in targets])]
        self._task(call, lb, ops, touched=len(targets))
        return {}

    def ModifyTargetWeight(self, p: Params, call: Call) -> Doc:
        lb = self._mutable_lb(p, call)
        listener = self._listener(lb, p)
        rule = self._rule_of(listener, p, required=True)
        weight = p.integer("Weight", lo=0, hi=100)
        targets = self._targets(
            p.objects("Targets", required=True, max_items=MAX_TARGETS_PER_CALL), default_weight=None
        )
        ops = [self._reweigh(lb, listener, rule, targets, weight, p.name("Targets"))]
        self._task(call, lb, ops, touched=len(targets))
        return {}

    def _reweigh(
        self,
        lb: LoadBalancer,
        listener: Listener,
        rule: Rule | None,
        targets: list[Target],
        weight: int | None,
        name: str,
    ) -> Op:
        bound = self._bound(listener, rule)
        updated: list[Doc] = []
        for target, raw_weight in zip(targets, [t.weight for t in targets], strict=True):
            current = bound.get(target.key)
            if current is None:
                where = rule.location_id if rule else listener.listener_id
                raise invalid(
                    name, f"target {target.address}:{target.port} is not bound to {where}"
                )
            new_weight = raw_weight if raw_weight >= 0 else weight
            if new_weight is None:
                raise missing(f"{name}.Weight (or Weight)")
            updated.append(attrs(current) | {"weight": new_weight})
        return self._target_op("put_targets", lb, listener, rule, updated)

    def BatchModifyTargetWeight(self, p: Params, call: Call) -> Doc:
        lb = self._mutable_lb(p, call)
        entries = p.objects("ModifyList", required=True, max_items=MAX_WEIGHT_ENTRIES)
        total = 0
        ops: list[Op] = []
        for ep in entries:
            listener = self._listener(lb, ep)
            rule = self._rule_of(listener, ep, required=True)
            weight = ep.integer("Weight", lo=0, hi=100)
            targets = self._targets(
                ep.objects("Targets", required=True, max_items=MAX_WEIGHT_TARGETS_PER_ENTRY),
                default_weight=None,
            )
            total += len(targets)
            if total > MAX_BATCH_TARGETS:
                raise limit_exceeded(f"{total}+ targets in ModifyList", MAX_BATCH_TARGETS)
            ops.append(self._reweigh(lb, listener, rule, targets, weight, ep.name("Targets")))
        self._task(call, lb, ops, touched=total)
        return {}

    async def BatchRegisterTargets(self, p: Params, call: Call) -> Doc:
        return await self._batch_targets(p, call, register=True)

    async def BatchDeregisterTargets(self, p: Params, call: Call) -> Doc:
        return await self._batch_targets(p, call, register=False)

    async def _batch_targets(self, p: Params, call: Call, *, register: bool) -> Doc:
        """Synchronous batch (de)registration; a listener whose part is bad fails alone.

        The call as a whole is refused for malformed input; a listener, rule or target that
        does not check out fails just that listener's part, reported in FailListenerIdSet.
        """
        lb = self._mutable_lb(p, call)
        items = p.objects("Targets", required=True, max_items=MAX_BATCH_TARGETS)
        groups: dict[tuple[str, str], list[Params]] = {}
        for tp in items:
            listener_id = tp.req_text("ListenerId")
            tp.req_integer("Port", lo=1, hi=65535)
            groups.setdefault((listener_id, tp.text("LocationId") or ""), []).append(tp)
        failed: dict[str, str] = {}
        ops: list[Op] = []
        pending: dict[tuple[str, str, TargetKey], bool] = {}
        for (listener_id, location_id), tps in groups.items():
            try:
                listener = lb.listeners.get(listener_id)
                if listener is None:
                    raise listener_not_found(lb.lb_id, [listener_id])
                rule = self._rule_of(listener, Params({"LocationId": location_id}), required=True)
                targets = self._targets(tps)
                if register:
                    self._check_target_quota(listener, rule, targets)
                    ops.append(
                        self._target_op(
                            "put_targets", lb, listener, rule, [attrs(t) for t in targets]
                        )
                    )
                else:
                    ops.append(
                        self._target_op(
                            "del_targets", lb, listener, rule, [list(t.key) for t in targets]
                        )
                    )
                for t in targets:
                    pending[(listener_id, location_id, t.key)] = True
            except ApiError as error:
                failed.setdefault(listener_id, f"{listener_id}: {error.message}")
        # A listener that failed in any of its groups fails as a whole.
        ops = [op for op in ops if op["listener_id"] not in failed]
        touched = sum(len(op["targets"] if "targets" in op else op["keys"]) for op in ops)
        seconds = self.latency.batch(touched)
        call.cloud_seconds = seconds
        async with self.engine.hold([lb.lb_id], call.request_id, seconds):
            # Nothing else can touch this CLB while it is held, so the checks above still hold.
            self.store.apply(ops)
        return {
            "FailListenerIdSet": list(failed),
            "Message": "; ".join(failed.values()),
        }

    def DescribeTargets(self, p: Params, call: Call) -> Doc:
        lb = self._lb(p)
        ids = p.texts("ListenerIds", max_items=MAX_IDS_PER_DESCRIBE)
        protocol = p.text("Protocol", choices=PROTOCOLS)
        port = p.integer("Port", lo=1, hi=65535)
        location_filter: set[str] | None = None
        ip_filter: set[str] | None = None
        tag_filter: set[str] | None = None
        for fp in p.objects("Filters", max_items=10):
            name = fp.req_text("Name")
            values = set(fp.texts("Values", required=True))
            if name == "location-id":
                location_filter = values
            elif name == "private-ip-address":
                ip_filter = values
            elif name == "tag":
                tag_filter = values
            else:
                raise ApiError(
                    "InvalidParameter.InvalidFilter",
                    f"Filter {name!r} is not supported; use location-id, private-ip-address or "
                    "tag.",
                )
        unknown = [i for i in ids if i not in lb.listeners]
        if unknown:
            raise listener_not_found(lb.lb_id, unknown)

        def keep(target: Target) -> bool:
            if ip_filter is not None and self.health.ip_of(target) not in ip_filter:
                return False
            return tag_filter is None or target.tag in tag_filter

        items = 0
        out: list[Doc] = []
        for listener in lb.listeners.values():
            if ids and listener.listener_id not in ids:
                continue
            if protocol and listener.protocol != protocol:
                continue
            if port and listener.port != port:
                continue
            doc: Doc = {
                "ListenerId": listener.listener_id,
                "Protocol": listener.protocol,
                "Port": listener.port,
                "EndPort": 0,
            }
            if listener.layer7:
                rules_out = []
                for rule in listener.rules.values():
                    if location_filter is not None and rule.location_id not in location_filter:
                        continue
                    backends = [self._backend_doc(t) for t in rule.targets.values() if keep(t)]
                    items += 1 + len(backends)
                    rules_out.append(
                        {
                            "LocationId": rule.location_id,
                            "Domain": rule.domain,
                            "Url": rule.url,
                            "Targets": backends,
                        }
                    )
                doc["Rules"] = rules_out
            else:
                backends = [self._backend_doc(t) for t in listener.targets.values() if keep(t)]
                items += len(backends)
                doc["Targets"] = backends
            out.append(doc)
        call.cloud_seconds = self.latency.describe(items)
        return {"Listeners": out}

    def _backend_doc(self, target: Target) -> Doc:
        ip = self.health.ip_of(target)
        return {
            "Type": target.kind,
            "InstanceId": target.address if target.kind == "CVM" else "",
            "Port": target.port,
            "Weight": target.weight,
            "PublicIpAddresses": [],
            "PrivateIpAddresses": [ip],
            "InstanceName": target.address if target.kind == "CVM" else "",
            "RegisteredTime": target.registered,
            "EniId": "",
            "Tag": target.tag,
            "Zone": "",
        }

    def DescribeTargetHealth(self, p: Params, call: Call) -> Doc:
        ids = p.texts("LoadBalancerIds", required=True, max_items=MAX_HEALTH_LBS)
        listener_ids = set(p.texts("ListenerIds"))
        location_ids = set(p.texts("LocationIds"))
        unknown = [i for i in ids if i not in self.store.lbs]
        if unknown:
            raise lb_not_found(unknown)
        items = 0
        out: list[Doc] = []
        for lb_id in dict.fromkeys(ids):
            lb = self.store.lbs[lb_id]
            listeners_out: list[Doc] = []
            for listener in lb.listeners.values():
                if listener_ids and listener.listener_id not in listener_ids:
                    continue
                groups: list[tuple[Rule | None, dict[TargetKey, Target]]]
                if listener.layer7:
                    groups = [(r, r.targets) for r in listener.rules.values()]
                else:
                    groups = [(None, listener.targets)]
                rules_out: list[Doc] = []
                for rule, bound in groups:
                    if location_ids and (rule is None or rule.location_id not in location_ids):
                        continue
                    health_check = rule.health_check if rule else listener.health_check
                    healths = [
                        self._health_doc(listener, rule, target, health_check)
                        for target in bound.values()
                    ]
                    items += len(healths)
                    rules_out.append(
                        {
                            "LocationId": rule.location_id if rule else "",
                            "Domain": rule.domain if rule else "",
                            "Url": rule.url if rule else "",
                            "RuleId": rule.location_id if rule else "",
                            "Targets": healths,
                        }
                    )
                listeners_out.append(
                    {
                        "ListenerId": listener.listener_id,
                        "ListenerName": listener.name,
                        "Protocol": listener.protocol,
                        "Port": listener.port,
                        "Rules": rules_out,
                    }
                )
            out.append(
                {
                    "LoadBalancerId": lb.lb_id,
                    "LoadBalancerName": lb.name,
                    "Listeners": listeners_out,
                }
            )
        call.cloud_seconds = self.latency.describe(items)
        return {"LoadBalancers": out}

    def _health_doc(
        self, listener: Listener, rule: Rule | None, target: Target, health_check: Doc | None
    ) -> Doc:
        detail = self.health.detail(listener, rule, target, health_check)
        return {
            "IP": self.health.ip_of(target),
            "Port": target.port,
            "HealthStatus": detail in ("Alive", "Close"),
            "TargetId": target.address if target.kind == "CVM" else "",
            "HealthStatusDetail": detail,
            "HealthStatusDetial": detail,
            "Weight": target.weight,
        }

    # ===== tasks and quotas ===============================================================

    def DescribeTaskStatus(self, p: Params, call: Call) -> Doc:
        call.cloud_seconds = self.latency.task_status
        task_id = p.text("TaskId")
        deal_name = p.text("DealName")
        if not task_id and not deal_name:
            raise missing("TaskId (or DealName)")
        if task_id:
            task = self.store.tasks.get(task_id)
        else:
            assert deal_name is not None
            found = self.store.deals.get(deal_name)
            task = self.store.tasks.get(found) if found else None
        if task is None:
            raise ApiError("ResourceNotFound", f"Task {task_id or deal_name} does not exist.")
        return {
            "Status": task.status,
            "Message": "" if task.status == TASK_RUNNING else task.message,
            "LoadBalancerIds": task.lb_ids if task.deal_name else [],
        }

    def DescribeQuota(self, p: Params, call: Call) -> Doc:
        counts = {
            "TOTAL_OPEN_CLB_QUOTA": sum(
                1 for lb in self.store.lbs.values() if lb.lb_type == "OPEN"
            ),
            "TOTAL_INTERNAL_CLB_QUOTA": sum(
                1 for lb in self.store.lbs.values() if lb.lb_type == "INTERNAL"
            ),
        }
        return {
            "QuotaSet": [
                {"QuotaId": quota_id, "QuotaCurrent": counts.get(quota_id), "QuotaLimit": limit}
                for quota_id, limit in self.config.quotas.items()
            ]
        }


def _url(p: Params) -> str:
    url = p.req_text("Url", max_len=200)
    if not url.startswith(("/", "=", "~")):
        raise invalid_value(p.name("Url"), f"{url!r} must start with /, = (exact) or ~ (regex)")
    return url


def _port_family(protocol: str) -> str:
    return "tcp" if protocol in _TCP_FAMILY else "udp"


def _check_types(protocol: str, *, rule: bool) -> tuple[str, ...]:
    if protocol == "UDP":
        return ("PING", "CUSTOM")
    if protocol in ("TCP", "TCP_SSL", "QUIC"):
        return ("TCP", "HTTP", "CUSTOM")
    if protocol == "HTTPS":
        return ("HTTP", "HTTPS", "GRPC")
    return ("HTTP", "GRPC")


def _default_health_check(protocol: str) -> Doc:
    check_type = {"UDP": "PING", "HTTP": "HTTP", "HTTPS": "HTTP"}.get(protocol, "TCP")
    return {
        "HealthSwitch": 1,
        "TimeOut": 2,
        "IntervalTime": 5,
        "HealthNum": 3,
        "UnHealthNum": 3,
        "HttpCode": 31,
        "HttpCheckPath": "/" if check_type == "HTTP" else "",
        "HttpCheckDomain": "",
        "HttpCheckMethod": "HEAD",
        "CheckPort": None,
        "CheckType": check_type,
        "SendContext": "",
        "RecvContext": "",
        "HttpVersion": "HTTP/1.1",
        "SourceIpType": 0,
    }
