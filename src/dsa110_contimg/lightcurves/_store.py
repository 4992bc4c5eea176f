"""Parquet light-curve store: one file per epoch, partitioned by date, read with DuckDB.

Layout under the store root::

    _manifest.json                        epochs, their files and tokens; compaction
    _writer.lock                          held (flock) by the process writing
    _summary.parquet                      per-source running sums (see _summary.py)
    epochs/date=YYYY-MM-DD/<epoch_id>.parquet   one file per epoch, sorted by source
    by_source/L<level>-<n>/data_*.parquet runs: merged epochs sorted by source

Every file is written under a temporary name and renamed, so readers see an
epoch either entirely or not at all, and re-processing an epoch replaces its
file. The epoch files are the truth; the runs are a derived index, merged
size-tiered as epochs arrive and all at once by
:meth:`LightcurveStore.compact`, that makes one source's light curve a read of
one row group per run instead of one per epoch.

Every write (ingest, delete, compaction, the repair of interrupted running
sums) holds an exclusive ``flock`` on ``_writer.lock`` and, once it has it,
re-reads the manifest and sums if another writer changed them, so writers in
several processes (the streaming analyser and an operator's
``ingest-photometry``) take turns instead of overwriting each other's
manifest; the kernel drops the lock of a process that dies. Any number of
processes may read the store without the lock.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
import uuid
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table
from numpy.typing import NDArray

from dsa110_contimg._optional import require
from dsa110_contimg.exceptions import (
    DataQualityWarning,
    InputDataError,
    StateError,
)
from dsa110_contimg.lightcurves._compaction import _StoreCompaction
from dsa110_contimg.lightcurves._lock import file_lock, locked
from dsa110_contimg.lightcurves._query import _StoreQueries
from dsa110_contimg.lightcurves._schema import (
    SCHEMA,
    mjd_to_date,
    prepare_epoch,
    to_astropy,
)
from dsa110_contimg.lightcurves._summary import SUM_FIELDS, RunningSums, usable_rows
from dsa110_contimg.utils.storage import publish, write_errors_as_resource

pa = require("pyarrow", "lightcurves")
pq = require("pyarrow.parquet", "lightcurves")
pc = require("pyarrow.compute", "lightcurves")

__all__ = ["LightcurveStore"]

log = logging.getLogger(__name__)

_EPOCH_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+-]{0,127}$")
_MANIFEST = "_manifest.json"
_SUMMARY = "_summary.parquet"
# 2: rows carry image_id, freq_hz, snr, pointing_dec_deg and upper_limit_jy
_FORMAT_VERSION = 2
EPOCH_TOKEN_KEY = "token"
"""Key of an epoch file's Parquet metadata holding its manifest token."""


def _stat_key(st: os.stat_result) -> tuple[int, int, int]:
    """Identity of a file version: every write renames a new file (a new inode)."""
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary, fsync it, rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    with write_errors_as_resource(path, "light-curve store manifest"):
        tmp.write_bytes(data)
        publish(tmp, path)


class LightcurveStore(_StoreQueries, _StoreCompaction):
    """Light curves of every source, stored as one Parquet file per epoch.

    Parameters
    ----------
    root : Path
        Store directory; created when it does not exist.
    exclude_flags : int
        Photometry flag bits whose measurements are left out of the running
        sums (they are still stored).
    row_group_size : int
        Rows per Parquet row group; small groups make single-source reads cheap.
    auto_compact_epochs : int
        Fan-in of the automatic size-tiered merging of epochs into runs
        sorted by source (see :meth:`compact`); below 2 disables it.
    duckdb_memory_limit : str
        Memory DuckDB may use for queries and compaction (spills to disk above).
    lock_timeout_s : float
        How long a write waits for another process's write to finish before
        raising `StateError`, seconds.
    readonly : bool
        A reader (the web API): nothing is created or written in the store
        (no directory, lock, repaired sums or DuckDB spill files there); sums
        that disagree with the manifest are repaired in memory only, and every
        write raises `StateError`.

    Notes
    -----
    An epoch is written with :meth:`ingest_epoch`; its rows live in
    ``epochs/date=<UTC date of its median mjd>/<epoch_id>.parquet``. The store
    keeps per-source running sums of the calibrated fluxes
    (:class:`~dsa110_contimg.lightcurves.RunningSums`), updated as epochs are
    added, replaced or deleted, from which eta and V follow without reading
    any light curve.
    """

    def __init__(
        self,
        root: Path,
        *,
        exclude_flags: int = 3,
        row_group_size: int = 4096,
        auto_compact_epochs: int = 8,
        duckdb_memory_limit: str = "2GB",
        lock_timeout_s: float = 600.0,
        readonly: bool = False,
    ) -> None:
        self.root = Path(root)
        self.readonly = bool(readonly)
        self.lock_timeout_s = float(lock_timeout_s)
        self._thread_lock = threading.RLock()  # threads sharing this object
        self._lock_depth = 0
        self.auto_compact_epochs = int(auto_compact_epochs)
        self.exclude_flags = int(exclude_flags)
        self.row_group_size = int(row_group_size)
        self._memory_limit = duckdb_memory_limit
        if self.readonly:
            if not self.root.is_dir():
                msg = f"no light-curve store at {self.root} to read"
                raise StateError(msg)
        else:
            self.root.mkdir(parents=True, exist_ok=True)
        self._manifest: dict[str, Any] | None = None
        self._manifest_stat: tuple[int, int, int] | None = None
        self._plan: dict[str, Any] | None = None
        self._sums: RunningSums | None = None
        self._applied: dict[str, str] = {}
        self._sums_stat: tuple[int, int, int] | None = None
        self._con: Any = None
        self._rg_cache: dict[str, tuple[str, Any, list[str], list[str]]] = {}
        self._reconcile()

    # ------------------------------------------------------------------ locking

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Hold the store's writer lock (re-entrant); re-read the state on entry.

        Raises
        ------
        StateError
            Another process held the lock for longer than ``lock_timeout_s``.
        """
        if self.readonly:
            msg = (
                f"light-curve store {self.root} is open read-only (a reader such "
                "as the web API); write through the pipeline's own store"
            )
            raise StateError(msg)
        with self._thread_lock:
            if self._lock_depth:
                self._lock_depth += 1
                try:
                    yield
                finally:
                    self._lock_depth -= 1
                return
            with file_lock(self.root, self.lock_timeout_s):
                self._lock_depth = 1
                try:
                    # Another process may have written since this one last
                    # looked: the state is re-read when its file's (inode,
                    # mtime, size) changed.
                    self._reconcile_locked()
                    yield
                finally:
                    self._lock_depth = 0

    # ------------------------------------------------------------------ metadata

    def _manifest_path(self) -> Path:
        return self.root / _MANIFEST

    def _load_manifest(self) -> dict[str, Any]:
        path = self._manifest_path()
        try:
            st = path.stat()
        except FileNotFoundError:
            if self._manifest is None:
                self._manifest = {
                    "format_version": _FORMAT_VERSION,
                    "epochs": {},
                    "runs": [],
                    "run_counter": 0,
                }
            return self._manifest
        key = _stat_key(st)
        if self._manifest is None or key != self._manifest_stat:
            try:
                manifest = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as err:
                msg = f"light-curve store manifest {path} is unreadable: {err}"
                raise StateError(msg) from err
            if manifest.get("format_version") != _FORMAT_VERSION:
                msg = (
                    f"{path}: store format {manifest.get('format_version')} is not "
                    f"{_FORMAT_VERSION}; rebuild the store with this version"
                )
                raise StateError(msg)
            self._manifest, self._manifest_stat, self._plan = manifest, key, None
        return self._manifest

    def _save_manifest(self, manifest: dict[str, Any]) -> None:
        path = self._manifest_path()
        _atomic_write_bytes(path, json.dumps(manifest, sort_keys=True).encode())
        st = path.stat()
        self._manifest, self._manifest_stat = manifest, _stat_key(st)
        self._plan = None

    def _epoch_file(self, entry: Mapping[str, Any]) -> Path:
        return self.root / entry["path"]

    # ------------------------------------------------------------------ summary

    def _load_sums(self) -> RunningSums:
        path = self.root / _SUMMARY
        try:
            st = path.stat()
        except FileNotFoundError:
            if self._sums is None:
                self._sums, self._applied = RunningSums.empty(), {}
            return self._sums
        key = _stat_key(st)
        if self._sums is None or key != self._sums_stat:
            table = pq.read_table(path)
            meta = table.schema.metadata or {}
            self._applied = json.loads(meta.get(b"applied", b"{}"))
            names = table.column("source_name").to_numpy(zero_copy_only=False)
            arrays = {
                f: table.column(f).to_numpy().astype(np.float64)
                for f in ("shift_jy", *SUM_FIELDS)
            }
            self._sums = RunningSums(np.asarray(names, dtype=str), **arrays)
            self._sums_stat = key
        return self._sums

    def _save_sums(self) -> None:
        sums = self._load_sums()
        columns = {"source_name": pa.array(sums.source_name, type=pa.string())}
        for field in ("shift_jy", *SUM_FIELDS):
            columns[field] = pa.array(getattr(sums, field), type=pa.float64())
        table = pa.table(columns).replace_schema_metadata(
            {"applied": json.dumps(self._applied, sort_keys=True)}
        )
        path = self.root / _SUMMARY
        tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
        with write_errors_as_resource(path, "light-curve sums (Parquet)"):
            pq.write_table(table, tmp, compression="zstd")
            publish(tmp, path)
        st = path.stat()
        self._sums_stat = _stat_key(st)

    def _contribution(self, table: Any) -> tuple[NDArray, NDArray, NDArray]:
        flux = np.asarray(table["flux_corr_jy"], dtype=np.float64)
        err = np.asarray(table["flux_corr_err_jy"], dtype=np.float64)
        flags = np.asarray(table["flags"])
        ok = usable_rows(flux, err, flags, exclude_flags=self.exclude_flags)
        names = np.asarray(table["source_name"], dtype=str)
        return names[ok], flux[ok], err[ok]

    def _apply(self, epoch_id: str, table: Any, token: str | None) -> None:
        """Add (token given) or remove (token None) an epoch's rows in the sums."""
        sums = self._load_sums()
        names, flux, err = self._contribution(table)
        sums.update(names, flux, err, sign=1.0 if token else -1.0)
        if token:
            self._applied[epoch_id] = token
        else:
            self._applied.pop(epoch_id, None)
        if not self.readonly:  # a reader keeps the repaired sums in memory
            self._save_sums()

    def _reconcile(self) -> None:
        """Repair the running sums (under the writer lock) if they need it."""
        epochs = self._load_manifest()["epochs"]
        self._load_sums()
        if any(self._applied.get(e) != v["token"] for e, v in epochs.items()) or any(
            e not in epochs for e in self._applied
        ):
            if self.readonly:  # the writer repairs the files; a reader its copy
                with self._thread_lock:
                    self._reconcile_locked()
                return
            with self._writing():
                pass  # entering the lock reconciles

    def _reconcile_locked(self) -> None:
        """Bring the running sums in line with the manifest after an interruption."""
        epochs = self._load_manifest()["epochs"]
        self._load_sums()
        stale = [
            e
            for e, tok in self._applied.items()
            if epochs.get(e, {}).get("token") != tok
        ]
        if stale:
            warnings.warn(
                f"light-curve store {self.root}: running sums disagree with the "
                f"manifest for {len(stale)} epoch(s) (interrupted write); "
                "rebuilding them from the epoch files",
                DataQualityWarning,
                stacklevel=3,
            )
            self._sums, self._applied = RunningSums.empty(), {}
        for epoch_id, entry in sorted(epochs.items()):
            if self._applied.get(epoch_id) != entry["token"]:
                self._apply(epoch_id, self._read_epoch_file(entry), entry["token"])

    # ------------------------------------------------------------------ ingest

    @locked
    def ingest_epoch(self, epoch_id: str, table: Any, *, replace: bool = False) -> int:
        """Store one epoch's measurements; return the number of rows stored.

        Parameters
        ----------
        epoch_id : str
            Identity of the epoch, unique across strips and times (the
            pipeline uses ``dsa110_contimg.tables.epoch_id``: the image or mosaic
            name, which holds its time, and the strip's declination); letters,
            digits and ``_ . : + -``.
        table : astropy.table.Table or mapping of arrays
            Measurements: at least ``source_name, mjd, flux_jy, flux_err_jy``;
            optionally ``rms_jy, pb, flags, image_path, image_kind, image_id,
            freq_hz, snr, pointing_dec_deg, upper_limit_jy`` and the
            calibration columns ``scale, scale_err, flux_corr_jy,
            flux_corr_err_jy`` (all four or none; none means scale 1).
        replace : bool
            Replace an epoch that is already stored (re-processing). Without
            it, a stored epoch is an error.

        Returns
        -------
        int
            Rows written.

        Raises
        ------
        InputDataError
            A required column is missing, no row is valid, the rows mix image
            kinds or images (one epoch is one image or one mosaic), the epoch
            is already stored and ``replace`` is False, or an image of this
            epoch is already stored under another epoch.
        StateError
            Another process kept the writer lock past ``lock_timeout_s``.

        Warns
        -----
        DataQualityWarning
            Rows with an empty name or non-finite mjd, and exact duplicates
            (same source, image and mjd), were dropped.
        """
        if not _EPOCH_ID_RE.match(str(epoch_id)):
            msg = f"epoch_id {epoch_id!r} must match {_EPOCH_ID_RE.pattern}"
            raise ValueError(msg)
        arrow, mjd, images = prepare_epoch(epoch_id, table)
        manifest = json.loads(json.dumps(self._load_manifest()))
        old = manifest["epochs"].get(epoch_id)
        if old is not None and not replace:
            msg = (
                f"epoch {epoch_id} is already in the light-curve store "
                f"({old['n_rows']} rows, {old['date']}); pass replace=True to "
                "re-process it"
            )
            raise InputDataError(msg)
        self._check_images(epoch_id, images, manifest)
        day = mjd_to_date(float(np.median(mjd)))
        relative = f"epochs/date={day}/{epoch_id}.parquet"
        if old is not None:  # remove first, so an interruption is recoverable
            self._apply(epoch_id, self._read_epoch_file(old), None)
        token = uuid.uuid4().hex
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{token[:8]}")
        # the token in the file's metadata ties it to its manifest entry: the
        # start-up repair (_repair.py) tells a stale or foreign file from it
        stamped = arrow.replace_schema_metadata({EPOCH_TOKEN_KEY: token})
        with write_errors_as_resource(path, "light-curve epoch (Parquet)"):
            pq.write_table(
                stamped, tmp, row_group_size=self.row_group_size, compression="zstd"
            )
            publish(tmp, path)
        manifest["epochs"][epoch_id] = {
            "date": day,
            "path": relative,
            "n_rows": arrow.num_rows,
            "mjd_min": float(mjd.min()),
            "mjd_max": float(mjd.max()),
            "token": token,
            "image_paths": [p for p in images.tolist() if p],
        }
        self._save_manifest(manifest)
        self._apply(epoch_id, arrow, token)
        if old is not None and old["path"] != relative:
            self._epoch_file(old).unlink(missing_ok=True)
        self._maybe_compact()
        log.info(
            "epoch stored",
            extra={
                "epoch_id": epoch_id,
                "n_rows": arrow.num_rows,
                "replaced": bool(old),
            },
        )
        return int(arrow.num_rows)

    @staticmethod
    def _check_images(
        epoch_id: str, images: NDArray, manifest: Mapping[str, Any]
    ) -> None:
        wanted = {p for p in images.tolist() if p}
        if not wanted:
            return
        for other, entry in manifest["epochs"].items():
            shared = wanted.intersection(entry.get("image_paths", ()))
            if other != epoch_id and shared:
                msg = (
                    f"epoch {epoch_id}: image {sorted(shared)[0]} is already stored "
                    f"as epoch {other}; re-process that epoch instead (replace=True) "
                    "so no measurement is stored twice"
                )
                raise InputDataError(msg)

    @locked
    def delete_epoch(self, epoch_id: str) -> int:
        """Remove an epoch; return the number of rows removed (0 if absent)."""
        manifest = json.loads(json.dumps(self._load_manifest()))
        entry = manifest["epochs"].pop(epoch_id, None)
        if entry is None:
            return 0
        self._apply(epoch_id, self._read_epoch_file(entry), None)
        self._save_manifest(manifest)
        self._epoch_file(entry).unlink(missing_ok=True)
        return int(entry["n_rows"])

    # ------------------------------------------------------------------ reading

    def _read_epoch_file(self, entry: Mapping[str, Any]) -> Any:
        path = self._epoch_file(entry)
        try:
            return pq.read_table(path, schema=SCHEMA)
        except (OSError, pa.ArrowInvalid) as err:
            msg = f"light-curve store epoch file {path} is unreadable: {err}"
            raise StateError(msg) from err

    def has_epoch(self, epoch_id: str) -> bool:
        """Return True when the epoch is stored."""
        return epoch_id in self._load_manifest()["epochs"]

    def epoch_table(self, epoch_id: str) -> Table:
        """Return one stored epoch's rows (columns `STORE_COLUMNS`)."""
        entry = self._load_manifest()["epochs"].get(epoch_id)
        if entry is None:
            msg = f"epoch {epoch_id} is not in the light-curve store {self.root}"
            raise InputDataError(msg)
        return to_astropy(self._read_epoch_file(entry))

    def epochs(self) -> Table:
        """Return one row per epoch: epoch_id, date, n_rows, mjd_min, mjd_max."""
        entries = sorted(
            self._load_manifest()["epochs"].items(), key=lambda kv: kv[1]["mjd_min"]
        )
        return Table(
            {
                "epoch_id": np.array([e for e, _ in entries], dtype=str),
                "date": np.array([v["date"] for _, v in entries], dtype=str),
                "n_rows": np.array([v["n_rows"] for _, v in entries], dtype=np.int64),
                "mjd_min": np.array([v["mjd_min"] for _, v in entries], dtype=float),
                "mjd_max": np.array([v["mjd_max"] for _, v in entries], dtype=float),
            }
        )

    def n_rows(self) -> int:
        """Return the number of stored measurements."""
        return int(sum(e["n_rows"] for e in self._load_manifest()["epochs"].values()))

    def summary(self, *, exclude_epoch: str | None = None) -> RunningSums:
        """Return a copy of the per-source running sums.

        Parameters
        ----------
        exclude_epoch : str, optional
            Leave this epoch's contribution out (used to calibrate an epoch
            that is being re-processed against the other epochs only).
        """
        sums = self._load_sums()
        copy = RunningSums(
            sums.source_name.copy(),
            sums.shift_jy.copy(),
            *(getattr(sums, f).copy() for f in SUM_FIELDS),
        )
        entry = self._load_manifest()["epochs"].get(exclude_epoch or "")
        if entry is not None and exclude_epoch in self._applied:
            names, flux, err = self._contribution(self._read_epoch_file(entry))
            copy.update(names, flux, err, sign=-1.0)
        return copy
