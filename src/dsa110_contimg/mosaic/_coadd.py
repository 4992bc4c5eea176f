"""Inverse-variance, primary-beam-weighted coaddition of images."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from astropy.wcs import WCS
from numpy.typing import ArrayLike, NDArray
from scipy.ndimage import binary_erosion

from dsa110_contimg.mosaic._grid import image_outline
from dsa110_contimg.mosaic._reproject import (
    input_coordinates,
    prepare_image,
    reproject_image,
)

__all__ = ["MosaicInput", "MosaicResult", "coadd_images"]

log = logging.getLogger(__name__)

# Pixels this close to unusable ones are left out: the cubic spline of the
# zero-filled image rings there (the ringing decays by 0.27 per pixel).
_SPLINE_GUARD_PIX = 4
# Relative weight of a pixel in a member's outer guard band: it fills a mosaic
# pixel only where no member's interior covers it (then it decides the value
# alone), and moves a pixel that an interior covers by < 1e-6 of the difference
# per unit weight ratio.
GUARD_WEIGHT = 1e-9


@dataclass(frozen=True, slots=True, eq=False)
class MosaicInput:
    """One image to coadd, with its primary beam and noise map.

    Parameters
    ----------
    name : str
        Identifier used in the result (e.g. the image path).
    image : array_like, shape (n_y, n_x)
        Restored image without primary-beam correction, Jy/beam.
    pb : array_like, shape (n_y, n_x)
        Primary-beam power response of the image.
    rms : array_like, shape (n_y, n_x)
        Noise (rms) of ``image``, Jy/beam.
    wcs : astropy.wcs.WCS
        Two-dimensional celestial WCS shared by the three arrays.
    guard_pix : float
        Width of the image's outer guard band, input pixels: pixels closer
        than this to the image border are used only where no other image's
        interior covers the mosaic pixel.
    """

    name: str
    image: ArrayLike
    pb: ArrayLike
    rms: ArrayLike
    wcs: WCS
    guard_pix: float = 0.0


@dataclass(frozen=True, slots=True, eq=False)
class MosaicResult:
    """A mosaic with its weight, noise and coverage maps, all shape (n_y, n_x).

    Parameters
    ----------
    image : ndarray of float32
        Primary-beam-corrected, weighted mean image, Jy/beam; NaN where no
        image contributes.
    weight : ndarray of float32
        Sum of the weights :math:`\\sum_i p_i^2/\\sigma_i^2`, (Jy/beam)^-2.
    noise : ndarray of float32
        Predicted rms of ``image``, :math:`(\\sum_i w_i)^{-1/2}`, Jy/beam.
    coverage : ndarray of int16
        Number of images contributing to each pixel from their interior
        (outside their guard band); 0 where the pixel is finite but filled
        only from guard bands (`guard_only`).
    wcs : astropy.wcs.WCS
        Two-dimensional celestial WCS of the mosaic.
    used : tuple of str
        Inputs that contributed at least one pixel.
    empty : tuple of str
        Inputs that contributed nothing (all NaN, or off the grid).
    """

    image: NDArray[np.float32]
    weight: NDArray[np.float32]
    noise: NDArray[np.float32]
    coverage: NDArray[np.int16]
    wcs: WCS
    used: tuple[str, ...]
    empty: tuple[str, ...]

    @property
    def guard_only(self) -> NDArray[np.bool_]:
        """Return the pixels filled only from images' guard bands."""
        return np.isfinite(self.image) & (self.coverage == 0)


def coadd_images(
    inputs: Iterable[MosaicInput],
    wcs: WCS,
    shape: tuple[int, int],
    *,
    pb_cut: float = 0.2,
    method: str = "fast",
    tile_pix: int = 2048,
) -> MosaicResult:
    r"""Coadd images on a common grid, weighting by primary beam and noise.

    Parameters
    ----------
    inputs : iterable of MosaicInput
        The images; consumed one at a time, so a generator that loads each
        image lazily keeps one image in memory.
    wcs : astropy.wcs.WCS
        Two-dimensional celestial WCS of the mosaic (see `mosaic_grid`).
    shape : (int, int)
        Mosaic shape ``(n_y, n_x)``.
    pb_cut : float
        Image pixels with primary beam below this are left out.
    method : {"fast", "interp"}
        Reprojection method (see `reproject_bilinear`).
    tile_pix : int
        Side of the mosaic tiles reprojected at a time, pixels; bounds the
        working memory (about 50 bytes per tile pixel) besides the
        accumulators (18 bytes per mosaic pixel) and the current image.

    Returns
    -------
    MosaicResult

    Notes
    -----
    Each image :math:`I_i` (flat noise :math:`\sigma_i`, primary beam
    :math:`p_i`) is corrected, :math:`I_i/p_i`, and weighted by the inverse
    variance of the corrected image, :math:`w_i = p_i^2/\sigma_i^2`:

    .. math::
        M = \frac{\sum_i w_i\, I_i/p_i}{\sum_i w_i}, \qquad
        \sigma_M = \Big(\sum_i w_i\Big)^{-1/2},

    the minimum-variance combination for independent noise (the images of
    different groups hold different visibilities). The corrected image is
    reprojected with a cubic spline (bilinear interpolation would smooth a
    ~3-pixel restoring beam and bias matched-filter fluxes low by ~3%), the
    smooth weight bilinearly; pixels within 4 pixels of unusable ones
    (primary beam below the cut, NaN) get no weight. Pixels in an image's
    outer guard band (`MosaicInput.guard_pix` of its border, where imagers
    clean and restore poorly and a source's fitting box is cut) enter with
    their weight times `GUARD_WEIGHT`: wherever another image's interior
    covers the pixel the guard band contributes nothing measurable, and where
    none does the guard bands alone give the value (`MosaicResult.guard_only`;
    the photometry flags what it measures there), with their true weight in
    the weight and noise maps. Running sums are accumulated tile by tile over
    the tiles each image overlaps.
    """
    shape = (int(shape[0]), int(shape[1]))
    sum_wi = np.zeros(shape, dtype=np.float64)
    sum_w = np.zeros(shape, dtype=np.float64)
    coverage = np.zeros(shape, dtype=np.int16)
    used: list[str] = []
    empty: list[str] = []
    for item in inputs:
        n_pix = _accumulate(
            item,
            wcs,
            shape,
            sum_wi,
            sum_w,
            coverage,
            pb_cut=pb_cut,
            method=method,
            tile_pix=tile_pix,
        )
        (used if n_pix else empty).append(item.name)
        log.debug("image coadded", extra={"image": item.name, "n_pixels": n_pix})
    covered = sum_w > 0
    image = np.full(shape, np.nan, dtype=np.float32)
    noise = np.full(shape, np.nan, dtype=np.float32)
    image[covered] = sum_wi[covered] / sum_w[covered]
    del sum_wi
    sum_w[covered & (coverage == 0)] /= GUARD_WEIGHT  # guard bands' true weight
    noise[covered] = 1.0 / np.sqrt(sum_w[covered])
    return MosaicResult(
        image, sum_w.astype(np.float32), noise, coverage, wcs, tuple(used), tuple(empty)
    )


def _weighted_planes(
    item: MosaicInput, pb_cut: float
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Return I / pb (0 where unusable) and pb^2 / rms^2 (NaN where unusable)."""
    image = np.asarray(item.image, dtype=np.float32)
    pb = np.asarray(item.pb, dtype=np.float32)
    rms = np.asarray(item.rms, dtype=np.float32)
    if not image.shape == pb.shape == rms.shape or image.ndim != 2:
        msg = (
            f"{item.name}: image, pb and rms must be 2-D of one shape, got "
            f"{image.shape}, {pb.shape}, {rms.shape}"
        )
        raise ValueError(msg)
    with np.errstate(invalid="ignore", divide="ignore"):
        good = (pb >= pb_cut) & np.isfinite(image) & (rms > 0) & np.isfinite(rms)
        corrected = np.zeros(image.shape, dtype=np.float32)
        corrected[good] = image[good] / pb[good]
        if not good.all():
            good = binary_erosion(good, iterations=_SPLINE_GUARD_PIX, border_value=1)
        weight = np.full(image.shape, np.nan, dtype=np.float32)
        weight[good] = (pb[good] / rms[good]) ** 2
    return corrected, weight


def _accumulate(
    item: MosaicInput,
    wcs: WCS,
    shape: tuple[int, int],
    sum_wi: NDArray[np.float64],
    sum_w: NDArray[np.float64],
    coverage: NDArray[np.int16],
    *,
    pb_cut: float,
    method: str,
    tile_pix: int,
) -> int:
    corrected, weight = _weighted_planes(item, pb_cut)
    if not np.any(np.isfinite(weight)):
        return 0
    wcs_in = item.wcs.celestial
    ra, dec = image_outline(wcs_in, weight.shape)
    x, y = wcs.world_to_pixel_values(ra, dec)
    if not (np.any(np.isfinite(x)) and np.any(np.isfinite(y))):
        return 0
    x0 = max(0, math.floor(np.nanmin(x)) - 1)
    x1 = min(shape[1], math.ceil(np.nanmax(x)) + 2)
    y0 = max(0, math.floor(np.nanmin(y)) - 1)
    y1 = min(shape[0], math.ceil(np.nanmax(y)) + 2)
    image_in = prepare_image(corrected, wcs_in, order=3)
    weight_in = prepare_image(weight, wcs_in, order=1)
    del corrected, weight
    n_pix = 0
    for ty in range(y0, y1, tile_pix):
        for tx in range(x0, x1, tile_pix):
            sy = slice(ty, min(ty + tile_pix, y1))
            sx = slice(tx, min(tx + tile_pix, x1))
            tile_wcs = wcs.deepcopy()
            tile_wcs.wcs.crpix = [wcs.wcs.crpix[0] - tx, wcs.wcs.crpix[1] - ty]
            tile_shape = (sy.stop - sy.start, sx.stop - sx.start)
            coords = (
                input_coordinates(wcs_in, tile_wcs, tile_shape, image_in.data.shape)
                if method == "fast"
                else None
            )
            w_tile = reproject_image(
                weight_in, None, tile_wcs, tile_shape, method=method, coords=coords
            )
            good = np.isfinite(w_tile) & (w_tile > 0)
            if not good.any():
                continue
            i_tile = reproject_image(
                image_in, None, tile_wcs, tile_shape, method=method, coords=coords
            )
            good &= np.isfinite(i_tile)
            if item.guard_pix > 0:
                if coords is None:
                    coords = input_coordinates(
                        wcs_in, tile_wcs, tile_shape, image_in.data.shape
                    )
                inner = _interior(coords, image_in.data.shape, item.guard_pix)
                inner = inner.reshape(tile_shape)
                w_tile = np.where(inner, w_tile, w_tile * GUARD_WEIGHT)
            else:
                inner = np.ones(tile_shape, dtype=bool)
            sum_wi[sy, sx][good] += (w_tile * i_tile)[good]
            sum_w[sy, sx][good] += w_tile[good]
            coverage[sy, sx][good & inner] += 1
            n_pix += int(good.sum())
    return n_pix


def _interior(
    coords: tuple[NDArray[np.float64], NDArray[np.bool_]],
    shape_in: tuple[int, ...],
    guard_pix: float,
) -> NDArray[np.bool_]:
    """Return which output pixels lie at least ``guard_pix`` inside the input."""
    points, outside = coords
    inner = ~outside
    for axis, n in enumerate(shape_in[-2:]):
        c = points[axis]
        inner &= (c >= guard_pix) & (c <= n - 1 - guard_pix)
    return inner
