"""Finalizer patches against the simulated API server: a finalizer another controller writes
between our cache read and our patch survives, in both directions (adding ours, removing ours).
A merge patch replaces the whole list, so the patch carries the resourceVersion it was computed
from and the API server refuses it (409) if the object changed since."""

from __future__ import annotations

from typing import Any

from lightkube import AsyncClient
from lightkube.resources.core_v1 import Service
from lightkube.types import PatchType

from directlb.controllers.lbowner import LoadBalancerOwner
from directlb.controllers.service import FINALIZER, SERVICE_KIND

OTHER = "other.example.com/cleanup"


class NoRecorder:
    def event(self, obj: Any, *, type: str, reason: str, message: str) -> None:
        pass


def owner(kube: AsyncClient) -> LoadBalancerOwner:
    return LoadBalancerOwner(
        client=kube,
        cloud=None,  # type: ignore[arg-type]  # finalizers only: no cloud call
        recorder=NoRecorder(),  # type: ignore[arg-type]
        cluster_id="cls-1",
        kind=SERVICE_KIND,
    )


async def create(kube: AsyncClient, finalizers: list[str] | None = None) -> Any:
    return await kube.create(
        Service.from_dict(
            {
                "metadata": {"name": "web", "finalizers": finalizers},
                "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
            }
        ),
        namespace="default",
    )


async def someone_else_adds(kube: AsyncClient, finalizer: str) -> None:
    current = await kube.get(Service, "web", namespace="default")
    await kube.patch(
        Service,
        "web",
        [{"op": "add", "path": "/metadata/finalizers/-", "value": finalizer}]
        if current.metadata.finalizers
        else [{"op": "add", "path": "/metadata/finalizers", "value": [finalizer]}],
        namespace="default",
        patch_type=PatchType.JSON,
    )


async def finalizers(kube: AsyncClient) -> list[str]:
    return list((await kube.get(Service, "web", namespace="default")).metadata.finalizers or [])


async def test_adding_ours_keeps_a_finalizer_added_meanwhile(kube: AsyncClient) -> None:
    cached = await create(kube)  # what the informer holds
    await someone_else_adds(kube, OTHER)
    await owner(kube).add_finalizer(cached)
    assert await finalizers(kube) == [OTHER, FINALIZER]


async def test_removing_ours_keeps_a_finalizer_added_meanwhile(kube: AsyncClient) -> None:
    cached = await create(kube, [FINALIZER])
    await someone_else_adds(kube, OTHER)
    await owner(kube).patch_finalizers(cached, lambda f: [x for x in f if x != FINALIZER])
    assert await finalizers(kube) == [OTHER]
