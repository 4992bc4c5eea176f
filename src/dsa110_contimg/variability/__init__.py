"""Variability science: relative flux calibration, eta/V metrics and ESE search."""

from dsa110_contimg.variability._analysis import (
    RESULT_COLUMNS,
    analyze_lightcurves,
    analyze_store,
)
from dsa110_contimg.variability._binning import BinnedLightcurves, bin_lightcurves
from dsa110_contimg.variability._ese import EseGrid, search_ese
from dsa110_contimg.variability._ese_model import ese_model
from dsa110_contimg.variability._flux_scale import (
    FluxScale,
    apply_flux_scale,
    calibrate_epoch,
    estimate_flux_scale,
    select_references,
)
from dsa110_contimg.variability._ingest import (
    EpochIngestResult,
    ingest_epoch_table,
    ingest_photometry_csv,
    ingest_photometry_epochs,
    read_measurements_csv,
)
from dsa110_contimg.variability._metrics import (
    lightcurve_metrics,
    max_two_epoch_metrics,
    metrics_from_sums,
    two_epoch_metrics,
    variability_metrics,
)
from dsa110_contimg.variability._plots import plot_eta_v, plot_lightcurve

__all__ = [
    "RESULT_COLUMNS",
    "EpochIngestResult",
    "analyze_lightcurves",
    "analyze_store",
    "ingest_epoch_table",
    "ingest_photometry_csv",
    "ingest_photometry_epochs",
    "read_measurements_csv",
    "BinnedLightcurves",
    "EseGrid",
    "bin_lightcurves",
    "ese_model",
    "search_ese",
    "FluxScale",
    "apply_flux_scale",
    "calibrate_epoch",
    "estimate_flux_scale",
    "select_references",
    "lightcurve_metrics",
    "max_two_epoch_metrics",
    "metrics_from_sums",
    "two_epoch_metrics",
    "variability_metrics",
    "plot_eta_v",
    "plot_lightcurve",
]
