"""Commands of the streaming services: ``stream``, ``status``, ``requeue``,
``cancel`` and ``db``.

Importing this module adds the five commands to the ``dsa110-contimg`` group
(`dsa110_contimg.cli.cli`), whichever of the two modules is imported first;
``cli.py`` imports it at its end. ``python -m dsa110_contimg.services`` runs
`stream_command` alone.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import click

from dsa110_contimg.cli import _common, _data_options, _load, cli
from dsa110_contimg.exceptions import PipelineError

__all__ = [
    "stream_command",
    "status_command",
    "requeue_command",
    "cancel_command",
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

    with _translate_errors():
        config = _load(config_path, env, sets, output_dir)
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


@click.command("status")
@_common
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--wait",
    is_flag=True,
    help="Wait until idle (nothing pending, running or waiting for its block "
    "window), then print; exit 2 if --wait-timeout passes first.",
)
@click.option(
    "--wait-timeout",
    type=click.FloatRange(min=0),
    default=3600.0,
    show_default=True,
    help="Longest wait of --wait (seconds).",
)
def status_command(config_path, env, sets, as_json, wait, wait_timeout) -> None:
    """Show the job queue: counts, backlog, block windows, intake, rejected files."""
    from dsa110_contimg.services._status import BlockTiming, read_queue_status

    with _translate_errors():
        config = _load(config_path, env, sets, log_to_file=False)
        timing = BlockTiming.from_config(config)
        deadline = time.monotonic() + wait_timeout
        while True:
            report = read_queue_status(
                Path(config.paths.state_db), now=datetime.now(UTC), timing=timing
            )
            if not wait or report["idle"] or time.monotonic() >= deadline:
                break
            time.sleep(1.0)
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
    else:
        _print_status(report)
    if wait and not report["idle"]:
        raise SystemExit(2)


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
    if intake.get("stuck"):
        click.echo(f"intake: STUCK: {intake.get('reason')}")
    elif intake.get("paused"):
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
    for window in report.get("block_windows", []):
        runs_at = window["runs_at"] or "after its groups convert"
        click.echo(
            f"block window {window['block_id']} ({window['n_converted']}/"
            f"{window['n_groups']} groups converted): runs at {runs_at}; "
            f"waits for {window['waits_for']}"
        )
    rejected = report.get("rejected_files", {})
    if rejected.get("counts"):
        counts = ", ".join(f"{k} {n}" for k, n in rejected["counts"].items())
        click.echo(f"raw files set aside: {counts}")
        for row in rejected["files"]:
            click.echo(f"set aside ({row['kind']}): {row['reason']}")
    click.echo("idle: yes" if report.get("idle") else "idle: no (work pending)")
    for event in report["last_errors"][-5:]:
        click.echo(
            f"error {event['created_at'][:19]} #{event['job_id']} {event['kind']} "
            f"{event['key']}: {event['reason'][:200]}"
        )
    if report.get("note"):
        click.echo(str(report["note"]))


@click.command("requeue")
@_common
@click.option(
    "--reconvert",
    is_flag=True,
    help="For convert_group jobs: collect the group's files again (late "
    "subbands included), convert over the existing MS, remake its images and "
    "redo the blocks that hold it.",
)
@click.argument("job_ids", nargs=-1, type=int, required=True)
def requeue_command(config_path, env, sets, reconvert, job_ids) -> None:
    """Send failed, quarantined or done jobs back to the queue by id.

    Pending and running jobs are refused (a running job would run twice):
    ``cancel`` them first.
    """
    from dsa110_contimg.state import open_db
    from dsa110_contimg.state.jobs import CONVERT_GROUP, get_job, requeue_job
    from dsa110_contimg.state.rejected import (
        record_rejected_files,
        resolve_rejected_files,
    )

    with _translate_errors():
        config = _load(config_path, env, sets)
        with closing(open_db(Path(config.paths.state_db))) as conn:
            for job_id in job_ids:
                payload = None
                note = ""
                if reconvert:
                    job = get_job(conn, job_id)
                    if job.kind != CONVERT_GROUP:
                        msg = (
                            f"job {job.id} is a {job.kind} job; --reconvert takes "
                            "convert_group jobs"
                        )
                        raise click.UsageError(msg)
                    payload, rejected = _reconvert_payload(config, job.payload)
                    record_rejected_files(conn, rejected, now=datetime.now(UTC))
                    files = payload["files"]
                    resolve_rejected_files(
                        conn, list(files.values()), now=datetime.now(UTC)
                    )
                    note = f" for reconversion with {len(files)} subband(s)"
                job = requeue_job(
                    conn,
                    job_id,
                    now=datetime.now(UTC),
                    reason="requeued by an operator (dsa110-contimg requeue"
                    + (" --reconvert)" if reconvert else ")"),
                    payload=payload,
                )
                click.echo(f"job {job.id} ({job.kind} {job.key}) requeued{note}")


def _reconvert_payload(config, payload: dict) -> tuple[dict, list]:
    from dsa110_contimg.services.ms_processor._work import reconvert_payload

    files = payload.get("files") or {}
    first = next(iter(files.values()), None) if isinstance(files, dict) else None
    incoming = Path(first).parent if first else Path(config.paths.incoming_dir)
    return reconvert_payload(
        payload,
        incoming_dir=incoming,
        tolerance_s=config.conversion.group_tolerance_s,
        n_expected=config.conversion.expected_n_subbands,
    )


@click.command("cancel")
@_common
@click.argument("job_ids", nargs=-1, type=int, required=True)
def cancel_command(config_path, env, sets, job_ids) -> None:
    """Stop pending or running jobs by id (quarantined; requeue them later).

    A running job's worker sees its lease revoked at its next heartbeat,
    stops the job and discards its output.
    """
    from dsa110_contimg.state import open_db
    from dsa110_contimg.state.jobs import cancel_job

    with _translate_errors():
        config = _load(config_path, env, sets)
        with closing(open_db(Path(config.paths.state_db))) as conn:
            for job_id in job_ids:
                job = cancel_job(conn, job_id, now=datetime.now(UTC))
                click.echo(f"job {job.id} ({job.kind} {job.key}) cancelled")


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


@db_group.command("maintain")
@_common
@click.option(
    "--dry-run",
    is_flag=True,
    help="Delete nothing; print what the retention section would delete.",
)
@click.option(
    "--vacuum/--no-vacuum",
    default=None,
    help="VACUUM the database (default: when retention.vacuum_interval_h has "
    "passed since the last one).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def db_maintain_command(config_path, env, sets, dry_run, vacuum, as_json) -> None:
    """Apply retention once and checkpoint/optimise the state database.

    Deletes only what the ``retention`` section allows (done jobs, old
    metrics, corrupt/ and superseded/ folders; raw files and MSs only when
    enabled, processed and safe to delete), and prints every path.
    """
    from dsa110_contimg.services._maintenance import run_maintenance

    with _translate_errors():
        config = _load(config_path, env, sets, log_to_file=False)
        report = run_maintenance(config, dry_run=dry_run, vacuum=vacuum)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    verb = "would delete" if dry_run else "deleted"
    for path in report.deleted:
        click.echo(f"{verb} {path}")
    for group_id, reasons in report.kept.items():
        for why in reasons:
            click.echo(f"kept group {group_id}: {why}")
    counts = ", ".join(f"{k} {n}" for k, n in report.counts.items())
    click.echo(f"{'dry run: ' if dry_run else ''}{verb}: {counts}")
    if not dry_run:
        click.echo(
            f"checkpoint {report.checkpoint}; "
            + ("vacuumed" if report.vacuumed else "not vacuumed")
        )


def main_stream(argv: list[str] | None = None) -> None:
    """Run `stream_command` as a program (``python -m dsa110_contimg.services``)."""
    from astropy.utils import iers

    from dsa110_contimg._casa import configure_casa_environment

    iers.conf.auto_download = False  # the pipeline runs offline
    configure_casa_environment()  # this process and its CASA children
    stream_command.main(args=argv, prog_name="python -m dsa110_contimg.services")


for _command in (
    stream_command,
    status_command,
    requeue_command,
    cancel_command,
    db_group,
):
    cli.add_command(_command)
