"""The work of a block that runs in worker processes (or Dask tasks).

Each function here runs away from the event loop: it calibrates a block's MSs,
images one MS and measures the catalogue on it, or coadds a block's images into
its mosaic, holding the claims that make one process the owner of an MS or a
block at a time. `dsa110_contimg.pipeline.orchestrator.PipelineOrchestrator`
submits them through `dsa110_contimg.pipeline._execution.run_stage`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from astropy.table import Table

from dsa110_contimg.data_ingestion.skymodel import SkyCatalog
from dsa110_contimg.pipeline.stages import (
    imaging_stage,
    mosaicking_stage,
    photometry_stage,
)
from dsa110_contimg.pipeline.stages.image_quality import read_quality
from dsa110_contimg.products import (
    ImageNames,
    parse_ms_time,
)
from dsa110_contimg.utils.config import PipelineConfig
from dsa110_contimg.utils.logging import (
    bind_context,
)
from dsa110_contimg.visualization._overlay import write_sources_preview

__all__: list[str] = []

log = logging.getLogger(__name__)


def _ms_claim_keys(ms_paths: list[str]) -> list[str]:
    return [f"ms:{Path(p).resolve()}" for p in ms_paths]


def _claim_wait_s(config: PipelineConfig) -> float:
    # long enough for another worker to finish imaging (or calibrating) the MS
    return float(config.imaging.timeout_s) + 600.0


def _calibrate_block_job(
    ms_paths: list[str],
    config: PipelineConfig,
    block_id: str,
    catalog: SkyCatalog | None,
) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """Calibrate a block's MSs while holding their claims (worker process).

    Overlapping blocks share MSs: the claims (`state.claims`) keep a second
    worker from writing flags and CORRECTED_DATA into the same MS at once.
    """
    from dsa110_contimg.state.claims import hold_claims

    with hold_claims(
        config.state_target,
        _ms_claim_keys(ms_paths),
        wait_s=_claim_wait_s(config),
    ):
        return _calibrate_block_claimed(ms_paths, config, block_id, catalog)


def _calibrate_block_claimed(
    ms_paths: list[str],
    config: PipelineConfig,
    block_id: str,
    catalog: SkyCatalog | None,
) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """Flag, solve and apply calibration for a block (runs in a worker process).

    Returns the applied calibration per MS, the error message per failed MS,
    and the solution tables written.
    """
    from dsa110_contimg.pipeline.stages.calibration_stage import calibrate_block
    from dsa110_contimg.state.calibration import open_solution_registry

    with (
        bind_context(block_id=block_id, stage="calibration"),
        open_solution_registry(config.state_target) as registry,
    ):
        outcome = calibrate_block(
            [Path(p) for p in ms_paths],
            config.calibration,
            cal_tables_dir=Path(config.paths.cal_tables_dir),
            registry=registry,
            block_id=block_id,
            sky_model=catalog,
        )
    tables = [str(t) for s in outcome.solved for t in s.tables]
    applied = {
        p: {
            "solution": s.describe(),
            "calibrator": s.calibrator,
            "group_id": s.group_id,
            "refant": s.refant,
            "tables": [str(t) for t in s.tables],
            **{k: v for k, v in s.quality.items() if k.endswith("flagged_fraction")},
        }
        for p, s in outcome.applied.items()
    }
    return applied, {p: str(e) for p, e in outcome.errors.items()}, tables


def _process_ms(
    ms_path: str,
    config: PipelineConfig,
    cfg_hash: str,
    catalog: SkyCatalog | None,
    block_id: str | None = None,
) -> dict[str, object]:
    """Image and measure one MS while holding its claim (worker process).

    A second block that shares the MS waits for the claim, then finds the
    image made and skips the imager.
    """
    from dsa110_contimg.state.claims import hold_claims

    with hold_claims(
        config.state_target,
        _ms_claim_keys([ms_path]),
        wait_s=_claim_wait_s(config),
    ):
        return _process_ms_claimed(ms_path, config, cfg_hash, catalog, block_id)


def _process_ms_claimed(
    ms_path: str,
    config: PipelineConfig,
    cfg_hash: str,
    catalog: SkyCatalog | None,
    block_id: str | None = None,
) -> dict[str, object]:
    """Image one MS and measure the catalogue on it (runs in a worker process)."""
    context = {"block_id": block_id} if block_id else {}
    with bind_context(**context, group=_group_of(ms_path)):
        return _image_and_measure(ms_path, config, cfg_hash, catalog)


def _group_of(ms_path: str) -> str:
    stamp = parse_ms_time(ms_path)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S") if stamp else Path(ms_path).stem


def _image_and_measure(
    ms_path: str, config: PipelineConfig, cfg_hash: str, catalog: SkyCatalog | None
) -> dict[str, object]:
    images_dir = Path(config.paths.images_dir)
    t0 = time.perf_counter()
    with bind_context(stage="image"):
        product = imaging_stage.image_ms(
            Path(ms_path),
            images_dir,
            config.imaging,
            config_hash=cfg_hash,
            catalog=catalog,
        )
        log.info(
            "image done",
            extra={
                "image": product.image_path.name,
                "skipped": product.skipped,
                "duration_s": round(time.perf_counter() - t0, 2),
            },
        )
    out: dict[str, object] = {
        "image": str(product.image_path),
        "skipped": product.skipped,
    }
    names = ImageNames.of(product.image_path)
    for kind in _IMAGE_KINDS[1:]:
        # the product's own paths (None: not made with these settings), else the name
        path = getattr(product, f"{kind}_path", names.path(kind))
        if path is not None and Path(path).exists():
            out[kind] = str(path)
    quality = (
        read_quality(product.image_path) if product.quality_path is not None else None
    )
    if quality is not None:
        out["quality_record"] = quality
    # An image that failed its quality gates is not measured: its fluxes are
    # not to be trusted (it is also kept out of the mosaic).
    if catalog is not None and (quality is None or quality.get("passed", True)):
        with bind_context(stage="photometry"):
            out["photometry_rows"] = _timed_photometry(
                "photometry done",
                photometry_stage.measure_image,
                product.image_path,
                catalog,
                config.photometry,
                pb_path=product.pb_path,  # the beam the maps were made with
            )
    return out


def _timed_photometry(message: str, measure, *args, **kwargs) -> Table:
    """Run a photometry function and log its row count and duration."""
    t0 = time.perf_counter()
    table = measure(*args, **kwargs)
    log.info(
        message,
        extra={
            "n_measured": len(table),
            "duration_s": round(time.perf_counter() - t0, 2),
        },
    )
    return table


_IMAGE_KINDS = (
    "image",
    "residual",
    "psf",
    "pb",
    "rms",
    "pbcor",
    "preview",
    "residual_preview",
    "pb_preview",
    "quality",
)
_MOSAIC_KINDS = {
    "mosaic_sources_preview": None,
    "mosaic": "mosaic_path",
    "mosaic_weight": "weight_path",
    "mosaic_noise": "noise_path",
    "mosaic_coverage": "coverage_path",
    "mosaic_members": "members_path",
    "mosaic_preview": "preview_path",
}


def _mosaic_block(
    block_id: str,
    members: list[mosaicking_stage.MosaicMember],
    config: PipelineConfig,
    cfg_hash: str,
    catalog: SkyCatalog | None,
) -> dict[str, object]:
    """Mosaic a block's images and measure the catalogue on it (worker process)."""
    t0 = time.perf_counter()
    with bind_context(block_id=block_id, stage="mosaic"):
        product = mosaicking_stage.make_mosaic(
            block_id,
            members,
            Path(config.paths.mosaics_dir),
            config.mosaic,
            config_hash=cfg_hash,
        )
        log.info(
            "mosaic done",
            extra={
                "mosaic": product.mosaic_path.name,
                "n_used": sum(m.status == "used" for m in product.members),
                "n_members": len(product.members),
                "duration_s": round(time.perf_counter() - t0, 2),
            },
        )
    out: dict[str, object] = {
        kind: str(getattr(product, attr))
        for kind, attr in _MOSAIC_KINDS.items()
        if attr is not None and getattr(product, attr) is not None
    }
    out["members"] = [(str(m.image_path), m.status, m.detail) for m in product.members]
    if catalog is not None:
        with bind_context(block_id=block_id, stage="photometry"):
            rows = _timed_photometry(
                "mosaic photometry done",
                photometry_stage.measure_mosaic,
                product.mosaic_path,
                catalog,
                config.photometry,
                noise_path=product.noise_path,
                coverage_path=product.coverage_path,
            )
        out["photometry_rows"] = rows
        if config.mosaic.write_png and len(rows):
            out["mosaic_sources_preview"] = str(
                write_sources_preview(product.mosaic_path, rows, product.noise_path)
            )
    return out
