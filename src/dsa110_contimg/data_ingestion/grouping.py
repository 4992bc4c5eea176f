"""Discover raw subband files and group them into 5-minute subband groups.

File-name timestamps of one group jitter by seconds while the ``time_array``
inside is identical, so groups are formed by clustering times within a
tolerance rather than by exact name match. With a header probe
(`probe_subband_file`) each file is placed by the first time of its own
``time_array`` (its name time when the header does not read), so a copy
named seconds off still joins the group its data belongs to.

Files that cannot take part are *set aside* as `RejectedFile` records with a
reason naming the file, and everything else goes on: a name that matches the
pattern but is not a time, a subband number outside ``0..n_expected-1`` or not
two digits, something that is not a regular file (a FIFO named like a
subband file would block its reader forever), and the losing copy of two
files for one subband (unreadable, truncated, or further from the group's
time). Nothing is moved or deleted.
"""

from __future__ import annotations

import logging
import re
import stat
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from statistics import median
from typing import Literal

from dsa110_contimg.telescope import dsa110
from dsa110_contimg.telescope.dsa110 import SubbandFile, parse_subband_filename

__all__ = [
    "SUBBAND_GLOB",
    "FileProbe",
    "IncomingScan",
    "RejectedFile",
    "SubbandGroup",
    "discover_subband_files",
    "examine_subband_path",
    "find_subband_groups",
    "group_subband_files",
    "not_regular_file",
    "probe_subband_file",
    "scan_subband_files",
]

log = logging.getLogger(__name__)

SUBBAND_GLOB = "*_sb*.hdf5"
"""Names looked at in an incoming directory (others are not subband files)."""

_ID_FORMAT = "%Y-%m-%dT%H:%M:%S"
_JD_UNIX_EPOCH = 2440587.5
_SAME_DATA_S = 0.5
_NAME_RE = re.compile(r"^(?P<stamp>.*)_sb(?P<sb>[^_]*)\.hdf5$")

RejectKind = Literal[
    "bad_name", "unknown_subband", "not_regular", "duplicate", "late", "unreadable"
]


@dataclass(frozen=True, slots=True)
class RejectedFile:
    """A raw file set aside (not used, never deleted), and why.

    Attributes
    ----------
    path : Path
        The file.
    kind : str
        ``bad_name``, ``unknown_subband``, ``not_regular``, ``duplicate``,
        ``late`` or ``unreadable``.
    reason : str
        What is wrong and what to do, naming the file.
    group_id : str, optional
        The group it claimed to belong to, when known.
    """

    path: Path
    kind: RejectKind
    reason: str
    group_id: str | None = None


@dataclass(frozen=True, slots=True)
class FileProbe:
    """What a file's header says (see `probe_subband_file`).

    Attributes
    ----------
    data_start : datetime or None
        First time of its ``time_array`` (UTC); None when unreadable.
    problem : str or None
        Why it is unreadable or incomplete; None when it reads.
    """

    data_start: datetime | None
    problem: str | None


Probe = Callable[[Path], FileProbe]


@dataclass(frozen=True, slots=True)
class SubbandGroup:
    """The raw files of one time chunk.

    Attributes
    ----------
    start_time : datetime
        Earliest name timestamp of the files used (UTC); names the group and
        its MS. Copies set aside do not move it, so a duplicate named earlier
        cannot rename the group (one group, one MS).
    files : dict
        Subband index -> path.
    duplicates : tuple of Path
        Extra files claiming a subband already present (set aside, unused).
    n_expected : int
        Number of subbands a complete group has.
    set_aside : tuple of RejectedFile
        The duplicates with the reason each lost to the file kept.
    """

    start_time: datetime
    files: dict[int, Path]
    duplicates: tuple[Path, ...] = ()
    n_expected: int = dsa110.N_SUBBANDS
    set_aside: tuple[RejectedFile, ...] = ()

    @property
    def group_id(self) -> str:
        """Return the group identifier, the ISO timestamp of its first file."""
        return self.start_time.strftime(_ID_FORMAT)

    @property
    def missing_subbands(self) -> tuple[int, ...]:
        """Return the subband indices with no file."""
        return tuple(sb for sb in range(self.n_expected) if sb not in self.files)

    @property
    def is_complete(self) -> bool:
        """Return True when every expected subband has a file."""
        return not self.missing_subbands


def examine_subband_path(
    path: str | Path, *, n_expected: int = dsa110.N_SUBBANDS
) -> SubbandFile | RejectedFile:
    """Check one name: return the parsed file, or why it is set aside.

    Only the name is looked at (no file-system access).
    """
    path = Path(path)
    try:
        parsed = parse_subband_filename(path)
    except ValueError as err:  # matches the pattern, but e.g. hour 25
        stamp = path.name.split("_sb")[0]
        reason = (
            f"{path}: file-name time {stamp!r} is not a valid time ({err}); "
            "rename it <YYYY-MM-DDTHH:MM:SS>_sbNN.hdf5 with the observation time"
        )
        return RejectedFile(path, "bad_name", reason)
    if parsed is None:
        match = _NAME_RE.match(path.name)
        sb_text = match["sb"] if match else "?"
        reason = (
            f"{path}: name does not follow <YYYY-MM-DDTHH:MM:SS>_sbNN.hdf5 "
            f"(subband {sb_text!r} must be two digits, the time ISO 8601); "
            "rename it to take part"
        )
        return RejectedFile(path, "bad_name", reason)
    if parsed.subband >= n_expected:
        reason = (
            f"{path}: subband sb{parsed.subband:02d} is outside sb00..sb"
            f"{n_expected - 1:02d} (conversion.expected_n_subbands = {n_expected}); "
            "it belongs to no group"
        )
        return RejectedFile(
            path, "unknown_subband", reason, parsed.timestamp.strftime(_ID_FORMAT)
        )
    return parsed


def not_regular_file(path: Path, mode: int | None = None) -> RejectedFile | None:
    """Return why ``path`` is set aside when it is not a regular file, else None.

    ``mode`` is its ``st_mode`` when the caller has it (else ``lstat``).
    """
    if mode is None:
        try:
            mode = path.lstat().st_mode
        except FileNotFoundError:
            return None
    if stat.S_ISREG(mode):
        return None
    what = (
        "a FIFO"
        if stat.S_ISFIFO(mode)
        else "a directory"
        if stat.S_ISDIR(mode)
        else "a symbolic link"
        if stat.S_ISLNK(mode)
        else "not a regular file"
    )
    reason = (
        f"{path}: is {what}, not a regular file; raw files must be plain files "
        "(a reader would block on a FIFO); replace it with the real file"
    )
    return RejectedFile(path, "not_regular", reason)


def scan_subband_files(
    paths: Iterable[Path],
    *,
    n_expected: int = dsa110.N_SUBBANDS,
    check_regular: bool = True,
) -> tuple[list[SubbandFile], list[RejectedFile]]:
    """Split candidate paths into usable subband files and rejected ones.

    Parameters
    ----------
    paths : iterable of Path
        Paths named like subband files (e.g. ``dir.glob(SUBBAND_GLOB)``).
    n_expected : int
        Subbands in a complete group; higher numbers are rejected.
    check_regular : bool
        Also reject what is not a regular file (one ``lstat`` per path);
        False leaves that to the caller (`not_regular_file`).

    Returns
    -------
    files : list of SubbandFile
        By time, then subband.
    rejected : list of RejectedFile
        By path; each with a reason naming the file.
    """
    found: list[SubbandFile] = []
    rejected: list[RejectedFile] = []
    for path in paths:
        result = examine_subband_path(path, n_expected=n_expected)
        if isinstance(result, RejectedFile):
            rejected.append(result)
            continue
        odd = not_regular_file(result.path) if check_regular else None
        if odd is not None:
            rejected.append(odd)
            continue
        found.append(result)
    found.sort(key=lambda f: (f.timestamp, f.subband))
    rejected.sort(key=lambda r: str(r.path))
    return found, rejected


def _log_rejected(rejected: Iterable[RejectedFile]) -> None:
    for r in rejected:
        log.warning(
            "duplicate subband file set aside"
            if r.kind == "duplicate"
            else "raw file set aside",
            extra={"path": str(r.path), "kind": r.kind, "reason": r.reason},
        )


def discover_subband_files(
    directory: str | Path, *, n_expected: int = dsa110.N_SUBBANDS
) -> list[SubbandFile]:
    """Return the raw subband files in ``directory`` (not recursive), by time.

    Files set aside by `scan_subband_files` are logged with their reason.
    """
    files, rejected = scan_subband_files(
        Path(directory).glob(SUBBAND_GLOB), n_expected=n_expected
    )
    _log_rejected(rejected)
    return files


def probe_subband_file(path: Path) -> FileProbe:
    """Read the first integration time of a file and check it is complete.

    Only the header's first ``time_array`` value and the data set's layout
    are read. A file whose ``Data/visdata`` extends past its end (truncated
    copy) is reported as incomplete.
    """
    from pyuvdata.uvdata.uvh5 import FastUVH5Meta

    meta = FastUVH5Meta(path)
    try:
        times = meta.header["time_array"]
        first_jd = float(times[0]) if times.shape and times.shape[0] else None
        visdata = meta.datagrp["visdata"]
        offset = visdata.id.get_offset()
        size = visdata.id.get_storage_size()
        expected = visdata.size * visdata.dtype.itemsize
        on_disk = path.stat().st_size
    except (OSError, KeyError, ValueError, TypeError, IndexError) as err:
        return FileProbe(None, f"{path}: cannot read its UVH5 header ({err})")
    finally:
        meta.close()
    if first_jd is None:
        return FileProbe(None, f"{path}: empty time_array")
    start = datetime.fromtimestamp((first_jd - _JD_UNIX_EPOCH) * 86400.0, UTC)
    if offset is not None and offset + size > on_disk:
        return FileProbe(
            start,
            f"{path}: visdata ends at byte {offset + size}, beyond the file's "
            f"{on_disk} bytes (truncated copy)",
        )
    if offset is not None and size < expected:
        return FileProbe(
            start, f"{path}: visdata holds {size} of {expected} bytes (incomplete)"
        )
    return FileProbe(start, None)


def group_subband_files(
    files: list[SubbandFile],
    *,
    tolerance_s: float = 90.0,
    n_expected: int = dsa110.N_SUBBANDS,
    probe: Probe | None = None,
) -> list[SubbandGroup]:
    """Cluster subband files into groups by time.

    A file joins the current group when its time is within ``tolerance_s``
    of the group's first file; otherwise it starts a new group. Its time is
    the first time of its data when ``probe`` reads it, else its name time.
    Of two or more files for one subband one is kept: a readable, complete
    one before an unreadable one, then one whose data time agrees with the
    group's, then the one whose name time is closest to the group's median;
    the others are set aside with the reason.

    Parameters
    ----------
    files : list of SubbandFile
        Parsed file names (any order).
    tolerance_s : float
        Maximum spread of file times within one group, seconds.
    n_expected : int
        Subbands in a complete group.
    probe : callable, optional
        Reads a file's header (`probe_subband_file`); None groups by names
        only and keeps, of two copies, the one nearest the group's time.

    Returns
    -------
    list of SubbandGroup
        In time order.
    """
    probes = {f.path: probe(f.path) for f in files} if probe is not None else {}

    def when(f: SubbandFile) -> datetime:
        p = probes.get(f.path)
        return p.data_start if p is not None and p.data_start else f.timestamp

    groups: list[SubbandGroup] = []
    current: list[SubbandFile] = []
    for f in sorted(files, key=lambda f: (when(f), f.subband, f.path.name)):
        if current and (when(f) - when(current[0])).total_seconds() > tolerance_s:
            groups.append(_make_group(current, n_expected, probes))
            current = []
        current.append(f)
    if current:
        groups.append(_make_group(current, n_expected, probes))
    return groups


def _make_group(
    members: list[SubbandFile], n_expected: int, probes: dict[Path, FileProbe]
) -> SubbandGroup:
    by_sb: dict[int, list[SubbandFile]] = {}
    for f in members:
        by_sb.setdefault(f.subband, []).append(f)
    t_ref = median(f.timestamp.timestamp() for f in members)
    data_times = Counter(
        round(p.data_start.timestamp(), 1)
        for f in members
        if (p := probes.get(f.path)) is not None and p.data_start and not p.problem
    )
    consensus = data_times.most_common(1)[0][0] if data_times else None

    def rank(f: SubbandFile) -> tuple[object, ...]:
        p = probes.get(f.path)
        unreadable = p is not None and p.problem is not None
        disagrees = (
            consensus is not None
            and p is not None
            and p.data_start is not None
            and abs(p.data_start.timestamp() - consensus) > _SAME_DATA_S
        )
        return (unreadable, disagrees, abs(f.timestamp.timestamp() - t_ref), f.path)

    files: dict[int, Path] = {}
    set_aside: list[tuple[SubbandFile, SubbandFile]] = []
    for sb, copies in by_sb.items():
        ranked = sorted(copies, key=rank)
        files[sb] = ranked[0].path
        set_aside += [(loser, ranked[0]) for loser in ranked[1:]]
    kept = [f for f in members if files.get(f.subband) == f.path]
    start = min(f.timestamp for f in kept)
    rejected = []
    for loser, winner in sorted(set_aside, key=lambda pair: pair[0].path):
        p = probes.get(loser.path)
        if p is not None and p.problem:
            why = f"unreadable or incomplete ({p.problem})"
        elif rank(loser)[1]:
            why = "its data time differs from the group's"
        else:
            why = "its name time is further from the group's"
        reason = (
            f"{loser.path}: second file for sb{loser.subband:02d} of group "
            f"{start.strftime(_ID_FORMAT)}; {winner.path.name} is used, this one "
            f"is not: {why}"
        )
        rejected.append(
            RejectedFile(loser.path, "duplicate", reason, start.strftime(_ID_FORMAT))
        )
    _log_rejected(rejected)
    return SubbandGroup(
        start,
        dict(sorted(files.items())),
        tuple(r.path for r in rejected),
        n_expected,
        tuple(rejected),
    )


@dataclass(frozen=True, slots=True)
class IncomingScan:
    """The groups of an incoming directory and every file set aside."""

    groups: list[SubbandGroup]
    rejected: list[RejectedFile]


def find_subband_groups(
    directory: str | Path,
    *,
    tolerance_s: float = 90.0,
    n_expected: int = dsa110.N_SUBBANDS,
    probe: Probe | None = probe_subband_file,
) -> IncomingScan:
    """Group the raw files of ``directory`` and list the ones set aside.

    Names are checked first (`scan_subband_files`); the usable files are
    grouped by their data's time (`group_subband_files` with ``probe``).
    """
    files, rejected = scan_subband_files(
        Path(directory).glob(SUBBAND_GLOB), n_expected=n_expected
    )
    _log_rejected(rejected)
    groups = group_subband_files(
        files, tolerance_s=tolerance_s, n_expected=n_expected, probe=probe
    )
    rejected += [r for g in groups for r in g.set_aside]
    return IncomingScan(groups, rejected)
