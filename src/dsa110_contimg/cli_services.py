"""Commands of the streaming services: ``stream``, ``status``, ``requeue``, ``db``.

Importing this module adds the four commands to the ``dsa110-contimg`` group
(`dsa110_contimg.cli.cli`), whichever of the two modules is imported first;
``cli.py`` imports it at its end. ``python -m dsa110_contimg.services`` runs
`stream_command` alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import click

from dsa110_contimg.cli import _common, _data_options, _load, cli
from dsa110_contimg.pipeline.exceptions import PipelineError

__all__ = [
    "stream_command",
    "status_command",
    "requeue_command",
    "db_group",
    "main_stream",
]


@contextmanager
def _translate_errors() -> Iterator[None]:
    try:
        yield
    except PipelineError as err:
        msg = f"{type(err).__name__}: {err}"
        raise click.ClickException(msg) from err


@click.command("stream")
@_common
@_data_options(incoming_must_exist=False)
def stream_command(config_path, env, sets, incoming_dir, catalog, output_dir) -> None:
    """Process groups as they arrive, until SIGTERM or Ctrl-C.

    Runs the hdf5_watcher, ms_processor and variability_analyzer on a durable
    job queue in the state database; a restart resumes where it stopped.
    """
    from dsa110_contimg.services import run_stream

    with _translate_errors():
        config = _load(config_path, env, sets, output_dir)
        incoming = Path(incoming_dir)
        incoming.mkdir(parents=True, exist_ok=True)
        summary = run_stream(config, incoming_dir=incoming, catalog_path=Path(catalog))
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


@click.command("status")
@_common
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def status_command(config_path, env, sets, as_json) -> None:
    """Show the job queue: counts, backlog, intake, quarantine, last errors."""
    from dsa110_contimg.services._status import read_queue_status

    with _translate_errors():
        config = _load(config_path, env, sets, log_to_file=False)
        report = read_queue_status(Path(config.paths.state_db), now=datetime.now(UTC))
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
        return
    _print_status(report)


def _print_status(report: dict) -> None:
    click.echo(f"state database: {report['state_db']}")
    counts = "  ".join(
        f"{s} {report[s]}" for s in ("pending", "running", "done", "failed")
    )
    click.echo(f"jobs: {counts}  quarantined {report['quarantined']}")
    backlog = report["backlog"]
    click.echo(
        f"backlog: {backlog['n_jobs']} job(s), "
        f"{backlog.get('n_runnable_now', 0)} runnable now, oldest pending data "
        f"{backlog.get('oldest_pending_data_time_iso') or '-'}"
    )
    intake = report["intake"]
    if intake.get("paused"):
        click.echo(f"intake: PAUSED: {intake.get('reason')}")
    else:
        click.echo("intake: open")
    for job in report["running_jobs"]:
        click.echo(
            f"running  #{job['id']} {job['kind']} {job['key']} "
            f"(attempt {job['attempts']}, {job['lease_owner']})"
        )
    for job in report["quarantine"]:
        click.echo(
            f"quarantined  #{job['id']} {job['kind']} {job['key']}: "
            f"{job['quarantine_reason']}"
        )
    for job in report["failed_jobs"]:
        click.echo(
            f"failed  #{job['id']} {job['kind']} {job['key']}: "
            f"{job['error_class']}: {job['error_message']}"
        )
    for event in report["last_errors"][-5:]:
        click.echo(
            f"error {event['created_at'][:19]} #{event['job_id']} {event['kind']} "
            f"{event['key']}: {event['reason'][:200]}"
        )
    if report.get("note"):
        click.echo(str(report["note"]))


@click.command("requeue")
@_common
@click.argument("job_ids", nargs=-1, type=int, required=True)
def requeue_command(config_path, env, sets, job_ids) -> None:
    """Send failed, quarantined or done jobs back to the queue by id."""
    from dsa110_contimg.state import open_db
    from dsa110_contimg.state.jobs import requeue_job

    with _translate_errors():
        config = _load(config_path, env, sets)
        with closing(open_db(Path(config.paths.state_db))) as conn:
            for job_id in job_ids:
                job = requeue_job(
                    conn,
                    job_id,
                    now=datetime.now(UTC),
                    reason="requeued by an operator (dsa110-contimg requeue)",
                )
                click.echo(f"job {job.id} ({job.kind} {job.key}) requeued")


@click.group("db")
def db_group() -> None:
    """Manage the state database."""


@db_group.command("migrate")
@_common
def db_migrate_command(config_path, env, sets) -> None:
    """Create the state database, or bring its schema up to date."""
    from dsa110_contimg.state import open_db, schema_version

    with _translate_errors():
        config = _load(config_path, env, sets, log_to_file=False)
        path = Path(config.paths.state_db)
        with closing(open_db(path)) as conn:
            version = schema_version(conn)
    click.echo(f"state database {path}: schema version {version}")


def main_stream(argv: list[str] | None = None) -> None:
    """Run `stream_command` as a program (``python -m dsa110_contimg.services``)."""
    from astropy.utils import iers

    iers.conf.auto_download = False  # the pipeline runs offline
    stream_command.main(args=argv, prog_name="python -m dsa110_contimg.services")


for _command in (stream_command, status_command, requeue_command, db_group):
    cli.add_command(_command)
