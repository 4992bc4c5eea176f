"""Start-up audit: finished blocks whose products were damaged are redone.

Products are flushed before they are renamed into place, so a crash cannot
publish a half-written file; but a disk fault, a power loss on storage that
ignores fsync, or a person can still leave a recorded product truncated or
empty. At start-up the stream checks the products of recently finished blocks
cheaply (existence, non-zero size, a FITS file's size against its header, a
CSV's header line) and sends a block with a damaged product back to the queue;
the re-run remakes only what is damaged (the stages never trust a product that
fails their checks) and leaves the rest.

The light-curve store is checked too (`audit_lightcurve_store`): every
Parquet file and the manifest are checked and repaired
(`dsa110_contimg.lightcurves.repair_store`: damaged epochs dropped, never
trusted; the manifest, runs and running sums rebuilt from the epoch files),
and every epoch that a finished ``update_variability`` job recorded but the
store no longer holds is ingested again by requeuing that job, which re-reads
the block's photometry table (the source of truth). Epochs are keyed by id,
so a redone ingest replaces, never duplicates.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path

from dsa110_contimg.exceptions import PipelineError
from dsa110_contimg.pipeline.stages._product_checks import fits_size_problem
from dsa110_contimg.state.db import Connection, to_iso_utc
from dsa110_contimg.state.jobs import (
    PROCESS_BLOCK,
    UPDATE_VARIABILITY,
    find_job,
    list_jobs,
    requeue_job,
)
from dsa110_contimg.state.products import list_products_since

__all__ = ["product_problem", "audit_recent_products", "audit_lightcurve_store"]

log = logging.getLogger(__name__)

AUDIT_WINDOW = timedelta(days=2)
STORE_LOCK_TIMEOUT_S = 30.0
"""How long the store audit waits for another writer of the store, seconds."""


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


def audit_lightcurve_store(
    conn: Connection,
    store_dir: Path,
    *,
    now: datetime,
    blocks_redone: Iterable[str] = (),
) -> list[tuple[str, str]]:
    """Repair the light-curve store; requeue the ingest of every epoch it lost.

    Parameters
    ----------
    conn : Connection
        Writable, migrated connection.
    store_dir : Path
        ``variability.store_dir``.
    now : datetime
        Current time (timezone-aware).
    blocks_redone : iterable of str
        Blocks already requeued (by `audit_recent_products`): their ingest
        follows their re-run, so it is not requeued here.

    Returns
    -------
    list of (block_id, reason)
        The ``update_variability`` jobs requeued, each with the epochs it
        re-ingests and why.

    Notes
    -----
    Without pyarrow (the ``lightcurves`` extra) nothing is checked. An epoch
    dropped by the repair that no finished job recorded (stored by hand with
    ``ingest-photometry``) is logged as an error naming it: ingest it again
    from its table.
    """
    try:
        from dsa110_contimg.lightcurves import repair_store
    except ImportError as err:
        log.debug("light-curve store not audited", extra={"error": str(err)})
        return []
    try:
        repair = repair_store(Path(store_dir), lock_timeout_s=STORE_LOCK_TIMEOUT_S)
    except PipelineError as err:  # busy, another format, or disk full
        log.error(
            "light-curve store audit skipped",
            extra={"store": str(store_dir)},
            exc_info=err,
        )
        return []
    skip = set(blocks_redone)
    lost: dict[int, tuple[str, list[str]]] = {}
    recorded: set[str] = set()
    for job in list_jobs(conn, states=["done"], kinds=[UPDATE_VARIABILITY]):
        if not job.result.get("ingested"):
            continue
        epochs = [str(e) for e in job.result.get("epochs") or []]
        recorded.update(epochs)
        missing = [e for e in epochs if e not in repair.epochs]
        if missing and job.key not in skip:
            lost[job.id] = (job.key, missing)
    requeued = []
    for job_id, (block_id, missing) in lost.items():
        why = "; ".join(
            repair.dropped_epochs.get(e, f"epoch {e} is not in the store")
            for e in missing
        )
        reason = f"light-curve store lost epoch(s) {', '.join(missing)} ({why})"
        requeue_job(conn, job_id, now=now, reason=f"{reason}; ingesting again")
        log.warning(
            "light-curve epochs lost: ingest requeued",
            extra={"block": block_id, "epochs": missing, "why": why},
        )
        requeued.append((block_id, reason))
    unowned = sorted(set(repair.dropped_epochs) - recorded)
    if unowned:
        log.error(
            "light-curve epochs dropped that no finished job recorded; ingest "
            "them again from their photometry tables (ingest-photometry)",
            extra={"epochs": {e: repair.dropped_epochs[e] for e in unowned}},
        )
    return requeued
