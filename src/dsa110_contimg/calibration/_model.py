"""Model visibilities of calibrators seen through the drifting primary beam.

A calibrator drifts through the beam during a group, so its model must be the
catalogue flux times the beam at each integration and channel; a model at full
catalogue flux would put the beam into the gains and bias every calibrated flux
high (``DSA110.md``, Calibration).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.coordinates import EarthLocation
from numpy.typing import NDArray

from dsa110_contimg._optional import require
from dsa110_contimg.data_ingestion import _phasing
from dsa110_contimg.data_ingestion.skymodel import SkyCatalog
from dsa110_contimg.telescope import dsa110
from dsa110_contimg.telescope.beam_models import airy_beam, angular_separation_rad

__all__ = [
    "MsGeometry",
    "SourceTerms",
    "predict_model",
    "read_ms_geometry",
    "source_terms",
    "write_model_data",
]

log = logging.getLogger(__name__)

_C_M_S = 299_792_458.0
# MS (CASA) sign convention for V = sum S exp(sign * 2 pi i (ul + vm + w(n-1))/lambda),
# pinned by tests/integration/test_calibration.py against the simulator.
_MS_SIGN = 1.0


@dataclass(frozen=True, slots=True)
class MsGeometry:
    """Rows and axes of an MS needed to predict visibilities."""

    uvw_m: NDArray[np.float64]
    time_mjd_s: NDArray[np.float64]
    freq_hz: NDArray[np.float64]
    phase_center_ra_deg: float
    phase_center_dec_deg: float
    pointing_dec_rad: float


def read_ms_geometry(ms_path: Path) -> MsGeometry:
    """Read UVW, TIME, channel frequencies, phase centre and pointing of an MS."""
    tables = require("casacore.tables", "casa")
    with tables.table(str(ms_path), ack=False) as ms:
        uvw = ms.getcol("UVW")
        time_s = ms.getcol("TIME")
        kw = ms.getkeywords()
    with tables.table(f"{ms_path}/SPECTRAL_WINDOW", ack=False) as spw:
        freqs = np.asarray(spw.getcol("CHAN_FREQ"))[0]
    with tables.table(f"{ms_path}/FIELD", ack=False) as field:
        ra, dec = np.rad2deg(field.getcol("PHASE_DIR")[0, 0])
    pt_dec = float(kw.get("DSA110_PT_DEC_RAD", np.deg2rad(dec)))
    return MsGeometry(uvw, time_s, freqs, float(ra % 360), float(dec), pt_dec)


@dataclass(frozen=True, slots=True)
class SourceTerms:
    """What the model of each source needs, per row and per integration.

    ``path_m`` (row, source) is the geometric path difference of the phase
    (metres, times frequency over c gives turns); ``amplitude`` (time,
    channel, source) the spectrum times the drift-scan beam; ``time_index``
    (row,) each row's integration; ``freq_hz`` (channel,); ``sign`` the MS
    phase convention (the model is ``amplitude * exp(sign 2 pi i path f / c)``).
    """

    path_m: NDArray[np.float64]
    amplitude: NDArray[np.float64]
    time_index: NDArray[np.intp]
    freq_hz: NDArray[np.float64]
    sign: float = _MS_SIGN


def source_terms(
    geometry: MsGeometry, sources: SkyCatalog, *, apply_beam: bool = True
) -> SourceTerms:
    """Return the per-source terms of `predict_model` (see `SourceTerms`)."""
    ra0, dec0 = np.deg2rad(
        [geometry.phase_center_ra_deg, geometry.phase_center_dec_deg]
    )
    location = EarthLocation.from_geodetic(
        dsa110.ARRAY_LON_DEG * u.deg,
        dsa110.ARRAY_LAT_DEG * u.deg,
        dsa110.ARRAY_HEIGHT_M * u.m,
    )
    times_s, inverse = np.unique(geometry.time_mjd_s, return_inverse=True)
    times_jd = times_s / 86400.0 + 2400000.5
    track_ra, track_dec = _phasing.meridian_icrs_deg(
        geometry.pointing_dec_rad, times_jd, location
    )
    freqs = geometry.freq_hz
    n_src = len(sources)
    ra = np.deg2rad(sources.ra_deg)
    dec = np.deg2rad(sources.dec_deg)
    dra = ra - ra0
    ll = np.cos(dec) * np.sin(dra)
    mm = np.sin(dec) * np.cos(dec0) - np.cos(dec) * np.sin(dec0) * np.cos(dra)
    nn = np.sin(dec) * np.sin(dec0) + np.cos(dec) * np.cos(dec0) * np.cos(dra)
    uvw = geometry.uvw_m
    path_m = (
        uvw[:, 0:1] * ll + uvw[:, 1:2] * mm + uvw[:, 2:3] * (nn - 1.0)
    )  # (row, src)
    # amplitude per (time, channel, source): spectrum times the drift-scan beam
    spectrum = (
        sources.flux_jy[None, :]
        * (freqs[:, None] / sources.ref_freq_hz[None, :])
        ** sources.spectral_index[None, :]
    )  # (chan, src)
    amp = np.broadcast_to(spectrum[None], (times_s.size, freqs.size, n_src))
    if apply_beam:
        sep = angular_separation_rad(
            np.deg2rad(track_ra)[:, None], np.deg2rad(track_dec)[:, None], ra, dec
        )  # (time, src)
        amp = amp * airy_beam(sep[:, None, :], freqs[None, :, None])
    return SourceTerms(path_m, np.asarray(amp), inverse.ravel(), freqs)


def predict_model(
    geometry: MsGeometry, sources: SkyCatalog, *, apply_beam: bool = True
) -> NDArray[np.complex64]:
    """Predict model visibilities (rows, channels) for point sources.

    Parameters
    ----------
    geometry : MsGeometry
        From `read_ms_geometry`.
    sources : SkyCatalog
        Point sources (ICRS) with spectra.
    apply_beam : bool
        Attenuate each source by the Airy beam at its offset from the
        meridian pointing, per integration and channel.

    Returns
    -------
    ndarray, shape (n_row, n_chan)
        Stokes-I model, the same for XX and YY.
    """
    terms = source_terms(geometry, sources, apply_beam=apply_beam)
    path_m, amp, inverse, freqs = (
        terms.path_m,
        terms.amplitude,
        terms.time_index,
        terms.freq_hz,
    )
    model = np.zeros((path_m.shape[0], freqs.size), np.complex128)
    uniform = freqs.size < 2 or np.allclose(np.diff(freqs), freqs[1] - freqs[0])
    # Channels by a phasor recurrence (exact for uniform spacing): one complex
    # multiply per visibility and source instead of one exponential.
    phasor = np.exp(_MS_SIGN * 2j * np.pi * path_m * (freqs[0] / _C_M_S))
    step = (
        np.exp(_MS_SIGN * 2j * np.pi * path_m * ((freqs[1] - freqs[0]) / _C_M_S))
        if freqs.size > 1
        else None
    )
    for k in range(freqs.size):
        if not uniform:
            phasor = np.exp(_MS_SIGN * 2j * np.pi * path_m * (freqs[k] / _C_M_S))
        model[:, k] = np.einsum("rs,rs->r", phasor, amp[inverse, k, :])
        if uniform and step is not None and k + 1 < freqs.size:
            phasor *= step
    return model.astype(np.complex64)


def write_model_data(
    ms_path: Path, sources: SkyCatalog, *, apply_beam: bool = True
) -> None:
    """Write MODEL_DATA (created if absent) with the predicted calibrator model."""
    tables = require("casacore.tables", "casa")
    geometry = read_ms_geometry(ms_path)
    model = predict_model(geometry, sources, apply_beam=apply_beam)
    with tables.table(str(ms_path), readonly=False, ack=False) as ms:
        n_corr = ms.getcell("DATA", 0).shape[1]
        if "MODEL_DATA" not in ms.colnames():
            desc = tables.makearrcoldesc(
                "MODEL_DATA",
                0j,
                valuetype="complex",
                ndim=2,
                datamanagertype="TiledColumnStMan",
            )
            ms.addcols(tables.maketabdesc(desc))
        ms.putcol("MODEL_DATA", np.repeat(model[:, :, None], n_corr, axis=2))
    log.info("model written", extra={"ms": str(ms_path), "n_sources": len(sources)})
