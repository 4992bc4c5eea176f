"""The one table vocabulary: declarations, README tables, the photometry CSV."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from dsa110_contimg import tables
from dsa110_contimg.exceptions import DataQualityWarning, InputDataError
from dsa110_contimg.tables import (
    JOBS,
    LIGHTCURVE_STORE,
    PHOTOMETRY,
    PHOTOMETRY_COLUMNS,
    TABLES,
    VARIABILITY_RESULTS,
    Column,
    TableSpec,
    photometry_table,
    read_photometry_table,
    write_photometry_table,
)
from dsa110_contimg.tables._readme import readme_tables, render_readme

README = Path(__file__).resolve().parents[2] / "README.md"
SRC = Path(__file__).resolve().parents[2] / "src"


def test_readme_tables_are_generated_from_the_declarations() -> None:
    text = README.read_text(encoding="utf-8")
    assert readme_tables(text) == [
        "photometry",
        "lightcurve_store",
        "variability_results",
        "jobs",
        "metrics",
    ]
    assert render_readme(text) == text, (
        "README tables of columns are out of date: run "
        "python -m dsa110_contimg.tables --readme README.md"
    )


def test_a_column_added_without_regenerating_is_caught(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    text = README.read_text(encoding="utf-8")
    grown = TableSpec(
        "photometry",
        PHOTOMETRY.title,
        (*PHOTOMETRY.columns, Column("new_col_jy", "float64", "Jy", "a new column")),
    )
    monkeypatch.setitem(TABLES, "photometry", grown)
    rendered = render_readme(text)
    assert rendered != text and "`new_col_jy` | float64 | Jy | a new column" in rendered
    stale = tmp_path / "README.md"
    stale.write_text(text.replace("| `flux_sys_jy`", "| `flux_sys`"), encoding="utf-8")
    check = [sys.executable, "-m", "dsa110_contimg.tables", "--readme", str(stale)]
    env = {"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"}
    assert subprocess.run([*check, "--check"], env=env).returncode == 1
    assert subprocess.run(check, env=env).returncode == 0
    assert stale.read_text(encoding="utf-8") == text


def test_column_declarations_are_checked() -> None:
    with pytest.raises(ValueError, match="dtype"):
        Column("flux_jy", "float", "Jy")
    with pytest.raises(ValueError, match="declared twice"):
        TableSpec("t", "t", (Column("a", "str"), Column("a", "str")))
    with pytest.raises(KeyError, match="no column"):
        PHOTOMETRY.subset(["source_name", "name"])


def test_one_definition_per_column_name() -> None:
    """A name shared by several tables is declared once and means the same."""
    seen: dict[str, Column] = {}
    for spec in TABLES.values():
        for column in spec.columns:
            assert seen.setdefault(column.name, column) is column, column.name


def test_photometry_csv_bytes_and_types(tmp_path: Path) -> None:
    row = {
        "source_name": ["007", "J1"],
        "ra_deg": [150.0, 150.1],
        "dec_deg": [40.0, 40.1],
        "flux_jy": [0.1, np.nan],
        "flux_err_jy": [0.001, np.nan],
        "peak_jy": [0.099, np.nan],
        "rms_jy": [0.0009, 0.001],
        "snr": [100.0, np.nan],
        "pb": [0.9, 0.8],
        "flags": [0, 1],
        "mjd": 60096.00214467395,
        "freq_hz": 1.405e9,
        "image_kind": "image",
        "image_path": "/p/drift_20230601T000037_00-image.fits",
        "image_id": "drift_20230601T000037_00",
        "pointing_dec_deg": 37.0,
        "upper_limit_jy": [np.nan, np.nan],
        "flux_sys_jy": [1e-4, np.nan],
    }
    table = photometry_table(row)
    assert tuple(table.colnames) == PHOTOMETRY_COLUMNS
    path = write_photometry_table([table], tmp_path / "p.csv")
    # the file format of earlier versions, byte for byte
    assert path.read_bytes().decode() == (
        ",".join(PHOTOMETRY_COLUMNS) + "\r\n"
        "007,150.0,40.0,0.1,0.001,0.099,0.0009,100.0,0.9,0,60096.00214467395,"
        "1405000000.0,image,/p/drift_20230601T000037_00-image.fits,"
        "drift_20230601T000037_00,37.0,nan,0.0001\r\n"
        "J1,150.1,40.1,nan,nan,nan,0.001,nan,0.8,1,60096.00214467395,"
        "1405000000.0,image,/p/drift_20230601T000037_00-image.fits,"
        "drift_20230601T000037_00,37.0,nan,nan\r\n"
    )
    back = read_photometry_table(path)
    assert back["source_name"].tolist() == ["007", "J1"]  # text, not the number 7
    for column in PHOTOMETRY.columns:
        assert back[column.name].dtype.kind == np.dtype(column.dtype).kind
    assert back["mjd"][0] == 60096.00214467395


def test_photometry_rows_need_every_column() -> None:
    with pytest.raises(ValueError, match="missing column"):
        photometry_table({"source_name": ["a"]})


def test_reader_skips_bad_rows_and_refuses_non_tables(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text(
        "source_name,mjd,flux_jy,flux_err_jy,flags,epoch_id,note\n"
        "A,60000.5,1.0,0.01,,60000,x\n"
        "B,oops,1.0,0.01,0,60000,\n"
        "C,60000.5,1.0\n"
    )
    with pytest.warns(DataQualityWarning, match=r"2 malformed row\(s\) \(lines 3, 4\)"):
        table = read_photometry_table(path)
    assert len(table) == 1 and table["flags"][0] == 0
    assert table["epoch_id"].tolist() == ["60000"]  # a declared text column
    assert table["note"].tolist() == ["x"]  # undeclared, not a number: text
    bad = tmp_path / "bad.csv"
    bad.write_text("name,mjd\nA,1\n")
    with pytest.raises(InputDataError, match="lacks column"):
        read_photometry_table(bad)
    with pytest.raises(InputDataError, match="cannot be read"):
        read_photometry_table(tmp_path / "absent.csv")


def test_store_schema_is_the_declared_one() -> None:
    pa = pytest.importorskip("pyarrow")
    from dsa110_contimg.lightcurves import STORE_COLUMNS
    from dsa110_contimg.lightcurves._schema import SCHEMA

    assert LIGHTCURVE_STORE.names == STORE_COLUMNS
    text = {"source_name", "epoch_id", "image_path", "image_kind", "image_id"}
    for field in SCHEMA:
        expected = (
            pa.string()
            if field.name in text
            else pa.int32()
            if field.name == "flags"
            else pa.float64()
        )
        assert field.type == expected, field.name


def test_jobs_declaration_matches_the_database_and_job(tmp_path: Path) -> None:
    from dsa110_contimg.state.db import connect, migrate
    from dsa110_contimg.state.jobs import Job

    with closing(connect(tmp_path / "s.db")) as conn:
        migrate(conn)
        info = conn.execute("PRAGMA table_info(jobs)").fetchall()
    assert tuple(row[1] for row in info) == JOBS.names
    sql_types = {"INTEGER": ("int64",), "TEXT": ("str",)}
    for _, name, sql_type, *_ in info:
        assert JOBS[name].dtype in sql_types[sql_type], name
    fields = tuple(f.name for f in dataclasses.fields(Job))
    assert fields == tuple(n.removesuffix("_json") for n in JOBS.names)


def test_variability_results_have_the_declared_columns() -> None:
    from dsa110_contimg.variability import analyze_lightcurves

    rng = np.random.default_rng(1)
    n_epochs = 30
    table = Table(
        {
            "source_name": np.repeat(["A", "B"], n_epochs),
            "mjd": np.tile(60000.0 + np.arange(n_epochs), 2),
            "flux_jy": rng.normal(1.0, 0.01, 2 * n_epochs),
            "flux_err_jy": np.full(2 * n_epochs, 0.01),
        }
    )
    result = analyze_lightcurves(table)
    assert tuple(result.colnames) == VARIABILITY_RESULTS.names
    for column in VARIABILITY_RESULTS.columns:
        assert result[column.name].dtype.kind == np.dtype(column.dtype).kind


def test_science_imports_no_pipeline() -> None:
    code = (
        "import sys, dsa110_contimg.lightcurves, dsa110_contimg.variability, "
        "dsa110_contimg.tables, dsa110_contimg.data_ingestion.photometry; "
        "bad = [m for m in sys.modules if m.startswith(('dsa110_contimg.pipeline', "
        "'dsa110_contimg.state', 'dsa110_contimg.services', 'dsa110_contimg.cli'))]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    env = {"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_package_exports() -> None:
    assert set(tables.__all__) <= set(dir(tables))


def test_status_lists_jobs_with_the_declared_columns(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from dsa110_contimg.exceptions import ResourceError
    from dsa110_contimg.services._status import queue_status
    from dsa110_contimg.state.db import connect, migrate
    from dsa110_contimg.state.jobs import (
        CONVERT_GROUP,
        JobSpec,
        claim_job,
        enqueue_job,
        record_failure,
    )
    from dsa110_contimg.tables import JOB_LISTINGS

    now = datetime(2023, 6, 1, tzinfo=UTC)
    with closing(connect(tmp_path / "s.db")) as conn:
        migrate(conn)
        for key, attempts in (("a", 5), ("b", 1)):
            spec = JobSpec(CONVERT_GROUP, key, "2023-06-01T00:00:00")
            enqueue_job(conn, spec, now=now, max_attempts=attempts)
        enqueue_job(
            conn,
            JobSpec(CONVERT_GROUP, "q", "2023-06-01T00:00:00", {"files": ["x"]}),
            now=now,
            quarantine_reason="bad input",
        )
        running = claim_job(conn, worker="w1", now=now, lease_s=60.0)
        failing = claim_job(conn, worker="w2", now=now, lease_s=60.0)
        record_failure(
            conn,
            failing.id,
            ResourceError("disk full"),
            worker="w2",
            now=now,
            backoff_base_s=1.0,
            backoff_max_s=1.0,
        )
        report = queue_status(conn, now=now)
    for field, state in (
        ("running_jobs", "running"),
        ("quarantine", "quarantined"),
        ("failed_jobs", "failed"),
    ):
        (job,) = report[field]
        assert tuple(job) == JOB_LISTINGS[state]
    assert report["running_jobs"][0]["lease_owner"] == "w1"
    assert report["running_jobs"][0]["key"] == running.key
    assert report["quarantine"][0]["payload_json"] == {"files": ["x"]}
    assert report["failed_jobs"][0]["error_class"] == "ResourceError"
