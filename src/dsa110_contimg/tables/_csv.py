"""The CSV reader and writer of the declared tables.

Writing: a header line of the table's columns, then one line per row;
floats as ``repr`` (the shortest text that reads back to the same double: an
mjd keeps its microseconds), the rest as ``str``; written under a temporary
name and renamed. Reading: every column gets its declared dtype (text stays
text even where it looks like a number), a row with the wrong number of
fields, an empty ``source_name`` or a required value that is not a number is
skipped with a warning naming its line.
"""

from __future__ import annotations

import csv
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from astropy.table import Table
from numpy.typing import NDArray

from dsa110_contimg.exceptions import DataQualityWarning, InputDataError
from dsa110_contimg.tables._spec import TableSpec
from dsa110_contimg.utils.storage import publish, temporary_path

__all__ = ["read_csv_rows", "read_csv_table", "write_csv_table"]


def write_csv_table(tables: Iterable[Table], path: Path, spec: TableSpec) -> Path:
    """Write tables' rows as one CSV with the columns of ``spec``, atomically.

    Parameters
    ----------
    tables : iterable of astropy.table.Table
        Tables holding at least the columns of ``spec``; written in order.
    path : Path
        Output file (unique temporary, fsync, rename).
    spec : TableSpec
        The table's columns, in file order.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        with open(tmp, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(spec.names)
            for table in tables:
                for row in table.iterrows(*spec.names):
                    writer.writerow([_fmt(v) for v in row])
        publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _fmt(value: object) -> str:
    # repr is the shortest text that reads back to the same double: an mjd
    # keeps its microseconds (8 significant digits would round it to 86 s).
    if isinstance(value, float | np.floating):
        return repr(float(value))
    return str(value)


def read_csv_table(
    path: Path, spec: TableSpec, *, required: Sequence[str] = ()
) -> Table:
    """Read a CSV of a declared table (`read_csv_rows` without line numbers)."""
    return read_csv_rows(path, spec, required=required)[0]


def read_csv_rows(
    path: Path, spec: TableSpec, *, required: Sequence[str] = ()
) -> tuple[Table, NDArray[np.int64]]:
    """Read a CSV of a declared table, typing each column, skipping bad rows.

    Parameters
    ----------
    path : Path
        CSV with a header line.
    spec : TableSpec
        The table: a declared column gets its dtype (text, flags 0 when
        blank, numbers NaN when blank or not a number); an undeclared one is
        a number when every non-blank cell is one, else text.
    required : sequence of str
        Columns the header must have. Of these, ``source_name`` must be
        non-empty, ``mjd`` a finite number and the others numbers (``nan``
        included) on every row kept.

    Returns
    -------
    table : astropy.table.Table
        The file's columns in its order, one row per valid line (none for a
        file holding only a header).
    lines : ndarray of int
        The line number in the file of each row (the header is line 1).

    Raises
    ------
    InputDataError
        The file is missing, unreadable or empty, or its header lacks a
        required column.

    Warns
    -----
    DataQualityWarning
        Rows with the wrong number of fields, an empty source name or a
        required value that is not a number were skipped (their line numbers
        are given).
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError) as err:
        msg = f"measurement table {path} cannot be read: {err}"
        raise InputDataError(msg) from err
    if not rows:
        msg = f"measurement table {path} is empty; expected a header line"
        raise InputDataError(msg)
    header = [cell.strip() for cell in rows[0]]
    missing = [c for c in required if c not in header]
    if missing:
        msg = (
            f"{path}: header lacks column(s) {', '.join(missing)}; "
            f"need {', '.join(required)}"
        )
        raise InputDataError(msg)
    lines = np.arange(2, len(rows) + 1)
    body = rows[1:]
    blank = np.array([not any(cell.strip() for cell in row) for row in body], bool)
    sized = np.array([len(row) == len(header) for row in body], bool)
    bad = ~blank & ~sized
    keep = ~blank & sized
    kept = [row for row, k in zip(body, keep, strict=True) if k]
    cells = list(zip(*kept, strict=True)) if kept else [()] * len(header)
    texts = {
        name: np.char.strip(np.asarray(col, dtype=str)) if kept else np.zeros(0, str)
        for name, col in zip(header, cells, strict=True)
    }
    valid = _valid_rows(texts, required)
    bad[np.flatnonzero(keep)[~valid]] = True
    _warn_bad(path, lines[bad])
    table = Table()
    for name in header:
        table[name] = _typed(texts[name][valid], spec, name)
    return table, lines[keep][valid]


def _valid_rows(texts: dict[str, NDArray], required: Sequence[str]) -> NDArray:
    n = len(next(iter(texts.values()))) if texts else 0
    valid = np.ones(n, dtype=bool)
    for name in required:
        if name == "source_name":
            valid &= texts[name] != ""
            continue
        values, parsed = _floats(texts[name])
        valid &= parsed
        if name == "mjd":
            valid &= np.isfinite(values)
    return valid


def _warn_bad(path: Path, bad_lines: NDArray) -> None:
    if not bad_lines.size:
        return
    shown = ", ".join(str(n) for n in bad_lines[:5])
    warnings.warn(
        f"{path}: skipped {bad_lines.size} malformed row(s) (lines {shown}"
        f"{', ...' if bad_lines.size > 5 else ''}): wrong field count, empty "
        "source_name or a non-numeric required value",
        DataQualityWarning,
        stacklevel=3,
    )


def _floats(text: NDArray) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Return the cells as floats (NaN where not a number) and which parsed."""
    try:
        return text.astype(np.float64), np.ones(text.size, dtype=bool)
    except ValueError:
        values = np.full(text.size, np.nan)
        parsed = np.zeros(text.size, dtype=bool)
        for k, cell in enumerate(text.tolist()):
            try:
                values[k] = float(cell)
                parsed[k] = True
            except ValueError:
                pass
        return values, parsed


def _typed(text: NDArray, spec: TableSpec, name: str) -> NDArray:
    dtype = spec[name].dtype if name in spec else None
    if dtype == "str":
        return text.astype(str)
    if dtype == "bool":
        return np.isin(np.char.lower(text), ("1", "true", "t", "yes"))
    values, parsed = _floats(text)
    if dtype is None and not np.all(parsed | (text == "")):
        return text.astype(str)
    if dtype in ("int32", "int64"):
        return np.where(np.isfinite(values), values, 0).astype(dtype)
    return values
