"""Synthetic restored images: Gaussian point sources on correlated noise."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from numpy.typing import NDArray

from dsa110_contimg.data_ingestion._sky_image import add_point_sources, correlated_noise
from dsa110_contimg.data_ingestion.photometry import Beam

__all__ = ["make_point_source_image"]


def make_point_source_image(
    shape: tuple[int, int],
    *,
    cell_arcsec: float,
    center_ra_deg: float,
    center_dec_deg: float,
    sources: Sequence[tuple[float, float, float]],
    beam: Beam,
    noise_rms_jy: float = 0.0,
    rng: np.random.Generator | None = None,
    noise_beam: Beam | None = None,
) -> tuple[NDArray[np.float64], WCS, fits.Header]:
    r"""Make a restored-like image of point sources, in Jy/beam.

    Parameters
    ----------
    shape : (int, int)
        Image shape ``(n_y, n_x)``; the image is indexed ``image[y, x]``.
    cell_arcsec : float
        Pixel size, arcsec.
    center_ra_deg, center_dec_deg : float
        Reference position (at zero-based pixel ``(n_x // 2, n_y // 2)``), degrees.
    sources : sequence of (ra_deg, dec_deg, flux_jy)
        Point sources; each is a copy of the beam with peak ``flux_jy``
        centred at its exact (sub-pixel) position.
    beam : Beam
        Restoring beam.
    noise_rms_jy : float
        Pixel rms of the noise, Jy/beam; 0 for none.
    rng : numpy.random.Generator, optional
        Random generator for the noise; default an unseeded one.
    noise_beam : Beam, optional
        Gaussian autocorrelation function of the noise; default ``beam``.
        Pass a beam :math:`\sqrt{2}` times wider for noise smoothed by the
        restoring beam itself.

    Returns
    -------
    image : ndarray, shape (n_y, n_x)
        Image in Jy/beam.
    wcs : astropy.wcs.WCS
        Two-dimensional ICRS ``RA---SIN``/``DEC--SIN`` WCS.
    header : astropy.io.fits.Header
        WCS keywords plus BMAJ, BMIN, BPA (degrees) and ``BUNIT = 'JY/BEAM'``.

    Notes
    -----
    White Gaussian noise is convolved with a Gaussian whose covariance is half
    that of ``noise_beam``, so the noise autocorrelation is ``noise_beam``, as
    the residual noise of a CLEAN image is correlated like the dirty beam's main
    lobe. It is then scaled to exactly ``noise_rms_jy`` in expectation.

    Examples
    --------
    >>> import numpy as np
    >>> from dsa110_contimg.data_ingestion.photometry import Beam
    >>> image, wcs, header = make_point_source_image(
    ...     (64, 64), cell_arcsec=3.0, center_ra_deg=10.0, center_dec_deg=20.0,
    ...     sources=[(10.0, 20.0, 1.5)], beam=Beam(15.0, 15.0, 0.0))
    >>> round(float(image[32, 32]), 6), header["BUNIT"]
    (1.5, 'JY/BEAM')
    """
    n_y, n_x = (int(n) for n in shape)
    if n_y < 1 or n_x < 1 or not cell_arcsec > 0:
        msg = f"need a positive shape and cell_arcsec, got {shape}, {cell_arcsec}"
        raise ValueError(msg)
    wcs = _sin_wcs((n_y, n_x), cell_arcsec, center_ra_deg, center_dec_deg)
    image = np.zeros((n_y, n_x))
    if len(sources):
        ra, dec, flux = np.asarray(sources, dtype=np.float64).T
        add_point_sources(image, wcs, ra, dec, flux, beam=beam)
    if noise_rms_jy > 0:
        generator = np.random.default_rng() if rng is None else rng
        noise = correlated_noise((n_y, n_x), wcs, noise_beam or beam, generator)
        image += noise_rms_jy * noise
    header = wcs.to_header()
    header["BMAJ"] = (beam.major_arcsec / 3600.0, "[deg] restoring beam major axis")
    header["BMIN"] = (beam.minor_arcsec / 3600.0, "[deg] restoring beam minor axis")
    header["BPA"] = (beam.pa_deg, "[deg] restoring beam position angle")
    header["BUNIT"] = "JY/BEAM"
    return image, wcs, header


def _sin_wcs(
    shape: tuple[int, int], cell_arcsec: float, ra_deg: float, dec_deg: float
) -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---SIN", "DEC--SIN"]
    wcs.wcs.crval = [ra_deg, dec_deg]
    wcs.wcs.crpix = [shape[1] // 2 + 1, shape[0] // 2 + 1]
    wcs.wcs.cdelt = [-cell_arcsec / 3600.0, cell_arcsec / 3600.0]
    wcs.wcs.cunit = ["deg", "deg"]
    wcs.wcs.radesys = "ICRS"
    wcs.wcs.set()
    return wcs
