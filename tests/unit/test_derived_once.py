"""PB, mid-time and the residual rms are derived once and reused.

The image photometry reads the primary beam from the image's ``-pb.fits`` map
(the beam its PB-corrected map and the mosaic weights use) instead of
evaluating the beam model again; its numbers agree with the model's within the
map's interpolation error (< 1e-5, `primary_beam_image`). The mid-time is the
pointing track's; the previews reuse the quality record's residual rms.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.time import Time

from dsa110_contimg.data_ingestion.photometry import Beam
from dsa110_contimg.data_ingestion.skymodel import SkyCatalog
from dsa110_contimg.mosaic import DriftTrack
from dsa110_contimg.pipeline.stages import image_quality as qa
from dsa110_contimg.pipeline.stages.derived_maps import _residual_rms
from dsa110_contimg.pipeline.stages.photometry_stage import measure_image
from dsa110_contimg.products import ImageNames
from dsa110_contimg.telescope import dsa110
from dsa110_contimg.testing.group_images import write_group_image
from dsa110_contimg.tools.imagers import ImageProduct
from dsa110_contimg.utils.config_loader import PhotometryConfig
from dsa110_contimg.visualization import robust_rms

SHAPE = (200, 200)
CELL_ARCSEC = 20.0
START_MJD = Time(datetime(2023, 6, 1, tzinfo=UTC)).mjd + 7.5 / 86400
TRACK = DriftTrack(37.0, START_MJD, dsa110.INTEGRATION_TIME_S, 24, 1.31e9, 1.5e9)


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> tuple[Path, SkyCatalog]:
    ra_c, dec_c = (float(np.median(v)) for v in TRACK.beam_centres_deg())
    # the last lies beyond the image's top edge (0.56 deg from the centre)
    offsets = [(0.0, 0.0), (0.3, 0.2), (-0.5, -0.3), (0.6, 0.4), (-0.2, 0.45)]
    offsets.append((0.0, 0.8))
    n = len(offsets)
    catalog = SkyCatalog(
        name=np.array([f"S{i}" for i in range(n)]),
        ra_deg=np.array([ra_c + dx for dx, _ in offsets]),
        dec_deg=np.array([dec_c + dy for _, dy in offsets]),
        flux_jy=np.linspace(0.3, 0.8, n),
        spectral_index=np.zeros(n),
        ref_freq_hz=np.full(n, 1.4e9),
    )
    path = write_group_image(
        tmp_path_factory.mktemp("once") / "drift_20230601T000007_00",
        TRACK,
        shape=SHAPE,
        cell_arcsec=CELL_ARCSEC,
        sources=list(
            zip(catalog.ra_deg, catalog.dec_deg, catalog.flux_jy, strict=True)
        ),
        beam=Beam(70.0, 60.0, 15.0),
        noise_rms_jy=2e-3,
        rng=np.random.default_rng(11),
    )
    return path, catalog


def test_photometry_reads_the_pb_map_and_agrees_with_the_model(image) -> None:
    path, catalog = image
    cfg = PhotometryConfig()
    model = measure_image(path, catalog, cfg)
    pb_path = ImageNames.of(path).path("pb")
    mapped = measure_image(path, catalog, cfg, pb_path=pb_path)
    # numbers unchanged within the map's interpolation error
    np.testing.assert_allclose(mapped["pb"], model["pb"], rtol=0, atol=2e-5)
    np.testing.assert_allclose(mapped["flux_jy"], model["flux_jy"], rtol=1e-4)
    assert np.all(mapped["pb"] > 0.2)
    on = np.isfinite(np.asarray(mapped["flux_jy"]))
    assert on.tolist() == [True] * 5 + [False]  # the last is off the image
    # known truth that the map is what is read: a map of half the beam halves
    # the pb column (and doubles the PB-corrected flux)
    half = pb_path.with_name("half-pb.fits")
    with fits.open(pb_path) as hdul:
        fits.PrimaryHDU(0.5 * hdul[0].data, hdul[0].header).writeto(half)
    halved = measure_image(path, catalog, cfg, pb_path=half)
    np.testing.assert_allclose(halved["pb"][on], 0.5 * mapped["pb"][on], rtol=1e-6)
    np.testing.assert_allclose(
        halved["flux_jy"][on], 2 * mapped["flux_jy"][on], rtol=1e-6
    )
    # off the map the beam model stands in
    assert halved["pb"][~on][0] == pytest.approx(model["pb"][~on][0], abs=1e-12)


def test_photometry_mid_time_is_the_tracks(image) -> None:
    path, catalog = image
    table = measure_image(path, catalog, PhotometryConfig())
    assert np.all(table["mjd"] == TRACK.mid_mjd)
    assert TRACK.mid_mjd == START_MJD + 11.5 * dsa110.INTEGRATION_TIME_S / 86400


def _product(path: Path, quality: Path | None) -> ImageProduct:
    names = ImageNames.of(path)
    return ImageProduct(
        path.parent / "drift_20230601T000007_00.ms",
        path,
        names.path("residual"),
        names.path("psf"),
        names.path("model"),
        names.log("wsclean"),
        "wsclean",
        "",
        (),
        quality_path=quality,
    )


def test_previews_reuse_the_quality_records_rms(image, tmp_path) -> None:
    path, _ = image
    rng = np.random.default_rng(3)
    residual = rng.normal(0.0, 1e-3, (1100, 1100))
    residual[:50] = np.nan
    measured = robust_rms(residual)
    # the two robust rms agree: the record's is the preview's number too
    assert qa._robust_rms(residual) == pytest.approx(measured, rel=1e-12)
    assert _residual_rms(_product(path, None), residual) == measured
    record = qa.quality_path(path)
    record.write_text(json.dumps({"image_path": str(path), "rms_jy": 0.0042}))
    try:
        assert _residual_rms(_product(path, record), residual) == 0.0042
    finally:
        record.unlink()
