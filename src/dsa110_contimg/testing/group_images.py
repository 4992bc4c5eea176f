"""Synthetic group-image products (image, primary beam, rms) with known truth.

Builds what the imaging stage writes for one drift-scan group, without
visibilities: a restored image of point sources seen through the group's
drift-averaged primary beam, on correlated noise, with the provenance and
pointing-track header cards, plus its ``-pb.fits`` and ``-rms.fits`` maps.
Used by the mosaic tests and the mosaic benchmark.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from astropy.io import fits

from dsa110_contimg.data_ingestion.photometry import Beam
from dsa110_contimg.mosaic import DriftTrack, primary_beam_at, primary_beam_image
from dsa110_contimg.products import ImageNames
from dsa110_contimg.testing.images import make_point_source_image

__all__ = ["write_group_image"]


def write_group_image(
    prefix: Path,
    track: DriftTrack,
    *,
    shape: tuple[int, int],
    cell_arcsec: float,
    sources: Sequence[tuple[float, float, float]],
    beam: Beam,
    noise_rms_jy: float,
    rng: np.random.Generator,
) -> Path:
    """Write ``<prefix>-image.fits``, ``-pb.fits`` and ``-rms.fits`` of one group.

    Parameters
    ----------
    prefix : Path
        Product prefix (``images_dir/drift_<time>_00``).
    track : DriftTrack
        Pointing track and band of the group; the image is centred on the
        beam centre at the middle of the track.
    shape : (int, int)
        Image shape ``(n_y, n_x)``.
    cell_arcsec : float
        Pixel size, arcsec.
    sources : sequence of (ra_deg, dec_deg, flux_jy)
        True (primary-beam-corrected) point sources; each appears with
        ``flux_jy`` times the drift-averaged beam at its position.
    beam : Beam
        Restoring beam.
    noise_rms_jy : float
        Pixel rms of the (flat) image noise, Jy/beam.
    rng : numpy.random.Generator
        Random generator for the noise.

    Returns
    -------
    Path
        The restored image path.
    """
    ra_c, dec_c = track.beam_centres_deg()
    centre_ra = float(np.median(ra_c))
    centre_dec = float(np.median(dec_c))
    src = np.asarray(sources, dtype=np.float64).reshape(-1, 3)
    apparent = src.copy()
    if src.size:
        apparent[:, 2] *= primary_beam_at(track, src[:, 0], src[:, 1])
    image, wcs, header = make_point_source_image(
        shape,
        cell_arcsec=cell_arcsec,
        center_ra_deg=centre_ra,
        center_dec_deg=centre_dec,
        sources=[tuple(row) for row in apparent],
        beam=beam,
        noise_rms_jy=noise_rms_jy,
        rng=rng,
    )
    pb = primary_beam_image(wcs, shape, track)
    header["DSAPTDEC"] = track.pointing_dec_deg
    header["DSAT0MJD"] = track.start_mjd
    header["DSADTSEC"] = track.step_s
    header["DSANTIME"] = track.n_time
    header["DSAFMIN"] = track.freq_min_hz
    header["DSAFMAX"] = track.freq_max_hz
    header["DSAIMGR"] = "synthetic"
    header["DSACAL"] = "none"
    header["DSAGROUP"] = Path(prefix).name
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    paths = {k: ImageNames(prefix).path(k) for k in ("image", "pb", "rms")}
    fits.PrimaryHDU(pb.astype(np.float32), header).writeto(paths["pb"], overwrite=True)
    rms = np.full(shape, noise_rms_jy, dtype=np.float32)
    fits.PrimaryHDU(rms, header).writeto(paths["rms"], overwrite=True)
    fits.PrimaryHDU(image.astype(np.float32), header).writeto(
        paths["image"], overwrite=True
    )
    return paths["image"]
