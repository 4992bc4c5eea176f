"""PNG plots of light curves and of the eta-V plane (matplotlib, no pyplot state)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table

from dsa110_contimg._optional import require
from dsa110_contimg.variability._ese_model import ese_model

__all__ = ["plot_lightcurve", "plot_eta_v"]

_DPI = 110


def _figure(size: tuple[float, float]) -> tuple[Any, Any]:
    figure_module = require("matplotlib.figure", "plot")
    require("matplotlib.backends.backend_agg", "plot")
    figure = figure_module.Figure(figsize=size, layout="constrained")
    return figure, figure.add_subplot()


def plot_lightcurve(
    lightcurve: Table,
    path: Path,
    *,
    source_name: str,
    result: Table | None = None,
    flux_column: str = "flux_jy",
    err_column: str = "flux_err_jy",
) -> Path:
    """Write a PNG of one light curve with error bars and the ESE fit, if any.

    Parameters
    ----------
    lightcurve : astropy.table.Table
        The source's measurements: ``mjd`` and the flux and error columns.
    path : Path
        Output PNG.
    source_name : str
        Title.
    result : astropy.table.Table, optional
        The source's row of :func:`~dsa110_contimg.variability.analyze_lightcurves`;
        when it is an ESE candidate its model is drawn.
    flux_column, err_column : str
        Columns plotted (e.g. ``flux_corr_jy``, ``flux_corr_err_jy``).

    Returns
    -------
    Path
        ``path``.
    """
    figure, axes = _figure((8.0, 4.0))
    mjd = np.asarray(lightcurve["mjd"], dtype=np.float64)
    flux = np.asarray(lightcurve[flux_column], dtype=np.float64)
    err = np.asarray(lightcurve[err_column], dtype=np.float64)
    axes.errorbar(mjd, flux, yerr=err, fmt=".", ms=3, lw=0.6, color="k", label="data")
    title = source_name
    if result is not None and len(result) and bool(result["ese_candidate"][0]):
        row = result[0]
        t = np.linspace(mjd.min(), mjd.max(), 2000)
        model = ese_model(
            t,
            mean_flux_jy=float(row["ese_mean_flux_jy"]),
            depth=float(row["ese_depth"]),
            duration_days=float(row["ese_duration_days"]),
            center_mjd=float(row["ese_center_mjd"]),
            flank_ratio=float(row["ese_flank_ratio"]),
            **{
                key: float(row[column])
                for key, column in (
                    ("dip_order", "ese_dip_order"),
                    ("asymmetry", "ese_asymmetry"),
                    ("flank_offset", "ese_flank_offset"),
                )
                if column in row.colnames and np.isfinite(row[column])
            },
        )
        axes.plot(t, model, color="tab:red", lw=1.5, label="ESE fit")
        title += (
            f"  ESE: depth {row['ese_depth']:.2f}, "
            f"{row['ese_duration_days']:.0f} d, {row['ese_significance']:.1f} sigma"
        )
    if result is not None and len(result):
        title += f"\neta = {result['eta'][0]:.3g}, V = {result['v'][0]:.3g}"
    axes.set_xlabel("MJD")
    axes.set_ylabel(f"{flux_column} (Jy)")
    axes.set_title(title, fontsize=9)
    axes.legend(fontsize=8)
    figure.savefig(path, dpi=_DPI)
    return Path(path)


def plot_eta_v(
    results: Table, path: Path, *, eta_threshold: float, v_threshold: float
) -> Path:
    """Write a PNG of log eta against log V with the thresholds marked.

    Parameters
    ----------
    results : astropy.table.Table
        Output of :func:`~dsa110_contimg.variability.analyze_store` or
        :func:`~dsa110_contimg.variability.analyze_lightcurves`.
    path : Path
        Output PNG.
    eta_threshold, v_threshold : float
        Thresholds drawn as lines.

    Returns
    -------
    Path
        ``path``.
    """
    figure, axes = _figure((6.0, 5.0))
    eta = np.asarray(results["eta"], dtype=np.float64)
    v = np.asarray(results["v"], dtype=np.float64)
    ok = np.isfinite(eta) & np.isfinite(v) & (eta > 0) & (v > 0)
    variable = np.asarray(results["is_variable"], dtype=bool) & ok
    ese = np.asarray(results["ese_candidate"], dtype=bool) & ok
    axes.scatter(v[ok], eta[ok], s=3, c="0.6", lw=0, label=f"all ({ok.sum()})")
    axes.scatter(
        v[variable],
        eta[variable],
        s=8,
        c="tab:blue",
        label=f"variable ({variable.sum()})",
    )
    axes.scatter(
        v[ese],
        eta[ese],
        s=30,
        facecolors="none",
        edgecolors="tab:red",
        label=f"ESE candidate ({ese.sum()})",
    )
    axes.axhline(eta_threshold, color="k", ls="--", lw=0.8)
    axes.axvline(v_threshold, color="k", ls="--", lw=0.8)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("V (modulation index)")
    axes.set_ylabel("eta (weighted reduced chi-square)")
    axes.legend(fontsize=8, loc="upper left")
    figure.savefig(path, dpi=_DPI)
    return Path(path)
