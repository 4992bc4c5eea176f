"""``dsa110-contimg variables``, ``lightcurve`` and ``ingest-photometry`` commands.

Thin click wrappers around :mod:`dsa110_contimg.variability` and the
light-curve store; `add` puts them on the ``dsa110-contimg`` group.

JSON written by ``variables --json-out FILE`` is a list with one object per
source::

    [{"source_name": "J0959...", "n_epochs": 365, "mean_flux_jy": 0.123,
      "eta": 1.02, "v": 0.011, "is_variable": false,
      "ese_candidate": false, "ese_significance": 3.1, "ese_depth": 0.2,
      "ese_duration_days": 14.0, "ese_center_mjd": 60123.5,
      "ese_flank_ratio": 0.0, "ese_mean_flux_jy": 0.123, "ese_delta_bic": null,
      "ese_variance_explained": 0.4, "ese_dip_order": 2.0, "ese_asymmetry": 0.0,
      "ese_flank_offset": 0.8, "ese_incomplete": false}, ...]

``ese_incomplete`` is true for a significant dip the light curve does not
show whole (cut by an edge or a gap, or too long to leave the steady flux
around it visible): neither called nor silently dropped.

Numbers that are undefined (too few epochs, source not searched) are null.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import click
import numpy as np
from astropy.table import Table

from dsa110_contimg.exceptions import InputDataError
from dsa110_contimg.utils.command_line import Command, common_options, load_config

__all__ = ["add", "variables_command", "lightcurve_command", "ingest_command"]
from dsa110_contimg.tables import LIGHTCURVE_SHOWN, VARIABLES_SHOWN

_SHOWN = VARIABLES_SHOWN
_LC_SHOWN = LIGHTCURVE_SHOWN
_store_option = click.option(
    "--store",
    "store_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Light-curve store (default: variability.store_dir).",
)


def _json_value(value: object) -> object:
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating | float):
        return float(value) if math.isfinite(float(value)) else None
    return str(value)


def _write_results_json(results: Table, path: Path) -> Path:
    """Write analysis results as a JSON list of per-source objects (NaN -> null)."""
    records = [
        {name: _json_value(row[name]) for name in results.colnames} for row in results
    ]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    from dsa110_contimg.utils.storage import publish, temporary_path

    tmp = temporary_path(path)
    try:
        tmp.write_text(json.dumps(records, indent=1, allow_nan=False) + "\n")
        publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _open_store(store_dir: Path):
    from dsa110_contimg.lightcurves import LightcurveStore

    if not (store_dir / "_manifest.json").is_file():
        msg = (
            f"no light-curve store at {store_dir}; ingest photometry first "
            "(ingest-photometry) or pass --input CSV"
        )
        raise InputDataError(msg)
    return LightcurveStore(store_dir)


def _format(table: Table) -> list[str]:
    shown = table.copy(copy_data=False)
    for name in shown.colnames:
        if shown[name].dtype.kind == "f":
            shown[name].format = ".5g"
    return shown.pformat(max_lines=-1, max_width=-1)


@click.command("variables", cls=Command)
@common_options
@click.option(
    "--input",
    "input_path",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="CSV with source_name, mjd, flux_jy, flux_err_jy (optional flags); "
    "default: the light-curve store.",
)
@click.option(
    "--json-out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write every source's eta, v and ESE fit as a JSON list.",
)
@click.option(
    "--plot", type=click.Path(dir_okay=False), default=None, help="eta-V plot (PNG)."
)
@_store_option
@click.option(
    "--search-all",
    is_flag=True,
    help="Store only: search every source for ESEs, not only those with a "
    "chi-square excess.",
)
def variables_command(
    config_path, env, sets, input_path, json_out, plot, store_dir, search_all
) -> None:
    """List variable sources and ESE candidates (eta, V, ESE search)."""
    from dsa110_contimg.variability import (
        analyze_lightcurves,
        analyze_store,
        plot_eta_v,
        read_measurements_csv,
    )

    cfg = load_config(config_path, env, sets).variability
    if input_path:
        results = analyze_lightcurves(read_measurements_csv(Path(input_path)), cfg)
    else:
        store = _open_store(Path(store_dir or cfg.store_dir))
        results = analyze_store(store, cfg, search_all=search_all)
    flagged = results[results["is_variable"] | results["ese_candidate"]]
    click.echo(
        f"{len(results)} sources; {int(results['is_variable'].sum())} variable "
        f"(eta >= {cfg.eta_threshold:g} and V >= {cfg.v_threshold:g}); "
        f"{int(results['ese_candidate'].sum())} ESE candidate(s)"
    )
    if len(flagged):
        for line in _format(flagged[list(_SHOWN)]):
            click.echo(line)
    if json_out:
        click.echo(f"JSON: {_write_results_json(results, Path(json_out))}")
    if plot:
        path = plot_eta_v(
            results,
            Path(plot),
            eta_threshold=cfg.eta_threshold,
            v_threshold=cfg.v_threshold,
        )
        click.echo(f"eta-V plot: {path}")


@click.command("lightcurve", cls=Command)
@common_options
@click.argument("name")
@click.option("--png", type=click.Path(dir_okay=False), default=None, help="Plot.")
@click.option(
    "--input",
    "input_path",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="Read the light curve from this CSV instead of the store.",
)
@_store_option
def lightcurve_command(config_path, env, sets, name, png, input_path, store_dir):
    """Print one source's light curve and metrics; optionally plot it."""
    from dsa110_contimg.variability import (
        analyze_lightcurves,
        max_two_epoch_metrics,
        plot_lightcurve,
        read_measurements_csv,
    )

    cfg = load_config(config_path, env, sets).variability
    if input_path:
        table = read_measurements_csv(Path(input_path))
        lc = table[np.asarray(table["source_name"], dtype=str) == name]
        flux_col, err_col, add_floor = "flux_jy", "flux_err_jy", True
    else:
        lc = _open_store(Path(store_dir or cfg.store_dir)).lightcurve(name)
        flux_col, err_col, add_floor = "flux_corr_jy", "flux_corr_err_jy", False
    if len(lc) == 0:
        msg = f"no measurements of source {name!r}"
        raise InputDataError(msg)
    lc.sort("mjd")
    analysis_rows = Table(
        {
            "source_name": lc["source_name"],
            "mjd": lc["mjd"],
            "flux_jy": lc[flux_col],
            "flux_err_jy": lc[err_col],
            "flags": lc["flags"] if "flags" in lc.colnames else np.zeros(len(lc), int),
        }
    )
    result = analyze_lightcurves(analysis_rows, cfg, add_systematic_floor=add_floor)
    for line in _format(lc[[c for c in _LC_SHOWN if c in lc.colnames]]):
        click.echo(line)
    vs, m = max_two_epoch_metrics(lc[flux_col], lc[err_col])
    row = result[0]
    click.echo(
        f"{name}: n={row['n_epochs']} mean={row['mean_flux_jy']:.5g} Jy "
        f"eta={row['eta']:.4g} V={row['v']:.4g} max|Vs|={abs(vs):.3g} (m={m:.3g}) "
        f"variable={bool(row['is_variable'])}"
    )
    click.echo(
        f"ESE: candidate={bool(row['ese_candidate'])} "
        f"significance={row['ese_significance']:.3g} depth={row['ese_depth']:.3g} "
        f"duration_days={row['ese_duration_days']:.3g} "
        f"center_mjd={row['ese_center_mjd']:.6g} delta_bic={row['ese_delta_bic']:.3g}"
    )
    if png:
        path = plot_lightcurve(
            lc,
            Path(png),
            source_name=name,
            result=result,
            flux_column=flux_col,
            err_column=err_col,
        )
        click.echo(f"plot: {path}")


@click.command("ingest-photometry", cls=Command)
@common_options
@click.argument("csv_path", type=click.Path(dir_okay=False, exists=True))
@click.option(
    "--kind",
    type=click.Choice(["mosaic", "image"]),
    default="mosaic",
    show_default=True,
    help="Which products are the epochs: the mosaic, or each image. Rows of the "
    "other kind are left out: an epoch is never a mix.",
)
@click.option(
    "--epoch-id",
    default=None,
    help="Name of the epoch when the file holds one product of --kind "
    "(default: the product's name and strip, e.g. block_..._dec+16.30).",
)
@click.option("--replace", is_flag=True, help="Re-process an epoch already stored.")
@_store_option
def ingest_command(
    config_path, env, sets, csv_path, kind, epoch_id, replace, store_dir
):
    """Calibrate a photometry CSV's epochs and add them to the light-curve store."""
    from dsa110_contimg.lightcurves import LightcurveStore
    from dsa110_contimg.variability import ingest_photometry_epochs

    cfg = load_config(config_path, env, sets).variability
    store = LightcurveStore(Path(store_dir or cfg.store_dir))
    results = ingest_photometry_epochs(
        store, Path(csv_path), kind=kind, epoch_id=epoch_id, cfg=cfg, replace=replace
    )
    for result in results:
        click.echo(
            f"epoch {result.epoch_id}: {result.n_rows} rows; scale "
            f"{result.scale:.5f} +/- {result.scale_err:.5f} from "
            f"{result.n_ref_used} reference(s){' (anchor)' if result.is_anchor else ''}"
        )


def add(group: click.Group) -> None:
    """Add ``variables``, ``lightcurve`` and ``ingest-photometry`` to ``group``."""
    for command in (variables_command, lightcurve_command, ingest_command):
        group.add_command(command)
