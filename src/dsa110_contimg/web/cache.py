"""A short-lived response cache for the JSON the dashboard polls.

Fifty open dashboards ask for the same seven answers every few seconds; each
answer is computed once per `TTL_S` second (or when the state database
changes, whichever is later: a cached answer is at most `TTL_S` old and never
older than the database it was computed from) and then served from memory,
without a database connection or a worker thread. Only ``GET`` requests of
`CACHED_PATHS` with status 200 are kept, keyed by path and query string.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

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


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


class ResponseCacheMiddleware:
    """ASGI middleware serving `CACHED_PATHS` from memory for up to `TTL_S`.

    Parameters
    ----------
    app : ASGI application
        The wrapped application.
    db_path : Path
        The state database; its file and its ``-wal`` changing invalidates.
    clock : callable
        Monotonic seconds (replaced in tests).
    """

    def __init__(
        self,
        app,
        *,
        db_path: Path,
        clock: Callable[[], float] = time.monotonic,
        ttl_s: float = TTL_S,
    ) -> None:
        self.app = app
        self.db_path = Path(db_path)
        self.wal_path = Path(f"{db_path}-wal")
        self.clock = clock
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._cache: dict[bytes, tuple[float, object, int, list, bytes]] = {}

    def _stamp(self) -> object:
        return (_stat(self.db_path), _stat(self.wal_path))

    async def __call__(self, scope, receive, send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "GET"
            or scope["path"] not in CACHED_PATHS
        ):
            await self.app(scope, receive, send)
            return
        key = scope["path"].encode() + b"?" + scope.get("query_string", b"")
        now = self.clock()
        stamp = self._stamp()
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and now - hit[0] < self.ttl_s and hit[1] == stamp:
            _, _, status, headers, body = hit
            await send(
                {"type": "http.response.start", "status": status, "headers": headers}
            )
            await send({"type": "http.response.body", "body": body})
            return
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
                self._cache[key] = (now, stamp, 200, captured["headers"], body)
