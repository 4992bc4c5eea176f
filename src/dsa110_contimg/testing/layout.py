"""The directory layout of a throwaway pipeline run under one base directory.

Tests, examples and benchmarks that run the pipeline in a scratch directory
point every ``paths.*`` key of the configuration into it.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["RUN_LAYOUT", "path_overrides", "run_paths"]

#: ``paths.*`` key -> directory or file relative to the run's base directory.
RUN_LAYOUT: dict[str, str] = {
    "data_dir": ".",
    "incoming_dir": "incoming",
    "ms_stage1_dir": "ms",
    "images_dir": "images",
    "products_dir": "products",
    "mosaics_dir": "mosaics",
    "log_dir": "logs",
    "cal_tables_dir": "cal",
    "state_db": "pipeline.sqlite3",
}


def run_paths(base: str | Path) -> dict[str, str]:
    """Return the ``paths`` section of a run under ``base`` (absolute paths)."""
    base = Path(base)
    return {key: str(base / rel) for key, rel in RUN_LAYOUT.items()}


def path_overrides(base: str | Path) -> dict[str, str]:
    """Return the same as dotted overrides (``paths.<key>``) for the config loader."""
    return {f"paths.{key}": value for key, value in run_paths(base).items()}
