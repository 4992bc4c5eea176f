"""The ``run(config, *, stop_event)`` entry point of each service package.

``dsa110_contimg.services.hdf5_watcher.run`` (and the other two) run one
service alone on the service host (`dsa110_contimg.services.run_services`); the
host is imported when ``run`` is called, so the service packages never import it
at import time (the host imports them).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dsa110_contimg.services._host import StreamSummary
    from dsa110_contimg.utils.config import PipelineConfig

__all__ = ["service_entry"]

_COMMON_DOC = """
    The other services may run in other processes (or hosts) on the same state
    database; a second {name} on it is refused with a `WriterBusyError` naming
    the running one's host and pid. Parameters as
    `dsa110_contimg.services.run_services` (``config``, ``stop_event``,
    ``incoming_dir``, ``catalog_path``); returns its `StreamSummary`.
    """


def service_entry(name: str, summary: str, module: str) -> Callable[..., StreamSummary]:
    """Return the ``run`` function of service ``name``.

    Parameters
    ----------
    name : str
        One of `dsa110_contimg.services.ALL_SERVICES`.
    summary : str
        First paragraphs of the function's docstring: what the service does.
    module : str
        The service package (``__name__``), shown as the function's module.
    """

    def run(
        config: PipelineConfig,
        *,
        stop_event: threading.Event | None = None,
        incoming_dir: Path | None = None,
        catalog_path: Path | None = None,
    ) -> StreamSummary:
        from dsa110_contimg.services._host import run_services

        return run_services(
            config,
            (name,),
            stop_event=stop_event,
            incoming_dir=incoming_dir,
            catalog_path=catalog_path,
        )

    run.__doc__ = summary.rstrip() + "\n" + _COMMON_DOC.format(name=name)
    run.__module__ = module
    return run
