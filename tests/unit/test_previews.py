"""Tests of the image previews and calibration QA plots (PNG size, legend, marks)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

pytest.importorskip("matplotlib")

from dsa110_contimg.visualization import (  # noqa: E402
    describe_header,
    plot_bandpass,
    plot_flag_fractions,
    plot_gains,
    robust_rms,
    write_preview,
)
from dsa110_contimg.visualization._preview import _legend  # noqa: E402


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def _image(n: int, rms: float = 0.002, seed: int = 1):
    rng = np.random.default_rng(seed)
    data = rng.normal(0.0, rms, (n, n))
    data[n // 2, n // 2] = 20.0  # a bright source whose sidelobes must not rule
    header = fits.Header()
    header.update(
        NAXIS=2,
        NAXIS1=n,
        NAXIS2=n,
        CTYPE1="RA---SIN",
        CTYPE2="DEC--SIN",
        CRVAL1=202.78,
        CRVAL2=30.5,
        CRPIX1=n / 2 + 1,
        CRPIX2=n / 2 + 1,
        CDELT1=-6 / 3600,
        CDELT2=6 / 3600,
        CUNIT1="deg",
        CUNIT2="deg",
        RADESYS="ICRS",
        BMAJ=40 / 3600,
        BMIN=20 / 3600,
        BPA=30.0,
        CTYPE3="FREQ",
        CRVAL3=1.405e9,
        DATE_OBS="2023-06-01T04:46:00",
    )
    header["DATE-OBS"] = "2023-06-01T04:46:00.5"
    return data, header, WCS(header, naxis=2)


def test_preview_is_native_size_for_1280_pixel_image(tmp_path: Path) -> None:
    data, header, wcs = _image(1280)
    path = write_preview(data, wcs, tmp_path / "p.png", title="g", header=header)
    width, height = _png_size(path)
    assert width >= 1280 and height >= 1280  # one data pixel per PNG pixel
    assert width < 1280 + 400 and height < 1280 + 300


def test_large_image_is_reduced_to_about_2000_pixels(tmp_path: Path) -> None:
    data, header, wcs = _image(2100)
    width, height = _png_size(write_preview(data, wcs, tmp_path / "p.png", title="g"))
    assert 1050 <= height - 170 <= 1300  # 2100 / 2 = 1050 data pixels drawn


def test_legend_has_beam_rms_frequency_and_time() -> None:
    _, header, _ = _image(64)
    info = describe_header(header)
    assert info["bmaj_deg"] == pytest.approx(40 / 3600)
    assert info["freq_hz"] == pytest.approx(1.405e9)
    legend = _legend(info, 0.00123, "Jy/beam")
    assert "beam 40.0\u2033\u00d720.0\u2033 PA 30\u00b0" in legend
    assert "rms 1.23 mJy/beam" in legend
    assert "1.4050 GHz" in legend
    assert "2023-06-01T04:46:00 UTC" in legend


def test_robust_rms_ignores_bright_source() -> None:
    data, _, _ = _image(512, rms=0.003)
    assert robust_rms(data) == pytest.approx(0.003, rel=0.03)
    assert np.std(data) > 10 * 0.003


def _lime_pixels(path: Path) -> int:
    image = pytest.importorskip("matplotlib.image").imread(path)
    rgb = image[..., :3]
    return int(((rgb[..., 1] > 0.9) & (rgb[..., 0] < 0.2) & (rgb[..., 2] < 0.2)).sum())


def test_catalogue_overlay_marks_sources(tmp_path: Path) -> None:
    data, header, wcs = _image(400)
    plain = write_preview(data, wcs, tmp_path / "plain.png", title="g", header=header)
    marked = write_preview(
        data,
        wcs,
        tmp_path / "marked.png",
        title="g",
        header=header,
        sources=[(202.78, 30.5, "SRC 20 Jy"), (202.70, 30.45, "B 0.1 Jy")],
    )
    assert _lime_pixels(plain) == 0
    assert _lime_pixels(marked) > 100


def test_calibration_plots_are_written(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    n_ant, n_chan = 6, 32
    bp = (1 + 0.1 * rng.normal(size=(n_ant, n_chan, 2))) * np.exp(
        1j * rng.normal(size=(n_ant, n_chan, 2))
    )
    flags = np.zeros(bp.shape, bool)
    flags[2, :, :] = True  # a flagged antenna is not drawn and does not break it
    names = [f"pad{i:03d}" for i in range(n_ant)]
    out = plot_bandpass(
        bp,
        flags,
        np.linspace(1.31e9, 1.5e9, n_chan),
        tmp_path / "b.png",
        antenna_names=names,
        title="3C286",
    )
    assert _png_size(out)[0] > 600
    times = np.repeat(60096.2 + np.arange(4) / 1440, n_ant)
    ants = np.tile(np.arange(n_ant), 4)
    gains = np.ones((times.size, 1, 2), complex)
    out = plot_gains(
        times,
        ants,
        gains,
        np.zeros(gains.shape, bool),
        tmp_path / "g.png",
        antenna_names=names,
        title="3C286",
    )
    assert out.is_file()
    out = plot_flag_fractions(
        dict.fromkeys(names, 0.01),
        {i: 0.02 for i in range(16)},
        tmp_path / "f.png",
        title="3C286",
    )
    assert out.is_file()


def test_primary_beam_preview_uses_fixed_limits(tmp_path: Path) -> None:
    _, header, wcs = _image(300)
    y, x = np.mgrid[:300, :300]
    pb = np.exp(-((x - 150) ** 2 + (y - 150) ** 2) / (2 * 60.0**2))
    path = write_preview(
        pb,
        wcs,
        tmp_path / "pb.png",
        title="pb",
        header=header,
        unit="gain",
        stretch="linear",
        limits=(0.0, 1.0),
    )
    image = pytest.importorskip("matplotlib.image").imread(path)
    assert _png_size(path)[0] >= 600  # small maps are enlarged
    # the centre (gain 1) is drawn in the colour map's top colour, not clipped to
    # the -5..50 rms range of a sky image
    cmap = pytest.importorskip("matplotlib").colormaps["inferno"]
    top = np.array(cmap(1.0)[:3])
    assert np.isclose(image[..., :3], top, atol=0.02).all(axis=-1).sum() > 20


@pytest.mark.parametrize("shape", [(120, 90), (121, 97)])
def test_downsample_of_float32_equals_the_float64_block_mean(shape) -> None:
    """Whole blocks (a view) and partial edge blocks (padded), NaN ignored: the
    float32 path gives the float64 block means of the seed."""
    from dsa110_contimg.visualization import downsample_mean

    rng = np.random.default_rng(3)
    image = rng.normal(size=shape).astype(np.float32)
    image[:5, :7] = np.nan  # one block all NaN, one partly
    image[10, 10] = np.nan
    factor = 3
    data = image.astype(np.float64)
    ny, nx = shape
    by, bx = -(-ny // factor), -(-nx // factor)
    padded = np.full((by * factor, bx * factor), np.nan)
    padded[:ny, :nx] = data
    blocks = padded.reshape(by, factor, bx, factor)
    count = np.isfinite(blocks).sum(axis=(1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = np.nansum(blocks, axis=(1, 3)) / count
    got = downsample_mean(image, factor)
    assert got.dtype == np.float64 and got.shape == (by, bx)
    assert np.isnan(got[0, 0]) and np.isnan(got[0, 1])
    np.testing.assert_allclose(got, expected, rtol=1e-12, equal_nan=True)


def test_previews_are_written_with_fast_zlib(tmp_path: Path) -> None:
    """The PNG's image data is deflated at the fastest level (zlib header
    78 01; the default level 6 writes 78 9C): same pixels, 4x faster."""
    data, header, wcs = _image(300)
    path = write_preview(data, wcs, tmp_path / "p.png", title="t", header=header)
    raw = path.read_bytes()
    idat = raw.index(b"IDAT")
    assert raw[idat + 4 : idat + 6] == b"\x78\x01"


def test_robust_rms_of_float32_equals_the_float64_sample() -> None:
    """No float64 copy of the image: the same evenly spaced finite sample and
    the same mad_std as the seed's float64 path (1.1 million pixels, NaNs)."""
    from astropy.stats import mad_std

    rng = np.random.default_rng(9)
    image = rng.normal(0.0, 2e-3, (1100, 1000)).astype(np.float32)
    image[rng.random(image.shape) < 0.05] = np.nan
    values = image.astype(np.float64).ravel()
    values = values[np.isfinite(values)]
    expected = float(mad_std(values[:: values.size // 1_000_000]))
    assert robust_rms(image) == expected


def test_downsample_of_a_finite_image_equals_the_masked_block_mean() -> None:
    """The NaN-free fast path (strided sums) gives the masked path's means."""
    from dsa110_contimg.visualization import downsample_mean

    rng = np.random.default_rng(5)
    image = rng.normal(size=(120, 96)).astype(np.float32)
    blocks = image.astype(np.float64).reshape(30, 4, 24, 4)
    expected = blocks.sum(axis=(1, 3)) / 16
    got = downsample_mean(image, 4)
    np.testing.assert_allclose(got, expected, rtol=1e-14)
    with_nan = image.copy()
    with_nan[0, 0] = np.nan  # the masked path: the block mean of 15 pixels
    masked = downsample_mean(with_nan, 4)
    first = blocks[0, :, 0, :].ravel()[1:]  # the block without its NaN pixel
    assert masked[0, 0] == pytest.approx(first.mean(), rel=1e-12)
    np.testing.assert_allclose(masked[1:], expected[1:], rtol=1e-14)
