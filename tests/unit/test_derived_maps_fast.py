"""The derived maps of an image: same numbers as the seed's code, PB map reused by key.

`make_derived_products` computes the primary beam, rms and PB-corrected maps
in float32 with vectorised box statistics (issue 19). The references here are
the seed's computations, written out: the float64 spline of the beam, photutils'
own `Background2D` rms map and ``image / pb`` in float64. The primary-beam
map carries `primary_beam_key` (``DSAPBKEY``) and is reused when whole and of
the same key, recomputed when truncated or made for another grid or track.
"""

from __future__ import annotations

import os
import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.time import Time

from dsa110_contimg.data_ingestion.photometry import Beam
from dsa110_contimg.mosaic import DriftTrack, primary_beam_key
from dsa110_contimg.pipeline.stages import derived_maps
from dsa110_contimg.pipeline.stages.derived_maps import (
    PB_KEY_CARD,
    make_derived_products,
)
from dsa110_contimg.products import ImageNames
from dsa110_contimg.telescope import dsa110
from dsa110_contimg.testing.group_images import write_group_image
from dsa110_contimg.tools.fits_header import celestial_wcs
from dsa110_contimg.tools.imagers import ImageProduct
from dsa110_contimg.utils.config import ImagingConfig

SHAPE = (230, 190)  # a box size (5 beams) that divides neither axis
CELL_ARCSEC = 20.0
START_MJD = Time(datetime(2023, 6, 1, tzinfo=UTC)).mjd + 7.5 / 86400
TRACK = DriftTrack(37.0, START_MJD, dsa110.INTEGRATION_TIME_S, 24, 1.31e9, 1.5e9)
CFG = ImagingConfig(write_png=False, noise_box_beams=5.0)


def _simulated(directory: Path) -> ImageProduct:
    ra_c, dec_c = (float(np.median(v)) for v in TRACK.beam_centres_deg())
    path = write_group_image(
        directory / "drift_20230601T000007_00",
        TRACK,
        shape=SHAPE,
        cell_arcsec=CELL_ARCSEC,
        sources=[(ra_c, dec_c, 0.5), (ra_c + 0.3, dec_c - 0.2, 0.2)],
        beam=Beam(70.0, 60.0, 15.0),
        noise_rms_jy=2e-3,
        rng=np.random.default_rng(11),
    )
    names = ImageNames.of(path)
    for kind in ("pb", "rms"):  # the synthetic maps: made here by the stage
        names.path(kind).unlink()
    header = fits.getheader(path)
    rng = np.random.default_rng(5)
    scale = np.linspace(1.0, 3.0, SHAPE[1])[None, :] * 2e-3
    residual = (rng.normal(size=SHAPE) * scale).astype(np.float32)
    residual[:12, :30] = np.nan  # a corner without data
    fits.PrimaryHDU(residual, header).writeto(names.path("residual"))
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
    )


def _seed_maps(product: ImageProduct) -> dict[str, np.ndarray]:
    """The seed's pb (float64 spline), rms (photutils) and pbcor (float64)."""
    from photutils.background import (
        Background2D,
        MADStdBackgroundRMS,
        MedianBackground,
    )
    from scipy.interpolate import RectBivariateSpline

    from dsa110_contimg.mosaic import primary_beam_at
    from dsa110_contimg.mosaic._beam import _spline_on_pixels

    image = fits.getdata(product.image_path).astype(np.float32)
    header = fits.getheader(product.image_path)
    wcs = celestial_wcs(header)
    ny, nx = SHAPE
    yg, xg = np.linspace(0.0, ny - 1.0, 65), np.linspace(0.0, nx - 1.0, 65)
    xx, yy = np.meshgrid(xg, yg)
    ra, dec = wcs.pixel_to_world_values(xx.ravel(), yy.ravel())
    grid = primary_beam_at(TRACK, ra, dec).reshape(65, 65)
    spline = RectBivariateSpline(yg, xg, grid, kx=3, ky=3)
    pb = _spline_on_pixels(spline, ny, nx, dtype=np.float64)
    residual = fits.getdata(product.residual_path).astype(np.float32)
    beam_pix = float(header["BMAJ"]) / abs(float(wcs.wcs.cdelt[1]))
    box = max(16, round(CFG.noise_box_beams * beam_pix))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rms = Background2D(
            residual,
            (box, box),
            exclude_percentile=75.0,
            filter_size=1,
            sigma_clip=None,
            bkg_estimator=MedianBackground(),
            bkg_rms_estimator=MADStdBackgroundRMS(),
        ).background_rms.astype(np.float64)
    rms[~np.isfinite(residual) | ~(rms > 0)] = np.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        pbcor = np.where(pb >= CFG.pb_limit, image / pb, np.nan)
    return {"pb": pb, "rms": rms, "pbcor": pbcor}


def _read(path: Path) -> np.ndarray:
    return fits.getdata(path).astype(np.float64)


def test_maps_equal_the_seed_computation(tmp_path: Path) -> None:
    product = _simulated(tmp_path)
    done = make_derived_products(product, CFG)
    seed = _seed_maps(product)
    for kind in ("pb", "rms", "pbcor"):
        ours = _read(getattr(done, f"{kind}_path"))
        want = seed[kind]
        np.testing.assert_array_equal(np.isnan(ours), np.isnan(want), err_msg=kind)
        ok = np.isfinite(want)
        assert ok.sum() > 0.5 * ok.size
        np.testing.assert_allclose(ours[ok], want[ok], rtol=1e-6, err_msg=kind)
    # the pbcor blanking is the seed's: NaN exactly where pb < pb_limit
    assert np.array_equal(np.isnan(_read(done.pbcor_path)), seed["pb"] < CFG.pb_limit)


def test_pb_map_is_reused_by_key_and_recomputed_when_broken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    product = _simulated(tmp_path)
    done = make_derived_products(product, CFG)
    first = _read(done.pb_path)
    header = fits.getheader(product.image_path)
    key = primary_beam_key(celestial_wcs(header), SHAPE, DriftTrack.from_header(header))
    assert fits.getheader(done.pb_path)[PB_KEY_CARD] == key

    calls = []
    real = derived_maps.primary_beam_image

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(derived_maps, "primary_beam_image", counted)

    def reimaged() -> None:
        """A new image of the same group on the same grid (another clean)."""
        later = product.image_path.stat().st_mtime_ns + 10**9
        os.utime(product.image_path, ns=(later, later))

    reimaged()
    make_derived_products(product, CFG)
    assert calls == [], "same grid and track: the map is reused"
    np.testing.assert_array_equal(_read(done.pb_path), first)

    # half-written (a crash before the fsync'd rename cannot do this, a disk
    # fault can): detected, recomputed, the same map again
    raw = done.pb_path.read_bytes()
    done.pb_path.write_bytes(raw[: len(raw) // 2])
    reimaged()
    make_derived_products(product, CFG)
    assert calls == [1]
    np.testing.assert_array_equal(_read(done.pb_path), first)

    # a map of another key (another track or grid) is not used
    with fits.open(done.pb_path, mode="update") as hdul:
        hdul[0].header[PB_KEY_CARD] = "0" * 16
    reimaged()
    make_derived_products(product, CFG)
    assert calls == [1, 1]
    assert fits.getheader(done.pb_path)[PB_KEY_CARD] == key


def test_pb_key_names_grid_track_and_band() -> None:
    from astropy.wcs import WCS

    def wcs(crval_dec=37.0, cdelt=20.0, crpix=116.0, ctype="SIN"):
        w = WCS(naxis=2)
        w.wcs.ctype = [f"RA---{ctype}", f"DEC--{ctype}"]
        w.wcs.crval = [150.0, crval_dec]
        w.wcs.crpix = [96.0, crpix]
        w.wcs.cdelt = [-cdelt / 3600, cdelt / 3600]
        return w

    base = primary_beam_key(wcs(), SHAPE, TRACK)
    assert primary_beam_key(wcs(), SHAPE, TRACK) == base
    others = [
        primary_beam_key(wcs(crval_dec=37.1), SHAPE, TRACK),
        primary_beam_key(wcs(cdelt=10.0), SHAPE, TRACK),
        primary_beam_key(wcs(crpix=117.0), SHAPE, TRACK),
        primary_beam_key(wcs(ctype="TAN"), SHAPE, TRACK),
        primary_beam_key(wcs(), (231, 190), TRACK),
        primary_beam_key(wcs(), SHAPE, TRACK, n_grid=33),
    ]
    for field, value in (
        ("pointing_dec_deg", 37.5),
        ("start_mjd", START_MJD + 300 / 86400),
        ("step_s", 10.0),
        ("n_time", 23),
        ("freq_min_hz", 1.30e9),
        ("freq_max_hz", 1.45e9),
    ):
        from dataclasses import replace

        others.append(primary_beam_key(wcs(), SHAPE, replace(TRACK, **{field: value})))
    assert base not in others
    assert len(set(others)) == len(others)


def test_maps_made_in_the_worker_thread_go_through_the_publish_fence(
    tmp_path: Path,
) -> None:
    """The FITS maps are written by a worker thread while the previews are
    drawn; each rename still passes the caller's fence (a worker's claims),
    in the caller's thread (the fence's SQLite connection is bound to it)."""
    import threading

    from dsa110_contimg.utils.storage import publish_fence, swap_into_place

    product = _simulated(tmp_path)
    fenced: list[str] = []
    caller = threading.current_thread()

    def fence(tmp: Path, final: Path) -> None:
        assert threading.current_thread() is caller, "fence called off its thread"
        fenced.append(final.name.removeprefix("drift_20230601T000007_00-"))
        swap_into_place(tmp, final)

    with publish_fence(fence):
        done = make_derived_products(product, ImagingConfig(noise_box_beams=5.0))
    assert sorted(fenced) == sorted(
        ["pb.fits", "rms.fits", "pbcor.fits", "image.png", "residual.png", "pb.png"]
    )
    assert done.preview_path.exists() and done.pbcor_path.exists()
    assert not list(tmp_path.glob(".*tmp-*")), "no temporary left behind"
