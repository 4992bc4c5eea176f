"""The rule that says a stream's block window is ready.

The windows themselves (`BlockWindow`, `block_windows_containing`) are cut by
`dsa110_contimg.products` on the grid batch uses too: ``mosaic_duration_min``
long, starting every ``mosaic_duration_min - mosaic_overlap_min`` from
``queue.block_anchor_time``, so every process (and every restart, and a batch
run over the same files) cuts the same blocks whatever order data arrives in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from dsa110_contimg.products import BlockWindow, block_windows_containing

__all__ = [
    "BlockWindow",
    "GroupStatus",
    "BlockDecision",
    "block_windows_containing",
    "decide_block",
]


@dataclass(frozen=True, slots=True)
class GroupStatus:
    """A group's conversion job as the block planner sees it."""

    group_id: str
    start_time: datetime
    state: str
    ms_path: str | None
    finished_at: datetime | None
    priority: int


@dataclass(frozen=True, slots=True)
class BlockDecision:
    """A block to enqueue (or to redo with more groups).

    Attributes
    ----------
    window : BlockWindow
        Its time window.
    groups : dict
        Group id -> MS path of the converted groups it holds.
    priority : int
        The most urgent of its groups' priorities.
    reason : str
        Why it is ready.
    is_update : bool
        The block was processed before and has gained groups.
    """

    window: BlockWindow
    groups: dict[str, str]
    priority: int
    reason: str
    is_update: bool = False


def decide_block(
    window: BlockWindow,
    members: Sequence[GroupStatus],
    *,
    latest_data_time: datetime,
    now: datetime,
    wait_s: float,
    existing: Mapping[str, str] | None = None,
    existing_state: str | None = None,
) -> BlockDecision | None:
    """Return the block to enqueue for ``window``, or None while it must wait.

    A window is ready when none of its groups is still converting and either
    data later than its end has been seen, or ``wait_s`` has passed since its
    last group finished (the end of an observation, or a gap). Groups that
    failed or were quarantined are left out. A block already processed
    (``existing_state == "done"``) is redone when more of its groups have
    converted since (late data).

    Parameters
    ----------
    window : BlockWindow
        The window.
    members : sequence of GroupStatus
        Conversion jobs of the groups whose start time lies in the window.
    latest_data_time : datetime
        Start time of the latest group seen in any window.
    now : datetime
        Current time.
    wait_s : float
        ``queue.block_wait_s``.
    existing : mapping, optional
        Group id -> MS path of the block job already enqueued, if any.
    existing_state : str, optional
        State of that job.
    """
    if not members or any(g.state in ("pending", "running") for g in members):
        return None
    done = {g.group_id: g.ms_path for g in members if g.state == "done" and g.ms_path}
    if not done:
        return None
    priority = min(g.priority for g in members)
    if existing is not None:
        added = sorted(set(done) - set(existing))
        if existing_state != "done" or not added:
            return None
        reason = f"late group(s) {', '.join(added)} converted after the block ran"
        return BlockDecision(window, dict(sorted(done.items())), priority, reason, True)
    finished = [g.finished_at for g in members if g.finished_at is not None]
    if latest_data_time >= window.end:
        reason = "data past the window end has arrived"
    elif finished and (now - max(finished)).total_seconds() >= wait_s:
        reason = f"no new group for {wait_s:g} s after the last one converted"
    else:
        return None
    return BlockDecision(window, dict(sorted(done.items())), priority, reason)
