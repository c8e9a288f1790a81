"""Fixtures for the integration tests of the cluster simulator's API server."""

from tests.cluster_support import ckube, cluster, cluster_server  # noqa: F401
from tests.sim_support import kube, kubectl, sim, sim_http  # noqa: F401
