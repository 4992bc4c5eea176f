"""The free-disk guard covers every data directory, once per filesystem (15.21).

Before, it measured only the incoming, MS, image and product directories, so
a full mosaics, calibration, light-curve, database or log filesystem never
paused intake. ``shutil.disk_usage`` is replaced per path; filesystems are
told apart by ``st_dev``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import namedtuple
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dsa110_contimg.services._intake import IntakeGate, data_directories
from dsa110_contimg.state import open_db
from dsa110_contimg.utils.config_loader import load_pipeline_config

Usage = namedtuple("Usage", "total used free")
GB = 1e9
NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture
def config(tmp_path: Path):
    layout = {
        "incoming_dir": "incoming",
        "ms_stage1_dir": "ms",
        "images_dir": "images",
        "products_dir": "products",
        "mosaics_dir": "mosaics",
        "log_dir": "logs",
        "cal_tables_dir": "cal",
        "state_db": "db/pipeline.sqlite3",
    }
    overrides = {f"paths.{k}": str(tmp_path / v) for k, v in layout.items()}
    overrides["variability.store_dir"] = str(tmp_path / "lightcurves")
    cfg = load_pipeline_config(environment="testing", overrides=overrides, env={})
    for d in ("incoming", "ms", "images", "products", "mosaics", "logs", "cal", "db"):
        (tmp_path / d).mkdir()
    (tmp_path / "lightcurves").mkdir()
    return cfg


def _fake_disk_usage(monkeypatch, free_by_path: dict[Path, float]) -> list[Path]:
    """Replace ``shutil.disk_usage``: ``free_by_path`` GB, else 1000 GB."""
    calls: list[Path] = []

    def usage(path):
        calls.append(Path(path))
        free = free_by_path.get(Path(path), 1000.0)
        return Usage(2000 * GB, (2000 - free) * GB, free * GB)

    monkeypatch.setattr(shutil, "disk_usage", usage)
    return calls


@pytest.mark.parametrize(
    "low",
    ["mosaics", "cal", "lightcurves", "db", "logs", "ms", "incoming"],
)
def test_each_data_directory_pauses_intake(config, tmp_path, monkeypatch, low):
    dirs = data_directories(config)
    assert tmp_path / low in dirs
    _fake_disk_usage(monkeypatch, {tmp_path / low: 0.7})
    devices = {d: i for i, d in enumerate(dirs)}  # each on its own filesystem
    with closing(open_db(Path(config.paths.state_db))) as conn:
        gate = IntakeGate(conn, dirs, min_free_disk_gb=5, device_of=devices.__getitem__)
        status = gate.update(NOW)
    assert status.is_low and not gate.is_open
    assert f"free disk 0.7 GB at {tmp_path / low} is below" in status.reason
    assert "watcher.min_free_disk_gb = 5 GB" in status.reason
    assert len(status.free_gb) == len(dirs)


def test_one_filesystem_is_measured_once(config, tmp_path, monkeypatch) -> None:
    dirs = data_directories(config)
    calls = _fake_disk_usage(monkeypatch, {tmp_path / "incoming": 1.2})
    with closing(open_db(Path(config.paths.state_db))) as conn:
        status = IntakeGate(conn, dirs, min_free_disk_gb=5).update(NOW)
    assert calls == [tmp_path / "incoming"], "one mount, one measurement"
    assert list(status.free_gb) == [str(tmp_path / "incoming")]
    assert status.is_low
    assert f"free disk 1.2 GB at {tmp_path / 'incoming'} (same filesystem as" in (
        status.reason
    )
    assert str(tmp_path / "mosaics") in status.reason


def test_a_real_second_filesystem_is_measured_on_its_own(
    config, tmp_path, monkeypatch
) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second filesystem (/dev/shm) to put mosaics on")
    with tempfile.TemporaryDirectory(dir=shm) as other:
        mosaics = Path(other) / "mosaics"
        dirs = [*data_directories(config), mosaics]  # missing: its parent counts
        calls = _fake_disk_usage(monkeypatch, {Path(other): 0.3})
        with closing(open_db(Path(config.paths.state_db))) as conn:
            status = IntakeGate(conn, dirs, min_free_disk_gb=5).update(NOW)
        assert sorted(calls) == sorted([tmp_path / "incoming", Path(other)])
        assert status.is_low
        assert f"free disk 0.3 GB at {mosaics} is below" in status.reason
