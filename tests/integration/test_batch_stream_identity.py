"""Batch and stream over the same raw files give the same products.

Two simulated testing-size groups (77 s apart) are processed once by
``run_batch`` (in this process) and once by the stream (``python -m
dsa110_contimg.services`` as a real process), from the same configuration
file, each into its own directory tree. Blocks are 3 min long every 2 min, so
the groups (00:00:00, 00:01:17) fall into two anchored windows: [23:58, 00:01)
holds the first, [00:00, 00:03) both; a batch anchored at its first MS (the
seed's rule) cut only [00:00, 00:03), so it made one block where the stream
made two.

Compared: the block ids; every image, derived map and mosaic map pixel for
pixel (exactly: both runs convert the same raw files with the same code and
image them with the same single-threaded WSClean settings, so nothing but the
order of work differs); each mosaic's members; and every photometry row of
every block (all columns but the directory of ``image_path``, exactly).
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import yaml
from astropy.io import fits
from test_streaming import _BASE as _SECTIONS  # the stream tests' tiny-run settings

from dsa110_contimg.pipeline.batch import run_batch
from dsa110_contimg.state.db import connect, schema_version
from dsa110_contimg.state.jobs import CONVERT_GROUP, PROCESS_BLOCK, list_jobs
from dsa110_contimg.testing.layout import run_paths
from dsa110_contimg.utils.config_loader import find_config_dir, load_pipeline_config

pytestmark = [pytest.mark.integration, pytest.mark.wsclean]

BLOCKS = ["block_20230601T000100", "block_20230601T000300"]
N_GROUPS = 2
_IMAGE_MAPS = ("image", "residual", "psf", "pb", "rms", "pbcor")
_MOSAIC_MAPS = ("mosaic", "weight", "noise", "coverage")


def _layout(base: Path, observation) -> Path:
    """Write ``base/run.yaml`` and copy the raw files into ``base/incoming``."""
    (base / "incoming").mkdir(parents=True)
    for group in observation.groups:
        for path in group.files:
            shutil.copy2(path, base / "incoming" / path.name)
    tree = dict(_SECTIONS)
    tree["paths"] = run_paths(base)
    path = base / "run.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


@pytest.fixture(scope="module")
def observation(tmp_path_factory):
    """Two simulated tiny groups (module scoped: read only)."""
    from dsa110_contimg.simulation import ObservationSpec, simulate_observation

    spec = ObservationSpec(  # tests/conftest.py TINY_SPEC_KW, two groups
        start_time=datetime(2023, 6, 1, 0, 0, 0, tzinfo=UTC),
        n_groups=N_GROUPS,
        n_antennas=24,
        n_chan_per_subband=2,
        n_times=6,
        n_sources=6,
        min_flux_jy=0.5,
        max_flux_jy=3.0,
        field_radius_deg=0.6,
        seed=7,
    )
    return simulate_observation(spec, tmp_path_factory.mktemp("identity_obs"))


@pytest.fixture(scope="module")
def batch(observation, tmp_path_factory):
    base = tmp_path_factory.mktemp("batch")
    config = load_pipeline_config(
        _layout(base, observation), environment="testing", env={}
    )
    t0 = time.monotonic()
    result = run_batch(config, base / "incoming", catalog_path=observation.sky_path)
    print(f"\nbatch: {time.monotonic() - t0:.1f} s")
    assert result.success, [b.errors for b in result.blocks]
    return base, result


def _jobs(db: Path):
    if not db.exists():
        return []
    with closing(connect(db, readonly=True)) as conn:
        return list_jobs(conn) if schema_version(conn) >= 2 else []


def _blocks_done(db: Path) -> bool:
    jobs = _jobs(db)
    if any(j.state in ("pending", "running") for j in jobs):
        return False
    done = [j for j in jobs if j.state == "done"]
    n_convert = sum(j.kind == CONVERT_GROUP for j in done)
    n_blocks = sum(j.kind == PROCESS_BLOCK for j in done)
    return n_convert == N_GROUPS and n_blocks == len(BLOCKS)


@pytest.fixture(scope="module")
def stream(observation, tmp_path_factory):
    base = tmp_path_factory.mktemp("stream")
    config = _layout(base, observation)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSA110")}
    env["DSA110_CONFIG_DIR"] = str(find_config_dir(env={}))
    t0 = time.monotonic()
    with open(base / "stream.out", "wb") as out:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "dsa110_contimg.services"),
                *("--env", "testing", "--config", str(config)),
                *("--incoming-dir", str(base / "incoming")),
                *("--catalog", str(observation.sky_path)),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=base,
            env=env,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 240
        while not _blocks_done(base / "pipeline.sqlite3"):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (base / "stream.out").read_text(errors="replace")[-3000:]
                pytest.fail(f"stream did not process the blocks:\n{tail}")
            time.sleep(0.1)
        print(f"\nstream: {time.monotonic() - t0:.1f} s")
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    return base, _jobs(base / "pipeline.sqlite3")


def test_same_block_ids(batch, stream) -> None:
    (batch_base, result), (stream_base, jobs) = batch, stream
    assert sorted(b.block_id for b in result.blocks) == BLOCKS
    assert sorted(j.key for j in jobs if j.kind == PROCESS_BLOCK) == BLOCKS
    for base in (batch_base, stream_base):
        tables = sorted(p.name for p in (base / "products").glob("photometry_b*.csv"))
        assert tables == [f"photometry_{b}.csv" for b in BLOCKS]


def _data(path: Path) -> np.ndarray:
    return np.asarray(fits.getdata(path), dtype=np.float64)


def test_same_images_pixel_for_pixel(batch, stream) -> None:
    names = sorted(p.name for p in (batch[0] / "images").glob("*-image.fits"))
    assert len(names) == N_GROUPS
    assert names == sorted(p.name for p in (stream[0] / "images").glob("*-image.fits"))
    for name in names:
        for kind in _IMAGE_MAPS:
            file = name.replace("-image.fits", f"-{kind}.fits")
            a, b = (_data(base / "images" / file) for base in (batch[0], stream[0]))
            np.testing.assert_array_equal(a, b, err_msg=file)


def test_same_mosaics_and_members(batch, stream) -> None:
    for block in BLOCKS:
        for kind in _MOSAIC_MAPS:
            file = f"{block}-{kind}.fits"
            a, b = (_data(base / "mosaics" / file) for base in (batch[0], stream[0]))
            np.testing.assert_array_equal(a, b, err_msg=file)
        members = [
            sorted(
                Path(m["image_path"]).name + ":" + m["status"]
                for m in yaml.safe_load(
                    (base / "mosaics" / f"{block}-members.json").read_text()
                )["members"]
            )
            for base in (batch[0], stream[0])
        ]
        assert members[0] == members[1] and members[0]


def _rows(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    with open(path) as fh:
        records = list(csv.DictReader(fh))
    out = {}
    for r in records:
        key = (r["source_name"], Path(r.pop("image_path")).name)
        out[key] = r
    assert len(out) == len(records), f"duplicate rows in {path}"
    return out


def test_same_photometry_rows(batch, stream) -> None:
    n_rows = 0
    for block in BLOCKS:
        a, b = (
            _rows(base / "products" / f"photometry_{block}.csv")
            for base in (batch[0], stream[0])
        )
        assert a == b, block
        n_rows += len(a)
    assert n_rows >= 2 * 6  # each block measured its images and its mosaic
