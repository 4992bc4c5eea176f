"""An existing image is reused only when whole and made the same way (issue 15, 8).

A power loss can leave a 0-byte or truncated file under a product's final
name; a changed configuration must not reuse an image made with the old one.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from dsa110_contimg.exceptions import InputDataError
from dsa110_contimg.pipeline.stages.conversion_stage import convert_groups, find_groups
from dsa110_contimg.pipeline.stages.imaging_stage import image_ms
from dsa110_contimg.simulation import ObservationSpec, simulate_observation
from dsa110_contimg.utils.config_loader import load_pipeline_config

pytestmark = [pytest.mark.integration, pytest.mark.wsclean, pytest.mark.casa]

IMAGING = {"imaging.image_size": [256, 256], "imaging.cell_size": "20arcsec"}


def _cfg(**extra):
    return load_pipeline_config(
        environment="testing", overrides={**IMAGING, **extra}, env={}
    ).imaging


@pytest.fixture(scope="module")
def ms(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("reuse")
    spec = ObservationSpec(
        start_time=datetime(2023, 6, 1, 3, 0, 0, tzinfo=UTC),
        n_groups=1,
        n_antennas=16,
        n_chan_per_subband=1,
        n_times=4,
        n_sources=3,
        seed=9,
    )
    simulate_observation(spec, base / "incoming")
    cfg = load_pipeline_config(environment="testing", env={})
    report = convert_groups(
        find_groups(base / "incoming", cfg.conversion), base / "ms", cfg.conversion
    )
    (path,) = report.ms_paths
    return path


def _data(path: Path) -> np.ndarray:
    with fits.open(path, memmap=False) as hdul:
        return np.array(hdul[0].data)


def test_reuse_only_what_is_whole_and_current(ms: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    first = image_ms(ms, images, _cfg())
    assert not first.skipped
    want = _data(first.image_path)

    again = image_ms(ms, images, _cfg())
    assert again.skipped, "same MS, same settings: reused"

    first.image_path.write_bytes(b"")  # a power loss after the rename
    redone = image_ms(ms, images, _cfg())
    assert not redone.skipped
    np.testing.assert_allclose(_data(redone.image_path), want, rtol=1e-4, atol=1e-6)

    changed = image_ms(ms, images, _cfg(**{"imaging.niter": 10}))
    assert not changed.skipped, "another niter must not reuse the old image"
    assert image_ms(ms, images, _cfg(**{"imaging.niter": 10})).skipped
    # resources do not change the image: no re-imaging for another thread count
    assert image_ms(
        ms, images, _cfg(**{"imaging.niter": 10, "imaging.threads": 1})
    ).skipped


def test_derived_maps_are_remade_when_broken_or_stale(ms: Path, tmp_path: Path):
    images = tmp_path / "images"
    product = image_ms(ms, images, _cfg())
    pb = _data(product.pb_path)
    product.pb_path.write_bytes(b"")
    os.utime(product.rms_path, ns=(1, 1))  # older than its image
    rms_before = product.rms_path.stat().st_mtime_ns
    again = image_ms(ms, images, _cfg())
    assert again.skipped
    np.testing.assert_array_equal(_data(again.pb_path), pb)
    assert again.rms_path.stat().st_mtime_ns > rms_before


def test_a_mostly_nan_image_names_its_ms(ms: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    product = image_ms(ms, images, _cfg(), derived=False)
    with fits.open(product.image_path, mode="update") as hdul:
        data = hdul[0].data
        data[..., : data.shape[-2] * 3 // 4, :] = np.nan
    with pytest.raises(InputDataError, match=ms.name) as excinfo:
        from dsa110_contimg.pipeline.stages.imaging_stage import (
            make_derived_products,
        )

        make_derived_products(product, _cfg())
    assert "finite" in str(excinfo.value)
