"""The dashboard's response cache: an answer is reused for at most TTL_S.

Known truth: a counting endpoint behind `ResponseCacheMiddleware` with a hand
clock: the second identical request inside the TTL does not reach it, one
after the TTL does; other paths, other queries, POSTs and error answers
always do. A matching If-None-Match gets 304; a successful action makes the
answers stale; the refresher (run by hand, or by the lifespan) recomputes an
answer before it expires, so requests never do, and stops after IDLE_S.
"""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")

from fastapi import FastAPI  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from dsa110_contimg.web.cache import CACHED_PATHS, ResponseCacheMiddleware  # noqa: E402


@pytest.fixture()
def rig():
    calls = {"n": 0}
    now = {"t": 100.0}
    app = FastAPI()

    @app.get("/api/queue")
    def queue(status: int = 200):
        calls["n"] += 1
        return JSONResponse({"n": calls["n"]}, status_code=status)

    @app.get("/api/jobs")
    def jobs():
        calls["n"] += 1
        return {"n": calls["n"]}

    @app.post("/api/queue")
    def post():
        calls["n"] += 1
        return {"n": calls["n"]}

    app.add_middleware(ResponseCacheMiddleware, clock=lambda: now["t"], ttl_s=1.0)
    return TestClient(app), calls, now


def test_answer_is_reused_within_the_ttl_only(rig) -> None:
    client, calls, now = rig
    first = client.get("/api/queue")
    assert first.json() == {"n": 1}
    again = client.get("/api/queue")
    assert again.json() == {"n": 1} and calls["n"] == 1
    assert again.headers["content-type"] == first.headers["content-type"]
    now["t"] += 1.01
    assert client.get("/api/queue").json() == {"n": 2}


def test_other_requests_pass_through(rig) -> None:
    client, calls, _ = rig
    assert "/api/jobs" not in CACHED_PATHS
    client.get("/api/jobs")
    client.get("/api/jobs")
    assert calls["n"] == 2
    client.post("/api/queue")
    client.post("/api/queue")
    assert calls["n"] == 4
    client.get("/api/queue", params={"status": 503})
    assert client.get("/api/queue", params={"status": 503}).status_code == 503
    assert calls["n"] == 6
    # a different query string is a different answer
    client.get("/api/queue")
    client.get("/api/queue", params={"x": 1})
    assert calls["n"] == 8


def test_one_request_computes_while_the_others_get_the_previous_answer() -> None:
    import asyncio

    calls = {"n": 0}
    now = {"t": 0.0}
    release = asyncio.Event()

    async def app(scope, receive, send):
        calls["n"] += 1
        n = calls["n"]
        if n > 1:
            await release.wait()  # the recomputation is slow
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(n).encode()})

    cache = ResponseCacheMiddleware(app, clock=lambda: now["t"], ttl_s=1.0)

    async def get() -> bytes:
        out = []

        async def send(message):
            if message["type"] == "http.response.body":
                out.append(message["body"])

        scope = {"type": "http", "method": "GET", "path": "/api/metrics"}
        await cache(scope, None, send)
        return b"".join(out)

    async def scenario():
        assert await get() == b"1"
        now["t"] = 5.0  # expired
        slow = asyncio.create_task(get())
        await asyncio.sleep(0)
        # while the second computation runs, others get answer 1 at once
        assert await asyncio.gather(get(), get()) == [b"1", b"1"]
        release.set()
        assert await slow == b"2"
        assert await get() == b"2"
        assert calls["n"] == 2

    asyncio.run(scenario())


def test_etag_304_and_cache_control(rig) -> None:
    client, calls, now = rig
    first = client.get("/api/queue")
    etag = first.headers["etag"]
    assert first.headers["cache-control"] == "max-age=1"
    assert etag.startswith('"') and etag.endswith('"')
    same = client.get("/api/queue", headers={"If-None-Match": etag})
    assert same.status_code == 304 and same.content == b""
    assert same.headers["etag"] == etag and calls["n"] == 1
    weak_list = client.get("/api/queue", headers={"If-None-Match": f'"x", W/{etag}'})
    assert weak_list.status_code == 304
    other = client.get("/api/queue", headers={"If-None-Match": '"other"'})
    assert other.status_code == 200 and other.json() == {"n": 1}
    # a new answer has a new tag: the old one no longer matches
    now["t"] += 1.01
    changed = client.get("/api/queue", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.json() == {"n": 2}
    assert changed.headers["etag"] != etag
    # paths not cached get no tag
    assert client.get("/api/jobs").headers.get("etag") is None


def test_unchanged_answer_keeps_its_etag() -> None:
    now = {"t": 0.0}
    app = FastAPI()

    @app.get("/api/disk")
    def disk():
        return [{"free": 1}]

    app.add_middleware(ResponseCacheMiddleware, clock=lambda: now["t"], ttl_s=1.0)
    client = TestClient(app)
    etag = client.get("/api/disk").headers["etag"]
    now["t"] = 5.0
    again = client.get("/api/disk", headers={"If-None-Match": etag})
    assert again.status_code == 304


def test_an_operator_action_makes_every_answer_stale(rig) -> None:
    client, calls, now = rig
    assert client.get("/api/queue").json() == {"n": 1}
    assert client.post("/api/queue").status_code == 200  # n = 2, a success
    assert client.get("/api/queue").json() == {"n": 3}  # recomputed at once
    assert client.get("/api/queue").json() == {"n": 3}
    assert calls["n"] == 3


def test_a_refused_action_keeps_the_answers() -> None:
    now = {"t": 0.0}
    calls = {"n": 0}
    app = FastAPI()

    @app.get("/api/queue")
    def queue():
        calls["n"] += 1
        return {"n": calls["n"]}

    @app.post("/api/actions/requeue/{job_id}")
    def requeue(job_id: int):
        return JSONResponse({"detail": "no token"}, status_code=401)

    app.add_middleware(ResponseCacheMiddleware, clock=lambda: now["t"], ttl_s=1.0)
    client = TestClient(app)
    client.get("/api/queue")
    assert client.post("/api/actions/requeue/1").status_code == 401
    assert client.get("/api/queue").json() == {"n": 1}


def _asgi_counter(calls: dict, gate: dict | None = None):
    """A bare ASGI app answering a counter (200, or ``gate['status']``)."""

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].removeprefix("lifespan.")
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        calls["n"] += 1
        status = (gate or {}).get("status", 200)
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": str(calls["n"]).encode()})

    return app


async def _get(cache, path: str = "/api/metrics", query: bytes = b"") -> bytes:
    out = []

    async def send(message):
        if message["type"] == "http.response.body":
            out.append(message["body"])

    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "query_string": query,
        "headers": [(b"host", b"test"), (b"if-modified-since", b"x")],
    }
    await cache(scope, None, send)
    return b"".join(out)


def test_the_refresher_computes_off_the_request_path() -> None:
    import asyncio

    from dsa110_contimg.web.cache import REFRESH_AT

    calls = {"n": 0}
    now = {"t": 0.0}
    cache = ResponseCacheMiddleware(
        _asgi_counter(calls), clock=lambda: now["t"], ttl_s=1.0, idle_s=10.0
    )

    async def scenario():
        assert await _get(cache) == b"1"  # the first request computes
        now["t"] = 0.5
        wait = await cache.refresh_once()  # not due yet
        assert calls["n"] == 1 and abs(wait - (REFRESH_AT - 0.5)) < 1e-9
        now["t"] = REFRESH_AT  # due: recomputed before it expires
        await cache.refresh_once()
        assert calls["n"] == 2
        now["t"] = 1.5  # the first answer would have expired; the new one not
        assert await _get(cache) == b"2" and calls["n"] == 2
        # many requests, one computation each period, none by a request
        for step in range(1, 6):
            now["t"] = REFRESH_AT * (1 + step)
            await cache.refresh_once()
            assert (
                await asyncio.gather(*(_get(cache) for _ in range(20)))
                == [str(2 + step).encode()] * 20
            )
        assert calls["n"] == 7
        # nobody asks for IDLE_S: dropped, no longer refreshed
        now["t"] += 10.5
        await cache.refresh_once()
        assert calls["n"] == 7 and cache._cache == {}

    asyncio.run(scenario())


def test_the_refresher_runs_with_the_lifespan() -> None:
    import time as _time

    calls = {"n": 0}
    cache = ResponseCacheMiddleware(_asgi_counter(calls), ttl_s=0.05)
    with TestClient(cache) as client:  # runs the lifespan: the refresher starts
        assert client.get("/api/queue").content == b"1"
        deadline = _time.monotonic() + 5.0
        while calls["n"] < 4 and _time.monotonic() < deadline:
            _time.sleep(0.02)
        assert calls["n"] >= 4  # recomputed with no request
        assert int(client.get("/api/queue").content) >= 4
    n = calls["n"]
    _time.sleep(0.2)
    assert calls["n"] == n  # stopped with the lifespan


def test_an_error_answer_is_passed_on_and_not_refreshed() -> None:
    import asyncio

    calls = {"n": 0}
    gate = {"status": 503}
    now = {"t": 0.0}
    cache = ResponseCacheMiddleware(
        _asgi_counter(calls, gate), clock=lambda: now["t"], ttl_s=1.0
    )

    async def scenario():
        assert await _get(cache) == b"1"  # the 503's body reaches the client
        assert await _get(cache) == b"2"  # not kept
        gate["status"] = 200
        assert await _get(cache) == b"3"
        assert await _get(cache) == b"3"

    asyncio.run(scenario())


def test_made_up_query_strings_are_not_kept_warm() -> None:
    import asyncio

    from dsa110_contimg.web import cache as cache_module

    calls = {"n": 0}
    now = {"t": 0.0}
    cache = ResponseCacheMiddleware(
        _asgi_counter(calls), clock=lambda: now["t"], ttl_s=1.0
    )

    async def scenario():
        for k in range(3 * cache_module._MAX_REFRESHED):
            await _get(cache, query=f"x={k}".encode())
        n = calls["n"]
        now["t"] = 1.0
        await cache.refresh_once()
        assert calls["n"] - n == cache_module._MAX_REFRESHED

    asyncio.run(scenario())


def test_after_an_action_no_request_gets_the_answer_from_before() -> None:
    import asyncio

    calls = {"n": 0}
    release = asyncio.Event()

    async def app(scope, receive, send):
        if scope["method"] == "POST":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
            return
        calls["n"] += 1
        n = calls["n"]
        if n > 1:
            await release.wait()  # the recomputation is slow
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(n).encode()})

    cache = ResponseCacheMiddleware(app, clock=lambda: 0.0, ttl_s=1.0)

    async def post():
        async def send(message):
            pass

        scope = {"type": "http", "method": "POST", "path": "/api/actions/x"}
        await cache(scope, None, send)

    async def scenario():
        assert await _get(cache) == b"1"
        assert await _get(cache) == b"1"  # fresh (the clock stands still)
        await post()  # a successful action: answer 1 is from before it
        slow = asyncio.create_task(_get(cache))
        await asyncio.sleep(0)
        waiting = asyncio.create_task(_get(cache))
        await asyncio.sleep(0.01)
        assert not waiting.done()  # not served answer 1 meanwhile
        release.set()
        assert await slow == b"2" and await waiting == b"2"
        assert calls["n"] == 2

    asyncio.run(scenario())
