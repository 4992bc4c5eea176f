"""Adapters for external programs (imagers, CASA), behind protocols."""

from dsa110_contimg.tools.imagers import (
    IMAGERS,
    ImageProduct,
    ImagingParams,
    get_imager,
)

__all__ = ["IMAGERS", "ImageProduct", "ImagingParams", "get_imager"]
