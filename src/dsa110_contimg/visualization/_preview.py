"""PNG previews of images and mosaics."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from astropy.visualization import AsinhStretch, ImageNormalize, ZScaleInterval
from astropy.wcs import WCS
from numpy.typing import ArrayLike, NDArray

from dsa110_contimg._optional import require

__all__ = ["write_preview", "downsample_mean"]

_MAX_PREVIEW_PIX = 1600
_ZSCALE_SAMPLES = 100_000


def downsample_mean(image: ArrayLike, factor: int) -> NDArray[np.float64]:
    """Return the NaN-ignoring mean of ``factor`` x ``factor`` pixel blocks.

    Parameters
    ----------
    image : array_like, shape (n_y, n_x)
        Image to shrink.
    factor : int
        Block size, >= 1; edge blocks may be partial.

    Returns
    -------
    ndarray, shape (ceil(n_y / factor), ceil(n_x / factor))
        Block means; NaN for blocks with no finite pixel.
    """
    data = np.asarray(image, dtype=np.float64)
    if factor <= 1:
        return data
    ny, nx = data.shape
    by, bx = -(-ny // factor), -(-nx // factor)
    padded = np.full((by * factor, bx * factor), np.nan)
    padded[:ny, :nx] = data
    blocks = padded.reshape(by, factor, bx, factor)
    finite = np.isfinite(blocks)
    total = np.where(finite, blocks, 0.0).sum(axis=(1, 3))
    count = finite.sum(axis=(1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)


def write_preview(
    image: ArrayLike,
    wcs: WCS,
    path: Path,
    *,
    title: str,
    unit: str = "Jy/beam",
    stretch: str = "asinh",
    max_pix: int = _MAX_PREVIEW_PIX,
) -> Path:
    """Write a PNG preview of an image with WCS axes and a colour bar.

    Parameters
    ----------
    image : array_like, shape (n_y, n_x)
        The image; NaN pixels are shown blank.
    wcs : astropy.wcs.WCS
        Its two-dimensional celestial WCS.
    path : Path
        Output file; written under a temporary name, then renamed.
    title : str
        Figure title (e.g. the group id or block id).
    unit : str
        Label of the colour bar.
    stretch : {"asinh", "linear"}
        Display stretch between the zscale limits.
    max_pix : int
        Images larger than this on either axis are block-averaged first.

    Returns
    -------
    Path
        ``path``.
    """
    figure_module = require("matplotlib.figure", "plot")
    agg = require("matplotlib.backends.backend_agg", "plot")
    data = np.asarray(image, dtype=np.float64)
    factor = max(1, math.ceil(max(data.shape) / max_pix))
    small = downsample_mean(data, factor)
    small_wcs = wcs.celestial[::factor, ::factor] if factor > 1 else wcs.celestial
    norm = (
        ImageNormalize(
            small,
            interval=ZScaleInterval(n_samples=_ZSCALE_SAMPLES),
            stretch=AsinhStretch(0.1) if stretch == "asinh" else None,
        )
        if np.any(np.isfinite(small))
        else None
    )
    aspect = small.shape[1] / max(1, small.shape[0])
    width = min(16.0, max(6.0, 5.0 * aspect + 1.5))
    fig = figure_module.Figure(figsize=(width, 6.0), dpi=100)
    agg.FigureCanvasAgg(fig)
    ax = fig.add_subplot(projection=small_wcs)
    shown = ax.imshow(small, origin="lower", cmap="inferno", norm=norm)
    ax.set_xlabel("RA (ICRS)")
    ax.set_ylabel("Dec (ICRS)")
    ax.set_title(title)
    fig.colorbar(shown, ax=ax, label=unit, shrink=0.85)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, bbox_inches="tight")
    os.replace(tmp, path)
    return path
