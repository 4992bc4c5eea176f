"""The variables, lightcurve and ingest-photometry commands, through CliRunner."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from dsa110_contimg.cli.variability_commands import (
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


# ------------------------------------------- block tables: images and mosaic


N_STEADY = 40
N_BLOCKS = 6
N_IMAGES = 4


def _block_tables(out: Path, image_scatter: float = 0.10) -> list[Path]:
    """Photometry tables of blocks of steady sources: 4 image rows and 1 mosaic row.

    The images see each source at a different primary-beam position, so their
    fluxes scatter by 10% (uncorrected beam errors); the mosaic combines them
    and is right to its 1% error. Mixing the two in one epoch makes steady
    sources look variable.
    """
    from astropy.table import Table

    from dsa110_contimg.pipeline.stages.photometry_stage import (
        PHOTOMETRY_COLUMNS,
        write_photometry_table,
    )

    rng = np.random.default_rng(11)
    truth = np.geomspace(0.2, 2.0, N_STEADY)
    names = [f"J{k:04d}+1618" for k in range(N_STEADY)]
    paths = []
    for b in range(N_BLOCKS):
        block = f"block_20230601T{b + 1:02d}0000"
        rows = []
        products = [
            (f"drift_20230601T{b:02d}{5 * i:02d}00_00", "image", image_scatter)
            for i in range(N_IMAGES)
        ] + [(block, "mosaic", 0.0)]
        for image_id, kind, beam_error in products:
            suffix = "mosaic" if kind == "mosaic" else "image"
            gain = 1.0 + beam_error * rng.standard_normal(N_STEADY)
            flux = truth * gain + 0.01 * truth * rng.standard_normal(N_STEADY)
            for k in range(N_STEADY):
                rows.append(
                    {
                        **dict.fromkeys(PHOTOMETRY_COLUMNS, 1.0),
                        "source_name": names[k],
                        "flux_jy": flux[k],
                        "peak_jy": flux[k],
                        "flux_err_jy": 0.01 * truth[k],
                        "snr": 100.0,
                        "flags": 0,
                        "mjd": 60096.0 + b / 24 + 1e-4,
                        "freq_hz": 1.405e9,
                        "image_kind": kind,
                        "image_path": f"/data/{image_id}-{suffix}.fits",
                        "image_id": image_id,
                        "pointing_dec_deg": 16.3,
                        "upper_limit_jy": float("nan"),
                    }
                )
        table = Table(
            rows=[[r[c] for c in PHOTOMETRY_COLUMNS] for r in rows],
            names=PHOTOMETRY_COLUMNS,
        )
        paths.append(write_photometry_table([table], out / f"photometry_{block}.csv"))
    return paths


def test_block_table_ingests_its_mosaic_as_the_epoch(tmp_path: Path) -> None:
    """Issue 13.4: the README recipe no longer mixes images and mosaics."""
    from dsa110_contimg.lightcurves import LightcurveStore

    paths = _block_tables(tmp_path)
    store = tmp_path / "store"
    for path in paths:
        result = _run(ingest_command, [str(path), "--store", str(store)])
        assert result.exit_code == 0, result.output
        block = path.stem.removeprefix("photometry_")
        assert f"epoch {block}_dec+16.30: {N_STEADY} rows" in result.output
    json_path = tmp_path / "vars.json"
    result = _run(
        variables_command, ["--store", str(store), "--json-out", str(json_path)]
    )
    assert result.exit_code == 0, result.output
    records = json.loads(json_path.read_text())
    assert len(records) == N_STEADY
    assert {r["n_epochs"] for r in records} == {N_BLOCKS}
    assert not [r["source_name"] for r in records if r["is_variable"]]
    rows = LightcurveStore(store).lightcurve("J0003+1618")
    assert set(rows["image_kind"]) == {"mosaic"}
    assert set(rows["freq_hz"]) == {1.405e9} and set(rows["snr"]) == {100.0}
    assert list(rows["image_id"]) == [p.stem.removeprefix("photometry_") for p in paths]


def test_images_of_a_block_are_one_epoch_each(tmp_path: Path) -> None:
    paths = _block_tables(tmp_path, image_scatter=0.0)
    store = tmp_path / "store"
    result = _run(
        ingest_command, [str(paths[0]), "--kind", "image", "--store", str(store)]
    )
    assert result.exit_code == 0, result.output
    assert result.output.count(f": {N_STEADY} rows") == N_IMAGES
    assert "drift_20230600T000000_00_dec+16.30" not in result.output
    assert "epoch drift_20230601T000000_00_dec+16.30" in result.output
    one_name = _run(
        ingest_command,
        [str(paths[1]), "--kind", "image", "--epoch-id", "x", "--store", str(store)],
    )
    assert one_name.exit_code == 1
    assert f"{N_IMAGES} image products" in one_name.output


def test_a_mixed_table_without_a_choice_is_an_error(tmp_path: Path) -> None:
    from dsa110_contimg.exceptions import InputDataError
    from dsa110_contimg.lightcurves import LightcurveStore
    from dsa110_contimg.variability import ingest_photometry_csv

    path = _block_tables(tmp_path)[0]
    store = LightcurveStore(tmp_path / "store")
    with pytest.raises(InputDataError, match="mixes image kinds"):
        ingest_photometry_csv(store, path, epoch_id="block_X")
    result = ingest_photometry_csv(store, path, epoch_id="block_X", kind="mosaic")
    assert result.n_rows == N_STEADY
    images_only = tmp_path / "images.csv"
    text = path.read_text().splitlines()
    images_only.write_text("\n".join(line for line in text if ",mosaic," not in line))
    none = _run(ingest_command, [str(images_only), "--store", str(tmp_path / "s2")])
    assert none.exit_code == 1
    assert "no mosaic rows" in none.output and "--kind image" in none.output
