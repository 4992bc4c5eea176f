"""The Core writes of `state._core` (upserts, executemany, RETURNING), both backends."""

from __future__ import annotations

from contextlib import closing

import sqlalchemy as sa

from dsa110_contimg.state import schema_core as core
from dsa110_contimg.state._core import Query, params_of, upsert
from dsa110_contimg.state.db import open_db

_COLUMNS = ("path", "kind", "reason", "first_seen_at", "updated_at")
_UPSERT = Query(
    upsert(
        core.rejected_files,
        _COLUMNS,
        ("path",),
        ("reason", "updated_at"),
        set_=lambda excluded: {"resolved_at": None},
    )
)
_KEEP_FIRST = Query(upsert(core.rejected_files, _COLUMNS, ("path",), ()))
_INSERT_RETURNING = Query(
    sa.insert(core.products)
    .values(params_of(("block_id", "kind", "path", "created_at")))
    .returning(core.products.c.id)
)
_INSERT = Query(
    sa.insert(core.products).values(
        params_of(("block_id", "kind", "path", "created_at"))
    )
)


def _row(path: str, reason: str, at: str) -> dict[str, str]:
    return {
        "path": path,
        "kind": "late",
        "reason": reason,
        "first_seen_at": at,
        "updated_at": at,
    }


def test_an_upsert_inserts_then_updates_the_named_columns(state_target) -> None:
    with closing(open_db(state_target)) as conn, conn:
        _UPSERT.execute(conn, _row("/a", "first", "T1"))
        conn.execute("UPDATE rejected_files SET resolved_at = 'T2'")
        _UPSERT.execute(conn, _row("/a", "second", "T3"))
        _KEEP_FIRST.execute(conn, _row("/a", "third", "T4"))
        _KEEP_FIRST.executemany(conn, [_row("/b", "b", "T5"), _row("/c", "c", "T6")])
        rows = conn.execute(
            "SELECT path, reason, first_seen_at, updated_at, resolved_at "
            "FROM rejected_files ORDER BY path"
        ).fetchall()
    assert [tuple(r) for r in rows] == [
        ("/a", "second", "T1", "T3", None),
        ("/b", "b", "T5", "T5", None),
        ("/c", "c", "T6", "T6", None),
    ]


def test_returning_is_what_the_statement_says(state_target) -> None:
    values = {"block_id": "b", "kind": "ms", "path": "/p.ms", "created_at": "T"}
    with closing(open_db(state_target)) as conn, conn:
        (new_id,) = _INSERT_RETURNING.execute(conn, values).fetchone()
        cursor = _INSERT.execute(conn, {**values, "path": "/q.ms"})
        ids = [r[0] for r in conn.execute("SELECT id FROM products ORDER BY id")]
    assert ids[0] == new_id and len(ids) == 2
    # no implicit RETURNING of the generated key on PostgreSQL
    assert "RETURNING" not in _INSERT.sql("postgresql")[0]
    assert cursor.description is None


def test_rejected_files_record_list_count_resolve(state_target, tmp_path) -> None:
    from dataclasses import dataclass
    from datetime import UTC, datetime

    from dsa110_contimg.state import rejected

    @dataclass
    class Rejected:
        path: str
        kind: str
        reason: str
        group_id: str | None = None

    raw = tmp_path / "a.hdf5"
    raw.write_bytes(b"x" * 7)
    t1 = datetime(2026, 1, 1, tzinfo=UTC)
    t2 = datetime(2026, 1, 2, tzinfo=UTC)
    with closing(open_db(state_target)) as conn:
        rows = [
            Rejected(str(raw), "late", "after"),
            Rejected("/b.hdf5", "bad_name", "name"),
        ]
        assert rejected.record_rejected_files(conn, rows, now=t1) == 2
        assert rejected.resolve_rejected_files(conn, [str(raw)], now=t1) == 1
        # seen again: its new reason, unresolved again
        rows = [Rejected(str(raw), "duplicate", "again", "g1")]
        assert rejected.record_rejected_files(conn, rows, now=t2) == 1
        assert rejected.resolve_rejected_files(conn, ["/nope"], now=t2) == 0
        listed = rejected.list_rejected_files(conn)
        assert [(r["path"], r["kind"], r["size_bytes"]) for r in listed] == [
            (str(raw), "duplicate", 7),
            ("/b.hdf5", "bad_name", None),
        ]
        assert listed[0]["first_seen_at"].startswith("2026-01-01T00:00:00")
        assert [r["path"] for r in rejected.list_rejected_files(conn, limit=1)] == [
            str(raw)
        ]
        assert (
            rejected.list_rejected_files(conn, kinds=["bad_name", "x"])[0]["kind"]
            == "bad_name"
        )
        assert rejected.list_rejected_files(conn, kinds=[]) == []
        assert rejected.count_rejected_files(conn) == {"bad_name": 1, "duplicate": 1}


def test_mosaic_members_upsert_and_list(state_target) -> None:
    from dsa110_contimg.state import mosaics

    with closing(open_db(state_target)) as conn:
        members = [("/i1.fits", "used", ""), ("/i2.fits", "missing", "no file")]
        mosaics.record_mosaic_members(
            conn, block_id="b1", mosaic_path="/m.fits", members=members
        )
        mosaics.record_mosaic_members(
            conn,
            block_id="b2",
            mosaic_path="/m.fits",
            members=[("/i2.fits", "used", "")],
        )
        rows = mosaics.list_mosaic_members(conn)
        assert [
            (r["block_id"], r["image_path"], r["status"], r["detail"]) for r in rows
        ] == [
            ("b1", "/i1.fits", "used", None),
            ("b2", "/i2.fits", "used", None),
        ]
        assert len(mosaics.list_mosaic_members(conn, block_id="b2")) == 1
        assert (
            mosaics.list_mosaic_members(conn, block_id="b1", image_path="/i2.fits")
            == []
        )


def test_intake_hold_set_and_read(state_target) -> None:
    from datetime import UTC, datetime

    from dsa110_contimg.state import intake

    with closing(open_db(state_target)) as conn:
        assert intake.intake_hold(conn) is None
        now = datetime(2026, 1, 1, tzinfo=UTC)
        intake.set_intake_hold(conn, paused=True, reason="maint", now=now)
        hold = intake.intake_hold(conn)
        assert hold["paused"] is True and hold["reason"] == "maint"


def test_pipeline_metrics_record_and_read(state_target) -> None:
    from dsa110_contimg.state.metrics import PipelineMetrics

    metrics = PipelineMetrics(state_target)
    metrics.record_block_processing("b1", True, 10.0, 2, 3)
    metrics.record_block_processing("b2", False, 30.0, 0, 0, error_message="boom")
    recent = metrics.get_recent_metrics(1)
    assert [(r["block_id"], r["success"], r["processing_time"]) for r in recent] == [
        ("b2", False, 30.0),
        ("b1", True, 10.0),
    ]
    assert metrics.get_success_rate(1) == 0.5
    assert metrics.get_average_processing_time(1) == 20.0


def test_alert_state_and_silences_writes(state_target) -> None:
    from datetime import UTC, datetime, timedelta

    from dsa110_contimg.state import alerts

    now = datetime(2026, 1, 1, tzinfo=UTC)
    pending = alerts.TrackedAlert(
        "f1", "DSA110X", {"a": "1"}, "pending", 1.0, "T0", None, None
    )
    firing = alerts.TrackedAlert("f1", "other", {}, "firing", 2.0, "T9", "T1", "T2")
    with closing(open_db(state_target)) as conn:
        alerts.upsert_tracked_alert(conn, pending, now=now)
        alerts.upsert_tracked_alert(conn, firing, now=now)
        # the name, labels and start are the first record's; the rest updated
        assert alerts.list_tracked_alerts(conn) == [
            alerts.TrackedAlert(
                "f1", "DSA110X", {"a": "1"}, "firing", 2.0, "T0", "T1", "T2"
            )
        ]
        alerts.delete_tracked_alert(conn, "f1")
        assert alerts.list_tracked_alerts(conn) == []
        # the new silence's id comes back on both backends (RETURNING)
        first = alerts.add_silence(
            conn,
            "A",
            matchers={},
            comment="c",
            created_by="op",
            now=now,
            expires_at=now + timedelta(hours=1),
        )
        second = alerts.add_silence(
            conn,
            "B",
            matchers={"x": "y"},
            comment="c",
            created_by="op",
            now=now,
            expires_at=now + timedelta(hours=1),
        )
        assert (first.alertname, second.alertname) == ("A", "B")
        assert second.id > first.id and second.matchers == {"x": "y"}
        removed = alerts.remove_silence(conn, first.id, now=now + timedelta(minutes=1))
        assert removed.removed_at is not None
        assert [s.id for s in alerts.list_silences(conn, now=now)] == [second.id]


def test_no_sql_strings_outside_the_connection_and_schema_modules() -> None:
    """Every statement of state/ is a Core construct; strings stay only in the
    connection, DDL and migration modules (pragmas, transaction control)."""
    import ast
    import re
    from pathlib import Path

    import dsa110_contimg.state as state

    root = Path(state.__file__).parent
    allowed = {
        "db.py",
        "_alembic.py",
        "_postgres.py",
        "_schema_diff.py",
        "_revision.py",
    }
    statement = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|REPLACE|WITH)\s")
    found = []
    for path in sorted(root.rglob("*.py")):
        if path.name in allowed or "migrations" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.JoinedStr):
                parts = [v.value for v in node.values if isinstance(v, ast.Constant)]
                text = "".join(str(p) for p in parts)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value
            else:
                continue
            if statement.match(text):
                found.append(f"{path.relative_to(root)}:{node.lineno}: {text[:40]!r}")
    assert found == []
