"""A mosaic preview with the measured catalogue sources marked and labelled."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from dsa110_contimg.visualization._preview import write_preview

__all__ = ["write_sources_preview"]


def write_sources_preview(
    image_path: Path, rows: Iterable[Mapping], noise_path: Path | None = None
) -> Path:
    """Write ``<image stem>-sources.png``: the image with measured sources marked.

    Parameters
    ----------
    image_path : Path
        FITS image or mosaic.
    rows : iterable of mappings
        Photometry rows with ``source_name``, ``ra_deg``, ``dec_deg`` and
        ``flux_jy`` (Jy); each is circled and labelled with its flux.
    noise_path : Path, optional
        Noise map whose median sets the display scale (default: the image's
        robust rms).

    Returns
    -------
    Path
        The PNG written.
    """
    image_path = Path(image_path)
    with fits.open(image_path) as hdul:
        header = hdul[0].header.copy()
        image = np.squeeze(np.asarray(hdul[0].data, dtype=np.float64))
    rms = None
    if noise_path is not None:
        with fits.open(noise_path) as hdul:
            rms = float(np.nanmedian(hdul[0].data))
    marks = [
        (
            float(r["ra_deg"]),
            float(r["dec_deg"]),
            f"{r['source_name']} {float(r['flux_jy']):.3g} Jy",
        )
        for r in rows
    ]
    path = image_path.with_name(image_path.name.removesuffix(".fits") + "-sources.png")
    return write_preview(
        image,
        WCS(header).celestial,
        path,
        title=f"{header.get('DSABLOCK', image_path.stem)}: measured fluxes",
        header=header,
        rms_jy=rms,
        sources=marks,
    )
