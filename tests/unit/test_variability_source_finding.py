"""Blind source finding and catalogue cross-matching on synthetic images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from dsa110_contimg.data_ingestion.photometry import Beam
from dsa110_contimg.data_ingestion.skymodel import load_catalog
from dsa110_contimg.data_ingestion.source_finding import (
    crossmatch,
    estimate_rms_map,
    find_sources,
)
from dsa110_contimg.exceptions import DataQualityWarning, InputDataError
from dsa110_contimg.testing.images import make_point_source_image

BEAM = Beam(15.0, 11.0, 30.0)
RMS_JY = 1e-3


@pytest.fixture(scope="module")
def field() -> dict:
    rng = np.random.default_rng(5)
    n = 50
    ra = 150.0 + rng.uniform(-0.3, 0.3, n)
    dec = 40.0 + rng.uniform(-0.3, 0.3, n)
    flux = rng.uniform(0.01, 0.3, n)
    image, wcs, _ = make_point_source_image(
        (800, 800),
        cell_arcsec=3.0,
        center_ra_deg=150.0,
        center_dec_deg=40.0,
        sources=list(zip(ra, dec, flux, strict=True)),
        beam=BEAM,
        noise_rms_jy=RMS_JY,
        rng=rng,
    )
    return {"image": image, "wcs": wcs, "ra": ra, "dec": dec, "flux": flux}


def test_finds_injected_sources(field: dict) -> None:
    found = find_sources(field["image"], field["wcs"], beam=BEAM, threshold_sigma=5.0)
    catalog = Table(
        {
            "name": [f"S{k}" for k in range(field["ra"].size)],
            "ra_deg": field["ra"],
            "dec_deg": field["dec"],
            "flux_jy": field["flux"],
        }
    )
    matched, new = crossmatch(found, catalog, radius_arcsec=5.0)
    assert len(new) == 0
    assert len(matched) == field["ra"].size
    pull = (matched["flux_jy"] - matched["catalog_flux_jy"]) / matched["flux_err_jy"]
    print(
        f"\nblind finder: {len(found)} found of {field['ra'].size} injected; "
        f"median offset {np.median(matched['separation_arcsec']):.2f} arcsec "
        f"(beam 15x11); flux pull rms {np.std(pull):.2f}; "
        f"median rms estimate {1e3 * np.median(found['rms_jy']):.3f} mJy (true 1)"
    )
    assert np.median(matched["separation_arcsec"]) < 0.1 * BEAM.minor_arcsec
    assert np.std(pull) < 2.0
    assert np.median(found["rms_jy"]) == pytest.approx(RMS_JY, rel=0.1)


def test_new_sources_are_reported(field: dict) -> None:
    found = find_sources(field["image"], field["wcs"], beam=BEAM)
    keep = slice(0, field["ra"].size - 3)
    catalog = Table(
        {
            "name": [f"S{k}" for k in range(field["ra"].size)][keep],
            "ra_deg": field["ra"][keep],
            "dec_deg": field["dec"][keep],
        }
    )
    _, new = crossmatch(found, catalog, radius_arcsec=5.0)
    assert len(new) == 3
    near = np.abs(new["ra_deg"][:, None] - field["ra"][-3:][None, :]) < 1e-3
    assert near.any(axis=1).all()


def test_noise_only_image_warns(field: dict) -> None:
    rng = np.random.default_rng(9)
    image, wcs, _ = make_point_source_image(
        (400, 400),
        cell_arcsec=3.0,
        center_ra_deg=150.0,
        center_dec_deg=40.0,
        sources=[],
        beam=BEAM,
        noise_rms_jy=RMS_JY,
        rng=rng,
    )
    with pytest.warns(DataQualityWarning, match="no source above"):
        found = find_sources(image, wcs, beam=BEAM, threshold_sigma=5.5)
    assert len(found) == 0


def test_bad_images_and_noise_maps(field: dict) -> None:
    blank = np.full((200, 200), np.nan)
    with pytest.raises(InputDataError, match="pass an rms_map"):
        find_sources(blank, field["wcs"], beam=BEAM)
    image = field["image"].copy()
    image[:, :300] = np.nan  # a blanked region: those noise boxes borrow neighbours
    with pytest.warns(DataQualityWarning, match="noise boxes"):
        _, rms = estimate_rms_map(image, box_pix=100)
    assert np.all(np.isfinite(rms))
    rms_map = np.full(field["image"].shape, RMS_JY)
    rms_map[:50] = np.nan
    with pytest.warns(DataQualityWarning, match="rms_map is missing"):
        found = find_sources(field["image"], field["wcs"], beam=BEAM, rms_map=rms_map)
    assert np.all(found["y_pix"] > 45)


def test_malformed_catalogue_rows(field: dict, tmp_path: Path) -> None:
    found = find_sources(field["image"], field["wcs"], beam=BEAM)
    catalog = Table(
        {
            "name": ["A", "", "C"],
            "ra_deg": [field["ra"][0], field["ra"][1], np.nan],
            "dec_deg": [field["dec"][0], field["dec"][1], field["dec"][2]],
        }
    )
    with pytest.warns(DataQualityWarning, match="2 malformed row"):
        matched, new = crossmatch(found, catalog, radius_arcsec=5.0)
    assert list(matched["catalog_name"]) == ["A"]
    assert len(matched) + len(new) == len(found)
    path = tmp_path / "cat.csv"
    path.write_text(
        "name,ra_deg,dec_deg,flux_jy\nA,150.0,40.0,0.1\nB,150.1,forty,0.1\n"
    )
    with pytest.raises(InputDataError, match="line 3"):
        load_catalog(path)
