"""Every environment's default field covers the primary beam down to min_pb."""

from __future__ import annotations

import pytest

from dsa110_contimg.mosaic import DriftTrack
from dsa110_contimg.pipeline.stages.imaging_stage import field_edge_pb
from dsa110_contimg.telescope import dsa110
from dsa110_contimg.utils.config_loader import load_pipeline_config


def _track(config, dec_deg: float) -> DriftTrack:
    sim = config.simulation
    freqs = dsa110.band_frequencies_hz()
    return DriftTrack(
        dec_deg,
        60000.0,
        sim.integration_spacing_s or dsa110.INTEGRATION_TIME_S,
        sim.n_times,
        float(freqs.min()),
        float(freqs.max()),
    )


@pytest.mark.parametrize("environment", ["testing", "development", "production"])
@pytest.mark.parametrize("dec_deg", [-20.0, 0.0, 16.3, 37.0, 71.0])
def test_default_field_covers_the_beam_down_to_min_pb(environment, dec_deg):
    config = load_pipeline_config(environment=environment, env={})
    edge = field_edge_pb(
        config.imaging.image_size,
        config.imaging.cell_size_arcsec(),
        _track(config, dec_deg),
    )
    assert edge <= config.photometry.min_pb, (environment, dec_deg, edge)
    assert edge <= config.imaging.pb_limit


def test_the_old_development_field_did_not():
    config = load_pipeline_config(environment="development", env={})
    edge = field_edge_pb((1280, 1280), 6.0, _track(config, 16.3))
    assert edge == pytest.approx(0.65, abs=0.02)  # sources at pb 0.6 lay outside
