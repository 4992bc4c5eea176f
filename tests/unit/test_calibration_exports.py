"""The calibration package's lazy exports: every name resolves, and flagging
or applying imports neither the calibrator catalogue code nor the imagers."""

from __future__ import annotations

import subprocess
import sys

import dsa110_contimg.calibration as calibration


def test_every_export_resolves():
    assert set(calibration.__all__) == set(calibration._EXPORTS)
    for name in calibration.__all__:
        assert getattr(calibration, name) is not None


def test_flagging_and_apply_import_little():
    code = (
        "import sys\n"
        "from dsa110_contimg.calibration import apply_calibration, flag_ms\n"
        "heavy = [m for m in ('astropy.coordinates', 'scipy.stats', "
        "'dsa110_contimg.tools', 'photutils') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
