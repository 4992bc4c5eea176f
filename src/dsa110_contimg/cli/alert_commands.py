"""The ``alerts`` commands: ``list``, ``silence``, ``unsilence``, ``evaluate``.

The rules are ``monitoring/alerts.yml`` (or ``alerts.rules_path``); the
tracked alerts and the silences are in the state database, which the stream's
alert engine reads at each evaluation, so a silence takes effect at the next
one. `add` puts the group on the ``dsa110-contimg`` group.
"""

from __future__ import annotations

import getpass
import json
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from dsa110_contimg.utils.command_line import Group, common_options, load_config

__all__ = ["add", "alerts_group"]


@click.group("alerts", cls=Group)
def alerts_group() -> None:
    """Alert rules evaluated in process: state, silences, one evaluation."""


def _labels(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            msg = f"--match expects LABEL=VALUE, got {pair!r}"
            raise click.UsageError(msg)
        out[key.strip()] = value.strip()
    return out


@alerts_group.command("list")
@common_options
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def alerts_list_command(config_path, env, sets, as_json) -> None:
    """Show the rules, the pending and firing alerts and the active silences."""
    from dsa110_contimg.services.alerts import load_rules
    from dsa110_contimg.state import open_db
    from dsa110_contimg.state.alerts import list_silences, list_tracked_alerts

    config = load_config(config_path, env, sets, log_to_file=False)
    rules = load_rules(config.alerts.rules_path)
    now = datetime.now(UTC)
    with closing(open_db(Path(config.paths.state_db))) as conn:
        alerts = list_tracked_alerts(conn)
        silences = list_silences(conn, now=now)
    report = {
        "rules": [
            {"alert": r.name, "severity": r.severity, "for_s": r.for_s, "expr": r.expr}
            for r in rules
        ],
        "alerts": [
            {
                "alert": a.alertname,
                "state": a.state,
                "labels": a.labels,
                "value": a.value,
                "active_since": a.active_since,
                "silenced": any(s.matches(a.alertname, a.labels) for s in silences),
            }
            for a in alerts
        ],
        "silences": [
            {
                "id": s.id,
                "alert": s.alertname,
                "matchers": s.matchers,
                "comment": s.comment,
                "created_by": s.created_by,
                "expires_at": s.expires_at,
            }
            for s in silences
        ],
    }
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    for rule in report["rules"]:
        click.echo(
            f"rule {rule['alert']} [{rule['severity']}] for {rule['for_s']:g} s: "
            f"{rule['expr']}"
        )
    for alert in report["alerts"]:
        labels = ",".join(f"{k}={v}" for k, v in alert["labels"].items())
        muted = " (silenced)" if alert["silenced"] else ""
        click.echo(
            f"{alert['state'].upper()} {alert['alert']} {{{labels}}} value "
            f"{alert['value']:.4g} since {alert['active_since'][:19]}{muted}"
        )
    for s in report["silences"]:
        matchers = ",".join(f"{k}={v}" for k, v in s["matchers"].items())
        click.echo(
            f"silence #{s['id']} {s['alert']} {{{matchers}}} until "
            f"{s['expires_at'][:19]} by {s['created_by']}: {s['comment']}"
        )
    if not report["alerts"]:
        click.echo("no alert pending or firing")


@alerts_group.command("silence")
@common_options
@click.argument("alertname")
@click.option(
    "--match",
    "matchers",
    multiple=True,
    metavar="LABEL=VALUE",
    help="Only alerts with this label value (repeatable).",
)
@click.option(
    "--duration",
    default="2h",
    show_default=True,
    help="How long, as a Prometheus duration (30m, 2h, 1d).",
)
@click.option("--comment", required=True, help="Why (shown with the silence).")
@click.option("--by", "created_by", default=None, help="Who (default: the user).")
def alerts_silence_command(
    config_path, env, sets, alertname, matchers, duration, comment, created_by
) -> None:
    """Mute the alert ALERTNAME (or '*' for all) for a while.

    A firing alert muted by a silence sends no message; if it still fires
    when the silence ends, its firing message is sent then.
    """
    from dsa110_contimg.services.alerts import load_rules, parse_duration_s
    from dsa110_contimg.state import open_db
    from dsa110_contimg.state.alerts import add_silence

    config = load_config(config_path, env, sets, log_to_file=False)
    names = {r.name for r in load_rules(config.alerts.rules_path)}
    if alertname != "*" and alertname not in names:
        msg = f"no alert rule named {alertname!r}; rules: {', '.join(sorted(names))}"
        raise click.UsageError(msg)
    try:
        seconds = parse_duration_s(duration)
    except ValueError as err:
        msg = f"--duration: {err}"
        raise click.UsageError(msg) from err
    now = datetime.now(UTC)
    with closing(open_db(Path(config.paths.state_db))) as conn:
        silence = add_silence(
            conn,
            alertname,
            matchers=_labels(matchers),
            comment=comment,
            created_by=created_by or getpass.getuser(),
            now=now,
            expires_at=now + timedelta(seconds=seconds),
        )
    click.echo(f"silence #{silence.id} on {alertname} until {silence.expires_at[:19]}")


@alerts_group.command("unsilence")
@common_options
@click.argument("silence_ids", nargs=-1, type=int, required=True)
def alerts_unsilence_command(config_path, env, sets, silence_ids) -> None:
    """End silences now, by id (see ``alerts list``)."""
    from dsa110_contimg.state import open_db
    from dsa110_contimg.state.alerts import remove_silence

    config = load_config(config_path, env, sets, log_to_file=False)
    with closing(open_db(Path(config.paths.state_db))) as conn:
        for silence_id in silence_ids:
            remove_silence(conn, silence_id, now=datetime.now(UTC))
            click.echo(f"silence #{silence_id} removed")


@alerts_group.command("evaluate")
@common_options
def alerts_evaluate_command(config_path, env, sets) -> None:
    """Evaluate the rules once now and send the messages (e.g. from cron)."""
    from dsa110_contimg.services.alerts import evaluate_alerts

    config = load_config(config_path, env, sets, log_to_file=False)
    result = evaluate_alerts(config)
    click.echo(
        f"{len(result.firing)} firing, {len(result.pending)} pending, "
        f"{len(result.silenced)} silenced, {len(result.notifications)} message(s) sent"
    )


def add(group: click.Group) -> None:
    """Add the ``alerts`` group to ``group``."""
    group.add_command(alerts_group)
