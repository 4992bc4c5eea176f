"""CASA's tasks and its log, for the calibration calls that run CASA."""

from __future__ import annotations

import contextlib
from pathlib import Path

from dsa110_contimg._optional import require

__all__ = ["_casa_log", "_casatasks"]


def _casatasks():
    require("casatools", "casa")
    return require("casatasks", "casa")


@contextlib.contextmanager
def _casa_log(path: Path):
    """Send CASA's log and its console copies of warnings for this call to `path`."""
    # imported here: dsa110_contimg.tools imports the imagers (photutils,
    # 1.4 s), which flagging and the arrays apply never need
    from dsa110_contimg.tools.casa_env import casa_stderr_to

    casatools = require("casatools", "casa")
    logger = casatools.logsink()
    old = logger.logfile()
    casalog = require("casatasks", "casa").casalog
    casalog.setlogfile(str(path))
    try:
        with casa_stderr_to(path):
            yield
    finally:
        casalog.setlogfile(old)
