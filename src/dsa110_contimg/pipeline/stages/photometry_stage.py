"""Photometry stage: forced photometry of catalogue sources on images and mosaics.

On a group image the primary-beam correction uses the beam averaged over the
group's drift (the beam is fixed on the meridian while the sky moves through
it), computed from the pointing track recorded in the image header by the
imaging stage. A mosaic is already primary-beam corrected: its rows have
``pb = 1`` and ``image_kind = 'mosaic'``, and their rms comes from the
mosaic's noise map (the rms predicted from the weights).

``flux_err_jy`` is the noise error and a measured systematic ``flux_sys_jy``
in quadrature: the in-image shape error of `measure_forced`, the flux left in
a group image's residual (`residual_excess`) and, per block, the scatter
between overlapping images (`add_overlap_systematic`).
"""

from __future__ import annotations

import csv
import logging
import math
import os
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS, FITSFixedWarning

from dsa110_contimg.data_ingestion.photometry import (
    Beam,
    PhotometryFlag,
    measure_forced,
    residual_excess,
)
from dsa110_contimg.data_ingestion.skymodel import SkyCatalog
from dsa110_contimg.mosaic import DriftTrack, primary_beam_at
from dsa110_contimg.pipeline.exceptions import InputDataError
from dsa110_contimg.utils.config_loader import PhotometryConfig

__all__ = [
    "PHOTOMETRY_COLUMNS",
    "add_overlap_systematic",
    "overlap_excess",
    "image_primary_beam",
    "measure_image",
    "measure_mosaic",
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
    "flux_sys_jy",
)
_EDGE_FRACTION = 0.05
_OVERLAP_MIN_SNR = 10.0


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


def measure_image(
    image_path: Path,
    catalog: SkyCatalog,
    cfg: PhotometryConfig,
    *,
    image_kind: str = "image",
) -> Table:
    """Measure every catalogue source that falls on an image.

    Returns
    -------
    astropy.table.Table
        One row per source on the image, columns `PHOTOMETRY_COLUMNS`;
        ``flux_jy`` is the primary-beam-corrected flux density at the image's
        central frequency.
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
    pb = image_primary_beam(header, sub.ra_deg, sub.dec_deg)
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
    on_image = (result.flags & PhotometryFlag.EDGE) == 0
    # Imagers clean poorly near the border: measurements there are flagged EDGE.
    border = _EDGE_FRACTION * np.array([nx, ny])
    near_edge = (
        (result.x_pix < border[0])
        | (result.x_pix > nx - 1 - border[0])
        | (result.y_pix < border[1])
        | (result.y_pix > ny - 1 - border[1])
    )
    flags = np.where(near_edge, result.flags | PhotometryFlag.EDGE, result.flags)
    mjd = (
        header["DSAT0MJD"] + 0.5 * (header["DSANTIME"] - 1) * header["DSADTSEC"] / 86400
    )
    freq_hz = _image_frequency(header)
    n = int(on_image.sum())
    table = Table(
        {
            "source_name": result.name[on_image],
            "ra_deg": result.ra_deg[on_image],
            "dec_deg": result.dec_deg[on_image],
            "flux_jy": result.flux_jy[on_image],
            "flux_err_jy": result.flux_err_jy[on_image],
            "peak_jy": result.peak_jy[on_image],
            "rms_jy": result.rms_jy[on_image],
            "snr": result.snr[on_image],
            "pb": result.pb[on_image],
            "flags": flags[on_image],
            "mjd": np.full(n, mjd),
            "freq_hz": np.full(n, freq_hz),
            "image_kind": np.full(n, image_kind),
            "image_path": np.full(n, str(image_path)),
            "flux_sys_jy": result.flux_sys_jy[on_image],
        }
    )
    tau = _image_residual_excess(image_path, wcs, beam, sub, cfg)
    _set_systematic(table, _table_fraction(table), tau)
    log.info(
        "photometry measured",
        extra={"image": str(image_path), "n_sources": n, "residual_excess": tau},
    )
    return table


def _image_residual_excess(
    image_path: Path, wcs: WCS, beam: Beam, sub: SkyCatalog, cfg: PhotometryConfig
) -> float:
    """Return `residual_excess` on the image's residual (0 when there is none)."""
    name = Path(image_path).name
    if not name.endswith("-image.fits"):
        return 0.0
    residual_path = Path(image_path).with_name(name.replace("-image.", "-residual."))
    psf_path = Path(image_path).with_name(name.replace("-image.", "-psf."))
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

    Returns
    -------
    astropy.table.Table
        One row per source on a covered mosaic pixel, columns
        `PHOTOMETRY_COLUMNS`; ``pb`` is 1 (the correction is already in the
        mosaic), ``image_kind`` is ``'mosaic'``, ``mjd`` the mean mid-time of
        the images used and ``freq_hz`` their mean frequency.

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
        catalog.ra_deg[covered],
        catalog.dec_deg[covered],
        beam=Beam.from_header(header),
        names=catalog.name[covered],
        rms_map=noise,
        min_pb=0.0,
        box_beams=cfg.box_beams,
    )
    keep = (result.flags & PhotometryFlag.EDGE) == 0
    n = int(keep.sum())
    table = Table(
        {
            "source_name": result.name[keep],
            "ra_deg": result.ra_deg[keep],
            "dec_deg": result.dec_deg[keep],
            "flux_jy": result.flux_jy[keep],
            "flux_err_jy": result.flux_err_jy[keep],
            "peak_jy": result.peak_jy[keep],
            "rms_jy": result.rms_jy[keep],
            "snr": result.snr[keep],
            "pb": result.pb[keep],
            "flags": result.flags[keep],
            "mjd": np.full(n, float(header.get("DSAMJD", np.nan))),
            "freq_hz": np.full(n, float(header.get("DSAFREQ", np.nan))),
            "image_kind": np.full(n, "mosaic"),
            "image_path": np.full(n, str(mosaic_path)),
            "flux_sys_jy": result.flux_sys_jy[keep],
        }
    )
    _set_systematic(table, _table_fraction(table), 0.0)
    log.info("mosaic measured", extra={"mosaic": str(mosaic_path), "n_sources": n})
    return table


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


def write_photometry_table(tables: Iterable[Table], path: Path) -> Path:
    """Write measurements as CSV atomically (temporary name, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(PHOTOMETRY_COLUMNS)
        for table in tables:
            for row in table.iterrows(*PHOTOMETRY_COLUMNS):
                writer.writerow([_fmt(v) for v in row])
    os.replace(tmp, path)
    return path


def read_photometry_table(path: Path) -> Table:
    """Read a photometry CSV written by `write_photometry_table`."""
    return Table.read(path, format="ascii.csv")


def _fmt(value: object) -> str:
    if isinstance(value, float | np.floating):
        return f"{float(value):.8g}"
    return str(value)
