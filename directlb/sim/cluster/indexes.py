"""Label indexes the cluster controllers keep from store events.

A store listener is called synchronously for every write, so an index updated there is always
what the store holds: a controller finds the few pods a selector matches (or the few selectors
that match a pod) with dictionary lookups instead of scanning a namespace of thousands of
objects on every event or sync. The lookups only narrow the search; the full selector is
still checked against the labels, so an index can never make a match appear. Values are filed
as text (validation makes them strings; ``str`` keeps an odd one hashable).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from directlb.sim.storage import ObjKey

Pair = tuple[str, str, str]  # (namespace, label key, label value as text)


def equality_matches(selector: Mapping[str, Any], labels: Mapping[str, Any] | None) -> bool:
    """A Service-style selector (every pair equal) against an object's labels."""
    labels = labels or {}
    return all(labels.get(k) == v for k, v in selector.items())


class LabelIndex:
    """Object names by (namespace, label key, label value)."""

    def __init__(self) -> None:
        self._labels: dict[ObjKey, dict[str, Any]] = {}
        self._names: dict[Pair, set[str]] = {}

    def put(self, key: ObjKey, labels: Mapping[str, Any] | None) -> None:
        labels = dict(labels or {})
        if self._labels.get(key) == labels:
            return
        self.remove(key)
        self._labels[key] = labels
        for label, value in labels.items():
            self._names.setdefault((key[0], label, str(value)), set()).add(key[1])

    def remove(self, key: ObjKey) -> None:
        for label, value in self._labels.pop(key, {}).items():
            pair = (key[0], label, str(value))
            names = self._names.get(pair)
            if names is not None:
                names.discard(key[1])
                if not names:
                    del self._names[pair]

    def clear(self) -> None:
        self._labels.clear()
        self._names.clear()

    def selected(self, namespace: str, selector: Mapping[str, Any]) -> set[str]:
        """Names in ``namespace`` whose labels may hold every pair of a non-empty ``selector``
        (the caller checks: a value filed as text may have been another type)."""
        sets = [
            self._names.get((namespace, label, str(value)), set())
            for label, value in selector.items()
        ]
        smallest = min(sets, key=len, default=set())
        return {name for name in smallest if all(name in names for names in sets)}


class SelectorIndex:
    """Equality selectors by key, each filed under one of its pairs: a selector matching some
    labels holds only pairs of those labels, so looking up each label pair finds it."""

    def __init__(self) -> None:
        self._selectors: dict[ObjKey, dict[str, Any]] = {}
        self._filed: dict[Pair, set[ObjKey]] = {}

    @staticmethod
    def _pair(key: ObjKey, selector: Mapping[str, Any]) -> Pair:
        label = min(selector)
        return key[0], label, str(selector[label])

    def put(self, key: ObjKey, selector: Mapping[str, Any] | None) -> None:
        """File ``key``'s selector; an empty one selects nothing and is dropped."""
        selector = dict(selector or {})
        if self._selectors.get(key) == selector:
            return
        self.remove(key)
        if selector:
            self._selectors[key] = selector
            self._filed.setdefault(self._pair(key, selector), set()).add(key)

    def remove(self, key: ObjKey) -> None:
        selector = self._selectors.pop(key, None)
        if selector is None:
            return
        pair = self._pair(key, selector)
        keys = self._filed[pair]
        keys.discard(key)
        if not keys:
            del self._filed[pair]

    def clear(self) -> None:
        self._selectors.clear()
        self._filed.clear()

    def filed_keys(self) -> list[ObjKey]:
        return list(self._selectors)

    def matching(self, namespace: str, labels: Mapping[str, Any]) -> set[ObjKey]:
        """Keys in ``namespace`` whose selector matches ``labels``."""
        found: set[ObjKey] = set()
        for label, value in labels.items():
            for key in self._filed.get((namespace, label, str(value)), ()):
                if equality_matches(self._selectors[key], labels):
                    found.add(key)
        return found
