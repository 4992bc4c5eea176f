"""The variables, lightcurve and ingest-photometry commands, through CliRunner."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from dsa110_contimg import cli as _cli  # noqa: F401  (import the group first)
from dsa110_contimg.cli_variability import (
    ingest_command,
    lightcurve_command,
    variables_command,
)
from dsa110_contimg.simulation._lightcurves import simulate_lightcurves

pytestmark = pytest.mark.integration

JSON_KEYS = {
    "source_name",
    "eta",
    "v",
    "ese_candidate",
    "ese_significance",
    "ese_depth",
    "ese_duration_days",
    "ese_center_mjd",
}


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("variability_cli")
    sim = simulate_lightcurves(
        n_stable=300,
        n_ese=4,
        n_red_noise=4,
        n_epochs=150,
        gain_error_frac=0.0,
        flux_range_jy=(0.05, 2.0),
        variable_flux_range_jy=(0.2, 1.0),
        ese_depths=(0.4,),
        ese_durations_days=(30.0,),
        rng=np.random.default_rng(8),
    )
    path = out / "lightcurves.csv"
    sim.measurements["source_name", "mjd", "flux_jy", "flux_err_jy"].write(
        path, format="ascii.csv"
    )
    return sim, path, out


def _run(command, args: list[str]):
    result = CliRunner().invoke(command, ["--env", "testing", *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def test_variables_from_csv(simulated, tmp_path: Path) -> None:
    sim, path, _ = simulated
    json_path, png = tmp_path / "vars.json", tmp_path / "eta_v.png"
    result = _run(
        variables_command,
        ["--input", str(path), "--json-out", str(json_path), "--plot", str(png)],
    )
    assert result.exit_code == 0, result.output
    print("\n" + result.output)
    records = json.loads(json_path.read_text())
    assert len(records) == len(sim.truth)
    assert all(set(r) >= JSON_KEYS for r in records)
    by_name = {r["source_name"]: r for r in records}
    kinds = dict(zip(sim.truth["source_name"], sim.truth["kind"], strict=True))
    ese = [by_name[n] for n, k in kinds.items() if k == "ese"]
    stable = [by_name[n] for n, k in kinds.items() if k == "stable"]
    assert all(r["ese_candidate"] for r in ese)
    assert not any(r["ese_candidate"] for r in stable)
    assert all(abs(r["ese_depth"] - 0.4) < 0.1 for r in ese)
    assert png.stat().st_size > 10_000


def test_lightcurve_from_csv_with_ese_fit(simulated, tmp_path: Path) -> None:
    sim, path, _ = simulated
    name = str(sim.truth["source_name"][sim.truth["kind"] == "ese"][0])
    png = tmp_path / "lc.png"
    result = _run(lightcurve_command, [name, "--input", str(path), "--png", str(png)])
    assert result.exit_code == 0, result.output
    assert "ESE: candidate=True" in result.output
    assert png.stat().st_size > 10_000
    missing = _run(lightcurve_command, ["nobody", "--input", str(path)])
    assert missing.exit_code == 1
    assert "no measurements of source 'nobody'" in missing.output


def test_store_commands(simulated, tmp_path: Path) -> None:
    sim, _, _ = simulated
    store = tmp_path / "store"
    for epoch_id, table in itertools.islice(sim.epoch_tables(), 100):
        csv_path = tmp_path / f"{epoch_id}.csv"
        table.write(csv_path, format="ascii.csv")
        result = _run(
            ingest_command,
            [str(csv_path), "--epoch-id", epoch_id, "--store", str(store)],
        )
        assert result.exit_code == 0, result.output
    again = _run(
        ingest_command, [str(csv_path), "--epoch-id", epoch_id, "--store", str(store)]
    )
    assert again.exit_code == 1
    assert "already in the light-curve store" in again.output
    replaced = _run(
        ingest_command,
        [str(csv_path), "--epoch-id", epoch_id, "--store", str(store), "--replace"],
    )
    assert replaced.exit_code == 0, replaced.output
    json_path = tmp_path / "store.json"
    result = _run(
        variables_command,
        ["--store", str(store), "--search-all", "--json-out", str(json_path)],
    )
    assert result.exit_code == 0, result.output
    records = json.loads(json_path.read_text())
    assert {r["n_epochs"] for r in records} == {100}
    name = str(sim.truth["source_name"][sim.truth["kind"] == "stable"][0])
    png = tmp_path / "stable.png"
    result = _run(lightcurve_command, [name, "--store", str(store), "--png", str(png)])
    assert result.exit_code == 0, result.output
    assert "candidate=False" in result.output and png.exists()
    empty = _run(variables_command, ["--store", str(tmp_path / "none")])
    assert empty.exit_code == 1
    assert "no light-curve store" in empty.output
