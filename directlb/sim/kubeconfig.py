"""Writing a kubeconfig that kubectl and lightkube use to reach the simulator."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

from directlb.sim.contracts import Obj

CONTEXT = "directlb-sim"


def kubeconfig(*, server: str, token: str, ca_pem: bytes | None, namespace: str = "default") -> Obj:
    cluster: Obj = {"server": server}
    if ca_pem is not None:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CONTEXT, "cluster": cluster}],
        "users": [{"name": "admin", "user": {"token": token}}],
        "contexts": [
            {
                "name": CONTEXT,
                "context": {"cluster": CONTEXT, "user": "admin", "namespace": namespace},
            }
        ],
        "current-context": CONTEXT,
        "preferences": {},
    }


def write_kubeconfig(path: Path, config: Obj) -> Path:
    """Write atomically with mode 0600 (it holds a bearer token). JSON is valid YAML."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(config, out, indent=2)
        out.write("\n")
    temporary.replace(path)
    return path
