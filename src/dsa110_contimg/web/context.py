"""What the endpoints share: the configuration, the read-only database, caches."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dsa110_contimg.exceptions import StateError
from dsa110_contimg.state.db import Connection, connect
from dsa110_contimg.utils.config import PipelineConfig
from dsa110_contimg.web.errors import UnavailableError

__all__ = ["AppContext", "data_directories"]

log = logging.getLogger(__name__)


def data_directories(config: PipelineConfig) -> tuple[Path, ...]:
    """Return the directories products may be served from (``paths.*``)."""
    paths = config.paths
    dirs = [
        paths.data_dir,
        paths.images_dir,
        paths.mosaics_dir,
        paths.products_dir,
        paths.ms_stage1_dir,
        paths.cal_tables_dir,
        config.variability.store_dir,
    ]
    seen: dict[Path, None] = {}
    for d in dirs:
        seen.setdefault(Path(d).absolute(), None)
    return tuple(seen)


@dataclass
class AppContext:
    """State of one app: config, clock, environment and the cached readers.

    Attributes
    ----------
    config : PipelineConfig
        The loaded configuration.
    clock : callable
        Returns the current timezone-aware time (replaced in tests).
    environ : mapping
        Where the operator token is read from (``os.environ`` by default).
    """

    config: PipelineConfig
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def db_path(self) -> Path:
        """The state database file."""
        return Path(self.config.paths.state_db)

    @property
    def roots(self) -> tuple[Path, ...]:
        """The data directories products are served from."""
        return data_directories(self.config)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """Yield a read-only connection (``mode=ro``) to the state database.

        Raises
        ------
        UnavailableError
            The database does not exist yet (503).
        """
        try:
            conn = connect(self.db_path, readonly=True)
        except StateError as err:
            if not self.db_path.is_file():
                msg = (
                    f"state database {self.db_path} does not exist yet; start the "
                    "pipeline (dsa110-contimg stream or db migrate) first"
                )
                raise UnavailableError(msg) from err
            raise
        try:
            yield conn
        finally:
            conn.close()

    def cached(self, key: str, stamp: object, build: Callable[[], Any]) -> Any:
        """Return ``build()``, rebuilt only when ``stamp`` changes for ``key``."""
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and hit[0] == stamp:
                return hit[1]
        value = build()
        with self._lock:
            self._cache[key] = (stamp, value)
        return value
