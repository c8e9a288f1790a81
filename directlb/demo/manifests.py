"""The seed's two manifests, verbatim (``shared/seed/tke-direct-pod-connection.md``, "Kubectl
operation instructions"), and the per-mode variants the demo derives from them.

The demo applies :data:`DEPLOYMENT` and :data:`SERVICE` unchanged first, as the seed does. The mode
runs then use the same two objects in a namespace of their own with only what the mode needs
changed (:func:`for_mode`), so what differs between the rows of the table is the mode.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  labels:
    app: nginx
  name: nginx-deployment-eni
spec:
  replicas: 3
  selector:
    matchLabels:
      app: nginx
  template:
    metadata:
      annotations:
        tke.cloud.tencent.com/networks: tke-route-eni
      labels:
        app: nginx
    spec:
      containers:
        - image: nginx:1.7.9
          name: nginx
          ports:
            - containerPort: 80
              protocol: TCP
"""

SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  annotations:
    service.cloud.tencent.com/direct-access: "true"
  labels:
    app: nginx
  name: nginx-service-eni
spec:
  externalTrafficPolicy: Cluster
  ports:
    - name: 80-80-no
      port: 80
      protocol: TCP
      targetPort: 80
  selector:
    app: nginx
  sessionAffinity: None
  type: LoadBalancer
"""

DIRECT_ACCESS = "service.cloud.tencent.com/direct-access"
ENI_ANNOTATION = "tke.cloud.tencent.com/networks"
ENI_MODE = "tke-route-eni"
GATE = "cloud.tencent.com/load-balancer-backendgroup-ready"
#: The image the mode runs roll to (the seed's is nginx:1.7.9).
NEXT_IMAGE = "nginx:1.9.1"


def load(text: str) -> dict[str, Any]:
    loaded = yaml.safe_load(text)
    assert isinstance(loaded, dict)
    return loaded


def for_mode(
    *,
    namespace: str,
    direct: bool,
    local: bool,
    replicas: int,
    gate_in_template: bool = False,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The seed's Deployment and Service for one mode run, in ``namespace``:

    * ``replicas`` (two pods per node, so that Local mode has several pods behind a node);
    * ``sessionAffinity: ClientIP`` on the Service (what the persistence column measures);
    * ``direct``: the direct-access annotation kept, else removed (NodePort or Local mode);
    * ``local``: ``externalTrafficPolicy: Local``;
    * ``gate_in_template``: the readiness gate written into the pod template, for a controller
      whose admission webhook is not there to add it.
    """
    deployment = copy.deepcopy(load(DEPLOYMENT))
    service = copy.deepcopy(load(SERVICE))
    deployment["metadata"]["namespace"] = namespace
    service["metadata"]["namespace"] = namespace
    deployment["spec"]["replicas"] = replicas
    if gate_in_template:
        deployment["spec"]["template"]["spec"]["readinessGates"] = [{"conditionType": GATE}]
    if not direct:
        del service["metadata"]["annotations"][DIRECT_ACCESS]
    service["spec"]["externalTrafficPolicy"] = "Local" if local else "Cluster"
    service["spec"]["sessionAffinity"] = "ClientIP"
    return deployment, service
