"""The Core read queries (browse, job queries, figures) on both backends.

The same rows go into an SQLite file and into ``state_target``; every listing
returns the known rows and the same values of the same types on both (a
``SUM`` or ``COUNT`` PostgreSQL would return as ``Decimal`` shows here).
"""

from __future__ import annotations

from contextlib import closing
from datetime import timedelta
from pathlib import Path

import pytest
from tests.unit._filled_state import NOW, fill_state, iso

from dsa110_contimg.state import alerts, browse, figures
from dsa110_contimg.state._core import Query
from dsa110_contimg.state.alert_inputs import read_alert_inputs
from dsa110_contimg.state.db import connect
from dsa110_contimg.state.jobs import queries

_PRODUCTS = [
    ("b1", "ms", "/p/b1.ms"),
    ("b1", "image", "/p/b1-a.fits"),
    ("b1", "image", "/p/b1-b.fits"),
    ("b1", "mosaic", "/p/b1-mosaic.fits"),
    ("b9", "image", "/p/b9.fits"),
]


def _fill(target) -> None:
    with closing(fill_state(target)) as conn, conn:
        conn.executemany(
            "INSERT INTO products (block_id, kind, path, group_id, created_at) "
            "VALUES (?, ?, ?, NULL, ?)",
            [(*row, iso(f"11:{10 + i:02d}")) for i, row in enumerate(_PRODUCTS)],
        )
        conn.executemany(
            "INSERT INTO rejected_files (path, kind, reason, first_seen_at, "
            "updated_at, resolved_at) VALUES (?, 'late', 'after the window', ?, ?, ?)",
            [
                ("/raw/a.hdf5", iso("10:00"), iso("10:00"), None),
                ("/raw/b.hdf5", iso("10:05"), iso("10:06"), iso("10:30")),
            ],
        )
        conn.execute(
            "INSERT INTO alert_state (fingerprint, alertname, labels_json, state, "
            "value, active_since, fired_at, notified_at, updated_at) VALUES "
            "('f1', 'DSA110Backlog', '{\"kind\": \"convert_group\"}', 'firing', "
            "12.5, ?, ?, NULL, ?)",
            (iso("11:00"), iso("11:05"), iso("11:05")),
        )
        conn.executemany(
            "INSERT INTO alert_silences (alertname, matchers_json, comment, "
            "created_by, created_at, expires_at, removed_at) "
            "VALUES (?, '{}', 'maintenance', 'op', ?, ?, ?)",
            [
                ("DSA110Backlog", iso("10:00"), iso("13:00"), None),
                ("DSA110DiskLow", iso("10:00"), iso("13:00"), iso("10:30")),
            ],
        )
        conn.execute(
            "INSERT INTO service_state (name, value_json, updated_at) "
            "VALUES ('intake', '{\"paused\": true}', ?)",
            (iso("11:50"),),
        )


def _reads(conn) -> dict[str, object]:
    return {
        "jobs_page": browse.list_jobs_page(conn, states=["done", "failed"], limit=3),
        "jobs_page_old_first": browse.list_jobs_page(
            conn, kinds=["convert_group"], newest_first=False, offset=1
        ),
        "jobs_none": browse.list_jobs_page(conn, states=[]),
        "events": browse.list_job_events_page(conn, limit=4),
        "event_errors": browse.list_job_events_page(conn, errors_only=True),
        "events_of_1": browse.list_job_events_page(conn, job_id=1),
        "products": browse.list_products_page(conn),
        "images": browse.list_products_page(conn, kinds=["image"], limit=2),
        "of_b9": browse.list_products_page(conn, block_id="b9"),
        "product": browse.get_product(conn, 2),
        "no_product": browse.get_product(conn, 99),
        "blocks": browse.list_blocks(conn),
        "block": browse.block_summary(conn, "b1"),
        "no_block": browse.block_summary(conn, "b3"),
        "cal": browse.list_cal_solutions(conn),
        "cal_strip": browse.list_cal_solutions(conn, dec_strip_deg=16.3),
        "cal_valid": browse.list_cal_solutions(conn, valid_at_mjd=60677.4),
        "cal_one": browse.get_cal_solution(conn, 1),
        "rejected": browse.list_rejected_page(conn),
        "rejected_all": browse.list_rejected_page(conn, include_resolved=True),
        "quality": browse.list_image_quality_page(conn, block_id="b2"),
        "quality_path": browse.list_image_quality_page(conn, image_path="/x/img0.fits"),
        "job_exists": (browse.job_exists(conn, 1), browse.job_exists(conn, 99)),
        "get_job": queries.get_job(conn, 3),
        "find_job": queries.find_job(conn, "convert_group", "2025-01-02T11:20:00"),
        "list_jobs": queries.list_jobs(conn, states=["done"], kinds=["convert_group"]),
        "list_jobs_limit": queries.list_jobs(conn, limit=2),
        "counts": queries.count_jobs(conn),
        "counts_by_kind": queries.count_jobs_by_kind(conn),
        "job_events": queries.list_job_events(conn, limit=2),
        "job_event_errors": queries.list_job_events(conn, 3, errors_only=True),
        "service_state": queries.get_service_state(conn),
        "latest": queries.latest_data_time(conn, "convert_group"),
        "mentioning": queries.list_jobs_mentioning(conn, "process_block", "g1"),
        "backlog": queries.pending_backlog(conn, now=NOW),
        "tracked_alerts": alerts.list_tracked_alerts(conn),
        "silences": alerts.list_silences(conn),
        "active_silences": alerts.list_silences(conn, now=NOW),
        "figures": figures.compute_figures(conn, now=NOW, window_h=1.0),
        "figures_day": figures.compute_figures(conn, now=NOW, window_h=24.0),
        "histogram": figures.duration_histogram(conn, (30.0, 90.0, 600.0)),
        "histogram_none": figures.duration_histogram(conn, ()),
        "failure_totals": figures.failure_totals(conn),
        "backlog_series": figures.backlog_series(
            conn, start=NOW - timedelta(hours=3), end=NOW, n_points=7
        ),
        "backlog_at": figures.backlog_at(conn, "convert_group", NOW),
        "alert_inputs": read_alert_inputs(
            conn, now=NOW, group_duration_s=300.0, n_workers=2
        ),
    }


@pytest.fixture
def reads(state_target, tmp_path: Path) -> tuple[dict, dict]:
    """The reads on ``state_target`` and on a reference SQLite file."""
    reference = tmp_path / "reference.sqlite3"
    results = []
    for target in (state_target, reference):
        _fill(target)
        with closing(connect(target, readonly=True)) as conn:
            results.append(_reads(conn))
    return results[0], results[1]


def test_the_reads_are_the_same_values_and_types_on_both_backends(reads) -> None:
    got, reference = reads
    for name, value in reference.items():
        assert repr(got[name]) == repr(value), name


def test_the_reads_return_the_known_rows(reads) -> None:
    got, _ = reads
    rows, total = got["blocks"]
    assert total == 2
    assert [
        (r["block_id"], r["n_products"], r["n_images"], r["n_mosaics"]) for r in rows
    ] == [("b9", 1, 1, 0), ("b1", 4, 2, 1)]
    assert (rows[1]["success"], rows[1]["processing_time_s"]) == (1, 10.0)
    assert (rows[0]["success"], rows[0]["processing_time_s"]) == (None, None)
    assert got["block"] == rows[1] and got["no_block"] is None
    images, n_images = got["images"]
    assert n_images == 3 and [r["path"] for r in images] == [
        "/p/b9.fits",
        "/p/b1-b.fits",
    ]
    assert got["product"]["path"] == "/p/b1-a.fits" and got["no_product"] is None
    assert got["jobs_none"] == ([], 0)
    cal, n_cal = got["cal_strip"]
    assert n_cal == 2 and [r["group_id"] for r in cal] == ["g1", "g0"]
    assert [r["n_applied"] for r in cal] == [1, 0]
    assert [r["path"] for r in got["rejected"][0]] == ["/raw/a.hdf5"]
    assert got["rejected_all"][1] == 2
    assert got["job_exists"] == (True, False)
    assert got["get_job"].error_class == "InputDataError"
    assert got["service_state"]["intake"]["paused"] is True
    (alert,) = got["tracked_alerts"]
    assert (alert.fingerprint, alert.value, alert.labels) == (
        "f1",
        12.5,
        {"kind": "convert_group"},
    )
    assert [s.alertname for s in got["silences"]] == ["DSA110Backlog", "DSA110DiskLow"]
    assert [s.alertname for s in got["active_silences"]] == ["DSA110Backlog"]
    # the figures' known values (tests/unit/_filled_state.py)
    convert = got["figures"].stages["convert_group"]
    assert (convert.n_done, convert.total_s) == (2, 180.0)
    assert got["figures"].real_time_factor == pytest.approx(0.8)
    assert got["histogram"]["convert_group"][:2] == ([0, 1, 3], 3)
    assert got["alert_inputs"].realtime_factor == pytest.approx(0.8)


def test_the_block_listing_searches_block_metrics_by_block(tmp_path: Path) -> None:
    """Each block's newest metrics row is an index search, not a table scan.

    Without ``idx_block_metrics_block`` (revision 0011) a page of blocks read
    the whole table once per block: 6.5 s at 5,000 blocks.
    """
    path = tmp_path / "s.sqlite3"
    _fill(path)
    with closing(connect(path, readonly=True)) as conn:
        sql, names, _ = browse._BLOCKS_PAGE[1].sql("sqlite")
        params = [50 if name == "limit" else 0 for name in names]
        plan = [str(r[-1]) for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
    metrics = [step for step in plan if "block_metrics" in step]
    assert metrics, plan
    assert all(step.startswith("SEARCH") for step in metrics), plan


def test_a_query_is_compiled_once_per_backend() -> None:
    query = queries._BY_ID
    assert query.sql("sqlite") is query.sql("sqlite")
    text, names, _ = query.sql("postgresql")
    assert names == ("id",) and text.endswith("WHERE jobs.id = ?")
    assert isinstance(browse._jobs_queries(2, None, True, False)[1], Query)
    assert browse._jobs_queries(2, None, True, False) is browse._jobs_queries(
        2, None, True, False
    )
