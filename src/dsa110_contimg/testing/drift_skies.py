"""Known-truth skies placed relative to simulated drift-scan groups."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
from astropy.time import Time
from numpy.typing import NDArray

from dsa110_contimg.data_ingestion.skymodel import SkyCatalog
from dsa110_contimg.mosaic import DriftTrack
from dsa110_contimg.telescope import dsa110

__all__ = ["group_centers_deg", "ring_sky", "catalog_from_rows"]


def group_centers_deg(
    start_time: datetime,
    *,
    n_groups: int,
    n_times: int,
    declination_deg: float,
    integration_spacing_s: float | None = None,
) -> NDArray[np.float64]:
    """Return the meridian RA (deg) at the middle of each simulated group.

    The arguments mirror `dsa110_contimg.simulation.ObservationSpec`; the
    result equals ``SimulatedGroup.meridian_ra_deg`` of the groups the
    simulator writes, so a sky can be placed before simulating.
    """
    step_s = integration_spacing_s or dsa110.INTEGRATION_TIME_S
    t0_mjd = Time(start_time.astimezone(UTC)).mjd
    centers = []
    for g in range(n_groups):
        track = DriftTrack(
            declination_deg,
            t0_mjd + (g * n_times + 0.5) * step_s / 86400.0,
            step_s,
            n_times,
            1.4e9,
            1.4e9,
        )
        centers.append(float(np.median(track.beam_centres_deg()[0])))
    return np.asarray(centers)


def catalog_from_rows(
    rows: Sequence[tuple[float, float, float]], *, name_prefix: str = "SRC"
) -> SkyCatalog:
    """Return a catalogue of ``(ra_deg, dec_deg, flux_jy)`` rows (alpha = -0.7)."""
    array = np.asarray(rows, dtype=np.float64).reshape(-1, 3)
    n = array.shape[0]
    return SkyCatalog(
        name=np.array([f"{name_prefix}{i:04d}" for i in range(n)]),
        ra_deg=array[:, 0] % 360.0,
        dec_deg=array[:, 1],
        flux_jy=array[:, 2],
        spectral_index=np.full(n, -0.7),
        ref_freq_hz=np.full(n, 1.4e9),
    )


def ring_sky(
    center_ra_deg: float,
    center_dec_deg: float,
    *,
    radii_deg: Sequence[float],
    flux_jy: Sequence[float],
    first_angle_deg: float = 20.0,
    name_prefix: str = "SRC",
) -> SkyCatalog:
    """Return point sources at given distances from a centre, spread in angle.

    Source ``k`` is at ``radii_deg[k]`` from the centre at position angle
    ``first_angle_deg + 137.5 k`` degrees (golden-angle steps, so no two
    sources line up), with flux ``flux_jy[k]`` at 1.4 GHz.
    """
    if len(radii_deg) != len(flux_jy):
        msg = "radii_deg and flux_jy must have the same length"
        raise ValueError(msg)
    rows = []
    for k, (radius, flux) in enumerate(zip(radii_deg, flux_jy, strict=True)):
        angle = np.deg2rad(first_angle_deg + 137.5 * k)
        dec = center_dec_deg + radius * np.cos(angle)
        ra = center_ra_deg + radius * np.sin(angle) / np.cos(np.deg2rad(dec))
        rows.append((ra, dec, flux))
    return catalog_from_rows(rows, name_prefix=name_prefix)
