"""Variability analyzer: ingest finished photometry into the light-curve store."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from dsa110_contimg.services.variability_analyzer._service import VariabilityAnalyzer
from dsa110_contimg.services.variability_analyzer._work import (
    VariabilityBackend,
    load_backend,
    split_epochs,
    update_variability,
)

if TYPE_CHECKING:
    from dsa110_contimg.services._host import StreamSummary
    from dsa110_contimg.utils.config import PipelineConfig

__all__ = [
    "VariabilityAnalyzer",
    "VariabilityBackend",
    "load_backend",
    "split_epochs",
    "update_variability",
    "run",
]


def run(
    config: PipelineConfig,
    *,
    stop_event: threading.Event | None = None,
    incoming_dir: Path | None = None,
    catalog_path: Path | None = None,
) -> StreamSummary:
    """Run the variability_analyzer alone until SIGTERM/SIGINT or ``stop_event``.

    It ingests each finished block's photometry into the light-curve store. The
    other services may run in other processes (or hosts) on the same state database;
    a second variability_analyzer on it is refused with a `WriterBusyError` naming
    the running one's host and pid. Parameters as
    `dsa110_contimg.services.run_services`.
    """
    from dsa110_contimg.services._host import run_services

    return run_services(
        config,
        ("variability_analyzer",),
        stop_event=stop_event,
        incoming_dir=incoming_dir,
        catalog_path=catalog_path,
    )
