"""The API server's version (``GET /version``), read once and then refreshed rarely.

Direct access needs Kubernetes 1.12 or later, so the Service controller asks which version it
runs on. The answer changes only when the control plane is upgraded, so one read at start and
one an hour is plenty: :class:`VersionCache` does that, and serves every reconcile from memory.
A failed read is retried after ``retry_after`` seconds and, meanwhile, answers with what it
knew (or None, "unknown").
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from lightkube import AsyncClient

from directlb.kube.transport import TRANSIENT

log = logging.getLogger("directlb.kube.version")

# What a read may fail with and still be retried: the network, the API, a body not JSON.
_FAILURES: tuple[type[BaseException], ...] = (*TRANSIENT, ValueError)

#: Seconds between two reads of ``/version``, and before retrying a failed one.
REFRESH_AFTER = 3600.0
RETRY_AFTER = 30.0


@dataclass(frozen=True)
class ServerVersion:
    """The fields of ``/version`` worth keeping, as the server wrote them."""

    major: str
    minor: str
    git_version: str


async def read_server_version(client: AsyncClient) -> ServerVersion:
    """``GET /version`` with the client's own connection and credentials."""
    generic: Any = client._client  # lightkube has no call for non-resource URLs
    response = await generic._client.get("/version")
    response.raise_for_status()
    doc = response.json()
    return ServerVersion(
        major=str(doc.get("major") or ""),
        minor=str(doc.get("minor") or ""),
        git_version=str(doc.get("gitVersion") or ""),
    )


class VersionCache:
    """The server version from ``fetch``, at most once per ``refresh_after`` seconds."""

    def __init__(
        self,
        fetch: Callable[[], Awaitable[ServerVersion]],
        *,
        refresh_after: float = REFRESH_AFTER,
        retry_after: float = RETRY_AFTER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._refresh_after = refresh_after
        self._retry_after = retry_after
        self._clock = clock
        self._known: ServerVersion | None = None
        self._next = float("-inf")
        self._lock = asyncio.Lock()

    @classmethod
    def for_client(cls, client: AsyncClient, **options: Any) -> VersionCache:
        async def fetch() -> ServerVersion:
            return await read_server_version(client)

        return cls(fetch, **options)

    @property
    def known(self) -> ServerVersion | None:
        """What the last successful read said, without reading (None: never read)."""
        return self._known

    async def get(self) -> ServerVersion | None:
        """The version, read now if it is time; None while it has never been read."""
        if self._clock() < self._next:
            return self._known
        async with self._lock:  # concurrent workers at start: one read
            if self._clock() < self._next:
                return self._known
            try:
                version = await self._fetch()
            except _FAILURES as error:
                log.warning(
                    "event=version_read_failed error=%r retry_in=%gs", error, self._retry_after
                )
                self._next = self._clock() + self._retry_after
                return self._known
            if version != self._known:
                log.info("event=server_version git_version=%s", version.git_version)
            self._known = version
            self._next = self._clock() + self._refresh_after
            return version
