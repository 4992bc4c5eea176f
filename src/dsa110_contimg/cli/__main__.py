"""``python -m dsa110_contimg.cli``: the ``dsa110-contimg`` command line."""

from __future__ import annotations

import sys

from dsa110_contimg.cli import main

if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
