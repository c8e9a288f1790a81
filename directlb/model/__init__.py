"""Pure: the desired load-balancer state built from cached Kubernetes objects.

No clock, no network, no globals: a function of its inputs, cheap to test exhaustively."""
