"""The residual's noise split into a background and bright sources' sidelobes.

Around a bright source the residual holds what the deconvolution could not
model: the sidelobes of its calibration errors and of the difference between
the true (drifting, direction-dependent) dirty beam and the one the imager
subtracted. That error is tied to the source's distance, not to the place a
local annulus samples: a faint source five beams from a 5 Jy source sits in
it, while the annulus around the faint source averages over quieter sky. On
the simulated pull fields the local-annulus error left the pulls of SNR 10-30
sources at an rms of 1.25 (SNR 30-100: 1.07). `sidelobe_noise` measures the
excess rms in rings around each bright source and gives every other source the
excess at its distance, on top of the background rms away from bright sources.
"""

from __future__ import annotations

import math

import numpy as np
from astropy.stats import mad_std
from numpy.typing import NDArray

from dsa110_contimg.data_ingestion._photometry_kernels import _exclusion_mask

__all__ = ["SIDELOBE_MIN_SNR", "sidelobe_noise"]

#: sources at least this bright (flux / local noise error) get a ring profile
SIDELOBE_MIN_SNR = 30.0
_RING_BEAMS = (2, 16)  # ring profile from 2 to 16 beam major axes, 1 beam wide
_SOURCE_MASK_BEAMS = 2.0  # pixels within 2 beams of a catalogue source are out
# ring pixels within this many beams of another bright source are out: the ring
# then samples this source's sidelobes, not the other's (on the pull fields 8
# beams gave pulls 0.94 / 0.90 and 12 beams 1.10 / 1.12 at SNR 10-30 / 30-100)
_OTHER_BRIGHT_BEAMS = 10.0
_MIN_RING_PIXELS = 20
_MIN_BACKGROUND_PIXELS = 200
_BACKGROUND_SAMPLE = 1_000_000


def sidelobe_noise(
    residual: NDArray,
    x: NDArray,
    y: NDArray,
    inside: NDArray[np.bool_],
    bright: NDArray[np.bool_],
    major_pix: float,
    fallback_rms: float,
) -> tuple[float, NDArray[np.float64]]:
    r"""Return the background rms and, per position, the sidelobe rms at it.

    Parameters
    ----------
    residual : ndarray, shape (n_y, n_x)
        The imager's residual, Jy/beam (not primary-beam corrected: its
        noise is uniform where the sky is quiet).
    x, y : ndarray, shape (n_src,)
        Pixel positions of every catalogue source near the image.
    inside : ndarray of bool
        Positions on the image.
    bright : ndarray of bool
        Positions whose sidelobes are profiled (e.g. SNR >= `SIDELOBE_MIN_SNR`).
    major_pix : float
        Restoring beam major axis (FWHM), pixels.
    fallback_rms : float
        Background when too few pixels lie away from bright sources.

    Returns
    -------
    background : float
        Robust rms of residual pixels farther than 16 beams from every bright
        source and 2 beams from every source.
    sidelobe : ndarray, shape (n_src,)
        :math:`\sqrt{\sum_{j \ne k} \max(r_j(d_{kj})^2 - b^2, 0)}`: the rms
        :math:`r_j` of the 1-beam ring at distance :math:`d_{kj}` (2-16 beams)
        around each bright source :math:`j`, less the background :math:`b`.
        0 where no bright source is within 16 beams, or no ring's excess is
        beyond twice its noise (:math:`2 \sqrt{2/N} b^2`, N pixels).
    """
    n_y, n_x = residual.shape
    finite = np.isfinite(residual)
    sources = _exclusion_mask(residual.shape, x, y, _SOURCE_MASK_BEAMS * major_pix)
    outer = _RING_BEAMS[1] * major_pix
    bright_idx = np.flatnonzero(bright & inside)
    far = finite & ~sources
    if bright_idx.size:
        far &= ~_exclusion_mask(residual.shape, x[bright_idx], y[bright_idx], outer)
    # every pixel up to ~1e6 (a strided sample beyond: the robust rms of 1e6
    # pixels is good to 0.1%, and the full 4800^2 image's median takes a second)
    step = max(1, int(math.sqrt(residual.size / _BACKGROUND_SAMPLE)))
    sample = residual[::step, ::step][far[::step, ::step]]
    background = (
        float(mad_std(sample))
        if sample.size >= _MIN_BACKGROUND_PIXELS
        else float(fallback_rms)
    )
    sidelobe2 = np.zeros(x.size)
    if not bright_idx.size:
        return background, sidelobe2
    half = int(math.ceil(outer)) + 1
    others_radius = _OTHER_BRIGHT_BEAMS * major_pix
    n_rings = _RING_BEAMS[1] - _RING_BEAMS[0]
    for j in bright_idx:
        cx, cy = int(round(x[j])), int(round(y[j]))
        y0, y1 = max(0, cy - half), min(n_y, cy + half + 1)
        x0, x1 = max(0, cx - half), min(n_x, cx + half + 1)
        yy, xx = np.mgrid[y0:y1, x0:x1]
        ok = finite[y0:y1, x0:x1] & ~sources[y0:y1, x0:x1]
        for m in bright_idx:
            if m != j and math.hypot(x[m] - x[j], y[m] - y[j]) < outer + others_radius:
                ok &= np.hypot(xx - x[m], yy - y[m]) > others_radius
        ring = np.floor(np.hypot(xx - x[j], yy - y[j]) / major_pix).astype(np.intp)
        ring -= _RING_BEAMS[0]
        use = ok & (ring >= 0) & (ring < n_rings)
        values = residual[y0:y1, x0:x1][use].astype(np.float64)
        counts = np.bincount(ring[use], minlength=n_rings)
        power = np.bincount(ring[use], weights=values**2, minlength=n_rings)
        with np.errstate(invalid="ignore", divide="ignore"):
            excess = power / counts - background**2
            # a ring of N noise pixels scatters by sqrt(2/N) b^2: only an
            # excess beyond twice that is a sidelobe (pure noise gives none)
            real = excess > 2.0 * np.sqrt(2.0 / counts) * background**2
        excess = np.where((counts >= _MIN_RING_PIXELS) & real, excess, 0.0)
        d = np.hypot(x - x[j], y - y[j]) / major_pix
        k = np.flatnonzero(
            inside & (d >= _RING_BEAMS[0]) & (d < _RING_BEAMS[1]) & np.isfinite(d)
        )
        k = k[k != j]
        sidelobe2[k] += excess[(d[k] - _RING_BEAMS[0]).astype(np.intp)]
    return background, np.sqrt(sidelobe2)
