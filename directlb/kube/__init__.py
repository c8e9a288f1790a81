"""Kubernetes I/O: client factory, informers, indexed stores, workqueue, leader election, events.

Filled in by the controller-runtime issue; may import only the stdlib and lightkube."""
