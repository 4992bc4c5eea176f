"""The one way an imager adapter runs its program and publishes its products.

Both WSClean and tclean: the call is logged and written as the first line of
the per-image log, the program's output follows it, a timeout kills it, a
failure raises `ImagingError` with the log tail, and products written in a
scratch directory are moved into place only after success, the restored image
last (its presence means the set is complete).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from dsa110_contimg.exceptions import ImagingError
from dsa110_contimg.utils.storage import replace_into_place

__all__ = [
    "scratch_dir",
    "run_imager",
    "publish_products",
    "log_tail",
    "set_cancel_check",
]

log = logging.getLogger(__name__)

POLL_S = 0.5  # how often a running imager checks for cancellation, seconds
_cancel_check: Callable[[], bool] | None = None


def set_cancel_check(check: Callable[[], bool] | None) -> None:
    """Install ``check()``: true when the calling thread's work was cancelled.

    The Dask backend installs one on its workers (a task whose client left,
    e.g. a stream that stopped, is cancelled there but its thread runs on):
    a running imager is then killed, with its children, instead of holding
    the worker's slots to the end.
    """
    global _cancel_check  # noqa: PLW0603 - one per worker process
    _cancel_check = check


def _kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL ``proc`` and its descendants (a wrapper script's children too)."""
    try:
        import psutil

        children = psutil.Process(proc.pid).children(recursive=True)
    except Exception:  # noqa: BLE001 - psutil missing or the process gone
        children = []
    proc.kill()
    for child in children:
        with contextlib.suppress(Exception):
            child.kill()
    proc.wait()


def _wait(proc: subprocess.Popen, timeout_s: float) -> str | None:
    """Wait for ``proc``; ``"timeout"`` or ``"cancelled"`` when it was killed."""
    if _cancel_check is None:
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return "timeout"
        return None
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            proc.wait(timeout=max(0.0, min(POLL_S, deadline - time.monotonic())))
            return None
        except subprocess.TimeoutExpired:
            if time.monotonic() >= deadline:
                _kill_tree(proc)
                return "timeout"
            if _cancel_check():
                _kill_tree(proc)
                return "cancelled"


@contextmanager
def scratch_dir(prefix: Path) -> Iterator[Path]:
    """Yield an empty scratch directory beside ``prefix``; remove it afterwards."""
    work = prefix.parent / f".tmp-{prefix.name}-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_imager(
    cmd: Sequence[str],
    *,
    program: str,
    ms_path: Path,
    log_path: Path,
    timeout_s: float,
    cwd: Path,
    expected: Path,
    call: str | None = None,
    env: Mapping[str, str] | None = None,
) -> float:
    """Run an imager, its output appended to ``log_path`` after the call.

    Parameters
    ----------
    cmd : sequence of str
        The command line.
    program : str
        Name in messages and log records (``WSClean``, ``tclean``).
    ms_path : Path
        The Measurement Set imaged (named in messages).
    log_path : Path
        Per-image log; overwritten, its first line is ``call``.
    timeout_s : float
        The program is killed after this long, seconds.
    cwd : Path
        Working directory of the program (the scratch directory).
    expected : Path
        File the program must have written (the restored image).
    call : str, optional
        How the call is shown in the log; default the command line.
    env : mapping, optional
        Environment of the program; default this process's.

    Returns
    -------
    float
        Wall-clock duration of the run, seconds.

    Raises
    ------
    ImagingError
        The program timed out, exited non-zero, was killed, or did not write
        ``expected``; the message names ``log_path`` and carries its tail.
    """
    cmd = [str(c) for c in cmd]
    shown = call if call is not None else " ".join(cmd)
    name = program.lower()
    log.info(f"{name} start", extra={"ms": str(ms_path)})
    log.debug(f"{name} command", extra={"command": shown})
    t0 = time.perf_counter()
    log_path.write_text(shown + "\n")
    with open(log_path, "a") as log_file:
        proc = subprocess.Popen(
            cmd,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=None if env is None else dict(env),
        )
        try:
            stopped = _wait(proc, timeout_s)
        except BaseException:
            _kill_tree(proc)
            raise
    if stopped == "timeout":
        msg = f"{program} timed out after {timeout_s} s imaging {ms_path}"
        raise ImagingError(msg, command=cmd, log_tail=log_tail(log_path))
    if stopped == "cancelled":
        msg = f"{program} imaging {ms_path} was cancelled (its task was withdrawn)"
        raise ImagingError(msg, command=cmd, log_tail=log_tail(log_path))
    if proc.returncode != 0 or not expected.exists():
        how = (
            f"was killed by signal {-proc.returncode}"
            if proc.returncode < 0
            else f"exited with status {proc.returncode}"
        )
        tail = log_tail(log_path)
        msg = (
            f"{program} {how} imaging {ms_path}; see {log_path}. "
            f"Last output: {tail[-500:]}"
        )
        raise ImagingError(msg, command=cmd, returncode=proc.returncode, log_tail=tail)
    return time.perf_counter() - t0


def publish_products(moves: Mapping[str, tuple[Path, Path]]) -> None:
    """Move ``{kind: (written, final)}`` into place, the ``image`` last.

    Kinds whose written file is missing are skipped (optional products).
    """
    for kind in sorted(moves, key=lambda k: k == "image"):
        src, dst = moves[kind]
        if src.exists():
            replace_into_place(src, dst)  # fenced while the worker holds claims


def log_tail(path: Path, n_lines: int = 20) -> str:
    """Return the last ``n_lines`` of a log file ('' when unreadable)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n_lines:])
    except OSError:
        return ""
