"""One writer per state database and its data directories, across hosts.

``stream``, batch ``process``/``demo``, ``batch``, ``single`` and ``convert``
all write the same directories (MSs, images, mosaics, calibration tables,
products) and the same queue. Each takes the *writer claim* of its state
database before it writes: a `state.claims` lease on the key
``writer:<state_db>`` whose owner names the host, pid and command, renewed
by a thread while the writer runs. A second writer is refused with a
`WriterBusyError` naming the holder (host, pid, command, since when).
Being a database row rather than a host-local ``flock``, the claim holds
across hosts that share the data directory and its database.

A holder that dies stops renewing: on another host its claim expires after
``ttl_s``; on this host a holder whose process no longer runs is taken over
at once (the same liveness rule as the job leases). Holding the claim is
what makes start-up clean-up safe: no other writer can be live, on any
host, so every temporary older than the clean-up is debris
(`cleanup_stale_temporaries`).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dsa110_contimg.exceptions import StateError
from dsa110_contimg.state.claims import (
    Claim,
    ClaimLostError,
    _check_held,
    acquire_claim,
    hold_claims,
    holder_is_gone,
    release_claim,
)
from dsa110_contimg.state.db import open_db
from dsa110_contimg.utils.storage import temporary_writer_pid

if TYPE_CHECKING:
    from dsa110_contimg.utils.config import PipelineConfig

__all__ = [
    "WriterBusyError",
    "WriterClaim",
    "cleanup_stale_temporaries",
    "hold_writer",
    "writer_key",
]

log = logging.getLogger(__name__)

# owners held by this process right now (a same-pid holder is alive only if here)
_LIVE_OWNERS: set[str] = set()
_LIVE_LOCK = threading.Lock()


class WriterBusyError(StateError):
    """Another writer holds the state database's writer claim."""


@dataclass(frozen=True, slots=True)
class WriterClaim:
    """The held writer claim of a state database."""

    state_db: Path
    command: str
    claim: Claim

    def check_held(self) -> None:
        """Raise `ClaimLostError` unless the claim is still this writer's."""
        with closing(open_db(self.state_db)) as conn:
            _check_held(conn, self.claim, time.time())


def writer_key(state_db: Path | str) -> str:
    """Return the claim key of ``state_db``'s writer (its absolute path)."""
    return f"writer:{Path(state_db).expanduser().resolve()}"


def _parse_owner(owner: str) -> tuple[str, int | None, str]:
    """Split ``<host>:<pid>:<random> <command>`` into host, pid, command."""
    ident, _, command = owner.partition(" ")
    host, _, rest = ident.partition(":")
    pid_text = rest.partition(":")[0]
    return host, int(pid_text) if pid_text.isdigit() else None, command or "?"


def _holder_is_gone(owner: str) -> bool:
    """Whether a holder on this host is a process that no longer runs.

    Holders on other hosts are never judged here: their claims expire. A
    holder with this process's pid that this process does not hold is an
    earlier incarnation (a restarted container reuses pids).
    """
    host, pid, _ = _parse_owner(owner)
    if host == socket.gethostname() and pid == os.getpid():
        with _LIVE_LOCK:
            return owner not in _LIVE_OWNERS
    return holder_is_gone(owner)


def _busy_error(state_db: Path, row: tuple) -> WriterBusyError:
    owner, expires_at, acquired_at = row
    host, pid, command = _parse_owner(owner)
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(expires_at)))
    msg = (
        f"{state_db} is in use by another writer: `{command}` on host {host}, "
        f"pid {pid}, since {acquired_at} (its claim is renewed while it runs; "
        f"unrenewed it expires at {until}); wait for it or stop it, or give this "
        "run its own --output-dir or paths.state_db"
    )
    return WriterBusyError(msg)


def _acquire(state_db: Path, key: str, owner: str, ttl_s: float) -> None:
    query = "SELECT owner, token, expires_at, acquired_at FROM claims WHERE key = ?"
    with closing(open_db(state_db)) as conn:
        for _ in range(3):  # the holder may release or die between two reads
            if acquire_claim(conn, key, owner=owner, ttl_s=ttl_s) is not None:
                return
            row = conn.execute(query, (key,)).fetchone()
            if row is None or row[0] is None:
                continue
            if not _holder_is_gone(row[0]):
                raise _busy_error(state_db, (row[0], row[2], row[3]))
            log.warning(
                "writer claim of a dead process taken over",
                extra={"key": key, "previous_owner": row[0]},
            )
            release_claim(conn, Claim(key, row[0], int(row[1])))
        msg = f"the writer claim of {state_db} changed hands repeatedly; retry"
        raise WriterBusyError(msg)


@contextmanager
def hold_writer(
    state_db: Path | str,
    command: str,
    *,
    ttl_s: float = 120.0,
    on_lost: Callable[[ClaimLostError], None] | None = None,
) -> Iterator[WriterClaim]:
    """Hold the writer claim of ``state_db`` for a ``with`` block.

    Parameters
    ----------
    state_db : Path or str
        The state database (``paths.state_db``); created when missing.
    command : str
        What writes (``"stream"``, ``"process"``, ...), named to a refused
        writer.
    ttl_s : float
        Seconds an unrenewed claim lasts (``queue.lease_s``); renewed every
        ``ttl_s / 3``.
    on_lost : callable, optional
        Called from the renewing thread if the claim is lost (e.g. the
        stream stops).

    Raises
    ------
    WriterBusyError
        Another live writer holds the claim (message names host, pid,
        command and since when).
    ClaimLostError
        The claim expired or was taken over while the block ran.
    """
    state_db = Path(state_db)
    key = writer_key(state_db)
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]} {command}"
    with _LIVE_LOCK:
        _LIVE_OWNERS.add(owner)
    try:
        _acquire(state_db, key, owner, ttl_s)
        with hold_claims(
            state_db, [key], ttl_s=ttl_s, wait_s=0.0, owner=owner, on_lost=on_lost
        ) as claims:
            yield WriterClaim(state_db, command, claims[0])
    finally:
        with _LIVE_LOCK:
            _LIVE_OWNERS.discard(owner)


# ------------------------------------------------------------- start-up clean-up

# work directories of the imagers and the solver: .tmp-<prefix>-<pid>
_WORK_DIR_RE = re.compile(r"^\.tmp-.+-\d+$")
# MSs being written: .<ms>.tmp-<pid>
_MS_TMP_RE = re.compile(r"^\..+\.tmp-\d+$")


def _is_temporary(name: str) -> bool:
    return bool(
        _WORK_DIR_RE.match(name)
        or _MS_TMP_RE.match(name)
        or temporary_writer_pid(name) is not None
        or (name.startswith(".") and name.endswith(".tmp"))
    )


def cleanup_stale_temporaries(
    config: PipelineConfig, writer: WriterClaim, *, before: float | None = None
) -> list[Path]:
    """Remove temporary products left by writers that were killed.

    Writers put products under hidden temporary names and rename them on
    success: ``.<name>.tmp-<pid>-<random>`` (`utils.storage.temporary_path`),
    ``.<ms>.tmp-<pid>`` (conversion), ``.tmp-<prefix>-<pid>`` (imager and
    solver work directories) and ``.<name>.tmp`` (older writers). The
    caller holds the writer claim, so no other writer of these directories
    is live on any host, and every temporary last modified before the
    clean-up started is debris, whatever pid it names.

    Parameters
    ----------
    config : PipelineConfig
        Its ``paths`` name the directories cleaned.
    writer : WriterClaim
        The held writer claim of ``paths.state_db`` (checked first).
    before : float, optional
        Unix time; only temporaries modified earlier are removed (default:
        now), so this writer's own new temporaries are never touched.

    Raises
    ------
    ClaimLostError
        The writer claim is no longer held; nothing is removed.
    StateError
        ``writer`` is the claim of another state database.
    """
    paths = config.paths
    if writer_key(writer.state_db) != writer_key(paths.state_db):
        msg = (
            f"the writer claim of {writer.state_db} does not cover "
            f"{paths.state_db}; clean-up refused"
        )
        raise StateError(msg)
    before = time.time() if before is None else before
    writer.check_held()
    removed = []
    directories = dict.fromkeys(
        Path(d)
        for d in (
            paths.ms_stage1_dir,
            paths.images_dir,
            paths.mosaics_dir,
            paths.products_dir,
            paths.cal_tables_dir,
        )
    )
    for directory in directories:
        if not directory.is_dir():
            continue
        for path in directory.glob(".*"):
            if not _is_temporary(path.name):
                continue
            try:
                if path.lstat().st_mtime >= before:
                    continue
            except FileNotFoundError:
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    if removed:
        log.warning(
            "stale temporaries removed",
            extra={"n_removed": len(removed), "paths": [str(p) for p in removed]},
        )
    return removed
