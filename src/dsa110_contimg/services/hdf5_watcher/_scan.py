"""Decide when the subband groups of an incoming directory are ready.

`SubbandWatcher.scan` is the watcher's whole decision, a pure step apart from
listing the directory and reading file headers: called with the current time
(a fake clock in tests), it returns the groups that just became ready. A group
is ready when

* all its subbands are present, every file's size and mtime have stayed the
  same across two scans at least ``settle_s`` apart, and the headers of its
  files read and agree (`read_group_header`); or
* ``group_timeout_s`` has passed since its first file was seen. A timed-out
  group missing subbands is converted with them flagged or quarantined,
  following ``timeout_policy``; one whose files are all present but
  unreadable is passed on, and conversion quarantines it with the reader's
  reason.

Files are grouped with `group_subband_files` (by their data's own time when
the header reads), so timestamp jitter, duplicate and out-of-order arrivals
are handled as in batch processing. Files that cannot take part (a name that
is not a time, a stray subband number, a FIFO or other non-regular file, the
losing copy of a duplicate) are set aside and listed in `rejected` with a
reason; nothing else stops. Each group is decided once; a file that later
arrives for a decided group is set aside as ``late`` once its size and mtime
have settled like any other file (the service then reconverts the group with
it; ``requeue --reconvert`` does it by hand). After a restart the groups
decided before come from the job queue (`add_known_groups`) with the files
each group's job lists: a file of such a group that its job does not list
arrived while the stream was down and is ``late`` too; without a listing
(the job deleted by retention) the group's files are taken as they are. A
decision the caller could not enqueue is handed back with `forget`, and the
next scan decides it again.

The scan only reads the file system (no database); the service runs it in a
worker thread so a read that hangs cannot stop the event loop.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from dsa110_contimg.data_ingestion._uvh5_reader import read_group_header
from dsa110_contimg.data_ingestion.grouping import (
    SUBBAND_GLOB,
    FileProbe,
    RejectedFile,
    SubbandGroup,
    group_subband_files,
    not_regular_file,
    probe_subband_file,
    scan_subband_files,
)
from dsa110_contimg.exceptions import InputDataError
from dsa110_contimg.telescope.dsa110 import SubbandFile
from dsa110_contimg.utils.config import WatcherConfig

__all__ = ["GroupDecision", "SubbandWatcher"]

log = logging.getLogger(__name__)

ReadableCheck = Callable[[SubbandGroup], str | None]

_MAX_READABLE_CACHE = 256


def _check_headers(group: SubbandGroup) -> str | None:
    try:
        read_group_header(group)
    except InputDataError as err:
        return str(err)
    return None


@dataclass(frozen=True, slots=True)
class GroupDecision:
    """A group the watcher has finished waiting for.

    Attributes
    ----------
    group : SubbandGroup
        Its files.
    action : {"convert", "quarantine"}
        Enqueue a conversion, or set the group aside for an operator.
    is_complete : bool
        All subbands were present, stable and readable.
    reason : str
        Why it was decided (``"complete"`` or what the timeout left missing).
    first_seen_at : datetime
        When its first file was seen.
    """

    group: SubbandGroup
    action: Literal["convert", "quarantine"]
    is_complete: bool
    reason: str
    first_seen_at: datetime


@dataclass(slots=True)
class _FileState:
    size: int
    mtime_ns: int
    first_seen: datetime
    unchanged_since: datetime
    n_same: int


class SubbandWatcher:
    """Track subband files in a directory and decide ready groups.

    Parameters
    ----------
    incoming_dir : Path
        Directory of ``<isot>_sbNN.hdf5`` files (not recursive).
    cfg : WatcherConfig
        The ``watcher`` section.
    tolerance_s : float
        Grouping tolerance (``conversion.group_tolerance_s``).
    n_expected : int
        Subbands in a complete group (``conversion.expected_n_subbands``).
    check_readable : callable, optional
        Returns None when a group's files read, else the problem; default
        validates the UVH5 headers with `read_group_header`.
    """

    def __init__(
        self,
        incoming_dir: Path,
        cfg: WatcherConfig,
        *,
        tolerance_s: float,
        n_expected: int,
        check_readable: ReadableCheck | None = None,
    ) -> None:
        self.incoming_dir = Path(incoming_dir)
        self.cfg = cfg
        self.tolerance_s = tolerance_s
        self.n_expected = n_expected
        self._check_readable = check_readable or _check_headers
        self._files: dict[Path, _FileState] = {}
        self._known: list[datetime] = []
        self._decided_paths: set[Path] = set()
        self._listed: dict[datetime, frozenset[str]] = {}
        self._n_scans = 0
        self._readable: dict[tuple[object, ...], str | None] = {}
        self._probes: dict[Path, tuple[tuple[int, int], FileProbe]] = {}
        self._reported: dict[Path, str] = {}
        self.n_waiting = 0
        self.rejected: list[RejectedFile] = []
        """Files newly set aside by the latest scan (record them)."""

    def add_known_groups(
        self,
        start_times: Iterable[datetime],
        *,
        listed: Mapping[datetime, Iterable[str]] | None = None,
    ) -> None:
        """Mark groups as already decided (e.g. from the job queue at start-up).

        Parameters
        ----------
        start_times : iterable of datetime
            Start times of the decided groups.
        listed : mapping of datetime to iterable of str, optional
            For some of them, the names of the files their job lists; at the
            first scan, a file of such a group not among them is ``late``.
        """
        for t in start_times:
            bisect.insort(self._known, t)
        for t, names in (listed or {}).items():
            self._listed[t] = frozenset(names)

    def _known_group(self, stamp: datetime) -> datetime | None:
        i = bisect.bisect_left(self._known, stamp - timedelta(seconds=self.tolerance_s))
        if i < len(self._known) and (
            self._known[i] <= stamp + timedelta(seconds=self.tolerance_s)
        ):
            return self._known[i]
        return None

    def _is_known(self, stamp: datetime) -> bool:
        return self._known_group(stamp) is not None

    def forget(self, decision: GroupDecision) -> None:
        """Undo a decision that could not be enqueued; the next scan redoes it."""
        start = decision.group.start_time
        i = bisect.bisect_left(self._known, start)
        if i < len(self._known) and self._known[i] == start:
            del self._known[i]
        self._decided_paths -= {*decision.group.files.values()}

    def _probe(self, path: Path) -> FileProbe:
        state = self._files.get(path)
        signature = (state.size, state.mtime_ns) if state else (-1, -1)
        cached = self._probes.get(path)
        if cached is None or cached[0] != signature:
            cached = (signature, probe_subband_file(path))
            self._probes[path] = cached
        return cached[1]

    def _report(self, rejected: list[RejectedFile]) -> None:
        fresh = [r for r in rejected if self._reported.get(r.path) != r.reason]
        for r in fresh:
            self._reported[r.path] = r.reason
            log.warning(
                "raw file set aside",
                extra={"path": str(r.path), "kind": r.kind, "reason": r.reason},
            )
        self.rejected += fresh

    def _observe(
        self, parsed: SubbandFile, now: datetime, rejected: list[RejectedFile]
    ) -> bool:
        try:
            st = parsed.path.stat()
        except FileNotFoundError:
            return False
        odd = not_regular_file(parsed.path, st.st_mode)
        if odd is not None:  # e.g. a FIFO: never opened
            rejected.append(odd)
            return False
        state = self._files.get(parsed.path)
        if state is None:
            self._files[parsed.path] = _FileState(
                st.st_size, st.st_mtime_ns, now, now, 1
            )
        elif (st.st_size, st.st_mtime_ns) != (state.size, state.mtime_ns):
            state.size, state.mtime_ns = st.st_size, st.st_mtime_ns
            state.unchanged_since, state.n_same = now, 1
        else:
            state.n_same += 1
        return True

    def _is_stable(self, path: Path, now: datetime) -> bool:
        state = self._files[path]
        settled = (now - state.unchanged_since).total_seconds() >= self.cfg.settle_s
        return state.n_same >= 2 and settled

    def _readable_problem(self, group: SubbandGroup) -> str | None:
        signature = tuple(
            (p, self._files[p].size, self._files[p].mtime_ns)
            for p in sorted(group.files.values())
        )
        if signature not in self._readable:
            if len(self._readable) >= _MAX_READABLE_CACHE:
                self._readable.clear()
            self._readable[signature] = self._check_readable(group)
        return self._readable[signature]

    def scan(self, now: datetime) -> list[GroupDecision]:
        """Look at the directory once and return the groups decided now.

        Parameters
        ----------
        now : datetime
            Current time (timezone-aware); drives the settle and timeout rules.

        Returns
        -------
        list of GroupDecision
            In time order; each group is returned by exactly one scan.
        """
        self.rejected = []
        candidates: list[SubbandFile] = []
        present: set[Path] = set()
        known: dict[Path, datetime] = {}
        parsed_files, rejected = scan_subband_files(
            self.incoming_dir.glob(SUBBAND_GLOB),
            n_expected=self.n_expected,
            check_regular=False,  # _observe checks, and only undecided files
        )
        by_path: dict[Path, SubbandFile] = {}
        for parsed in parsed_files:
            group_start = self._known_group(parsed.timestamp)
            if group_start is not None:
                known[parsed.path] = group_start  # decided before: not even a stat
                by_path[parsed.path] = parsed
            elif self._observe(parsed, now, rejected):
                present.add(parsed.path)
                candidates.append(parsed)
        if not self._n_scans:  # the files decided before this process started
            self._decided_paths |= {
                p
                for p, start in known.items()
                if start not in self._listed or p.name in self._listed[start]
            }
            self._listed = {}
        settling = set()
        for late in sorted(set(known) - self._decided_paths - set(self._reported)):
            if not self._observe(by_path[late], now, rejected):
                continue  # gone, or not a regular file (set aside as such)
            present.add(late)
            if not self._is_stable(late, now):
                settling.add(late)  # still being written: looked at again
                continue
            group_id = known[late].strftime("%Y-%m-%dT%H:%M:%S")
            reason = (
                f"{late}: arrived after its group {group_id} was decided; "
                "the stream reconverts the group with it once the group's "
                "job has finished (if this row stays, run 'dsa110-contimg "
                "requeue --reconvert' on the group's convert_group job)"
            )
            rejected.append(RejectedFile(late, "late", reason, group_id))
        self._decided_paths = set(known) - settling
        self._n_scans += 1
        for gone in set(self._files) - present:
            del self._files[gone]
            self._probes.pop(gone, None)
        groups = group_subband_files(
            candidates,
            tolerance_s=self.tolerance_s,
            n_expected=self.n_expected,
            probe=self._probe,
        )
        decisions = []
        for group in groups:
            decision = self._decide(group, now)
            if decision is not None:
                decisions.append(decision)
                bisect.insort(self._known, group.start_time)
                self._decided_paths |= {*group.files.values(), *group.duplicates}
                rejected += group.set_aside
        self._report(rejected)
        self.n_waiting = len(groups) - len(decisions) + len(settling)
        return decisions

    def _decide(self, group: SubbandGroup, now: datetime) -> GroupDecision | None:
        paths = [*group.files.values(), *group.duplicates]
        first_seen = min(self._files[p].first_seen for p in paths)
        waited_s = (now - first_seen).total_seconds()
        timed_out = waited_s >= self.cfg.group_timeout_s
        unstable = [p.name for p in group.files.values() if not self._is_stable(p, now)]
        if group.is_complete and not unstable:
            problem = self._readable_problem(group)
            if problem is None:
                return GroupDecision(group, "convert", True, "complete", first_seen)
            if not timed_out:
                log.debug("group not readable yet", extra={"group": group.group_id})
                return None
            reason = (
                f"timed out after {waited_s:.0f} s with unreadable file(s): {problem}"
            )
            return GroupDecision(group, "convert", False, reason, first_seen)
        if not timed_out:
            return None
        missing = ", ".join(f"sb{sb:02d}" for sb in group.missing_subbands)
        parts = [f"timed out after {waited_s:.0f} s"]
        if missing:
            parts.append(f"missing {missing}")
        if unstable:
            parts.append(f"still changing: {', '.join(sorted(unstable))}")
        reason = "; ".join(parts)
        if group.missing_subbands and self.cfg.timeout_policy == "quarantine":
            log.warning("group timed out, quarantined", extra={"group": group.group_id})
            return GroupDecision(group, "quarantine", False, reason, first_seen)
        log.warning(
            "group timed out, converting what arrived",
            extra={"group": group.group_id, "reason": reason},
        )
        return GroupDecision(group, "convert", False, reason, first_seen)
