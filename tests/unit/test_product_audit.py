"""The start-up audit finds damaged products cheaply and redoes their blocks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from astropy.io import fits

from dsa110_contimg.services._audit import audit_recent_products, product_problem
from dsa110_contimg.state import open_db, record_product
from dsa110_contimg.state.jobs import (
    PROCESS_BLOCK,
    JobSpec,
    claim_job,
    complete_job,
    enqueue_job,
    find_job,
)


def _fits(path: Path) -> Path:
    fits.PrimaryHDU(np.zeros((300, 300), np.float32)).writeto(path)
    return path


def test_product_problem(tmp_path: Path) -> None:
    good = _fits(tmp_path / "a-image.fits")
    assert product_problem(good) is None
    cut = _fits(tmp_path / "b-image.fits")
    with open(cut, "r+b") as fh:
        fh.truncate(cut.stat().st_size - 5000)
    assert "truncated" in product_problem(cut)
    empty = tmp_path / "c.png"
    empty.write_bytes(b"")
    assert product_problem(empty) == "empty (0 bytes)"
    assert product_problem(tmp_path / "gone.fits") == "missing"
    table = tmp_path / "photometry_block_x.csv"
    table.write_text("source_name,flux_jy\nA,1\n")
    assert product_problem(table) is None
    table.write_text("A,1\n")
    assert product_problem(table) == "no header line"


def test_audit_requeues_the_block_of_a_damaged_product(
    state_target, tmp_path: Path
) -> None:
    conn = open_db(state_target)
    now = datetime.now(UTC)
    for block in ("block_a", "block_b"):
        enqueue_job(
            conn,
            JobSpec(PROCESS_BLOCK, block, now.isoformat(), {"ms": []}),
            now=now,
        )
        job = claim_job(conn, worker="w", now=now, lease_s=60)
        complete_job(conn, job.id, worker="w", now=now)
        record_product(
            conn, block_id=block, kind="image", path=_fits(tmp_path / f"{block}.fits")
        )
    (tmp_path / "block_b.fits").write_bytes(b"")
    redone = audit_recent_products(conn, now=now + timedelta(minutes=1))
    assert [b for b, _ in redone] == ["block_b"]
    assert find_job(conn, PROCESS_BLOCK, "block_b").state == "pending"
    assert find_job(conn, PROCESS_BLOCK, "block_a").state == "done"
    # outside the window nothing is audited
    assert audit_recent_products(conn, now=now + timedelta(days=3)) == []
    conn.close()
