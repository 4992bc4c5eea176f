"""Pipeline orchestration: blocks of Measurement Sets through the stages.

``PipelineOrchestrator``, ``ProcessingBlock`` and ``ProcessingResult`` are
re-exported lazily so that importing the package (or the seed path
``dsa110_contimg.pipeline.exceptions``) does not import the orchestrator.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["PipelineOrchestrator", "ProcessingBlock", "ProcessingResult"]

if TYPE_CHECKING:
    from dsa110_contimg.pipeline.orchestrator import (
        PipelineOrchestrator,
        ProcessingBlock,
        ProcessingResult,
    )


def __getattr__(name: str) -> Any:
    if name in __all__:
        from dsa110_contimg.pipeline import orchestrator

        return getattr(orchestrator, name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
