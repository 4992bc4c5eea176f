"""Claims record the holder's host in a column (leases across machines).

The owner text is ``host:pid:thread`` (`state.claims.default_owner`); existing
rows get their host from it.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("claims", sa.Column("host", sa.Text(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        host = "NULLIF(split_part(owner, ':', 1), '')"
    else:
        host = "NULLIF(substr(owner, 1, instr(owner || ':', ':') - 1), '')"
    op.execute(f"UPDATE claims SET host = {host} WHERE owner IS NOT NULL")
