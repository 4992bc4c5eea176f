"""PNG previews of images and mosaics, at native resolution, with a legend.

The image is drawn one data pixel per PNG pixel up to ``max_pix`` (default
2000; larger images are block-averaged), between -5 and +50 times the robust
rms on an asinh stretch, so the noise, faint sources and sidelobes are all
visible rather than only the brightest source's sidelobes. The title's second
line gives the restoring beam (drawn as an ellipse in the lower left), the rms,
the frequency and the time, read from the FITS header.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from astropy.stats import mad_std
from astropy.time import Time
from astropy.visualization import (
    AsinhStretch,
    ImageNormalize,
    LinearStretch,
    ManualInterval,
)
from astropy.wcs import WCS
from numpy.typing import ArrayLike, NDArray

from dsa110_contimg._optional import require
from dsa110_contimg.visualization._figure import new_figure, save_figure

__all__ = ["write_preview", "downsample_mean", "robust_rms", "describe_header"]

_MAX_PREVIEW_PIX = 2000
_MIN_PREVIEW_PIX = 600
_RMS_SAMPLES = 1_000_000
_DPI = 100.0
_LOW_SIGMA, _HIGH_SIGMA = 5.0, 50.0

SourceMark = tuple[float, float, str]
"""A catalogue position to overlay: (ra_deg, dec_deg, label)."""


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
    if factor <= 1:
        return np.asarray(image, dtype=np.float64)
    data = np.asarray(image)
    if data.dtype.kind != "f":
        data = data.astype(np.float64)
    ny, nx = data.shape
    by, bx = -(-ny // factor), -(-nx // factor)
    if (ny, nx) == (by * factor, bx * factor):
        padded = data  # whole blocks: a view, no padded copy
    else:
        padded = np.full((by * factor, bx * factor), np.nan, dtype=data.dtype)
        padded[:ny, :nx] = data
    if padded is data and np.isfinite(np.add.reduce(data, axis=None)):
        # whole blocks, no NaN or inf anywhere (their sum would not be
        # finite): the block sums as factor^2 strided slices added in float64,
        # 5x faster than the masked sum over the block axes below (the same
        # means to 1e-15)
        total = np.zeros((by, bx), dtype=np.float64)
        for i in range(factor):
            for j in range(factor):
                total += data[i::factor, j::factor]
        return total / float(factor * factor)
    blocks = padded.reshape(by, factor, bx, factor)
    finite = np.isfinite(blocks)
    # float32 images are summed in float64 without a float64 copy of the image
    total = np.where(finite, blocks, 0).sum(axis=(1, 3), dtype=np.float64)
    count = finite.sum(axis=(1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)


def robust_rms(image: ArrayLike) -> float:
    """Return the MAD-based sigma (``astropy.stats.mad_std``) of the finite pixels.

    NaN when no pixel is finite. Large images are sampled evenly.
    """
    values = np.asarray(image).ravel()
    if values.dtype.kind != "f":
        values = values.astype(np.float64)
    # the finite pixels in the image's own dtype, then the (exact) float64
    # cast of the sample only: no float64 copy of the whole image
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan")
    if values.size > _RMS_SAMPLES:
        values = values[:: values.size // _RMS_SAMPLES]
    return float(mad_std(values.astype(np.float64)))


def _freq_hz(header: Mapping[str, object]) -> float | None:
    for axis in range(1, 5):
        if str(header.get(f"CTYPE{axis}", "")).upper().startswith("FREQ"):
            return float(header[f"CRVAL{axis}"])
    for key in ("RESTFRQ", "DSAFREQ"):
        if header.get(key):
            return float(header[key])
    return None


def _time_iso(header: Mapping[str, object]) -> str | None:
    if header.get("DATE-OBS"):
        return str(header["DATE-OBS"])[:19]
    for key in ("MJD-OBS", "DSAMJD"):
        if header.get(key):
            return Time(float(header[key]), format="mjd").isot[:19]
    return None


def describe_header(header: Mapping[str, object] | None) -> dict[str, object]:
    """Return the beam (deg), frequency (Hz) and time (ISO) a FITS header gives.

    Returns
    -------
    dict
        ``bmaj_deg``, ``bmin_deg``, ``bpa_deg`` (when BMAJ is set),
        ``freq_hz`` and ``time_iso`` (None when absent).
    """
    header = header or {}
    out: dict[str, object] = {
        "freq_hz": _freq_hz(header),
        "time_iso": _time_iso(header),
    }
    if header.get("BMAJ"):
        out["bmaj_deg"] = float(header["BMAJ"])
        out["bmin_deg"] = float(header.get("BMIN", header["BMAJ"]))
        out["bpa_deg"] = float(header.get("BPA", 0.0))
    return out


def _legend(info: Mapping[str, object], rms_jy: float, unit: str) -> str:
    parts = []
    if "bmaj_deg" in info:
        parts.append(
            f"beam {3600 * info['bmaj_deg']:.1f}\u2033\u00d7"
            f"{3600 * info['bmin_deg']:.1f}\u2033 PA {info['bpa_deg']:.0f}\u00b0"
        )
    if math.isfinite(rms_jy):
        scale, prefix = (1e3, "m") if abs(rms_jy) < 1 else (1.0, "")
        parts.append(f"rms {scale * rms_jy:.3g} {prefix}{unit}")
    if info.get("freq_hz"):
        parts.append(f"{float(info['freq_hz']) / 1e9:.4f} GHz")
    if info.get("time_iso"):
        parts.append(f"{info['time_iso']} UTC")
    return "   ".join(parts)


def _draw_beam(ax, info: Mapping[str, object], pix_deg: float) -> None:
    if "bmaj_deg" not in info or not pix_deg > 0:
        return
    patches = require("matplotlib.patches", "plot")
    major = float(info["bmaj_deg"]) / pix_deg
    minor = float(info["bmin_deg"]) / pix_deg
    pad = max(major, 6.0)
    # BPA is east of north; east is left (-x) and north up (+y) on the sky
    ellipse = patches.Ellipse(
        (pad, pad),
        width=minor,
        height=major,
        angle=float(info["bpa_deg"]),
        facecolor="none",
        edgecolor="cyan",
        lw=1.5,
    )
    ax.add_patch(ellipse)


def _draw_sources(ax, sources: Sequence[SourceMark], radius_pix: float) -> None:
    if not sources:
        return
    ra = np.array([s[0] for s in sources], dtype=float)
    dec = np.array([s[1] for s in sources], dtype=float)
    world = ax.get_transform("world")
    ax.scatter(
        ra,
        dec,
        s=(2 * radius_pix) ** 2,
        transform=world,
        facecolors="none",
        edgecolors="lime",
        linewidths=1.0,
    )
    for r, d, (_, _, label) in zip(ra, dec, sources, strict=True):
        ax.text(
            r,
            d,
            f"  {label}",
            transform=world,
            color="lime",
            fontsize=8,
            va="bottom",
            ha="left",
            clip_on=True,
        )


def write_preview(
    image: ArrayLike,
    wcs: WCS,
    path: Path,
    *,
    title: str,
    unit: str = "Jy/beam",
    stretch: str = "asinh",
    max_pix: int = _MAX_PREVIEW_PIX,
    header: Mapping[str, object] | None = None,
    rms_jy: float | None = None,
    sources: Sequence[SourceMark] = (),
    limits: tuple[float, float] | None = None,
) -> Path:
    """Write a PNG preview of an image with WCS axes, colour bar and legend.

    Parameters
    ----------
    image : array_like, shape (n_y, n_x)
        The image; NaN pixels are shown blank.
    wcs : astropy.wcs.WCS
        Its two-dimensional celestial WCS.
    path : Path
        Output file; written under a temporary name, then renamed.
    title : str
        First line of the title (e.g. the group id or block id).
    unit : str
        Unit of the pixel values (colour bar, rms).
    stretch : {"asinh", "linear"}
        Display stretch between -5 and +50 rms.
    max_pix : int
        Images larger than this on either axis are block-averaged first;
        smaller ones are drawn one pixel per pixel (images under 600 pixels
        are enlarged by a whole factor).
    header : mapping, optional
        FITS header of the image: restoring beam (drawn), frequency and time
        (in the legend).
    rms_jy : float, optional
        Noise for the legend and the display limits; default the robust rms
        of the image.
    sources : sequence of (ra_deg, dec_deg, label), optional
        Catalogue positions to circle and label (e.g. with measured fluxes).
    limits : (float, float), optional
        Display range instead of -5..+50 rms (e.g. ``(0, 1)`` for a primary
        beam); the legend then shows no rms.

    Returns
    -------
    Path
        ``path``.
    """
    data = np.asarray(image)  # float32 stays float32: the helpers sum in float64
    if data.dtype.kind != "f":
        data = data.astype(np.float64)
    factor = max(1, math.ceil(max(data.shape) / max_pix))
    small = downsample_mean(data, factor)
    small_wcs = wcs.celestial[::factor, ::factor] if factor > 1 else wcs.celestial
    norm = None
    if limits is not None:  # fixed limits: no rms needed (nor shown)
        rms = float("nan")
        norm = ImageNormalize(
            interval=ManualInterval(*limits),
            stretch=AsinhStretch(0.1) if stretch == "asinh" else LinearStretch(),
        )
    else:
        rms = robust_rms(data) if rms_jy is None else float(rms_jy)
    if limits is None and np.any(np.isfinite(small)):
        spread = rms if math.isfinite(rms) and rms > 0 else float(np.nanstd(small))
        spread = spread if spread > 0 else 1.0
        norm = ImageNormalize(
            small,
            interval=ManualInterval(-_LOW_SIGMA * spread, _HIGH_SIGMA * spread),
            stretch=AsinhStretch(0.1) if stretch == "asinh" else LinearStretch(),
            clip=False,
        )
    ny, nx = small.shape
    zoom = max(1, _MIN_PREVIEW_PIX // max(nx, ny))
    w_in, h_in = zoom * nx / _DPI, zoom * ny / _DPI
    left, right, bottom, top = 1.2, 1.5, 0.9, 0.8
    fig = new_figure((w_in + left + right, h_in + bottom + top), dpi=_DPI)
    width, height = w_in + left + right, h_in + bottom + top
    ax = fig.add_axes(
        (left / width, bottom / height, w_in / width, h_in / height),
        projection=small_wcs,
    )
    shown = ax.imshow(
        small, origin="lower", cmap="inferno", norm=norm, interpolation="nearest"
    )
    ax.set_xlabel("RA (ICRS)")
    ax.set_ylabel("Dec (ICRS)")
    info = describe_header(header)
    ax.set_title(f"{title}\n{_legend(info, rms, unit)}", fontsize=10)
    pix_deg = float(np.abs(small_wcs.pixel_scale_matrix).max()) / zoom
    _draw_beam(ax, info, pix_deg * zoom)
    beam_pix = float(info.get("bmaj_deg", 0.0)) / pix_deg if pix_deg else 0.0
    _draw_sources(ax, sources, max(6.0, 1.5 * beam_pix))
    ax.set_xlim(-0.5, nx - 0.5)
    ax.set_ylim(-0.5, ny - 0.5)
    cax = fig.add_axes(
        ((left + w_in + 0.15) / width, bottom / height, 0.22 / width, h_in / height)
    )
    fig.colorbar(shown, cax=cax, label=unit)
    return save_figure(fig, path, tight=False)
