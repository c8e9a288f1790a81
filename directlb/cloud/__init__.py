"""The cloud port (typed values and a Protocol) and the Tencent CLB adapter.

* :mod:`.port`: :class:`CloudLoadBalancers`, the Protocol controllers use, and its values;
* :mod:`.tencent`: :class:`TencentLoadBalancers`, the adapter on the official async SDK;
* :mod:`.config`: region, credentials, endpoint, timing, :class:`SyncStrategy`;
* :mod:`.api` (calls, throttling, retries, task polling), :mod:`.observe` (reads),
  :mod:`.apply` (idempotent plan runs), :mod:`.wire` (the JSON codec), :mod:`.cache`,
  :mod:`.errors` (typed errors with the cloud's code), :mod:`.metrics` (per-call hooks).

See docs/cloud.md.
"""

from directlb.cloud.config import Credentials, SyncStrategy, TencentConfig, Timing
from directlb.cloud.errors import CloudError, PartialFailure, StalePlan, TaskFailed, TaskTimeout
from directlb.cloud.metrics import CallCounter, CallObserver
from directlb.cloud.port import (
    CloudLoadBalancers,
    DesiredLoadBalancer,
    LoadBalancer,
    LoadBalancerSpec,
    LoadBalancerType,
    SyncResult,
    TargetHealth,
)
from directlb.cloud.tencent import TencentLoadBalancers

__all__ = [
    "CallCounter",
    "CallObserver",
    "CloudError",
    "CloudLoadBalancers",
    "Credentials",
    "DesiredLoadBalancer",
    "LoadBalancer",
    "LoadBalancerSpec",
    "LoadBalancerType",
    "PartialFailure",
    "StalePlan",
    "SyncResult",
    "SyncStrategy",
    "TargetHealth",
    "TaskFailed",
    "TaskTimeout",
    "TencentConfig",
    "TencentLoadBalancers",
    "Timing",
]
