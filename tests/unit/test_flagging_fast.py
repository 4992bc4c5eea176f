"""The vectorised MAD clip flags exactly what the per-baseline loop flagged."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from dsa110_contimg.calibration._flagging import (
    _MAD_PER_SIGMA,
    flag_visibilities,
    nanmedian_along,
)


def _seed_mad_clip(amplitude, axis, *, sigma):
    median = np.nanmedian(amplitude, axis=axis, keepdims=True)
    dev = np.abs(amplitude - median)
    mad = np.nanmedian(dev, axis=axis, keepdims=True) / _MAD_PER_SIGMA
    with np.errstate(invalid="ignore"):
        return dev > sigma * np.where(mad > 0, mad, np.inf)


def _seed_rfi(data, new, ant1, ant2, time_index, sigma):
    """The RFI step as the seed wrote it: a Python loop over baselines."""
    n_ant = int(max(ant1.max(), ant2.max())) + 1
    amp = np.abs(data).astype(np.float32)
    amp[new] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        narrow = _seed_mad_clip(amp, 1, sigma=sigma)
        row_level = np.nanmedian(amp, axis=1)
        baseline = ant1.astype(np.int64) * n_ant + ant2
        broad = np.zeros(row_level.shape, dtype=bool)
        order = np.lexsort((time_index, baseline))
        _, start = np.unique(baseline[order], return_index=True)
        bounds = np.append(start, order.size)
        for k in range(start.size):
            rows = order[bounds[k] : bounds[k + 1]]
            if rows.size >= 4:
                broad[rows] = _seed_mad_clip(row_level[rows], 0, sigma=sigma)
    return (narrow | broad[:, None, :]) & ~new


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_nanmedian_along_equals_numpy(axis):
    rng = np.random.default_rng(2)
    values = rng.normal(size=(37, 24, 4)).astype(np.float32)
    values[rng.random(values.shape) < 0.3] = np.nan
    values[3] = np.nan
    values[:, 5] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = np.nanmedian(values, axis=axis, keepdims=True)
    got = nanmedian_along(values, axis)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)


def test_flags_equal_the_per_baseline_loop():
    """RFI bursts, narrow-band spikes, flagged rows, a dead antenna, a baseline
    with only 3 integrations and rows in random order: same flags."""
    rng = np.random.default_rng(11)
    n_ant, n_time, n_chan = 10, 12, 32
    a1, a2 = np.triu_indices(n_ant)
    ant1 = np.tile(a1, n_time)
    ant2 = np.tile(a2, n_time)
    t_index = np.repeat(np.arange(n_time), a1.size)
    keep = ~((ant1 == 2) & (ant2 == 5) & (t_index >= 3))  # 3 integrations left
    ant1, ant2, t_index = ant1[keep], ant2[keep], t_index[keep]
    shuffle = rng.permutation(ant1.size)
    ant1, ant2, t_index = ant1[shuffle], ant2[shuffle], t_index[shuffle]
    n_row = ant1.size
    data = (
        rng.normal(size=(n_row, n_chan, 2)) + 1j * rng.normal(size=(n_row, n_chan, 2))
    ).astype(np.complex64)
    data[ant1 == ant2] = 50.0
    data[(ant1 == 7) & (ant2 == 7)] = 0.1  # dead antenna 7
    data[rng.random(n_row) < 0.05, 4:6] *= 40  # narrow-band RFI
    burst = (t_index == 6) & (ant1 != ant2)
    data[burst] *= 30  # broadband burst
    flags = np.zeros(data.shape, dtype=bool)
    flags[rng.random(n_row) < 0.03] = True
    data[rng.random(data.shape) < 0.01] = 0.0

    new, dead, rfi = flag_visibilities(data, flags, ant1, ant2, t_index, sigma=5.0)

    assert list(dead) == [7]
    prior = flags | (data == 0)
    prior[np.isin(ant1, dead) | np.isin(ant2, dead) | (ant1 == ant2)] = True
    expected = _seed_rfi(data, prior, ant1, ant2, t_index, 5.0)
    assert rfi[burst][~prior[burst]].mean() > 0.9  # the burst is found
    np.testing.assert_array_equal(rfi, expected)
    np.testing.assert_array_equal(new, prior | expected)


def test_mad_constant_is_the_normal_quartile():
    from scipy.stats import norm

    assert float(norm.ppf(0.75)) == _MAD_PER_SIGMA


def test_flag_fractions_equal_the_per_antenna_loop():
    """The counted fractions equal the means over each antenna's and subband's rows."""
    from dsa110_contimg.calibration._flagging import flag_fractions
    from dsa110_contimg.telescope import dsa110

    rng = np.random.default_rng(5)
    n_ant, n_time, n_chan = 9, 5, 2 * dsa110.N_SUBBANDS
    a1, a2 = np.triu_indices(n_ant)
    ant1, ant2 = np.tile(a1, n_time), np.tile(a2, n_time)
    flags = rng.random((ant1.size, n_chan, 2)) < 0.2
    flags[ant1 == 4] = True
    rfi = flags & (rng.random(flags.shape) < 0.5)
    names = [f"ant{i}" for i in range(n_ant)]
    report = flag_fractions(flags, rfi, ant1, ant2, np.array([4]), names)
    cross = ant1 != ant2
    for i in range(n_ant):
        rows = cross & ((ant1 == i) | (ant2 == i))
        assert report.per_antenna[names[i]] == float(flags[rows].mean())
    for k in range(dsa110.N_SUBBANDS):
        sb = dsa110.N_SUBBANDS - 1 - k
        expected = float(flags[cross, 2 * k : 2 * k + 2].mean())
        assert report.per_subband[sb] == expected
    assert report.total_fraction == float(flags[cross].mean())
    assert report.rfi_fraction == float(rfi[cross].mean())
    assert report.dead_antennas == ("ant4",)
