"""Tests of CASA's process environment helpers: stderr capture, leap seconds."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from astropy.time import Time

from dsa110_contimg.tools import casa_env
from dsa110_contimg.tools.casa_env import casa_stderr_to, leap_second_status


def _tai_utc_table(path: Path, vs_date: str) -> Path:
    tables = pytest.importorskip("casacore.tables")
    columns = [
        tables.makescacoldesc("MJD", 0.0),
        tables.makescacoldesc("dUTC", 0.0),
    ]
    with tables.table(str(path), tables.maketabdesc(columns), nrow=1, ack=False) as t:
        t.putkeyword("VS_DATE", vs_date)
        t.putcell("MJD", 0, 57754.0)
        t.putcell("dUTC", 0, 37.0)
    return path


def test_stderr_of_c_code_goes_to_file(tmp_path: Path, capfd) -> None:
    log = tmp_path / "logs" / "casa.log"
    with casa_stderr_to(log):
        os.write(2, b"SEVERE from C++\n")
        subprocess.run(
            [sys.executable, "-c", "import os; os.write(2, b'child noise\\n')"],
            check=True,
        )
    os.write(2, b"after\n")
    err = capfd.readouterr().err
    assert "SEVERE" not in err and "child noise" not in err
    assert "after" in err
    text = log.read_text()
    assert "SEVERE from C++" in text and "child noise" in text


def test_leap_second_table_covering_old_data(tmp_path: Path) -> None:
    table = _tai_utc_table(tmp_path / "TAI_UTC", "2025/09/16/15:15")
    written = Time("2025-09-16T15:15:00", scale="utc").mjd
    status = leap_second_status(table, 60096.2, now_mjd=written + 441)
    assert status.table_date_mjd == pytest.approx(written)
    assert status.covers_data  # 2023 data: the table knows every leap second
    assert status.casa_complains  # but CASA's today-based check fires
    assert status.age_days == pytest.approx(441)


def test_leap_second_table_too_old_for_data(tmp_path: Path) -> None:
    table = _tai_utc_table(tmp_path / "TAI_UTC", "2020/01/01/00:00")
    written = Time("2020-01-01T00:00:00", scale="utc").mjd
    status = leap_second_status(table, written + 400, now_mjd=written + 401)
    assert not status.covers_data
    fresh = leap_second_status(table, written + 100, now_mjd=written + 120)
    assert fresh.covers_data and not fresh.casa_complains


def test_one_warning_when_table_does_not_cover_data(
    tmp_path: Path, monkeypatch, caplog
) -> None:
    table = _tai_utc_table(tmp_path / "TAI_UTC", "2020/01/01/00:00")
    monkeypatch.setattr(casa_env, "leap_second_table_path", lambda: table)
    monkeypatch.setattr(casa_env, "_WARNED", set())
    late = Time("2022-01-01T00:00:00", scale="utc").mjd
    with caplog.at_level(logging.INFO, logger="dsa110_contimg.tools.casa_env"):
        casa_env.warn_leap_seconds_once(late)
        casa_env.warn_leap_seconds_once(late)
    warnings_ = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings_) == 1
    assert "does not cover" in warnings_[0].getMessage()
    assert "casadata" in warnings_[0].getMessage()
