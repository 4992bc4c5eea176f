"""Tests of the Parquet light-curve store: layout, atomic replacement, queries."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from dsa110_contimg.exceptions import DataQualityWarning, InputDataError
from dsa110_contimg.lightcurves import STORE_COLUMNS, LightcurveStore

N_SRC = 300
NAMES = np.array([f"S{k:04d}" for k in range(N_SRC)])


def _epoch(k: int, rng: np.random.Generator, names: np.ndarray = NAMES) -> Table:
    n = names.size
    return Table(
        {
            "source_name": names,
            "mjd": np.full(n, 60000.0 + k),
            "flux_jy": rng.normal(1.0, 0.01, n),
            "flux_err_jy": np.full(n, 0.01),
            "flags": np.zeros(n, dtype=np.int32),
            "image_path": np.full(n, f"mosaic_{k:03d}.fits"),
            "image_kind": np.full(n, "mosaic"),
        }
    )


@pytest.fixture
def filled(tmp_path: Path) -> tuple[LightcurveStore, list[Table]]:
    store = LightcurveStore(tmp_path / "lc")
    rng = np.random.default_rng(1)
    tables = [_epoch(k, rng) for k in range(12)]
    for k, table in enumerate(tables):
        assert store.ingest_epoch(f"E{k:03d}", table) == N_SRC
    return store, tables


def test_layout_and_counts(filled) -> None:
    store, tables = filled
    files = sorted(p.relative_to(store.root) for p in store.root.rglob("*.parquet"))
    assert Path("epochs/date=2023-02-25/E000.parquet") in files
    assert store.n_rows() == 12 * N_SRC
    epochs = store.epochs()
    assert list(epochs["epoch_id"]) == [f"E{k:03d}" for k in range(12)]
    assert set(epochs["date"]) == {f"2023-02-{d}" for d in range(25, 29)} | {
        f"2023-03-{d:02d}" for d in range(1, 9)
    }
    lc = store.lightcurve("S0007")
    assert lc.colnames == list(STORE_COLUMNS)
    assert len(lc) == 12
    np.testing.assert_array_equal(lc["mjd"], 60000.0 + np.arange(12))
    np.testing.assert_array_equal(lc["flux_jy"], [t["flux_jy"][7] for t in tables])
    # Without calibration columns the scale is the identity.
    np.testing.assert_array_equal(lc["flux_corr_jy"], lc["flux_jy"])
    assert np.all(lc["scale"] == 1.0)
    assert len(store.lightcurve("no-such-source")) == 0
    counted = store.sql("SELECT count(*) AS n FROM measurements")
    assert int(counted["n"][0]) == 12 * N_SRC


def test_reprocessing_replaces_rows(filled) -> None:
    store, _ = filled
    new = _epoch(3, np.random.default_rng(99))
    new["flux_jy"] = 2.0
    with pytest.raises(InputDataError, match="already in the light-curve store"):
        store.ingest_epoch("E003", new)
    assert store.ingest_epoch("E003", new, replace=True) == N_SRC
    assert store.n_rows() == 12 * N_SRC
    lc = store.lightcurve("S0001")
    assert len(lc) == 12
    assert lc["flux_jy"][3] == 2.0
    # A different epoch_id holding the same image would duplicate measurements.
    with pytest.raises(InputDataError, match="already stored as epoch E003"):
        store.ingest_epoch("E999", new)
    assert store.n_rows() == 12 * N_SRC
    assert not list(store.root.rglob(".*tmp*"))


def test_running_sums_follow_replacement_and_reopen(filled) -> None:
    store, tables = filled
    new = _epoch(5, np.random.default_rng(7))
    store.ingest_epoch("E005", new, replace=True)
    assert store.delete_epoch("E000") == N_SRC
    expected = [t["flux_jy"][10] for t in tables[1:]]
    expected[4] = new["flux_jy"][10]
    sums = LightcurveStore(store.root).summary()
    row = int(np.searchsorted(sums.source_name, "S0010"))
    assert sums.n[row] == 11
    assert sums.weighted_mean_jy()[row] == pytest.approx(np.mean(expected), rel=1e-12)
    excluded = store.summary(exclude_epoch="E005")
    assert excluded.n[row] == 10


def test_interrupted_summary_is_rebuilt(filled) -> None:
    store, _ = filled
    before = store.summary()
    (store.root / "_summary.parquet").unlink()
    after = LightcurveStore(store.root).summary()
    np.testing.assert_array_equal(after.source_name, before.source_name)
    np.testing.assert_allclose(after.sum_wf2, before.sum_wf2, rtol=1e-9, atol=1e-9)


def test_compaction_gives_the_same_lightcurves(filled) -> None:
    store, _ = filled
    before = {name: store.lightcurve(name) for name in ("S0000", "S0150", "S0299")}
    assert store.compact() == 12 * N_SRC
    for name, lc in before.items():
        after = store.lightcurve(name)
        for column in STORE_COLUMNS:
            np.testing.assert_array_equal(after[column], lc[column])
    # Epochs replaced, added or deleted after compaction are seen, once.
    rng = np.random.default_rng(5)
    replaced = _epoch(2, rng)
    replaced["flux_jy"] = 3.0
    store.ingest_epoch("E002", replaced, replace=True)
    store.ingest_epoch("E100", _epoch(100, rng))
    store.delete_epoch("E004")
    lc = store.lightcurve("S0150")
    assert len(lc) == 12
    assert list(lc["epoch_id"]).count("E002") == 1
    assert lc["flux_jy"][list(lc["epoch_id"]).index("E002")] == 3.0
    assert "E004" not in set(lc["epoch_id"])
    both = store.lightcurves(["S0000", "S0299"])
    assert len(both) == 24


def test_bad_rows_warn_and_are_counted(tmp_path: Path) -> None:
    store = LightcurveStore(tmp_path / "lc")
    table = _epoch(0, np.random.default_rng(2))
    table["source_name"][3] = ""
    table["mjd"][4] = np.nan
    duplicate = table[10:12]
    table = Table(np.concatenate([table.as_array(), duplicate.as_array()]))
    with pytest.warns(DataQualityWarning) as record:
        n = store.ingest_epoch("E000", table)
    messages = " ".join(str(w.message) for w in record)
    assert "2 malformed row(s)" in messages
    assert "2 duplicate measurement(s)" in messages
    assert n == N_SRC - 2
    with pytest.raises(InputDataError, match="lacks column"):
        store.ingest_epoch("E001", Table({"source_name": ["a"], "mjd": [1.0]}))
    with pytest.raises(ValueError, match="epoch_id"):
        store.ingest_epoch("bad id/", table)


def test_fetch_time_small_store(tmp_path: Path) -> None:
    store = LightcurveStore(tmp_path / "lc")
    rng = np.random.default_rng(3)
    names = np.array([f"S{k:05d}" for k in range(5000)])
    for k in range(40):
        store.ingest_epoch(f"E{k:03d}", _epoch(k, rng, names))
    store.lightcurve("S00001")  # warm the DuckDB metadata cache
    start = time.perf_counter()
    for name in names[::500]:
        assert len(store.lightcurve(name)) == 40
    uncompacted_ms = (time.perf_counter() - start) / 10 * 1e3
    store.compact()
    store.lightcurve("S00001")
    start = time.perf_counter()
    for name in names[::500]:
        assert len(store.lightcurve(name)) == 40
    compacted_ms = (time.perf_counter() - start) / 10 * 1e3
    print(
        f"\nlightcurve fetch, 2e5 rows / 40 epochs: {uncompacted_ms:.1f} ms "
        f"uncompacted, {compacted_ms:.1f} ms compacted"
    )
    assert compacted_ms < 200


def test_size_tiered_merging(tmp_path: Path) -> None:
    store = LightcurveStore(tmp_path / "lc", auto_compact_epochs=4)
    rng = np.random.default_rng(4)
    tables = {f"E{k:03d}": _epoch(k, rng) for k in range(21)}
    for epoch_id, table in tables.items():
        store.ingest_epoch(epoch_id, table)
    runs = sorted(p.name for p in (store.root / "by_source").iterdir())
    assert [r.split("-")[0] for r in runs] == ["L1", "L2"]  # 16 -> L2, 4 -> L1
    replaced = _epoch(5, rng)
    store.ingest_epoch("E005", replaced, replace=True)  # inside the L2 run
    store.delete_epoch("E017")  # inside the L1 run
    lc = store.lightcurve("S0042")
    assert len(lc) == 20
    assert list(lc["epoch_id"]) == [e for e in tables if e != "E017"]
    assert lc["flux_jy"][5] == replaced["flux_jy"][42]
    bulk = store.lightcurves(["S0042"])
    np.testing.assert_array_equal(bulk["flux_jy"], lc["flux_jy"])


# ------------------------------------------------- one product per epoch (13.4)


def test_an_epoch_is_one_image_or_one_mosaic(tmp_path: Path) -> None:
    store = LightcurveStore(tmp_path / "lc")
    rng = np.random.default_rng(3)
    mixed = _epoch(0, rng)
    mixed["image_kind"][: N_SRC // 2] = "image"
    with pytest.raises(InputDataError, match="mixes image kinds.*--kind"):
        store.ingest_epoch("E0", mixed)
    two_images = _epoch(0, rng)
    two_images["image_path"][: N_SRC // 2] = "mosaic_xyz.fits"
    with pytest.raises(InputDataError, match="holds 2 images"):
        store.ingest_epoch("E0", two_images)
    assert store.n_rows() == 0


def test_rows_keep_kind_frequency_snr_image_and_strip(tmp_path: Path) -> None:
    store = LightcurveStore(tmp_path / "lc")
    table = _epoch(0, np.random.default_rng(3))
    table.replace_column(
        "image_path", np.full(N_SRC, "/m/block_20230601T010000-mosaic.fits")
    )
    table["freq_hz"] = 1.405e9
    table["snr"] = np.asarray(table["flux_jy"]) / 0.01
    table["pointing_dec_deg"] = 16.3
    table["upper_limit_jy"] = np.nan
    store.ingest_epoch("block_20230601T010000_dec+16.30", table)
    lc = store.lightcurve("S0003")
    assert lc["image_kind"][0] == "mosaic" and lc["freq_hz"][0] == 1.405e9
    assert lc["snr"][0] == pytest.approx(table["flux_jy"][3] / 0.01)
    # absent image_id is taken from the file name
    assert lc["image_id"][0] == "block_20230601T010000"
    assert lc["pointing_dec_deg"][0] == 16.3


# --------------------------------------------------------- one writer (15.18)


def test_two_writers_take_turns(tmp_path: Path, monkeypatch) -> None:
    """Two store objects (two processes' worth) writing at once lose nothing."""
    import threading

    root = tmp_path / "lc"
    first = LightcurveStore(root, auto_compact_epochs=0)
    second = LightcurveStore(root, auto_compact_epochs=0)
    rng = np.random.default_rng(4)
    tables = {"A": _epoch(0, rng), "B": _epoch(1, rng)}
    inside, second_done = threading.Event(), threading.Event()
    original = LightcurveStore._check_images

    def slow_check(epoch_id, images, manifest):
        if epoch_id == "A":  # the first writer has read the manifest: wait
            inside.set()
            second_done.wait(timeout=1.0)
        return original(epoch_id, images, manifest)

    monkeypatch.setattr(LightcurveStore, "_check_images", staticmethod(slow_check))
    errors: list[BaseException] = []

    def run(store, epoch_id, done=None):
        try:
            store.ingest_epoch(epoch_id, tables[epoch_id])
        except BaseException as err:  # reported below
            errors.append(err)
        if done is not None:
            done.set()

    a = threading.Thread(target=run, args=(first, "A"))
    a.start()
    assert inside.wait(timeout=10)
    b = threading.Thread(target=run, args=(second, "B", second_done))
    b.start()
    a.join(timeout=30)
    b.join(timeout=30)
    assert not errors
    reopened = LightcurveStore(root)
    assert sorted(reopened.epochs()["epoch_id"]) == ["A", "B"]
    assert reopened.n_rows() == 2 * N_SRC
    sums = reopened.summary()
    assert np.all(np.asarray(sums.n) == 2)
    assert len(reopened.lightcurve("S0001")) == 2


def test_a_held_lock_times_out_with_a_clear_error(tmp_path: Path) -> None:
    import fcntl
    import os

    from dsa110_contimg.exceptions import StateError

    store = LightcurveStore(tmp_path / "lc", lock_timeout_s=0.2)
    fd = os.open(store.root / "_writer.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, b"4242\n")
        with pytest.raises(StateError, match="pid 4242.*one writer at a time"):
            store.ingest_epoch("E0", _epoch(0, np.random.default_rng(5)))
    finally:
        os.close(fd)
    assert store.ingest_epoch("E0", _epoch(0, np.random.default_rng(5))) == N_SRC
