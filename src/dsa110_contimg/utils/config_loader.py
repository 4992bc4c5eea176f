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
:class:`~dsa110_contimg.pipeline.exceptions.ConfigError` with the dotted key
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

from dsa110_contimg.pipeline.exceptions import ConfigError
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
    "PhotometryConfig",
    "SimulationConfig",
    "LoggingConfig",
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
        description="TELESCOPE_NAME written to the MS so CASA knows the site (name).",
    )
    phase_center: Literal["median_meridian"] = Field(
        "median_meridian",
        description="Phase centre of the MS: the meridian at the median time of "
        "the group (choice).",
    )
    chan_average: int = Field(
        1, ge=1, description="Channels averaged together after conversion (count)."
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
        "pad001", description="Reference antenna for gain solutions (antenna name)."
    )
    refant_fallback: list[str] = Field(
        ["pad002", "pad003", "pad004"],
        description="Reference antennas tried in order if gcal_refant is flagged "
        "(antenna names).",
    )
    gcal_mode: Literal["p", "a", "ap"] = Field(
        "ap", description="Gain solve mode: phase, amplitude or both (choice)."
    )
    gcal_solint: str = Field(
        "30min", description="Gain solution interval, CASA syntax (time string)."
    )
    enabled: bool = Field(
        False,
        description="Solve and apply calibration; the calibration stage is added "
        "later (flag).",
    )


class ImagingConfig(BaseModel):
    """Imager settings, named after WSClean / tclean parameters."""

    model_config = _FROZEN

    backend: Literal["wsclean"] = Field(
        "wsclean", description="Imaging program (choice)."
    )
    wsclean_path: str | None = Field(
        None, description="WSClean executable; null = search PATH (path)."
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
        (4800, 4800), description="Image size, x then y (pixels)."
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
        3.0,
        gt=0,
        description="Stop cleaning at this multiple of the rms; null = off (sigma).",
    )
    auto_mask_sigma: float | None = Field(
        None, gt=0, description="Auto-masking level; null = no auto-mask (sigma)."
    )
    mgain: float = Field(0.8, gt=0, le=1, description="Major-cycle gain (fraction).")
    channels_out: int = Field(1, ge=1, description="Output image channels (count).")
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

    def threshold_jy(self) -> float:
        """Return the clean threshold (Jy)."""
        return parse_flux_jy(self.threshold)

    def cell_size_arcsec(self) -> float:
        """Return the pixel size (arcsec)."""
        return parse_angle_arcsec(self.cell_size)


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
    missing_subbands: list[int] = Field(
        [], description="Subband indices left out of every group (indices)."
    )
    timestamp_jitter_s: float = Field(
        2.0, ge=0, description="Maximum scatter of file-name timestamps (seconds)."
    )
    seed: int = Field(42, description="Random seed (integer).")

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
        None, description="Also append log lines to this file; null = none (path)."
    )


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
    photometry: PhotometryConfig = Field(
        PhotometryConfig(), description="Forced photometry (section)."
    )
    simulation: SimulationConfig = Field(
        SimulationConfig(), description="Synthetic observations (section)."
    )
    logging: LoggingConfig = Field(LoggingConfig(), description="Logging (section).")


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

    Relative entries of ``paths`` are resolved against the current working
    directory at load time, whichever layer set them, so a relative path means
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
    return config.model_copy(update={"paths": config.paths.resolved(Path.cwd())})


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
