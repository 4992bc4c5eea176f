"""Tests of the structured logging helpers."""

from __future__ import annotations

import io
import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from dsa110_contimg.utils.logging import (
    bind_context,
    configure_logging,
    get_context,
    reset_logging,
)

LOGGER_NAME = "dsa110_contimg.tests.logging"


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root = logging.getLogger("dsa110_contimg")
    level = root.level
    buffer = io.StringIO()
    yield buffer
    reset_logging()
    root.setLevel(level)
    logging.getLogger("py.warnings").setLevel(logging.NOTSET)


def _emit() -> None:
    with bind_context(block_id="blk-7", stage="convert"):
        logging.getLogger(LOGGER_NAME).info(
            "ms written", extra={"path": "/data/a.ms", "duration_s": 1.5}
        )


def test_json_line_has_message_extra_and_context(stream: io.StringIO) -> None:
    configure_logging("INFO", fmt="json", stream=stream)
    _emit()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["message"] == "ms written"
    assert record["level"] == "INFO"
    assert record["logger"] == LOGGER_NAME
    assert record["path"] == "/data/a.ms"
    assert record["duration_s"] == 1.5
    assert record["block_id"] == "blk-7"
    assert record["stage"] == "convert"
    assert record["time"].endswith("+00:00")


def test_console_line_shows_context_and_extra(stream: io.StringIO) -> None:
    configure_logging("INFO", fmt="console", stream=stream)
    _emit()
    line = stream.getvalue().strip()
    assert "INFO" in line
    assert "[block=blk-7 stage=convert]" in line
    assert "ms written" in line
    assert "path=/data/a.ms" in line
    assert "duration_s=1.5" in line


def test_configure_is_idempotent(stream: io.StringIO) -> None:
    configure_logging("INFO", fmt="console", stream=stream)
    configure_logging("INFO", fmt="console", stream=stream)
    logging.getLogger(LOGGER_NAME).info("once")
    assert stream.getvalue().count("once") == 1


def test_level_filters(stream: io.StringIO) -> None:
    configure_logging("WARNING", fmt="console", stream=stream)
    logging.getLogger(LOGGER_NAME).info("hidden")
    logging.getLogger(LOGGER_NAME).warning("shown")
    assert "hidden" not in stream.getvalue()
    assert "shown" in stream.getvalue()


def test_bind_context_nests_and_restores() -> None:
    assert get_context() == {}
    with bind_context(block_id="a"):
        with bind_context(stage="image"):
            assert get_context() == {"block_id": "a", "stage": "image"}
        assert get_context() == {"block_id": "a"}
    assert get_context() == {}


def test_log_file_gets_json(stream: io.StringIO, tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "pipeline.log"
    configure_logging("INFO", fmt="console", log_file=log_file, stream=stream)
    _emit()
    reset_logging()
    record = json.loads(log_file.read_text(encoding="utf-8").splitlines()[0])
    assert record["path"] == "/data/a.ms"
    assert record["block_id"] == "blk-7"


def test_warnings_reach_log_stream(stream: io.StringIO) -> None:
    configure_logging("INFO", fmt="console", stream=stream)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        with bind_context(stage="photometry"):
            warnings.warn("no sources detected", UserWarning, stacklevel=1)
    assert "no sources detected" in stream.getvalue()
    assert "stage=photometry" in stream.getvalue()


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="level"):
        configure_logging("LOUD")
    with pytest.raises(ValueError, match="fmt"):
        configure_logging("INFO", fmt="xml")  # type: ignore[arg-type]


def _worker_job(value: int) -> int:
    """Runs in a spawned pool worker: log inside a bound context, and warn."""
    with bind_context(block_id="blk-9", stage="flag", group="2023-06-01T00:00:00"):
        logging.getLogger(LOGGER_NAME).info("worker record", extra={"value": value})
        warnings.warn("worker warning", UserWarning, stacklevel=1)
    return value


def _run_in_pool(initializer, initargs) -> int:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(
        1,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=initializer,
        initargs=initargs,
    ) as pool:
        return pool.submit(_worker_job, 41).result(timeout=60)


def test_worker_records_reach_parent_console_and_file(
    stream: io.StringIO, tmp_path: Path
) -> None:
    from dsa110_contimg.utils.logging import init_worker_logging, worker_logging_args

    log_file = tmp_path / "logs" / "run.log"
    configure_logging("INFO", fmt="console", stream=stream, log_file=log_file)
    assert _run_in_pool(init_worker_logging, worker_logging_args()) == 41
    reset_logging()  # stops the listener after it handed everything on
    console = stream.getvalue()
    line = next(x for x in console.splitlines() if "worker record" in x)
    assert "[block=blk-9 stage=flag group=2023-06-01T00:00:00]" in line
    assert "value=41" in line
    assert "worker warning" in console
    records = [json.loads(x) for x in log_file.read_text().splitlines()]
    record = next(r for r in records if r["message"] == "worker record")
    assert record["block_id"] == "blk-9"
    assert record["stage"] == "flag"
    assert record["value"] == 41


def test_worker_without_forwarding_logs_nothing_to_parent(stream: io.StringIO) -> None:
    configure_logging("INFO", fmt="console", stream=stream)
    assert _run_in_pool(None, ()) == 41
    assert "worker record" not in stream.getvalue()


def test_service_pool_forwards_worker_records(stream: io.StringIO) -> None:
    pytest.importorskip("psutil")
    from dsa110_contimg.services._pool import make_process_pool

    configure_logging("INFO", fmt="console", stream=stream)
    pool = make_process_pool(1)
    try:
        assert pool.submit(_worker_job, 7).result(timeout=60) == 7
    finally:
        pool.shutdown(wait=True)
    reset_logging()
    assert "[block=blk-9 stage=flag" in stream.getvalue()
    assert "value=7" in stream.getvalue()


def test_console_level_separate_from_file(stream: io.StringIO, tmp_path: Path) -> None:
    log_file = tmp_path / "run.log"
    configure_logging("INFO", stream=stream, log_file=log_file, console_level="WARNING")
    logging.getLogger(LOGGER_NAME).info("progress line")
    logging.getLogger(LOGGER_NAME).warning("problem line")
    reset_logging()
    assert "progress line" not in stream.getvalue()
    assert "problem line" in stream.getvalue()
    assert "progress line" in log_file.read_text()


def test_log_file_rotates(stream: io.StringIO, tmp_path: Path, monkeypatch) -> None:
    import dsa110_contimg.utils.logging as logmod

    monkeypatch.setattr(logmod, "_LOG_FILE_MAX_BYTES", 2_000)
    log_file = tmp_path / "run.log"
    configure_logging("INFO", stream=stream, log_file=log_file)
    for i in range(100):
        logging.getLogger(LOGGER_NAME).info("line", extra={"i": i})
    reset_logging()
    assert (tmp_path / "run.log.1").is_file()
    assert log_file.stat().st_size <= 2_000


def test_route_casa_log_before_import(tmp_path: Path) -> None:
    pytest.importorskip("casatasks")
    import subprocess
    import sys

    target = tmp_path / "logs" / "casa.log"
    code = (
        "import sys; from pathlib import Path\n"
        "from dsa110_contimg.utils.logging import route_casa_log\n"
        "route_casa_log(Path(sys.argv[1]))\n"
        "import casatasks\n"
        "casatasks.casalog.post('routed')\n"
        "print(casatasks.casalog.logfile())\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, str(target)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert run.stdout.strip().splitlines()[-1] == str(target)
    assert "routed" in target.read_text()
    assert not list(tmp_path.glob("casa-*.log"))  # nothing in the working directory
