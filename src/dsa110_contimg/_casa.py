"""Start CASA (casatools, casatasks) the same way in every pipeline process.

Two things go wrong when CASA is imported naively:

* casaconfig parses ``sys.argv`` at import: the pipeline's own
  ``--config my.yaml`` is taken as an abbreviation of CASA's ``--configfile``,
  CASA execs the YAML as Python, falls back to its defaults and refuses to
  start (spawned pool workers inherit the parent's argv). `import_casa`
  imports with an argv CASA cannot misread.
* CASA's configuration lives by default in the user-global
  ``~/.casa/config.py``, which any other checkout's set-up may rewrite. This
  installation carries its own site configuration
  (``dsa110_contimg/data/casasiteconfig.py``: offline, measures from
  casadata); `configure_casa_environment` points ``CASASITECONFIG`` at it for
  this process and every child, and the user file is not read.

A CASA start-up failure becomes a retryable `ExternalToolError` naming the
site configuration and the fix.
"""

from __future__ import annotations

import importlib
import os
import runpy
import sys
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from types import ModuleType

from dsa110_contimg.exceptions import ExternalToolError, MissingDependencyError

__all__ = [
    "CASA_SITE_CONFIG",
    "casa_environment",
    "casa_version",
    "configure_casa_environment",
    "import_casa",
]

CASA_SITE_CONFIG = Path(__file__).resolve().with_name("data") / "casasiteconfig.py"
_ENV_KEY = "CASASITECONFIG"
_CASA_MODULES = ("casatools", "casatasks")
_CASA_PREFIXES = ("casaconfig", "casatools", "casatasks")


def casa_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return a copy of ``env`` (default ``os.environ``) set up for CASA children.

    ``CASASITECONFIG`` names this installation's site configuration.
    """
    out = dict(os.environ if env is None else env)
    out[_ENV_KEY] = str(CASA_SITE_CONFIG)
    return out


def configure_casa_environment(env: MutableMapping[str, str] | None = None) -> None:
    """Point ``CASASITECONFIG`` at this installation's site configuration.

    Call before CASA is imported; child processes inherit it.
    """
    target = os.environ if env is None else env
    target[_ENV_KEY] = str(CASA_SITE_CONFIG)


def _safe_argv() -> list[str]:
    """Return an argv casaconfig cannot misread: no pipeline options, no user file."""
    prog = (
        sys.argv[0] if sys.argv and sys.argv[0] not in ("-m", "") else "dsa110-contimg"
    )
    return [prog, "--noconfig"]


def _forget_casa() -> None:
    """Drop half-imported CASA modules so a later attempt re-reads the config."""
    for name in list(sys.modules):
        if name.split(".")[0] in _CASA_PREFIXES:
            del sys.modules[name]


_FIX = (
    "Fix: run ./scripts/setup.sh (or pip install 'dsa110-contimg[casa]', which "
    "brings casadata; or apt-get install casacore-data), then retry"
)


def _check_site_config(path: Path) -> None:
    """Fail before CASA is touched when its configuration cannot work.

    CASA's compiled core keeps the data path of its first start for the life
    of the process, so a start that fails on missing data would poison every
    later attempt; checked here first, the error stays retryable in-process.
    """
    if not path.is_file():
        msg = (
            f"CASA site configuration {path} ({_ENV_KEY}) does not exist; "
            f"this installation of dsa110-contimg is incomplete. {_FIX}"
        )
        raise ExternalToolError(msg)
    try:
        values = runpy.run_path(str(path))
    except Exception as err:  # a broken site configuration
        msg = f"CASA site configuration {path} ({_ENV_KEY}) fails: {err}. {_FIX}"
        raise ExternalToolError(msg) from err
    measures = values.get("measurespath")
    if not measures or not (Path(measures) / "geodetic").is_dir():
        msg = (
            f"no CASA measures data: {path} ({_ENV_KEY}) found neither the casadata "
            f"package nor /usr/share/casacore/data (measurespath={measures!r}). "
            f"{_FIX}"
        )
        raise ExternalToolError(msg)


def import_casa(module: str = "casatools") -> ModuleType:
    """Import ``casatools`` or ``casatasks`` with the pipeline's CASA set-up.

    Parameters
    ----------
    module : {"casatools", "casatasks"}
        The CASA package to import.

    Returns
    -------
    ModuleType

    Raises
    ------
    MissingDependencyError
        The package is not installed (names the pip extra).
    ExternalToolError
        CASA is installed but failed to start (retryable once fixed); the
        message names the site configuration and how to fix it.
    """
    if module not in _CASA_MODULES:
        msg = f"import_casa: {module!r} is not one of {_CASA_MODULES}"
        raise ValueError(msg)
    if module in sys.modules:
        return sys.modules[module]
    from dsa110_contimg._casa_data import ensure_casa_data

    ensure_casa_data()  # once per installation; CASA falls back to casadata
    _check_site_config(CASA_SITE_CONFIG)
    configure_casa_environment()
    saved = sys.argv
    sys.argv = _safe_argv()
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        _forget_casa()
        if err.name is not None and err.name.split(".")[0] not in _CASA_PREFIXES:
            fix = f"pip install {err.name} into this environment (casatasks needs it)"
        else:
            fix = "install it with: pip install 'dsa110-contimg[casa]'"
        msg = f"optional dependency {module!r} cannot be imported ({err}); {fix}"
        raise MissingDependencyError(msg) from err
    except Exception as err:  # casaconfig raises plain Exception subclasses
        _forget_casa()
        msg = (
            f"CASA ({module}) failed to start: {type(err).__name__}: {err}. "
            f"The pipeline runs CASA with its own site configuration "
            f"{_ENV_KEY}={CASA_SITE_CONFIG} (offline; measures from the casadata "
            "package) and ignores ~/.casa/config.py. Fix: run ./scripts/setup.sh "
            "(or pip install 'dsa110-contimg[casa]', which brings casadata; or "
            "apt-get install casacore-data), then retry in a new process (CASA "
            "cannot restart inside one)"
        )
        raise ExternalToolError(msg) from err
    finally:
        sys.argv = saved


def casa_version() -> str:
    """Return the casatools version, starting CASA as `import_casa` does."""
    return str(import_casa("casatools").version_string())
