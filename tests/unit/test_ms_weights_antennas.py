"""Antenna compaction and radiometer weights on in-memory UVData objects."""

from __future__ import annotations

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import EarthLocation
from pyuvdata import Telescope, UVData

from dsa110_contimg.data_ingestion._ms_metadata import (
    compact_antennas,
    radiometer_sigma_jy,
    set_radiometer_weights,
)
from dsa110_contimg.telescope import dsa110

NUMBERS = np.array([9, 5, 12, 20])  # unsorted, gaps, 20 has no data
NAMES = ["10", "6", "13", "21"]


def _uvdata(nsample: float = 1.0) -> UVData:
    loc = EarthLocation.from_geodetic(
        dsa110.ARRAY_LON_DEG * u.deg,
        dsa110.ARRAY_LAT_DEG * u.deg,
        dsa110.ARRAY_HEIGHT_M * u.m,
    )
    positions = np.array([[10.0, 0, 0], [0, 0, 0], [0, 20.0, 0], [0, 0, 30.0]])
    telescope = Telescope.new(
        location=loc,
        name="OVRO_MMA",
        instrument="DSA",
        antenna_positions=dict(zip(NUMBERS.tolist(), positions, strict=True)),
        antenna_names=NAMES,
        antenna_numbers=NUMBERS,
    )
    pairs = np.array([[5, 9], [5, 12], [9, 12], [5, 5]])
    n_chan = 3
    return UVData.new(
        freq_array=np.array([1.40e9, 1.41e9, 1.42e9]),
        polarization_array=["xx", "yy"],
        times=np.full(pairs.shape[0], 2460096.5),
        antpairs=pairs,
        do_blt_outer=False,
        telescope=telescope,
        integration_time=dsa110.INTEGRATION_TIME_S,
        channel_width=np.array([1e6, 2e6, 4e6]),
        data_array=np.zeros((pairs.shape[0], n_chan, 2), np.complex64),
        flag_array=np.zeros((pairs.shape[0], n_chan, 2), bool),
        nsample_array=np.full((pairs.shape[0], n_chan, 2), nsample, np.float32),
    )


def test_compact_antennas_keeps_exactly_the_antennas_with_data() -> None:
    uv = _uvdata()
    names_before = dict(zip(NUMBERS.tolist(), NAMES, strict=True))
    pos_before = dict(
        zip(NUMBERS.tolist(), np.asarray(uv.telescope.antenna_positions), strict=True)
    )
    pairs_before = [(names_before[a], names_before[b]) for a, b in uv.get_antpairs()]
    raw = compact_antennas(uv)
    np.testing.assert_array_equal(raw, [5, 9, 12])  # ascending raw number; 20 gone
    tel = uv.telescope
    assert tel.Nants == 3
    np.testing.assert_array_equal(tel.antenna_numbers, [0, 1, 2])
    assert list(tel.antenna_names) == ["6", "10", "13"]
    for k, number in enumerate(raw):
        np.testing.assert_allclose(tel.antenna_positions[k], pos_before[number])
    np.testing.assert_allclose(tel.antenna_diameters, dsa110.DISH_DIAMETER_M)
    assert list(tel.mount_type) == ["alt-az"] * 3
    names = list(tel.antenna_names)
    assert [(names[a], names[b]) for a, b in uv.get_antpairs()] == pairs_before
    assert uv.Nants_data == 3


def test_radiometer_weights() -> None:
    uv = _uvdata(nsample=0.5)
    set_radiometer_weights(uv, sefd_jy=6500.0)
    widths = np.array([1e6, 2e6, 4e6])
    sigma = 6500.0 / np.sqrt(2 * widths * dsa110.INTEGRATION_TIME_S * 0.5)
    np.testing.assert_allclose(uv.nsample_array[0, :, 0], sigma**-2, rtol=1e-6)
    np.testing.assert_allclose(
        radiometer_sigma_jy(widths, dsa110.INTEGRATION_TIME_S, nsamples=0.5), sigma
    )
    assert radiometer_sigma_jy(1e6, 10.0, nsamples=0.0) == np.inf
    # doubling the bandwidth halves the variance
    assert radiometer_sigma_jy(2e6, 10.0) == pytest.approx(
        radiometer_sigma_jy(1e6, 10.0) / np.sqrt(2)
    )
