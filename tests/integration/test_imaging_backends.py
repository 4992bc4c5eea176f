"""Both imaging backends on one simulated group: known truth and agreement.

One drift-scan group (testing size: 24 antennas, 32 channels, 6 integrations
spread over a real group's 309 s) sees a ring of sources out to the
half-power radius of the drift-averaged beam and nothing outside the image,
so the figures measure the imagers and the primary-beam correction rather
than confusion from uncleaned sources beyond the field.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from dsa110_contimg.exceptions import ConfigError, ImagingError
from dsa110_contimg.pipeline.stages.conversion_stage import convert_groups, find_groups
from dsa110_contimg.pipeline.stages.imaging_stage import celestial_wcs, image_ms
from dsa110_contimg.pipeline.stages.photometry_stage import measure_image
from dsa110_contimg.simulation import (
    ObservationSpec,
    compare_to_truth,
    simulate_observation,
)
from dsa110_contimg.telescope import dsa110
from dsa110_contimg.testing.drift_skies import group_centers_deg, ring_sky
from dsa110_contimg.utils.config_loader import load_pipeline_config

pytestmark = [pytest.mark.integration, pytest.mark.wsclean, pytest.mark.casa]

BACKENDS = ("wsclean", "tclean")
START = datetime(2023, 6, 1, 2, 0, 0, tzinfo=UTC)
SPEC_KW = {
    "n_groups": 1,
    "n_times": 6,
    "declination_deg": 37.0,
    "integration_spacing_s": dsa110.INTEGRATION_TIME_S * 24 / 6,
}
RADII_DEG = (0.0, 0.2, 0.4, 0.55, 0.7, 0.85, 0.95, 1.05, 1.15, 1.25, 1.32, 1.38)
FLUX_JY = (0.8, 1.5, 0.6, 2.5, 1.0, 0.7, 1.8, 1.2, 2.0, 1.4, 0.9, 3.0)
IMAGING = {"imaging.image_size": [1080, 1080], "imaging.cell_size": "10arcsec"}


def _config(base: Path, **extra):
    return load_pipeline_config(
        environment="testing", overrides={**IMAGING, **extra}, env={}
    )


@pytest.fixture(scope="module")
def group(tmp_path_factory):
    pytest.importorskip("casatasks")
    base = tmp_path_factory.mktemp("backends")
    (ra0,) = group_centers_deg(START, **SPEC_KW)
    sky = ring_sky(ra0, 37.0, radii_deg=RADII_DEG, flux_jy=FLUX_JY)
    spec = ObservationSpec(
        start_time=START, n_antennas=24, n_chan_per_subband=2, seed=5, **SPEC_KW
    )
    sim = simulate_observation(spec, base / "incoming", sky=sky)
    cfg = _config(base)
    report = convert_groups(
        find_groups(base / "incoming", cfg.conversion), base / "ms", cfg.conversion
    )
    (ms,) = report.ms_paths
    products, tables = {}, {}
    for backend in BACKENDS:
        cfg = _config(base, **{"imaging.backend": backend})
        products[backend] = image_ms(
            ms, base / backend, cfg.imaging, config_hash="testhash"
        )
        tables[backend] = measure_image(
            products[backend].image_path, sim.sky, cfg.photometry
        )
    return sim, ms, products, tables


@pytest.mark.parametrize("backend", BACKENDS)
def test_fluxes_and_positions_out_to_the_half_power_radius(group, backend):
    sim, _, _, tables = group
    comparison = compare_to_truth(tables[backend], sim.sky, snr_min=10.0)
    table = comparison.table
    within = table[np.asarray(table["pb"]) >= 0.5]
    median_err = float(np.median(np.abs(within["flux_error"])))
    max_offset = float(np.max(within["offset_beams"]))
    print(
        f"\n{backend}: {len(within)} sources >10 sigma with pb >= 0.5 "
        f"(down to pb {np.min(within['pb']):.2f}): median |flux error| "
        f"{100 * median_err:.2f}%, max position offset {max_offset:.3f} beam"
    )
    assert len(within) >= 9
    assert median_err <= 0.03
    assert max_offset <= 0.1


def test_backends_agree_on_bright_sources(group):
    _, _, _, tables = group
    w, t = tables["wsclean"], tables["tclean"]
    assert list(w["source_name"]) == list(t["source_name"])
    # bright (noise SNR >= 100): flux errors ~1%, so a 2% difference is real
    bright = (
        (np.minimum(np.asarray(w["snr"]), np.asarray(t["snr"])) >= 100)
        & (np.asarray(w["flags"]) == 0)
        & (np.asarray(t["flags"]) == 0)
    )
    ratio = np.asarray(t["flux_jy"])[bright] / np.asarray(w["flux_jy"])[bright]
    print(
        f"\ntclean / wsclean flux for {bright.sum()} bright sources: median "
        f"{np.median(ratio):.4f}, range {ratio.min():.4f}-{ratio.max():.4f}"
    )
    assert bright.sum() >= 4
    assert np.all(np.abs(ratio - 1) <= 0.02)


@pytest.mark.parametrize("backend", BACKENDS)
def test_products_carry_wcs_and_provenance(group, backend):
    _, ms, products, _ = group
    product = products[backend]
    assert product.backend == backend and product.backend_version
    paths = {
        "image": product.image_path,
        "residual": product.residual_path,
        "psf": product.psf_path,
        "pb": product.pb_path,
        "pbcor": product.pbcor_path,
        "rms": product.rms_path,
    }
    for kind, path in paths.items():
        header = fits.getheader(path)
        wcs = celestial_wcs(header)
        assert wcs.naxis == 2 and wcs.wcs.ctype[0] == "RA---SIN", kind
        assert header["DSAMS"] == ms.name, kind
        assert header["DSAIMGR"] == backend, kind
        for key in ("DSACAL", "DSACFGH", "DSAVERS", "DSAPTDEC", "DSAT0MJD"):
            assert key in header, (kind, key)
    image_header = fits.getheader(product.image_path)
    assert image_header["DSAIMGRV"] == product.backend_version
    assert image_header["DSACFGH"] == "testhash"
    assert image_header["BMAJ"] > 0
    pb = np.squeeze(fits.getdata(product.pb_path))
    pbcor = np.squeeze(fits.getdata(product.pbcor_path))
    assert np.all(np.isnan(pbcor[pb < 0.2])) and np.all(np.isfinite(pbcor[pb >= 0.2]))
    assert 0.9 < np.nanmax(pb) < 1.0
    assert product.preview_path is not None and product.preview_path.exists()
    first_line = product.log_path.read_text().splitlines()[0]
    assert ("tclean(vis=" if backend == "tclean" else "wsclean -name") in first_line


def test_crashing_tclean_leaves_no_product(group, tmp_path):
    _, ms, _, _ = group
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'casa is dying'\nkill -SEGV $$\n")
    fake.chmod(0o755)
    images = tmp_path / "images"
    cfg = _config(
        tmp_path, **{"imaging.backend": "tclean", "imaging.casa_python": str(fake)}
    )
    with pytest.raises(ImagingError) as info:
        image_ms(ms, images, cfg.imaging)
    assert ms.name in str(info.value) and "signal 11" in str(info.value)
    assert "casa is dying" in info.value.log_tail
    assert info.value.retryable
    assert not list(images.glob("*.fits")) and not list(images.glob(".tmp-*"))


def test_failing_tclean_reports_its_message(group, tmp_path):
    _, ms, _, _ = group
    fake = tmp_path / "python"
    fake.write_text(
        "#!/bin/sh\necho \"ModuleNotFoundError: No module named 'casatasks'\" >&2\n"
        "exit 1\n"
    )
    fake.chmod(0o755)
    cfg = _config(
        tmp_path, **{"imaging.backend": "tclean", "imaging.casa_python": str(fake)}
    )
    with pytest.raises(ImagingError, match="No module named 'casatasks'") as info:
        image_ms(ms, tmp_path / "images", cfg.imaging)
    assert ms.name in str(info.value) and "status 1" in str(info.value)


def test_missing_casa_python_is_clear(group, tmp_path):
    _, ms, _, _ = group
    cfg = _config(
        tmp_path,
        **{"imaging.backend": "tclean", "imaging.casa_python": "/nonexistent/python"},
    )
    with pytest.raises(ImagingError, match="imaging.casa_python") as info:
        image_ms(ms, tmp_path / "images", cfg.imaging)
    assert ms.name in str(info.value)


def test_unknown_backend_is_a_config_error_at_load_time(tmp_path):
    with pytest.raises(ConfigError, match="imaging.backend"):
        _config(tmp_path, **{"imaging.backend": "difmap"})
