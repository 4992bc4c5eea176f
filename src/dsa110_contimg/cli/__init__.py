"""The ``dsa110-contimg`` command line.

The group is built here, explicitly, from the four command modules:
`pipeline_commands` (simulate, convert, process, demo, single, batch, health,
calibrators, config), `service_commands` (stream, status, requeue, cancel,
dead-letters, db), `variability_commands` (variables, lightcurve, ingest-photometry) and
`web_commands` (serve, intake pause|resume),
`alert_commands` (alerts list, silence, unsilence, evaluate). Their
shared options, configuration loading and error translation are in
`dsa110_contimg.utils.command_line`, which ``python -m dsa110_contimg.services``
uses too; nothing outside this package imports it.
"""

from __future__ import annotations

import click

from dsa110_contimg.cli import (
    alert_commands,
    pipeline_commands,
    service_commands,
    variability_commands,
    web_commands,
)
from dsa110_contimg.utils.command_line import (
    CASA_LOG_NAME,
    LOG_FILE_NAME,
    Group,
)

__all__ = ["CASA_LOG_NAME", "LOG_FILE_NAME", "build_cli", "cli", "main"]


def build_cli() -> click.Group:
    """Return the ``dsa110-contimg`` group with every command added."""

    @click.group(cls=Group)
    @click.version_option(package_name="dsa110-contimg")
    def cli() -> None:
        """DSA-110 continuum imaging pipeline."""

    pipeline_commands.add(cli)
    service_commands.add(cli)
    variability_commands.add(cli)
    web_commands.add(cli)
    alert_commands.add(cli)
    return cli


cli = build_cli()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``dsa110-contimg`` console script."""
    from astropy.utils import iers

    from dsa110_contimg._casa import configure_casa_environment

    iers.conf.auto_download = False  # the pipeline runs offline
    configure_casa_environment()  # this process and its CASA children
    cli.main(args=argv, prog_name="dsa110-contimg")
