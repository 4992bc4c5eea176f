"""The seed's configuration path: re-exports :mod:`dsa110_contimg.utils.config`.

``from dsa110_contimg.utils.config_loader import load_pipeline_config`` keeps
working; the section models, the unit parsers and the loader live in the
``utils/config`` package, one module per topic.
"""

from dsa110_contimg.utils.config import (
    CONFIG_DIR_VAR,
    ENV_NAME_VAR,
    ENV_PREFIX,
    CalibrationConfig,
    ConversionConfig,
    ImagingConfig,
    LoggingConfig,
    MosaicConfig,
    PathsConfig,
    PhotometryConfig,
    PipelineConfig,
    QueueConfig,
    RetentionConfig,
    ServicesConfig,
    SimulationConfig,
    VariabilityConfig,
    WatcherConfig,
    available_environments,
    config_hash,
    config_json_schema,
    find_config_dir,
    load_pipeline_config,
    parse_angle_arcsec,
    parse_flux_jy,
    render_config_schema,
)

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
