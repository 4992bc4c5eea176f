"""Tests of the sky catalogue: CSV round trip, defaults, errors naming the line."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from dsa110_contimg.data_ingestion.skymodel import (
    CATALOG_COLUMNS,
    SkyCatalog,
    load_catalog,
    write_catalog,
)
from dsa110_contimg.exceptions import InputDataError


def _catalog(n: int = 5, seed: int = 0) -> SkyCatalog:
    rng = np.random.default_rng(seed)
    return SkyCatalog(
        name=np.array([f"J{k:06d}" for k in range(n)]),
        ra_deg=rng.uniform(0, 360, n),
        dec_deg=rng.uniform(-40, 90, n),
        flux_jy=rng.uniform(0.01, 2.0, n),
        spectral_index=rng.normal(-0.7, 0.2, n),
        ref_freq_hz=np.full(n, 1.4e9),
    )


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "catalog.csv"
    path.write_text(text)
    return path


def test_round_trip_is_exact(tmp_path: Path) -> None:
    catalog = _catalog(50)
    path = tmp_path / "nvss.csv"
    write_catalog(catalog, path)
    loaded = load_catalog(path)
    assert len(loaded) == 50
    for column in CATALOG_COLUMNS:
        np.testing.assert_array_equal(getattr(loaded, column), getattr(catalog, column))
    assert not (tmp_path / "nvss.tmp").exists()


def test_write_replaces_existing_file_and_quotes_names(tmp_path: Path) -> None:
    path = tmp_path / "cat.csv"
    path.write_text("old contents\n")
    catalog = SkyCatalog(np.array(["a, with comma"]), 10.0, 20.0, 0.5, -0.7, 1.4e9)
    write_catalog(catalog, str(path))
    assert load_catalog(path).name.tolist() == ["a, with comma"]
    assert [p.name for p in tmp_path.iterdir()] == ["cat.csv"]


def test_optional_columns_default_and_comments_skipped(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "# NVSS extract\n\nname,ra_deg,dec_deg,flux_jy\n"
        "# a comment between rows\nA,10.5,20.25,0.1\n\nB,10.0,-5,0.2\n",
    )
    catalog = load_catalog(path)
    assert catalog.name.tolist() == ["A", "B"]
    # (an RA outside [0, 360) in a file is an error: test_input_validation.py)
    np.testing.assert_allclose(catalog.ra_deg, [10.5, 10.0])
    np.testing.assert_array_equal(catalog.spectral_index, [-0.7, -0.7])
    np.testing.assert_array_equal(catalog.ref_freq_hz, [1.4e9, 1.4e9])


def test_blank_optional_cells_take_defaults(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "name,ra_deg,dec_deg,flux_jy,spectral_index,ref_freq_hz\n"
        "A,1,2,0.1,,\nB,1,2,0.1,-1.0,3e9\n",
    )
    catalog = load_catalog(path)
    np.testing.assert_array_equal(catalog.spectral_index, [-0.7, -1.0])
    np.testing.assert_array_equal(catalog.ref_freq_hz, [1.4e9, 3e9])


def test_header_only_gives_empty_catalog(tmp_path: Path) -> None:
    catalog = load_catalog(_write(tmp_path, "name,ra_deg,dec_deg,flux_jy\n"))
    assert len(catalog) == 0
    assert len(catalog.to_table()) == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name,ra_deg,flux_jy\nA,1,0.1\n", ["line 1", "dec_deg"]),
        (
            "# c\nname,ra_deg,dec_deg,flux_jy\nA,1,2,0.1\nB,1,x2,0.1\n",
            ["line 4", "'x2'"],
        ),
        ("name,ra_deg,dec_deg,flux_jy\nA,1,2,0.1\n\nB,1,95.5,0.1\n", ["line 4", "-90"]),
        ("name,ra_deg,dec_deg,flux_jy\nA,1,2\n", ["line 2", "expected 4 fields"]),
        ("name,ra_deg,dec_deg,flux_jy\nA,1,2,nan\n", ["line 2", "not finite"]),
        ("name,ra_deg,dec_deg,flux_jy\nA,1,,0.1\n", ["line 2", "dec_deg"]),
        ("name,ra_deg,dec_deg,flux_jy\n ,1,2,0.1\n", ["line 2", "empty source name"]),
        (
            "name,ra_deg,dec_deg,flux_jy,ref_freq_hz\nA,1,2,0.1,0\n",
            ["line 2", "positive"],
        ),
        ("# only a comment\n", ["no header"]),
    ],
)
def test_malformed_input_names_file_and_line(
    tmp_path: Path, text: str, expected: list[str]
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(InputDataError) as info:
        load_catalog(path)
    message = str(info.value)
    assert str(path) in message
    for fragment in expected:
        assert fragment in message


def test_missing_file_names_path(tmp_path: Path) -> None:
    path = tmp_path / "absent.csv"
    with pytest.raises(InputDataError, match="absent.csv"):
        load_catalog(path)


def test_duplicate_source_names_are_an_error(tmp_path: Path) -> None:
    """Issue 15.12: rows are keyed by name, so a repeated name would lose rows."""
    path = _write(
        tmp_path,
        "name,ra_deg,dec_deg,flux_jy\nA,1,2,0.1\nB,3,4,0.2\n# c\nA,5,6,0.3\n",
    )
    with pytest.raises(InputDataError) as info:
        load_catalog(path)
    message = str(info.value)
    assert str(path) in message and "line 5" in message and "line 2" in message
    assert "'A'" in message and "unique" in message


def test_flux_at_power_law() -> None:
    catalog = SkyCatalog(
        np.array(["a", "b"]),
        [1.0, 2.0],
        [3.0, 4.0],
        [1.0, 2.0],
        [-0.7, 0.0],
        [1.4e9, 1.0e9],
    )
    np.testing.assert_allclose(catalog.flux_at(2.8e9), [2.0**-0.7, 2.0])
    with pytest.raises(ValueError, match="positive"):
        catalog.flux_at(0.0)


def test_select_within_uses_great_circle_distance() -> None:
    # At dec 80 deg, 10 deg of RA is ~1.74 deg on the sky.
    catalog = SkyCatalog(
        np.array(["c", "near", "far", "pole"]),
        [100.0, 110.0, 100.0, 0.0],
        [80.0, 80.0, 77.0, 90.0],
        1.0,
        -0.7,
        1.4e9,
    )
    assert catalog.select_within(100.0, 80.0, 2.0).name.tolist() == ["c", "near"]
    assert catalog.select_within(280.0, 89.0, 2.0).name.tolist() == ["pole"]
    assert len(catalog.select_within(0.0, -80.0, 1.0)) == 0


def test_catalog_is_immutable_and_validated() -> None:
    catalog = _catalog(3)
    with pytest.raises(ValueError, match="read-only"):
        catalog.flux_jy[0] = 1.0
    with pytest.raises(ValueError, match="like name"):
        SkyCatalog(np.array(["a", "b"]), [1.0, 2.0, 3.0], 0.0, 1.0, -0.7, 1.4e9)
    with pytest.raises(ValueError, match="-90, 90"):
        SkyCatalog(np.array(["a"]), 1.0, 91.0, 1.0, -0.7, 1.4e9)


def test_to_table_columns_and_units() -> None:
    table = _catalog(4).to_table()
    assert table.colnames == list(CATALOG_COLUMNS)
    assert str(table["ra_deg"].unit) == "deg"
    assert str(table["flux_jy"].unit) == "Jy"


def _best_of_two(fn) -> float:
    """Best of two wall times, the garbage collector off: in a full run the
    test process holds a large heap, and collections triggered by the
    loader's million strings (7x csv.reader's time there, 3x alone) time the
    heap, not the parse."""
    import gc

    times = []
    for _ in range(2):
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        finally:
            gc.enable()
    return min(times)


def test_nvss_size_catalogue_loads_quickly(tmp_path: Path) -> None:
    """200 000 rows load within 5x the time Python's csv module takes only to
    split the same file into cells (the loader's first step; the rest is the
    numpy parse and the checks): 3.0-3.6x on the 2-core AMD EPYC VM where the
    load took 2.3-2.6 s and the former absolute limit of 3 s failed in a full
    run (3.29 s). The ratio holds on a slow or loaded machine."""
    import csv

    n = 200_000
    path = tmp_path / "nvss.csv"
    write_catalog(_catalog(n, seed=1), path)
    catalog = load_catalog(path)
    assert len(catalog) == n

    def split_only():
        with path.open(newline="") as fh:
            return list(csv.reader(fh))

    baseline = _best_of_two(split_only)
    elapsed = _best_of_two(lambda: load_catalog(path))
    assert elapsed < 5.0 * baseline, (
        f"loading {n} rows took {elapsed:.2f} s, {elapsed / baseline:.1f}x the "
        f"{baseline:.2f} s csv.reader takes to split the file"
    )
