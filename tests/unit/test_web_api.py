"""The HTTP API in process (TestClient, no sockets): every endpoint.

The state database is `_filled_state` (known figures); products are small
FITS and PNG files written here; the light curves are a store of three
catalogue sources, one of them strongly variable.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("prometheus_client")

from _filled_state import NOW, fill_state  # noqa: E402
from astropy.io import fits  # noqa: E402
from astropy.table import Table  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from dsa110_contimg.lightcurves import LightcurveStore  # noqa: E402
from dsa110_contimg.state.db import connect  # noqa: E402
from dsa110_contimg.state.jobs import get_job  # noqa: E402
from dsa110_contimg.state.mosaics import record_mosaic_members  # noqa: E402
from dsa110_contimg.state.products import record_product  # noqa: E402
from dsa110_contimg.tables import JOBS, LIGHTCURVE_STORE, VARIABILITY_RESULTS  # noqa: E402
from dsa110_contimg.utils.config import load_pipeline_config  # noqa: E402
from dsa110_contimg.web import create_app  # noqa: E402
from dsa110_contimg.web.errors import ERROR_STATUS, status_of  # noqa: E402

TOKEN_ENV = "DSA110_TEST_OPERATOR_TOKEN"
TOKEN = "s3cret-operator-token"
BLOCK = "block_20250102T1100"

_DIRS = {
    "incoming_dir": "incoming",
    "ms_stage1_dir": "ms",
    "images_dir": "images",
    "products_dir": "products",
    "log_dir": "logs",
    "mosaics_dir": "mosaics",
    "cal_tables_dir": "cal",
}


def _config(base: Path, **extra):
    overrides = {f"paths.{k}": str(base / v) for k, v in _DIRS.items()}
    overrides.update(
        {
            "paths.data_dir": str(base),
            "paths.state_db": str(base / "state.sqlite3"),
            "paths.catalog_path": str(base / "catalog.csv"),
            "variability.store_dir": str(base / "lightcurves"),
            "services.ms_chunk_duration_min": 5.0,
            "web.operator_token_env": TOKEN_ENV,
            "web.page_limit_max": 100,
        }
    )
    overrides.update(extra)
    return load_pipeline_config(environment="testing", overrides=overrides, env={})


def _fits(path: Path, value: float, shape=(1, 1, 64, 64)) -> None:
    data = np.full(shape, value, dtype=np.float32)
    data[..., 32, 32] = 10 * value
    header = fits.Header({"BUNIT": "JY/BEAM", "OBJECT": path.stem, "BMAJ": 0.01})
    ny, nx = shape[-2:]
    axes = [("RA---SIN", 10.0, -0.01, nx), ("DEC--SIN", 16.3, 0.01, ny)]
    axes += [("FREQ", 1.4e9, 1e6, 1), ("STOKES", 1.0, 1.0, 1)][: len(shape) - 2]
    for i, (ctype, crval, cdelt, n) in enumerate(axes, start=1):
        header[f"CTYPE{i}"] = ctype
        header[f"CRVAL{i}"] = crval
        header[f"CDELT{i}"] = cdelt
        header[f"CRPIX{i}"] = (n + 1) / 2
    header["DATE-OBS"] = "2025-01-02T11:00:00"
    header["MJD-OBS"] = 60677.458333
    header["DSAPTDEC"] = 16.3
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.writeto(path, data, header)


def _store(root: Path) -> None:
    store = LightcurveStore(root)
    rng = np.random.default_rng(3)
    names = np.array(["SRC_A", "SRC_B", "SRC_C"])
    for k in range(10):
        flux = np.array([1.0, 0.3 if k % 2 else 0.7, 2.0])
        flux = flux + 0.001 * rng.standard_normal(3)
        store.ingest_epoch(
            f"E{k:02d}",
            Table(
                {
                    "source_name": names,
                    "mjd": np.full(3, 60600.0 + k),
                    "flux_jy": flux,
                    "flux_err_jy": np.full(3, 0.01),
                    "flags": np.zeros(3, dtype=np.int32),
                    "image_path": np.full(3, f"img{k}.fits"),
                }
            ),
        )


def _site(base: Path) -> dict[str, object]:
    config = _config(base)
    for sub in _DIRS.values():
        (base / sub).mkdir(parents=True, exist_ok=True)
    conn = fill_state(base / "state.sqlite3")
    image = base / "images" / "img1.fits"
    _fits(image, 0.001)
    mosaic = base / "mosaics" / "mosaic_1100.fits"
    _fits(mosaic, 0.002, shape=(80, 100))
    png = base / "images" / "img1.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\nfake-but-served-as-is")
    summary = base / "products" / f"summary_{BLOCK}.html"
    summary.write_text("<html>block</html>")
    outside = base.parent / f"{base.name}_outside"
    outside.mkdir(exist_ok=True)
    secret = outside / "secret.fits"
    _fits(secret, 5.0)
    link = base / "images" / "link.fits"
    link.symlink_to(secret)
    ids = {}
    for kind, path in (
        ("image", image),
        ("preview", png),
        ("mosaic", mosaic),
        ("summary", summary),
        ("image", secret),
        ("image", link),
    ):
        record_product(conn, block_id=BLOCK, kind=kind, path=path)
        ids[str(path)] = conn.execute(
            "SELECT id FROM products WHERE path = ?", (str(path),)
        ).fetchone()[0]
    record_mosaic_members(
        conn, block_id=BLOCK, mosaic_path=mosaic, members=[(str(image), "used", None)]
    )
    conn.close()
    (base / "catalog.csv").write_text(
        "name,ra_deg,dec_deg,flux_jy\n"
        "SRC_A,10.0,16.3,1.0\nSRC_B,10.5,16.3,0.5\nSRC_C,200.0,-10.0,2.0\n"
    )
    _store(base / "lightcurves")
    return {
        "config": config,
        "base": base,
        "image_id": ids[str(image)],
        "png_id": ids[str(png)],
        "mosaic_id": ids[str(mosaic)],
        "summary_id": ids[str(summary)],
        "outside_id": ids[str(secret)],
        "link_id": ids[str(link)],
        "image": image,
        "secret": secret,
    }


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    return _site(tmp_path_factory.mktemp("web"))


@pytest.fixture(scope="module")
def client(site):
    app = create_app(site["config"], clock=lambda: NOW, environ={})
    with TestClient(app) as c:
        yield c


@pytest.fixture()
def fresh(tmp_path):
    """A site of its own (actions change it), with the token configured."""
    return _site(tmp_path / "site")


def _operator_client(site, environ=None, **web):
    config = site["config"]
    if web:
        config = _config(site["base"], **{f"web.{k}": v for k, v in web.items()})
    env = {TOKEN_ENV: TOKEN} if environ is None else environ
    return TestClient(create_app(config, clock=lambda: NOW, environ=env))


# ---------------------------------------------------------------- schema, errors


def test_openapi_lists_every_endpoint_with_table_fields(client) -> None:
    schema = client.get("/api/openapi.json").json()
    paths = set(schema["paths"])
    for path in (
        "/api/health",
        "/api/metrics",
        "/api/metrics/backlog",
        "/api/queue",
        "/api/jobs",
        "/api/jobs/{job_id}",
        "/api/quarantine",
        "/api/blocks/{block_id}",
        "/api/images/{product_id}",
        "/api/mosaics/{product_id}",
        "/api/products/{product_id}/preview.png",
        "/api/products/{product_id}/file",
        "/api/sources",
        "/api/lightcurves/{source_name}",
        "/api/variability",
        "/api/candidates",
        "/api/calibration",
        "/api/calibration/strips",
        "/api/actions/requeue/{job_id}",
        "/api/actions/intake/pause",
        "/metrics",
    ):
        assert path in paths, path
    models = schema["components"]["schemas"]
    assert tuple(models["Job"]["properties"]) == JOBS.names
    assert tuple(models["VariabilityResult"]["properties"]) == VARIABILITY_RESULTS.names
    assert tuple(models["LightcurvePoint"]["properties"]) == LIGHTCURVE_STORE.names
    assert "(Jy)" in models["LightcurvePoint"]["properties"]["flux_jy"]["description"]
    for name in (
        "Figures",
        "QueueModel",
        "BacklogPoint",
        "HealthReport",
        "ImageDetail",
    ):
        assert name in models, name
    # no page that would load scripts from the internet
    assert client.get("/api/docs").status_code == 404


def test_error_table_maps_the_pipeline_classes() -> None:
    from dsa110_contimg.exceptions import ConfigError, InputDataError, StateError
    from dsa110_contimg.web.errors import ForbiddenError, NotFoundError

    assert status_of(NotFoundError("x")) == 404
    assert status_of(ForbiddenError("x")) == 403
    assert status_of(InputDataError("x")) == 400
    assert status_of(StateError("x")) == 409
    assert status_of(ConfigError("x")) == 500
    assert status_of(RuntimeError("x")) == 500
    classes = [cls for cls, _ in ERROR_STATUS]
    for i, cls in enumerate(classes):  # a subclass before its base, or never reached
        assert not any(issubclass(cls, base) for base in classes[:i]), cls


# ---------------------------------------------------------------- pipeline


def test_health_runs_every_check(client) -> None:
    body = client.get("/api/health").json()
    names = [c["name"] for c in body["checks"]]
    assert names == [
        "directories",
        "disk_space",
        "wsclean",
        "casacore_data",
        "database",
        "python_packages",
    ]
    assert body["status"] in {"healthy", "warning", "unhealthy"}


def test_metrics_figures_are_the_known_ones(client) -> None:
    body = client.get("/api/metrics", params={"window_h": 1}).json()
    assert body["real_time_factor"] == pytest.approx(0.8)
    assert body["stages"]["convert_group"]["success_rate"] == pytest.approx(2 / 3)
    assert body["stages"]["process_block"]["mean_s"] == pytest.approx(300.0)
    assert body["backlog"] == 2
    assert body["processed_over_arrived"] == pytest.approx(0.5)
    assert body["ingest_lag_median_s"] == pytest.approx(360.0)
    assert body["failures_by_class"] == {"InputDataError": 1}
    assert body["image_rms_ratio_median"] == pytest.approx(1.5)
    ages = {round(s["dec_strip_deg"], 2): s["age_h"] for s in body["calibration"]}
    assert ages[16.3] == pytest.approx(2.0, abs=1e-6)
    # added with the one figures computation (what /metrics and the alerts use)
    assert body["ingest_lag_s"] == pytest.approx(600.0)
    assert (body["n_groups_arrived"], body["n_groups_processed"]) == (4, 2)
    assert all(s["in_use"] for s in body["calibration"])


@pytest.mark.parametrize(
    ("params", "name"),
    [({"window_h": 0}, "window_h"), ({"window_h": "abc"}, "window_h")],
)
def test_metrics_bad_window_is_422_naming_it(client, params, name) -> None:
    response = client.get("/api/metrics", params=params)
    assert response.status_code == 422
    assert f"query parameter '{name}'" in response.json()["detail"]


def test_backlog_series(client) -> None:
    points = client.get("/api/metrics/backlog", params={"points": 3}).json()
    assert [p["backlog"] for p in points] == [0, 1, 2]
    assert client.get("/api/metrics/backlog", params={"points": 1}).status_code == 422


def test_queue_and_intake(client) -> None:
    body = client.get("/api/queue").json()
    assert body["by_kind"]["convert_group"]["pending"] == 1
    assert body["backlog"]["n_runnable"] == 1
    assert body["intake"]["open"] is True
    assert client.get("/api/intake").json()["hold"] is None


def test_jobs_pagination(client) -> None:
    first = client.get("/api/jobs", params={"limit": 3}).json()
    assert [j["id"] for j in first["items"]] == [8, 7, 6]
    assert (first["total"], first["next_offset"]) == (8, 3)
    last = client.get("/api/jobs", params={"limit": 3, "offset": 6}).json()
    assert [j["id"] for j in last["items"]] == [2, 1]
    assert last["next_offset"] is None
    assert client.get("/api/jobs", params={"offset": 50}).json()["items"] == []
    assert first["items"][0]["payload_json"] == {"key": "block_20250102T0900"}


def _all_pages(client, path: str, params: dict) -> list[dict]:
    """Follow next_cursor from the first page to the last."""
    pages = [client.get(path, params=params).json()]
    while pages[-1]["next_cursor"] is not None:
        nxt = {**params, "after": pages[-1]["next_cursor"]}
        pages.append(client.get(path, params=nxt).json())
        assert len(pages) < 20
    return pages


def test_jobs_keyset_pagination(fresh) -> None:
    from datetime import timedelta

    from dsa110_contimg.state.jobs import JobSpec, enqueue_job

    client = _operator_client(fresh)
    pages = _all_pages(client, "/api/jobs", {"limit": 3})
    assert [[j["id"] for j in p["items"]] for p in pages] == [
        [8, 7, 6],
        [5, 4, 3],
        [2, 1],
    ]
    assert all(p["total"] == 8 for p in pages)
    assert pages[1]["next_offset"] is None  # a cursor page has no offset
    # a job enqueued after the first page was read: offset paging shows job 6
    # again on page two, the cursor page starts after it all the same
    conn = connect(fresh["base"] / "state.sqlite3")
    enqueue_job(
        conn,
        JobSpec("convert_group", "2025-01-02T12:00:00", "2025-01-02T12:00:00"),
        now=NOW + timedelta(minutes=1),
    )
    conn.close()
    by_offset = client.get("/api/jobs", params={"limit": 3, "offset": 3}).json()
    assert [j["id"] for j in by_offset["items"]] == [6, 5, 4]
    after = client.get(
        "/api/jobs", params={"limit": 3, "after": pages[0]["next_cursor"]}
    ).json()
    assert [j["id"] for j in after["items"]] == [5, 4, 3] and after["total"] == 9
    # filters and the listings built on jobs page by key too
    failures = _all_pages(client, "/api/failures", {"limit": 1})
    assert [p["items"][0]["id"] for p in failures] == [8, 3]


def test_keyset_pagination_of_products_events_and_sources(client) -> None:
    images = _all_pages(client, "/api/images", {"limit": 2})
    ids = [i["id"] for p in images for i in p["items"]]
    everything = client.get("/api/images", params={"limit": 50}).json()
    assert ids == [i["id"] for i in everything["items"]] and len(ids) == 3
    assert ids == sorted(ids, reverse=True)
    events = _all_pages(client, "/api/events", {"limit": 3})
    seen = [e["id"] for p in events for e in p["items"]]
    assert seen == sorted(seen, reverse=True) and len(seen) == events[0]["total"]
    names = _all_pages(client, "/api/sources", {"limit": 2})
    assert [[s["source_name"] for s in p["items"]] for p in names] == [
        ["SRC_A", "SRC_B"],
        ["SRC_C"],
    ]
    cone = {"ra": 10.4, "dec": 16.3, "radius_deg": 1.0, "limit": 1}
    near = _all_pages(client, "/api/sources", cone)
    assert [p["items"][0]["source_name"] for p in near] == ["SRC_B", "SRC_A"]


def test_keyset_pagination_errors(client) -> None:
    cursor = client.get("/api/jobs", params={"limit": 2}).json()["next_cursor"]
    both = client.get("/api/jobs", params={"after": cursor, "offset": 2})
    assert both.status_code == 400 and "'after'" in both.json()["detail"]
    junk = client.get("/api/jobs", params={"after": "not-a-cursor"})
    assert junk.status_code == 400 and "next_cursor" in junk.json()["detail"]
    name_cursor = client.get("/api/sources", params={"limit": 1}).json()["next_cursor"]
    other = client.get("/api/jobs", params={"after": name_cursor})
    assert other.status_code == 400 and "this listing" in other.json()["detail"]
    offset_only = client.get("/api/rejected", params={"after": cursor})
    assert offset_only.status_code == 400 and "offset" in offset_only.json()["detail"]
    assert client.get("/api/rejected").json()["next_cursor"] is None


def test_jobs_filters(client) -> None:
    failed = client.get("/api/jobs", params={"state": "failed"}).json()
    assert [j["id"] for j in failed["items"]] == [3]
    both = client.get(
        "/api/jobs", params=[("state", "failed"), ("state", "pending")]
    ).json()
    assert sorted(j["id"] for j in both["items"]) == [3, 5]
    blocks = client.get("/api/jobs", params={"kind": "process_block"}).json()
    assert blocks["total"] == 3


@pytest.mark.parametrize(
    ("params", "name", "status"),
    [
        ({"state": "bogus"}, "state", 422),
        ({"kind": "nope"}, "kind", 422),
        ({"limit": 0}, "limit", 422),
        ({"offset": -1}, "offset", 422),
        ({"limit": "many"}, "limit", 422),
        ({"limit": 101}, "limit", 400),
    ],
)
def test_jobs_bad_parameters(client, params, name, status) -> None:
    response = client.get("/api/jobs", params=params)
    assert response.status_code == status
    assert f"'{name}'" in response.json()["detail"]


def test_one_job_and_its_events(client) -> None:
    job = client.get("/api/jobs/3").json()
    assert (job["state"], job["error_class"]) == ("failed", "InputDataError")
    events = client.get("/api/jobs/1/events").json()
    assert [e["to_state"] for e in events["items"]] == ["done", "running"]
    missing = client.get("/api/jobs/999")
    assert missing.status_code == 404
    assert missing.json()["error"] == "NotFoundError"
    assert "job 999" in missing.json()["detail"]
    assert client.get("/api/jobs/999/events").status_code == 404
    assert client.get("/api/jobs/abc").status_code == 422


def test_quarantine_failures_events_rejected(client) -> None:
    assert [j["id"] for j in client.get("/api/quarantine").json()["items"]] == [8]
    # the dashboard's failures table: failed and quarantined jobs, newest first
    failures = client.get("/api/failures").json()["items"]
    assert sorted(j["id"] for j in failures) == [3, 8]
    assert {j["state"] for j in failures} == {"failed", "quarantined"}
    errors = client.get("/api/events", params={"errors_only": True}).json()
    assert errors["total"] == 2
    assert {e["error_class"] for e in errors["items"]} == {
        "InputDataError",
        "ExternalToolError",
    }
    assert client.get("/api/events").json()["total"] == 4
    assert client.get("/api/rejected").json() == {
        "items": [],
        "total": 0,
        "limit": 50,
        "offset": 0,
        "next_offset": None,
        "next_cursor": None,
    }


# ---------------------------------------------------------------- products


def test_blocks_and_block_detail(client, site) -> None:
    blocks = client.get("/api/blocks").json()
    assert blocks["total"] == 1
    row = blocks["items"][0]
    assert (row["block_id"], row["n_products"], row["n_mosaics"]) == (BLOCK, 6, 1)
    detail = client.get(f"/api/blocks/{BLOCK}").json()
    assert {p["kind"] for p in detail["products"]} == {
        "image",
        "preview",
        "mosaic",
        "summary",
    }
    assert detail["job"]["id"] == 6 and detail["job"]["state"] == "done"
    assert detail["mosaic_members"][0]["image_path"] == str(site["image"])
    assert client.get("/api/blocks/block_none").status_code == 404


def test_images_and_mosaics(client, site) -> None:
    images = client.get("/api/images").json()
    assert images["total"] == 3 and all(i["kind"] == "image" for i in images["items"])
    assert client.get("/api/mosaics").json()["total"] == 1
    detail = client.get(f"/api/images/{site['image_id']}").json()
    assert detail["shape"] == [1, 1, 64, 64]
    assert detail["header"]["BUNIT"] == "JY/BEAM"
    assert detail["product"]["exists"] is True
    assert detail["mosaic_members"][0]["status"] == "used"
    mosaic = client.get(f"/api/mosaics/{site['mosaic_id']}").json()
    assert mosaic["shape"] == [80, 100]
    assert mosaic["mosaic_members"][0]["image_path"] == str(site["image"])
    # a mosaic id is not an image and vice versa
    assert client.get(f"/api/images/{site['mosaic_id']}").status_code == 404
    assert client.get(f"/api/mosaics/{site['image_id']}").status_code == 404
    assert client.get("/api/images/99999").status_code == 404


def test_preview_png_and_fits_download(client, site) -> None:
    preview = client.get(f"/api/products/{site['image_id']}/preview.png")
    assert preview.status_code == 200
    assert preview.headers["content-type"] == "image/png"
    assert preview.content.startswith(b"\x89PNG\r\n\x1a\n")
    import io

    from matplotlib import image as mpimg

    pixels = mpimg.imread(io.BytesIO(preview.content))
    assert pixels.shape[:2] == (64, 64)
    stored = client.get(f"/api/products/{site['png_id']}/preview.png")
    assert stored.content == (site["image"].parent / "img1.png").read_bytes()
    download = client.get(f"/api/products/{site['image_id']}/file")
    assert download.status_code == 200
    assert download.content == site["image"].read_bytes()
    assert download.headers["content-type"] == "application/fits"
    summary = client.get(f"/api/products/{site['summary_id']}/preview.png")
    assert summary.status_code == 404


def test_coverage_footprints(client, site) -> None:
    body = client.get("/api/coverage").json()
    ids = {f["product_id"]: f for f in body["items"]}
    # the products outside the data directories are left out
    assert set(ids) == {site["image_id"], site["mosaic_id"]}
    mosaic = ids[site["mosaic_id"]]
    assert mosaic["ra_deg"] == pytest.approx(10.0, abs=1e-6)
    assert mosaic["dec_deg"] == pytest.approx(16.3, abs=1e-6)
    assert mosaic["width_deg"] == pytest.approx(1.0)  # 100 px of 0.01 deg
    assert mosaic["height_deg"] == pytest.approx(0.8)
    assert mosaic["pointing_dec_deg"] == pytest.approx(16.3)
    assert mosaic["date_obs"] == "2025-01-02T11:00:00"
    only = client.get("/api/coverage", params={"kind": "mosaic"}).json()
    assert [f["kind"] for f in only["items"]] == ["mosaic"]
    assert client.get("/api/coverage", params={"kind": "psf"}).status_code == 422


def test_disk_use_per_directory(client, site) -> None:
    rows = client.get("/api/disk").json()
    by_dir = {r["directory"]: r for r in rows}
    images = by_dir[str(site["base"] / "images")]
    assert images["exists"] is True
    usage = shutil.disk_usage(site["base"])
    assert images["total_bytes"] == usage.total
    assert 0 <= images["free_fraction"] <= 1
    assert str(site["base"] / "incoming") in by_dir


# ---------------------------------------------------------------- traversal


def test_products_outside_the_data_directories_are_refused(client, site) -> None:
    for pid in (site["outside_id"], site["link_id"]):
        for suffix in ("file", "preview.png"):
            response = client.get(f"/api/products/{pid}/{suffix}")
            assert response.status_code == 403, (pid, suffix)
            assert (
                "outside the configured data directories" in response.json()["detail"]
            )
        assert client.get(f"/api/images/{pid}").status_code == 403


@pytest.mark.parametrize(
    "raw_query",
    [
        "path=../{outside}/secret.fits",
        "path=%2e%2e%2f{outside}%2fsecret.fits",
        "path=images/../../{outside}/secret.fits",
        "path=/etc/passwd",
        "path={base}/images/link.fits",
    ],
)
def test_file_traversal_attempts_are_refused(client, site, raw_query) -> None:
    base = site["base"]
    query = raw_query.format(outside=f"{base.name}_outside", base=base)
    response = client.get(f"/api/files?{query}")
    assert response.status_code == 403, response.text
    assert response.json()["error"] == "ForbiddenError"


def test_files_inside_are_served(client, site) -> None:
    ok = client.get("/api/files", params={"path": f"products/summary_{BLOCK}.html"})
    assert ok.status_code == 200 and ok.text == "<html>block</html>"
    absolute = client.get("/api/files", params={"path": str(site["image"])})
    assert absolute.content == site["image"].read_bytes()
    assert (
        client.get("/api/files", params={"path": "images/none.fits"}).status_code == 404
    )
    assert client.get("/api/files").status_code == 422


# ---------------------------------------------------------------- science


def test_sources_by_name_and_cone(client) -> None:
    by_name = client.get("/api/sources", params={"name": "src_b"}).json()
    assert [s["source_name"] for s in by_name["items"]] == ["SRC_B"]
    assert by_name["items"][0]["n_epochs"] == 10
    everything = client.get("/api/sources").json()
    assert everything["total"] == 3
    cone = client.get(
        "/api/sources", params={"ra": 10.4, "dec": 16.3, "radius_deg": 1.0}
    ).json()
    assert [s["source_name"] for s in cone["items"]] == ["SRC_B", "SRC_A"]
    expected = 0.1 * np.cos(np.radians(16.3))
    assert cone["items"][0]["separation_deg"] == pytest.approx(expected, rel=1e-3)
    page = client.get("/api/sources", params={"limit": 2, "offset": 2}).json()
    assert [s["source_name"] for s in page["items"]] == ["SRC_C"]


def test_sources_bad_parameters(client) -> None:
    partial = client.get("/api/sources", params={"ra": 10.0})
    assert partial.status_code == 400
    assert "'radius_deg'" in partial.json()["detail"]
    bad = client.get("/api/sources", params={"ra": 10, "dec": 100, "radius_deg": 1})
    assert bad.status_code == 422 and "'dec'" in bad.json()["detail"]


def test_one_source_and_its_light_curve(client) -> None:
    source = client.get("/api/sources/SRC_A").json()
    assert source["ra_deg"] == pytest.approx(10.0)
    assert source["catalog_flux_jy"] == pytest.approx(1.0)
    curve = client.get("/api/lightcurves/SRC_B").json()
    assert curve["n_points"] == 10
    mjds = [p["mjd"] for p in curve["points"]]
    assert mjds == sorted(mjds) and mjds[0] == pytest.approx(60600.0)
    assert {round(p["flux_jy"], 1) for p in curve["points"]} == {0.3, 0.7}
    assert client.get("/api/sources/NOPE").status_code == 404
    assert client.get("/api/lightcurves/NOPE").status_code == 404


def test_variability_and_candidates(client) -> None:
    rows = client.get("/api/variability", params={"sort": "eta"}).json()
    assert rows["total"] == 3
    assert rows["items"][0]["source_name"] == "SRC_B"
    assert rows["items"][0]["is_variable"] is True
    only = client.get("/api/variability", params={"variable_only": True}).json()
    assert [r["source_name"] for r in only["items"]] == ["SRC_B"]
    by_name = client.get(
        "/api/variability", params={"sort": "source_name", "descending": False}
    ).json()
    assert [r["source_name"] for r in by_name["items"]] == ["SRC_A", "SRC_B", "SRC_C"]
    assert client.get("/api/variability", params={"sort": "bogus"}).status_code == 422
    candidates = client.get("/api/candidates").json()
    assert all(r["ese_candidate"] for r in candidates["items"])


def test_calibration(client) -> None:
    page = client.get("/api/calibration").json()
    assert page["total"] == 3
    newest = page["items"][0]
    assert newest["calibrator"] == "3C48" and newest["valid_now"] is True
    assert newest["age_h"] == pytest.approx(2.0, abs=1e-6)
    assert newest["quality"] == {"snr": 50.0}
    strip = client.get("/api/calibration", params={"dec_strip_deg": 40.0}).json()
    assert [s["calibrator"] for s in strip["items"]] == ["3C286"]
    assert strip["items"][0]["valid_now"] is False
    strips = client.get("/api/calibration/strips").json()
    assert [round(s["dec_strip_deg"], 2) for s in strips] == [16.3, 40.0]
    one = client.get(f"/api/calibration/{newest['id']}").json()
    assert one["id"] == newest["id"]
    assert client.get("/api/calibration/9999").status_code == 404
    assert (
        client.get("/api/calibration", params={"dec_strip_deg": 91}).status_code == 422
    )


# ---------------------------------------------------------------- prometheus


def test_prometheus_exposition(client) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    for line in (
        'dsa110_stage_duration_seconds_bucket{le="60",stage="convert_group"} 1.0',
        'dsa110_stage_duration_seconds_bucket{le="+Inf",stage="convert_group"} 3.0',
        'dsa110_stage_duration_seconds_sum{stage="convert_group"} 420.0',
        'dsa110_queue_jobs{kind="convert_group",state="pending"} 1.0',
        "dsa110_job_errors_last_hour"
        '{error_class="InputDataError",kind="convert_group"} 1.0',
        'dsa110_calibration_valid{dec_strip_deg="40.00"} 0.0',
        'dsa110_calibration_valid{dec_strip_deg="16.30"} 1.0',
        'dsa110_stage_success_ratio{stage="process_block"} 1.0',
        "dsa110_image_rms_ratio 1.5",
        "dsa110_backlog_groups 1.0",
        "dsa110_realtime_factor 0.8",
        "dsa110_groups_arrived_last_hour 4.0",
        "dsa110_groups_processed_last_hour 2.0",
        "dsa110_ingest_lag_seconds 600.0",
        "dsa110_data_age_seconds 600.0",
        "dsa110_intake_paused 0.0",
        "dsa110_intake_held 0.0",
        "dsa110_state_db_up 1.0",
    ):
        assert line in text, line
    assert 'dsa110_calibration_age_seconds{dec_strip_deg="16.30"} 7200.0' in text
    assert "dsa110_disk_free_bytes{path=" in text


def test_metrics_exports_exactly_the_declared_metrics(client) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from dsa110_contimg.tables import METRICS

    families = {
        f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)
    }
    declared = {m.name: m for m in METRICS}
    assert set(families) == set(declared)
    for name, spec in declared.items():
        family = families[name]
        assert family.type == spec.type, name
        assert family.documentation == spec.help, name
        assert family.samples, name
        for sample in family.samples:
            labels = set(sample.labels) - (
                {"le"} if spec.type == "histogram" else set()
            )
            assert labels == set(spec.labels), (name, sample.labels)


_PROMTOOL = shutil.which("promtool") or shutil.which(
    "promtool", path=str(Path(sys.executable).parent)
)


@pytest.mark.skipif(_PROMTOOL is None, reason="promtool not installed")
def test_prometheus_judges_our_scrape_as_the_engine_does(
    site, client, tmp_path, monkeypatch
):
    """Our /metrics, fed to promtool as constant series, fires what the engine does.

    On the filled state: the +40.00 strip (in use, 48 h old) is stale and too
    old, and 2 of 4 groups processed is behind arrivals. DSA110NoData is left
    out: promtool's clock starts at 0, not at the scrape's Unix time. Every
    filesystem reads half free, so the host's own disk cannot fire
    DSA110DiskLow.
    """
    import yaml
    from prometheus_client.parser import text_string_to_metric_families

    from dsa110_contimg.services.alerts import (
        _figures,
        collect_figures,
        load_rules,
        render_template,
        rules_file,
    )

    half_free = lambda path: (2**40, 2**39, 2**39)  # noqa: E731 (total, used, free)
    measure = _figures.measure_disks
    monkeypatch.setattr(
        _figures,
        "measure_disks",
        lambda paths, **_: measure(paths, disk_usage=half_free),
    )

    series = []
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            name = f"{sample.name}{{{labels}}}" if labels else sample.name
            series.append({"series": name, "values": f"{sample.value!r}+0x60"})
    conn = connect(site["config"].paths.state_db, readonly=True)
    try:
        figures = collect_figures(site["config"], conn, now=NOW)
    finally:
        conn.close()
    tests, firing = [], {}
    for rule in load_rules():
        if rule.name == "DSA110NoData":
            continue
        expected = []
        for labels, value in rule.instances(figures):
            full = {"alertname": rule.name, **labels, **rule.labels}
            notes = {
                k: render_template(v, full, value) for k, v in rule.annotations.items()
            }
            expected.append(
                {"exp_labels": {**labels, **rule.labels}, "exp_annotations": notes}
            )
            firing.setdefault(rule.name, []).append(labels)
        tests.append(
            {"interval": "1m", "input_series": series,
             "alert_rule_test": [
                 {"eval_time": "40m", "alertname": rule.name, "exp_alerts": expected}
             ]}
        )  # fmt: skip
    assert firing == {
        "DSA110CalibrationStale": [{"dec_strip_deg": "40.00"}],
        "DSA110CalibrationTooOld": [{"dec_strip_deg": "40.00"}],
        "DSA110ProcessingBehindArrivals": [{}],
    }
    test_file = tmp_path / "scrape_test.yml"
    test_file.write_text(
        yaml.safe_dump({"rule_files": [str(rules_file())], "tests": tests}),
        encoding="utf-8",
    )
    result = subprocess.run(
        [_PROMTOOL, "test", "rules", str(test_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_each_app_has_its_own_registry(site) -> None:
    one = create_app(site["config"], clock=lambda: NOW, environ={})
    two = create_app(site["config"], clock=lambda: NOW, environ={})
    assert one.state.registry is not two.state.registry


def test_missing_database_is_503_and_db_down(tmp_path) -> None:
    config = _config(tmp_path)
    with TestClient(create_app(config, environ={})) as client:
        response = client.get("/api/jobs")
        assert response.status_code == 503
        assert "does not exist yet" in response.json()["detail"]
        assert "dsa110_state_db_up 0.0" in client.get("/metrics").text
        assert client.get("/api/variability").status_code == 503
    assert not (tmp_path / "state.sqlite3").exists()


def test_an_unmigrated_database_is_503(tmp_path) -> None:
    config = _config(tmp_path)
    with sqlite3.connect(config.paths.state_db) as raw:
        raw.execute("CREATE TABLE unrelated (x)")
    with TestClient(create_app(config, environ={})) as client:
        response = client.get("/api/jobs")
    assert response.status_code == 503
    assert "db migrate" in response.json()["detail"]


def test_the_api_opens_the_database_read_only(client) -> None:
    context = client.app.state.context
    with (
        context.read() as conn,
        pytest.raises(sqlite3.OperationalError, match="readonly"),
    ):
        conn.execute("DELETE FROM jobs")


# ---------------------------------------------------------------- actions


def test_actions_refused_without_a_configured_token(fresh) -> None:
    with _operator_client(fresh, environ={}) as client:
        response = client.post("/api/actions/requeue/3")
    assert response.status_code == 403
    assert TOKEN_ENV in response.json()["detail"]
    assert "web.operator_token_env" in response.json()["detail"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": TOKEN},
        {"Authorization": f"Basic {TOKEN}"},
    ],
)
def test_actions_refused_without_the_right_token(fresh, headers) -> None:
    with _operator_client(fresh) as client:
        response = client.post("/api/actions/requeue/3", headers=headers)
        assert response.status_code == 403
        assert client.get("/api/jobs/3").json()["state"] == "failed"


def test_requeue_with_the_right_token(fresh) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with _operator_client(fresh) as client:
        response = client.post(
            "/api/actions/requeue/3", headers=auth, json={"reason": "fixed the file"}
        )
        assert response.status_code == 200, response.text
        assert response.json()["job"]["state"] == "pending"
        assert client.get("/api/jobs/3").json()["state"] == "pending"
        running = client.post("/api/actions/requeue/7", headers=auth)
        assert running.status_code == 409 and "running" in running.json()["detail"]
        assert client.post("/api/actions/requeue/999", headers=auth).status_code == 404
    with connect(fresh["config"].paths.state_db, readonly=True) as conn:
        job = get_job(conn, 3)
        reasons = [
            r[0]
            for r in conn.execute(
                "SELECT reason FROM job_events WHERE job_id = 3 ORDER BY id"
            )
        ]
    assert job.attempts == 0 and job.error_class is None
    assert "fixed the file" in reasons[-1]


def test_pause_and_resume_intake(fresh) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with _operator_client(fresh) as client:
        paused = client.post(
            "/api/actions/intake/pause", headers=auth, json={"reason": "maintenance"}
        )
        assert paused.status_code == 200
        assert paused.json()["intake"]["open"] is False
        intake = client.get("/api/intake").json()
        assert intake["hold"]["paused"] is True
        assert intake["hold"]["reason"] == "maintenance"
        assert "dsa110_intake_held 1.0" in client.get("/metrics").text
        resumed = client.post("/api/actions/intake/resume", headers=auth)
        assert resumed.json()["intake"]["open"] is True


def test_actions_are_rate_limited(fresh) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with _operator_client(fresh, action_rate_per_min=2) as client:
        codes = [
            client.post("/api/actions/intake/resume", headers=auth).status_code
            for _ in range(3)
        ]
        assert codes == [200, 200, 429]
        # reads are not limited
        assert client.get("/api/intake").status_code == 200


def test_large_bodies_are_refused(fresh) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with _operator_client(fresh, max_body_bytes=1000) as client:
        big = client.post(
            "/api/actions/intake/pause",
            headers={**auth, "Content-Type": "application/json"},
            content=b'{"reason": "' + b"x" * 5000 + b'"}',
        )
        assert big.status_code == 413
        assert "web.max_body_bytes" in big.json()["detail"]
        assert client.get("/api/intake").json()["hold"] is None


def test_a_symlinked_data_directory_still_serves(tmp_path) -> None:
    """Data directories are compared resolved: a symlinked root is fine."""
    real = tmp_path / "real"
    site = _site(real)
    alias = tmp_path / "alias"
    os.symlink(real, alias)
    config = _config(alias)
    with TestClient(create_app(config, clock=lambda: NOW, environ={})) as client:
        response = client.get(f"/api/products/{site['image_id']}/file")
    assert response.status_code == 200
    shutil.rmtree(real.parent / f"{real.name}_outside")
