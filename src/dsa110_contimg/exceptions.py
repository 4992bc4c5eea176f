"""Exception and warning hierarchy of the pipeline.

Each exception class says whether retrying the same work can succeed
(``retryable``). Workers route on the class and this flag, never on messages.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "PipelineError",
    "ConfigError",
    "InputDataError",
    "ExternalToolError",
    "ImagingError",
    "CalibrationError",
    "StateError",
    "ResourceError",
    "MissingDependencyError",
    "PipelineWarning",
    "DataQualityWarning",
]


class PipelineError(Exception):
    """Base class of every error the pipeline routes."""

    retryable: ClassVar[bool] = False


class ConfigError(PipelineError):
    """Invalid, unknown or missing configuration."""


class InputDataError(PipelineError):
    """Missing subbands, corrupt or truncated UVH5/MS, inconsistent metadata."""


class ExternalToolError(PipelineError):
    """An external program (WSClean, CASA) failed.

    Parameters
    ----------
    message : str
        What failed and how to fix it.
    command : list of str, optional
        The exact command that was run.
    returncode : int, optional
        Its exit status (negative for a signal).
    log_tail : str, optional
        The last lines of its output.
    """

    retryable: ClassVar[bool] = True

    def __init__(
        self,
        message: str,
        *,
        command: list[str] | None = None,
        returncode: int | None = None,
        log_tail: str = "",
    ) -> None:
        super().__init__(message)
        self.command = command or []
        self.returncode = returncode
        self.log_tail = log_tail


class ImagingError(ExternalToolError):
    """The imager is missing or failed on a Measurement Set."""


class CalibrationError(PipelineError):
    """No valid calibration, no convergence, or too much data flagged."""


class StateError(PipelineError):
    """Illegal job transition or database schema mismatch."""


class ResourceError(PipelineError):
    """A machine resource ran out (disk full, unwritable directory)."""

    retryable: ClassVar[bool] = True


class MissingDependencyError(PipelineError, ImportError):
    """An optional dependency is not installed; the message names the pip extra."""


class PipelineWarning(UserWarning):
    """Base class of pipeline warnings."""


class DataQualityWarning(PipelineWarning):
    """Degraded but usable data or product."""
