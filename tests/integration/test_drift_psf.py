"""A bright source far from the meridian in RA: the drift-scan dirty beam (issue 13.2).

In a drift scan a source east or west of the meridian moves through the
primary beam during the group, so its integrations are weighted by a beam
gain that changes along the track: its dirty pattern is the beam-weighted sum
of the integrations' dirty beams, not the image's one PSF (the equal-weight
sum) that the imager cleans with. On noiseless, gain-free testing-size data
(seed-21 field geometry, 24 antennas, 6 integrations over 257 s) a single
3 Jy source 1.2 deg from the beam centre along Dec (primary beam 0.56) was
measured to 0.5%, but the same source 1.2 deg along RA (0.58) read 8% high:
WSClean's clean of it stopped at niter with 28 mJy residual peaks and put
components all over the field, and the restored image peaked 4.5% above the
dirty image. That was the largest part of the SNR > 100 excess of the pull
tests. The fix (`pipeline/stages/bright_sources.py`, opt-in): catalogue
sources above ``imaging.subtract_catalogue_min_snr`` (100 here) times the
expected image rms are fitted in the visibilities through the per-integration
beam, subtracted before the clean and restored after it. These tests pin it:
both positions within 1%,
also when the catalogue's flux is 20% off the sky's (a source in an ESE),
and the RA case still reads > 4% high with the subtraction off.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC
from pathlib import Path

import numpy as np
import pytest
from astropy.time import Time

from dsa110_contimg.data_ingestion.skymodel import SkyCatalog
from dsa110_contimg.mosaic import DriftTrack
from dsa110_contimg.pipeline.batch import run_batch
from dsa110_contimg.pipeline.stages.photometry_stage import read_photometry_table
from dsa110_contimg.simulation import simulate_observation
from dsa110_contimg.telescope import dsa110
from dsa110_contimg.testing.flux_fields import field_spec
from dsa110_contimg.testing.layout import path_overrides
from dsa110_contimg.utils.config_loader import load_pipeline_config

pytestmark = [pytest.mark.integration, pytest.mark.wsclean]

OFFSET_DEG = 1.2
FLUX_JY = 3.0
SUBTRACT = {"imaging.subtract_catalogue_min_snr": 100.0}


def _measured_over_true(
    base: Path,
    d_ra_deg: float,
    d_dec_deg: float,
    *,
    catalogue_scale: float = 1.0,
    overrides: dict[str, object] | None = None,
) -> float:
    """Simulate one group with one source at the offset; return flux / true.

    The photometry catalogue is the sky with its flux times
    ``catalogue_scale``.
    """
    spec = dataclasses.replace(field_spec(21), noise=False, gains=False, n_groups=1)
    step = spec.integration_spacing_s or dsa110.INTEGRATION_TIME_S
    start_mjd = Time(spec.start_time.astimezone(UTC)).mjd + 0.5 * step / 86400.0
    track = DriftTrack(
        spec.declination_deg,
        start_mjd,
        step,
        spec.n_times,
        dsa110.BAND_LOW_HZ,
        dsa110.BAND_HIGH_HZ,
    )
    ra_c, dec_c = (float(np.median(c)) for c in track.beam_centres_deg())
    sky = SkyCatalog(
        name=np.array(["OFFSET"]),
        ra_deg=np.array([ra_c + d_ra_deg / np.cos(np.radians(dec_c))]),
        dec_deg=np.array([dec_c + d_dec_deg]),
        flux_jy=np.array([FLUX_JY]),
        spectral_index=np.array([-0.7]),
        ref_freq_hz=np.array([1.4e9]),
    )
    simulate_observation(spec, base / "incoming", sky=sky)
    catalogue = base / "catalogue.csv"
    dataclasses.replace(sky, flux_jy=sky.flux_jy * catalogue_scale).to_table().write(
        catalogue, format="ascii.csv"
    )
    config = load_pipeline_config(
        environment="testing",
        overrides={**path_overrides(base), **SUBTRACT, **(overrides or {})},
        env={},
    )
    result = run_batch(config, base / "incoming", catalog_path=catalogue)
    assert result.success, [b.errors for b in result.blocks]
    table = read_photometry_table(result.photometry_path)
    (row,) = table[np.asarray(table["image_kind"]).astype(str) == "image"]
    assert 0.5 < float(row["pb"]) < 0.65  # the same beam level on both axes
    return float(row["flux_jy"]) / float(sky.flux_at(float(row["freq_hz"]))[0])


def test_source_off_the_beam_centre_in_dec_is_measured(tmp_path):
    assert _measured_over_true(tmp_path, 0.0, OFFSET_DEG) == pytest.approx(1, abs=0.01)


@pytest.mark.parametrize("estimator", ["restored", "dirty_equivalent"])
def test_source_off_the_meridian_in_ra_is_measured(tmp_path, estimator):
    measured = _measured_over_true(
        tmp_path, OFFSET_DEG, 0.0, overrides={"photometry.estimator": estimator}
    )
    assert measured == pytest.approx(1, abs=0.01)


@pytest.mark.parametrize("catalogue_scale", [0.8, 1.25])
def test_source_whose_flux_is_not_the_catalogues_is_measured(tmp_path, catalogue_scale):
    measured = _measured_over_true(
        tmp_path, OFFSET_DEG, 0.0, catalogue_scale=catalogue_scale
    )
    assert measured == pytest.approx(1, abs=0.01)


def test_without_the_subtraction_the_ra_source_reads_high(tmp_path):
    """The known-truth contrast: the clean alone mis-models the drift."""
    measured = _measured_over_true(
        tmp_path,
        OFFSET_DEG,
        0.0,
        overrides={"imaging.subtract_catalogue_min_snr": None},
    )
    assert measured > 1.04
