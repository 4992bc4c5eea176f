"""Baseline: the schema of the numbered files state/schema/0001..0008.

`state.db.migrate` applies those files before Alembic runs, so this revision
changes nothing; it marks a database made by them as Alembic's starting point.

Revision ID: 0008
Revises:
"""

revision = "0008"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass
