"""Work of the variability analyzer: one block's photometry into the light curves.

The light-curve store and the statistics live in ``dsa110_contimg.lightcurves``
(``LightcurveStore``) and ``dsa110_contimg.variability``
(``read_measurements_csv``, ``ingest_epoch_table``, ``analyze_store``); they
are looked up at run time. Without them the job still validates the table and
records what it holds, and says that nothing was ingested.

A block's table holds the measurements on each of its images and, when the
block was mosaicked, on its mosaic. One epoch is one image or one mosaic,
never a mix. Overlapping blocks share images, and the store keeps each image
under one epoch only, so the epoch of a block is its mosaic; a block without
a mosaic contributes one epoch per image. Epochs are keyed by time and strip
(`dsa110_contimg.tables.epoch_id`: ``block_20230601T010000_dec+16.30``,
``drift_20230601T000000_00_dec+16.30``), so two strips' blocks at the same time
are two epochs. An epoch already in the store is replaced, so re-running a job
(after a crash, or when late data redid its block) gives the same store.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.table import Table

from dsa110_contimg.exceptions import InputDataError
from dsa110_contimg.tables import (
    PHOTOMETRY_COLUMNS,
    read_photometry_table,
)
from dsa110_contimg.tables import split_epochs as split_product_epochs
from dsa110_contimg.utils.config import VariabilityConfig

__all__ = ["VariabilityBackend", "load_backend", "split_epochs", "update_variability"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class VariabilityBackend:
    """The calls the analyzer makes into the light-curve and variability packages."""

    open_store: Callable[[VariabilityConfig], object]
    read_table: Callable[[Path], Table]
    ingest_table: Callable[..., object]
    analyze: Callable[[object, VariabilityConfig], object]
    has_epoch: Callable[[object, str], bool]


def load_backend() -> VariabilityBackend | None:
    """Return the variability package's entry points, or None when absent."""
    try:
        variability = importlib.import_module("dsa110_contimg.variability")
        lightcurves = importlib.import_module("dsa110_contimg.lightcurves")
    except ImportError as err:  # includes MissingDependencyError (pyarrow)
        log.debug("variability package unavailable", extra={"error": str(err)})
        return None
    read = getattr(variability, "read_measurements_csv", None)
    ingest = getattr(variability, "ingest_epoch_table", None)
    analyze = getattr(variability, "analyze_store", None)
    store_cls = getattr(lightcurves, "LightcurveStore", None)
    if not all(callable(f) for f in (read, ingest, analyze, store_cls)):
        return None

    def open_store(cfg: VariabilityConfig) -> object:
        return store_cls(cfg.store_dir, exclude_flags=cfg.exclude_flags)

    def has_epoch(store: object, epoch_id: str) -> bool:
        return bool(store.has_epoch(epoch_id))  # type: ignore[attr-defined]

    return VariabilityBackend(open_store, read, ingest, analyze, has_epoch)


def split_epochs(table: Table, block_id: str) -> dict[str, Table]:
    """Return the epochs of a block's photometry table, by epoch id.

    The mosaic's rows (``image_kind == 'mosaic'``) form one epoch; without a
    mosaic, each image's rows form one. Epoch ids are
    `dsa110_contimg.tables.epoch_id`: the product's name (the mosaic's is
    ``block_id``) and the strip's declination.
    """
    if len(table) == 0:
        return {}
    kinds = np.asarray(table["image_kind"]).astype(str)
    kind = "mosaic" if np.any(kinds == "mosaic") else "image"
    epochs = split_product_epochs(table, kind)
    log.debug("block epochs", extra={"block_id": block_id, "epochs": list(epochs)})
    return epochs


def _summarize(value: object) -> object:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): _summarize(v) for k, v in list(value.items())[:50]}
    if hasattr(value, "colnames") and hasattr(value, "__len__"):
        summary: dict[str, object] = {"n_rows": len(value)}
        if "is_variable" in value.colnames:
            summary["n_variable"] = int(np.sum(np.asarray(value["is_variable"])))
        if "ese_candidate" in value.colnames:
            summary["n_ese_candidates"] = int(
                np.sum(np.asarray(value["ese_candidate"]))
            )
        return summary
    if hasattr(value, "__dataclass_fields__"):
        return {k: _summarize(getattr(value, k)) for k in value.__dataclass_fields__}
    return repr(value)[:500]


def update_variability(
    photometry_path: str,
    *,
    block_id: str,
    cfg: VariabilityConfig,
    backend_loader: Callable[[], VariabilityBackend | None] = load_backend,
) -> dict[str, object]:
    """Validate a block's photometry table and ingest its epochs into the store.

    Parameters
    ----------
    photometry_path : str
        The block's CSV (`write_photometry_table` format).
    block_id : str
        The block; names its mosaic epoch.
    cfg : VariabilityConfig
        The ``variability`` section.
    backend_loader : callable, optional
        Returns the variability entry points (replaced in tests).

    Returns
    -------
    dict
        ``n_rows``, ``n_sources``, ``n_images``, ``ingested``, the epochs and,
        when ingested, summaries of each ingest and of the analysis.

    Raises
    ------
    InputDataError
        The table is missing, unreadable or lacks photometry columns.
    """
    path = Path(photometry_path)
    try:
        table = read_photometry_table(path)
    except (OSError, ValueError, InputDataError) as err:
        msg = (
            f"photometry table {path} of block {block_id} is missing or unreadable "
            f"({err}); requeue the block"
        )
        raise InputDataError(msg) from err
    missing = [c for c in PHOTOMETRY_COLUMNS if c not in table.colnames]
    if missing:
        msg = f"photometry table {path} lacks columns {missing}; requeue the block"
        raise InputDataError(msg)
    result: dict[str, object] = {
        "photometry_path": str(path),
        "n_rows": len(table),
        "n_sources": len(set(table["source_name"])) if len(table) else 0,
        "n_images": len(set(table["image_path"])) if len(table) else 0,
    }
    backend = backend_loader()
    if backend is None:
        result["ingested"] = False
        result["epochs"] = sorted(split_epochs(table, block_id))
        result["note"] = (
            "dsa110_contimg.variability is not available; the table was "
            "validated, not ingested"
        )
        return result
    epochs = split_epochs(backend.read_table(path), block_id)
    store = backend.open_store(cfg)
    ingested = {}
    for epoch_id, rows in epochs.items():
        replace = backend.has_epoch(store, epoch_id)
        outcome = backend.ingest_table(
            store, rows, epoch_id=epoch_id, cfg=cfg, replace=replace
        )
        ingested[epoch_id] = {"replaced": replace, "result": _summarize(outcome)}
    analysis = backend.analyze(store, cfg) if epochs else None
    result.update(
        ingested=True,
        epochs=sorted(epochs),
        ingest=ingested,
        analysis=_summarize(analysis),
    )
    log.info("epochs ingested", extra={"block_id": block_id, "epochs": sorted(epochs)})
    return result
