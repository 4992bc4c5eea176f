"""MS processor: convert queued groups, plan block windows, process blocks."""

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
    run,
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
