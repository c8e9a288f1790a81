"""The control-plane benchmark's scenarios: rows, Kubernetes objects, and each row's change.

Layout of ``R`` layer-7 rules (issue 11): rule ``i`` (0-based) is the path ``/svc-NNNN``
(``Prefix``) of Ingress ``ing-KK`` with ``KK = i // rules_per_ingress`` (50 by default, the
CLB's rules-per-listener quota), host ``ing-KK.bench.local``, backed by its own Service
``svc-NNNN`` of type NodePort (port 80 to the pods' port 80). Every Service selects the same
one-replica Deployment ``cp-backend`` (a Service without endpoints gets no targets from the
model), so each rule's targets are every Ready node at that Service's own nodePort. One
Ingress is one CLB with one HTTP listener (port 80) holding its rules: 200 rules are 4 CLBs,
400 rules 8.

* ``nodes`` (seed table "backend node data surge"): 200 rules on 1 node, then the cluster grows
  to N nodes (10..50): every rule gains N-1 targets.
* ``rules`` (seed table "layer-7 rule data surge"): 50 nodes and 1 rule, then R rules (100..400):
  the first Ingress grows to 50 rules and the other Ingresses (new CLBs) appear.
* ``smoke``: the same two changes, small (3 rules per Ingress, a handful of nodes and rules).
"""

from __future__ import annotations

from dataclasses import dataclass

from directlb.bench.cp_bound import ClbChange

NAMESPACE = "default"
BACKEND = "cp-backend"
INGRESS_CLASS = "qcloud"
INGRESS_CONTROLLER = "directlb.io/ingress-controller"
NODE_PORT_BASE = 30000


@dataclass(frozen=True)
class Seed:
    """The seed's published seconds for a row: before, batch calling, re-optimized."""

    before: float
    batch: float
    optimized: float
    reduction_percent: float


@dataclass(frozen=True)
class Row:
    scenario: str  # nodes | rules | smoke-nodes | smoke-rules
    rules_before: int
    rules_after: int
    nodes_before: int
    nodes_after: int
    rules_per_ingress: int = 50
    seed: Seed | None = None

    @property
    def label(self) -> str:
        if self.nodes_before != self.nodes_after:
            return f"{self.rules_after} rules, {self.nodes_before}->{self.nodes_after} nodes"
        return f"{self.rules_before}->{self.rules_after} rules, {self.nodes_after} nodes"

    @property
    def key(self) -> str:
        return (
            f"{self.scenario}-r{self.rules_before}-{self.rules_after}"
            f"-n{self.nodes_before}-{self.nodes_after}"
        )

    def ingresses(self, rules: int) -> list[tuple[str, list[int]]]:
        """(Ingress name, its rule numbers) for ``rules`` rules."""
        per = self.rules_per_ingress
        return [
            (ingress_name(k), list(range(k * per, min(rules, (k + 1) * per))))
            for k in range((rules + per - 1) // per)
        ]

    def changes(self) -> list[ClbChange]:
        """What each CLB must do, for the lower bound."""
        before = dict(self.ingresses(self.rules_before))
        out: list[ClbChange] = []
        for name, rules in self.ingresses(self.rules_after):
            had = before.get(name, [])
            new_rules = len(rules) - len(had)
            register = (
                len(had) * (self.nodes_after - self.nodes_before) + new_rules * self.nodes_after
            )
            if had:
                out.append(
                    ClbChange(
                        name=name,
                        new_clb=False,
                        rules_before=len(had),
                        targets_per_listener_before=(len(had) * self.nodes_before,),
                        new_rules_per_listener=(new_rules,) if new_rules else (),
                        register=register,
                    )
                )
            else:
                out.append(
                    ClbChange(
                        name=name,
                        new_clb=True,
                        new_listeners=1,
                        new_rules_per_listener=(new_rules,),
                        register=register,
                    )
                )
        return out


def ingress_name(k: int) -> str:
    return f"ing-{k:02d}"


def service_name(i: int) -> str:
    return f"svc-{i:04d}"


def host(ingress: str) -> str:
    return f"{ingress}.bench.local"


NODE_ROWS = [
    Row("nodes", 200, 200, 1, 10, seed=Seed(1313.056, 227.908, 31.548, 97.597)),
    Row("nodes", 200, 200, 1, 20, seed=Seed(1715.053, 449.795, 51.248, 97.011)),
    Row("nodes", 200, 200, 1, 30, seed=Seed(2826.913, 665.619, 69.118, 97.555)),
    Row("nodes", 200, 200, 1, 40, seed=Seed(3373.148, 861.583, 90.723, 97.310)),
    Row("nodes", 200, 200, 1, 50, seed=Seed(4240.311, 1085.03, 106.353, 97.491)),
]
RULE_ROWS = [
    Row("rules", 1, 100, 50, 50, seed=Seed(1631.787, 451.644, 68.63, 95.79)),
    Row("rules", 1, 200, 50, 50, seed=Seed(3399.833, 693.207, 141.004, 95.85)),
    Row("rules", 1, 300, 50, 50, seed=Seed(5630.398, 847.796, 236.91, 95.79)),
    Row("rules", 1, 400, 50, 50, seed=Seed(7562.615, 1028.75, 335.674, 95.56)),
]
SMOKE_ROWS = [
    Row("smoke-nodes", 6, 6, 1, 3, rules_per_ingress=3),
    Row("smoke-rules", 1, 6, 3, 3, rules_per_ingress=3),
]
SCENARIOS: dict[str, list[Row]] = {
    "nodes": NODE_ROWS,
    "rules": RULE_ROWS,
    "smoke": SMOKE_ROWS,
    "all": NODE_ROWS + RULE_ROWS,
}


# --- Kubernetes objects (plain dicts, created through lightkube's generic codec) ---------------


def backend_deployment() -> dict[str, object]:
    labels = {"app": BACKEND}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": BACKEND, "namespace": NAMESPACE},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {"name": "web", "image": "nginx:1.7.9", "ports": [{"containerPort": 80}]}
                    ]
                },
            },
        },
    }


def service(i: int) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": service_name(i), "namespace": NAMESPACE},
        "spec": {
            "type": "NodePort",
            "selector": {"app": BACKEND},
            # A fixed nodePort, so that the final CLB states of separate runs compare equal.
            "ports": [
                {
                    "name": "http",
                    "port": 80,
                    "targetPort": 80,
                    "protocol": "TCP",
                    "nodePort": NODE_PORT_BASE + i,
                }
            ],
        },
    }


def ingress_class() -> dict[str, object]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {"name": INGRESS_CLASS},
        "spec": {"controller": INGRESS_CONTROLLER},
    }


def ingress(name: str, rules: list[int]) -> dict[str, object]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "ingressClassName": INGRESS_CLASS,
            "rules": [
                {
                    "host": host(name),
                    "http": {
                        "paths": [
                            {
                                "path": f"/{service_name(i)}",
                                "pathType": "Prefix",
                                "backend": {
                                    "service": {"name": service_name(i), "port": {"number": 80}}
                                },
                            }
                            for i in rules
                        ]
                    },
                }
            ],
        },
    }
