"""Config section of the execution backend: local process pool or Dask cluster."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, Field, model_validator

from dsa110_contimg.utils.config._model import FROZEN

__all__ = ["ExecutionConfig", "STAGES"]

#: The stages whose CPU work the execution backend runs.
STAGES = ("convert", "calibrate", "image", "mosaic", "photometry", "lightcurve")

_DEFAULT_RESOURCES: dict[str, dict[str, float]] = {
    "convert": {"CASA": 1, "MEMORY_GB": 4},
    "calibrate": {"CASA": 1, "MEMORY_GB": 4},
    "image": {"CASA": 1, "IMAGER_SLOTS": 1, "MEMORY_GB": 4},
    "mosaic": {"MEMORY_GB": 4},
    "photometry": {"MEMORY_GB": 2},
    "lightcurve": {"MEMORY_GB": 2},
}


class ExecutionConfig(BaseModel):
    """Where the pipeline's CPU work runs.

    ``local`` (the default) is a pool of ``services.max_workers`` spawned
    processes on this machine. ``dask`` submits each stage's work as a task to
    the Dask scheduler at ``scheduler_address``, keyed ``"<stage>-<product
    id>"`` and annotated with ``resources[stage]``; the workers must declare
    those resources (``dask worker --nthreads 1 --resources
    "CASA=1,IMAGER_SLOTS=1,MEMORY_GB=8"``, as ``scripts/cluster_start.sh``
    does), or the tasks wait forever.
    """

    model_config = FROZEN

    backend: Literal["local", "dask"] = Field(
        "local", description="Execution backend: local process pool or Dask (name)."
    )
    scheduler_address: str = Field(
        "",
        description=(
            "Dask scheduler address, e.g. tcp://10.0.0.1:8786; required for the "
            "dask backend (URL)."
        ),
    )
    connect_timeout_s: float = Field(
        30.0, gt=0, description="Time to wait for the Dask scheduler (seconds)."
    )
    resources: dict[str, dict[str, float]] = Field(
        default_factory=lambda: {k: dict(v) for k, v in _DEFAULT_RESOURCES.items()},
        description=(
            "Dask resources one task of each stage holds on its worker, by stage "
            "name (resource units: CASA and IMAGER_SLOTS in slots, MEMORY_GB in GB)."
        ),
    )
    retries: int = Field(
        0,
        ge=0,
        description=(
            "Dask reruns of a task that raised; 0: the job queue retries it, with "
            "backoff and in the job's record (a task whose worker died is rerun by "
            "the scheduler up to distributed.scheduler.allowed-failures) (count)."
        ),
    )
    keep_results: int = Field(
        0,
        ge=0,
        description=(
            "Finished task results held so a resubmission of the same key is a "
            "cache hit, not a rerun; 0 = only running tasks are joined, finished "
            "work is reused from its products on disk, so a redo with new inputs "
            "(late data) runs again (count)."
        ),
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.backend == "dask" and not self.scheduler_address:
            msg = (
                "execution.scheduler_address is empty but execution.backend is "
                "'dask': set it to the scheduler's address (tcp://host:8786)"
            )
            raise ValueError(msg)
        unknown = set(self.resources) - set(STAGES)
        if unknown:
            msg = (
                f"execution.resources has unknown stage(s) {sorted(unknown)}: "
                f"use {list(STAGES)}"
            )
            raise ValueError(msg)
        return self
