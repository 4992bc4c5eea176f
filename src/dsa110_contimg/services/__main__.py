"""``python -m dsa110_contimg.services``: run the stream (options as ``stream``)."""

from __future__ import annotations

from dsa110_contimg.services._program import main

if __name__ == "__main__":
    main()
