"""The simulated cluster's settings and address plan (all on loopback: 127.0.0.0/8 is local)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

ENI_ANNOTATION = "tke.cloud.tencent.com/networks"
ENI_MODE = "tke-route-eni"


@dataclass(frozen=True)
class ClusterConfig:
    """How many nodes, and which addresses everything gets.

    * nodes: ``node_cidr`` (127.20.0.0/16), the VPC's node subnet;
    * pods in VPC-CNI ENI mode (annotation ``tke.cloud.tencent.com/networks: tke-route-eni``):
      ``eni_pod_cidr`` (127.17.0.0/16), routable from the VPC (and so from the CLB);
    * other pods: ``cluster_cidr`` (127.30.0.0/16), which the VPC cannot route;
    * ClusterIPs: ``service_cidr`` (127.96.0.0/16); NodePorts ``node_port_range``;
    * load-balancer VIPs belong to the CLB emulator (127.100.0.0/16).
    """

    nodes: int = 3
    node_cidr: str = "127.20.0.0/16"
    eni_pod_cidr: str = "127.17.0.0/16"
    cluster_cidr: str = "127.30.0.0/16"
    service_cidr: str = "127.96.0.0/16"
    node_port_range: tuple[int, int] = (30000, 32767)
    zones: tuple[str, ...] = ("ap-guangzhou-3", "ap-guangzhou-4", "ap-guangzhou-6")
    node_prefix: str = "node"
    # Seconds; the kubelet's status sync and probe floors. Small: this is a simulator.
    kubelet_sync_seconds: float = 0.2

    def __post_init__(self) -> None:
        for cidr in (self.node_cidr, self.eni_pod_cidr, self.cluster_cidr, self.service_cidr):
            network = ipaddress.ip_network(cidr)
            if not (
                isinstance(network, ipaddress.IPv4Network)
                and network.subnet_of(ipaddress.IPv4Network("127.0.0.0/8"))
            ):
                raise ValueError(f"{cidr}: every simulated address must be on loopback")
        low, high = self.node_port_range
        if not 1 <= low <= high <= 65535:
            raise ValueError(f"node_port_range {self.node_port_range} is not a port range")
        if self.nodes < 0:
            raise ValueError("nodes must be >= 0")
