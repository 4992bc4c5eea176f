"""Writing products safely: disk-full translation, free-space checks, fsync.

Every writer of a product (MS, FITS, Parquet, SQLite) runs its writes inside
`write_errors_as_resource`, so that a full disk, a quota, a read-only mount
or a vanished directory becomes a retryable `ResourceError` that names the
path and the fix, whichever library raised it (``OSError`` from Python and
astropy, ``RuntimeError``/AipsError from casacore, ``ArrowIOError`` from
pyarrow, ``sqlite3.OperationalError`` from SQLite).

casacore cannot always raise: a failure inside a table destructor calls
``std::terminate`` and aborts the process. `ensure_free_space` therefore
checks before an MS write that the estimated size fits, so the common case
(the disk is nearly full before the write starts) never reaches casacore.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import functools
import inspect
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from dsa110_contimg.exceptions import ResourceError

__all__ = [
    "is_resource_exhaustion",
    "write_errors_as_resource",
    "writes_product",
    "ensure_free_space",
    "fsync_tree",
    "temporary_path",
    "publish",
    "publish_fence",
    "replace_into_place",
    "swap_into_place",
    "temporary_writer_pid",
]

_TMP_RE = re.compile(r"\.tmp-(\d+)-[0-9a-f]{8}")

# errno values that mean "the machine, not the data": retry after fixing it
_RESOURCE_ERRNOS = frozenset(
    {
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EROFS,
        errno.EACCES,
        errno.EPERM,
        errno.EIO,
        errno.ENOMEM,
        errno.EMFILE,
        errno.ENFILE,
        errno.ESTALE,
        errno.ETIMEDOUT,
    }
)
# what libraries that do not set errno say about a full disk
_DISK_FULL_TEXT = (
    "no space left",
    "disk is full",
    "disk full",
    "quota exceeded",
    "read-only file system",
    "not enough space",
)


def is_resource_exhaustion(error: BaseException) -> bool:
    """Return whether ``error`` means a machine resource failed, not the data.

    True for ``MemoryError``, for an ``OSError`` whose errno is a full disk,
    quota, read-only mount, permission, I/O, stale-handle or file-table error,
    and for any exception whose message says the disk is full (casacore and
    SQLite raise ``RuntimeError`` / ``OperationalError`` without an errno).
    """
    if isinstance(error, MemoryError):
        return True
    if isinstance(error, OSError) and error.errno in _RESOURCE_ERRNOS:
        return True
    text = str(error).lower()
    return any(t in text for t in _DISK_FULL_TEXT)


@contextlib.contextmanager
def write_errors_as_resource(path: Path | str, what: str) -> Iterator[None]:
    """Translate resource failures while writing ``path`` into `ResourceError`.

    Parameters
    ----------
    path : Path or str
        The product being written (named in the message).
    what : str
        What is written, for the message (e.g. ``"MS"``, ``"FITS image"``).

    Raises
    ------
    ResourceError
        The write failed for lack of disk space, quota, permission or memory.
        Any other exception propagates unchanged.
    """
    try:
        yield
    except ResourceError:
        raise
    except Exception as err:
        if not is_resource_exhaustion(err):
            raise
        parent = Path(path).parent
        msg = (
            f"writing {what} {path} failed ({type(err).__name__}: {err}); free "
            f"space in {parent} or make it writable, then retry (the job is "
            "retried automatically)"
        )
        raise ResourceError(msg) from err


def writes_product(what: str, *, path_arg: str = "path") -> Callable:
    """Decorate a product writer so resource failures become `ResourceError`.

    ``path_arg`` names the writer's parameter that holds the output path (it
    is named in the message).
    """

    def decorate(func: Callable) -> Callable:
        signature = inspect.signature(func)

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            bound = signature.bind_partial(*args, **kwargs)
            path = bound.arguments.get(path_arg, "?")
            with write_errors_as_resource(path, what):
                return func(*args, **kwargs)

        return wrapper

    return decorate


def ensure_free_space(directory: Path | str, n_bytes: float, what: str) -> None:
    """Raise `ResourceError` unless ``directory`` has ``n_bytes`` free.

    Parameters
    ----------
    directory : Path or str
        Where the product will be written (its nearest existing ancestor is
        checked when it does not exist yet).
    n_bytes : float
        Bytes the write needs (an estimate with a margin).
    what : str
        The product, for the message.
    """
    probe = Path(directory)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        free = shutil.disk_usage(probe).free
    except OSError as err:
        msg = f"cannot check free space in {directory} for {what} ({err})"
        raise ResourceError(msg) from err
    if free < n_bytes:
        msg = (
            f"{what} needs about {n_bytes / 1e6:.0f} MB in {directory} but only "
            f"{free / 1e6:.0f} MB are free; free space there, then retry"
        )
        raise ResourceError(msg)


def fsync_tree(path: Path | str) -> None:
    """Flush a file, or every file of a directory tree, and its directories.

    Called on a product's temporary before the rename that publishes it, so a
    power loss after the rename never leaves a published but empty product.
    """
    path = Path(path)
    if path.is_dir():
        for root, _dirs, files in os.walk(path):
            for name in files:
                _fsync_one(Path(root) / name, os.O_RDONLY)
            _fsync_dir(Path(root))
    else:
        _fsync_one(path, os.O_RDONLY)
    _fsync_dir(path.parent)


def _fsync_one(path: Path, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def temporary_path(path: Path | str) -> Path:
    """Return a unique hidden temporary name next to ``path``.

    ``.<name>.tmp-<pid>-<random><suffix>``: unique per writer and call, so two
    workers writing the same product never collide (the suffix is kept for
    writers that infer the format from it, e.g. matplotlib), and tagged with
    the writer's pid so a stale one can be told from one being written
    (`temporary_writer_pid`).
    """
    path = Path(path)
    token = f"tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    return path.with_name(f".{path.name}.{token}{path.suffix}")


def temporary_writer_pid(path: Path | str) -> int | None:
    """Return the writer pid of a `temporary_path` name (None for other names)."""
    match = _TMP_RE.search(Path(path).name)
    return int(match[1]) if match else None


_PUBLISH_FENCE: contextvars.ContextVar[Callable[[Path, Path], None] | None] = (
    contextvars.ContextVar("dsa110_publish_fence", default=None)
)


@contextlib.contextmanager
def publish_fence(fence: Callable[[Path, Path], None]) -> Iterator[None]:
    """Route every rename into place in this context through ``fence(tmp, final)``.

    `dsa110_contimg.state.claims.hold_claims` installs one: while a worker
    holds the claims on its MS or block, each product it publishes is renamed
    only after the claims' fencing tokens were checked, in the same database
    transaction, so a worker whose lease expired (and was taken over) never
    overwrites the new owner's product; its temporary is deleted instead.
    """
    token = _PUBLISH_FENCE.set(fence)
    try:
        yield
    finally:
        _PUBLISH_FENCE.reset(token)


def swap_into_place(tmp: Path | str, final: Path | str) -> Path | None:
    """``os.replace(tmp, final)``, directories over directories included.

    A directory (a CASA table, an MS) cannot be renamed over a non-empty
    one, so an existing directory ``final`` is first renamed aside (a
    `temporary_path` of it, so a crash leaves a stale temporary, never a
    missing product) and ``tmp`` renamed into its place; if that fails the
    old one is put back.

    Returns
    -------
    Path or None
        The old directory set aside, for the caller to delete (after the
        fence's transaction, if any); None when nothing was set aside.
    """
    tmp, final = Path(tmp), Path(final)
    if not (tmp.is_dir() and final.is_dir() and not final.is_symlink()):
        os.replace(tmp, final)
        return None
    aside = temporary_path(final)
    os.replace(final, aside)
    try:
        os.replace(tmp, final)
    except BaseException:
        os.replace(aside, final)
        raise
    return aside


def replace_into_place(tmp: Path | str, final: Path | str) -> None:
    """`swap_into_place` (files or directories), through the `publish_fence` if any.

    Under a fence (a worker holding claims) the rename happens only while
    the claims are held; otherwise ``tmp`` is deleted and `ClaimLostError`
    raised, and ``final`` is left as it was.
    """
    fence = _PUBLISH_FENCE.get()
    if fence is None:
        aside = swap_into_place(tmp, final)
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)
    else:
        fence(Path(tmp), Path(final))


def publish(tmp: Path | str, final: Path | str) -> None:
    """Flush ``tmp`` to disk, then rename it over ``final`` (atomic on POSIX).

    The old ``final`` stays in place until the rename, so a crash at any
    moment leaves the old product or the new one, whole; the fsync before the
    rename means a power loss after it cannot leave an empty published file.
    Under a `publish_fence` (a worker holding claims) the rename happens only
    while the claims are still held.
    """
    fsync_tree(tmp)
    replace_into_place(tmp, final)
    _fsync_dir(Path(final).parent)
