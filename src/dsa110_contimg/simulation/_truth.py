"""Compare pipeline photometry with the simulator's truth."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS, FITSFixedWarning

from dsa110_contimg.data_ingestion.photometry import fit_peak_position
from dsa110_contimg.data_ingestion.skymodel import SkyCatalog

__all__ = ["TruthComparison", "compare_to_truth"]


@dataclass(frozen=True, slots=True)
class TruthComparison:
    """Recovered versus injected sources (best measurement of each source)."""

    table: Table
    n_injected: int

    @property
    def n_recovered(self) -> int:
        """Return the number of sources measured above the SNR cut."""
        return len(self.table)

    @property
    def median_abs_flux_error(self) -> float:
        """Return the median of ``|measured / true - 1|``."""
        return (
            float(np.median(np.abs(self.table["flux_error"])))
            if len(self.table)
            else np.nan
        )

    @property
    def max_offset_beams(self) -> float:
        """Return the largest fitted-peak offset from truth, in synthesized beams."""
        return float(np.max(self.table["offset_beams"])) if len(self.table) else np.nan


def compare_to_truth(
    photometry: Table,
    sky: SkyCatalog,
    *,
    snr_min: float = 10.0,
    image_kind: str | None = "image",
) -> TruthComparison:
    """Match each injected source to its best (highest-PB, unflagged) measurement.

    Parameters
    ----------
    photometry : Table
        Rows of the pipeline's photometry table.
    sky : SkyCatalog
        The injected sources.
    snr_min : float
        Only measurements with ``snr >= snr_min`` count as recovered.
    image_kind : str or None
        Only rows of this ``image_kind`` (``"image"`` or ``"mosaic"``);
        None for all rows.

    Returns
    -------
    TruthComparison
        Per source: true and measured flux, fractional error, SNR, primary
        beam, and the fitted image peak's offset from the true position in
        units of the synthesized beam's major axis.
    """
    rows = []
    names = np.asarray(photometry["source_name"]).astype(str)
    for i, name in enumerate(sky.name):
        sel = np.flatnonzero(
            (names == name)
            & (np.asarray(photometry["flags"]) == 0)
            & (np.asarray(photometry["snr"]) >= snr_min)
            & (
                np.asarray(photometry["image_kind"]).astype(str) == image_kind
                if image_kind is not None
                else True
            )
        )
        if sel.size == 0:
            continue
        best = sel[np.argmax(np.asarray(photometry["pb"])[sel])]
        meas = photometry[best]
        true_flux = float(sky.flux_at(float(meas["freq_hz"]))[i])
        offset = _peak_offset_beams(
            Path(str(meas["image_path"])), sky.ra_deg[i], sky.dec_deg[i]
        )
        rows.append(
            (
                name,
                true_flux,
                float(meas["flux_jy"]),
                float(meas["flux_err_jy"]),
                float(meas["flux_jy"]) / true_flux - 1.0,
                float(meas["snr"]),
                float(meas["pb"]),
                offset,
                str(meas["image_path"]),
            )
        )
    cols = (
        "source_name",
        "true_flux_jy",
        "flux_jy",
        "flux_err_jy",
        "flux_error",
        "snr",
        "pb",
        "offset_beams",
        "image_path",
    )
    table = Table(rows=rows, names=cols) if rows else Table(names=cols)
    return TruthComparison(table, len(sky))


def _peak_offset_beams(image_path: Path, ra_deg: float, dec_deg: float) -> float:
    with fits.open(image_path) as hdul:
        header = hdul[0].header
        data = np.asarray(hdul[0].data, dtype=np.float64)
    image = data.reshape(data.shape[-2:])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(header).celestial
    fit_ra, fit_dec = fit_peak_position(
        image, wcs, np.atleast_1d(ra_deg), np.atleast_1d(dec_deg)
    )
    d_ra = ((fit_ra[0] - ra_deg + 180.0) % 360.0 - 180.0) * np.cos(np.deg2rad(dec_deg))
    offset_arcsec = 3600.0 * np.hypot(d_ra, fit_dec[0] - dec_deg)
    return float(offset_arcsec / (header["BMAJ"] * 3600.0))
