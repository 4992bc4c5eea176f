"""The API over real pipeline output: one batch run with the fake imager.

Known truth: the block, its images and its mosaic that the batch recorded
are listed with their files, the FITS headers say the fake imager made them,
the previews render, the catalogue's sources are found by cone and their
light curves hold the epoch the variability analyzer ingested.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402

from dsa110_contimg.pipeline.batch import run_batch  # noqa: E402
from dsa110_contimg.utils.config_loader import load_pipeline_config  # noqa: E402
from dsa110_contimg.web import create_app  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.casa]

_KEYS = {
    "incoming_dir": "incoming",
    "ms_stage1_dir": "ms",
    "images_dir": "images",
    "products_dir": "products",
    "log_dir": "logs",
    "mosaics_dir": "mosaics",
    "cal_tables_dir": "cal",
}


@pytest.fixture(scope="module")
def served(tiny_observation, tmp_path_factory):
    pytest.importorskip("casacore.tables")
    from dsa110_contimg.services.variability_analyzer._work import update_variability

    base = tmp_path_factory.mktemp("webchain")
    overrides = {f"paths.{k}": str(base / v) for k, v in _KEYS.items()}
    overrides.update(
        {
            "paths.data_dir": str(base),
            "paths.state_db": str(base / "pipeline.sqlite3"),
            "paths.catalog_path": str(tiny_observation.sky_path),
            "variability.store_dir": str(base / "lightcurves"),
            "imaging.backend": "fake",
            "imaging.fake_sky_path": str(tiny_observation.sky_path),
        }
    )
    config = load_pipeline_config(environment="testing", overrides=overrides, env={})
    result = run_batch(
        config, tiny_observation.output_dir, catalog_path=tiny_observation.sky_path
    )
    assert result.success, [b.errors for b in result.blocks]
    block = result.blocks[0]
    update_variability(
        str(result.photometry_path), block_id=block.block_id, cfg=config.variability
    )
    app = create_app(config, environ={})
    with TestClient(app) as client:
        yield client, result, tiny_observation


def test_block_images_and_mosaic_of_a_real_run(served) -> None:
    client, result, _ = served
    block = result.blocks[0]
    blocks = client.get("/api/blocks").json()
    assert [b["block_id"] for b in blocks["items"]] == [block.block_id]
    assert blocks["items"][0]["success"] is True
    detail = client.get(f"/api/blocks/{block.block_id}").json()
    paths = {p["path"] for p in detail["products"]}
    assert set(block.output_files["image"]) <= paths
    assert all(p["exists"] for p in detail["products"])
    assert len(detail["quality"]) == len(block.output_files["image"])
    images = client.get("/api/images").json()["items"]
    image = client.get(f"/api/images/{images[0]['id']}").json()
    assert image["header"]["DSAIMGR"] == "fake"
    assert image["quality"]["thermal_rms_jy"] > 0
    png = client.get(image["preview_url"])
    assert png.headers["content-type"] == "image/png"
    from matplotlib import image as mpimg

    assert mpimg.imread(io.BytesIO(png.content)).ndim == 3
    fits_bytes = client.get(image["fits_url"]).content
    assert fits_bytes == Path(image["product"]["path"]).read_bytes()
    mosaics = client.get("/api/mosaics").json()["items"]
    assert [m["path"] for m in mosaics] == block.output_files["mosaic"]
    mosaic = client.get(f"/api/mosaics/{mosaics[0]['id']}").json()
    assert any(m["status"] == "used" for m in mosaic["mosaic_members"])
    footprints = client.get("/api/coverage").json()["items"]
    assert {f["kind"] for f in footprints} == {"image", "mosaic"}
    for foot in footprints:
        assert foot["dec_deg"] == pytest.approx(foot["pointing_dec_deg"], abs=2.0)
        assert foot["width_deg"] > 0 and foot["mjd_obs"] > 50000


def test_sources_and_light_curves_of_a_real_run(served) -> None:
    client, _, observation = served
    sky = observation.sky
    name, ra, dec = str(sky.name[0]), float(sky.ra_deg[0]), float(sky.dec_deg[0])
    cone = client.get(
        "/api/sources", params={"ra": ra, "dec": dec, "radius_deg": 0.01}
    ).json()
    assert cone["items"][0]["source_name"] == name
    assert cone["items"][0]["separation_deg"] == pytest.approx(0.0, abs=1e-9)
    curve = client.get(f"/api/lightcurves/{name}").json()
    assert curve["n_points"] >= 1
    flux = np.array([p["flux_jy"] for p in curve["points"]])
    assert np.all(np.isfinite(flux))
    assert client.get("/api/variability").json()["total"] == len(sky.name)


def test_figures_of_a_real_run(served) -> None:
    client, result, _ = served
    body = client.get("/api/metrics", params={"window_h": 24}).json()
    assert body["block_success_rate"] == 1.0
    assert body["n_blocks_recorded"] == len(result.blocks)
    assert body["n_images_checked"] >= 1
    assert body["image_rms_ratio_median"] > 0
    assert "dsa110_state_db_up 1.0" in client.get("/metrics").text
