"""Config section of the synthetic DSA-110 observation."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal, Self

from pydantic import BaseModel, Field, field_validator, model_validator

from dsa110_contimg.telescope.dsa110 import N_CHAN_PER_SUBBAND, N_SUBBANDS
from dsa110_contimg.utils.config._model import FROZEN

__all__ = [
    "SimulationConfig",
]


class SimulationConfig(BaseModel):
    """Synthetic DSA-110 observation used by tests, examples and benchmarks."""

    model_config = FROZEN

    n_antennas: int = Field(96, ge=8, le=96, description="Antennas simulated (count).")
    n_chan_per_subband: int = Field(
        N_CHAN_PER_SUBBAND,
        ge=1,
        le=N_CHAN_PER_SUBBAND,
        description=f"Channels per subband; must divide {N_CHAN_PER_SUBBAND} (count).",
    )
    n_times: int = Field(24, ge=1, description="Integrations per group (count).")
    n_groups: int = Field(2, ge=1, description="Subband groups simulated (count).")
    start_time: str = Field(
        "2023-06-01T00:00:00",
        description="Start of the first group, ISO 8601 (UTC timestamp).",
    )
    declination_deg: float = Field(
        37.0, ge=-30, le=90, description="Pointing declination (degrees)."
    )
    n_sources: int = Field(
        12, ge=0, description="Point sources in the sky model (count)."
    )
    min_flux_jy: float = Field(0.05, gt=0, description="Faintest source flux (Jy).")
    max_flux_jy: float = Field(2.0, gt=0, description="Brightest source flux (Jy).")
    field_radius_deg: float = Field(
        1.5,
        gt=0,
        description="Sources are placed within this distance of the strip centre "
        "line (degrees).",
    )
    sefd_jy: float = Field(
        6500.0, gt=0, description="System equivalent flux density (Jy)."
    )
    noise: bool = Field(True, description="Add thermal noise (flag).")
    gains: bool = Field(
        False, description="Corrupt visibilities with antenna gains (flag)."
    )
    gain_amp_rms: float = Field(
        0.05, ge=0, description="Scatter of gain amplitudes about 1 (fraction)."
    )
    gain_phase_rms_deg: float = Field(
        10.0, ge=0, description="Scatter of gain phases (degrees)."
    )
    bandpass: bool = Field(
        False,
        description="Give each antenna a bandpass shape (ripple and phase "
        "slope) when gains are on (flag).",
    )
    gain_drift: bool = Field(
        False,
        description="Let antenna gains drift slowly in time when gains are on (flag).",
    )
    add_calibrators: bool = Field(
        False,
        description="Add shipped calibrators near the observed strip to the "
        "simulated sky (flag).",
    )
    dead_antennas: list[int] = Field(
        [], description="Antenna indices with no signal (indices)."
    )
    rfi_channels: list[int] = Field(
        [],
        description="Raw-order channel indices (subband * channels + channel) "
        "with an RFI burst in the middle third of each group (indices).",
    )
    missing_subbands: list[int] = Field(
        [], description="Subband indices left out of every group (indices)."
    )
    timestamp_jitter_s: float = Field(
        2.0, ge=0, description="Maximum scatter of file-name timestamps (seconds)."
    )
    seed: int = Field(42, description="Random seed (integer).")
    integration_spacing_s: float | None = Field(
        None,
        gt=0,
        description="Time between integrations; null = the integration time. "
        "n_times integrations spread over 309 s give small groups a real "
        "group's drift and cadence (seconds).",
    )
    sky_mode: Literal["groups", "strip"] = Field(
        "groups",
        description="'groups': n_sources around each group's meridian; 'strip': "
        "n_sources x n_groups spread along the strip the groups cover (choice).",
    )
    antenna_naming: Literal["station", "pad"] = Field(
        "station",
        description="'station': antennas named by station number as real files "
        "do ('1'..'117', numbers 0..116); 'pad': 'pad001'.. (choice).",
    )

    @field_validator("n_chan_per_subband")
    @classmethod
    def _check_divides(cls, value: int) -> int:
        if N_CHAN_PER_SUBBAND % value:
            msg = f"n_chan_per_subband must divide {N_CHAN_PER_SUBBAND}, got {value}"
            raise ValueError(msg)
        return value

    @field_validator("start_time")
    @classmethod
    def _check_start_time(cls, value: str) -> str:
        parsed = datetime.fromisoformat(value)
        offset = parsed.utcoffset()
        if offset is not None and offset != timedelta(0):
            msg = f"start_time must be UTC, got offset {offset} in {value!r}"
            raise ValueError(msg)
        return value

    @field_validator("missing_subbands")
    @classmethod
    def _check_missing(cls, value: list[int]) -> list[int]:
        bad = [sb for sb in value if not 0 <= sb < N_SUBBANDS]
        if bad:
            msg = f"subband indices must be in 0..{N_SUBBANDS - 1}, got {bad}"
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _check_flux_range(self) -> Self:
        if self.min_flux_jy > self.max_flux_jy:
            msg = (
                f"min_flux_jy ({self.min_flux_jy}) must not exceed "
                f"max_flux_jy ({self.max_flux_jy})"
            )
            raise ValueError(msg)
        return self
