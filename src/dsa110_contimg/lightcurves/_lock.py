"""The light-curve store's writer lock: one writing process at a time.

Every write holds an exclusive ``flock`` on ``<store>/_writer.lock``; the
kernel drops the lock of a process that dies. The lock file holds the pid of
the writer, named in the error when a wait times out.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from dsa110_contimg.exceptions import StateError

__all__ = ["file_lock", "locked", "LOCK_FILE"]

LOCK_FILE = "_writer.lock"
_LOCK_POLL_S = 0.05


def locked(method: Callable[..., Any]) -> Callable[..., Any]:
    """Run a store method under the writer lock (see `LightcurveStore._writing`)."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        with self._writing():
            return method(self, *args, **kwargs)

    return wrapper


@contextlib.contextmanager
def file_lock(root: Path, timeout_s: float) -> Iterator[None]:
    """Hold ``<root>/_writer.lock`` (flock), waiting up to ``timeout_s`` seconds.

    Raises
    ------
    StateError
        Another process held the lock for longer than ``timeout_s``.
    """
    path = Path(root) / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
                    msg = (
                        f"light-curve store {root}: another writer (pid "
                        f"{holder or 'unknown'}) has held {path} for more than "
                        f"{timeout_s:g} s; wait for it to finish or "
                        "stop it (one writer at a time)"
                    )
                    raise StateError(msg) from None
                time.sleep(_LOCK_POLL_S)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except BaseException:
        os.close(fd)
        raise
    try:
        yield
    finally:
        os.close(fd)  # releases the flock
