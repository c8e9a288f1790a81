"""The cluster behind the simulator's API server: nodes, scheduler, kubelet with real pod
servers, workload controllers, Service allocation, EndpointSlices and kube-proxy.

Every controller here works like ``directlb.sim.gc``: in-process, woken by store events
(``api.store.listeners``), writing through ``Api`` (so admission and validation apply), never
polling. Each exposes ``start()`` and ``async stop()``; ``Cluster`` (cluster.py) starts them.
"""
