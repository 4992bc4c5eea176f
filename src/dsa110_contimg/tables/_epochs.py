"""Images and epochs of photometry rows: which product a row measured.

A row names its image or mosaic (``image_id``, the file name without suffixes)
and the strip it belongs to (``pointing_dec_deg``); together they name one
light-curve epoch (`epoch_id`); both names are `dsa110_contimg.products`'s
(re-exported here). `split_epochs` groups photometry rows into
the epochs the light-curve store keeps.
"""

from __future__ import annotations

import numpy as np
from astropy.table import Table

from dsa110_contimg.products import epoch_id, image_id

__all__ = ["image_id", "image_ids", "epoch_id", "split_epochs"]

_IMAGE_KINDS = ("image", "mosaic")


def image_ids(paths: object) -> np.ndarray:
    """Return `image_id` of each path (computed once per distinct path)."""
    unique_paths, index = np.unique(np.asarray(paths).astype(str), return_inverse=True)
    ids = np.array([image_id(p) for p in unique_paths], dtype=str)
    return ids[index.reshape(-1)] if index.size else np.zeros(0, dtype=str)


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
