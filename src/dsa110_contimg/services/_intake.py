"""Free-disk guard: pause intake while a data filesystem is nearly full.

While paused the watcher enqueues no new groups and no conversion starts;
blocks already converted keep being processed. The state is logged when it
changes and stored as the ``intake`` service flag, which ``dsa110-contimg
status`` shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from dsa110_contimg.state.db import Connection
from dsa110_contimg.state.intake import intake_hold
from dsa110_contimg.state.jobs import set_service_state

if TYPE_CHECKING:
    from dsa110_contimg.utils.config import PipelineConfig

__all__ = [
    "filesystems",
    "nearest_existing",
    "DiskStatus",
    "IntakeGate",
    "check_free_disk",
    "data_directories",
    "run_off_loop",
]

log = logging.getLogger(__name__)

_GB = 1e9

DiskUsage = Callable[[Path], float]
T = TypeVar("T")


def run_off_loop(fn: Callable[..., T], /, *args: object) -> asyncio.Future[T]:
    """Run blocking file-system work in its own daemon thread.

    Returns a future of the running loop that gets ``fn``'s result or
    exception. A call that never returns (a FIFO, a stuck network mount)
    only holds its thread: the loop keeps running, and the process can still
    exit, because the thread is a daemon and no executor waits for it.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def target() -> None:
        try:
            result = fn(*args)
        except BaseException as err:  # handed to the loop, which re-raises it
            with contextlib.suppress(RuntimeError):  # loop closed meanwhile
                loop.call_soon_threadsafe(settle, None, err)
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, result, None)

    threading.Thread(
        target=target, name=f"io-{getattr(fn, '__name__', 'call')}", daemon=True
    ).start()
    return future


def nearest_existing(path: Path) -> Path:
    """The nearest existing ancestor of ``path`` (itself when it exists).

    Where the host measurements (free disk of the guard, the alert figures
    and ``/api/disk``) probe a directory that does not exist yet.
    """
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def filesystems(
    paths: Sequence[Path], *, device_of: Callable[[Path], int] | None = None
) -> dict[str, list[str]]:
    """Group directories by filesystem (``st_dev``), in the order given.

    Returns ``{first directory: [every directory on that filesystem]}``; a
    directory whose filesystem cannot be read stands alone (its probe then
    reports the error).
    """
    probe = device_of or _device_of
    mounts: dict[int | str, list[str]] = {}
    for p in paths:
        try:
            device: int | str = probe(Path(p))
        except OSError:
            device = str(p)
        mounts.setdefault(device, []).append(str(p))
    return {dirs[0]: dirs for dirs in mounts.values()}


def _free_gb(path: Path) -> float:
    return shutil.disk_usage(nearest_existing(path)).free / _GB


def _device_of(path: Path) -> int:
    return os.stat(nearest_existing(path)).st_dev


def data_directories(
    config: PipelineConfig, incoming_dir: Path | None = None
) -> list[Path]:
    """Every directory the services write to, for the free-disk guard.

    Incoming files, MSs, images, mosaics, calibration tables, products, the
    light-curve store (``variability.store_dir``), the state database's
    directory and the logs (``paths.log_dir``).
    """
    paths = config.paths
    return list(
        dict.fromkeys(
            Path(p)
            for p in (
                incoming_dir or paths.incoming_dir,
                paths.ms_stage1_dir,
                paths.images_dir,
                paths.mosaics_dir,
                paths.cal_tables_dir,
                paths.products_dir,
                config.variability.store_dir,
                Path(paths.state_db).parent,
                paths.log_dir,
            )
        )
    )


@dataclass(frozen=True, slots=True)
class DiskStatus:
    """Free space of the data filesystems against the threshold."""

    is_low: bool
    free_gb: dict[str, float]
    min_free_disk_gb: float
    reason: str


def check_free_disk(
    paths: Sequence[Path],
    *,
    min_free_disk_gb: float,
    free_gb: DiskUsage = _free_gb,
    device_of: Callable[[Path], int] = _device_of,
) -> DiskStatus:
    """Return whether any of ``paths`` has less than ``min_free_disk_gb`` free.

    Directories on one filesystem (same ``st_dev``) are measured once, by the
    first of them; ``free_gb`` of the result has one entry per filesystem,
    keyed by that directory.

    Parameters
    ----------
    paths : sequence of Path
        Directories the services write to (missing ones are judged by their
        nearest existing parent).
    min_free_disk_gb : float
        Threshold (GB).
    free_gb : callable, optional
        Returns the free space of a path in GB (replaced in tests).
    device_of : callable, optional
        Returns the filesystem id (``st_dev``) of a path.
    """
    mounts = filesystems(paths, device_of=device_of)
    free = {first: round(free_gb(Path(first)), 3) for first in mounts}
    low = {p: gb for p, gb in free.items() if gb < min_free_disk_gb}
    reason = ""
    if low:
        worst = min(low, key=low.__getitem__)
        others = mounts[worst][1:]
        also = f" (same filesystem as {', '.join(others)})" if others else ""
        reason = (
            f"free disk {low[worst]:.3g} GB at {worst}{also} is below "
            f"watcher.min_free_disk_gb = {min_free_disk_gb:g} GB; intake paused "
            "until space is freed there"
        )
    return DiskStatus(bool(low), free, min_free_disk_gb, reason)


class IntakeGate:
    """Hold the intake state and publish its changes.

    Parameters
    ----------
    conn : Connection
        Writable state-database connection (loop thread only).
    paths : sequence of Path
        Data directories to watch.
    min_free_disk_gb : float
        Threshold (GB).
    free_gb : callable, optional
        Free-space probe (replaced in tests).
    device_of : callable, optional
        Filesystem id of a path (directories on one are measured once).
    """

    def __init__(
        self,
        conn: Connection,
        paths: Sequence[Path],
        *,
        min_free_disk_gb: float,
        free_gb: DiskUsage = _free_gb,
        device_of: Callable[[Path], int] = _device_of,
    ) -> None:
        self._conn = conn
        self._paths = list(paths)
        self._min_gb = min_free_disk_gb
        self._free_gb = free_gb
        self._device_of = device_of
        self.status: DiskStatus | None = None
        self.stuck_reason: str | None = None
        self.held = False
        """Whether an operator holds intake (``state.intake``), as last read."""

    @property
    def is_open(self) -> bool:
        """Whether new groups may be enqueued and conversions started."""
        return not self.held and (self.status is None or not self.status.is_low)

    def read_hold(self) -> bool:
        """Read the operator's hold from the database (loop thread); return it."""
        hold = intake_hold(self._conn)
        held = bool(hold and hold.get("paused"))
        if held != self.held:
            log.warning(
                "intake held by an operator" if held else "operator hold released",
                extra={"reason": (hold or {}).get("reason")},
            )
        self.held = held
        return held

    def measure(self) -> DiskStatus:
        """Measure the free space (file-system calls only: any thread)."""
        return check_free_disk(
            self._paths,
            min_free_disk_gb=self._min_gb,
            free_gb=self._free_gb,
            device_of=self._device_of,
        )

    def update(self, now: datetime) -> DiskStatus:
        """Measure the free space; log and store the state when it changed."""
        return self.publish(self.measure(), now)

    def publish(self, status: DiskStatus, now: datetime) -> DiskStatus:
        """Adopt a measurement; log and store the state when it changed.

        Runs on the loop's thread (it writes the ``intake`` service flag). The
        operator's hold is read here too.
        """
        self.read_hold()
        before = self.status
        changed = (
            before is None
            or status.is_low != before.is_low
            or self.stuck_reason is not None
        )
        if self.stuck_reason is not None:
            log.info("intake scan returned after being stuck")
        self.stuck_reason = None
        self.status = status
        if changed:
            if status.is_low:
                log.warning(
                    "intake paused: disk nearly full",
                    extra={"reason": status.reason, "free_gb": status.free_gb},
                )
            elif before is not None:
                log.info("intake open", extra={"free_gb": status.free_gb})
            set_service_state(
                self._conn,
                "intake",
                {
                    "paused": status.is_low,
                    "reason": status.reason,
                    "free_gb": status.free_gb,
                    "min_free_disk_gb": status.min_free_disk_gb,
                },
                now=now,
            )
        return status

    def mark_stuck(self, reason: str, now: datetime) -> None:
        """Record that the intake scan hangs (``status`` shows it) until it returns."""
        if self.stuck_reason == reason:
            return
        self.stuck_reason = reason
        previous = self.status
        set_service_state(
            self._conn,
            "intake",
            {
                "paused": previous is not None and previous.is_low,
                "stuck": True,
                "reason": reason,
                "free_gb": {} if previous is None else previous.free_gb,
                "min_free_disk_gb": self._min_gb,
            },
            now=now,
        )
