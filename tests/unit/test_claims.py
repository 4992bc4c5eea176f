"""Claims on products: one owner at a time, across processes (issue 15, item 10)."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from dsa110_contimg.state import open_db
from dsa110_contimg.state.claims import (
    ClaimLostError,
    ClaimTimeoutError,
    acquire_claim,
    hold_claims,
    release_claim,
    renew_claim,
)


@pytest.fixture
def db_path(state_target):
    open_db(state_target).close()
    return state_target


def test_one_owner_at_a_time_and_tokens_grow(db_path: Path) -> None:
    conn = open_db(db_path)
    a = acquire_claim(conn, "ms:x", owner="a", ttl_s=60, now=1000.0)
    assert a is not None and a.token == 1
    assert acquire_claim(conn, "ms:x", owner="b", ttl_s=60, now=1010.0) is None
    assert acquire_claim(conn, "ms:y", owner="b", ttl_s=60, now=1010.0) is not None
    # expired: b takes over with a larger token, and a learns it lost the claim
    b = acquire_claim(conn, "ms:x", owner="b", ttl_s=60, now=1061.0)
    assert b is not None and b.token == 2
    with pytest.raises(ClaimLostError, match="now held by b"):
        renew_claim(conn, a, ttl_s=60, now=1062.0)
    assert release_claim(conn, a) is False, "a stale holder cannot release"
    assert release_claim(conn, b) is True
    c = acquire_claim(conn, "ms:x", owner="c", ttl_s=60, now=1063.0)
    assert c is not None and c.token == 3, "tokens never go back after release"
    conn.close()


def _hold_and_log(db_path: str, log_path: str, name: str) -> None:
    with hold_claims(db_path, ["ms:shared"], ttl_s=5, poll_s=0.05):
        start = time.time()
        time.sleep(0.6)
        end = time.time()
    with open(log_path, "a") as fh:
        fh.write(json.dumps([name, start, end]) + "\n")


def test_two_processes_never_hold_one_ms_together(db_path: Path, tmp_path: Path):
    log_path = tmp_path / "intervals.jsonl"
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_hold_and_log, args=(str(db_path), str(log_path), n))
        for n in ("p1", "p2", "p3")
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    spans = sorted(json.loads(line)[1:] for line in log_path.read_text().splitlines())
    assert len(spans) == 3
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert start >= end, f"overlapping holders: {spans}"


_HOLD_FOREVER = """
import sys, time
from pathlib import Path
from dsa110_contimg.state.claims import hold_claims
with hold_claims(sys.argv[1], ["ms:shared"], ttl_s=1.0):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_killed_holder_expires_and_the_work_moves_on(db_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD_FOREVER, str(db_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "held"
        with (  # renewed while the holder lives
            pytest.raises(ClaimTimeoutError),
            hold_claims(db_path, ["ms:shared"], ttl_s=1.0, wait_s=1.5),
        ):
            pass
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        t0 = time.monotonic()
        with hold_claims(db_path, ["ms:shared"], ttl_s=1.0, wait_s=10) as claims:
            assert claims[0].token >= 2
        assert time.monotonic() - t0 < 5
    finally:
        proc.kill()
        proc.wait(10)
        proc.stdout.close()


def test_a_claim_taken_during_the_work_is_reported(db_path: Path) -> None:
    with pytest.raises(ClaimLostError), hold_claims(db_path, ["ms:x"], ttl_s=60):
        conn = open_db(db_path)
        conn.execute("UPDATE claims SET owner = 'thief', token = token + 1")
        conn.commit()
        conn.close()


def test_overlapping_key_sets_do_not_deadlock(db_path: Path) -> None:
    # sorted acquisition: {a, b} and {b, a} cannot each hold one and wait
    with hold_claims(db_path, ["ms:b", "ms:a"], ttl_s=5) as held:
        assert [c.key for c in held] == ["ms:a", "ms:b"]
    with hold_claims(db_path, ["ms:a", "ms:b"], ttl_s=5):
        pass


def test_temporary_names_are_unique_and_tagged(tmp_path: Path) -> None:
    from dsa110_contimg.utils.storage import (
        publish,
        temporary_path,
        temporary_writer_pid,
    )

    final = tmp_path / "x-image.png"
    a, b = temporary_path(final), temporary_path(final)
    assert a != b and a.suffix == ".png" and a.name.startswith(".x-image.png.tmp-")
    assert temporary_writer_pid(a) == os.getpid()
    assert temporary_writer_pid(final) is None
    a.write_bytes(b"new")
    final.write_bytes(b"old")
    publish(a, final)
    assert final.read_bytes() == b"new" and not a.exists()


def test_a_killed_holder_on_this_host_is_taken_over_at_once(db_path: Path) -> None:
    """A pool worker stopped mid-image must not block its MS for the whole TTL.

    The restart after a SIGTERM past the grace period waited 120 s (the MS
    claim's TTL) for the claims of the workers it had stopped.
    """
    script = _HOLD_FOREVER.replace("ttl_s=1.0", "ttl_s=120.0")
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(db_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "held"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        t0 = time.monotonic()
        with hold_claims(db_path, ["ms:shared"], ttl_s=120.0, wait_s=10):
            pass
        assert time.monotonic() - t0 < 5
    finally:
        proc.kill()
        proc.wait(10)
        proc.stdout.close()


def test_an_expired_owner_cannot_publish_over_its_successor(db_path, tmp_path: Path):
    """Fencing across hosts: a lease that expired refuses the late publish."""
    from dsa110_contimg.state.claims import publish_fenced

    final = tmp_path / "x-image.fits"
    late, fresh = tmp_path / ".x-image.fits.tmp-a", tmp_path / ".x-image.fits.tmp-b"
    late.write_bytes(b"from a")
    fresh.write_bytes(b"from b")
    with closing(open_db(db_path)) as conn_a, closing(open_db(db_path)) as conn_b:
        a = acquire_claim(conn_a, "ms:x", owner="hostA:1:t", ttl_s=10, now=1000.0)
        assert a is not None
        # a stalls past its lease; b (another host) takes the MS over
        b = acquire_claim(conn_b, "ms:x", owner="hostB:2:t", ttl_s=60, now=1011.0)
        assert b is not None and b.token == a.token + 1
        publish_fenced(conn_b, [b], fresh, final, now=1012.0)
        with pytest.raises(ClaimLostError, match="now held by hostB:2:t"):
            publish_fenced(conn_a, [a], late, final, now=1013.0)
        assert not late.exists(), "the stale owner's output is discarded"
        assert final.read_bytes() == b"from b"
        host = conn_b.execute("SELECT host FROM claims WHERE key = 'ms:x'").fetchone()
        assert host[0] == "hostB"
        # a live lease publishes; an expired one (nobody took it) does not
        c = acquire_claim(conn_b, "ms:y", owner="hostB:2:t", ttl_s=5, now=1000.0)
        late.write_bytes(b"late")
        with pytest.raises(ClaimLostError, match="expired"):
            publish_fenced(conn_b, [c], late, final, now=1006.0)
        assert final.read_bytes() == b"from b" and not late.exists()


def test_products_published_under_a_lost_claim_are_discarded(db_path, tmp_path: Path):
    """hold_claims fences every publish (storage.publish, the imager's renames)."""
    from dsa110_contimg.state.claims import hold_claims
    from dsa110_contimg.tools._imager_run import publish_products
    from dsa110_contimg.utils.storage import publish

    final = tmp_path / "x-pb.fits"
    image = tmp_path / "x-image.fits"
    with (
        pytest.raises(ClaimLostError),  # and hold_claims says so at the end
        hold_claims(db_path, ["ms:x"], ttl_s=60, owner="hostA:1:t") as held,
    ):
        ok = tmp_path / ".ok.tmp"
        ok.write_bytes(b"first")
        publish(ok, final)  # held: published
        assert final.read_bytes() == b"first"
        with hold_claims(db_path, ["block:b"], ttl_s=60, owner="hostA:1:t"):
            # another host takes the MS over (its lease was stolen, say by expiry)
            with closing(open_db(db_path)) as other:
                other.execute(
                    "UPDATE claims SET owner = 'hostB:2:t', token = token + 1 "
                    "WHERE key = ?",
                    (held[0].key,),
                )
                other.commit()
            late = tmp_path / ".late.tmp"
            late.write_bytes(b"late")
            with pytest.raises(ClaimLostError, match="now held by hostB:2:t"):
                publish(late, final)  # the inner holder checks the outer claim too
            assert not late.exists() and final.read_bytes() == b"first"
            written = tmp_path / ".img.tmp"
            written.write_bytes(b"img")
            with pytest.raises(ClaimLostError):
                publish_products({"image": (written, image)})
            assert not image.exists() and not written.exists()
    outside = tmp_path / ".outside.tmp"
    outside.write_bytes(b"free")
    publish(outside, final)  # no claim held here: no fence
    assert final.read_bytes() == b"free"


def _table(path: Path, text: str) -> Path:
    """A stand-in CASA table: a directory with a data file."""
    path.mkdir()
    (path / "table.dat").write_text(text)
    return path


def test_calibration_tables_of_a_lost_claim_are_not_published_or_registered(
    db_path, tmp_path: Path
):
    """The calibration stage's table renames and registry rows are fenced."""
    from dsa110_contimg.calibration._solve import publish_tables
    from dsa110_contimg.state.calibration import open_solution_registry

    cal = tmp_path / "cal"
    cal.mkdir()
    final_b, final_g = cal / "g_3C286.B", cal / "g_3C286.G"
    _table(final_b, "older B")  # a table from an earlier solve is replaced whole
    solution = {
        "calibrator": "3C286",
        "group_id": "2023-06-01T12:00:00",
        "ms_path": Path("/data/ms/x.ms"),
        "tables": [final_b, final_g],
        "refant": "24",
        "dec_strip_deg": 30.5,
        "transit_mjd": 60000.5,
        "validity_hours": 6.0,
        "quality": {"bandpass_flagged_fraction": 0.02},
    }
    with (
        hold_claims(db_path, ["ms:x"], ttl_s=60, owner="hostA:1:t"),
        open_solution_registry(db_path) as registry,
    ):
        publish_tables(
            [
                (_table(tmp_path / ".b-a", "B of A"), final_b),
                (_table(tmp_path / ".g-a", "G of A"), final_g),
            ]
        )
        first = registry.register(**solution)
    assert (final_b / "table.dat").read_text() == "B of A"
    assert sorted(p.name for p in cal.iterdir()) == ["g_3C286.B", "g_3C286.G"]
    with (
        pytest.raises(ClaimLostError),  # and hold_claims says so at the end
        hold_claims(db_path, ["ms:x"], ttl_s=60, owner="hostC:3:t") as held,
        open_solution_registry(db_path) as registry,
    ):
        # C stalls; its lease is taken over by B, which solves and publishes
        with closing(open_db(db_path)) as other:
            other.execute(
                "UPDATE claims SET owner = 'hostB:2:t', token = token + 1 "
                "WHERE key = ?",
                (held[0].key,),
            )
            other.commit()
        successor_b = _table(tmp_path / ".b-b", "B of B")
        os.rename(final_b, tmp_path / "aside")
        os.rename(successor_b, final_b)  # B's own (fenced) publish, done
        late_b, late_g = _table(cal / ".b-c", "B of C"), _table(cal / ".g-c", "G of C")
        with pytest.raises(ClaimLostError, match="now held by hostB:2:t"):
            publish_tables([(late_b, final_b), (late_g, final_g)])
        assert not late_b.exists(), "the stale worker's table is deleted"
        assert (final_b / "table.dat").read_text() == "B of B"  # B's untouched
        assert (final_g / "table.dat").read_text() == "G of A"
        with pytest.raises(ClaimLostError):
            registry.register(**{**solution, "refant": "99", "transit_mjd": 60000.6})
        kept = registry.find(calibrator="3C286", group_id="2023-06-01T12:00:00")
        assert kept == first  # not C's row
        with pytest.raises(ClaimLostError):
            registry.record_application(ms_path=Path("/data/ms/x.ms"), solution_id=1)
    assert not late_g.exists()  # the other table of the refused publish: removed
    # outside any claim: a plain (unfenced) directory replacement
    publish_tables([(_table(tmp_path / ".b-free", "free B"), final_b)])
    assert (final_b / "table.dat").read_text() == "free B"
    assert sorted(p.name for p in cal.iterdir()) == ["g_3C286.B", "g_3C286.G"]
