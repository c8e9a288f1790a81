"""The settings of ``directlb controller``: flags, with environment-variable fallbacks.

Every flag ``--some-setting`` may instead come from ``DIRECTLB_SOME_SETTING`` (a flag given on
the command line wins). That is how ``deploy/deployment.yaml`` passes ``--cluster-id``,
``--region`` and ``--vpc-id`` (``$(DIRECTLB_CLUSTER_ID)`` …), and how an overlay may set the
others without touching the args. A bad setting is refused at start, before anything connects,
with a message that names the flag (:class:`ConfigError`; the CLI exits 2).

Credentials are the official SDK's ``TENCENTCLOUD_SECRET_ID``/``TENCENTCLOUD_SECRET_KEY`` or a
``--credentials-file`` (:class:`directlb.cloud.config.Credentials`); they are never logged.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import socket
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from directlb.cloud.config import Credentials, SyncStrategy
from directlb.kube.permissions import WEBHOOK_SERVICE_NAME

ENV_PREFIX = "DIRECTLB_"
ENV_POD_NAME = "POD_NAME"
ENV_POD_NAMESPACE = "POD_NAMESPACE"

DEFAULT_REGION = "ap-guangzhou"
DEFAULT_METRICS_LISTEN = "0.0.0.0:8080"
DEFAULT_WEBHOOK_LISTEN = "0.0.0.0:9443"
DEFAULT_WORKERS = 4
DEFAULT_READINESS_GATE_TIMEOUT = 600.0
DEFAULT_WEBHOOK_RECHECK_PERIOD = 300.0
#: ``--webhook-url=local``: the address the webhook server is bound to (``directlb up``, tests).
WEBHOOK_URL_LOCAL = "local"
WEBHOOK_FAILURE_POLICIES = ("Ignore", "Fail")
FALLBACK_LEADER_NAMESPACE = "kube-system"

_REGION = re.compile(r"^[a-z]+(-[a-z0-9]+)+$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class ConfigError(ValueError):
    """A setting that cannot be used; ``str()`` names it and says what was wrong."""


@dataclass(frozen=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class ControllerConfig:
    cluster_id: str
    vpc_id: str
    credentials: Credentials
    region: str = DEFAULT_REGION
    kubeconfig: Path | None = None  # None: in-cluster config (or lightkube's usual lookup)
    clb_endpoint: str = ""  # HOST:PORT of an emulator; empty: the real cloud
    clb_protocol: str = "https"
    sync_strategy: SyncStrategy = SyncStrategy.OPTIMIZED
    workers: int = DEFAULT_WORKERS
    leader_elect: bool = True
    leader_election_namespace: str = FALLBACK_LEADER_NAMESPACE
    identity: str = ""
    webhook_listen: HostPort = field(
        default_factory=lambda: _host_port_default(DEFAULT_WEBHOOK_LISTEN)
    )
    metrics_listen: HostPort = field(
        default_factory=lambda: _host_port_default(DEFAULT_METRICS_LISTEN)
    )
    readiness_gate_timeout: float = DEFAULT_READINESS_GATE_TIMEOUT
    # The admission webhook (docs/webhook.md): served by every replica; its configuration and
    # certificate Secret kept whole by the leader's guardian.
    webhook: bool = True
    webhook_service: str = f"{FALLBACK_LEADER_NAMESPACE}/{WEBHOOK_SERVICE_NAME}"  # NS/NAME
    webhook_url: str = ""  # empty: call webhook_service; "local": our bound address
    webhook_failure_policy: str = "Ignore"
    webhook_recheck_period: float = DEFAULT_WEBHOOK_RECHECK_PERIOD
    direct_routable_cidrs: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    @property
    def webhook_namespace(self) -> str:
        """The controller's namespace as the webhook knows it: the Service's and the
        certificate Secret's, and never subject to the webhook."""
        return self.webhook_service.partition("/")[0]

    @property
    def webhook_service_name(self) -> str:
        return self.webhook_service.partition("/")[2]


def _host_port_default(text: str) -> HostPort:
    host, _, port = text.rpartition(":")
    return HostPort(host, int(port))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``directlb controller``. Values stay strings (default None) so that a flag
    and its environment variable go through the same checks in :func:`from_args`."""
    add = parser.add_argument
    add("--kubeconfig", metavar="FILE", help="default: in-cluster config (env DIRECTLB_KUBECONFIG)")
    add("--cluster-id", metavar="ID", help="the TKE cluster id, recorded in CLB tags (required)")
    add("--region", metavar="REGION", help=f"Tencent Cloud region (default {DEFAULT_REGION})")
    add("--vpc-id", metavar="ID", help="the cluster's VPC (required)")
    add("--clb-endpoint", metavar="HOST:PORT", help="only to reach a CLB emulator")
    add("--clb-protocol", metavar="http|https", help="only to reach a CLB emulator")
    add("--credentials-file", metavar="FILE", help="instead of TENCENTCLOUD_SECRET_ID/KEY")
    add("--sync-strategy", metavar="naive|batch|optimized", help="default optimized")
    add(
        "--workers",
        metavar="N",
        help=f"reconcile workers per controller (default {DEFAULT_WORKERS})",
    )
    add(
        "--leader-elect",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="campaign for the Lease; only the leader reconciles (default on)",
    )
    add(
        "--leader-election-namespace",
        metavar="NS",
        help=f"where the Lease lives (default $POD_NAMESPACE, else {FALLBACK_LEADER_NAMESPACE})",
    )
    add("--webhook-listen", metavar="HOST:PORT", help=f"default {DEFAULT_WEBHOOK_LISTEN}")
    add(
        "--webhook",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="serve the readiness-gate admission webhook and keep its configuration (default on)",
    )
    add(
        "--webhook-service",
        metavar="NAMESPACE/NAME",
        help=f"the Service the API server calls the webhook through, in the controller's "
        f"namespace (default $POD_NAMESPACE/{WEBHOOK_SERVICE_NAME}, else the leader-election "
        "namespace); its namespace holds the certificate Secret",
    )
    add(
        "--webhook-url",
        metavar="URL|local",
        help="call the webhook at this https URL instead of the Service; 'local': the address "
        "--webhook-listen is bound to (a controller outside the cluster: directlb up)",
    )
    add(
        "--webhook-failure-policy",
        metavar="Ignore|Fail",
        help="what the API server does when the webhook cannot answer (default Ignore)",
    )
    add("--metrics-listen", metavar="HOST:PORT", help=f"default {DEFAULT_METRICS_LISTEN}")
    add(
        "--readiness-gate-timeout",
        metavar="SECONDS",
        help=f"default {DEFAULT_READINESS_GATE_TIMEOUT:g}",
    )
    add("--direct-routable-cidrs", metavar="CIDR,…", help="pod CIDRs the CLB can route to")
    # Advanced: leader-election timings (tests shorten them).
    add("--lease-duration", help=argparse.SUPPRESS)
    add("--renew-deadline", help=argparse.SUPPRESS)
    add("--retry-period", help=argparse.SUPPRESS)
    add("--webhook-recheck-period", help=argparse.SUPPRESS)


def env_name(flag: str) -> str:
    """``cluster_id`` / ``--cluster-id`` -> ``DIRECTLB_CLUSTER_ID``."""
    return ENV_PREFIX + flag.lstrip("-").replace("-", "_").upper()


class _Settings:
    def __init__(self, args: argparse.Namespace, env: Mapping[str, str]) -> None:
        self.args = args
        self.env = env

    def raw(self, dest: str) -> str | None:
        value = getattr(self.args, dest, None)
        if value is not None:
            return str(value)
        from_env = self.env.get(env_name(dest))
        return from_env if from_env not in (None, "") else None

    def flag(self, dest: str) -> str:
        return "--" + dest.replace("_", "-")

    def bad(self, dest: str, what: str, value: str) -> ConfigError:
        return ConfigError(f"{self.flag(dest)} {what}, got {_quote(value)}")

    def required(self, dest: str) -> str:
        value = self.raw(dest)
        if value is None or not value.strip():
            raise ConfigError(f"{self.flag(dest)} is required (or set {env_name(dest)})")
        if any(c.isspace() for c in value):
            raise self.bad(dest, "must not contain whitespace", value)
        return value

    def positive_int(self, dest: str, default: int) -> int:
        value = self.raw(dest)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            number = 0
        if number <= 0:
            raise self.bad(dest, "must be a positive integer", value)
        return number

    def positive_float(self, dest: str, default: float) -> float:
        value = self.raw(dest)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            number = 0.0
        if not number > 0 or number == float("inf"):
            raise self.bad(dest, "must be a positive number of seconds", value)
        return number

    def host_port(self, dest: str, default: str) -> HostPort:
        value = self.raw(dest) or default
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise self.bad(dest, "must be HOST:PORT (e.g. 0.0.0.0:8080)", value)
        return HostPort(host.strip("[]"), int(port))

    def boolean(self, dest: str, default: bool) -> bool:
        value = getattr(self.args, dest, None)
        if isinstance(value, bool):
            return value
        text = self.env.get(env_name(dest))
        if text in (None, ""):
            return default
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ConfigError(f"{env_name(dest)} must be true or false, got {_quote(text)}")


def _quote(value: str) -> str:
    return '"' + value.replace('"', '\\"') + '"'


def default_identity(env: Mapping[str, str]) -> str:
    """``POD_NAME`` (the downward API), else ``hostname-pid``: unique per process."""
    return env.get(ENV_POD_NAME) or f"{socket.gethostname()}-{os.getpid()}"


def from_args(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> ControllerConfig:
    """Resolve and check every setting; raise :class:`ConfigError` naming the first bad one."""
    env = os.environ if environ is None else environ
    s = _Settings(args, env)
    cluster_id = s.required("cluster_id")
    vpc_id = s.required("vpc_id")
    if not vpc_id.startswith("vpc-"):
        raise s.bad("vpc_id", "must be a VPC id (vpc-…)", vpc_id)
    region = s.raw("region") or DEFAULT_REGION
    if not _REGION.match(region):
        raise s.bad("region", "must be a region such as ap-guangzhou", region)

    kubeconfig_text = s.raw("kubeconfig")
    kubeconfig = Path(kubeconfig_text) if kubeconfig_text else None
    if kubeconfig is not None and not kubeconfig.is_file():
        raise s.bad("kubeconfig", "must be a readable file", str(kubeconfig))

    endpoint = s.raw("clb_endpoint") or ""
    if endpoint:
        host, sep, port = endpoint.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
            raise s.bad("clb_endpoint", "must be HOST:PORT", endpoint)
    protocol = (s.raw("clb_protocol") or "https").lower()
    if protocol not in ("http", "https"):
        raise s.bad("clb_protocol", "must be http or https", protocol)

    strategy_text = s.raw("sync_strategy") or SyncStrategy.OPTIMIZED.value
    try:
        strategy = SyncStrategy(strategy_text)
    except ValueError:
        raise s.bad("sync_strategy", "must be naive, batch or optimized", strategy_text) from None

    workers = s.positive_int("workers", DEFAULT_WORKERS)
    leader_elect = s.boolean("leader_elect", True)
    namespace = (
        s.raw("leader_election_namespace")
        or env.get(ENV_POD_NAMESPACE)
        or FALLBACK_LEADER_NAMESPACE
    )
    webhook = s.host_port("webhook_listen", DEFAULT_WEBHOOK_LISTEN)
    metrics = s.host_port("metrics_listen", DEFAULT_METRICS_LISTEN)
    gate_timeout = s.positive_float("readiness_gate_timeout", DEFAULT_READINESS_GATE_TIMEOUT)
    webhook_enabled = s.boolean("webhook", True)
    webhook_service = s.raw("webhook_service") or (
        f"{env.get(ENV_POD_NAMESPACE) or namespace}/{WEBHOOK_SERVICE_NAME}"
    )
    service_ns, slash, service_name = webhook_service.partition("/")
    if not slash or not _DNS_LABEL.match(service_ns) or not _DNS_LABEL.match(service_name):
        raise s.bad("webhook_service", "must be NAMESPACE/NAME", webhook_service)
    webhook_url = s.raw("webhook_url") or ""
    if webhook_url and webhook_url != WEBHOOK_URL_LOCAL:
        parts = urllib.parse.urlsplit(webhook_url)
        if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment:
            raise s.bad(
                "webhook_url",
                "must be an https:// URL without query or fragment, or local",
                webhook_url,
            )
    failure_policy = s.raw("webhook_failure_policy") or "Ignore"
    if failure_policy not in WEBHOOK_FAILURE_POLICIES:
        raise s.bad("webhook_failure_policy", "must be Ignore or Fail", failure_policy)
    recheck = s.positive_float("webhook_recheck_period", DEFAULT_WEBHOOK_RECHECK_PERIOD)

    cidrs: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for item in (s.raw("direct_routable_cidrs") or "").split(","):
        if not item.strip():
            continue
        try:
            cidrs.append(ipaddress.ip_network(item.strip()))
        except ValueError as error:
            raise s.bad(
                "direct_routable_cidrs", f"must be a comma list of CIDRs ({error})", item
            ) from None

    lease_duration = s.positive_float("lease_duration", 15.0)
    renew_deadline = s.positive_float("renew_deadline", 10.0)
    retry_period = s.positive_float("retry_period", 2.0)
    if not lease_duration > renew_deadline > retry_period:
        raise ConfigError(
            "--lease-duration > --renew-deadline > --retry-period is required, got "
            f"{lease_duration:g} > {renew_deadline:g} > {retry_period:g}"
        )

    credentials_file = s.raw("credentials_file")
    try:
        credentials = (
            Credentials.from_file(Path(credentials_file))
            if credentials_file
            else Credentials.from_env(env)
        )
    except (ValueError, OSError) as error:
        name = "--credentials-file" if credentials_file else "credentials"
        raise ConfigError(f"{name}: {error}") from None

    return ControllerConfig(
        cluster_id=cluster_id,
        vpc_id=vpc_id,
        credentials=credentials,
        region=region,
        kubeconfig=kubeconfig,
        clb_endpoint=endpoint,
        clb_protocol=protocol,
        sync_strategy=strategy,
        workers=workers,
        leader_elect=leader_elect,
        leader_election_namespace=namespace,
        identity=default_identity(env),
        webhook_listen=webhook,
        metrics_listen=metrics,
        readiness_gate_timeout=gate_timeout,
        webhook=webhook_enabled,
        webhook_service=webhook_service,
        webhook_url=webhook_url,
        webhook_failure_policy=failure_policy,
        webhook_recheck_period=recheck,
        direct_routable_cidrs=tuple(cidrs),
        lease_duration=lease_duration,
        renew_deadline=renew_deadline,
        retry_period=retry_period,
    )
