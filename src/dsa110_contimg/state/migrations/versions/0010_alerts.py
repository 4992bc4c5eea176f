"""The in-process alert engine's tables (``services/alerts``).

``alert_state``: the alerts it tracks (pending until their rule's ``for:``
passes, then firing; a row is deleted when its condition clears, after the
resolved message). ``alert_silences``: the operators' silences (by alert name
and label values, until they expire).

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_ID = sa.Integer().with_variant(sa.BigInteger(), "postgresql")
_REAL = sa.REAL().with_variant(sa.Double(), "postgresql")  # as the numbered files


def upgrade() -> None:
    op.create_table(
        "alert_state",
        sa.Column("fingerprint", sa.Text(), primary_key=True),
        sa.Column("alertname", sa.Text(), nullable=False),
        sa.Column("labels_json", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("value", _REAL),
        sa.Column("active_since", sa.Text(), nullable=False),
        sa.Column("fired_at", sa.Text()),
        sa.Column("notified_at", sa.Text()),
        sa.Column("updated_at", sa.Text(), nullable=False),
        sa.CheckConstraint("state IN ('pending', 'firing')", name="alert_state_state"),
    )
    op.create_index("alert_state_name", "alert_state", ["alertname"])
    op.create_table(
        "alert_silences",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("alertname", sa.Text(), nullable=False),
        sa.Column("matchers_json", sa.Text(), nullable=False, server_default="{}"),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.Text(), nullable=False),
        sa.Column("removed_at", sa.Text()),
    )
    op.create_index("alert_silences_expiry", "alert_silences", ["expires_at"])
