"""The variability_analyzer service: consume finished blocks' photometry."""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING

from dsa110_contimg.pipeline._execution import run_stage
from dsa110_contimg.services._pool import ExecutorHolder
from dsa110_contimg.services._runner import JobOutcome, JobRunner
from dsa110_contimg.services.variability_analyzer._work import update_variability
from dsa110_contimg.state.jobs import UPDATE_VARIABILITY, Job
from dsa110_contimg.utils.config import PipelineConfig

if TYPE_CHECKING:
    pass

__all__ = ["VariabilityAnalyzer"]

log = logging.getLogger(__name__)


class VariabilityAnalyzer:
    """Run ``update_variability`` jobs, one at a time (one store writer).

    Parameters
    ----------
    config : PipelineConfig
        Resolved configuration (its ``variability`` section is used).
    runner : JobRunner
        The process's job runner.
    executors : ExecutorHolder
        Where the ingest runs.
    """

    def __init__(
        self, config: PipelineConfig, runner: JobRunner, executors: ExecutorHolder
    ) -> None:
        self.config = config
        self.runner = runner
        self.executors = executors

    def register(self) -> None:
        """Add the variability lane to the runner."""
        self.runner.add_lane(
            "variability", [UPDATE_VARIABILITY], self.update, concurrency=1
        )

    async def update(self, job: Job) -> JobOutcome:
        """Ingest one block's photometry table."""
        call = functools.partial(
            update_variability,
            str(job.payload["photometry_path"]),
            block_id=str(job.payload.get("block_id", job.key)),
            cfg=self.config.variability,
        )
        block = str(job.payload.get("block_id", job.key))
        with self.executors.lease() as executor:
            try:
                result = await run_stage(executor, "lightcurve", block, call)
            except Exception as err:
                self.executors.replace_if_broken(err)
                raise
        return JobOutcome(result=result)
