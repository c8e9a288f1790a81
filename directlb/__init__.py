"""directlb: bind Tencent Cloud CLB load balancers directly to Kubernetes pod IPs."""

__version__ = "0.1.0"
