"""A fresh worker process that images, corrects or measures imports no converter.

The streaming service's and Dask's workers, the CLI and every benchmark stage
start Python anew; pyuvdata (with its numba kernels, ~1.3 s) belongs to the
conversion alone, scipy.signal to the test imager alone.
"""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "module",
    [
        "dsa110_contimg.pipeline.stages.imaging_stage",
        "dsa110_contimg.pipeline.stages.derived_maps",
        "dsa110_contimg.pipeline.stages.photometry_stage",
        "dsa110_contimg.pipeline.stages.calibration_stage",
    ],
)
def test_stage_imports_no_converter(module: str) -> None:
    code = (
        "import sys\n"
        f"import {module}\n"
        "print([m for m in ('pyuvdata', 'scipy.signal') if m in sys.modules])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]", module


def test_ms_creation_still_exports_the_ms_facts() -> None:
    from dsa110_contimg.data_ingestion import ms_creation, ms_info

    assert ms_creation.read_ms_info is ms_info.read_ms_info
    assert ms_creation.MsInfo is ms_info.MsInfo
