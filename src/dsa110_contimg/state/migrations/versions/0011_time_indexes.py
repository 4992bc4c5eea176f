"""Indexes for the operator's reads (``state/figures.py``, ``state/browse.py``).

The dashboard, ``/metrics`` and the alert engine read, every few seconds,
the newest arrival and the last hour's arrivals of one job kind
(``kind = ? AND created_at`` in a range) and the last hour's job errors
(``job_events.created_at`` in a range). Without these indexes each read
scanned every job of the kind or every event ever recorded, so its cost grew
with the history kept (~100 ms per alert evaluation at 40,000 jobs). The
block listing takes each block's newest ``block_metrics`` row: without an
index on ``block_id`` that was a scan of the table per block (6.5 s for a
page at 5,000 blocks; 33 ms with it).

Revision ID: 0011
Revises: 0010
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("idx_jobs_kind_created", "jobs", ["kind", "created_at"])
    op.create_index("idx_job_events_created", "job_events", ["created_at"])
    op.create_index(
        "idx_block_metrics_block", "block_metrics", ["block_id", "recorded_at"]
    )


def downgrade() -> None:
    op.drop_index("idx_block_metrics_block", table_name="block_metrics")
    op.drop_index("idx_job_events_created", table_name="job_events")
    op.drop_index("idx_jobs_kind_created", table_name="jobs")
