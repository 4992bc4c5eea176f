"""FITS headers of images and mosaics as astropy, DS9 and CARTA read them.

Two testing-size groups are converted, imaged with WSClean and mosaicked; every
product must pass ``astropy.io.fits`` ``verify('exception')``, parse with
astropy WCS without a fix-up, carry the standard cards (RADESYS ICRS,
EQUINOX, TELESCOP, INSTRUME, DATE-OBS/DATE-AVG/MJD-OBS, frequency, beam,
BUNIT) with values known from the MS, and keep long provenance whole. The
mosaic and its images must share one celestial frame.
"""

from __future__ import annotations

import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from astropy.coordinates import EarthLocation
from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS
from astropy.wcs.utils import wcs_to_celestial_frame

from dsa110_contimg.data_ingestion.grouping import (
    discover_subband_files,
    group_subband_files,
)
from dsa110_contimg.data_ingestion.ms_creation import convert_group
from dsa110_contimg.pipeline.stages.imaging_stage import image_ms
from dsa110_contimg.pipeline.stages.mosaicking_stage import MosaicMember, make_mosaic
from dsa110_contimg.simulation import ObservationSpec, simulate_observation
from dsa110_contimg.telescope import dsa110
from dsa110_contimg.tools.fits_header import apply_header_cards, set_header_cards
from dsa110_contimg.utils.config_loader import load_pipeline_config

tables = pytest.importorskip("casacore.tables")

pytestmark = [pytest.mark.integration, pytest.mark.wsclean, pytest.mark.casa]

LONG_CAL = (
    "/data/dsa110/cal_tables/2023-06-01T00:00:00_3C286_dec+37.0_transit_60096.123456"
    ".B,/data/dsa110/cal_tables/2023-06-01T00:00:00_3C286_dec+37.0_transit_60096.123"
    "456.G"
)
STANDARD = ("RADESYS", "EQUINOX", "TELESCOP", "INSTRUME", "DATE-OBS", "DATE-AVG")
STANDARD += ("MJD-OBS", "MJD-AVG", "BUNIT", "BMAJ", "BMIN", "BPA")


@pytest.fixture(scope="module")
def products(tmp_path_factory):
    base = tmp_path_factory.mktemp("fits_headers")
    spec = ObservationSpec(
        start_time=datetime(2023, 6, 1, 0, 0, 0, tzinfo=UTC),
        n_groups=2,
        n_antennas=24,
        n_chan_per_subband=2,
        n_times=4,
        n_sources=4,
        min_flux_jy=0.5,
        max_flux_jy=2.0,
        field_radius_deg=0.5,
        integration_spacing_s=dsa110.INTEGRATION_TIME_S * 6,
        seed=8,
    )
    simulate_observation(spec, base / "raw")
    groups = group_subband_files(discover_subband_files(base / "raw"))
    ms_paths = [convert_group(g, base / "ms").path for g in groups]
    config = load_pipeline_config(
        environment="testing",
        overrides={
            "imaging.image_size": [384, 384],
            "imaging.cell_size": "20arcsec",
            "imaging.niter": 200,
            "imaging.qa_enabled": False,  # headers here; the gates have their tests
            "imaging.write_png": False,
            "mosaic.write_png": False,
        },
        env={},
    )
    images = [image_ms(ms, base / "images", config.imaging) for ms in ms_paths]
    tclean_cfg = config.imaging.model_copy(update={"backend": "tclean"})
    tclean = image_ms(ms_paths[0], base / "tclean", tclean_cfg)
    for image in images:  # as if calibrated: the tables' names are long
        set_header_cards(image.image_path, {"DSACAL": LONG_CAL})
    mosaic = make_mosaic(
        "block_fits",
        [MosaicMember(i.image_path) for i in images],
        base / "mosaics",
        config.mosaic,
    )
    return {"ms": ms_paths, "images": images, "mosaic": mosaic, "tclean": tclean}


def _checked_header(path: Path) -> fits.Header:
    """Open, verify strictly and parse the WCS with warnings as errors."""
    with fits.open(path) as hdul:
        hdul.verify("exception")
        header = hdul[0].header.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no FITSFixedWarning ('datfix', 'unitfix')
        WCS(header)
    return header


def _image_files(products) -> list[Path]:
    files = []
    for image in products["images"]:
        files += [image.image_path, image.residual_path, image.psf_path]
        files += [image.pb_path, image.rms_path, image.pbcor_path]
    return files


def test_image_headers_are_standard_and_true(products) -> None:
    for image, ms in zip(products["images"], products["ms"], strict=True):
        with tables.table(f"{ms}/OBSERVATION", ack=False) as obs:
            t0_s, t1_s = obs.getcell("TIME_RANGE", 0)
        with tables.table(str(ms), ack=False) as main:
            instrument = main.getkeyword("DSA110_INSTRUMENT")
        with tables.table(f"{ms}/FIELD", ack=False) as field:
            ra_c, dec_c = np.degrees(field.getcol("PHASE_DIR")[0, 0])
        for path in [image.image_path, image.pb_path, image.pbcor_path]:
            header = _checked_header(path)
            missing = [k for k in STANDARD if k not in header]
            assert not missing, f"{path.name} lacks {missing}"
            assert header["RADESYS"] == "ICRS"
            assert header["EQUINOX"] == 2000.0
            assert header["TELESCOP"] == dsa110.CASA_TELESCOPE_NAME
            assert header["INSTRUME"] == instrument == "DSA-110"
            assert header["MJD-OBS"] == pytest.approx(t0_s / 86400, abs=1e-8)
            assert header["MJD-END"] == pytest.approx(t1_s / 86400, abs=1e-8)
            avg = Time(header["DATE-AVG"], format="isot", scale="utc").mjd
            assert avg == pytest.approx(0.5 * (t0_s + t1_s) / 86400, abs=1e-7)
            assert header["CTYPE3"] == "FREQ" and header["CRVAL3"] > 1.3e9
            # the pointing at mid-time is the phase centre (the median meridian)
            d_ra = (header["OBSRA"] - ra_c + 180) % 360 - 180
            assert abs(d_ra) * np.cos(np.radians(dec_c)) * 3600 < 1.0
            assert abs(header["OBSDEC"] - dec_c) * 3600 < 1.0
            assert header["DSACAL"] == LONG_CAL or path != image.image_path
        assert header["BMAJ"] > 0 and header["BMIN"] > 0
    for path in _image_files(products):
        _checked_header(path)


def test_mosaic_header_and_shared_frame(products) -> None:
    mosaic = products["mosaic"]
    header = _checked_header(mosaic.mosaic_path)
    for path in (mosaic.weight_path, mosaic.noise_path, mosaic.coverage_path):
        _checked_header(path)
    missing = [k for k in (*STANDARD, "RESTFRQ", "DATE-END") if k not in header]
    assert not missing, f"mosaic lacks {missing}"
    members = [fits.getheader(i.image_path) for i in products["images"]]
    assert header["TELESCOP"] == dsa110.CASA_TELESCOPE_NAME
    assert header["INSTRUME"] == "DSA-110"
    assert header["MJD-OBS"] == pytest.approx(min(h["MJD-OBS"] for h in members))
    assert header["MJD-END"] == pytest.approx(max(h["MJD-END"] for h in members))
    assert header["DATE-OBS"] == min(h["DATE-OBS"] for h in members)
    freqs = [h["CRVAL3"] for h in members]
    assert header["RESTFRQ"] == pytest.approx(np.mean(freqs))
    assert header["DSACAL"] == LONG_CAL  # whole, over CONTINUE cards
    # one celestial frame: the mosaic's and every image's are ICRS, so a
    # member's centre maps onto the same sky position through both WCSs
    mosaic_wcs = WCS(header).celestial
    frame = wcs_to_celestial_frame(mosaic_wcs)
    assert frame.name == "icrs"
    for member in members:
        image_wcs = WCS(member).celestial
        assert wcs_to_celestial_frame(image_wcs).is_equivalent_frame(frame)
        centre = image_wcs.pixel_to_world(member["NAXIS1"] / 2, member["NAXIS2"] / 2)
        back = mosaic_wcs.pixel_to_world(*mosaic_wcs.world_to_pixel(centre))
        assert centre.separation(back).arcsec < 0.01


def test_long_provenance_is_never_truncated(tmp_path) -> None:
    header = fits.Header()
    apply_header_cards(
        header,
        {
            "DSACAL": LONG_CAL,
            "DSA_CALIBRATION_TABLES": LONG_CAL,
            "DSAPTDEC": (37.0, "[deg] pointing dec"),
        },
    )
    path = tmp_path / "h.fits"
    fits.PrimaryHDU(np.zeros((2, 2), np.float32), header).writeto(path)
    with fits.open(path) as hdul:
        hdul.verify("exception")
        back = hdul[0].header
    assert back["DSACAL"] == LONG_CAL
    assert LONG_CAL in "".join(back["HISTORY"])  # a HIERARCH value: in full
    assert back.comments["DSAPTDEC"] == "[deg] pointing dec"


def test_tclean_image_header_agrees_with_wsclean(products) -> None:
    """CASA's exportfits writes OBSGEO from CASA's (unusable) OVRO_MMA entry."""
    tclean = _checked_header(products["tclean"].image_path)
    wsclean = _checked_header(products["images"][0].image_path)
    for key in ("RADESYS", "TELESCOP", "INSTRUME", "DATE-OBS", "MJD-AVG", "OBSRA"):
        assert tclean[key] == wsclean[key], key
    for header in (tclean, wsclean):
        xyz = np.array([header[f"OBSGEO-{c}"] for c in "XYZ"])
        centre = EarthLocation.from_geodetic(
            dsa110.ARRAY_LON_DEG, dsa110.ARRAY_LAT_DEG, dsa110.ARRAY_HEIGHT_M
        )
        assert np.linalg.norm(xyz - [c.value for c in centre.geocentric]) < 100.0
        assert header["OBSGEO-B"] == pytest.approx(dsa110.ARRAY_LAT_DEG, abs=1e-3)
    for path in (products["tclean"].pb_path, products["tclean"].pbcor_path):
        _checked_header(path)
