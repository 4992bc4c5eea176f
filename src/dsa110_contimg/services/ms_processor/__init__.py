"""MS processor: convert queued groups, plan block windows, process blocks."""

from __future__ import annotations

from dsa110_contimg.services._entry import service_entry
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


run = service_entry(
    "ms_processor",
    """Run the ms_processor alone until SIGTERM/SIGINT or ``stop_event``.

    It converts groups, plans block windows and processes blocks (photometry with
    ``catalog_path``, default ``paths.catalog_path``), and runs the start-up clean-
    up, product audit and periodic maintenance.""",
    __name__,
)
