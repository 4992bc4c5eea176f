"""MS processor: convert queued groups, plan block windows, process blocks."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from dsa110_contimg.services.ms_processor._blocks import (
    BlockDecision,
    BlockWindow,
    GroupStatus,
    block_windows_containing,
    decide_block,
)
from dsa110_contimg.services.ms_processor._service import (
    InputsNotReadyError,
    MsProcessor,
)
from dsa110_contimg.services.ms_processor._work import (
    check_ms,
    check_ms_files,
    convert_job,
)

if TYPE_CHECKING:
    from dsa110_contimg.services._host import StreamSummary
    from dsa110_contimg.utils.config import PipelineConfig

__all__ = [
    "BlockDecision",
    "BlockWindow",
    "GroupStatus",
    "InputsNotReadyError",
    "MsProcessor",
    "block_windows_containing",
    "check_ms",
    "check_ms_files",
    "convert_job",
    "decide_block",
    "run",
]


def run(
    config: PipelineConfig,
    *,
    stop_event: threading.Event | None = None,
    incoming_dir: Path | None = None,
    catalog_path: Path | None = None,
) -> StreamSummary:
    """Run the ms_processor alone until SIGTERM/SIGINT or ``stop_event``.

    It converts groups, plans block windows and processes blocks (photometry with
    ``catalog_path``, default ``paths.catalog_path``), and runs the start-up clean-
    up, product audit and periodic maintenance. The other services may run in other
    processes (or hosts) on the same state database; a second ms_processor on it is
    refused with a `WriterBusyError` naming the running one's host and pid.
    Parameters as `dsa110_contimg.services.run_services`.
    """
    from dsa110_contimg.services._host import run_services

    return run_services(
        config,
        ("ms_processor",),
        stop_event=stop_event,
        incoming_dir=incoming_dir,
        catalog_path=catalog_path,
    )
