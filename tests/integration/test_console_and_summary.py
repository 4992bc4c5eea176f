"""A testing-size demo run as a user sees it: console, log files, summary page.

The demo is run in a subprocess so that what CASA's C++ layer writes to the
process's file descriptor 2 is seen too. Calibration is on (a 3C286 transit),
so CASA runs, in a pool worker.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.wsclean, pytest.mark.casa]

_DEMO_SETS = {
    "logging.level": "INFO",
    "calibration.enabled": "true",
    "simulation.add_calibrators": "true",
    "simulation.start_time": '"2023-06-01T04:46:00"',  # 3C286 transits 04:46:36
    "simulation.declination_deg": "30.5",
    "simulation.gains": "true",
    "simulation.bandpass": "true",
}
_CASA_NOISE = re.compile(r"SEVERE|MeasTable|MSDerivedValues|unhandled mount|\tWARN\t")
_STAGES = ("flag", "solve", "apply", "image", "mosaic", "photometry")


def _demo(cwd: Path, out: Path, *flags: str) -> subprocess.CompletedProcess:
    args = ["demo", *flags, "--env", "testing", "--output-dir", str(out)]
    for key, value in _DEMO_SETS.items():
        args += ["--set", f"{key}={value}"]
    code = "import sys; from dsa110_contimg.cli import main; main(sys.argv[1:])"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("demo_cwd")
    out = cwd / "out"
    return cwd, out, _demo(cwd, out)


def test_console_has_progress_and_no_casa_noise(demo_run) -> None:
    cwd, out, run = demo_run
    console = run.stdout + run.stderr
    assert run.returncode == 0, console[-3000:]
    noise = [line for line in console.splitlines() if _CASA_NOISE.search(line)]
    assert noise == []
    # per-image table meta merged into the block summary is not a conflict
    assert "MergeConflictWarning" not in console
    assert "[convert 1/1]" in console
    for stage in _STAGES:
        line = next(
            (
                x
                for x in console.splitlines()
                if f"stage={stage}]" in x and " done" in x
            ),
            None,
        )
        assert line is not None, f"no progress line for stage {stage}"
        assert "block=block_" in line and "duration_s=" in line
    assert not list(cwd.glob("casa-*.log"))  # CASA's log is not in the cwd


def test_log_files_under_log_dir(demo_run) -> None:
    _, out, _ = demo_run
    records = [
        json.loads(x)
        for x in (out / "logs" / "dsa110-contimg.log").read_text().splitlines()
    ]
    stages = {r.get("stage") for r in records}
    assert set(_STAGES) <= stages  # worker records reached the file too
    solved = next(r for r in records if r["message"] == "calibration solved")
    assert solved["block_id"].startswith("block_")
    assert (out / "logs" / "casa.log").is_file()


def test_quiet_run_prints_only_the_summary(demo_run) -> None:
    cwd, out, _ = demo_run
    run = _demo(cwd, out, "-q")  # products exist: a quick re-run
    assert run.returncode == 0, run.stderr[-3000:]
    assert " INFO " not in run.stderr
    assert "[convert" not in run.stderr
    assert "recovered" in run.stdout


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_summary_page_loads_offline_with_its_images(demo_run, tmp_path) -> None:
    _, out, _ = demo_run
    (page,) = (out / "products").glob("summary_block_*.html")
    html = page.read_text()
    assert "3C286" in html  # the calibrator used
    assert "rms / thermal" in html and "dynamic range" in html
    assert "SIM0000" in html  # sources measured
    assert "http://" not in html and "https://" not in html  # self-contained
    browser = _chromium()
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    probe = tmp_path / "probe.html"
    probe.write_text(
        html.replace(
            "</body>",
            "<script>window.addEventListener('load',()=>{document.title="
            "JSON.stringify([...document.images].map(i=>[i.complete,i.naturalWidth]))"
            "})</script></body>",
        )
    )
    dom = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--proxy-server=127.0.0.1:9",  # no network
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--virtual-time-budget=10000",
            "--dump-dom",
            probe.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    title = re.search(r"<title>(.*?)</title>", dom.stdout, re.S)
    assert title is not None, dom.stderr[-2000:]
    images = json.loads(title.group(1).replace("&quot;", '"'))
    assert len(images) >= 7  # 3 calibration plots, image, residual, pb, 2 mosaic
    assert all(done and width > 300 for done, width in images)  # all decoded
