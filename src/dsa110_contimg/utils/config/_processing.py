"""Config sections of the data path: directories, conversion and calibration."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from dsa110_contimg.telescope.dsa110 import N_SUBBANDS
from dsa110_contimg.utils.config._model import FROZEN

__all__ = [
    "PathsConfig",
    "ConversionConfig",
    "CalibrationConfig",
]


class PathsConfig(BaseModel):
    """Directories and files the pipeline reads and writes."""

    model_config = FROZEN

    data_dir: Path = Field(Path("data"), description="Root data directory (path).")
    incoming_dir: Path = Field(
        Path("data/incoming"),
        description="Directory watched for incoming UVH5 subband files (path).",
    )
    log_dir: Path = Field(
        Path("logs"), description="Directory for service and tool logs (path)."
    )
    ms_stage1_dir: Path = Field(
        Path("data/ms_stage1"),
        description="Directory for Measurement Sets converted from groups (path).",
    )
    cal_tables_dir: Path = Field(
        Path("data/cal_tables"), description="Directory for calibration tables (path)."
    )
    images_dir: Path = Field(
        Path("data/images"), description="Directory for per-MS images (path)."
    )
    mosaics_dir: Path = Field(
        Path("data/mosaics"), description="Directory for mosaics (path)."
    )
    products_dir: Path = Field(
        Path("data/products"),
        description="Directory for photometry tables and other products (path).",
    )
    state_db: Path = Field(
        Path("data/pipeline.sqlite3"),
        description="SQLite file holding the pipeline state (path).",
    )
    catalog_path: Path | None = Field(
        None,
        description="Source catalogue CSV for forced photometry; null = none (path).",
    )

    def resolved(self, base_dir: Path) -> PathsConfig:
        """Return a copy with every relative path made absolute under `base_dir`.

        Parameters
        ----------
        base_dir : Path
            Directory that relative paths are taken relative to; ``~`` is
            expanded and a relative `base_dir` is taken from the working
            directory.

        Returns
        -------
        PathsConfig
            A new, equally frozen, config whose paths are all absolute.
        """
        base = Path(base_dir).expanduser().absolute()
        update: dict[str, Path] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, Path):
                value = value.expanduser()
                update[name] = value if value.is_absolute() else base / value
        return self.model_copy(update=update)


class ConversionConfig(BaseModel):
    """Grouping of UVH5 subband files and conversion to Measurement Sets."""

    model_config = FROZEN

    group_tolerance_s: float = Field(
        90.0,
        gt=0,
        description="Files whose timestamps differ by less than this form one "
        "subband group (seconds).",
    )
    expected_n_subbands: int = Field(
        N_SUBBANDS, ge=1, description="Subband files in a complete group (count)."
    )
    incomplete_policy: Literal["fail", "flag"] = Field(
        "fail",
        description="Group missing subbands: 'fail' raises InputDataError, 'flag' "
        "writes the MS with the missing channels flagged (choice).",
    )
    ms_telescope_name: str = Field(
        "OVRO_MMA",
        description="TELESCOPE_NAME written to the MS: OVRO_MMA is the name CASA's "
        "observatory table knows the site by (CASA tools refuse unknown names); "
        "DSA_110 is the name EveryBeam expects (name).",
    )
    phase_center: Literal["median_meridian"] = Field(
        "median_meridian",
        description="Phase centre of the MS: the meridian at the median time of "
        "the group (choice).",
    )
    chan_average: int = Field(
        1,
        ge=1,
        description="Adjacent channels averaged as each subband is read; must "
        "divide the channels per subband (count).",
    )
    read_workers: int = Field(
        0,
        ge=0,
        le=16,
        description="Processes reading a group's subband files in parallel; 0 = "
        "one per usable core (at most 16), 1 = read in the converting process "
        "(count).",
    )
    overwrite: bool = Field(
        False, description="Replace an existing MS instead of skipping (flag)."
    )


class CalibrationConfig(BaseModel):
    """Gain calibration settings."""

    model_config = FROZEN

    fixed_declination_deg: float = Field(
        37.0,
        ge=-90,
        le=90,
        description="Default pointing declination for simulation and a consistency "
        "check; the real pointing is read from each file (degrees).",
    )
    gcal_refant: str = Field(
        "auto",
        description="Preferred reference antenna for gain solutions (antenna name "
        "as in the MS, e.g. '24' in real files); 'auto' = chosen from the data "
        "(most unflagged data, stable gains, near the array centre).",
    )
    refant_fallback: list[str] = Field(
        [],
        description="Reference antennas tried in order if gcal_refant is missing "
        "or has poor data (antenna names); if none is usable the antenna is "
        "chosen from the data.",
    )
    gcal_mode: Literal["p", "a", "ap"] = Field(
        "ap", description="Gain solve mode: phase, amplitude or both (choice)."
    )
    gcal_solint: str = Field(
        "30min", description="Gain solution interval, CASA syntax (time string)."
    )
    enabled: bool = Field(
        True,
        description="Flag, solve and apply calibration before imaging; when false "
        "the DATA column is imaged as it is (flag).",
    )
    calibrator_catalog: Path | None = Field(
        None,
        description="Calibrator list CSV; empty uses the shipped Perley-Butler 2017 "
        "standards and bright VLA calibrators (path).",
    )
    min_calibrator_flux_jy: float = Field(
        5.0, ge=0, description="Faintest calibrator used, at 1.4 GHz (Jy)."
    )
    max_calibrator_offset_deg: float | None = Field(
        None,
        ge=0,
        description="Largest calibrator declination offset from the strip; empty "
        "uses the half-power radius at 1.4 GHz (deg).",
    )
    bandpass_minsnr: float = Field(
        5.0, gt=0, description="Minimum SNR of a bandpass solution (ratio)."
    )
    uvrange: str = Field(
        ">1klambda",
        description="Baselines used to solve, CASA syntax; empty uses all (uv range).",
    )
    validity_hours: float = Field(
        12.0,
        gt=0,
        description="A solution is valid this long either side of its "
        "calibrator transit (hours).",
    )
    aging_warn_hours: float = Field(
        6.0,
        gt=0,
        description="Warn when the applied solution is older than this (hours).",
    )
    dec_tolerance_deg: float = Field(
        0.5,
        gt=0,
        description="A solution applies only to groups whose pointing "
        "declination is within this of its strip (deg).",
    )
    apply_engine: Literal["arrays", "applycal"] = Field(
        "arrays",
        description="Who writes CORRECTED_DATA: the vectorised python-casacore "
        "apply (same CORRECTED_DATA and FLAG as applycal to 1e-6, ~4x faster; "
        "tables it cannot apply go to applycal) or CASA's applycal (choice).",
    )
    flag_backend: Literal["mad", "aoflagger"] = Field(
        "mad", description="RFI flagger: robust MAD clip or AOFlagger (choice)."
    )
    flag_sigma: float = Field(
        7.0, gt=0, description="MAD clip threshold (robust standard deviations)."
    )
    dead_antenna_fraction: float = Field(
        0.1,
        gt=0,
        lt=1,
        description="An antenna whose autocorrelation power is "
        "below this fraction of the array median is flagged as dead (ratio).",
    )
