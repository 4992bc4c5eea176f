"""Indexes for the operator figures' time-window reads (``state/figures.py``).

The dashboard, ``/metrics`` and the alert engine read, every few seconds,
the newest arrival and the last hour's arrivals of one job kind
(``kind = ? AND created_at`` in a range) and the last hour's job errors
(``job_events.created_at`` in a range). Without these indexes each read
scanned every job of the kind or every event ever recorded, so its cost grew
with the history kept (~100 ms per alert evaluation at 40,000 jobs).

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


def downgrade() -> None:
    op.drop_index("idx_job_events_created", table_name="job_events")
    op.drop_index("idx_jobs_kind_created", table_name="jobs")
