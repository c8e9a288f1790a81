"""`directlb controller` settings: flags, DIRECTLB_* fallbacks, and bad settings refused by name."""

from __future__ import annotations

import argparse
import ipaddress
import subprocess
import sys
from pathlib import Path

import pytest

from directlb.cli import build_parser
from directlb.cloud.config import SyncStrategy
from directlb.controllers.config import ConfigError, ControllerConfig, HostPort, from_args

CREDS = {"TENCENTCLOUD_SECRET_ID": "AKIDtest1234", "TENCENTCLOUD_SECRET_KEY": "key-secret"}
REQUIRED = ["--cluster-id=cls-abc", "--vpc-id=vpc-123"]


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["controller", *argv])


def load(*argv: str, env: dict[str, str] | None = None) -> ControllerConfig:
    return from_args(parse(*argv), {**CREDS, **(env or {})})


def test_defaults() -> None:
    config = load(*REQUIRED, env={"POD_NAME": "directlb-0"})
    assert config.cluster_id == "cls-abc" and config.vpc_id == "vpc-123"
    assert config.region == "ap-guangzhou"
    assert config.kubeconfig is None
    assert config.clb_endpoint == "" and config.clb_protocol == "https"
    assert config.sync_strategy is SyncStrategy.OPTIMIZED
    assert config.workers > 0
    assert config.leader_elect is True
    assert config.leader_election_namespace == "kube-system"
    assert config.identity == "directlb-0"
    assert config.metrics_listen == HostPort("0.0.0.0", 8080)
    assert config.webhook_listen == HostPort("0.0.0.0", 9443)
    assert config.readiness_gate_timeout > 0
    assert config.direct_routable_cidrs == ()
    assert (config.lease_duration, config.renew_deadline, config.retry_period) == (15, 10, 2)


def test_every_flag(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\n")
    config = load(
        *REQUIRED,
        f"--kubeconfig={kubeconfig}",
        "--region=ap-shanghai",
        "--clb-endpoint=127.0.0.1:9000",
        "--clb-protocol=http",
        "--sync-strategy=naive",
        "--workers=7",
        "--no-leader-elect",
        "--leader-election-namespace=ops",
        "--webhook-listen=127.0.0.1:0",
        "--metrics-listen=[::1]:9090",
        "--readiness-gate-timeout=1.5",
        "--direct-routable-cidrs=10.0.0.0/8, 172.16.0.0/12",
        "--lease-duration=3",
        "--renew-deadline=2",
        "--retry-period=0.5",
    )
    assert config.kubeconfig == kubeconfig
    assert config.region == "ap-shanghai"
    assert (config.clb_endpoint, config.clb_protocol) == ("127.0.0.1:9000", "http")
    assert config.sync_strategy is SyncStrategy.NAIVE
    assert config.workers == 7
    assert config.leader_elect is False
    assert config.leader_election_namespace == "ops"
    assert config.webhook_listen == HostPort("127.0.0.1", 0)
    assert config.metrics_listen == HostPort("::1", 9090)
    assert config.readiness_gate_timeout == 1.5
    assert config.direct_routable_cidrs == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("172.16.0.0/12"),
    )
    assert (config.lease_duration, config.renew_deadline, config.retry_period) == (3, 2, 0.5)


def test_environment_fallbacks_and_flags_win() -> None:
    env = {
        "DIRECTLB_CLUSTER_ID": "cls-env",
        "DIRECTLB_VPC_ID": "vpc-env",
        "DIRECTLB_REGION": "ap-beijing",
        "DIRECTLB_WORKERS": "3",
        "DIRECTLB_SYNC_STRATEGY": "batch",
        "DIRECTLB_LEADER_ELECT": "false",
        "DIRECTLB_METRICS_LISTEN": "127.0.0.1:18080",
        "DIRECTLB_DIRECT_ROUTABLE_CIDRS": "10.1.0.0/16",
        "POD_NAMESPACE": "directlb-system",
    }
    config = load(env=env)
    assert (config.cluster_id, config.vpc_id, config.region) == ("cls-env", "vpc-env", "ap-beijing")
    assert config.workers == 3 and config.sync_strategy is SyncStrategy.BATCH
    assert config.leader_elect is False
    assert config.metrics_listen == HostPort("127.0.0.1", 18080)
    assert config.direct_routable_cidrs == (ipaddress.ip_network("10.1.0.0/16"),)
    assert config.leader_election_namespace == "directlb-system"  # POD_NAMESPACE
    flagged = load("--workers=9", "--leader-elect", "--region=ap-shanghai", env=env)
    assert flagged.workers == 9 and flagged.leader_elect is True
    assert flagged.region == "ap-shanghai"


def test_identity_without_pod_name_is_host_and_pid() -> None:
    import os
    import socket

    assert load(*REQUIRED).identity == f"{socket.gethostname()}-{os.getpid()}"


def test_credentials_from_a_file(tmp_path: Path) -> None:
    file = tmp_path / "creds"
    file.write_text("TENCENTCLOUD_SECRET_ID=AKIDfile9999\nTENCENTCLOUD_SECRET_KEY=k-secret\n")
    config = from_args(parse(*REQUIRED, f"--credentials-file={file}"), {})
    assert config.credentials.secret_id == "AKIDfile9999"
    assert "k-secret" not in repr(config) and "AKIDfile9999" not in repr(config)


BAD: list[tuple[list[str], dict[str, str], str]] = [
    (["--vpc-id=vpc-1"], {}, "--cluster-id is required (or set DIRECTLB_CLUSTER_ID)"),
    (["--cluster-id=c"], {}, "--vpc-id is required (or set DIRECTLB_VPC_ID)"),
    ([*REQUIRED, "--workers=0"], {}, '--workers must be a positive integer, got "0"'),
    ([*REQUIRED, "--workers=two"], {}, '--workers must be a positive integer, got "two"'),
    ([*REQUIRED], {"DIRECTLB_WORKERS": "-1"}, '--workers must be a positive integer, got "-1"'),
    (["--cluster-id=c", "--vpc-id=net-1"], {}, '--vpc-id must be a VPC id (vpc-…), got "net-1"'),
    ([*REQUIRED, "--region=Guangzhou"], {}, "--region must be a region such as ap-guangzhou"),
    ([*REQUIRED, "--kubeconfig=/nonexistent/kc"], {}, "--kubeconfig must be a readable file"),
    ([*REQUIRED, "--clb-endpoint=localhost"], {}, '--clb-endpoint must be HOST:PORT, got "localh'),
    ([*REQUIRED, "--clb-protocol=ftp"], {}, '--clb-protocol must be http or https, got "ftp"'),
    ([*REQUIRED, "--sync-strategy=fast"], {}, "--sync-strategy must be naive, batch or optimized"),
    ([*REQUIRED, "--metrics-listen=8080"], {}, "--metrics-listen must be HOST:PORT"),
    ([*REQUIRED, "--webhook-listen=h:99999"], {}, "--webhook-listen must be HOST:PORT"),
    ([*REQUIRED, "--readiness-gate-timeout=0"], {}, "--readiness-gate-timeout must be a positive"),
    ([*REQUIRED, "--readiness-gate-timeout=nan"], {}, "--readiness-gate-timeout must be a posit"),
    ([*REQUIRED, "--direct-routable-cidrs=10.0.0.0/33"], {}, "--direct-routable-cidrs must be"),
    ([*REQUIRED], {"DIRECTLB_LEADER_ELECT": "maybe"}, "DIRECTLB_LEADER_ELECT must be true or fal"),
    ([*REQUIRED, "--lease-duration=2", "--renew-deadline=3"], {}, "--lease-duration > --renew"),
    ([*REQUIRED, "--webhook-service=ns"], {}, '--webhook-service must be NAMESPACE/NAME, got "ns"'),
    ([*REQUIRED, "--webhook-service=NS/x"], {}, "--webhook-service must be NAMESPACE/NAME"),
    ([*REQUIRED, "--webhook-url=http://a/x"], {}, "--webhook-url must be an https:// URL"),
    ([*REQUIRED, "--webhook-url=https://a/x?q=1"], {}, "--webhook-url must be an https:// URL"),
    ([*REQUIRED, "--webhook-failure-policy=ignore"], {}, "--webhook-failure-policy must be Ig"),
    ([*REQUIRED], {"DIRECTLB_WEBHOOK": "perhaps"}, "DIRECTLB_WEBHOOK must be true or false"),
]


@pytest.mark.parametrize(("argv", "env", "message"), BAD, ids=[m[:40] for _, _, m in BAD])
def test_bad_settings_are_refused_by_name(
    argv: list[str], env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load(*argv, env=env)
    assert str(info.value).startswith(message)


def test_missing_credentials_are_refused_without_showing_values() -> None:
    with pytest.raises(ConfigError, match="TENCENTCLOUD_SECRET_ID"):
        from_args(parse(*REQUIRED), {"TENCENTCLOUD_SECRET_KEY": "hidden-value"})


def test_the_cli_exits_2_naming_the_setting() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "directlb", "controller", *REQUIRED, "--workers=0"],
        capture_output=True,
        text=True,
        env={**CREDS, "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert result.returncode == 2
    assert 'directlb controller: --workers must be a positive integer, got "0"' in result.stderr


def test_webhook_settings() -> None:
    default = load(*REQUIRED)
    assert default.webhook and default.webhook_url == ""
    assert default.webhook_service == "kube-system/directlb-webhook"
    assert (default.webhook_namespace, default.webhook_service_name) == (
        "kube-system",
        "directlb-webhook",
    )
    assert default.webhook_failure_policy == "Ignore"
    in_pod = load(*REQUIRED, env={"POD_NAMESPACE": "directlb-system"})
    assert in_pod.webhook_service == "directlb-system/directlb-webhook"
    elected = load(*REQUIRED, "--leader-election-namespace=ops")
    assert elected.webhook_service == "ops/directlb-webhook"
    custom = load(
        *REQUIRED,
        "--no-webhook",
        "--webhook-service=lb/hooks",
        "--webhook-url=https://hooks.example.com:8443/mutate-v1-pod",
        "--webhook-failure-policy=Fail",
        "--webhook-recheck-period=0.5",
    )
    assert not custom.webhook
    assert (custom.webhook_namespace, custom.webhook_service_name) == ("lb", "hooks")
    assert custom.webhook_url == "https://hooks.example.com:8443/mutate-v1-pod"
    assert (custom.webhook_failure_policy, custom.webhook_recheck_period) == ("Fail", 0.5)
    assert load(*REQUIRED, "--webhook-url=local").webhook_url == "local"
    assert not load(*REQUIRED, env={"DIRECTLB_WEBHOOK": "false"}).webhook
