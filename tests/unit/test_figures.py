"""Known-truth tests of `state.figures` on a database filled by hand."""

from __future__ import annotations

from contextlib import closing
from datetime import timedelta

import pytest
from _filled_state import NOW, fill_state

from dsa110_contimg.state.db import connect
from dsa110_contimg.state.figures import (
    backlog_series,
    compute_figures,
    duration_histogram,
    failure_totals,
)


@pytest.fixture()
def db(tmp_path):
    path = tmp_path / "state.sqlite3"
    fill_state(path).close()
    with closing(connect(path, readonly=True)) as conn:
        yield conn


def test_stage_figures(db) -> None:
    fig = compute_figures(db, now=NOW, window_h=1.0, group_duration_s=300.0)
    convert = fig.stages["convert_group"]
    assert (convert.n_done, convert.n_failed, convert.n_quarantined) == (2, 1, 0)
    assert convert.success_rate == pytest.approx(2 / 3)
    assert convert.mean_s == pytest.approx(90.0)
    assert convert.median_s == pytest.approx(90.0)
    assert convert.p90_s == pytest.approx(114.0)
    assert convert.max_s == pytest.approx(120.0)
    assert convert.total_s == pytest.approx(180.0)
    block = fig.stages["process_block"]
    assert block.n_done == 1 and block.success_rate == 1.0
    assert block.mean_s == pytest.approx(300.0)
    assert fig.stages["update_variability"].success_rate is None


def test_rates_backlog_and_lag(db) -> None:
    fig = compute_figures(db, now=NOW, window_h=1.0, group_duration_s=300.0)
    assert fig.real_time_factor == pytest.approx((60 + 120 + 300) / 600)
    assert fig.queue == {
        "pending": 1,
        "running": 1,
        "done": 4,
        "failed": 1,
        "quarantined": 1,
    }
    assert fig.backlog == 2 and fig.backlog_runnable == 1
    assert fig.oldest_pending_data_time == "2025-01-02T11:50:00"
    assert fig.ingest_rate_per_h == pytest.approx(4.0)
    assert fig.processed_rate_per_h == pytest.approx(2.0)
    assert fig.processed_over_arrived == pytest.approx(0.5)
    assert fig.ingest_lag_median_s == pytest.approx(360.0)
    assert fig.ingest_lag_max_s == pytest.approx(600.0)
    assert fig.data_age_s == pytest.approx(600.0)
    assert fig.block_success_rate == pytest.approx(2 / 3)
    assert fig.n_blocks_recorded == 3


def test_failures_calibration_and_noise(db) -> None:
    fig = compute_figures(db, now=NOW, window_h=1.0)
    assert fig.failures_by_class == {"InputDataError": 1}
    strips = {round(s.dec_strip_deg, 2): s for s in fig.calibration}
    assert strips[16.3].age_h == pytest.approx(2.0, abs=1e-6)
    assert strips[16.3].valid_now and strips[16.3].n_solutions == 2
    assert strips[40.0].age_h == pytest.approx(48.0, abs=1e-6)
    assert not strips[40.0].valid_now
    assert strips[16.3].in_use and strips[40.0].in_use  # applied 11:30, 11:40
    assert strips[16.3].age_s == pytest.approx(7200.0, abs=1e-3)
    assert fig.image_rms_ratio_median == pytest.approx(1.5)
    assert fig.image_rms_ratio_max == pytest.approx(3.0)
    assert (fig.n_images_checked, fig.n_images_failed_qa) == (3, 1)


def test_a_longer_window_takes_in_older_rows(db) -> None:
    fig = compute_figures(db, now=NOW, window_h=4.0, group_duration_s=300.0)
    assert fig.stages["convert_group"].n_done == 3  # c4 at 09:10 too
    assert fig.stages["process_block"].n_quarantined == 1
    assert fig.failures_by_class == {"ExternalToolError": 1, "InputDataError": 1}
    assert fig.block_success_rate == pytest.approx(2 / 4)


def test_empty_window_has_no_rates(db) -> None:
    fig = compute_figures(db, now=NOW + timedelta(days=30), window_h=1.0)
    assert fig.real_time_factor is None
    assert fig.processed_over_arrived is None
    assert fig.stages["convert_group"].success_rate is None
    assert fig.ingest_lag_median_s is None
    # applied a month before: no strip is in use any more
    assert not any(s.in_use for s in fig.calibration)


def test_window_excludes_its_start(db) -> None:
    # b0's block row and image are at 08:05: a window starting there leaves
    # them out, as every windowed figure counts (now - window, now]
    at_start = compute_figures(db, now=NOW, window_h=(12 - (8 + 5 / 60)))
    assert at_start.n_blocks_recorded == 3
    assert at_start.n_images_checked == 3


def test_ingest_lag_is_the_oldest_pending_data(db) -> None:
    # c5 (data 11:50) is the only pending job
    fig = compute_figures(db, now=NOW, window_h=1.0)
    assert fig.ingest_lag_s == pytest.approx(600.0)
    later = compute_figures(db, now=NOW + timedelta(hours=1), window_h=1.0)
    assert later.ingest_lag_s == pytest.approx(4200.0)


def test_bad_window_is_refused(db) -> None:
    with pytest.raises(ValueError, match="window_h must be > 0"):
        compute_figures(db, now=NOW, window_h=0)
    with pytest.raises(ValueError, match="group_duration_s"):
        compute_figures(db, now=NOW, group_duration_s=0)


def test_backlog_series(db) -> None:
    series = backlog_series(db, start=NOW - timedelta(hours=1), end=NOW, n_points=3)
    assert [p["backlog"] for p in series] == [0, 1, 2]
    assert [p["pending_groups"] for p in series] == [0, 1, 1]
    assert series[-1]["time"].startswith("2025-01-02T12:00:00")


def test_duration_histogram_and_failure_totals(db) -> None:
    hist = duration_histogram(db, (60.0, 120.0, 600.0))
    counts, n, total = hist["convert_group"]
    # c1 60 s, c2 120 s, c4 240 s (09:06 -> 09:10)
    assert counts == [1, 2, 3] and n == 3
    assert total == pytest.approx(420.0)
    assert hist["update_variability"] == ([0, 0, 0], 0, 0.0)
    assert failure_totals(db) == {
        ("convert_group", "InputDataError"): 1,
        ("convert_group", "ExternalToolError"): 1,
    }


class _PlanSpy:
    """A connection that records every SELECT it runs (for EXPLAIN QUERY PLAN)."""

    def __init__(self, conn) -> None:
        self.conn = conn
        self.queries: list[tuple[str, tuple]] = []

    def execute(self, sql, parameters=()):
        if sql.lstrip().upper().startswith("SELECT"):
            self.queries.append((sql, tuple(parameters)))
        return self.conn.execute(sql, parameters)

    def __getattr__(self, name):
        return getattr(self.conn, name)


def test_alert_figures_never_read_the_whole_job_history(db) -> None:
    """Every read of the alert figures is an index search, not a history scan.

    On a fresh database (no planner statistics) the plans must search jobs and
    job_events by an index bounded in time or state; the one full pass allowed
    is the per-(kind, state) count over a covering index. Without revision
    0011 and the backlog counts' index hints, the arrivals, ingest and backlog
    reads scanned every job of a kind (~100 ms at 40,000 jobs).
    """
    from dsa110_contimg.state.alert_inputs import read_alert_inputs

    spy = _PlanSpy(db)
    read_alert_inputs(spy, now=NOW, group_duration_s=300.0, n_workers=2)
    assert spy.queries
    bad = []
    for sql, params in spy.queries:
        if not any(table in sql for table in ("FROM jobs", "FROM job_events")):
            continue
        plan = [str(row[-1]) for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
        for step in plan:
            history_scan = step.startswith("SCAN") and "COVERING INDEX" not in step
            by_kind_created = "idx_jobs_kind_created (kind=? AND created_at<?)" in step
            if history_scan or (by_kind_created and "COUNT(*)" in sql):
                bad.append((sql, step))
    assert bad == []
