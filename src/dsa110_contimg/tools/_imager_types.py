"""Imager value types and protocol: `ImagingParams`, `ImageProduct`, `Imager`.

A leaf of `dsa110_contimg.tools`: the adapters (`wsclean`, `tclean`, `fake`)
and the registry (`dsa110_contimg.tools.imagers`) import it, it imports
none of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

__all__ = ["ImagingParams", "ImageProduct", "Imager"]


@dataclass(frozen=True, slots=True)
class ImagingParams:
    """Backend-neutral imaging parameters (the seed's imaging keys and more).

    The pipeline builds these from the ``imaging`` config section
    (`dsa110_contimg.pipeline.stages.imaging_stage.imaging_params`); the
    defaults, for standalone use, are that section's defaults
    (``tests/unit/test_config_defaults.py`` keeps them equal).
    """

    image_size: tuple[int, int] = (5000, 5000)
    cell_arcsec: float = 3.0
    niter: int = 5000
    threshold_jy: float = 0.001
    deconvolver: str = "hogbom"
    gridder: str = "wproject"
    weighting: str = "briggs"
    robust: float = 0.5
    min_uv_lambda: float = 1000.0
    auto_threshold_sigma: float | None = 1.0
    auto_mask_sigma: float | None = 4.0
    mgain: float = 0.8
    gain: float = 0.1
    channels_out: int = 1
    nterms: int = 2
    multiscale_scales_pix: tuple[int, ...] | None = None
    w_planes: int | None = None
    wgridder_accuracy: float | None = None
    threads: int = 2
    mem_percent: float = 60.0
    timeout_s: float = 3600.0
    data_column: str = "DATA"


@dataclass(frozen=True, slots=True)
class ImageProduct:
    """Files an imager produced for one MS (final names, all complete)."""

    ms_path: Path
    image_path: Path
    residual_path: Path
    psf_path: Path
    model_path: Path
    log_path: Path
    backend: str
    backend_version: str
    command: tuple[str, ...]
    skipped: bool = False
    pb_path: Path | None = None
    pbcor_path: Path | None = None
    rms_path: Path | None = None
    preview_path: Path | None = None
    quality_path: Path | None = None


class Imager(Protocol):
    """An imaging backend."""

    name: str

    def make_image(
        self,
        ms_path: Path,
        prefix: Path,
        params: ImagingParams,
        *,
        header: Mapping[str, object] | None = None,
    ) -> ImageProduct:
        """Image ``ms_path``, writing ``<prefix>-image.fits`` and friends."""
        ...
