"""A state database filled by hand with known figures (figures and API tests).

``NOW`` is 2025-01-02T12:00Z; with a one-hour window and 300 s groups the
figures are (see `tests/unit/test_figures.py`):

- convert_group: done c1 (60 s), c2 (120 s), failed c3; c4 done before the
  window; c5 pending. process_block: done p1 (300 s), p2 running.
- real-time factor (60 + 120 + 300) / (2 x 300) = 0.8.
- ingest lags 420, 600, 300, 300 s; 4 arrived, 2 processed per hour.
- failure events: InputDataError once in the window (ExternalToolError before).
- block_metrics in the window: 2 of 3 succeeded.
- calibration: strip +16.30 solved 2 h and 30 h ago (newest valid now),
  strip +40.00 48 h ago (expired); both applied in the last hour (in use).
- image quality in the window: rms/thermal 1.2, 1.5, 3.0, one failed.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dsa110_contimg.state.db import Connection, open_db, to_iso_utc

__all__ = ["NOW", "fill_state", "iso", "mjd"]

NOW = datetime(2025, 1, 2, 12, 0, tzinfo=UTC)


def iso(hhmm: str, day: int = 2) -> str:
    """Return the stored text of 2025-01-<day> at ``hh:mm`` UTC."""
    hours, minutes = (int(x) for x in hhmm.split(":"))
    return to_iso_utc(datetime(2025, 1, day, hours, minutes, tzinfo=UTC))


def mjd(when: datetime) -> float:
    """Return the MJD of ``when``."""
    return 40587.0 + when.timestamp() / 86400.0


def _job(
    conn,
    jid,
    kind,
    key,
    state,
    data,
    created,
    started=None,
    finished=None,
    error_class=None,
    error_message=None,
    quarantine_reason=None,
    not_before=None,
):
    conn.execute(
        "INSERT INTO jobs (id, kind, key, state, priority, data_time_iso, "
        "payload_json, attempts, max_attempts, not_before_at, error_class, "
        "error_message, quarantine_reason, created_at, updated_at, started_at, "
        "finished_at) VALUES (?, ?, ?, ?, 10, ?, ?, ?, 5, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            jid,
            kind,
            key,
            state,
            data,
            json.dumps({"key": key}),
            1 if started else 0,
            not_before or created,
            error_class,
            error_message,
            quarantine_reason,
            created,
            finished or started or created,
            started,
            finished,
        ),
    )


def fill_state(path: Path) -> Connection:
    """Create and fill the database at ``path``; return a writable connection."""
    conn = open_db(path)
    with conn:
        _job(
            conn,
            1,
            "convert_group",
            "2025-01-02T10:58:00",
            "done",
            "2025-01-02T10:58:00",
            iso("11:05"),
            iso("11:06"),
            iso("11:07"),
        )
        _job(
            conn,
            2,
            "convert_group",
            "2025-01-02T11:20:00",
            "done",
            "2025-01-02T11:20:00",
            iso("11:30"),
            iso("11:31"),
            iso("11:33"),
        )
        _job(
            conn,
            3,
            "convert_group",
            "2025-01-02T11:40:00",
            "failed",
            "2025-01-02T11:40:00",
            iso("11:45"),
            iso("11:46"),
            iso("11:47"),
            error_class="InputDataError",
            error_message="bad file",
        )
        _job(
            conn,
            4,
            "convert_group",
            "2025-01-02T09:00:00",
            "done",
            "2025-01-02T09:00:00",
            iso("09:05"),
            iso("09:06"),
            iso("09:10"),
        )
        _job(
            conn,
            5,
            "convert_group",
            "2025-01-02T11:50:00",
            "pending",
            "2025-01-02T11:50:00",
            iso("11:55"),
        )
        _job(
            conn,
            6,
            "process_block",
            "block_20250102T1100",
            "done",
            "2025-01-02T11:00:00",
            iso("11:40"),
            iso("11:40"),
            iso("11:45"),
        )
        _job(
            conn,
            7,
            "process_block",
            "block_20250102T1130",
            "running",
            "2025-01-02T11:30:00",
            iso("11:50"),
            iso("11:51"),
        )
        _job(
            conn,
            8,
            "process_block",
            "block_20250102T0900",
            "quarantined",
            "2025-01-02T09:00:00",
            iso("09:20"),
            iso("09:21"),
            iso("09:30"),
            error_class="ImagingError",
            quarantine_reason="no clean image",
        )
        events = [
            (3, "running", "failed", "bad file", "InputDataError", iso("11:47")),
            (
                4,
                "running",
                "pending",
                "tool crashed",
                "ExternalToolError",
                iso("09:08"),
            ),
            (1, "pending", "running", "claimed", None, iso("11:06")),
            (1, "running", "done", "done", None, iso("11:07")),
        ]
        conn.executemany(
            "INSERT INTO job_events (job_id, from_state, to_state, reason, worker, "
            "error_class, created_at) VALUES (?, ?, ?, ?, 'w1', ?, ?)",
            events,
        )
        conn.executemany(
            "INSERT INTO block_metrics (block_id, success, processing_time_s, "
            "ms_count, image_count, error_message, recorded_at) "
            "VALUES (?, ?, ?, 1, 1, NULL, ?)",
            [
                ("b1", 1, 10.0, iso("11:10")),
                ("b2", 1, 20.0, iso("11:20")),
                ("b3", 0, 30.0, iso("11:30")),
                ("b0", 0, 40.0, iso("08:05")),
            ],
        )
        now = mjd(NOW)
        solutions = [
            ("3C48", "g1", 16.3, now - 2 / 24),
            ("3C48", "g0", 16.3, now - 30 / 24),
            ("3C286", "g2", 40.0, now - 48 / 24),
        ]
        for cal, group, dec, transit in solutions:
            conn.execute(
                "INSERT INTO cal_solutions (calibrator, group_id, ms_path, "
                "bandpass_table, gain_table, refant, dec_strip_deg, transit_mjd, "
                "valid_from_mjd, valid_to_mjd, quality_json, solved_at) "
                "VALUES (?, ?, 'cal.ms', 'cal.B', 'cal.G', 'pad1', ?, ?, ?, ?, ?, ?)",
                (
                    cal,
                    group,
                    dec,
                    transit,
                    transit - 0.5,
                    transit + 0.5,
                    json.dumps({"snr": 50.0}),
                    iso("11:00"),
                ),
            )
        conn.executemany(
            "INSERT INTO cal_applications (ms_path, solution_id, applied_at) "
            "SELECT ?, id, ? FROM cal_solutions WHERE group_id = ?",
            [("b1.ms", iso("11:30"), "g1"), ("b2.ms", iso("11:40"), "g2")],
        )
        quality = [
            ("b1", "/x/img1.fits", 1, 1.2e-3, 1.0e-3, iso("11:10")),
            ("b2", "/x/img2.fits", 1, 1.5e-3, 1.0e-3, iso("11:20")),
            ("b3", "/x/img3.fits", 0, 3.0e-3, 1.0e-3, iso("11:30")),
            ("b0", "/x/img0.fits", 0, 9.0e-3, 1.0e-3, iso("08:05")),
        ]
        conn.executemany(
            "INSERT INTO image_quality (block_id, image_path, passed, rms_jy, "
            "thermal_rms_jy, n_attempts, record_json, created_at) "
            "VALUES (?, ?, ?, ?, ?, 1, '{}', ?)",
            quality,
        )
    return conn


def minutes_ago(minutes: float) -> datetime:
    """Return ``NOW`` minus some minutes."""
    return NOW - timedelta(minutes=minutes)
