"""Config section of light curves, the flux scale, variability and the ESE search."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import BaseModel, Field, model_validator

from dsa110_contimg.utils.config._model import FROZEN

__all__ = [
    "VariabilityConfig",
]


class VariabilityConfig(BaseModel):
    """Light-curve store, relative flux calibration, variability and ESE search."""

    model_config = FROZEN

    store_dir: Path = Field(
        Path("data/lightcurves"),
        description="Root of the Parquet light-curve store; a relative path is "
        "taken from the working directory at load time, and --output-dir puts "
        "it at <output-dir>/lightcurves (path).",
    )
    eta_threshold: float = Field(
        3.0,
        gt=0,
        description="Sources with eta at or above this are variable "
        "(together with v_threshold) (dimensionless).",
    )
    v_threshold: float = Field(
        0.05,
        ge=0,
        description="Sources with V at or above this are variable "
        "(together with eta_threshold) (fraction).",
    )
    min_epochs: int = Field(
        3, ge=2, description="Fewest usable measurements for eta and V (count)."
    )
    exclude_flags: int = Field(
        3,
        ge=0,
        description="Photometry flag bits whose measurements are left out "
        "of calibration and metrics; 3 = EDGE | NAN (bitmask).",
    )
    systematic_floor_frac: float = Field(
        0.005,
        ge=0,
        description="Fractional systematic error added in quadrature "
        "to calibrated flux errors (fraction).",
    )
    ref_min_snr: float = Field(
        50.0,
        gt=0,
        description="Faintest reference source for the flux scale "
        "(signal-to-noise ratio).",
    )
    ref_min_epochs: int = Field(
        1,
        ge=1,
        description="Earlier epochs a reference source needs for its "
        "mean flux (count).",
    )
    ref_max_eta: float = Field(
        3.0,
        gt=0,
        description="Reference sources must have eta below this (dimensionless).",
    )
    ref_max_v: float = Field(
        0.05, gt=0, description="Reference sources must have V below this (fraction)."
    )
    ref_max_resolved_frac: float = Field(
        0.15,
        gt=0,
        description="Reference sources must have |peak_jy / flux_jy - 1| "
        "below this when peak_jy is known (fraction).",
    )
    ref_min_n: int = Field(
        10, ge=1, description="Fewest reference sources for a flux scale (count)."
    )
    ref_clip_sigma: float = Field(
        3.0,
        gt=0,
        description="Sigma-clipping level for reference flux ratios (sigma).",
    )
    ref_max_iter: int = Field(
        10, ge=1, description="Sigma-clipping iterations (count)."
    )
    ese_min_depth: float = Field(
        0.2, gt=0, lt=1, description="Shallowest ESE dip searched (fraction)."
    )
    ese_max_depth: float = Field(
        0.9, gt=0, lt=1, description="Deepest ESE dip searched (fraction)."
    )
    ese_durations_days: list[float] = Field(
        [7.0, 10.0, 14.0, 21.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0],
        description="Dip durations (full width at half depth) searched (days).",
    )
    ese_center_step_frac: float = Field(
        0.2,
        gt=0,
        le=1,
        description="Step of the dip centre grid, as a fraction "
        "of the duration (fraction).",
    )
    ese_flank_ratios: list[float] = Field(
        [0.0, 0.5],
        description="Heights of the flanking brightenings searched, as "
        "fractions of the depth (fractions).",
    )
    ese_bin_days: float = Field(
        1.0,
        gt=0,
        description="Measurements are averaged in bins this wide before "
        "the ESE search (days).",
    )
    ese_min_points: int = Field(
        20, ge=5, description="Fewest binned measurements for an ESE search (count)."
    )
    ese_min_significance: float = Field(
        7.0,
        gt=0,
        description="Smallest dip significance of an ESE candidate (sigma).",
    )
    ese_min_delta_bic: float = Field(
        6.0,
        description="Smallest BIC(red noise) - BIC(ESE + red noise) of a "
        "candidate (dimensionless).",
    )
    ese_min_variance_explained: float = Field(
        0.7,
        ge=0,
        le=1,
        description="Smallest fraction of the excess variance (chi-square "
        "above its expectation) that the ESE dip explains (fraction).",
    )
    ese_prefilter_sigma: float = Field(
        2.0,
        ge=0,
        description="Store analysis searches only sources whose chi-square "
        "excess over a constant is at least this (sigma).",
    )

    @model_validator(mode="after")
    def _check_depths(self) -> Self:
        if self.ese_min_depth >= self.ese_max_depth:
            msg = (
                f"ese_min_depth ({self.ese_min_depth}) must be smaller than "
                f"ese_max_depth ({self.ese_max_depth})"
            )
            raise ValueError(msg)
        if not self.ese_durations_days or min(self.ese_durations_days) <= 0:
            msg = f"ese_durations_days must be positive, got {self.ese_durations_days}"
            raise ValueError(msg)
        if not self.ese_flank_ratios or min(self.ese_flank_ratios) < 0:
            msg = f"ese_flank_ratios must be >= 0, got {self.ese_flank_ratios}"
            raise ValueError(msg)
        return self
