"""Check the light-curve store's files and repair what a fault left damaged.

Every write of the store is flushed before its rename, so a crash cannot
publish a half-written file; a disk fault, a power loss on storage that
ignores fsync, or a person can still leave a file truncated or empty. A
damaged store must neither be lost nor trusted: `repair_store` (the stream
runs it at start-up, before any job) checks every file cheaply and repairs
the store so that it opens and holds only whole epochs:

* ``_manifest.json`` unreadable: rebuilt from the epoch files (the truth);
  the runs and the running sums are rebuilt from them too.
* an epoch file missing, empty, truncated, unreadable, without the store's
  columns, or with another number of rows than the manifest records: the
  epoch is dropped from the manifest and its file deleted, so the epoch is
  absent rather than wrong; `StoreRepair.dropped_epochs` names it and its
  ingest must be redone (the stream requeues the ``update_variability`` job
  that stored it, which re-reads the block's photometry table).
* a run file (``by_source/``, a derived index) damaged: the run is dropped;
  its epochs are read from their epoch files until the next merge.
* ``_summary.parquet`` unreadable, or an epoch dropped: the running sums are
  rebuilt from the epoch files.
* two files for one epoch (a replacement that moved date directories,
  interrupted before the old file was deleted) in a rebuild: the newest is
  kept, so an epoch is never stored twice.

The checks read each Parquet file's footer (size, magic bytes, schema, row
count), not its pages, so they cost a few reads per file.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dsa110_contimg._optional import require
from dsa110_contimg.lightcurves._lock import file_lock
from dsa110_contimg.lightcurves._schema import STORE_COLUMNS, mjd_to_date
from dsa110_contimg.lightcurves._store import (
    _FORMAT_VERSION,
    _MANIFEST,
    _SUMMARY,
    EPOCH_TOKEN_KEY,
    LightcurveStore,
)
from dsa110_contimg.utils.storage import publish, write_errors_as_resource

pa = require("pyarrow", "lightcurves")
pq = require("pyarrow.parquet", "lightcurves")

__all__ = ["StoreRepair", "parquet_problem", "repair_store"]

log = logging.getLogger("dsa110_contimg.lightcurves._store")

_MAGIC = b"PAR1"
_RUN_NAME_RE = re.compile(r"^L\d+-(\d+)$")


@dataclass(slots=True)
class StoreRepair:
    """What `repair_store` found and did.

    Attributes
    ----------
    dropped_epochs : dict of str to str
        Epochs removed because their file was damaged, with the problem; their
        ingest must be redone from the photometry tables.
    dropped_runs : dict of str to str
        Runs (derived index) removed, with the problem.
    manifest_rebuilt : str or None
        Why the manifest was rebuilt from the epoch files, or None.
    sums_rebuilt : str or None
        Why the running sums were rebuilt, or None.
    epochs : set of str
        The epochs the store holds after the repair.
    """

    dropped_epochs: dict[str, str] = field(default_factory=dict)
    dropped_runs: dict[str, str] = field(default_factory=dict)
    manifest_rebuilt: str | None = None
    sums_rebuilt: str | None = None
    epochs: set[str] = field(default_factory=set)

    @property
    def changed(self) -> bool:
        """Whether anything was repaired."""
        return bool(
            self.dropped_epochs
            or self.dropped_runs
            or self.manifest_rebuilt
            or self.sums_rebuilt
        )


def parquet_problem(
    path: Path,
    *,
    n_rows: int | None = None,
    token: str | None = None,
    columns: tuple[str, ...] = STORE_COLUMNS,
) -> str | None:
    """Return why a Parquet file of the store is damaged (footer checks), or None.

    Parameters
    ----------
    path : Path
        The file.
    n_rows : int, optional
        Rows the manifest records for it.
    token : str, optional
        The manifest's token of the epoch; a file stamped with another token
        (see `EPOCH_TOKEN_KEY`) is another version than the one recorded.
    columns : tuple of str
        Columns it must have.
    """
    try:
        size = path.stat().st_size
    except OSError:
        return "missing"
    if size == 0:
        return "empty (0 bytes)"
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
            fh.seek(max(size - 4, 0))
            tail = fh.read(4)
    except OSError as err:
        return f"unreadable ({err})"
    if size < 12 or head != _MAGIC or tail != _MAGIC:
        return f"truncated or not Parquet ({size} bytes, no Parquet footer)"
    try:
        meta = pq.read_metadata(path)
    except (OSError, pa.ArrowInvalid) as err:
        return f"unreadable footer ({err})"
    lacking = [c for c in columns if c not in meta.schema.names]
    if lacking:
        return f"lacks column(s) {', '.join(lacking)}"
    if n_rows is not None and meta.num_rows != n_rows:
        return f"holds {meta.num_rows} rows where the manifest records {n_rows}"
    stamped = (meta.metadata or {}).get(EPOCH_TOKEN_KEY.encode())
    if token is not None and stamped is not None and stamped.decode() != token:
        return (
            f"is another version of the epoch than the manifest records "
            f"(token {stamped.decode()[:8]}, manifest {token[:8]})"
        )
    return None


def _read_manifest(root: Path) -> tuple[dict[str, Any] | None, str | None]:
    """Return the manifest (None when absent) or why it is unreadable."""
    path = root / _MANIFEST
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, None
    except (OSError, UnicodeDecodeError) as err:
        return None, f"unreadable ({err})"
    try:
        manifest = json.loads(text)
    except ValueError as err:
        return None, f"not valid JSON ({len(text)} bytes: {err})"
    if not isinstance(manifest, dict) or not isinstance(manifest.get("epochs"), dict):
        return None, "has no 'epochs' mapping"
    return manifest, None


def _save_manifest(root: Path, manifest: dict[str, Any]) -> None:
    path = root / _MANIFEST
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    with write_errors_as_resource(path, "light-curve store manifest"):
        tmp.write_bytes(json.dumps(manifest, sort_keys=True).encode())
        publish(tmp, path)


def _epoch_files(root: Path) -> list[Path]:
    return sorted(
        p
        for p in (root / "epochs").glob("date=*/*.parquet")
        if not p.name.startswith(".")
    )


def _entry_of(root: Path, path: Path) -> tuple[str, dict[str, Any]] | str:
    """The manifest entry of a whole epoch file, or why it is damaged."""
    problem = parquet_problem(path)
    if problem is not None:
        return problem
    try:
        table = pq.read_table(path, columns=["epoch_id", "mjd", "image_path"])
        stamped = (pq.read_metadata(path).metadata or {}).get(EPOCH_TOKEN_KEY.encode())
    except (OSError, pa.ArrowInvalid) as err:
        return f"unreadable ({err})"
    mjd = np.asarray(table.column("mjd").to_numpy(), dtype=np.float64)
    ids = set(table.column("epoch_id").to_pylist())
    if table.num_rows == 0 or ids != {path.stem} or not np.isfinite(mjd).all():
        return f"its rows do not belong to epoch {path.stem}"
    day = mjd_to_date(float(np.median(mjd)))
    images = sorted({p for p in table.column("image_path").to_pylist() if p})
    return path.stem, {
        "date": day,
        "path": str(path.relative_to(root)),
        "n_rows": int(table.num_rows),
        "mjd_min": float(mjd.min()),
        "mjd_max": float(mjd.max()),
        "token": stamped.decode() if stamped else uuid.uuid4().hex,
        "image_paths": images,
    }


def _rebuild_manifest(root: Path, report: StoreRepair) -> dict[str, Any]:
    """A manifest of the whole epoch files; damaged ones deleted, runs dropped."""
    found: dict[str, tuple[int, Path, dict[str, Any]]] = {}
    for path in _epoch_files(root):
        got = _entry_of(root, path)
        if isinstance(got, str):
            report.dropped_epochs[path.stem] = f"{path}: {got}"
            path.unlink(missing_ok=True)
            continue
        epoch_id, entry = got
        mtime = path.stat().st_mtime_ns
        older = found.get(epoch_id)
        if older is not None and older[0] >= mtime:  # keep the newest copy
            path.unlink(missing_ok=True)
            continue
        if older is not None:
            older[1].unlink(missing_ok=True)
        found[epoch_id] = (mtime, path, entry)
    counter = 0
    runs_dir = root / "by_source"
    if runs_dir.exists():
        for run in runs_dir.iterdir():
            match = _RUN_NAME_RE.match(run.name)
            counter = max(counter, int(match.group(1)) if match else 0)
            report.dropped_runs[run.name] = "manifest rebuilt (runs are remade)"
        shutil.rmtree(runs_dir, ignore_errors=True)
    for epoch_id in report.dropped_epochs:
        found.pop(epoch_id, None)
    return {
        "format_version": _FORMAT_VERSION,
        "epochs": {e: v[2] for e, v in sorted(found.items())},
        "runs": [],
        "run_counter": counter,
    }


def _check_entries(root: Path, manifest: dict[str, Any], report: StoreRepair) -> bool:
    """Drop damaged epochs and runs from ``manifest``; True when it changed."""
    changed = False
    for epoch_id, entry in sorted(manifest["epochs"].items()):
        path = root / str(entry.get("path", ""))
        problem = parquet_problem(
            path, n_rows=entry.get("n_rows"), token=entry.get("token")
        )
        if problem is None:
            continue
        report.dropped_epochs[epoch_id] = f"{path}: {problem}"
        del manifest["epochs"][epoch_id]
        if path.is_file():
            path.unlink()
        changed = True
    kept = []
    for run in manifest.get("runs", []):
        problem = None
        for item in run.get("files", []):
            path = root / str(item.get("path", ""))
            problem = parquet_problem(path, n_rows=item.get("n_rows"))
            if problem is not None:
                problem = f"{path}: {problem}"
                break
        if problem is None:
            kept.append(run)
            continue
        report.dropped_runs[str(run["name"])] = problem
        shutil.rmtree(root / "by_source" / str(run["name"]), ignore_errors=True)
        changed = True
    manifest["runs"] = kept
    return changed


def _delete_temporaries(root: Path) -> None:
    """Delete temporaries of writers that died (the caller holds the lock)."""
    for pattern in (".*.tmp-*", "epochs/date=*/.*.tmp-*"):
        for tmp in root.glob(pattern):
            if tmp.is_file():
                tmp.unlink(missing_ok=True)


def repair_store(root: Path, *, lock_timeout_s: float = 600.0) -> StoreRepair:
    """Check every file of the light-curve store and repair what is damaged.

    Parameters
    ----------
    root : Path
        The store directory; a store that does not exist is left alone.
    lock_timeout_s : float
        How long to wait for another writer to finish, seconds.

    Returns
    -------
    StoreRepair
        The epochs and runs dropped, what was rebuilt, and the epochs held.

    Raises
    ------
    StateError
        Another writer kept the store's lock past ``lock_timeout_s``, or the
        store was written by another format version (rebuild it).
    ResourceError
        The repaired manifest could not be written (disk full, read-only).

    Notes
    -----
    See the module docstring for what is checked and how each fault is
    repaired. The dropped epochs are absent afterwards, never half there:
    the caller re-ingests them (the stream requeues their jobs).
    """
    root = Path(root)
    report = StoreRepair()
    if not (root / _MANIFEST).exists() and not (root / "epochs").exists():
        return report
    with file_lock(root, lock_timeout_s):
        _delete_temporaries(root)
        manifest, why = _read_manifest(root)
        if manifest is None and why is None:  # epoch files but no manifest
            why = "missing while epoch files exist"
        if why is not None:
            report.manifest_rebuilt = f"{root / _MANIFEST} {why}"
            manifest = _rebuild_manifest(root, report)
            changed = True
        elif manifest.get("format_version") != _FORMAT_VERSION:
            manifest = None
            changed = False
        else:
            changed = _check_entries(root, manifest, report)
        sums = root / _SUMMARY
        if sums.exists():
            problem = parquet_problem(sums, columns=("source_name",))
            if problem is None:
                try:
                    pq.read_table(sums)
                except (OSError, pa.ArrowInvalid) as err:
                    problem = f"unreadable ({err})"
            if problem is not None:
                report.sums_rebuilt = f"{sums}: {problem}"
            elif report.dropped_epochs or report.manifest_rebuilt:
                report.sums_rebuilt = "epochs were dropped or the manifest rebuilt"
            if report.sums_rebuilt:
                sums.unlink(missing_ok=True)
        if manifest is not None and changed:
            _save_manifest(root, manifest)
    if report.changed:
        log.warning(
            "light-curve store repaired",
            extra={
                "store": str(root),
                "dropped_epochs": report.dropped_epochs,
                "dropped_runs": report.dropped_runs,
                "manifest_rebuilt": report.manifest_rebuilt,
                "sums_rebuilt": report.sums_rebuilt,
            },
        )
    # opening reconciles the running sums with the (repaired) manifest, and
    # raises StateError naming the fix for a store of another format version
    store = LightcurveStore(root, lock_timeout_s=lock_timeout_s)
    report.epochs = set(store.epochs()["epoch_id"].tolist())
    return report
