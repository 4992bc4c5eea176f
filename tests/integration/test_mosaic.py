"""Known-truth mosaics: simulate -> run_batch -> mosaics per block -> photometry.

Six drift-scan groups (testing size, each spread over a real group's 309 s)
see sources along the strip, near the edge of the primary beam and in the
overlap of two blocks. Blocks are 30 min long and overlap by 10 min on the
grid anchored at ``queue.block_anchor_time`` (windows start on whole 20 min
from 2000-01-01), so the full block [00:00, 00:30) holds all six groups and
the blocks before and after it hold only the two groups each shares with it.
"""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from dsa110_contimg.pipeline import PipelineOrchestrator
from dsa110_contimg.pipeline.batch import run_batch
from dsa110_contimg.pipeline.stages.photometry_stage import read_photometry_table
from dsa110_contimg.simulation import ObservationSpec, simulate_observation
from dsa110_contimg.telescope import dsa110
from dsa110_contimg.testing.drift_skies import catalog_from_rows, group_centers_deg
from dsa110_contimg.testing.layout import path_overrides
from dsa110_contimg.utils.config_loader import load_pipeline_config

pytestmark = [pytest.mark.integration, pytest.mark.wsclean]

START = datetime(2023, 6, 1, 0, 0, 0, tzinfo=UTC)
SPEC_KW = {
    "n_groups": 6,
    "n_times": 6,
    "declination_deg": 37.0,
    "integration_spacing_s": dsa110.INTEGRATION_TIME_S * 24 / 6,
}
N_OVERLAP = 2


def _sky():
    """Strip sources, beam-edge sources and (last) sources in the block overlap."""
    centers = group_centers_deg(START, **SPEC_KW)
    rng = np.random.default_rng(21)
    cos_dec = np.cos(np.deg2rad(37.0))
    rows: list[tuple[float, float, float]] = []
    while len(rows) < 22:
        ra = rng.uniform(centers[0] - 1.2 / cos_dec, centers[-1] + 1.2 / cos_dec)
        dec = 37.0 + rng.uniform(-1.2, 1.2)
        if all(np.hypot((ra - r) * cos_dec, dec - d) > 0.15 for r, d, _ in rows):
            rows.append((ra, dec, float(np.exp(rng.uniform(np.log(0.5), np.log(3))))))
    for k, sign in ((1, 1), (3, -1)):  # primary beam ~0.35 at 1.55 deg
        rows.append((centers[k], 37.0 + sign * 1.55, 2.0))
    mid = 0.5 * (centers[4] + centers[5])
    rows += [(mid, 37.35, 1.5), (mid + 0.1, 36.6, 1.0)]
    return catalog_from_rows(rows, name_prefix="SIM")


def make_config(base: Path, **extra):
    overrides = path_overrides(base)
    overrides.update(
        {
            "services.mosaic_duration_min": 30,
            "services.mosaic_overlap_min": 10,
            "imaging.image_size": [1440, 1440],
            "imaging.cell_size": "10arcsec",
        }
    )
    overrides.update(extra)
    return load_pipeline_config(environment="testing", overrides=overrides, env={})


@pytest.fixture(scope="module")
def hour(tmp_path_factory):
    base = tmp_path_factory.mktemp("mosaic_hour")
    spec = ObservationSpec(
        start_time=START, n_antennas=24, n_chan_per_subband=2, seed=9, **SPEC_KW
    )
    sim = simulate_observation(spec, base / "incoming", sky=_sky())
    config = make_config(base)
    result = run_batch(config, base / "incoming", catalog_path=sim.sky_path)
    return sim, config, result


def _mosaic_rows(result):
    table = read_photometry_table(result.photometry_path)
    return table[np.asarray(table["image_kind"]).astype(str) == "mosaic"]


def test_every_block_has_a_mosaic_and_its_photometry(hour):
    _, _, result = hour
    assert result.success, [b.errors for b in result.blocks]
    assert len(result.blocks) == 3
    n_images = [len(b.output_files["image"]) for b in result.blocks]
    assert n_images == [2, 6, 2]  # the outer blocks hold only the overlap groups
    rows = _mosaic_rows(result)
    for block in result.blocks:
        (mosaic,) = block.output_files["mosaic"]
        for kind in ("mosaic_weight", "mosaic_noise", "mosaic_coverage"):
            assert Path(block.output_files[kind][0]).exists()
        assert Path(block.output_files["mosaic_preview"][0]).stat().st_size > 10_000
        assert [s for _, s, _ in block.mosaic_members] == ["used"] * len(
            block.output_files["image"]
        )
        assert np.sum(np.asarray(rows["image_path"]).astype(str) == mosaic) >= 8


def test_mosaic_fluxes_match_truth(hour):
    sim, _, result = hour
    rows = _mosaic_rows(result)
    truth = dict(zip(sim.sky.name, range(len(sim.sky)), strict=True))
    for block in result.blocks:
        mosaic = block.output_files["mosaic"][0]
        sel = rows[
            (np.asarray(rows["image_path"]).astype(str) == mosaic)
            & (np.asarray(rows["flags"]) == 0)
            & (np.asarray(rows["snr"]) > 10)
        ]
        idx = [truth[n] for n in sel["source_name"]]
        true_flux = np.array(
            [sim.sky.flux_at(f)[i] for f, i in zip(sel["freq_hz"], idx, strict=True)]
        )
        err = np.asarray(sel["flux_jy"]) / true_flux - 1
        print(
            f"\n{block.block_id}: {len(sel)} sources > 10 sigma, median |flux "
            f"error| {100 * np.median(np.abs(err)):.2f}% "
            f"(max {100 * np.max(np.abs(err)):.1f}%)"
        )
        assert len(sel) >= 8
        assert np.median(np.abs(err)) <= 0.03


def test_mosaic_rms_matches_the_prediction_from_the_weights(hour):
    sim, _, result = hour
    for block in result.blocks:
        mosaic = Path(block.output_files["mosaic"][0])
        image = fits.getdata(mosaic).astype(float)
        noise = fits.getdata(block.output_files["mosaic_noise"][0]).astype(float)
        header = fits.getheader(mosaic)
        x, y = WCS(header).world_to_pixel_values(sim.sky.ra_deg, sim.sky.dec_deg)
        r = int(8 * header["BMAJ"] / abs(header["CDELT2"]))
        for xi, yi in zip(x, y, strict=True):
            image[
                max(0, int(yi) - r) : int(yi) + r, max(0, int(xi) - r) : int(xi) + r
            ] = np.nan
        z = (image / noise)[np.isfinite(image)]
        ratio = 1.4826 * np.median(np.abs(z - np.median(z)))
        print(
            f"\n{block.block_id}: measured / predicted rms = {ratio:.3f} "
            f"(predicted median {1e3 * np.nanmedian(noise):.2f} mJy/beam)"
        )
        assert ratio == pytest.approx(1.0, abs=0.2)


def test_source_in_the_block_overlap_agrees_between_mosaics(hour):
    sim, _, result = hour
    rows = _mosaic_rows(result)
    for name in sim.sky.name[-N_OVERLAP:]:
        sel = rows[np.asarray(rows["source_name"]).astype(str) == name]
        assert len(sel) == 2 and np.all(sel["flags"] == 0)
        (f1, f2), (e1, e2) = sel["flux_jy"], sel["flux_err_jy"]
        combined = np.hypot(e1, e2)
        print(
            f"\n{name}: {f1:.4f} +- {e1:.4f} and {f2:.4f} +- {e2:.4f} Jy "
            f"(difference {abs(f1 - f2) / combined:.2f} sigma)"
        )
        # the mosaics share the overlap images: agreement within 2 sigma of the
        # quoted (independent-noise) errors
        assert abs(f1 - f2) <= 2 * combined


def test_database_records_which_images_went_into_which_mosaic(hour):
    _, config, result = hour
    with sqlite3.connect(config.paths.state_db) as conn:
        rows = conn.execute(
            "SELECT block_id, image_path, status FROM mosaic_members"
        ).fetchall()
    per_image: dict[str, set[str]] = {}
    for block_id, image, status in rows:
        assert status == "used"
        per_image.setdefault(image, set()).add(block_id)
    shared = [image for image, blocks in per_image.items() if len(blocks) == 2]
    assert len(per_image) == 6 and len(shared) == 4  # overlap groups imaged once
    for block in result.blocks:
        assert set(block.output_files["image"]) == {
            img for img, blocks in per_image.items() if block.block_id in blocks
        }


def test_rerun_reuses_images_and_mosaics(hour):
    sim, config, first = hour
    mosaics = [Path(b.output_files["mosaic"][0]) for b in first.blocks]
    mtimes = [m.stat().st_mtime_ns for m in mosaics]
    again = run_batch(
        config, Path(config.paths.incoming_dir), catalog_path=sim.sky_path
    )
    assert again.success
    assert [m.stat().st_mtime_ns for m in mosaics] == mtimes


def test_block_with_a_missing_image_still_mosaics_with_the_gap_flagged(hour, tmp_path):
    _, config, first = hour
    ms_files = sorted(Path(config.paths.ms_stage1_dir).glob("drift_*.ms"))
    missing = ms_files[2].with_name("drift_20230601T001010_00.ms")  # never observed
    orchestrator = PipelineOrchestrator(config)
    try:
        block = orchestrator.create_processing_block(
            "2023-06-01T00:40:00", [*ms_files[:2], missing, *ms_files[3:]]
        )
        result = asyncio.run(orchestrator.process_block(block))
    finally:
        orchestrator.close()
    assert any("MS not found" in e for e in result.errors)
    assert Path(result.output_files["mosaic"][0]).exists()
    status = {Path(p).name: s for p, s, _ in result.mosaic_members}
    assert status["drift_20230601T001010_00-image.fits"] == "missing"
    assert sum(s == "used" for s in status.values()) == 5
    header = fits.getheader(result.output_files["mosaic"][0])
    assert header["DSANBAD"] == 1 and header["DSANUSED"] == 5
