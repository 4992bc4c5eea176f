"""Compiled per-source loops of forced photometry (numba, cached on disk).

One pass over each source's fitting box gives the matched filter and the
moments of the shape fit (`box_moments`); the annulus rms (`annulus_rms`)
selects medians in place of sorting; the exclusion mask is drawn as row
spans (`disk_mask`). Each works on the image as stored (float32 or float64)
and computes in float64, so a float32 image gives the numbers of its float64
copy. The first call compiles (seconds) and writes the machine code beside
this file (``cache=True``); later processes load it.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__: list[str] = []

# (p, q) of the monomials dx^p dy^q of the shape basis, in `_shape_basis` order
# of the monomial expansion (1, dx, dy, dx^2, dx dy, dy^2)
MONOMIALS = ((0, 0), (1, 0), (0, 1), (2, 0), (1, 1), (0, 2))
# index of the moment sum(K^2 dx^p dy^q), p + q <= 4, in the G output
G_INDEX: dict[tuple[int, int], int] = {}
for _p in range(5):
    for _q in range(5 - _p):
        G_INDEX[(_p, _q)] = len(G_INDEX)
N_G = len(G_INDEX)  # 15


@njit(cache=True, nogil=True)
def _general_box(image, xs, ys, xi, yi, half, i00, i01, i11):  # pragma: no cover
    """Matched-filter sums of a box that crosses the edge or holds NaN pixels."""
    ny, nx = image.shape
    num = 0.0
    k2v = 0.0
    k2f = 0.0
    has_nan = False
    at_edge = False
    for r in range(2 * half + 1):
        yy = yi + r - half
        dy = yy - ys
        for c in range(2 * half + 1):
            xx = xi + c - half
            dx = xx - xs
            k = math.exp(-0.5 * (i00 * dx * dx + 2.0 * i01 * dx * dy + i11 * dy * dy))
            kk = k * k
            k2f += kk
            if 0 <= yy < ny and 0 <= xx < nx:
                v = np.float64(image[yy, xx])
                if math.isfinite(v):
                    k2v += kk
                    num += v * k
                else:
                    has_nan = True
            else:
                at_edge = True
    return num, k2v, k2f, has_nan, at_edge


@njit(cache=True, nogil=True)
def box_moments(image, x, y, ix, iy, half, g0, inv, shape):  # pragma: no cover
    """Return the matched-filter sums and shape moments of each source's box.

    Parameters
    ----------
    image : ndarray, shape (n_y, n_x), float32 or float64
    x, y : ndarray, shape (n,)
        Sub-pixel positions (NaN allowed).
    ix, iy : ndarray of intp, shape (n,)
        Their nearest pixels (0 where not finite).
    half : int
        Half side of the box, pixels.
    g0 : ndarray, shape (2 half + 1, 2 half + 1)
        The beam at integer offsets, ``exp(-o^T C^-1 o / 2)``, rows in y.
    inv : ndarray, shape (2, 2)
        ``C^-1`` of the pixel beam.
    shape : bool
        Also return the moments of the shape fit.

    Returns
    -------
    num, k2_valid, k2_full : ndarray, shape (n,)
        ``sum(d K)``, ``sum(K^2)`` over valid pixels and over the whole box.
    has_nan, at_edge, full : ndarray of bool, shape (n,)
    g : ndarray, shape (n, 15)
        ``sum(K^2 dx^p dy^q)``, p + q <= 4 (full boxes, with ``shape``).
    h : ndarray, shape (n, 6)
        ``sum(d K dx^p dy^q)`` for the six monomials (full boxes, with ``shape``).

    Notes
    -----
    With ``o`` the integer offset in the box and ``f`` the sub-pixel offset,
    ``K(o - f) = g0(o) exp(o^T C^-1 f) exp(-f^T C^-1 f / 2)``, and
    ``o^T C^-1 f = o_x a + o_y b``: the beam of a box is ``g0`` times one
    exponential per column and one per row, so a complete box costs a few
    multiplications per pixel and no exponential.
    """
    n = x.size
    ny, nx = image.shape
    side = 2 * half + 1
    i00, i01, i10, i11 = inv[0, 0], inv[0, 1], inv[1, 0], inv[1, 1]
    num = np.zeros(n)
    k2v = np.zeros(n)
    k2f = np.zeros(n)
    has_nan = np.zeros(n, dtype=np.bool_)
    at_edge = np.zeros(n, dtype=np.bool_)
    full = np.zeros(n, dtype=np.bool_)
    g = np.zeros((n, 15))
    h = np.zeros((n, 6))
    col = np.empty(side)
    row = np.empty(side)
    for s in range(n):
        xs, ys, xi, yi = x[s], y[s], ix[s], iy[s]
        inside = (
            math.isfinite(xs)
            and math.isfinite(ys)
            and yi - half >= 0
            and yi + half < ny
            and xi - half >= 0
            and xi + half < nx
        )
        ok = inside
        if inside:
            fx = xs - xi
            fy = ys - yi
            a = i00 * fx + i01 * fy
            b = i10 * fx + i11 * fy
            cf = math.exp(-0.5 * (i00 * fx * fx + 2.0 * i01 * fx * fy + i11 * fy * fy))
            for c in range(side):
                col[c] = math.exp((c - half) * a)
                row[c] = math.exp((c - half) * b)
            gs = np.zeros(15)
            hs = np.zeros(6)
            for r in range(side):
                dy = (r - half) - fy
                rowfac = cf * row[r]
                s0 = s1 = s2 = s3 = s4 = 0.0
                t0 = t1 = t2 = 0.0
                for c in range(side):
                    v = np.float64(image[yi - half + r, xi - half + c])
                    k = rowfac * g0[r, c] * col[c]
                    kk = k * k
                    kv = k * v
                    s0 += kk
                    t0 += kv
                    if shape:
                        dx = (c - half) - fx
                        dx2 = dx * dx
                        s1 += kk * dx
                        s2 += kk * dx2
                        s3 += kk * dx2 * dx
                        s4 += kk * dx2 * dx2
                        t1 += kv * dx
                        t2 += kv * dx2
                if not math.isfinite(t0):
                    ok = False  # a NaN pixel (or an overflow): the general sums
                    break
                if shape:
                    dy2 = dy * dy
                    # g index of (p, q): p + q <= 4, p-major (see G_INDEX)
                    gs[0] += s0
                    gs[1] += s0 * dy
                    gs[2] += s0 * dy2
                    gs[3] += s0 * dy2 * dy
                    gs[4] += s0 * dy2 * dy2
                    gs[5] += s1
                    gs[6] += s1 * dy
                    gs[7] += s1 * dy2
                    gs[8] += s1 * dy2 * dy
                    gs[9] += s2
                    gs[10] += s2 * dy
                    gs[11] += s2 * dy2
                    gs[12] += s3
                    gs[13] += s3 * dy
                    gs[14] += s4
                    hs[0] += t0
                    hs[1] += t1
                    hs[2] += t0 * dy
                    hs[3] += t2
                    hs[4] += t1 * dy
                    hs[5] += t0 * dy2
                else:
                    gs[0] += s0
                    hs[0] += t0
            if ok:
                num[s] = hs[0]
                k2v[s] = gs[0]
                k2f[s] = gs[0]
                full[s] = True
                if shape:
                    g[s, :] = gs
                    h[s, :] = hs
        if not ok:
            num[s], k2v[s], k2f[s], has_nan[s], at_edge[s] = _general_box(
                image, xs, ys, xi, yi, half, i00, i01, i11
            )
    return num, k2v, k2f, has_nan, at_edge, full, g, h


@njit(cache=True, nogil=True)
def _select(values, k):  # pragma: no cover
    """Reorder ``values`` in place so that ``values[k]`` is its k-th smallest.

    Hoare's selection with a median-of-three pivot (Wirth 1976): afterwards
    ``values[:k] <= values[k] <= values[k + 1:]``.
    """
    lo = 0
    hi = values.size - 1
    while lo < hi:
        mid = (lo + hi) >> 1
        if values[mid] < values[lo]:
            values[mid], values[lo] = values[lo], values[mid]
        if values[hi] < values[lo]:
            values[hi], values[lo] = values[lo], values[hi]
        if values[hi] < values[mid]:
            values[hi], values[mid] = values[mid], values[hi]
        pivot = values[mid]
        i = lo
        j = hi
        while i <= j:
            while values[i] < pivot:
                i += 1
            while values[j] > pivot:
                j -= 1
            if i <= j:
                values[i], values[j] = values[j], values[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            break
    return values[k]


@njit(cache=True, nogil=True)
def _median(values):  # pragma: no cover
    """Return the median of a non-empty 1-D array, reordering it in place.

    The mean of the middle two for an even size, as ``numpy.median``.
    """
    n = values.size
    high = _select(values, n // 2)
    if n % 2:
        return high
    low = values[0]
    for i in range(1, n // 2):
        low = max(low, values[i])
    return (low + high) / 2


@njit(cache=True, nogil=True)
def _mad_rms(values, scale):  # pragma: no cover
    """Return ``scale`` times the median absolute deviation (overwrites values)."""
    med = _median(values)
    for j in range(values.size):
        values[j] = abs(values[j] - med)
    return _median(values) * scale


@njit(cache=True, nogil=True)
def annulus_rms(
    image, ix, iy, oy, ox, exclude, use_exclude, min_samples, scale, fallback
):  # pragma: no cover
    """Return the MAD-based rms of the annulus samples of each position.

    Samples off the image, NaN or (with ``use_exclude``) excluded are left
    out; with fewer than ``min_samples`` left the rms is NaN, or, where
    ``fallback``, that of the samples without the exclusion (``unmasked``).

    Returns
    -------
    rms : ndarray, shape (n,)
    unmasked : ndarray of bool, shape (n,)
    """
    ny, nx = image.shape
    n = ix.size
    out = np.full(n, np.nan)
    unmasked = np.zeros(n, dtype=np.bool_)
    kept = np.empty(oy.size)
    every = np.empty(oy.size)
    for s in range(n):
        n_kept = 0
        n_every = 0
        for j in range(oy.size):
            yy = iy[s] + oy[j]
            xx = ix[s] + ox[j]
            if yy < 0 or yy >= ny or xx < 0 or xx >= nx:
                continue
            v = np.float64(image[yy, xx])
            if not math.isfinite(v):
                continue
            every[n_every] = v
            n_every += 1
            if not (use_exclude and exclude[yy, xx]):
                kept[n_kept] = v
                n_kept += 1
        if n_kept >= min_samples and n_kept > 0:
            out[s] = _mad_rms(kept[:n_kept], scale)
        elif fallback[s] and n_every >= min_samples and n_every > 0:
            out[s] = _mad_rms(every[:n_every], scale)
            unmasked[s] = True
    return out, unmasked


@njit(cache=True, nogil=True)
def disk_mask(ny, nx, ix, iy, use, span):  # pragma: no cover
    """Return a mask of the pixels within a disk around the positions ``use``.

    ``span[r]`` is the half-width of the disk's row ``r - (span.size // 2)``
    (-1 for none).
    """
    mask = np.zeros((ny, nx), dtype=np.bool_)
    rad = span.size // 2
    for s in range(ix.size):
        if not use[s]:
            continue
        for r in range(span.size):
            w = span[r]
            yy = iy[s] + r - rad
            if w < 0 or yy < 0 or yy >= ny:
                continue
            x0 = max(ix[s] - w, 0)
            x1 = min(ix[s] + w + 1, nx)
            if x1 > x0:
                mask[yy, x0:x1] = True
    return mask


@njit(cache=True, nogil=True)
def box_dots(image, ix, iy, first, second):  # pragma: no cover
    """Return ``sum(box * first)`` and ``sum(box * second)`` of boxes centred on pixels.

    The boxes (the weights' shape, odd sides) must lie on the image; one
    holding a NaN pixel gives NaN in both.
    """
    half_y = first.shape[0] // 2
    half_x = first.shape[1] // 2
    n = ix.size
    out1 = np.full(n, np.nan)
    out2 = np.full(n, np.nan)
    for s in range(n):
        acc1 = 0.0
        acc2 = 0.0
        finite = True
        for r in range(first.shape[0]):
            for c in range(first.shape[1]):
                v = np.float64(image[iy[s] - half_y + r, ix[s] - half_x + c])
                if not math.isfinite(v):
                    finite = False
                    break
                acc1 += v * first[r, c]
                acc2 += v * second[r, c]
            if not finite:
                break
        if finite:
            out1[s] = acc1
            out2[s] = acc2
    return out1, out2
