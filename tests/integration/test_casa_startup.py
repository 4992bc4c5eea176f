"""CASA starts the same way everywhere: safe argv, the installation's own config.

casaconfig parses ``sys.argv`` when casatools is imported (``--config`` is
taken as its ``--configfile``) and reads a user-global ``~/.casa/config.py``.
Every CASA import here runs in a fresh interpreter (CASA's configuration is
process-global), with ``HOME`` pointing at an empty directory so nothing of
the user's set-up can help.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.casa]

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"

pytest.importorskip("casatools")


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CASASITECONFIG"}
    env.update(
        HOME=str(home),
        PYTHONPATH=os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")]).rstrip(
            os.pathsep
        ),
        **extra,
    )
    return env


def _python(code: str, home: Path, cwd: Path, timeout: float = 120) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON line last."""
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=_env(home),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture
def home(tmp_path) -> Path:
    path = tmp_path / "empty_home"
    path.mkdir()
    return path


@pytest.fixture
def my_yaml(tmp_path) -> Path:
    path = tmp_path / "my.yaml"
    path.write_text("calibration:\n  enabled: true\n")
    return path


@pytest.mark.parametrize("with_config_option", [False, True])
def test_pipeline_argv_breaks_a_naive_import(
    home, my_yaml, tmp_path, with_config_option
):
    """The bug: with the old user-global set-up, ``--config`` in argv breaks CASA."""
    import casadata

    (home / ".casa").mkdir()
    (home / ".casa" / "config.py").write_text(  # what setup.sh used to write
        f"measurespath = {casadata.datapath!r}\ndatapath = [measurespath]\n"
        "measures_auto_update = False\ndata_auto_update = False\n"
    )
    argv = ["dsa110-contimg", "process"]
    if with_config_option:
        argv += ["--config", str(my_yaml)]
    code = (
        "import json, sys\n"
        f"sys.argv = {argv!r}\n"
        "try:\n"
        "    import casatools\n"
        "    ok = True\n"
        "except Exception as err:\n"
        "    ok = False\n"
        "print(json.dumps({'ok': ok}))\n"
    )
    assert _python(code, home, tmp_path) == {"ok": not with_config_option}


def test_import_casa_survives_pipeline_argv_offline_with_empty_home(
    home, my_yaml, tmp_path
):
    code = (
        "import json, os, sys\n"
        f"sys.argv = ['dsa110-contimg', 'process', '--config', {str(my_yaml)!r}]\n"
        "from dsa110_contimg._optional import require\n"
        "from dsa110_contimg._casa import CASA_SITE_CONFIG\n"
        "casatools = require('casatools', 'casa')\n"
        "casatasks = require('casatasks', 'casa')\n"
        "me = casatools.measures()\n"
        "epoch = me.epoch('utc', '2023/06/01/00:00:00')\n"
        "tdb = me.measure(epoch, 'tdb')['m0']['value']\n"
        "import casaconfig.config as cfg\n"
        "print(json.dumps({'argv': sys.argv, 'tdb': tdb,\n"
        "    'site': os.environ['CASASITECONFIG'], 'expected': str(CASA_SITE_CONFIG),\n"
        "    'measurespath': cfg.measurespath, 'auto': cfg.measures_auto_update,\n"
        "    'loaded': cfg.load_success()}))\n"
    )
    out = _python(code, home, tmp_path)
    assert out["argv"][1:] == ["process", "--config", str(my_yaml)]  # restored
    assert out["site"] == out["expected"]
    assert out["expected"] in out["loaded"]  # the installation's own site config
    assert not any(".casa" in p for p in out["loaded"])  # no user-global file
    assert out["auto"] is False  # offline
    assert Path(out["measurespath"]).is_dir()
    # a measures conversion works: TDB - UTC = 69.184 s in 2023
    assert (out["tdb"] - 60096.0) * 86400 == pytest.approx(69.184, abs=0.01)
    assert not (home / ".casa" / "config.py").exists()


def test_stale_user_config_is_ignored(home, tmp_path):
    """A ~/.casa/config.py left by a deleted checkout no longer breaks CASA."""
    (home / ".casa").mkdir()
    (home / ".casa" / "config.py").write_text(
        'measurespath = "/nonexistent/deleted-checkout/casadata/__data__"\n'
        "measures_auto_update = False\ndata_auto_update = False\n"
    )
    code = (
        "import json\n"
        "from dsa110_contimg._casa import import_casa\n"
        "casatools = import_casa('casatools')\n"
        "import casaconfig.config as cfg\n"
        "print(json.dumps({'measurespath': cfg.measurespath}))\n"
    )
    out = _python(code, home, tmp_path)
    assert "deleted-checkout" not in out["measurespath"]


@pytest.mark.parametrize("broken", ["missing", "no_data"])
def test_casa_startup_failure_is_a_clear_retryable_error(home, tmp_path, broken):
    site = tmp_path / "casasiteconfig.py"
    if broken == "no_data":  # e.g. casadata uninstalled, no casacore-data
        site.write_text('measurespath = "/nonexistent/casadata"\n')
    code = (
        "import json\n"
        "from pathlib import Path\n"
        "import dsa110_contimg._casa as casa\n"
        "from dsa110_contimg.exceptions import ExternalToolError\n"
        "good = casa.CASA_SITE_CONFIG\n"
        f"casa.CASA_SITE_CONFIG = Path({str(site)!r})\n"
        "try:\n"
        "    casa.import_casa('casatools')\n"
        "    message, retryable = '', None\n"
        "except ExternalToolError as err:\n"
        "    message, retryable = str(err), err.retryable\n"
        "casa.CASA_SITE_CONFIG = good\n"
        "version = casa.import_casa('casatools').version_string()\n"
        "print(json.dumps({'message': message, 'retryable': retryable,\n"
        "                  'version': version}))\n"
    )
    out = _python(code, home, tmp_path)
    assert out["retryable"] is True
    assert str(site) in out["message"]
    assert "CASASITECONFIG" in out["message"]
    assert "scripts/setup.sh" in out["message"]
    if broken == "no_data":
        assert "no CASA measures data" in out["message"]
    else:
        assert "does not exist" in out["message"]
    assert out["version"]  # once fixed, CASA starts in the same process


def test_pool_worker_imports_casa_under_pipeline_argv(home, my_yaml, tmp_path):
    """Spawned workers inherit the parent's argv (``--config``); CASA still starts."""
    code = (
        "import json, sys\n"
        f"sys.argv = ['dsa110-contimg', 'process', '--config', {str(my_yaml)!r}]\n"
        "from dsa110_contimg.services._pool import make_process_pool\n"
        "from dsa110_contimg._casa import casa_version\n"
        "with make_process_pool(1) as pool:\n"
        "    version = pool.submit(casa_version).result(timeout=120)\n"
        "print(json.dumps({'version': version}))\n"
    )
    assert _python(code, home, tmp_path)["version"]


def _console_script() -> Path:
    """The installed ``dsa110-contimg`` script of the interpreter running the tests."""
    candidates = [Path(sys.executable).parent / "dsa110-contimg"]
    candidates.append(ROOT / ".venv" / "bin" / "dsa110-contimg")
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    pytest.fail(
        "console script dsa110-contimg not found next to "
        f"{sys.executable} or in {ROOT / '.venv' / 'bin'}; run ./scripts/setup.sh"
    )


@pytest.mark.wsclean
def test_console_script_process_with_config_and_calibration(home, tmp_path):
    """The README's real-data command, as a user runs it: a real subprocess."""
    from astropy.io import fits

    from dsa110_contimg.simulation import ObservationSpec, simulate_observation

    n_times = 6
    from dsa110_contimg.testing.calibrator_transit import transit_centred_start

    start = transit_centred_start(n_times)
    spec = ObservationSpec(
        start_time=start,
        n_groups=1,
        n_antennas=24,
        n_chan_per_subband=1,
        n_times=n_times,
        declination_deg=30.5,
        n_sources=3,
        min_flux_jy=0.5,
        max_flux_jy=2.0,
        field_radius_deg=0.6,
        add_calibrators=True,
        gains=True,
        seed=5,
    )
    sim = simulate_observation(spec, tmp_path / "incoming")
    config = tmp_path / "my.yaml"
    config.write_text(
        "calibration:\n"
        "  enabled: true\n"
        '  uvrange: ""\n'
        "imaging:\n"
        "  image_size: [256, 256]\n"
        "  niter: 500\n"
    )
    out = tmp_path / "out"
    cmd = [
        str(_console_script()),
        "process",
        "--config",
        str(config),
        "--env",
        "testing",
        "--incoming-dir",
        str(tmp_path / "incoming"),
        "--catalog",
        str(sim.sky_path),
        "--output-dir",
        str(out),
    ]
    proc = subprocess.run(
        cmd,
        env=_env(home),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "images: 1" in log
    (image,) = (out / "images").rglob("*-image.fits")
    provenance = fits.getheader(image)["DSACAL"]
    assert "3C286" in provenance
    assert "refant" in provenance  # real antenna names: chosen from the data
    assert not (home / ".casa" / "config.py").exists()


def test_tclean_child_gets_the_site_config_only_from_this_interpreter(monkeypatch):
    from dsa110_contimg._casa import CASA_SITE_CONFIG
    from dsa110_contimg.tools.tclean import _child_casa_environment

    monkeypatch.delenv("CASASITECONFIG", raising=False)
    own = _child_casa_environment(sys.executable)
    assert own["CASASITECONFIG"] == str(CASA_SITE_CONFIG)
    # as the CLI sets it for the whole process; a separate CASA keeps its own
    monkeypatch.setenv("CASASITECONFIG", str(CASA_SITE_CONFIG))
    assert "CASASITECONFIG" not in _child_casa_environment("/bin/sh")
