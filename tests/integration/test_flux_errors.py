"""Known-truth test of the flux errors: pulls per SNR bin on simulated fields.

Two overlapping groups (a real group's 309 s drift), 40 sources per group up
to 5 Jy, antenna gain errors left in the data (2% amplitude, 3 degrees
phase) and thermal noise, for two simulation seeds (7 and 3) run once per
module: the errors must explain the scatter of the measured fluxes about the
truth on images and mosaics, in every SNR bin that holds enough
measurements.

The testing sky has no calibrator, so the gains are not solved: every flux
carries the simulated gains' mean scale, the baseline average of
Re(g_i g_j*) (-1.4% for both seeds). That is the flux-scale error of a
calibration (on real data: the calibrator model's), the same for every
source and image and invisible to photometry; the truth here is the
simulated flux times that scale.

Pull rms per bin (10-30 / 30-100 / 100-1000, pulls in brackets), both seeds
together: images 1.06 (96) / 0.97 (85) / 0.68 (7), mosaics 1.10 (48) /
0.96 (54) / 0.58 (4); each seed alone: images 1.05 / 1.12 (seed 7) and
1.06 / 0.77 (seed 3), mosaics 1.05 / 1.17 and 1.15 / 0.69. With the noise
errors alone (the issue's original errors) the 30-100 bin reads 1.29
(images) and 1.24 (mosaics). The test requires 0.9-1.2 in every bin with at
least 40 pulls over the two seeds, that the noise errors alone fail that
band, and the median flux ratio within 1% of the truth at SNR >= 100 and
1.5% at SNR >= 30. The band per seed (seed 3's 30-100 bin, 0.77) is a known
gap: at testing size the restored flux carries a deconvolution error of
~0.8 times the noise, common to the overlapping images (their pulls
correlate, +0.3), which the pair fit cannot see, while the in-image shape
term adds 1-2% of the flux that the truth does not show (README, "Flux
errors").
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from dsa110_contimg.pipeline.batch import run_batch
from dsa110_contimg.pipeline.stages.photometry_stage import read_photometry_table
from dsa110_contimg.simulation import ObservationSpec, simulate_observation
from dsa110_contimg.testing.layout import path_overrides
from dsa110_contimg.utils.config_loader import load_pipeline_config

pytestmark = [pytest.mark.integration, pytest.mark.wsclean]

_SEEDS = (7, 3)
_BINS = ((10, 30), (30, 100), (100, 1000), (1000, np.inf))
_MIN_PULLS = 40  # over the seeds: the rms of 40 unit pulls scatters by ~0.11
_MIN_PULLS_SEED = 20
_BAND = (0.9, 1.2)


def _run(base, seed):
    spec = ObservationSpec(
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
    sim = simulate_observation(spec, base / "incoming")
    config = load_pipeline_config(
        environment="testing", overrides=path_overrides(base), env={}
    )
    result = run_batch(config, base / "incoming", catalog_path=sim.sky_path)
    assert result.success, [b.errors for b in result.blocks]
    return read_photometry_table(result.photometry_path), sim


@pytest.fixture(scope="module")
def fields(tmp_path_factory):
    """Return {seed: (photometry table, simulation)}, each field run once."""
    return {
        seed: _run(tmp_path_factory.mktemp(f"pulls{seed}"), seed) for seed in _SEEDS
    }


def _gain_scale(gains) -> float:
    """Return the baseline mean of Re(g_i g_j*): the uncalibrated flux scale."""
    g = np.asarray(gains.amp) * np.exp(1j * np.asarray(gains.phase_rad))
    i, j = np.triu_indices(g.size, 1)
    return float(np.mean((g[i] * np.conj(g[j])).real))


def _pulls(table, sim, kind):
    """Return (measured - true) / error, the same with the noise error alone,
    measured / true - 1 and the rows: unflagged rows of ``kind``, SNR >= 10."""
    sky = sim.sky
    index = {name: i for i, name in enumerate(sky.name)}
    rows = table[
        (np.asarray(table["image_kind"]).astype(str) == kind)
        & (np.asarray(table["flags"]) == 0)
        & (np.asarray(table["snr"]) >= 10)
    ]
    true = _gain_scale(sim.gain_model) * np.array(
        [
            sky.flux_at(float(f))[index[str(n)]]
            for n, f in zip(rows["source_name"], rows["freq_hz"], strict=True)
        ]
    )
    flux = np.asarray(rows["flux_jy"])
    err = np.asarray(rows["flux_err_jy"])
    noise = np.sqrt(np.maximum(err**2 - np.asarray(rows["flux_sys_jy"]) ** 2, 0.0))
    return (flux - true) / err, (flux - true) / noise, flux / true - 1, rows


def _bin_rms(pulls, snr, min_pulls):
    """Return {(lo, hi): (rms, n)} for the bins with at least ``min_pulls``."""
    out = {}
    for lo, hi in _BINS:
        in_bin = (snr >= lo) & (snr < hi)
        if in_bin.sum() >= min_pulls:
            out[lo, hi] = (
                float(np.sqrt(np.mean(pulls[in_bin] ** 2))),
                int(in_bin.sum()),
            )
    return out


def _pooled(fields, kind):
    parts = [_pulls(table, sim, kind) for table, sim in fields.values()]
    pulls, noise_pulls, rel = (np.concatenate([p[k] for p in parts]) for k in range(3))
    snr = np.concatenate([np.asarray(p[3]["snr"]) for p in parts])
    return pulls, noise_pulls, rel, snr, [p[3] for p in parts]


@pytest.mark.parametrize("kind", ["image", "mosaic"])
def test_pull_rms_is_honest_in_every_snr_bin(fields, kind):
    for seed, (table, sim) in fields.items():
        assert sim.gain_model is not None
        pulls, noise_pulls, _, rows = _pulls(table, sim, kind)
        snr = np.asarray(rows["snr"])
        for (lo, hi), (rms, n) in _bin_rms(pulls, snr, 1).items():
            noise_rms = _bin_rms(noise_pulls, snr, 1)[lo, hi][0]
            print(
                f"\nseed {seed} {kind} SNR {lo}-{hi}: {n} pulls, rms {rms:.2f} "
                f"(noise errors alone {noise_rms:.2f})"
            )
    pulls, noise_pulls, rel, snr, parts = _pooled(fields, kind)
    checked = _bin_rms(pulls, snr, _MIN_PULLS)
    print(f"\n{kind}, seeds {_SEEDS} together: {checked}")
    for (lo, hi), (rms, _) in checked.items():
        assert _BAND[0] < rms < _BAND[1], (kind, lo, hi, rms)
    assert {(10, 30), (30, 100)} <= set(checked), checked
    # the band rejects the noise errors alone (the errors the issue reported)
    noise_rms = _bin_rms(noise_pulls, snr, _MIN_PULLS)
    assert any(rms > _BAND[1] for rms, _ in noise_rms.values()), noise_rms
    # the relative flux scale, measured with these errors: within 1% at
    # SNR >= 100 (7 images rows, 4 mosaic rows), 1.5% over SNR >= 30
    assert np.sum(snr >= 100) >= 4
    assert abs(float(np.median(rel[snr >= 100]))) < 0.01
    assert abs(float(np.median(rel[snr >= 30]))) < 0.015
    # the systematic part is recorded with each measurement
    for rows in parts:
        sys = np.asarray(rows["flux_sys_jy"])
        assert np.all(np.isfinite(sys)) and np.all(sys >= 0) and np.any(sys > 0)
        assert np.all(np.asarray(rows["flux_err_jy"]) >= sys)


@pytest.mark.xfail(
    reason="known gap: seed 3's 30-100 bin reads 0.77 (images) and 0.69 "
    "(mosaics); the shared deconvolution error and the shape term are not "
    "yet measured apart (README, Flux errors)",
    strict=True,
)
@pytest.mark.parametrize("kind", ["image", "mosaic"])
def test_pull_rms_is_honest_in_every_snr_bin_of_each_seed(fields, kind):
    for table, sim in fields.values():
        pulls, _, _, rows = _pulls(table, sim, kind)
        for (lo, hi), (rms, _) in _bin_rms(
            pulls, np.asarray(rows["snr"]), _MIN_PULLS_SEED
        ).items():
            assert _BAND[0] < rms < _BAND[1], (kind, lo, hi, rms)
