"""The tclean child reads the major cycles' peaks from tclean's summary."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import dsa110_contimg.tools as tools_pkg

_SPEC = importlib.util.spec_from_file_location(
    "_tclean_child", Path(tools_pkg.__file__).with_name("_tclean_child.py")
)
child = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(child)


def test_start_peaks_from_the_nested_summary():
    # CASA 6.7: {field: {channel: {stokes: {key: {cycle: value}}}}}
    summary = {
        0: {0: {0: {"iterDone": {0: 10, 1: 40}, "startPeakRes": {1: 0.0342, 0: 0.6835,
                                                                  2: 0.2934}}}}
    }  # fmt: skip
    assert child._start_peaks(summary) == [0.6835, 0.0342, 0.2934]


def test_end_peaks_when_start_peaks_are_absent():
    summary = {0: {0: {0: {"peakRes": [0.5, 0.1]}}}}
    assert child._start_peaks(summary) == [0.5, 0.1]
    assert child._start_peaks(None) == []
