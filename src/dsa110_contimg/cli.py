"""The ``dsa110-contimg`` command line: thin wrappers around pipeline functions."""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import asdict
from pathlib import Path

import click

from dsa110_contimg.exceptions import PipelineError

__all__ = ["main", "cli"]

_PATH_KEYS = (
    "data_dir",
    "incoming_dir",
    "log_dir",
    "ms_stage1_dir",
    "cal_tables_dir",
    "images_dir",
    "mosaics_dir",
    "products_dir",
    "state_db",
)
_PATH_LAYOUT = {
    "data_dir": ".",
    "incoming_dir": "incoming",
    "log_dir": "logs",
    "ms_stage1_dir": "ms",
    "cal_tables_dir": "cal_tables",
    "images_dir": "images",
    "mosaics_dir": "mosaics",
    "products_dir": "products",
    "state_db": "pipeline.sqlite3",
}
_OTHER_LAYOUT = {"variability.store_dir": "lightcurves"}


LOG_FILE_NAME = "dsa110-contimg.log"
"""The log file under ``paths.log_dir`` when ``logging.file`` is not set."""
CASA_LOG_NAME = "casa.log"
"""CASA's own log, under ``paths.log_dir``."""


def _verbosity() -> int:
    """Return -1 for ``-q``, 1 for ``-v``, 0 otherwise (current command)."""
    ctx = click.get_current_context(silent=True)
    return int(ctx.meta.get("dsa110_verbosity", 0)) if ctx is not None else 0


def _set_verbosity(value: int):
    def callback(ctx: click.Context, _param, flag: bool) -> None:
        if flag:
            ctx.meta["dsa110_verbosity"] = value

    return callback


def _echo(message: str) -> None:
    if _verbosity() >= 0:
        click.echo(message, err=True)


class _UtcTime(click.ParamType):
    """An ISO-8601 UTC time, checked when the command line is parsed."""

    name = "ISO_UTC_TIME"

    def convert(self, value, param, ctx):
        from astropy.time import Time

        if not isinstance(value, str):
            return value
        try:
            Time(value, format="isot", scale="utc")
        except ValueError:
            self.fail(
                f"{value!r} is not an ISO UTC time; use e.g. 2023-06-01T00:00:00",
                param,
                ctx,
            )
        return value


UTC_TIME = _UtcTime()


def _load(
    config_path: str | None,
    env: str | None,
    sets: tuple[str, ...],
    output_dir: str | None = None,
    extra: dict | None = None,
    *,
    log_to_file: bool = True,
):
    """Resolve the configuration and set up logging for a command.

    Commands that only read (``health``, ``status``, ``config show``) pass
    ``log_to_file=False``: they write no log file and create no directory.
    """
    from dsa110_contimg.utils.config_loader import load_pipeline_config
    from dsa110_contimg.utils.logging import configure_logging

    overrides: dict[str, object] = {}
    base = None
    if output_dir is not None:
        # Every path the pipeline writes goes under the output directory.
        base = Path(output_dir).resolve()
        overrides.update({f"paths.{k}": str(base / v) for k, v in _PATH_LAYOUT.items()})
        overrides.update({f"{k}": str(base / v) for k, v in _OTHER_LAYOUT.items()})
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep:
            msg = f"--set expects section.key=value, got {item!r}"
            raise click.UsageError(msg)
        import yaml

        overrides[key.strip()] = yaml.safe_load(value)
    overrides.update(extra or {})
    config = load_pipeline_config(config_path, environment=env, overrides=overrides)
    log_file = config.logging.file
    if base is not None and log_file is not None and not log_file.is_absolute():
        config = config.model_copy(
            update={
                "logging": config.logging.model_copy(update={"file": base / log_file})
            }
        )
    level = config.logging.level
    console = {-1: "WARNING", 0: level, 1: "DEBUG"}[_verbosity()]
    log_dir = Path(config.paths.log_dir)
    log_file = config.logging.file or log_dir / LOG_FILE_NAME
    configure_logging(
        "DEBUG" if _verbosity() > 0 else level,
        fmt=config.logging.format,
        log_file=log_file if log_to_file else None,
        console_level=console,
        casa_log=log_dir / CASA_LOG_NAME if log_to_file else None,
    )
    return config


def _common(func):
    func = click.option(
        "-v",
        "--verbose",
        is_flag=True,
        expose_value=False,
        callback=_set_verbosity(1),
        help="Show DEBUG records on the console (and in the log file).",
    )(func)
    func = click.option(
        "-q",
        "--quiet",
        is_flag=True,
        expose_value=False,
        callback=_set_verbosity(-1),
        help="Console: warnings, errors and the final summary only.",
    )(func)
    func = click.option(
        "--set",
        "sets",
        multiple=True,
        metavar="SECTION.KEY=VALUE",
        help="Override one config value (repeatable).",
    )(func)
    func = click.option(
        "--env",
        default=None,
        help="Environment overlay: development, production or testing "
        "(default: DSA110_ENV or development).",
    )(func)
    func = click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False),
        default=None,
        help="YAML config file.",
    )(func)
    return func


class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except PipelineError as err:
            msg = f"{type(err).__name__}: {err}"
            raise click.ClickException(msg) from err


@click.group(cls=_Group)
@click.version_option(package_name="dsa110-contimg")
def cli() -> None:
    """DSA-110 continuum imaging pipeline."""


@cli.command()
@_common
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Write the raw files here (default: paths.incoming_dir).",
)
def simulate(config_path, env, sets, output_dir) -> None:
    """Write a simulated drift-scan observation (16-file subband groups + truth)."""
    from dsa110_contimg.pipeline.batch import simulate as run

    config = _load(config_path, env, sets)
    result = run(config, Path(output_dir) if output_dir else None, progress=_echo)
    click.echo(
        f"wrote {len(result.groups)} group(s) to {result.output_dir}; "
        f"truth: {result.sky_path}"
    )


@cli.command()
@_common
@click.option(
    "--incoming-dir",
    type=click.Path(file_okay=False, exists=True),
    default=None,
    help="Directory of raw *_sbNN.hdf5 files.",
)
def convert(config_path, env, sets, incoming_dir) -> None:
    """Convert every subband group in a directory to a Measurement Set."""
    from dsa110_contimg.pipeline.batch import convert_incoming, writer_of

    config = _load(config_path, env, sets)
    with writer_of(config, "convert"):
        report = convert_incoming(
            config, incoming_dir and Path(incoming_dir), progress=_echo
        )
    for path in report.ms_paths:
        click.echo(str(path))
    if report.failures:
        raise SystemExit(1)


def _data_options(*, incoming_must_exist: bool):
    """Add ``--incoming-dir``, ``--catalog`` and ``--output-dir`` (process, stream)."""

    def decorate(func):
        func = click.option(
            "--output-dir",
            type=click.Path(file_okay=False),
            default=None,
            help="Put every product (and the state database) under this directory.",
        )(func)
        func = click.option(
            "--catalog",
            type=click.Path(dir_okay=False, exists=True),
            required=True,
            help="Catalogue CSV: name, ra_deg, dec_deg, flux_jy[, spectral_index, "
            "ref_freq_hz].",
        )(func)
        return click.option(
            "--incoming-dir",
            type=click.Path(file_okay=False, exists=incoming_must_exist),
            required=True,
            help="Directory of raw *_sbNN.hdf5 files"
            + ("." if incoming_must_exist else " (created if missing)."),
        )(func)

    return decorate


@cli.command()
@_common
@_data_options(incoming_must_exist=True)
def process(config_path, env, sets, incoming_dir, catalog, output_dir) -> None:
    """Convert all groups in a directory, process every block, write photometry."""
    from dsa110_contimg.pipeline.batch import run_batch

    config = _load(config_path, env, sets, output_dir)
    result = run_batch(
        config, Path(incoming_dir), catalog_path=Path(catalog), progress=_echo
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


@cli.command()
@_common
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

    config = _load(config_path, env, sets, output_dir)
    _echo(
        f"environment {config.environment}: {config.simulation.n_groups} group(s), "
        f"{config.simulation.n_antennas} antennas, "
        f"{16 * config.simulation.n_chan_per_subband} channels"
    )
    sim = _simulate_once(config)
    result = run_batch(
        config,
        Path(config.paths.incoming_dir),
        catalog_path=sim.sky_path,
        progress=_echo,
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
            _echo(f"reusing simulated observation in {incoming}")
            sky_path = incoming / "truth" / "sky.csv"
            return SimulationResult(
                incoming, (), load_catalog(sky_path), sky_path, None, truth
            )
    _echo(f"simulating into {incoming}")
    return simulate(config, progress=_echo)


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


@cli.command()
@_common
@click.option("--block-end-time", required=True, help="ISO UTC end of the block.")
@click.option("--ms-files", multiple=True, required=True, help="MSs of the block.")
def single(config_path, env, sets, block_end_time, ms_files) -> None:
    """Process one block of Measurement Sets (the seed's --mode single)."""
    run_single(_load(config_path, env, sets), block_end_time, list(ms_files))


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


@cli.command()
@_common
@click.option("--start-time", type=UTC_TIME, required=True, help="ISO UTC start.")
@click.option("--end-time", type=UTC_TIME, required=True, help="ISO UTC end.")
def batch(config_path, env, sets, start_time, end_time) -> None:
    """Process every block of existing MSs in a time range (the seed's --mode batch)."""
    run_time_range(_load(config_path, env, sets), start_time, end_time)


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
    _echo(
        f"{len(blocks)} block(s), {len(ms)} MS(s) between {start_time} and {end_time}"
    )
    catalog = (
        load_catalog(config.paths.catalog_path) if config.paths.catalog_path else None
    )
    results = process_blocks(config, ms, catalog=catalog, progress=_echo, blocks=blocks)
    if catalog is not None:
        path = merge_photometry(
            results, Path(config.paths.products_dir) / "photometry.csv"
        )
        click.echo(f"photometry table: {path}")
    if not results or not all(r.success for r in results):
        raise SystemExit(1)


@cli.command()
@_common
def health(config_path, env, sets) -> None:
    """Run every health check (reads only); exit 1 when one is unhealthy."""
    run_health(_load(config_path, env, sets, log_to_file=False))


def run_health(config) -> None:
    """Print each health check and exit non-zero when any is unhealthy."""
    from dsa110_contimg.utils.monitoring import HealthChecker

    checks = HealthChecker().check_all_health(config)
    for check in checks:
        click.echo(f"{check.name:16s} {check.status}")
        if check.error_message:
            click.echo(f"    {check.error_message}")
    if any(c.status == "unhealthy" for c in checks):
        raise SystemExit(1)


@cli.command()
@_common
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

    cfg = _load(config_path, env, sets, log_to_file=False).calibration
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


@cli.group("config")
def config_group() -> None:
    """Inspect configuration."""


@config_group.command("show")
@_common
def config_show(config_path, env, sets) -> None:
    """Print the resolved configuration as YAML."""
    import yaml

    config = _load(config_path, env, sets, log_to_file=False)
    click.echo(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``dsa110-contimg`` console script."""
    from astropy.utils import iers

    from dsa110_contimg._casa import configure_casa_environment

    iers.conf.auto_download = False  # the pipeline runs offline
    configure_casa_environment()  # this process and its CASA children
    cli.main(args=argv, prog_name="dsa110-contimg")


def _register_subcommands() -> None:
    """Attach the commands defined in the topic CLI modules."""
    from dsa110_contimg.cli_variability import (
        ingest_command,
        lightcurve_command,
        variables_command,
    )

    cli.add_command(variables_command)  # "variables"
    cli.add_command(lightcurve_command)  # "lightcurve"
    cli.add_command(ingest_command)  # "ingest-photometry"


_register_subcommands()
import dsa110_contimg.cli_services  # noqa: E402, F401  (adds stream, status, requeue)

if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
