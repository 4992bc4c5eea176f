"""Tests of the per-block HTML summary page (content; the browser test is in
tests/integration/test_console_and_summary.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsa110_contimg.visualization._summary import write_block_summary

pytest.importorskip("matplotlib")


def _png(path: Path) -> Path:
    from dsa110_contimg.visualization._figure import new_figure, save_figure

    fig = new_figure((2, 2))
    fig.add_subplot().plot([0, 1], [0, 1])
    return save_figure(fig, path)


def test_failed_block_page_lists_reasons_and_embeds_pictures(tmp_path: Path) -> None:
    preview = _png(tmp_path / "g-image.png")
    summary = {
        "block_id": "block_20230601T054600",
        "success": False,
        "processing_time_s": 12.5,
        "errors": ["drift_x.ms: CalibrationError: no valid calibration <strip 30.5>"],
        "calibration": [],
        "images": [
            {
                "image": "/d/g-image.fits",
                "preview": str(preview),
                "residual_preview": str(tmp_path / "missing.png"),
                "rms_jy": 0.0021,
                "thermal_rms_jy": 0.0010,
                "rms_over_thermal": 2.1,
                "peak_jy": 15.0,
                "dynamic_range": 7142.9,
            }
        ],
        "sources": [{"source_name": "3C286", "flux_jy": 14.9, "snr": 1300.0}],
    }
    page = write_block_summary(summary, tmp_path / "out" / "summary.html")
    html = page.read_text()
    assert "FAILED" in html
    assert "no valid calibration &lt;strip 30.5&gt;" in html  # escaped reason
    assert "data:image/jpeg;base64," in html  # the preview, embedded
    assert "residual: (not written)" in html
    assert "2.1" in html and "7143" in html  # rms/thermal, dynamic range
    assert "not calibrated in this run" in html
    assert "3C286" in html
    assert 'src="http' not in html and "href=" not in html
