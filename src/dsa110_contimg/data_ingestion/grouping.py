"""Discover raw subband files and group them into 5-minute subband groups.

File-name timestamps of one group jitter by seconds while the ``time_array``
inside is identical, so groups are formed by clustering file times within a
tolerance rather than by exact name match.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from dsa110_contimg.telescope import dsa110
from dsa110_contimg.telescope.dsa110 import SubbandFile, parse_subband_filename

__all__ = ["SubbandGroup", "discover_subband_files", "group_subband_files"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SubbandGroup:
    """The raw files of one time chunk.

    Attributes
    ----------
    start_time : datetime
        Earliest file timestamp of the group (UTC); names the group and its MS.
    files : dict
        Subband index -> path.
    duplicates : tuple of Path
        Extra files claiming a subband already present (ignored).
    n_expected : int
        Number of subbands a complete group has.
    """

    start_time: datetime
    files: dict[int, Path]
    duplicates: tuple[Path, ...] = ()
    n_expected: int = dsa110.N_SUBBANDS

    @property
    def group_id(self) -> str:
        """Return the group identifier, the ISO timestamp of its first file."""
        return self.start_time.strftime("%Y-%m-%dT%H:%M:%S")

    @property
    def missing_subbands(self) -> tuple[int, ...]:
        """Return the subband indices with no file."""
        return tuple(sb for sb in range(self.n_expected) if sb not in self.files)

    @property
    def is_complete(self) -> bool:
        """Return True when every expected subband has a file."""
        return not self.missing_subbands


def discover_subband_files(directory: str | Path) -> list[SubbandFile]:
    """Return the raw subband files in ``directory`` (not recursive), by time."""
    directory = Path(directory)
    found = []
    for path in directory.glob("*_sb*.hdf5"):
        parsed = parse_subband_filename(path)
        if parsed is not None:
            found.append(parsed)
    return sorted(found, key=lambda f: (f.timestamp, f.subband))


def group_subband_files(
    files: list[SubbandFile],
    *,
    tolerance_s: float = 90.0,
    n_expected: int = dsa110.N_SUBBANDS,
) -> list[SubbandGroup]:
    """Cluster subband files into groups by timestamp.

    A file joins the current group when its timestamp is within
    ``tolerance_s`` of the group's first file; otherwise it starts a new
    group. A second file for a subband already in the group is recorded as a
    duplicate and not used.

    Parameters
    ----------
    files : list of SubbandFile
        Parsed file names (any order).
    tolerance_s : float
        Maximum spread of file timestamps within one group, seconds.
    n_expected : int
        Subbands in a complete group.

    Returns
    -------
    list of SubbandGroup
        In time order.
    """
    groups: list[SubbandGroup] = []
    current: list[SubbandFile] = []
    for f in sorted(files, key=lambda f: (f.timestamp, f.subband)):
        if (
            current
            and (f.timestamp - current[0].timestamp).total_seconds() > tolerance_s
        ):
            groups.append(_make_group(current, n_expected))
            current = []
        current.append(f)
    if current:
        groups.append(_make_group(current, n_expected))
    return groups


def _make_group(members: list[SubbandFile], n_expected: int) -> SubbandGroup:
    by_sb: dict[int, Path] = {}
    duplicates: list[Path] = []
    for f in members:
        if f.subband in by_sb:
            duplicates.append(f.path)
            log.warning(
                "duplicate subband file ignored",
                extra={"path": str(f.path), "kept": str(by_sb[f.subband])},
            )
        else:
            by_sb[f.subband] = f.path
    return SubbandGroup(members[0].timestamp, by_sb, tuple(duplicates), n_expected)
