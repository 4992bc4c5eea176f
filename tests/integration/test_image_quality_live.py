"""Image quality gates on a live diverging WSClean run (known truth).

The tiny simulated group (``tiny_observation``: 24 antennas, six point
sources, the brightest 2.3 Jy) is imaged by the pipeline's own imaging call
with the real WSClean and a minor-loop gain of 2.5 (``imaging.gain``). Hogbom
clean subtracts ``gain x peak`` at the peak each iteration, so with a gain
above 2 the residual at the peak grows by ``|1 - gain|`` = 1.5 every
iteration: the minor loop runs away (WSClean 3.1 logs ``Stopped on peak -nan
Jy``) and the restored image has no finite pixel. The quality gate must read
that from WSClean's own log; the retry caps the gain at
``imaging.qa_retry_gain`` (0.1) and converges, so its image is used; a retry
the configuration lets keep the gain diverges again and is kept out of the
mosaic with the reason in the database.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from dsa110_contimg.pipeline import PipelineOrchestrator
from dsa110_contimg.pipeline.stages import image_quality as qa
from dsa110_contimg.pipeline.stages.conversion_stage import convert_groups, find_groups
from dsa110_contimg.testing.layout import path_overrides
from dsa110_contimg.utils.config_loader import load_pipeline_config

pytestmark = [pytest.mark.integration, pytest.mark.wsclean]

DIVERGING = {"imaging.gain": 2.5}


@pytest.fixture(scope="module")
def tiny_ms(tiny_observation, tmp_path_factory):
    base = tmp_path_factory.mktemp("live_quality")
    cfg = load_pipeline_config(
        environment="testing", overrides=path_overrides(base), env={}
    )
    incoming = tiny_observation.output_dir
    report = convert_groups(
        find_groups(incoming, cfg.conversion), base / "ms", cfg.conversion
    )
    (ms_path,) = report.ms_paths
    return ms_path


def _run(ms_path: Path, base: Path, overrides: dict[str, object]):
    cfg = load_pipeline_config(
        environment="testing", overrides=path_overrides(base) | overrides, env={}
    )
    with ThreadPoolExecutor(1) as pool:
        orch = PipelineOrchestrator(cfg, catalog=None, executor=pool)
        block = orch.create_processing_block("2023-06-01T00:00:00", [str(ms_path)])
        result = asyncio.run(orch.process_block(block))
    return cfg, result


def test_the_real_log_of_a_diverging_clean_is_caught_and_the_retry_is_used(
    tiny_ms, tmp_path
):
    cfg, result = _run(tiny_ms, tmp_path, {**DIVERGING, "imaging.qa_retry_gain": 0.1})
    # (a) the first attempt's real WSClean log shows the runaway minor loop
    ((image, status, _),) = result.mosaic_members
    failed_log = Path(image).with_name(
        Path(image).name.replace("-image.fits", "-wsclean.attempt1.log")
    )
    history = qa.clean_history(failed_log, "wsclean")
    assert history.end_peaks_jy and not all(map(math.isfinite, history.end_peaks_jy))
    assert history.peak_growth == math.inf
    (record,) = result.image_quality
    (first,) = record["attempts"]
    assert not first["passed"] and first["params"]["gain"] == 2.5
    assert first["reasons"][0].startswith("clean diverged: peak residual rose")
    assert "restored image has no finite pixel" in first["reasons"]
    # (b) the retry caps the gain, converges, passes every gate and is used
    assert record["params"]["gain"] == cfg.imaging.qa_retry_gain == 0.1
    assert record["params"]["mgain"] == cfg.imaging.qa_retry_mgain
    assert record["passed"] and record["reasons"] == []
    assert record["peak_growth"] <= cfg.imaging.qa_max_peak_growth
    assert abs(record["start_peaks_jy"][-1]) < 0.02 * record["start_peaks_jy"][0]
    assert record["rms_ratio"] < cfg.imaging.qa_max_rms_ratio
    assert status == "used" and result.rejected_images == []
    conn = sqlite3.connect(tmp_path / "pipeline.sqlite3")
    row = conn.execute(
        "SELECT passed, n_attempts, peak_growth FROM image_quality"
    ).fetchone()
    assert row == (1, 2, pytest.approx(record["peak_growth"]))


def test_a_retry_that_still_diverges_is_kept_out_with_the_reason(tiny_ms, tmp_path):
    # the retry may keep the gain (qa_retry_gain >= gain): it diverges again
    _, result = _run(tiny_ms, tmp_path, {**DIVERGING, "imaging.qa_retry_gain": 2.5})
    ((image, reason),) = result.rejected_images
    assert reason.startswith("clean diverged: peak residual rose to NaN or infinity")
    assert "minor loops stopped at nan" in reason
    assert all(s != "used" for _, s, _ in result.mosaic_members)
    conn = sqlite3.connect(tmp_path / "pipeline.sqlite3")
    passed, n_attempts, db_reason = conn.execute(
        "SELECT passed, n_attempts, reason FROM image_quality WHERE image_path = ?",
        (image,),
    ).fetchone()
    assert (passed, n_attempts) == (0, 2)
    assert "diverged" in db_reason
    record = qa.read_quality(Path(image))
    assert [a["params"]["gain"] for a in record["attempts"]] == [2.5]
    assert record["params"]["gain"] == 2.5
    assert not result.output_files.get("mosaic")
