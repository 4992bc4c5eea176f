"""A bright source far from the meridian in RA: the drift-scan dirty beam (issue 13.2).

In a drift scan a source east or west of the meridian moves through the
primary beam during the group, so its integrations are weighted by a beam
gain that changes along the track: its dirty pattern is the beam-weighted sum
of the integrations' dirty beams, not the image's one PSF (the equal-weight
sum) that the imager cleans with. On noiseless, gain-free testing-size data
(seed-21 field geometry, 24 antennas, 6 integrations over 257 s) a single
3 Jy source 1.2 deg from the beam centre along Dec (primary beam 0.56) is
measured to 0.5%, but the same source 1.2 deg along RA (0.58) reads 8% high:
WSClean's clean of it stops at niter with 28 mJy residual peaks and puts
components all over the field (their sum is half the source's apparent
flux), and the restored image peaks 4.5% above the dirty image. With the
same six integrations 2 s apart (no drift) the RA source reads -1.0%. This
is the largest part of the SNR > 100 excess of the pull tests (the field's
brightest sources read 1-4% off, the same sign in both images). The test is
the known-truth target for the fix (e.g. bright sources predicted with the
per-integration beam and subtracted in the visibilities): a strict xfail
until then, beside the Dec control that passes.
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


def _measured_over_true(base: Path, d_ra_deg: float, d_dec_deg: float) -> float:
    """Simulate one group with one source at the offset; return flux / true."""
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
    sim = simulate_observation(spec, base / "incoming", sky=sky)
    config = load_pipeline_config(
        environment="testing", overrides=path_overrides(base), env={}
    )
    result = run_batch(config, base / "incoming", catalog_path=sim.sky_path)
    assert result.success, [b.errors for b in result.blocks]
    table = read_photometry_table(result.photometry_path)
    (row,) = table[np.asarray(table["image_kind"]).astype(str) == "image"]
    assert 0.5 < float(row["pb"]) < 0.65  # the same beam level on both axes
    return float(row["flux_jy"]) / float(sky.flux_at(float(row["freq_hz"]))[0])


def test_source_off_the_beam_centre_in_dec_is_measured(tmp_path):
    assert _measured_over_true(tmp_path, 0.0, OFFSET_DEG) == pytest.approx(1, abs=0.02)


@pytest.mark.xfail(
    strict=True,
    reason="known gap (issue 13.2): a bright source far from the meridian in RA "
    "drifts through the beam, its dirty beam is not the image's PSF and the "
    "clean mis-models it (+8% at 1.2 deg, pb 0.58)",
)
def test_source_off_the_meridian_in_ra_is_measured(tmp_path):
    assert _measured_over_true(tmp_path, OFFSET_DEG, 0.0) == pytest.approx(1, abs=0.02)
