"""The three services as three processes on one database (issue 16, item 3).

``python -m dsa110_contimg.services --service NAME`` runs one service; the
hdf5_watcher, ms_processor and variability_analyzer run as three OS
processes on one state database and one incoming directory, each holding
only its part of the writer claim. A second watcher and a whole ``stream``
are refused with the holder named. The ms_processor is killed (``kill -9``
of its process group: it, its pool workers and WSClean) while a block is
being imaged, then restarted: nothing is lost or done twice.
"""

from __future__ import annotations

import csv
import random
import socket
import time
from contextlib import closing
from pathlib import Path

import pytest
from test_streaming import (
    FULL_RUN,
    Stream,
    _kill_leftovers,
    assert_no_debris,
    assert_products_complete,
    deliver,
    observation,  # noqa: F401  (module fixture: four simulated tiny groups)
)

from dsa110_contimg.state.db import connect
from dsa110_contimg.state.jobs import CONVERT_GROUP, PROCESS_BLOCK, UPDATE_VARIABILITY
from dsa110_contimg.state.writer import SERVICE_NAMES, service_key

pytestmark = [pytest.mark.integration, pytest.mark.wsclean]

HOST = socket.gethostname()


class Service(Stream):
    """One service (``--service NAME``) of a layout shared with the others."""

    def __init__(self, base: Path, catalog: Path, name: str, label: str = "") -> None:
        super().__init__(base, catalog)
        self.name = name
        self.out = base / f"{label or name}.out"

    def start(self, *extra: str):
        return super().start("--service", self.name, *extra)


@pytest.fixture(autouse=True)
def _cleanup():
    from dsa110_contimg.utils.logging import reset_logging

    yield
    reset_logging()
    _kill_leftovers()


def _claim_owners(db: Path) -> dict[str, str]:
    if not db.exists():
        return {}
    with closing(connect(db, readonly=True)) as conn:
        if not conn.execute(
            "SELECT 1 FROM sqlite_master WHERE name = 'claims'"
        ).fetchone():
            return {}
        rows = conn.execute(
            "SELECT key, owner FROM claims WHERE owner IS NOT NULL AND expires_at > ?",
            (time.time(),),
        ).fetchall()
    return dict(rows)


def _done_transitions(stream: Stream, job_id: int) -> int:
    return sum(e["to_state"] == "done" for e in stream.events(job_id))


def test_three_service_processes_survive_a_killed_processor(
    observation,  # noqa: F811
    tmp_path,
) -> None:
    base = tmp_path
    watcher, processor, analyzer = (
        Service(base, observation.sky_path, name) for name in SERVICE_NAMES
    )
    db = watcher.db
    t0 = time.monotonic()
    for service in (watcher, processor, analyzer):
        service.start()
    owners = watcher.wait(
        lambda: len(o := _claim_owners(db)) == len(SERVICE_NAMES) and o,
        "the three services to take their claims",
        timeout_s=90,
    )
    for service in (watcher, processor, analyzer):
        owner = owners[service_key(db, service.name)]
        assert owner.startswith(f"{HOST}:{service.proc.pid}:"), owner
        assert owner.endswith(f" {service.name}"), owner

    deliver(observation.groups[:3], watcher.incoming)
    t_delivered = time.monotonic()
    # a second watcher and a whole stream are refused (checked below)
    second = Service(base, observation.sky_path, "hdf5_watcher", "second_watcher")
    stream = Stream(base, observation.sky_path)
    stream.out = base / "whole_stream.out"
    second.start()
    stream.start()

    # kill -9 the processor while one of its blocks is being imaged
    rng = random.Random(16)

    def imaging_a_block() -> bool:
        blocks = [
            j
            for j in processor.jobs()
            if j.kind == PROCESS_BLOCK and j.state == "running"
        ]
        return bool(blocks) and processor.imager_running()

    processor.wait(imaging_a_block, "a block to be imaged", timeout_s=120)
    time.sleep(rng.uniform(0.0, 0.3))
    hit = processor.imager_running()
    killed_at = round(time.monotonic() - t_delivered, 1)
    processor.kill9()
    assert hit, "the kill must land while a block is being imaged"
    after_kill = {j.id: j for j in processor.jobs()}
    killed = {  # still running under the dead lease (reclaimed after lease_s)
        i for i, j in after_kill.items() if j.state == "running"
    }
    assert any(after_kill[i].kind == PROCESS_BLOCK for i in killed)
    assert watcher.proc.poll() is None and analyzer.proc.poll() is None
    assert_products_complete(base)

    processor.start()  # the same command again
    assert second.proc.wait(90) != 0 and stream.proc.wait(90) != 0
    text = second.out.read_text(errors="replace")
    assert "WriterBusyError" in text, text
    assert f"`hdf5_watcher` on host {HOST}, pid {watcher.proc.pid}" in text, text
    text = stream.out.read_text(errors="replace")
    for service in (watcher, analyzer):  # (and the processor, then alive)
        assert f"`{service.name}` on host {HOST}, pid {service.proc.pid}" in text, text
    processor.wait(lambda: processor.finished(FULL_RUN), "the restarted run to finish")
    for service in (watcher, processor, analyzer):
        service.stop()
        assert service.proc.returncode == 0, service.tail()
    elapsed = round(time.monotonic() - t0, 1)
    hit_jobs = sorted((after_kill[i].kind, after_kill[i].key) for i in killed)
    print(
        f"\nprocessor killed {killed_at} s after delivery while imaging; jobs "
        f"running then: {hit_jobs}; whole test run {elapsed} s"
    )

    jobs = processor.jobs()
    assert len({(j.kind, j.key) for j in jobs}) == len(jobs) == 9
    assert not [j for j in jobs if j.state != "done"], "nothing stuck or failed"
    for job in jobs:  # each job finished once: converted, imaged, ingested once
        assert _done_transitions(processor, job.id) == 1, (job.kind, job.key)
    for job_id in killed:
        reasons = [e["reason"] for e in processor.events(job_id)]
        assert any("is gone" in r or "expired" in r for r in reasons), reasons
    assert_products_complete(base)
    assert_no_debris(base)
    ms = sorted(p.name for p in (base / "ms").glob("*.ms"))
    assert ms == [
        "drift_20230601T000000_00.ms",
        "drift_20230601T000117_00.ms",
        "drift_20230601T000234_00.ms",
    ]
    images = sorted(p.name for p in (base / "images").glob("*-image.fits"))
    assert images == [m.replace(".ms", "-image.fits") for m in ms]
    assert not (base / "ms" / "corrupt").exists()

    # photometry: every block's table has rows for each of its images and
    # its mosaic, once each; a shared image measures the same in every table;
    # the analyzer ingested every row of every table
    by_kind = {k: [j for j in jobs if j.kind == k] for k in FULL_RUN}
    ingested = {j.key: j.result for j in by_kind[UPDATE_VARIABILITY]}
    measured: dict[tuple[str, str], float] = {}
    for block in by_kind[PROCESS_BLOCK]:
        (table,) = block.result["photometry"]
        with open(table) as fh:
            rows = list(csv.DictReader(fh))
        keys = [(r["source_name"], Path(r["image_path"]).name) for r in rows]
        assert len(keys) == len(set(keys)), f"duplicate rows in {table}"
        products = {Path(r["image_path"]).name for r in rows}
        want = {Path(p).name for p in block.result["images"]}
        want.add(f"{block.key}-mosaic.fits")
        assert products == want, (block.key, products, want)
        assert ingested[block.key]["n_rows"] == len(rows), block.key
        for key, row in zip(keys, rows, strict=True):
            flux = float(row["flux_jy"])
            assert measured.setdefault(key, flux) == pytest.approx(flux, nan_ok=True)
    assert len(by_kind[CONVERT_GROUP]) == 3
    assert _claim_owners(db) == {}, "every service released its claim"
