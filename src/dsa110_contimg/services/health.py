"""Health checks of a pipeline host.

`HealthChecker` inspects directories, disk space, WSClean, casacore measures
data, the state database and the Python stack, and reports one `HealthCheck`
per topic; a check never raises. The block-processing metrics store is
`dsa110_contimg.state.metrics.PipelineMetrics`; the seed path
``dsa110_contimg.utils.monitoring`` re-exports both.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Literal, Protocol

from dsa110_contimg.services._intake import nearest_existing
from dsa110_contimg.state.db import (
    DatabaseError,
    describe_target,
    latest_schema_version,
    probe_schema_version,
    resolve_target,
)

__all__ = [
    "HEALTHY",
    "UNHEALTHY",
    "WARNING",
    "HealthCheck",
    "HealthCheckConfig",
    "HealthChecker",
    "HealthStatus",
]

log = logging.getLogger(__name__)

HealthStatus = Literal["healthy", "warning", "unhealthy"]
HEALTHY: HealthStatus = "healthy"
WARNING: HealthStatus = "warning"
UNHEALTHY: HealthStatus = "unhealthy"
_SEVERITY = {HEALTHY: 0, WARNING: 1, UNHEALTHY: 2}

_DIR_FIELDS = (
    "log_dir",
    "incoming_dir",
    "ms_stage1_dir",
    "cal_tables_dir",
    "images_dir",
    "mosaics_dir",
    "products_dir",
)
_DATA_DIR_FIELDS = _DIR_FIELDS[1:]
_WSCLEAN_TIMEOUT_S = 20.0
_SYSTEM_MEASURES_DIR = Path("/usr/share/casacore/data")
_MEASURES_SUBDIRS = ("ephemerides", "geodetic")
_RC_MEASURES_KEY = re.compile(r"^\s*measures\.directory\s*[:=]\s*(\S.*?)\s*$")
# module -> (distribution, pip install hint)
_PACKAGES = {
    "pyuvdata": ("pyuvdata", "pip install dsa110-contimg"),
    "casacore.tables": ("python-casacore", "pip install 'dsa110-contimg[casa]'"),
    "astropy": ("astropy", "pip install dsa110-contimg"),
}
_GB = 1e9


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """Outcome of one health check.

    Parameters
    ----------
    name : str
        Check name, e.g. ``"disk_space"``.
    status : {"healthy", "warning", "unhealthy"}
        ``"warning"`` means the pipeline runs but needs attention soon.
    error_message : str, optional
        What is wrong and how to fix it; None when healthy.
    details : dict
        Measured values (versions, paths, free space), JSON-serialisable.
    """

    name: str
    status: HealthStatus
    error_message: str | None = None
    details: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Reject an unknown status."""
        if self.status not in _SEVERITY:
            msg = f"status must be one of {sorted(_SEVERITY)}, got {self.status!r}"
            raise ValueError(msg)

    @property
    def is_healthy(self) -> bool:
        """Whether the pipeline can run (status is not ``"unhealthy"``)."""
        return self.status != UNHEALTHY


class _PathsConfig(Protocol):
    @property
    def log_dir(self) -> Path: ...
    @property
    def incoming_dir(self) -> Path: ...
    @property
    def ms_stage1_dir(self) -> Path: ...
    @property
    def cal_tables_dir(self) -> Path: ...
    @property
    def images_dir(self) -> Path: ...
    @property
    def mosaics_dir(self) -> Path: ...
    @property
    def products_dir(self) -> Path: ...
    @property
    def state_db(self) -> Path: ...


class _ImagingConfig(Protocol):
    @property
    def wsclean_path(self) -> str | None: ...
    @property
    def backend(self) -> str: ...


class HealthCheckConfig(Protocol):
    """The parts of the pipeline settings that `HealthChecker` reads."""

    @property
    def paths(self) -> _PathsConfig:
        """Directory and database locations."""
        ...

    @property
    def imaging(self) -> _ImagingConfig:
        """Imaging backend and WSClean location."""
        ...


_CheckMethod = Callable[["HealthChecker", HealthCheckConfig], HealthCheck]


def _guarded(name: str) -> Callable[[_CheckMethod], _CheckMethod]:
    """Turn an unexpected exception in a check into an unhealthy result."""

    def decorate(method: _CheckMethod) -> _CheckMethod:
        @functools.wraps(method)
        def wrapper(self: HealthChecker, config: HealthCheckConfig) -> HealthCheck:
            try:
                return method(self, config)
            except Exception as err:
                log.error("health check crashed", exc_info=True, extra={"check": name})
                message = f"{name} check failed: {type(err).__name__}: {err}"
                return HealthCheck(name, UNHEALTHY, message, {"exception": repr(err)})

        return wrapper

    return decorate


def _probe_writable(directory: Path) -> str | None:
    """Return why ``directory`` could not be used, or None; creates nothing.

    An existing directory must be writable and searchable; a missing one must
    have a nearest existing ancestor that is a writable directory (the
    pipeline creates it on first use).
    """
    if directory.exists():
        if not directory.is_dir():
            return "exists but is not a directory"
        if not os.access(directory, os.W_OK | os.X_OK):
            return "is not writable by this user"
        return None
    anchor = nearest_existing(directory.absolute())
    if not anchor.is_dir():
        return f"cannot be created: {anchor} is not a directory"
    if not os.access(anchor, os.W_OK | os.X_OK):
        return f"cannot be created: {anchor} is not writable by this user"
    return None


def _rc_measures_dirs() -> Iterator[tuple[str, Path]]:
    for rc_name in (".casarc", ".aipsrc"):
        rc_file = Path.home() / rc_name
        if not rc_file.is_file():
            continue
        for line in rc_file.read_text(encoding="utf-8", errors="replace").splitlines():
            match = _RC_MEASURES_KEY.match(line)
            if match:
                value = os.path.expandvars(match[1])
                yield f"~/{rc_name} measures.directory", Path(value).expanduser()


def _measures_candidates(casacore_dir: Path) -> list[tuple[str, Path]]:
    candidates = [
        (f"${var}", Path(os.environ[var]).expanduser())
        for var in ("CASACORE_DATA", "CASACORE_DATADIR")
        if os.environ.get(var)
    ]
    candidates.extend(_rc_measures_dirs())
    candidates.append(("python-casacore package data", casacore_dir / "data"))
    candidates.append(("system casacore-data", _SYSTEM_MEASURES_DIR))
    unique: dict[Path, str] = {}
    for source, path in candidates:
        unique.setdefault(path, source)
    return [(source, path) for path, source in unique.items()]


def _has_measures(directory: Path) -> bool:
    return all((directory / sub).is_dir() for sub in _MEASURES_SUBDIRS)


def _version_line(output: str) -> str | None:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in lines:
        if "version" in line.lower():
            return line
    return lines[0] if lines else None


class HealthChecker:
    """Check that a host can run the pipeline.

    Parameters
    ----------
    min_free_disk_gb : float, optional
        Free space (GB, 1e9 bytes) below which a data filesystem is unhealthy.
    warn_free_disk_fraction : float, optional
        Free fraction (0..1) below which a data filesystem is a warning.
    """

    def __init__(
        self, *, min_free_disk_gb: float = 5.0, warn_free_disk_fraction: float = 0.15
    ) -> None:
        if not min_free_disk_gb >= 0:
            msg = f"min_free_disk_gb must be >= 0, got {min_free_disk_gb}"
            raise ValueError(msg)
        if not 0 <= warn_free_disk_fraction <= 1:
            msg = (
                "warn_free_disk_fraction must be in [0, 1], "
                f"got {warn_free_disk_fraction}"
            )
            raise ValueError(msg)
        self.min_free_disk_gb = float(min_free_disk_gb)
        self.warn_free_disk_fraction = float(warn_free_disk_fraction)

    def check_all_health(self, config: HealthCheckConfig) -> list[HealthCheck]:
        """Run every check and return their results in a fixed order.

        Parameters
        ----------
        config : HealthCheckConfig
            Pipeline settings; only ``config.paths`` and ``config.imaging`` are read.

        Returns
        -------
        list of HealthCheck
            ``directories``, ``disk_space``, ``wsclean``, ``casacore_data``,
            ``database``, ``python_packages``. Never raises for a failing check.

        Notes
        -----
        The checks only read: no directory, file or database is created or
        changed (a missing directory or database is reported, with whether it
        can be created).
        """
        checks = [
            self.check_directories,
            self.check_disk_space,
            self.check_wsclean,
            self.check_casacore_data,
            self.check_database,
            self.check_python_packages,
        ]
        results = [check(config) for check in checks]
        for result in results:
            level = logging.INFO if result.status == HEALTHY else logging.WARNING
            log.log(
                level,
                "health check",
                extra={"check": result.name, "status": result.status},
            )
        return results

    @_guarded("directories")
    def check_directories(self, config: HealthCheckConfig) -> HealthCheck:
        """Check that each configured directory is writable, or can be created."""
        paths = config.paths
        directories = {
            f"paths.{name}": Path(getattr(paths, name)) for name in _DIR_FIELDS
        }
        directories["paths.state_db (its directory)"] = Path(paths.state_db).parent
        problems = []
        for setting, directory in directories.items():
            reason = _probe_writable(directory)
            if reason is not None:
                problems.append(
                    f"{setting} {directory} {reason}; fix: create {directory} and make "
                    f"it writable by this user, or point {setting.split()[0]} at a "
                    "writable directory"
                )
        details: dict[str, object] = {
            "directories": {key: str(value) for key, value in directories.items()},
            "missing": [str(d) for d in directories.values() if not d.exists()],
        }
        if problems:
            return HealthCheck("directories", UNHEALTHY, "; ".join(problems), details)
        return HealthCheck("directories", HEALTHY, None, details)

    @_guarded("disk_space")
    def check_disk_space(self, config: HealthCheckConfig) -> HealthCheck:
        """Check free space on the filesystems that hold the data directories."""
        paths = config.paths
        by_device: dict[int, tuple[Path, list[str]]] = {}
        for name in _DATA_DIR_FIELDS:
            anchor = nearest_existing(Path(getattr(paths, name)).absolute())
            device = anchor.stat().st_dev
            by_device.setdefault(device, (anchor, []))[1].append(f"paths.{name}")
        status: HealthStatus = HEALTHY
        problems = []
        filesystems = []
        for anchor, settings in by_device.values():
            usage = shutil.disk_usage(anchor)
            free_gb = usage.free / _GB
            fraction = usage.free / usage.total if usage.total else 0.0
            filesystems.append(
                {
                    "settings": settings,
                    "path": str(anchor),
                    "free_gb": round(free_gb, 3),
                    "total_gb": round(usage.total / _GB, 3),
                    "free_fraction": round(fraction, 4),
                }
            )
            where = f"{', '.join(settings)} ({anchor})"
            state = (
                f"{free_gb:.1f} GB free of {usage.total / _GB:.1f} GB ({fraction:.1%})"
            )
            if free_gb < self.min_free_disk_gb:
                status = UNHEALTHY
                problems.append(
                    f"{where}: {state}, below the {self.min_free_disk_gb:g} GB "
                    "minimum; fix: free space or move these directories to a "
                    "larger disk"
                )
            elif fraction < self.warn_free_disk_fraction:
                status = max(status, WARNING, key=_SEVERITY.__getitem__)
                problems.append(
                    f"{where}: {state}, below {self.warn_free_disk_fraction:.0%} free; "
                    "free space soon"
                )
        message = "; ".join(problems) or None
        return HealthCheck("disk_space", status, message, {"filesystems": filesystems})

    @_guarded("wsclean")
    def check_wsclean(self, config: HealthCheckConfig) -> HealthCheck:
        """Check that the WSClean binary is present and answers ``--version``."""
        configured = config.imaging.wsclean_path
        required = config.imaging.backend == "wsclean"
        binary = shutil.which(configured or "wsclean")
        details: dict[str, object] = {
            "backend": config.imaging.backend,
            "required": required,
            "path": binary,
        }
        failed: HealthStatus = UNHEALTHY if required else WARNING
        if binary is None:
            if not required and not configured:
                return HealthCheck("wsclean", HEALTHY, None, details)
            where = f"imaging.wsclean_path={configured}" if configured else "PATH"
            message = (
                f"WSClean not found (looked in {where}); fix: apt-get install wsclean, "
                "or set imaging.wsclean_path to the wsclean binary"
            )
            return HealthCheck("wsclean", failed, message, details)
        try:
            result = subprocess.run(
                [binary, "--version"],
                capture_output=True,
                text=True,
                errors="replace",
                timeout=_WSCLEAN_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            message = (
                f"{binary} --version did not finish within {_WSCLEAN_TIMEOUT_S:g} s; "
                "fix: check the installation (try running it by hand)"
            )
            return HealthCheck("wsclean", failed, message, details)
        except OSError as err:
            message = f"{binary} cannot be run ({err}); fix: apt-get install wsclean"
            return HealthCheck("wsclean", failed, message, details)
        version = _version_line(result.stdout + "\n" + result.stderr)
        details["version"] = version
        details["returncode"] = result.returncode
        if result.returncode != 0 and version is None:
            message = (
                f"{binary} --version exited with status {result.returncode}; "
                "fix: reinstall wsclean (apt-get install wsclean)"
            )
            return HealthCheck("wsclean", failed, message, details)
        return HealthCheck("wsclean", HEALTHY, None, details)

    @_guarded("casacore_data")
    def check_casacore_data(self, config: HealthCheckConfig) -> HealthCheck:
        """Check that python-casacore imports and its measures data is present."""
        try:
            casacore = importlib.import_module("casacore")
            importlib.import_module("casacore.tables")
        except ImportError as err:
            message = (
                f"python-casacore is not importable ({err}); "
                "fix: pip install 'dsa110-contimg[casa]'"
            )
            return HealthCheck("casacore_data", UNHEALTHY, message)
        casacore_dir = Path(str(casacore.__file__)).parent
        candidates = _measures_candidates(casacore_dir)
        found = next(
            ((source, path) for source, path in candidates if _has_measures(path)),
            None,
        )
        details: dict[str, object] = {
            "casacore_version": getattr(casacore, "__version__", None),
            "candidates": [f"{source}: {path}" for source, path in candidates],
            "measures_dir": None if found is None else str(found[1]),
            "measures_source": None if found is None else found[0],
        }
        if found is None:
            message = (
                "casacore measures data (ephemerides/ and geodetic/) not found in "
                f"{', '.join(str(path) for _, path in candidates)}; "
                "fix: apt-get install casacore-data, or set CASACORE_DATA to a "
                "directory that holds them"
            )
            return HealthCheck("casacore_data", UNHEALTHY, message, details)
        return HealthCheck("casacore_data", HEALTHY, None, details)

    @_guarded("database")
    def check_database(self, config: HealthCheckConfig) -> HealthCheck:
        """Check that the state database opens read-only and its schema is current.

        A missing database is a warning (the first pipeline run, or
        ``dsa110-contimg db migrate``, creates it); an older schema is a
        warning (``db migrate`` upgrades it); a newer one is unhealthy.
        """
        path = resolve_target(
            getattr(config, "state_target", None) or config.paths.state_db
        )
        latest = latest_schema_version()
        details: dict[str, object] = {
            "path": describe_target(path),
            "latest_schema_version": latest,
        }
        if isinstance(path, Path) and not path.exists():
            message = (
                f"state database {path} does not exist yet; the first pipeline run "
                "creates it, or run: dsa110-contimg db migrate"
            )
            return HealthCheck("database", WARNING, message, details)
        try:
            version = probe_schema_version(path)
        except (DatabaseError, OSError) as err:
            message = (
                f"state database {path} cannot be opened "
                f"({type(err).__name__}: {err}); "
                "fix: point paths.state_db at a readable SQLite file on a local disk"
            )
            return HealthCheck("database", UNHEALTHY, message, details)
        details["schema_version"] = version
        if version > latest:
            message = (
                f"state database {path} has schema version {version}, newer than "
                f"this pipeline's {latest}; fix: upgrade dsa110-contimg"
            )
            return HealthCheck("database", UNHEALTHY, message, details)
        if version < latest:
            message = (
                f"state database {path} has schema version {version} < {latest}; "
                "it is upgraded on the next run, or run: dsa110-contimg db migrate"
            )
            return HealthCheck("database", WARNING, message, details)
        return HealthCheck("database", HEALTHY, None, details)

    @_guarded("python_packages")
    def check_python_packages(self, config: HealthCheckConfig) -> HealthCheck:
        """Check that pyuvdata, python-casacore and astropy import; report versions."""
        versions: dict[str, str | None] = {}
        problems = []
        for module, (distribution, hint) in _PACKAGES.items():
            try:
                imported = importlib.import_module(module)
            except ImportError as err:
                versions[module] = None
                problems.append(f"{module} is not importable ({err}); fix: {hint}")
                continue
            try:
                versions[module] = metadata.version(distribution)
            except metadata.PackageNotFoundError:
                versions[module] = getattr(imported, "__version__", "unknown")
        details: dict[str, object] = {"versions": versions}
        if problems:
            return HealthCheck(
                "python_packages", UNHEALTHY, "; ".join(problems), details
            )
        return HealthCheck("python_packages", HEALTHY, None, details)
