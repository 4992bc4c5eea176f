"""The seed's path to the exception hierarchy (``dsa110_contimg.exceptions``).

The classes live in the leaf module :mod:`dsa110_contimg.exceptions` so that
every layer can import them without importing the pipeline package; this
module re-exports them for code written against the seed architecture.
"""

from __future__ import annotations

from dsa110_contimg.exceptions import *  # noqa: F403
from dsa110_contimg.exceptions import __all__  # noqa: F401
