"""Simulated fields for known-truth tests of the flux errors (issue 13, part 2).

Two overlapping testing-size groups (a real group's 309 s drift), 40 sources
per group up to 5 Jy, antenna gain errors left in the data and thermal noise,
run through the batch pipeline (``benchmarks.bench_flux_errors.run_pull_field``:
this package is below the pipeline); `pulls` compares the photometry with the
truth. Used by ``tests/integration/test_flux_errors.py`` and
``benchmarks/bench_flux_errors.py``.

The testing sky has no calibrator, so the gains are not solved: every flux
carries the simulated gains' mean scale (`gain_scale`), the flux-scale error
of a calibration, the same for every source and image; the truth is the
simulated flux times that scale.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
from astropy.table import Table

from dsa110_contimg.simulation import ObservationSpec, SimulationResult

__all__ = ["SNR_BINS", "bin_rms", "field_spec", "gain_scale", "pulls"]

#: noise-SNR bins of the issue's acceptance (10-30, 30-100, 100-1000, > 1000)
SNR_BINS = ((10, 30), (30, 100), (100, 1000), (1000, np.inf))


def field_spec(seed: int) -> ObservationSpec:
    """Return the field's simulation: two groups, 40 sources each, gains, noise."""
    return ObservationSpec(
        start_time=datetime(2023, 6, 1, tzinfo=UTC),
        n_groups=2,
        n_antennas=24,
        n_chan_per_subband=2,
        n_times=6,
        integration_spacing_s=51.5,
        n_sources=40,
        min_flux_jy=0.1,
        max_flux_jy=5.0,
        field_radius_deg=0.7,
        gains=True,
        gain_amp_rms=0.02,
        gain_phase_rms_deg=3.0,
        seed=seed,
    )


def gain_scale(gains) -> float:
    """Return the baseline mean of Re(g_i g_j*): the uncalibrated flux scale."""
    g = np.asarray(gains.amp) * np.exp(1j * np.asarray(gains.phase_rad))
    i, j = np.triu_indices(g.size, 1)
    return float(np.mean((g[i] * np.conj(g[j])).real))


def pulls(table: Table, sim: SimulationResult, kind: str):
    """Return (measured - true) / error, the same with the noise error alone,
    measured / true - 1 and the rows: unflagged rows of ``kind``, SNR >= 10."""
    sky = sim.sky
    index = {name: i for i, name in enumerate(sky.name)}
    rows = table[
        (np.asarray(table["image_kind"]).astype(str) == kind)
        & (np.asarray(table["flags"]) == 0)
        & (np.asarray(table["snr"]) >= 10)
    ]
    true = gain_scale(sim.gain_model) * np.array(
        [
            sky.flux_at(float(f))[index[str(n)]]
            for n, f in zip(rows["source_name"], rows["freq_hz"], strict=True)
        ]
    )
    flux = np.asarray(rows["flux_jy"])
    err = np.asarray(rows["flux_err_jy"])
    noise = np.sqrt(np.maximum(err**2 - np.asarray(rows["flux_sys_jy"]) ** 2, 0.0))
    return (flux - true) / err, (flux - true) / noise, flux / true - 1, rows


def bin_rms(
    values, snr, min_count: int
) -> dict[tuple[float, float], tuple[float, int]]:
    """Return {(lo, hi): (rms, n)} for the SNR bins with at least ``min_count``."""
    out = {}
    for lo, hi in SNR_BINS:
        in_bin = (snr >= lo) & (snr < hi)
        if in_bin.sum() >= min_count:
            out[lo, hi] = (
                float(np.sqrt(np.mean(values[in_bin] ** 2))),
                int(in_bin.sum()),
            )
    return out
