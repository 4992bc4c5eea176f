"""Photometry stage: forced photometry of catalogue sources on images and mosaics.

On a group image the primary-beam correction uses the beam averaged over the
group's drift (the beam is fixed on the meridian while the sky moves through
it), computed from the pointing track recorded in the image header by the
imaging stage. A mosaic is already primary-beam corrected: its rows have
``pb = 1`` and ``image_kind = 'mosaic'``, and their rms comes from the
mosaic's noise map (the rms predicted from the weights).

Every catalogue source near an image gets a row: one off the image (or whose
fitting box crosses its edge) is flagged ``EDGE`` with a NaN flux rather than
left out, and a measurement below ``photometry.detection_sigma`` is flagged
``UPPER_LIMIT`` and carries its limit. Each row names its image
(``image_id``) and the strip it belongs to (``pointing_dec_deg``); together
with the image's time they identify one light-curve epoch (`epoch_id`).

``flux_err_jy`` is the noise error and a measured systematic ``flux_sys_jy``
in quadrature: the in-image shape error of `measure_forced`, the flux left in
a group image's residual (`residual_excess`) and, per block, the scatter
between overlapping images (`add_overlap_systematic`).
"""

from __future__ import annotations

import csv
import logging
import math
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS, FITSFixedWarning
from scipy.ndimage import map_coordinates

from dsa110_contimg.data_ingestion.photometry import (
    Beam,
    PhotometryFlag,
    measure_forced,
    residual_excess,
)
from dsa110_contimg.data_ingestion.skymodel import SkyCatalog
from dsa110_contimg.exceptions import InputDataError
from dsa110_contimg.mosaic import DriftTrack, primary_beam_at
from dsa110_contimg.products import ImageNames, epoch_id, image_id
from dsa110_contimg.utils.config_loader import PhotometryConfig
from dsa110_contimg.utils.storage import publish, temporary_path, writes_product

__all__ = [
    "PHOTOMETRY_COLUMNS",
    "conform_table",
    "epoch_id",
    "image_id",
    "image_ids",
    "add_overlap_systematic",
    "overlap_excess",
    "image_primary_beam",
    "measure_image",
    "measure_mosaic",
    "split_epochs",
    "write_photometry_table",
    "read_photometry_table",
]

log = logging.getLogger(__name__)

PHOTOMETRY_COLUMNS = (
    "source_name",
    "ra_deg",
    "dec_deg",
    "flux_jy",
    "flux_err_jy",
    "peak_jy",
    "rms_jy",
    "snr",
    "pb",
    "flags",
    "mjd",
    "freq_hz",
    "image_kind",
    "image_path",
    "image_id",
    "pointing_dec_deg",
    "upper_limit_jy",
    "flux_sys_jy",
)
_EDGE_FRACTION = 0.05
_OVERLAP_MIN_SNR = 10.0
_IMAGE_KINDS = ("image", "mosaic")


def image_ids(paths: object) -> np.ndarray:
    """Return `image_id` of each path (computed once per distinct path)."""
    unique_paths, index = np.unique(np.asarray(paths).astype(str), return_inverse=True)
    ids = np.array([image_id(p) for p in unique_paths], dtype=str)
    return ids[index.reshape(-1)] if index.size else np.zeros(0, dtype=str)


def split_epochs(table: Table, kind: str) -> dict[str, Table]:
    """Return the epochs of one kind in a photometry table, by epoch id.

    One epoch is one image or one mosaic, never a mix: the rows with
    ``image_kind == kind`` are grouped by image (``image_id``, or the file name
    of ``image_path`` in tables written before that column existed) and each
    group is named by `epoch_id`.

    Parameters
    ----------
    table : astropy.table.Table
        Photometry rows (`PHOTOMETRY_COLUMNS`; ``image_id`` and
        ``pointing_dec_deg`` optional).
    kind : {'mosaic', 'image'}
        Which products form the epochs.

    Returns
    -------
    dict of str to astropy.table.Table
        Epoch id to its rows, sorted by epoch id; empty when no row is of
        ``kind``.

    Raises
    ------
    ValueError
        ``kind`` is neither ``'mosaic'`` nor ``'image'``.
    """
    if kind not in _IMAGE_KINDS:
        msg = f"kind must be one of {_IMAGE_KINDS}, got {kind!r}"
        raise ValueError(msg)
    if len(table) == 0:
        return {}
    rows = table[np.asarray(table["image_kind"]).astype(str) == kind]
    if "image_id" in rows.colnames:
        ids = np.asarray(rows["image_id"]).astype(str)
    else:
        ids = image_ids(rows["image_path"])
    if "pointing_dec_deg" in rows.colnames:
        decs = np.asarray(rows["pointing_dec_deg"], dtype=np.float64)
    else:
        decs = np.full(len(rows), np.nan)
    epochs: dict[str, Table] = {}
    for name in sorted(set(ids.tolist())):
        sel = ids == name
        dec = decs[sel]
        dec = (
            float(np.median(dec[np.isfinite(dec)]))
            if np.isfinite(dec).any()
            else np.nan
        )
        epochs[epoch_id(name, dec)] = rows[sel]
    return dict(sorted(epochs.items()))


def _upper_limits(
    flux: np.ndarray, flux_err: np.ndarray, flags: np.ndarray, detection_sigma: float
) -> tuple[np.ndarray, np.ndarray]:
    """Flag forced measurements below ``detection_sigma`` and give their limits."""
    with np.errstate(invalid="ignore", divide="ignore"):
        below = np.isfinite(flux) & (flux_err > 0) & (flux < detection_sigma * flux_err)
    limit = np.where(below, detection_sigma * flux_err, np.nan)
    flags = np.where(below, flags | PhotometryFlag.UPPER_LIMIT, flags)
    return flags.astype(np.int32), limit


def _header_dec(header: fits.Header) -> float:
    try:
        return float(header.get("DSAPTDEC", np.nan))
    except (TypeError, ValueError):
        return float("nan")


def image_primary_beam(
    header: fits.Header, ra_deg: np.ndarray, dec_deg: np.ndarray
) -> np.ndarray:
    """Return the drift-averaged primary beam at positions in an image.

    Raises
    ------
    InputDataError
        The header lacks the pointing track written by the imaging stage.
    """
    return primary_beam_at(DriftTrack.from_header(header), ra_deg, dec_deg)


def _beam_at_sources(
    pb_path: Path | None,
    wcs: WCS,
    shape: tuple[int, int],
    sources: SkyCatalog,
    track: DriftTrack,
) -> np.ndarray:
    """Return the primary beam at the sources: from the map, else from the model."""
    pb = np.full(len(sources), np.nan)
    if pb_path is not None and Path(pb_path).exists() and len(sources):
        beam_map, _ = _read_2d(Path(pb_path))
        if beam_map.shape == tuple(shape):
            x, y = wcs.world_to_pixel_values(sources.ra_deg, sources.dec_deg)
            inside = (x >= 0) & (x <= shape[1] - 1) & (y >= 0) & (y <= shape[0] - 1)
            pb[inside] = map_coordinates(
                beam_map, [y[inside], x[inside]], order=1, mode="nearest"
            )
    missing = ~np.isfinite(pb)
    if missing.any():
        pb[missing] = primary_beam_at(
            track, sources.ra_deg[missing], sources.dec_deg[missing]
        )
    return pb


def measure_image(
    image_path: Path,
    catalog: SkyCatalog,
    cfg: PhotometryConfig,
    *,
    image_kind: str = "image",
    pb_path: Path | None = None,
) -> Table:
    """Measure every catalogue source near an image.

    Parameters
    ----------
    image_path : Path
        The restored image (with the imaging stage's pointing-track cards).
    catalog : SkyCatalog
        Sources to measure.
    cfg : PhotometryConfig
        The ``photometry`` section.
    image_kind : str
        ``image_kind`` of the rows.
    pb_path : Path, optional
        The image's primary-beam map (``-pb.fits``, `ImageProduct.pb_path`):
        the beam is read from it at the sources (bilinear), so the photometry
        uses the beam the PB-corrected image and the mosaic weights use. The
        beam model (`image_primary_beam`) stands in without a map, and off it.

    Returns
    -------
    astropy.table.Table
        One row per catalogue source within 0.75 image widths of the image
        centre, columns `PHOTOMETRY_COLUMNS`; ``flux_jy`` is the
        primary-beam-corrected flux density at the image's central frequency.
        Sources off the image, or whose fitting box crosses its edge or lies
        in its outer 5%, are flagged ``EDGE`` (off the image: NaN flux);
        those below ``cfg.detection_sigma`` are flagged ``UPPER_LIMIT``.
    """
    try:
        with fits.open(image_path) as hdul:
            header = hdul[0].header
            data = np.asarray(hdul[0].data, dtype=np.float64)
    except (OSError, TypeError, ValueError) as err:
        msg = f"{image_path}: cannot read FITS image ({err}); re-image the MS"
        raise InputDataError(msg) from err
    image = data.reshape(data.shape[-2:])
    with warnings.catch_warnings():  # WSClean's DATE-OBS gets a harmless 'datfix'
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(header).celestial
    beam = Beam.from_header(header)
    ny, nx = image.shape
    center = wcs.pixel_to_world(nx / 2, ny / 2)
    radius = 0.75 * max(nx, ny) * abs(wcs.wcs.cdelt[1])
    sub = catalog.select_within(center.ra.deg, center.dec.deg, radius)
    track = DriftTrack.from_header(header)  # the group's one pointing track
    pb = _beam_at_sources(pb_path, wcs, image.shape, sub, track)
    result = measure_forced(
        image,
        wcs,
        sub.ra_deg,
        sub.dec_deg,
        beam=beam,
        names=sub.name,
        pb=pb,
        min_pb=cfg.min_pb,
        box_beams=cfg.box_beams,
    )
    # Imagers clean poorly near the border: measurements there are flagged EDGE.
    border = _EDGE_FRACTION * np.array([nx, ny])
    near_edge = (
        (result.x_pix < border[0])
        | (result.x_pix > nx - 1 - border[0])
        | (result.y_pix < border[1])
        | (result.y_pix > ny - 1 - border[1])
    )
    flags = np.where(near_edge, result.flags | PhotometryFlag.EDGE, result.flags)
    flags, limit = _upper_limits(
        result.flux_jy, result.flux_err_jy, flags, cfg.detection_sigma
    )
    mjd = track.mid_mjd
    freq_hz = _image_frequency(header)
    n = len(result)
    table = Table(
        {
            "source_name": result.name,
            "ra_deg": result.ra_deg,
            "dec_deg": result.dec_deg,
            "flux_jy": result.flux_jy,
            "flux_err_jy": result.flux_err_jy,
            "peak_jy": result.peak_jy,
            "rms_jy": result.rms_jy,
            "snr": result.snr,
            "pb": result.pb,
            "flags": flags,
            "mjd": np.full(n, mjd),
            "freq_hz": np.full(n, freq_hz),
            "image_kind": np.full(n, image_kind),
            "image_path": np.full(n, str(image_path)),
            "image_id": np.full(n, image_id(image_path)),
            "pointing_dec_deg": np.full(n, _header_dec(header)),
            "upper_limit_jy": limit,
            "flux_sys_jy": result.flux_sys_jy,
        }
    )
    tau = _image_residual_excess(image_path, wcs, beam, sub, cfg)
    _set_systematic(table, _table_fraction(table), tau)
    log.info(
        "photometry measured",
        extra={
            "image": str(image_path),
            "n_sources": n,
            "n_on_image": int(np.sum((flags & PhotometryFlag.EDGE) == 0)),
            "residual_excess": tau,
        },
    )
    return table


def _image_residual_excess(
    image_path: Path, wcs: WCS, beam: Beam, sub: SkyCatalog, cfg: PhotometryConfig
) -> float:
    """Return `residual_excess` on the image's residual (0 when there is none)."""
    try:
        names = ImageNames.of(image_path)
    except ValueError:  # not a group image (a mosaic, a test's file)
        return 0.0
    residual_path, psf_path = names.path("residual"), names.path("psf")
    if not (residual_path.exists() and psf_path.exists()):
        return 0.0
    residual, _ = _read_2d(residual_path)
    psf, _ = _read_2d(psf_path)
    return residual_excess(
        residual, psf, wcs, sub.ra_deg, sub.dec_deg, beam=beam, box_beams=cfg.box_beams
    )


def _table_fraction(table: Table) -> float:
    """Return the fractional systematic of a table's rows (median of sys/|flux|)."""
    if not len(table):
        return 0.0
    flux = np.abs(np.asarray(table["flux_jy"], dtype=np.float64))
    sys = np.asarray(table["flux_sys_jy"], dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(flux > 0, sys / flux, np.nan)
    if not np.any(np.isfinite(ratio)):
        return 0.0
    return float(np.nanmedian(ratio))


def _set_systematic(table: Table, fraction: float, tau: float) -> None:
    r"""Set ``flux_sys_jy`` to :math:`\sqrt{(f S)^2 + (\tau n)^2}` and the total error.

    ``n`` is the noise error (``flux_err_jy`` less the current systematic);
    ``f`` and ``tau`` are kept in ``table.meta`` (``sys_fraction``,
    ``residual_excess``).
    """
    if len(table):
        flux = np.abs(np.asarray(table["flux_jy"], dtype=np.float64))
        err = np.asarray(table["flux_err_jy"], dtype=np.float64)
        old = np.asarray(table["flux_sys_jy"], dtype=np.float64)
        # the noise error: the total less the systematic it holds now
        noise = np.sqrt(np.maximum(err**2 - np.nan_to_num(old) ** 2, 0.0))
        sys = np.hypot(fraction * flux, tau * noise)
        table["flux_sys_jy"] = sys
        table["flux_err_jy"] = np.hypot(noise, sys)
    table.meta["sys_fraction"] = float(fraction)
    table.meta["residual_excess"] = float(tau)


def measure_mosaic(
    mosaic_path: Path,
    catalog: SkyCatalog,
    cfg: PhotometryConfig,
    *,
    noise_path: Path,
    coverage_path: Path | None = None,
) -> Table:
    """Measure every catalogue source covered by a mosaic.

    Parameters
    ----------
    mosaic_path : Path
        Mosaic written by the mosaicking stage (primary-beam corrected).
    catalog : SkyCatalog
        Sources to measure.
    cfg : PhotometryConfig
        The ``photometry`` section (``box_beams``).
    noise_path : Path
        The mosaic's noise map (predicted rms), used as the local rms.
    coverage_path : Path, optional
        The mosaic's coverage map: a source whose fitting box holds a finite
        pixel of coverage 0 (filled only from the members' outer guard bands)
        is flagged ``EDGE``.

    Returns
    -------
    astropy.table.Table
        One row per source inside the mosaic's grid, columns
        `PHOTOMETRY_COLUMNS`; ``pb`` is 1 (the correction is already in the
        mosaic), ``image_kind`` is ``'mosaic'``, ``mjd`` the mean mid-time of
        the images used and ``freq_hz`` their mean frequency. A source on an
        uncovered (NaN) pixel is flagged ``EDGE | NAN`` with a NaN flux, one
        whose fitting box crosses the edge or reaches a pixel filled only from
        the members' guard bands ``EDGE``; one below ``cfg.detection_sigma``
        ``UPPER_LIMIT``.

    Raises
    ------
    InputDataError
        The mosaic or its noise map is unreadable or their shapes differ.
    """
    image, header = _read_2d(mosaic_path)
    noise, _ = _read_2d(noise_path)
    if noise.shape != image.shape:
        msg = f"{noise_path}: noise map shape {noise.shape} differs from mosaic"
        raise InputDataError(msg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(header).celestial
    ny, nx = image.shape
    with np.errstate(invalid="ignore"):
        x, y = wcs.world_to_pixel_values(catalog.ra_deg, catalog.dec_deg)
    ix, iy = np.rint(np.nan_to_num(x, nan=-1)), np.rint(np.nan_to_num(y, nan=-1))
    inside = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
    covered = np.zeros(inside.shape, dtype=bool)
    covered[inside] = np.isfinite(image[iy[inside].astype(int), ix[inside].astype(int)])
    result = measure_forced(
        image,
        wcs,
        catalog.ra_deg[inside],
        catalog.dec_deg[inside],
        beam=Beam.from_header(header),
        names=catalog.name[inside],
        rms_map=noise,
        min_pb=0.0,
        box_beams=cfg.box_beams,
    )
    # A source on a blank (uncovered) pixel is off the mosaic: a flagged row.
    off = ~covered[inside]
    flux, flux_err = result.flux_jy.copy(), result.flux_err_jy.copy()
    peak, snr = result.peak_jy.copy(), result.snr.copy()
    flux_sys = np.asarray(result.flux_sys_jy, dtype=np.float64).copy()
    for values in (flux, flux_err, peak, snr, flux_sys):
        values[off] = np.nan
    flags = np.where(
        off, result.flags | PhotometryFlag.EDGE | PhotometryFlag.NAN, result.flags
    )
    if coverage_path is not None:
        coverage, _ = _read_2d(coverage_path)
        guard_only = np.isfinite(image) & (coverage == 0)
        half = int(np.ceil(cfg.box_beams * _beam_pix(header, wcs)))
        near_guard = _touches(guard_only, x[inside], y[inside], half)
        flags = np.where(near_guard, flags | PhotometryFlag.EDGE, flags)
    flags, limit = _upper_limits(flux, flux_err, flags, cfg.detection_sigma)
    n = len(result)
    table = Table(
        {
            "source_name": result.name,
            "ra_deg": result.ra_deg,
            "dec_deg": result.dec_deg,
            "flux_jy": flux,
            "flux_err_jy": flux_err,
            "peak_jy": peak,
            "rms_jy": result.rms_jy,
            "snr": snr,
            "pb": result.pb,
            "flags": flags,
            "mjd": np.full(n, float(header.get("DSAMJD", np.nan))),
            "freq_hz": np.full(n, float(header.get("DSAFREQ", np.nan))),
            "image_kind": np.full(n, "mosaic"),
            "image_path": np.full(n, str(mosaic_path)),
            "image_id": np.full(n, image_id(mosaic_path)),
            "pointing_dec_deg": np.full(n, _header_dec(header)),
            "upper_limit_jy": limit,
            "flux_sys_jy": flux_sys,
        }
    )
    _set_systematic(table, _table_fraction(table), 0.0)
    log.info("mosaic measured", extra={"mosaic": str(mosaic_path), "n_sources": n})
    return table


def _beam_pix(header: fits.Header, wcs: WCS) -> float:
    bmaj = float(header.get("BMAJ", 0.0) or 0.0)
    return max(bmaj / abs(float(wcs.wcs.cdelt[1])), 1.0)


def _touches(mask: np.ndarray, x: np.ndarray, y: np.ndarray, half: int) -> np.ndarray:
    """Return which positions have a true ``mask`` pixel within +-half pixels."""
    ny, nx = mask.shape
    out = np.zeros(len(x), dtype=bool)
    if not mask.any():
        return out
    for k, (xk, yk) in enumerate(zip(np.rint(x), np.rint(y), strict=True)):
        x0, x1 = max(0, int(xk) - half), min(nx, int(xk) + half + 1)
        y0, y1 = max(0, int(yk) - half), min(ny, int(yk) + half + 1)
        out[k] = bool(mask[y0:y1, x0:x1].any())
    return out


def add_overlap_systematic(tables: list[Table]) -> list[Table]:
    r"""Measure the flux-scale scatter between overlapping images and add it.

    Consecutive group images overlap, so most sources are measured on two or
    three images at different places in the primary beam and, after gain
    drift, with different residual calibration errors. For every pair of
    unflagged measurements of a source on two images (``snr >= 30``) the
    difference :math:`d = S_A - S_B` has variance
    :math:`n_A^2 + n_B^2 + f^2 (S_A^2 + S_B^2)`, with :math:`n` the noise
    errors and :math:`f` the fractional error per image that the noise does
    not explain; :math:`f` is estimated from all pairs by
    `~dsa110_contimg.data_ingestion.photometry.excess_fraction`.

    Each table's systematic fraction (``meta['sys_fraction']``, the in-image
    shape error of `measure_forced`) becomes the larger of itself and
    :math:`f`; ``flux_sys_jy`` becomes :math:`\sqrt{(f S)^2 + (\tau n)^2}`
    with :math:`\tau` the image's residual excess (``meta['residual_excess']``,
    see `~dsa110_contimg.data_ingestion.photometry.residual_excess`) and
    ``flux_err_jy`` the noise and systematic in quadrature. Mosaics, weighted
    means of the images, get the same :math:`f` and the rms :math:`\tau` of
    the images. With neither overlaps nor residual excess the tables are
    returned unchanged.

    Parameters
    ----------
    tables : list of astropy.table.Table
        One table per image or mosaic (`measure_image`, `measure_mosaic`) of
        one block.

    Returns
    -------
    list of astropy.table.Table
        The tables, updated copies where the systematic changed.
    """
    overlap = _overlap_excess(tables)
    frac, tau_pairs = overlap if overlap is not None else (0.0, 0.0)
    taus = [
        float(t.meta.get("residual_excess", 0.0))
        for t in tables
        if len(t) and str(t["image_kind"][0]) == "image"
    ]
    tau_images = float(np.sqrt(np.mean(np.square(taus)))) if taus else 0.0
    tau_images = max(tau_images, tau_pairs)
    if overlap is None and tau_images == 0.0:
        return list(tables)
    out = []
    for table in tables:
        if not len(table):
            out.append(table)
            continue
        own = float(table.meta.get("sys_fraction", _table_fraction(table)))
        tau = float(table.meta.get("residual_excess", 0.0))
        if str(table["image_kind"][0]) == "image":
            tau = max(tau, tau_pairs)
        else:
            tau = max(tau, tau_images)  # a mosaic inherits its members' excess
        updated = table.copy()
        _set_systematic(updated, max(own, frac), tau)
        out.append(updated)
    return out


def _overlap_excess(tables: list[Table]) -> tuple[float, float] | None:
    """Return (f, tau) from pairs of images measuring one source; None without pairs."""
    by_source: dict[str, list[tuple[float, float]]] = {}
    for table in tables:
        if not len(table) or str(table["image_kind"][0]) != "image":
            continue
        flux = np.asarray(table["flux_jy"], dtype=np.float64)
        err = np.asarray(table["flux_err_jy"], dtype=np.float64)
        sys = np.asarray(table["flux_sys_jy"], dtype=np.float64)
        noise = np.sqrt(np.maximum(err**2 - sys**2, 0.0))
        with np.errstate(invalid="ignore", divide="ignore"):
            good = (np.asarray(table["flags"]) == 0) & np.isfinite(flux)
            good &= np.asarray(table["snr"], dtype=np.float64) >= _OVERLAP_MIN_SNR
        for i in np.flatnonzero(good & (noise > 0)):
            by_source.setdefault(str(table["source_name"][i]), []).append(
                (float(flux[i]), float(noise[i]))
            )
    diff2, noise2, scale2 = [], [], []
    for rows in by_source.values():
        for (s_a, n_a), (s_b, n_b) in zip(rows[:-1], rows[1:], strict=True):
            diff2.append((s_a - s_b) ** 2)
            noise2.append(n_a**2 + n_b**2)
            scale2.append(s_a**2 + s_b**2)
    if not diff2:
        return None
    frac, tau = overlap_excess(np.array(diff2), np.array(noise2), np.array(scale2))
    log.info(
        "flux systematic from overlapping images",
        extra={"n_pairs": len(diff2), "fraction": round(frac, 5), "tau": round(tau, 3)},
    )
    return frac, tau


def overlap_excess(
    diff2: np.ndarray, noise2: np.ndarray, scale2: np.ndarray
) -> tuple[float, float]:
    r"""Fit the variance of pair differences with a fractional and a noise excess.

    Parameters
    ----------
    diff2 : ndarray, shape (n,)
        Squared differences of two measurements of one source, Jy^2.
    noise2 : ndarray, shape (n,)
        Sum of their noise variances :math:`n_A^2 + n_B^2`, Jy^2.
    scale2 : ndarray, shape (n,)
        Sum of their squared fluxes :math:`S_A^2 + S_B^2`, Jy^2.

    Returns
    -------
    (float, float)
        :math:`f, \tau \ge 0` of the model
        :math:`E[d^2] = (1 + \tau^2)(n_A^2 + n_B^2) + f^2 (S_A^2 + S_B^2)`,
        fitted by weighted least squares (weights :math:`1/E[d^2]^2`, the
        inverse variance of :math:`d^2`, iterated); a term whose estimate is
        negative is set to 0 and the other refitted.
    """
    excess = diff2 - noise2
    design = np.column_stack([noise2, scale2])
    coef = np.zeros(2)
    for _ in range(5):
        model = noise2 * (1.0 + coef[0]) + scale2 * coef[1]
        w = 1.0 / np.maximum(model, 1e-300) ** 2
        coef = _nonneg_wls(design, excess, w)
    return math.sqrt(coef[1]), math.sqrt(coef[0])


def _nonneg_wls(design: np.ndarray, target: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Return the weighted least-squares coefficients, each clipped at 0 (2 terms)."""
    best = np.zeros(design.shape[1])
    normal = design.T @ (w[:, None] * design)
    if np.linalg.cond(normal) < 1e12:
        full = np.linalg.solve(normal, design.T @ (w * target))
        if np.all(full >= 0):
            return full
    best_cost = np.inf
    for k in range(design.shape[1]):
        col = design[:, k]
        value = max(float(np.sum(w * col * target) / np.sum(w * col * col)), 0.0)
        cost = float(np.sum(w * (target - value * col) ** 2))
        if cost < best_cost:
            best_cost = cost
            best = np.where(np.arange(design.shape[1]) == k, value, 0.0)
    return best


def _read_2d(path: Path) -> tuple[np.ndarray, fits.Header]:
    try:
        with fits.open(path) as hdul:
            header = hdul[0].header.copy()
            data = np.asarray(hdul[0].data, dtype=np.float64)
    except (OSError, TypeError, ValueError) as err:
        msg = f"{path}: cannot read FITS image ({err}); remake the product"
        raise InputDataError(msg) from err
    return data.reshape(data.shape[-2:]), header


def _image_frequency(header: fits.Header) -> float:
    for axis in range(1, int(header.get("NAXIS", 0)) + 1):
        if str(header.get(f"CTYPE{axis}", "")).startswith("FREQ"):
            return float(header[f"CRVAL{axis}"])
    return 0.5 * (header["DSAFMIN"] + header["DSAFMAX"])


@writes_product("photometry table")
def write_photometry_table(tables: Iterable[Table], path: Path) -> Path:
    """Write measurements as CSV atomically (unique temporary, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        with open(tmp, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(PHOTOMETRY_COLUMNS)
            for table in tables:
                for row in table.iterrows(*PHOTOMETRY_COLUMNS):
                    writer.writerow([_fmt(v) for v in row])
        publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_photometry_table(path: Path) -> Table:
    """Read a photometry CSV written by `write_photometry_table`."""
    return Table.read(path, format="ascii.csv")


_STRING_COLUMNS = ("source_name", "image_kind", "image_path", "image_id")


def conform_table(table: Table) -> Table:
    """Return a photometry table with exactly `PHOTOMETRY_COLUMNS`, in order.

    Strings stay strings (a column of names that look like numbers is read
    back as numbers), blank cells become NaN (flags 0, strings empty), and a
    column absent from a table written by an earlier version is filled in:
    ``image_id`` from ``image_path``, numbers with NaN.
    """
    n = len(table)
    out = Table()
    for name in PHOTOMETRY_COLUMNS:
        if name not in table.colnames:
            if name == "image_id" and "image_path" in table.colnames:
                out[name] = image_ids(table["image_path"])
            elif name in _STRING_COLUMNS:
                out[name] = np.full(n, "", dtype=str)
            elif name == "flags":
                out[name] = np.zeros(n, dtype=np.int32)
            else:
                out[name] = np.full(n, np.nan)
            continue
        column = table[name]
        if name in _STRING_COLUMNS:
            values = np.ma.filled(np.ma.asarray(column).astype(str), "")
            out[name] = np.asarray(values, dtype=str)
        elif name == "flags":
            out[name] = np.ma.filled(np.ma.asarray(column), 0).astype(np.int32)
        else:
            out[name] = np.ma.filled(np.ma.asarray(column, dtype=np.float64), np.nan)
    return out


def _fmt(value: object) -> str:
    # repr is the shortest text that reads back to the same double: an mjd
    # keeps its microseconds (8 significant digits would round it to 86 s).
    if isinstance(value, float | np.floating):
        return repr(float(value))
    return str(value)
