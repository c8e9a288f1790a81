"""The errors a Kubernetes call can fail with when the network, not the API, is the problem.

lightkube 1.x runs on ``httpx2`` (not ``httpx``): its transport errors and its ``ApiError``
both derive from ``httpx2.HTTPError``. Catch ``TRANSIENT`` where a failed call should be
retried rather than crash a long-running loop.
"""

from __future__ import annotations

import httpx2

HTTPError = httpx2.HTTPError
TRANSIENT: tuple[type[BaseException], ...] = (httpx2.HTTPError, OSError, TimeoutError)
