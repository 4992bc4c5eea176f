"""The alert rule file, the Grafana dashboards and the metrics vocabulary agree."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from dsa110_contimg.exceptions import ConfigError
from dsa110_contimg.services.alerts import (
    DiskFigure,
    Figures,
    load_rules,
    metric_samples,
    parse_comparisons,
    parse_duration_s,
    promql_metric_names,
    render_template,
    rules_file,
)
from dsa110_contimg.services.alerts._conditions import EVALUATORS
from dsa110_contimg.state.alert_inputs import AlertInputs
from dsa110_contimg.tables import METRICS, metric_names

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "monitoring" / "alerts.yml"
DASHBOARDS = sorted((ROOT / "monitoring" / "grafana").glob("*.json"))
# on PATH, or unpacked into the virtual environment by scripts/setup.sh
PROMTOOL = shutil.which("promtool") or shutil.which(
    "promtool", path=str(Path(sys.executable).parent)
)
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not installed (scripts/setup.sh unpacks it into .venv/bin)",
)


def _inputs(**changes: object) -> AlertInputs:
    base = AlertInputs(
        now=NOW,
        backlog_groups=0,
        backlog_groups_before=0,
        backlog_blocks=0,
        queue_jobs={},
        groups_arrived_last_hour=12,
        groups_processed_last_hour=12,
        jobs_finished_last_hour={},
        job_errors_last_hour={},
        realtime_factor=0.3,
        last_arrival_at=NOW - timedelta(minutes=2),
    )
    return AlertInputs(**{**{f: getattr(base, f) for f in base.__slots__}, **changes})


def _firing(figures: Figures) -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {}
    for rule in load_rules():
        hits = rule.instances(figures)
        if hits:
            out[rule.name] = [labels for labels, _ in hits]
    return out


# ------------------------------------------------------------------- the file


def test_rule_file_has_the_fields_prometheus_and_the_engine_need() -> None:
    data = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    rules = [r for g in data["groups"] for r in g["rules"]]
    assert len(rules) >= 8
    for rule in rules:
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"]
        assert rule["annotations"]["description"]
        assert parse_duration_s(rule["for"]) > 0
    names = {r["alert"] for r in rules}
    # the rules: backlog growing and critical, real-time factor, failure
    # rate, disk low, calibration too old, no data, processed/arrived < 0.8
    assert {
        "DSA110BacklogGrowing",
        "DSA110BacklogCritical",
        "DSA110RealTimeFactorHigh",
        "DSA110FailureRateHigh",
        "DSA110DiskLow",
        "DSA110CalibrationTooOld",
        "DSA110NoData",
        "DSA110ProcessingBehindArrivals",
    } <= names
    assert names == set(EVALUATORS)


def test_every_metric_a_rule_uses_is_declared() -> None:
    declared = metric_names()
    for rule in load_rules():
        used = promql_metric_names(rule.expr)
        assert used, rule.name
        assert used <= declared, (rule.name, used - declared)


def test_the_package_ships_the_monitoring_rule_file() -> None:
    assert rules_file().read_bytes() == RULES.read_bytes()


@needs_promtool
def test_promtool_check_rules() -> None:
    result = subprocess.run(
        [PROMTOOL, "check", "rules", str(RULES)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(load_rules())} rules found" in result.stdout


# (rule, series as promtool input, labels expected to fire at 40m, figures of
# the in-process engine for the same situation): Prometheus and the engine
# must agree on each.
_CASES = [
    (
        "DSA110BacklogCritical",
        [("dsa110_backlog_groups", "35+0x60")],
        [{}],
        {"backlog_groups": 35},
    ),
    (
        "DSA110BacklogGrowing",
        [("dsa110_backlog_groups", "5+1x60")],  # 5, 6, ... one more a minute
        [{}],
        {"backlog_groups": 45, "backlog_groups_before": 30},
    ),
    (
        "DSA110BacklogGrowing",
        [("dsa110_backlog_groups", "20+0x60")],  # high but steady
        [],
        {"backlog_groups": 20, "backlog_groups_before": 20},
    ),
    (
        "DSA110RealTimeFactorHigh",
        [("dsa110_realtime_factor", "1.5+0x60"), ("dsa110_workers", "1+0x60")],
        [{}],
        {"realtime_factor": 1.5, "n_workers": 1},
    ),
    (
        "DSA110RealTimeFactorHigh",  # 1.5 s of work per data second on 2 workers
        [("dsa110_realtime_factor", "1.5+0x60"), ("dsa110_workers", "2+0x60")],
        [],
        {"realtime_factor": 1.5, "n_workers": 2},
    ),
    (
        "DSA110ProcessingBehindArrivals",
        [
            ("dsa110_groups_arrived_last_hour", "12+0x60"),
            ("dsa110_groups_processed_last_hour", "6+0x60"),
        ],
        [{}],
        {"groups_arrived_last_hour": 12, "groups_processed_last_hour": 6},
    ),
    (
        "DSA110ProcessingBehindArrivals",
        [
            ("dsa110_groups_arrived_last_hour", "12+0x60"),
            ("dsa110_groups_processed_last_hour", "11+0x60"),
        ],
        [],
        {"groups_arrived_last_hour": 12, "groups_processed_last_hour": 11},
    ),
    (
        "DSA110FailureRateHigh",
        [
            (
                'dsa110_jobs_finished_last_hour{kind="convert_group",state="done"}',
                "6+0x60",
            ),
            (
                'dsa110_jobs_finished_last_hour{kind="convert_group",state="failed"}',
                "3+0x60",
            ),
            (
                'dsa110_jobs_finished_last_hour{kind="convert_group",state="quarantined"}',
                "0+0x60",
            ),
        ],
        [{}],
        {
            "jobs_finished_last_hour": {
                ("convert_group", "done"): 6,
                ("convert_group", "failed"): 3,
                ("convert_group", "quarantined"): 0,
            }
        },
    ),
    (
        "DSA110NoData",
        [
            ("dsa110_last_arrival_timestamp_seconds", "0+0x60"),  # at t = 0
            ("dsa110_observing", "1+0x60"),
        ],
        [{}],
        {"last_arrival_at": NOW - timedelta(minutes=40)},
    ),
    (
        "DSA110NoData",
        [
            ("dsa110_last_arrival_timestamp_seconds", "0+0x60"),
            ("dsa110_observing", "0+0x60"),  # outside the observing windows
        ],
        [],
        {"last_arrival_at": NOW - timedelta(minutes=40), "is_observing": False},
    ),
    (
        "DSA110CalibrationTooOld",
        [
            ('dsa110_calibration_age_seconds{dec_strip_deg="55.00"}', "50000+60x60"),
            ('dsa110_calibration_age_seconds{dec_strip_deg="71.60"}', "3600+60x60"),
        ],
        [{"dec_strip_deg": "55.00"}],
        {"calibration_age_s": {55.0: 52400.0, 71.6: 6000.0}},
    ),
    (
        "DSA110DiskLow",
        [
            ('dsa110_disk_free_ratio{path="/data/incoming"}', "0.05+0x60"),
            ('dsa110_disk_free_ratio{path="/data/products"}', "0.5+0x60"),
        ],
        [{"path": "/data/incoming"}],
        {"disks": {"/data/incoming": (5, 100), "/data/products": (50, 100)}},
    ),
    (
        "DSA110IntakePaused",
        [("dsa110_intake_paused", "1+0x60")],
        [{}],
        {"intake_paused": True},
    ),
]


def _figures(values: dict[str, object]) -> Figures:
    values = dict(values)
    disks = {
        p: DiskFigure(free, total)
        for p, (free, total) in values.pop("disks", {}).items()  # type: ignore[union-attr]
    }
    observing = bool(values.pop("is_observing", True))
    return Figures(_inputs(**values), disks, observing)


@pytest.mark.parametrize(("rule_name", "series", "expected", "values"), _CASES)
def test_the_engine_judges_like_the_rule(rule_name, series, expected, values) -> None:
    rule = next(r for r in load_rules() if r.name == rule_name)
    got = [labels for labels, _ in rule.instances(_figures(values))]
    assert got == expected


def _annotations(rule, labels: dict[str, str], values: dict[str, object]) -> dict:
    hits = {tuple(sorted(k.items())): v for k, v in rule.instances(_figures(values))}
    number = hits[tuple(sorted(labels.items()))]
    full = {"alertname": rule.name, **labels, **rule.labels}
    return {k: render_template(v, full, number) for k, v in rule.annotations.items()}


@needs_promtool
def test_promtool_rule_tests_agree_with_the_engine(tmp_path: Path) -> None:
    rules = {r.name: r for r in load_rules()}
    tests = []
    for name, series, expected, values in _CASES:
        rule = rules[name]
        tests.append(
            {
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in series],
                "alert_rule_test": [
                    {
                        "eval_time": "40m",
                        "alertname": name,
                        "exp_alerts": [
                            {
                                "exp_labels": {**labels, **rule.labels},
                                # the engine fills the templates as Prometheus does
                                "exp_annotations": _annotations(rule, labels, values),
                            }
                            for labels in expected
                        ],
                    }
                ],
            }
        )
    test_file = tmp_path / "alerts_test.yml"
    test_file.write_text(
        yaml.safe_dump({"rule_files": [str(RULES)], "tests": tests}), encoding="utf-8"
    )
    result = subprocess.run(
        [PROMTOOL, "test", "rules", str(test_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_comparisons_and_durations_parse() -> None:
    assert parse_comparisons('a{x!="1"} > 10 and delta(a[15m]) >= 0.5') == [
        (">", 10.0),
        (">=", 0.5),
    ]
    assert parse_duration_s("1h30m") == 5400.0
    assert parse_duration_s("0s") == 0.0
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration_s("15 minutes")


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda r: r["labels"].pop("severity"), "labels.severity"),
        (lambda r: r.pop("for"), "has no 'for'"),
        (lambda r: r.update(expr="dsa110_backlog_groups < 30"), "comparisons"),
        (lambda r: r.update(alert="DSA110Unknown"), "no in-process evaluator"),
        (lambda r: r.update(expr="dsa110_backlog_blocks > 30"), "expr reads"),
    ],
)
def test_a_broken_rule_is_refused_by_name(tmp_path: Path, edit, problem) -> None:
    data = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    rule = next(
        r for r in data["groups"][0]["rules"] if r["alert"] == "DSA110BacklogCritical"
    )
    edit(rule)
    bad = tmp_path / "bad.yml"
    bad.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(ConfigError, match=problem) as info:
        load_rules(bad)
    assert str(bad) in str(info.value)


# --------------------------------------------------------------- the metrics


def test_metric_names_follow_prometheus_conventions() -> None:
    names = [m.name for m in METRICS]
    assert len(set(names)) == len(names)
    for spec in METRICS:
        assert spec.name.startswith("dsa110_"), spec.name
        assert spec.help and spec.unit
        if spec.type == "counter":
            assert spec.name.endswith("_total"), spec.name
        if spec.unit in ("seconds", "bytes"):
            assert spec.name.endswith(f"_{spec.unit}") or "timestamp" in spec.name


def test_metric_samples_cover_every_declared_gauge() -> None:
    figures = _figures(
        {
            "calibration_age_s": {55.0: 100.0},
            "image_rms_ratio": 1.2,
            "disks": {"/data": (1, 2)},
        }
    )
    samples = metric_samples(figures)
    gauges = {m.name for m in METRICS if m.type == "gauge"}
    assert set(samples) == gauges
    assert samples["dsa110_calibration_age_seconds"] == [
        ({"dec_strip_deg": "55.00"}, 100.0)
    ]
    assert samples["dsa110_disk_free_ratio"] == [({"path": "/data"}, 0.5)]
    assert samples["dsa110_last_arrival_timestamp_seconds"] == [
        ({}, (NOW - timedelta(minutes=2)).timestamp())
    ]


# -------------------------------------------------------------- the dashboards


def _dashboard_exprs() -> list[tuple[str, str, str]]:
    out = []
    for path in DASHBOARDS:
        board = json.loads(path.read_text(encoding="utf-8"))
        for panel in board["panels"]:
            for target in panel["targets"]:
                out.append((path.name, panel["title"], target["expr"]))
    return out


def test_dashboards_are_grafana_models_of_declared_metrics() -> None:
    assert {p.name for p in DASHBOARDS} >= {"pipeline.json", "health.json"}
    declared = metric_names()
    uids = set()
    for path in DASHBOARDS:
        board = json.loads(path.read_text(encoding="utf-8"))
        assert board["uid"] not in uids
        uids.add(board["uid"])
        assert board["title"] and board["schemaVersion"] >= 30
        ids = [p["id"] for p in board["panels"]]
        assert len(set(ids)) == len(ids), path.name
        for panel in board["panels"]:
            assert panel["type"] in ("timeseries", "stat", "barchart", "gauge")
            assert set(panel["gridPos"]) == {"x", "y", "w", "h"}
            assert panel["targets"], panel["title"]
    exprs = _dashboard_exprs()
    for name, title, expr in exprs:
        used = promql_metric_names(expr)
        assert used and used <= declared, (name, title, used - declared)
    shown = {n for _, _, e in exprs for n in promql_metric_names(e)}
    # every figure the alerts judge is on a dashboard
    ruled = {n for r in load_rules() for n in promql_metric_names(r.expr)}
    assert ruled <= shown


@needs_promtool
def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    # promtool parses each query as a recording rule's expression
    rules = [
        {"record": f"dashboard:query{i}", "expr": expr}
        for i, (_, _, expr) in enumerate(_dashboard_exprs())
    ]
    path = tmp_path / "queries.yml"
    path.write_text(
        yaml.safe_dump({"groups": [{"name": "queries", "rules": rules}]}),
        encoding="utf-8",
    )
    result = subprocess.run(
        [PROMTOOL, "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
