"""The mosaic's guard band: no source is taken from the edge of a member image.

Two overlapping images: a source 3 pixels inside image A's border (where
imagers clean and restore poorly; here its flux is 17% low, as found on a
full-size block) lies well inside image B. The mosaic must take it from B.
A second source sits in A's guard band where no other image covers it: it
still gets a mosaic row, flagged EDGE.
"""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from dsa110_contimg.data_ingestion.photometry import (
    Beam,
    PhotometryFlag,
    measure_forced,
)
from dsa110_contimg.data_ingestion.skymodel import SkyCatalog
from dsa110_contimg.mosaic import MosaicInput, coadd_images, image_outline, mosaic_grid
from dsa110_contimg.pipeline.stages.photometry_stage import measure_mosaic
from dsa110_contimg.testing.images import make_point_source_image
from dsa110_contimg.utils.config_loader import PhotometryConfig

BEAM = Beam(30.0, 24.0, 20.0)
CELL_ARCSEC = 10.0
SHAPE = (240, 240)
NOISE = 1e-3
GUARD_PIX = 4 * 30.0 / CELL_ARCSEC  # 4 beams


def _wcs(ra):
    _, wcs, _ = make_point_source_image(
        SHAPE, cell_arcsec=CELL_ARCSEC, center_ra_deg=ra, center_dec_deg=37.0,
        sources=[], beam=BEAM, noise_rms_jy=0.0, rng=np.random.default_rng(0),
    )  # fmt: skip
    return wcs


def _image(ra, sources, seed):
    image, wcs, _ = make_point_source_image(
        SHAPE, cell_arcsec=CELL_ARCSEC, center_ra_deg=ra, center_dec_deg=37.0,
        sources=sources, beam=BEAM, noise_rms_jy=NOISE,
        rng=np.random.default_rng(seed),
    )  # fmt: skip
    return image, wcs


@pytest.fixture(scope="module")
def field():
    wcs_a, wcs_b = _wcs(150.0), _wcs(150.5)
    overlap = wcs_a.pixel_to_world_values(3.0, 120.0)  # 3 px inside A's border
    alone = wcs_a.pixel_to_world_values(SHAPE[1] - 11.0, 80.0)  # in the band, off B
    x_b, _ = wcs_b.world_to_pixel_values(*overlap)
    assert 40 < x_b < SHAPE[1] - 40  # well inside B
    assert not 0 <= wcs_b.world_to_pixel_values(*alone)[0] < SHAPE[1]
    image_a, _ = _image(150.0, [(*overlap, 0.83), (*alone, 0.5)], seed=1)
    image_b, _ = _image(150.5, [(*overlap, 1.0)], seed=2)
    ones, rms = np.ones(SHAPE), np.full(SHAPE, NOISE)
    grid, shape = mosaic_grid(
        [image_outline(w, SHAPE) for w in (wcs_a, wcs_b)], cell_deg=CELL_ARCSEC / 3600
    )

    def mosaic(guard):
        inputs = [
            MosaicInput("a", image_a, ones, rms, wcs_a, guard_pix=guard),
            MosaicInput("b", image_b, ones, rms, wcs_b, guard_pix=guard),
        ]
        return coadd_images(inputs, grid, shape)

    return grid, overlap, alone, mosaic


def _flux_at(result, grid, pos):
    """Return the matched-filter flux at ``pos`` and its mosaic pixel (y, x)."""
    meas = measure_forced(
        result.image, grid, [pos[0]], [pos[1]], beam=BEAM, rms_map=result.noise
    )
    x, y = grid.world_to_pixel_values(*pos)
    return float(meas.flux_jy[0]), (round(float(y)), round(float(x)))


def test_source_at_a_member_edge_is_taken_from_the_other_member(field):
    grid, overlap, _, mosaic = field
    without, _ = _flux_at(mosaic(0.0), grid, overlap)
    result = mosaic(GUARD_PIX)
    with_guard, (iy, ix) = _flux_at(result, grid, overlap)
    print(f"\nedge source: {without:.4f} without the guard band, {with_guard:.4f} with")
    assert without == pytest.approx(0.915, abs=0.01)  # the biased edge mixed in
    assert with_guard == pytest.approx(1.0, abs=5 * NOISE)
    assert result.coverage[iy, ix] == 1  # B's interior only
    assert result.noise[iy, ix] == pytest.approx(NOISE, rel=1e-3)


def test_source_only_in_a_guard_band_gets_a_flagged_row(field, tmp_path):
    grid, overlap, alone, mosaic = field
    result = mosaic(GUARD_PIX)
    value, (iy, ix) = _flux_at(result, grid, alone)
    assert value == pytest.approx(0.5, abs=5 * NOISE)  # the band fills the gap
    assert result.guard_only[iy, ix] and result.coverage[iy, ix] == 0
    assert result.noise[iy, ix] == pytest.approx(NOISE, rel=1e-3)  # true weight
    header = grid.to_header()
    header["BMAJ"], header["BMIN"], header["BPA"] = 30 / 3600, 24 / 3600, 20.0
    paths = {}
    for kind, data in (
        ("mosaic", result.image),
        ("noise", result.noise),
        ("coverage", result.coverage),
    ):
        paths[kind] = tmp_path / f"b-{kind}.fits"
        fits.PrimaryHDU(data, header).writeto(paths[kind])
    catalog = SkyCatalog(
        name=np.array(["OVERLAP", "ALONE"]),
        ra_deg=np.array([overlap[0], alone[0]]),
        dec_deg=np.array([overlap[1], alone[1]]),
        flux_jy=np.array([1.0, 0.5]),
        spectral_index=np.zeros(2),
        ref_freq_hz=np.full(2, 1.4e9),
    )
    table = measure_mosaic(
        paths["mosaic"],
        catalog,
        PhotometryConfig(),
        noise_path=paths["noise"],
        coverage_path=paths["coverage"],
    )
    rows = {str(r["source_name"]): r for r in table}
    assert set(rows) == {"OVERLAP", "ALONE"}
    assert rows["ALONE"]["flags"] & PhotometryFlag.EDGE
    assert rows["OVERLAP"]["flags"] == 0
    assert rows["OVERLAP"]["flux_jy"] == pytest.approx(1.0, abs=0.02)
