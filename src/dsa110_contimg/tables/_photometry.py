"""The photometry table: its one builder, its one CSV writer and its one reader."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
from astropy.table import Table
from numpy.typing import ArrayLike

from dsa110_contimg.tables._columns import (
    MEASUREMENT_REQUIRED,
    MEASUREMENTS,
    PHOTOMETRY,
)
from dsa110_contimg.tables._csv import read_csv_rows, write_csv_table
from dsa110_contimg.tables._epochs import image_ids
from dsa110_contimg.utils.storage import writes_product

__all__ = [
    "PHOTOMETRY_COLUMNS",
    "photometry_table",
    "write_photometry_table",
    "read_photometry_table",
    "read_photometry_rows",
    "conform_table",
]

PHOTOMETRY_COLUMNS = PHOTOMETRY.names
"""Columns of the photometry table, in file order (see `PHOTOMETRY`)."""


def photometry_table(columns: Mapping[str, ArrayLike | str | float]) -> Table:
    """Return photometry rows with exactly `PHOTOMETRY_COLUMNS`, in order.

    Parameters
    ----------
    columns : mapping of str to array_like or scalar
        Every photometry column: per-row arrays of one length, or a scalar
        for a value shared by every row (the image's time, kind, path, ...).

    Returns
    -------
    astropy.table.Table
        The rows; each column has its declared dtype.

    Raises
    ------
    ValueError
        A column is missing or not a photometry column, or no column is
        per-row.
    """
    missing = [c for c in PHOTOMETRY_COLUMNS if c not in columns]
    unknown = [c for c in columns if c not in PHOTOMETRY_COLUMNS]
    if missing or unknown:
        msg = f"photometry rows: missing column(s) {missing}, unknown {unknown}"
        raise ValueError(msg)
    sizes = {np.size(v) for v in columns.values() if np.ndim(v) > 0}
    if len(sizes) != 1:
        msg = f"photometry rows: per-row columns have lengths {sorted(sizes)}"
        raise ValueError(msg)
    (n,) = sizes
    table = Table()
    for column in PHOTOMETRY.columns:
        value = columns[column.name]
        array = np.asarray(value) if np.ndim(value) else np.full(n, value)
        table[column.name] = array.astype(column.numpy_dtype, copy=False)
    return table


@writes_product("photometry table")
def write_photometry_table(tables: Iterable[Table], path: Path) -> Path:
    """Write measurements as CSV atomically (unique temporary, fsync, rename).

    The columns are `PHOTOMETRY_COLUMNS`, in order; floats are written with
    full double precision.
    """
    return write_csv_table(tables, path, PHOTOMETRY)


def read_photometry_table(path: Path) -> Table:
    """Read a photometry CSV written by `write_photometry_table`.

    Every declared column gets its dtype (see `read_csv_table`): names that
    look like numbers stay text, blank flags read 0; malformed rows are
    skipped with a `DataQualityWarning`. Light-curve columns (``epoch_id``,
    ``scale``, ...) are read too, so one reader serves every measurement CSV.

    Raises
    ------
    InputDataError
        The file is missing, unreadable or empty, or its header lacks
        ``source_name, mjd, flux_jy, flux_err_jy``.
    """
    return read_photometry_rows(path)[0]


def read_photometry_rows(path: Path) -> tuple[Table, np.ndarray]:
    """Return `read_photometry_table` and the file's line number of each row."""
    return read_csv_rows(path, MEASUREMENTS, required=MEASUREMENT_REQUIRED)


def conform_table(table: Table) -> Table:
    """Return a photometry table with exactly `PHOTOMETRY_COLUMNS`, in order.

    Strings stay strings (a column of names that look like numbers is read
    back as numbers), blank cells become NaN (flags 0, strings empty), and a
    column absent from a table written by an earlier version is filled in:
    ``image_id`` from ``image_path``, numbers with NaN.
    """
    n = len(table)
    out = Table()
    for column in PHOTOMETRY.columns:
        name = column.name
        if name not in table.colnames:
            if name == "image_id" and "image_path" in table.colnames:
                out[name] = image_ids(table["image_path"])
            elif column.dtype == "str":
                out[name] = np.full(n, "", dtype=str)
            elif column.dtype == "int32":
                out[name] = np.zeros(n, dtype=np.int32)
            else:
                out[name] = np.full(n, np.nan)
            continue
        values = table[name]
        if column.dtype == "str":
            filled = np.ma.filled(np.ma.asarray(values).astype(str), "")
            out[name] = np.asarray(filled, dtype=str)
        elif column.dtype == "int32":
            out[name] = np.ma.filled(np.ma.asarray(values), 0).astype(np.int32)
        else:
            out[name] = np.ma.filled(np.ma.asarray(values, dtype=np.float64), np.nan)
    return out
