"""Pipeline state database (SQLite or PostgreSQL): connections, migrations, rows.

Every SQL statement of the pipeline lives in this package: the job queue
(`state.jobs`), the calibration registry (`state.calibration`), the block
metrics (`state.metrics`), claims, planning, retention, the operator's
figures (`state.figures`), the API's paged listings (`state.browse`) and the
operator's hold on intake (`state.intake`). Other layers name the
connection type `state.db.Connection` and the driver's errors
`state.db.DatabaseError`, never ``sqlite3``. The database is a path or a
URL (config ``database.url``); every function here runs on both backends
(`state._postgres`), and Alembic migrations (`state._alembic`) upgrade either.
The schema at the head is SQLAlchemy Core metadata (`state.schema_core`,
Alembic's ``target_metadata``); the read queries of browse, the job queries,
figures and alerts are Core statements on it (`state._core`).
"""

from dsa110_contimg.state.db import (
    connect,
    latest_schema_version,
    migrate,
    open_db,
    schema_version,
    to_iso_utc,
)
from dsa110_contimg.state.products import list_products, record_group, record_product

__all__ = [
    "connect",
    "latest_schema_version",
    "list_products",
    "migrate",
    "open_db",
    "record_group",
    "record_product",
    "schema_version",
    "to_iso_utc",
]
