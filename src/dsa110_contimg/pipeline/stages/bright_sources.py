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
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
from astropy.io import fits

from dsa110_contimg._optional import require
from dsa110_contimg.calibration._calibrators import load_calibrators
from dsa110_contimg.calibration._model import predict_model, read_ms_geometry
from dsa110_contimg.data_ingestion.photometry import Beam, _PixelGaussian
from dsa110_contimg.data_ingestion.skymodel import SkyCatalog
from dsa110_contimg.mosaic import DriftTrack, image_frequency_hz, primary_beam_at
from dsa110_contimg.tools.fits_header import celestial_wcs

__all__ = ["SUBTRACTED_COLUMN", "bright_calibrators", "restore_sources", "subtract"]

log = logging.getLogger(__name__)

SUBTRACTED_COLUMN = "DSA_SUBTRACTED"
_PARALLEL_HANDS = (5, 8, 9, 12)  # RR, LL, XX, YY
_RESTORE_SIGMAS = 6.0


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
        return _catalog([]), np.zeros(0)
    ra = np.array([float(s.ra_deg[0]) for s in skies])
    dec = np.array([float(s.dec_deg[0]) for s in skies])
    apparent = np.array(
        [float(s.flux_at(freq_hz)[0]) for s in skies]
    ) * primary_beam_at(track, ra, dec)
    keep = np.flatnonzero(apparent >= min_apparent_jy)
    return _catalog([skies[k] for k in keep]), apparent[keep]


def _catalog(skies: list[SkyCatalog]) -> SkyCatalog:
    def column(name: str, dtype: type) -> np.ndarray:
        values = [getattr(s, name)[0] for s in skies]
        return np.asarray(values, dtype=dtype)

    return SkyCatalog(
        name=column("name", object).astype(str),
        ra_deg=column("ra_deg", float),
        dec_deg=column("dec_deg", float),
        flux_jy=column("flux_jy", float),
        spectral_index=column("spectral_index", float),
        ref_freq_hz=column("ref_freq_hz", float),
    )


def subtract(ms_path: Path, sources: SkyCatalog, data_column: str) -> str:
    """Write ``data_column`` minus the sources' model into `SUBTRACTED_COLUMN`.

    Parameters
    ----------
    ms_path : Path
        The Measurement Set (written in place: one column added or replaced).
    sources : SkyCatalog
        Point sources to subtract (from `bright_calibrators`).
    data_column : str
        The column to subtract from (``DATA`` or ``CORRECTED_DATA``).

    Returns
    -------
    str
        The name of the column to image (`SUBTRACTED_COLUMN`).
    """
    tables = require("casacore.tables", "casa")
    model = predict_model(read_ms_geometry(Path(ms_path)), sources)
    with tables.table(f"{ms_path}/POLARIZATION", ack=False) as pol:
        corr = np.asarray(pol.getcol("CORR_TYPE"))[0]
    parallel = np.isin(corr, _PARALLEL_HANDS)
    with tables.table(str(ms_path), readonly=False, ack=False) as ms:
        data = ms.getcol(data_column)
        data[:, :, parallel] -= model[:, :, None]
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
        extra={"ms": str(ms_path), "sources": list(map(str, sources.name))},
    )
    return SUBTRACTED_COLUMN


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
        The group's pointing track: each source is restored with its catalogue
        flux at the image frequency times the drift-averaged primary beam.

    Returns
    -------
    int
        The number of sources that fell on the image and were restored.
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
        for xk, yk, flux in zip(x, y, apparent_jy, strict=True):
            if not (0 <= xk <= n_x - 1 and 0 <= yk <= n_y - 1):
                continue
            x0, x1 = max(0, round(xk) - half), min(n_x, round(xk) + half + 1)
            y0, y1 = max(0, round(yk) - half), min(n_y, round(yk) + half + 1)
            yy, xx = np.mgrid[y0:y1, x0:x1]
            stamp = flux * pixel_beam.evaluate(xx - xk, yy - yk)
            plane[y0:y1, x0:x1] += stamp.astype(plane.dtype)
            restored += 1
        header.add_history(
            f"dsa110_contimg: restored {restored} subtracted flux standard(s): "
            + ", ".join(map(str, sources.name))
        )
        hdul.flush()
    return restored
