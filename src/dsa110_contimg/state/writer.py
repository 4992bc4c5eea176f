"""One writer per state database and its data directories, across hosts.

``stream``, batch ``process``/``demo``, ``batch``, ``single`` and ``convert``
all write the same directories (MSs, images, mosaics, calibration tables,
products) and the same queue. Each takes the *writer claim* of its state
database before it writes: `state.claims` leases whose owner names the host,
pid and command, renewed by a thread while the writer runs. A second writer
is refused with a `WriterBusyError` naming the holder (host, pid, command,
since when). Being database rows rather than host-local ``flock`` files,
the claims hold across hosts that share the data directory and its database.

The claim has parts: one per streaming service (`SERVICE_NAMES`, key
``service:<name>:<state_db>``, `service_key`) and the whole-pipeline key
``writer:<state_db>`` (`writer_key`). A whole-pipeline writer (batch
commands, a stream of every service) takes all of them at once; a process
running only some services takes only theirs. So the hdf5_watcher,
ms_processor and variability_analyzer may run as separate processes (or
hosts) on one database, a second instance of a service is refused, and a
stream or a batch writer is refused while any service runs elsewhere (and
the reverse). The parts are taken in one transaction: all or none.

A holder that dies stops renewing: on another host its claim expires after
``ttl_s``; on this host a holder whose process no longer runs is taken over
at once (the same liveness rule as the job leases). Holding the
ms_processor's part (the writer of the data directories) is what makes
start-up clean-up safe: no other writer of them can be live, on any host, so
every temporary older than the clean-up is debris
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
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dsa110_contimg.exceptions import StateError
from dsa110_contimg.state.claims import (
    Claim,
    ClaimLostError,
    _check_held,
    acquire_claims,
    hold_claims,
    holder_is_gone,
    release_claim,
)
from dsa110_contimg.state.db import open_db, resolve_target
from dsa110_contimg.utils.storage import temporary_writer_pid

if TYPE_CHECKING:
    from dsa110_contimg.utils.config import PipelineConfig

__all__ = [
    "DATA_DIRECTORIES_WRITER",
    "SERVICE_NAMES",
    "WriterBusyError",
    "WriterClaim",
    "cleanup_stale_temporaries",
    "hold_writer",
    "service_key",
    "writer_key",
]

log = logging.getLogger(__name__)

SERVICE_NAMES = ("hdf5_watcher", "ms_processor", "variability_analyzer")
"""The parts of the pipeline that may run (and write) apart: the streaming services."""

DATA_DIRECTORIES_WRITER = "ms_processor"
"""The service that writes the MS, image, mosaic, calibration and product dirs."""

# owners held by this process right now (a same-pid holder is alive only if here)
_LIVE_OWNERS: set[str] = set()
_LIVE_LOCK = threading.Lock()


class WriterBusyError(StateError):
    """Another writer holds (a part of) the state database's writer claim."""


@dataclass(frozen=True, slots=True)
class WriterClaim:
    """The held writer claim of a state database (all its parts).

    Attributes
    ----------
    state_db : Path
        The state database.
    command : str
        What writes (``"stream"``, ``"process"``, ``"ms_processor"``...).
    claims : tuple of Claim
        The held parts, in key order.
    services : tuple of str
        The services the claim covers (all of `SERVICE_NAMES` for a
        whole-pipeline writer).
    """

    state_db: Path
    command: str
    claims: tuple[Claim, ...]
    services: tuple[str, ...]

    @property
    def claim(self) -> Claim:
        """The whole-pipeline part when held, else the first service's."""
        key = writer_key(self.state_db)
        return next((c for c in self.claims if c.key == key), self.claims[0])

    @property
    def is_whole(self) -> bool:
        """Whether this writer holds the whole pipeline (every part)."""
        return set(self.services) == set(SERVICE_NAMES)

    def check_held(self) -> None:
        """Raise `ClaimLostError` unless every part is still this writer's."""
        now = time.time()
        with closing(open_db(self.state_db)) as conn:
            for claim in self.claims:
                _check_held(conn, claim, now)


def _identity(state_db: Path | str) -> str:
    """The state database's name in claim keys: its absolute path, or its URL."""
    target = resolve_target(state_db)
    if isinstance(target, str):
        return re.sub(r"://([^:/@]+):[^@]*@", r"://\1@", target)
    return str(target.expanduser().resolve())


def writer_key(state_db: Path | str) -> str:
    """Return the whole-pipeline claim key of ``state_db`` (path or URL)."""
    return f"writer:{_identity(state_db)}"


def service_key(state_db: Path | str, service: str) -> str:
    """Return the claim key of ``service`` (one of `SERVICE_NAMES`) on ``state_db``."""
    return f"service:{service}:{_identity(state_db)}"


def _claim_keys(state_db: Path, services: Sequence[str]) -> dict[str, str]:
    """The keys a writer of ``services`` takes, with what each one covers."""
    keys = {service_key(state_db, name): f"the {name} service" for name in services}
    if set(services) == set(SERVICE_NAMES):
        keys[writer_key(state_db)] = "the whole pipeline"
    return keys


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


def _busy_error(
    state_db: Path,
    command: str,
    holders: Sequence[tuple[str, str, int, float, str]],
    covers: dict[str, str],
) -> WriterBusyError:
    """Name every live holder of a part this writer wanted, and the fix."""
    by_owner: dict[str, list[tuple[str, float, str]]] = {}
    for key, owner, _token, expires_at, acquired_at in holders:
        by_owner.setdefault(owner, []).append((key, expires_at, acquired_at))
    named = []
    for owner, parts in by_owner.items():
        host, pid, held_by = _parse_owner(owner)
        expires_at = max(p[1] for p in parts)
        until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(expires_at)))
        keys = [p[0] for p in parts]
        what = (
            "the whole pipeline"
            if writer_key(state_db) in keys
            else ", ".join(covers.get(k, k) for k in keys)
        )
        named.append(
            f"`{held_by}` on host {host}, pid {pid}, since {parts[0][2]} "
            f"(holding {what}; its claim is renewed while it runs; unrenewed "
            f"it expires at {until})"
        )
    wanted = [v for k, v in covers.items() if k != writer_key(state_db)]
    whole = len(covers) > len(wanted)
    fix = (
        "wait for it or stop it, or give this run its own --output-dir or "
        "paths.state_db"
        if whole
        else "stop it, or run only services that are not running yet (--service)"
    )
    msg = (
        f"{state_db} is in use by another writer: {'; '.join(named)}; `{command}` "
        f"wanted {'the whole pipeline' if whole else ', '.join(wanted)}: {fix}"
    )
    return WriterBusyError(msg)


def _acquire(
    state_db: Path, covers: dict[str, str], owner: str, command: str, ttl_s: float
) -> None:
    with closing(open_db(state_db)) as conn:
        for _ in range(3):  # a holder may release or die between two reads
            claims, holders = acquire_claims(
                conn, list(covers), owner=owner, ttl_s=ttl_s
            )
            if claims:
                return
            live = [h for h in holders if not _holder_is_gone(h[1])]
            if live:
                raise _busy_error(state_db, command, live, covers)
            for key, previous, token, _, _ in holders:
                log.warning(
                    "writer claim of a dead process taken over",
                    extra={"key": key, "previous_owner": previous},
                )
                release_claim(conn, Claim(key, previous, int(token)))
        msg = f"the writer claim of {state_db} changed hands repeatedly; retry"
        raise WriterBusyError(msg)


@contextmanager
def hold_writer(
    state_db: Path | str,
    command: str,
    *,
    services: Sequence[str] | None = None,
    ttl_s: float = 120.0,
    on_lost: Callable[[ClaimLostError], None] | None = None,
) -> Iterator[WriterClaim]:
    """Hold the writer claim of ``state_db`` (or its services' parts) for a block.

    Parameters
    ----------
    state_db : Path or str
        The state database (``paths.state_db``); created when missing.
    command : str
        What writes (``"stream"``, ``"process"``, ``"ms_processor"``...),
        named to a refused writer.
    services : sequence of str, optional
        The services this writer runs (of `SERVICE_NAMES`): only their parts
        are taken, so the other services may run elsewhere. Default (and
        all of them): the whole pipeline.
    ttl_s : float
        Seconds an unrenewed claim lasts (``queue.lease_s``); renewed every
        ``ttl_s / 3``.
    on_lost : callable, optional
        Called from the renewing thread if the claim is lost (e.g. the
        stream stops).

    Raises
    ------
    WriterBusyError
        Another live writer holds a part this one needs (message names host,
        pid, command, since when, and what it holds).
    ClaimLostError
        The claim expired or was taken over while the block ran.
    ValueError
        ``services`` is empty or names an unknown service.
    """
    state_db = resolve_target(state_db)
    services = tuple(SERVICE_NAMES if services is None else dict.fromkeys(services))
    unknown = sorted(set(services) - set(SERVICE_NAMES))
    if unknown or not services:
        msg = (
            f"unknown services {unknown}" if unknown else "no services"
        ) + f"; choose from {list(SERVICE_NAMES)}"
        raise ValueError(msg)
    covers = _claim_keys(state_db, services)
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]} {command}"
    with _LIVE_LOCK:
        _LIVE_OWNERS.add(owner)
    try:
        _acquire(state_db, covers, owner, command, ttl_s)
        with hold_claims(
            state_db,
            list(covers),
            ttl_s=ttl_s,
            wait_s=0.0,
            owner=owner,
            on_lost=on_lost,
        ) as claims:
            yield WriterClaim(state_db, command, tuple(claims), services)
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
    caller holds the writer claim (at least its ms_processor part), so no
    other writer of these directories is live on any host, and every
    temporary last modified before the clean-up started is debris, whatever
    pid it names.

    Parameters
    ----------
    config : PipelineConfig
        Its ``paths`` name the directories cleaned.
    writer : WriterClaim
        The held writer claim of the state database (``database.url`` or
        ``paths.state_db``), the whole pipeline's or
        one covering the ms_processor (checked first).
    before : float, optional
        Unix time; only temporaries modified earlier are removed (default:
        now), so this writer's own new temporaries are never touched.

    Raises
    ------
    ClaimLostError
        The writer claim is no longer held; nothing is removed.
    StateError
        ``writer`` is the claim of another state database, or does not
        cover the ms_processor.
    """
    paths = config.paths
    target = getattr(config, "state_target", paths.state_db)
    if writer_key(writer.state_db) != writer_key(target):
        msg = (
            f"the writer claim of {_identity(writer.state_db)} does not cover "
            f"{_identity(target)}; clean-up refused"
        )
        raise StateError(msg)
    if DATA_DIRECTORIES_WRITER not in writer.services:
        msg = (
            f"the writer claim of `{writer.command}` on {paths.state_db} does not "
            f"cover the {DATA_DIRECTORIES_WRITER}, the writer of the data "
            "directories; clean-up refused"
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
