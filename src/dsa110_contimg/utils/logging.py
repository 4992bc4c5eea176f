"""Structured logging: JSON lines, readable console lines and bound context.

Library code only does ``log = logging.getLogger(__name__)`` and passes data
as fields, ``log.info("ms written", extra={"path": str(p), "duration_s": dt})``.
Services and the CLI call :func:`configure_logging` once. :func:`bind_context`
sets context variables (``block_id``, ``stage``, ``group``, ``job_id``, ...)
that a filter on the installed handlers copies onto every record, so both
formatters show them without the caller repeating them.

Pool worker processes have no handlers of their own: an executor made with
``initializer=init_worker_logging, initargs=worker_logging_args()`` sends
each worker's records (with the context bound there) through a queue to a
listener thread in the parent, which hands them to the parent's handlers, so
they reach the same console and log file.
"""

from __future__ import annotations

import atexit
import json
import logging
import logging.handlers
import multiprocessing
import pickle
import sys
import threading
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
    "worker_logging_args",
    "init_worker_logging",
    "route_casa_log",
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
_LOG_FILE_MAX_BYTES = 20_000_000
_LOG_FILE_BACKUPS = 5
_FORWARD_LOCK = threading.Lock()
_FORWARD: dict[str, object] = {}  # "queue", "listener", "handlers", "level"


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
        keys = list(getattr(record, _CONTEXT_KEYS_ATTR, ()))
        for key, value in context.items():
            if key not in record.__dict__ or key in getattr(
                record, _CONTEXT_KEYS_ATTR, ()
            ):
                setattr(record, key, value)
                keys.append(key)
        setattr(record, _CONTEXT_KEYS_ATTR, tuple(dict.fromkeys(keys)))
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


def _level_number(level: str | int) -> int:
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(numeric, int):
        msg = f"unknown log level {level!r}; use DEBUG, INFO, WARNING or ERROR"
        raise ValueError(msg)
    return numeric


def configure_logging(
    level: str | int = "INFO",
    *,
    fmt: Literal["console", "json"] = "console",
    log_file: Path | None = None,
    stream: TextIO | None = None,
    console_level: str | int | None = None,
    casa_log: Path | None = None,
) -> None:
    """Install the pipeline's log handlers on the ``dsa110_contimg`` logger.

    Parameters
    ----------
    level : str or int, optional
        Lowest level emitted (``"DEBUG"``, ``"INFO"``, ``"WARNING"``,
        ``"ERROR"`` or a :mod:`logging` constant); the log file's level.
    fmt : {"console", "json"}, optional
        Format of the stream handler. The file handler always writes JSON
        lines.
    log_file : Path, optional
        Also append to this file (parent directories are created). It is
        rotated at 20 MB, keeping 5 old files (``<name>.1`` ... ``<name>.5``).
    stream : text stream, optional
        Destination of the stream handler; default ``sys.stderr``.
    console_level : str or int, optional
        Level of the stream handler when it differs from ``level`` (the CLI's
        ``-q`` and ``-v``); default ``level``.
    casa_log : Path, optional
        Where CASA writes its own log, in this process and in pool workers
        (`route_casa_log`); default: CASA's choice (``casa-*.log`` in the
        working directory).

    Notes
    -----
    Idempotent: handlers installed by an earlier call are closed and replaced;
    handlers added by anyone else are left alone. The same handlers go on the
    ``py.warnings`` logger, and ``logging.captureWarnings(True)`` is called so
    :class:`~dsa110_contimg.exceptions.DataQualityWarning` and other
    warnings reach the log stream. Pool workers started afterwards with
    `worker_logging_args` send their records to these handlers.
    """
    if fmt not in ("console", "json"):
        msg = f"fmt must be 'console' or 'json', got {fmt!r}"
        raise ValueError(msg)
    file_level = _level_number(level)
    stream_level = file_level if console_level is None else _level_number(console_level)
    formatter = JsonFormatter() if fmt == "json" else ConsoleFormatter()
    stream_handler = logging.StreamHandler(stream or sys.stderr)
    stream_handler.setLevel(stream_level)
    handlers = [_make_handler(stream_handler, formatter)]
    if log_file is not None:
        log_file = Path(log_file).expanduser()
        log_file.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.handlers.RotatingFileHandler(
            log_file,
            maxBytes=_LOG_FILE_MAX_BYTES,
            backupCount=_LOG_FILE_BACKUPS,
            encoding="utf-8",
        )
        file_handler.setLevel(file_level)
        handlers.append(_make_handler(file_handler, JsonFormatter()))
    lowest = min(stream_level, file_level if log_file is not None else stream_level)
    for name in (ROOT_LOGGER_NAME, "py.warnings"):
        logger = logging.getLogger(name)
        _remove_own_handlers(logger)
        for handler in handlers:
            logger.addHandler(handler)
        logger.setLevel(lowest)
    logging.captureWarnings(True)
    if casa_log is not None:
        route_casa_log(Path(casa_log))
    with _FORWARD_LOCK:
        _FORWARD["handlers"] = tuple(handlers)
        _FORWARD["level"] = lowest
        _FORWARD["casa_log"] = None if casa_log is None else str(casa_log)
        listener = _FORWARD.get("listener")
        if isinstance(listener, logging.handlers.QueueListener):
            listener.handlers = tuple(handlers)


def reset_logging() -> None:
    """Remove and close the handlers :func:`configure_logging` installed.

    Also stops the listener of pool workers' records (after handing on what
    they sent) and calls ``logging.captureWarnings(False)``. Handlers added by
    anyone else and logger levels are left as they are.
    """
    _stop_forwarding()
    for name in (ROOT_LOGGER_NAME, "py.warnings"):
        _remove_own_handlers(logging.getLogger(name))
    logging.captureWarnings(False)


class _ForwardingHandler(logging.handlers.QueueHandler):
    """Queue handler of a pool worker: keeps the extra fields, made picklable."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        """Merge message and arguments, drop the traceback object, keep fields."""
        record = super().prepare(record)
        for key, value in record_extra(record).items():
            try:
                pickle.dumps(value)
            except Exception:  # noqa: BLE001 - any unpicklable value becomes text
                setattr(record, key, repr(value))
        return record


def _dispatch(record: logging.LogRecord) -> None:
    """Hand a worker's record to the parent's handlers (listener thread)."""
    handlers = _FORWARD.get("handlers", ())
    for handler in handlers:  # type: ignore[union-attr]
        if record.levelno >= handler.level:
            handler.handle(record)


class _Listener(logging.handlers.QueueListener):
    def handle(self, record: logging.LogRecord) -> None:
        _dispatch(record)


def worker_logging_args() -> tuple[object, int] | tuple[()]:
    """Return the ``initargs`` for `init_worker_logging` in a new worker pool.

    Starts (once per process) a listener thread that hands records arriving
    from workers to the handlers of the last `configure_logging` call.

    Returns
    -------
    tuple
        ``(queue, level, casa_log)``, or ``()`` when `configure_logging` has
        not been called (workers then keep Python's default: warnings to
        stderr, CASA's log in the working directory).
    """
    with _FORWARD_LOCK:
        if "handlers" not in _FORWARD:
            return ()
        if "queue" not in _FORWARD:
            queue = multiprocessing.get_context("spawn").Queue()
            listener = _Listener(queue)
            listener.start()
            atexit.register(_stop_forwarding)
            _FORWARD["queue"], _FORWARD["listener"] = queue, listener
        casa_log = _FORWARD.get("casa_log")
        return (_FORWARD["queue"], int(_FORWARD["level"]), casa_log)  # type: ignore[call-overload]


def init_worker_logging(
    queue: object = None, level: int = logging.INFO, casa_log: str | None = None
) -> None:
    """Send this (worker) process's log records to the parent through ``queue``.

    Parameters
    ----------
    queue : multiprocessing.Queue, optional
        From `worker_logging_args`; None leaves logging as it is.
    level : int
        Lowest level forwarded.
    casa_log : str, optional
        CASA's own log file for this process (`route_casa_log`).
    """
    if casa_log:
        route_casa_log(Path(casa_log))
    if queue is None:
        return
    handler = _ForwardingHandler(queue)  # type: ignore[arg-type]
    handler.addFilter(ContextFilter())
    setattr(handler, _HANDLER_MARK, True)
    for name in (ROOT_LOGGER_NAME, "py.warnings"):
        logger = logging.getLogger(name)
        _remove_own_handlers(logger)
        logger.addHandler(handler)
        logger.setLevel(level)
    logging.captureWarnings(True)


def _stop_forwarding() -> None:
    with _FORWARD_LOCK:
        listener = _FORWARD.pop("listener", None)
        queue = _FORWARD.pop("queue", None)
    if isinstance(listener, logging.handlers.QueueListener):
        listener.stop()  # hands on what the workers already sent
    if queue is not None:
        queue.close()  # type: ignore[attr-defined]
    with _FORWARD_LOCK:
        _FORWARD.pop("handlers", None)
        _FORWARD.pop("level", None)
        _FORWARD.pop("casa_log", None)


def route_casa_log(path: Path) -> None:
    """Make CASA (casatools/casatasks) write its own log to ``path``.

    Before casatools is imported this sets ``casaconfig.config.logfile``, so
    no ``casa-*.log`` appears in the working directory; afterwards it calls
    ``casalog.setlogfile``. Does nothing when CASA is not installed.

    Parameters
    ----------
    path : Path
        The log file (its directory is created).
    """
    path = Path(path).expanduser()
    casatasks = sys.modules.get("casatasks")
    casatools = sys.modules.get("casatools")
    try:
        if casatasks is None and casatools is None:
            from casaconfig import config  # light: reads ~/.casa/config.py
        path.parent.mkdir(parents=True, exist_ok=True)
    except (ImportError, OSError):
        return
    if casatasks is not None:
        casatasks.casalog.setlogfile(str(path))
    elif casatools is not None:
        casatools.logsink().setlogfile(str(path))
    else:
        config.logfile = str(path)


def _remove_own_handlers(logger: logging.Logger) -> None:
    for old in [h for h in logger.handlers if getattr(h, _HANDLER_MARK, False)]:
        logger.removeHandler(old)
        old.close()
