r"""Multi-epoch light curves of a simulated source population, with known truth.

A stable population, optionally with injected variables (red-noise AGN,
flares) and extreme scattering events (ESEs), is "observed" at a regular
cadence. Each epoch multiplies every flux by a common gain-scale error and
adds thermal noise. The output has the columns of the photometry table
(`~dsa110_contimg.tables.PHOTOMETRY_COLUMNS`) plus
``epoch_id``; no images are made.

ESE shapes (:func:`~dsa110_contimg.simulation.ese_profile`, in
``_ese_profiles``) are not the detector's templates: by default half are
plasma-lens dips flanked by brightenings and half flat-bottomed dips without
flanks; ``ese_shapes`` adds Gaussian, asymmetric (skewed) and caustic-flanked
dips, each with its own independently drawn parameters, and
:func:`simulate_ese_grid` dips one realisation to several depths so that
completeness can be compared at fixed duration.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from astropy.table import Table
from numpy.typing import NDArray

from dsa110_contimg.simulation._ese_profiles import ese_profile

__all__ = [
    "SimulatedLightcurves",
    "simulate_lightcurves",
    "simulate_ese_grid",
]

_FREQ_HZ = 1.405e9
_KINDS = ("stable", "ese", "red_noise", "flare")


@dataclass(frozen=True, slots=True, eq=False)
class SimulatedLightcurves:
    """Simulated measurements with their truth.

    Parameters
    ----------
    measurements : astropy.table.Table
        One row per source and epoch: the photometry-table columns plus
        ``epoch_id``, sorted by epoch then source.
    truth : astropy.table.Table
        One row per source: ``source_name, kind`` (stable, ese, red_noise,
        flare), ``mean_flux_jy, rms_jy, snr`` and the parameters of its
        variability (``ese_depth, ese_duration_days, ese_center_mjd,
        ese_shape, drw_tau_days, drw_sigma_frac, powerlaw_slope,
        flare_amplitude_frac, flare_peak_mjd, flare_decay_days``; NaN or empty
        when unused; red-noise sources have either ``drw_tau_days`` or
        ``powerlaw_slope``).
    epochs : astropy.table.Table
        One row per epoch: ``epoch_id, mjd, gain_scale`` (the injected
        multiplicative flux-scale error).
    """

    measurements: Table
    truth: Table
    epochs: Table

    def epoch_tables(self) -> Iterator[tuple[str, Table]]:
        """Yield ``(epoch_id, measurements of that epoch)`` in time order."""
        ids = np.asarray(self.measurements["epoch_id"])
        bounds = np.flatnonzero(ids[1:] != ids[:-1]) + 1
        starts = np.concatenate([[0], bounds])
        stops = np.concatenate([bounds, [ids.size]])
        for start, stop in zip(starts, stops, strict=True):
            yield str(ids[start]), self.measurements[start:stop]


def _drw(
    n_src: int,
    time_mjd: NDArray,
    tau_days: NDArray,
    sigma: NDArray,
    rng: np.random.Generator,
) -> NDArray[np.float64]:
    """Return damped-random-walk (Ornstein-Uhlenbeck) series, shape (n_src, n_t)."""
    out = np.empty((n_src, time_mjd.size))
    out[:, 0] = sigma * rng.standard_normal(n_src)
    for k in range(1, time_mjd.size):
        phi = np.exp(-(time_mjd[k] - time_mjd[k - 1]) / tau_days)
        noise = sigma * np.sqrt(1.0 - phi * phi) * rng.standard_normal(n_src)
        out[:, k] = phi * out[:, k - 1] + noise
    return out


def _power_law(
    rng: np.random.Generator, n: int, flux_range_jy: tuple[float, float], slope: float
) -> NDArray[np.float64]:
    """Draw fluxes with N(>S) proportional to S**slope (slope 0: log-uniform)."""
    lo, hi = flux_range_jy
    u = rng.uniform(size=n)
    if slope == 0:
        return lo * (hi / lo) ** u
    return (lo**slope + u * (hi**slope - lo**slope)) ** (1.0 / slope)


def _names(ra_deg: NDArray, dec_deg: NDArray) -> NDArray[np.str_]:
    ra_h = ra_deg / 15.0
    hh = np.floor(ra_h)
    mm = np.floor((ra_h - hh) * 60.0)
    ss = ((ra_h - hh) * 60.0 - mm) * 60.0
    sign = np.where(dec_deg < 0, "-", "+")
    dd = np.floor(np.abs(dec_deg))
    dm = np.floor((np.abs(dec_deg) - dd) * 60.0)
    ds = ((np.abs(dec_deg) - dd) * 60.0 - dm) * 60.0
    return np.array(
        [
            f"J{int(h):02d}{int(m):02d}{s:05.2f}{g}{int(d):02d}{int(a):02d}{b:04.1f}"
            for h, m, s, g, d, a, b in zip(hh, mm, ss, sign, dd, dm, ds, strict=True)
        ]
    )


def simulate_lightcurves(
    *,
    n_stable: int,
    n_ese: int = 0,
    n_red_noise: int = 0,
    n_flares: int = 0,
    n_epochs: int = 365,
    cadence_days: float = 1.0,
    start_mjd: float = 60000.0,
    gain_error_frac: float = 0.05,
    rms_jy: float = 1e-3,
    flux_range_jy: tuple[float, float] = (0.01, 2.0),
    variable_flux_range_jy: tuple[float, float] | None = None,
    variable_flux_slope: float = -1.5,
    ese_depths: Sequence[float] = (0.2, 0.3, 0.4, 0.5, 0.6),
    ese_durations_days: Sequence[float] = (14.0, 21.0, 30.0, 60.0, 90.0),
    ese_lens_fraction: float = 0.5,
    ese_shapes: Sequence[str] | None = None,
    drw_tau_range_days: tuple[float, float] = (30.0, 300.0),
    drw_sigma_range_frac: tuple[float, float] = (0.05, 0.3),
    red_noise_powerlaw_frac: float = 0.0,
    powerlaw_slope_range: tuple[float, float] = (1.5, 3.0),
    powerlaw_break: bool = False,
    systematic_frac: float = 0.0,
    missing_frac: float = 0.0,
    rng: np.random.Generator | None = None,
) -> SimulatedLightcurves:
    """Simulate light curves of steady sources, variables and ESEs.

    Parameters
    ----------
    n_stable, n_ese, n_red_noise, n_flares : int
        Sources of each kind.
    n_epochs : int
        Epochs observed.
    cadence_days : float
        Time between epochs, days.
    start_mjd : float
        Time of the first epoch, MJD.
    gain_error_frac : float
        Rms of the per-epoch multiplicative flux-scale error (fraction).
    rms_jy : float
        Thermal noise at the beam centre, Jy; each source gets
        ``rms_jy / pb`` with its primary-beam value pb drawn from 0.5 to 1.
    flux_range_jy : (float, float)
        Range of mean flux densities, Jy, drawn with N(>S) ~ S^-1.5.
    variable_flux_range_jy : (float, float), optional
        Range for ESE, red-noise and flare sources; default ``flux_range_jy``.
    variable_flux_slope : float
        Their N(>S) ~ S^slope; 0 draws them log-uniformly.
    ese_depths, ese_durations_days : sequence of float
        Each ESE draws its depth (fraction) and duration (FWHM, days) from these.
    ese_lens_fraction : float
        Fraction of ESEs with the lens shape (the rest are flat-bottomed dips).
    ese_shapes : sequence of str, optional
        If given, each ESE draws its shape uniformly from these (see
        :func:`ese_profile`) instead of by ``ese_lens_fraction``; the shape
        parameters (source size, taper, skew of either sign 0.2-0.6, caustic
        height 0.2-0.5 and width) are drawn independently per event.
    drw_tau_range_days, drw_sigma_range_frac : (float, float)
        Ranges (log-uniform) of the damped random walk's timescale, days, and
        rms in log flux (fraction) for red-noise sources.
    red_noise_powerlaw_frac : float
        Fraction of red-noise sources whose log flux has a power-law power
        spectrum ``P(f) ~ f^-slope`` instead of a damped random walk (the
        detector's red-noise model), generated as Timmer & Koenig (1995); their
        rms is drawn from ``drw_sigma_range_frac``.
    powerlaw_slope_range : (float, float)
        Range (uniform) of the power-law slopes.
    powerlaw_break : bool
        Give each power-law source a timescale tau drawn like the DRW's: its
        spectrum is ``1 / (1 + (2 pi f tau)^slope)``, flat below ``1/(2 pi
        tau)`` (stored as ``drw_tau_days``).
    systematic_frac : float
        Rms of an extra multiplicative scatter per measurement (fraction),
        not included in ``flux_err_jy`` (the analysis' systematic floor).
    missing_frac : float
        Fraction of measurements left out at random (gaps).
    rng : numpy.random.Generator, optional
        Random generator; default an unseeded one.

    Returns
    -------
    SimulatedLightcurves
        Measurements, per-source truth and per-epoch gain errors.
    """
    rng = np.random.default_rng() if rng is None else rng
    counts = (n_stable, n_ese, n_red_noise, n_flares)
    kind = np.repeat(np.array(_KINDS), counts)
    n_src = kind.size
    time_mjd = start_mjd + cadence_days * np.arange(n_epochs)
    var_range = variable_flux_range_jy or flux_range_jy
    mean_flux = np.where(
        kind == "stable",
        _power_law(rng, n_src, flux_range_jy, -1.5),
        _power_law(rng, n_src, var_range, variable_flux_slope),
    )
    pb = rng.uniform(0.5, 1.0, n_src)
    rms = rms_jy / pb
    ra = rng.uniform(0.0, 360.0, n_src)
    dec = rng.uniform(35.5, 38.5, n_src)
    truth = _truth_table(_names(ra, dec), kind, mean_flux, rms)
    intrinsic = np.repeat(mean_flux[:, None], n_epochs, axis=1)
    _inject_eses(
        intrinsic,
        truth,
        time_mjd,
        rng,
        ese_depths,
        ese_durations_days,
        ese_lens_fraction,
        ese_shapes,
    )
    _inject_red_noise(
        intrinsic, truth, time_mjd, rng, drw_tau_range_days, drw_sigma_range_frac
    )
    _use_powerlaw_noise(
        intrinsic,
        truth,
        rng,
        red_noise_powerlaw_frac,
        powerlaw_slope_range,
        cadence_days if powerlaw_break else None,
    )
    _inject_flares(intrinsic, truth, time_mjd, rng)
    gain = np.clip(1.0 + gain_error_frac * rng.standard_normal(n_epochs), 0.5, 1.5)
    scatter = (
        1.0 + systematic_frac * rng.standard_normal(intrinsic.shape)
        if systematic_frac > 0
        else 1.0
    )
    measured = intrinsic * gain[None, :] * scatter + rms[:, None] * rng.standard_normal(
        intrinsic.shape
    )
    keep = rng.uniform(size=measured.shape) >= missing_frac
    epoch_ids = np.array([f"sim-{k:05d}" for k in range(n_epochs)])
    measurements = _measurement_table(
        truth, ra, dec, pb, measured, time_mjd, epoch_ids, keep, rng
    )
    epochs = Table({"epoch_id": epoch_ids, "mjd": time_mjd, "gain_scale": gain})
    return SimulatedLightcurves(measurements, truth, epochs)


def _truth_table(
    names: NDArray, kind: NDArray, mean_flux: NDArray, rms: NDArray
) -> Table:
    n = names.size
    nan = np.full(n, np.nan)
    return Table(
        {
            "source_name": names,
            "kind": kind,
            "mean_flux_jy": mean_flux,
            "rms_jy": rms,
            "snr": mean_flux / rms,
            "ese_depth": nan.copy(),
            "ese_duration_days": nan.copy(),
            "ese_center_mjd": nan.copy(),
            "ese_shape": np.full(n, "", dtype="<U10"),
            "drw_tau_days": nan.copy(),
            "drw_sigma_frac": nan.copy(),
            "powerlaw_slope": nan.copy(),
            "flare_amplitude_frac": nan.copy(),
            "flare_peak_mjd": nan.copy(),
            "flare_decay_days": nan.copy(),
        }
    )


def _inject_eses(
    intrinsic: NDArray,
    truth: Table,
    time_mjd: NDArray,
    rng: np.random.Generator,
    depths: Sequence[float],
    durations: Sequence[float],
    lens_fraction: float,
    shapes: Sequence[str] | None = None,
) -> None:
    for i in np.flatnonzero(truth["kind"] == "ese"):
        depth = float(rng.choice(depths))
        duration = float(rng.choice(durations))
        lo, hi = time_mjd[0] + 0.5 * duration, time_mjd[-1] - 0.5 * duration
        center = float(rng.uniform(lo, hi)) if hi > lo else float(np.mean(time_mjd))
        if shapes:
            shape = str(shapes[int(rng.integers(len(shapes)))])
        else:
            shape = "lens" if rng.uniform() < lens_fraction else "box"
        intrinsic[i] *= ese_profile(
            time_mjd,
            center_mjd=center,
            duration_days=duration,
            depth=depth,
            shape=shape,
            source_size=float(rng.uniform(0.5, 1.0)),
            taper_frac=float(rng.uniform(0.2, 0.6)),
            skew=float(rng.choice([-1.0, 1.0]) * rng.uniform(0.2, 0.6)),
            caustic_height=float(rng.uniform(0.2, 0.5)),
            caustic_width_frac=float(rng.uniform(0.03, 0.08)),
        )
        truth["ese_depth"][i] = depth
        truth["ese_duration_days"][i] = duration
        truth["ese_center_mjd"][i] = center
        truth["ese_shape"][i] = shape


def _inject_red_noise(
    intrinsic: NDArray,
    truth: Table,
    time_mjd: NDArray,
    rng: np.random.Generator,
    tau_range: tuple[float, float],
    sigma_range: tuple[float, float],
) -> None:
    rows = np.flatnonzero(truth["kind"] == "red_noise")
    if not rows.size:
        return
    tau = np.exp(rng.uniform(*np.log(tau_range), rows.size))
    sigma = np.exp(rng.uniform(*np.log(sigma_range), rows.size))
    walk = _drw(rows.size, time_mjd, tau, sigma, rng)
    intrinsic[rows] *= np.exp(walk - 0.5 * sigma[:, None] ** 2)
    truth["drw_tau_days"][rows] = tau
    truth["drw_sigma_frac"][rows] = sigma


def _use_powerlaw_noise(
    intrinsic: NDArray,
    truth: Table,
    rng: np.random.Generator,
    fraction: float,
    slope_range: tuple[float, float],
    cadence_days: float | None = None,
) -> None:
    """Replace the DRW of a fraction of red-noise sources by power-law noise.

    With ``cadence_days`` the spectrum bends to flat below ``1/(2 pi tau)``
    (tau the source's DRW timescale, kept in the truth); otherwise it is a
    pure power law and ``drw_tau_days`` is set to NaN.
    """
    rows = np.flatnonzero(truth["kind"] == "red_noise")
    rows = rows[rng.uniform(size=rows.size) < fraction]
    if not rows.size:
        return
    n_t = intrinsic.shape[1]
    slope = rng.uniform(*slope_range, rows.size)
    sigma = np.asarray(truth["drw_sigma_frac"])[rows]
    n_long = 8 * n_t  # simulate longer and cut, so the series is not periodic
    freq = np.fft.rfftfreq(n_long)[1:]
    if cadence_days is None:
        amp = freq[None, :] ** (-slope[:, None] / 2.0)
    else:
        tau = np.asarray(truth["drw_tau_days"])[rows][:, None] / cadence_days
        amp = (1.0 + (2 * np.pi * freq[None, :] * tau) ** slope[:, None]) ** -0.5
    spectrum = amp * (
        rng.standard_normal(amp.shape) + 1j * rng.standard_normal(amp.shape)
    )
    spectrum = np.concatenate([np.zeros((rows.size, 1)), spectrum], axis=1)
    series = np.fft.irfft(spectrum, n=n_long, axis=1)[:, :n_t]
    series -= series.mean(axis=1, keepdims=True)
    series *= (sigma / series.std(axis=1))[:, None]
    mean = np.asarray(truth["mean_flux_jy"])[rows]
    intrinsic[rows] = mean[:, None] * np.exp(series - 0.5 * sigma[:, None] ** 2)
    if cadence_days is None:
        truth["drw_tau_days"][rows] = np.nan
    truth["powerlaw_slope"][rows] = slope


def _inject_flares(
    intrinsic: NDArray, truth: Table, time_mjd: NDArray, rng: np.random.Generator
) -> None:
    rows = np.flatnonzero(truth["kind"] == "flare")
    if not rows.size:
        return
    amplitude = rng.uniform(0.5, 3.0, rows.size)
    peak = rng.uniform(time_mjd[0], time_mjd[-1], rows.size)
    rise = rng.uniform(1.0, 5.0, rows.size)
    decay = rng.uniform(5.0, 30.0, rows.size)
    dt = time_mjd[None, :] - peak[:, None]
    shape = np.where(
        dt < 0, np.exp(-0.5 * (dt / rise[:, None]) ** 2), np.exp(-dt / decay[:, None])
    )
    intrinsic[rows] *= 1.0 + amplitude[:, None] * shape
    truth["flare_amplitude_frac"][rows] = amplitude
    truth["flare_peak_mjd"][rows] = peak
    truth["flare_decay_days"][rows] = decay


def _measurement_table(
    truth: Table,
    ra: NDArray,
    dec: NDArray,
    pb: NDArray,
    measured: NDArray,
    time_mjd: NDArray,
    epoch_ids: NDArray,
    keep: NDArray,
    rng: np.random.Generator,
) -> Table:
    n_src, n_epochs = measured.shape
    # Epoch-major order: all sources of epoch 0, then epoch 1, ...
    src = np.tile(np.arange(n_src), n_epochs)
    epoch = np.repeat(np.arange(n_epochs), n_src)
    mask = keep.T.ravel()
    src, epoch = src[mask], epoch[mask]
    flux = measured.T.ravel()[mask]
    rms = np.asarray(truth["rms_jy"])[src]
    # Peak pixel values are biased low by sub-pixel offsets (up to ~3%).
    peak = flux * rng.uniform(0.97, 1.0, flux.size) + 0.3 * rms * rng.standard_normal(
        flux.size
    )
    return Table(
        {
            "source_name": np.asarray(truth["source_name"])[src],
            "ra_deg": ra[src],
            "dec_deg": dec[src],
            "flux_jy": flux,
            "flux_err_jy": rms,
            "peak_jy": peak,
            "rms_jy": rms,
            "snr": flux / rms,
            "pb": pb[src],
            "flags": np.zeros(flux.size, dtype=np.int32),
            "mjd": time_mjd[epoch],
            "freq_hz": np.full(flux.size, _FREQ_HZ),
            "image_kind": np.full(flux.size, "mosaic"),
            "image_path": np.char.add("sim/mosaic_", epoch_ids[epoch]),
            "flux_sys_jy": np.zeros(flux.size),
            "epoch_id": epoch_ids[epoch],
        }
    )


def simulate_ese_grid(
    *,
    shapes: Sequence[str] = ("gaussian", "box", "asymmetric", "caustic"),
    depths: Sequence[float] = (0.3, 0.5, 0.7),
    durations_days: Sequence[float] = (14.0, 42.0, 120.0),
    n_repeats: int = 4,
    n_epochs: int = 365,
    cadence_days: float = 1.0,
    start_mjd: float = 60000.0,
    snr_range: tuple[float, float] = (100.0, 1000.0),
    missing_frac: float = 0.1,
    systematic_frac: float = 0.005,
    rng: np.random.Generator | None = None,
) -> tuple[Table, Table]:
    """Simulate ESE light curves on a grid of shape, depth and duration.

    Each (shape, duration, repeat) has one realisation (mean flux, SNR,
    centre, gaps, noise, shape parameters), dipped to every depth, so that
    depths are compared on the same light curve. Shape parameters are drawn
    independently per realisation as in :func:`simulate_lightcurves`.

    Parameters
    ----------
    shapes : sequence of str
        Dip shapes (see :func:`ese_profile`).
    depths : sequence of float
        Fractional depths.
    durations_days : sequence of float
        Durations (full width at half depth), days.
    n_repeats : int
        Realisations per shape and duration.
    n_epochs : int
        Epochs per light curve.
    cadence_days : float
        Time between epochs, days.
    start_mjd : float
        First epoch, MJD.
    snr_range : (float, float)
        Range (uniform) of the mean flux over the thermal noise.
    missing_frac : float
        Fraction of epochs left out at random.
    systematic_frac : float
        Rms of a multiplicative scatter per measurement, not in the errors.
    rng : numpy.random.Generator, optional
        Random generator; default an unseeded one.

    Returns
    -------
    measurements : astropy.table.Table
        ``source_name, mjd, flux_jy, flux_err_jy`` (thermal error only).
    truth : astropy.table.Table
        One row per light curve: ``source_name, ese_shape, ese_depth,
        ese_duration_days, ese_center_mjd, repeat, mean_flux_jy, snr``.
    """
    rng = np.random.default_rng() if rng is None else rng
    t = start_mjd + cadence_days * np.arange(n_epochs)
    parts: dict[str, list] = {k: [] for k in ("source_name", "mjd", "flux", "err")}
    truth: dict[str, list] = {
        k: []
        for k in (
            "source_name",
            "ese_shape",
            "ese_depth",
            "ese_duration_days",
            "ese_center_mjd",
            "repeat",
            "mean_flux_jy",
            "snr",
        )
    }
    for shape in shapes:
        for duration in durations_days:
            for rep in range(n_repeats):
                flux = float(rng.uniform(0.05, 2.0))
                snr = float(rng.uniform(*snr_range))
                lo, hi = t[0] + duration, t[-1] - duration
                center = float(rng.uniform(lo, hi)) if hi > lo else float(t.mean())
                keep = rng.uniform(size=t.size) >= missing_frac
                noise = rng.standard_normal(t.size) * flux / snr
                scatter = 1.0 + systematic_frac * rng.standard_normal(t.size)
                params = {
                    "source_size": float(rng.uniform(0.5, 1.0)),
                    "taper_frac": float(rng.uniform(0.2, 0.6)),
                    "skew": float(rng.choice([-1.0, 1.0]) * rng.uniform(0.2, 0.6)),
                    "caustic_height": float(rng.uniform(0.2, 0.5)),
                    "caustic_width_frac": float(rng.uniform(0.03, 0.08)),
                }
                for depth in depths:
                    gain = ese_profile(
                        t,
                        center_mjd=center,
                        duration_days=duration,
                        depth=depth,
                        shape=shape,
                        **params,
                    )
                    name = f"{shape}-{duration:05.1f}d-{depth:.2f}-{rep:04d}"
                    parts["source_name"].append(np.full(int(keep.sum()), name))
                    parts["mjd"].append(t[keep])
                    parts["flux"].append((flux * gain * scatter + noise)[keep])
                    parts["err"].append(np.full(int(keep.sum()), flux / snr))
                    for key, value in zip(
                        truth,
                        (name, shape, depth, duration, center, rep, flux, snr),
                        strict=True,
                    ):
                        truth[key].append(value)
    measurements = Table(
        {
            "source_name": np.concatenate(parts["source_name"]),
            "mjd": np.concatenate(parts["mjd"]),
            "flux_jy": np.concatenate(parts["flux"]),
            "flux_err_jy": np.concatenate(parts["err"]),
        }
    )
    return measurements, Table(truth)
