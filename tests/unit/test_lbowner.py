"""The CLB owner shared by the Service and Ingress controllers: the record of our listeners on
adopted CLBs (per CLB id) and the finalizer patches (resourceVersion precondition)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from lightkube.core.exceptions import ApiError
from lightkube.models.meta_v1 import Status
from lightkube.resources.core_v1 import Service
from lightkube.resources.networking_v1 import Ingress

from directlb.cloud.errors import CloudError
from directlb.cloud.port import (
    DesiredLoadBalancer,
    LoadBalancer,
    LoadBalancerSpec,
    LoadBalancerType,
    SyncResult,
)
from directlb.controllers.ingress import INGRESS_KIND
from directlb.controllers.lbowner import (
    LB_NOT_FOUND,
    LISTENERS_ANNOTATION,
    Claimant,
    ListenerClaims,
    LoadBalancerOwner,
    format_listener_record,
    parse_listener_record,
    refused_listeners,
)
from directlb.controllers.service import LB_ID_ANNOTATION, SERVICE_KIND
from directlb.kube.informer import Store
from directlb.model.service import LoadBalancerIntent
from directlb.plan.state import Listener, ListenerKey, ListenerProtocol

TCP80 = ListenerKey(ListenerProtocol.TCP, 80)
TCP81 = ListenerKey(ListenerProtocol.TCP, 81)
UDP53 = ListenerKey(ListenerProtocol.UDP, 53)


# --- the record ----------------------------------------------------------------------------------


def test_the_record_names_the_clb_of_each_key_and_round_trips() -> None:
    record = {"lb-b": frozenset({UDP53}), "lb-a": frozenset({TCP81, TCP80})}
    raw = format_listener_record(record)
    assert raw == "lb-a=TCP:80,TCP:81;lb-b=UDP:53"
    assert parse_listener_record(raw, legacy_lb_id="lb-x") == record


def test_the_format_without_clb_ids_is_read_as_the_last_synced_clb() -> None:
    assert parse_listener_record("TCP:80,TCP:81", legacy_lb_id="lb-old") == {
        "lb-old": frozenset({TCP80, TCP81})
    }
    # Nothing to attribute them to: forgotten rather than guessed.
    assert parse_listener_record("TCP:80", legacy_lb_id="") == {}
    assert parse_listener_record(None, legacy_lb_id="lb-old") == {}
    assert parse_listener_record("lb-a=bogus,TCP:x;=TCP:80;lb-b=", legacy_lb_id="") == {}
    assert format_listener_record({"lb-a": frozenset()}) == ""


# --- fakes ---------------------------------------------------------------------------------------


class FakeCloud:
    def __init__(self) -> None:
        self.syncs: list[DesiredLoadBalancer] = []
        self.gone: set[str] = set()
        self.failing: set[str] = set()
        #: CLBs carrying our tags (ones we created), what find_load_balancers answers.
        self.owned: list[LoadBalancer] = []
        self.finds = 0
        self.deleted: list[str] = []
        self.delete_fails = False

    async def ensure_load_balancer(self, spec: LoadBalancerSpec) -> LoadBalancer:
        return LoadBalancer(
            lb_id=spec.existing_id or "lb-made",
            name=spec.name,
            type=LoadBalancerType.OPEN,
            vips=("1.2.3.4",),
        )

    async def sync(self, desired: Sequence[DesiredLoadBalancer]) -> list[SyncResult]:
        self.syncs.extend(desired)
        results = []
        for d in desired:
            if d.lb_id in self.gone:
                error = CloudError(code=LB_NOT_FOUND, message="no such CLB")
                results.append(SyncResult(d.lb_id, error=error))
            elif d.lb_id in self.failing:
                error = CloudError(code="InternalError", message="try later")
                results.append(SyncResult(d.lb_id, error=error))
            else:
                results.append(SyncResult(d.lb_id, operations=1))
        return results

    async def find_load_balancers(self, tags: Any) -> list[LoadBalancer]:
        self.finds += 1
        return [lb for lb in self.owned if lb.lb_id not in self.deleted]

    async def delete_load_balancer(self, lb_id: str) -> None:
        if lb_id not in {lb.lb_id for lb in self.owned}:
            raise AssertionError("only a CLB with our tags is ever deleted")
        if self.delete_fails:
            raise CloudError(code="InternalError", message="try later")
        self.deleted.append(lb_id)


def made(lb_id: str) -> LoadBalancer:
    return LoadBalancer(lb_id=lb_id, name="made", type=LoadBalancerType.OPEN, vips=("9.9.9.9",))


def conflict() -> ApiError:
    return ApiError(status=Status(code=409, reason="Conflict", message="modified"))


class FakeClient:
    """Records merge patches; refuses the first ``conflicts`` finalizer patches with 409 and
    then serves ``fresh`` on GET (someone else's write in between)."""

    def __init__(self, *, conflicts: int = 0, fresh: Any = None) -> None:
        self.patches: list[dict[str, Any]] = []
        self.conflicts = conflicts
        self.fresh = fresh
        self.gets = 0

    async def patch(self, resource: Any, name: str, body: dict[str, Any], **kw: Any) -> Any:
        if "finalizers" in body.get("metadata", {}) and self.conflicts:
            self.conflicts -= 1
            raise conflict()
        self.patches.append(body)
        return None

    async def get(self, resource: Any, name: str, **kw: Any) -> Any:
        self.gets += 1
        return self.fresh


class FakeRecorder:
    def __init__(self) -> None:
        self.reasons: list[str] = []

    def event(self, obj: Any, *, type: str, reason: str, message: str) -> None:
        self.reasons.append(reason)


def owner(
    cloud: FakeCloud, client: FakeClient, claims: ListenerClaims | None = None
) -> LoadBalancerOwner:
    return LoadBalancerOwner(
        client=client,  # type: ignore[arg-type]
        cloud=cloud,  # type: ignore[arg-type]
        recorder=FakeRecorder(),  # type: ignore[arg-type]
        cluster_id="cls-1",
        kind=SERVICE_KIND,
        claims=claims,
    )


def service(
    annotations: dict[str, str] | None = None,
    *,
    finalizers: list[str] | None = None,
    rv: str = "10",
    deleting: bool = False,
    name: str = "web",
    created: str = "2026-01-02T00:00:00Z",
) -> Any:
    return Service.from_dict(
        {
            "metadata": {
                "name": name,
                "namespace": "ns",
                "uid": f"u-{name}",
                "creationTimestamp": created,
                "resourceVersion": rv,
                "annotations": annotations or {},
                "finalizers": finalizers,
                **({"deletionTimestamp": "2026-01-01T00:00:00Z"} if deleting else {}),
            },
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
        }
    )


def recorded(client: FakeClient) -> list[str | None]:
    return [
        p["metadata"]["annotations"][LISTENERS_ANNOTATION]
        for p in client.patches
        if LISTENERS_ANNOTATION in p.get("metadata", {}).get("annotations", {})
    ]


# --- converge / release on adopted CLBs -------------------------------------------------------


async def test_a_changed_adopted_id_cleans_the_old_clb_and_scopes_the_new_one_to_its_own() -> None:
    """Our keys were recorded (old format) on lb-old; the user now names lb-new. On lb-new only
    what we want may be touched (TCP:81 there is someone else's); on lb-old our keys go."""
    cloud, client = FakeCloud(), FakeClient()
    svc = service({LB_ID_ANNOTATION: "lb-old", LISTENERS_ANNOTATION: "TCP:80,TCP:81"})
    wanted = (Listener(ListenerProtocol.TCP, 80),)
    await owner(cloud, client).converge(
        svc, intent=LoadBalancerIntent(existing_id="lb-new"), listeners=lambda _lb: wanted
    )
    new, old = cloud.syncs
    assert (new.lb_id, new.scope, new.listeners) == ("lb-new", frozenset({TCP80}), wanted)
    assert (old.lb_id, old.scope, old.listeners) == ("lb-old", frozenset({TCP80, TCP81}), ())
    # Recorded with the CLB id before creating, then the old CLB's record dropped.
    assert recorded(client) == ["lb-new=TCP:80;lb-old=TCP:80,TCP:81", "lb-new=TCP:80"]
    [*_, last] = [p["metadata"] for p in client.patches if "metadata" in p]
    assert last["annotations"][LB_ID_ANNOTATION] == "lb-new"


async def test_a_failed_clean_up_keeps_the_old_record_and_retries() -> None:
    cloud, client = FakeCloud(), FakeClient()
    cloud.failing.add("lb-old")
    svc = service({LB_ID_ANNOTATION: "lb-new", LISTENERS_ANNOTATION: "lb-old=TCP:81"})
    again = await owner(cloud, client).converge(
        svc,
        intent=LoadBalancerIntent(existing_id="lb-new"),
        listeners=lambda _lb: (Listener(ListenerProtocol.TCP, 80),),
    )
    assert again is not None
    assert recorded(client)[-1] == "lb-new=TCP:80;lb-old=TCP:81"


async def test_leaving_adoption_for_a_created_clb_cleans_the_adopted_one() -> None:
    cloud, client = FakeCloud(), FakeClient()
    cloud.gone.add("lb-old")  # already deleted by its owner: nothing left to do there
    svc = service({LB_ID_ANNOTATION: "lb-old", LISTENERS_ANNOTATION: "lb-old=TCP:80"})
    await owner(cloud, client).converge(
        svc,
        intent=LoadBalancerIntent(),
        listeners=lambda _lb: (Listener(ListenerProtocol.TCP, 80),),
    )
    made, old = cloud.syncs
    assert (made.lb_id, made.scope) == ("lb-made", None)
    assert (old.lb_id, old.scope) == ("lb-old", frozenset({TCP80}))
    assert recorded(client) == [None]


async def test_an_unchanged_adopted_clb_keeps_its_record_untouched() -> None:
    cloud, client = FakeCloud(), FakeClient()
    svc = service({LB_ID_ANNOTATION: "lb-a", LISTENERS_ANNOTATION: "lb-a=TCP:80"})
    await owner(cloud, client).converge(
        svc,
        intent=LoadBalancerIntent(existing_id="lb-a"),
        listeners=lambda _lb: (Listener(ListenerProtocol.TCP, 80),),
    )
    [only] = cloud.syncs
    assert (only.lb_id, only.scope) == ("lb-a", frozenset({TCP80}))
    assert recorded(client) == []


async def test_release_deletes_our_listeners_on_every_recorded_clb_only() -> None:
    cloud, client = FakeCloud(), FakeClient()
    svc = service(
        {LB_ID_ANNOTATION: "lb-new", LISTENERS_ANNOTATION: "lb-new=TCP:80;lb-old=UDP:53"},
        finalizers=[SERVICE_KIND.finalizer],
        deleting=True,
    )
    await owner(cloud, client).release(svc, existing_lb_id="lb-new")
    assert [(d.lb_id, d.scope, d.listeners) for d in cloud.syncs] == [
        ("lb-new", frozenset({TCP80}), ()),
        ("lb-old", frozenset({UDP53}), ()),
    ]


# --- from a created CLB to an adopted one ----------------------------------------------------


def lb_ids(client: FakeClient) -> list[str | None]:
    return [
        p["metadata"]["annotations"][LB_ID_ANNOTATION]
        for p in client.patches
        if LB_ID_ANNOTATION in p.get("metadata", {}).get("annotations", {})
    ]


async def test_adopting_a_clb_deletes_the_one_we_created_but_never_the_adopted_one() -> None:
    cloud, client = FakeCloud(), FakeClient()
    # lb-a also answers the tag look-up (the user adopted a CLB we made): it stays.
    cloud.owned = [made("lb-made"), made("lb-a")]
    svc = service({LB_ID_ANNOTATION: "lb-made"}, finalizers=[SERVICE_KIND.finalizer])
    lbs = owner(cloud, client)
    again = await lbs.converge(
        svc,
        intent=LoadBalancerIntent(existing_id="lb-a"),
        listeners=lambda _lb: (Listener(ListenerProtocol.TCP, 80),),
    )
    assert again is None
    assert cloud.deleted == ["lb-made"]
    assert lb_ids(client) == ["lb-a"]
    assert "DeletedLoadBalancer" in lbs.recorder.reasons  # type: ignore[attr-defined]
    # Converged (the annotation names lb-a): later syncs of this process look no more.
    synced = service({LB_ID_ANNOTATION: "lb-a", LISTENERS_ANNOTATION: "lb-a=TCP:80"})
    await lbs.converge(
        synced,
        intent=LoadBalancerIntent(existing_id="lb-a"),
        listeners=lambda _lb: (Listener(ListenerProtocol.TCP, 80),),
    )
    assert cloud.finds == 1


async def test_a_restarted_controller_looks_once_for_a_created_clb_left_over() -> None:
    """Leaked before the fix: the annotation already names the adopted CLB."""
    cloud, client = FakeCloud(), FakeClient()
    cloud.owned = [made("lb-made")]
    svc = service({LB_ID_ANNOTATION: "lb-a", LISTENERS_ANNOTATION: "lb-a=TCP:80"})
    await owner(cloud, client).converge(
        svc,
        intent=LoadBalancerIntent(existing_id="lb-a"),
        listeners=lambda _lb: (Listener(ListenerProtocol.TCP, 80),),
    )
    assert cloud.deleted == ["lb-made"]


async def test_a_failed_delete_of_the_created_clb_keeps_its_id_and_retries() -> None:
    cloud, client = FakeCloud(), FakeClient()
    cloud.owned = [made("lb-made")]
    cloud.delete_fails = True
    svc = service({LB_ID_ANNOTATION: "lb-made"})
    lbs = owner(cloud, client)
    again = await lbs.converge(
        svc,
        intent=LoadBalancerIntent(existing_id="lb-a"),
        listeners=lambda _lb: (Listener(ListenerProtocol.TCP, 80),),
    )
    assert again is not None
    assert lb_ids(client) == []  # still lb-made: the next run looks again
    assert "SyncLoadBalancerFailed" in lbs.recorder.reasons  # type: ignore[attr-defined]


async def test_release_of_an_adopting_object_deletes_a_created_clb_left_over() -> None:
    cloud, client = FakeCloud(), FakeClient()
    cloud.owned = [made("lb-made")]
    svc = service(
        {LB_ID_ANNOTATION: "lb-a", LISTENERS_ANNOTATION: "lb-a=TCP:80"},
        finalizers=[SERVICE_KIND.finalizer],
        deleting=True,
    )
    await owner(cloud, client).release(svc, existing_lb_id="lb-a")
    assert cloud.deleted == ["lb-made"]
    assert [(d.lb_id, d.scope) for d in cloud.syncs] == [("lb-a", frozenset({TCP80}))]


# --- two objects adopting one CLB ---------------------------------------------------------------


def claims_of(*services: Any, ingresses: Sequence[Any] = ()) -> ListenerClaims:
    claims = ListenerClaims()
    for kind, objs in ((SERVICE_KIND, services), (INGRESS_KIND, ingresses)):
        store: Store[Any] = Store()
        for obj in objs:
            store.put(obj)
        claims.watch(kind, store)
    return claims


def tcp(*ports: int) -> tuple[Listener, ...]:
    return tuple(Listener(ListenerProtocol.TCP, port) for port in ports)


async def test_a_later_object_is_refused_the_port_an_earlier_one_holds_and_keeps_the_rest() -> None:
    cloud, client = FakeCloud(), FakeClient()
    earlier = service(
        {LISTENERS_ANNOTATION: "lb-s=TCP:80"}, name="first", created="2026-01-01T00:00:00Z"
    )
    lbs = owner(cloud, client, claims_of(earlier))
    again = await lbs.converge(
        service(), intent=LoadBalancerIntent(existing_id="lb-s"), listeners=lambda _: tcp(80, 81)
    )
    assert again is None
    [only] = cloud.syncs
    assert (only.lb_id, only.listeners, only.scope) == ("lb-s", tcp(81), frozenset({TCP81}))
    assert recorded(client) == ["lb-s=TCP:81"]
    assert lbs.recorder.reasons.count("ListenerConflict") == 1  # type: ignore[attr-defined]


async def test_the_earlier_object_keeps_its_port_and_a_later_one_recording_it_is_ignored() -> None:
    """A race: the later Service recorded TCP:80 first. The earlier one takes it; the later
    one, at its next sync, refuses it and forgets it without deleting it."""
    cloud, client = FakeCloud(), FakeClient()
    later = service(
        {LISTENERS_ANNOTATION: "lb-s=TCP:80"}, name="zz", created="2026-01-03T00:00:00Z"
    )
    first = service(created="2026-01-01T00:00:00Z")
    lbs = owner(cloud, client, claims_of(first, later))
    await lbs.converge(
        first, intent=LoadBalancerIntent(existing_id="lb-s"), listeners=lambda _: tcp(80)
    )
    [only] = cloud.syncs
    assert (only.listeners, only.scope) == (tcp(80), frozenset({TCP80}))
    assert "ListenerConflict" not in lbs.recorder.reasons  # type: ignore[attr-defined]

    recorded_first = service({LISTENERS_ANNOTATION: "lb-s=TCP:80"}, created="2026-01-01T00:00:00Z")
    cloud2, client2 = FakeCloud(), FakeClient()
    loser = owner(cloud2, client2, claims_of(recorded_first, later))
    await loser.converge(
        later, intent=LoadBalancerIntent(existing_id="lb-s"), listeners=lambda _: tcp(80)
    )
    [synced] = cloud2.syncs
    assert (synced.listeners, synced.scope) == ((), frozenset())  # TCP:80 is not touched
    assert recorded(client2) == [None]  # forgotten, not deleted
    assert "ListenerConflict" in loser.recorder.reasons  # type: ignore[attr-defined]


async def test_same_creation_time_is_decided_by_namespace_and_name() -> None:
    at = "2026-01-01T00:00:00Z"
    a, b = service(name="a", created=at), service(name="b", created=at)
    assert Claimant.of(a, SERVICE_KIND) < Claimant.of(b, SERVICE_KIND)


async def test_an_ingress_holding_the_port_refuses_it_to_a_later_service() -> None:
    cloud, client = FakeCloud(), FakeClient()
    ingress = Ingress.from_dict(
        {
            "metadata": {
                "name": "shop",
                "namespace": "ns",
                "creationTimestamp": "2026-01-01T00:00:00Z",
                "annotations": {LISTENERS_ANNOTATION: "lb-s=TCP:80"},
            }
        }
    )
    lbs = owner(cloud, client, claims_of(ingresses=[ingress]))
    await lbs.converge(
        service(), intent=LoadBalancerIntent(existing_id="lb-s"), listeners=lambda _: tcp(80)
    )
    [only] = cloud.syncs
    assert only.listeners == ()
    assert "ListenerConflict" in lbs.recorder.reasons  # type: ignore[attr-defined]


def test_the_rule_the_first_created_of_those_recording_a_key_keeps_it() -> None:
    """The one rule of a shared CLB, as the sync and the readiness gate both apply it."""
    at = "2026-01-0{}T00:00:00Z".format
    first, mine, later = (
        Claimant.of(service(name=n, created=at(d)), SERVICE_KIND)
        for n, d in (("first", 1), ("mine", 2), ("later", 3))
    )
    others = {TCP80: [later, first], TCP81: [later], UDP53: []}
    assert refused_listeners([TCP80, TCP81, UDP53], claimant=mine, others=others) == {TCP80: first}
    # The first created itself takes every key it wants; nothing recorded, nothing refused.
    assert refused_listeners([TCP80, TCP81], claimant=first, others=others) == {}
    assert refused_listeners([TCP80], claimant=mine, others={}) == {}
    assert refused_listeners([], claimant=later, others=others) == {}


def test_a_port_is_held_across_the_protocols_of_its_family() -> None:
    """TCP, TCP_SSL, HTTP and HTTPS share a CLB's port space (UDP and QUIC share another): a
    Service's TCP:80 is refused where an Ingress created earlier records HTTP:80, and a UDP:80
    is not."""
    at = "2026-01-0{}T00:00:00Z".format
    first, mine = (
        Claimant.of(service(name=n, created=at(d)), SERVICE_KIND)
        for n, d in (("first", 1), ("mine", 2))
    )
    http80 = ListenerKey(ListenerProtocol.HTTP, 80)
    udp80 = ListenerKey(ListenerProtocol.UDP, 80)
    quic80 = ListenerKey(ListenerProtocol.QUIC, 80)
    assert refused_listeners([TCP80, udp80], claimant=mine, others={http80: [first]}) == {
        TCP80: first
    }
    assert refused_listeners([udp80], claimant=mine, others={quic80: [first]}) == {udp80: first}
    assert refused_listeners([TCP81], claimant=mine, others={http80: [first]}) == {}


async def test_the_claims_refuse_exactly_what_the_sync_leaves_out() -> None:
    """``ListenerClaims.refused`` (what the readiness gate asks) and the sync agree, whatever
    each other object records: the sync's listeners are the wanted ones without the refused."""
    holders = [
        service({LISTENERS_ANNOTATION: "lb-s=TCP:80"}, name="a", created="2026-01-01T00:00:00Z"),
        service({LISTENERS_ANNOTATION: "lb-s=TCP:81"}, name="z", created="2026-01-03T00:00:00Z"),
        service({LISTENERS_ANNOTATION: "lb-t=TCP:82"}, name="b", created="2026-01-01T00:00:00Z"),
    ]
    mine = service(created="2026-01-02T00:00:00Z")
    claims = claims_of(*holders, mine)
    refused = claims.refused("lb-s", [TCP80, TCP81], claimant=Claimant.of(mine, SERVICE_KIND))
    assert {key: str(holder) for key, holder in refused.items()} == {TCP80: "Service ns/a"}
    cloud = FakeCloud()
    await owner(cloud, FakeClient(), claims).converge(
        mine, intent=LoadBalancerIntent(existing_id="lb-s"), listeners=lambda _: tcp(80, 81, 82)
    )
    [synced] = cloud.syncs
    assert {str(listener.key) for listener in synced.listeners} == {"TCP:81", "TCP:82"}


async def test_release_never_deletes_a_listener_another_object_records() -> None:
    cloud, client = FakeCloud(), FakeClient()
    other = service(
        {LISTENERS_ANNOTATION: "lb-s=TCP:80"}, name="first", created="2026-01-01T00:00:00Z"
    )
    svc = service(
        {LB_ID_ANNOTATION: "lb-s", LISTENERS_ANNOTATION: "lb-s=TCP:80,TCP:81"},
        finalizers=[SERVICE_KIND.finalizer],
        deleting=True,
    )
    await owner(cloud, client, claims_of(other, svc)).release(svc, existing_lb_id="lb-s")
    assert [(d.lb_id, d.scope) for d in cloud.syncs] == [("lb-s", frozenset({TCP81}))]


# --- finalizers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("deleting", [False, True])
async def test_finalizer_patches_carry_the_resource_version(deleting: bool) -> None:
    cloud, client = FakeCloud(), FakeClient()
    o = owner(cloud, client)
    if deleting:
        svc = service(finalizers=["other.io/x", SERVICE_KIND.finalizer], deleting=True)
        await o.release(svc, existing_lb_id="")
        expected = ["other.io/x"]
    else:
        svc = service(finalizers=["other.io/x"])
        await o.add_finalizer(svc)
        expected = ["other.io/x", SERVICE_KIND.finalizer]
    [patch] = [p for p in client.patches if "finalizers" in p.get("metadata", {})]
    assert patch["metadata"]["resourceVersion"] == "10"
    assert patch["metadata"]["finalizers"] == expected


async def test_a_finalizer_added_meanwhile_by_someone_else_is_kept() -> None:
    """Our cache still shows no finalizer; another controller added one (rv 11). The patch
    computed from the cache is refused (409), and the retry starts from the fresh object."""
    fresh = service(finalizers=["other.io/x"], rv="11")
    cloud, client = FakeCloud(), FakeClient(conflicts=1, fresh=fresh)
    await owner(cloud, client).add_finalizer(service(rv="10"))
    assert client.gets == 1
    [patch] = client.patches
    assert patch["metadata"] == {
        "resourceVersion": "11",
        "finalizers": ["other.io/x", SERVICE_KIND.finalizer],
    }


async def test_removing_ours_keeps_a_finalizer_added_meanwhile() -> None:
    fresh = service(finalizers=[SERVICE_KIND.finalizer, "other.io/late"], rv="12", deleting=True)
    cloud, client = FakeCloud(), FakeClient(conflicts=1, fresh=fresh)
    svc = service(finalizers=[SERVICE_KIND.finalizer], deleting=True)
    await owner(cloud, client).release(svc, existing_lb_id="")
    [patch] = [p for p in client.patches if "finalizers" in p.get("metadata", {})]
    assert patch["metadata"] == {"resourceVersion": "12", "finalizers": ["other.io/late"]}


async def test_conflicts_without_end_are_an_error() -> None:
    cloud, client = FakeCloud(), FakeClient(conflicts=99, fresh=service(rv="13"))
    with pytest.raises(ApiError):
        await owner(cloud, client).add_finalizer(service())
