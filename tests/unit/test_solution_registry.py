"""The calibration registry: SQLite and in-memory give the same choices.

Known truth: a solution of a transit at MJD 60000.5 with ``validity_hours``
6 is valid 6 h either side, from MJD 60000.25 to 60000.75; inside that window
(and on its strip) it is reused, outside it (or on another strip) it is
refused by name.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

from dsa110_contimg.exceptions import CalibrationError, DataQualityWarning
from dsa110_contimg.state.calibration import (
    InMemorySolutionRegistry,
    SolutionRegistry,
    SqliteSolutionRegistry,
    open_solution_registry,
)
from dsa110_contimg.state.db import connect

TRANSIT = 60000.5
HOUR = 1 / 24


def _register(registry: SolutionRegistry, **changes: object):
    fields: dict[str, object] = {
        "calibrator": "3C286",
        "group_id": "2023-06-01T12:00:00",
        "ms_path": Path("/data/ms/2023-06-01T12:00:00.ms"),
        "tables": [Path("/cal/g_3C286.bcal"), Path("/cal/g_3C286.gcal")],
        "refant": "24",
        "dec_strip_deg": np.float64(30.5),  # as read from an MS
        "transit_mjd": np.float64(TRANSIT),
        "validity_hours": 6.0,
        "quality": {"bandpass_flagged_fraction": np.float64(0.02), "refant_how": "x"},
    }
    fields.update(changes)
    return registry.register(**fields)  # type: ignore[arg-type]


def _select(registry: SolutionRegistry, time_mjd: float, dec_deg: float = 30.5):
    return registry.select(
        time_mjd=time_mjd,
        dec_deg=dec_deg,
        dec_tolerance_deg=0.5,
        aging_warn_hours=4.0,
        what="block_T",
    )


@pytest.fixture(
    params=["sqlite", "memory", pytest.param("postgresql", marks=pytest.mark.scaleout)]
)
def registry(request, tmp_path: Path) -> Iterator[SolutionRegistry]:
    if request.param == "memory":
        yield InMemorySolutionRegistry()
        return
    target = (
        request.getfixturevalue("postgres_url")
        if request.param == "postgresql"
        else tmp_path / "db.sqlite3"
    )
    with open_solution_registry(target) as sqlite_registry:
        yield sqlite_registry


def test_reuse_within_validity_and_refusal_outside(registry: SolutionRegistry):
    solution = _register(registry)
    assert (solution.valid_from_mjd, solution.valid_to_mjd) == pytest.approx(
        (TRANSIT - 0.25, TRANSIT + 0.25), abs=1e-9
    )
    assert registry.find(calibrator="3C286", group_id=solution.group_id) == solution
    assert registry.find(calibrator="3C286", group_id="other") is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 3 h from transit: not aging yet
        assert _select(registry, TRANSIT + 3 * HOUR) == solution
    with pytest.warns(DataQualityWarning, match="5.0 h from its transit"):
        assert _select(registry, TRANSIT - 5 * HOUR) == solution
    with pytest.raises(CalibrationError, match=r"block_T.*\(7\.0 h away\)"):
        _select(registry, TRANSIT + 7 * HOUR)  # expired
    with pytest.raises(CalibrationError) as info:
        _select(registry, TRANSIT, dec_deg=54.6)  # another strip, in time
    assert "54.60" in str(info.value)
    assert "g_3C286.bcal" in str(info.value)


def test_empty_registry_says_so(registry: SolutionRegistry):
    with pytest.raises(CalibrationError, match="no calibration tables registered"):
        _select(registry, TRANSIT)


def test_nearest_transit_wins_and_reregistering_keeps_the_id(registry):
    first = _register(registry)
    later = _register(
        registry,
        group_id="2023-06-01T18:00:00",
        transit_mjd=TRANSIT + 6 * HOUR,
        tables=[Path("/cal/h.bcal"), Path("/cal/h.gcal")],
    )
    assert later.id != first.id
    assert _select(registry, TRANSIT + 2 * HOUR) == first
    assert _select(registry, TRANSIT + 4 * HOUR) == later
    redone = _register(registry, refant="31", quality={"refant_how": "fallback"})
    assert redone.id == first.id
    assert registry.find(calibrator="3C286", group_id=first.group_id) == redone
    assert redone.describe() == (
        "3C286@2023-06-01T12:00:00 dec 30.50 refant 31 (fallback) "
        "[g_3C286.bcal, g_3C286.gcal]"
    )


def test_both_registries_return_equal_solutions(tmp_path: Path):
    memory = InMemorySolutionRegistry()
    with open_solution_registry(tmp_path / "db.sqlite3") as sqlite_registry:
        for registry in (memory, sqlite_registry):
            _register(registry)
            _register(registry, group_id="g2", transit_mjd=TRANSIT + 0.1)
        for t in (TRANSIT - 0.2, TRANSIT + 0.04, TRANSIT + 0.06, TRANSIT + 0.3):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DataQualityWarning)
                assert _select(memory, t) == _select(sqlite_registry, t)
        mem, sql = (
            r.find(calibrator="3C286", group_id="g2") for r in (memory, sqlite_registry)
        )
        assert mem == sql
        assert type(mem.quality["bandpass_flagged_fraction"]) is float


def test_applications_are_recorded(state_target):
    db = state_target
    memory = InMemorySolutionRegistry()
    with open_solution_registry(db) as sqlite_registry:
        for registry in (memory, sqlite_registry):
            solution = _register(registry)
            registry.record_application(
                ms_path=Path("/ms/a.ms"), solution_id=solution.id
            )
    assert memory.applications == {"/ms/a.ms": solution.id}
    with closing(connect(db, readonly=True)) as conn:
        rows = conn.execute(
            "SELECT ms_path, solution_id FROM cal_applications"
        ).fetchall()
    assert [tuple(r) for r in rows] == [("/ms/a.ms", solution.id)]
    from dsa110_contimg.exceptions import StateError

    with pytest.raises(StateError, match="id 99"):
        memory.record_application(ms_path=Path("/ms/b.ms"), solution_id=99)


def test_in_memory_registry_seeded_from_the_database(tmp_path: Path):
    with open_solution_registry(tmp_path / "db.sqlite3") as sqlite_registry:
        stored = _register(sqlite_registry)
        assert isinstance(sqlite_registry, SqliteSolutionRegistry)
    seeded = InMemorySolutionRegistry([stored])
    assert _select(seeded, TRANSIT) == stored
    fresh = _register(seeded, group_id="g9")
    assert fresh.id == stored.id + 1


def test_orchestrator_hands_calibrate_block_the_database_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The stage opens no database: the orchestrator passes the state db's registry."""
    from dsa110_contimg.pipeline import _block_work
    from dsa110_contimg.pipeline.stages import calibration_stage
    from dsa110_contimg.state.db import database_file
    from dsa110_contimg.utils.config_loader import load_pipeline_config

    db = tmp_path / "state" / "db.sqlite3"
    config = load_pipeline_config(
        environment="testing", overrides={"paths.state_db": str(db)}, env={}
    )
    seen: dict[str, object] = {}

    def calibrate(ms_paths, cfg, *, cal_tables_dir, registry, block_id, sky_model):
        seen["db"] = database_file(registry.conn)
        seen["block_id"] = block_id
        outcome = calibration_stage.CalibrationOutcome()
        outcome.solved.append(_register(registry))
        return outcome

    monkeypatch.setattr(calibration_stage, "calibrate_block", calibrate)
    applied, errors, tables = _block_work._calibrate_block_claimed(
        [], config, "block_X", None
    )
    assert seen == {"db": str(db.resolve()), "block_id": "block_X"}
    assert (applied, errors) == ({}, {})
    assert tables == ["/cal/g_3C286.bcal", "/cal/g_3C286.gcal"]
    with open_solution_registry(db) as registry:  # it reached the file
        assert registry.find(calibrator="3C286", group_id="2023-06-01T12:00:00")
