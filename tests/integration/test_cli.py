"""The dsa110-contimg command and the seed's unified driver, run in-process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from dsa110_contimg.cli import cli

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def runner(monkeypatch) -> CliRunner:
    monkeypatch.delenv("DSA110_ENV", raising=False)
    return CliRunner()


@pytest.mark.wsclean
def test_demo_runs_end_to_end(runner, tmp_path):
    result = runner.invoke(
        cli, ["demo", "--env", "testing", "--output-dir", str(tmp_path / "demo")]
    )
    assert result.exit_code == 0, result.output
    assert "median |flux error|" in result.output
    assert "photometry table:" in result.output
    assert (tmp_path / "demo" / "products" / "photometry.csv").exists()
    # the second run reuses the simulation and every product
    again = runner.invoke(
        cli, ["demo", "--env", "testing", "--output-dir", str(tmp_path / "demo")]
    )
    assert again.exit_code == 0, again.output
    assert "reusing simulated observation" in again.output


@pytest.mark.wsclean
def test_process_on_foreign_directory(runner, tiny_group_dir, tmp_path):
    catalog = tiny_group_dir / "truth" / "sky.csv"
    result = runner.invoke(
        cli,
        [
            "process",
            "--env",
            "testing",
            "--incoming-dir",
            str(tiny_group_dir),
            "--catalog",
            str(catalog),
            "--output-dir",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 0, result.output
    table = tmp_path / "out" / "products" / "photometry.csv"
    assert f"photometry table: {table}" in result.output
    header = table.read_text().splitlines()[0].split(",")
    for col in (
        "source_name",
        "ra_deg",
        "dec_deg",
        "flux_jy",
        "flux_err_jy",
        "mjd",
        "image_path",
    ):
        assert col in header


def test_process_reports_missing_subband_and_exits_1(runner, tiny_group_dir, tmp_path):
    next(tiny_group_dir.glob("*_sb05.hdf5")).unlink()
    result = runner.invoke(
        cli,
        [
            "process",
            "--env",
            "testing",
            "--incoming-dir",
            str(tiny_group_dir),
            "--catalog",
            str(tiny_group_dir / "truth" / "sky.csv"),
            "--output-dir",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 1
    assert "sb05" in result.output
    assert "incomplete_policy" in result.output


def test_unknown_config_key_names_it(runner, tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("imaging:\n  nitre: 10\n")
    result = runner.invoke(cli, ["config", "show", "--config", str(cfg)])
    assert result.exit_code == 1
    assert "imaging.nitre" in result.output
    assert "niter" in result.output


def test_config_show_prints_resolved_values(runner):
    result = runner.invoke(
        cli, ["config", "show", "--env", "testing", "--set", "imaging.niter=123"]
    )
    assert result.exit_code == 0, result.output
    assert "niter: 123" in result.output


def _paths_in(tree, prefix=""):
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _paths_in(value, f"{prefix}{key}.")
    elif isinstance(tree, Path):
        yield prefix.rstrip("."), tree


def test_output_dir_holds_every_path_the_pipeline_writes(tmp_path, monkeypatch):
    """Issue 15.18: the light-curve store (and a log file) go under --output-dir."""
    from dsa110_contimg.utils.command_line import load_config

    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "my.yaml"
    cfg.write_text(
        "variability:\n  store_dir: shared/lightcurves\n"
        "logging:\n  file: logs/pipeline.log\n"
    )
    out = tmp_path / "run1"
    config = load_config(str(cfg), None, (), str(out))
    inputs = {
        "paths.catalog_path",
        "calibration.calibrator_catalog",
        "imaging.wsclean_path",
        "imaging.casa_python",
    }
    written = {
        key: path
        for key, path in _paths_in(config.model_dump())
        if key not in inputs and not key.startswith("simulation.")
    }
    assert "variability.store_dir" in written and "logging.file" in written
    outside = {k: p for k, p in written.items() if not p.is_relative_to(out)}
    assert not outside, outside
    assert config.variability.store_dir == out / "lightcurves"
    assert config.logging.file == out / "logs" / "pipeline.log"
    # without --output-dir a relative store is fixed at load time (not at use)
    plain = load_config(str(cfg), None, ())
    assert plain.variability.store_dir == tmp_path / "shared" / "lightcurves"


def test_health_fails_on_unwritable_directory(runner, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = runner.invoke(
        cli,
        [
            "health",
            "--env",
            "testing",
            "--set",
            f"paths.images_dir={blocker / 'images'}",
            "--set",
            f"paths.state_db={tmp_path / 'db.sqlite3'}",
        ],
    )
    assert result.exit_code == 1
    assert "directories" in result.output
    assert str(blocker / "images") in result.output


def test_driver_health_mode_exit_codes(tmp_path):
    ok = subprocess.run(
        [
            sys.executable,
            str(ROOT / "pipeline" / "main_driver_unified.py"),
            "--env",
            "testing",
            "--mode",
            "health",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(Path.home()),
            "DSA110_CONFIG_DIR": str(ROOT / "config"),
        },
    )
    for name in ("directories", "disk_space", "wsclean", "casacore_data", "database"):
        assert name in ok.stdout
    assert ok.returncode == (0 if "unhealthy" not in ok.stdout else 1)
    bad = subprocess.run(
        [
            sys.executable,
            str(ROOT / "pipeline" / "main_driver_unified.py"),
            "--mode",
            "single",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2
    assert "--block-end-time" in bad.stderr


def _tmp_paths(base: Path) -> list[str]:
    names = (
        "data_dir",
        "incoming_dir",
        "log_dir",
        "ms_stage1_dir",
        "cal_tables_dir",
        "images_dir",
        "mosaics_dir",
        "products_dir",
    )
    sets = []
    for name in names:
        sets += ["--set", f"paths.{name}={base / name}"]
    return [*sets, "--set", f"paths.state_db={base / 'db' / 'state.sqlite3'}"]


def test_health_creates_nothing(runner, tmp_path):
    base = tmp_path / "site"
    base.mkdir()
    result = runner.invoke(cli, ["health", "--env", "testing", *_tmp_paths(base)])
    assert "directories" in result.output
    assert "database" in result.output
    assert "db migrate" in result.output  # the missing database is reported
    assert list(base.iterdir()) == []


def test_db_migrate_then_status(runner, tmp_path):
    sets = _tmp_paths(tmp_path)
    missing = runner.invoke(cli, ["status", "--env", "testing", *sets])
    assert missing.exit_code != 0
    assert "db migrate" in missing.output
    made = runner.invoke(cli, ["db", "migrate", "--env", "testing", *sets])
    assert made.exit_code == 0, made.output
    assert "schema version" in made.output
    assert (tmp_path / "db" / "state.sqlite3").is_file()
    status = runner.invoke(cli, ["status", "--env", "testing", *sets])
    assert status.exit_code == 0, status.output
    assert "jobs:" in status.output


@pytest.mark.parametrize(
    ("flag", "level"), [("-q", "WARNING"), ("-v", "DEBUG"), (None, "INFO")]
)
def test_quiet_and_verbose_set_the_console_level(runner, flag, level):
    import logging

    from dsa110_contimg.utils.logging import reset_logging

    args = ["config", "show", "--env", "development", *([flag] if flag else [])]
    try:
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, result.output
        handlers = [
            h
            for h in logging.getLogger("dsa110_contimg").handlers
            if getattr(h, "_dsa110_handler", False)
        ]
        assert [logging.getLevelName(h.level) for h in handlers] == [level]
    finally:
        reset_logging()


_COMMANDS = {
    "alerts", "batch", "calibrators", "cancel", "config", "convert", "db",
    "dead-letters", "demo",
    "health", "ingest-photometry", "intake", "lightcurve", "process", "requeue",
    "serve", "simulate", "single", "status", "stream", "variables",
}  # fmt: skip


def _python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return done.stdout


def test_commands_are_added_whichever_module_is_imported_first():
    """Issue 16: the group is built explicitly, not by import side effects."""
    code = (
        "import dsa110_contimg.cli.service_commands, "
        "dsa110_contimg.cli.variability_commands\n"
        "from dsa110_contimg.cli import cli\n"
        "print(' '.join(sorted(cli.commands)))\n"
        "print(' '.join(sorted(cli.commands['db'].commands)))"
    )
    commands, db = _python(code).splitlines()
    assert set(commands.split()) == _COMMANDS
    assert db.split() == ["maintain", "migrate", "revision", "upgrade"]
    assert set(cli.commands) == _COMMANDS


def test_stream_program_does_not_load_the_command_line():
    """``python -m dsa110_contimg.services`` runs the stream without the CLI."""
    code = (
        "import sys\nimport dsa110_contimg.services.__main__\n"
        "print(sorted(m for m in sys.modules if m.startswith('dsa110_contimg.cli')))"
    )
    assert _python(code).strip() == "[]"
    from dsa110_contimg.services._program import stream_command

    assert cli.commands["stream"] is stream_command


def test_pipeline_error_is_translated_when_a_command_runs_alone(runner, tmp_path):
    """One translator: the group and each command alone print the same error."""
    from dsa110_contimg.cli.pipeline_commands import config_group
    from dsa110_contimg.cli.service_commands import status_command

    missing = tmp_path / "none.yaml"
    for command, args in (
        (cli, ["config", "show", "--config", str(missing)]),
        (config_group, ["show", "--config", str(missing)]),
    ):
        result = runner.invoke(command, args)
        assert result.exit_code == 1, result.output
        assert f"Error: ConfigError: config file {missing} does not exist" in (
            result.output
        )
    db = tmp_path / "absent.sqlite3"
    for command, args in ((cli, ["status"]), (status_command, [])):
        result = runner.invoke(
            command, [*args, "--env", "testing", "--set", f"paths.state_db={db}"]
        )
        assert result.exit_code == 1, result.output
        assert f"Error: StateError: state database {db} does not exist" in (
            result.output
        )
