"""Tests of the pinned DSA-110 instrument facts and the primary-beam model."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from scipy.spatial.distance import pdist
from scipy.special import j1

from dsa110_contimg.telescope import dsa110
from dsa110_contimg.telescope.beam_models import (
    airy_beam,
    drift_averaged_beam,
    fwhm_deg,
)

C_M_S = 299_792_458.0


def _airy_reference(
    theta_rad: np.ndarray, freq_hz: float, diameter_m: float
) -> np.ndarray:
    """Independent Airy power pattern (2 J1(x) / x)**2, x = pi D sin(theta) / lambda."""
    x = np.pi * diameter_m * np.sin(theta_rad) * freq_hz / C_M_S
    return (2.0 * j1(x) / x) ** 2


# --- band and subbands ---


def test_band_edges_and_channel_count() -> None:
    assert pytest.approx(1311.25e6, abs=1.0) == dsa110.BAND_LOW_HZ
    assert pytest.approx(1498.75e6, abs=1.0) == dsa110.BAND_HIGH_HZ
    assert dsa110.N_SUBBANDS * dsa110.N_CHAN_PER_SUBBAND == 768
    freqs = dsa110.band_frequencies_hz()
    assert freqs.size == 768
    half = dsa110.CHANNEL_WIDTH_HZ / 2
    assert freqs[0] - half == pytest.approx(1311.25e6, abs=1.0)
    assert freqs[-1] + half == pytest.approx(1498.75e6, abs=1.0)


def test_sb00_is_highest_and_channels_descend() -> None:
    sb00 = dsa110.subband_frequencies_hz(0)
    assert sb00.size == 48
    half = dsa110.CHANNEL_WIDTH_HZ / 2
    assert sb00.max() + half == pytest.approx(1498.75e6, abs=1.0)
    assert sb00.min() - half == pytest.approx(1487.03125e6, abs=1.0)
    assert sb00.min() >= 1487e6 and sb00.max() <= 1499e6
    for sb in range(dsa110.N_SUBBANDS):
        f = dsa110.subband_frequencies_hz(sb)
        assert np.all(np.diff(f) < 0), f"sb{sb:02d} channels must descend"
        np.testing.assert_allclose(-np.diff(f), dsa110.CHANNEL_WIDTH_HZ, rtol=1e-12)
        if sb > 0:
            # Each subband lies entirely below the previous one.
            assert f.max() < dsa110.subband_frequencies_hz(sb - 1).min()
    sb15 = dsa110.subband_frequencies_hz(15)
    assert sb15.min() - half == pytest.approx(1311.25e6, abs=1.0)


def test_band_frequencies_ascending_for_reduced_channels() -> None:
    for n_chan in (48, 2, 1):
        freqs = dsa110.band_frequencies_hz(n_chan=n_chan)
        assert freqs.size == 16 * n_chan
        assert np.all(np.diff(freqs) > 0)


@pytest.mark.parametrize("subband", [-1, 16])
def test_subband_out_of_range(subband: int) -> None:
    with pytest.raises(ValueError, match="subband"):
        dsa110.subband_frequencies_hz(subband)


# --- names ---


def test_subband_filename_round_trip() -> None:
    stamp = datetime(2023, 6, 1, 12, 34, 56, tzinfo=UTC)
    name = dsa110.subband_filename(stamp, 7)
    assert name == "2023-06-01T12:34:56_sb07.hdf5"
    parsed = dsa110.parse_subband_filename(Path("/data/incoming") / name)
    assert parsed is not None
    assert parsed.timestamp == stamp
    assert parsed.subband == 7
    assert parsed.path == Path("/data/incoming") / name


@pytest.mark.parametrize(
    "name",
    [
        "2023-06-01T12:34:56_sb07.h5",
        "2023-06-01T12:34:56_sb7.hdf5",
        "2023-06-01 12:34:56_sb07.hdf5",
        "2023-06-01T12:34:56_sb07.hdf5.tmp",
        ".2023-06-01T12:34:56_sb07.hdf5.tmp",
        "notes.txt",
        "drift_20230101T000000_00.ms",
    ],
)
def test_parse_non_matching_returns_none(name: str) -> None:
    assert dsa110.parse_subband_filename(name) is None


def test_ms_filename() -> None:
    stamp = datetime(2023, 1, 1, tzinfo=UTC)
    assert dsa110.ms_filename(stamp) == "drift_20230101T000000_00.ms"


# --- array and timing ---


def test_full_antenna_layout() -> None:
    enu = dsa110.antenna_layout_enu(n_antennas=96)
    assert enu.shape == (96, 3)
    east, north = enu[:, 0], enu[:, 1]
    ew_arm = (north == 0) & (np.abs(east) <= 198.0)
    ns_arm = (east == 0) & (north >= 7.0) & (north <= 440.0)
    assert ew_arm.sum() == 47
    assert ns_arm.sum() == 35
    outriggers = ~(ew_arm | ns_arm)
    assert outriggers.sum() == 14
    r_out = np.hypot(east[outriggers], north[outriggers])
    assert r_out.min() >= 500.0 - 1e-6
    assert r_out.max() <= 2000.0 + 1e-6
    lengths = pdist(enu)
    assert lengths.max() < 3210.0
    assert lengths.min() > 5.0


@pytest.mark.parametrize("n_antennas", [8, 24, 48])
def test_reduced_layouts_keep_baseline_limits(n_antennas: int) -> None:
    enu = dsa110.antenna_layout_enu(n_antennas=n_antennas)
    assert enu.shape == (n_antennas, 3)
    lengths = pdist(enu)
    assert lengths.min() > 5.0
    assert lengths.max() < 3210.0


@pytest.mark.parametrize("n_antennas", [8, 48, 96])
def test_station_naming_follows_the_real_files(n_antennas: int) -> None:
    """Real files: names "1".."117" = str(number + 1), numbers 0..116, per arm."""
    names = dsa110.antenna_names(n_antennas, "station")
    numbers = dsa110.antenna_numbers(n_antennas, "station")
    assert len(set(names)) == n_antennas
    assert names == [str(n + 1) for n in numbers]
    assert numbers.min() >= 0
    assert numbers.max() <= dsa110.N_STATION_SLOTS - 1
    assert np.all(np.diff(numbers) > 0)
    enu = dsa110.antenna_layout_enu(n_antennas=n_antennas)
    station = numbers + 1
    ew_arm = enu[:, 1] == 0
    ns_arm = (enu[:, 0] == 0) & ~ew_arm
    assert np.all((station[ew_arm] >= 1) & (station[ew_arm] <= 51))
    assert np.all((station[ns_arm] >= 52) & (station[ns_arm] <= 102))
    assert np.all(station[~(ew_arm | ns_arm)] >= 103)
    pads = dsa110.antenna_names(n_antennas, "pad")
    assert pads[0] == "pad001"
    assert list(dsa110.antenna_numbers(n_antennas, "pad")) == list(
        range(1, n_antennas + 1)
    )
    assert not set(pads) & set(names)


def test_unknown_naming_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match="naming scheme"):
        dsa110.antenna_names(8, "vla")


def test_antenna_layout_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="n_antennas"):
        dsa110.antenna_layout_enu(n_antennas=97)


def test_group_duration() -> None:
    assert pytest.approx(309.24, abs=0.01) == dsa110.GROUP_DURATION_S
    assert dsa110.N_TIMES_PER_GROUP == 24


# --- primary beam ---


@pytest.mark.parametrize("freq_hz", [1.31e9, 1.405e9, 1.5e9])
def test_airy_beam_matches_scipy_j1(freq_hz: float) -> None:
    theta = np.deg2rad([0.01, 0.3, 1.0, 1.35, 2.0, 3.0, 5.0, 8.0])
    np.testing.assert_allclose(
        airy_beam(theta, freq_hz),
        _airy_reference(theta, freq_hz, dsa110.DISH_DIAMETER_M),
        rtol=0,
        atol=1e-12,
    )


@pytest.mark.parametrize("freq_hz", [1.31e9, 1.5e9])
def test_airy_beam_peak_and_monotonic_main_lobe(freq_hz: float) -> None:
    assert float(airy_beam(0.0, freq_hz)) == 1.0
    # First null of J1 at x = 3.8317.
    theta_null = np.arcsin(
        3.831705970207512 * C_M_S / freq_hz / (np.pi * dsa110.DISH_DIAMETER_M)
    )
    theta = np.linspace(0.0, theta_null, 500)
    beam = airy_beam(theta, freq_hz)
    assert np.all(np.diff(beam) < 0)
    assert beam[-1] < 1e-10
    assert np.all(beam <= 1.0)


@pytest.mark.parametrize("freq_hz", [1.31e9, 1.405e9, 1.5e9])
def test_fwhm_gives_half_power(freq_hz: float) -> None:
    half_angle = np.deg2rad(fwhm_deg(freq_hz) / 2)
    assert float(airy_beam(half_angle, freq_hz)) == pytest.approx(0.5, abs=1e-9)


def test_fwhm_values() -> None:
    assert fwhm_deg(1.405e9) == pytest.approx(2.7, abs=0.1)
    assert fwhm_deg(1.31e9) > fwhm_deg(1.405e9) > fwhm_deg(1.5e9)
    assert fwhm_deg(1.31e9) == pytest.approx(2.9, abs=0.1)
    assert fwhm_deg(1.5e9) == pytest.approx(2.5, abs=0.1)


def test_drift_averaged_beam_on_track() -> None:
    dec0 = 37.0
    # 24 pointings 12.9 s apart: the meridian moves ~1.3 deg of RA in one group.
    pointing_ra = 120.0 + np.arange(24) * dsa110.INTEGRATION_TIME_S * 360.0 / 86164.0905
    freqs = np.array([1.35e9, 1.45e9])
    src_ra, src_dec = 120.4, dec0 + 0.2
    got = drift_averaged_beam(src_ra, src_dec, pointing_ra, dec0, freqs)
    assert got.shape == (1,)
    src = SkyCoord(src_ra * u.deg, src_dec * u.deg)
    pointing = SkyCoord(pointing_ra * u.deg, np.full(24, dec0) * u.deg)
    sep = src.separation(pointing).rad
    expected = np.mean([_airy_reference(sep, f, dsa110.DISH_DIAMETER_M) for f in freqs])
    assert float(got[0]) == pytest.approx(expected, rel=1e-9)
    assert 0.0 < float(got[0]) < 1.0


def test_drift_averaged_beam_is_below_peak_even_on_the_centre_line() -> None:
    pointing_ra = np.array([10.0, 10.5, 11.0])
    got = drift_averaged_beam([10.5, 10.0], [40.0, 40.0], pointing_ra, 40.0, 1.4e9)
    assert np.all(got < 1.0)
    # The source at the middle pointing sees more beam than one at the track's end.
    assert got[0] > got[1]
