"""Variability analyzer: ingest finished photometry into the light-curve store."""

from __future__ import annotations

from dsa110_contimg.services._entry import service_entry
from dsa110_contimg.services.variability_analyzer._service import VariabilityAnalyzer
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


run = service_entry(
    "variability_analyzer",
    """Run the variability_analyzer alone until SIGTERM/SIGINT or ``stop_event``.

    It ingests each finished block's photometry into the light-curve store.""",
    __name__,
)
