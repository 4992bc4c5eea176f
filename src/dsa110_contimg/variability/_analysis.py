"""Variability analysis at the edges: photometry CSV -> store -> metrics and ESEs.

These functions join the pure pieces (flux scale, metrics, ESE search) to the
light-curve store. The streaming ``variability_analyzer`` service calls
:func:`ingest_photometry_csv` after each mosaic and :func:`analyze_store` when
it wants the current list of variables; the CLI calls the same functions.
"""

from __future__ import annotations

import csv
import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from astropy.table import Table, vstack
from numpy.typing import NDArray

from dsa110_contimg.exceptions import DataQualityWarning, InputDataError
from dsa110_contimg.utils.config._views import section_values
from dsa110_contimg.variability._binning import bin_lightcurves
from dsa110_contimg.variability._ese import EseGrid, search_ese
from dsa110_contimg.variability._flux_scale import calibrate_epoch
from dsa110_contimg.variability._metrics import lightcurve_metrics, metrics_from_sums

if TYPE_CHECKING:
    from dsa110_contimg.lightcurves import LightcurveStore
    from dsa110_contimg.utils.config import VariabilityConfig

__all__ = [
    "RESULT_COLUMNS",
    "EpochIngestResult",
    "read_measurements_csv",
    "ingest_epoch_table",
    "ingest_photometry_csv",
    "ingest_photometry_epochs",
    "analyze_lightcurves",
    "analyze_store",
]

log = logging.getLogger(__name__)

RESULT_COLUMNS = (
    "source_name",
    "n_epochs",
    "mean_flux_jy",
    "eta",
    "v",
    "is_variable",
    "ese_candidate",
    "ese_significance",
    "ese_depth",
    "ese_duration_days",
    "ese_center_mjd",
    "ese_flank_ratio",
    "ese_mean_flux_jy",
    "ese_delta_bic",
    "ese_variance_explained",
    "ese_dip_order",
    "ese_asymmetry",
    "ese_flank_offset",
    "ese_incomplete",
)
"""Columns of :func:`analyze_lightcurves` and :func:`analyze_store`.

``ese_incomplete`` marks a significant dip that is not a candidate because
the light curve cannot show it whole: cut by an edge or a gap, or too long
to leave the steady flux around it visible.
"""

_BOOL_COLUMNS = ("ese_candidate", "ese_incomplete")

_REQUIRED = ("source_name", "mjd", "flux_jy", "flux_err_jy")
_STRING_COLUMNS = ("source_name", "image_path", "image_kind", "image_id", "epoch_id")
_INT_COLUMNS = ("flags",)
_FETCH_BATCH = 5000


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


def _default_config() -> VariabilityConfig:
    from dsa110_contimg.utils.config import VariabilityConfig

    return VariabilityConfig()


def read_measurements_csv(path: Path) -> Table:
    """Read a measurement CSV (photometry table or light curves), skipping bad rows.

    Parameters
    ----------
    path : Path
        CSV with a header line; needs ``source_name, mjd, flux_jy,
        flux_err_jy``; ``flags``, ``rms_jy``, ``pb``, ``peak_jy``,
        ``image_path``, ``image_kind``, ``epoch_id`` and other numeric
        columns are kept when present.

    Returns
    -------
    astropy.table.Table
        One row per valid line.

    Raises
    ------
    InputDataError
        The file is missing or unreadable, lacks a required column, or has
        no valid row.

    Warns
    -----
    DataQualityWarning
        Rows with the wrong number of fields, an empty source name or a
        required value that is not a number were skipped (their line
        numbers are given).
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
    missing = [c for c in _REQUIRED if c not in header]
    if missing:
        msg = (
            f"{path}: header lacks column(s) {', '.join(missing)}; "
            f"need {', '.join(_REQUIRED)}"
        )
        raise InputDataError(msg)
    columns, bad_lines, line_numbers = _parse_rows(rows[1:], header)
    if bad_lines:
        shown = ", ".join(str(n) for n in bad_lines[:5])
        warnings.warn(
            f"{path}: skipped {len(bad_lines)} malformed row(s) (lines {shown}"
            f"{', ...' if len(bad_lines) > 5 else ''}): wrong field count, empty "
            "source_name or a non-numeric required value",
            DataQualityWarning,
            stacklevel=2,
        )
    if not columns["source_name"]:
        msg = f"{path}: no valid measurement rows"
        raise InputDataError(msg)
    table = _to_table(columns)
    _check_measurements(path, table, np.asarray(line_numbers))
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


def _parse_rows(
    rows: list[list[str]], header: list[str]
) -> tuple[dict[str, list], list[int], list[int]]:
    columns: dict[str, list] = {name: [] for name in header}
    bad: list[int] = []
    kept: list[int] = []
    for line_number, row in enumerate(rows, start=2):
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            bad.append(line_number)
            continue
        record = dict(zip(header, (cell.strip() for cell in row), strict=True))
        try:
            values = [float(record[c]) for c in _REQUIRED[1:]]
        except ValueError:
            bad.append(line_number)
            continue
        if not record["source_name"] or not np.isfinite(values[0]):
            bad.append(line_number)
            continue
        for name in header:
            columns[name].append(record[name])
        kept.append(line_number)
    return columns, bad, kept


def _to_table(columns: dict[str, list]) -> Table:
    table = Table()
    for name, cells in columns.items():
        if name in _STRING_COLUMNS:
            table[name] = np.array(cells, dtype=str)
            continue
        values = np.full(len(cells), np.nan)
        for k, cell in enumerate(cells):
            try:
                values[k] = float(cell)
            except ValueError:
                values[k] = np.nan
        if name in _INT_COLUMNS:
            values = np.where(np.isfinite(values), values, 0).astype(np.int32)
        table[name] = values
    return table


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
        default `~dsa110_contimg.pipeline.stages.photometry_stage.epoch_id`
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
    from dsa110_contimg.pipeline.stages.photometry_stage import split_epochs

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


def _grid(cfg: VariabilityConfig) -> EseGrid:
    """Return the ESE grid of the ``variability.ese_*`` keys (`section_values`)."""
    return EseGrid(**section_values(cfg, EseGrid, prefix="ese_"))


def _search(table: Table, cfg: VariabilityConfig) -> Table:
    binned = bin_lightcurves(
        table["source_name"],
        table["mjd"],
        table["flux_jy"],
        table["flux_err_jy"],
        bin_days=cfg.ese_bin_days,
    )
    return search_ese(
        binned,
        grid=_grid(cfg),
        min_significance=cfg.ese_min_significance,
        min_delta_bic=cfg.ese_min_delta_bic,
        min_variance_explained=cfg.ese_min_variance_explained,
        min_points=cfg.ese_min_points,
    )


def _usable(
    names: NDArray, mjd: NDArray, flux: NDArray, err: NDArray, flags: NDArray, mask: int
) -> Table:
    with np.errstate(invalid="ignore"):
        ok = (
            np.isfinite(flux)
            & np.isfinite(err)
            & (err > 0)
            & np.isfinite(mjd)
            & ((flags.astype(np.int64) & mask) == 0)
        )
    return Table(
        {
            "source_name": names[ok],
            "mjd": mjd[ok],
            "flux_jy": flux[ok],
            "flux_err_jy": err[ok],
        }
    )


def _join(metrics: Table, ese: Table, cfg: VariabilityConfig) -> Table:
    out = Table()
    out["source_name"] = metrics["source_name"]
    out["n_epochs"] = metrics["n_epochs"]
    out["mean_flux_jy"] = metrics["mean_flux_jy"]
    out["eta"] = metrics["eta"]
    out["v"] = metrics["v"]
    with np.errstate(invalid="ignore"):
        out["is_variable"] = (np.asarray(metrics["eta"]) >= cfg.eta_threshold) & (
            np.asarray(metrics["v"]) >= cfg.v_threshold
        )
    names = np.asarray(metrics["source_name"], dtype=str)
    ese_names = np.asarray(ese["source_name"], dtype=str)
    idx = np.searchsorted(ese_names, names) if ese_names.size else np.zeros(0, int)
    idx = np.minimum(idx, max(ese_names.size - 1, 0))
    has = (ese_names[idx] == names) if ese_names.size else np.zeros(len(names), bool)
    for column in RESULT_COLUMNS[6:]:
        if column in _BOOL_COLUMNS:
            values = np.asarray(ese[column], dtype=bool)[idx] if has.any() else False
            out[column] = np.where(has, values, False)
        else:
            values = np.asarray(ese[column], dtype=float)[idx] if has.any() else np.nan
            out[column] = np.where(has, values, np.nan)
    return out


def analyze_lightcurves(
    table: Table,
    cfg: VariabilityConfig | None = None,
    *,
    add_systematic_floor: bool = True,
) -> Table:
    """Compute eta, V and the ESE search for light curves given as a table.

    Parameters
    ----------
    table : astropy.table.Table
        Measurements: ``source_name, mjd, flux_jy, flux_err_jy`` and
        optionally ``flags`` (rows with ``cfg.exclude_flags`` bits are left
        out).
    cfg : VariabilityConfig, optional
        Thresholds and the ESE grid; default the code defaults.
    add_systematic_floor : bool
        Add ``cfg.systematic_floor_frac`` to the errors in quadrature (turn
        off for calibrated store rows, whose errors already include it).

    Returns
    -------
    astropy.table.Table
        One row per source, sorted by name, columns `RESULT_COLUMNS`.
    """
    cfg = cfg or _default_config()
    flux = np.asarray(table["flux_jy"], dtype=np.float64)
    floor = cfg.systematic_floor_frac if add_systematic_floor else 0.0
    err = np.hypot(np.asarray(table["flux_err_jy"], dtype=np.float64), floor * flux)
    flags = (
        np.asarray(table["flags"])
        if "flags" in table.colnames
        else np.zeros(len(table), dtype=np.int32)
    )
    usable = _usable(
        np.asarray(table["source_name"], dtype=str),
        np.asarray(table["mjd"], dtype=np.float64),
        flux,
        err,
        flags,
        cfg.exclude_flags,
    )
    metrics = lightcurve_metrics(
        usable["source_name"],
        usable["flux_jy"],
        usable["flux_err_jy"],
        min_epochs=cfg.min_epochs,
    )
    return _join(metrics, _search(usable, cfg), cfg)


def analyze_store(
    store: LightcurveStore,
    cfg: VariabilityConfig | None = None,
    *,
    search_all: bool = False,
) -> Table:
    """Compute eta and V of every stored source and search likely ones for ESEs.

    Parameters
    ----------
    store : LightcurveStore
        The light-curve store.
    cfg : VariabilityConfig, optional
        Thresholds and the ESE grid; default the code defaults.
    search_all : bool
        Search every source for ESEs, not only those whose chi-square excess
        over a constant reaches ``cfg.ese_prefilter_sigma``.

    Returns
    -------
    astropy.table.Table
        One row per source, sorted by name, columns `RESULT_COLUMNS`.

    Notes
    -----
    eta and V come from the running sums, without reading any light curve.
    The ESE search reads the calibrated light curves of the selected sources
    only; the chi-square excess
    :math:`z = (\\eta - 1)\\sqrt{(n-1)/2}` of a steady source is ~N(0, 1).
    """
    cfg = cfg or _default_config()
    metrics = metrics_from_sums(store.summary(), min_epochs=cfg.min_epochs)
    eta = np.asarray(metrics["eta"], dtype=np.float64)
    n = np.asarray(metrics["n_epochs"], dtype=np.float64)
    with np.errstate(invalid="ignore"):
        excess = (eta - 1.0) * np.sqrt(np.maximum(n - 1.0, 0.0) / 2.0)
        wanted = (n >= cfg.ese_min_points) & (
            search_all | (excess >= cfg.ese_prefilter_sigma)
        )
    names = np.asarray(metrics["source_name"], dtype=str)[wanted]
    results = [
        _search(_store_rows(store, names[k : k + _FETCH_BATCH], cfg), cfg)
        for k in range(0, names.size, _FETCH_BATCH)
    ]
    ese = (
        vstack(results)
        if results
        else search_ese(bin_lightcurves([], [], [], []), min_points=cfg.ese_min_points)
    )
    log.info(
        "store analyzed",
        extra={"n_sources": len(metrics), "n_searched": int(names.size)},
    )
    return _join(metrics, ese, cfg)


def _store_rows(
    store: LightcurveStore, names: NDArray, cfg: VariabilityConfig
) -> Table:
    rows = store.lightcurves(names.tolist())
    return _usable(
        np.asarray(rows["source_name"], dtype=str),
        np.asarray(rows["mjd"], dtype=np.float64),
        np.asarray(rows["flux_corr_jy"], dtype=np.float64),
        np.asarray(rows["flux_corr_err_jy"], dtype=np.float64),
        np.asarray(rows["flags"]),
        cfg.exclude_flags,
    )
