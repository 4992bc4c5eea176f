"""Block-processing metrics in the state database (table ``block_metrics``).

`PipelineMetrics` stores one row per processed block, so the figures survive
restarts and several processes may write the same file. The seed path
``dsa110_contimg.utils.monitoring`` re-exports it.
"""

from __future__ import annotations

import logging
import math
import os
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import sqlalchemy as sa

from dsa110_contimg.state import schema_core as core
from dsa110_contimg.state._core import Query, params_of
from dsa110_contimg.state.db import connect, open_db, resolve_target, to_iso_utc

__all__ = ["PipelineMetrics"]

log = logging.getLogger(__name__)

_DEFAULT_METRICS_DB = Path("data/pipeline.sqlite3")

_B = core.block_metrics
_COLUMNS = (
    "block_id",
    "success",
    "processing_time_s",
    "ms_count",
    "image_count",
    "error_message",
    "recorded_at",
)
_INSERT = Query(sa.insert(_B).values(params_of(_COLUMNS)))
_SINCE = _B.c.recorded_at >= sa.bindparam("cutoff")
_RECENT = Query(
    sa.select(_B).where(_SINCE).order_by(_B.c.recorded_at.desc(), _B.c.id.desc())
)
_AVERAGE = {
    column: Query(sa.select(sa.func.avg(_B.c[column])).where(_SINCE))
    for column in ("success", "processing_time_s")
}


def _cutoff_iso(hours: float) -> str:
    if not hours > 0 or math.isnan(hours):
        msg = f"hours must be > 0, got {hours}"
        raise ValueError(msg)
    try:
        cutoff = datetime.now(UTC) - timedelta(hours=hours)
    except OverflowError:
        cutoff = datetime.min.replace(tzinfo=UTC)
    return to_iso_utc(cutoff)


class PipelineMetrics:
    """Per-block processing metrics, persisted in the SQLite state database.

    Parameters
    ----------
    db_path : str or Path, optional
        Database file. Defaults to ``$DSA110_METRICS_DB``, else
        ``data/pipeline.sqlite3`` under the current directory. The database is
        created and migrated here.

    Notes
    -----
    Every method opens and closes its own connection, so one instance may be
    shared between threads, and several processes may write the same file.
    """

    def __init__(self, db_path: str | Path | None = None) -> None:
        if db_path is None:
            db_path = os.environ.get("DSA110_METRICS_DB") or _DEFAULT_METRICS_DB
        target = resolve_target(db_path)
        self._db_path = target if isinstance(target, str) else target.absolute()
        with closing(open_db(self._db_path)):
            pass

    @property
    def db_path(self) -> Path:
        """The database file (absolute)."""
        return self._db_path

    def record_block_processing(
        self,
        block_id: str,
        success: bool,
        processing_time: float,
        ms_count: int,
        image_count: int,
        *,
        error_message: str | None = None,
        recorded_at: datetime | None = None,
    ) -> None:
        """Store the outcome of one processed block.

        Parameters
        ----------
        block_id : str
            The processing block.
        success : bool
            Whether the block finished without error.
        processing_time : float
            Wall time in seconds (stored as ``processing_time_s``).
        ms_count, image_count : int
            Number of MSs and images the block produced.
        error_message : str, optional
            Why the block failed.
        recorded_at : datetime, optional
            Timezone-aware time of the record; now when omitted.

        Raises
        ------
        ValueError
            For a negative time or count, or a naive ``recorded_at``.
        """
        if not processing_time >= 0:
            msg = f"processing_time must be >= 0 s, got {processing_time}"
            raise ValueError(msg)
        if ms_count < 0 or image_count < 0:
            msg = (
                "counts must be >= 0, got "
                f"ms_count={ms_count}, image_count={image_count}"
            )
            raise ValueError(msg)
        row = (
            block_id,
            int(bool(success)),
            float(processing_time),
            int(ms_count),
            int(image_count),
            error_message,
            to_iso_utc(recorded_at),
        )
        with closing(connect(self._db_path)) as conn, conn:
            _INSERT.execute(conn, dict(zip(_COLUMNS, row, strict=True)))
        log.debug(
            "block metrics recorded",
            extra={"block_id": block_id, "success": bool(success)},
        )

    def get_recent_metrics(self, hours: float = 24) -> list[dict[str, object]]:
        """Return the records of the last ``hours`` hours, newest first.

        Returns
        -------
        list of dict
            Keys: the ``block_metrics`` columns (``id``, ``block_id``,
            ``success`` as bool, ``processing_time_s``, ``ms_count``,
            ``image_count``, ``error_message``, ``recorded_at``) plus
            ``processing_time``, an alias of ``processing_time_s``.
        """
        cutoff = _cutoff_iso(hours)
        with closing(connect(self._db_path)) as conn:
            rows = _RECENT.execute(conn, {"cutoff": cutoff}).fetchall()
        records = []
        for row in rows:
            record: dict[str, object] = dict(zip(row.keys(), tuple(row), strict=True))
            record["success"] = bool(record["success"])
            record["processing_time"] = record["processing_time_s"]
            records.append(record)
        return records

    def get_success_rate(self, hours: float = 24) -> float:
        """Return the fraction (0..1) of blocks in the last ``hours`` that succeeded.

        Returns 0.0 when there are no records in the window, so callers that
        alert on a low rate should also check that blocks were processed.
        """
        return self._average("success", hours)

    def get_average_processing_time(self, hours: float = 24) -> float:
        """Return the mean processing time (s) of all blocks in the last ``hours``.

        Failed blocks count too. Returns 0.0 when there are no records.
        """
        return self._average("processing_time_s", hours)

    def _average(
        self, column: Literal["success", "processing_time_s"], hours: float
    ) -> float:
        cutoff = _cutoff_iso(hours)
        with closing(connect(self._db_path)) as conn:
            row = _AVERAGE[column].execute(conn, {"cutoff": cutoff}).fetchone()
        return float(row[0]) if row[0] is not None else 0.0
