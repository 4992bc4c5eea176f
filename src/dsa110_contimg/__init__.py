"""DSA-110 continuum imaging pipeline.

UVH5 subband groups -> calibrated Measurement Sets -> images -> mosaics -> forced
photometry and light curves.
"""

import logging

__all__ = ["__version__"]
__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
