"""The fake imager's restoring beam: a PSF fit against analytic truth."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dsa110_contimg.data_ingestion._sky_image import psf_beam

_ARCSEC_PER_RAD = 180.0 / math.pi * 3600.0
_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


def _gaussian_uv(sigma_narrow, sigma_wide, pa_deg, n=40_000, seed=0):
    """uv samples whose PSF is a Gaussian with its major axis at ``pa_deg``."""
    rng = np.random.default_rng(seed)
    pa = math.radians(pa_deg)
    # the PSF's major axis lies along the uv distribution's narrow direction
    narrow = np.array([math.sin(pa), math.cos(pa)])  # (east, north)
    wide = np.array([math.cos(pa), -math.sin(pa)])
    return np.outer(rng.normal(0, sigma_narrow, n), narrow) + np.outer(
        rng.normal(0, sigma_wide, n), wide
    )


@pytest.mark.parametrize("pa_deg", [0.0, 30.0, -60.0])
def test_psf_beam_of_a_gaussian_uv_distribution(pa_deg):
    uv = _gaussian_uv(500.0, 1000.0, pa_deg)
    beam = psf_beam(uv, np.ones(len(uv)))
    # a Gaussian uv distribution of sigma s has a Gaussian PSF of 1 / (2 pi s)
    major = _FWHM_PER_SIGMA / (2 * math.pi * 500.0) * _ARCSEC_PER_RAD
    minor = _FWHM_PER_SIGMA / (2 * math.pi * 1000.0) * _ARCSEC_PER_RAD
    assert beam.major_arcsec == pytest.approx(major, rel=0.03)
    assert beam.minor_arcsec == pytest.approx(minor, rel=0.03)
    assert beam.pa_deg == pytest.approx(pa_deg, abs=2.0)


def test_psf_beam_of_a_uniform_disc():
    rng = np.random.default_rng(1)
    radius = 2000.0 * np.sqrt(rng.uniform(size=40_000))
    angle = rng.uniform(0, 2 * np.pi, 40_000)
    uv = np.column_stack([radius * np.cos(angle), radius * np.sin(angle)])
    beam = psf_beam(uv, np.ones(len(uv)))
    # PSF 2 J1(x) / x, x = 2 pi B r: half maximum at x = 2.215
    fwhm = 2 * 2.215 / (2 * math.pi * 2000.0) * _ARCSEC_PER_RAD
    assert beam.major_arcsec == pytest.approx(fwhm, rel=0.05)
    assert beam.minor_arcsec == pytest.approx(fwhm, rel=0.05)


def test_psf_beam_weights_and_flags():
    uv = _gaussian_uv(500.0, 1000.0, 0.0)
    weights = np.ones(len(uv))
    weights[::2] = 0.0  # flagged half: same distribution
    beam = psf_beam(np.vstack([uv, 1e6 * np.ones((10, 2))]), np.r_[weights, [0.0] * 10])
    assert beam.major_arcsec == pytest.approx(
        psf_beam(uv, np.ones(len(uv))).major_arcsec, rel=0.05
    )
    with pytest.raises(ValueError, match="no unflagged baseline"):
        psf_beam(uv, np.zeros(len(uv)))
