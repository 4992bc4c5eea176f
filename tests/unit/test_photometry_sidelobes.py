"""Known-truth tests of the sidelobe error and of a mosaic's mean of its members.

`sidelobe_noise`: a residual of white noise plus, around one bright source,
an extra noise field whose rms is known at every distance; the background
and the excess at a neighbour's distance must come back within 10%.
`mosaic_from_members`: two members with independent noise and one shared
(sidelobe) error per source; the mean's pulls must be 1 only when the shared
part is carried as correlated, and flagged members stay out. Members whose
non-thermal errors are correlated by a known rho: the pair fit
(`overlap_fit`) must measure it, with a fractional error beside it.
"""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table

from dsa110_contimg.data_ingestion._photometry_sidelobes import sidelobe_noise
from dsa110_contimg.data_ingestion.photometry import PhotometryFlag
from dsa110_contimg.pipeline.stages._photometry_members import mosaic_from_members
from dsa110_contimg.pipeline.stages._photometry_systematics import (
    add_overlap_systematic,
    mark_shared_systematic,
    overlap_fit,
)

BEAM_PIX = 5.0


def _field(rng, bg=0.01, extra=0.03, n=600):
    """White noise, plus ``extra`` rms between 4 and 9 beams of the source at
    (300, 300); return the residual and the positions (bright one first)."""
    residual = rng.normal(0.0, bg, (n, n))
    yy, xx = np.mgrid[0:n, 0:n]
    r = np.hypot(xx - 300.0, yy - 300.0) / BEAM_PIX
    ring = (r >= 4) & (r < 9)
    residual[ring] += rng.normal(0.0, extra, ring.sum())
    x = np.array([300.0, 300.0 + 6.5 * BEAM_PIX, 300.0, 60.0])
    y = np.array([300.0, 300.0, 300.0 - 12.5 * BEAM_PIX, 60.0])
    return residual, x, y


def test_excess_at_a_neighbours_distance_and_background_are_recovered() -> None:
    rng = np.random.default_rng(3)
    residual, x, y = _field(rng)
    inside = np.ones(x.size, dtype=bool)
    bright = np.array([True, False, False, False])
    background, sidelobe = sidelobe_noise(
        residual, x, y, inside, bright, BEAM_PIX, np.nan
    )
    assert background == pytest.approx(0.01, rel=0.05)
    # 6.5 beams: inside the extra field (rms 0.03); 12.5 beams and far: none
    assert sidelobe[1] == pytest.approx(0.03, rel=0.1)
    assert sidelobe[2] < 0.004
    assert sidelobe[3] == 0.0
    assert sidelobe[0] == 0.0  # a source's own sidelobes are not its error


def test_no_bright_source_gives_no_sidelobe_term() -> None:
    rng = np.random.default_rng(4)
    residual, x, y = _field(rng)
    background, sidelobe = sidelobe_noise(
        residual,
        x,
        y,
        np.ones(x.size, dtype=bool),
        np.zeros(x.size, dtype=bool),
        BEAM_PIX,
        np.nan,
    )
    assert np.all(sidelobe == 0.0)
    assert background > 0.01  # the extra field is background now


def _member(name, flux, noise, shared, flags=None, kind="image"):
    n = flux.size
    table = Table(
        {
            "source_name": np.array([f"S{i:04d}" for i in range(n)]),
            "flux_jy": flux,
            "flux_err_jy": np.hypot(noise, shared),
            "flux_sys_jy": shared,
            "snr": flux / np.hypot(noise, shared),
            "peak_jy": flux,
            "rms_jy": noise,
            "pb": np.ones(n),
            "flags": np.zeros(n, dtype=np.int32) if flags is None else flags,
            "image_kind": np.full(n, kind),
            "image_path": np.full(n, f"/data/images/{name}-image.fits"),
        }
    )
    mark_shared_systematic(table)
    return table


def test_mosaic_mean_carries_the_shared_error_as_correlated() -> None:
    rng = np.random.default_rng(5)
    n = 4000
    true = rng.uniform(0.5, 2.0, n)
    noise, shared = 0.02, 0.03
    common = rng.normal(0.0, shared, n)  # one sky's sidelobes in both members
    members = [
        _member(
            f"drift_{k}",
            true + common + rng.normal(0.0, noise, n),
            np.full(n, noise),
            np.full(n, shared),
        )
        for k in range(2)
    ]
    mosaic = _member("mosaic", np.ones(n), np.full(n, 0.1), np.zeros(n), kind="mosaic")
    paths = [str(m["image_path"][0]) for m in members]
    out = mosaic_from_members(mosaic, members, paths)
    pulls = (out["flux_jy"] - true) / out["flux_err_jy"]
    assert np.sqrt(np.mean(pulls**2)) == pytest.approx(1.0, abs=0.05)
    # the pair differences say the sidelobes are the same in both members
    assert out.meta["error_correlation"] == pytest.approx(1.0, abs=0.05)
    assert np.all(out["flux_sys_jy"] == pytest.approx(shared, rel=0.02))
    assert np.all(
        out["flux_err_jy"]
        == pytest.approx(np.hypot(noise / np.sqrt(2), shared), rel=0.02)
    )
    assert out.meta["n_from_members"] == n
    # the overlap fit keeps the sidelobe term (pair differences cancel it)
    kept = add_overlap_systematic([*members, out])
    assert np.all(kept[2]["flux_sys_jy"] >= out["flux_sys_jy"] * (1 - 1e-9))
    assert np.all(kept[0]["flux_sys_jy"] >= shared * (1 - 1e-9))


def test_flagged_and_unused_members_stay_out() -> None:
    flux = np.array([1.0, 2.0, 3.0])
    edge = np.array([0, int(PhotometryFlag.EDGE), int(PhotometryFlag.EDGE)], np.int32)
    a = _member("a", flux, np.full(3, 0.1), np.zeros(3))
    b = _member("b", flux + 0.5, np.full(3, 0.1), np.zeros(3), flags=edge)
    c = _member("c", flux + 9.0, np.full(3, 0.1), np.zeros(3))  # not coadded
    a["flags"][2] = int(PhotometryFlag.LOW_PB)
    mosaic = _member("m", np.full(3, 7.0), np.full(3, 0.1), np.zeros(3), kind="mosaic")
    used = [str(a["image_path"][0]), str(b["image_path"][0])]
    out = mosaic_from_members(mosaic, [a, b, c], used)
    assert out.meta["error_correlation"] == 1.0  # too few pairs to measure it
    # source 0: both members; 1: only a; 2: none (kept, flagged incomplete)
    assert out["flux_jy"][0] == pytest.approx(1.25)
    assert out["flux_err_jy"][0] == pytest.approx(0.1 / np.sqrt(2))
    assert out["flux_jy"][1] == pytest.approx(2.0)
    assert out["flux_jy"][2] == pytest.approx(7.0)
    assert out["flags"][2] & PhotometryFlag.EDGE
    assert not out["flags"][0] & PhotometryFlag.EDGE


def test_pure_noise_gives_no_sidelobe_term() -> None:
    # many bright sources on white noise: the rings' scatter is not a sidelobe
    rng = np.random.default_rng(6)
    residual = rng.normal(0.0, 0.01, (800, 800))
    x, y = rng.uniform(50, 750, (2, 60))
    bright = np.arange(60) < 20
    background, sidelobe = sidelobe_noise(
        residual, x, y, np.ones(60, dtype=bool), bright, BEAM_PIX, np.nan
    )
    assert background == pytest.approx(0.01, rel=0.02)
    assert np.mean(sidelobe > 0.3 * background) < 0.05


def test_the_clean_error_part_of_the_noise_is_shared_by_the_members() -> None:
    # members whose noise error is 30% thermal (independent) and the rest the
    # clean's error on one sky (common to both): the mosaic mean is honest only
    # if that part is not averaged down
    rng = np.random.default_rng(7)
    n, noise, phi = 4000, 0.03, 0.3
    true = rng.uniform(0.5, 2.0, n)
    clean = rng.normal(0.0, noise * np.sqrt(1 - phi**2), n)
    members = []
    for k in range(3):
        member = _member(
            f"drift_{k}",
            true + clean + rng.normal(0.0, phi * noise, n),
            np.full(n, noise),
            np.zeros(n),
        )
        member.meta["thermal_fraction"] = phi
        members.append(member)
    mosaic = _member("mosaic", np.ones(n), np.full(n, 0.1), np.zeros(n), kind="mosaic")
    paths = [str(m["image_path"][0]) for m in members]
    out = mosaic_from_members(mosaic, members, paths)
    pulls = (out["flux_jy"] - true) / out["flux_err_jy"]
    assert np.sqrt(np.mean(pulls**2)) == pytest.approx(1.0, abs=0.05)
    expected = np.hypot(phi * noise / np.sqrt(3), noise * np.sqrt(1 - phi**2))
    assert np.allclose(out["flux_err_jy"], expected)
    # taken as all thermal (the old combination), the errors are 1.6x too small
    for member in members:
        member.meta["thermal_fraction"] = 1.0
    naive = mosaic_from_members(mosaic, members, paths)
    naive_pulls = (naive["flux_jy"] - true) / naive["flux_err_jy"]
    assert np.sqrt(np.mean(naive_pulls**2)) > 1.5


def test_thermal_fraction_from_the_quality_record(tmp_path) -> None:
    import json

    from dsa110_contimg.pipeline.stages.image_quality import quality_path
    from dsa110_contimg.pipeline.stages.photometry_stage import thermal_fraction

    image = tmp_path / "drift_x-image.fits"
    assert thermal_fraction(image, 0.01) == 1.0  # no record: all thermal
    quality_path(image).write_text(json.dumps({"thermal_rms_jy": 0.002}))
    assert thermal_fraction(image, 0.01) == pytest.approx(0.2)
    assert thermal_fraction(image, 0.001) == 1.0  # never above 1
    assert thermal_fraction(image, float("nan")) == 1.0


def _correlated_members(rng, n, rho, noise, phi, shared, k=2):
    """``k`` members of ``n`` sources: thermal noise ``phi * noise`` of their
    own, and a non-thermal error (the rest of ``noise`` and a sidelobe term
    ``shared``) correlated by ``rho`` between every two members."""
    true = rng.uniform(0.5, 2.0, n)
    q = np.hypot(noise * np.sqrt(1 - phi**2), shared)
    common = rng.normal(0.0, 1.0, n)
    members = []
    for i in range(k):
        own = rng.normal(0.0, 1.0, n)
        error = q * (np.sqrt(rho) * common + np.sqrt(1 - rho) * own)
        member = _member(
            f"drift_{i}",
            true + error + rng.normal(0.0, phi * noise, n),
            np.full(n, noise),
            np.full(n, shared),
        )
        member.meta["thermal_fraction"] = phi
        members.append(member)
    return true, members


@pytest.mark.parametrize("rho", [0.0, 0.4, 0.8])
def test_partly_shared_errors_are_measured_from_the_pairs(rho) -> None:
    # the members' non-thermal errors correlated by rho: the fit measures rho
    # from their differences alone and the mean's pulls are 1, where taking
    # them as fully shared (the former upper bound) made them too small
    rng = np.random.default_rng(11)
    n = 3000
    true, members = _correlated_members(rng, n, rho, 0.03, 0.3, 0.02)
    mosaic = _member("mosaic", np.ones(n), np.full(n, 0.1), np.zeros(n), kind="mosaic")
    paths = [str(m["image_path"][0]) for m in members]
    out = mosaic_from_members(mosaic, members, paths)
    assert out.meta["error_correlation"] == pytest.approx(rho, abs=0.08)
    pulls = (out["flux_jy"] - true) / out["flux_err_jy"]
    assert np.sqrt(np.mean(pulls**2)) == pytest.approx(1.0, abs=0.05)
    if rho <= 0.4:
        q = np.hypot(0.03 * np.sqrt(1 - 0.3**2), 0.02)
        bound = np.hypot(0.3 * 0.03 / np.sqrt(2), q)
        assert np.sqrt(np.mean(((out["flux_jy"] - true) / bound) ** 2)) < 0.9


def test_fraction_and_correlation_are_fitted_together() -> None:
    # a fractional error f/p of each image (independent) on top of correlated
    # non-thermal errors: both come back from the pair differences
    rng = np.random.default_rng(12)
    n, f, rho = 4000, 0.02, 0.5
    true, members = _correlated_members(rng, n, rho, 0.02, 0.3, 0.01)
    for member in members:
        pb = rng.uniform(0.3, 1.0, n)
        member["pb"] = pb
        member["flux_jy"] += true * rng.normal(0.0, f, n) / pb
    fraction, correlation = overlap_fit(members)
    assert fraction == pytest.approx(f, rel=0.1)
    assert correlation == pytest.approx(rho, abs=0.08)
