"""Whether an existing product may be reused instead of being made again.

A re-run skips work whose product exists, so "exists" must mean "is whole and
was made from the same inputs with the same settings": a power loss can leave
a truncated or 0-byte FITS file under its final name, and a changed
configuration must not reuse the old image. Each check returns the reason a
product cannot be trusted, or None.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from astropy.io import fits

__all__ = [
    "IMAGING_KEY_CARD",
    "imaging_key",
    "fits_problem",
    "fits_size_problem",
    "file_problem",
]

IMAGING_KEY_CARD = "DSAIMKEY"
"""FITS card holding the `imaging_key` of the run that made an image."""


def imaging_key(settings: Mapping[str, object], calibration: str | None) -> str:
    """Return a short hash of everything that shapes an image of one MS.

    Parameters
    ----------
    settings : mapping
        The ``imaging`` configuration section (``model_dump(mode="json")``).
    calibration : str or None
        The calibration applied to the MS (``ms_calibration``), None if none.
    """
    text = json.dumps([dict(settings), calibration], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_problem(path: Path, *, newer_than: Path | None = None) -> str | None:
    """Return why a non-FITS product (PNG, JSON) cannot be reused, or None."""
    try:
        stat = Path(path).stat()
    except OSError:
        return "missing"
    if stat.st_size == 0:
        return "empty (0 bytes)"
    if newer_than is not None:
        try:
            if stat.st_mtime_ns < Path(newer_than).stat().st_mtime_ns:
                return f"older than {Path(newer_than).name}"
        except OSError:
            pass
    return None


def fits_problem(
    path: Path,
    *,
    shape: tuple[int, ...] | None = None,
    min_finite_fraction: float = 0.0,
    key: str | None = None,
    newer_than: Path | None = None,
) -> str | None:
    """Return why a FITS product cannot be reused, or None when it can.

    Parameters
    ----------
    path : Path
        The product.
    shape : tuple of int, optional
        Expected shape of the last two axes (ny, nx) or of the whole array.
    min_finite_fraction : float
        Least fraction of finite pixels.
    key : str, optional
        Expected `IMAGING_KEY_CARD` value (the settings it was made with).
    newer_than : Path, optional
        The product must be at least as new as this file (a derived map
        older than its image was made from an earlier image).
    """
    problem = file_problem(path, newer_than=newer_than)
    if problem is not None:
        return problem
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(path, memmap=False) as hdul:
                header = hdul[0].header
                data = hdul[0].data
                if data is None:
                    return "no data"
                data = np.asarray(data)
    except (OSError, TypeError, ValueError) as err:
        return f"unreadable ({err})"
    if shape is not None:
        got = data.shape[-len(shape) :]
        if tuple(got) != tuple(shape):
            return f"shape {tuple(data.shape)}, expected {tuple(shape)}"
    if min_finite_fraction > 0:
        finite = float(np.isfinite(data).mean()) if data.size else 0.0
        if finite < min_finite_fraction:
            return f"only {100 * finite:.1f}% of its pixels are finite"
    if key is not None and header.get(IMAGING_KEY_CARD) != key:
        return (
            f"made with other settings ({IMAGING_KEY_CARD} "
            f"{header.get(IMAGING_KEY_CARD)!r}, now {key!r})"
        )
    return None


def fits_size_problem(path: Path) -> str | None:
    """Return why a FITS file is not whole, reading only its primary header.

    A FITS file is its header blocks plus its data padded to 2880 bytes; a
    file shorter than that was cut (the cheap check of a start-up audit).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(path, memmap=True, lazy_load_hdus=True) as hdul:
                hdu = hdul[0]
                info = hdu.fileinfo()
                expected = info["datLoc"] + _padded(hdu.header)
    except (OSError, TypeError, ValueError, KeyError, IndexError) as err:
        return f"unreadable ({err})"
    size = Path(path).stat().st_size
    if size < expected:
        return f"truncated: {size} of {expected} bytes"
    return None


def _padded(header: fits.Header) -> int:
    naxis = int(header.get("NAXIS", 0))
    n = abs(int(header.get("BITPIX", 8))) // 8
    for axis in range(1, naxis + 1):
        n *= int(header.get(f"NAXIS{axis}", 0))
    if naxis == 0:
        n = 0
    return -(-n // 2880) * 2880
