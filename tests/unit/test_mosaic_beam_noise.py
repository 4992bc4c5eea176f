"""Primary-beam images and noise maps against direct evaluation and known noise."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from dsa110_contimg.data_ingestion.photometry import Beam
from dsa110_contimg.exceptions import InputDataError
from dsa110_contimg.mosaic import (
    DriftTrack,
    noise_map,
    primary_beam_at,
    primary_beam_image,
)
from dsa110_contimg.telescope.beam_models import fwhm_deg
from dsa110_contimg.testing.images import make_point_source_image

TRACK = DriftTrack(37.0, 60096.0, 12.884902, 24, 1.31e9, 1.50e9)


def _wcs(shape, cell_arcsec):
    ra, dec = TRACK.beam_centres_deg()
    _, wcs, _ = make_point_source_image(
        shape,
        cell_arcsec=cell_arcsec,
        center_ra_deg=float(np.median(ra)),
        center_dec_deg=float(np.median(dec)),
        sources=[],
        beam=Beam(15.0, 12.0, 0.0),
    )
    return wcs


def test_track_round_trips_through_a_header():
    header = fits.Header()
    for key, value in zip(
        ("DSAPTDEC", "DSAT0MJD", "DSADTSEC", "DSANTIME", "DSAFMIN", "DSAFMAX"),
        (37.0, 60096.0, 12.884902, 24, 1.31e9, 1.50e9),
        strict=True,
    ):
        header[key] = value
    assert DriftTrack.from_header(header) == TRACK
    assert TRACK.mid_mjd == pytest.approx(60096.0 + 11.5 * 12.884902 / 86400)
    del header["DSADTSEC"]
    with pytest.raises(InputDataError, match="DSADTSEC"):
        DriftTrack.from_header(header)


def test_beam_image_matches_direct_evaluation():
    shape = (300, 300)
    wcs = _wcs(shape, 60.0)  # 5 x 5 deg: out past the first null
    pb = primary_beam_image(wcs, shape, TRACK, n_grid=33)
    yy, xx = np.mgrid[0 : shape[0] : 7, 0 : shape[1] : 7]
    ra, dec = wcs.pixel_to_world_values(xx.ravel(), yy.ravel())
    direct = primary_beam_at(TRACK, ra, dec).reshape(xx.shape)
    err = np.max(np.abs(pb[::7, ::7] - direct))
    print(f"\nmax |spline - direct| primary beam = {err:.1e}")
    assert err < 2e-4
    # the sky drifts ~1 deg through the beam: the centre sees ~3% less than 1
    assert 0.95 < pb.max() < 0.99


def test_drift_average_widens_the_beam_in_ra():
    """A 309 s group drifts 1.3 deg of RA through the beam: wider in RA than Dec."""
    shape = (481, 481)
    wcs = _wcs(shape, 30.0)
    pb = primary_beam_image(wcs, shape, TRACK)
    half = pb.max() / 2
    width_ra = np.sum(pb[240, :] > half) * 30.0 / 3600
    width_dec = np.sum(pb[:, 240] > half) * 30.0 / 3600
    print(f"\ndrift-averaged FWHM: RA {width_ra:.3f} deg, Dec {width_dec:.3f} deg")
    assert width_dec == pytest.approx(fwhm_deg(1.405e9), abs=0.1)
    assert width_ra > width_dec + 0.05


@pytest.mark.parametrize("rms_jy", [1e-3, 0.03])
def test_noise_map_recovers_correlated_noise(rms_jy):
    beam = Beam(15.0, 12.0, 30.0)
    image, _, _ = make_point_source_image(
        (600, 600),
        cell_arcsec=3.0,
        center_ra_deg=150.0,
        center_dec_deg=37.0,
        sources=[(150.0, 37.0, 200 * rms_jy)],
        beam=beam,
        noise_rms_jy=rms_jy,
        rng=np.random.default_rng(3),
    )
    rms = noise_map(image, box_pix=50)
    print(f"\nnoise map median / truth = {np.median(rms) / rms_jy:.3f}")
    assert np.median(rms) == pytest.approx(rms_jy, rel=0.05)
    assert rms[300, 300] == pytest.approx(rms_jy, rel=0.25)  # the source barely shows


def test_noise_map_on_pure_gaussian_noise_and_bright_sources():
    """Known sigma, with and without bright point sources on top."""
    rng = np.random.default_rng(11)
    image = rng.normal(0.0, 2e-3, (800, 800))
    rms = noise_map(image, box_pix=80)
    assert np.median(rms) == pytest.approx(2e-3, rel=0.01)
    assert np.all(np.abs(rms / 2e-3 - 1) < 0.08)  # 6400 px per box: ~1.2% each
    with_sources = image.copy()
    for y, x in ((100, 100), (400, 420), (650, 200), (300, 700)):
        with_sources[y - 2 : y + 3, x - 2 : x + 3] += 1.0  # 500 sigma each
    rms_sources = noise_map(with_sources, box_pix=80)
    # 25 of 6400 pixels per box: the MAD barely moves (a plain std would be 30x)
    np.testing.assert_allclose(rms_sources, rms, rtol=0.02)


def test_noise_map_follows_a_gradient_and_keeps_nans():
    rng = np.random.default_rng(4)
    sigma = np.linspace(1.0, 3.0, 400)[None, :] * np.ones((400, 1))
    image = rng.standard_normal((400, 400)) * sigma
    image[:, :20] = np.nan
    rms = noise_map(image, box_pix=40)
    assert np.all(np.isnan(rms[:, :20]))
    np.testing.assert_allclose(rms[200, 60:380:40], sigma[200, 60:380:40], rtol=0.12)


def test_noise_map_rejects_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        noise_map(np.zeros(10), box_pix=4)
    with pytest.raises(ValueError, match="box_pix"):
        noise_map(np.zeros((10, 10)), box_pix=1)
    assert np.all(np.isnan(noise_map(np.full((32, 32), np.nan), box_pix=8)))


def test_beam_image_matrix_evaluation_equals_the_spline():
    """The two-matrix-product evaluation is the fitted spline itself, on a
    non-square image whose spline grid does not divide the pixel grid."""
    from scipy.interpolate import RectBivariateSpline

    from dsa110_contimg.mosaic._beam import _spline_on_pixels

    rng = np.random.default_rng(3)
    ny, nx = 157, 211
    yg, xg = np.linspace(0, ny - 1, 23), np.linspace(0, nx - 1, 31)
    spline = RectBivariateSpline(yg, xg, rng.random((23, 31)), kx=3, ky=3)
    fast = _spline_on_pixels(spline, ny, nx, dtype=np.float64)
    slow = spline(np.arange(ny, dtype=float), np.arange(nx, dtype=float))
    assert fast.shape == (ny, nx)
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-12)
    # the default: the pixel-sized product in float32, to float32 precision
    single = _spline_on_pixels(spline, ny, nx)
    assert single.dtype == np.float32
    np.testing.assert_allclose(single, slow, rtol=0, atol=1e-6)


def test_noise_map_equals_photutils_background_rms():
    """The separable zoom gives photutils' own full-size rms map (NaN boxes,
    a box size that does not divide the image, a gradient)."""
    import warnings

    from photutils.background import (
        Background2D,
        MADStdBackgroundRMS,
        MedianBackground,
    )

    rng = np.random.default_rng(4)
    ny, nx = 230, 317
    scale = np.linspace(1.0, 3.0, nx)[None, :] * 1e-3
    image = (rng.normal(size=(ny, nx)) * scale).astype(np.float32)
    image[:40, :60] = np.nan
    ours = noise_map(image, box_pix=24)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = Background2D(
            image,
            (24, 24),
            exclude_percentile=75.0,
            filter_size=1,
            sigma_clip=None,
            bkg_estimator=MedianBackground(),
            bkg_rms_estimator=MADStdBackgroundRMS(),
        ).background_rms.astype(np.float64)
    reference[~np.isfinite(image) | ~(reference > 0)] = np.nan
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(reference))
    ok = np.isfinite(ours)
    np.testing.assert_allclose(ours[ok], reference[ok], rtol=1e-6)


def test_box_mad_std_equals_photutils_mesh_exactly():
    """The vectorised box statistic gives photutils' MADStdBackgroundRMS mesh
    bit for bit: NaN-free boxes, boxes with a few NaN, partial edge boxes and a
    box left out (too few finite pixels)."""
    import warnings

    from photutils.background import (
        Background2D,
        MADStdBackgroundRMS,
        MedianBackground,
    )

    from dsa110_contimg.mosaic._noise import _BoxMadStd, _NoBackground

    rng = np.random.default_rng(8)
    image = rng.normal(0.0, 1e-3, (203, 251)).astype(np.float32)
    image[5:9, 30:34] = np.nan  # a few NaN in one box
    image[150:200, 0:50] = np.nan  # a whole box masked
    meshes = []
    for bkg, rms in (
        (MedianBackground(), MADStdBackgroundRMS()),
        (_NoBackground(), _BoxMadStd()),
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            b2d = Background2D(
                image,
                (50, 50),
                exclude_percentile=75.0,
                filter_size=1,
                sigma_clip=None,
                bkg_estimator=bkg,
                bkg_rms_estimator=rms,
            )
            meshes.append(np.asarray(b2d.background_rms_mesh))
    assert meshes[0].shape == (5, 6)  # 4 x 5 whole boxes + partial edges
    np.testing.assert_array_equal(meshes[1], meshes[0])


def test_float32_zoom_is_within_1e6_of_float64():
    from dsa110_contimg.mosaic._noise import zoom_separable

    mesh = np.random.default_rng(2).uniform(1e-3, 3e-3, (7, 9))
    full = zoom_separable(mesh, (40, 40), (270, 350))
    fast = zoom_separable(mesh, (40, 40), (270, 350), dtype=np.float32)
    assert fast.dtype == np.float32
    np.testing.assert_allclose(fast, full, rtol=1e-6)
