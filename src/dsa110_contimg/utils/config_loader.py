"""Pipeline configuration: pydantic models and the layered YAML loader.

One frozen model per section (``paths``, ``services``, ``conversion``,
``calibration``, ``imaging``, ``photometry``, ``simulation``, ``logging``) under
the root :class:`PipelineConfig`. Every field has a default in code and a
description that ends with its unit in parentheses, so ``PipelineConfig()`` is
a valid configuration and the JSON schema in ``config/schemas`` documents it.

:func:`load_pipeline_config` merges, later layers winning: code defaults <
``config/environments/<env>.yaml`` < an explicit YAML file < ``DSA110__SECTION__KEY``
environment variables < dotted ``overrides``. Every problem (missing file,
YAML syntax, unknown key, wrong type) is raised as
:class:`~dsa110_contimg.exceptions.ConfigError` with the dotted key
path and the layer it came from.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import types
import typing
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Self

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from dsa110_contimg.exceptions import ConfigError
from dsa110_contimg.telescope.dsa110 import N_CHAN_PER_SUBBAND, N_SUBBANDS

__all__ = [
    "ENV_PREFIX",
    "ENV_NAME_VAR",
    "CONFIG_DIR_VAR",
    "PathsConfig",
    "ServicesConfig",
    "ConversionConfig",
    "CalibrationConfig",
    "ImagingConfig",
    "MosaicConfig",
    "PhotometryConfig",
    "SimulationConfig",
    "VariabilityConfig",
    "LoggingConfig",
    "WatcherConfig",
    "QueueConfig",
    "RetentionConfig",
    "PipelineConfig",
    "parse_flux_jy",
    "parse_angle_arcsec",
    "find_config_dir",
    "available_environments",
    "load_pipeline_config",
    "config_hash",
    "config_json_schema",
    "render_config_schema",
]

ENV_PREFIX = "DSA110__"
"""Prefix of variables that override config keys (``DSA110__IMAGING__NITER=7``)."""

ENV_NAME_VAR = "DSA110_ENV"
"""Environment variable that picks the overlay in ``config/environments``."""

CONFIG_DIR_VAR = "DSA110_CONFIG_DIR"
"""Environment variable that points at the ``config`` directory."""

_DEFAULT_ENVIRONMENT = "development"
_ENV_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")

_FLUX_UNITS_JY = {"jy": 1.0, "mjy": 1e-3, "ujy": 1e-6, "µjy": 1e-6, "μjy": 1e-6}
_QUANTITY_RE = re.compile(
    r"^\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*([a-zA-Zµμ]+)\s*$"
)
_ANGLE_UNITS_ARCSEC = {
    "arcsec": 1.0,
    "asec": 1.0,
    "arcmin": 60.0,
    "amin": 60.0,
    "deg": 3600.0,
}

_FROZEN = ConfigDict(frozen=True, extra="forbid")


def parse_flux_jy(text: str) -> float:
    """Convert a flux density string such as ``"1mJy"`` to Jy.

    Parameters
    ----------
    text : str
        A number followed by ``Jy``, ``mJy`` or ``uJy`` (case-insensitive,
        optional space).

    Returns
    -------
    float
        Flux density (Jy).
    """
    match = _QUANTITY_RE.match(text)
    scale = _FLUX_UNITS_JY.get(match.group(2).lower()) if match else None
    if match is None or scale is None:
        msg = f"cannot parse flux density {text!r}; use e.g. '1mJy', '0.5Jy' or '50uJy'"
        raise ValueError(msg)
    return float(match.group(1)) * scale


def parse_angle_arcsec(text: str) -> float:
    """Convert an angle string such as ``"3arcsec"`` or ``"0.1deg"`` to arcsec.

    Parameters
    ----------
    text : str
        A number followed by ``arcsec``, ``arcmin`` or ``deg`` (``asec`` and
        ``amin`` also accepted).

    Returns
    -------
    float
        Angle (arcsec).
    """
    match = _QUANTITY_RE.match(text)
    scale = _ANGLE_UNITS_ARCSEC.get(match.group(2).lower()) if match else None
    if match is None or scale is None:
        msg = (
            f"cannot parse angle {text!r}; use e.g. '3arcsec', '1.5arcmin' or '0.1deg'"
        )
        raise ValueError(msg)
    return float(match.group(1)) * scale


# --------------------------------------------------------------------------- models


class PathsConfig(BaseModel):
    """Directories and files the pipeline reads and writes."""

    model_config = _FROZEN

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


class ServicesConfig(BaseModel):
    """Scheduling of the long-running services."""

    model_config = _FROZEN

    mosaic_duration_min: float = Field(
        60.0, gt=0, description="Time span covered by one mosaic (minutes)."
    )
    mosaic_overlap_min: float = Field(
        10.0, gt=0, description="Overlap between consecutive mosaics (minutes)."
    )
    ms_chunk_duration_min: float = Field(
        5.0, gt=0, description="Duration of one subband group / MS (minutes)."
    )
    max_concurrent_blocks: int = Field(
        4, ge=1, description="Mosaic blocks processed at the same time (count)."
    )
    max_workers: int = Field(
        2, ge=1, description="Worker processes for CPU-bound work (count)."
    )

    @model_validator(mode="after")
    def _check_overlap(self) -> Self:
        if self.mosaic_overlap_min >= self.mosaic_duration_min:
            msg = (
                f"mosaic_overlap_min ({self.mosaic_overlap_min}) must be smaller "
                f"than mosaic_duration_min ({self.mosaic_duration_min})"
            )
            raise ValueError(msg)
        return self


class ConversionConfig(BaseModel):
    """Grouping of UVH5 subband files and conversion to Measurement Sets."""

    model_config = _FROZEN

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
    overwrite: bool = Field(
        False, description="Replace an existing MS instead of skipping (flag)."
    )


class CalibrationConfig(BaseModel):
    """Gain calibration settings."""

    model_config = _FROZEN

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


class ImagingConfig(BaseModel):
    """Imager settings, named after WSClean / tclean parameters."""

    model_config = _FROZEN

    backend: Literal["wsclean", "tclean", "fake"] = Field(
        "wsclean",
        description="Imaging program: WSClean or CASA tclean (run in a child "
        "Python process); fake renders fake_sky_path through the beam with "
        "noise, for tests and demos only (choice).",
    )
    fake_sky_path: Path | None = Field(
        None,
        description="Sky catalogue CSV the fake imager renders (the one the MS "
        "was simulated from, e.g. truth/sky.csv); required with backend fake, "
        "ignored otherwise (path).",
    )
    wsclean_path: str | None = Field(
        None, description="WSClean executable; null = search PATH (path)."
    )
    casa_python: str | None = Field(
        None,
        description="Python interpreter with casatasks that runs tclean; null = "
        "the pipeline's own interpreter (path).",
    )
    deconvolver: Literal["hogbom", "clark", "multiscale", "mtmfs"] = Field(
        "hogbom", description="Deconvolution algorithm (choice)."
    )
    gridder: Literal["wproject", "wstacking", "wgridder", "standard"] = Field(
        "wproject", description="Gridding algorithm (choice)."
    )
    niter: int = Field(5000, ge=0, description="Maximum clean iterations (count).")
    threshold: str = Field(
        "1mJy",
        description="Absolute clean stopping threshold (flux string, Jy/mJy/uJy).",
    )
    image_size: tuple[int, int] = Field(
        (5000, 5000),
        description="Image size, x then y; the default field (with the default "
        "3 arcsec cell) covers the primary beam down to 0.19, below "
        "photometry.min_pb, so no source above it lies outside (pixels).",
    )
    cell_size: str = Field(
        "3arcsec", description="Pixel size (angle string, arcsec/arcmin/deg)."
    )
    weighting: Literal["briggs", "natural", "uniform"] = Field(
        "briggs", description="Visibility weighting scheme (choice)."
    )
    robust: float = Field(
        0.5, ge=-2, le=2, description="Briggs robustness parameter (dimensionless)."
    )
    min_uv_lambda: float = Field(
        1000.0, ge=0, description="Shortest baseline used for imaging (wavelengths)."
    )
    auto_threshold_sigma: float | None = Field(
        1.0,
        gt=0,
        description="Stop cleaning at this multiple of the rms; null = off. With the "
        "auto-mask, cleaning to 1 sigma leaves too little flux in the residual to "
        "bias matched-filter photometry (sigma).",
    )
    auto_mask_sigma: float | None = Field(
        4.0,
        gt=0,
        description="Build a clean mask at this multiple of the rms, then clean "
        "inside it to auto_threshold_sigma; null = no auto-mask (sigma).",
    )
    mgain: float = Field(0.8, gt=0, le=1, description="Major-cycle gain (fraction).")
    channels_out: int = Field(
        1,
        ge=1,
        description="Channels imaged separately and joined in deconvolution "
        "(WSClean -channels-out/-join-channels; tclean uses its own MFS) (count).",
    )
    nterms: int = Field(
        2,
        ge=1,
        le=4,
        description="Taylor terms of the spectral fit with deconvolver mtmfs "
        "(tclean nterms, WSClean -fit-spectral-pol) (count).",
    )
    multiscale_scales_pix: list[int] | None = Field(
        None,
        description="Scales of multiscale clean; null = the imager's automatic "
        "choice (WSClean) or 0, 2 and 6 synthesized beams (tclean) (pixels).",
    )
    w_planes: int | None = Field(
        None,
        ge=1,
        description="W-layers (WSClean -nwlayers) or w-projection planes (tclean "
        "wprojplanes); null = computed from the longest w and the field (count).",
    )
    threads: int = Field(2, ge=1, description="Threads given to the imager (count).")
    mem_percent: float = Field(
        60.0, gt=0, le=100, description="Memory the imager may use (percent of RAM)."
    )
    pb_limit: float = Field(
        0.2,
        ge=0,
        le=1,
        description="Primary-beam level below which the image is blanked (fraction).",
    )
    timeout_s: float = Field(
        3600.0, gt=0, description="Kill the imager after this long (seconds)."
    )
    noise_box_beams: float = Field(
        10.0,
        gt=0,
        description="Side of the boxes of the sliding-window rms map of the "
        "residual (synthesized beam major axes).",
    )
    write_png: bool = Field(
        True, description="Write a PNG preview of every image (flag)."
    )
    subtract_standards_min_jy: float | None = Field(
        1.0,
        gt=0,
        description="Flux standards (calibrators.csv model pb17) whose "
        "drift-averaged apparent flux exceeds this are predicted through the "
        "drifting beam, subtracted before imaging and restored after it (WSClean "
        "only: tclean reads only DATA or CORRECTED_DATA); null = off (Jy).",
    )
    qa_enabled: bool = Field(
        True,
        description="Measure every image against the quality gates, re-image a "
        "failed one with the qa_retry_* parameters and keep a still failing one "
        "out of the mosaic (flag).",
    )
    qa_max_peak_growth: float = Field(
        2.0,
        gt=1,
        description="A clean whose peak residual at the start of a major cycle "
        "exceeds the smallest earlier one by more than this factor diverged (ratio).",
    )
    qa_max_rms_ratio: float = Field(
        3.0,
        gt=0,
        description="Largest residual rms over the expected rms (thermal rms and "
        "peak / qa_dynamic_range in quadrature) (ratio).",
    )
    qa_dynamic_range: float = Field(
        500.0,
        gt=0,
        description="Image-plane dynamic range the imaging reaches; peak / this is "
        "the rms floor a bright source sets (ratio).",
    )
    qa_max_negative_ratio: float = Field(
        0.2,
        gt=0,
        description="Largest |most negative pixel| as a fraction of the image "
        "peak (ratio).",
    )
    qa_sefd_jy: float = Field(
        6500.0,
        gt=0,
        description="Antenna SEFD of the thermal-rms prediction (Jy).",
    )
    qa_retry_auto_threshold_sigma: float = Field(
        3.0,
        gt=0,
        description="Retry of a failed image: clean only down to at least this "
        "(sigma).",
    )
    qa_retry_auto_mask_sigma: float = Field(
        5.0,
        gt=0,
        description="Retry of a failed image: clean inside an auto-mask built at "
        "at least this (sigma).",
    )
    qa_retry_mgain: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Retry of a failed image: major-cycle gain at most this "
        "(fraction).",
    )

    @field_validator("threshold")
    @classmethod
    def _check_threshold(cls, value: str) -> str:
        parse_flux_jy(value)
        return value

    @field_validator("cell_size")
    @classmethod
    def _check_cell_size(cls, value: str) -> str:
        if parse_angle_arcsec(value) <= 0:
            msg = f"cell_size must be positive, got {value!r}"
            raise ValueError(msg)
        return value

    @field_validator("image_size")
    @classmethod
    def _check_image_size(cls, value: tuple[int, int]) -> tuple[int, int]:
        if min(value) < 16:
            msg = f"each image_size axis must be >= 16 pixels, got {list(value)}"
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _check_fake_sky(self) -> Self:
        if self.backend == "fake" and self.fake_sky_path is None:
            msg = (
                "backend 'fake' renders a model sky and needs fake_sky_path (the "
                "catalogue CSV the MS was simulated from, e.g. truth/sky.csv)"
            )
            raise ValueError(msg)
        return self

    def threshold_jy(self) -> float:
        """Return the clean threshold (Jy)."""
        return parse_flux_jy(self.threshold)

    def cell_size_arcsec(self) -> float:
        """Return the pixel size (arcsec)."""
        return parse_angle_arcsec(self.cell_size)


class MosaicConfig(BaseModel):
    """Hourly mosaics: images of a block coadded on a common grid."""

    model_config = _FROZEN

    enabled: bool = Field(True, description="Make a mosaic of every block (flag).")
    pb_cut: float = Field(
        0.2,
        gt=0,
        le=1,
        description="Image pixels where the primary beam is below this are left "
        "out of the mosaic (fraction).",
    )
    projection: Literal["SIN", "CAR"] = Field(
        "SIN",
        description="Mosaic projection, centred on the circular-mean RA of the "
        "images (choice).",
    )
    cell_size: str | None = Field(
        None,
        description="Mosaic pixel size; null = the images' pixel size (angle "
        "string, arcsec/arcmin/deg).",
    )
    method: Literal["fast", "interp"] = Field(
        "fast",
        description="Reprojection: 'interp' calls reproject_interp per image and "
        "tile; 'fast' computes the same bilinear interpolation with pixel "
        "coordinates from a coarse grid (choice).",
    )
    tile_pix: int = Field(
        2048,
        ge=64,
        description="Side of the mosaic tiles accumulated at a time; bounds the "
        "memory (pixels).",
    )
    write_png: bool = Field(
        True, description="Write a PNG preview of every mosaic (flag)."
    )
    guard_beams: float = Field(
        4.0,
        ge=0,
        description="Outer band of each image, in restoring-beam major axes, used "
        "only where no other image's interior covers the mosaic pixel; sources "
        "measured there are flagged EDGE (beams).",
    )

    @field_validator("cell_size")
    @classmethod
    def _check_cell_size(cls, value: str | None) -> str | None:
        if value is not None and parse_angle_arcsec(value) <= 0:
            msg = f"cell_size must be positive, got {value!r}"
            raise ValueError(msg)
        return value

    def cell_size_arcsec(self) -> float | None:
        """Return the mosaic pixel size (arcsec), or None for the images' size."""
        return None if self.cell_size is None else parse_angle_arcsec(self.cell_size)


class PhotometryConfig(BaseModel):
    """Forced photometry settings."""

    model_config = _FROZEN

    min_pb: float = Field(
        0.2,
        ge=0,
        le=1,
        description="Skip positions where the primary beam is below this (fraction).",
    )
    box_beams: float = Field(
        3.0, gt=0, description="Half-size of the fitting box (synthesized beams)."
    )
    rms_annulus_arcsec: tuple[float, float] = Field(
        (60.0, 180.0),
        description="Inner and outer radius of the local-rms annulus (arcsec).",
    )
    detection_sigma: float = Field(
        5.0,
        gt=0,
        description="A forced measurement with flux_jy / flux_err_jy below this "
        "is flagged UPPER_LIMIT (16) and given upper_limit_jy = detection_sigma x "
        "flux_err_jy (sigma).",
    )

    @field_validator("rms_annulus_arcsec")
    @classmethod
    def _check_annulus(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0 <= value[0] < value[1]:
            msg = f"need 0 <= inner < outer radius, got {list(value)}"
            raise ValueError(msg)
        return value


class SimulationConfig(BaseModel):
    """Synthetic DSA-110 observation used by tests, examples and benchmarks."""

    model_config = _FROZEN

    n_antennas: int = Field(96, ge=8, le=96, description="Antennas simulated (count).")
    n_chan_per_subband: int = Field(
        N_CHAN_PER_SUBBAND,
        ge=1,
        le=N_CHAN_PER_SUBBAND,
        description=f"Channels per subband; must divide {N_CHAN_PER_SUBBAND} (count).",
    )
    n_times: int = Field(24, ge=1, description="Integrations per group (count).")
    n_groups: int = Field(2, ge=1, description="Subband groups simulated (count).")
    start_time: str = Field(
        "2023-06-01T00:00:00",
        description="Start of the first group, ISO 8601 (UTC timestamp).",
    )
    declination_deg: float = Field(
        37.0, ge=-30, le=90, description="Pointing declination (degrees)."
    )
    n_sources: int = Field(
        12, ge=0, description="Point sources in the sky model (count)."
    )
    min_flux_jy: float = Field(0.05, gt=0, description="Faintest source flux (Jy).")
    max_flux_jy: float = Field(2.0, gt=0, description="Brightest source flux (Jy).")
    field_radius_deg: float = Field(
        1.5,
        gt=0,
        description="Sources are placed within this distance of the strip centre "
        "line (degrees).",
    )
    sefd_jy: float = Field(
        6500.0, gt=0, description="System equivalent flux density (Jy)."
    )
    noise: bool = Field(True, description="Add thermal noise (flag).")
    gains: bool = Field(
        False, description="Corrupt visibilities with antenna gains (flag)."
    )
    gain_amp_rms: float = Field(
        0.05, ge=0, description="Scatter of gain amplitudes about 1 (fraction)."
    )
    gain_phase_rms_deg: float = Field(
        10.0, ge=0, description="Scatter of gain phases (degrees)."
    )
    bandpass: bool = Field(
        False,
        description="Give each antenna a bandpass shape (ripple and phase "
        "slope) when gains are on (flag).",
    )
    gain_drift: bool = Field(
        False,
        description="Let antenna gains drift slowly in time when gains are on (flag).",
    )
    add_calibrators: bool = Field(
        False,
        description="Add shipped calibrators near the observed strip to the "
        "simulated sky (flag).",
    )
    dead_antennas: list[int] = Field(
        [], description="Antenna indices with no signal (indices)."
    )
    rfi_channels: list[int] = Field(
        [],
        description="Raw-order channel indices (subband * channels + channel) "
        "with an RFI burst in the middle third of each group (indices).",
    )
    missing_subbands: list[int] = Field(
        [], description="Subband indices left out of every group (indices)."
    )
    timestamp_jitter_s: float = Field(
        2.0, ge=0, description="Maximum scatter of file-name timestamps (seconds)."
    )
    seed: int = Field(42, description="Random seed (integer).")
    integration_spacing_s: float | None = Field(
        None,
        gt=0,
        description="Time between integrations; null = the integration time. "
        "n_times integrations spread over 309 s give small groups a real "
        "group's drift and cadence (seconds).",
    )
    sky_mode: Literal["groups", "strip"] = Field(
        "groups",
        description="'groups': n_sources around each group's meridian; 'strip': "
        "n_sources x n_groups spread along the strip the groups cover (choice).",
    )
    antenna_naming: Literal["station", "pad"] = Field(
        "station",
        description="'station': antennas named by station number as real files "
        "do ('1'..'117', numbers 0..116); 'pad': 'pad001'.. (choice).",
    )

    @field_validator("n_chan_per_subband")
    @classmethod
    def _check_divides(cls, value: int) -> int:
        if N_CHAN_PER_SUBBAND % value:
            msg = f"n_chan_per_subband must divide {N_CHAN_PER_SUBBAND}, got {value}"
            raise ValueError(msg)
        return value

    @field_validator("start_time")
    @classmethod
    def _check_start_time(cls, value: str) -> str:
        parsed = datetime.fromisoformat(value)
        offset = parsed.utcoffset()
        if offset is not None and offset != timedelta(0):
            msg = f"start_time must be UTC, got offset {offset} in {value!r}"
            raise ValueError(msg)
        return value

    @field_validator("missing_subbands")
    @classmethod
    def _check_missing(cls, value: list[int]) -> list[int]:
        bad = [sb for sb in value if not 0 <= sb < N_SUBBANDS]
        if bad:
            msg = f"subband indices must be in 0..{N_SUBBANDS - 1}, got {bad}"
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _check_flux_range(self) -> Self:
        if self.min_flux_jy > self.max_flux_jy:
            msg = (
                f"min_flux_jy ({self.min_flux_jy}) must not exceed "
                f"max_flux_jy ({self.max_flux_jy})"
            )
            raise ValueError(msg)
        return self


class VariabilityConfig(BaseModel):
    """Light-curve store, relative flux calibration, variability and ESE search."""

    model_config = _FROZEN

    store_dir: Path = Field(
        Path("data/lightcurves"),
        description="Root of the Parquet light-curve store; a relative path is "
        "taken from the working directory at load time, and --output-dir puts "
        "it at <output-dir>/lightcurves (path).",
    )
    eta_threshold: float = Field(
        3.0,
        gt=0,
        description="Sources with eta at or above this are variable "
        "(together with v_threshold) (dimensionless).",
    )
    v_threshold: float = Field(
        0.05,
        ge=0,
        description="Sources with V at or above this are variable "
        "(together with eta_threshold) (fraction).",
    )
    min_epochs: int = Field(
        3, ge=2, description="Fewest usable measurements for eta and V (count)."
    )
    exclude_flags: int = Field(
        3,
        ge=0,
        description="Photometry flag bits whose measurements are left out "
        "of calibration and metrics; 3 = EDGE | NAN (bitmask).",
    )
    systematic_floor_frac: float = Field(
        0.005,
        ge=0,
        description="Fractional systematic error added in quadrature "
        "to calibrated flux errors (fraction).",
    )
    ref_min_snr: float = Field(
        50.0,
        gt=0,
        description="Faintest reference source for the flux scale "
        "(signal-to-noise ratio).",
    )
    ref_min_epochs: int = Field(
        1,
        ge=1,
        description="Earlier epochs a reference source needs for its "
        "mean flux (count).",
    )
    ref_max_eta: float = Field(
        3.0,
        gt=0,
        description="Reference sources must have eta below this (dimensionless).",
    )
    ref_max_v: float = Field(
        0.05, gt=0, description="Reference sources must have V below this (fraction)."
    )
    ref_max_resolved_frac: float = Field(
        0.15,
        gt=0,
        description="Reference sources must have |peak_jy / flux_jy - 1| "
        "below this when peak_jy is known (fraction).",
    )
    ref_min_n: int = Field(
        10, ge=1, description="Fewest reference sources for a flux scale (count)."
    )
    ref_clip_sigma: float = Field(
        3.0,
        gt=0,
        description="Sigma-clipping level for reference flux ratios (sigma).",
    )
    ref_max_iter: int = Field(
        10, ge=1, description="Sigma-clipping iterations (count)."
    )
    ese_min_depth: float = Field(
        0.2, gt=0, lt=1, description="Shallowest ESE dip searched (fraction)."
    )
    ese_max_depth: float = Field(
        0.9, gt=0, lt=1, description="Deepest ESE dip searched (fraction)."
    )
    ese_durations_days: list[float] = Field(
        [7.0, 10.0, 14.0, 21.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0],
        description="Dip durations (full width at half depth) searched (days).",
    )
    ese_center_step_frac: float = Field(
        0.2,
        gt=0,
        le=1,
        description="Step of the dip centre grid, as a fraction "
        "of the duration (fraction).",
    )
    ese_flank_ratios: list[float] = Field(
        [0.0, 0.5],
        description="Heights of the flanking brightenings searched, as "
        "fractions of the depth (fractions).",
    )
    ese_bin_days: float = Field(
        1.0,
        gt=0,
        description="Measurements are averaged in bins this wide before "
        "the ESE search (days).",
    )
    ese_min_points: int = Field(
        20, ge=5, description="Fewest binned measurements for an ESE search (count)."
    )
    ese_min_significance: float = Field(
        7.0,
        gt=0,
        description="Smallest dip significance of an ESE candidate (sigma).",
    )
    ese_min_delta_bic: float = Field(
        6.0,
        description="Smallest BIC(red noise) - BIC(ESE + red noise) of a "
        "candidate (dimensionless).",
    )
    ese_min_variance_explained: float = Field(
        0.7,
        ge=0,
        le=1,
        description="Smallest fraction of the excess variance (chi-square "
        "above its expectation) that the ESE dip explains (fraction).",
    )
    ese_prefilter_sigma: float = Field(
        2.0,
        ge=0,
        description="Store analysis searches only sources whose chi-square "
        "excess over a constant is at least this (sigma).",
    )

    @model_validator(mode="after")
    def _check_depths(self) -> Self:
        if self.ese_min_depth >= self.ese_max_depth:
            msg = (
                f"ese_min_depth ({self.ese_min_depth}) must be smaller than "
                f"ese_max_depth ({self.ese_max_depth})"
            )
            raise ValueError(msg)
        if not self.ese_durations_days or min(self.ese_durations_days) <= 0:
            msg = f"ese_durations_days must be positive, got {self.ese_durations_days}"
            raise ValueError(msg)
        if not self.ese_flank_ratios or min(self.ese_flank_ratios) < 0:
            msg = f"ese_flank_ratios must be >= 0, got {self.ese_flank_ratios}"
            raise ValueError(msg)
        return self


class LoggingConfig(BaseModel):
    """Log level, format and destination."""

    model_config = _FROZEN

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Lowest level emitted (level name)."
    )
    format: Literal["console", "json"] = Field(
        "console", description="Readable console lines or JSON lines (choice)."
    )
    file: Path | None = Field(
        None,
        description="Also append JSON log lines to this file; null = "
        "<paths.log_dir>/dsa110-contimg.log for the commands that process data "
        "(path).",
    )


class WatcherConfig(BaseModel):
    """Intake of raw subband files by the hdf5_watcher service."""

    model_config = _FROZEN

    scan_interval_s: float = Field(
        10.0,
        gt=0,
        description="Rescan the incoming directory at least this often, whatever "
        "file-system events say (seconds).",
    )
    settle_s: float = Field(
        5.0,
        ge=0,
        description="A file counts as fully written once its size and mtime are "
        "unchanged across two scans at least this far apart (seconds).",
    )
    group_timeout_s: float = Field(
        600.0,
        gt=0,
        description="Stop waiting for a group to complete this long after its "
        "first file was seen; then apply timeout_policy (seconds).",
    )
    timeout_policy: Literal["flag", "quarantine"] = Field(
        "flag",
        description="Timed-out group missing subbands: 'flag' converts it with "
        "the missing channels flagged, 'quarantine' sets it aside for an "
        "operator (choice).",
    )
    use_inotify: bool = Field(
        True,
        description="React to file-system events (watchdog) between rescans (flag).",
    )
    min_free_disk_gb: float = Field(
        20.0,
        ge=0,
        description="Pause intake (new groups and conversions) while a data "
        "filesystem has less free space than this (GB).",
    )


class QueueConfig(BaseModel):
    """Durable job queue of the streaming services (state database)."""

    model_config = _FROZEN

    lease_s: float = Field(
        120.0,
        gt=0,
        description="A running job whose worker sent no heartbeat for this long "
        "is given to another worker (seconds).",
    )
    heartbeat_interval_s: float = Field(
        15.0, gt=0, description="Workers renew their leases this often (seconds)."
    )
    max_attempts: int = Field(
        5,
        ge=1,
        description="Attempts of a job with retryable errors before it is "
        "marked failed (count).",
    )
    backoff_base_s: float = Field(
        30.0,
        ge=0,
        description="Delay before the first retry; doubles with each attempt "
        "(seconds).",
    )
    backoff_max_s: float = Field(
        1800.0, ge=0, description="Longest delay between retries (seconds)."
    )
    poll_interval_s: float = Field(
        2.0, gt=0, description="Idle workers look for new jobs this often (seconds)."
    )
    live_window_s: float = Field(
        3600.0,
        ge=0,
        description="Data younger than this is live and runs before backfill "
        "(seconds).",
    )
    block_wait_s: float = Field(
        900.0,
        ge=0,
        description="Process a block window this long after its last group "
        "converted even if no later data has arrived (seconds).",
    )
    block_anchor_time: str = Field(
        "2000-01-01T00:00:00",
        description="Block windows start at this time plus multiples of "
        "mosaic_duration_min - mosaic_overlap_min, ISO 8601 (UTC timestamp).",
    )
    shutdown_grace_s: float = Field(
        60.0,
        ge=0,
        description="On SIGTERM/SIGINT, running jobs may finish for this long "
        "before they are stopped and released (seconds).",
    )
    pool_recycle_jobs: int = Field(
        50,
        ge=0,
        description="Start fresh worker processes after this many jobs, bounding "
        "memory that libraries leak over long runs; 0 = never (count).",
    )

    @field_validator("block_anchor_time")
    @classmethod
    def _check_anchor(cls, value: str) -> str:
        parsed = datetime.fromisoformat(value)
        offset = parsed.utcoffset()
        if offset is not None and offset != timedelta(0):
            msg = f"block_anchor_time must be UTC, got offset {offset} in {value!r}"
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _check_heartbeat(self) -> Self:
        if self.heartbeat_interval_s >= self.lease_s:
            msg = (
                f"heartbeat_interval_s ({self.heartbeat_interval_s}) must be "
                f"smaller than lease_s ({self.lease_s})"
            )
            raise ValueError(msg)
        if self.backoff_max_s < self.backoff_base_s:
            msg = (
                f"backoff_max_s ({self.backoff_max_s}) must not be smaller than "
                f"backoff_base_s ({self.backoff_base_s})"
            )
            raise ValueError(msg)
        return self


class RetentionConfig(BaseModel):
    """What the periodic maintenance deletes, and when (0 = keep forever).

    Unprocessed data is never deleted: a raw file only once its group's
    conversion job is done and its MS exists and is valid, an MS only once
    every block window holding it is done and its image exists. Failed and
    quarantined jobs are kept for an operator whatever their age.
    """

    model_config = _FROZEN

    jobs_days: float = Field(
        90.0,
        ge=0,
        description="Delete done jobs (and their job_events) finished longer ago "
        "than this; 0 = keep forever (days).",
    )
    block_metrics_days: float = Field(
        90.0,
        ge=0,
        description="Delete block_metrics rows older than this; 0 = keep forever "
        "(days).",
    )
    corrupt_days: float = Field(
        30.0,
        ge=0,
        description="Delete corrupt MSs set aside under <ms_stage1_dir>/corrupt/ "
        "longer ago than this; 0 = keep forever (days).",
    )
    superseded_days: float = Field(
        30.0,
        ge=0,
        description="Delete images set aside under <images_dir>/superseded/ by a "
        "reconversion longer ago than this; 0 = keep forever (days).",
    )
    raw_files_days: float = Field(
        0.0,
        ge=0,
        description="Delete a group's raw subband files this long after its "
        "conversion finished, if its MS exists and is valid; 0 = keep forever "
        "(days).",
    )
    ms_days: float = Field(
        0.0,
        ge=0,
        description="Delete a group's MS this long after its conversion finished, "
        "if every block holding it is done and its image exists; 0 = keep "
        "forever (days).",
    )
    interval_s: float = Field(
        3600.0,
        gt=0,
        description="The stream applies retention and checkpoints the state "
        "database this often (seconds).",
    )
    vacuum_interval_h: float = Field(
        168.0,
        ge=0,
        description="VACUUM the state database at most this often during "
        "maintenance; 0 = never (hours).",
    )

    @model_validator(mode="after")
    def _check_order(self) -> Self:
        for name in ("raw_files_days", "ms_days"):
            days = getattr(self, name)
            if days > 0 and self.jobs_days > 0 and days > self.jobs_days:
                msg = (
                    f"retention.{name} ({days:g}) must not exceed retention.jobs_days "
                    f"({self.jobs_days:g}): the done conversion job says which files "
                    "are safe to delete; raise jobs_days or lower it"
                )
                raise ValueError(msg)
        if 0 < self.ms_days < self.raw_files_days:
            msg = (
                f"retention.raw_files_days ({self.raw_files_days:g}) must not exceed "
                f"retention.ms_days ({self.ms_days:g}): raw files are deleted only "
                "while their valid MS exists; lower raw_files_days or raise ms_days"
            )
            raise ValueError(msg)
        return self


class PipelineConfig(BaseModel):
    """Complete pipeline configuration; each stage receives only its section."""

    model_config = _FROZEN

    environment: str = Field(
        _DEFAULT_ENVIRONMENT, description="Name of the overlay that was loaded (name)."
    )
    paths: PathsConfig = Field(
        PathsConfig(), description="Directories and files (section)."
    )
    services: ServicesConfig = Field(
        ServicesConfig(), description="Service scheduling (section)."
    )
    conversion: ConversionConfig = Field(
        ConversionConfig(), description="UVH5 to MS conversion (section)."
    )
    calibration: CalibrationConfig = Field(
        CalibrationConfig(), description="Gain calibration (section)."
    )
    imaging: ImagingConfig = Field(ImagingConfig(), description="Imaging (section).")
    mosaic: MosaicConfig = Field(
        MosaicConfig(), description="Hourly mosaics (section)."
    )
    photometry: PhotometryConfig = Field(
        PhotometryConfig(), description="Forced photometry (section)."
    )
    simulation: SimulationConfig = Field(
        SimulationConfig(), description="Synthetic observations (section)."
    )
    variability: VariabilityConfig = Field(
        VariabilityConfig(), description="Light curves and variability (section)."
    )
    logging: LoggingConfig = Field(LoggingConfig(), description="Logging (section).")
    watcher: WatcherConfig = Field(
        WatcherConfig(), description="Raw-file intake by the watcher (section)."
    )
    queue: QueueConfig = Field(
        QueueConfig(), description="Job queue of the streaming services (section)."
    )
    retention: RetentionConfig = Field(
        RetentionConfig(),
        description="Retention and database maintenance (section).",
    )

    @model_validator(mode="after")
    def _no_fake_imager_in_production(self) -> Self:
        if self.environment == "production" and self.imaging.backend == "fake":
            msg = (
                "imaging.backend 'fake' writes simulated images (tests and demos "
                "only) and is refused in the production environment; choose "
                "wsclean or tclean, or load the development or testing environment"
            )
            raise ValueError(msg)
        return self


# --------------------------------------------------------------------------- loader

_Tree = dict[str, Any]


def find_config_dir(*, env: Mapping[str, str] | None = None) -> Path:
    """Locate the ``config`` directory.

    Parameters
    ----------
    env : mapping, optional
        Environment variables; default ``os.environ``.

    Returns
    -------
    Path
        ``$DSA110_CONFIG_DIR`` if set; else the first ``config`` directory
        holding ``environments/`` found walking up from this module (the repo
        root in a source checkout); else ``./config``.
    """
    env = os.environ if env is None else env
    if env.get(CONFIG_DIR_VAR):
        return Path(env[CONFIG_DIR_VAR]).expanduser()
    for parent in Path(__file__).resolve().parents:
        if (parent / "config" / "environments").is_dir():
            return parent / "config"
    return Path.cwd() / "config"


def available_environments(config_dir: Path) -> list[str]:
    """Return the overlay names in ``<config_dir>/environments``, sorted."""
    return sorted(p.stem for p in (config_dir / "environments").glob("*.yaml"))


def _read_yaml(path: Path, *, config_dir: Path) -> _Tree:
    if not path.is_file():
        names = ", ".join(available_environments(config_dir)) or "none"
        msg = (
            f"config file {path} does not exist; environments available in "
            f"{config_dir / 'environments'}: {names}"
        )
        raise ConfigError(msg)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        msg = f"YAML syntax error in {path}{where}: {problem}; fix the file"
        raise ConfigError(msg) from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        kind = type(data).__name__
        msg = f"config file {path} must hold a mapping of sections, got a {kind}"
        raise ConfigError(msg)
    return data


def _deep_merge(base: _Tree, layer: Mapping[str, Any]) -> _Tree:
    merged = dict(base)
    for key, value in layer.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = dict(value) if isinstance(value, Mapping) else value
    return merged


def _record_sources(
    tree: Mapping[str, Any], label: str, sources: dict[str, str], prefix: str = ""
) -> None:
    for key, value in tree.items():
        path = f"{prefix}{key}"
        sources[path] = label
        if isinstance(value, Mapping):
            _record_sources(value, label, sources, f"{path}.")


def _unknown_key_message(
    parts: list[str], depth: int, model: type[BaseModel], source: str | None
) -> str:
    key = ".".join(str(p) for p in parts[: depth + 1])
    section = ".".join(str(p) for p in parts[:depth]) or "<top level>"
    valid = list(model.model_fields)
    close = difflib.get_close_matches(str(parts[depth]), valid, n=1)
    hint = (
        f" Did you mean '{'.'.join([*map(str, parts[:depth]), close[0]])}'?"
        if close
        else ""
    )
    origin = f" (from {source})" if source else ""
    return (
        f"unknown key '{key}'{origin}. Valid keys of '{section}': "
        f"{', '.join(valid)}.{hint}"
    )


def _check_key_path(parts: list[str], source: str) -> None:
    model: type[BaseModel] = PipelineConfig
    for depth, part in enumerate(parts):
        if part not in model.model_fields:
            raise ConfigError(_unknown_key_message(parts, depth, model, source))
        annotation = model.model_fields[part].annotation
        is_section = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        if depth < len(parts) - 1 and not is_section:
            msg = (
                f"'{'.'.join(parts[: depth + 1])}' (from {source}) is a value, not a "
                f"section, so '{'.'.join(parts)}' does not exist"
            )
            raise ConfigError(msg)
        if is_section:
            model = typing.cast(type[BaseModel], annotation)


def _nest(parts: list[str], value: Any) -> _Tree:
    tree: Any = value
    for part in reversed(parts):
        tree = {part: tree}
    return typing.cast(_Tree, tree)


def _parse_env_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _env_layers(env: Mapping[str, str]) -> list[tuple[_Tree, str]]:
    layers = []
    for name in sorted(env):
        if not name.upper().startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
        label = f"environment variable {name}"
        if not all(parts):
            msg = f"malformed {label}; use {ENV_PREFIX}SECTION__KEY=value"
            raise ConfigError(msg)
        _check_key_path(parts, label)
        layers.append((_nest(parts, _parse_env_value(env[name])), label))
    return layers


def _override_layers(overrides: Mapping[str, Any]) -> list[tuple[_Tree, str]]:
    layers = []
    for key, value in overrides.items():
        parts = str(key).split(".")
        label = f"override '{key}'"
        _check_key_path(parts, label)
        layers.append((_nest(parts, value), label))
    return layers


def _describe_type(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe_type(a) for a in args)
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type) and origin is None:
        return annotation.__name__
    return str(annotation).replace("typing.", "").replace("pathlib.", "")


def _error_line(error: Mapping[str, Any], sources: Mapping[str, str]) -> str:
    parts = [str(p) for p in error["loc"]]
    model: type[BaseModel] = PipelineConfig
    field: Any = None
    for depth, part in enumerate(parts):
        if field is not None:
            break
        if part not in model.model_fields:
            if error["type"] == "extra_forbidden":
                source = sources.get(".".join(parts[: depth + 1]))
                return _unknown_key_message(parts, depth, model, source)
            break
        annotation = model.model_fields[part].annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        else:
            field = model.model_fields[part]
    key = ".".join(parts) or "<top level>"
    source = next(
        (
            sources[p]
            for n in range(len(parts), 0, -1)
            if (p := ".".join(parts[:n])) in sources
        ),
        None,
    )
    origin = f" (from {source})" if source else ""
    if field is None:
        return f"invalid section '{key}'{origin}: {error['msg']}"
    expected = _describe_type(field.annotation)
    return (
        f"invalid value for '{key}'{origin}: {error['input']!r} ({error['msg']}); "
        f"expected {expected}"
    )


def _validate(tree: _Tree, sources: Mapping[str, str]) -> PipelineConfig:
    try:
        return PipelineConfig.model_validate(tree)
    except ValidationError as err:
        lines = [_error_line(e, sources) for e in err.errors()]
        msg = "invalid pipeline configuration:\n  - " + "\n  - ".join(lines)
        raise ConfigError(msg) from err


def load_pipeline_config(
    config_path: str | Path | None = None,
    *,
    environment: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> PipelineConfig:
    """Load, merge and validate the pipeline configuration.

    Parameters
    ----------
    config_path : str or Path, optional
        A YAML file laid over the environment overlay. When given without
        `environment`, no overlay is read and the file is laid over the code
        defaults.
    environment : str, optional
        Overlay ``config/environments/<environment>.yaml`` to read. Default:
        ``$DSA110_ENV``, else ``"development"`` (only when `config_path` is
        not given).
    overrides : mapping, optional
        Dotted keys and values that win over every other layer, e.g.
        ``{"imaging.niter": 100}``.
    env : mapping, optional
        Environment variables; default ``os.environ``. ``DSA110__SECTION__KEY``
        entries set ``section.key`` (values parsed as YAML, so ``"4"`` is an
        int and ``"[1, 2]"`` a list); ``DSA110_ENV`` and ``DSA110_CONFIG_DIR``
        pick the overlay and the config directory.

    Returns
    -------
    PipelineConfig
        The validated, frozen configuration, with ``paths`` made absolute.

    Raises
    ------
    ConfigError
        A file is missing or is not valid YAML, a key is unknown (the message
        gives the dotted path, its source and the valid keys) or a value has
        the wrong type or range.

    Notes
    -----
    Layers, later winning: code defaults < environment overlay < `config_path`
    < ``DSA110__*`` variables < `overrides`; mappings are deep-merged.

    Relative entries of ``paths`` (and ``variability.store_dir``) are
    resolved against the current working directory at load time, whichever
    layer set them, so a relative path means
    the same thing as it does on the operator's command line. Run services from
    the directory the paths are meant relative to (usually the repo root) or
    use absolute paths.
    """
    env = os.environ if env is None else env
    config_dir = find_config_dir(env=env)
    layers: list[tuple[_Tree, str]] = []
    if environment is not None or config_path is None:
        name = environment or env.get(ENV_NAME_VAR) or _DEFAULT_ENVIRONMENT
        layers.append((_read_environment(name, config_dir), f"environment '{name}'"))
    if config_path is not None:
        path = Path(config_path).expanduser()
        layers.append((_read_yaml(path, config_dir=config_dir), str(path)))
    layers += _env_layers(env)
    layers += _override_layers(overrides or {})
    tree: _Tree = {}
    sources: dict[str, str] = {}
    for layer, label in layers:
        tree = _deep_merge(tree, layer)
        _record_sources(layer, label, sources)
    config = _validate(tree, sources)
    cwd = Path.cwd()
    store_dir = config.variability.store_dir.expanduser()
    variability = config.variability.model_copy(
        update={"store_dir": store_dir if store_dir.is_absolute() else cwd / store_dir}
    )
    return config.model_copy(
        update={"paths": config.paths.resolved(cwd), "variability": variability}
    )


def _read_environment(name: str, config_dir: Path) -> _Tree:
    if not _ENV_NAME_RE.match(name):
        names = ", ".join(available_environments(config_dir)) or "none"
        msg = f"invalid environment name {name!r}; available: {names}"
        raise ConfigError(msg)
    path = config_dir / "environments" / f"{name}.yaml"
    return {"environment": name, **_read_yaml(path, config_dir=config_dir)}


def config_hash(config: PipelineConfig) -> str:
    """Return a short, stable hash of a configuration.

    Parameters
    ----------
    config : PipelineConfig
        The configuration to fingerprint.

    Returns
    -------
    str
        First 16 hex digits of the SHA-256 of the canonical JSON dump
        (sorted keys, no whitespace).
    """
    text = json.dumps(
        config.model_dump(mode="json"), sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def config_json_schema() -> dict[str, Any]:
    """Return the JSON schema of :class:`PipelineConfig`."""
    return PipelineConfig.model_json_schema()


def render_config_schema() -> str:
    """Return the JSON schema as the text stored in ``config/schemas``."""
    return json.dumps(config_json_schema(), indent=2, sort_keys=True) + "\n"
