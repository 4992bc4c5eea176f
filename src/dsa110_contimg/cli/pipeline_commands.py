"""The pipeline commands of ``dsa110-contimg``: thin wrappers around pipeline functions.

``simulate``, ``convert``, ``process``, ``demo``, ``single``, ``batch``,
``health``, ``calibrators`` and ``config show``; `add` puts them on the group.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from pathlib import Path

import click

from dsa110_contimg.utils.command_line import (
    UTC_TIME,
    Command,
    Group,
    common_options,
    data_options,
    echo,
    load_config,
)

__all__ = ["add", "run_health", "run_single", "run_time_range"]


@click.command(cls=Command)
@common_options
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Write the raw files here (default: paths.incoming_dir).",
)
def simulate(config_path, env, sets, output_dir) -> None:
    """Write a simulated drift-scan observation (16-file subband groups + truth)."""
    from dsa110_contimg.pipeline.batch import simulate as run

    config = load_config(config_path, env, sets)
    result = run(config, Path(output_dir) if output_dir else None, progress=echo)
    click.echo(
        f"wrote {len(result.groups)} group(s) to {result.output_dir}; "
        f"truth: {result.sky_path}"
    )


@click.command(cls=Command)
@common_options
@click.option(
    "--incoming-dir",
    type=click.Path(file_okay=False, exists=True),
    default=None,
    help="Directory of raw *_sbNN.hdf5 files.",
)
def convert(config_path, env, sets, incoming_dir) -> None:
    """Convert every subband group in a directory to a Measurement Set."""
    from dsa110_contimg.pipeline.batch import convert_incoming, writer_of

    config = load_config(config_path, env, sets)
    with writer_of(config, "convert"):
        report = convert_incoming(
            config, incoming_dir and Path(incoming_dir), progress=echo
        )
    for path in report.ms_paths:
        click.echo(str(path))
    if report.failures:
        raise SystemExit(1)


@click.command(cls=Command)
@common_options
@data_options(incoming_must_exist=True)
def process(config_path, env, sets, incoming_dir, catalog, output_dir) -> None:
    """Convert all groups in a directory, process every block, write photometry."""
    from dsa110_contimg.pipeline.batch import run_batch

    config = load_config(config_path, env, sets, output_dir)
    result = run_batch(
        config, Path(incoming_dir), catalog_path=Path(catalog), progress=echo
    )
    _report_batch(result)
    if not result.success:
        raise SystemExit(1)


def _report_batch(result) -> None:
    for gid, err in result.conversion.failures.items():
        click.echo(f"group {gid} FAILED: {err}", err=True)
    for block in result.blocks:
        for err in block.errors:
            click.echo(f"block {block.block_id}: {err}", err=True)
        for image, reason in block.rejected_images:
            click.echo(
                f"block {block.block_id}: image {image} rejected (kept out of the "
                f"mosaic): {reason}",
                err=True,
            )
    n_img = sum(len(b.output_files.get("image", [])) for b in result.blocks)
    click.echo(
        f"Measurement Sets: {len(result.conversion.products)} "
        f"({len(result.conversion.failures)} failed)"
    )
    click.echo(f"images: {n_img}")
    n_mosaic = sum(len(b.output_files.get("mosaic", [])) for b in result.blocks)
    click.echo(f"mosaics: {n_mosaic}")
    if result.photometry_path is not None:
        click.echo(f"photometry table: {result.photometry_path}")
    for block in result.blocks:
        for page in block.output_files.get("summary", []):
            click.echo(f"block summary: {page}")


@click.command(cls=Command)
@common_options
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False),
    default="demo_output",
    show_default=True,
    help="Where the simulated data and products go.",
)
def demo(config_path, env, sets, output_dir) -> None:
    """Simulate an observation and run it end to end; compare with the truth."""
    from dsa110_contimg.pipeline.batch import run_batch
    from dsa110_contimg.pipeline.stages.photometry_stage import read_photometry_table
    from dsa110_contimg.simulation import compare_to_truth

    config = load_config(config_path, env, sets, output_dir)
    echo(
        f"environment {config.environment}: {config.simulation.n_groups} group(s), "
        f"{config.simulation.n_antennas} antennas, "
        f"{16 * config.simulation.n_chan_per_subband} channels"
    )
    sim = _simulate_once(config)
    result = run_batch(
        config,
        Path(config.paths.incoming_dir),
        catalog_path=sim.sky_path,
        progress=echo,
        command="demo",
    )
    _report_batch(result)
    click.echo(f"images directory: {config.paths.images_dir}")
    if result.photometry_path is None:
        raise SystemExit(1)
    comparison = compare_to_truth(
        read_photometry_table(result.photometry_path), sim.sky
    )
    _print_truth(comparison)
    if not result.success:
        raise SystemExit(1)


def _simulate_once(config):
    """Simulate unless the incoming directory already holds this exact observation."""
    from dsa110_contimg.data_ingestion.skymodel import load_catalog
    from dsa110_contimg.pipeline.batch import observation_spec, simulate
    from dsa110_contimg.simulation import SimulationResult

    incoming = Path(config.paths.incoming_dir)
    truth = incoming / "truth" / "observation.json"
    spec = observation_spec(config)
    if truth.exists():
        stored = json.loads(truth.read_text())
        wanted = asdict(spec)
        wanted["start_time"] = spec.start_time.isoformat()
        wanted = json.loads(json.dumps(wanted))  # tuples -> lists, as stored
        if stored.get("spec") == wanted:
            echo(f"reusing simulated observation in {incoming}")
            sky_path = incoming / "truth" / "sky.csv"
            return SimulationResult(
                incoming, (), load_catalog(sky_path), sky_path, None, truth
            )
    echo(f"simulating into {incoming}")
    return simulate(config, progress=echo)


def _print_truth(comparison) -> None:
    table = comparison.table
    click.echo("\nrecovered vs injected (best image of each source, SNR >= 10):")
    click.echo(
        f"{'source':10s} {'true_Jy':>8s} {'meas_Jy':>8s} {'err_%':>7s} "
        f"{'snr':>7s} {'pb':>5s} {'offset_beam':>11s}"
    )
    for row in table:
        click.echo(
            f"{row['source_name']:10s} {row['true_flux_jy']:8.4f} "
            f"{row['flux_jy']:8.4f} {100 * row['flux_error']:7.2f} "
            f"{row['snr']:7.1f} {row['pb']:5.2f} {row['offset_beams']:11.3f}"
        )
    click.echo(
        f"recovered {comparison.n_recovered}/{comparison.n_injected} injected "
        f"sources above 10 sigma"
    )
    click.echo(
        f"median |flux error|: {100 * comparison.median_abs_flux_error:.2f}%  "
        f"(goal <= 5%)"
    )
    click.echo(
        f"max peak offset: {comparison.max_offset_beams:.3f} synthesized beams  "
        f"(goal <= 0.2)"
    )


@click.command(cls=Command)
@common_options
@click.option("--block-end-time", required=True, help="ISO UTC end of the block.")
@click.option("--ms-files", multiple=True, required=True, help="MSs of the block.")
def single(config_path, env, sets, block_end_time, ms_files) -> None:
    """Process one block of Measurement Sets (the seed's --mode single)."""
    run_single(load_config(config_path, env, sets), block_end_time, list(ms_files))


def run_single(config, block_end_time: str, ms_files: list[str]) -> None:
    """Process one block and exit non-zero when it fails."""
    from dsa110_contimg.pipeline import PipelineOrchestrator
    from dsa110_contimg.pipeline.batch import writer_of

    with writer_of(config, "single"):
        orchestrator = PipelineOrchestrator(config)
        try:
            block = orchestrator.create_processing_block(block_end_time, ms_files)
            result = asyncio.run(orchestrator.process_block(block))
        finally:
            orchestrator.close()
    click.echo(
        json.dumps(
            {
                "block_id": result.block_id,
                "success": result.success,
                "processing_time": round(result.processing_time, 2),
                "output_files": result.output_files,
                "errors": result.errors,
            },
            indent=2,
        )
    )
    if not result.success:
        raise SystemExit(1)


@click.command(cls=Command)
@common_options
@click.option("--start-time", type=UTC_TIME, required=True, help="ISO UTC start.")
@click.option("--end-time", type=UTC_TIME, required=True, help="ISO UTC end.")
def batch(config_path, env, sets, start_time, end_time) -> None:
    """Process every block of existing MSs in a time range (the seed's --mode batch)."""
    run_time_range(load_config(config_path, env, sets), start_time, end_time)


def run_time_range(config, start_time: str, end_time: str) -> None:
    """Process the blocks of ``paths.ms_stage1_dir`` between two times."""
    from dsa110_contimg.pipeline.batch import writer_of

    with writer_of(config, "batch"):
        _run_time_range(config, start_time, end_time)


def _run_time_range(config, start_time: str, end_time: str) -> None:
    from dsa110_contimg.data_ingestion.skymodel import load_catalog
    from dsa110_contimg.pipeline import PipelineOrchestrator
    from dsa110_contimg.pipeline.batch import merge_photometry, process_blocks

    orch = PipelineOrchestrator(config)
    blocks = orch.find_ms_blocks_for_batch(start_time, end_time)
    orch.close()
    ms = sorted({Path(p) for files in blocks.values() for p in files})
    echo(f"{len(blocks)} block(s), {len(ms)} MS(s) between {start_time} and {end_time}")
    catalog = (
        load_catalog(config.paths.catalog_path) if config.paths.catalog_path else None
    )
    results = process_blocks(config, ms, catalog=catalog, progress=echo, blocks=blocks)
    if catalog is not None:
        path = merge_photometry(
            results, Path(config.paths.products_dir) / "photometry.csv"
        )
        click.echo(f"photometry table: {path}")
    if not results or not all(r.success for r in results):
        raise SystemExit(1)


@click.command(cls=Command)
@common_options
def health(config_path, env, sets) -> None:
    """Run every health check (reads only); exit 1 when one is unhealthy."""
    run_health(load_config(config_path, env, sets, log_to_file=False))


def run_health(config) -> None:
    """Print each health check and exit non-zero when any is unhealthy."""
    from dsa110_contimg.services.health import HealthChecker

    checks = HealthChecker().check_all_health(config)
    for check in checks:
        click.echo(f"{check.name:16s} {check.status}")
        if check.error_message:
            click.echo(f"    {check.error_message}")
    if any(c.status == "unhealthy" for c in checks):
        raise SystemExit(1)


@click.command(cls=Command)
@common_options
@click.option(
    "--dec",
    "dec_deg",
    type=click.FloatRange(-90.0, 90.0),
    required=True,
    help="Strip declination (deg, -90 to 90).",
)
@click.option("--start-time", type=UTC_TIME, required=True, help="ISO UTC start.")
@click.option("--end-time", type=UTC_TIME, required=True, help="ISO UTC end.")
def calibrators(config_path, env, sets, dec_deg, start_time, end_time) -> None:
    """List calibrator transits in the strip's beam, best (beam-weighted) first."""
    from astropy.time import Time

    from dsa110_contimg.calibration import find_transits, load_calibrators

    cfg = load_config(config_path, env, sets, log_to_file=False).calibration
    transits = find_transits(
        load_calibrators(cfg.calibrator_catalog),
        dec_deg,
        Time(start_time, scale="utc"),
        Time(end_time, scale="utc"),
        min_flux_jy=cfg.min_calibrator_flux_jy,
        max_offset_deg=cfg.max_calibrator_offset_deg,
    )
    click.echo(
        f"{'calibrator':10s} {'transit (UTC)':23s} {'offset_deg':>10s} "
        f"{'S_1.4GHz_Jy':>11s} {'beam_weighted_Jy':>16s}"
    )
    for t in transits:
        click.echo(
            f"{t.calibrator.name:10s} {t.transit_time.isot:23s} "
            f"{t.offset_deg:10.2f} {float(t.calibrator.flux_at(1.4e9)):11.2f} "
            f"{t.beam_weighted_flux_jy:16.2f}"
        )
    if not transits:
        click.echo(
            "no calibrator transits in the beam of this strip in that time range"
        )


@click.group("config", cls=Group)
def config_group() -> None:
    """Inspect configuration."""


@config_group.command("show")
@common_options
def config_show(config_path, env, sets) -> None:
    """Print the resolved configuration as YAML."""
    import yaml

    config = load_config(config_path, env, sets, log_to_file=False)
    click.echo(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))


def add(group: click.Group) -> None:
    """Add the pipeline commands (and the ``config`` group) to ``group``."""
    for command in (
        simulate,
        convert,
        process,
        demo,
        single,
        batch,
        health,
        calibrators,
        config_group,
    ):
        group.add_command(command)
