"""A bright source outside the old field but inside the primary beam.

One testing-size group sees faint sources near the centre and a 10 Jy source
1.3 deg north, where the drift-averaged beam is ~0.5: outside the testing
environment's former 512 x 12" field (half-width 0.85 deg), whose border lay
at primary beam 0.77, so the source's sidelobes were never deconvolved. The
default field now covers the beam down to `photometry.min_pb`; the source is
imaged, cleaned and measured, and the faint sources come out right.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from dsa110_contimg.data_ingestion.photometry import PhotometryFlag
from dsa110_contimg.pipeline.stages import image_quality as qa
from dsa110_contimg.pipeline.stages.conversion_stage import convert_groups, find_groups
from dsa110_contimg.pipeline.stages.imaging_stage import image_ms
from dsa110_contimg.pipeline.stages.photometry_stage import measure_image
from dsa110_contimg.simulation import ObservationSpec, simulate_observation
from dsa110_contimg.testing.drift_skies import catalog_from_rows, group_centers_deg
from dsa110_contimg.utils.config_loader import load_pipeline_config

pytestmark = [pytest.mark.integration, pytest.mark.wsclean]

START = datetime(2023, 6, 1, 3, 0, 0, tzinfo=UTC)
SPEC_KW = {"n_groups": 1, "n_times": 6, "declination_deg": 37.0}
BRIGHT_JY = 10.0


@pytest.fixture(scope="module")
def imaged(tmp_path_factory):
    base = tmp_path_factory.mktemp("outside")
    (ra0,) = group_centers_deg(START, **SPEC_KW)
    cos_dec = np.cos(np.deg2rad(37.0))
    faint = [
        (ra0, 37.0, 0.3),
        (ra0 + 0.3 / cos_dec, 37.2, 0.2),
        (ra0 - 0.4 / cos_dec, 36.7, 0.25),
        (ra0 + 0.1 / cos_dec, 36.6, 0.2),
    ]
    sky = catalog_from_rows([*faint, (ra0 + 0.05, 38.3, BRIGHT_JY)], name_prefix="S")
    spec = ObservationSpec(
        start_time=START, n_antennas=24, n_chan_per_subband=2, seed=8, **SPEC_KW
    )
    simulate_observation(spec, base / "incoming", sky=sky)
    out = {}
    for label, size in (("default", None), ("old", [512, 512])):
        overrides = {} if size is None else {"imaging.image_size": size}
        cfg = load_pipeline_config(environment="testing", overrides=overrides, env={})
        if not out:
            report = convert_groups(
                find_groups(base / "incoming", cfg.conversion),
                base / "ms",
                cfg.conversion,
            )
            (ms,) = report.ms_paths
        product = image_ms(ms, base / label, cfg.imaging)
        table = measure_image(product.image_path, sky, cfg.photometry)
        out[label] = (product, table, qa.read_quality(product.image_path))
    return sky, out


def _by_name(table):
    return {str(r["source_name"]): r for r in table}


def test_default_field_holds_and_cleans_the_bright_source(imaged):
    sky, out = imaged
    _, table, quality = out["default"]
    rows = _by_name(table)
    bright = rows[str(sky.name[-1])]
    print(
        f"\nbright source: pb {bright['pb']:.2f}, flux {bright['flux_jy']:.3f} Jy "
        f"(true {BRIGHT_JY}); residual rms {1e3 * quality['rms_jy']:.2f} mJy, "
        f"thermal {1e3 * quality['thermal_rms_jy']:.2f} mJy"
    )
    assert 0.35 < bright["pb"] < 0.65
    assert bright["flux_jy"] == pytest.approx(BRIGHT_JY, rel=0.05)
    assert quality["passed"]


def test_faint_sources_are_not_spoiled_by_its_sidelobes(imaged):
    sky, out = imaged
    errors = {}
    for label in ("default", "old"):
        rows = _by_name(out[label][1])
        errors[label] = np.array(
            [
                rows[str(n)]["flux_jy"] / f - 1
                for n, f in zip(sky.name[:-1], sky.flux_jy[:-1], strict=True)
            ]
        )
    rms = {k: out[k][2]["rms_jy"] for k in out}
    print(
        f"\nfaint-source |flux error| median: default field "
        f"{np.median(np.abs(errors['default'])):.3f}, old field "
        f"{np.median(np.abs(errors['old'])):.3f}; residual rms "
        f"{1e3 * rms['default']:.2f} vs {1e3 * rms['old']:.2f} mJy"
    )
    off = _by_name(out["old"][1])[str(sky.name[-1])]  # off the old field
    assert off["flags"] & PhotometryFlag.EDGE and not np.isfinite(off["flux_jy"])
    assert np.median(np.abs(errors["default"])) < 0.05
    assert rms["default"] < 0.7 * rms["old"]
