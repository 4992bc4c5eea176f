"""Reading the light-curve store: one source's light curve, several, or SQL.

Every file is sorted by source and the source-name range of each row group
is kept in memory after its footer is first read, so one light curve costs a
row-group read per compacted run holding the source plus one per epoch not
yet compacted; several sources, or SQL, go through DuckDB.
"""

from __future__ import annotations

import bisect
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from astropy.table import Table

from dsa110_contimg._optional import require
from dsa110_contimg.lightcurves._runs import sql_list
from dsa110_contimg.lightcurves._schema import SCHEMA, STORE_COLUMNS, to_astropy

pa = require("pyarrow", "lightcurves")
pq = require("pyarrow.parquet", "lightcurves")
pc = require("pyarrow.compute", "lightcurves")

__all__: list[str] = []


class _StoreQueries:
    """The reading half of `LightcurveStore` (it sets the attributes used here).

    Uses ``root``, ``_memory_limit``, ``_con``, ``_plan``, ``_rg_cache``,
    ``_load_manifest()`` and ``_epoch_file()`` of the store.
    """

    root: Any
    _memory_limit: str
    _con: Any
    _plan: dict[str, Any] | None
    _rg_cache: dict[str, tuple[str, Any, list[str], list[str]]]

    def _connection(self) -> Any:
        if self._con is None:
            duckdb = require("duckdb", "lightcurves")
            self._con = duckdb.connect()
            self._con.execute("SET enable_object_cache = true")
            self._con.execute(f"SET memory_limit = '{self._memory_limit}'")
            tmp_dir = self.root / "_tmp"  # DuckDB spills large sorts here
            if self.readonly:  # a reader writes nothing in the store
                tmp_dir = Path(tempfile.gettempdir()) / f"dsa110-duckdb-{os.getpid()}"
            tmp_dir.mkdir(exist_ok=True)
            self._con.execute(f"SET temp_directory = '{tmp_dir}'")
            self._con.execute("SET preserve_insertion_order = true")
        return self._con

    def _query_plan(self) -> dict[str, Any]:
        manifest = self._load_manifest()
        if self._plan is None:
            epochs = manifest["epochs"]
            current = {e: v["token"] for e, v in epochs.items()}
            in_runs: dict[str, str] = {}
            runs = []
            for run in manifest.get("runs", []):
                in_runs.update(run["epochs"])
                files = run["files"]
                runs.append(
                    {
                        "key": run["name"],
                        "files": [str(self.root / f["path"]) for f in files],
                        "mins": [f["min_source"] for f in files],
                        "maxs": [f["max_source"] for f in files],
                        "stale": sorted(
                            e
                            for e, tok in run["epochs"].items()
                            if current.get(e) != tok
                        ),
                    }
                )
            delta = [
                (str(self._epoch_file(v)), v["token"], e)
                for e, v in sorted(epochs.items())
                if in_runs.get(e) != v["token"]
            ]
            self._plan = {
                "runs": runs,
                "delta": [path for path, _, _ in delta],
                "delta_keys": [key for _, key, _ in delta],
                "delta_epochs": [e for _, _, e in delta],
            }
        return self._plan

    def _row_group_index(self, path: str, key: str) -> tuple[Any, list[str], list[str]]:
        """Return a file's metadata and per-row-group source-name ranges (cached)."""
        cached = self._rg_cache.get(path)
        if cached is not None and cached[0] == key:
            return cached[1], cached[2], cached[3]
        meta = pq.read_metadata(path)
        column = meta.schema.names.index("source_name")
        lows, highs = [], []
        for k in range(meta.num_row_groups):
            stats = meta.row_group(k).column(column).statistics
            has = stats is not None and stats.has_min_max
            lows.append(stats.min if has else "")
            highs.append(stats.max if has else "\uffff")
        self._rg_cache[path] = (key, meta, lows, highs)
        return meta, lows, highs

    def _read_source(self, path: str, key: str, name: str) -> Any:
        meta, lows, highs = self._row_group_index(path, key)
        # Files are sorted by source, so row-group ranges are sorted too.
        stop = bisect.bisect_right(lows, name)
        groups = [k for k in range(stop) if highs[k] >= name]
        if not groups:
            return None
        table = pq.ParquetFile(path, metadata=meta, pre_buffer=False).read_row_groups(
            groups, columns=list(STORE_COLUMNS), use_threads=False
        )
        return table.filter(pc.equal(table["source_name"], name))

    def lightcurve(self, source_name: str) -> Table:
        """Return every stored measurement of one source, sorted by mjd.

        Parameters
        ----------
        source_name : str
            The source.

        Returns
        -------
        astropy.table.Table
            Columns `STORE_COLUMNS`; no rows for an unknown source.

        Notes
        -----
        Every file is sorted by source and the source-name range of each of
        its row groups is kept in memory after its footer is first read, so
        a light curve costs one row-group read per compacted run holding the
        source plus one per epoch not yet compacted (see :meth:`compact`).
        """
        plan = self._query_plan()
        name = str(source_name)
        parts = []
        for run in plan["runs"]:
            stop = bisect.bisect_right(run["mins"], name)
            for k in range(stop):
                if run["maxs"][k] < name:
                    continue
                part = self._read_source(run["files"][k], run["key"], name)
                if part is not None and run["stale"]:
                    stale = pa.array(run["stale"], type=pa.string())
                    part = part.filter(pc.invert(pc.is_in(part["epoch_id"], stale)))
                parts.append(part)
        for path, key in zip(plan["delta"], plan["delta_keys"], strict=True):
            parts.append(self._read_source(path, key, name))
        parts = [p for p in parts if p is not None and p.num_rows]
        if not parts:
            return to_astropy(SCHEMA.empty_table())
        table = pa.concat_tables(parts).cast(SCHEMA)
        table = table.sort_by([("mjd", "ascending"), ("image_path", "ascending")])
        return to_astropy(table)

    def lightcurves(self, source_names: Iterable[str]) -> Table:
        """Return every stored measurement of several sources, by source and mjd.

        Parameters
        ----------
        source_names : iterable of str
            The sources.

        Returns
        -------
        astropy.table.Table
            Columns `STORE_COLUMNS` (a DuckDB query over every file).
        """
        plan = self._query_plan()
        names = pa.table({"name": pa.array(sorted(set(map(str, source_names))))})
        con = self._connection()
        con.register("_wanted", names)
        try:
            where = "source_name IN (SELECT name FROM _wanted)"
            return self._select(plan, where)
        finally:
            con.unregister("_wanted")

    def _select(self, plan: Mapping[str, Any], where: str) -> Table:
        cols = ", ".join(STORE_COLUMNS)
        parts = []
        for run in plan["runs"]:
            if not run["files"]:
                continue
            stale = ""
            if run["stale"]:
                quoted = ", ".join(
                    "'" + e.replace("'", "''") + "'" for e in run["stale"]
                )
                stale = f" AND epoch_id NOT IN ({quoted})"
            parts.append(
                f"SELECT {cols} FROM read_parquet({sql_list(run['files'])}) "
                f"WHERE {where}{stale}"
            )
        if plan["delta"]:
            parts.append(
                f"SELECT {cols} FROM read_parquet({sql_list(plan['delta'])}) "
                f"WHERE {where}"
            )
        if not parts:
            return to_astropy(SCHEMA.empty_table())
        sql = " UNION ALL ".join(parts) + " ORDER BY source_name, mjd, image_path"
        result = self._connection().sql(sql).to_arrow_table()
        return to_astropy(result.cast(SCHEMA))

    def sql(self, query: str) -> Table:
        """Run a DuckDB query over the view ``measurements`` (every stored row).

        Parameters
        ----------
        query : str
            SQL text, e.g. ``"SELECT count(*) AS n FROM measurements"``.

        Returns
        -------
        astropy.table.Table
            The result.
        """
        files = [
            str(self._epoch_file(v)) for v in self._load_manifest()["epochs"].values()
        ]
        con = self._connection()
        if files:
            con.execute(
                f"CREATE OR REPLACE TEMP VIEW measurements AS SELECT * FROM "
                f"read_parquet({sql_list(files)})"
            )
        else:
            con.register("measurements", SCHEMA.empty_table())
        result = con.sql(query).to_arrow_table()
        return to_astropy(result)
