"""Photometry stage: forced photometry of catalogue sources on images and mosaics.

On a group image the primary-beam correction uses the beam averaged over the
group's drift (the beam is fixed on the meridian while the sky moves through
it), computed from the pointing track recorded in the image header by the
imaging stage. A mosaic is already primary-beam corrected: its rows have
``pb = 1`` and ``image_kind = 'mosaic'``, and their rms comes from the
mosaic's noise map (the rms predicted from the weights).
"""

from __future__ import annotations

import csv
import logging
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
)
from dsa110_contimg.data_ingestion.skymodel import SkyCatalog
from dsa110_contimg.mosaic import DriftTrack, primary_beam_at
from dsa110_contimg.pipeline.exceptions import InputDataError
from dsa110_contimg.utils.config_loader import PhotometryConfig

__all__ = [
    "PHOTOMETRY_COLUMNS",
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
)
_EDGE_FRACTION = 0.05


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
        }
    )
    log.info("photometry measured", extra={"image": str(image_path), "n_sources": n})
    return table


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
        One row per source on a covered mosaic pixel (flagged ``EDGE`` when
        its fitting box is cut by the mosaic's edge or reaches a guard-band
        pixel), columns `PHOTOMETRY_COLUMNS`; ``pb`` is 1 (the correction is
        already in the mosaic), ``image_kind`` is ``'mosaic'``, ``mjd`` the
        mean mid-time of the images used and ``freq_hz`` their mean frequency.

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
    flags = np.asarray(result.flags).copy()
    if coverage_path is not None:
        coverage, _ = _read_2d(coverage_path)
        guard_only = np.isfinite(image) & (coverage == 0)
        half = int(np.ceil(cfg.box_beams * _beam_pix(header, wcs)))
        flags[_touches(guard_only, x[covered], y[covered], half)] |= PhotometryFlag.EDGE
    # Every covered source gets a row; a cut box is flagged, not dropped.
    keep = np.ones(len(flags), dtype=bool)
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
            "flags": flags[keep],
            "mjd": np.full(n, float(header.get("DSAMJD", np.nan))),
            "freq_hz": np.full(n, float(header.get("DSAFREQ", np.nan))),
            "image_kind": np.full(n, "mosaic"),
            "image_path": np.full(n, str(mosaic_path)),
        }
    )
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
