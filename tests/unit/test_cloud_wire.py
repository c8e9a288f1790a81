"""The wire codec, configuration and credentials, the cache, and typed errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from directlb.cloud.cache import ObservedCache
from directlb.cloud.config import Credentials, SyncStrategy, TencentConfig, Timing
from directlb.cloud.errors import CloudError, is_retryable
from directlb.cloud.port import LoadBalancerSpec, LoadBalancerType
from directlb.cloud.wire import (
    batch_target_params,
    create_listener_params,
    health_params,
    modify_rule_params,
    parse_backend,
    parse_listener,
    parse_load_balancer,
    parse_target_groups,
    parse_target_health,
    rule_params,
    target_params,
    with_targets,
)
from directlb.plan.limits import Batching
from directlb.plan.state import (
    Certificate,
    HealthCheck,
    Listener,
    ListenerKey,
    ListenerProtocol,
    LoadBalancerState,
    Rule,
    RuleKey,
    Target,
    TargetKind,
)

NODE = Target("127.20.0.1", 30080, weight=5, kind=TargetKind.NODE, instance_id="ins-1")
POD = Target("127.17.0.9", 8080)


def test_targets_are_bound_by_eni_ip_or_instance_id() -> None:
    assert target_params(POD) == {"Port": 8080, "Weight": 10, "EniIp": "127.17.0.9"}
    assert target_params(NODE) == {"Port": 30080, "Weight": 5, "InstanceId": "ins-1"}
    assert batch_target_params(listener_id="lbl-1", location_id="", target=POD) == {
        "Port": 8080,
        "Weight": 10,
        "EniIp": "127.17.0.9",
        "ListenerId": "lbl-1",
    }
    with_rule = batch_target_params(listener_id="lbl-1", location_id="loc-1", target=NODE)
    assert with_rule["LocationId"] == "loc-1"


def test_health_params_send_only_what_is_set() -> None:
    assert health_params(HealthCheck(enabled=False, interval=9)) == {"HealthSwitch": 0}
    assert health_params(HealthCheck(interval=9, http_path="/healthz")) == {
        "HealthSwitch": 1,
        "IntervalTime": 9,
        "HttpCheckPath": "/healthz",
    }


def test_create_listener_params() -> None:
    listeners = [
        Listener(protocol="TCP", port=80, name="a", health_check=HealthCheck(timeout=3)),
        Listener(protocol="TCP", port=81, name="b", health_check=HealthCheck(timeout=3)),
    ]
    assert create_listener_params("lb-1", listeners) == {
        "LoadBalancerId": "lb-1",
        "Protocol": "TCP",
        "Ports": [80, 81],
        "ListenerNames": ["a", "b"],
        "HealthCheck": {"HealthSwitch": 1, "TimeOut": 3},
        "Scheduler": "WRR",
        "SessionExpireTime": 0,
    }
    https = Listener(protocol="HTTPS", port=443, certificate=Certificate("cert-1"))
    assert create_listener_params("lb-1", [https]) == {
        "LoadBalancerId": "lb-1",
        "Protocol": "HTTPS",
        "Ports": [443],
        "Certificate": {"SSLMode": "UNIDIRECTIONAL", "CertId": "cert-1"},
    }


def test_rule_params() -> None:
    rule = Rule("A.example.com", "/api", health_check=HealthCheck(http_path="/h"))
    assert rule_params(rule)["Domain"] == "a.example.com"
    modify = modify_rule_params(lb_id="lb-1", listener_id="lbl-1", location_id="loc-1", rule=rule)
    assert "Domain" not in modify and modify["LocationId"] == "loc-1"
    assert modify["HealthCheck"] == {"HealthSwitch": 1, "HttpCheckPath": "/h"}


def test_listeners_and_targets_are_parsed_from_describe_answers() -> None:
    tcp = parse_listener(
        {
            "ListenerId": "lbl-1",
            "Protocol": "TCP",
            "Port": 80,
            "ListenerName": "x",
            "HealthCheck": {"HealthSwitch": 1, "TimeOut": 2, "IntervalTime": 5, "CheckPort": None},
            "Scheduler": "WRR",
            "SessionExpireTime": 0,
            "Certificate": None,
        }
    )
    http = parse_listener(
        {
            "ListenerId": "lbl-2",
            "Protocol": "HTTP",
            "Port": 8080,
            "Rules": [{"LocationId": "loc-1", "Domain": "A.com", "Url": "/", "HealthCheck": {}}],
        }
    )
    assert tcp.health_check is not None and tcp.health_check.interval == 5
    assert http.rules[0].key == RuleKey("a.com", "/") and http.rules[0].location_id == "loc-1"
    groups = parse_target_groups(
        [
            {"ListenerId": "lbl-1", "Targets": [_backend("ENI", "127.17.0.9", 8080)]},
            {
                "ListenerId": "lbl-2",
                "Rules": [{"LocationId": "loc-1", "Targets": [_backend("CVM", "127.20.0.1", 1)]}],
            },
        ]
    )
    state = LoadBalancerState("lb-1", (with_targets(tcp, groups), with_targets(http, groups)))
    assert state.listeners[0].targets == (POD,)
    node = state.listeners[1].rules[0].targets[0]
    assert node.kind is TargetKind.NODE and node.instance_id == "ins-1" and node.ip == "127.20.0.1"


def _backend(kind: str, ip: str, port: int) -> dict[str, Any]:
    return {
        "Type": kind,
        "InstanceId": "ins-1" if kind == "CVM" else "",
        "Port": port,
        "Weight": 10,
        "PrivateIpAddresses": [ip],
    }


def test_backend_without_weight_gets_the_default() -> None:
    assert (
        parse_backend({"Type": "ENI", "Port": 1, "PrivateIpAddresses": ["127.17.0.1"]}).weight == 10
    )


def test_load_balancer_and_health_parsing() -> None:
    lb = parse_load_balancer(
        {
            "LoadBalancerId": "lb-1",
            "LoadBalancerName": "n",
            "LoadBalancerType": "INTERNAL",
            "LoadBalancerVips": ["127.100.0.1"],
            "Status": 0,
            "Tags": [{"TagKey": "owner", "TagValue": "me"}],
        }
    )
    assert lb.type is LoadBalancerType.INTERNAL and not lb.ready and lb.tag("owner") == "me"
    assert lb.tag("other") is None
    health = parse_target_health(
        {
            "LoadBalancers": [
                {
                    "LoadBalancerId": "lb-1",
                    "Listeners": [
                        {
                            "ListenerId": "lbl-1",
                            "Protocol": "TCP",
                            "Port": 80,
                            "Rules": [
                                {
                                    "LocationId": "",
                                    "Domain": "",
                                    "Url": "",
                                    "Targets": [
                                        {
                                            "IP": "127.17.0.9",
                                            "Port": 8080,
                                            "HealthStatus": True,
                                            "TargetId": "",
                                            "HealthStatusDetail": "Alive",
                                        }
                                    ],
                                }
                            ],
                        }
                    ],
                }
            ]
        }
    )
    (entry,) = health["lb-1"]
    assert entry.listener == ListenerKey(ListenerProtocol.TCP, 80) and entry.rule is None
    assert entry.healthy and entry.detail == "Alive" and entry.port == 8080


def test_credentials_from_the_environment_and_never_shown() -> None:
    creds = Credentials.from_env(
        {"TENCENTCLOUD_SECRET_ID": "AKIDsecretid1234", "TENCENTCLOUD_SECRET_KEY": "topsecret"}
    )
    assert creds.secret_key == "topsecret"
    config = TencentConfig(region="ap-guangzhou", credentials=creds)
    for text in (repr(creds), str(creds), repr(config)):
        assert "topsecret" not in text and "AKIDsecretid" not in text
    assert "1234" in repr(creds)
    with pytest.raises(ValueError, match="TENCENTCLOUD_SECRET_ID"):
        Credentials.from_env({})


def test_credentials_from_a_file(tmp_path: Path) -> None:
    tccli = tmp_path / "default.credential"
    tccli.write_text('{"secretId": "AKIDfile", "secretKey": "filekey"}')
    assert Credentials.from_file(tccli) == Credentials("AKIDfile", "filekey")
    env = tmp_path / "creds.env"
    env.write_text("# comment\nTENCENTCLOUD_SECRET_ID=AKIDenv\nTENCENTCLOUD_SECRET_KEY='k'\n")
    assert Credentials.from_file(env) == Credentials("AKIDenv", "k")
    empty = tmp_path / "empty"
    empty.write_text("nothing here")
    with pytest.raises(ValueError, match="not shown"):
        Credentials.from_file(empty)


def test_config_validation() -> None:
    creds = Credentials("a", "b")
    with pytest.raises(ValueError):
        TencentConfig(region="", credentials=creds)
    with pytest.raises(ValueError):
        TencentConfig(region="r", credentials=creds, endpoint="no-port")
    with pytest.raises(ValueError):
        TencentConfig(region="r", credentials=creds, protocol="ftp")
    config = TencentConfig(region="r", credentials=creds, strategy="naive")  # type: ignore[arg-type]
    assert config.strategy is SyncStrategy.NAIVE


def test_timing_scales_durations_down_and_the_rate_up() -> None:
    fast = Timing().scaled(0.01)
    assert fast.rate == pytest.approx(2000) and fast.retry_cap == pytest.approx(0.1)
    assert fast.poll_first == pytest.approx(0.005) and fast.request_timeout == 30.0
    with pytest.raises(ValueError):
        Timing().scaled(0)


def test_strategies() -> None:
    assert SyncStrategy.NAIVE.batching is Batching.SINGLE
    assert SyncStrategy.BATCH.batching is Batching.BATCH and SyncStrategy.BATCH.per_target_queries
    assert not SyncStrategy.BATCH.parallel
    assert SyncStrategy.OPTIMIZED.parallel and not SyncStrategy.OPTIMIZED.per_target_queries


def test_spec_validation() -> None:
    with pytest.raises(ValueError):
        LoadBalancerSpec(name="x", tags=())
    with pytest.raises(ValueError):
        LoadBalancerSpec(name="x", tags=(("k", "v"),), type=LoadBalancerType.INTERNAL)
    LoadBalancerSpec(name="x", tags=(), existing_id="lb-1")


def test_error_codes() -> None:
    assert is_retryable("RequestLimitExceeded.UinLimitExceeded")
    assert not is_retryable("InvalidParameter")
    error = CloudError(code="LimitExceeded", message="too many", action="CreateRule", lb_id="lb-1")
    assert str(error) == "LimitExceeded: too many (CreateRule lb-1)" and not error.stale


def test_the_cache_expires_and_our_writes_do_not_make_it_younger() -> None:
    now = [0.0]
    cache = ObservedCache(ttl=10.0, clock=lambda: now[0])
    first = LoadBalancerState("lb-1")
    cache.observed(first)
    now[0] = 6.0
    second = LoadBalancerState("lb-1", (Listener(protocol="TCP", port=80),))
    cache.written(second)
    assert cache.get("lb-1") == second
    now[0] = 10.0
    assert cache.get("lb-1") is None
    cache.written(second)  # nothing cached: a write does not create an entry
    assert cache.get("lb-1") is None
    cache.observed(first)
    cache.invalidate("lb-1")
    assert cache.get("lb-1") is None
    off = ObservedCache(ttl=0.0, clock=lambda: 0.0)
    off.observed(first)
    assert off.get("lb-1") is None
