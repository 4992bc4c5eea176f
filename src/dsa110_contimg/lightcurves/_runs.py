"""Runs: epochs merged into Parquet files sorted by source, written with DuckDB."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from dsa110_contimg._optional import require
from dsa110_contimg.exceptions import StateError
from dsa110_contimg.lightcurves._schema import STORE_COLUMNS

pq = require("pyarrow.parquet", "lightcurves")

__all__ = ["sql_list", "write_run"]

_RUN_FILE_SIZE = "128MB"


def sql_list(paths: Iterable[Path | str]) -> str:
    """Return paths as a DuckDB list literal."""
    quoted = ["'" + str(p).replace("'", "''") + "'" for p in paths]
    return "[" + ", ".join(quoted) + "]"


def write_run(
    con: Any, root: Path, files: list[str], out: Path, *, row_group_size: int
) -> list[dict[str, Any]]:
    """Sort the rows of ``files`` by source into ``out``; return the file entries.

    Each entry has ``path`` (relative to ``root``), ``min_source``,
    ``max_source`` and ``n_rows``.
    """
    con.execute(
        f"COPY (SELECT {', '.join(STORE_COLUMNS)} FROM "
        f"read_parquet({sql_list(files)}) ORDER BY source_name, mjd) "
        f"TO '{out}' (FORMAT parquet, COMPRESSION zstd, "
        f"ROW_GROUP_SIZE {row_group_size}, FILE_SIZE_BYTES '{_RUN_FILE_SIZE}')"
    )
    written = sorted(out.glob("*.parquet"), key=_natural_key)
    entries = [_file_range(root, path) for path in written]
    return sorted(entries, key=lambda f: (f["min_source"], f["max_source"]))


def _natural_key(path: Path) -> tuple[int, str]:
    digits = re.findall(r"\d+", path.stem)
    return (int(digits[-1]) if digits else 0, path.name)


def _file_range(root: Path, path: Path) -> dict[str, Any]:
    meta = pq.ParquetFile(path).metadata
    index = meta.schema.names.index("source_name")
    lows, highs = [], []
    for k in range(meta.num_row_groups):
        stats = meta.row_group(k).column(index).statistics
        if stats is None or not stats.has_min_max:
            msg = f"compacted file {path} lacks source_name statistics"
            raise StateError(msg)
        lows.append(stats.min)
        highs.append(stats.max)
    return {
        "path": str(path.relative_to(root)),
        "min_source": min(lows) if lows else "",
        "max_source": max(highs) if highs else "",
        "n_rows": int(meta.num_rows),
    }
