"""Quick-look PNG previews of images and mosaics."""

from dsa110_contimg.visualization._preview import downsample_mean, write_preview

__all__ = ["downsample_mean", "write_preview"]
