"""Every input is validated at the edge with a message naming it (issue 15, item 16).

Each case used to escape as a traceback or be accepted silently.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from dsa110_contimg.cli import cli
from dsa110_contimg.data_ingestion.skymodel import load_catalog
from dsa110_contimg.exceptions import InputDataError, StateError
from dsa110_contimg.state import db
from dsa110_contimg.variability import read_measurements_csv


def _run(*args: str):
    return CliRunner().invoke(cli, list(args))


# --- command-line values ---


def test_bad_start_time_is_a_usage_error_naming_the_option() -> None:
    result = _run(
        "batch", "--env", "testing", "--start-time", "notatime", "--end-time", "x"
    )
    assert result.exit_code == 2
    assert "--start-time" in result.output and "notatime" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("dec", ["400", "-91"])
def test_declination_out_of_range_is_refused(dec: str) -> None:
    result = _run(
        "calibrators",
        "--env",
        "testing",
        "--dec",
        dec,
        "--start-time",
        "2023-06-01T00:00:00",
        "--end-time",
        "2023-06-02T00:00:00",
    )
    assert result.exit_code == 2
    assert "--dec" in result.output


# --- the state database ---


def test_state_db_under_a_regular_file(tmp_path: Path) -> None:
    blocker = tmp_path / "plain.txt"
    blocker.write_text("not a directory\n")
    with pytest.raises(StateError, match="regular file") as excinfo:
        db.open_db(blocker / "pipeline.sqlite3")
    assert str(blocker) in str(excinfo.value)
    result = _run(
        "status", "--env", "testing", "--set", f"paths.state_db={blocker}/p.sqlite3"
    )
    assert result.exit_code == 1
    assert "StateError" in result.output and str(blocker) in result.output
    assert not isinstance(result.exception, sqlite3.Error | OSError)


def test_corrupt_state_db_is_named(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.sqlite3"
    path.write_bytes(os.urandom(8192))
    with pytest.raises(StateError, match="not a usable SQLite database") as excinfo:
        db.open_db(path)
    assert str(path) in str(excinfo.value)
    assert path.stat().st_size == 8192, "the damaged file is kept for inspection"
    result = _run("status", "--env", "testing", "--set", f"paths.state_db={path}")
    assert result.exit_code == 1
    assert "not a usable SQLite database" in result.output


def test_state_db_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="is a directory"):
        db.open_db(tmp_path)


# --- the sky catalogue ---


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ("J1,489.9,10.0,1.0", "ra_deg value 489.9 is outside"),
        ("J1,-0.5,10.0,1.0", "ra_deg value -0.5 is outside"),
        ("J1,10.0,10.0,-5", "flux_jy value -5.0 is negative"),
        ("J1,10.0,95.0,1.0", "dec_deg value 95.0 is outside"),
    ],
)
def test_catalogue_values_out_of_range(tmp_path: Path, row: str, problem: str) -> None:
    path = tmp_path / "cat.csv"
    path.write_text(f"name,ra_deg,dec_deg,flux_jy\nJ0,1.0,10.0,1.0\n{row}\n")
    with pytest.raises(InputDataError, match=problem) as excinfo:
        load_catalog(path)
    assert f"{path}, line 3" in str(excinfo.value)


# --- measurement tables for `variables --input` ---

_HEADER = "source_name,mjd,flux_jy,flux_err_jy,flags\n"


@pytest.mark.parametrize("err", ["0", "-0.01", "nan"])
def test_non_positive_errors_are_refused(tmp_path: Path, err: str) -> None:
    path = tmp_path / "m.csv"
    rows = "".join(f"S1,{60000 + k},1.0,0.01,0\n" for k in range(5))
    path.write_text(_HEADER + rows + f"S1,60010,1.0,{err},0\n")
    with pytest.raises(InputDataError, match="flux_err_jy <= 0") as excinfo:
        read_measurements_csv(path)
    assert "lines 7" in str(excinfo.value)
    result = _run("variables", "--env", "testing", "--input", str(path))
    assert result.exit_code == 1 and "flux_err_jy" in result.output


def test_flagged_rows_may_lack_errors(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    rows = "".join(f"S1,{60000 + k},1.0,0.01,0\n" for k in range(5))
    path.write_text(_HEADER + rows + "S1,60010,nan,nan,1\n")
    assert len(read_measurements_csv(path)) == 6


def test_duplicate_epochs_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    rows = "".join(f"S1,{60000 + k},1.0,0.01,0\n" for k in range(5))
    path.write_text(_HEADER + rows + "S1,60002,1.5,0.01,0\n")
    with pytest.raises(InputDataError, match="two unflagged measurements") as exc:
        read_measurements_csv(path)
    assert "lines 4 and 7" in str(exc.value)
