"""Commands of the streaming services: ``stream``, ``status``, ``requeue``,
``cancel``, ``dead-letters`` and ``db``.

`add` puts them on the ``dsa110-contimg`` group. ``stream`` is
`dsa110_contimg.services._program.stream_command`, the command that
``python -m dsa110_contimg.services`` runs alone.
"""

from __future__ import annotations

import json
import time
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import click

from dsa110_contimg.services._program import stream_command
from dsa110_contimg.utils.command_line import (
    Command,
    Group,
    common_options,
    load_config,
)

__all__ = [
    "add",
    "stream_command",
    "status_command",
    "requeue_command",
    "cancel_command",
    "dead_letters_command",
    "db_group",
]


@click.command("status", cls=Command)
@common_options
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

    config = load_config(config_path, env, sets, log_to_file=False)
    timing = BlockTiming.from_config(config)
    deadline = time.monotonic() + wait_timeout
    while True:
        report = read_queue_status(
            config.state_target, now=datetime.now(UTC), timing=timing
        )
        if not wait or report["idle"] or time.monotonic() >= deadline:
            break
        time.sleep(1.0)
    if config.queue.backend == "redis":
        from dsa110_contimg.state.redis_queue import delivery_status

        report["delivery"] = delivery_status(
            config.queue.redis_url, config.queue.redis_prefix
        )
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
    delivery = report.get("delivery")
    if delivery is not None and not delivery.get("reachable"):
        click.echo(f"queue delivery: redis UNREACHABLE: {delivery.get('error')}")
    elif delivery is not None:
        held = sum(s["pending"] for s in delivery.get("streams", {}).values())
        click.echo(
            f"queue delivery: redis {delivery['url']}: {held} entr(ies) held by "
            f"workers, {delivery.get('delayed', 0)} retr(ies) delayed, "
            f"{delivery.get('dead_letters', 0)} dead letter(s)"
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


@click.command("requeue", cls=Command)
@common_options
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
    ``cancel`` them first. On ``queue.backend: redis`` the job leaves the
    dead-letter stream and gets a new stream entry (replayed once).
    """
    from dsa110_contimg.state import open_db
    from dsa110_contimg.state.jobs import CONVERT_GROUP, get_job
    from dsa110_contimg.state.queue import open_queue
    from dsa110_contimg.state.rejected import (
        record_rejected_files,
        resolve_rejected_files,
    )

    config = load_config(config_path, env, sets)
    with (
        closing(open_db(config.state_target)) as conn,
        closing(open_queue(config.queue, conn)) as queue,
    ):
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
            job = queue.requeue(
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


@click.command("cancel", cls=Command)
@common_options
@click.argument("job_ids", nargs=-1, type=int, required=True)
def cancel_command(config_path, env, sets, job_ids) -> None:
    """Stop pending or running jobs by id (quarantined; requeue them later).

    A running job's worker sees its lease revoked at its next heartbeat,
    stops the job and discards its output.
    """
    from dsa110_contimg.state import open_db
    from dsa110_contimg.state.jobs import cancel_job

    config = load_config(config_path, env, sets)
    with closing(open_db(config.state_target)) as conn:
        for job_id in job_ids:
            job = cancel_job(conn, job_id, now=datetime.now(UTC))
            click.echo(f"job {job.id} ({job.kind} {job.key}) cancelled")


@click.command("dead-letters", cls=Command)
@common_options
@click.option("--json", "as_json", is_flag=True, help="Print the entries as JSON.")
def dead_letters_command(config_path, env, sets, as_json) -> None:
    """List dead-lettered jobs: id, kind, product, deliveries, last error, when.

    ``queue.backend: redis``: the entries of the dead-letter stream
    (``<queue.redis_prefix>:dead``: delivered more than
    ``queue.redis_max_deliveries`` times); ``sqlite``: the quarantined jobs.
    Replay one with ``dsa110-contimg requeue JOB_ID``.
    """
    from dsa110_contimg.state import open_db
    from dsa110_contimg.state.queue import open_queue

    config = load_config(config_path, env, sets, log_to_file=False)
    with (
        closing(open_db(config.state_target)) as conn,
        closing(open_queue(config.queue, conn)) as queue,
    ):
        rows = queue.dead_lettered()
    if as_json:
        report = {"backend": config.queue.backend, "dead_letters": rows}
        click.echo(json.dumps(report, indent=2, default=str))
        return
    where = (
        f"dead-letter stream {config.queue.redis_prefix}:dead"
        if config.queue.backend == "redis"
        else "quarantined jobs (queue.backend sqlite)"
    )
    click.echo(f"{len(rows)} dead letter(s): {where}")
    for row in rows:
        click.echo(
            f"#{row['job_id'] if row['job_id'] is not None else '-'} {row['kind']} "
            f"{row['key'] or '-'} ({row['state'] or 'no record'}): "
            f"{row['deliveries']} deliver(ies), at {row['at']}: "
            f"{str(row['last_error'])[:200]}"
        )
    if rows:
        click.echo("replay one with: dsa110-contimg requeue JOB_ID")


@click.group("db", cls=Group)
def db_group() -> None:
    """Manage the state database."""


@db_group.command("upgrade")
@common_options
def db_upgrade_command(config_path, env, sets) -> None:
    """Create the state database, or upgrade its schema in place (Alembic).

    The database is ``database.url`` (SQLite or PostgreSQL) or, when unset,
    the SQLite file ``paths.state_db``. A database made by the numbered schema
    files of earlier versions is upgraded in place, its rows intact.
    """
    from dsa110_contimg.state import _alembic
    from dsa110_contimg.state.db import (
        backend_name,
        describe_target,
        open_db,
        schema_version,
    )

    config = load_config(config_path, env, sets, log_to_file=False)
    target = config.state_target
    with closing(open_db(target)) as conn:
        version = schema_version(conn)
        revision = _alembic.current_revision(conn)
        backend = backend_name(conn)
    click.echo(
        f"state database {describe_target(target)} ({backend}): schema version "
        f"{version}, revision {revision}"
    )


@db_group.command("migrate")
@common_options
@click.pass_context
def db_migrate_command(ctx, config_path, env, sets) -> None:
    """The same as ``db upgrade`` (its earlier name)."""
    ctx.invoke(db_upgrade_command, config_path=config_path, env=env, sets=sets)


@db_group.command("revision")
@click.argument("message")
def db_revision_command(message: str) -> None:
    """Write the next Alembic revision from an edit of state/schema_core.py.

    Alembic's ``revision --autogenerate`` against a scratch SQLite database at
    the head: the file ``state/migrations/versions/NNNN_<message>.py`` is
    printed; review it (PostgreSQL types, data moves), then commit it with
    the metadata edit.
    """
    from dsa110_contimg.state._revision import revision

    click.echo(revision(message))


@db_group.command("maintain")
@common_options
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

    config = load_config(config_path, env, sets, log_to_file=False)
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


def add(group: click.Group) -> None:
    """Add ``stream``, ``status``, ``requeue``, ``cancel``, ``dead-letters``, ``db``."""
    for command in (
        stream_command,
        status_command,
        requeue_command,
        cancel_command,
        dead_letters_command,
        db_group,
    ):
        group.add_command(command)
