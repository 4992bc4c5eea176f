"""Variability analysis: eta, V and the ESE search over light curves.

`analyze_lightcurves` works on a table of measurements; `analyze_store`
takes eta and V from the light-curve store's running sums and searches the
likely sources' calibrated light curves for ESEs. The streaming
``variability_analyzer`` service calls `analyze_store` when it wants the
current list of variables; the CLI calls the same functions. Ingest (CSV ->
calibrated epochs in the store) is in ``_ingest.py``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
from astropy.table import Table, vstack
from numpy.typing import NDArray

from dsa110_contimg.tables import VARIABILITY_RESULTS
from dsa110_contimg.utils.config._views import section_values
from dsa110_contimg.variability._binning import bin_lightcurves
from dsa110_contimg.variability._ese import EseGrid, search_ese
from dsa110_contimg.variability._metrics import lightcurve_metrics, metrics_from_sums

if TYPE_CHECKING:
    from dsa110_contimg.lightcurves import LightcurveStore
    from dsa110_contimg.utils.config import VariabilityConfig

__all__ = [
    "RESULT_COLUMNS",
    "analyze_lightcurves",
    "analyze_store",
]

log = logging.getLogger(__name__)

RESULT_COLUMNS = VARIABILITY_RESULTS.names
"""Columns of :func:`analyze_lightcurves` and :func:`analyze_store`.

``ese_incomplete`` marks a significant dip that is not a candidate because
the light curve cannot show it whole: cut by an edge or a gap, or too long
to leave the steady flux around it visible.
"""

_BOOL_COLUMNS = VARIABILITY_RESULTS.names_of("bool")
_FETCH_BATCH = 5000


def _default_config() -> VariabilityConfig:
    from dsa110_contimg.utils.config import VariabilityConfig

    return VariabilityConfig()


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
