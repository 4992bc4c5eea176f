"""Columns, types and validation of the rows of the light-curve store."""

from __future__ import annotations

import math
import warnings
from datetime import date, timedelta
from typing import Any

import numpy as np
from astropy.table import Table
from numpy.typing import NDArray

from dsa110_contimg._optional import require
from dsa110_contimg.exceptions import DataQualityWarning, InputDataError
from dsa110_contimg.tables import LIGHTCURVE_STORE, MEASUREMENT_REQUIRED, image_ids

pa = require("pyarrow", "lightcurves")

__all__ = [
    "REQUIRED_COLUMNS",
    "STORE_COLUMNS",
    "SCHEMA",
    "mjd_to_date",
    "prepare_epoch",
    "to_astropy",
]

REQUIRED_COLUMNS = MEASUREMENT_REQUIRED
"""Columns every ingested table must have."""

STORE_COLUMNS = LIGHTCURVE_STORE.names
"""Columns of every stored row, in file order (see `LIGHTCURVE_STORE`)."""

_CALIBRATION_COLUMNS = ("scale", "scale_err", "flux_corr_jy", "flux_corr_err_jy")
_ARROW_TYPES = {"str": "string", "int32": "int32", "float64": "float64"}
SCHEMA = pa.schema(
    [(c.name, getattr(pa, _ARROW_TYPES[c.dtype])()) for c in LIGHTCURVE_STORE.columns]
)
_OPTIONAL_DEFAULTS: dict[str, Any] = {
    "rms_jy": np.nan,
    "pb": np.nan,
    "flags": 0,
    "image_path": "",
    "image_kind": "",
    "image_id": "",
    "freq_hz": np.nan,
    "snr": np.nan,
    "pointing_dec_deg": np.nan,
    "upper_limit_jy": np.nan,
}
_MJD_ZERO = date(1858, 11, 17)


def mjd_to_date(mjd: float) -> str:
    """Return the UTC date (``YYYY-MM-DD``) of an MJD."""
    return (_MJD_ZERO + timedelta(days=math.floor(mjd))).isoformat()


def _column(table: Any, name: str) -> NDArray[np.float64]:
    values = table[name]
    if isinstance(values, np.ma.MaskedArray):
        values = values.astype(np.float64).filled(np.nan)
    return np.asarray(values, dtype=np.float64)


def prepare_epoch(epoch_id: str, table: Any) -> tuple[Any, NDArray, NDArray]:
    """Validate an epoch's measurements and sort them by source.

    Parameters
    ----------
    epoch_id : str
        The epoch (written into every row).
    table : astropy.table.Table or mapping of arrays
        Measurements with at least `REQUIRED_COLUMNS`, of one image or one
        mosaic; absent optional columns get defaults (NaN, flags 0, empty
        strings; ``image_id`` from ``image_path``) and absent calibration
        columns the identity scale.

    Returns
    -------
    arrow : pyarrow.Table
        Rows in `SCHEMA`, sorted by source, image and mjd.
    mjd : ndarray
        Their times, MJD.
    image_paths : ndarray of str
        The distinct images of the epoch.

    Raises
    ------
    InputDataError
        A required column is missing, the ``epoch_id`` column names another
        epoch, the rows mix image kinds or come from more than one image, or
        no valid row is left.
    ValueError
        Only some of the four calibration columns are given.

    Warns
    -----
    DataQualityWarning
        Rows with an empty name or non-finite mjd, or exact duplicates (same
        source, image and mjd), were dropped.
    """
    columns = set(getattr(table, "colnames", None) or table.keys())
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        msg = (
            f"epoch {epoch_id}: measurement table lacks column(s) "
            f"{', '.join(missing)}; need {', '.join(REQUIRED_COLUMNS)}"
        )
        raise InputDataError(msg)
    n = len(table[REQUIRED_COLUMNS[0]])
    data: dict[str, NDArray] = {
        "source_name": np.char.strip(np.asarray(table["source_name"], dtype=str)),
        "mjd": _column(table, "mjd").astype(np.float64),
        "flux_jy": _column(table, "flux_jy").astype(np.float64),
        "flux_err_jy": _column(table, "flux_err_jy").astype(np.float64),
    }
    for name, default in _OPTIONAL_DEFAULTS.items():
        if name == "image_id" and name not in columns and "image_path" in columns:
            data[name] = image_ids(np.asarray(table["image_path"], dtype=str))
        elif name not in columns:
            data[name] = np.full(
                n, default, dtype=np.int32 if name == "flags" else None
            )
        elif isinstance(default, str):
            data[name] = np.asarray(table[name], dtype=str)
        elif name == "flags":
            flags = _column(table, name)
            data[name] = np.where(np.isfinite(flags), flags, 0).astype(np.int32)
        else:
            data[name] = _column(table, name)
    if "epoch_id" in columns:
        given = set(np.asarray(table["epoch_id"], dtype=str).tolist())
        if given - {epoch_id}:
            msg = (
                f"epoch {epoch_id}: table's epoch_id column holds "
                f"{sorted(given)[:3]}; one table is one epoch"
            )
            raise InputDataError(msg)
    _one_product(epoch_id, data)
    _calibration_columns(epoch_id, table, columns, data)
    data["epoch_id"] = np.full(n, epoch_id)
    return _clean(epoch_id, data)


def _one_product(epoch_id: str, data: dict[str, NDArray]) -> None:
    """Raise unless every row comes from one image or one mosaic."""
    kinds = sorted({k for k in data["image_kind"].tolist() if k})
    if len(kinds) > 1:
        msg = (
            f"epoch {epoch_id}: the table mixes image kinds {kinds}; one epoch is "
            "one image or one mosaic, never a mix: keep the rows of one kind "
            "(CLI: ingest-photometry --kind mosaic|image)"
        )
        raise InputDataError(msg)
    images = sorted({p for p in data["image_path"].tolist() if p})
    if len(images) > 1:
        msg = (
            f"epoch {epoch_id}: the table holds {len(images)} images ({images[0]}, "
            f"{images[1]}, ...); one epoch is one image or one mosaic: split it "
            "by image (dsa110_contimg.tables.split_epochs; ingest-photometry without "
            "--epoch-id stores each image as its own epoch)"
        )
        raise InputDataError(msg)


def _calibration_columns(
    epoch_id: str, table: Any, columns: set[str], data: dict[str, NDArray]
) -> None:
    present = [c for c in _CALIBRATION_COLUMNS if c in columns]
    if present and len(present) != len(_CALIBRATION_COLUMNS):
        msg = (
            f"epoch {epoch_id}: give all or none of "
            f"{', '.join(_CALIBRATION_COLUMNS)}; got only {', '.join(present)}"
        )
        raise ValueError(msg)
    if present:
        for name in _CALIBRATION_COLUMNS:
            data[name] = _column(table, name).astype(np.float64)
    else:  # uncalibrated input: identity scale
        n = data["flux_jy"].size
        data["scale"], data["scale_err"] = np.ones(n), np.zeros(n)
        data["flux_corr_jy"] = data["flux_jy"].copy()
        data["flux_corr_err_jy"] = data["flux_err_jy"].copy()


def _clean(epoch_id: str, data: dict[str, NDArray]) -> tuple[Any, NDArray, NDArray]:
    bad = (data["source_name"] == "") | ~np.isfinite(data["mjd"])
    if np.any(bad):
        warnings.warn(
            f"epoch {epoch_id}: dropped {int(bad.sum())} malformed row(s) with "
            "an empty source_name or a non-finite mjd",
            DataQualityWarning,
            stacklevel=4,
        )
    order = np.lexsort((data["mjd"], data["image_path"], data["source_name"]))
    order = order[~bad[order]]
    sorted_data = {k: v[order] for k, v in data.items()}
    key_same = np.ones(order.size, dtype=bool)
    for name in ("source_name", "image_path", "mjd"):
        key_same[1:] &= sorted_data[name][1:] == sorted_data[name][:-1]
    key_same[0] = False
    if np.any(key_same):
        warnings.warn(
            f"epoch {epoch_id}: dropped {int(key_same.sum())} duplicate "
            "measurement(s) (same source_name, image_path and mjd)",
            DataQualityWarning,
            stacklevel=4,
        )
    final = {k: v[~key_same] for k, v in sorted_data.items()}
    if final["mjd"].size == 0:
        msg = f"epoch {epoch_id}: no valid measurements to ingest"
        raise InputDataError(msg)
    arrow = pa.table({k: final[k] for k in STORE_COLUMNS}, schema=SCHEMA)
    return arrow, final["mjd"], np.unique(final["image_path"])


def to_astropy(table: Any) -> Table:
    """Return an arrow table as an astropy Table (strings as str, fluxes in Jy)."""
    out = Table()
    for name in table.column_names:
        values = table.column(name).to_numpy(zero_copy_only=False)
        if values.dtype == object:
            values = np.asarray(values, dtype=str) if len(values) else np.zeros(0, str)
        out[name] = values
    for name, unit in LIGHTCURVE_STORE.units.items():
        if name in out.colnames and unit.startswith("Jy"):
            out[name].unit = unit
    return out
