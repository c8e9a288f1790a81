"""Load-balancer state as plain values: what we want, and what the cloud has.

The same frozen dataclasses describe both sides of the diff. A *desired* value leaves the ids
empty (the cloud assigns them) and may leave health-check fields as ``None`` ("whatever the
cloud defaults to"); an *observed* value carries the ids and every field the cloud reported.
Nothing here knows about Tencent's wire format: the cloud adapter converts.

Identity is by key, never by id: a listener is its ``(protocol, port)``, a rule its
``(domain, url)`` on a listener, a target its ``(kind, ip or instance id, port)``. Keys are what
make a plan replayable: it names what it means, and the adapter resolves names to ids at the
moment it calls.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from enum import StrEnum


class ListenerProtocol(StrEnum):
    TCP = "TCP"
    UDP = "UDP"
    HTTP = "HTTP"
    HTTPS = "HTTPS"
    # Not made by directlb, but a CLB we share may have them, so observed state can show them.
    TCP_SSL = "TCP_SSL"
    QUIC = "QUIC"

    @property
    def layer7(self) -> bool:
        """HTTP and HTTPS listeners carry rules (domain + URL); the others carry targets."""
        return self in (ListenerProtocol.HTTP, ListenerProtocol.HTTPS)

    @property
    def port_family(self) -> str:
        """Protocols of one family share a CLB's port space: two listeners cannot both use it."""
        return "udp" if self in (ListenerProtocol.UDP, ListenerProtocol.QUIC) else "tcp"


class TargetKind(StrEnum):
    """How a backend is bound: by a pod's ENI IP (direct mode) or by a node's instance id."""

    ENI = "ENI"
    NODE = "NODE"


TargetKey = tuple[TargetKind, str, int]


@dataclass(frozen=True, order=True)
class Target:
    """A backend ``ip:port`` with a weight (0-100; 0 drains it).

    A NODE target is bound by ``instance_id`` (the node's cloud instance) and ``ip`` is that
    node's private address; an ENI target is bound by ``ip`` alone.
    """

    ip: str
    port: int
    weight: int = 10
    kind: TargetKind = TargetKind.ENI
    instance_id: str = ""

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ValueError(f"target {self.ip}:{self.port}: port must be 1..65535")
        if not 0 <= self.weight <= 100:
            raise ValueError(f"target {self.ip}:{self.port}: weight must be 0..100")
        if self.kind is TargetKind.NODE and not self.instance_id:
            raise ValueError(f"target {self.ip}:{self.port}: a NODE target needs its instance_id")

    @property
    def key(self) -> TargetKey:
        address = self.instance_id if self.kind is TargetKind.NODE else self.ip
        return (self.kind, address, self.port)

    def __str__(self) -> str:
        where = f"{self.instance_id}/" if self.kind is TargetKind.NODE else ""
        return f"{where}{self.ip}:{self.port}"


@dataclass(frozen=True)
class HealthCheck:
    """A listener's (layer 4) or rule's (layer 7) health check.

    In a desired value, a field left ``None`` means "the cloud's default, whatever it is": the
    diff compares only the fields that are set. Observed values have every field filled in.
    """

    enabled: bool = True
    check_type: str | None = None  # TCP, HTTP, HTTPS, PING, ...; None: the protocol's default
    timeout: int | None = None  # seconds
    interval: int | None = None  # seconds
    healthy_threshold: int | None = None
    unhealthy_threshold: int | None = None
    http_codes: int | None = None  # bit mask: 1=1xx 2=2xx 4=3xx 8=4xx 16=5xx
    http_path: str | None = None
    http_domain: str | None = None
    http_method: str | None = None
    check_port: int | None = None

    def satisfied_by(self, observed: HealthCheck | None) -> bool:
        """True if ``observed`` already has everything this (desired) check asks for."""
        if observed is None:
            return False
        if not self.enabled:
            return not observed.enabled
        if not observed.enabled:
            return False
        for field in fields(self):
            wanted = getattr(self, field.name)
            if wanted is not None and wanted != getattr(observed, field.name):
                return False
        return True

    def merged_onto(self, observed: HealthCheck | None) -> HealthCheck:
        """The check the cloud has after applying this one over ``observed``."""
        if observed is None:
            return self
        changes = {
            f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None
        }
        return replace(observed, **changes)


@dataclass(frozen=True)
class Certificate:
    """A server certificate held by the cloud's certificate service, by id."""

    cert_id: str
    mode: str = "UNIDIRECTIONAL"  # or MUTUAL, which needs ca_cert_id
    ca_cert_id: str = ""


@dataclass(frozen=True, order=True)
class RuleKey:
    domain: str
    url: str

    def __post_init__(self) -> None:
        # Domain names ignore case; the cloud stores them in lower case.
        object.__setattr__(self, "domain", self.domain.lower())

    def __str__(self) -> str:
        return f"{self.domain}{self.url}"


@dataclass(frozen=True)
class Rule:
    """A layer-7 forwarding rule: requests for ``domain`` + ``url`` go to ``targets``.

    Two fields belong to the rule's *domain* rather than to the rule, as on Tencent's CLB
    (``RuleOutput`` reports them per rule, ``ModifyDomainAttributes`` changes them per domain):

    * ``certificate``: on an SNI listener (``Listener.sni``), the certificate the CLB presents
      for ``domain``. Ignored on other listeners (their certificate is the listener's).
    * ``default_server``: ``domain`` is the listener's *default domain*, the one a request
      whose Host matches no domain goes to. A listener has exactly one; in a desired value
      ``False`` on every rule means "whichever the cloud picked" (it makes the first domain
      created the default).

    Every rule of one domain must agree on both; :func:`directlb.plan.diff.diff` checks it.
    """

    domain: str
    url: str
    health_check: HealthCheck | None = None
    scheduler: str = "WRR"
    session_expire: int = 0  # seconds of session persistence; 0 is off
    targets: tuple[Target, ...] = ()
    location_id: str = ""  # the cloud's id; empty in a desired value
    certificate: Certificate | None = None  # the domain's, on an SNI listener
    default_server: bool = False  # the domain is the listener's default domain

    def __post_init__(self) -> None:
        object.__setattr__(self, "domain", self.domain.lower())

    @property
    def key(self) -> RuleKey:
        return RuleKey(self.domain, self.url)

    def settings_match(self, observed: Rule) -> bool:
        """True if ``observed`` needs no ModifyRule to become this (desired) rule (the domain's
        ``certificate`` and ``default_server`` are ModifyDomainAttributes' business)."""
        return (
            (self.health_check is None or self.health_check.satisfied_by(observed.health_check))
            and self.scheduler == observed.scheduler
            and self.session_expire == observed.session_expire
        )


@dataclass(frozen=True, order=True)
class ListenerKey:
    protocol: ListenerProtocol
    port: int

    def __str__(self) -> str:
        return f"{self.protocol}:{self.port}"


@dataclass(frozen=True)
class Listener:
    """A protocol and port on a CLB, with its targets (layer 4) or its rules (layer 7)."""

    protocol: ListenerProtocol
    port: int
    name: str = ""
    health_check: HealthCheck | None = None  # layer 4 only; layer 7 checks are per rule
    scheduler: str = "WRR"  # layer 4 only
    session_expire: int = 0  # layer 4 only
    certificate: Certificate | None = None  # HTTPS without SNI (and TCP_SSL)
    # HTTPS only: a certificate per domain (``Rule.certificate``) instead of ``certificate``.
    # Tencent can switch SNI on for a listener but never off: the planner recreates it then.
    sni: bool = False
    rules: tuple[Rule, ...] = ()
    targets: tuple[Target, ...] = ()
    listener_id: str = ""  # the cloud's id; empty in a desired value

    def __post_init__(self) -> None:
        object.__setattr__(self, "protocol", ListenerProtocol(self.protocol))
        if not 1 <= self.port <= 65535:
            raise ValueError(f"listener port {self.port} must be 1..65535")
        if self.protocol.layer7 and self.targets:
            raise ValueError(f"{self.key}: a layer-7 listener binds targets through its rules")
        if not self.protocol.layer7 and self.rules:
            raise ValueError(f"{self.key}: only HTTP and HTTPS listeners have rules")

    @property
    def key(self) -> ListenerKey:
        return ListenerKey(self.protocol, self.port)

    def rule(self, key: RuleKey) -> Rule | None:
        for rule in self.rules:
            if rule.key == key:
                return rule
        return None

    @property
    def default_domain(self) -> str | None:
        """The domain whose rules are the default server, if any rule says so."""
        return next((r.domain for r in self.rules if r.default_server), None)

    def domain_certificate(self, domain: str) -> Certificate | None:
        """On an SNI listener, the certificate of ``domain`` (from its first rule)."""
        domain = domain.lower()
        return next((r.certificate for r in self.rules if r.domain == domain), None)

    def settings_match(self, observed: Listener) -> bool:
        """True if ``observed`` needs no ModifyListener to become this (desired) listener."""
        if self.name and self.name != observed.name:
            return False
        if self.certificate is not None and self.certificate != observed.certificate:
            return False
        if self.sni and not observed.sni:
            return False
        if self.protocol.layer7:
            return True
        return (
            (self.health_check is None or self.health_check.satisfied_by(observed.health_check))
            and self.scheduler == observed.scheduler
            and self.session_expire == observed.session_expire
        )


@dataclass(frozen=True)
class LoadBalancerState:
    """Everything on one CLB that the planner looks at: its listeners, rules and targets."""

    lb_id: str
    listeners: tuple[Listener, ...] = ()

    def listener(self, key: ListenerKey) -> Listener | None:
        for listener in self.listeners:
            if listener.key == key:
                return listener
        return None

    def canonical(self) -> tuple[Listener, ...]:
        """This state without cloud ids, in a stable order: equal for equal CLB contents."""
        return tuple(sorted((canonical_listener(lst) for lst in self.listeners), key=_by_key))


def canonical_listener(listener: Listener) -> Listener:
    rules = tuple(
        sorted(
            (replace(r, location_id="", targets=tuple(sorted(r.targets))) for r in listener.rules),
            key=lambda r: (r.domain, r.url),
        )
    )
    return replace(listener, listener_id="", rules=rules, targets=tuple(sorted(listener.targets)))


def _by_key(listener: Listener) -> ListenerKey:
    return listener.key
