"""A processing block and its result: what the orchestrator and its reports share.

Kept apart from `dsa110_contimg.pipeline.orchestrator` so that the reports
(`_block_summary`) read them without importing the orchestrator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from astropy.table import Table
from astropy.time import Time

__all__ = ["ProcessingBlock", "ProcessingResult"]


@dataclass(frozen=True, slots=True)
class ProcessingBlock:
    """A time window of Measurement Sets processed (and later mosaicked) together."""

    block_id: str
    start_time: Time
    end_time: Time
    ms_files: tuple[Path, ...]


@dataclass(slots=True)
class ProcessingResult:
    """Outcome of `PipelineOrchestrator.process_block`."""

    block_id: str
    success: bool
    processing_time: float
    output_files: dict[str, list[str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    mosaic_members: list[tuple[str, str, str]] = field(default_factory=list)
    image_quality: list[dict[str, object]] = field(default_factory=list)

    @property
    def rejected_images(self) -> list[tuple[str, str]]:
        """Return (image, reason) of each image that failed its quality gates."""
        return [
            (str(q["image_path"]), "; ".join(str(r) for r in q.get("reasons") or []))
            for q in self.image_quality
            if not q.get("passed", True)
        ]

    calibration: dict[str, dict[str, object]] = field(default_factory=dict)
    photometry: Table | None = None
    """The block's measurements (images and mosaic), as written to its table."""
