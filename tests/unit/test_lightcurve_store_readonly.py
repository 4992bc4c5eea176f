"""A read-only light-curve store (the web API's) writes nothing in the store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from dsa110_contimg.exceptions import StateError
from dsa110_contimg.lightcurves import LightcurveStore


def _epoch(mjd: float, flux: float) -> Table:
    names = [f"S{i}" for i in range(4)]
    n = len(names)
    return Table(
        {
            "source_name": names,
            "mjd": np.full(n, mjd),
            "flux_jy": np.full(n, flux),
            "flux_err_jy": np.full(n, 0.01),
            "flags": np.zeros(n, dtype=np.int32),
            "image_path": np.full(n, f"mosaic_{mjd:.0f}.fits"),
            "image_kind": np.full(n, "mosaic"),
        }
    )


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
    }


def test_reader_writes_nothing_and_repairs_only_its_copy(tmp_path: Path) -> None:
    root = tmp_path / "store"
    writer = LightcurveStore(root)
    writer.ingest_epoch("e1", _epoch(60000.0, 1.0))
    writer.ingest_epoch("e2", _epoch(60001.0, 1.2))
    expected = writer.lightcurve("S1")
    (root / "_summary.parquet").unlink()  # as an interrupted writer leaves it
    before = _snapshot(root)
    reader = LightcurveStore(root, readonly=True)
    got = reader.lightcurve("S1")
    assert list(got["flux_jy"]) == list(expected["flux_jy"])
    assert reader._sums is not None and len(reader._applied) == 2  # repaired copy
    assert _snapshot(root) == before  # no sums file, no _tmp, no lock written
    with pytest.raises(StateError, match="read-only"):
        reader.ingest_epoch("e3", _epoch(60002.0, 1.0))
    assert _snapshot(root) == before


def test_reader_of_a_missing_store_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="no light-curve store"):
        LightcurveStore(tmp_path / "absent", readonly=True)
    assert not (tmp_path / "absent").exists()
