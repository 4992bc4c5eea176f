"""The tables of the pipeline: each table's columns (name, dtype, unit, meaning).

One module declares the photometry table, the forced measurements of one
image, the light-curve store, the variability results and the job queue;
every reader, writer, CLI listing and the README's tables of columns
(``python -m dsa110_contimg.tables --readme README.md``) take them from here.
It sits low in the layers: science, state, pipeline, services and the CLI
import it, and it imports none of them. The photometry table's one builder,
CSV writer and reader live here too, so every layer reads it the same way.
"""

from dsa110_contimg.tables._columns import (
    FORCED_MEASUREMENTS,
    JOB_LISTINGS,
    JOBS,
    LIGHTCURVE_SHOWN,
    LIGHTCURVE_STORE,
    MEASUREMENT_REQUIRED,
    MEASUREMENTS,
    PHOTOMETRY,
    TABLES,
    VARIABILITY_RESULTS,
    VARIABLES_SHOWN,
)
from dsa110_contimg.tables._csv import read_csv_rows, read_csv_table, write_csv_table
from dsa110_contimg.tables._epochs import epoch_id, image_id, image_ids, split_epochs
from dsa110_contimg.tables._metrics import (
    METRICS,
    MetricSpec,
    metric_names,
    metric_spec,
    metrics_markdown,
)
from dsa110_contimg.tables._photometry import (
    PHOTOMETRY_COLUMNS,
    conform_table,
    photometry_table,
    read_photometry_rows,
    read_photometry_table,
    write_photometry_table,
)
from dsa110_contimg.tables._spec import Column, TableSpec

__all__ = [
    "METRICS",
    "MetricSpec",
    "metric_names",
    "metric_spec",
    "metrics_markdown",
    "Column",
    "TableSpec",
    "PHOTOMETRY",
    "FORCED_MEASUREMENTS",
    "LIGHTCURVE_STORE",
    "VARIABILITY_RESULTS",
    "JOBS",
    "TABLES",
    "MEASUREMENTS",
    "MEASUREMENT_REQUIRED",
    "VARIABLES_SHOWN",
    "LIGHTCURVE_SHOWN",
    "JOB_LISTINGS",
    "PHOTOMETRY_COLUMNS",
    "photometry_table",
    "write_photometry_table",
    "read_photometry_table",
    "read_photometry_rows",
    "conform_table",
    "read_csv_table",
    "read_csv_rows",
    "write_csv_table",
    "image_id",
    "image_ids",
    "epoch_id",
    "split_epochs",
]
