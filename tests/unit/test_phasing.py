"""Tests of the drift-scan phasing geometry against pyuvdata's own conventions.

pyuvdata is the reference: its ``uvw_array`` for a sidereal phase centre and
its ``phase()`` define the convention
``V = S exp(+2 pi i (w_src - w_centre) / lambda)``.
"""

from __future__ import annotations

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import EarthLocation
from astropy.time import Time
from pyuvdata import Telescope, UVData
from pyuvdata.utils import ECEF_from_ENU

from dsa110_contimg.data_ingestion import _phasing
from dsa110_contimg.telescope import dsa110

C_M_S = 299_792_458.0
LOCATION = EarthLocation.from_geodetic(
    dsa110.ARRAY_LON_DEG * u.deg,
    dsa110.ARRAY_LAT_DEG * u.deg,
    dsa110.ARRAY_HEIGHT_M * u.m,
)
# East, north, up offsets (m): short, medium and ~2 km baselines, one non-planar.
ENU = np.array(
    [
        [0.0, 0.0, 0.0],
        [100.0, 0.0, 0.0],
        [0.0, 300.0, 0.0],
        [800.0, -500.0, 2.0],
        [-1200.0, 1500.0, -3.0],
    ]
)
ANTPAIRS = [(1, 2), (1, 3), (2, 4), (3, 4), (1, 5), (4, 5), (2, 5)]
FREQS = np.array([1.32e9, 1.41e9, 1.49e9])
DEC_A = 37.0


def _make_uvdata(ra_deg: float, dec_deg: float) -> UVData:
    """A tiny UVData phased to an ICRS centre; antenna numbers 1..5."""
    ecef = ECEF_from_ENU(ENU, center_loc=LOCATION)
    rel = ecef - np.array(
        [LOCATION.x.to_value(u.m), LOCATION.y.to_value(u.m), LOCATION.z.to_value(u.m)]
    )
    n_ant = ENU.shape[0]
    tel = Telescope.new(
        location=LOCATION,
        name="DSA_110",
        antenna_positions={i + 1: rel[i] for i in range(n_ant)},
        antenna_names=[f"pad{i + 1:03d}" for i in range(n_ant)],
        instrument="DSA",
        mount_type="alt-az",
        antenna_diameters=np.full(n_ant, dsa110.DISH_DIAMETER_M),
        x_orientation="east",
    )
    times = Time("2023-06-01T00:00:00", scale="utc").jd + np.arange(4) * 60.0 / 86400
    return UVData.new(
        freq_array=FREQS,
        polarization_array=["xx", "yy"],
        antpairs=ANTPAIRS,
        times=times,
        telescope=tel,
        phase_center_catalog={
            0: {
                "cat_name": "A",
                "cat_type": "sidereal",
                "cat_lon": np.deg2rad(ra_deg),
                "cat_lat": np.deg2rad(dec_deg),
                "cat_frame": "icrs",
                "cat_epoch": 2000.0,
            }
        },
        channel_width=np.full(FREQS.size, 1e7),
        integration_time=60.0,
    )


def _phasing_w(uv: UVData, ra_deg: float, dec_deg: float) -> np.ndarray:
    """w of every row of ``uv`` towards an ICRS centre, computed by ``_phasing``."""
    numbers = np.asarray(uv.telescope.antenna_numbers)
    index = np.full(numbers.max() + 1, -1)
    index[numbers] = np.arange(numbers.size)
    xyz = _phasing.baseline_xyz_m(
        np.asarray(uv.telescope.antenna_positions, dtype=np.float64),
        index[uv.ant_1_array],
        index[uv.ant_2_array],
        LOCATION.lon.to_value(u.rad),
    )
    times, inverse = np.unique(uv.time_array, return_inverse=True)
    ha, dec = _phasing.icrs_to_hadec_rad(ra_deg, dec_deg, times, LOCATION)
    assert ha.shape == (times.size, 1)
    return _phasing.uvw_for_hadec_m(xyz, ha[inverse, 0], dec[inverse, 0])[:, 2]


@pytest.fixture(scope="module")
def centre_a() -> tuple[float, float]:
    """An ICRS centre near the meridian at the test epoch."""
    t0 = Time("2023-06-01T00:01:30", scale="utc")
    ra, _ = _phasing.meridian_icrs_deg(np.deg2rad(DEC_A), np.array([t0.jd]), LOCATION)
    return float(ra[0]), DEC_A


def test_w_agrees_with_pyuvdata_for_sidereal_centre(
    centre_a: tuple[float, float],
) -> None:
    ra_a, dec_a = centre_a
    for ra, dec in [(ra_a, dec_a), (ra_a + 1.5, dec_a - 1.0), (ra_a - 10.0, 60.0)]:
        uv = _make_uvdata(ra, dec)
        lengths = np.linalg.norm(uv.uvw_array, axis=1)
        assert lengths.max() > 1900.0  # the test must include ~2 km baselines
        w = _phasing_w(uv, ra, dec)
        np.testing.assert_allclose(w, uv.uvw_array[:, 2], rtol=0, atol=2e-3)


def test_rotation_to_source_makes_visibilities_constant(
    centre_a: tuple[float, float],
) -> None:
    ra_a, dec_a = centre_a
    ra_b, dec_b = ra_a + 0.5, dec_a + 0.3
    uv_a = _make_uvdata(ra_a, dec_a)
    uv_b = uv_a.copy()
    uv_b.phase(lon=np.deg2rad(ra_b), lat=np.deg2rad(dec_b), cat_name="B")
    lam = C_M_S / FREQS
    # Point source at B, phased to A, predicted from pyuvdata's own uvws.
    dw_true = uv_b.uvw_array[:, 2] - uv_a.uvw_array[:, 2]
    assert np.abs(dw_true).max() > 1.0  # a real rotation, not a no-op
    model = np.exp(2j * np.pi * dw_true[:, None, None] / lam[None, :, None])
    model = np.repeat(model, 2, axis=2)

    # pyuvdata's phase() confirms the sign convention of the model.
    ref = uv_a.copy()
    ref.data_array = model.copy()
    ref.phase(lon=np.deg2rad(ra_b), lat=np.deg2rad(dec_b), cat_name="B")
    assert np.abs(np.angle(ref.data_array)).max() < 1e-3

    # _phasing, from its own geometry, rotates the model to a constant.
    data = model.copy()
    w_a = _phasing_w(uv_a, ra_a, dec_a)
    w_b = _phasing_w(uv_a, ra_b, dec_b)
    _phasing.rotate_phase_center(data, w_a, w_b, FREQS)
    assert np.abs(np.angle(data)).max() < 1e-3
    np.testing.assert_allclose(np.abs(data), 1.0, rtol=1e-12)


def test_rotation_with_wrong_sign_would_fail(centre_a: tuple[float, float]) -> None:
    """Guard the guard: rotating the other way leaves large phases."""
    ra_a, dec_a = centre_a
    uv_a = _make_uvdata(ra_a, dec_a)
    w_a = _phasing_w(uv_a, ra_a, dec_a)
    w_b = _phasing_w(uv_a, ra_a + 0.5, dec_a + 0.3)
    lam = C_M_S / FREQS
    data = np.exp(-2j * np.pi * (w_b - w_a)[:, None, None] / lam[None, :, None])
    _phasing.rotate_phase_center(data, w_a, w_b, FREQS)
    assert np.abs(np.angle(data)).max() > 0.1


def test_rotation_keeps_dtype_and_is_in_place() -> None:
    data = np.ones((3, 2, 2), dtype=np.complex64)
    view = data
    _phasing.rotate_phase_center(
        data, np.zeros(3), np.array([0.0, 0.1, 1.0]), np.array([1.4e9, 1.5e9])
    )
    assert view is data
    assert data.dtype == np.complex64
    assert data[0, 0, 0] == 1.0
    expected = np.exp(-2j * np.pi * 1.0 * 1.5e9 / C_M_S)
    assert data[2, 1, 1] == pytest.approx(expected, abs=1e-6)


def test_direction_lmn_of_centre_is_zenith_of_tangent_plane() -> None:
    ha0 = np.array([0.0, 0.1, -0.3])
    dec0 = np.deg2rad([37.0, -20.0, 80.0])
    ll, mm, nn = _phasing.direction_lmn(ha0, dec0, ha0, dec0)
    np.testing.assert_allclose(ll, 0.0, atol=1e-15)
    np.testing.assert_allclose(mm, 0.0, atol=1e-15)
    np.testing.assert_allclose(nn, 1.0, atol=1e-15)


def test_direction_lmn_axes() -> None:
    # A source at higher dec on the meridian is at +m; one east (HA < 0) at +l.
    dec0 = np.deg2rad(37.0)
    ll, mm, _ = _phasing.direction_lmn(0.0, dec0 + 0.01, 0.0, dec0)
    assert abs(ll) < 1e-15 and mm == pytest.approx(0.01, rel=1e-4)
    ll, mm, _ = _phasing.direction_lmn(-0.01, dec0, 0.0, dec0)
    assert ll == pytest.approx(0.01 * np.cos(dec0), rel=1e-4)


@pytest.mark.parametrize("dec_deg", [16.0, 37.0, 54.6])
def test_meridian_round_trip(dec_deg: float) -> None:
    times = Time("2023-06-01T00:00:00", scale="utc").jd + np.array([0.0, 0.1, 0.37])
    ra, dec = _phasing.meridian_icrs_deg(np.deg2rad(dec_deg), times, LOCATION)
    assert ra.shape == dec.shape == (3,)
    # Each meridian centre, transformed back at its own time, is at HA 0.
    for k in range(times.size):
        ha, dec_app = _phasing.icrs_to_hadec_rad(
            ra[k], dec[k], times[k : k + 1], LOCATION
        )
        ha_arcsec = np.degrees(np.angle(np.exp(1j * ha[0, 0]))) * 3600
        assert abs(ha_arcsec) < 1.0
        assert np.degrees(dec_app[0, 0]) == pytest.approx(dec_deg, abs=1.0 / 3600)
    # Apparent-vs-ICRS (precession since J2000) moves the centre, but not far.
    assert np.all(np.abs(dec - dec_deg) < 0.5)


def test_baseline_xyz_z_is_polar_component() -> None:
    # A purely north baseline at latitude phi: X = -L sin(phi), Z = L cos(phi).
    enu = np.array([[0.0, 0.0, 0.0], [0.0, 100.0, 0.0]])
    ecef = ECEF_from_ENU(enu, center_loc=LOCATION)
    rel = ecef - np.array(
        [LOCATION.x.to_value(u.m), LOCATION.y.to_value(u.m), LOCATION.z.to_value(u.m)]
    )
    xyz = _phasing.baseline_xyz_m(
        rel, np.array([0]), np.array([1]), LOCATION.lon.to_value(u.rad)
    )
    phi = LOCATION.lat.to_value(u.rad)
    np.testing.assert_allclose(
        xyz[0], [-100 * np.sin(phi), 0.0, 100 * np.cos(phi)], atol=2e-3
    )
