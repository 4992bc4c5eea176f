"""The dashboard and science-browser pages and the endpoints they draw from.

Known truth: the `test_web_api` site (a 64 x 64 image centred on SRC_A, an
80 x 100 mosaic holding SRC_A and SRC_B near its left edge), a light-curve
store whose epochs point at that image (one an upper limit, half of them
mosaic epochs), and every page and static file free of external URLs.
"""

from __future__ import annotations

import io
import re

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("jinja2")

from _filled_state import NOW  # noqa: E402
from astropy.table import Table  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from test_web_api import _fits, _site  # noqa: E402

from dsa110_contimg.lightcurves import LightcurveStore  # noqa: E402
from dsa110_contimg.variability import ese_model  # noqa: E402
from dsa110_contimg.web import create_app  # noqa: E402
from dsa110_contimg.web.api import browser  # noqa: E402
from dsa110_contimg.web.pages import STATIC_DIR, TEMPLATE_DIR  # noqa: E402

PAGES = (
    "/",
    "/images",
    "/variability",
    "/coverage",
    "/sources/SRC_A",
)
# the SVG namespace name (an identifier createElementNS needs, never fetched)
_ALLOWED_URLS = {"http://www.w3.org/2000/svg"}
_URL = re.compile(r"""(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}[^\s"')]*""")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    import shutil

    site = _site(tmp_path_factory.mktemp("pages"))
    root = site["base"] / "lightcurves"
    shutil.rmtree(root)
    store = LightcurveStore(root)
    for k in range(6):
        image = site["base"] / "images" / f"epoch{k}.fits"
        _fits(image, 0.001)
        flux = 1.0 if k != 3 else np.nan
        store.ingest_epoch(
            f"E{k:02d}",
            Table(
                {
                    "source_name": np.array(["SRC_A", "SRC_B"]),
                    "mjd": np.full(2, 60600.0 + k),
                    "flux_jy": np.array([flux, 0.7 if k % 2 else 0.3]),
                    "flux_err_jy": np.full(2, 0.01),
                    "flags": np.array([16 if k == 3 else 0, 0], dtype=np.int32),
                    "upper_limit_jy": np.array([0.05 if k == 3 else np.nan, np.nan]),
                    "image_path": np.full(2, str(image)),
                    "image_kind": np.full(2, "mosaic" if k % 2 else "image"),
                }
            ),
        )
    return site


@pytest.fixture(scope="module")
def client(site):
    with TestClient(create_app(site["config"], clock=lambda: NOW, environ={})) as c:
        yield c


@pytest.mark.parametrize("path", PAGES)
def test_every_page_is_html_with_the_shipped_script(client, path) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert '<script src="/static/app.js"></script>' in response.text
    assert '<link rel="stylesheet" href="/static/style.css">' in response.text


def test_image_and_mosaic_pages_name_their_product(client, site) -> None:
    page = client.get(f"/images/{site['image_id']}").text
    assert f'data-product-id="{site["image_id"]}" data-api="images"' in page
    assert f'href="/api/products/{site["image_id"]}/file"' in page
    mosaic = client.get(f"/mosaics/{site['mosaic_id']}").text
    assert 'data-api="mosaics"' in mosaic
    assert client.get("/images/not-a-number").status_code == 422


def test_source_name_is_escaped(client) -> None:
    page = client.get("/sources/%3Cb%3Ex%22").text
    assert "<b>x" not in page
    assert 'data-source="&lt;b&gt;x&#34;"' in page


def test_no_page_or_static_file_refers_to_another_host(client, site) -> None:
    texts = {p: client.get(p).text for p in PAGES}
    texts["/images/1"] = client.get(f"/images/{site['image_id']}").text
    for path in sorted(STATIC_DIR.iterdir()) + sorted(TEMPLATE_DIR.iterdir()):
        texts[str(path)] = path.read_text()
        served = (
            client.get(f"/static/{path.name}") if path.parent == STATIC_DIR else None
        )
        assert served is None or served.status_code == 200
    assert len(texts) >= len(PAGES) + 8
    for where, text in texts.items():
        found = set(_URL.findall(text)) - _ALLOWED_URLS
        assert not found, f"{where} refers to {found}"
    # the check would catch one
    assert _URL.findall('<script src="https://cdn.example.com/x.js">')


def test_overlay_places_catalogue_sources_from_the_wcs(client, site) -> None:
    body = client.get(f"/api/products/{site['image_id']}/overlay").json()
    assert (body["nx"], body["ny"]) == (64, 64)
    # SRC_A is the reference pixel (CRPIX 32.5: zero-based 31.5); SRC_B, 0.48 deg
    # east, and SRC_C fall outside the 0.64 deg field
    (src,) = body["sources"]
    assert src["source_name"] == "SRC_A"
    assert (src["x_pix"], src["y_pix"]) == pytest.approx((31.5, 31.5), abs=1e-6)
    assert (src["x_frac"], src["y_frac"]) == pytest.approx((0.5, 0.5), abs=1e-6)
    mosaic = client.get(f"/api/products/{site['mosaic_id']}/overlay").json()
    placed = {s["source_name"]: s for s in mosaic["sources"]}
    assert set(placed) == {"SRC_A", "SRC_B"}
    # east is left (CDELT1 < 0): 0.5 deg of RA at dec 16.3 is 48 pixels
    offset = 0.5 * np.cos(np.radians(16.3)) / 0.01
    assert placed["SRC_B"]["x_pix"] == pytest.approx(49.5 - offset, abs=0.05)
    assert placed["SRC_B"]["x_frac"] < 0.05
    assert client.get(f"/api/products/{site['summary_id']}/overlay").status_code == 404
    assert client.get(f"/api/products/{site['outside_id']}/overlay").status_code == 403


def test_cutouts_list_each_epoch_and_render_the_source_at_the_centre(client) -> None:
    from matplotlib import image as mpimg

    listing = client.get("/api/cutouts/SRC_A").json()
    assert [c["epoch_id"] for c in listing["items"]] == [f"E{k:02d}" for k in range(6)]
    assert [c["image_kind"] for c in listing["items"]] == ["image", "mosaic"] * 3
    png = client.get(listing["items"][0]["url"])
    assert png.headers["content-type"] == "image/png"
    pixels = mpimg.imread(io.BytesIO(png.content))
    assert pixels.shape[:2] == (41, 41)
    # the image's one bright pixel (10x the floor, zero-based 32, 32) is white
    # and within half a pixel of the source (31.5, 31.5): at the centre +- 1
    grey = pixels[:, :, 0] == pixels[:, :, 1]
    white = np.argwhere(grey & (pixels[:, :, 0] > 0.99))
    assert len(white) == 1
    assert np.all(np.abs(white[0] - 20) <= 1)
    assert pixels[0, 0, :3] == pytest.approx((0.0, 0.0, 0.0), abs=0.01)
    small = client.get(listing["items"][0]["url"], params={"half_size_px": 5})
    assert mpimg.imread(io.BytesIO(small.content)).shape[:2] == (11, 11)
    assert client.get("/api/cutouts/SRC_A/E99.png").status_code == 404
    assert client.get("/api/cutouts/NOPE").status_code == 404
    # SRC_C is not in the image: its cutout is a bad request, not a blank PNG
    assert client.get("/api/cutouts/SRC_B/E00.png").status_code == 400


def test_fit_gives_the_two_epoch_statistics(client) -> None:
    body = client.get("/api/sources/SRC_B/fit").json()
    # alternating 0.3 / 0.7 Jy, errors 0.01 Jy: |Vs| = 0.4 / (0.01 sqrt 2)
    assert abs(body["vs"]) == pytest.approx(0.4 / (0.01 * np.sqrt(2)), rel=1e-6)
    assert abs(body["m"]) == pytest.approx(0.8, rel=1e-6)
    assert body["eta"] > 100 and body["v"] > 0.3
    assert body["ese_curve"] is None
    assert client.get("/api/sources/NOPE/fit").status_code == 404


def test_fit_draws_the_ese_model_of_the_results(client, monkeypatch) -> None:
    dip = {
        "source_name": "SRC_B",
        "ese_candidate": True,
        "ese_significance": 7.0,
        "ese_mean_flux_jy": 0.5,
        "ese_depth": 0.4,
        "ese_duration_days": 2.0,
        "ese_center_mjd": 60602.5,
    }
    monkeypatch.setattr(browser, "_results_or_empty", lambda ctx: [dip])
    body = client.get("/api/sources/SRC_B/fit", params={"points": 51}).json()
    curve = body["ese_curve"]
    assert len(curve["mjd"]) == 51
    assert curve["mjd"][0] == 60600.0 and curve["mjd"][-1] == 60605.0
    expected = ese_model(
        np.array(curve["mjd"]),
        mean_flux_jy=0.5,
        depth=0.4,
        duration_days=2.0,
        center_mjd=60602.5,
    )
    assert np.allclose(curve["flux_jy"], expected)
    assert min(curve["flux_jy"]) == pytest.approx(0.5 * 0.6, rel=1e-3)
    assert body["ese_candidate"] is True and body["ese_significance"] == 7.0


def test_light_curve_keeps_the_upper_limit_and_the_image_kind(client) -> None:
    points = client.get("/api/lightcurves/SRC_A").json()["points"]
    limits = [p for p in points if p.get("upper_limit_jy") is not None]
    assert [p["epoch_id"] for p in limits] == ["E03"]
    assert {p["image_kind"] for p in points} == {"image", "mosaic"}
