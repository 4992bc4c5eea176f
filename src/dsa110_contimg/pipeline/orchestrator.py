"""The unified pipeline orchestrator: one code path for batch and streaming.

A *block* is ``services.mosaic_duration_min`` of groups ending at a block end
time; consecutive blocks overlap by ``services.mosaic_overlap_min``. Processing
a block images each of its MSs (skipping images that exist, so overlapping
blocks share them), measures the catalogue on each image, coadds the block's
images into a mosaic (``mosaic.enabled``; members that are missing or broken
leave a flagged gap) and measures the catalogue on the mosaic. Which images
went into which mosaic is recorded in the ``mosaic_members`` table. CPU-heavy work
runs in a process pool so the event loop stays responsive; at most
``services.max_concurrent_blocks`` blocks run at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import Executor
from datetime import UTC, datetime
from pathlib import Path

from astropy.table import Table, vstack
from astropy.time import Time, TimeDelta

from dsa110_contimg.data_ingestion.skymodel import SkyCatalog, load_catalog
from dsa110_contimg.exceptions import ConfigError, PipelineError
from dsa110_contimg.pipeline._block import ProcessingBlock, ProcessingResult
from dsa110_contimg.pipeline._block_summary import block_summary
from dsa110_contimg.pipeline._block_work import (
    _IMAGE_KINDS,
    _MOSAIC_KINDS,
    _calibrate_block_job,
    _mosaic_block,
    _process_ms,
)
from dsa110_contimg.pipeline._execution import make_executor, run_stage
from dsa110_contimg.pipeline.stages import (
    mosaicking_stage,
    photometry_stage,
)
from dsa110_contimg.products import (
    MS_GLOB,
    BlockGrid,
    BlockWindow,
    ImageNames,
    block_id,
    block_paths,
    image_id,
    parse_ms_time,
)
from dsa110_contimg.state import open_db
from dsa110_contimg.state.metrics import PipelineMetrics
from dsa110_contimg.state.mosaics import record_mosaic_members
from dsa110_contimg.state.products import record_image_quality, record_product
from dsa110_contimg.utils.config import PipelineConfig, config_hash
from dsa110_contimg.utils.logging import (
    bind_context,
)
from dsa110_contimg.visualization._summary import write_block_summary

__all__ = [
    "ProcessingBlock",
    "ProcessingResult",
    "PipelineOrchestrator",
    "parse_ms_time",
]

log = logging.getLogger(__name__)


def _to_utc_datetime(value: str | Time | datetime) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        value = value.replace("Z", "").split("+")[0]
    return Time(value, scale="utc").to_datetime(UTC)


class PipelineOrchestrator:
    """Run processing blocks through the stages.

    Parameters
    ----------
    config : PipelineConfig
        Resolved configuration.
    catalog : SkyCatalog, optional
        Sources to measure; defaults to ``paths.catalog_path`` when set.
    executor : concurrent.futures.Executor, optional
        Where CPU-heavy work runs; defaults to a process pool of
        ``services.max_workers`` processes.
    """

    def __init__(
        self,
        config: PipelineConfig,
        *,
        catalog: SkyCatalog | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.config = config
        self.config_hash = config_hash(config)
        if catalog is None and config.paths.catalog_path is not None:
            catalog = load_catalog(config.paths.catalog_path)
        self.catalog = catalog
        self._executor = executor
        self._owns_executor = executor is None
        self._semaphore: asyncio.Semaphore | None = None
        self.metrics = PipelineMetrics(config.state_target)

    # -- blocks ---------------------------------------------------------------
    def create_processing_block(
        self, block_end_time: Time | str, ms_files: list[str | Path]
    ) -> ProcessingBlock:
        """Return the block of ``mosaic_duration_min`` ending at ``block_end_time``."""
        end = Time(block_end_time, scale="utc")
        start = end - TimeDelta(
            self.config.services.mosaic_duration_min * 60.0, format="sec"
        )
        files = tuple(sorted(Path(f) for f in ms_files))
        return ProcessingBlock(block_id(end.to_datetime(UTC)), start, end, files)

    def find_ms_blocks_for_batch(
        self, start_time_iso: str, end_time_iso: str
    ) -> dict[Time, list[str]]:
        """Return ``{block_end_time: ms_files}`` for blocks covering a time range.

        Blocks are the stream's windows (`dsa110_contimg.products.block_windows`):
        ``mosaic_duration_min`` long, starting at ``queue.block_anchor_time``
        plus multiples of ``mosaic_duration_min - mosaic_overlap_min``. The
        blocks returned are those holding an MS (of ``paths.ms_stage1_dir``)
        whose group time lies in ``[start_time_iso, end_time_iso)``; each lists
        every MS of that directory whose group time lies in ``[block start,
        block end)``, so a night processed in several runs, or by the stream,
        gives the same blocks.
        """
        start = _to_utc_datetime(start_time_iso)
        end = _to_utc_datetime(end_time_iso)
        if end <= start:
            msg = f"end time {end_time_iso} is not after start time {start_time_iso}"
            raise ValueError(msg)
        return {
            Time(window.end, scale="utc"): files
            for window, files in self._batch_windows(lambda t: start <= t < end).items()
        }

    def blocks_holding(self, ms_files: list[str | Path]) -> list[ProcessingBlock]:
        """Return the blocks holding ``ms_files``, cut as `find_ms_blocks_for_batch`."""
        wanted = {parse_ms_time(p) for p in ms_files} - {None}
        return [
            self.create_processing_block(Time(window.end, scale="utc"), files)
            for window, files in self._batch_windows(wanted.__contains__).items()
        ]

    def _batch_windows(self, selects) -> dict[BlockWindow, list[str]]:
        """Return the windows holding a selected MS time, each with all its MSs."""
        ms_dir = Path(self.config.paths.ms_stage1_dir)
        stamped: dict[datetime, list[str]] = {}
        for path in sorted(ms_dir.glob(MS_GLOB)):
            if (t := parse_ms_time(path)) is not None:
                stamped.setdefault(t, []).append(str(path))
        windows = BlockGrid.from_config(self.config).windows(stamped)
        return {
            window: [p for t in times for p in stamped[t]]
            for window, times in windows.items()
            if any(selects(t) for t in times)
        }

    # -- processing -----------------------------------------------------------
    def _get_executor(self) -> Executor:
        if self._executor is None:
            log.info(
                "starting the execution backend",
                extra={
                    "backend": self.config.execution.backend,
                    "n_workers": self.config.services.max_workers,
                },
            )
            # local: workers log to this process, get a CASA-safe argv and site
            # configuration, and die with this process (kill -9 too); dask:
            # a client of execution.scheduler_address
            self._executor = make_executor(self.config)
        return self._executor

    def close(self) -> None:
        """Shut down the worker pool this orchestrator created."""
        if self._executor is not None and self._owns_executor:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def process_block(self, block: ProcessingBlock) -> ProcessingResult:
        """Image and measure every MS of ``block``.

        One failing MS does not stop the others; its error is listed in the
        result, which is then unsuccessful. Products are recorded in the
        pipeline database and the block's timing in `PipelineMetrics`.
        """
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(
                self.config.services.max_concurrent_blocks
            )
        async with self._semaphore:
            return await self._process_block(block)

    async def _calibrate(
        self,
        block: ProcessingBlock,
        missing: list[str],
        result: ProcessingResult,
        executor: Executor,
    ) -> list[str]:
        """Calibrate the block's MSs; return those that must not be imaged."""
        paths = [str(p) for p in block.ms_files if str(p) not in missing]
        if not paths:
            return []
        try:
            applied, errors, tables = await run_stage(
                executor,
                "calibrate",
                block.block_id,
                _calibrate_block_job,
                paths,
                self.config,
                block.block_id,
                self.catalog,
            )
        except PipelineError as err:
            result.errors.extend(f"{p}: {type(err).__name__}: {err}" for p in paths)
            return paths
        result.calibration.update(applied)
        for path, message in errors.items():
            result.errors.append(f"{path}: CalibrationError: {message}")
        if tables:
            result.output_files["caltables"] = tables
        return list(errors)

    async def _process_block(self, block: ProcessingBlock) -> ProcessingResult:
        t0 = time.perf_counter()
        result = ProcessingResult(block.block_id, success=False, processing_time=0.0)
        with bind_context(block_id=block.block_id):
            log.info("block start", extra={"n_ms": len(block.ms_files)})
            missing = [str(p) for p in block.ms_files if not Path(p).exists()]
            for path in missing:
                result.errors.append(f"{path}: MS not found")
            executor = self._get_executor()
            if self.config.calibration.enabled:
                with bind_context(stage="calibration"):
                    failed = await self._calibrate(block, missing, result, executor)
                missing = missing + failed
            images_dir = self.config.paths.images_dir
            futures = [
                run_stage(
                    executor,
                    "image",
                    image_id(ImageNames.for_ms(p, images_dir).image),
                    _process_ms,
                    str(p),
                    self.config,
                    self.config_hash,
                    self.catalog,
                    block.block_id,
                )
                for p in block.ms_files
                if str(p) not in missing
            ]
            outcomes = await asyncio.gather(*futures, return_exceptions=True)
        tables = []
        made: dict[str, dict[str, object]] = {}  # MS -> the image products made
        good = [p for p in block.ms_files if str(p) not in missing]
        for ms_path, outcome in zip(good, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                kind = type(outcome).__name__
                result.errors.append(f"{ms_path}: {kind}: {outcome}")
                log.error(
                    "ms processing failed",
                    extra={
                        "block_id": block.block_id,
                        "ms": str(ms_path),
                        "error": str(outcome),
                    },
                )
                if not isinstance(outcome, PipelineError | OSError):
                    log.error("unexpected error", exc_info=outcome)
                continue
            made[str(ms_path)] = outcome
            for kind in _IMAGE_KINDS:
                if kind in outcome:
                    result.output_files.setdefault(kind, []).append(str(outcome[kind]))
            if "photometry_rows" in outcome:
                tables.append(outcome["photometry_rows"])
            if "quality_record" in outcome:
                record = outcome["quality_record"]
                result.image_quality.append(record)
                if not record.get("passed", True):
                    log.warning(
                        "image rejected by its quality gates",
                        extra={
                            "image": str(record.get("image_path")),
                            "reason": "; ".join(record.get("reasons") or []),
                        },
                    )
        if self.config.mosaic.enabled and block.ms_files:
            with bind_context(block_id=block.block_id, stage="mosaic"):
                mosaic_rows = await self._mosaic(block, result, made)
            if (
                mosaic_rows is not None
                and self.config.photometry.estimator == "dirty_equivalent"
            ):
                used = [p for p, status, _ in result.mosaic_members if status == "used"]
                mosaic_rows = photometry_stage.mosaic_rows_from_members(
                    mosaic_rows, tables, used, self.config.photometry
                )
            if mosaic_rows is not None:
                tables.append(mosaic_rows)
        if tables:
            tables = photometry_stage.add_overlap_systematic(tables)
            table_path = block_paths(block.block_id, self.config.paths.products_dir)[
                "photometry"
            ]
            photometry_stage.write_photometry_table(tables, table_path)
            result.output_files["photometry"] = [str(table_path)]
            result.photometry = vstack(
                [photometry_stage.conform_table(t) for t in tables]
            )
        result.success = not result.errors and bool(result.output_files.get("image"))
        if not block.ms_files:
            result.errors.append(f"block {block.block_id} has no Measurement Sets")
        result.processing_time = time.perf_counter() - t0
        self._write_summary(block, result, tables)
        self._record(block, result)
        log.info(
            "block done",
            extra={
                "block_id": block.block_id,
                "success": result.success,
                "duration_s": round(result.processing_time, 2),
            },
        )
        return result

    async def _mosaic(
        self,
        block: ProcessingBlock,
        result: ProcessingResult,
        made: dict[str, dict[str, object]],
    ) -> Table | None:
        """Mosaic the block's images; return the mosaic's photometry rows.

        Every MS of the block is a member (one not imaged is a gap): its image
        products as the imaging stage returned them (``made``), else the names
        they would have.
        """
        members = []
        for ms_path in block.ms_files:
            names = ImageNames.for_ms(ms_path, self.config.paths.images_dir)
            image = made.get(str(ms_path), {})
            members.append(
                mosaicking_stage.MosaicMember(
                    Path(str(image.get("image", names.image))),
                    names.group_time,
                    pb_path=Path(str(image["pb"])) if "pb" in image else None,
                    rms_path=Path(str(image["rms"])) if "rms" in image else None,
                )
            )
        try:
            outcome = await run_stage(
                self._get_executor(),
                "mosaic",
                block.block_id,
                _mosaic_block,
                block.block_id,
                members,
                self.config,
                self.config_hash,
                self.catalog,
            )
        except (PipelineError, OSError) as err:
            result.errors.append(
                f"mosaic {block.block_id}: {type(err).__name__}: {err}"
            )
            log.error(
                "mosaic failed", extra={"block_id": block.block_id, "error": str(err)}
            )
            return None
        for kind in _MOSAIC_KINDS:
            if kind in outcome:
                result.output_files[kind] = [str(outcome[kind])]
        result.mosaic_members = list(outcome["members"])
        for image_path, status, detail in result.mosaic_members:
            if status != "used":
                log.warning(
                    "mosaic member left out",
                    extra={"image": image_path, "status": status, "detail": detail},
                )
        return outcome.get("photometry_rows")

    def _write_summary(
        self, block: ProcessingBlock, result: ProcessingResult, tables: list[Table]
    ) -> None:
        """Write ``products_dir/summary_<block>.html`` (failures only logged)."""
        path = block_paths(block.block_id, self.config.paths.products_dir)["summary"]
        try:
            write_block_summary(block_summary(block, result, tables, self.config), path)
        except (OSError, ValueError, ImportError) as err:
            log.warning("block summary not written", extra={"error": str(err)})
            return
        result.output_files["summary"] = [str(path)]
        log.info("block summary written", extra={"path": str(path)})

    def _record(self, block: ProcessingBlock, result: ProcessingResult) -> None:
        self.metrics.record_block_processing(
            block_id=block.block_id,
            success=result.success,
            processing_time=result.processing_time,
            ms_count=len(block.ms_files),
            image_count=len(result.output_files.get("image", [])),
            error_message="; ".join(result.errors) or None,
        )
        conn = open_db(self.config.state_target)
        try:
            for kind, paths in result.output_files.items():
                for path in paths:
                    record_product(conn, block_id=block.block_id, kind=kind, path=path)
            for record in result.image_quality:
                record_image_quality(conn, block_id=block.block_id, record=record)
            if result.mosaic_members:
                record_mosaic_members(
                    conn,
                    block_id=block.block_id,
                    mosaic_path=result.output_files["mosaic"][0],
                    members=result.mosaic_members,
                )
        finally:
            conn.close()


def check_backend(config: PipelineConfig) -> None:
    """Raise `ConfigError` early when the configured imaging backend is unknown."""
    from dsa110_contimg.tools.imagers import IMAGERS

    if config.imaging.backend not in IMAGERS:
        msg = (
            f"imaging.backend {config.imaging.backend!r} is not available; "
            f"choose one of {sorted(IMAGERS)}"
        )
        raise ConfigError(msg)
