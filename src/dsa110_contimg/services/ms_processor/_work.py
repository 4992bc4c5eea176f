"""Work the ms_processor runs in pool processes: conversion and MS checks.

These functions take plain arguments (picklable) and return plain dicts, so
any executor can run them.
"""

from __future__ import annotations

import logging
import shutil
from datetime import UTC, datetime
from pathlib import Path

from dsa110_contimg._optional import require
from dsa110_contimg.data_ingestion.grouping import (
    RejectedFile,
    SubbandGroup,
    find_subband_groups,
)
from dsa110_contimg.data_ingestion.ms_creation import is_valid_ms, validate_ms
from dsa110_contimg.exceptions import InputDataError
from dsa110_contimg.pipeline.stages.conversion_stage import convert_groups
from dsa110_contimg.telescope.dsa110 import ms_filename
from dsa110_contimg.utils.config import ConversionConfig

__all__ = [
    "CORRUPT_DIR_NAME",
    "SUPERSEDED_DIR_NAME",
    "check_ms",
    "check_ms_files",
    "convert_job",
    "reconvert_payload",
    "set_aside",
    "supersede_images",
]

log = logging.getLogger(__name__)

CORRUPT_DIR_NAME = "corrupt"
"""Sub-directory of ``paths.ms_stage1_dir`` where corrupt MSs are moved."""


def check_ms(path: Path) -> str | None:
    """Return what is wrong with a converted MS, or None when it is usable.

    Beyond the converter's completion mark this checks the MS invariants
    (`validate_ms`) and reads the last row of the data columns, which fails
    on a truncated or damaged table.
    """
    path = Path(path)
    if not path.exists():
        return "does not exist"
    if not is_valid_ms(path):
        return (
            "is not marked complete by the converter (interrupted write, or "
            "written in an older MS format?)"
        )
    tables = require("casacore.tables", "casa")
    try:
        validate_ms(path)
        with tables.table(str(path), ack=False) as ms:
            n_rows = ms.nrows()
            if n_rows == 0:
                return "has no rows"
            for column in ("DATA", "FLAG", "UVW"):
                ms.getcol(column, startrow=n_rows - 1, nrow=1)
    except (InputDataError, RuntimeError, OSError) as err:
        return f"is unreadable ({err})"
    return None


def set_aside(path: Path, problem: str) -> Path:
    """Move a corrupt MS to ``<its dir>/corrupt/`` (kept for diagnosis)."""
    path = Path(path)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    dest = path.parent / CORRUPT_DIR_NAME / f"{path.name}.{stamp}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(path), str(dest))
    log.warning(
        "corrupt ms set aside",
        extra={"path": str(path), "moved_to": str(dest), "problem": problem},
    )
    return dest


SUPERSEDED_DIR_NAME = "superseded"
"""Sub-directory of ``paths.images_dir`` where images of a replaced MS go."""


def supersede_images(ms_path: Path, images_dir: Path) -> list[str]:
    """Move the image products of ``ms_path`` aside so the MS is imaged again.

    They go to ``<images_dir>/superseded/<UTC stamp>/`` (kept, not deleted);
    the block's next run images the new MS and remakes its mosaic.
    """
    from dsa110_contimg.products import ImageNames

    products = ImageNames.for_ms(ms_path, images_dir).existing()
    if not products:
        return []
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    dest = Path(images_dir) / SUPERSEDED_DIR_NAME / stamp
    dest.mkdir(parents=True, exist_ok=True)
    moved = []
    for path in products:
        target = dest / path.name
        path.replace(target)
        moved.append(str(target))
    log.info(
        "images of a reconverted ms set aside",
        extra={"ms": str(ms_path), "moved_to": str(dest), "n_files": len(moved)},
    )
    return moved


def convert_job(
    payload: dict[str, object],
    cfg: ConversionConfig,
    ms_dir: str,
    images_dir: str | None = None,
) -> dict[str, object]:
    """Convert one group described by a ``convert_group`` job payload.

    An existing MS is kept when it passes `check_ms` and replaced when it is
    corrupt. Missing subbands are flagged when the payload says the watcher
    timed out with ``flag_missing``. A payload with ``reconvert`` (``requeue
    --reconvert``: a late subband arrived) converts again over a valid MS and
    moves that MS's images aside (`supersede_images`) so they are remade.

    Raises
    ------
    PipelineError
        From conversion: `InputDataError` (unreadable or inconsistent files,
        missing subbands) or `ResourceError` (disk full, unwritable).
    """
    files = payload["files"]
    if not isinstance(files, dict):
        msg = f"job payload 'files' must be a mapping, got {type(files).__name__}"
        raise TypeError(msg)
    start = datetime.fromisoformat(str(payload["start_time_iso"]))
    group = SubbandGroup(
        start_time=start,
        files={int(sb): Path(p) for sb, p in files.items()},
        n_expected=cfg.expected_n_subbands,
    )
    final = Path(ms_dir) / ms_filename(start)
    replaced = None
    if final.exists() and not cfg.overwrite:
        problem = check_ms(final)
        if problem is not None:
            replaced = str(set_aside(final, problem))
    if payload.get("flag_missing"):
        cfg = cfg.model_copy(update={"incomplete_policy": "flag"})
    reconvert = bool(payload.get("reconvert"))
    if reconvert:
        cfg = cfg.model_copy(update={"overwrite": True})
    report = convert_groups([group], Path(ms_dir), cfg)
    if report.failures:
        raise next(iter(report.failures.values()))
    product = report.products[0]
    superseded = (
        supersede_images(product.path, Path(images_dir))
        if reconvert and images_dir
        else []
    )
    return {
        "group_id": product.group_id,
        "ms_path": str(product.path),
        "skipped": product.skipped,
        "n_subbands_present": product.n_subbands_present,
        "missing_subbands": list(group.missing_subbands),
        "replaced_corrupt_ms": replaced,
        "reconverted": reconvert,
        "superseded_images": superseded,
    }


def check_ms_files(ms_files: list[str]) -> dict[str, str]:
    """Check a block's MSs; set corrupt ones aside.

    Returns
    -------
    dict
        MS path -> problem, for each MS that is missing or was corrupt.
    """
    problems = {}
    for ms in ms_files:
        problem = check_ms(Path(ms))
        if problem is None:
            continue
        if Path(ms).exists():
            where = set_aside(Path(ms), problem)
            problem = f"{problem}; moved to {where}"
        problems[ms] = problem
    return problems


def reconvert_payload(
    payload: dict[str, object],
    *,
    incoming_dir: Path,
    tolerance_s: float,
    n_expected: int,
) -> tuple[dict[str, object], list[RejectedFile]]:
    """Return a ``convert_group`` payload with the group's files as they are now.

    The group keeps its id and start time (so its MS keeps its name: one
    group, one MS); its file list is taken from a fresh grouping of
    ``incoming_dir`` (late subbands included), and ``reconvert`` is set.

    Returns
    -------
    payload : dict
        The new payload.
    rejected : list of RejectedFile
        Files set aside by that grouping.

    Raises
    ------
    InputDataError
        No group of ``incoming_dir`` lies within ``tolerance_s`` of the job's.
    """
    start = datetime.fromisoformat(str(payload["start_time_iso"]))
    scan = find_subband_groups(
        incoming_dir, tolerance_s=tolerance_s, n_expected=n_expected
    )
    near = [
        g
        for g in scan.groups
        if abs((g.start_time - start).total_seconds()) <= tolerance_s
    ]
    if not near:
        msg = (
            f"group {payload.get('group_id')}: no raw files near {start.isoformat()} "
            f"in {incoming_dir}; nothing to reconvert (are the files still there?)"
        )
        raise InputDataError(msg)
    group = min(near, key=lambda g: abs((g.start_time - start).total_seconds()))
    new = dict(payload)
    new.update(
        files={f"{sb:02d}": str(p) for sb, p in sorted(group.files.items())},
        missing_subbands=list(group.missing_subbands),
        duplicates=[str(p) for p in group.duplicates],
        flag_missing=bool(group.missing_subbands),
        decision=f"reconvert with {len(group.files)} subband(s) present",
        reconvert=True,
    )
    return new, scan.rejected
