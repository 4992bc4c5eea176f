"""Known-truth end-to-end test: simulate -> MS -> block -> image -> photometry."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import numpy as np
import pytest

from dsa110_contimg.pipeline import PipelineOrchestrator
from dsa110_contimg.pipeline.batch import run_batch
from dsa110_contimg.pipeline.stages.photometry_stage import (
    PHOTOMETRY_COLUMNS,
    read_photometry_table,
)
from dsa110_contimg.simulation import compare_to_truth
from dsa110_contimg.testing.layout import path_overrides
from dsa110_contimg.utils.config_loader import load_pipeline_config

pytestmark = [pytest.mark.integration, pytest.mark.wsclean]


def make_config(base: Path, **extra):
    overrides = path_overrides(base)
    overrides.update(extra)
    return load_pipeline_config(environment="testing", overrides=overrides, env={})


@pytest.fixture(scope="module")
def batch_run(tiny_observation, tmp_path_factory):
    base = tmp_path_factory.mktemp("e2e")
    config = make_config(base)
    result = run_batch(
        config, tiny_observation.output_dir, catalog_path=tiny_observation.sky_path
    )
    return config, result


def test_batch_succeeds_and_writes_products(batch_run):
    config, result = batch_run
    assert result.success, [b.errors for b in result.blocks]
    assert len(result.conversion.products) == 1
    image = Path(result.blocks[0].output_files["image"][0])
    assert image.exists()
    assert not list(Path(config.paths.images_dir).glob(".tmp-*"))
    table = read_photometry_table(result.photometry_path)
    assert tuple(table.colnames) == PHOTOMETRY_COLUMNS


def test_known_truth_fluxes_and_positions(batch_run, tiny_observation):
    _, result = batch_run
    comparison = compare_to_truth(
        read_photometry_table(result.photometry_path), tiny_observation.sky
    )
    print(
        f"\nrecovered {comparison.n_recovered}/{comparison.n_injected}, median "
        f"|flux error| {100 * comparison.median_abs_flux_error:.2f}%, max offset "
        f"{comparison.max_offset_beams:.3f} beam"
    )
    assert comparison.n_recovered == comparison.n_injected
    assert comparison.median_abs_flux_error <= 0.05
    assert comparison.max_offset_beams <= 0.2
    # errors are consistent with the quoted uncertainties (no gross bias)
    pulls = (
        comparison.table["flux_jy"] - comparison.table["true_flux_jy"]
    ) / comparison.table["flux_err_jy"]
    assert abs(np.median(pulls)) < 3


def test_ms_holds_16_subbands_in_frequency_order(batch_run):
    from casacore.tables import table

    _, result = batch_run
    ms = result.conversion.products[0].path
    with table(f"{ms}/SPECTRAL_WINDOW", ack=False) as spw:
        freqs = spw.getcol("CHAN_FREQ").ravel()
    assert freqs.size == 16 * 2
    assert np.all(np.diff(freqs) > 0)
    assert 1.311e9 < freqs[0] < freqs[-1] < 1.499e9


def test_image_header_has_provenance(batch_run):
    from astropy.io import fits

    _, result = batch_run
    header = fits.getheader(result.blocks[0].output_files["image"][0])
    for key in ("DSAMS", "DSAPTDEC", "DSACFGH", "DSAVERS", "DSAIMGR", "BMAJ"):
        assert key in header
    assert header["DSAPTDEC"] == pytest.approx(37.0)


def test_rerun_skips_existing_products(batch_run, tiny_observation):
    config, first = batch_run
    image = Path(first.blocks[0].output_files["image"][0])
    mtime = image.stat().st_mtime
    again = run_batch(
        config, tiny_observation.output_dir, catalog_path=tiny_observation.sky_path
    )
    assert again.success
    assert all(p.skipped for p in again.conversion.products)
    assert image.stat().st_mtime == mtime


def test_block_with_missing_ms_reports_it_and_keeps_others(batch_run, tmp_path):
    config, first = batch_run
    ms = first.conversion.products[0].path
    orchestrator = PipelineOrchestrator(config)
    try:
        block = orchestrator.create_processing_block(
            "2023-06-01T01:00:00", [ms, tmp_path / "drift_20230601T000509_00.ms"]
        )
        result = asyncio.run(orchestrator.process_block(block))
    finally:
        orchestrator.close()
    assert not result.success
    assert any(
        "drift_20230601T000509_00.ms" in e and "not found" in e for e in result.errors
    )
    assert result.output_files["image"]  # the good MS still gave its image
    assert result.processing_time > 0
    recent = orchestrator.metrics.get_recent_metrics(hours=1)
    assert recent[0]["block_id"] == block.block_id


def test_crashing_imager_leaves_no_product(batch_run, tmp_path):
    config, first = batch_run
    fake = tmp_path / "wsclean"
    fake.write_text("#!/bin/sh\necho 'fake imager dying' \nkill -SEGV $$\n")
    fake.chmod(0o755)
    ms = first.conversion.products[0].path
    images = tmp_path / "images"
    cfg = make_config(tmp_path, **{"imaging.wsclean_path": str(fake)})
    from dsa110_contimg.exceptions import ImagingError
    from dsa110_contimg.pipeline.stages.imaging_stage import image_ms

    with pytest.raises(ImagingError) as info:
        image_ms(ms, images, cfg.imaging)
    assert ms.name in str(info.value)
    assert "signal" in str(info.value)
    assert info.value.retryable
    assert not list(images.glob("*-image.fits"))
    assert not list(images.glob(".tmp-*"))


def test_missing_wsclean_is_clear(batch_run, tmp_path):
    config, first = batch_run
    cfg = make_config(tmp_path, **{"imaging.wsclean_path": "/nonexistent/wsclean"})
    from dsa110_contimg.exceptions import ImagingError
    from dsa110_contimg.pipeline.stages.imaging_stage import image_ms

    with pytest.raises(ImagingError, match="apt-get install wsclean"):
        image_ms(first.conversion.products[0].path, tmp_path / "img", cfg.imaging)


def test_casacore_and_casatools_share_a_process(batch_run):
    """python-casacore and casatools imported together read the same MS."""
    pytest.importorskip("casatools")
    from casacore.tables import table

    from dsa110_contimg._casa import import_casa

    casatools = import_casa("casatools")  # the pipeline's own CASA set-up

    _, result = batch_run
    ms = str(result.conversion.products[0].path)
    with table(ms, ack=False) as t:
        n_rows = t.nrows()
    tb = casatools.table()
    tb.open(ms)
    try:
        assert tb.nrows() == n_rows
    finally:
        tb.close()
    msmd = casatools.msmetadata()
    msmd.open(ms)
    try:
        assert msmd.nspw() == 1
        assert msmd.nchan(0) == 32
    finally:
        msmd.close()


def test_unwritable_output_dir_fails_cleanly(tiny_group_dir, tmp_path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where a directory should be")
    config = make_config(tmp_path, **{"paths.ms_stage1_dir": str(blocker / "ms")})
    result = run_batch(config, tiny_group_dir)
    assert not result.success
    (err,) = result.conversion.failures.values()
    assert str(blocker) in str(err)
    assert type(err).__name__ == "ResourceError"


def test_copy_of_raw_files_untouched_by_processing(tiny_group_dir, tmp_path):
    before = {p.name: p.stat().st_size for p in tiny_group_dir.glob("*.hdf5")}
    config = make_config(tmp_path)
    run_batch(config, tiny_group_dir)
    after = {p.name: p.stat().st_size for p in tiny_group_dir.glob("*.hdf5")}
    assert before == after
    shutil.rmtree(tmp_path / "ms")
