"""``Cluster``: the cluster behind the simulator's API server, started and stopped as one.

```python
server = ApiServer(SimConfig())
await server.start()
cluster = Cluster.for_server(server, ClusterConfig(nodes=3))
await cluster.start()  # registers node-1..3, starts the controllers
...
await cluster.stop()  # every pod server closed
await server.stop()
```

Always started: ``Nodes`` (nodes.py), ``Scheduler`` (scheduler.py), ``Kubelet`` (kubelet.py).
Started when their modules exist: the workload controllers (``workloads.py``), Service
allocation and EndpointSlices (``network.py``) and kube-proxy (``proxy.py``). From each such
module the cluster takes the classes listed in its ``CONTROLLERS`` tuple, or else every class
defined there whose constructor takes keyword arguments ``api`` and ``config`` (nothing else
required) and that has ``start()`` and ``async stop()``. ``proxy.py`` is only loaded on its own
when ``network.py`` did not import it (a part that imports another one runs it itself). A
missing module is logged (``event=cluster_part_missing``) and the rest runs.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Sequence
from typing import Any, Protocol, cast

from directlb.sim.api import Api
from directlb.sim.cluster.config import ClusterConfig
from directlb.sim.cluster.kubelet import Kubelet
from directlb.sim.cluster.machinery import log
from directlb.sim.cluster.nodes import Nodes
from directlb.sim.cluster.scheduler import Scheduler
from directlb.sim.server import ApiServer

OPTIONAL_PARTS = (
    "directlb.sim.cluster.workloads",
    "directlb.sim.cluster.network",
    "directlb.sim.cluster.proxy",
)


class Controller(Protocol):
    def start(self) -> None: ...

    async def stop(self) -> None: ...


def _controller_class(cls: type) -> bool:
    start, stop = getattr(cls, "start", None), getattr(cls, "stop", None)
    if not callable(start) or not inspect.iscoroutinefunction(stop):
        return False
    try:
        parameters = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False
    required = {
        name
        for name, p in parameters.items()
        if p.default is inspect.Parameter.empty
        and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    }
    return {"api", "config"} <= set(parameters) and required <= {"api", "config"}


def optional_controllers(
    *, api: Api, config: ClusterConfig, parts: Sequence[str] = OPTIONAL_PARTS
) -> list[Controller]:
    """Instantiate the other parts' controllers that are present (see the module docstring)."""
    found: list[Controller] = []
    loaded: list[str] = []
    for name in parts:
        if name in sys.modules and any(_imports(sys.modules[o], name) for o in loaded):
            continue  # run by the part that imported it
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name != name:
                raise
            log.info("event=cluster_part_missing module=%s", name)
            continue
        loaded.append(name)
        listed = getattr(module, "CONTROLLERS", None)
        classes: list[Any] = (
            list(listed)
            if listed is not None
            else [
                obj
                for obj in vars(module).values()
                if isinstance(obj, type)
                and obj.__module__ == module.__name__
                and _controller_class(obj)
            ]
        )
        for cls in classes:
            found.append(cast(Controller, cls(api=api, config=config)))
            log.info("event=cluster_part module=%s controller=%s", name, cls.__name__)
    return found


def _imports(module: Any, name: str) -> bool:
    """Whether ``module`` imported ``name`` (the module itself or anything from it)."""
    for value in vars(module).values():
        if getattr(value, "__name__", None) == name or getattr(value, "__module__", None) == name:
            return True
    return False


class Cluster:
    """Nodes, scheduler, kubelet and whichever other parts exist, over one ``Api``."""

    def __init__(
        self,
        *,
        api: Api,
        config: ClusterConfig | None = None,
        kubelet_version: str = "v1.32.4",
        probe_time_scale: float = 1.0,
        optional_parts: Sequence[str] = OPTIONAL_PARTS,
    ) -> None:
        self.api = api
        self.config = config or ClusterConfig()
        self.nodes = Nodes(api=api, config=self.config, kubelet_version=kubelet_version)
        self.scheduler = Scheduler(api=api, config=self.config)
        self.kubelet = Kubelet(api=api, config=self.config, probe_time_scale=probe_time_scale)
        self.others = optional_controllers(api=api, config=self.config, parts=optional_parts)
        self._started = False

    @classmethod
    def for_server(
        cls, server: ApiServer, config: ClusterConfig | None = None, **options: Any
    ) -> Cluster:
        options.setdefault("kubelet_version", server.config.git_version)
        return cls(api=server.api, config=config, **options)

    async def start(self) -> None:
        self.nodes.start()
        names = await self.nodes.create_initial()
        self.scheduler.start()
        self.kubelet.start()
        for controller in self.others:
            controller.start()
        self._started = True
        log.info(
            "event=cluster_started nodes=%d parts=%s",
            len(names),
            ",".join(type(c).__name__ for c in self.others) or "-",
        )

    async def stop(self) -> None:
        for controller in reversed(self.others):
            await controller.stop()
        await self.scheduler.stop()
        await self.kubelet.stop()  # closes every pod's servers
        await self.nodes.stop()
        self._started = False
