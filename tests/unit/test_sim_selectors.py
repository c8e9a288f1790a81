"""Label and field selectors as the API server parses them."""

from __future__ import annotations

import pytest

from directlb.sim.contracts import StatusError
from directlb.sim.selectors import (
    fields_for,
    parse_field_selector,
    parse_label_selector,
    selector_from_label_selector,
)

LABELS = {"app": "web", "tier": "front", "example.com/zone": "a"}


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        ("", True),
        ("app=web", True),
        ("app==web", True),
        ("app!=web", False),
        ("app!=db", True),
        ("missing!=x", True),
        ("app in (web,db)", True),
        ("app in (db)", False),
        ("app notin (db, cache)", True),
        ("app notin (web)", False),
        ("missing notin (web)", True),
        ("tier", True),
        ("!tier", False),
        ("!missing", True),
        ("example.com/zone=a,app in (web),!missing", True),
        ("example.com/zone=a,app=db", False),
        (" app = web , tier ", True),
    ],
)
def test_label_selector(selector: str, matches: bool) -> None:
    assert parse_label_selector(selector).matches(LABELS) is matches


@pytest.mark.parametrize(
    "selector", ["a in (b", "Bad Key=x", "a=b c", "a=" + "x" * 64, "!a in (b)"]
)
def test_malformed_label_selectors_are_400(selector: str) -> None:
    with pytest.raises(StatusError) as error:
        parse_label_selector(selector)
    assert error.value.code == 400


def test_empty_value_is_allowed() -> None:
    assert parse_label_selector("app=").matches({"app": ""})
    assert not parse_label_selector("app=").matches({})


def test_label_selector_from_metav1() -> None:
    selector = selector_from_label_selector(
        {
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["front", "back"]},
                {"key": "gone", "operator": "DoesNotExist"},
            ],
        }
    )
    assert selector.matches(LABELS)
    assert not selector.matches({"app": "web", "tier": "db"})
    assert selector.exact() == {"app": "web"}


POD = {
    "metadata": {"name": "p", "namespace": "ns"},
    "spec": {"nodeName": "n1", "hostNetwork": True},
    "status": {"phase": "Running"},
}


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        ("metadata.name=p", True),
        ("metadata.name==p", True),
        ("metadata.name!=p", False),
        ("metadata.namespace=ns,spec.nodeName=n1", True),
        ("spec.nodeName=", False),
        ("status.phase=Running", True),
        ("status.phase!=Pending", True),
        ("spec.hostNetwork=true", True),
    ],
)
def test_pod_field_selector(selector: str, matches: bool) -> None:
    parsed = parse_field_selector(selector, fields=fields_for("", "pods"))
    assert parsed.matches(POD) is matches


def test_event_field_selectors_cover_the_involved_object() -> None:
    event = {"metadata": {"name": "e"}, "involvedObject": {"name": "p", "kind": "Pod", "uid": "1"}}
    fields = fields_for("", "events")
    assert parse_field_selector(
        "involvedObject.name=p,involvedObject.kind=Pod", fields=fields
    ).matches(event)
    assert not parse_field_selector("involvedObject.uid=2", fields=fields).matches(event)


def test_unsupported_field_is_400() -> None:
    with pytest.raises(StatusError) as error:
        parse_field_selector("spec.nodeName=x", fields=fields_for("", "configmaps"))
    assert error.value.code == 400 and "field label not supported" in error.value.message
    with pytest.raises(StatusError):
        parse_field_selector("metadata.name", fields=fields_for("", "pods"))


def test_escaped_comma_in_a_field_value() -> None:
    parsed = parse_field_selector(r"metadata.name=a\,b", fields=fields_for("", "pods"))
    assert parsed.exact("metadata.name") == "a,b"
