"""Random point-source skies for simulations."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from dsa110_contimg.data_ingestion.skymodel import SkyCatalog

__all__ = ["make_sky", "make_strip_sky"]


def make_sky(
    centers_ra_deg: NDArray[np.float64],
    center_dec_deg: float,
    *,
    n_sources_per_center: int,
    radius_deg: float,
    min_flux_jy: float,
    max_flux_jy: float,
    rng: np.random.Generator,
    min_separation_arcmin: float = 6.0,
    name_prefix: str = "SIM",
) -> SkyCatalog:
    """Draw point sources uniformly in discs around each centre.

    Fluxes are log-uniform in ``[min_flux_jy, max_flux_jy]`` at 1.4 GHz,
    spectral indices normal around -0.7. Sources closer than
    ``min_separation_arcmin`` to an earlier one are redrawn so that the truth
    is not confused by blends.

    Returns
    -------
    SkyCatalog
        Names ``SIM0000``... sorted by RA.
    """
    ra_list: list[float] = []
    dec_list: list[float] = []
    min_sep_deg = min_separation_arcmin / 60.0
    for ra_c in np.atleast_1d(centers_ra_deg):
        placed = 0
        tries = 0
        while placed < n_sources_per_center and tries < 1000 * n_sources_per_center:
            tries += 1
            r = radius_deg * np.sqrt(rng.uniform())
            phi = rng.uniform(0, 2 * np.pi)
            dec = center_dec_deg + r * np.sin(phi)
            ra = (ra_c + r * np.cos(phi) / np.cos(np.deg2rad(dec))) % 360.0
            if ra_list:
                dra = (np.asarray(ra_list) - ra + 180.0) % 360.0 - 180.0
                sep = np.hypot(
                    dra * np.cos(np.deg2rad(dec)), np.asarray(dec_list) - dec
                )
                if sep.min() < min_sep_deg:
                    continue
            ra_list.append(ra)
            dec_list.append(dec)
            placed += 1
    n = len(ra_list)
    log_flux = rng.uniform(np.log(min_flux_jy), np.log(max_flux_jy), n)
    order = np.argsort(ra_list)
    return SkyCatalog(
        name=np.array([f"{name_prefix}{i:04d}" for i in range(n)]),
        ra_deg=np.asarray(ra_list)[order],
        dec_deg=np.asarray(dec_list)[order],
        flux_jy=np.exp(log_flux)[order],
        spectral_index=rng.normal(-0.7, 0.2, n)[order],
        ref_freq_hz=np.full(n, 1.4e9),
    )


def make_strip_sky(
    centers_ra_deg: NDArray[np.float64],
    center_dec_deg: float,
    *,
    n_sources: int,
    half_width_deg: float,
    min_flux_jy: float,
    max_flux_jy: float,
    rng: np.random.Generator,
    min_separation_arcmin: float = 6.0,
    name_prefix: str = "SIM",
) -> SkyCatalog:
    """Draw point sources uniformly along the strip swept by a drift scan.

    Sources are uniform in RA from ``half_width_deg`` (on the sky) before the
    first centre to as far after the last (the RA 0/360 wrap is handled) and
    uniform in Dec within ``half_width_deg`` of the strip; fluxes and spectral
    indices as in `make_sky`. Sources closer than ``min_separation_arcmin``
    to an earlier one are redrawn.

    Returns
    -------
    SkyCatalog
        Names ``SIM0000``... in order of RA along the strip.
    """
    ras = np.unwrap(np.deg2rad(np.atleast_1d(centers_ra_deg)))
    pad = half_width_deg / np.cos(np.deg2rad(center_dec_deg))
    ra_lo = float(np.rad2deg(ras.min())) - pad
    ra_hi = float(np.rad2deg(ras.max())) + pad
    ra_list: list[float] = []
    dec_list: list[float] = []
    min_sep_deg = min_separation_arcmin / 60.0
    tries = 0
    while len(ra_list) < n_sources and tries < 1000 * max(1, n_sources):
        tries += 1
        ra = rng.uniform(ra_lo, ra_hi)
        dec = center_dec_deg + rng.uniform(-half_width_deg, half_width_deg)
        if ra_list:
            sep = np.hypot(
                (np.asarray(ra_list) - ra) * np.cos(np.deg2rad(dec)),
                np.asarray(dec_list) - dec,
            )
            if sep.min() < min_sep_deg:
                continue
        ra_list.append(ra)
        dec_list.append(dec)
    n = len(ra_list)
    log_flux = rng.uniform(np.log(min_flux_jy), np.log(max_flux_jy), n)
    order = np.argsort(ra_list)
    return SkyCatalog(
        name=np.array([f"{name_prefix}{i:04d}" for i in range(n)]),
        ra_deg=np.asarray(ra_list)[order] % 360.0,
        dec_deg=np.asarray(dec_list)[order],
        flux_jy=np.exp(log_flux)[order],
        spectral_index=rng.normal(-0.7, 0.2, n)[order],
        ref_freq_hz=np.full(n, 1.4e9),
    )
