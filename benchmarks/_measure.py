"""Measure one benchmark stage in a fresh process: wall, CPU, peak RSS, I/O.

Each stage runs in its own spawned process so that its peak resident memory
(``VmHWM``) is its own and not an earlier stage's. CPU time and peak
memory include the child processes it waited for (WSClean, the CASA tclean
child); so do the I/O counters of ``/proc/self/io``, which Linux adds to a
parent when it reaps a child.
"""

from __future__ import annotations

import multiprocessing
import resource
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["StageResult", "measure", "proc_io", "run_measured"]

_MB = 2**20


@dataclass(slots=True)
class StageResult:
    """What one stage cost.

    ``read_mb`` / ``written_mb`` count every byte passed through read/write
    system calls (``rchar`` / ``wchar``: page-cache hits included);
    ``disk_read_mb`` / ``disk_written_mb`` count what reached the block device
    (``read_bytes`` / ``write_bytes``; reads served from the page cache are not
    in it, writes are counted when the page is dirtied).
    """

    name: str
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    read_mb: float
    written_mb: float
    disk_read_mb: float
    disk_written_mb: float
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def cpu_per_wall(self) -> float:
        """Average number of busy cores."""
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, float):
                out[key] = round(value, 3)
        out["cpu_per_wall"] = round(self.cpu_per_wall, 2)
        return out


def proc_io() -> dict[str, int]:
    """This process's I/O counters (``/proc/self/io``); empty off Linux."""
    try:
        text = Path("/proc/self/io").read_text()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        out[key.strip()] = int(value)
    return out


def peak_rss_self_mb() -> float:
    """This process's own peak resident memory (``VmHWM``), MB.

    Not ``ru_maxrss``: Linux carries that across ``execve`` from the process
    that forked, so a freshly spawned worker would report its parent's size.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def reset_peak_rss() -> bool:
    """Reset this process's ``VmHWM`` to its current size (Linux ``clear_refs``).

    Returns whether it was reset (False off Linux or where not allowed): a
    process that runs group after group then reports each group's own peak.
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _cpu(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def run_measured(
    name: str, fn: Callable[..., dict[str, Any] | None], kwargs: dict[str, Any]
) -> StageResult:
    """Call ``fn(**kwargs)`` in this process and measure it (child side)."""
    io0 = proc_io()
    self0 = resource.getrusage(resource.RUSAGE_SELF)
    child0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    info = fn(**kwargs) or {}
    wall = time.perf_counter() - t0
    self1 = resource.getrusage(resource.RUSAGE_SELF)
    child1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    io1 = proc_io()

    def delta(key: str) -> float:
        return (io1.get(key, 0) - io0.get(key, 0)) / _MB

    return StageResult(
        name=name,
        wall_s=wall,
        cpu_s=_cpu(self1) - _cpu(self0) + _cpu(child1) - _cpu(child0),
        # children (imagers) that were waited for: ru_maxrss, KiB on Linux
        peak_rss_mb=max(peak_rss_self_mb(), child1.ru_maxrss / 1024.0),
        read_mb=delta("rchar"),
        written_mb=delta("wchar"),
        disk_read_mb=delta("read_bytes"),
        disk_written_mb=delta("write_bytes"),
        info=dict(info),
    )


def measure(
    name: str,
    fn: Callable[..., dict[str, Any] | None],
    *,
    progress: Callable[[str], None] | None = print,
    **kwargs: Any,
) -> StageResult:
    """Run ``fn(**kwargs)`` in a fresh spawned process and measure it.

    ``fn`` must be importable (a module-level function) and return a
    JSON-serialisable dict of facts about its work (or None). Exceptions in
    the stage propagate.
    """
    if progress is not None:
        progress(f"  {name} ...")
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        result = pool.submit(run_measured, name, fn, kwargs).result()
    if progress is not None:
        progress(
            f"  {name}: {result.wall_s:.1f} s wall, {result.cpu_s:.1f} s CPU, "
            f"{result.peak_rss_mb:.0f} MB peak"
        )
    return result
