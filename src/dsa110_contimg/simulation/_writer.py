"""Write one simulated subband as a raw DSA-110 UVH5 file, quirks included."""

from __future__ import annotations

import warnings
from pathlib import Path

import h5py
import numpy as np
from numpy.typing import NDArray
from pyuvdata import Telescope, UVData

__all__ = ["write_subband_file"]


def write_subband_file(
    path: Path,
    *,
    telescope: Telescope,
    vis: NDArray[np.complex128],
    ant1: NDArray[np.int_],
    ant2: NDArray[np.int_],
    uvw_m: NDArray[np.float64],
    times_jd: NDArray[np.float64],
    freq_hz: NDArray[np.float64],
    integration_time_s: float,
    pointing_dec_rad: float,
    swapped: NDArray[np.bool_],
    legacy_header: bool = True,
) -> None:
    """Write a subband file the way the DSA-110 correlator does.

    Quirks reproduced (``DSA110.md``, Conversion pitfalls): descending
    frequencies with negative channel widths, float32 ``uvw_array``, some
    baselines stored as ant1 > ant2 (conjugated), an unprojected ("drift")
    phase type with the pointing declination in ``extra_keywords``.

    Parameters
    ----------
    path : Path
        Output file; written to a temporary name, then renamed.
    telescope : Telescope
        Array description.
    vis : ndarray, shape (n_time, n_bl, n_chan, 2)
        Visibilities (XX, YY) in the ant1 < ant2 orientation.
    ant1, ant2 : ndarray, shape (n_bl,)
        Antenna numbers with ant1 <= ant2.
    uvw_m : ndarray, shape (n_bl, 3)
        Baseline coordinates for the meridian fringe-stop centre.
    times_jd : ndarray, shape (n_time,)
        Integration mid-times.
    freq_hz : ndarray, shape (n_chan,)
        Channel centres (descending, as in the raw files).
    integration_time_s : float
        Integration time.
    pointing_dec_rad : float
        Pointing declination, written to ``extra_keywords.phase_center_dec``.
    swapped : ndarray of bool, shape (n_bl,)
        Baselines to store as ant1 > ant2.
    legacy_header : bool
        Rewrite the header in the pre-pyuvdata-3 layout the DSA-110 writer
        produces: ``phase_type = "drift"`` and no phase-centre catalogue, a
        spectral-window axis on the frequency and data arrays, and a scalar
        (negative) ``channel_width``.
    """
    n_time, n_bl, n_chan, n_pol = vis.shape
    data = vis.copy()
    data[:, swapped] = np.conj(data[:, swapped])
    a1 = np.where(swapped, ant2, ant1)
    a2 = np.where(swapped, ant1, ant2)
    uvw = np.where(swapped[:, None], -uvw_m, uvw_m)

    uv = UVData.new(
        freq_array=freq_hz,
        polarization_array=["xx", "yy"],
        times=np.repeat(times_jd, n_bl),
        antpairs=np.column_stack([np.tile(a1, n_time), np.tile(a2, n_time)]),
        do_blt_outer=False,
        telescope=telescope,
        integration_time=integration_time_s,
        channel_width=np.full(
            n_chan, abs(freq_hz[1] - freq_hz[0]) if n_chan > 1 else 11.71875e6
        ),
        data_array=data.reshape(n_time * n_bl, n_chan, n_pol).astype(np.complex64),
        flag_array=np.zeros((n_time * n_bl, n_chan, n_pol), dtype=bool),
        nsample_array=np.ones((n_time * n_bl, n_chan, n_pol), dtype=np.float32),
        phase_center_catalog={
            0: {
                "cat_name": "drift",
                "cat_type": "unprojected",
                "cat_lon": 0.0,
                "cat_lat": np.pi / 2,
                "cat_frame": "altaz",
            }
        },
        vis_units="uncalib",
        history="simulated by dsa110_contimg.simulation",
        check_kw={"check_extra": False, "run_check_acceptability": False},
    )
    uv.uvw_array = np.tile(uvw, (n_time, 1))
    uv.extra_keywords = {
        "phase_center_dec": float(pointing_dec_rad),
        "ha_phase_center": 0.0,
        "phase_center_epoch": "HADEC",
    }
    tmp = path.with_name(f".{path.name}.tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        uv.write_uvh5(str(tmp), clobber=True, run_check=False)
    # Raw-file quirks pyuvdata would not write itself.
    with h5py.File(tmp, "r+") as h5:
        header = h5["Header"]
        uvw_raw = header["uvw_array"][()].astype(np.float32)
        del header["uvw_array"]
        header.create_dataset("uvw_array", data=uvw_raw)
        widths = -np.abs(header["channel_width"][()])
        del header["channel_width"]
        header.create_dataset("channel_width", data=widths)
        if legacy_header:
            _to_legacy_layout(h5)
    tmp.replace(path)


_MODERN_ONLY = (
    "phase_center_catalog",
    "phase_center_app_ra",
    "phase_center_app_dec",
    "phase_center_frame_pa",
    "phase_center_id_array",
    "Nphase",
    "flex_spw_id_array",
    "blts_are_rectangular",
    "time_axis_faster_than_bls",
    "feed_angle",
    "feed_array",
    "Nfeeds",
    "mount_type",
    "telescope_frame",
)


def _to_legacy_layout(h5: h5py.File) -> None:
    """Rewrite a pyuvdata-3 UVH5 file in the older layout real DSA-110 files use."""
    header = h5["Header"]
    for key in _MODERN_ONLY:
        if key in header:
            del header[key]
    header["phase_type"] = np.bytes_("drift")
    freqs = header["freq_array"][()]
    del header["freq_array"]
    header["freq_array"] = freqs[None, :]
    width = float(np.atleast_1d(header["channel_width"][()])[0])
    del header["channel_width"]
    header["channel_width"] = width
    data = h5["Data"]
    for key in ("visdata", "flags", "nsamples"):
        values = data[key][()]
        del data[key]
        data.create_dataset(key, data=values[:, None, :, :])
