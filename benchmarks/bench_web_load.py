#!/usr/bin/env python3
"""Load benchmark of the web API while a stream runs (issue 18's load criterion).

One `benchmarks.live_site.LiveSite`: ``dsa110-contimg stream`` (fake imager)
and ``dsa110-contimg serve`` on loopback. The stream processes one warm-up
group, then ``--groups-per-phase`` simulated groups twice: first with no web
client, then while ``--clients`` concurrent clients (asyncio, all in this process,
one keep-alive HTTP/1.1 connection per endpoint each) request the dashboard's
JSON endpoints for at least ``--duration-s`` seconds and until the second
phase is done. Each client does what an open dashboard does: fetch its seven
endpoints together, wait ``--think-s`` seconds, repeat (``--think-s 0``
hammers the server back to back). ``--client raw`` (default) is the lean
HTTP/1.1 client `_Connection`; ``--client httpx`` is httpx, whose own CPU
(about 2 ms a request, five times the server's) queues the 50 clients'
requests in this one process and shows up as latency. Throughput is groups
processed per minute from their delivery to their last mosaic; latency is per
request, measured by the client; the CPU time of the load generator (this
process) and of ``serve`` during the loaded phase are recorded too. Writes
``<out-dir>/<name>.json`` and ``.md``.

    .venv/bin/python -m benchmarks.bench_web_load [--clients 50] [--duration-s 30]
        [--think-s 5] [--groups-per-phase 3] [--client raw|httpx]
        [--workdir DIR] [--out-dir benchmarks/results] [--name web_load]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.live_site import LiveSite  # noqa: E402

__all__ = ["DASHBOARD_ENDPOINTS", "latency_summary", "run", "main"]

DASHBOARD_ENDPOINTS = (
    "/api/queue",
    "/api/metrics",
    "/api/metrics/backlog?points=60",
    "/api/mosaics?limit=1",
    "/api/calibration/strips",
    "/api/failures?limit=20",
    "/api/disk",
)
"""What the dashboard page polls (``web/static/app.js``), health aside."""


def latency_summary(latencies_s: list[float]) -> dict[str, float | int]:
    """Return count, mean, p50, p90, p99 and max of latencies, in milliseconds."""
    ms = 1e3 * np.asarray(latencies_s, dtype=float)
    if ms.size == 0:
        return {"n": 0}
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {
        "n": int(ms.size),
        "mean_ms": float(ms.mean()),
        "p50_ms": float(p50),
        "p90_ms": float(p90),
        "p99_ms": float(p99),
        "max_ms": float(ms.max()),
    }


def _phase(site: LiveSite, n_groups: int, timeout_s: float) -> dict[str, float]:
    before = site.n_mosaics()
    start = time.monotonic()
    for _ in range(n_groups):
        site.feed()
    while site.n_mosaics() < before + n_groups:
        if time.monotonic() - start > timeout_s or not site.alive("stream"):
            msg = f"phase did not finish: {site.log('stream')[-2000:]}"
            raise RuntimeError(msg)
        time.sleep(0.2)
    elapsed = time.monotonic() - start
    return {
        "n_groups": n_groups,
        "elapsed_s": elapsed,
        "groups_per_min": 60.0 * n_groups / elapsed,
    }


class _Connection:
    """One keep-alive HTTP/1.1 connection speaking just enough of the protocol.

    A real TCP client (asyncio streams): ``GET`` with a ``Host`` header, the
    status line and headers parsed, the body read by ``Content-Length`` or
    chunked transfer coding, reconnecting when the server closed the
    connection. It costs the load generator tens of microseconds a request,
    where httpx costs about 2 ms of CPU (measured): with 50 clients in one
    process httpx's own work, not the server's, showed up in the latencies.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str) -> tuple[int, bytes]:
        """Return the status and body of ``GET path``."""
        reused = self.writer is not None
        if not reused:
            await self._open()
        try:
            return await self._exchange(path)
        except (ConnectionError, asyncio.IncompleteReadError):
            await self.close()
            if not reused:
                raise
        # the server had closed the idle keep-alive connection: one fresh try
        await self._open()
        return await self._exchange(path)

    async def _open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def _exchange(self, path: str) -> tuple[int, bytes]:
        assert self.reader is not None and self.writer is not None
        self.writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            "Accept: application/json\r\n\r\n".encode()
        )
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                parts.append(chunk[:-2])
            body = b"".join(parts)
        else:
            body = await self.reader.readexactly(int(headers.get("content-length", 0)))
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, body

    async def close(self) -> None:
        """Close the connection (a later `get` reconnects)."""
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None


async def _clients(
    url: str, n: int, think_s: float, stop: asyncio.Event, client: str = "raw"
) -> dict:
    """Run ``n`` dashboard clients until ``stop``; return their latencies.

    Each client holds one connection per endpoint (as a browser's fetches
    do) and fetches all of them together, then waits ``think_s``. ``client``
    is ``"raw"`` (`_Connection`) or ``"httpx"`` (an ``httpx.AsyncClient``
    with as many connections).
    """
    from urllib.parse import urlsplit

    import httpx

    latencies: list[float] = []
    errors: dict[str, int] = {}
    by_endpoint: dict[str, list[float]] = {e: [] for e in DASHBOARD_ENDPOINTS}
    parts = urlsplit(url)

    async def one(get, path: str) -> None:
        t0 = time.perf_counter()
        try:
            status = await get(path)
            key = None if status == 200 else str(status)
        except (OSError, httpx.HTTPError, asyncio.IncompleteReadError) as err:
            key = type(err).__name__
        dt = time.perf_counter() - t0
        if key is None:
            latencies.append(dt)
            by_endpoint[path].append(dt)
        else:
            errors[key] = errors.get(key, 0) + 1

    async def poll(gets) -> None:
        while not stop.is_set():
            await asyncio.gather(
                *(one(g, p) for g, p in zip(gets, DASHBOARD_ENDPOINTS, strict=True))
            )
            if think_s:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), think_s)

    async def dashboard(k: int) -> None:
        await asyncio.sleep(k * max(think_s, 0.02) / n)  # spread the starts
        if client == "httpx":
            limits = httpx.Limits(max_connections=len(DASHBOARD_ENDPOINTS))
            async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as c:

                async def get(path: str) -> int:
                    return (await c.get(path)).status_code

                await poll([get] * len(DASHBOARD_ENDPOINTS))
            return
        conns = [
            _Connection(parts.hostname or "127.0.0.1", parts.port or 80)
            for _ in DASHBOARD_ENDPOINTS
        ]

        def getter(conn: _Connection):
            async def get(path: str) -> int:
                return (await asyncio.wait_for(conn.get(path), 30))[0]

            return get

        try:
            await poll([getter(c) for c in conns])
        finally:
            for conn in conns:
                await conn.close()

    await asyncio.gather(*(dashboard(k) for k in range(n)))
    return {"latencies": latencies, "errors": errors, "by_endpoint": by_endpoint}


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(args: argparse.Namespace) -> dict:
    """Run both phases on one live site and return the results."""
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench_web_load_"))
    site = LiveSite(workdir / "site", n_groups=2 * args.groups_per_phase + 1)
    try:
        site.start_stream()
        site.start_serve()
        # warm-up (not measured): the first group pays the pool's start-up
        _phase(site, 1, args.phase_timeout_s)
        quiet = _phase(site, args.groups_per_phase, args.phase_timeout_s)

        async def loaded() -> tuple[dict, dict]:
            stop = asyncio.Event()
            started = time.monotonic()
            cpu0 = _own_cpu_s(), site.cpu_s("serve")
            load = asyncio.create_task(
                _clients(site.url, args.clients, args.think_s, stop, args.client)
            )
            phase = await asyncio.to_thread(
                _phase, site, args.groups_per_phase, args.phase_timeout_s
            )
            rest = args.duration_s - (time.monotonic() - started)
            if rest > 0:
                await asyncio.sleep(rest)
            stop.set()
            out = await load
            out["load_s"] = time.monotonic() - started
            out["client_cpu_s"] = _own_cpu_s() - cpu0[0]
            out["serve_cpu_s"] = site.cpu_s("serve") - cpu0[1]
            return phase, out

        busy, load = asyncio.run(loaded())
    finally:
        site.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    summary = latency_summary(load["latencies"])
    drop = 1.0 - busy["groups_per_min"] / quiet["groups_per_min"]
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": {
            "cpus": os.cpu_count(),
            "loadavg_1min_at_end": os.getloadavg()[0],
            "python": platform.python_version(),
        },
        "clients": args.clients,
        "client": args.client,
        "think_s": args.think_s,
        "load_duration_s": load["load_s"],
        "load_generator_cpu_s": load["client_cpu_s"],
        "serve_cpu_s": load["serve_cpu_s"],
        "requests_per_s": summary.get("n", 0) / load["load_s"],
        "latency": summary,
        "latency_by_endpoint": {
            k: latency_summary(v) for k, v in load["by_endpoint"].items()
        },
        "errors": load["errors"],
        "stream_without_load": quiet,
        "stream_with_load": busy,
        "throughput_drop": drop,
        "criteria": {
            "p99_ms_below_200": summary.get("p99_ms", float("inf")) < 200.0,
            "throughput_drop_below_10pct": drop < 0.10,
        },
    }


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _markdown(r: dict) -> str:
    lat = r["latency"]
    lines = [
        "# Web API load while a stream runs",
        "",
        f"{r['date']}, {r['host']['cpus']} CPUs (1-min load average at the end "
        f"{r['host']['loadavg_1min_at_end']:.1f}); `benchmarks/bench_web_load.py "
        f"--clients {r['clients']} --think-s {r['think_s']} "
        f"--client {r['client']}`.",
        "",
        f"- {r['clients']} dashboard clients for {r['load_duration_s']:.1f} s, "
        f"each fetching the 7 dashboard endpoints together then waiting "
        f"{r['think_s']} s: {lat.get('n', 0)} requests "
        f"({r['requests_per_s']:.0f}/s), errors {r['errors'] or 'none'}.",
        f"- CPU during the load: the load generator "
        f"{100 * r['load_generator_cpu_s'] / r['load_duration_s']:.1f}% of a core, "
        f"`serve` {100 * r['serve_cpu_s'] / r['load_duration_s']:.1f}%.",
        f"- latency: p50 {lat.get('p50_ms', float('nan')):.1f} ms, p90 "
        f"{lat.get('p90_ms', float('nan')):.1f} ms, **p99 "
        f"{lat.get('p99_ms', float('nan')):.1f} ms**, max "
        f"{lat.get('max_ms', float('nan')):.1f} ms "
        f"(criterion < 200 ms: {_met(r['criteria']['p99_ms_below_200'])}).",
        f"- stream: {r['stream_without_load']['groups_per_min']:.2f} groups/min "
        f"without load ({r['stream_without_load']['n_groups']} groups in "
        f"{r['stream_without_load']['elapsed_s']:.1f} s), "
        f"{r['stream_with_load']['groups_per_min']:.2f} with it "
        f"({r['stream_with_load']['elapsed_s']:.1f} s): **drop "
        f"{100 * r['throughput_drop']:.1f}%** (criterion < 10%: "
        f"{_met(r['criteria']['throughput_drop_below_10pct'])}).",
        "",
        "| endpoint | n | p50 ms | p99 ms | max ms |",
        "|---|---|---|---|---|",
    ]
    for k, v in r["latency_by_endpoint"].items():
        if v.get("n"):
            lines.append(
                f"| `{k}` | {v['n']} | {v['p50_ms']:.1f} | {v['p99_ms']:.1f} | "
                f"{v['max_ms']:.1f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write ``web_load.json`` and ``web_load.md``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration-s", type=float, default=30.0)
    parser.add_argument(
        "--think-s", type=float, default=5.0, help="the dashboard polls every 5 s"
    )
    parser.add_argument("--groups-per-phase", type=int, default=3)
    parser.add_argument(
        "--client",
        choices=("raw", "httpx"),
        default="raw",
        help="the load generator's HTTP client (see the module docstring)",
    )
    parser.add_argument("--phase-timeout-s", type=float, default=600.0)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--keep", action="store_true", help="keep the workdir")
    parser.add_argument("--out-dir", default=str(HERE / "results"))
    parser.add_argument("--name", default="web_load", help="output file stem")
    args = parser.parse_args(argv)
    result = run(args)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"{args.name}.md").write_text(_markdown(result))
    print(_markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
