"""WSClean log parsing of the quality gates: minor-loop runaways and units."""

from __future__ import annotations

import math

import pytest

from dsa110_contimg.pipeline.stages import image_quality as qa
from dsa110_contimg.pipeline.stages.imaging_stage import safer_params
from dsa110_contimg.tools.imagers import ImagingParams
from dsa110_contimg.utils.config import ImagingConfig

# excerpts of real WSClean 3.1 logs (tiny simulated group, -gain 2.05 / 0.1)
RUNAWAY = """\
 == Deconvolving (1) ==
Estimated standard deviation of background noise: 43.14 mJy
Initial peak: 2.29 Jy at 622,588
Next major iteration at: 458.84 mJy
Stopped on peak -nan Jy, because the threshold was reached.
 == Deconvolving (2) ==
Estimated standard deviation of background noise: 43.14 mJy
Initial peak: 2.29 Jy at 622,588
Stopped on peak -1.04918e+23 KJy, because maximum number of iterations was reached.
"""
HEALTHY = """\
Initial peak: 2.29 Jy at 622,588
Stopped on peak 453.57 mJy, because the minor-loop threshold was reached.
Initial peak: 453.62 mJy at 784,668
Stopped on peak -89.61 mJy, because the minor-loop threshold was reached.
Initial peak: -118.87 mJy at 635,458
Stopped on peak -23.77 mJy, because the minor-loop threshold was reached.
Initial peak: -40.85 mJy at 786,667
Stopped on peak 13.6 mJy, because the threshold was reached.
"""


def test_a_runaway_minor_loop_is_divergence():
    history = qa.parse_wsclean_log(RUNAWAY)
    assert history.start_peaks_jy == (2.29, 2.29)
    assert math.isnan(history.end_peaks_jy[0])
    assert history.end_peaks_jy[1] == pytest.approx(-1.04918e26)  # KJy = 1e3 Jy
    assert history.peak_growth == math.inf
    finite = qa.CleanHistory((0.5, 0.4), (), False, (0.2, 3.0))
    assert finite.peak_growth == pytest.approx(7.5)  # second loop ended 7.5x up


def test_a_healthy_clean_does_not_grow():
    history = qa.parse_wsclean_log(HEALTHY)
    assert history.end_peaks_jy == pytest.approx((0.45357, -0.08961, -0.02377, 0.0136))
    assert history.peak_growth == 1.0
    assert qa.parse_wsclean_log("Initial peak: 2 MJy at 1,1").start_peaks_jy == (2e6,)
    # a start without a logged stop does not shift the later pairs
    unpaired = "Initial peak: 1 Jy at 1,1\nInitial peak: 0.5 Jy\nStopped on peak 0.9 Jy"
    history = qa.parse_wsclean_log(unpaired)
    assert history.end_peaks_jy == (1.0, 0.9)
    assert history.peak_growth == pytest.approx(1.8)


def test_the_retry_caps_the_minor_loop_gain():
    cfg = ImagingConfig(gain=2.5, qa_retry_gain=0.1)
    assert safer_params(ImagingParams(gain=2.5), cfg).gain == 0.1
    assert safer_params(ImagingParams(gain=0.05), cfg).gain == 0.05
    with pytest.raises(ValueError, match="gain"):
        ImagingConfig(gain=0)
