"""A short-lived response cache for the JSON the dashboard polls.

Fifty open dashboards ask for the same seven answers every few seconds; each
answer is computed at most once per `TTL_S` and otherwise served from memory,
without a database connection or a worker thread. One request at a time
computes a key's new answer; requests arriving meanwhile get the previous
one, so an answer is at most `TTL_S` plus one computation old. (The cache
does not follow the state database: a running stream writes it several times
a second, heartbeats included, which would leave nothing to reuse.) Only
``GET`` requests of `CACHED_PATHS` with status 200 are kept, keyed by path
and query string.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

__all__ = ["CACHED_PATHS", "TTL_S", "ResponseCacheMiddleware"]

TTL_S = 1.0
"""Longest time an answer is reused (seconds)."""

CACHED_PATHS = frozenset(
    {
        "/api/queue",
        "/api/metrics",
        "/api/metrics/backlog",
        "/api/mosaics",
        "/api/calibration/strips",
        "/api/failures",
        "/api/disk",
        "/api/intake",
    }
)
"""The dashboard's endpoints (``web/static/app.js``)."""

_MAX_ENTRIES = 256


class ResponseCacheMiddleware:
    """ASGI middleware serving `CACHED_PATHS` from memory for up to `TTL_S`.

    Parameters
    ----------
    app : ASGI application
        The wrapped application.
    clock : callable
        Monotonic seconds (replaced in tests).
    ttl_s : float
        Longest reuse of an answer (seconds).
    """

    def __init__(
        self,
        app,
        *,
        clock: Callable[[], float] = time.monotonic,
        ttl_s: float = TTL_S,
    ) -> None:
        self.app = app
        self.clock = clock
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._cache: dict[bytes, tuple[float, int, list, bytes]] = {}
        self._locks: dict[bytes, asyncio.Lock] = {}

    async def __call__(self, scope, receive, send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "GET"
            or scope["path"] not in CACHED_PATHS
        ):
            await self.app(scope, receive, send)
            return
        key = scope["path"].encode() + b"?" + scope.get("query_string", b"")
        hit = self._fresh(key)
        if hit is not None and hit[0]:
            await self._replay(hit[1], send)
            return
        lock = self._locks.setdefault(key, asyncio.Lock())
        if hit is not None and lock.locked():
            # another request computes the new answer: the previous one, at
            # most TTL_S plus that computation old, serves meanwhile
            await self._replay(hit[1], send)
            return
        async with lock:
            hit = self._fresh(key)
            if hit is not None and hit[0]:
                await self._replay(hit[1], send)
                return
            await self._compute(key, scope, receive, send)

    def _fresh(self, key: bytes):
        with self._lock:
            entry = self._cache.get(key)
        if entry is None:
            return None
        return (self.clock() - entry[0] < self.ttl_s, entry)

    @staticmethod
    async def _replay(entry, send) -> None:
        _, status, headers, body = entry
        await send(
            {"type": "http.response.start", "status": status, "headers": headers}
        )
        await send({"type": "http.response.body", "body": body})

    async def _compute(self, key: bytes, scope, receive, send) -> None:
        now = self.clock()
        captured: dict[str, object] = {"chunks": []}

        async def capture(message) -> None:
            if message["type"] == "http.response.start":
                captured["status"] = message["status"]
                captured["headers"] = list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                captured["chunks"].append(message.get("body", b""))
            await send(message)

        await self.app(scope, receive, capture)
        if captured.get("status") == 200:
            body = b"".join(captured["chunks"])
            with self._lock:
                if len(self._cache) >= _MAX_ENTRIES:
                    self._cache.clear()
                self._cache[key] = (now, 200, captured["headers"], body)
