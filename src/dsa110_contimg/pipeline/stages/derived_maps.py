"""Derived maps of a group image: primary beam, rms, PB-corrected map, previews.

Under ``<images_dir>/<ms stem>``, next to the imager's products:
``-pb.fits`` (the drift-averaged primary beam on the image grid, keyed by
``DSAPBKEY``), ``-rms.fits`` (sliding-window robust rms of the residual),
``-pbcor.fits`` (image / pb, NaN where pb < ``imaging.pb_limit``), and
``-image.png``, ``-residual.png`` and ``-pb.png`` previews. Each is written
under a temporary name, flushed and renamed; a map is reused when whole and
made from this image (the primary beam also when made for an earlier image of
the same grid and track). Kept apart from `imaging_stage` so that deriving the
maps of an existing image imports neither the imagers nor the MS readers.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
from astropy.io import fits

from dsa110_contimg.exceptions import InputDataError
from dsa110_contimg.mosaic import (
    DriftTrack,
    noise_map,
    primary_beam_image,
    primary_beam_key,
)
from dsa110_contimg.pipeline.stages import image_quality as qa
from dsa110_contimg.pipeline.stages._product_checks import (
    file_problem,
    fits_problem,
    fits_size_problem,
)
from dsa110_contimg.products import ImageNames
from dsa110_contimg.tools.fits_header import celestial_wcs
from dsa110_contimg.tools.imagers import ImageProduct
from dsa110_contimg.utils.config import ImagingConfig
from dsa110_contimg.utils.storage import (
    fsync_tree,
    publish,
    temporary_path,
    write_errors_as_resource,
    writes_product,
)

__all__ = ["PB_KEY_CARD", "MIN_FINITE_FRACTION", "make_derived_products"]

log = logging.getLogger(__name__)

# an image with fewer finite pixels is not used (mostly flagged or corrupt)
MIN_FINITE_FRACTION = 0.5
PB_KEY_CARD = "DSAPBKEY"


def _derived_paths(image_path: Path) -> dict[str, Path]:
    names = ImageNames.of(image_path)
    return {
        "pb": names.path("pb"),
        "rms": names.path("rms"),
        "pbcor": names.path("pbcor"),
        "png": names.path("preview"),
        "residual_png": names.path("residual_preview"),
        "pb_png": names.path("pb_preview"),
    }


def _read_plane(path: Path) -> tuple[np.ndarray, fits.Header, tuple[int, ...]]:
    """Return the 2-D image, its header and the on-disk data shape."""
    try:
        with fits.open(path) as hdul:
            header = hdul[0].header.copy()
            data = np.asarray(hdul[0].data, dtype=np.float32)
    except (OSError, TypeError, ValueError) as err:
        msg = f"{path}: cannot read FITS image ({err}); delete it and re-image the MS"
        raise InputDataError(msg) from err
    if data.ndim < 2:
        msg = f"{path}: FITS image has no 2-D data; delete it and re-image the MS"
        raise InputDataError(msg)
    return data.reshape(data.shape[-2:]), header, data.shape


@writes_product("FITS map")
def _write_temporary(
    path: Path,
    data: np.ndarray,
    header: fits.Header,
    shape: tuple[int, ...],
    kind: str,
    cards: dict[str, str] | None = None,
) -> Path:
    """Write a map under a `temporary_path` of ``path``; return that name.

    The caller publishes it (`_publish_all`), in the thread that holds the
    publish fence.
    """
    out = header.copy()
    out["DSAPROD"] = (kind, "dsa110_contimg product kind")
    out["BUNIT"] = "" if kind == "pb" else "JY/BEAM"
    for key, value in (cards or {}).items():
        out[key] = value
    tmp = temporary_path(path)
    try:
        # big-endian float32 is FITS's own layout: one conversion, no byteswap
        # copy inside astropy
        big = np.asarray(data, dtype=">f4").reshape(shape)
        fits.PrimaryHDU(big, out).writeto(tmp)
        fsync_tree(tmp)  # the disk wait here, in the worker; publish's is then short
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _publish_all(pending: list[tuple[Path, Path]]) -> None:
    """Flush and rename each ``(temporary, final)`` into place; delete the
    temporaries left (all of them when one fails)."""
    try:
        for tmp, final in pending:
            with write_errors_as_resource(final, "FITS map"):
                publish(tmp, final)
    finally:
        for tmp, _ in pending:
            tmp.unlink(missing_ok=True)


def _reusable_pb(path: Path, key: str, shape: tuple[int, int]) -> np.ndarray | None:
    """Return the ``-pb.fits`` map when it is whole and has ``key``, else None.

    The primary beam depends on the grid and the pointing track only
    (`primary_beam_key`), not on the clean: a map made for an earlier image
    of the same group on the same grid is the same map. A truncated,
    unreadable or differently keyed file is not used (it is recomputed).
    """
    if not path.exists() or fits_size_problem(path) is not None:
        return None
    try:
        data, header, _ = _read_plane(path)
    except InputDataError:
        return None
    if header.get(PB_KEY_CARD) != key or data.shape != tuple(shape):
        return None
    return data


def _residual_rms(product: ImageProduct, residual: np.ndarray) -> float:
    """Return the residual's robust rms: the quality record's, else measured.

    The quality gates measured it already (``rms_jy``, 1.4826 MAD of the whole
    residual); the previews reuse that number rather than derive it again.
    """
    from dsa110_contimg.visualization import robust_rms

    if product.quality_path is not None:
        try:
            record = qa.read_quality(product.image_path)
        except InputDataError:
            record = None
        rms = (record or {}).get("rms_jy")
        if isinstance(rms, int | float) and np.isfinite(rms) and rms > 0:
            return float(rms)
    return robust_rms(residual)


def _write_previews(
    image, residual, pb: Future, header, wcs, product, paths, stale, max_pix: int
) -> None:
    """Write the image and residual previews (scaled by the residual's rms,
    at most ``max_pix`` on a side) and the primary beam's (0 to 1, linear, at
    most ``max_pix // 2``: a smooth map; ``pb`` is awaited only for it)."""
    from dsa110_contimg.visualization import write_preview

    rms = _residual_rms(product, residual)
    name = f"{header.get('DSAGROUP', product.ms_path.stem)} ({product.backend})"
    for key, data, what in (
        ("png", image, "image"),
        ("residual_png", residual, "residual"),
    ):
        if key in stale:
            write_preview(
                data,
                wcs,
                paths[key],
                title=f"{name}: {what}",
                header=header,
                rms_jy=rms,
                max_pix=max_pix,
            )
    if "pb_png" in stale:
        title = f"{name}: primary beam (drift-averaged)"
        write_preview(
            pb.result(),
            wcs,
            paths["pb_png"],
            title=title,
            header=header,
            unit="gain",
            stretch="linear",
            limits=(0.0, 1.0),
            max_pix=max(1, max_pix // 2),
        )


def make_derived_products(product: ImageProduct, cfg: ImagingConfig) -> ImageProduct:
    """Write the primary-beam, rms and PB-corrected maps and the PNG preview.

    Maps that already exist are kept. The rms map is the robust rms of the
    residual (of the restored image if the residual is missing) in boxes of
    ``cfg.noise_box_beams`` beam major axes, interpolated between boxes.
    The primary-beam map is reused when whole and of the same
    `primary_beam_key` (``DSAPBKEY``). With previews to draw, the FITS maps
    are made in a worker thread while the previews are drawn (the two cores
    of a worker overlap numpy and matplotlib) and published by the calling
    thread, through its `publish_fence`.

    Parameters
    ----------
    product : ImageProduct
        The imager's products (restored image present).
    cfg : ImagingConfig
        The ``imaging`` section (``pb_limit``, ``noise_box_beams``,
        ``write_png``, ``preview_max_pix``).

    Returns
    -------
    ImageProduct
        ``product`` with ``pb_path``, ``rms_path``, ``pbcor_path`` and
        ``preview_path`` set.

    Raises
    ------
    InputDataError
        The restored image is unreadable or lacks the pointing-track cards.
    """
    paths = _derived_paths(product.image_path)
    pngs = ["png", "residual_png", "pb_png"]
    wanted = ["pb", "rms", "pbcor"] + (pngs if cfg.write_png else [])
    done = replace(
        product,
        pb_path=paths["pb"],
        rms_path=paths["rms"],
        pbcor_path=paths["pbcor"],
        preview_path=paths["png"] if cfg.write_png else None,
    )
    image_path = product.image_path
    # a map is reused only when whole and made from this image (not older)
    usable = {
        k: (
            file_problem(paths[k], newer_than=image_path)
            if k.endswith("png")
            else fits_problem(paths[k], newer_than=image_path)
        )
        is None
        for k in wanted
    }
    if all(usable.values()):
        return done
    image, header, shape = _read_plane(image_path)
    finite = float(np.isfinite(image).mean()) if image.size else 0.0
    if finite < MIN_FINITE_FRACTION:
        msg = (
            f"{image_path}: only {100 * finite:.1f}% of the image of "
            f"{product.ms_path} is finite; its visibilities are mostly flagged or "
            "corrupt, so the image is not used (check the MS and its raw files)"
        )
        raise InputDataError(msg)
    wcs = celestial_wcs(header)
    source = product.residual_path
    residual = _read_plane(source)[0] if source.exists() else image
    track = None if usable["pb"] else DriftTrack.from_header(header)
    pending: list[tuple[Path, Path]] = []  # (temporary, final) maps to publish

    def emit(kind: str, data: np.ndarray, cards: dict[str, str] | None = None):
        tmp = _write_temporary(paths[kind], data, header, shape, kind, cards)
        pending.append((tmp, paths[kind]))

    def beam() -> np.ndarray:
        if track is None:
            return _read_plane(paths["pb"])[0]
        pb_key = primary_beam_key(wcs, image.shape, track)
        pb = _reusable_pb(paths["pb"], pb_key, image.shape)
        if pb is None:
            pb = primary_beam_image(wcs, image.shape, track)
            emit("pb", pb, {PB_KEY_CARD: pb_key})
        else:
            os.utime(paths["pb"])  # current for this image: reused as is next time
        return pb

    def maps(pb: np.ndarray) -> None:
        if not usable["rms"]:
            beam_pix = float(header.get("BMAJ", 0.0)) / abs(float(wcs.wcs.cdelt[1]))
            box = max(16, round(cfg.noise_box_beams * max(beam_pix, 1.0)))
            rms = noise_map(residual, box_pix=box)
            emit("rms", rms)
        if not usable["pbcor"]:
            # float32 throughout (the map is stored as float32): no float64
            # temporaries of the image size
            pbcor = np.full(image.shape, np.nan, dtype=np.float32)
            with np.errstate(invalid="ignore", divide="ignore"):
                np.divide(image, pb, out=pbcor, where=pb >= cfg.pb_limit)
            emit("pbcor", pbcor)

    stale = [k for k in pngs if not usable[k]] if cfg.write_png else []
    try:
        if not stale:
            maps(beam())
        else:
            # the FITS maps (numpy and file writes, which release the GIL) in
            # a worker thread while this one draws the previews (matplotlib,
            # kept to one thread); the maps are published here, after it, as
            # the publish fence may hold objects of this thread (SQLite)
            with ThreadPoolExecutor(1, thread_name_prefix="derived-maps") as pool:
                pb_future = pool.submit(beam)
                maps_future = pool.submit(lambda: maps(pb_future.result()))
                try:
                    _write_previews(
                        image,
                        residual,
                        pb_future,
                        header,
                        wcs,
                        product,
                        paths,
                        stale,
                        cfg.preview_max_pix,
                    )
                finally:
                    maps_future.result()
    except BaseException:
        for tmp, _ in pending:
            tmp.unlink(missing_ok=True)
        raise
    _publish_all(pending)
    log.info("derived maps written", extra={"image": str(product.image_path)})
    return done
