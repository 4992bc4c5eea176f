"""`tools._imager_run.run_imager`: timeout and cancellation kill the program."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from dsa110_contimg.exceptions import ImagingError
from dsa110_contimg.tools import _imager_run


def _script(tmp_path: Path) -> Path:
    """A wrapper that starts a long child (like a WSClean wrapper script)."""
    path = tmp_path / "imager.sh"
    path.write_text(f"#!/bin/sh\nsleep 60 &\necho $! > {tmp_path}/child.pid\nwait\n")
    path.chmod(0o755)
    return path


def _run(tmp_path: Path, timeout_s: float = 60.0) -> None:
    _imager_run.run_imager(
        [str(_script(tmp_path))],
        program="Fake",
        ms_path=tmp_path / "x.ms",
        log_path=tmp_path / "x.log",
        timeout_s=timeout_s,
        cwd=tmp_path,
        expected=tmp_path / "x-image.fits",
    )


def _child_alive(tmp_path: Path) -> bool:
    import psutil

    try:
        child = psutil.Process(int((tmp_path / "child.pid").read_text()))
        return child.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_cancelled_task_kills_the_imager_and_its_children(tmp_path, monkeypatch):
    pytest.importorskip("psutil")
    t0 = time.monotonic()
    calls = []

    def cancelled() -> bool:
        calls.append(1)
        return len(calls) >= 2  # cancelled at the second poll

    monkeypatch.setattr(_imager_run, "_cancel_check", cancelled)
    with pytest.raises(ImagingError, match="was cancelled"):
        _run(tmp_path)
    assert time.monotonic() - t0 < 10
    time.sleep(0.2)
    assert not _child_alive(tmp_path)


def test_timeout_still_kills_with_a_cancel_check(tmp_path, monkeypatch):
    monkeypatch.setattr(_imager_run, "_cancel_check", lambda: False)
    t0 = time.monotonic()
    with pytest.raises(ImagingError, match="timed out after 1"):
        _run(tmp_path, timeout_s=1.0)
    assert time.monotonic() - t0 < 10


def test_no_cancel_check_runs_to_the_end(tmp_path, monkeypatch):
    monkeypatch.setattr(_imager_run, "_cancel_check", None)
    with pytest.raises(ImagingError, match="timed out after 1"):
        _run(tmp_path, timeout_s=1.0)
