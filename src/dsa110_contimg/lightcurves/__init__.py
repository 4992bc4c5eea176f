"""Light-curve store: per-epoch Parquet files queried with DuckDB, running sums."""

from dsa110_contimg.lightcurves._repair import StoreRepair, repair_store
from dsa110_contimg.lightcurves._schema import REQUIRED_COLUMNS, STORE_COLUMNS
from dsa110_contimg.lightcurves._store import LightcurveStore
from dsa110_contimg.lightcurves._summary import SUM_FIELDS, RunningSums, usable_rows

__all__ = [
    "REQUIRED_COLUMNS",
    "STORE_COLUMNS",
    "LightcurveStore",
    "StoreRepair",
    "SUM_FIELDS",
    "RunningSums",
    "repair_store",
    "usable_rows",
]
