"""The mosaicking stage on synthetic group images: truth, gaps, reruns."""

from __future__ import annotations

import os
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS

from dsa110_contimg.data_ingestion.photometry import Beam
from dsa110_contimg.data_ingestion.skymodel import SkyCatalog
from dsa110_contimg.exceptions import DataQualityWarning, InputDataError
from dsa110_contimg.mosaic import DriftTrack
from dsa110_contimg.pipeline.stages.mosaicking_stage import MosaicMember, make_mosaic
from dsa110_contimg.pipeline.stages.photometry_stage import measure_mosaic
from dsa110_contimg.telescope import dsa110
from dsa110_contimg.testing.group_images import write_group_image
from dsa110_contimg.utils.config_loader import MosaicConfig, PhotometryConfig

START = datetime(2023, 6, 1, tzinfo=UTC)
GROUP_S = dsa110.INTEGRATION_TIME_S * 24
N_GROUPS = 4
SHAPE = (200, 200)
CELL_ARCSEC = 20.0
NOISE_JY = 2e-3
BEAM = Beam(70.0, 60.0, 15.0)


def _track(k: int) -> DriftTrack:
    t0 = Time(START + timedelta(seconds=k * GROUP_S)).mjd
    return DriftTrack(
        37.0, t0 + 6.44 / 86400, dsa110.INTEGRATION_TIME_S, 24, 1.31e9, 1.5e9
    )


def _centre(k: int) -> tuple[float, float]:
    ra, dec = _track(k).beam_centres_deg()
    return float(np.median(ra)), float(np.median(dec))


def _truth() -> SkyCatalog:
    rows = []
    for k in range(N_GROUPS):
        ra, dec = _centre(k)
        rows.append((ra, dec + 0.3, 0.5 + 0.1 * k))  # in one image
        rows.append((ra + 0.62, dec - 0.2, 0.3))  # between two images
    rows = np.asarray(rows)
    n = len(rows)
    return SkyCatalog(
        name=np.array([f"T{i:02d}" for i in range(n)]),
        ra_deg=rows[:, 0],
        dec_deg=rows[:, 1],
        flux_jy=rows[:, 2],
        spectral_index=np.zeros(n),
        ref_freq_hz=np.full(n, 1.4e9),
    )


@pytest.fixture(scope="module")
def group_images(tmp_path_factory) -> list[MosaicMember]:
    base = tmp_path_factory.mktemp("groups")
    truth = _truth()
    members = []
    rng = np.random.default_rng(2)
    for k in range(N_GROUPS):
        when = START + timedelta(seconds=k * GROUP_S)
        prefix = base / f"drift_{when:%Y%m%dT%H%M%S}_00"
        path = write_group_image(
            prefix,
            _track(k),
            shape=SHAPE,
            cell_arcsec=CELL_ARCSEC,
            sources=list(zip(truth.ra_deg, truth.dec_deg, truth.flux_jy, strict=True)),
            beam=BEAM,
            noise_rms_jy=NOISE_JY,
            rng=rng,
        )
        members.append(MosaicMember(path, when))
    return members


def _copy_members(members, dest: Path) -> list[MosaicMember]:
    dest.mkdir()
    out = []
    for m in members:
        for kind in ("image", "pb", "rms"):
            src = m.image_path.with_name(m.image_path.name.replace("image", kind))
            (dest / src.name).write_bytes(src.read_bytes())
        out.append(MosaicMember(dest / m.image_path.name, m.group_time))
    return out


def _coverage_at(product, ra, dec) -> int:
    header = fits.getheader(product.coverage_path)
    x, y = WCS(header).world_to_pixel_values(ra, dec)
    return int(fits.getdata(product.coverage_path)[round(float(y)), round(float(x))])


def test_mosaic_recovers_injected_fluxes_and_predicts_its_noise(group_images, tmp_path):
    product = make_mosaic("block_a", group_images, tmp_path, MosaicConfig())
    assert product.n_used == N_GROUPS and not product.skipped
    for path in (product.weight_path, product.noise_path, product.coverage_path):
        assert path.exists()
    assert product.preview_path is not None and product.preview_path.exists()
    header = fits.getheader(product.mosaic_path)
    assert header["NAXIS"] == 2 and header["DSANUSED"] == N_GROUPS
    for key in ("BMAJ", "DSAMJD", "DSAFREQ", "DSACFGH", "DSAVERS", "DSAMHASH"):
        assert key in header
    truth = _truth()
    table = measure_mosaic(
        product.mosaic_path, truth, PhotometryConfig(), noise_path=product.noise_path
    )
    assert set(table["image_kind"]) == {"mosaic"} and np.all(table["pb"] == 1.0)
    good = (table["flags"] == 0) & (table["snr"] > 10)
    idx = np.searchsorted(truth.name, table["source_name"][good])
    err = np.asarray(table["flux_jy"][good]) / truth.flux_jy[idx] - 1
    pull = err * truth.flux_jy[idx] / np.asarray(table["flux_err_jy"][good])
    print(
        f"\nmosaic: {good.sum()} sources, median |flux error| "
        f"{100 * np.median(np.abs(err)):.2f}%, "
        f"median |pull| {np.median(np.abs(pull)):.2f}"
    )
    assert good.sum() >= 2 * N_GROUPS - 2
    assert np.median(np.abs(err)) < 0.02
    assert np.median(np.abs(pull)) < 2.0
    # measured rms (sources masked) vs the rms predicted from the weights
    image = fits.getdata(product.mosaic_path).astype(float)
    noise = fits.getdata(product.noise_path).astype(float)
    z = image / noise
    wcs = WCS(header)
    x, y = wcs.world_to_pixel_values(truth.ra_deg, truth.dec_deg)
    for xi, yi in zip(x, y, strict=True):
        z[max(0, int(yi) - 12) : int(yi) + 13, max(0, int(xi) - 12) : int(xi) + 13] = (
            np.nan
        )
    z = z[np.isfinite(z)]
    ratio = 1.4826 * np.median(np.abs(z - np.median(z)))
    print(f"measured / predicted mosaic rms = {ratio:.3f}")
    assert ratio == pytest.approx(1.0, abs=0.2)


def test_rerun_skips_and_a_changed_member_rebuilds(group_images, tmp_path):
    members = _copy_members(group_images, tmp_path / "img")
    first = make_mosaic("block_b", members, tmp_path / "mos", MosaicConfig())
    mtime = first.mosaic_path.stat().st_mtime_ns
    again = make_mosaic("block_b", members, tmp_path / "mos", MosaicConfig())
    assert again.skipped and again.mosaic_path.stat().st_mtime_ns == mtime
    assert [m.status for m in again.members] == ["used"] * N_GROUPS
    os.utime(members[1].image_path, ns=(1, 1))
    rebuilt = make_mosaic("block_b", members, tmp_path / "mos", MosaicConfig())
    assert not rebuilt.skipped


@pytest.mark.parametrize(
    "damage", ["corrupt", "truncated", "nan", "missing", "missing_last"]
)
def test_bad_member_leaves_a_flagged_gap(group_images, tmp_path, damage):
    members = _copy_members(group_images, tmp_path / "img")
    k = N_GROUPS - 1 if damage == "missing_last" else 1
    bad = members[k].image_path
    if damage == "corrupt":
        bad.write_bytes(b"SIMPLE  = this is not a FITS file" * 40)
    elif damage == "truncated":
        bad.write_bytes(bad.read_bytes()[:20_000])
    elif damage == "nan":
        with fits.open(bad, mode="update") as hdul:
            hdul[0].data[:] = np.nan
    else:
        bad.unlink()
    with pytest.warns(DataQualityWarning, match=bad.name):
        product = make_mosaic(f"block_{damage}", members, tmp_path, MosaicConfig())
    status = {m.image_path: m.status for m in product.members}
    expected = {"corrupt": "corrupt", "truncated": "corrupt", "nan": "empty"}.get(
        damage, "missing"
    )
    assert status[bad] == expected
    assert product.n_used == N_GROUPS - 1
    assert fits.getheader(product.mosaic_path)["DSANBAD"] == 1
    ra, dec = _centre(k)
    ra_ok, dec_ok = _centre(0 if k else 2)
    # the gap is on the grid (even for the last member) and uncovered
    assert _coverage_at(product, ra, dec) == 0
    assert _coverage_at(product, ra_ok, dec_ok) >= 1


def test_members_use_the_maps_the_imaging_stage_returned(group_images, tmp_path):
    """A member's pb/rms maps come from its image product, not from its name."""
    members = _copy_members(group_images, tmp_path / "img")
    elsewhere = tmp_path / "maps"
    elsewhere.mkdir()
    moved = []
    for m in members:
        pb, rms = m.map_path("pb"), m.map_path("rms")
        pb.rename(elsewhere / pb.name)
        rms.rename(elsewhere / rms.name)
        moved.append(
            MosaicMember(
                m.image_path,
                m.group_time,
                pb_path=elsewhere / pb.name,
                rms_path=elsewhere / rms.name,
            )
        )
    with pytest.warns(DataQualityWarning, match="no pb map"):
        by_name = make_mosaic(
            "block_n", [members[0], *moved[1:]], tmp_path / "n", MosaicConfig()
        )
    assert [m.status for m in by_name.members] == ["incomplete"] + ["used"] * (
        N_GROUPS - 1
    )
    product = make_mosaic("block_p", moved, tmp_path / "p", MosaicConfig())
    assert [m.status for m in product.members] == ["used"] * N_GROUPS
    reference = make_mosaic("block_p", group_images, tmp_path / "r", MosaicConfig())
    np.testing.assert_array_equal(
        fits.getdata(product.mosaic_path), fits.getdata(reference.mosaic_path)
    )


def test_block_with_no_usable_image_is_an_error(tmp_path):
    members = [MosaicMember(tmp_path / "drift_x-image.fits", START)]
    with warnings.catch_warnings(), pytest.raises(InputDataError, match="block_c"):
        warnings.simplefilter("ignore", DataQualityWarning)
        make_mosaic("block_c", members, tmp_path, MosaicConfig())


def test_car_projection_and_interp_method_agree_with_default(group_images, tmp_path):
    default = make_mosaic("block_d", group_images[:2], tmp_path / "a", MosaicConfig())
    other = make_mosaic(
        "block_d",
        group_images[:2],
        tmp_path / "b",
        MosaicConfig(method="interp", write_png=False),
    )
    a = fits.getdata(default.mosaic_path)
    b = fits.getdata(other.mosaic_path)
    both = np.isfinite(a) & np.isfinite(b)
    assert both.sum() > 0.95 * np.isfinite(a).sum()
    assert np.max(np.abs(a[both] - b[both])) < 1e-5
    car = make_mosaic(
        "block_d", group_images[:2], tmp_path / "c", MosaicConfig(projection="CAR")
    )
    assert fits.getheader(car.mosaic_path)["CTYPE1"] == "RA---CAR"


@pytest.mark.parametrize("victim", ["mosaic", "weight", "noise"])
def test_a_truncated_mosaic_product_is_made_again(group_images, tmp_path, victim):
    """What a power loss leaves (a 0-byte or cut file) is never trusted."""
    members = _copy_members(group_images, tmp_path / "img")
    first = make_mosaic("block_t", members, tmp_path / "mos", MosaicConfig())
    target = {
        "mosaic": first.mosaic_path,
        "weight": first.weight_path,
        "noise": first.noise_path,
    }[victim]
    want = np.array(fits.getdata(first.mosaic_path, memmap=False))
    target.write_bytes(b"")
    again = make_mosaic("block_t", members, tmp_path / "mos", MosaicConfig())
    assert not again.skipped
    got = np.array(fits.getdata(again.mosaic_path, memmap=False))
    np.testing.assert_array_equal(got, want)


def test_a_failed_rebuild_keeps_the_previous_mosaic(
    group_images, tmp_path, monkeypatch
):
    from dsa110_contimg.pipeline.stages import mosaicking_stage

    members = _copy_members(group_images, tmp_path / "img")
    first = make_mosaic("block_k", members, tmp_path / "mos", MosaicConfig())
    before = {p.name: p.read_bytes() for p in (tmp_path / "mos").iterdir()}
    os.utime(members[1].image_path, ns=(1, 1))  # inputs changed: rebuild

    def crash(*args, **kwargs):
        msg = "power loss"
        raise KeyboardInterrupt(msg)

    monkeypatch.setattr(mosaicking_stage, "coadd_images", crash)
    with pytest.raises(KeyboardInterrupt):
        make_mosaic("block_k", members, tmp_path / "mos", MosaicConfig())
    after = {p.name: p.read_bytes() for p in (tmp_path / "mos").iterdir()}
    assert after == before, "the previous mosaic and its maps are untouched"
    assert first.mosaic_path.exists()
