"""The root config model, its fingerprint and its JSON schema."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, Field, model_validator

from dsa110_contimg.utils.config._alerts import AlertsConfig
from dsa110_contimg.utils.config._database import DatabaseConfig
from dsa110_contimg.utils.config._execution import ExecutionConfig
from dsa110_contimg.utils.config._imaging import (
    ImagingConfig,
    MosaicConfig,
    PhotometryConfig,
)
from dsa110_contimg.utils.config._model import DEFAULT_ENVIRONMENT, FROZEN
from dsa110_contimg.utils.config._operations import (
    LoggingConfig,
    QueueConfig,
    RetentionConfig,
    ServicesConfig,
    WatcherConfig,
)
from dsa110_contimg.utils.config._processing import (
    CalibrationConfig,
    ConversionConfig,
    PathsConfig,
)
from dsa110_contimg.utils.config._simulation import SimulationConfig
from dsa110_contimg.utils.config._variability import VariabilityConfig
from dsa110_contimg.utils.config._web import WebConfig

__all__ = [
    "PipelineConfig",
    "config_hash",
    "config_json_schema",
    "render_config_schema",
]


class PipelineConfig(BaseModel):
    """Complete pipeline configuration; each stage receives only its section."""

    model_config = FROZEN

    environment: str = Field(
        DEFAULT_ENVIRONMENT, description="Name of the overlay that was loaded (name)."
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
    execution: ExecutionConfig = Field(
        ExecutionConfig(),
        description="Where CPU work runs: local process pool or Dask (section).",
    )

    web: WebConfig = Field(WebConfig(), description="HTTP API server (section).")
    alerts: AlertsConfig = Field(
        AlertsConfig(), description="In-process alert rules and webhooks (section)."
    )

    database: DatabaseConfig = Field(
        DatabaseConfig(), description="State database backend (section)."
    )

    @property
    def state_target(self) -> Path | str:
        """The state database: ``database.url`` when set, else ``paths.state_db``."""
        return self.database.url or self.paths.state_db

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
        (sorted keys, no whitespace). The ``execution`` section is left out:
        where the work runs does not change the products.
    """
    text = json.dumps(
        config.model_dump(mode="json", exclude={"execution"}),
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def config_json_schema() -> dict[str, Any]:
    """Return the JSON schema of :class:`PipelineConfig`."""
    return PipelineConfig.model_json_schema()


def render_config_schema() -> str:
    """Return the JSON schema as the text stored in ``config/schemas``."""
    return json.dumps(config_json_schema(), indent=2, sort_keys=True) + "\n"
