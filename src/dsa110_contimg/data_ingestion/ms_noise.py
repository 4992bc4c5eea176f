"""Radiometer-equation noise of a Measurement Set's Stokes I image."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from dsa110_contimg._optional import require
from dsa110_contimg.telescope import dsa110

__all__ = ["thermal_rms_jy"]


def thermal_rms_jy(
    ms_path: Path, *, sefd_jy: float = dsa110.SEFD_JY, min_uv_lambda: float = 1000.0
) -> float:
    r"""Return the radiometer-equation rms of a Stokes I image of an MS.

    Parameters
    ----------
    ms_path : Path
        The Measurement Set.
    sefd_jy : float
        System equivalent flux density of one antenna, Jy.
    min_uv_lambda : float
        Baselines shorter than this (wavelengths, at each channel) are left
        out, as the imager does.

    Returns
    -------
    float
        :math:`\sigma = \mathrm{SEFD} / \sqrt{2\,\Delta\nu\,\tau\,N}` Jy/beam,
        with :math:`N` the unflagged parallel-hand cross-correlation samples
        (natural weighting; Briggs weighting raises it by ~10-40%), NaN when
        everything is flagged.
    """
    tables = require("casacore.tables", "casa")
    c_m_s = 299_792_458.0
    with tables.table(str(ms_path), ack=False) as ms:
        flag = ms.getcol("FLAG")
        cross = ms.getcol("ANTENNA1") != ms.getcol("ANTENNA2")
        exposure = ms.getcol("EXPOSURE")
        uvw = ms.getcol("UVW") if min_uv_lambda > 0 else None
    with tables.table(f"{ms_path}/SPECTRAL_WINDOW", ack=False) as spw:
        width = np.abs(np.asarray(spw.getcol("CHAN_WIDTH"), dtype=float)[0])
        freq = np.asarray(spw.getcol("CHAN_FREQ"), dtype=float)[0]
    with tables.table(f"{ms_path}/POLARIZATION", ack=False) as pol:
        corr = np.asarray(pol.getcol("CORR_TYPE"))[0]
    parallel = np.isin(corr, (5, 8, 9, 12))  # RR, LL, XX, YY
    good = ~flag[:, :, parallel] & cross[:, None, None]
    if uvw is not None:
        uv_lambda = np.hypot(uvw[:, 0], uvw[:, 1])[:, None] * freq[None, :] / c_m_s
        good &= (uv_lambda >= min_uv_lambda)[:, :, None]
    # inverse-variance sum over samples of 2 dnu tau / SEFD^2
    weight = (2.0 * exposure[:, None, None] * width[None, :, None]) * good
    total = float(weight.sum())
    return sefd_jy / math.sqrt(total) if total > 0 else math.nan
