"""Science endpoints: sources, light curves, variability, ESE candidates, calibration.

Sources are the catalogue's (``paths.catalog_path``) joined by name with the
light-curve store's statistics (``variability.store_dir``); the variability
results are `variability.analyze_store` of the store, recomputed when the
store changes. Calibration solutions come from the state database.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Query

from dsa110_contimg.exceptions import InputDataError
from dsa110_contimg.state.browse import get_cal_solution, list_cal_solutions
from dsa110_contimg.state.figures import StripCalibration, calibration_ages, mjd_of
from dsa110_contimg.tables import LIGHTCURVE_STORE, VARIABILITY_RESULTS
from dsa110_contimg.web.api._common import (
    Context,
    Paging,
    listing,
    not_found,
    slice_page,
)
from dsa110_contimg.web.errors import UnavailableError
from dsa110_contimg.web.models import (
    CalSolutionModel,
    LightcurveModel,
    Page,
    SourceModel,
    VariabilityModel,
    clean,
)

__all__ = ["router"]

router = APIRouter(tags=["science"])

_STATS = ("n_epochs", "eta", "v", "is_variable", "ese_candidate")

_STORE_LOCK = threading.Lock()
"""The store's DuckDB connection serves one query at a time (request threads)."""


def _store(ctx):
    root = Path(ctx.config.variability.store_dir)
    manifest = root / "_manifest.json"
    if not manifest.is_file():
        msg = (
            f"no light-curve store at {root} (variability.store_dir) yet; it "
            "appears once the first block's photometry is ingested"
        )
        raise UnavailableError(msg)
    from dsa110_contimg.lightcurves import LightcurveStore

    store = ctx.cached(
        "store",
        str(root),
        lambda: LightcurveStore(
            root, exclude_flags=ctx.config.variability.exclude_flags, readonly=True
        ),
    )
    stat = manifest.stat()
    return store, (stat.st_mtime_ns, stat.st_size)


def stored_lightcurve(ctx, source_name: str):
    """Return a source's stored measurements (astropy Table); 404 when it has none."""
    store, _ = _store(ctx)
    with _STORE_LOCK:
        table = store.lightcurve(source_name)
    if len(table) == 0:
        not_found(
            f"light curve of {source_name!r}",
            "the store has no measurement of it; search with GET /api/sources",
        )
    return table


def _results(ctx) -> list[dict[str, Any]]:
    store, stamp = _store(ctx)

    def build() -> list[dict[str, Any]]:
        from dsa110_contimg.variability import analyze_store

        with _STORE_LOCK:
            table = analyze_store(store, ctx.config.variability)
        names = [n for n in VARIABILITY_RESULTS.names if n in table.colnames]
        return [{n: clean(row[n]) for n in names} for row in table]

    return ctx.cached("variability", stamp, build)


def _results_or_empty(ctx) -> list[dict[str, Any]]:
    try:
        return _results(ctx)
    except UnavailableError:
        return []


def _catalog(ctx) -> list[dict[str, Any]] | None:
    path = ctx.config.paths.catalog_path
    if path is None or not Path(path).is_file():
        return None
    from dsa110_contimg.data_ingestion.skymodel import load_catalog

    stat = Path(path).stat()

    def build() -> list[dict[str, Any]]:
        cat = load_catalog(path)
        return [
            {
                "source_name": str(n),
                "ra_deg": float(r),
                "dec_deg": float(d),
                "catalog_flux_jy": float(f),
            }
            for n, r, d, f in zip(
                cat.name, cat.ra_deg, cat.dec_deg, cat.flux_jy, strict=True
            )
        ]

    return ctx.cached(f"catalog:{path}", (stat.st_mtime_ns, stat.st_size), build)


def _sources(ctx) -> list[dict[str, Any]]:
    stats = {r["source_name"]: r for r in _results_or_empty(ctx)}
    catalog = _catalog(ctx)
    rows: dict[str, dict[str, Any]] = {}
    for entry in catalog or []:
        rows[entry["source_name"]] = dict(entry)
    for name in stats:
        rows.setdefault(
            name,
            {
                "source_name": name,
                "ra_deg": None,
                "dec_deg": None,
                "catalog_flux_jy": None,
            },
        )
    for name, row in rows.items():
        stat = stats.get(name, {})
        row.update({k: stat.get(k) for k in _STATS})
    return [rows[n] for n in sorted(rows)]


def _separation_deg(ra, dec, ra0: float, dec0: float) -> np.ndarray:
    ra, dec = np.radians(ra), np.radians(dec)
    ra0, dec0 = np.radians(ra0), np.radians(dec0)
    hav = (
        np.sin((dec - dec0) / 2) ** 2
        + np.cos(dec) * np.cos(dec0) * np.sin((ra - ra0) / 2) ** 2
    )
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(hav, 0, 1))))


@router.get("/sources", response_model=Page[SourceModel])
def sources(
    ctx: Context,
    paging: Paging,
    name: Annotated[
        str | None,
        Query(max_length=200, description="Name contains (case-insensitive)."),
    ] = None,
    ra: Annotated[
        float | None, Query(ge=0, lt=360, description="Cone centre RA (deg).")
    ] = None,
    dec: Annotated[
        float | None, Query(ge=-90, le=90, description="Cone centre Dec (deg).")
    ] = None,
    radius_deg: Annotated[
        float | None, Query(gt=0, le=180, description="Cone radius (deg).")
    ] = None,
) -> dict[str, object]:
    """Search sources by name and/or cone (``ra``, ``dec``, ``radius_deg`` together).

    A cone search lists the nearest first, with ``separation_deg``; otherwise
    by name.
    """
    cone = (ra, dec, radius_deg)
    if any(v is not None for v in cone) and not all(v is not None for v in cone):
        msg = (
            "query parameters 'ra', 'dec' and 'radius_deg' make a cone together; "
            "give all three or none"
        )
        raise InputDataError(msg)
    rows = _sources(ctx)
    if name:
        wanted = name.lower()
        rows = [r for r in rows if wanted in r["source_name"].lower()]
    if ra is not None:
        if _catalog(ctx) is None:
            msg = (
                "cone search needs source positions: configure paths.catalog_path "
                "(the catalogue of the forced photometry)"
            )
            raise UnavailableError(msg)
        placed = [r for r in rows if r["ra_deg"] is not None]
        seps = _separation_deg(
            np.array([r["ra_deg"] for r in placed], dtype=float),
            np.array([r["dec_deg"] for r in placed], dtype=float),
            ra,
            dec,
        )
        order = np.argsort(seps, kind="stable")
        rows = [
            {**placed[i], "separation_deg": float(seps[i])}
            for i in order
            if seps[i] <= radius_deg
        ]
        return slice_page(
            rows, paging, key=lambda r: (r["separation_deg"], r["source_name"])
        )
    return slice_page(rows, paging, key=lambda r: (r["source_name"],))


@router.get("/sources/{source_name}", response_model=SourceModel)
def source(ctx: Context, source_name: str) -> dict[str, object]:
    """One source: catalogue position and flux, light-curve statistics."""
    for row in _sources(ctx):
        if row["source_name"] == source_name:
            return row
    not_found(f"source {source_name!r}", "search with GET /api/sources?name=")


@router.get("/lightcurves/{source_name}", response_model=LightcurveModel)
def lightcurve(ctx: Context, source_name: str) -> dict[str, object]:
    """A source's stored measurements, oldest first (flux, errors, scale, flags)."""
    table = stored_lightcurve(ctx, source_name)
    names = [n for n in LIGHTCURVE_STORE.names if n in table.colnames]
    points = [{n: clean(row[n]) for n in names} for row in table]
    points.sort(key=lambda p: (p.get("mjd") is None, p.get("mjd")))
    return {"source_name": source_name, "n_points": len(points), "points": points}


SortKey = Literal[
    "source_name", "eta", "v", "n_epochs", "mean_flux_jy", "ese_significance"
]


def _variability_page(rows, paging, sort: str, descending: bool) -> dict[str, object]:
    present = [r for r in rows if r.get(sort) is not None]
    missing = [r for r in rows if r.get(sort) is None]
    present.sort(key=lambda r: r[sort], reverse=descending)
    return slice_page(present + missing, paging)


@router.get("/variability", response_model=Page[VariabilityModel])
def variability(
    ctx: Context,
    paging: Paging,
    variable_only: Annotated[bool, Query(description="Only is_variable rows.")] = False,
    min_epochs: Annotated[
        int, Query(ge=0, description="At least this many epochs.")
    ] = 0,
    sort: Annotated[SortKey, Query(description="Sort column.")] = "eta",
    descending: Annotated[bool, Query(description="Largest first.")] = True,
) -> dict[str, object]:
    """eta, V and the ESE search of every stored source (the eta-V plot's data)."""
    rows = [
        r
        for r in _results(ctx)
        if (not variable_only or r.get("is_variable"))
        and (r.get("n_epochs") or 0) >= min_epochs
    ]
    return _variability_page(rows, paging, sort, descending)


@router.get("/candidates", response_model=Page[VariabilityModel])
def candidates(
    ctx: Context,
    paging: Paging,
    include_incomplete: Annotated[
        bool, Query(description="Also dips the light curve cannot show whole.")
    ] = False,
) -> dict[str, object]:
    """ESE candidates, most significant first."""
    rows = [
        r
        for r in _results(ctx)
        if r.get("ese_candidate") or (include_incomplete and r.get("ese_incomplete"))
    ]
    return _variability_page(rows, paging, "ese_significance", True)


def _solution_body(row: dict[str, Any], now_mjd: float) -> dict[str, Any]:
    body = dict(row)
    body["quality"] = json.loads(str(body.pop("quality_json") or "{}"))
    body["valid_now"] = body["valid_from_mjd"] <= now_mjd <= body["valid_to_mjd"]
    body["age_h"] = (now_mjd - float(body["transit_mjd"])) * 24.0
    return clean(body)


@router.get("/calibration", response_model=Page[CalSolutionModel])
def calibration(
    ctx: Context,
    paging: Paging,
    dec_strip_deg: Annotated[
        float | None, Query(ge=-90, le=90, description="Only this strip (deg).")
    ] = None,
    valid_at_mjd: Annotated[
        float | None, Query(description="Only solutions valid at this MJD.")
    ] = None,
) -> dict[str, object]:
    """Calibration solutions with their validity windows, newest transit first."""
    now_mjd = mjd_of(ctx.clock())
    return listing(
        ctx,
        paging,
        list_cal_solutions,
        lambda row: _solution_body(row, now_mjd),
        dec_strip_deg=dec_strip_deg,
        valid_at_mjd=valid_at_mjd,
    )


@router.get("/calibration/strips", response_model=list[StripCalibration])
def calibration_strips(ctx: Context) -> list[StripCalibration]:
    """Per declination strip: its newest solution, age and whether valid now."""
    with ctx.read() as conn:
        return calibration_ages(conn, now=ctx.clock())


@router.get("/calibration/{solution_id}", response_model=CalSolutionModel)
def calibration_solution(ctx: Context, solution_id: int) -> dict[str, object]:
    """One calibration solution (tables, refant, quality, validity)."""
    with ctx.read() as conn:
        row = get_cal_solution(conn, solution_id)
    if row is None:
        not_found(
            f"calibration solution {solution_id}", "list them with GET /api/calibration"
        )
    return _solution_body(row, mjd_of(ctx.clock()))
