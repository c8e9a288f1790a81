"""The cluster simulator: a Kubernetes API server and the cluster behaviour behind it.

A stand-in: it never imports the controller packages."""
