"""Variability analyzer: ingest finished photometry into the light-curve store."""

from dsa110_contimg.services.variability_analyzer._service import (
    VariabilityAnalyzer,
    run,
)
from dsa110_contimg.services.variability_analyzer._work import (
    VariabilityBackend,
    load_backend,
    split_epochs,
    update_variability,
)

__all__ = [
    "VariabilityAnalyzer",
    "VariabilityBackend",
    "load_backend",
    "split_epochs",
    "update_variability",
    "run",
]
