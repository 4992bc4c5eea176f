"""Leases on products: one owner at a time for an MS, across processes.

Overlapping blocks share Measurement Sets, and several workers run blocks at
once; without ownership two of them calibrate or image the same MS together
(flags and CORRECTED_DATA written twice, colliding products). Before touching
an MS a worker acquires its claim: a row in ``claims`` with an owner, an
expiry and a fencing token. A claim is renewed while the work runs (by a
thread of `hold_claims`) and released at the end; a holder that dies stops
renewing and its claim expires after ``ttl_s``, so nothing waits forever. The
token grows with every acquisition: a holder that finds the row's token (or
owner) changed has lost the claim and must discard its output
(`ClaimLostError`).

Claims are database rows, not ``flock`` files, so they hold across hosts on a
shared database (the PostgreSQL backend of the scale-out design).
"""

from __future__ import annotations

import contextvars
import functools
import logging
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from dsa110_contimg.exceptions import StateError
from dsa110_contimg.state import schema_core as core
from dsa110_contimg.state._core import Query, const, params_of
from dsa110_contimg.state.db import (
    Connection,
    DatabaseError,
    StateTarget,
    connect,
    open_db,
    resolve_target,
    to_iso_utc,
)
from dsa110_contimg.utils.storage import publish_fence, swap_into_place

__all__ = [
    "Claim",
    "ClaimLostError",
    "ClaimTimeoutError",
    "acquire_claim",
    "acquire_claims",
    "renew_claim",
    "release_claim",
    "hold_claims",
    "fenced_replace",
    "fenced_write",
    "publish_fenced",
    "default_owner",
    "holder_is_gone",
]

log = logging.getLogger(__name__)

_HELD: contextvars.ContextVar[tuple[Claim, ...]] = contextvars.ContextVar(
    "dsa110_held_claims", default=()
)
"""The claims this context holds (`hold_claims`, nested ones included)."""


class ClaimLostError(StateError):
    """The claim expired and another owner took it; discard the work."""


class ClaimTimeoutError(StateError):
    """Another owner held the claim for longer than the caller would wait."""

    retryable = True


@dataclass(frozen=True, slots=True)
class Claim:
    """A held claim: its key, owner and fencing token."""

    key: str
    owner: str
    token: int


def default_owner() -> str:
    """Return ``host:pid:thread``, unique for every concurrent holder."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def holder_is_gone(owner: str) -> bool:
    """Return whether ``owner`` (``<host>:<pid>:...``) is a dead process here.

    Only holders on this host are judged (a process that no longer exists,
    or a zombie); holders on other hosts, holders in this process and owners
    of another form are never gone here: their claims expire.
    """
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        import psutil
    except ImportError:  # cannot tell: wait for the expiry
        return False
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _host(owner: str) -> str | None:
    """The host part of a ``host:pid:...`` owner (None for another form)."""
    host, sep, _ = owner.partition(":")
    return host if sep and host else None


_C = core.claims
_OF_KEY = _C.c.key == sa.bindparam("claim_key")
_ROW = Query(
    sa.select(_C.c.owner, _C.c.token, _C.c.expires_at, _C.c.acquired_at).where(_OF_KEY)
)
_HELD_ROW = Query(sa.select(_C.c.owner, _C.c.token, _C.c.expires_at).where(_OF_KEY))
_TAKE_COLUMNS = ("owner", "host", "token", "expires_at", "acquired_at", "updated_at")
_INSERT = Query(sa.insert(_C).values(params_of(("key", *_TAKE_COLUMNS))))
_TAKE_OVER = Query(sa.update(_C).where(_OF_KEY).values(params_of(_TAKE_COLUMNS)))
_RENEW = Query(
    sa.update(_C).where(_OF_KEY).values(params_of(("expires_at", "updated_at")))
)
_RELEASE = Query(
    sa.update(_C)
    .where(
        _OF_KEY,
        _C.c.owner == sa.bindparam("held_by"),
        _C.c.token == sa.bindparam("held_token"),
    )
    .values(owner=sa.null(), expires_at=const(0), updated_at=sa.bindparam("updated_at"))
)


def _begin(conn: Connection) -> None:
    if conn.in_transaction:
        msg = "claims need a connection with no open transaction"
        raise ValueError(msg)
    conn.execute("BEGIN IMMEDIATE")


def _take(
    conn: Connection,
    key: str,
    *,
    owner: str,
    ttl_s: float,
    now: float,
    stamp: str,
) -> Claim | tuple[str, str, int, float, str]:
    """Inside an open transaction: take ``key``, or return its live holder's row.

    The row is ``(key, owner, token, expires_at, acquired_at)``.
    """
    row = _ROW.execute(conn, {"claim_key": key}).fetchone()
    if row is None:
        token = 1
        values = (owner, _host(owner), token, now + ttl_s, stamp, stamp)
        _INSERT.execute(
            conn, {"key": key, **dict(zip(_TAKE_COLUMNS, values, strict=True))}
        )
        return Claim(key, owner, token)
    held_by, token, expires = row[0], int(row[1]), float(row[2])
    if (
        held_by is not None
        and held_by != owner
        and expires > now
        and not holder_is_gone(held_by)
    ):
        return (key, held_by, token, expires, str(row[3]))
    if held_by is not None and held_by != owner:
        log.warning(
            "expired claim taken over",
            extra={"key": key, "previous_owner": held_by, "owner": owner},
        )
    token += 1
    values = (owner, _host(owner), token, now + ttl_s, stamp, stamp)
    _TAKE_OVER.execute(
        conn, {"claim_key": key, **dict(zip(_TAKE_COLUMNS, values, strict=True))}
    )
    return Claim(key, owner, token)


def acquire_claim(
    conn: Connection,
    key: str,
    *,
    owner: str,
    ttl_s: float,
    now: float | None = None,
) -> Claim | None:
    """Take the claim on ``key`` for ``owner``; None when someone else holds it.

    Parameters
    ----------
    conn : Connection
        State database (no open transaction).
    key : str
        What is claimed (e.g. ``"ms:/data/ms/drift_....ms"``).
    owner : str
        The claimant (`default_owner`).
    ttl_s : float
        Seconds until the claim expires unless renewed.
    now : float, optional
        Unix time (default: the clock).

    Returns
    -------
    Claim or None
        The claim with a new fencing token, or None when another owner's
        claim has not expired.
    """
    claims, _ = acquire_claims(conn, [key], owner=owner, ttl_s=ttl_s, now=now)
    return claims[0] if claims else None


def acquire_claims(
    conn: Connection,
    keys: Sequence[str],
    *,
    owner: str,
    ttl_s: float,
    now: float | None = None,
) -> tuple[list[Claim], list[tuple[str, str, int, float, str]]]:
    """Take the claims on all of ``keys`` for ``owner`` at once, or none of them.

    One transaction: two claimants of overlapping key sets never end up with
    a part each.

    Parameters
    ----------
    conn : Connection
        State database (no open transaction).
    keys : sequence of str
        What is claimed.
    owner : str
        The claimant (`default_owner`).
    ttl_s : float
        Seconds until the claims expire unless renewed.
    now : float, optional
        Unix time (default: the clock).

    Returns
    -------
    claims : list of Claim
        The claims, each with a new fencing token, in sorted key order; empty
        when another owner holds one of the keys.
    holders : list of tuple
        When nothing was taken: ``(key, owner, token, expires_at,
        acquired_at)`` of each key another live owner holds (``expires_at``
        in Unix time, ``acquired_at`` ISO UTC); else empty.
    """
    now = time.time() if now is None else now
    stamp = to_iso_utc()
    claims: list[Claim] = []
    holders: list[tuple[str, str, int, float, str]] = []
    _begin(conn)
    try:
        for key in sorted(set(keys)):
            taken = _take(conn, key, owner=owner, ttl_s=ttl_s, now=now, stamp=stamp)
            if isinstance(taken, Claim):
                claims.append(taken)
            else:
                holders.append(taken)
    except BaseException:
        conn.rollback()
        raise
    if holders:
        conn.rollback()
        return [], holders
    conn.commit()
    return claims, []


def _check_held(conn: Connection, claim: Claim, now: float) -> None:
    row = _HELD_ROW.execute(conn, {"claim_key": claim.key}).fetchone()
    if row is None or row[0] != claim.owner or int(row[1]) != claim.token:
        holder = "nobody" if row is None or row[0] is None else row[0]
        msg = (
            f"claim on {claim.key} lost: now held by {holder}; the work done "
            "under it must be discarded"
        )
        raise ClaimLostError(msg)
    if float(row[2]) <= now:
        msg = f"claim on {claim.key} expired before it was renewed"
        raise ClaimLostError(msg)


def fenced_replace(
    conn: Connection,
    claims: Sequence[Claim],
    tmp: Path | str,
    final: Path | str,
    *,
    now: float | None = None,
) -> None:
    """Rename ``tmp`` over ``final`` only while every claim is still held.

    The fencing tokens are checked and the file renamed inside one write
    transaction: no other owner can take a claim between the check and the
    rename (taking one needs the same write lock, on SQLite and PostgreSQL
    alike), so a holder whose lease expired on any host never overwrites the
    product of the owner that took over.

    A directory (a CASA table) replaces an existing directory too: the old
    one is set aside in the same step (`utils.storage.swap_into_place`) and
    deleted after the commit.

    Raises
    ------
    ClaimLostError
        A claim expired or changed hands: ``tmp`` is deleted (the output is
        discarded) and ``final`` is left as it was.
    """
    now = time.time() if now is None else now
    _begin(conn)
    aside = None
    try:
        for claim in claims:
            _check_held(conn, claim, now)
        aside = swap_into_place(tmp, final)
    except ClaimLostError:
        conn.rollback()
        if Path(tmp).is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            Path(tmp).unlink(missing_ok=True)
        raise
    except BaseException:
        conn.rollback()
        raise
    conn.commit()
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


@contextmanager
def fenced_write(conn: Connection, *, now: float | None = None) -> Iterator[None]:
    """One write transaction on ``conn`` that commits only while claims are held.

    The claims are those this context holds (`hold_claims`, nested ones
    included; none outside: a plain transaction). They are checked at the
    start of the transaction, which takes the write lock, so nobody can take
    one over before the commit: a worker whose claim was taken over records
    nothing (`ClaimLostError`, rolled back). ``conn`` is a connection on the
    database that holds the claims (the state database).

    Raises
    ------
    ClaimLostError
        A claim expired or changed hands; nothing was written.
    """
    now = time.time() if now is None else now
    _begin(conn)
    try:
        for claim in _HELD.get():
            _check_held(conn, claim, now)
        yield
    except BaseException:
        conn.rollback()
        raise
    conn.commit()


def publish_fenced(
    conn: Connection,
    claims: Sequence[Claim],
    tmp: Path | str,
    final: Path | str,
    *,
    now: float | None = None,
) -> None:
    """`dsa110_contimg.utils.storage.publish` under the claims' fence.

    ``tmp`` is flushed, renamed by `fenced_replace` (refused, and deleted, with
    `ClaimLostError` when a claim was lost), and the directory flushed.
    """
    from dsa110_contimg.utils.storage import publish

    with publish_fence(functools.partial(fenced_replace, conn, claims, now=now)):
        publish(tmp, final)


def renew_claim(
    conn: Connection, claim: Claim, *, ttl_s: float, now: float | None = None
) -> None:
    """Extend a held claim; `ClaimLostError` when it expired or changed hands."""
    now = time.time() if now is None else now
    _begin(conn)
    try:
        _check_held(conn, claim, now)
        params = {
            "claim_key": claim.key,
            "expires_at": now + ttl_s,
            "updated_at": to_iso_utc(),
        }
        _RENEW.execute(conn, params)
    except BaseException:
        conn.rollback()
        raise
    conn.commit()


def release_claim(conn: Connection, claim: Claim) -> bool:
    """Give a claim back; False (and nothing changed) when it was already lost."""
    _begin(conn)
    try:
        params = {
            "updated_at": to_iso_utc(),
            "claim_key": claim.key,
            "held_by": claim.owner,
            "held_token": claim.token,
        }
        cur = _RELEASE.execute(conn, params)
    except BaseException:
        conn.rollback()
        raise
    conn.commit()
    return cur.rowcount == 1


@contextmanager
def hold_claims(
    db_path: StateTarget,
    keys: Sequence[str],
    *,
    ttl_s: float = 120.0,
    wait_s: float = 3600.0,
    poll_s: float = 0.5,
    owner: str | None = None,
    on_lost: Callable[[ClaimLostError], None] | None = None,
) -> Iterator[list[Claim]]:
    """Hold the claims on ``keys`` for the duration of a ``with`` block.

    Keys are acquired in sorted order (two holders of overlapping sets cannot
    deadlock), waiting while another owner holds one; a thread renews them
    every ``ttl_s / 3`` seconds. On exit they are released; if one was lost
    while the block ran, `ClaimLostError` is raised after the block so the
    caller discards what it produced; ``on_lost`` (called from the renewing
    thread) lets a long-running holder learn it at once and stop.

    Raises
    ------
    ClaimTimeoutError
        A key stayed held by another owner for ``wait_s`` seconds (retryable).
    ClaimLostError
        A claim expired or was taken over while the block ran.
    """
    owner = owner or default_owner()
    conn = open_db(resolve_target(db_path))
    held: list[Claim] = []
    stop = threading.Event()
    lost: list[BaseException] = []
    lock = threading.Lock()
    try:
        for key in sorted(set(keys)):
            deadline = time.monotonic() + wait_s
            while (claim := acquire_claim(conn, key, owner=owner, ttl_s=ttl_s)) is None:
                if time.monotonic() > deadline:
                    msg = (
                        f"{key} stayed claimed by another worker for {wait_s:.0f} s; "
                        "the job is retried later"
                    )
                    raise ClaimTimeoutError(msg)
                time.sleep(poll_s)
            held.append(claim)

        def renew() -> None:  # its own connection: sqlite3 objects stay in a thread
            renew_conn = connect(resolve_target(db_path))
            try:
                while not stop.wait(ttl_s / 3.0):
                    with lock:
                        for claim in held:
                            try:
                                renew_claim(renew_conn, claim, ttl_s=ttl_s)
                            except ClaimLostError as err:
                                lost.append(err)
                                if on_lost is not None:
                                    on_lost(err)
                                return
                            except DatabaseError as err:  # busy: retry next tick
                                log.warning(
                                    "claim renewal failed",
                                    extra={"key": claim.key, "error": str(err)},
                                )
            finally:
                renew_conn.close()

        renewer = threading.Thread(target=renew, name="claim-renewer", daemon=True)
        renewer.start()
        fenced = (*_HELD.get(), *held)  # an inner holder checks the outer claims too
        held_token = _HELD.set(fenced)
        try:
            with publish_fence(
                lambda tmp, final: fenced_replace(conn, fenced, tmp, final)
            ):
                yield list(held)
        finally:
            _HELD.reset(held_token)
            stop.set()
            renewer.join()
        if lost:
            raise lost[0]
        now = time.time()
        for claim in held:
            _check_held(conn, claim, now)
    finally:
        stop.set()
        with lock:
            for claim in held:
                try:
                    release_claim(conn, claim)
                except DatabaseError as err:
                    log.warning(
                        "claim release failed; it expires by itself",
                        extra={"key": claim.key, "error": str(err)},
                    )
        conn.close()
