"""Images and epochs of photometry rows: which product a row measured.

A row names its image or mosaic (``image_id``, the file name without suffixes)
and the strip it belongs to (``pointing_dec_deg``); together they name one
light-curve epoch (`epoch_id`). `split_epochs` groups photometry rows into
the epochs the light-curve store keeps.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from astropy.table import Table

__all__ = ["image_id", "image_ids", "epoch_id", "split_epochs"]

_IMAGE_KINDS = ("image", "mosaic")


def image_id(image_path: str | os.PathLike[str]) -> str:
    """Return the identity of an image or mosaic: its file name without suffixes.

    ``drift_20230601T000000_00-image.fits`` gives ``drift_20230601T000000_00``
    (the MS's stem: its group's time) and ``block_20230601T010000-mosaic.fits``
    gives ``block_20230601T010000`` (the block's end time).
    """
    name = Path(str(image_path)).name.removesuffix(".fits")
    for suffix in ("-image", "-mosaic"):
        name = name.removesuffix(suffix)
    return name


def image_ids(paths: object) -> np.ndarray:
    """Return `image_id` of each path (computed once per distinct path)."""
    unique_paths, index = np.unique(np.asarray(paths).astype(str), return_inverse=True)
    ids = np.array([image_id(p) for p in unique_paths], dtype=str)
    return ids[index.reshape(-1)] if index.size else np.zeros(0, dtype=str)


def epoch_id(image_id: str, pointing_dec_deg: float) -> str:
    """Return the light-curve epoch of one image or mosaic, keyed by time and strip.

    Parameters
    ----------
    image_id : str
        The image's identity (see `image_id`); it holds the image's time.
    pointing_dec_deg : float
        Declination of the strip the image belongs to (``DSAPTDEC``), degrees;
        NaN when unknown (the epoch is then named by the image alone).

    Returns
    -------
    str
        ``<image_id>_dec<+dd.dd>``, e.g. ``block_20230601T010000_dec+16.30``:
        two strips observed at the same time are two epochs.
    """
    dec = float(pointing_dec_deg)
    if not math.isfinite(dec):
        return str(image_id)
    return f"{image_id}_dec{dec:+06.2f}"


def split_epochs(table: Table, kind: str) -> dict[str, Table]:
    """Return the epochs of one kind in a photometry table, by epoch id.

    One epoch is one image or one mosaic, never a mix: the rows with
    ``image_kind == kind`` are grouped by image (``image_id``, or the file name
    of ``image_path`` in tables written before that column existed) and each
    group is named by `epoch_id`.

    Parameters
    ----------
    table : astropy.table.Table
        Photometry rows (`PHOTOMETRY_COLUMNS`; ``image_id`` and
        ``pointing_dec_deg`` optional).
    kind : {'mosaic', 'image'}
        Which products form the epochs.

    Returns
    -------
    dict of str to astropy.table.Table
        Epoch id to its rows, sorted by epoch id; empty when no row is of
        ``kind``.

    Raises
    ------
    ValueError
        ``kind`` is neither ``'mosaic'`` nor ``'image'``.
    """
    if kind not in _IMAGE_KINDS:
        msg = f"kind must be one of {_IMAGE_KINDS}, got {kind!r}"
        raise ValueError(msg)
    if len(table) == 0:
        return {}
    rows = table[np.asarray(table["image_kind"]).astype(str) == kind]
    if "image_id" in rows.colnames:
        ids = np.asarray(rows["image_id"]).astype(str)
    else:
        ids = image_ids(rows["image_path"])
    if "pointing_dec_deg" in rows.colnames:
        decs = np.asarray(rows["pointing_dec_deg"], dtype=np.float64)
    else:
        decs = np.full(len(rows), np.nan)
    epochs: dict[str, Table] = {}
    for name in sorted(set(ids.tolist())):
        sel = ids == name
        dec = decs[sel]
        dec = (
            float(np.median(dec[np.isfinite(dec)]))
            if np.isfinite(dec).any()
            else np.nan
        )
        epochs[epoch_id(name, dec)] = rows[sel]
    return dict(sorted(epochs.items()))
