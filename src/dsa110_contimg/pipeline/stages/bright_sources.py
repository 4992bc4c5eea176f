"""Bright flux calibrators subtracted before imaging and restored after it.

A source of ~15 Jy drifting through the primary beam during a group is seen
through a beam that changes from integration to integration; a clean with one
PSF cannot model that, and near the beam's edge (where the beam changes
fastest) it leaves deconvolution errors of 2-3% of the source's apparent flux
along the PSF's ridges (the demo's -44 sigma stripe on the mosaic's east edge,
1.8 deg from 3C286). The catalogue flux standards (``model = pb17`` in
``data/calibrators.csv``, Perley & Butler 2017) are known to ~1%, and
calibration sets the flux scale on them, so their visibilities are predicted
exactly as the calibration models them (catalogue spectrum times the Airy
beam per integration and channel, `calibration._model.predict_model`) and
subtracted into the column ``DSA_SUBTRACTED`` before imaging. What the
subtraction leaves (calibration errors, a catalogue flux error) is imaged and
cleaned as usual; each subtracted source inside the field is then restored
into the restored image as the restoring beam times its drift-averaged
apparent flux (`mosaic.primary_beam_at` at the image frequency), so the
photometry measures it as before, with the clean residual added.

Bright *catalogue* sources (the photometry catalogue) have the same problem
and no known flux: a 3 Jy source 1.2 deg east of the beam centre (primary
beam 0.58) read 8% high, the same source 1.2 deg north 0.5% (issue 13.2,
``tests/integration/test_drift_psf.py``). Those whose drift-averaged apparent
flux exceeds ``imaging.subtract_catalogue_min_snr`` times the image rms
expected before imaging (the radiometer rms and the brightest source's
dynamic-range floor, `bright_catalogue_sources`), at most
``imaging.subtract_catalogue_max_sources`` of them, are therefore fitted in
the visibilities first (`fit_and_subtract`: one flux scale per source,
weighted least squares against the same drifting-beam model, all sources at
once from the normal equations, compiled loops in `_bright_kernels`),
subtracted with the fitted flux and restored with it: the photometry then
measures each as its fitted flux plus what the clean left at its position,
and a source whose flux differs from the catalogue (a variable, an ESE) is
measured at its own flux.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
from astropy.io import fits

from dsa110_contimg._optional import require
from dsa110_contimg.calibration._calibrators import load_calibrators
from dsa110_contimg.calibration._model import (
    SourceTerms,
    read_ms_geometry,
    source_terms,
)
from dsa110_contimg.data_ingestion.photometry import Beam, _PixelGaussian
from dsa110_contimg.data_ingestion.skymodel import SkyCatalog
from dsa110_contimg.mosaic import DriftTrack, image_frequency_hz, primary_beam_at
from dsa110_contimg.pipeline.stages import _bright_kernels
from dsa110_contimg.telescope.beam_models import angular_separation_rad
from dsa110_contimg.tools.fits_header import celestial_wcs

__all__ = [
    "SUBTRACTED_COLUMN",
    "bright_calibrators",
    "bright_catalogue_sources",
    "concatenate",
    "fit_and_subtract",
    "restore_sources",
    "restored_apparent_jy",
]

log = logging.getLogger(__name__)

SUBTRACTED_COLUMN = "DSA_SUBTRACTED"
_PARALLEL_HANDS = (5, 8, 9, 12)  # RR, LL, XX, YY
_C_M_S = 299_792_458.0
_RESTORE_SIGMAS = 6.0
# restored-image cards naming each restored source and its apparent flux
_NAME_CARD, _FLUX_CARD = "DSABN", "DSABA"
# catalogue sources farther than this from the beam centre are not candidates
# (the Airy beam's power there is < 1e-3 across the band)
_SEARCH_RADIUS_DEG = 6.0
# a catalogue source this close to a subtracted flux standard is that standard
_SAME_SOURCE_ARCSEC = 30.0
# the fluxes are fitted on at most this many channels spread over the band
_FIT_CHANNELS = 24


def bright_calibrators(
    track: DriftTrack, freq_hz: float, min_apparent_jy: float
) -> tuple[SkyCatalog, np.ndarray]:
    """Return the flux standards brighter than ``min_apparent_jy`` in the beam.

    Parameters
    ----------
    track : DriftTrack
        The group's pointing track and band.
    freq_hz : float
        Image frequency, Hz.
    min_apparent_jy : float
        Smallest drift-averaged apparent flux (catalogue flux times the
        primary beam) of a source to subtract, Jy.

    Returns
    -------
    (SkyCatalog, ndarray)
        The sources and their drift-averaged apparent fluxes at ``freq_hz``.
    """
    standards = [c for c in load_calibrators() if c.model == "pb17"]
    skies = [c.as_sky() for c in standards]
    if not skies:
        return concatenate(), np.zeros(0)
    ra = np.array([float(s.ra_deg[0]) for s in skies])
    dec = np.array([float(s.dec_deg[0]) for s in skies])
    apparent = np.array(
        [float(s.flux_at(freq_hz)[0]) for s in skies]
    ) * primary_beam_at(track, ra, dec)
    keep = np.flatnonzero(apparent >= min_apparent_jy)
    return concatenate(*(skies[k] for k in keep)), apparent[keep]


def bright_catalogue_sources(
    catalog: SkyCatalog,
    track: DriftTrack,
    freq_hz: float,
    *,
    min_snr: float,
    thermal_rms_jy: float,
    dynamic_range: float,
    max_sources: int,
    exclude: SkyCatalog | None = None,
) -> SkyCatalog:
    """Return the catalogue's sources bright enough to fit in the visibilities.

    A source is a candidate when its drift-averaged apparent flux (catalogue
    flux times the primary beam) exceeds ``min_snr`` times the image rms
    expected before imaging: the radiometer rms and the brightest remaining
    source's apparent flux over ``dynamic_range`` in quadrature (the
    `image_quality` expectation). Fainter sources are left to the clean: the
    visibility fit of a source near the noise picks up the confusion of the
    whole field through the naturally weighted model, and the restored image
    reads only part of what the fit misses.

    Parameters
    ----------
    catalog : SkyCatalog
        The photometry catalogue.
    track : DriftTrack
        The group's pointing track and band.
    freq_hz : float
        Image frequency, Hz.
    min_snr : float
        Smallest apparent flux over the expected rms (ratio).
    thermal_rms_jy : float
        The MS's radiometer rms, Jy/beam.
    dynamic_range : float
        The image dynamic range: the brightest source's apparent flux over
        this is the rms floor it sets.
    max_sources : int
        At most this many, the brightest apparent first.
    exclude : SkyCatalog, optional
        Sources subtracted otherwise (the flux standards): a catalogue source
        within 30 arcsec of one is left out, and they set no rms floor.

    Returns
    -------
    SkyCatalog
        The candidates, brightest apparent first.
    """
    ra_c, dec_c = (float(np.median(c)) for c in track.beam_centres_deg())
    near = catalog.select_within(ra_c, dec_c, _SEARCH_RADIUS_DEG)
    if not len(near):
        return near
    keep = np.ones(len(near), bool)
    if exclude is not None and len(exclude):
        sep = angular_separation_rad(
            np.deg2rad(near.ra_deg)[:, None],
            np.deg2rad(near.dec_deg)[:, None],
            np.deg2rad(exclude.ra_deg)[None, :],
            np.deg2rad(exclude.dec_deg)[None, :],
        )
        keep &= ~np.any(sep < np.deg2rad(_SAME_SOURCE_ARCSEC / 3600.0), axis=1)
    apparent = near.flux_at(freq_hz) * primary_beam_at(track, near.ra_deg, near.dec_deg)
    keep &= np.isfinite(apparent)
    if not keep.any():
        return near.subset([])
    expected = math.hypot(thermal_rms_jy, float(apparent[keep].max()) / dynamic_range)
    keep &= apparent >= min_snr * expected
    index = np.flatnonzero(keep)
    index = index[np.argsort(-apparent[index], kind="stable")][:max_sources]
    return near.subset(index)


def concatenate(*catalogs: SkyCatalog) -> SkyCatalog:
    """Return the catalogues' sources one after another (none: empty)."""

    def column(name: str) -> np.ndarray:
        parts = [np.asarray(getattr(c, name)) for c in catalogs]
        return np.concatenate(parts) if parts else np.zeros(0)

    return SkyCatalog(
        name=column("name").astype(str),
        ra_deg=column("ra_deg").astype(float),
        dec_deg=column("dec_deg").astype(float),
        flux_jy=column("flux_jy").astype(float),
        spectral_index=column("spectral_index").astype(float),
        ref_freq_hz=column("ref_freq_hz").astype(float),
    )


def fit_and_subtract(
    ms_path: Path,
    fixed: SkyCatalog,
    fitted: SkyCatalog,
    data_column: str,
    *,
    min_uv_lambda: float = 0.0,
) -> tuple[str, SkyCatalog]:
    """Subtract ``fixed`` at its fluxes and ``fitted`` at fluxes fitted here.

    Each ``fitted`` source's model (its catalogue spectrum through the
    drifting beam, per integration and channel) is scaled by one factor,
    found by weighted least squares on the parallel hands of the
    cross-correlations at least ``min_uv_lambda`` long (``WEIGHT``, flags
    honoured) after ``fixed`` is subtracted. The factors of all sources are
    solved together from the normal equations, so sources whose dirty beams
    overlap are separated exactly. A source whose fitted flux is not
    positive is left in the data and dropped from the result.

    Parameters
    ----------
    ms_path : Path
        The Measurement Set (written in place: `SUBTRACTED_COLUMN` added or
        replaced).
    fixed : SkyCatalog
        Sources subtracted at their catalogue fluxes (the flux standards).
    fitted : SkyCatalog
        Sources whose fluxes are fitted (from `bright_catalogue_sources`).
    data_column : str
        The column to subtract from (``DATA`` or ``CORRECTED_DATA``).
    min_uv_lambda : float
        Shortest baseline of the fit, wavelengths (the imager's cut).

    Returns
    -------
    (str, SkyCatalog)
        The column to image, and the fitted sources with their fitted fluxes
        (``flux_jy`` at ``ref_freq_hz``, the catalogue spectral index kept).
    """
    tables = require("casacore.tables", "casa")
    geometry = read_ms_geometry(Path(ms_path))
    with tables.table(f"{ms_path}/POLARIZATION", ack=False) as pol:
        corr = np.asarray(pol.getcol("CORR_TYPE"))[0]
    parallel = np.flatnonzero(np.isin(corr, _PARALLEL_HANDS))
    with tables.table(str(ms_path), readonly=False, ack=False) as ms:
        data = ms.getcol(data_column)
        resid = np.ascontiguousarray(data[:, :, parallel])
        if len(fixed):
            _bright_kernels.subtract_scaled(
                resid, source_terms(geometry, fixed), np.ones(len(fixed))
            )
        scale = np.zeros(len(fitted))
        if len(fitted):
            terms = source_terms(geometry, fitted)
            weight = _fit_weights(ms, geometry, parallel, min_uv_lambda)
            scale = _fit_scales(terms, resid, weight)
            del weight
            _bright_kernels.subtract_scaled(resid, terms, scale)
        positive = scale > 0
        result = fitted.subset(positive)
        result = replace(result, flux_jy=result.flux_jy * scale[positive])
        data[:, :, parallel] = resid
        if SUBTRACTED_COLUMN not in ms.colnames():
            desc = tables.makearrcoldesc(
                SUBTRACTED_COLUMN,
                0j,
                valuetype="complex",
                ndim=2,
                datamanagertype="TiledColumnStMan",
            )
            ms.addcols(tables.maketabdesc(desc))
        ms.putcol(SUBTRACTED_COLUMN, data)
    log.info(
        "bright sources subtracted",
        extra={
            "ms": str(ms_path),
            "sources": list(map(str, fixed.name)),
            "fitted": {
                str(n): round(float(f), 4)
                for n, f in zip(result.name, result.flux_jy, strict=True)
            },
            "catalogue_flux_scale": {
                str(n): round(float(g), 4)
                for n, g in zip(fitted.name, scale, strict=True)
            },
        },
    )
    return SUBTRACTED_COLUMN, result


def _fit_weights(ms, geometry, parallel: np.ndarray, min_uv_lambda: float):
    """Weights (row, channel, hand) of the fit: 0 where flagged or excluded."""
    flag = ms.getcol("FLAG")[:, :, parallel]
    weight = np.asarray(ms.getcol("WEIGHT"), np.float32)[:, parallel]
    cross = ms.getcol("ANTENNA1") != ms.getcol("ANTENNA2")
    uv_lambda = (
        np.hypot(geometry.uvw_m[:, 0], geometry.uvw_m[:, 1])[:, None]
        * geometry.freq_hz[None, :]
        / _C_M_S
    )
    use = cross[:, None] & (uv_lambda >= min_uv_lambda)  # (row, channel)
    return np.where(flag | ~use[:, :, None], np.float32(0), weight[:, None, :])


def _fit_scales(
    terms: SourceTerms, resid: np.ndarray, weight: np.ndarray
) -> np.ndarray:
    """Solve the weighted normal equations of one flux scale per source.

    The equations use at most `_FIT_CHANNELS` channels spread over the band:
    whatever the fit misses stays in the data the imager and the photometry
    see. A source whose scale comes out not positive is dropped (scale 0)
    and the rest re-solved.
    """
    n_chan = terms.freq_hz.size
    gram, rhs = _bright_kernels.normal_equations(
        resid, weight, terms, stride=math.ceil(n_chan / _FIT_CHANNELS)
    )
    scale = np.zeros(rhs.size)
    active = np.flatnonzero(np.diag(gram) > 0)  # sources no unflagged data see: 0
    while active.size:
        solved = np.linalg.lstsq(gram[np.ix_(active, active)], rhs[active], rcond=None)[
            0
        ]
        if np.all(solved > 0):
            scale[active] = solved
            break
        active = active[solved > 0]
    return scale


def restore_sources(image_path: Path, sources: SkyCatalog, track: DriftTrack) -> int:
    """Add subtracted sources back into a restored image as restoring beams.

    Parameters
    ----------
    image_path : Path
        The restored image (``BMAJ``/``BMIN``/``BPA`` and a frequency axis in
        its header); updated in place.
    sources : SkyCatalog
        The subtracted sources.
    track : DriftTrack
        The group's pointing track: each source is restored with its flux
        (catalogue or fitted, `fit_and_subtract`) at the image frequency times
        the drift-averaged primary beam.

    Returns
    -------
    int
        The number of sources that fell on the image and were restored; each
        is named in the header with its restored apparent flux
        (`restored_apparent_jy` reads them).
    """
    with fits.open(image_path, mode="update") as hdul:
        header = hdul[0].header
        data = hdul[0].data
        plane = data.reshape(data.shape[-2:])
        wcs = celestial_wcs(header)
        beam = Beam(
            3600.0 * float(header["BMAJ"]),
            3600.0 * float(header["BMIN"]),
            float(header.get("BPA", 0.0)),
        )
        freq = image_frequency_hz(header)
        apparent_jy = sources.flux_at(freq) * primary_beam_at(
            track, sources.ra_deg, sources.dec_deg
        )
        pixel_beam = _PixelGaussian.from_beam(beam, wcs)
        half = math.ceil(_RESTORE_SIGMAS * pixel_beam.major_pix / 2.3548)
        x, y = wcs.world_to_pixel_values(sources.ra_deg, sources.dec_deg)
        n_y, n_x = plane.shape
        restored = 0
        for name, xk, yk, flux in zip(sources.name, x, y, apparent_jy, strict=True):
            if not (0 <= xk <= n_x - 1 and 0 <= yk <= n_y - 1):
                continue
            # for the estimators that do not read the restored image
            header[f"{_NAME_CARD}{restored + 1:03d}"] = (str(name), "restored source")
            header[f"{_FLUX_CARD}{restored + 1:03d}"] = (
                float(flux),
                "its apparent flux restored, Jy",
            )
            x0, x1 = max(0, round(xk) - half), min(n_x, round(xk) + half + 1)
            y0, y1 = max(0, round(yk) - half), min(n_y, round(yk) + half + 1)
            yy, xx = np.mgrid[y0:y1, x0:x1]
            stamp = flux * pixel_beam.evaluate(xx - xk, yy - yk)
            plane[y0:y1, x0:x1] += stamp.astype(plane.dtype)
            restored += 1
        header.add_history(
            f"dsa110_contimg: restored {restored} subtracted source(s): "
            + ", ".join(
                f"{n} {f:.4g} Jy"
                for n, f in zip(sources.name, sources.flux_at(freq), strict=True)
            )
        )
        hdul.flush()
    return restored


def restored_apparent_jy(header: fits.Header) -> dict[str, float]:
    """Return the sources `restore_sources` restored into an image.

    Parameters
    ----------
    header : astropy.io.fits.Header
        The restored image's header.

    Returns
    -------
    dict
        Source name to the apparent flux (Jy, the drift-averaged primary beam
        times the catalogue or fitted flux at the image frequency) that was
        subtracted from the visibilities and restored; empty when none was.
    """
    out = {}
    for k in range(1, 1000):
        name = header.get(f"{_NAME_CARD}{k:03d}")
        if name is None:
            break
        out[str(name)] = float(header[f"{_FLUX_CARD}{k:03d}"])
    return out
