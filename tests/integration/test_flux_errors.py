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

import numpy as np
import pytest
from benchmarks.bench_flux_errors import run_pull_field

from dsa110_contimg.testing import flux_fields as ff

pytestmark = [pytest.mark.integration, pytest.mark.wsclean]

_SEEDS = (7, 3)
_MIN_PULLS = 40  # over the seeds: the rms of 40 unit pulls scatters by ~0.11
_MIN_PULLS_SEED = 20
_BAND = (0.9, 1.2)


@pytest.fixture(scope="module")
def fields(tmp_path_factory):
    """Return {seed: (photometry table, simulation)}, each field run once."""
    return {
        seed: run_pull_field(tmp_path_factory.mktemp(f"pulls{seed}"), seed)
        for seed in _SEEDS
    }


def _pooled(fields, kind):
    parts = [ff.pulls(table, sim, kind) for table, sim in fields.values()]
    pulls, noise_pulls, rel = (np.concatenate([p[k] for p in parts]) for k in range(3))
    snr = np.concatenate([np.asarray(p[3]["snr"]) for p in parts])
    return pulls, noise_pulls, rel, snr, [p[3] for p in parts]


@pytest.mark.parametrize("kind", ["image", "mosaic"])
def test_pull_rms_is_honest_in_every_snr_bin(fields, kind):
    for seed, (table, sim) in fields.items():
        assert sim.gain_model is not None
        pulls, noise_pulls, _, rows = ff.pulls(table, sim, kind)
        snr = np.asarray(rows["snr"])
        for (lo, hi), (rms, n) in ff.bin_rms(pulls, snr, 1).items():
            noise_rms = ff.bin_rms(noise_pulls, snr, 1)[lo, hi][0]
            print(
                f"\nseed {seed} {kind} SNR {lo}-{hi}: {n} pulls, rms {rms:.2f} "
                f"(noise errors alone {noise_rms:.2f})"
            )
    pulls, noise_pulls, rel, snr, parts = _pooled(fields, kind)
    checked = ff.bin_rms(pulls, snr, _MIN_PULLS)
    print(f"\n{kind}, seeds {_SEEDS} together: {checked}")
    for (lo, hi), (rms, _) in checked.items():
        assert _BAND[0] < rms < _BAND[1], (kind, lo, hi, rms)
    assert {(10, 30), (30, 100)} <= set(checked), checked
    # the band rejects the noise errors alone (the errors the issue reported)
    noise_rms = ff.bin_rms(noise_pulls, snr, _MIN_PULLS)
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
        pulls, _, _, rows = ff.pulls(table, sim, kind)
        for (lo, hi), (rms, _) in ff.bin_rms(
            pulls, np.asarray(rows["snr"]), _MIN_PULLS_SEED
        ).items():
            assert _BAND[0] < rms < _BAND[1], (kind, lo, hi, rms)


# ``photometry.estimator: dirty_equivalent`` on the two seeds whose faint
# sources sit in bright sources' sidelobes (42 and 11). Before the sidelobe
# term (`sidelobe_noise`) the image pulls at SNR 10-30 read 1.65 and 1.25
# (1.47 together); with it 0.90 and 0.97 (0.93 together), 30-100 0.78 and 1.13.
_SIDELOBE_SEEDS = (42, 11)


@pytest.fixture(scope="module")
def dirty_fields(tmp_path_factory):
    """Return {seed: (table, simulation)} of the dirty-equivalent estimator."""
    return {
        seed: run_pull_field(
            tmp_path_factory.mktemp(f"dirty{seed}"),
            seed,
            {"photometry.estimator": "dirty_equivalent"},
        )
        for seed in _SIDELOBE_SEEDS
    }


def test_dirty_equivalent_image_pulls_hold_beside_bright_sources(dirty_fields):
    pulls, noise_pulls, rel, snr, parts = _pooled(dirty_fields, "image")
    checked = ff.bin_rms(pulls, snr, _MIN_PULLS)
    print(f"\ndirty_equivalent images, seeds {_SIDELOBE_SEEDS}: {checked}")
    assert {(10, 30), (30, 100)} <= set(checked), checked
    for (lo, hi), (rms, _) in checked.items():
        assert _BAND[0] < rms < _BAND[1], (lo, hi, rms)
    assert abs(float(np.median(rel[snr >= 30]))) < 0.01
    # the sidelobe term is recorded with each measurement, and it matters:
    # the background noise errors alone fail the band
    noise_rms = ff.bin_rms(noise_pulls, snr, _MIN_PULLS)
    assert all(rms > _BAND[1] for rms, _ in noise_rms.values()), noise_rms
    for rows in parts:
        sys = np.asarray(rows["flux_sys_jy"])
        assert np.all(np.isfinite(sys)) and np.median(sys) > 0


def test_dirty_equivalent_mosaic_is_its_members_mean(dirty_fields):
    for table, _ in dirty_fields.values():
        kind = np.asarray(table["image_kind"]).astype(str)
        mosaic = table[(kind == "mosaic") & (np.asarray(table["flags"]) == 0)]
        images = table[(kind == "image") & ((np.asarray(table["flags"]) & 7) == 0)]
        assert len(mosaic) >= 20
        for row in mosaic:
            members = images[images["source_name"] == row["source_name"]]
            noise = np.sqrt(members["flux_err_jy"] ** 2 - members["flux_sys_jy"] ** 2)
            shared = np.asarray(members["flux_sys_jy"])
            # weights 1/total^2 with the members' errors before the overlap
            # fit are not recoverable here; the mean lies between the members
            assert min(members["flux_jy"]) - 1e-9 <= row["flux_jy"]
            assert row["flux_jy"] <= max(members["flux_jy"]) + 1e-9
            # the shared sidelobes do not average down
            assert row["flux_err_jy"] >= 0.99 * np.min(
                np.hypot(noise, shared)
            ) / np.sqrt(len(members))


@pytest.mark.xfail(
    reason="known gap: with the members' clean errors taken as shared (an upper "
    "bound: their pulls correlate +0.41) the dirty-equivalent mosaic's pulls read "
    "0.76 (10-30) and 0.80 (30-100) on seeds 42 and 11, 1.02 / 0.90 / 1.57 (9 "
    "pulls at 100-1000) over eight seeds; with them averaging down 0.87 / 0.88 "
    "here and 1.10 / 1.21 / 1.62 over eight: the share is not yet measured",
    strict=True,
)
def test_dirty_equivalent_mosaic_pulls(dirty_fields):
    pulls, _, _, snr, _ = _pooled(dirty_fields, "mosaic")
    checked = ff.bin_rms(pulls, snr, _MIN_PULLS)
    assert checked
    for (lo, hi), (rms, _) in checked.items():
        assert _BAND[0] < rms < _BAND[1], (lo, hi, rms)
