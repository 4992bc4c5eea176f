"""Value types of forced photometry: the restoring beam, the flags, the results."""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from astropy.io import fits
from astropy.table import Table
from numpy.typing import NDArray

from dsa110_contimg.exceptions import InputDataError
from dsa110_contimg.tables import FORCED_MEASUREMENTS

__all__ = ["Beam", "PhotometryFlag", "ForcedPhotometryResult"]


@dataclass(frozen=True, slots=True)
class Beam:
    """An elliptical Gaussian restoring beam.

    Parameters
    ----------
    major_arcsec, minor_arcsec : float
        Full widths at half maximum of the major and minor axes, arcsec.
    pa_deg : float
        Position angle of the major axis, degrees east of north.

    Raises
    ------
    ValueError
        Non-finite or non-positive axes, or ``minor_arcsec > major_arcsec``.
    """

    major_arcsec: float
    minor_arcsec: float
    pa_deg: float

    def __post_init__(self) -> None:
        """Check the axes."""
        values = (self.major_arcsec, self.minor_arcsec, self.pa_deg)
        if not all(math.isfinite(v) for v in values):
            msg = f"beam parameters must be finite, got {values}"
            raise ValueError(msg)
        if not 0 < self.minor_arcsec <= self.major_arcsec:
            msg = (
                "beam axes must satisfy 0 < minor_arcsec <= major_arcsec, got "
                f"{self.major_arcsec} x {self.minor_arcsec}"
            )
            raise ValueError(msg)

    @classmethod
    def from_header(cls, header: fits.Header | Mapping[str, float]) -> Beam:
        """Read the restoring beam from FITS keywords BMAJ, BMIN, BPA (degrees).

        Parameters
        ----------
        header : astropy.io.fits.Header or mapping
            Image header.

        Returns
        -------
        Beam
            The restoring beam.

        Raises
        ------
        InputDataError
            A keyword is absent or not a number: the image carries no beam.
        """
        values = []
        for key in ("BMAJ", "BMIN", "BPA"):
            try:
                values.append(float(header[key]))
            except (KeyError, TypeError, ValueError) as err:
                msg = (
                    f"image header has no valid {key}; restored images must carry "
                    "BMAJ/BMIN/BPA (degrees) for forced photometry"
                )
                raise InputDataError(msg) from err
        return cls(values[0] * 3600.0, values[1] * 3600.0, values[2])


class PhotometryFlag(enum.IntFlag):
    """Bits of ``ForcedPhotometryResult.flags``."""

    EDGE = 1  #: position off the image, or its fitting box crosses the edge
    NAN = 2  #: the fitting box contains NaN pixels
    LOW_PB = 4  #: primary beam below ``min_pb`` (or unknown)
    BLENDED = 8  #: another catalogue source within 1.5 beam major axes
    #: forced flux below ``photometry.detection_sigma`` x its error: an upper
    #: limit (set by the photometry stage; the flux is still measured and usable)
    UPPER_LIMIT = 16


@dataclass(frozen=True, slots=True, eq=False)
class ForcedPhotometryResult:
    """Per-source results of :func:`measure_forced`; every field has shape (n,).

    Parameters
    ----------
    name : ndarray of str
        Source names.
    ra_deg, dec_deg : ndarray
        Catalogue positions, degrees.
    peak_jy : ndarray
        Image value at the nearest pixel, divided by ``pb``, Jy/beam.
    flux_jy : ndarray
        Matched-filter flux density of a point source, divided by ``pb``, Jy.
    flux_err_jy : ndarray
        One-sigma error of ``flux_jy``, Jy: the noise error and ``flux_sys_jy``
        added in quadrature.
    rms_jy : ndarray
        Local image rms, divided by ``pb``, Jy/beam.
    x_pix, y_pix : ndarray
        Zero-based pixel position of the catalogue position.
    pb : ndarray
        Primary-beam value used for the correction (1 if uncorrected).
    snr : ndarray
        ``flux_jy`` over its noise error (the detection significance; the
        systematic part is left out).
    flags : ndarray of int
        Bitmask of :class:`PhotometryFlag`.
    flux_sys_jy : ndarray
        Systematic part of ``flux_err_jy``, Jy: the image's measured fractional
        shape error times ``|flux_jy|`` (see :func:`measure_forced`).
    """

    name: NDArray[np.str_]
    ra_deg: NDArray[np.float64]
    dec_deg: NDArray[np.float64]
    peak_jy: NDArray[np.float64]
    flux_jy: NDArray[np.float64]
    flux_err_jy: NDArray[np.float64]
    rms_jy: NDArray[np.float64]
    x_pix: NDArray[np.float64]
    y_pix: NDArray[np.float64]
    pb: NDArray[np.float64]
    snr: NDArray[np.float64]
    flags: NDArray[np.int32]
    flux_sys_jy: NDArray[np.float64]

    def __len__(self) -> int:
        """Return the number of sources."""
        return int(self.name.size)

    def to_table(self) -> Table:
        """Return the results as an astropy Table (`FORCED_MEASUREMENTS` columns).

        The columns are the fields, in the photometry vocabulary: ``name``
        is the column ``source_name``; units as declared.
        """
        table = Table()
        for column in FORCED_MEASUREMENTS.columns:
            field = "name" if column.name == "source_name" else column.name
            table[column.name] = np.array(getattr(self, field))
            if column.unit:
                table[column.name].unit = column.unit
        return table
