"""A damaged light-curve store is found at start-up and repaired, never trusted.

The stream's start-up audit (`audit_lightcurve_store`) checks every Parquet
file of the store and its manifest, drops what is damaged, rebuilds the
manifest, runs and running sums from the epoch files, and requeues the
``update_variability`` job of every epoch the store lost; re-running that job
(what the variability lane does) re-reads the block's photometry table and
restores the epoch.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from dsa110_contimg.exceptions import StateError
from dsa110_contimg.lightcurves import SUM_FIELDS, LightcurveStore, repair_store
from dsa110_contimg.services._audit import audit_lightcurve_store
from dsa110_contimg.services.variability_analyzer import update_variability
from dsa110_contimg.state import open_db
from dsa110_contimg.state.jobs import (
    UPDATE_VARIABILITY,
    JobSpec,
    claim_job,
    complete_job,
    enqueue_job,
    find_job,
    list_jobs,
)
from dsa110_contimg.tables import PHOTOMETRY_COLUMNS, write_photometry_table
from dsa110_contimg.utils.config_loader import load_pipeline_config

N_BLOCKS = 4
N_SRC = 40
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _block_csv(base: Path, k: int) -> Path:
    """One block's photometry table: its mosaic's rows (the block's epoch)."""
    rng = np.random.default_rng(100 + k)
    row = dict.fromkeys(PHOTOMETRY_COLUMNS, 1.0)
    row.update(flags=0, freq_hz=1.4e9, image_kind="mosaic", pointing_dec_deg=16.3)
    rows = []
    for s in range(N_SRC):
        flux = (1.0 + s / 10.0) * rng.normal(1.0, 0.002)
        rows.append(
            {
                **row,
                "source_name": f"S{s:03d}",
                "flux_jy": flux,
                "peak_jy": flux,
                "flux_err_jy": 0.01 * flux,
                "snr": 100.0,
                "upper_limit_jy": float("nan"),
                "mjd": 60000.0 + 0.01 * k,
                "image_path": f"{base}/mosaics/block_{k}-mosaic.fits",
                "image_id": f"block_{k}",
            }
        )
    table = Table(
        rows=[[r[c] for c in PHOTOMETRY_COLUMNS] for r in rows],
        names=PHOTOMETRY_COLUMNS,
    )
    return write_photometry_table([table], base / f"photometry_block_{k}.csv")


def _run_pending(conn, cfg, now: datetime) -> int:
    """Run the pending ``update_variability`` jobs (the variability lane)."""
    n = 0
    while job := claim_job(
        conn, worker="w", now=now, lease_s=60, kinds=[UPDATE_VARIABILITY]
    ):
        result = update_variability(
            str(job.payload["photometry_path"]), block_id=job.key, cfg=cfg
        )
        complete_job(conn, job.id, worker="w", now=now, result=result)
        n += 1
    return n


@pytest.fixture
def ingested(state_target, tmp_path: Path):
    """Four blocks ingested by finished jobs: (conn, variability cfg, store root)."""
    config = load_pipeline_config(
        environment="testing",
        overrides={"variability.store_dir": str(tmp_path / "lc")},
        env={},
    )
    cfg = config.variability
    conn = open_db(state_target)
    for k in range(N_BLOCKS):
        path = _block_csv(tmp_path, k)
        spec = JobSpec(
            UPDATE_VARIABILITY,
            f"block_{k}",
            (T0 + timedelta(minutes=k)).isoformat(),
            {"block_id": f"block_{k}", "photometry_path": str(path)},
        )
        enqueue_job(conn, spec, now=T0)
        assert _run_pending(conn, cfg, T0) == 1
    yield conn, cfg, cfg.store_dir
    conn.close()


def _epoch_id(k: int) -> str:
    return f"block_{k}_dec+16.30"


def _contents(root: Path) -> dict[str, dict[str, np.ndarray]]:
    store = LightcurveStore(root)
    out = {}
    for epoch_id in store.epochs()["epoch_id"]:
        table = store.epoch_table(str(epoch_id))
        out[str(epoch_id)] = {c: np.asarray(table[c]) for c in table.colnames}
    return out


def _sums(root: Path) -> dict[str, tuple[float, ...]]:
    sums = LightcurveStore(root).summary()
    return {
        str(name): tuple(float(getattr(sums, f)[i]) for f in SUM_FIELDS)
        for i, name in enumerate(sums.source_name)
    }


def _assert_same(got: dict, want: dict, columns: tuple[str, ...] | None = None):
    assert got.keys() == want.keys()
    for epoch_id, cols in want.items():
        for name in columns or cols:
            np.testing.assert_array_equal(got[epoch_id][name], cols[name], epoch_id)


def _assert_same_sums(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for name, values in want.items():
        assert got[name] == pytest.approx(values, rel=1e-9, abs=1e-12), name


def _file(root: Path, k: int) -> Path:
    (path,) = root.glob(f"epochs/date=*/{_epoch_id(k)}.parquet")
    return path


MEASURED = ("source_name", "mjd", "flux_jy", "flux_err_jy", "image_id", "epoch_id")


@pytest.mark.parametrize("cut", ["empty", "half"])
def test_truncated_newest_epoch_is_detected_and_restored_identically(
    ingested, cut
) -> None:
    conn, cfg, root = ingested
    want, want_sums = _contents(root), _sums(root)
    path = _file(root, N_BLOCKS - 1)
    data = path.read_bytes()
    path.write_bytes(b"" if cut == "empty" else data[: len(data) // 2])
    with pytest.raises(StateError, match="unreadable"):  # never silently trusted
        LightcurveStore(root).epoch_table(_epoch_id(N_BLOCKS - 1))

    (redone,) = audit_lightcurve_store(conn, root, now=T0 + timedelta(hours=1))
    assert redone[0] == f"block_{N_BLOCKS - 1}"
    assert _epoch_id(N_BLOCKS - 1) in redone[1]
    assert ("empty" if cut == "empty" else "truncated") in redone[1]
    assert find_job(conn, UPDATE_VARIABILITY, redone[0]).state == "pending"
    assert not LightcurveStore(root).has_epoch(_epoch_id(N_BLOCKS - 1))

    assert _run_pending(conn, cfg, T0 + timedelta(hours=1)) == 1
    # the newest epoch was calibrated against the same others: bit for bit
    _assert_same(_contents(root), want)
    _assert_same_sums(_sums(root), want_sums)
    assert LightcurveStore(root).n_rows() == N_BLOCKS * N_SRC  # no duplicate
    # and once repaired, a second audit finds nothing
    assert audit_lightcurve_store(conn, root, now=T0 + timedelta(hours=2)) == []


def test_truncated_older_epoch_is_restored_with_its_measurements(ingested) -> None:
    conn, cfg, root = ingested
    want = _contents(root)
    _file(root, 1).write_bytes(b"")
    (redone,) = audit_lightcurve_store(conn, root, now=T0 + timedelta(hours=1))
    assert redone[0] == "block_1"
    assert _run_pending(conn, cfg, T0 + timedelta(hours=1)) == 1
    # same epochs, rows and measured fluxes (its flux scale is recomputed
    # against the other epochs, all of which now exist)
    _assert_same(_contents(root), want, MEASURED)
    assert LightcurveStore(root).n_rows() == N_BLOCKS * N_SRC


def test_truncated_manifest_is_rebuilt_from_the_epoch_files(ingested) -> None:
    conn, _, root = ingested
    want, want_sums = _contents(root), _sums(root)
    (root / "_manifest.json").write_bytes(b"")
    with pytest.raises(StateError, match="manifest"):
        LightcurveStore(root)
    assert audit_lightcurve_store(conn, root, now=T0 + timedelta(hours=1)) == []
    _assert_same(_contents(root), want)  # every epoch back, as it was
    _assert_same_sums(_sums(root), want_sums)
    assert list_jobs(conn, states=["pending"]) == []


def test_truncated_manifest_and_epoch_file_together(ingested) -> None:
    conn, cfg, root = ingested
    want = _contents(root)
    (root / "_manifest.json").write_bytes(b'{"epochs": {"blo')  # cut mid-write
    _file(root, 2).write_bytes(b"")
    repair = repair_store(root)
    assert repair.manifest_rebuilt and "not valid JSON" in repair.manifest_rebuilt
    assert set(repair.dropped_epochs) == {_epoch_id(2)}
    assert repair.epochs == {_epoch_id(k) for k in (0, 1, 3)}
    # the database knows block_2's epoch was stored: its ingest is redone
    (redone,) = audit_lightcurve_store(conn, root, now=T0 + timedelta(hours=1))
    assert redone[0] == "block_2" and "not in the store" in redone[1]
    assert _run_pending(conn, cfg, T0 + timedelta(hours=1)) == 1
    _assert_same(_contents(root), want, MEASURED)


def test_truncated_summary_is_rebuilt(ingested) -> None:
    conn, _, root = ingested
    want, want_sums = _contents(root), _sums(root)
    (root / "_summary.parquet").write_bytes(b"PAR1")
    repair = repair_store(root)
    assert repair.sums_rebuilt and "truncated" in repair.sums_rebuilt
    assert not repair.dropped_epochs
    _assert_same(_contents(root), want)
    _assert_same_sums(_sums(root), want_sums)


def test_damaged_run_is_dropped_and_lightcurves_unchanged(ingested) -> None:
    conn, _, root = ingested
    store = LightcurveStore(root)
    store.compact()
    want = {s: store.lightcurve(s) for s in ("S000", "S017")}
    (run_file,) = root.glob("by_source/*/*.parquet")
    run_file.write_bytes(run_file.read_bytes()[:100])
    repair = repair_store(root)
    assert list(repair.dropped_runs) == [run_file.parent.name]
    assert not repair.dropped_epochs
    assert not (root / "by_source" / run_file.parent.name).exists()
    again = LightcurveStore(root)
    for source, lc in want.items():
        got = again.lightcurve(source)
        np.testing.assert_array_equal(got["flux_corr_jy"], lc["flux_corr_jy"])
        np.testing.assert_array_equal(got["mjd"], lc["mjd"])
    assert audit_lightcurve_store(conn, root, now=T0 + timedelta(hours=1)) == []


def test_stale_version_and_duplicate_copy_are_not_trusted(ingested, tmp_path) -> None:
    conn, cfg, root = ingested
    want = _contents(root)
    # an epoch file that is another version than the manifest's (its token)
    keep = tmp_path / "old.parquet"
    shutil.copy2(_file(root, 0), keep)
    update_variability(
        str(tmp_path / "photometry_block_0.csv"), block_id="block_0", cfg=cfg
    )  # re-ingested: new token
    shutil.copy2(keep, _file(root, 0))
    repair = repair_store(root)
    assert "another version" in repair.dropped_epochs[_epoch_id(0)]
    (redone,) = audit_lightcurve_store(conn, root, now=T0 + timedelta(hours=1))
    assert redone[0] == "block_0"
    _run_pending(conn, cfg, T0 + timedelta(hours=1))
    # a second copy of an epoch in another date folder, and no manifest: one kept
    copy = root / "epochs" / "date=1999-01-01" / _file(root, 3).name
    copy.parent.mkdir()
    shutil.copy2(_file(root, 3), copy)
    (root / "_manifest.json").unlink()
    repair_store(root)
    assert len(list(root.glob(f"epochs/date=*/{_epoch_id(3)}.parquet"))) == 1
    _assert_same(_contents(root), want, MEASURED)
    assert LightcurveStore(root).n_rows() == N_BLOCKS * N_SRC


def test_intact_store_is_left_alone(ingested) -> None:
    conn, _, root = ingested
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    repair = repair_store(root)
    assert not repair.changed and len(repair.epochs) == N_BLOCKS
    assert audit_lightcurve_store(conn, root, now=T0 + timedelta(hours=1)) == []
    after = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    assert {p: t for p, t in after.items() if p.name != "_writer.lock"} == {
        p: t for p, t in before.items() if p.name != "_writer.lock"
    }
    assert repair_store(root.parent / "no-store").epochs == set()
