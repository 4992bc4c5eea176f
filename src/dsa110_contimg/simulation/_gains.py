"""Per-antenna complex gains with a bandpass shape and slow time drift."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

__all__ = ["GainModel", "random_gain_model"]


@dataclass(frozen=True, slots=True)
class GainModel:
    """Complex gain of each antenna as a function of time and frequency.

    ``g(t, f) = A (1 + r sin(2 pi (f - f0) / P + psi)) (1 + a_dot dt)
    exp(i (phi + s (f - f0) / B + phi_dot dt))`` with ``dt`` in hours since
    ``t0_jd``, ``f0`` the band centre and ``B`` the bandwidth. All parameters
    are arrays of shape (n_ant,) except the scalars.
    """

    antenna_names: tuple[str, ...]
    amp: NDArray[np.float64]
    phase_rad: NDArray[np.float64]
    ripple_frac: NDArray[np.float64]
    ripple_period_hz: NDArray[np.float64]
    ripple_phase_rad: NDArray[np.float64]
    phase_slope_rad: NDArray[np.float64]
    amp_drift_per_hour: NDArray[np.float64]
    phase_drift_rad_per_hour: NDArray[np.float64]
    t0_jd: float
    f0_hz: float
    bandwidth_hz: float

    def evaluate(
        self, times_jd: NDArray[np.float64], freq_hz: NDArray[np.float64]
    ) -> NDArray[np.complex128]:
        """Return gains of shape (n_ant, n_time, n_freq)."""
        dt_h = (np.asarray(times_jd) - self.t0_jd)[None, :, None] * 24.0
        f = np.asarray(freq_hz)[None, None, :]
        c = lambda a: np.asarray(a)[:, None, None]  # noqa: E731
        amp = (
            c(self.amp)
            * (
                1.0
                + c(self.ripple_frac)
                * np.sin(
                    2 * np.pi * (f - self.f0_hz) / c(self.ripple_period_hz)
                    + c(self.ripple_phase_rad)
                )
            )
            * (1.0 + c(self.amp_drift_per_hour) * dt_h)
        )
        phase = (
            c(self.phase_rad)
            + c(self.phase_slope_rad) * (f - self.f0_hz) / self.bandwidth_hz
            + c(self.phase_drift_rad_per_hour) * dt_h
        )
        return amp * np.exp(1j * phase)

    def to_json(self, path: Path) -> None:
        """Write the model as JSON (the simulator's gain truth)."""
        data = {
            k: (v.tolist() if isinstance(v, np.ndarray) else v)
            for k, v in asdict(self).items()
        }
        data["antenna_names"] = list(self.antenna_names)
        Path(path).write_text(json.dumps(data, indent=1))

    @classmethod
    def from_json(cls, path: Path) -> GainModel:
        """Read a model written by `to_json`."""
        data = json.loads(Path(path).read_text())
        kwargs = {
            k: (np.asarray(v) if isinstance(v, list) else v) for k, v in data.items()
        }
        kwargs["antenna_names"] = tuple(data["antenna_names"])
        return cls(**kwargs)


def random_gain_model(
    antenna_names: list[str],
    *,
    rng: np.random.Generator,
    t0_jd: float,
    f0_hz: float,
    bandwidth_hz: float,
    amp_rms: float = 0.05,
    phase_rms_deg: float = 10.0,
    bandpass: bool = False,
    ripple_frac: float = 0.05,
    phase_slope_deg: float = 30.0,
    drift: bool = False,
    amp_drift_per_hour: float = 0.01,
    phase_drift_deg_per_hour: float = 5.0,
) -> GainModel:
    """Draw a random, DSA-110-like gain model (one realisation per antenna)."""
    n = len(antenna_names)
    zeros = np.zeros(n)
    return GainModel(
        antenna_names=tuple(antenna_names),
        amp=1.0 + amp_rms * rng.standard_normal(n),
        phase_rad=np.deg2rad(phase_rms_deg) * rng.standard_normal(n),
        ripple_frac=ripple_frac * rng.uniform(0.3, 1.0, n) if bandpass else zeros,
        ripple_period_hz=rng.uniform(20e6, 60e6, n),
        ripple_phase_rad=rng.uniform(0, 2 * np.pi, n),
        phase_slope_rad=np.deg2rad(phase_slope_deg) * rng.standard_normal(n)
        if bandpass
        else zeros,
        amp_drift_per_hour=amp_drift_per_hour * rng.standard_normal(n)
        if drift
        else zeros,
        phase_drift_rad_per_hour=np.deg2rad(phase_drift_deg_per_hour)
        * rng.standard_normal(n)
        if drift
        else zeros,
        t0_jd=t0_jd,
        f0_hz=f0_hz,
        bandwidth_hz=bandwidth_hz,
    )
