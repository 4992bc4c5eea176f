"""Image-plane science for mosaics: primary beams, noise maps, coaddition."""

from dsa110_contimg.mosaic._beam import (
    DriftTrack,
    drift_track_cards,
    image_frequency_hz,
    primary_beam_at,
    primary_beam_image,
    primary_beam_key,
)
from dsa110_contimg.mosaic._coadd import MosaicInput, MosaicResult, coadd_images
from dsa110_contimg.mosaic._grid import circular_mean_deg, image_outline, mosaic_grid
from dsa110_contimg.mosaic._noise import noise_map
from dsa110_contimg.mosaic._reproject import (
    REPROJECT_METHODS,
    PreparedImage,
    input_coordinates,
    prepare_image,
    reproject_image,
)

__all__ = [
    "DriftTrack",
    "drift_track_cards",
    "image_frequency_hz",
    "primary_beam_at",
    "primary_beam_image",
    "primary_beam_key",
    "MosaicInput",
    "MosaicResult",
    "coadd_images",
    "circular_mean_deg",
    "image_outline",
    "mosaic_grid",
    "noise_map",
    "REPROJECT_METHODS",
    "PreparedImage",
    "input_coordinates",
    "prepare_image",
    "reproject_image",
]
