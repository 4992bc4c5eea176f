"""The dashboard's response cache: an answer is reused for at most TTL_S.

Known truth: a counting endpoint behind `ResponseCacheMiddleware` with a hand
clock: the second identical request inside the TTL does not reach it, one
after the TTL does; other paths, other queries, POSTs and error answers
always do.
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
