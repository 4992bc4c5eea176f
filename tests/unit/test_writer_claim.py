"""One writer per state database, across hosts (issue 15, item 19).

The writer claim is a `state.claims` lease on ``writer:<state_db>``: a second
writer is refused with the holder named, a killed holder's claim is taken
over (at once on this host, after its expiry from another host), and the
start-up clean-up removes temporaries only while the claim is held.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest

from dsa110_contimg.pipeline.batch import run_batch, writer_of
from dsa110_contimg.state import open_db
from dsa110_contimg.state.claims import ClaimLostError
from dsa110_contimg.state.writer import (
    WriterBusyError,
    cleanup_stale_temporaries,
    hold_writer,
    writer_key,
)
from dsa110_contimg.testing.layout import path_overrides
from dsa110_contimg.utils.config_loader import load_pipeline_config
from dsa110_contimg.utils.storage import temporary_path

HOST = socket.gethostname()


@pytest.fixture
def config(tmp_path: Path):
    overrides = path_overrides(tmp_path)
    cfg = load_pipeline_config(environment="testing", overrides=overrides, env={})
    for d in ("incoming", "ms", "images", "products", "mosaics", "cal"):
        (tmp_path / d).mkdir()
    return cfg


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _foreign_claim(db: Path, *, expires_in_s: float, pid: int = 4242) -> str:
    """Write the writer claim of a `stream` on another host (what it would leave)."""
    owner = f"otherhost:{pid}:abcd1234 stream"
    with closing(open_db(db)) as conn:
        conn.execute(
            "INSERT INTO claims (key, owner, token, expires_at, "
            "acquired_at, updated_at) VALUES (?, ?, 7, ?, "
            "'2026-12-01T10:00:00Z', '2026-12-01T10:00:00Z') ON CONFLICT (key) "
            "DO UPDATE SET owner = excluded.owner, token = excluded.token, "
            "expires_at = excluded.expires_at, acquired_at = excluded.acquired_at",
            (writer_key(db), owner, time.time() + expires_in_s),
        )
        conn.commit()
    return owner


def test_second_writer_is_refused_with_the_holder_named(
    state_target, tmp_path: Path
) -> None:
    db = state_target
    with hold_writer(db, "stream", ttl_s=30):
        with pytest.raises(WriterBusyError) as excinfo, hold_writer(db, "process"):
            pass
        text = str(excinfo.value)
        assert f"`stream` on host {HOST}, pid {os.getpid()}, since 20" in text
        assert str(db) in text and "--output-dir" in text
    with hold_writer(db, "process") as writer:  # released: the next one proceeds
        assert writer.command == "process"
    other = tmp_path / "other.sqlite3"  # another database is another writer
    with hold_writer(db, "stream"), hold_writer(other, "stream"):
        pass


def test_other_host_holder_refuses_until_its_claim_expires(
    state_target, tmp_path: Path
) -> None:
    db = state_target
    _foreign_claim(db, expires_in_s=1.5, pid=os.getpid())  # a pid alive here too
    with pytest.raises(WriterBusyError) as excinfo, hold_writer(db, "process"):
        pass
    text = str(excinfo.value)
    assert "`stream` on host otherhost, pid" in text
    assert "since 2026-12-01T10:00:00Z" in text
    time.sleep(1.6)  # its host died: nothing renews it
    with hold_writer(db, "process") as writer:
        assert writer.claim.token > 7


_HOLD = """
import sys, time
from dsa110_contimg.state.writer import hold_writer
with hold_writer(sys.argv[1], "stream", ttl_s=60):
    print("held", flush=True)
    time.sleep(600)
"""


def test_killed_holder_on_this_host_is_taken_over_at_once(
    state_target, tmp_path: Path
) -> None:
    db = state_target
    open_db(db).close()
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(db)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "held"
        with (
            pytest.raises(WriterBusyError, match=f"pid {proc.pid}"),
            hold_writer(db, "process"),
        ):
            pass
        os.kill(proc.pid, signal.SIGKILL)
        stat = Path(f"/proc/{proc.pid}/stat")
        deadline = time.monotonic() + 10
        while stat.exists() and stat.read_text().split()[2] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        t0 = time.monotonic()
        with hold_writer(db, "process"):  # ttl 60 s, yet no wait: it is dead
            pass  # (a zombie, not reaped yet, is dead too)
        assert time.monotonic() - t0 < 5
    finally:
        proc.kill()
        proc.wait(10)
        proc.stdout.close()


def test_lost_writer_claim_is_reported_at_once(state_target, tmp_path: Path) -> None:
    db = state_target
    lost = threading.Event()
    with (
        pytest.raises(ClaimLostError),
        hold_writer(db, "stream", ttl_s=0.6, on_lost=lambda err: lost.set()),
    ):
        with closing(open_db(db)) as conn:
            conn.execute("UPDATE claims SET owner = 'h:1:x thief', token = 99")
            conn.commit()
        assert lost.wait(5), "the renewing thread must report the loss"


def _debris(config, pid: int) -> dict[str, Path]:
    paths = config.paths
    images, ms = Path(paths.images_dir), Path(paths.ms_stage1_dir)
    made = {
        "unique": temporary_path(Path(paths.mosaics_dir) / "block_x-mosaic.fits"),
        "ms": ms / f".drift_x.ms.tmp-{pid}",
        "workdir": images / f".tmp-drift_x-{pid}",
        "caldir": Path(paths.cal_tables_dir) / f".tmp-block_x_G-{pid}",
        "untagged": Path(paths.products_dir) / ".photometry.csv.tmp",
    }
    made["unique"] = made["unique"].with_name(
        made["unique"].name.replace(f"tmp-{os.getpid()}-", f"tmp-{pid}-")
    )
    for name, path in made.items():
        if name in {"ms", "workdir", "caldir"}:
            path.mkdir()
            (path / "table.dat").write_bytes(b"x")
        else:
            path.write_bytes(b"x")
    return made


def test_cleanup_never_deletes_a_live_writers_temporaries(config) -> None:
    """A writer on another host is live: this host must not touch its files.

    Before, the stream's start-up took a host-local lock and deleted every
    temporary whose pid was not running *here*, i.e. the other host's.
    """
    db = Path(config.paths.state_db)
    debris = _debris(config, _dead_pid())  # dead here; alive on its own host
    keep = [
        Path(config.paths.ms_stage1_dir) / ".drift_y.ms.replaced-12",
        Path(config.paths.images_dir) / "drift_x-image.fits",
    ]
    for path in keep:
        path.write_bytes(b"x")
    _foreign_claim(db, expires_in_s=60)
    with pytest.raises(WriterBusyError, match="otherhost"):
        run_batch(config, Path(config.paths.incoming_dir))
    assert all(p.exists() for p in debris.values()), "a live writer's files"

    # the other host's writer is gone (its claim expired): now they are debris
    _foreign_claim(db, expires_in_s=-1)
    with writer_of(config, "process"):
        assert not any(p.exists() for p in debris.values())
        assert all(p.exists() for p in keep)


def test_cleanup_needs_the_claim_and_spares_new_temporaries(config) -> None:
    db = Path(config.paths.state_db)
    with hold_writer(db, "stream", ttl_s=30) as writer:
        cutoff = time.time()
        debris = _debris(config, _dead_pid())
        old = cutoff - 10
        for path in debris.values():
            os.utime(path, (old, old))
        fresh = temporary_path(Path(config.paths.images_dir) / "drift_z-image.fits")
        fresh.write_bytes(b"being written")
        removed = cleanup_stale_temporaries(config, writer, before=cutoff)
        assert sorted(removed) == sorted(debris.values())
        assert fresh.exists(), "written after the clean-up began: not debris"
        # a claim that changed hands is refused before anything is removed
        again = _debris(config, _dead_pid())
        with closing(open_db(db)) as conn:
            conn.execute("UPDATE claims SET owner = 'h:1:x thief', token = 99")
            conn.commit()
        with pytest.raises(ClaimLostError):
            cleanup_stale_temporaries(config, writer)
        assert all(p.exists() for p in again.values())
        with closing(open_db(db)) as conn:  # give it back so the exit is clean
            conn.execute(
                "UPDATE claims SET owner = ?, token = ?",
                (writer.claim.owner, writer.claim.token),
            )
            conn.commit()


def test_stream_stops_when_its_writer_claim_is_lost(config) -> None:
    """A stream whose claim was taken (it stalled past its lease) stops writing."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from dsa110_contimg.services import run_stream_async

    config = config.model_copy(
        update={
            "queue": config.queue.model_copy(
                update={"lease_s": 0.9, "heartbeat_interval_s": 0.2}
            )
        }
    )
    db = Path(config.paths.state_db)

    async def scenario() -> None:
        stop = asyncio.Event()
        with ThreadPoolExecutor(max_workers=1) as pool:
            task = asyncio.create_task(
                run_stream_async(
                    config, stop=stop, executor=pool, services=("hdf5_watcher",)
                )
            )
            for _ in range(100):
                await asyncio.sleep(0.1)
                if db.exists():
                    with closing(open_db(db)) as conn:
                        if conn.execute("SELECT owner FROM claims").fetchone():
                            break
            with closing(open_db(db)) as conn:
                conn.execute("UPDATE claims SET owner = 'h:1:x process', token = 99")
                conn.commit()
            try:  # ends only if the lost claim stopped it (stop is never set)
                await asyncio.wait_for(task, 20)
            finally:
                stop.set()

    with pytest.raises(ClaimLostError, match="now held by h:1:x process"):
        asyncio.run(scenario())
