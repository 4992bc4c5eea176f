"""Product endpoints: blocks, images, mosaics, PNG previews, FITS downloads.

Files are served only from the configured data directories
(`web.security.safe_product_path`): a stored path that resolves elsewhere, a
``..`` or a symlink pointing outside is refused with 403.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, Response

from dsa110_contimg.exceptions import InputDataError
from dsa110_contimg.state.browse import (
    block_summary,
    get_product,
    list_blocks,
    list_image_quality_page,
    list_products_page,
)
from dsa110_contimg.state.jobs import find_job
from dsa110_contimg.state.mosaics import list_mosaic_members
from dsa110_contimg.web.api._common import Context, Paging, listing, not_found
from dsa110_contimg.web.api.pipeline import job_body
from dsa110_contimg.web.models import (
    BlockDetail,
    BlockModel,
    FootprintModel,
    ImageDetail,
    Page,
    ProductModel,
    clean,
    page,
)
from dsa110_contimg.web.security import safe_product_path

__all__ = ["router", "render_preview"]

router = APIRouter(tags=["products"])

FITS_KINDS = frozenset(
    {
        "image",
        "residual",
        "psf",
        "pb",
        "rms",
        "pbcor",
        "mosaic",
        "mosaic_weight",
        "mosaic_noise",
        "mosaic_coverage",
    }
)
"""Product kinds that are FITS images (header, PNG preview)."""

_MEDIA = {
    ".fits": "application/fits",
    ".png": "image/png",
    ".json": "application/json",
    ".csv": "text/csv",
    ".html": "text/html",
}
_PREVIEW_MAX_PX = 1024


def _product_body(row: dict[str, Any]) -> dict[str, Any]:
    path = Path(str(row["path"]))
    try:
        size = path.stat().st_size if path.is_file() else None
    except OSError:
        size = None
    return {**row, "exists": size is not None, "size_bytes": size}


def _product(ctx, product_id: int) -> dict[str, Any]:
    with ctx.read() as conn:
        row = get_product(conn, product_id)
    if row is None:
        not_found(f"product {product_id}", "list products with GET /api/products")
    return row


@router.get("/blocks", response_model=Page[BlockModel])
def blocks(ctx: Context, paging: Paging) -> dict[str, object]:
    """Processing blocks that have products, newest first."""
    return listing(ctx, paging, list_blocks)


@router.get("/blocks/{block_id}", response_model=BlockDetail)
def block(ctx: Context, block_id: str) -> dict[str, object]:
    """One block: its products, image quality, mosaic members and its job."""
    with ctx.read() as conn:
        summary = block_summary(conn, block_id)
        if summary is None:
            not_found(f"block {block_id!r}", "list blocks with GET /api/blocks")
        products, _ = list_products_page(conn, block_id=block_id, limit=10_000)
        quality, _ = list_image_quality_page(conn, block_id=block_id, limit=10_000)
        members = list_mosaic_members(conn, block_id=block_id)
        job = find_job(conn, "process_block", block_id)
    return {
        **summary,
        "products": [_product_body(p) for p in products],
        "quality": clean(quality),
        "mosaic_members": members,
        "job": None if job is None else job_body(job),
    }


def _listing(ctx, paging, kinds, block_id) -> dict[str, object]:
    return listing(
        ctx,
        paging,
        list_products_page,
        _product_body,
        keyset=True,
        kinds=kinds,
        block_id=block_id,
    )


BlockFilter = Annotated[str | None, Query(description="Only this block's.")]


@router.get("/products", response_model=Page[ProductModel])
def products(
    ctx: Context,
    paging: Paging,
    kind: Annotated[list[str] | None, Query(description="Only these kinds.")] = None,
    block_id: BlockFilter = None,
) -> dict[str, object]:
    """Every recorded product (newest first), optionally of some kinds or a block."""
    return _listing(ctx, paging, kind, block_id)


@router.get("/images", response_model=Page[ProductModel])
def images(
    ctx: Context, paging: Paging, block_id: BlockFilter = None
) -> dict[str, object]:
    """Group images (kind ``image``), newest first."""
    return _listing(ctx, paging, ["image"], block_id)


@router.get("/mosaics", response_model=Page[ProductModel])
def mosaics(
    ctx: Context, paging: Paging, block_id: BlockFilter = None
) -> dict[str, object]:
    """Mosaics (kind ``mosaic``), newest first."""
    return _listing(ctx, paging, ["mosaic"], block_id)


def _header(path: Path) -> tuple[dict[str, Any], list[int]]:
    from astropy.io import fits

    try:
        with fits.open(path, memmap=True) as hdul:
            hdu = hdul[0]
            header = {
                k: clean(v)
                for k, v in hdu.header.items()
                if k and k not in {"COMMENT", "HISTORY", ""}
            }
            shape = list(hdu.shape or ())
    except (OSError, ValueError) as err:
        msg = f"product {path} is not a readable FITS file ({err})"
        raise InputDataError(msg) from err
    header = {
        k: v if isinstance(v, bool | int | float | str) or v is None else str(v)
        for k, v in header.items()
    }
    return header, shape


def _detail(ctx, product_id: int, kinds: frozenset[str], what: str) -> dict[str, Any]:
    row = _product(ctx, product_id)
    if row["kind"] not in kinds:
        not_found(
            f"{what} {product_id}",
            f"product {product_id} is a {row['kind']!r}, not one of {sorted(kinds)}",
        )
    path = safe_product_path(str(row["path"]), ctx.roots)
    header, shape = _header(path)
    with ctx.read() as conn:
        quality, _ = list_image_quality_page(conn, image_path=str(row["path"]), limit=1)
        if row["kind"] == "mosaic":
            members = [
                m
                for m in list_mosaic_members(conn, block_id=str(row["block_id"]))
                if m["mosaic_path"] == str(row["path"])
            ]
        else:
            members = list_mosaic_members(conn, image_path=str(row["path"]))
    return {
        "product": _product_body(row),
        "header": header,
        "shape": shape,
        "quality": clean(quality[0]) if quality else None,
        "mosaic_members": members,
        "preview_url": f"/api/products/{product_id}/preview.png",
        "fits_url": f"/api/products/{product_id}/file",
    }


@router.get("/images/{product_id}", response_model=ImageDetail)
def image(ctx: Context, product_id: int) -> dict[str, Any]:
    """One image: product row, FITS header, quality gates, mosaics it went into."""
    return _detail(ctx, product_id, FITS_KINDS - {"mosaic"}, "image")


@router.get("/mosaics/{product_id}", response_model=ImageDetail)
def mosaic(ctx: Context, product_id: int) -> dict[str, Any]:
    """One mosaic: product row, FITS header and its member images."""
    return _detail(ctx, product_id, frozenset({"mosaic"}), "mosaic")


def render_preview(path: Path, *, max_px: int = _PREVIEW_MAX_PX) -> bytes:
    """Return a PNG of a FITS image's first plane (percentile stretch, grey).

    Parameters
    ----------
    path : Path
        FITS file; the last two axes are the image.
    max_px : int
        Longest side of the PNG (pixels); larger images are subsampled.
    """
    import numpy as np
    from astropy.io import fits
    from matplotlib import image as mpimg

    try:
        data = np.asarray(fits.getdata(path), dtype=np.float64)
    except (OSError, ValueError, TypeError) as err:
        msg = f"product {path} is not a readable FITS image ({err})"
        raise InputDataError(msg) from err
    if data.ndim < 2:
        msg = f"product {path} has {data.ndim} axes; a preview needs an image"
        raise InputDataError(msg)
    plane = data.reshape(-1, *data.shape[-2:])[0]
    step = max(1, int(np.ceil(max(plane.shape) / max_px)))
    plane = plane[::step, ::step]
    finite = plane[np.isfinite(plane)]
    lo, hi = np.percentile(finite, [0.5, 99.5]) if finite.size else (0.0, 1.0)
    if not hi > lo:
        hi = lo + 1.0
    scaled = np.clip((np.nan_to_num(plane, nan=lo) - lo) / (hi - lo), 0, 1)
    buffer = io.BytesIO()
    mpimg.imsave(buffer, scaled, cmap="gray", origin="lower", format="png")
    return buffer.getvalue()


@router.get(
    "/products/{product_id}/preview.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
)
def preview(ctx: Context, product_id: int) -> Response:
    """PNG preview: a PNG product as stored, a FITS image rendered (cached)."""
    row = _product(ctx, product_id)
    path = safe_product_path(str(row["path"]), ctx.roots)
    if path.suffix.lower() == ".png":
        return Response(path.read_bytes(), media_type="image/png")
    if row["kind"] not in FITS_KINDS:
        not_found(
            f"preview of product {product_id}",
            f"a {row['kind']!r} product is neither a PNG nor a FITS image",
        )
    stat = path.stat()
    png = ctx.cached(
        f"preview:{path}",
        (stat.st_mtime_ns, stat.st_size),
        lambda: render_preview(path),
    )
    return Response(
        png, media_type="image/png", headers={"Cache-Control": "max-age=60"}
    )


@router.get("/products/{product_id}/file", response_class=FileResponse)
def product_file(ctx: Context, product_id: int) -> FileResponse:
    """Download a product's file (FITS, PNG, CSV...)."""
    row = _product(ctx, product_id)
    path = safe_product_path(str(row["path"]), ctx.roots)
    return FileResponse(
        path,
        media_type=_MEDIA.get(path.suffix.lower(), "application/octet-stream"),
        filename=path.name,
    )


@router.get("/files", response_class=FileResponse)
def data_file(
    ctx: Context,
    path: Annotated[
        str,
        Query(
            min_length=1,
            max_length=4096,
            description="A file under a data directory: absolute, or relative to "
            "paths.data_dir.",
        ),
    ],
) -> FileResponse:
    """Download any file under the configured data directories (block summaries...)."""
    candidate = Path(path)
    if not candidate.is_absolute():
        candidate = Path(ctx.config.paths.data_dir) / candidate
    if ".." in Path(path).parts:
        candidate = Path(path)  # refused by name below, whatever it resolves to
    resolved = safe_product_path(str(candidate), ctx.roots)
    return FileResponse(
        resolved,
        media_type=_MEDIA.get(resolved.suffix.lower(), "application/octet-stream"),
        filename=resolved.name,
    )


def _footprint(path: Path) -> dict[str, Any] | None:
    from astropy.io import fits
    from astropy.wcs import WCS
    from astropy.wcs.utils import proj_plane_pixel_scales

    try:
        header = fits.getheader(path)
        wcs = WCS(header).celestial
        ny, nx = int(header["NAXIS2"]), int(header["NAXIS1"])
        centre = wcs.pixel_to_world_values((nx - 1) / 2, (ny - 1) / 2)
        scale = np.abs(proj_plane_pixel_scales(wcs))  # deg per pixel
    except (OSError, KeyError, ValueError, TypeError):
        return None
    date = header.get("DATE-OBS")
    mjd = header.get("MJD-OBS")
    pointing = header.get("DSAPTDEC")
    return {
        "ra_deg": float(centre[0]) % 360.0,
        "dec_deg": float(centre[1]),
        "width_deg": float(nx * scale[0]),
        "height_deg": float(ny * scale[1]),
        "pointing_dec_deg": None if pointing is None else float(pointing),
        "mjd_obs": None if mjd is None else float(mjd),
        "date_obs": None if date is None else str(date),
    }


@router.get("/coverage", response_model=Page[FootprintModel])
def coverage(
    ctx: Context,
    paging: Paging,
    kind: Annotated[
        list[Literal["image", "mosaic"]] | None,
        Query(description="image and/or mosaic (default both)."),
    ] = None,
) -> dict[str, object]:
    """Sky footprints of the images and mosaics (the observed sky, per strip).

    From each FITS header (centre, extent, pointing strip, time); products
    whose file is gone or outside the data directories are left out.
    """
    with ctx.read() as conn:
        rows, total = list_products_page(
            conn,
            kinds=kind or ["image", "mosaic"],
            limit=paging.limit,
            offset=paging.offset,
        )
    items = []
    for row in rows:
        try:
            path = safe_product_path(str(row["path"]), ctx.roots)
        except InputDataError:
            continue
        stat = path.stat()
        foot = ctx.cached(
            f"footprint:{path}",
            (stat.st_mtime_ns, stat.st_size),
            lambda path=path: _footprint(path),
        )
        if foot is not None:
            items.append(
                {
                    "product_id": row["id"],
                    "block_id": row["block_id"],
                    "kind": row["kind"],
                    **foot,
                }
            )
    return page(items, total, paging.limit, paging.offset)
