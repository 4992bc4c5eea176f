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
