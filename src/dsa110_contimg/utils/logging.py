"""Structured logging: JSON lines, readable console lines and bound context.

Library code only does ``log = logging.getLogger(__name__)`` and passes data
as fields, ``log.info("ms written", extra={"path": str(p), "duration_s": dt})``.
Services and the CLI call :func:`configure_logging` once. :func:`bind_context`
sets context variables (``block_id``, ``stage``, ``group``, ``job_id``, ...)
that a filter on the installed handlers copies onto every record, so both
formatters show them without the caller repeating them.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Literal, TextIO

__all__ = [
    "ROOT_LOGGER_NAME",
    "ContextFilter",
    "JsonFormatter",
    "ConsoleFormatter",
    "configure_logging",
    "reset_logging",
    "bind_context",
    "get_context",
    "record_context",
    "record_extra",
]

ROOT_LOGGER_NAME = "dsa110_contimg"
"""Logger that :func:`configure_logging` attaches its handlers to."""

_CONTEXT: ContextVar[Mapping[str, object]] = ContextVar(
    "dsa110_log_context", default=MappingProxyType({})
)
_CONTEXT_KEYS_ATTR = "_dsa110_context_keys"
_HANDLER_MARK = "_dsa110_handler"
_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    _CONTEXT_KEYS_ATTR,
}
_CONSOLE_ALIASES = {"block_id": "block", "job_id": "job"}


@contextmanager
def bind_context(**fields: object) -> Iterator[None]:
    """Add fields to every log record emitted inside the ``with`` block.

    Parameters
    ----------
    **fields
        Context values such as ``block_id``, ``stage``, ``group`` or
        ``job_id``. Nested bindings add to (and may shadow) outer ones; the
        outer context is restored on exit. Safe across threads and asyncio
        tasks (backed by :mod:`contextvars`).

    Yields
    ------
    None
    """
    token = _CONTEXT.set(MappingProxyType({**_CONTEXT.get(), **fields}))
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def get_context() -> dict[str, object]:
    """Return a copy of the currently bound context fields."""
    return dict(_CONTEXT.get())


class ContextFilter(logging.Filter):
    """Copy the bound context onto each record; explicit ``extra=`` keys win."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Attach the context fields and let the record through."""
        context = _CONTEXT.get()
        keys = []
        for key, value in context.items():
            if key not in record.__dict__ or key in getattr(
                record, _CONTEXT_KEYS_ATTR, ()
            ):
                setattr(record, key, value)
                keys.append(key)
        setattr(record, _CONTEXT_KEYS_ATTR, tuple(keys))
        return True


def record_context(record: logging.LogRecord) -> dict[str, object]:
    """Return the bound context fields carried by `record`."""
    keys = getattr(record, _CONTEXT_KEYS_ATTR, None)
    if keys is None:  # record did not pass a ContextFilter
        return get_context()
    return {key: record.__dict__[key] for key in keys if key in record.__dict__}


def record_extra(record: logging.LogRecord) -> dict[str, object]:
    """Return the ``extra=`` fields of `record` (non-standard, non-context)."""
    context_keys = set(getattr(record, _CONTEXT_KEYS_ATTR, ()))
    return {
        key: value
        for key, value in record.__dict__.items()
        if key not in _STANDARD_ATTRS and key not in context_keys
    }


def _json_default(value: object) -> object:
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        try:
            return item()
        except (TypeError, ValueError):
            pass
    return str(value)


class JsonFormatter(logging.Formatter):
    """Format each record as one JSON object on one line.

    Keys: ``time`` (UTC ISO 8601), ``level``, ``logger``, ``message``, then
    the bound context fields and the ``extra=`` fields, and ``exception`` /
    ``stack`` when present. Values JSON cannot hold are written with ``str``.
    """

    def format(self, record: logging.LogRecord) -> str:
        """Render `record` as a JSON line (without the newline)."""
        payload: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage().rstrip(),
        }
        for key, value in {**record_context(record), **record_extra(record)}.items():
            payload.setdefault(key, value)
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            payload["stack"] = self.formatStack(record.stack_info)
        return json.dumps(payload, default=_json_default)


def _console_value(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    text = str(value)
    return repr(text) if (not text or any(c.isspace() for c in text)) else text


class ConsoleFormatter(logging.Formatter):
    """Format records as ``HH:MM:SS LEVEL [block=.. stage=..] message key=value``.

    Times are UTC. ``block_id`` and ``job_id`` are shown as ``block`` and
    ``job``; tracebacks follow on the next lines.
    """

    def format(self, record: logging.LogRecord) -> str:
        """Render `record` as a readable line."""
        stamp = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S")
        parts = [stamp, f"{record.levelname:<7}"]
        context = record_context(record)
        if context:
            inner = " ".join(
                f"{_CONSOLE_ALIASES.get(k, k)}={_console_value(v)}"
                for k, v in context.items()
            )
            parts.append(f"[{inner}]")
        parts.append(record.getMessage().rstrip())
        parts += [f"{k}={_console_value(v)}" for k, v in record_extra(record).items()]
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


def _make_handler(
    handler: logging.Handler, formatter: logging.Formatter
) -> logging.Handler:
    handler.setFormatter(formatter)
    handler.addFilter(ContextFilter())
    setattr(handler, _HANDLER_MARK, True)
    return handler


def configure_logging(
    level: str | int = "INFO",
    *,
    fmt: Literal["console", "json"] = "console",
    log_file: Path | None = None,
    stream: TextIO | None = None,
) -> None:
    """Install the pipeline's log handlers on the ``dsa110_contimg`` logger.

    Parameters
    ----------
    level : str or int, optional
        Lowest level emitted (``"DEBUG"``, ``"INFO"``, ``"WARNING"``,
        ``"ERROR"`` or a :mod:`logging` constant).
    fmt : {"console", "json"}, optional
        Format of the stream handler. The file handler always writes JSON
        lines.
    log_file : Path, optional
        Also append to this file (parent directories are created).
    stream : text stream, optional
        Destination of the stream handler; default ``sys.stderr``.

    Notes
    -----
    Idempotent: handlers installed by an earlier call are closed and replaced;
    handlers added by anyone else are left alone. The same handlers go on the
    ``py.warnings`` logger, and ``logging.captureWarnings(True)`` is called so
    :class:`~dsa110_contimg.pipeline.exceptions.DataQualityWarning` and other
    warnings reach the log stream.
    """
    if fmt not in ("console", "json"):
        msg = f"fmt must be 'console' or 'json', got {fmt!r}"
        raise ValueError(msg)
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(numeric, int):
        msg = f"unknown log level {level!r}; use DEBUG, INFO, WARNING or ERROR"
        raise ValueError(msg)
    formatter = JsonFormatter() if fmt == "json" else ConsoleFormatter()
    handlers = [_make_handler(logging.StreamHandler(stream or sys.stderr), formatter)]
    if log_file is not None:
        log_file = Path(log_file).expanduser()
        log_file.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(log_file, encoding="utf-8")
        handlers.append(_make_handler(file_handler, JsonFormatter()))
    for name in (ROOT_LOGGER_NAME, "py.warnings"):
        logger = logging.getLogger(name)
        _remove_own_handlers(logger)
        for handler in handlers:
            logger.addHandler(handler)
        logger.setLevel(numeric)
    logging.captureWarnings(True)


def reset_logging() -> None:
    """Remove and close the handlers :func:`configure_logging` installed.

    Also calls ``logging.captureWarnings(False)``. Handlers added by anyone
    else and logger levels are left as they are.
    """
    for name in (ROOT_LOGGER_NAME, "py.warnings"):
        _remove_own_handlers(logging.getLogger(name))
    logging.captureWarnings(False)


def _remove_own_handlers(logger: logging.Logger) -> None:
    for old in [h for h in logger.handlers if getattr(h, _HANDLER_MARK, False)]:
        logger.removeHandler(old)
        old.close()
