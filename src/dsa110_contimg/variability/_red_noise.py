r"""Likelihoods of red-noise light curves: DRW and CAR(2) Kalman filters.

Both are continuous-time autoregressive processes observed with known
measurement errors on a regular grid with gaps. The Kalman filter gives the
exact Gaussian likelihood; the mean ``mu * x(t)`` is profiled out by running
the filter on the data and on ``x`` with the same gains (generalized least
squares). References: Kelly, Bechtold & Siemiginowska 2009
(https://doi.org/10.1088/0004-637X/698/1/895) for the damped random walk,
Kelly et al. 2014 (https://doi.org/10.1088/0004-637X/788/1/33) for CARMA
processes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

__all__ = ["red_noise_m2ll", "windowed_red_noise_m2ll"]

_DRW_N_TAU = 12
_DRW_N_SIGMA = 16


def _kalman_m2ll(
    y: NDArray,
    e2: NDArray,
    dt_days: NDArray,
    tau: NDArray,
    sigma: NDArray,
    regressor: NDArray | None = None,
    active: NDArray | None = None,
) -> NDArray[np.float64]:
    """Return -2 ln L of mu * x + DRW, mu profiled; tau, sigma shape (n_src, n_grid).

    Where ``active`` (n_src, n_t) is False the DRW is switched off (state and
    variance zero); it restarts from its stationary distribution at the first
    active bin of each stretch.
    """
    n_src, n_t = y.shape
    x = np.ones_like(y) if regressor is None else regressor
    var = sigma * sigma
    on = None if active is None else np.asarray(active, dtype=bool)
    p = var.copy() if on is None else var * on[:, :1]
    zy = np.zeros_like(var)
    z1 = np.zeros_like(var)
    s_yy, s_1y, s_11, s_log = (np.zeros_like(var) for _ in range(4))
    for k in range(n_t):
        if k:
            phi = np.exp(-dt_days[k - 1] / tau)
            zy, z1 = phi * zy, phi * z1
            p = phi * phi * p + var * (1.0 - phi * phi)
        if on is not None:
            now = on[:, k, None]
            start = now & ~on[:, k - 1, None] if k else now
            zy, z1 = np.where(now, zy, 0.0), np.where(now, z1, 0.0)
            p = np.where(start, var, np.where(now, p, 0.0))
        ok = np.isfinite(y[:, k])[:, None]
        if not ok.any():
            continue
        s = p + np.where(ok, e2[:, k, None], 1.0)
        vy = np.where(ok, y[:, k, None] - zy, 0.0)
        v1 = np.where(ok, x[:, k, None] - z1, 0.0)
        gain = np.where(ok, p / s, 0.0)
        zy, z1 = zy + gain * vy, z1 + gain * v1
        p = (1.0 - gain) * p
        s_yy += vy * vy / s
        s_1y += v1 * vy / s
        s_11 += v1 * v1 / s
        s_log += np.where(ok, np.log(s), 0.0)
    return s_yy - s_1y * s_1y / s_11 + s_log


def _car2_m2ll(
    y: NDArray,
    e2: NDArray,
    dt_days: NDArray,
    tau: NDArray,
    sigma: NDArray,
    regressor: NDArray | None = None,
    active: NDArray | None = None,
) -> NDArray[np.float64]:
    """Return -2 ln L of mu * x + critically damped CAR(2) noise, mu profiled.

    ``active`` switches the process off and on as in :func:`_kalman_m2ll`.
    """
    x = np.ones_like(y) if regressor is None else regressor
    omega = 1.0 / tau
    var = sigma * sigma
    on = None if active is None else np.asarray(active, dtype=bool)
    # Stationary state covariance of (z, dz/dt) and the state vectors of the
    # data and of the regressor (filtered with the same gains).
    p00, p01, p11 = var.copy(), np.zeros_like(var), var * omega * omega
    if on is not None:
        p00, p11 = p00 * on[:, :1], p11 * on[:, :1]
    zy, vy_ = np.zeros_like(var), np.zeros_like(var)
    z1, v1_ = np.zeros_like(var), np.zeros_like(var)
    s_yy, s_1y, s_11, s_log = (np.zeros_like(var) for _ in range(4))
    for k in range(y.shape[1]):
        if k:
            h = dt_days[k - 1]
            decay = np.exp(-omega * h)
            f00, f01 = decay * (1 + omega * h), decay * h
            f10, f11 = -decay * omega * omega * h, decay * (1 - omega * h)
            zy, vy_ = f00 * zy + f01 * vy_, f10 * zy + f11 * vy_
            z1, v1_ = f00 * z1 + f01 * v1_, f10 * z1 + f11 * v1_
            # P = F P F^T + Q with Q = P_inf - F P_inf F^T.
            q00 = var * (1 - f00 * f00 - f01 * f01 * omega * omega)
            q01 = -var * (f00 * f10 + f01 * f11 * omega * omega)
            q11 = var * omega * omega * (1 - f11 * f11) - var * f10 * f10
            n00 = f00 * f00 * p00 + 2 * f00 * f01 * p01 + f01 * f01 * p11 + q00
            n01 = (
                f00 * f10 * p00 + (f00 * f11 + f01 * f10) * p01 + f01 * f11 * p11 + q01
            )
            n11 = f10 * f10 * p00 + 2 * f10 * f11 * p01 + f11 * f11 * p11 + q11
            p00, p01, p11 = n00, n01, n11
        if on is not None:
            now = on[:, k, None]
            start = now & ~on[:, k - 1, None] if k else now
            zy, vy_ = np.where(now, zy, 0.0), np.where(now, vy_, 0.0)
            z1, v1_ = np.where(now, z1, 0.0), np.where(now, v1_, 0.0)
            p00 = np.where(start, var, np.where(now, p00, 0.0))
            p01 = np.where(now & ~start, p01, 0.0)
            p11 = np.where(start, var * omega * omega, np.where(now, p11, 0.0))
        ok = np.isfinite(y[:, k])[:, None]
        if not ok.any():
            continue
        s = p00 + np.where(ok, e2[:, k, None], 1.0)
        inn_y = np.where(ok, y[:, k, None] - zy, 0.0)
        inn_1 = np.where(ok, x[:, k, None] - z1, 0.0)
        k0 = np.where(ok, p00 / s, 0.0)
        k1 = np.where(ok, p01 / s, 0.0)
        zy, vy_ = zy + k0 * inn_y, vy_ + k1 * inn_y
        z1, v1_ = z1 + k0 * inn_1, v1_ + k1 * inn_1
        p00, p01, p11 = p00 - k0 * p00, p01 - k0 * p01, p11 - k1 * p01
        s_yy += inn_y * inn_y / s
        s_1y += inn_1 * inn_y / s
        s_11 += inn_1 * inn_1 / s
        s_log += np.where(ok, np.log(s), 0.0)
    return s_yy - s_1y * s_1y / s_11 + s_log


def windowed_red_noise_m2ll(
    t: NDArray, y: NDArray, e2: NDArray, regressor: NDArray, active: NDArray
) -> tuple[NDArray, NDArray, NDArray]:
    """Return -2 ln L of a mean ``mu * x(t)`` plus red noise confined to a window.

    The red noise is the better of a DRW and a critically damped CAR(2)
    process (as in :func:`red_noise_m2ll`), switched on only in the window;
    outside it the data scatter about the mean by their errors alone.

    Parameters
    ----------
    t : ndarray, shape (n_t,)
        Bin times, MJD (increasing).
    y, e2 : ndarray, shape (n_src, n_t)
        Fluxes (NaN where missing) and their error variances, Jy and Jy^2.
    regressor : ndarray, shape (n_src, n_t)
        Shape ``x(t)`` of the mean.
    active : ndarray of bool, shape (n_src, n_t)
        Bins where the red noise may act; elsewhere only measurement noise.

    Returns
    -------
    m2ll, tau_days, sigma_jy : ndarray, shape (n_src,)
        Smallest -2 ln L over the (tau, sigma) grid and its parameters (the
        grid starts at sigma = 0.1 % of the mean flux, close to the mean
        alone with white noise).
    """
    m2ll, tau, sigma = _fit_grid(t, y, e2, regressor, active=active)
    m2ll_c, tau_c, sigma_c = _fit_grid(
        t, y, e2, regressor, kalman=_car2_m2ll, active=active
    )
    smoother = m2ll_c < m2ll
    return (
        np.where(smoother, m2ll_c, m2ll),
        np.where(smoother, tau_c, tau),
        np.where(smoother, sigma_c, sigma),
    )


def red_noise_m2ll(
    t: NDArray, y: NDArray, e2: NDArray, regressor: NDArray | None = None
) -> tuple[NDArray, NDArray, NDArray, NDArray]:
    """Return the better -2 ln L of DRW and CAR(2) red noise about a mean.

    Parameters
    ----------
    t : ndarray, shape (n_t,)
        Bin times, MJD (increasing).
    y, e2 : ndarray, shape (n_src, n_t)
        Fluxes (NaN where missing) and their error variances, Jy and Jy^2.
    regressor : ndarray, shape (n_src, n_t), optional
        Shape ``x(t)`` of the mean ``mu * x(t)``; default 1 (a constant).

    Returns
    -------
    m2ll : ndarray, shape (n_src,)
        Smallest -2 ln L over both models and their (tau, sigma) grids.
    tau_days, sigma_jy : ndarray, shape (n_src,)
        Timescale and rms of the better model.
    model : ndarray of str, shape (n_src,)
        ``"drw"`` or ``"car2"``.
    """
    m2ll, tau, sigma = _fit_grid(t, y, e2, regressor)
    m2ll_c, tau_c, sigma_c = _fit_grid(t, y, e2, regressor, kalman=_car2_m2ll)
    smoother = m2ll_c < m2ll
    return (
        np.where(smoother, m2ll_c, m2ll),
        np.where(smoother, tau_c, tau),
        np.where(smoother, sigma_c, sigma),
        np.where(smoother, "car2", "drw"),
    )


def _fit_grid(
    t: NDArray,
    y: NDArray,
    e2: NDArray,
    regressor: NDArray | None = None,
    *,
    kalman: Callable[..., NDArray[np.float64]] = _kalman_m2ll,
    active: NDArray | None = None,
) -> tuple[NDArray, NDArray, NDArray]:
    """Return min -2 ln L of a red-noise model and its (tau, sigma), per row."""
    dt = np.diff(t)
    span = float(t[-1] - t[0]) if t.size > 1 else 1.0
    step = float(np.min(dt)) if dt.size else 1.0
    ok = np.isfinite(y)
    level = np.abs(np.nansum(np.where(ok, y / e2, 0), 1) / np.nansum(ok / e2, 1))
    tau_grid = np.geomspace(step, 3.0 * span, _DRW_N_TAU)
    sig_grid = np.geomspace(1e-3, 2.0, _DRW_N_SIGMA)
    tau = np.repeat(tau_grid, sig_grid.size)[None, :] * np.ones((y.shape[0], 1))
    sigma = np.tile(sig_grid, tau_grid.size)[None, :] * level[:, None]
    extra = {} if active is None else {"active": active}
    m2ll = kalman(y, e2, dt, tau, sigma, regressor, **extra)
    best = np.argmin(m2ll, axis=1)
    rows = np.arange(y.shape[0])
    tau0, sig0 = tau[rows, best], sigma[rows, best]
    # Refine on a finer grid around the coarse optimum.
    r_tau = (tau_grid[-1] / tau_grid[0]) ** (1.0 / (_DRW_N_TAU - 1))
    r_sig = (sig_grid[-1] / sig_grid[0]) ** (1.0 / (_DRW_N_SIGMA - 1))
    offsets = np.linspace(-0.5, 0.5, 5)
    tau_f = tau0[:, None] * np.repeat(r_tau**offsets, offsets.size)[None, :]
    sig_f = sig0[:, None] * np.tile(r_sig**offsets, offsets.size)[None, :]
    fine = kalman(y, e2, dt, tau_f, sig_f, regressor, **extra)
    best_f = np.argmin(fine, axis=1)
    m2ll_best = np.minimum(m2ll[rows, best], fine[rows, best_f])
    use_fine = fine[rows, best_f] <= m2ll[rows, best]
    return (
        m2ll_best,
        np.where(use_fine, tau_f[rows, best_f], tau0),
        np.where(use_fine, sig_f[rows, best_f], sig0),
    )
