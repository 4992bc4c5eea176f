"""Image quality figures for the block summary: rms, thermal rms, dynamic range."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits

from dsa110_contimg._optional import require
from dsa110_contimg.telescope import dsa110

__all__ = ["thermal_rms_jy", "radiometer_rms_jy", "image_quality"]

_ROWS_PER_READ = 200_000


def radiometer_rms_jy(sefd_jy: float, sum_bandwidth_time: float, n_pol: int) -> float:
    """Return the naturally weighted Stokes I image noise (Jy/beam).

    ``sigma_I = SEFD / sqrt(n_pol * sum(dnu * tau))``, the sum over every
    unflagged cross-correlation sample (baseline, integration, channel).

    Parameters
    ----------
    sefd_jy : float
        System equivalent flux density of one antenna (Jy).
    sum_bandwidth_time : float
        Sum of channel width (Hz) x integration time (s) over the unflagged
        samples of one polarization product.
    n_pol : int
        Polarization products combined into Stokes I (2 for XX, YY).
    """
    if not sum_bandwidth_time > 0:
        return float("nan")
    return float(sefd_jy / np.sqrt(n_pol * sum_bandwidth_time))


def thermal_rms_jy(ms_path: Path, *, sefd_jy: float = dsa110.SEFD_JY) -> float:
    """Return the radiometer-equation image noise of an MS (Jy/beam).

    Counts the unflagged cross-correlation samples of each polarization
    (XX and YY; both must be unflagged), weighting each by its channel width
    and exposure. Natural weighting; Briggs weighting raises the real noise.
    """
    tables = require("casacore.tables", "casa")
    with tables.table(f"{ms_path}/SPECTRAL_WINDOW", ack=False) as spw:
        widths = np.abs(np.asarray(spw.getcol("CHAN_WIDTH"), dtype=float)[0])
    total = 0.0
    n_pol = 2
    with tables.table(str(ms_path), ack=False) as ms:
        n_rows = ms.nrows()
        for start in range(0, n_rows, _ROWS_PER_READ):
            n = min(_ROWS_PER_READ, n_rows - start)
            a1 = ms.getcol("ANTENNA1", startrow=start, nrow=n)
            a2 = ms.getcol("ANTENNA2", startrow=start, nrow=n)
            exposure = ms.getcol("EXPOSURE", startrow=start, nrow=n)
            flags = ms.getcol("FLAG", startrow=start, nrow=n)  # (row, chan, pol)
            cross = a1 != a2
            n_pol = min(2, flags.shape[2])
            good = ~flags[cross][:, :, [0, flags.shape[2] - 1]].any(axis=2)
            total += float((good * widths[None, :]).sum(axis=1) @ exposure[cross])
    return radiometer_rms_jy(sefd_jy, total, n_pol)


def _plane(path: Path) -> np.ndarray:
    with fits.open(path) as hdul:
        return np.squeeze(np.asarray(hdul[0].data, dtype=np.float64))


def image_quality(
    image_path: Path, residual_path: Path, ms_path: Path
) -> dict[str, float]:
    """Return an image's rms, peak, dynamic range and thermal prediction.

    Returns
    -------
    dict
        ``rms_jy`` (robust rms of the residual), ``peak_jy`` (image maximum),
        ``dynamic_range`` (peak / rms), ``thermal_rms_jy`` (`thermal_rms_jy`)
        and ``rms_over_thermal``.
    """
    from dsa110_contimg.visualization import robust_rms

    image = _plane(image_path)
    residual = _plane(residual_path) if Path(residual_path).exists() else image
    rms = robust_rms(residual)
    peak = float(np.nanmax(image)) if np.isfinite(image).any() else float("nan")
    thermal = thermal_rms_jy(ms_path)
    return {
        "rms_jy": rms,
        "peak_jy": peak,
        "dynamic_range": peak / rms if rms > 0 else float("nan"),
        "thermal_rms_jy": thermal,
        "rms_over_thermal": rms / thermal if thermal > 0 else float("nan"),
    }
