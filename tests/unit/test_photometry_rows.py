"""Rows of the photometry table (issue 13.4): every source near an image gets
one, upper limits are flagged, times keep full precision, rows name their image
and strip; the merged table is the union of runs (issue 15.12)."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from astropy.io import fits
from astropy.time import Time

from dsa110_contimg.data_ingestion.photometry import Beam, PhotometryFlag
from dsa110_contimg.data_ingestion.skymodel import SkyCatalog
from dsa110_contimg.exceptions import InputDataError
from dsa110_contimg.mosaic import DriftTrack
from dsa110_contimg.pipeline.batch import merge_photometry
from dsa110_contimg.pipeline.stages.photometry_stage import (
    PHOTOMETRY_COLUMNS,
    epoch_id,
    measure_image,
    measure_mosaic,
    read_photometry_table,
    split_epochs,
    write_photometry_table,
)
from dsa110_contimg.telescope import dsa110
from dsa110_contimg.testing.group_images import write_group_image
from dsa110_contimg.testing.images import make_point_source_image
from dsa110_contimg.utils.config_loader import PhotometryConfig

SHAPE = (160, 160)
CELL_ARCSEC = 20.0
NOISE_JY = 2e-3
BEAM = Beam(70.0, 60.0, 15.0)
# 00:00:00 plus 37.123456 s: 8 significant digits of an MJD resolve 86 s only
START_MJD = Time(datetime(2023, 6, 1, tzinfo=UTC)).mjd + 37.123456 / 86400


def _catalog(rows: list[tuple[str, float, float, float]]) -> SkyCatalog:
    n = len(rows)
    return SkyCatalog(
        name=np.array([r[0] for r in rows]),
        ra_deg=np.array([r[1] for r in rows]),
        dec_deg=np.array([r[2] for r in rows]),
        flux_jy=np.array([r[3] for r in rows]),
        spectral_index=np.zeros(n),
        ref_freq_hz=np.full(n, 1.4e9),
    )


@pytest.fixture(scope="module")
def group_image(tmp_path_factory) -> tuple[Path, SkyCatalog]:
    base = tmp_path_factory.mktemp("rows")
    track = DriftTrack(37.0, START_MJD, dsa110.INTEGRATION_TIME_S, 24, 1.31e9, 1.5e9)
    ra_c, dec_c = (float(np.median(v)) for v in track.beam_centres_deg())
    half_deg = 0.5 * SHAPE[0] * CELL_ARCSEC / 3600.0
    catalog = _catalog(
        [
            ("BRIGHT", ra_c, dec_c, 0.5),
            ("FAINT", ra_c + 0.2, dec_c - 0.1, 0.004),  # ~2 sigma: an upper limit
            ("OFF", ra_c, dec_c + 1.2 * half_deg, 0.3),  # beyond the top edge
        ]
    )
    path = write_group_image(
        base / "drift_20230601T000037_00",
        track,
        shape=SHAPE,
        cell_arcsec=CELL_ARCSEC,
        sources=list(
            zip(catalog.ra_deg, catalog.dec_deg, catalog.flux_jy, strict=True)
        ),
        beam=BEAM,
        noise_rms_jy=NOISE_JY,
        rng=np.random.default_rng(4),
    )
    return path, catalog


def test_every_source_near_an_image_gets_a_row(group_image) -> None:
    path, catalog = group_image
    table = measure_image(path, catalog, PhotometryConfig())
    assert tuple(table.colnames) == PHOTOMETRY_COLUMNS
    rows = {str(r["source_name"]): r for r in table}
    assert set(rows) == {"BRIGHT", "FAINT", "OFF"}
    off = rows["OFF"]
    assert off["flags"] & PhotometryFlag.EDGE and np.isnan(off["flux_jy"])
    assert not off["flags"] & PhotometryFlag.UPPER_LIMIT
    bright = rows["BRIGHT"]
    assert bright["flags"] == 0 and np.isnan(bright["upper_limit_jy"])
    faint = rows["FAINT"]
    assert faint["snr"] < 5.0
    assert faint["flags"] == PhotometryFlag.UPPER_LIMIT
    assert faint["upper_limit_jy"] == pytest.approx(5.0 * faint["flux_err_jy"])
    assert faint["upper_limit_jy"] > 0.004  # the true flux is below the limit
    assert set(table["image_id"]) == {"drift_20230601T000037_00"}
    assert np.all(table["pointing_dec_deg"] == 37.0)


def test_detection_sigma_sets_the_limit(group_image) -> None:
    path, catalog = group_image
    snr = measure_image(path, catalog, PhotometryConfig())["snr"][1]
    for factor, flagged in ((0.9, False), (1.1, True)):
        cfg = PhotometryConfig(detection_sigma=factor * snr)
        faint = measure_image(path, catalog, cfg)[1]
        assert faint["source_name"] == "FAINT"
        assert bool(faint["flags"] & PhotometryFlag.UPPER_LIMIT) is flagged
        assert bool(np.isfinite(faint["upper_limit_jy"])) is flagged


def test_written_rows_keep_mjd_to_the_microsecond(group_image, tmp_path) -> None:
    path, catalog = group_image
    table = measure_image(path, catalog, PhotometryConfig())
    header = fits.getheader(path)
    mid = (
        header["DSAT0MJD"] + 0.5 * (header["DSANTIME"] - 1) * header["DSADTSEC"] / 86400
    )
    back = read_photometry_table(write_photometry_table([table], tmp_path / "p.csv"))
    assert np.all(np.asarray(back["mjd"]) == mid)  # bit for bit
    for name in ("flux_jy", "flux_err_jy", "ra_deg", "upper_limit_jy"):
        np.testing.assert_array_equal(back[name], table[name])


def test_a_mosaic_gives_flagged_rows_for_uncovered_sources(tmp_path) -> None:
    image, wcs, header = make_point_source_image(
        (120, 120),
        cell_arcsec=CELL_ARCSEC,
        center_ra_deg=150.0,
        center_dec_deg=37.0,
        sources=[(150.0, 37.0, 0.4)],
        beam=BEAM,
        noise_rms_jy=NOISE_JY,
        rng=np.random.default_rng(5),
    )
    image[:, :40] = np.nan  # the left third is not covered by any member
    header.update(DSAMJD=START_MJD, DSAFREQ=1.4e9, DSAPTDEC=37.0)
    mosaic = tmp_path / "block_20230601T010000-mosaic.fits"
    noise = tmp_path / "block_20230601T010000-noise.fits"
    fits.PrimaryHDU(image, header).writeto(mosaic)
    fits.PrimaryHDU(np.full(image.shape, NOISE_JY), header).writeto(noise)
    # one source on a blank pixel inside the grid, one beyond the grid's edge
    ras, decs = wcs.pixel_to_world_values([10.0, -50.0], [60.0, 60.0])
    (ra_gap, ra_out), (dec_gap, dec_out) = ras, decs
    catalog = _catalog(
        [
            ("CENTRE", 150.0, 37.0, 0.4),
            ("GAP", float(ra_gap), float(dec_gap), 0.1),
            ("OUTSIDE", float(ra_out), float(dec_out), 0.1),
        ]
    )
    table = measure_mosaic(mosaic, catalog, PhotometryConfig(), noise_path=noise)
    rows = {str(r["source_name"]): r for r in table}
    assert set(rows) == {"CENTRE", "GAP"}  # OUTSIDE is off the mosaic's grid
    assert rows["CENTRE"]["flags"] == 0
    assert rows["CENTRE"]["flux_jy"] == pytest.approx(0.4, abs=5 * NOISE_JY)
    gap = rows["GAP"]
    assert gap["flags"] & PhotometryFlag.EDGE and gap["flags"] & PhotometryFlag.NAN
    assert np.isnan(gap["flux_jy"])
    assert set(table["image_id"]) == {"block_20230601T010000"}
    assert set(table["image_kind"]) == {"mosaic"}
    epochs = split_epochs(table, "mosaic")
    assert list(epochs) == ["block_20230601T010000_dec+37.00"]
    assert epoch_id("block_x", float("nan")) == "block_x"


def _result(path: Path) -> SimpleNamespace:
    return SimpleNamespace(output_files={"photometry": [str(path)]})


def test_merged_table_is_the_union_of_runs(group_image, tmp_path) -> None:
    """Issue 15.12: a second run adds its rows to the merged table."""
    path, catalog = group_image
    table = measure_image(path, catalog, PhotometryConfig())
    other = table.copy()
    other["image_path"] = str(path).replace("000037", "000347")
    other["image_id"] = "drift_20230601T000347_00"
    merged = tmp_path / "photometry.csv"
    run1 = write_photometry_table([table], tmp_path / "photometry_block_a.csv")
    run2 = write_photometry_table([other], tmp_path / "photometry_block_b.csv")
    assert merge_photometry([_result(run1)], merged) == merged
    assert merge_photometry([_result(run2)], merged) == merged
    rows = read_photometry_table(merged)
    assert len(rows) == 2 * len(table)
    assert set(rows["image_id"]) == {
        "drift_20230601T000037_00",
        "drift_20230601T000347_00",
    }
    # re-measuring an image replaces its rows rather than adding to them
    remeasured = table.copy()
    remeasured["flux_jy"] = remeasured["flux_jy"] * 2
    run3 = write_photometry_table([remeasured], tmp_path / "photometry_block_c.csv")
    merge_photometry([_result(run3)], merged)
    rows = read_photometry_table(merged)
    assert len(rows) == 2 * len(table)
    again = rows[rows["image_id"] == "drift_20230601T000037_00"]
    bright = again[again["source_name"] == "BRIGHT"][0]
    ref = table[table["source_name"] == "BRIGHT"][0]
    assert bright["flux_jy"] == 2 * ref["flux_jy"]


def test_merge_reads_a_table_of_an_earlier_version(group_image, tmp_path) -> None:
    path, catalog = group_image
    table = measure_image(path, catalog, PhotometryConfig())
    merged = tmp_path / "photometry.csv"
    old = table.copy()
    old.remove_columns(["image_id", "pointing_dec_deg", "upper_limit_jy"])
    old.write(merged, format="ascii.csv")
    other = table.copy()
    other["image_path"] = "/elsewhere/drift_20230601T000347_00-image.fits"
    other["image_id"] = "drift_20230601T000347_00"
    run = write_photometry_table([other], tmp_path / "photometry_block_b.csv")
    merge_photometry([_result(run)], merged)
    rows = read_photometry_table(merged)
    assert tuple(rows.colnames) == PHOTOMETRY_COLUMNS
    assert sorted(set(rows["image_id"])) == [
        "drift_20230601T000037_00",
        "drift_20230601T000347_00",
    ]


def test_image_with_a_beam_narrower_than_a_pixel_is_refused(
    group_image, tmp_path
) -> None:
    # WSClean fits a sliver to a PSF sampled by about one pixel (seen: 27" x 2"
    # on 48" pixels); the forced fit then gives fluxes of 1e50 Jy, unflagged.
    original, catalog = group_image
    path = tmp_path / original.name
    shutil.copy(original, path)
    with fits.open(path, mode="update") as hdul:
        hdul[0].header["BMIN"] = 0.5 * CELL_ARCSEC / 3600.0
    with pytest.raises(InputDataError, match=r"0\.50 pixels .* imaging\.cell_size"):
        measure_image(path, catalog, PhotometryConfig())
    with fits.open(path, mode="update") as hdul:  # one pixel across: measured
        hdul[0].header["BMIN"] = 1.05 * CELL_ARCSEC / 3600.0
    assert len(measure_image(path, catalog, PhotometryConfig())) == 3
