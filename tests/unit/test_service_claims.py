"""A writer claim per service, so the services can run apart (issue 16, item 3).

(And the service host's part in it: `run_services` takes only its services'
claims, cleans the data directories only with the ms_processor, and measures
the disk for a processor that runs without a watcher.)

Each streaming service takes only its part of the state database's writer
claim (``service:<name>:<state_db>``): the three services coexist as three
writers, a second instance of one is refused with the holder named, and a
whole-pipeline writer (``stream``, ``process``) is refused while any of them
runs, and the reverse. The parts are taken all or none.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dsa110_contimg.exceptions import StateError
from dsa110_contimg.services import run_services, run_services_async, run_stream_async
from dsa110_contimg.state import open_db
from dsa110_contimg.state.writer import (
    SERVICE_NAMES,
    WriterBusyError,
    cleanup_stale_temporaries,
    hold_writer,
    service_key,
    writer_key,
)
from dsa110_contimg.testing.layout import path_overrides
from dsa110_contimg.utils.config_loader import load_pipeline_config

HOST = socket.gethostname()
PID = os.getpid()


@pytest.fixture
def config(tmp_path: Path):
    overrides = path_overrides(tmp_path)
    overrides.update({"watcher.scan_interval_s": 0.2, "queue.poll_interval_s": 0.1})
    cfg = load_pipeline_config(environment="testing", overrides=overrides, env={})
    for d in ("incoming", "ms", "images", "products", "mosaics", "cal"):
        (tmp_path / d).mkdir()
    return cfg


def _held(db: Path) -> dict[str, str]:
    """Live claim keys of ``db`` and their owners."""
    with closing(open_db(db)) as conn:
        rows = conn.execute(
            "SELECT key, owner FROM claims WHERE owner IS NOT NULL AND expires_at > ?",
            (time.time(),),
        ).fetchall()
    return dict(rows)


def test_the_three_services_coexist_and_a_second_one_is_refused(tmp_path) -> None:
    db = tmp_path / "pipeline.sqlite3"
    watcher, processor, analyzer = (
        hold_writer(db, name, services=(name,)) for name in SERVICE_NAMES
    )
    with watcher as w, processor, analyzer:
        assert [c.key for c in w.claims] == [service_key(db, "hdf5_watcher")]
        assert w.services == ("hdf5_watcher",) and not w.is_whole
        assert set(_held(db)) == {service_key(db, n) for n in SERVICE_NAMES}

        with (
            pytest.raises(WriterBusyError) as excinfo,
            hold_writer(db, "hdf5_watcher", services=("hdf5_watcher",)),
        ):
            pass
        text = str(excinfo.value)
        assert f"`hdf5_watcher` on host {HOST}, pid {PID}, since 20" in text
        assert "holding the hdf5_watcher service" in text
        assert "`hdf5_watcher` wanted the hdf5_watcher service" in text
        assert "--service" in text and str(db) in text
        assert "ms_processor" not in text, "only the holder of the part is named"

        for command in ("stream", "process"):  # whole-pipeline writers
            with pytest.raises(WriterBusyError) as excinfo, hold_writer(db, command):
                pass
            text = str(excinfo.value)
            for name in SERVICE_NAMES:
                assert f"`{name}` on host {HOST}, pid {PID}" in text, text
            assert "--output-dir" in text
        assert writer_key(db) not in _held(db), "a refused writer takes nothing"

    assert _held(db) == {}
    with hold_writer(db, "stream") as whole:
        assert whole.is_whole and len(whole.claims) == len(SERVICE_NAMES) + 1
        assert whole.claim.key == writer_key(db)
        for name in SERVICE_NAMES:
            with (
                pytest.raises(WriterBusyError, match=f"`stream` on host {HOST}"),
                hold_writer(db, name, services=(name,)),
            ):
                pass


def test_parts_are_taken_all_or_none(tmp_path) -> None:
    db = tmp_path / "pipeline.sqlite3"
    with hold_writer(db, "ms_processor", services=("ms_processor",)):
        with (
            pytest.raises(WriterBusyError, match="`ms_processor` on host"),
            hold_writer(
                db, "two", services=("hdf5_watcher", "ms_processor", "hdf5_watcher")
            ),
        ):
            pass
        # the refused writer took no part (the watcher's sorts first)
        assert service_key(db, "hdf5_watcher") not in _held(db)
        with hold_writer(db, "hdf5_watcher", services=("hdf5_watcher",)):
            pass
    with (
        pytest.raises(ValueError, match="unknown services"),
        hold_writer(db, "x", services=("hdf5_watcher", "imager")),
    ):
        pass
    with (
        pytest.raises(ValueError, match="no services"),
        hold_writer(db, "x", services=()),
    ):
        pass


_HOLD = """
import sys, time
from dsa110_contimg.state.writer import hold_writer
with hold_writer(sys.argv[1], sys.argv[2], services=(sys.argv[2],), ttl_s=60):
    print("held", flush=True)
    time.sleep(600)
"""


def test_killed_service_process_is_taken_over_at_once(tmp_path: Path) -> None:
    db = tmp_path / "pipeline.sqlite3"
    open_db(db).close()
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(db), "ms_processor"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "held"
        with (
            pytest.raises(
                WriterBusyError, match=f"`ms_processor` on host {HOST}, pid {proc.pid}"
            ),
            hold_writer(db, "ms_processor", services=("ms_processor",)),
        ):
            pass
        with hold_writer(db, "hdf5_watcher", services=("hdf5_watcher",)):
            pass  # another service is not in its way
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        t0 = time.monotonic()
        with hold_writer(db, "ms_processor", services=("ms_processor",)):
            pass  # ttl 60 s, yet no wait: it is dead
        with hold_writer(db, "stream"):
            pass
        assert time.monotonic() - t0 < 5
    finally:
        proc.kill()
        proc.wait(10)
        proc.stdout.close()


def test_cleanup_needs_the_ms_processor_part(config) -> None:
    """Only the writer of the data directories may judge their temporaries."""
    db = Path(config.paths.state_db)
    debris = Path(config.paths.images_dir) / ".tmp-drift_x-12345"
    debris.mkdir()
    old = time.time() - 10
    os.utime(debris, (old, old))
    for name in ("hdf5_watcher", "variability_analyzer"):
        with (
            hold_writer(db, name, services=(name,)) as writer,
            pytest.raises(StateError, match="does not cover the ms_processor"),
        ):
            cleanup_stale_temporaries(config, writer)
    assert debris.exists()
    with hold_writer(db, "ms_processor", services=("ms_processor",)) as writer:
        assert cleanup_stale_temporaries(config, writer) == [debris]


def test_hosts_of_single_services_coexist_and_refuse_a_second(config) -> None:
    """`run_services` of one service each; a second watcher and a stream refused.

    Only the host of the ms_processor cleans the data directories at start-up.
    """
    db = Path(config.paths.state_db)
    debris = Path(config.paths.images_dir) / ".tmp-drift_x-12345"
    debris.mkdir()
    old = time.time() - 10
    os.utime(debris, (old, old))

    async def watcher_alone() -> None:
        stop = asyncio.Event()
        with ThreadPoolExecutor(max_workers=1) as pool:
            host = asyncio.create_task(
                run_services_async(config, ("hdf5_watcher",), stop=stop, executor=pool)
            )
            for _ in range(200):
                await asyncio.sleep(0.05)
                if db.exists() and _held(db):
                    break
            await asyncio.sleep(0.5)
            stop.set()
            await host

    asyncio.run(watcher_alone())
    assert debris.exists(), "a watcher does not judge the processor's temporaries"

    async def scenario() -> list:
        stop = asyncio.Event()
        with ThreadPoolExecutor(max_workers=1) as pool:
            hosts = [
                asyncio.create_task(
                    run_services_async(config, (name,), stop=stop, executor=pool)
                )
                for name in SERVICE_NAMES
            ]
            try:
                for _ in range(200):
                    await asyncio.sleep(0.05)
                    if db.exists() and len(_held(db)) == len(SERVICE_NAMES):
                        break
                owners = _held(db)
                for name in SERVICE_NAMES:
                    assert owners[service_key(db, name)].endswith(f" {name}")
                with pytest.raises(
                    WriterBusyError, match=f"`hdf5_watcher` on host {HOST}, pid {PID}"
                ):
                    await run_services_async(
                        config, ("hdf5_watcher",), stop=stop, executor=pool
                    )
                with pytest.raises(WriterBusyError, match="`ms_processor` on host"):
                    await run_stream_async(config, stop=stop, executor=pool)
                assert not any(h.done() for h in hosts), "the running ones go on"
            finally:
                stop.set()
            return await asyncio.gather(*hosts)

    summaries = asyncio.run(scenario())
    assert [s.n_done + s.n_failed for s in summaries] == [0, 0, 0]
    assert _held(db) == {}, "each released its part at the stop"
    assert not debris.exists(), "the ms_processor's host cleaned up at start-up"


def test_processor_without_a_watcher_measures_the_disk_itself(config) -> None:
    """A processor-only host keeps intake (conversion) closed while the disk is full."""
    from dsa110_contimg.services._host import _guard_disk
    from dsa110_contimg.services._intake import IntakeGate
    from dsa110_contimg.state.jobs import get_service_state

    free = {"gb": 100.0}
    db = Path(config.paths.state_db)
    conn = open_db(db)

    async def scenario() -> list[bool]:
        gate = IntakeGate(
            conn,
            [Path(config.paths.ms_stage1_dir)],
            min_free_disk_gb=10.0,
            free_gb=lambda path: free["gb"],
        )
        gate.update(datetime.now(UTC))
        stop = asyncio.Event()
        task = asyncio.create_task(
            _guard_disk(gate, stop, 0.05, lambda: datetime.now(UTC))
        )
        seen = [gate.is_open]
        free["gb"] = 1.0  # the disk fills
        for _ in range(100):
            await asyncio.sleep(0.05)
            if not gate.is_open:
                break
        seen.append(gate.is_open)
        seen.append(bool(get_service_state(conn)["intake"]["paused"]))
        free["gb"] = 50.0  # space freed
        for _ in range(100):
            await asyncio.sleep(0.05)
            if gate.is_open:
                break
        seen.append(gate.is_open)
        stop.set()
        await task
        return seen

    try:
        assert asyncio.run(scenario()) == [True, False, True, True]
        assert get_service_state(conn)["intake"]["paused"] is False
    finally:
        conn.close()


def test_run_services_refuses_unknown_services(config) -> None:
    with pytest.raises(ValueError, match="unknown services \\['imager'\\]"):
        run_services(config, ("imager",), handle_signals=False)


def test_two_hosts_in_one_process_do_not_reclaim_each_others_jobs(config) -> None:
    """A running job of a live runner with this pid is not an orphan."""
    from dsa110_contimg.services._runner import JobRunner, owner_is_gone
    from dsa110_contimg.state.jobs import CONVERT_GROUP, JobSpec, claim_job, get_job

    db = Path(config.paths.state_db)
    conn_a, conn_b = open_db(db), open_db(db)
    try:
        a = JobRunner(conn_a, config.queue)
        b = JobRunner(conn_b, config.queue)
        job, _ = a.enqueue(JobSpec(CONVERT_GROUP, "g1", "2023-06-01T00:00:00", {}))

        async def scenario() -> str:
            stop_a, stop_b = asyncio.Event(), asyncio.Event()
            run_a = asyncio.create_task(a.run(stop_a, grace_s=0.0))
            await asyncio.sleep(0.05)
            claimed = claim_job(
                conn_a,
                worker=a.worker_id,
                now=datetime.now(UTC),
                lease_s=config.queue.lease_s,
            )
            assert claimed is not None and claimed.id == job.id
            run_b = asyncio.create_task(b.run(stop_b, grace_s=0.0))
            await asyncio.sleep(0.2)  # b's start-up reclaim has run
            state = get_job(conn_b, job.id).state
            stop_a.set()
            stop_b.set()
            await asyncio.gather(run_a, run_b)
            return state

        assert asyncio.run(scenario()) == "running", "b took a live runner's job"
        # once its runner has stopped, an owner with this pid is an earlier
        # incarnation: gone
        assert owner_is_gone(a.worker_id, me=b.worker_id)
    finally:
        conn_a.close()
        conn_b.close()


@pytest.mark.parametrize(
    "name", ["hdf5_watcher", "ms_processor", "variability_analyzer"]
)
def test_each_service_package_runs_itself_alone_on_the_host(name, monkeypatch) -> None:
    """``services.<name>.run`` hands exactly its own service to `run_services`."""
    import importlib

    from dsa110_contimg.services import _host

    calls = []

    def fake_run_services(config, services, **kwargs):
        calls.append((config, tuple(services), kwargs))
        return "summary"

    monkeypatch.setattr(_host, "run_services", fake_run_services)
    package = importlib.import_module(f"dsa110_contimg.services.{name}")
    import threading

    stop = threading.Event()
    assert package.run("cfg", stop_event=stop, incoming_dir=Path("/in")) == "summary"
    assert calls == [
        (
            "cfg",
            (name,),
            {"stop_event": stop, "incoming_dir": Path("/in"), "catalog_path": None},
        )
    ]
    assert package.run.__module__ == f"dsa110_contimg.services.{name}"
    assert f"a second {name} on it is refused" in package.run.__doc__
