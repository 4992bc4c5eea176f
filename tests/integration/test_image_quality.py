"""Image quality gates: a diverging clean is caught, retried, then kept out.

Two simulated groups (testing size) are imaged once with the real WSClean.
A test imager then replays those products, and for the group chosen to
diverge writes what a diverged WSClean run leaves: the log of a clean whose
peak residual rose from 34 mJy to 293 mJy between major cycles and stopped at
``niter``, and an image and residual with stripes at 10x the rms. The pipeline
must catch it, re-image with safer parameters and, if the retry diverges too,
keep the image out of the mosaic and the photometry with the reason in the
database and the block report.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from dsa110_contimg.exceptions import DataQualityWarning
from dsa110_contimg.pipeline import PipelineOrchestrator
from dsa110_contimg.pipeline.stages import image_quality as qa
from dsa110_contimg.pipeline.stages.conversion_stage import convert_groups, find_groups
from dsa110_contimg.pipeline.stages.imaging_stage import image_ms
from dsa110_contimg.simulation import ObservationSpec, simulate_observation
from dsa110_contimg.telescope import dsa110
from dsa110_contimg.testing.drift_skies import group_centers_deg, ring_sky
from dsa110_contimg.testing.layout import path_overrides
from dsa110_contimg.tools import imagers
from dsa110_contimg.tools.imagers import ImageProduct
from dsa110_contimg.utils.config_loader import load_pipeline_config

pytestmark = [pytest.mark.integration, pytest.mark.wsclean]

START = datetime(2023, 6, 1, 2, 0, 0, tzinfo=UTC)
SPEC_KW = {
    "n_groups": 2,
    "n_times": 6,
    "declination_deg": 37.0,
    "integration_spacing_s": dsa110.INTEGRATION_TIME_S * 24 / 6,
}
DIVERGED_LOG = """\
== Deconvolving (1) ==
Estimated standard deviation of background noise: 3.1 mJy
Initial peak: 683.5 mJy at 512,511
Next major iteration at: 136.7 mJy
Stopped on peak 136.6 mJy, because the minor-loop threshold was reached.
Estimated standard deviation of background noise: 2.9 mJy
Initial peak: 34.2 mJy at 498,530
Next major iteration at: 6.84 mJy
Stopped on peak 6.84 mJy, because the minor-loop threshold was reached.
Estimated standard deviation of background noise: 24.6 mJy
Initial peak: 293.4 mJy at 12,1000
Performed 3000 iterations in total, 1515 in this major iteration.
Stopped on peak 250.1 mJy, because maximum number of iterations was reached.
Maximum number of minor deconvolution iterations was reached: not continuing.
"""


@pytest.fixture(scope="module")
def groups(tmp_path_factory):
    base = tmp_path_factory.mktemp("quality")
    centers = group_centers_deg(START, **SPEC_KW)
    sky = ring_sky(
        float(np.mean(centers)), 37.0, radii_deg=(0.0, 0.3, 0.6), flux_jy=(1, 2, 1.5)
    )
    spec = ObservationSpec(
        start_time=START, n_antennas=24, n_chan_per_subband=2, seed=3, **SPEC_KW
    )
    sim = simulate_observation(spec, base / "incoming", sky=sky)
    cfg = load_pipeline_config(
        environment="testing", overrides=path_overrides(base), env={}
    )
    report = convert_groups(
        find_groups(base / "incoming", cfg.conversion), base / "ms", cfg.conversion
    )
    real = {}
    for ms in report.ms_paths:
        product = image_ms(ms, base / "real", cfg.imaging, derived=False)
        real[ms.name] = product
    return base, sim, sorted(report.ms_paths), real


class ReplayImager:
    """Replays real WSClean products; diverges where told (test fake)."""

    name = "wsclean"
    calls: list[tuple[str, imagers.ImagingParams]] = []
    real: dict[str, ImageProduct] = {}
    diverge: dict[str, int] = {}  # MS name -> number of attempts that diverge

    def __init__(self, *, binary=None):
        del binary

    def make_image(self, ms_path, prefix, params, *, header=None):
        ms_path, prefix = Path(ms_path), Path(prefix)
        attempt = sum(name == ms_path.name for name, _ in self.calls)
        self.calls.append((ms_path.name, params))
        source = self.real[ms_path.name]
        out = {
            k: prefix.with_name(f"{prefix.name}-{k}.fits")
            for k in ("image", "residual", "psf", "model")
        }
        for kind, path in out.items():
            shutil.copy(getattr(source, f"{kind}_path"), path)
        log_path = prefix.with_name(f"{prefix.name}-wsclean.log")
        diverged = attempt < self.diverge.get(ms_path.name, 0)
        if diverged:
            log_path.write_text(DIVERGED_LOG)
            for kind in ("image", "residual"):
                with fits.open(out[kind], mode="update") as hdul:
                    data = hdul[0].data
                    x = np.arange(data.shape[-1])
                    data += (0.25 * np.sin(x / 3.0)).astype(data.dtype)
        else:
            shutil.copy(source.log_path, log_path)
        return ImageProduct(
            ms_path,
            out["image"],
            out["residual"],
            out["psf"],
            out["model"],
            log_path,
            "wsclean",
            "replay",
            (),
        )


def _run_block(base, sim, ms_paths, monkeypatch, diverge):
    ReplayImager.calls = []
    ReplayImager.diverge = diverge
    monkeypatch.setitem(imagers.IMAGERS, "wsclean", ReplayImager)
    for sub in ("images", "mosaics", "products"):
        shutil.rmtree(base / sub, ignore_errors=True)
    (base / "pipeline.sqlite3").unlink(missing_ok=True)
    cfg = load_pipeline_config(
        environment="testing", overrides=path_overrides(base), env={}
    )
    with ThreadPoolExecutor(1) as pool:
        orch = PipelineOrchestrator(cfg, catalog=sim.sky, executor=pool)
        block = orch.create_processing_block(
            "2023-06-01T02:30:00", [str(p) for p in ms_paths]
        )
        result = asyncio.run(orch.process_block(block))
    return cfg, result


def test_wsclean_log_parsing_on_a_real_and_a_diverged_log(groups):
    _, _, ms_paths, real = groups
    history = qa.clean_history(real[ms_paths[0].name].log_path, "wsclean")
    assert len(history.start_peaks_jy) >= 3
    assert history.peak_growth <= 2.0  # a healthy clean
    diverged = qa.parse_wsclean_log(DIVERGED_LOG)
    assert diverged.start_peaks_jy == pytest.approx((0.6835, 0.0342, 0.2934))
    assert diverged.peak_growth == pytest.approx(293.4 / 34.2)
    assert diverged.hit_niter


def test_diverging_clean_is_retried_then_kept_out_with_a_reason(groups, monkeypatch):
    base, sim, ms_paths, real = groups
    ReplayImager.real = real
    bad = ms_paths[1].name
    with pytest.warns(DataQualityWarning, match="rejected: failed its quality gates"):
        cfg, result = _run_block(base, sim, ms_paths, monkeypatch, {bad: 2})
    # caught, then retried once with the safer parameters
    bad_calls = [p for name, p in ReplayImager.calls if name == bad]
    assert len(bad_calls) == 2
    first, retry = bad_calls
    assert retry.mgain <= cfg.imaging.qa_retry_mgain < first.mgain
    assert retry.auto_threshold_sigma >= cfg.imaging.qa_retry_auto_threshold_sigma
    assert retry.auto_mask_sigma >= cfg.imaging.qa_retry_auto_mask_sigma
    assert len([n for n, _ in ReplayImager.calls if n != bad]) == 1
    # excluded from the mosaic with the reason, in the report and the database
    ((image, reason),) = result.rejected_images
    assert Path(image).name.startswith(bad.removesuffix(".ms"))
    assert "diverged" in reason and "8.58x" in reason
    statuses = {Path(p).name: (s, d) for p, s, d in result.mosaic_members}
    bad_image = Path(image).name
    assert statuses[bad_image][0] == "rejected"
    assert "diverged" in statuses[bad_image][1]
    assert [s for s, _ in statuses.values()].count("used") == 1
    conn = sqlite3.connect(base / "pipeline.sqlite3")
    rows = conn.execute(
        "SELECT image_path, passed, n_attempts, peak_growth, reason FROM image_quality"
    ).fetchall()
    by_name = {Path(r[0]).name: r for r in rows}
    assert by_name[bad_image][1:3] == (0, 2)
    assert by_name[bad_image][3] == pytest.approx(293.4 / 34.2)
    good = next(r for n, r in by_name.items() if n != bad_image)
    assert good[1:3] == (1, 1)
    (member_status,) = conn.execute(
        "SELECT status FROM mosaic_members WHERE image_path = ?", (image,)
    ).fetchone()
    assert member_status == "rejected"
    # the rejected image is not measured; the good one and the mosaic are
    table = result.output_files["photometry"][0]
    text = Path(table).read_text()
    assert bad_image not in text
    assert "mosaic" in text
    record = qa.read_quality(Path(image))
    assert record["rms_ratio"] > cfg.imaging.qa_max_rms_ratio
    assert len(record["attempts"]) == 1


def test_a_retry_that_converges_is_used(groups, monkeypatch):
    base, sim, ms_paths, real = groups
    ReplayImager.real = real
    bad = ms_paths[0].name
    _, result = _run_block(base, sim, ms_paths, monkeypatch, {bad: 1})
    assert [name for name, _ in ReplayImager.calls].count(bad) == 2
    assert result.rejected_images == []
    assert [s for _, s, _ in result.mosaic_members] == ["used", "used"]
    record = next(
        q
        for q in result.image_quality
        if Path(q["image_path"]).name.startswith(bad.removesuffix(".ms"))
    )
    assert record["passed"] and len(record["attempts"]) == 1
    assert not record["attempts"][0]["passed"]
    assert "diverged" in record["attempts"][0]["reasons"][0]
