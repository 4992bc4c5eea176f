"""Run one of the streaming services on its own (``run(config, *, stop_event)``)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dsa110_contimg.services._stream import StreamSummary
    from dsa110_contimg.utils.config import PipelineConfig

__all__ = ["service_runner"]


def service_runner(name: str) -> Callable[..., StreamSummary]:
    """Return the ``run`` entry point of service ``name``.

    The returned function runs that service alone until SIGTERM/SIGINT or
    ``stop_event``; the other services may run in other processes on the same
    state database (`dsa110_contimg.services.run_stream` runs all of them).
    """

    def run(
        config: PipelineConfig,
        *,
        stop_event: threading.Event | None = None,
        incoming_dir: Path | None = None,
        catalog_path: Path | None = None,
    ) -> StreamSummary:
        from dsa110_contimg.services._stream import run_stream

        return run_stream(
            config,
            incoming_dir=incoming_dir,
            catalog_path=catalog_path,
            stop_event=stop_event,
            services=(name,),
        )

    run.__doc__ = f"Run the {name} service alone until SIGTERM/SIGINT or stop_event."
    run.__name__ = "run"
    return run
