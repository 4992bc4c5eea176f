"""A short-lived response cache for the JSON the dashboard polls.

Fifty open dashboards ask for the same seven answers every few seconds. Each
answer is kept as the finished response (status, headers, body bytes) with an
``ETag`` (a hash of the body) and ``Cache-Control: max-age`` of `TTL_S`; a
request carrying a matching ``If-None-Match`` gets ``304 Not Modified`` and
no body. Requests never wait for a computation once an answer exists:

* a single refresher task (started with the server's lifespan) recomputes,
  one after the other, every answer requested in the last `IDLE_S` when it
  is `REFRESH_AT` x `TTL_S` old, off the request path; an answer nobody
  asked for in `IDLE_S` is dropped and stops being refreshed (at most
  `_MAX_REFRESHED` keys are kept warm, so made-up query strings cannot make
  it work harder);
* without the refresher (an app run without its lifespan, a refresher that
  lags) the first request to find an answer older than `TTL_S` computes it
  while requests arriving meanwhile get the previous one (single flight);
  only the very first request of a key waits for its computation, and
  requests arriving during it wait for that one instead of computing again.

An answer is therefore at most about `TTL_S` plus one computation old. (The
cache does not follow the state database: a running stream writes it several
times a second, heartbeats included, which would leave nothing to reuse.) A
successful ``POST``, ``PUT``, ``PATCH`` or ``DELETE`` (an operator action)
marks every answer stale, none of them is served again, and the refresher
recomputes them at once, so the dashboard's refresh after a requeue sees the
change. Only ``GET`` requests of `CACHED_PATHS` with status 200 are kept,
keyed by path and query string.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "CACHED_PATHS",
    "IDLE_S",
    "REFRESH_AT",
    "TTL_S",
    "ResponseCacheMiddleware",
]

log = logging.getLogger(__name__)

TTL_S = 1.0
"""Longest time an answer is reused (seconds); see `REFRESH_AT`."""

IDLE_S = 60.0
"""An answer nobody requested for this long is no longer refreshed (seconds)."""

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
_MAX_REFRESHED = 32
"""Keys the refresher keeps warm (the dashboard uses 7; other query strings
beyond this many are cached on the request path only)."""
REFRESH_AT = 0.8
"""The refresher recomputes an answer this fraction of `TTL_S` after it was
computed, so that requests find it fresh."""
_KEPT_REQUEST_HEADERS = frozenset({b"host", b"accept", b"user-agent"})
_REPLAYED_SCOPE = frozenset(
    {
        "type",
        "asgi",
        "http_version",
        "method",
        "scheme",
        "server",
        "client",
        "root_path",
        "path",
        "raw_path",
        "query_string",
        "state",
    }
)
_ACTION_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True, slots=True)
class _Entry:
    """One finished answer: when its computation started, headers and body."""

    computed_at: float
    generation: int
    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    etag: bytes


@dataclass(slots=True)
class _Key:
    """What the refresher needs to recompute a key: the request and its use."""

    scope: dict
    last_requested: float
    due: float = math.inf


def _etag(body: bytes) -> bytes:
    return b'"' + hashlib.blake2b(body, digest_size=12).hexdigest().encode() + b'"'


def _matches(if_none_match: bytes, etag: bytes) -> bool:
    """Whether an ``If-None-Match`` value names ``etag`` (weak comparison)."""
    for tag in if_none_match.split(b","):
        tag = tag.strip()
        if tag == b"*" or tag.removeprefix(b"W/") == etag:
            return True
    return False


class ResponseCacheMiddleware:
    """ASGI middleware serving `CACHED_PATHS` from memory for up to `TTL_S`.

    Parameters
    ----------
    app : ASGI application
        The wrapped application.
    clock : callable
        Monotonic seconds (replaced in tests).
    ttl_s : float
        Longest reuse of an answer (seconds); the refresher recomputes an
        answer when it is `REFRESH_AT` x ``ttl_s`` old.
    idle_s : float
        Answers not requested for this long stop being refreshed (seconds).
    """

    def __init__(
        self,
        app,
        *,
        clock: Callable[[], float] = time.monotonic,
        ttl_s: float = TTL_S,
        idle_s: float = IDLE_S,
    ) -> None:
        self.app = app
        self.clock = clock
        self.ttl_s = ttl_s
        self.idle_s = idle_s
        self._cache_control = f"max-age={max(0, math.floor(ttl_s))}".encode()
        self._cache: dict[bytes, _Entry] = {}
        self._keys: dict[bytes, _Key] = {}
        self._locks: dict[bytes, asyncio.Lock] = {}
        self._generation = 0  # bumped by each successful operator action
        self._refresher: asyncio.Task | None = None
        self.n_computed = 0
        """Answers computed so far (requests and refresher; for tests)."""

    # -- ASGI ---------------------------------------------------------------
    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, self._lifespan_receive(receive), send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] in _ACTION_METHODS:
            await self._action(scope, receive, send)
            return
        if scope["method"] != "GET" or scope["path"] not in CACHED_PATHS:
            await self.app(scope, receive, send)
            return
        key = scope["path"].encode() + b"?" + scope.get("query_string", b"")
        now = self.clock()
        known = self._keys.get(key)
        if known is not None:
            known.last_requested = now
        elif len(self._keys) < _MAX_REFRESHED:
            self._keys[key] = _Key(self._replay_scope(scope), now)
        entry = self._cache.get(key)
        if entry is not None and self._fresh(entry, now):
            await self._serve(entry, scope, send)
            return
        lock = self._lock(key)
        if entry is not None and entry.generation == self._generation and lock.locked():
            # another request (or the refresher) computes the new answer: the
            # previous one, at most TTL_S plus that computation old, serves
            # meanwhile; not one from before an operator action
            await self._serve(entry, scope, send)
            return
        async with lock:
            entry = self._cache.get(key)
            if entry is None or not self._fresh(entry, self.clock()):
                entry = await self._compute(key, scope, receive)
        await self._serve(entry, scope, send)

    def _lock(self, key: bytes) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            if len(self._locks) >= _MAX_ENTRIES:  # made-up query strings
                self._locks = {k: v for k, v in self._locks.items() if v.locked()}
            lock = self._locks[key] = asyncio.Lock()
        return lock

    def _fresh(self, entry: _Entry, now: float) -> bool:
        return (
            now - entry.computed_at < self.ttl_s
            and entry.generation == self._generation
        )

    async def _action(self, scope, receive, send) -> None:
        """Pass an action on; a success marks every answer stale."""
        status: dict[str, int] = {}

        async def watch(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            if 200 <= status.get("code", 500) < 300:
                self._generation += 1
                for k in self._keys.values():
                    k.due = 0.0

    # -- serving ------------------------------------------------------------
    async def _serve(self, entry: _Entry, scope, send) -> None:
        if entry.status == 200:
            cond = dict(scope.get("headers", ())).get(b"if-none-match")
            if cond is not None and _matches(cond, entry.etag):
                await send(
                    {
                        "type": "http.response.start",
                        "status": 304,
                        "headers": [
                            (b"etag", entry.etag),
                            (b"cache-control", self._cache_control),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": b""})
                return
        await send(
            {
                "type": "http.response.start",
                "status": entry.status,
                "headers": list(entry.headers),
            }
        )
        await send({"type": "http.response.body", "body": entry.body})

    # -- computing ----------------------------------------------------------
    @staticmethod
    def _replay_scope(scope) -> dict:
        """The parts of a request's scope that the refresher sends again."""
        out = {k: v for k, v in scope.items() if k in _REPLAYED_SCOPE}
        out["headers"] = [
            (k, v) for k, v in scope.get("headers", ()) if k in _KEPT_REQUEST_HEADERS
        ]
        return out

    async def _compute(self, key: bytes, scope, receive=None) -> _Entry:
        """Run the app for ``scope`` and return its answer, kept if a 200.

        ``receive`` None (the refresher): the request has no body. An answer
        other than 200 is returned (the request that asked gets it) but not
        kept, and the key's previous answer is dropped.
        """
        started, generation = self.clock(), self._generation
        chunks: list[bytes] = []
        start: dict[str, object] = {}
        done = asyncio.Event()

        async def no_body():
            if start.get("requested"):
                await done.wait()
                return {"type": "http.disconnect"}
            start["requested"] = True
            return {"type": "http.request", "body": b"", "more_body": False}

        async def capture(message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    done.set()

        try:
            await self.app(dict(scope), receive or no_body, capture)
        finally:
            done.set()
        self.n_computed += 1
        body = b"".join(chunks)
        status = int(start.get("status", 500))
        headers = tuple(start.get("headers", ()))
        if status != 200:
            self._cache.pop(key, None)
            return _Entry(started, generation, status, headers, body, b"")
        etag = _etag(body)
        headers = (
            *(h for h in headers if h[0] not in (b"etag", b"cache-control")),
            (b"etag", etag),
            (b"cache-control", self._cache_control),
        )
        entry = _Entry(started, generation, 200, headers, body, etag)
        if len(self._cache) >= _MAX_ENTRIES and key not in self._cache:
            self._cache.clear()
        self._cache[key] = entry
        return entry

    # -- the refresher ------------------------------------------------------
    def _lifespan_receive(self, receive):
        """Wrap the lifespan's ``receive``: start the refresher, stop it."""

        async def wrapped():
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.start_refresher()
            elif message["type"] == "lifespan.shutdown":
                await self.stop_refresher()
            return message

        return wrapped

    def start_refresher(self) -> None:
        """Start the refresher task in the running event loop (idempotent)."""
        if self._refresher is None or self._refresher.done():
            self._refresher = asyncio.get_running_loop().create_task(
                self._refresh_forever(), name="dashboard-cache-refresher"
            )

    async def stop_refresher(self) -> None:
        """Cancel the refresher task and wait for it."""
        task, self._refresher = self._refresher, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def refresh_once(self) -> float:
        """Recompute every due answer once; return seconds until the next is due.

        A key is due `REFRESH_AT` x `TTL_S` after its answer's computation
        started (at once after an operator action); one not requested for
        `IDLE_S` is dropped.
        """
        now = self.clock()
        wait = REFRESH_AT * self.ttl_s
        for key, known in list(self._keys.items()):
            if now - known.last_requested > self.idle_s:
                self._keys.pop(key, None)
                self._cache.pop(key, None)
                self._locks.pop(key, None)
                continue
            entry = self._cache.get(key)
            due = min(
                known.due,
                -math.inf
                if entry is None
                else entry.computed_at + REFRESH_AT * self.ttl_s,
            )
            if due > now:
                wait = min(wait, due - now)
                continue
            lock = self._lock(key)
            if lock.locked():  # a request computes it
                continue
            async with lock:
                known.due = math.inf
                try:
                    await self._compute(key, known.scope)
                except Exception:  # the request path reports it; keep refreshing
                    log.exception("refreshing %s failed", key.decode(errors="replace"))
            now = self.clock()
        return max(wait, 0.0)

    async def _refresh_forever(self) -> None:
        while True:
            wait = await self.refresh_once()
            await asyncio.sleep(max(wait, 0.01))
