"""Endpoints the science browser draws from: catalogue overlay, cutouts, fits.

``/api/products/{id}/overlay`` places the catalogue's sources in an image's
field on its preview (pixel positions from the FITS WCS, computed here);
``/api/cutouts/{source}`` lists a source's epochs and
``/api/cutouts/{source}/{epoch}.png`` renders the PNG cutout of one epoch
from the FITS file that was measured; ``/api/sources/{source}/fit`` gives the
two-epoch Vs and m and the fitted ESE curve to draw on the light curve.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Query
from fastapi.responses import Response

from dsa110_contimg.exceptions import InputDataError
from dsa110_contimg.web.api._common import Context, not_found
from dsa110_contimg.web.api.products import _PREVIEW_MAX_PX, FITS_KINDS, _product
from dsa110_contimg.web.api.science import (
    _catalog,
    _results_or_empty,
    stored_lightcurve,
)
from dsa110_contimg.web.security import safe_product_path

__all__ = ["router", "overlay_positions", "render_cutout"]

router = APIRouter(tags=["browser"])


def _celestial(path: Path):
    from astropy.io import fits
    from astropy.wcs import WCS

    try:
        header = fits.getheader(path)
        wcs = WCS(header).celestial
        shape = (int(header["NAXIS2"]), int(header["NAXIS1"]))
    except (OSError, KeyError, ValueError, TypeError) as err:
        msg = f"product {path} has no readable celestial WCS ({err})"
        raise InputDataError(msg) from err
    return wcs, shape


def overlay_positions(
    path: Path, catalog: list[dict[str, Any]], *, max_px: int = _PREVIEW_MAX_PX
) -> dict[str, Any]:
    """Return where the catalogue's sources fall on an image and on its preview.

    Parameters
    ----------
    path : Path
        FITS image (its celestial WCS is used).
    catalog : list of dict
        Rows with ``source_name``, ``ra_deg``, ``dec_deg`` (deg) and
        ``catalog_flux_jy`` (Jy).
    max_px : int
        Longest side of the rendered preview (pixels), as `render_preview`.

    Returns
    -------
    dict
        ``nx``, ``ny`` (image pixels) and ``sources``: those inside the
        image, each with ``x_pix``/``y_pix`` (zero-based FITS pixel, y up) and
        ``x_frac``/``y_frac`` (fraction of the preview's width and height from
        its top-left corner, the preview being drawn with y up).
    """
    wcs, (ny, nx) = _celestial(path)
    rows = [r for r in catalog if r.get("ra_deg") is not None]
    if not rows:
        return {"nx": nx, "ny": ny, "sources": []}
    ra = np.array([r["ra_deg"] for r in rows], dtype=float)
    dec = np.array([r["dec_deg"] for r in rows], dtype=float)
    x, y = wcs.world_to_pixel_values(ra, dec)
    step = max(1, math.ceil(max(nx, ny) / max_px))
    # the preview keeps every step-th pixel: its width is ceil(n / step)
    wx, wy = math.ceil(nx / step), math.ceil(ny / step)
    sources = []
    for row, xi, yi in zip(rows, np.atleast_1d(x), np.atleast_1d(y), strict=True):
        if not (np.isfinite(xi) and np.isfinite(yi)):
            continue
        if not (-0.5 <= xi < nx - 0.5 and -0.5 <= yi < ny - 0.5):
            continue
        sources.append(
            {
                "source_name": row["source_name"],
                "ra_deg": row["ra_deg"],
                "dec_deg": row["dec_deg"],
                "catalog_flux_jy": row.get("catalog_flux_jy"),
                "x_pix": float(xi),
                "y_pix": float(yi),
                "x_frac": float((xi / step + 0.5) / wx),
                "y_frac": float(1.0 - (yi / step + 0.5) / wy),
            }
        )
    return {"nx": nx, "ny": ny, "sources": sources}


@router.get("/products/{product_id}/overlay")
def overlay(ctx: Context, product_id: int) -> dict[str, Any]:
    """The catalogue's sources inside an image or mosaic, placed on its preview."""
    row = _product(ctx, product_id)
    if row["kind"] not in FITS_KINDS:
        not_found(
            f"overlay of product {product_id}",
            f"a {row['kind']!r} product is not a FITS image",
        )
    path = safe_product_path(str(row["path"]), ctx.roots)
    catalog = _catalog(ctx) or []
    stat = path.stat()
    return ctx.cached(
        f"overlay:{path}",
        (stat.st_mtime_ns, stat.st_size, len(catalog)),
        lambda: overlay_positions(path, catalog),
    )


def render_cutout(
    path: Path, ra_deg: float, dec_deg: float, *, half_size_px: int = 20
) -> bytes:
    """Return a PNG cutout of a FITS image centred on a sky position.

    Parameters
    ----------
    path : Path
        FITS image; its first plane is cut.
    ra_deg, dec_deg : float
        Centre of the cutout (deg).
    half_size_px : int
        Half the side of the square cutout (image pixels).

    Returns
    -------
    bytes
        PNG, ``2 half_size_px + 1`` pixels a side, y up, grey on a linear
        stretch from the 1st percentile to the larger of the 99.5th and the
        peak within 2 pixels of the centre, the centre marked.

    Raises
    ------
    InputDataError
        The file is not a FITS image or the position falls outside it.
    """
    from astropy.io import fits
    from matplotlib import image as mpimg

    wcs, (ny, nx) = _celestial(path)
    x, y = (float(v) for v in wcs.world_to_pixel_values(ra_deg, dec_deg))
    if not (np.isfinite(x) and np.isfinite(y)) or not (
        -0.5 <= x < nx - 0.5 and -0.5 <= y < ny - 0.5
    ):
        msg = (
            f"position ({ra_deg:.5f}, {dec_deg:+.5f}) deg lies outside {path} "
            f"({nx} x {ny} pixels)"
        )
        raise InputDataError(msg)
    data = np.asarray(fits.getdata(path), dtype=np.float64)
    plane = data.reshape(-1, *data.shape[-2:])[0]
    n = 2 * half_size_px + 1
    cut = np.full((n, n), np.nan)
    xc, yc = round(x), round(y)
    x0, y0 = xc - half_size_px, yc - half_size_px
    sx = slice(max(0, x0), min(nx, x0 + n))
    sy = slice(max(0, y0), min(ny, y0 + n))
    cut[sy.start - y0 : sy.stop - y0, sx.start - x0 : sx.stop - x0] = plane[sy, sx]
    finite = cut[np.isfinite(cut)]
    lo, hi = np.percentile(finite, [1.0, 99.5]) if finite.size else (0.0, 1.0)
    core = cut[half_size_px - 2 : half_size_px + 3, half_size_px - 2 : half_size_px + 3]
    if np.isfinite(core).any():  # the source's peak is white, however faint
        hi = max(hi, float(np.nanmax(core)))
    if not hi > lo:
        hi = lo + 1.0
    scaled = np.clip((np.nan_to_num(cut, nan=lo) - lo) / (hi - lo), 0, 1)
    rgb = np.repeat(scaled[:, :, None], 3, axis=2)
    mark = (
        slice(half_size_px - 3, half_size_px - 1),
        slice(half_size_px + 2, half_size_px + 4),
    )
    for sl in mark:  # short red ticks left/right and below/above the centre
        rgb[half_size_px, sl] = (1.0, 0.2, 0.2)
        rgb[sl, half_size_px] = (1.0, 0.2, 0.2)
    buffer = io.BytesIO()
    mpimg.imsave(buffer, rgb, origin="lower", format="png")
    return buffer.getvalue()


def _position(ctx, source_name: str) -> tuple[float, float]:
    for row in _catalog(ctx) or []:
        if row["source_name"] == source_name:
            return row["ra_deg"], row["dec_deg"]
    not_found(
        f"position of source {source_name!r}",
        "cutouts need the source in the catalogue (paths.catalog_path)",
    )


def _points(ctx, source_name: str) -> list[dict[str, Any]]:
    table = stored_lightcurve(ctx, source_name)
    cols = [
        c
        for c in ("epoch_id", "mjd", "image_path", "image_kind", "flux_jy")
        if c in table.colnames
    ]
    rows = [{c: row[c] for c in cols} for row in table]
    rows.sort(key=lambda r: float(r["mjd"]))
    return rows


@router.get("/cutouts/{source_name}")
def cutouts(ctx: Context, source_name: str) -> dict[str, Any]:
    """A source's epochs, oldest first, each with the URL of its PNG cutout."""
    _position(ctx, source_name)
    items = []
    for row in _points(ctx, source_name):
        epoch = str(row["epoch_id"])
        items.append(
            {
                "epoch_id": epoch,
                "mjd": float(row["mjd"]),
                "image_kind": str(row.get("image_kind") or ""),
                "image_path": str(row.get("image_path") or ""),
                "url": f"/api/cutouts/{source_name}/{epoch}.png",
            }
        )
    return {"source_name": source_name, "items": items}


@router.get(
    "/cutouts/{source_name}/{epoch_id}.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
)
def cutout(
    ctx: Context,
    source_name: str,
    epoch_id: str,
    half_size_px: Annotated[
        int, Query(ge=4, le=200, description="Half the side (image pixels).")
    ] = 20,
) -> Response:
    """PNG cutout around a source from the FITS file measured at one epoch."""
    ra, dec = _position(ctx, source_name)
    match = [r for r in _points(ctx, source_name) if str(r["epoch_id"]) == epoch_id]
    if not match:
        not_found(
            f"epoch {epoch_id!r} of {source_name!r}",
            f"list the epochs with GET /api/cutouts/{source_name}",
        )
    path = safe_product_path(str(match[0]["image_path"]), ctx.roots)
    stat = path.stat()
    png = ctx.cached(
        f"cutout:{path}:{source_name}:{half_size_px}",
        (stat.st_mtime_ns, stat.st_size),
        lambda: render_cutout(path, ra, dec, half_size_px=half_size_px),
    )
    return Response(
        png, media_type="image/png", headers={"Cache-Control": "max-age=300"}
    )


@router.get("/sources/{source_name}/fit")
def source_fit(
    ctx: Context,
    source_name: str,
    points: Annotated[int, Query(ge=2, le=2000, description="Model samples.")] = 200,
) -> dict[str, Any]:
    """eta, V, the largest two-epoch Vs and its m, and the ESE model curve.

    ``ese_curve`` samples the fitted dip (`variability.ese_model`) over the
    light curve's time span; null when no dip was fitted.
    """
    from dsa110_contimg.variability import ese_model, max_two_epoch_metrics

    table = stored_lightcurve(ctx, source_name)
    flux_col = "flux_corr_jy" if "flux_corr_jy" in table.colnames else "flux_jy"
    err_col = (
        "flux_corr_err_jy" if "flux_corr_err_jy" in table.colnames else "flux_err_jy"
    )
    flux = np.asarray(table[flux_col], dtype=float)
    err = np.asarray(table[err_col], dtype=float)
    good = np.isfinite(flux) & np.isfinite(err)
    vs, m = max_two_epoch_metrics(flux[good], err[good])
    stats = next(
        (r for r in _results_or_empty(ctx) if r["source_name"] == source_name), {}
    )
    curve = None
    needed = ("ese_mean_flux_jy", "ese_depth", "ese_duration_days", "ese_center_mjd")
    if all(stats.get(k) is not None for k in needed):
        mjd = np.asarray(table["mjd"], dtype=float)
        grid = np.linspace(mjd.min(), mjd.max(), points)
        extra = {
            k: float(stats[f"ese_{k}"])
            for k in ("flank_ratio", "dip_order", "asymmetry", "flank_offset")
            if stats.get(f"ese_{k}") is not None
        }
        model = ese_model(
            grid,
            mean_flux_jy=float(stats["ese_mean_flux_jy"]),
            depth=float(stats["ese_depth"]),
            duration_days=float(stats["ese_duration_days"]),
            center_mjd=float(stats["ese_center_mjd"]),
            **extra,
        )
        curve = {"mjd": grid.tolist(), "flux_jy": model.tolist()}

    def num(value):
        return None if value is None or not np.isfinite(value) else float(value)

    return {
        "source_name": source_name,
        "eta": num(stats.get("eta")),
        "v": num(stats.get("v")),
        "vs": num(vs),
        "m": num(m),
        "ese_candidate": stats.get("ese_candidate"),
        "ese_significance": num(stats.get("ese_significance")),
        "ese_curve": curve,
    }
