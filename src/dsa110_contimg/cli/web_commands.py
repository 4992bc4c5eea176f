"""``dsa110-contimg serve`` (the HTTP API) and ``intake pause|resume``.

``serve`` runs `dsa110_contimg.web.create_app` under uvicorn (the ``api``
extra); ``intake`` sets the operator's hold (`state.intake`) that the API's
``/api/actions/intake/*`` sets too.
"""

from __future__ import annotations

from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import click

from dsa110_contimg.utils.command_line import (
    Command,
    Group,
    common_options,
    load_config,
)

__all__ = ["add", "serve_command", "intake_group", "UVICORN_SETTINGS"]

UVICORN_SETTINGS = {
    "access_log": False,
    # uvloop and httptools (the api extra) where installed, else asyncio, h11
    "loop": "auto",
    "http": "auto",
    # a dashboard polls every 5 s: keep its connections open between polls
    # (uvicorn's default, 5 s, closes them just before each reuse)
    "timeout_keep_alive": 30,
    "backlog": 2048,
    "lifespan": "on",  # starts the response cache's refresher
}
"""How ``serve`` runs uvicorn (besides host, port and log level)."""


@click.command("serve", cls=Command)
@common_options
@click.option(
    "--host", default=None, help="Bind address (default web.host, 127.0.0.1)."
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Port (default web.port).",
)
def serve_command(config_path, env, sets, host, port) -> None:
    """Serve the HTTP API (JSON under /api/, Prometheus at /metrics).

    Read-only views need no login; operator actions need the token in the
    environment variable that web.operator_token_env names.
    """
    from dsa110_contimg._optional import require

    uvicorn = require("uvicorn", extra="api")
    from dsa110_contimg.web import create_app
    from dsa110_contimg.web.cache import TTL_S

    config = load_config(config_path, env, sets, log_to_file=False)
    host = host or config.web.host
    port = port or config.web.port
    app = create_app(config, cache_s=TTL_S)
    click.echo(
        f"serving the API on http://{host}:{port}/api/ (schema /api/openapi.json, "
        f"Prometheus /metrics); state database {config.paths.state_db}"
    )
    uvicorn.run(app, host=host, port=port, log_level="info", **UVICORN_SETTINGS)


@click.group("intake", cls=Group)
def intake_group() -> None:
    """Pause or resume intake (the operator's hold; the disk guard still applies)."""


def _hold(config_path, env, sets, paused: bool, reason: str) -> None:
    from dsa110_contimg.state import open_db
    from dsa110_contimg.state.intake import set_intake_hold

    config = load_config(config_path, env, sets, log_to_file=False)
    with closing(open_db(Path(config.paths.state_db))) as conn:
        set_intake_hold(
            conn, paused=paused, reason=reason, now=datetime.now(UTC), by="cli"
        )
    click.echo(
        "intake held (no new groups, no conversions) until "
        "'dsa110-contimg intake resume'"
        if paused
        else "intake hold released"
    )


@intake_group.command("pause", cls=Command)
@common_options
@click.option(
    "--reason", default="paused by an operator", help="Why (shown by status)."
)
def intake_pause_command(config_path, env, sets, reason) -> None:
    """Hold intake: the stream enqueues no new group and starts no conversion."""
    _hold(config_path, env, sets, True, reason)


@intake_group.command("resume", cls=Command)
@common_options
@click.option("--reason", default="resumed by an operator", help="Why.")
def intake_resume_command(config_path, env, sets, reason) -> None:
    """Release the operator's hold on intake."""
    _hold(config_path, env, sets, False, reason)


def add(group: click.Group) -> None:
    """Add ``serve`` and ``intake`` to ``group``."""
    group.add_command(serve_command)
    group.add_command(intake_group)
