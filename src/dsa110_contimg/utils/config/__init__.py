"""Pipeline configuration: frozen pydantic section models and the layered loader.

One frozen model per section under the root :class:`PipelineConfig`; every
field has a default in code and a description that ends with its unit in
parentheses, so ``PipelineConfig()`` is a valid configuration and the JSON
schema in ``config/schemas`` documents it. The modules, by topic:

- ``_units``: flux-density and angle strings (``"1mJy"``, ``"3arcsec"``).
- ``_processing``, ``_imaging``, ``_simulation``, ``_variability``,
  ``_operations``, ``_web``, ``_alerts``, ``_database``: the section models
  (the sections' defaults are the one default of each parameter; library
  defaults equal them).
- ``_pipeline``: the root model, its hash and its JSON schema.
- ``_views``: a section's values for the value object it configures.
- ``_loader``: YAML layers, environment variables, overrides and the error
  messages naming the key and its source.

The seed's path ``dsa110_contimg.utils.config`` re-exports all of it.
"""

from dsa110_contimg.utils.config._alerts import AlertsConfig
from dsa110_contimg.utils.config._database import DatabaseConfig
from dsa110_contimg.utils.config._execution import ExecutionConfig
from dsa110_contimg.utils.config._imaging import (
    ImagingConfig,
    MosaicConfig,
    PhotometryConfig,
)
from dsa110_contimg.utils.config._loader import (
    CONFIG_DIR_VAR,
    ENV_NAME_VAR,
    ENV_PREFIX,
    available_environments,
    find_config_dir,
    load_pipeline_config,
)
from dsa110_contimg.utils.config._operations import (
    LoggingConfig,
    QueueConfig,
    RetentionConfig,
    ServicesConfig,
    WatcherConfig,
)
from dsa110_contimg.utils.config._pipeline import (
    PipelineConfig,
    config_hash,
    config_json_schema,
    render_config_schema,
)
from dsa110_contimg.utils.config._processing import (
    CalibrationConfig,
    ConversionConfig,
    PathsConfig,
)
from dsa110_contimg.utils.config._simulation import SimulationConfig
from dsa110_contimg.utils.config._units import parse_angle_arcsec, parse_flux_jy
from dsa110_contimg.utils.config._variability import VariabilityConfig
from dsa110_contimg.utils.config._views import section_values, shared_fields
from dsa110_contimg.utils.config._web import WebConfig

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
    "WebConfig",
    "LoggingConfig",
    "WatcherConfig",
    "QueueConfig",
    "RetentionConfig",
    "AlertsConfig",
    "DatabaseConfig",
    "ExecutionConfig",
    "PipelineConfig",
    "parse_flux_jy",
    "parse_angle_arcsec",
    "find_config_dir",
    "available_environments",
    "load_pipeline_config",
    "config_hash",
    "config_json_schema",
    "render_config_schema",
    "section_values",
    "shared_fields",
]
