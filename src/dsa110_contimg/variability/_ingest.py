"""Photometry into the light-curve store: read, check, calibrate, store.

The streaming ``variability_analyzer`` service calls `ingest_epoch_table`
after each block and the CLI's ``ingest-photometry`` calls
`ingest_photometry_epochs`; both calibrate each epoch against the store's
history (`calibrate_epoch`) before storing it. CSV files are read by the one
photometry-table reader (`dsa110_contimg.tables.read_photometry_table`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from astropy.table import Table

from dsa110_contimg.exceptions import InputDataError
from dsa110_contimg.tables import read_photometry_rows, split_epochs
from dsa110_contimg.variability._analysis import _default_config
from dsa110_contimg.variability._flux_scale import calibrate_epoch
from dsa110_contimg.variability._metrics import metrics_from_sums

if TYPE_CHECKING:
    from dsa110_contimg.lightcurves import LightcurveStore
    from dsa110_contimg.utils.config import VariabilityConfig

__all__ = [
    "EpochIngestResult",
    "read_measurements_csv",
    "ingest_epoch_table",
    "ingest_photometry_csv",
    "ingest_photometry_epochs",
]

log = logging.getLogger("dsa110_contimg.variability._analysis")


@dataclass(frozen=True, slots=True)
class EpochIngestResult:
    """What happened to one epoch.

    Parameters
    ----------
    epoch_id : str
        The epoch.
    n_rows : int
        Measurements stored.
    scale : float
        Flux-scale factor the measurements were divided by (NaN if unknown).
    scale_err : float
        Its one-sigma uncertainty.
    n_ref_used : int
        Reference sources that set the scale.
    is_anchor : bool
        The epoch's sources had no history, so it anchors the scale (1).
    duration_s : float
        Wall time of calibration, storage and metric update, seconds.
    """

    epoch_id: str
    n_rows: int
    scale: float
    scale_err: float
    n_ref_used: int
    is_anchor: bool
    duration_s: float


def read_measurements_csv(path: Path) -> Table:
    """Read a measurement CSV (photometry table or light curves), skipping bad rows.

    Parameters
    ----------
    path : Path
        CSV with a header line; needs ``source_name, mjd, flux_jy,
        flux_err_jy``; ``flags``, ``rms_jy``, ``pb``, ``peak_jy``,
        ``image_path``, ``image_kind``, ``epoch_id`` and other columns are
        kept when present, typed as `dsa110_contimg.tables` declares them.

    Returns
    -------
    astropy.table.Table
        One row per valid line.

    Raises
    ------
    InputDataError
        The file is missing or unreadable, lacks a required column, has no
        valid row, an unflagged row without a positive error, or a source
        measured twice at one time on one image.

    Warns
    -----
    DataQualityWarning
        Rows with the wrong number of fields, an empty source name or a
        required value that is not a number were skipped (their line
        numbers are given).
    """
    path = Path(path)
    table, lines = read_photometry_rows(path)
    if not len(table):
        msg = f"{path}: no valid measurement rows"
        raise InputDataError(msg)
    _check_measurements(path, table, lines)
    return table


def _check_measurements(path: Path, table: Table, lines: np.ndarray) -> None:
    """Refuse measurements that would make every variability statistic wrong.

    Unflagged rows need a finite, positive ``flux_err_jy`` (a zero error gives
    an infinite weight), and one source may not have two unflagged rows at the
    same MJD of the same image kind and image (a duplicated epoch counts
    twice in eta and V). Flagged rows (``flags != 0``) are exempt: they are
    not analysed.
    """
    flags = table["flags"] if "flags" in table.colnames else np.zeros(len(table))
    used = (np.asarray(flags) == 0) & np.isfinite(np.asarray(table["flux_jy"]))
    err = np.asarray(table["flux_err_jy"], dtype=float)
    bad = np.flatnonzero(used & ~(np.isfinite(err) & (err > 0)))
    if bad.size:
        shown = ", ".join(str(n) for n in lines[bad[:5]])
        msg = (
            f"{path}: {bad.size} unflagged row(s) with flux_err_jy <= 0 or not a "
            f"number (lines {shown}{', ...' if bad.size > 5 else ''}); every "
            "measurement needs a positive 1-sigma error: fix the table or set "
            "those rows' flags"
        )
        raise InputDataError(msg)
    kind = (
        np.asarray(table["image_kind"])
        if "image_kind" in table.colnames
        else np.full(len(table), "")
    )
    ident = next((c for c in ("image_id", "image_path") if c in table.colnames), None)
    image = np.asarray(table[ident]) if ident else np.full(len(table), "")
    keys = [
        (str(n), float(m), str(k), str(i))
        for n, m, k, i in zip(
            table["source_name"], table["mjd"], kind, image, strict=True
        )
    ]
    seen: dict[tuple[str, float, str, str], int] = {}
    for k in np.flatnonzero(used):
        first = seen.setdefault(keys[k], int(lines[k]))
        if first != int(lines[k]):
            name, mjd, _, _ = keys[k]
            msg = (
                f"{path}: source {name} has two unflagged measurements at MJD "
                f"{mjd!r} (lines {first} and {lines[k]}); an epoch must appear "
                "once per source: remove the duplicate rows"
            )
            raise InputDataError(msg)


def ingest_epoch_table(
    store: LightcurveStore,
    table: Table,
    *,
    epoch_id: str,
    cfg: VariabilityConfig | None = None,
    replace: bool = False,
) -> EpochIngestResult:
    """Calibrate one epoch against the store's history and store it.

    Parameters
    ----------
    store : LightcurveStore
        The light-curve store.
    table : astropy.table.Table
        The epoch's measurements (photometry-table columns).
    epoch_id : str
        Identity of the epoch.
    cfg : VariabilityConfig, optional
        Reference selection, floor and clipping; default the code defaults.
    replace : bool
        Re-process an epoch already stored (it is calibrated against the
        other epochs only, and its rows and running sums are replaced).

    Returns
    -------
    EpochIngestResult
        Rows stored and the epoch's flux scale.

    Raises
    ------
    InputDataError
        See :meth:`LightcurveStore.ingest_epoch`.
    """
    cfg = cfg or _default_config()
    started = time.perf_counter()
    exclude = epoch_id if replace and store.has_epoch(epoch_id) else None
    if exclude is None and store.has_epoch(epoch_id):
        msg = (
            f"epoch {epoch_id} is already in the light-curve store {store.root}; "
            "pass replace=True (CLI: --replace) to re-process it"
        )
        raise InputDataError(msg)
    history = metrics_from_sums(store.summary(exclude_epoch=exclude), min_epochs=2)
    calibrated, scale = calibrate_epoch(
        table,
        history,
        systematic_floor_frac=cfg.systematic_floor_frac,
        min_snr=cfg.ref_min_snr,
        min_epochs=cfg.ref_min_epochs,
        max_eta=cfg.ref_max_eta,
        max_v=cfg.ref_max_v,
        max_resolved_frac=cfg.ref_max_resolved_frac,
        min_n_ref=cfg.ref_min_n,
        clip_sigma=cfg.ref_clip_sigma,
        max_iter=cfg.ref_max_iter,
        epoch_id=epoch_id,
    )
    n_rows = store.ingest_epoch(epoch_id, calibrated, replace=replace)
    result = EpochIngestResult(
        epoch_id,
        n_rows,
        scale.scale,
        scale.scale_err,
        scale.n_used,
        scale.is_anchor,
        time.perf_counter() - started,
    )
    log.info(
        "epoch ingested",
        extra={
            "epoch_id": epoch_id,
            "n_rows": n_rows,
            "scale": scale.scale,
            "scale_err": scale.scale_err,
            "n_ref_used": scale.n_used,
            "duration_s": result.duration_s,
        },
    )
    return result


def ingest_photometry_csv(
    store: LightcurveStore,
    csv_path: Path,
    *,
    epoch_id: str,
    cfg: VariabilityConfig | None = None,
    replace: bool = False,
    kind: str | None = None,
) -> EpochIngestResult:
    """Read a photometry CSV (one epoch), calibrate it and add it to the store.

    Parameters
    ----------
    store : LightcurveStore
        The light-curve store.
    csv_path : Path
        Photometry table written by the photometry stage.
    epoch_id : str
        Identity of the epoch (e.g. the mosaic's timestamp).
    cfg : VariabilityConfig, optional
        Variability settings; default the code defaults.
    replace : bool
        Re-process an epoch already stored.
    kind : {'mosaic', 'image'}, optional
        Keep only the rows of this ``image_kind``. Without it the file must
        hold one product: a table mixing images and mosaics is an error.

    Returns
    -------
    EpochIngestResult
        Rows stored and the epoch's flux scale.

    Raises
    ------
    InputDataError
        Unreadable or malformed file, no valid row, rows of several images
        or image kinds, or the epoch (or one of its images) is already stored
        and ``replace`` is False.
    """
    table = read_measurements_csv(Path(csv_path))
    if kind is not None and "image_kind" in table.colnames:
        table = table[np.asarray(table["image_kind"]).astype(str) == kind]
    return ingest_epoch_table(store, table, epoch_id=epoch_id, cfg=cfg, replace=replace)


def ingest_photometry_epochs(
    store: LightcurveStore,
    csv_path: Path,
    *,
    kind: str = "mosaic",
    epoch_id: str | None = None,
    cfg: VariabilityConfig | None = None,
    replace: bool = False,
) -> list[EpochIngestResult]:
    """Store each image or mosaic of a photometry CSV as its own epoch.

    Parameters
    ----------
    store : LightcurveStore
        The light-curve store.
    csv_path : Path
        A photometry table (e.g. a block's ``photometry_block_<id>.csv``,
        which holds its images' rows and its mosaic's).
    kind : {'mosaic', 'image'}
        Which products are the epochs: the mosaic (default; what the
        streaming analyser stores) or each image. Rows of the other kind are
        left out, so an epoch never mixes them.
    epoch_id : str, optional
        Name of the epoch when the table holds one product of ``kind``;
        default `~dsa110_contimg.tables.epoch_id`
        (product name, i.e. time, and strip). A table without an
        ``image_kind`` column is one epoch, named by this or by its
        ``epoch_id`` column.
    cfg : VariabilityConfig, optional
        Variability settings; default the code defaults.
    replace : bool
        Re-process epochs already stored.

    Returns
    -------
    list of EpochIngestResult
        One per epoch, in epoch-id order.

    Raises
    ------
    InputDataError
        No row of ``kind`` (the message counts the kinds there are),
        ``epoch_id`` given for a table of several products, no epoch id
        for a table without ``image_kind``, or see `ingest_epoch_table`.
    """
    path = Path(csv_path)
    table = read_measurements_csv(path)
    if "image_kind" not in table.colnames:
        names = (
            sorted(set(np.asarray(table["epoch_id"]).astype(str).tolist()))
            if ("epoch_id" in table.colnames)
            else []
        )
        chosen = epoch_id or (names[0] if len(names) == 1 else None)
        if chosen is None:
            msg = (
                f"{path}: no image_kind column and no single epoch_id value; "
                "name the epoch (CLI: --epoch-id)"
            )
            raise InputDataError(msg)
        return [
            ingest_epoch_table(store, table, epoch_id=chosen, cfg=cfg, replace=replace)
        ]
    epochs = split_epochs(table, kind)
    if not epochs:
        kinds, counts = np.unique(
            np.asarray(table["image_kind"]).astype(str), return_counts=True
        )
        held = ", ".join(f"{n} {k} row(s)" for k, n in zip(kinds, counts, strict=True))
        msg = (
            f"{path}: no {kind} rows (it holds {held or 'no rows'}); choose the "
            "kind of epoch it has (CLI: --kind image or --kind mosaic)"
        )
        raise InputDataError(msg)
    if epoch_id is not None:
        if len(epochs) > 1:
            msg = (
                f"{path}: {len(epochs)} {kind} products ({', '.join(list(epochs)[:3])}"
                f"{', ...' if len(epochs) > 3 else ''}) are {len(epochs)} epochs, "
                "one name cannot cover them; leave out --epoch-id to name each "
                "by its time and strip"
            )
            raise InputDataError(msg)
        epochs = {epoch_id: next(iter(epochs.values()))}
    return [
        ingest_epoch_table(store, rows, epoch_id=name, cfg=cfg, replace=replace)
        for name, rows in epochs.items()
    ]
