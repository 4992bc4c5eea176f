"""Quick-look PNG previews of images and mosaics, calibration QA plots, summaries."""

from dsa110_contimg.visualization._calplots import (
    plot_bandpass,
    plot_flag_fractions,
    plot_gains,
    write_calibration_plots,
)
from dsa110_contimg.visualization._overlay import write_sources_preview
from dsa110_contimg.visualization._preview import (
    describe_header,
    downsample_mean,
    robust_rms,
    write_preview,
)

__all__ = [
    "describe_header",
    "downsample_mean",
    "plot_bandpass",
    "plot_flag_fractions",
    "plot_gains",
    "robust_rms",
    "write_calibration_plots",
    "write_preview",
    "write_sources_preview",
]
