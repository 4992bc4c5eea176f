"""Start-up audit: finished blocks whose products were damaged are redone.

Products are flushed before they are renamed into place, so a crash cannot
publish a half-written file; but a disk fault, a power loss on storage that
ignores fsync, or a person can still leave a recorded product truncated or
empty. At start-up the stream checks the products of recently finished blocks
cheaply (existence, non-zero size, a FITS file's size against its header, a
CSV's header line) and sends a block with a damaged product back to the queue;
the re-run remakes only what is damaged (the stages never trust a product that
fails their checks) and leaves the rest.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path

from dsa110_contimg.pipeline.stages._product_checks import fits_size_problem
from dsa110_contimg.state.db import Connection, to_iso_utc
from dsa110_contimg.state.jobs import PROCESS_BLOCK, find_job, requeue_job
from dsa110_contimg.state.products import list_products_since

__all__ = ["product_problem", "audit_recent_products"]

log = logging.getLogger(__name__)

AUDIT_WINDOW = timedelta(days=2)


def product_problem(path: Path) -> str | None:
    """Return why a recorded product is damaged (cheap checks), or None."""
    path = Path(path)
    if path.is_dir():  # an MS: the stages check it themselves
        return None
    try:
        size = path.stat().st_size
    except OSError:
        return "missing"
    if size == 0:
        return "empty (0 bytes)"
    if path.suffix == ".fits":
        return fits_size_problem(path)
    if path.suffix == ".csv":
        try:
            with open(path, encoding="utf-8") as fh:
                first = fh.readline()
        except (OSError, UnicodeDecodeError) as err:
            return f"unreadable ({err})"
        if "source_name" not in first:
            return "no header line"
    return None


def audit_recent_products(
    conn: Connection, *, now: datetime, window: timedelta = AUDIT_WINDOW
) -> list[tuple[str, str]]:
    """Requeue finished blocks of the last ``window`` with a damaged product.

    Returns
    -------
    list of (block_id, reason)
        The blocks sent back, each with its first damaged product.
    """
    damaged: dict[str, str] = {}
    for row in list_products_since(conn, to_iso_utc(now - window)):
        block_id = str(row["block_id"])
        if block_id in damaged:
            continue
        problem = product_problem(Path(str(row["path"])))
        if problem is not None:
            damaged[block_id] = f"{row['kind']} {row['path']}: {problem}"
    requeued = []
    for block_id, reason in damaged.items():
        job = find_job(conn, PROCESS_BLOCK, block_id)
        if job is None or job.state != "done":
            continue
        requeue_job(
            conn,
            job.id,
            now=now,
            reason=f"product damaged since the block finished ({reason}); redone",
        )
        log.warning(
            "damaged product: block requeued", extra={"block": block_id, "why": reason}
        )
        requeued.append((block_id, reason))
    return requeued
