"""Pure: the desired load-balancer state built from cached Kubernetes objects.

No clock, no network, no globals: a function of its inputs, cheap to test exhaustively.
``problems`` holds the user-caused problems (values, never raised), ``annotations`` the parsing
of TKE's annotations, ``service`` the layer-4 model of a ``type: LoadBalancer`` Service. The
outputs use ``directlb.plan.state``'s value types (see ``service``'s docstring for why).
"""
