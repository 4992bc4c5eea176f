"""Lazy import of optional dependencies with an actionable error."""

from __future__ import annotations

import importlib
from types import ModuleType

from dsa110_contimg.exceptions import MissingDependencyError

__all__ = ["require"]


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or raise `MissingDependencyError` naming the pip extra.

    CASA's own packages (``casatools``, ``casatasks``) are imported through
    `dsa110_contimg._casa.import_casa`, which gives them this installation's
    site configuration and an argv they cannot misread.

    Parameters
    ----------
    module : str
        Dotted module name, e.g. ``"casacore.tables"``.
    extra : str
        The ``dsa110-contimg`` extra that provides it, e.g. ``"casa"``.
    """
    if module in ("casatools", "casatasks"):
        from dsa110_contimg._casa import import_casa

        return import_casa(module)
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        msg = (
            f"optional dependency {module!r} is not installed; "
            f"install it with: pip install 'dsa110-contimg[{extra}]'"
        )
        raise MissingDependencyError(msg) from err
    except ImportError as err:
        # installed but failing at import: say so, with the package's own message
        fix = (
            "run ./scripts/setup.sh, which installs casacore-data"
            if extra == "casa"
            else f"reinstall it with: pip install 'dsa110-contimg[{extra}]'"
        )
        msg = (
            f"optional dependency {module!r} is installed but fails to import "
            f"({err}); {fix}"
        )
        raise MissingDependencyError(msg) from err
