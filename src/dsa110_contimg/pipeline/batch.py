"""Batch workflows shared by the CLI, the unified driver and the examples.

``simulate -> convert -> process blocks -> photometry table``; each function
takes the resolved configuration and reports progress through a callback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from astropy.table import Table, unique, vstack
from astropy.time import Time

from dsa110_contimg.data_ingestion.grouping import RejectedFile, find_subband_groups
from dsa110_contimg.data_ingestion.skymodel import SkyCatalog, load_catalog
from dsa110_contimg.exceptions import InputDataError
from dsa110_contimg.pipeline.orchestrator import (
    PipelineOrchestrator,
    ProcessingResult,
)
from dsa110_contimg.pipeline.stages import photometry_stage
from dsa110_contimg.pipeline.stages.conversion_stage import (
    ConversionReport,
    convert_groups,
)
from dsa110_contimg.simulation import (
    ObservationSpec,
    SimulationResult,
    simulate_observation,
)
from dsa110_contimg.state.writer import (
    WriterClaim,
    cleanup_stale_temporaries,
    hold_writer,
)
from dsa110_contimg.utils.config import PipelineConfig, section_values

__all__ = [
    "BatchResult",
    "observation_spec",
    "simulate",
    "convert_incoming",
    "process_blocks",
    "run_batch",
    "writer_of",
]

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


@dataclass(slots=True)
class BatchResult:
    """Outcome of a batch run."""

    conversion: ConversionReport
    blocks: list[ProcessingResult]
    photometry_path: Path | None

    @property
    def success(self) -> bool:
        """Return True when every group converted and every block succeeded."""
        return (
            not self.conversion.failures
            and bool(self.blocks)
            and all(b.success for b in self.blocks)
        )


@contextmanager
def writer_of(config: PipelineConfig, command: str) -> Iterator[WriterClaim]:
    """Hold the writer claim of ``paths.state_db`` and clear killed writers' debris.

    Every command that writes the data directories runs inside this (the
    stream takes the same claim): a second writer gets a `WriterBusyError`
    naming the holder, and with the claim held the temporaries left by
    killed writers are removed (`cleanup_stale_temporaries`).
    """
    with hold_writer(
        config.state_target, command, ttl_s=config.queue.lease_s
    ) as writer:
        cleanup_stale_temporaries(config, writer)
        yield writer


def observation_spec(config: PipelineConfig) -> ObservationSpec:
    """Return the simulator's specification from the ``simulation`` section.

    Every `ObservationSpec` field named like a section key takes its value
    (`section_values`); the start time is parsed as UTC.
    """
    sim = config.simulation
    values = section_values(sim, ObservationSpec)
    values["start_time"] = datetime.fromisoformat(sim.start_time).replace(tzinfo=UTC)
    return ObservationSpec(**values)


def simulate(
    config: PipelineConfig,
    output_dir: Path | None = None,
    *,
    progress: Progress = _quiet,
) -> SimulationResult:
    """Simulate the configured observation into ``output_dir`` (default incoming)."""
    out = Path(output_dir or config.paths.incoming_dir)
    out.mkdir(parents=True, exist_ok=True)
    return simulate_observation(observation_spec(config), out, progress=progress)


def convert_incoming(
    config: PipelineConfig,
    incoming_dir: Path | None = None,
    *,
    progress: Progress = _quiet,
) -> ConversionReport:
    """Convert every group found in ``incoming_dir`` to an MS.

    Files that cannot take part (a name that is not a time, a stray subband,
    the unreadable or stray copy of a duplicate) are set aside with a reason
    (printed, and recorded in the state database's ``rejected_files``); the
    other groups go on. Each group is grouped by its data's own time, so a
    copy named seconds earlier cannot make a second MS of the same data.
    """
    incoming = Path(incoming_dir or config.paths.incoming_dir)
    cfg = config.conversion
    scan = find_subband_groups(
        incoming, tolerance_s=cfg.group_tolerance_s, n_expected=cfg.expected_n_subbands
    )
    groups = scan.groups
    progress(f"found {len(groups)} subband group(s) in {incoming}")
    for rejected in scan.rejected:
        progress(f"set aside ({rejected.kind}): {rejected.reason}")
    _record_rejected(config, scan.rejected)
    return convert_groups(
        groups,
        Path(config.paths.ms_stage1_dir),
        config.conversion,
        progress=lambda i, n, msg: progress(f"[convert {i}/{n}] {msg}"),
    )


def _record_rejected(config: PipelineConfig, rejected: list[RejectedFile]) -> None:
    """Store the files set aside in the state database (``status`` lists them)."""
    if not rejected:
        return
    from contextlib import closing

    from dsa110_contimg.state import open_db
    from dsa110_contimg.state.rejected import record_rejected_files

    with closing(open_db(config.state_target)) as conn:
        record_rejected_files(conn, rejected, now=datetime.now(UTC))


def process_blocks(
    config: PipelineConfig,
    ms_paths: list[Path],
    *,
    catalog: SkyCatalog | None,
    progress: Progress = _quiet,
    blocks: Mapping[Time, list[str]] | None = None,
) -> list[ProcessingResult]:
    """Process every block that holds one of ``ms_paths``.

    The blocks are the stream's (`PipelineOrchestrator.blocks_holding`): windows
    on the grid anchored at ``queue.block_anchor_time``, each with every MS of
    ``paths.ms_stage1_dir`` in it, so a night processed in several runs, or by
    the stream, gives the same blocks, images and mosaics. ``blocks`` (from
    `PipelineOrchestrator.find_ms_blocks_for_batch`) gives them instead, when
    they were found already.
    """
    if not ms_paths and not blocks:
        return []
    orchestrator = PipelineOrchestrator(config, catalog=catalog)
    try:
        if blocks is None:
            todo = orchestrator.blocks_holding(ms_paths)
        else:
            todo = [
                orchestrator.create_processing_block(end, files)
                for end, files in blocks.items()
            ]
        results = []

        async def run_all() -> None:
            progress(f"processing {len(todo)} block(s)")
            tasks = [asyncio.create_task(orchestrator.process_block(b)) for b in todo]
            for i, task in enumerate(asyncio.as_completed(tasks)):
                res = await task
                results.append(res)
                state = "ok" if res.success else "FAILED: " + "; ".join(res.errors)
                for image, reason in res.rejected_images:
                    progress(
                        f"  image rejected (kept out of the mosaic): {image}: {reason}"
                    )
                progress(
                    f"[block {i + 1}/{len(todo)}] {res.block_id}: "
                    f"{len(res.output_files.get('image', []))} image(s) in "
                    f"{res.processing_time:.1f} s, {state}"
                )

        asyncio.run(run_all())
        return sorted(results, key=lambda r: r.block_id)
    finally:
        orchestrator.close()


def merge_photometry(results: list[ProcessingResult], path: Path) -> Path | None:
    """Add the blocks' photometry tables to the merged table at ``path``.

    The merged table is the union of every run's measurements, one row per
    (source, image): rows already in ``path`` are kept, and a source measured
    again on the same image (a re-run, or overlapping blocks sharing the
    image) is replaced by the newest measurement.

    Returns
    -------
    Path or None
        ``path``; None when neither this run nor an earlier one measured
        anything.

    Raises
    ------
    InputDataError
        The existing merged table cannot be read.
    """
    path = Path(path)
    tables = [
        table
        for r in results
        for table in (
            [r.photometry]  # the block's table as measured
            if getattr(r, "photometry", None) is not None
            else [
                photometry_stage.read_photometry_table(Path(p))
                for p in r.output_files.get("photometry", [])
            ]
        )
    ]
    if not tables:
        return path if path.exists() else None
    if path.exists():
        try:
            earlier = photometry_stage.read_photometry_table(path)
        except (OSError, ValueError) as err:
            msg = (
                f"merged photometry table {path} cannot be read ({err}); move it "
                "aside and re-run, or rebuild it from the photometry_block_*.csv files"
            )
            raise InputDataError(msg) from err
        tables.insert(0, earlier)
    merged: Table = unique(
        vstack([photometry_stage.conform_table(t) for t in tables]),
        keys=["source_name", "image_path"],
        keep="last",
    )
    return photometry_stage.write_photometry_table([merged], path)


def run_batch(
    config: PipelineConfig,
    incoming_dir: Path | None = None,
    *,
    catalog_path: Path | None = None,
    progress: Progress = _quiet,
    command: str = "process",
) -> BatchResult:
    """Convert every complete group in ``incoming_dir`` and process every block.

    Writes ``paths.products_dir/photometry.csv``. Runs holding the writer
    claim of ``paths.state_db`` (`writer_of`; ``command`` names this run to
    a writer that is refused meanwhile).

    Raises
    ------
    WriterBusyError
        Another writer (a stream, another ``process``) uses the state database.
    """
    with writer_of(config, command):
        return _run_batch(config, incoming_dir, catalog_path, progress)


def _run_batch(
    config: PipelineConfig,
    incoming_dir: Path | None,
    catalog_path: Path | None,
    progress: Progress,
) -> BatchResult:
    catalog_file = catalog_path or config.paths.catalog_path
    catalog = load_catalog(catalog_file) if catalog_file is not None else None
    conversion = convert_incoming(config, incoming_dir, progress=progress)
    results = process_blocks(
        config, conversion.ms_paths, catalog=catalog, progress=progress
    )
    table = None
    if catalog is not None:
        table = merge_photometry(
            results, Path(config.paths.products_dir) / "photometry.csv"
        )
    return BatchResult(conversion, results, table)
