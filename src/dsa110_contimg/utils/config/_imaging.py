"""Config sections of the image products: imaging, mosaics and forced photometry."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, Field, field_validator, model_validator

from dsa110_contimg.utils.config._model import FROZEN
from dsa110_contimg.utils.config._units import parse_angle_arcsec, parse_flux_jy

__all__ = [
    "ImagingConfig",
    "MosaicConfig",
    "PhotometryConfig",
]


class ImagingConfig(BaseModel):
    """Imager settings, named after WSClean / tclean parameters."""

    model_config = FROZEN

    backend: Literal["wsclean", "tclean", "fake"] = Field(
        "wsclean",
        description="Imaging program: WSClean or CASA tclean (run in a child "
        "Python process); fake renders fake_sky_path through the beam with "
        "noise, for tests and demos only (choice).",
    )
    fake_sky_path: Path | None = Field(
        None,
        description="Sky catalogue CSV the fake imager renders (the one the MS "
        "was simulated from, e.g. truth/sky.csv); required with backend fake, "
        "ignored otherwise (path).",
    )
    wsclean_path: str | None = Field(
        None, description="WSClean executable; null = search PATH (path)."
    )
    casa_python: str | None = Field(
        None,
        description="Python interpreter with casatasks that runs tclean; null = "
        "the pipeline's own interpreter (path).",
    )
    deconvolver: Literal["hogbom", "clark", "multiscale", "mtmfs"] = Field(
        "hogbom", description="Deconvolution algorithm (choice)."
    )
    gridder: Literal["wproject", "wstacking", "wgridder", "standard"] = Field(
        "wproject", description="Gridding algorithm (choice)."
    )
    niter: int = Field(5000, ge=0, description="Maximum clean iterations (count).")
    threshold: str = Field(
        "1mJy",
        description="Absolute clean stopping threshold (flux string, Jy/mJy/uJy).",
    )
    image_size: tuple[int, int] = Field(
        (5000, 5000),
        description="Image size, x then y; the default field (with the default "
        "3 arcsec cell) covers the primary beam down to 0.19, below "
        "photometry.min_pb, so no source above it lies outside (pixels).",
    )
    cell_size: str = Field(
        "3arcsec", description="Pixel size (angle string, arcsec/arcmin/deg)."
    )
    weighting: Literal["briggs", "natural", "uniform"] = Field(
        "briggs", description="Visibility weighting scheme (choice)."
    )
    robust: float = Field(
        0.5, ge=-2, le=2, description="Briggs robustness parameter (dimensionless)."
    )
    min_uv_lambda: float = Field(
        1000.0, ge=0, description="Shortest baseline used for imaging (wavelengths)."
    )
    auto_threshold_sigma: float | None = Field(
        1.0,
        gt=0,
        description="Stop cleaning at this multiple of the rms; null = off. With the "
        "auto-mask, cleaning to 1 sigma leaves too little flux in the residual to "
        "bias matched-filter photometry (sigma).",
    )
    auto_mask_sigma: float | None = Field(
        4.0,
        gt=0,
        description="Build a clean mask at this multiple of the rms, then clean "
        "inside it to auto_threshold_sigma; null = no auto-mask (sigma).",
    )
    mgain: float = Field(
        0.8,
        gt=0,
        le=1,
        description="Major-cycle gain: each minor cycle cleans the peak down by "
        "this fraction before the next major cycle. production sets 0.9 (3 major "
        "cycles instead of 5 at full size, same residual rms and fluxes: "
        "benchmarks/results/perf_wsclean_levers.md); at testing size (24 "
        "antennas, higher sidelobes) 0.9 worsens the fluxes of bright sources "
        "to +-3.5% and their pulls to 1.7, so the default stays 0.8 (fraction).",
    )
    gain: float = Field(
        0.1,
        gt=0,
        le=3,
        description="Minor-loop gain: each clean component takes this fraction "
        "of the peak residual (WSClean -gain, tclean gain); WSClean's and "
        "tclean's default 0.1. A larger gain needs a smaller niter for the same "
        "depth: production sets 0.25 with niter 2000 (full size: 1.10-1.16x less "
        "WSClean CPU than 0.1 with 5000, residual rms -0.5%, flux errors and "
        "positions unchanged or better, benchmarks/results/"
        "perf_wsclean_levers_5.md); 0.2 with the full niter cleans deeper and "
        "takes a 4th major cycle (perf_wsclean_levers_4.md). Hogbom clean "
        "diverges at >= 2 (each step overshoots the peak); values above 1 serve "
        "only to test the quality gates (fraction).",
    )
    channels_out: int = Field(
        1,
        ge=1,
        description="Channels imaged separately and joined in deconvolution "
        "(WSClean -channels-out/-join-channels; tclean uses its own MFS) (count).",
    )
    nterms: int = Field(
        2,
        ge=1,
        le=4,
        description="Taylor terms of the spectral fit with deconvolver mtmfs "
        "(tclean nterms, WSClean -fit-spectral-pol) (count).",
    )
    multiscale_scales_pix: list[int] | None = Field(
        None,
        description="Scales of multiscale clean; null = the imager's automatic "
        "choice (WSClean) or 0, 2 and 6 synthesized beams (tclean) (pixels).",
    )
    w_planes: int | None = Field(
        None,
        ge=1,
        description="W-layers (WSClean -nwlayers) or w-projection planes (tclean "
        "wprojplanes); null = computed from the longest w and the field (count).",
    )
    wgridder_accuracy: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="Relative accuracy of the w-gridder (WSClean "
        "-wgridder-accuracy, with gridder wgridder); null = WSClean's default, "
        "1e-4. Production uses 1e-3: 1.1x less WSClean CPU than w-stacking at "
        "full size, residual rms -1.5% (benchmarks/results/perf_wsclean_levers_7.md) "
        "(dimensionless).",
    )
    threads: int = Field(2, ge=1, description="Threads given to the imager (count).")
    mem_percent: float = Field(
        60.0, gt=0, le=100, description="Memory the imager may use (percent of RAM)."
    )
    pb_limit: float = Field(
        0.2,
        ge=0,
        le=1,
        description="Primary-beam level below which the image is blanked (fraction).",
    )
    timeout_s: float = Field(
        3600.0, gt=0, description="Kill the imager after this long (seconds)."
    )
    noise_box_beams: float = Field(
        10.0,
        gt=0,
        description="Side of the boxes of the sliding-window rms map of the "
        "residual (synthesized beam major axes).",
    )
    write_png: bool = Field(
        True, description="Write a PNG preview of every image (flag)."
    )
    preview_max_pix: int = Field(
        1200,
        ge=100,
        description="Largest side of the image and residual PNG previews; "
        "larger images are block-averaged by a whole factor (a 4800^2 image: "
        "4x4 blocks, 1200^2); the primary-beam preview, a smooth map, at half "
        "that (pixels).",
    )
    subtract_standards_min_jy: float | None = Field(
        1.0,
        gt=0,
        description="Flux standards (calibrators.csv model pb17) whose "
        "drift-averaged apparent flux exceeds this are predicted through the "
        "drifting beam, subtracted before imaging and restored after it (WSClean "
        "only: tclean reads only DATA or CORRECTED_DATA); null = off (Jy).",
    )
    subtract_catalogue_min_snr: float | None = Field(
        None,
        gt=0,
        description="Photometry-catalogue sources whose drift-averaged apparent "
        "flux exceeds this many times the image rms expected before imaging (the "
        "MS's radiometer rms and the brightest remaining source over "
        "qa_dynamic_range, in quadrature) are fitted in the visibilities (one flux "
        "each, least squares through the drifting beam per integration and "
        "channel), subtracted before imaging and restored with the fitted flux "
        "after it, so the clean never has to model their drift-scan dirty "
        "pattern, which is not the image's PSF (WSClean only). Meant with "
        "photometry.estimator: dirty_equivalent (100 measured); null = off, the "
        "default while the restored estimator's errors are not modelled for it "
        "(ratio).",
    )
    subtract_catalogue_max_sources: int = Field(
        20,
        ge=1,
        description="At most this many catalogue sources are fitted and "
        "subtracted, the brightest apparent first (count).",
    )
    qa_enabled: bool = Field(
        True,
        description="Measure every image against the quality gates, re-image a "
        "failed one with the qa_retry_* parameters and keep a still failing one "
        "out of the mosaic (flag).",
    )
    qa_max_peak_growth: float = Field(
        2.0,
        gt=1,
        description="A clean whose peak residual at the start of a major cycle "
        "exceeds the smallest earlier one by more than this factor diverged (ratio).",
    )
    qa_max_rms_ratio: float = Field(
        3.0,
        gt=0,
        description="Largest residual rms over the expected rms (thermal rms and "
        "peak / qa_dynamic_range in quadrature) (ratio).",
    )
    qa_dynamic_range: float = Field(
        500.0,
        gt=0,
        description="Image-plane dynamic range the imaging reaches; peak / this is "
        "the rms floor a bright source sets (ratio).",
    )
    qa_max_negative_ratio: float = Field(
        0.2,
        gt=0,
        description="Largest |most negative pixel| as a fraction of the image "
        "peak (ratio).",
    )
    qa_sefd_jy: float = Field(
        6500.0,
        gt=0,
        description="Antenna SEFD of the thermal-rms prediction (Jy).",
    )
    qa_retry_auto_threshold_sigma: float = Field(
        3.0,
        gt=0,
        description="Retry of a failed image: clean only down to at least this "
        "(sigma).",
    )
    qa_retry_auto_mask_sigma: float = Field(
        5.0,
        gt=0,
        description="Retry of a failed image: clean inside an auto-mask built at "
        "at least this (sigma).",
    )
    qa_retry_mgain: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Retry of a failed image: major-cycle gain at most this "
        "(fraction).",
    )
    qa_retry_gain: float = Field(
        0.1,
        gt=0,
        le=3,
        description="Retry of a failed image: minor-loop gain at most this (fraction).",
    )

    @field_validator("threshold")
    @classmethod
    def _check_threshold(cls, value: str) -> str:
        parse_flux_jy(value)
        return value

    @field_validator("cell_size")
    @classmethod
    def _check_cell_size(cls, value: str) -> str:
        if parse_angle_arcsec(value) <= 0:
            msg = f"cell_size must be positive, got {value!r}"
            raise ValueError(msg)
        return value

    @field_validator("image_size")
    @classmethod
    def _check_image_size(cls, value: tuple[int, int]) -> tuple[int, int]:
        if min(value) < 16:
            msg = f"each image_size axis must be >= 16 pixels, got {list(value)}"
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _check_fake_sky(self) -> Self:
        if self.backend == "fake" and self.fake_sky_path is None:
            msg = (
                "backend 'fake' renders a model sky and needs fake_sky_path (the "
                "catalogue CSV the MS was simulated from, e.g. truth/sky.csv)"
            )
            raise ValueError(msg)
        return self

    def threshold_jy(self) -> float:
        """Return the clean threshold (Jy)."""
        return parse_flux_jy(self.threshold)

    def cell_size_arcsec(self) -> float:
        """Return the pixel size (arcsec)."""
        return parse_angle_arcsec(self.cell_size)


class MosaicConfig(BaseModel):
    """Hourly mosaics: images of a block coadded on a common grid."""

    model_config = FROZEN

    enabled: bool = Field(True, description="Make a mosaic of every block (flag).")
    pb_cut: float = Field(
        0.2,
        gt=0,
        le=1,
        description="Image pixels where the primary beam is below this are left "
        "out of the mosaic (fraction).",
    )
    projection: Literal["SIN", "CAR"] = Field(
        "SIN",
        description="Mosaic projection, centred on the circular-mean RA of the "
        "images (choice).",
    )
    cell_size: str | None = Field(
        None,
        description="Mosaic pixel size; null = the images' pixel size (angle "
        "string, arcsec/arcmin/deg).",
    )
    method: Literal["fast", "interp"] = Field(
        "fast",
        description="Reprojection: 'interp' calls reproject_interp per image and "
        "tile; 'fast' computes the same bilinear interpolation with pixel "
        "coordinates from a coarse grid (choice).",
    )
    tile_pix: int = Field(
        2048,
        ge=64,
        description="Side of the mosaic tiles accumulated at a time; bounds the "
        "memory (pixels).",
    )
    write_png: bool = Field(
        True, description="Write a PNG preview of every mosaic (flag)."
    )
    guard_beams: float = Field(
        4.0,
        ge=0,
        description="Outer band of each image, in restoring-beam major axes, used "
        "only where no other image's interior covers the mosaic pixel; sources "
        "measured there are flagged EDGE (beams).",
    )

    @field_validator("cell_size")
    @classmethod
    def _check_cell_size(cls, value: str | None) -> str | None:
        if value is not None and parse_angle_arcsec(value) <= 0:
            msg = f"cell_size must be positive, got {value!r}"
            raise ValueError(msg)
        return value

    def cell_size_arcsec(self) -> float | None:
        """Return the mosaic pixel size (arcsec), or None for the images' size."""
        return None if self.cell_size is None else parse_angle_arcsec(self.cell_size)


class PhotometryConfig(BaseModel):
    """Forced photometry settings."""

    model_config = FROZEN

    min_pb: float = Field(
        0.2,
        ge=0,
        le=1,
        description="Skip positions where the primary beam is below this (fraction).",
    )
    box_beams: float = Field(
        3.0, gt=0, description="Half-size of the fitting box (synthesized beams)."
    )
    rms_annulus_beams: tuple[float, float] = Field(
        (6.0, 15.0),
        description="Inner and outer radius of the annulus of the local rms of a "
        "group image's residual (a mosaic uses its noise map), in restoring-beam "
        "major axes; pixels within 2 beams of a catalogue source are left out "
        "(synthesized beams).",
    )
    detection_sigma: float = Field(
        5.0,
        gt=0,
        description="A forced measurement with flux_jy / flux_err_jy below this "
        "is flagged UPPER_LIMIT (16) and given upper_limit_jy = detection_sigma x "
        "flux_err_jy (sigma).",
    )
    estimator: Literal["restored", "dirty_equivalent"] = Field(
        "restored",
        description="Group-image flux estimator: 'restored' (matched filter on the "
        "restored image, with the shape and residual-excess systematics) or "
        "'dirty_equivalent' (matched filter on the residual plus each source's own "
        "clean components in the dirty beam, noise error only before the overlap "
        "fit; reads the imager's residual, model and psf; a mosaic's fluxes are then "
        "its members' inverse-variance mean, the restored mosaic keeping its flags).",
    )
    own_radius_beams: float = Field(
        1.5,
        ge=0,
        description="dirty_equivalent: clean components within this many beam "
        "major axes of a source are its own (synthesized beams).",
    )

    @model_validator(mode="before")
    @classmethod
    def _renamed_annulus(cls, data: object) -> object:
        if isinstance(data, dict) and "rms_annulus_arcsec" in data:
            msg = (
                "photometry.rms_annulus_arcsec was never used (the annulus was "
                "fixed at 6-15 beams); it is now photometry.rms_annulus_beams, "
                "in restoring-beam major axes: replace the key"
            )
            raise ValueError(msg)
        return data

    @field_validator("rms_annulus_beams")
    @classmethod
    def _check_annulus(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0 <= value[0] < value[1]:
            msg = f"need 0 <= inner < outer radius, got {list(value)}"
            raise ValueError(msg)
        return value
