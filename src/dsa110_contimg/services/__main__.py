"""``python -m dsa110_contimg.services``: run the stream (options as ``stream``)."""

from __future__ import annotations

from dsa110_contimg.cli_services import main_stream

if __name__ == "__main__":
    main_stream()
