"""The whole chain with the fake imager: no WSClean or CASA imager needed.

Known truth: the simulator's sky, rendered by ``imaging.backend: fake``
through the drift-averaged beam on radiometer noise, comes back out of the
batch (conversion, imaging, derived maps, mosaic, forced photometry) at the
injected fluxes within the quoted errors, with WSClean absent from PATH.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from dsa110_contimg.data_ingestion.ms_noise import thermal_rms_jy
from dsa110_contimg.exceptions import ConfigError
from dsa110_contimg.pipeline.batch import run_batch
from dsa110_contimg.pipeline.stages.photometry_stage import read_photometry_table
from dsa110_contimg.simulation import compare_to_truth
from dsa110_contimg.utils.config_loader import load_pipeline_config

pytestmark = [pytest.mark.integration, pytest.mark.casa]

_PATHS = ("incoming", "ms", "images", "products", "logs", "mosaics", "cal")


_KEYS = (
    "incoming_dir",
    "ms_stage1_dir",
    "images_dir",
    "products_dir",
    "log_dir",
    "mosaics_dir",
    "cal_tables_dir",
)


def _config(base: Path, sky_path: Path | None):
    keys = dict(zip(_KEYS, _PATHS, strict=True))
    overrides = {f"paths.{k}": str(base / v) for k, v in keys.items()}
    overrides["paths.data_dir"] = str(base)
    overrides["paths.state_db"] = str(base / "pipeline.sqlite3")
    overrides["imaging.backend"] = "fake"
    if sky_path is not None:
        overrides["imaging.fake_sky_path"] = str(sky_path)
    return load_pipeline_config(environment="testing", overrides=overrides, env={})


@pytest.fixture(scope="module")
def fake_run(tiny_observation, tmp_path_factory):
    pytest.importorskip("casacore.tables")
    base = tmp_path_factory.mktemp("fake")
    config = _config(base, tiny_observation.sky_path)
    # WSClean absent: PATH holds only this interpreter's directory
    bare = base / "bin"
    bare.mkdir()
    os.symlink(sys.executable, bare / "python")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PATH", str(bare))
        assert shutil.which("wsclean") is None
        result = run_batch(
            config, tiny_observation.output_dir, catalog_path=tiny_observation.sky_path
        )
    return config, result


def test_chain_runs_without_wsclean_on_path(fake_run):
    _, result = fake_run
    assert result.success, [b.errors for b in result.blocks]
    block = result.blocks[0]
    image = Path(block.output_files["image"][0])
    header = fits.getheader(image)
    assert header["DSAIMGR"] == "fake" and header["DSASIMUL"] is True
    assert "SIMULATED" in str(header["HISTORY"])
    for key in ("BMAJ", "BMIN", "BPA", "DSAPTDEC", "DATE-OBS", "RADESYS"):
        assert key in header, key
    assert header["CTYPE1"] == "RA---SIN" and header["CTYPE3"] == "FREQ"
    for kind in ("residual", "psf", "pb", "rms", "pbcor"):
        assert image.with_name(image.name.replace("-image", f"-{kind}")).exists()
    assert "mosaic" in block.output_files


def test_fake_images_recover_injected_fluxes_within_the_noise(
    fake_run, tiny_observation
):
    _, result = fake_run
    table = read_photometry_table(result.photometry_path)
    comparison = compare_to_truth(table, tiny_observation.sky)
    pulls = (
        comparison.table["flux_jy"] - comparison.table["true_flux_jy"]
    ) / comparison.table["flux_err_jy"]
    print(
        f"\nfake imager: recovered {comparison.n_recovered}/{comparison.n_injected}, "
        f"median |flux error| {100 * comparison.median_abs_flux_error:.2f}%, "
        f"pulls {np.round(np.asarray(pulls), 2).tolist()}"
    )
    assert comparison.n_recovered == comparison.n_injected
    assert comparison.max_offset_beams <= 0.2
    assert np.all(np.abs(pulls) < 4.0)


def test_fake_image_noise_is_the_radiometer_noise(fake_run):
    config, result = fake_run
    image = Path(result.blocks[0].output_files["image"][0])
    residual = np.squeeze(
        fits.getdata(image.with_name(image.name.replace("-image", "-residual")))
    )
    ms = result.conversion.products[0].path
    expected = thermal_rms_jy(ms, min_uv_lambda=config.imaging.min_uv_lambda)
    measured = float(np.std(residual))
    print(f"\nresidual rms {1e3 * measured:.3f} mJy, thermal {1e3 * expected:.3f} mJy")
    assert measured == pytest.approx(expected, rel=0.05)


def test_fake_backend_needs_its_sky(tmp_path):
    with pytest.raises(ConfigError, match="fake_sky_path"):
        _config(tmp_path, None)


def test_stream_runs_with_the_fake_imager_without_wsclean(tiny_observation, tmp_path):
    """The streaming services (a real process) image with the fake imager."""
    import signal
    import subprocess
    import time

    import yaml

    from dsa110_contimg.utils.config_loader import find_config_dir

    incoming = tmp_path / "incoming"
    incoming.mkdir()
    for path in tiny_observation.groups[0].files:
        shutil.copy2(path, incoming / path.name)
    layout = dict(zip(_KEYS, _PATHS, strict=True))
    tree = {
        "paths": {
            **{k: str(tmp_path / v) for k, v in layout.items()},
            "data_dir": str(tmp_path),
            "state_db": str(tmp_path / "pipeline.sqlite3"),
        },
        "imaging": {
            "backend": "fake",
            "fake_sky_path": str(tiny_observation.sky_path),
            "threads": 1,
        },
        "conversion": {"group_tolerance_s": 20.0},
        "watcher": {"scan_interval_s": 0.5, "settle_s": 0.3, "group_timeout_s": 30.0},
        "queue": {"poll_interval_s": 0.2, "block_wait_s": 2.0},
    }
    config = tmp_path / "stream.yaml"
    config.write_text(yaml.safe_dump(tree))
    bare = tmp_path / "bin"
    bare.mkdir()
    os.symlink(sys.executable, bare / "python")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSA110")}
    env["DSA110_CONFIG_DIR"] = str(find_config_dir(env={}))
    env["PATH"] = str(bare)
    out = tmp_path / "stream.out"
    with open(out, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dsa110_contimg.services", "--env", "testing"]
            + ["--config", str(config), "--incoming-dir", str(incoming)]
            + ["--catalog", str(tiny_observation.sky_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            env=env,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 150
        mosaics = []
        while time.monotonic() < deadline and proc.poll() is None:
            mosaics = list((tmp_path / "mosaics").glob("*-mosaic.fits"))
            tables = list((tmp_path / "products").glob("photometry*.csv"))
            if mosaics and tables:
                break
            time.sleep(0.5)
        assert mosaics and tables, out.read_text(errors="replace")[-3000:]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
    (image,) = (tmp_path / "images").glob("*-image.fits")
    assert fits.getheader(image)["DSASIMUL"] is True
    assert "simulated image written" in out.read_text(errors="replace")


def test_fake_backend_is_refused_in_production(tmp_path):
    overrides = {
        "imaging.backend": "fake",
        "imaging.fake_sky_path": str(tmp_path / "sky.csv"),
    }
    with pytest.raises(ConfigError, match="refused in the production"):
        load_pipeline_config(environment="production", overrides=overrides, env={})
    development = load_pipeline_config(
        environment="development", overrides=overrides, env={}
    )
    assert development.imaging.backend == "fake"
