"""The tables of the pipeline and their columns: the one place each is declared.

Photometry (one row per catalogue source per image or mosaic, the CSV the
photometry stage writes), forced measurements (what `measure_forced` returns
for one image), the light-curve store (one Parquet row per measurement),
variability results (one row per source) and the job queue (one row per job,
as ``dsa110-contimg status`` lists them). A column that appears in several
tables is declared once and means the same in each.
"""

from __future__ import annotations

from dsa110_contimg.tables._spec import Column, TableSpec

__all__ = [
    "PHOTOMETRY",
    "FORCED_MEASUREMENTS",
    "LIGHTCURVE_STORE",
    "VARIABILITY_RESULTS",
    "JOBS",
    "TABLES",
    "MEASUREMENT_REQUIRED",
    "MEASUREMENTS",
    "VARIABLES_SHOWN",
    "LIGHTCURVE_SHOWN",
    "JOB_LISTINGS",
]


def _c(name: str, dtype: str, unit: str, description: str) -> Column:
    return Column(name, dtype, unit, description)


# ---------------------------------------------------------------- measurements
_SOURCE_NAME = _c("source_name", "str", "", "catalogue name of the source")
_RA = _c("ra_deg", "float64", "deg", "catalogue right ascension (ICRS)")
_DEC = _c("dec_deg", "float64", "deg", "catalogue declination (ICRS)")
_FLUX = _c(
    "flux_jy",
    "float64",
    "Jy",
    "primary-beam-corrected point-source flux density at the image's central "
    "frequency (matched filter with the restoring beam, Condon 1997)",
)
_FLUX_ERR = _c(
    "flux_err_jy",
    "float64",
    "Jy",
    "1-sigma error of `flux_jy`: the noise error and `flux_sys_jy` in "
    'quadrature (see "Flux errors")',
)
_PEAK = _c("peak_jy", "float64", "Jy/beam", "PB-corrected value of the nearest pixel")
_RMS = _c("rms_jy", "float64", "Jy/beam", "PB-corrected local rms")
_SNR = _c(
    "snr",
    "float64",
    "",
    "`flux_jy` over its noise error (detection significance; the systematic "
    "part is left out)",
)
_PB = _c(
    "pb",
    "float64",
    "",
    "drift-averaged primary beam used for the correction; 1 for mosaics, "
    "which are already corrected",
)
_FLAGS = _c(
    "flags",
    "int32",
    "",
    "bitmask: 1 edge / off image, 2 NaN pixels, 4 primary beam < "
    "`photometry.min_pb`, 8 blended, 16 upper limit (`snr` < "
    "`photometry.detection_sigma`, default 5; the flux is still a valid "
    "forced measurement)",
)
_MJD = _c(
    "mjd",
    "float64",
    "d",
    "weighted mean time of the image's data (UTC MJD, full precision)",
)
_FREQ = _c(
    "freq_hz",
    "float64",
    "Hz",
    "frequency the fluxes refer to: the image's unflagged-weighted mean "
    "frequency (the band centre when nothing is flagged)",
)
_IMAGE_KIND = _c("image_kind", "str", "", "`image` or `mosaic`")
_IMAGE_PATH = _c("image_path", "str", "", "the FITS file measured")
_IMAGE_ID = _c(
    "image_id",
    "str",
    "",
    "the image's name: the MS stem (`drift_<time>_00`) or the block "
    "(`block_<end time>`)",
)
_POINTING_DEC = _c(
    "pointing_dec_deg", "float64", "deg", "declination of the strip (`DSAPTDEC`)"
)
_UPPER_LIMIT = _c(
    "upper_limit_jy",
    "float64",
    "Jy",
    "`detection_sigma x flux_err_jy` for rows with flag 16, else NaN",
)
_FLUX_SYS = _c(
    "flux_sys_jy",
    "float64",
    "Jy",
    'systematic part of `flux_err_jy`, measured per image (see "Flux errors")',
)

PHOTOMETRY = TableSpec(
    "photometry",
    "one row per catalogue source per image or mosaic (photometry CSV)",
    (
        _SOURCE_NAME,
        _RA,
        _DEC,
        _FLUX,
        _FLUX_ERR,
        _PEAK,
        _RMS,
        _SNR,
        _PB,
        _FLAGS,
        _MJD,
        _FREQ,
        _IMAGE_KIND,
        _IMAGE_PATH,
        _IMAGE_ID,
        _POINTING_DEC,
        _UPPER_LIMIT,
        _FLUX_SYS,
    ),
)

FORCED_MEASUREMENTS = TableSpec(
    "forced_measurements",
    "one row per position measured on one image (`measure_forced`)",
    (
        _SOURCE_NAME,
        _RA,
        _DEC,
        _PEAK,
        _FLUX,
        _FLUX_ERR,
        _RMS,
        _c("x_pix", "float64", "pix", "zero-based pixel column of the position"),
        _c("y_pix", "float64", "pix", "zero-based pixel row of the position"),
        _PB,
        _SNR,
        _FLAGS,
        _FLUX_SYS,
    ),
)

MEASUREMENT_REQUIRED = ("source_name", "mjd", "flux_jy", "flux_err_jy")
"""Columns every table of measurements must have (CSV input, store ingest)."""

# ---------------------------------------------------------------- light curves
_EPOCH_ID = _c(
    "epoch_id",
    "str",
    "",
    "the epoch: one image or one mosaic, named by time and strip "
    "(`<image_id>_dec<+dd.dd>`)",
)
LIGHTCURVE_STORE = TableSpec(
    "lightcurve_store",
    "one row per stored measurement (light-curve store, Parquet, format 2)",
    (
        _SOURCE_NAME,
        _EPOCH_ID,
        _MJD,
        _FLUX,
        _FLUX_ERR,
        _RMS,
        _PB,
        _FLAGS,
        _IMAGE_PATH,
        _IMAGE_KIND,
        _c("scale", "float64", "", "the epoch's flux-scale factor (1 uncalibrated)"),
        _c("scale_err", "float64", "", "1-sigma uncertainty of `scale`"),
        _c(
            "flux_corr_jy",
            "float64",
            "Jy",
            "`flux_jy` on the common flux scale (divided by `scale`)",
        ),
        _c(
            "flux_corr_err_jy",
            "float64",
            "Jy",
            "1-sigma error of `flux_corr_jy`: `flux_err_jy / scale`, the scale's "
            "error and the systematic floor in quadrature",
        ),
        _IMAGE_ID,
        _FREQ,
        _SNR,
        _POINTING_DEC,
        _UPPER_LIMIT,
    ),
)

LIGHTCURVE_SHOWN = LIGHTCURVE_STORE.subset(
    (
        "epoch_id",
        "mjd",
        "flux_jy",
        "flux_err_jy",
        "scale",
        "flux_corr_jy",
        "flux_corr_err_jy",
        "flags",
    )
)
"""Columns ``dsa110-contimg lightcurve`` prints."""

# ---------------------------------------------------------------- variability
VARIABILITY_RESULTS = TableSpec(
    "variability_results",
    "one row per source (`analyze_store`, `variables --json-out`)",
    (
        _SOURCE_NAME,
        _c("n_epochs", "int64", "", "usable measurements in the light curve"),
        _c("mean_flux_jy", "float64", "Jy", "mean flux density (unweighted)"),
        _c("eta", "float64", "", "weighted reduced chi-square about the mean"),
        _c("v", "float64", "", "modulation index: standard deviation / mean flux"),
        _c(
            "is_variable",
            "bool",
            "",
            "`eta >= variability.eta_threshold` and `v >= variability.v_threshold`",
        ),
        _c(
            "ese_candidate",
            "bool",
            "",
            "an extreme scattering event passes every cut (significance, "
            "variance explained, delta-BIC against red noise)",
        ),
        _c(
            "ese_significance",
            "float64",
            "",
            "sqrt of the chi-square gain of the best dip over a constant (sigma)",
        ),
        _c("ese_depth", "float64", "", "fractional depth of the best dip"),
        _c(
            "ese_duration_days",
            "float64",
            "d",
            "duration D of the best dip (full width at half depth)",
        ),
        _c("ese_center_mjd", "float64", "d", "centre of the best dip (MJD)"),
        _c(
            "ese_flank_ratio",
            "float64",
            "",
            "height of the flanking brightenings as a fraction of the depth",
        ),
        _c("ese_mean_flux_jy", "float64", "Jy", "steady flux of the dip model"),
        _c(
            "ese_delta_bic",
            "float64",
            "",
            "BIC(red noise) - BIC(dip + windowed red noise); NaN when not computed",
        ),
        _c(
            "ese_variance_explained",
            "float64",
            "",
            "fraction of the excess variance the dip explains",
        ),
        _c(
            "ese_dip_order",
            "float64",
            "",
            "exponent q of the dip profile `exp(-ln2 |2u|^q)`: 2 Gaussian, "
            "larger flatter-bottomed",
        ),
        _c(
            "ese_asymmetry",
            "float64",
            "",
            "a in (-1, 1): half-widths `D (1 - a) / 2` before and `D (1 + a) / 2` "
            "after the centre (0 symmetric)",
        ),
        _c(
            "ese_flank_offset",
            "float64",
            "",
            "distance of the flanking brightenings from the centre, in durations",
        ),
        _c(
            "ese_incomplete",
            "bool",
            "",
            "a significant dip the light curve cannot show whole (cut by an edge "
            "or a gap, or too long to leave the steady flux around it visible): "
            "not a candidate, not dropped",
        ),
    ),
)

VARIABLES_SHOWN = VARIABILITY_RESULTS.subset(
    (
        "source_name",
        "n_epochs",
        "mean_flux_jy",
        "eta",
        "v",
        "is_variable",
        "ese_candidate",
        "ese_incomplete",
        "ese_significance",
        "ese_depth",
        "ese_duration_days",
        "ese_center_mjd",
    )
)
"""Columns ``dsa110-contimg variables`` prints for flagged sources."""

# ---------------------------------------------------------------- job queue
_TIME = "UTC ISO 8601 time"
JOBS = TableSpec(
    "jobs",
    "one row per job of the queue (state database table `jobs`)",
    (
        _c("id", "int64", "", "job number"),
        _c(
            "kind",
            "str",
            "",
            "`convert_group`, `process_block` or `update_variability`",
        ),
        _c("key", "str", "", "what the job works on: group time or block id"),
        _c(
            "state",
            "str",
            "",
            "`pending`, `running`, `done`, `failed` or `quarantined`",
        ),
        _c("priority", "int64", "", "lower runs first (live before backfill)"),
        _c("data_time_iso", "str", "", f"{_TIME} of the job's data"),
        _c("payload_json", "str", "", "the job's inputs (JSON)"),
        _c("result_json", "str", "", "the job's outputs when done (JSON)"),
        _c("attempts", "int64", "", "times the job has been started"),
        _c("max_attempts", "int64", "", "starts allowed before it fails for good"),
        _c("not_before_at", "str", "", f"{_TIME} before which it is not started"),
        _c("lease_owner", "str", "", "worker running it (`host:pid:...`)"),
        _c("lease_expires_at", "str", "", f"{_TIME} the running lease ends"),
        _c("heartbeat_at", "str", "", f"{_TIME} of the worker's last heartbeat"),
        _c("error_class", "str", "", "exception class of the last failure"),
        _c("error_message", "str", "", "message of the last failure"),
        _c("quarantine_reason", "str", "", "why it was set aside"),
        _c("created_at", "str", "", f"{_TIME} it was enqueued"),
        _c("updated_at", "str", "", f"{_TIME} of its last change"),
        _c("started_at", "str", "", f"{_TIME} of its last start"),
        _c("finished_at", "str", "", f"{_TIME} it finished"),
    ),
)

JOB_LISTINGS = {
    "running": JOBS.subset(
        (
            "id",
            "kind",
            "key",
            "attempts",
            "lease_owner",
            "started_at",
            "lease_expires_at",
        )
    ),
    "quarantined": JOBS.subset(
        ("id", "kind", "key", "quarantine_reason", "payload_json", "updated_at")
    ),
    "failed": JOBS.subset(
        ("id", "kind", "key", "attempts", "error_class", "error_message")
    ),
}
"""Fields of each job list in ``dsa110-contimg status`` (and its ``--json``)."""

TABLES = {
    spec.name: spec
    for spec in (
        PHOTOMETRY,
        FORCED_MEASUREMENTS,
        LIGHTCURVE_STORE,
        VARIABILITY_RESULTS,
        JOBS,
    )
}
"""Every declared table, by name."""

MEASUREMENTS = TableSpec(
    "measurements",
    "a table of measurements read from CSV: photometry rows or light-curve rows",
    PHOTOMETRY.columns
    + tuple(c for c in LIGHTCURVE_STORE.columns if c.name not in PHOTOMETRY),
)
"""Every column a measurement CSV may hold, typed as declared (reading)."""
