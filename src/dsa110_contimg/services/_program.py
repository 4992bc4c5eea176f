"""The stream program: the ``stream`` command and ``python -m dsa110_contimg.services``.

`stream_command` is defined here, in the services layer, so that the
``python -m`` entry (`main`) needs nothing from `dsa110_contimg.cli`; the CLI
adds the same command object to its group (``dsa110-contimg stream``).
"""

from __future__ import annotations

from pathlib import Path

import click

from dsa110_contimg.utils.command_line import (
    Command,
    common_options,
    data_options,
    load_config,
)

__all__ = ["main", "stream_command"]


@click.command("stream", cls=Command)
@common_options
@data_options(incoming_must_exist=False)
@click.option(
    "--service",
    "services",
    multiple=True,
    type=click.Choice(["hdf5_watcher", "ms_processor", "variability_analyzer"]),
    help="Run only this service (repeatable; default all three); the others "
    "may run in other processes or hosts on the same state database.",
)
def stream_command(
    config_path, env, sets, incoming_dir, catalog, output_dir, services
) -> None:
    """Process groups as they arrive, until SIGTERM or Ctrl-C.

    Runs the hdf5_watcher, ms_processor and variability_analyzer (or the
    ``--service`` ones) on a durable job queue in the state database; a
    restart resumes where it stopped.
    """
    from dsa110_contimg.services import ALL_SERVICES, run_services

    config = load_config(config_path, env, sets, output_dir)
    incoming = Path(incoming_dir)
    incoming.mkdir(parents=True, exist_ok=True)
    summary = run_services(
        config,
        services or ALL_SERVICES,
        incoming_dir=incoming,
        catalog_path=Path(catalog),
    )
    released = (
        f", {len(summary.released_job_ids)} released for the next run"
        if summary.released_job_ids
        else ""
    )
    click.echo(
        f"stream stopped after {summary.duration_s:.1f} s: {summary.n_done} job(s) "
        f"done, {summary.n_failed} failed or quarantined{released}",
        err=True,
    )


def main(argv: list[str] | None = None) -> None:
    """Run `stream_command` as a program (``python -m dsa110_contimg.services``)."""
    from astropy.utils import iers

    from dsa110_contimg._casa import configure_casa_environment

    iers.conf.auto_download = False  # the pipeline runs offline
    configure_casa_environment()  # this process and its CASA children
    stream_command.main(args=argv, prog_name="python -m dsa110_contimg.services")
