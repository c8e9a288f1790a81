"""Pure: the diff of desired against observed state, as ordered, batched operations.

``state`` holds the values both sides are made of, ``ops`` the operations a plan is made of
(one per API call), ``limits`` the API's per-call limits, ``batching`` the packing of work into
calls, ``diff`` the planner and ``simulate`` what a CLB looks like after an operation.
"""
