"""Blind source finding on restored images and mosaics, and catalogue cross-matching.

This is a simple, self-contained finder, not Aegean or PyBDSF: pixels above
``threshold_sigma`` times a robust local rms form islands (8-connected);
each local maximum of an island at least one beam minor axis from a brighter
one is a component; its position is refined to sub-pixel precision by a
quadratic fit to the 3x3 pixels at the peak, and its flux density is measured
by the forced-photometry matched filter at that position. It does not fit
extended or blended Gaussians: resolved sources are reported as point sources
(``snr`` of the matched filter and ``peak_jy`` then disagree) and close pairs
within a beam as one component. Its use is to report sources that the
catalogue lacks, so that new or transient sources are seen.
"""

from __future__ import annotations

import logging
import math
import warnings

import numpy as np
from astropy.table import Table
from astropy.wcs import WCS
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage
from scipy.spatial import cKDTree

from dsa110_contimg.data_ingestion.photometry import (
    Beam,
    _PixelGaussian,
    _quadratic_peak,
    measure_forced,
)
from dsa110_contimg.data_ingestion.skymodel import SkyCatalog
from dsa110_contimg.exceptions import DataQualityWarning, InputDataError

__all__ = ["FOUND_COLUMNS", "estimate_rms_map", "find_sources", "crossmatch"]

log = logging.getLogger(__name__)

FOUND_COLUMNS = (
    "name",
    "island_id",
    "ra_deg",
    "dec_deg",
    "x_pix",
    "y_pix",
    "peak_jy",
    "peak_snr",
    "flux_jy",
    "flux_err_jy",
    "rms_jy",
    "snr",
    "n_pix",
    "flags",
)
"""Columns of the table returned by :func:`find_sources`."""

_MAD_TO_SIGMA = 1.4826
_MIN_BOX_FRACTION = 0.5
_CLIP_SIGMA = 3.0
_CLIP_ITER = 3


def estimate_rms_map(
    image: ArrayLike, *, box_pix: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Estimate the local background and rms of an image in boxes.

    Parameters
    ----------
    image : array_like, shape (n_y, n_x)
        Image, Jy/beam; NaN marks blanked pixels.
    box_pix : int
        Side of the square boxes, pixels (tens of beams is typical).

    Returns
    -------
    background, rms : ndarray, shape (n_y, n_x)
        Sigma-clipped median and ``1.4826 * MAD`` of each box, bilinearly
        interpolated between box centres, Jy/beam.

    Raises
    ------
    InputDataError
        No box has enough finite pixels to estimate the noise.

    Warns
    -----
    DataQualityWarning
        Some boxes had too few finite pixels; they take the nearest valid
        box's values.
    """
    data = np.asarray(image, dtype=np.float64)
    if data.ndim != 2:
        msg = f"image must be 2-D, got shape {data.shape}"
        raise ValueError(msg)
    box = int(max(4, box_pix))
    n_by, n_bx = math.ceil(data.shape[0] / box), math.ceil(data.shape[1] / box)
    bkg = np.full((n_by, n_bx), np.nan)
    rms = np.full((n_by, n_bx), np.nan)
    for j in range(n_by):
        for i in range(n_bx):
            cell = data[j * box : (j + 1) * box, i * box : (i + 1) * box]
            values = cell[np.isfinite(cell)]
            if values.size < _MIN_BOX_FRACTION * cell.size or values.size < 16:
                continue
            bkg[j, i], rms[j, i] = _clipped_stats(values)
    valid = np.isfinite(rms) & (rms > 0)
    if not valid.any():
        msg = (
            f"image of shape {data.shape} has too few finite pixels to estimate "
            "its noise; pass an rms_map"
        )
        raise InputDataError(msg)
    if not valid.all():
        warnings.warn(
            f"{int((~valid).sum())} of {valid.size} noise boxes have too few finite "
            "pixels; they use the nearest valid box",
            DataQualityWarning,
            stacklevel=2,
        )
        _, (jj, ii) = ndimage.distance_transform_edt(~valid, return_indices=True)
        bkg, rms = bkg[jj, ii], rms[jj, ii]
    return _upsample(bkg, data.shape, box), _upsample(rms, data.shape, box)


def _clipped_stats(values: NDArray[np.float64]) -> tuple[float, float]:
    keep = values
    for _ in range(_CLIP_ITER):
        median = float(np.median(keep))
        sigma = _MAD_TO_SIGMA * float(np.median(np.abs(keep - median)))
        new = values[np.abs(values - median) <= _CLIP_SIGMA * sigma]
        if new.size == keep.size or new.size < 16:
            break
        keep = new
    median = float(np.median(keep))
    return median, _MAD_TO_SIGMA * float(np.median(np.abs(keep - median)))


def _upsample(grid: NDArray, shape: tuple[int, ...], box: int) -> NDArray[np.float64]:
    """Bilinearly interpolate box values (at box centres) onto every pixel."""
    y = (np.arange(shape[0]) + 0.5) / box - 0.5
    x = (np.arange(shape[1]) + 0.5) / box - 0.5
    yy = np.clip(y, 0, grid.shape[0] - 1)
    xx = np.clip(x, 0, grid.shape[1] - 1)
    coords = np.meshgrid(yy, xx, indexing="ij")
    return ndimage.map_coordinates(grid, coords, order=1, mode="nearest")


def _source_names(ra_deg: NDArray, dec_deg: NDArray) -> NDArray[np.str_]:
    names = []
    for ra, dec in zip(ra_deg, dec_deg, strict=True):
        hours = ra / 15.0
        h, m = int(hours), int((hours % 1) * 60)
        s = ((hours * 60) % 1) * 60
        sign = "-" if dec < 0 else "+"
        a = abs(dec)
        d, am = int(a), int((a % 1) * 60)
        asec = ((a * 60) % 1) * 60
        names.append(f"J{h:02d}{m:02d}{s:04.1f}{sign}{d:02d}{am:02d}{asec:02.0f}")
    return np.array(names, dtype=str)


def find_sources(
    image: ArrayLike,
    wcs: WCS,
    *,
    beam: Beam,
    rms_map: ArrayLike | None = None,
    background_map: ArrayLike | None = None,
    threshold_sigma: float = 5.0,
    rms_box_beams: float = 20.0,
) -> Table:
    """Find point sources above a signal-to-noise threshold.

    Parameters
    ----------
    image : array_like, shape (n_y, n_x)
        Restored image or mosaic, Jy/beam, indexed ``image[y, x]``; NaN marks
        blanked pixels.
    wcs : astropy.wcs.WCS
        Two-dimensional celestial WCS of ``image``.
    beam : Beam
        Restoring beam.
    rms_map : array_like, shape (n_y, n_x), optional
        Noise image, Jy/beam (e.g. a mosaic's weight-derived noise). Default:
        estimated from the image with :func:`estimate_rms_map`.
    background_map : array_like, shape (n_y, n_x), optional
        Background subtracted before detection, Jy/beam. Default: the
        estimated background when ``rms_map`` is estimated, else zero.
    threshold_sigma : float
        Detection threshold, in units of the local rms.
    rms_box_beams : float
        Box side for the noise estimate, in beam major axes.

    Returns
    -------
    astropy.table.Table
        One row per component, brightest first, columns `FOUND_COLUMNS`:
        IAU-style ``name``, ``island_id``, refined position, ``peak_jy`` and
        ``peak_snr`` at the peak pixel, matched-filter ``flux_jy`` and
        ``flux_err_jy`` (as :func:`measure_forced`), local ``rms_jy``,
        ``snr = flux_jy / flux_err_jy``, island size ``n_pix`` and photometry
        ``flags``.

    Raises
    ------
    InputDataError
        No noise map was given and the image has too few finite pixels to
        estimate one.

    Warns
    -----
    DataQualityWarning
        No source reached the threshold, or the given rms map is missing
        (non-finite or non-positive) where the image has data.

    Examples
    --------
    >>> import numpy as np
    >>> from dsa110_contimg.testing.images import make_point_source_image
    >>> beam = Beam(15.0, 15.0, 0.0)
    >>> image, wcs, _ = make_point_source_image(
    ...     (256, 256), cell_arcsec=3.0, center_ra_deg=150.0, center_dec_deg=40.0,
    ...     sources=[(150.0, 40.0, 0.1)], beam=beam, noise_rms_jy=1e-3,
    ...     rng=np.random.default_rng(1))
    >>> found = find_sources(image, wcs, beam=beam)
    >>> len(found), bool(abs(found["flux_jy"][0] - 0.1) < 0.005)
    (1, True)
    """
    data = np.asarray(image, dtype=np.float64)
    if data.ndim != 2:
        msg = f"image must be 2-D, got shape {data.shape}"
        raise ValueError(msg)
    pixel_beam = _PixelGaussian.from_beam(beam, wcs)
    bkg, rms = _noise(data, rms_map, background_map, pixel_beam, rms_box_beams)
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = (data - bkg) / rms
    above = np.isfinite(snr) & (snr >= threshold_sigma)
    islands, n_islands = ndimage.label(above, structure=np.ones((3, 3)))
    peaks_y, peaks_x = _island_peaks(snr, islands, pixel_beam)
    if peaks_y.size == 0:
        warnings.warn(
            f"no source above {threshold_sigma} sigma on an image of shape "
            f"{data.shape}",
            DataQualityWarning,
            stacklevel=2,
        )
        return _empty_found()
    du, dv = _quadratic_peak(data - bkg, peaks_x, peaks_y)
    x, y = peaks_x + du, peaks_y + dv
    ra, dec = (np.asarray(a, dtype=np.float64) for a in wcs.all_pix2world(x, y, 0))
    forced = measure_forced(data - bkg, wcs, ra, dec, beam=beam, rms_map=rms)
    sizes = ndimage.sum_labels(above, islands, index=np.arange(1, n_islands + 1))
    island = islands[peaks_y, peaks_x]
    table = Table(
        {
            "name": _source_names(ra, dec),
            "island_id": island.astype(np.int64),
            "ra_deg": ra,
            "dec_deg": dec,
            "x_pix": x,
            "y_pix": y,
            "peak_jy": (data - bkg)[peaks_y, peaks_x],
            "peak_snr": snr[peaks_y, peaks_x],
            "flux_jy": forced.flux_jy,
            "flux_err_jy": forced.flux_err_jy,
            "rms_jy": rms[peaks_y, peaks_x],
            "snr": forced.snr,
            "n_pix": sizes[island - 1].astype(np.int64),
            "flags": forced.flags,
        }
    )
    table.sort("peak_jy", reverse=True)
    log.info(
        "sources found",
        extra={"n_sources": len(table), "threshold_sigma": threshold_sigma},
    )
    return table


def _noise(
    data: NDArray,
    rms_map: ArrayLike | None,
    background_map: ArrayLike | None,
    pixel_beam: _PixelGaussian,
    rms_box_beams: float,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    if rms_map is None:
        box = int(round(rms_box_beams * pixel_beam.major_pix))
        bkg, rms = estimate_rms_map(data, box_pix=box)
        log.debug("rms map estimated", extra={"box_pix": box})
    else:
        rms = np.asarray(rms_map, dtype=np.float64)
        if rms.shape != data.shape:
            msg = f"rms_map shape {rms.shape} differs from image {data.shape}"
            raise ValueError(msg)
        bad = np.isfinite(data) & ~(np.isfinite(rms) & (rms > 0))
        if bad.any():
            warnings.warn(
                f"rms_map is missing (NaN or <= 0) at {int(bad.sum())} pixel(s) "
                "with data; no source is detected there",
                DataQualityWarning,
                stacklevel=3,
            )
        bkg = np.zeros_like(data)
    if background_map is not None:
        bkg = np.asarray(background_map, dtype=np.float64)
        if bkg.shape != data.shape:
            msg = f"background_map shape {bkg.shape} differs from image {data.shape}"
            raise ValueError(msg)
    return bkg, rms


def _island_peaks(
    snr: NDArray, islands: NDArray, pixel_beam: _PixelGaussian
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Return pixels that are the maximum within a beam-sized disk and in an island."""
    minor_pix = float(
        np.sqrt(np.linalg.eigvalsh(pixel_beam.cov)[0])
        * 2.0
        * math.sqrt(2 * math.log(2))
    )
    r = max(1, int(math.floor(minor_pix)))
    oy, ox = np.mgrid[-r : r + 1, -r : r + 1]
    footprint = ox**2 + oy**2 <= r * r
    filled = np.where(np.isfinite(snr), snr, -np.inf)
    local_max = ndimage.maximum_filter(filled, footprint=footprint, mode="nearest")
    peaks = (islands > 0) & (filled == local_max)
    py, px = np.nonzero(peaks)
    return py.astype(np.intp), px.astype(np.intp)


def _empty_found() -> Table:
    table = Table()
    for column in FOUND_COLUMNS:
        if column == "name":
            table[column] = np.zeros(0, dtype=str)
        elif column in ("island_id", "n_pix"):
            table[column] = np.zeros(0, dtype=np.int64)
        elif column == "flags":
            table[column] = np.zeros(0, dtype=np.int32)
        else:
            table[column] = np.zeros(0)
    return table


def _catalog_arrays(
    catalog: SkyCatalog | Table,
) -> tuple[NDArray[np.str_], NDArray, NDArray, NDArray]:
    if isinstance(catalog, SkyCatalog):
        return catalog.name, catalog.ra_deg, catalog.dec_deg, catalog.flux_jy
    missing = [c for c in ("name", "ra_deg", "dec_deg") if c not in catalog.colnames]
    if missing:
        msg = f"catalogue table lacks column(s) {', '.join(missing)}"
        raise InputDataError(msg)
    name = np.char.strip(np.asarray(catalog["name"], dtype=str))

    def numeric(column: str) -> NDArray[np.float64]:
        values = catalog[column]
        if isinstance(values, np.ma.MaskedArray):
            values = values.filled(np.nan)
        out = np.full(len(catalog), np.nan)
        for k, value in enumerate(np.asarray(values)):
            try:
                out[k] = float(value)
            except (TypeError, ValueError):
                out[k] = np.nan
        return out

    ra, dec = numeric("ra_deg"), numeric("dec_deg")
    flux = (
        numeric("flux_jy")
        if "flux_jy" in catalog.colnames
        else np.full(name.size, np.nan)
    )
    bad = (name == "") | ~np.isfinite(ra) | ~np.isfinite(dec) | (np.abs(dec) > 90)
    if bad.any():
        rows = ", ".join(str(k) for k in np.flatnonzero(bad)[:5])
        warnings.warn(
            f"catalogue has {int(bad.sum())} malformed row(s) (rows {rows}"
            f"{', ...' if bad.sum() > 5 else ''}): empty name or invalid position; "
            "they are not matched",
            DataQualityWarning,
            stacklevel=3,
        )
    keep = ~bad
    return name[keep], ra[keep], dec[keep], flux[keep]


def _unit_vectors(ra_deg: NDArray, dec_deg: NDArray) -> NDArray[np.float64]:
    ra, dec = np.deg2rad(ra_deg), np.deg2rad(dec_deg)
    return np.column_stack(
        [np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)]
    )


def crossmatch(
    found: Table, catalog: SkyCatalog | Table, *, radius_arcsec: float
) -> tuple[Table, Table]:
    """Match found sources to a catalogue; return the matched and the new ones.

    Parameters
    ----------
    found : astropy.table.Table
        Sources from :func:`find_sources` (needs ``ra_deg, dec_deg``).
    catalog : SkyCatalog or astropy.table.Table
        Reference catalogue: ``name, ra_deg, dec_deg`` and optionally
        ``flux_jy``. Rows with an empty name or an invalid position are
        skipped with a warning.
    radius_arcsec : float
        Largest separation of a match, arcsec.

    Returns
    -------
    matched : astropy.table.Table
        Found sources with a catalogue source within ``radius_arcsec``, plus
        ``catalog_name``, ``catalog_flux_jy`` and ``separation_arcsec`` of the
        nearest one.
    new_sources : astropy.table.Table
        Found sources without a catalogue counterpart (same columns as
        ``found``).

    Warns
    -----
    DataQualityWarning
        Malformed catalogue rows were skipped.
    """
    if not radius_arcsec > 0:
        msg = f"radius_arcsec must be positive, got {radius_arcsec}"
        raise ValueError(msg)
    names, ra, dec, flux = _catalog_arrays(catalog)
    n_found = len(found)
    separation = np.full(n_found, np.inf)
    nearest = np.zeros(n_found, dtype=np.intp)
    if n_found and names.size:
        tree = cKDTree(_unit_vectors(ra, dec))
        chord, nearest = tree.query(
            _unit_vectors(np.asarray(found["ra_deg"]), np.asarray(found["dec_deg"]))
        )
        separation = np.rad2deg(2.0 * np.arcsin(np.clip(chord / 2.0, 0, 1))) * 3600.0
    is_match = separation <= radius_arcsec
    matched = found[is_match]
    matched["catalog_name"] = (
        names[nearest[is_match]] if names.size else np.zeros(0, str)
    )
    matched["catalog_flux_jy"] = flux[nearest[is_match]] if names.size else np.zeros(0)
    matched["separation_arcsec"] = separation[is_match]
    new_sources = found[~is_match]
    log.info(
        "sources cross-matched",
        extra={"n_matched": len(matched), "n_new": len(new_sources)},
    )
    return matched, new_sources
