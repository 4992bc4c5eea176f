"""The stream as a real process over simulated data: crashes, faults, shutdown.

Each test starts ``python -m dsa110_contimg.services`` on testing-size groups
(3-4 groups of 16 subbands, 24 antennas) and checks the state database and
the products it leaves.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
import pytest
import yaml
from click.testing import CliRunner

from dsa110_contimg.pipeline.stages.photometry_stage import (
    PHOTOMETRY_COLUMNS,
    read_photometry_table,
)
from dsa110_contimg.services.ms_processor import check_ms
from dsa110_contimg.state.db import connect, schema_version
from dsa110_contimg.state.jobs import (
    CONVERT_GROUP,
    PROCESS_BLOCK,
    UPDATE_VARIABILITY,
    Job,
    list_job_events,
    list_jobs,
)
from dsa110_contimg.testing.layout import run_paths
from dsa110_contimg.utils.config_loader import find_config_dir

if TYPE_CHECKING:
    from tests.servers.dask import DaskCluster

pytestmark = [pytest.mark.integration, pytest.mark.wsclean]

N_GROUPS = 4
# blocks of 3 min every 2 min: 3 windows over the first 3 tiny (77 s) groups
_BASE = {
    "conversion": {"group_tolerance_s": 20.0},
    "services": {
        "mosaic_duration_min": 3,
        "mosaic_overlap_min": 1,
        "max_workers": 2,
        "max_concurrent_blocks": 2,
    },
    "imaging": {"threads": 1},
    "watcher": {"scan_interval_s": 0.5, "settle_s": 0.3, "group_timeout_s": 30.0},
    "queue": {
        "poll_interval_s": 0.2,
        "block_wait_s": 2.0,
        "lease_s": 10.0,
        "heartbeat_interval_s": 1.0,
        "backoff_base_s": 0.5,
        "backoff_max_s": 2.0,
        "max_attempts": 10,
        "shutdown_grace_s": 10.0,
    },
    "logging": {"level": "INFO"},
}
FULL_RUN = {CONVERT_GROUP: 3, PROCESS_BLOCK: 3, UPDATE_VARIABILITY: 3}


# ------------------------------------------------------------------- helpers


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = (
            _merge(out[key], value) if isinstance(value, dict) and key in out else value
        )
    return out


_STARTED: list[subprocess.Popen] = []


def _state_target(base: Path) -> Path | str:
    """The state database of the stream under ``base``: ``database.url`` or file."""
    config = base / "stream.yaml"
    if config.exists():
        url = (yaml.safe_load(config.read_text()).get("database") or {}).get("url")
        if url:
            return url
    return base / "pipeline.sqlite3"


class Stream:
    """A stream process over a directory layout under ``base``.

    ``backend`` (the `backend` fixture's value) adds its sections (database,
    queue, execution) under the test's own.
    """

    def __init__(
        self,
        base: Path,
        catalog: Path,
        *,
        backend: Backend | None = None,
        **sections: dict,
    ) -> None:
        self.base = base
        self.catalog = catalog
        self.backend = backend
        self.incoming = base / "incoming"
        self.incoming.mkdir(parents=True, exist_ok=True)
        self.db = base / "pipeline.sqlite3"
        self.out = base / "stream.out"
        self.configure(**sections)
        self.proc: subprocess.Popen | None = None

    @property
    def target(self) -> Path | str:
        """The state database: its ``database.url`` when set, else the file."""
        return _state_target(self.base)

    def configure(self, **sections: dict) -> None:
        tree = _merge(_BASE, {"queue": _queue_backend(self.base)})
        if self.backend is not None:
            tree = _merge(tree, self.backend.sections(self.base))
        tree = _merge(tree, sections)
        tree["paths"] = run_paths(self.base)
        self.config = self.base / "stream.yaml"
        self.config.write_text(yaml.safe_dump(tree))

    def cli_args(self) -> list[str]:
        return ["--env", "testing", "--config", str(self.config)]

    def start(self, *extra: str) -> subprocess.Popen:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DSA110")}
        env["DSA110_CONFIG_DIR"] = str(find_config_dir(env={}))
        with open(self.out, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "dsa110_contimg.services",
                    *self.cli_args(),
                    "--incoming-dir",
                    str(self.incoming),
                    "--catalog",
                    str(self.catalog),
                    *extra,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.base,
                env=env,
                start_new_session=True,
            )
        _STARTED.append(self.proc)
        return self.proc

    def tail(self, n: int = 40) -> str:
        lines = (
            self.out.read_text(errors="replace").splitlines()
            if self.out.exists()
            else []
        )
        return "\n".join(lines[-n:])

    def kill9(self) -> None:
        """SIGKILL the stream and everything it started (a crash of the service)."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self, *, timeout_s: float = 40.0) -> float:
        """SIGTERM the stream (like systemd) and return how long it took to exit."""
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            pytest.fail(f"stream did not stop within {timeout_s} s:\n{self.tail()}")
        return time.monotonic() - t0

    def jobs(self) -> list[Job]:
        if isinstance(self.target, Path) and not self.target.exists():
            return []
        with closing(connect(self.target, readonly=True)) as conn:
            return list_jobs(conn) if schema_version(conn) >= 2 else []

    def events(self, job_id: int) -> list[dict]:
        with closing(connect(self.target, readonly=True)) as conn:
            return list_job_events(conn, job_id)

    def wait(self, predicate: Callable[[], object], what: str, timeout_s: float = 120):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            if self.proc is not None and self.proc.poll() is not None:
                pytest.fail(
                    f"stream exited ({self.proc.returncode}) before {what}:\n"
                    f"{self.tail()}"
                )
            time.sleep(0.05)
        pytest.fail(
            f"timed out waiting for {what}; jobs "
            f"{[(j.kind, j.key, j.state) for j in self.jobs()]}\n{self.tail()}"
        )

    def finished(self, expected: dict[str, int], *, states=("done",)) -> bool:
        jobs = self.jobs()
        if any(j.state in ("pending", "running") for j in jobs):
            return False
        counts: dict[str, int] = {}
        for job in jobs:
            if job.state in states:
                counts[job.kind] = counts.get(job.kind, 0) + 1
        return counts == expected

    def descendants(self) -> list[psutil.Process]:
        """The stream's processes, and the processes its Dask tasks started."""
        try:
            procs = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            procs = []
        return procs + (self.backend.task_processes() if self.backend else [])

    def imager_running(self) -> bool:
        for proc in self.descendants():
            try:
                if "wsclean" in " ".join(proc.cmdline()):
                    return True
            except psutil.Error:
                continue
        return False

    def status(self) -> dict:
        from dsa110_contimg.cli.service_commands import status_command

        result = CliRunner().invoke(status_command, [*self.cli_args(), "--json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)


def deliver(groups, dest: Path, *, skip: tuple[str, ...] = ()) -> None:
    for group in groups:
        for path in group.files:
            if not any(s in path.name for s in skip):
                shutil.copy2(path, dest / path.name)


def assert_products_complete(base: Path) -> None:
    """Every product under a final name is whole (no half-written file)."""
    from astropy.io import fits

    for ms in (base / "ms").glob("drift_*.ms"):
        assert check_ms(ms) is None, ms
    for image in (base / "images").glob("*.fits"):
        with fits.open(image) as hdul:
            assert hdul[0].data is not None, image
    for table in (base / "products").glob("photometry_*.csv"):
        assert tuple(read_photometry_table(table).colnames) == PHOTOMETRY_COLUMNS


def assert_no_debris(base: Path) -> None:
    debris = [
        *(base / "images").glob(".tmp-*"),
        *(base / "ms").glob(".*.tmp-*"),
        *(base / "products").glob(".*.tmp"),
        *(base / "mosaics").glob(".*.tmp"),
        *(base / "images").glob(".*.tmp"),
        *(base / "products").glob(".*.tmp-*"),
        *(base / "mosaics").glob(".*.tmp-*"),
        *(base / "images").glob(".*.tmp-*"),
    ]
    assert debris == []


def snapshot(base: Path) -> dict:
    """Products (names) and photometry rows of a finished run."""
    names = {}
    for sub in ("ms", "images", "products", "mosaics"):
        d = base / sub
        names[sub] = (
            sorted(
                p.name
                for p in d.glob("*")
                if not p.name.startswith(".") and not p.name.endswith(".log")
            )
            if d.exists()
            else []
        )
    rows = {}
    for table in sorted((base / "products").glob("photometry_block_*.csv")):
        with open(table) as fh:
            records = list(csv.DictReader(fh))
        keys = [(r["source_name"], Path(r["image_path"]).name) for r in records]
        assert len(keys) == len(set(keys)), f"duplicate rows in {table.name}"
        rows[table.name] = {
            k: float(r["flux_jy"]) for k, r in zip(keys, records, strict=True)
        }
    with closing(connect(_state_target(base), readonly=True)) as conn:
        # an image shared by overlapping blocks has one row, owned by whichever
        # block recorded it last, so only (kind, path) identify a product
        recorded = sorted(
            (r[0], Path(r[1]).name)
            for r in conn.execute("SELECT kind, path FROM products")
        )
    return {"names": names, "rows": rows, "products_table": recorded}


def assert_same_products(got: dict, want: dict) -> None:
    assert got["names"] == want["names"]
    assert got["products_table"] == want["products_table"]
    assert got["rows"].keys() == want["rows"].keys()
    for name, rows in want["rows"].items():
        assert got["rows"][name].keys() == rows.keys(), name
        for key, flux in rows.items():
            assert got["rows"][name][key] == pytest.approx(
                flux, rel=1e-3, abs=1e-4, nan_ok=True
            )


# ------------------------------------------------------------------ fixtures


@dataclass
class Backend:
    """Where a stream keeps state, queues jobs and runs work (`backend`).

    ``embedded``: the defaults (SQLite file, SQLite queue, local process
    pool). ``scaleout``: a fresh PostgreSQL database, a Redis key prefix of
    its own on the session's redis-server and a two-worker Dask cluster.
    """

    name: str
    database_url: str | None = None
    redis_url: str | None = None
    cluster: DaskCluster | None = None

    def sections(self, base: Path) -> dict:
        if self.name == "embedded":
            return {}
        prefix = "b" + hashlib.sha1(str(base).encode()).hexdigest()[:12]
        return {
            "database": {"url": self.database_url},
            "queue": {
                "backend": "redis",
                "redis_url": self.redis_url,
                "redis_prefix": prefix,
            },
            # execution.retries is 0 by default: a task that raised is retried
            # by the job queue (with backoff, in the job's record), not by Dask
            "execution": {
                "backend": "dask",
                "scheduler_address": self.cluster.address,
            },
        }

    def task_processes(self) -> list[psutil.Process]:
        """Processes the Dask workers' tasks started (the imager, ...)."""
        if self.cluster is None:
            return []
        out = []
        for nanny in self.cluster.workers.values():
            try:
                for worker in psutil.Process(nanny.pid).children():
                    out += [
                        p
                        for p in worker.children(recursive=True)
                        if "resource_tracker" not in " ".join(p.cmdline())
                    ]
            except psutil.Error:
                continue
        return out


@pytest.fixture(
    params=["embedded", pytest.param("scaleout", marks=pytest.mark.scaleout)]
)
def backend(request, tmp_path_factory):
    """The backends a crash or fault test runs on: embedded, or scale-out.

    Scale-out: PostgreSQL (a fresh database on the session's server), Redis
    (the session's server, a key prefix per stream) and Dask (a two-worker
    cluster per test: task keys are product ids, which repeat between tests,
    and a killed stream's tasks keep running on the workers).
    """
    if request.param == "embedded":
        yield Backend("embedded")
        return
    pytest.importorskip("distributed")
    from tests.servers.dask import start_cluster

    url = request.getfixturevalue("postgres_url")
    redis_url = request.getfixturevalue("redis_server").url
    cluster = start_cluster(tmp_path_factory.mktemp("dask"), n_workers=2)
    try:
        yield Backend("scaleout", url, redis_url, cluster)
    finally:
        cluster.stop()


_QUEUE_SERVER: dict[str, str] = {}  # redis_url under --queue-backend redis


def _queue_backend(base: Path) -> dict:
    """The ``queue`` keys of ``--queue-backend`` (a Redis key prefix per stream)."""
    if not _QUEUE_SERVER:
        return {}
    prefix = "s" + hashlib.sha1(str(base).encode()).hexdigest()[:12]
    return {"backend": "redis", "redis_prefix": prefix, **_QUEUE_SERVER}


@pytest.fixture(scope="module", autouse=True)
def _queue_server(request):
    """``--queue-backend redis``: every stream's jobs go through a redis-server."""
    if request.config.getoption("--queue-backend") == "redis":
        _QUEUE_SERVER["redis_url"] = request.getfixturevalue("redis_server").url
    yield
    _QUEUE_SERVER.clear()


@pytest.fixture(autouse=True)
def _cleanup():
    """Kill streams a failed test left running; drop CliRunner's log handlers."""
    from dsa110_contimg.utils.logging import reset_logging

    yield
    reset_logging()
    _kill_leftovers()


def _kill_leftovers() -> None:
    while _STARTED:
        proc = _STARTED.pop()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


@pytest.fixture(scope="module")
def observation(tmp_path_factory):
    """Four simulated tiny groups, 77 s apart (module scoped: read only)."""
    from dsa110_contimg.simulation import ObservationSpec, simulate_observation

    spec = ObservationSpec(  # tests/conftest.py TINY_SPEC_KW, four groups
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
    return simulate_observation(spec, tmp_path_factory.mktemp("stream_obs"))


@pytest.fixture(scope="module")
def reference(observation, tmp_path_factory):
    """An uninterrupted stream run over the first three groups."""
    base = tmp_path_factory.mktemp("reference")
    stream = Stream(base, observation.sky_path)
    deliver(observation.groups[:3], stream.incoming)
    stream.start()
    try:
        stream.wait(lambda: stream.finished(FULL_RUN), "the reference run to finish")
        assert stream.stop() < 15
    finally:
        _kill_leftovers()
    assert stream.proc.returncode == 0, stream.tail()
    return base, snapshot(base)


# --------------------------------------------------------------------- tests


def test_uninterrupted_run(reference, observation) -> None:
    base, snap = reference
    assert snap["names"]["ms"] == [
        "drift_20230601T000000_00.ms",
        "drift_20230601T000117_00.ms",
        "drift_20230601T000234_00.ms",
    ]
    assert sorted(snap["rows"]) == [
        "photometry_block_20230601T000100.csv",
        "photometry_block_20230601T000300.csv",
        "photometry_block_20230601T000500.csv",
    ]
    assert all(snap["rows"].values())
    assert_products_complete(base)
    assert_no_debris(base)


@pytest.mark.scaleout
def test_uninterrupted_run_on_dask(reference, observation, tmp_path) -> None:
    """The same stream on a two-worker Dask cluster makes the same products."""
    from tests.servers.dask import start_cluster

    cluster = start_cluster(tmp_path / "dask", n_workers=2)
    try:
        stream = Stream(
            tmp_path / "run",
            observation.sky_path,
            execution={"backend": "dask", "scheduler_address": cluster.address},
        )
        deliver(observation.groups[:3], stream.incoming)
        stream.start()
        try:
            stream.wait(lambda: stream.finished(FULL_RUN), "the Dask run to finish")
            assert stream.stop() < 15
        finally:
            _kill_leftovers()
    finally:
        cluster.stop()
    assert stream.proc.returncode == 0, stream.tail()
    assert_same_products(snapshot(tmp_path / "run"), reference[1])
    assert_products_complete(tmp_path / "run")
    assert_no_debris(tmp_path / "run")


def test_status_and_requeue_commands(reference) -> None:
    from dsa110_contimg.cli.service_commands import requeue_command, status_command

    base, _ = reference
    args = ["--env", "testing", "--config", str(base / "stream.yaml")]
    report = json.loads(CliRunner().invoke(status_command, [*args, "--json"]).stdout)
    assert (report["pending"], report["running"], report["done"]) == (0, 0, 9)
    assert report["failed"] == report["quarantined"] == 0
    assert report["intake"]["paused"] is False
    text = CliRunner().invoke(status_command, args).output
    assert "jobs: pending 0" in text and "intake: open" in text
    copy = base.parent / "requeue_copy"
    shutil.copytree(base, copy)
    stream = Stream(copy, base / "incoming" / "truth" / "sky.csv")
    result = CliRunner().invoke(requeue_command, [*stream.cli_args(), "1"])
    assert result.exit_code == 0 and "requeued" in result.output
    (job,) = [j for j in stream.jobs() if j.id == 1]
    assert job.state == "pending" and job.attempts == 0
    again = CliRunner().invoke(requeue_command, [*stream.cli_args(), "1"])
    assert again.exit_code == 1 and "is pending; only done, failed" in again.output
    missing = CliRunner().invoke(requeue_command, [*stream.cli_args(), "999"])
    assert missing.exit_code == 1 and "no job with id 999" in missing.output


def test_kill9_at_random_moments_then_restart(
    reference, observation, tmp_path, backend
) -> None:
    ref_base, want = reference
    stream = Stream(tmp_path, observation.sky_path, backend=backend)
    deliver(observation.groups[:3], stream.incoming)
    rng = random.Random(20250101)
    kills: list[tuple[str, bool]] = []
    for phase in ("convert", "imaging", "random", "imaging", "random"):
        stream.start()
        hit = False
        if phase == "convert":
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and stream.proc.poll() is None:
                if any(
                    j.kind == CONVERT_GROUP and j.state == "running"
                    for j in stream.jobs()
                ):
                    time.sleep(rng.uniform(0.0, 0.4))
                    hit = any(
                        j.kind == CONVERT_GROUP and j.state == "running"
                        for j in stream.jobs()
                    )
                    break
                time.sleep(0.05)
        elif phase == "imaging":
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline and stream.proc.poll() is None:
                if stream.imager_running():
                    time.sleep(rng.uniform(0.0, 0.3))
                    hit = stream.imager_running()
                    break
                time.sleep(0.02)
        else:
            time.sleep(rng.uniform(2.0, 8.0))
            hit = True
        assert stream.proc.poll() is None, stream.tail()
        stream.kill9()
        kills.append((phase, hit))
        assert_products_complete(tmp_path)
    print(f"\nkill points: {kills}")
    assert len(kills) >= 5
    assert ("convert", True) in kills, kills
    assert ("imaging", True) in kills, kills
    stream.start()
    stream.wait(lambda: stream.finished(FULL_RUN), "the restarted run to finish")
    stream.stop()
    assert stream.proc.returncode == 0
    assert_products_complete(tmp_path)
    assert_no_debris(tmp_path)
    assert_same_products(snapshot(tmp_path), want)
    jobs = stream.jobs()
    assert len({(j.kind, j.key) for j in jobs}) == len(jobs) == 9
    reclaimed = [
        e for j in jobs for e in stream.events(j.id) if "is gone" in e["reason"]
    ]
    assert reclaimed, "no job was taken back from a killed worker"


POWER_LOSS_RUNS = int(os.environ.get("DSA110_POWER_LOSS_RUNS", "6"))
_PRODUCT_DIRS = ("images", "mosaics", "products")
_STORE = Path("data") / "lightcurves"  # variability.store_dir, from the cwd
_STORE_TARGETS = ("epoch", "manifest", "summary")


def _truncate_newest_product(base: Path) -> Path | None:
    """Cut the newest product file to 0 bytes (a power loss without fsync)."""
    files = [
        p
        for sub in _PRODUCT_DIRS
        if (base / sub).exists()
        for p in (base / sub).rglob("*")
        if p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(base).parts)
        and not p.name.endswith(".log")
    ]
    if not files:
        return None
    newest = max(files, key=lambda p: p.stat().st_mtime_ns)
    newest.write_bytes(b"")
    return newest


def _truncate_store_file(base: Path, target: str) -> Path | None:
    """Cut the light-curve store's newest epoch file, manifest or sums to 0 bytes."""
    store = base / _STORE
    files = {
        "epoch": [
            p
            for p in store.glob("epochs/date=*/*.parquet")
            if not p.name.startswith(".")
        ],
        "manifest": [store / "_manifest.json"],
        "summary": [store / "_summary.parquet"],
    }[target]
    files = [p for p in files if p.exists() and p.stat().st_size > 0]
    if not files:
        return None
    newest = max(files, key=lambda p: p.stat().st_mtime_ns)
    newest.write_bytes(b"")
    return newest


def _lightcurves(base: Path) -> dict[str, dict[tuple[str, str], tuple]]:
    """Each stored epoch's rows: (source, image) -> (mjd, flux_jy, flux_err_jy)."""
    from dsa110_contimg.lightcurves import LightcurveStore

    store = LightcurveStore(base / _STORE)
    out = {}
    for epoch_id in store.epochs()["epoch_id"]:
        table = store.epoch_table(str(epoch_id))
        rows = {
            (str(r["source_name"]), str(r["image_id"])): (
                float(r["mjd"]),
                float(r["flux_jy"]),
                float(r["flux_err_jy"]),
            )
            for r in table
        }
        assert len(rows) == len(table), f"duplicate rows in epoch {epoch_id}"
        out[str(epoch_id)] = rows
    assert store.n_rows() == sum(len(r) for r in out.values())
    return out


def _ingests(stream: Stream) -> set[tuple[int, str | None]]:
    """The light-curve ingests finished so far: (job id, finished at)."""
    return {
        (j.id, j.finished_at)
        for j in stream.jobs()
        if j.kind == UPDATE_VARIABILITY and j.state == "done"
    }


def _image_data(base: Path) -> dict[str, bytes]:
    from astropy.io import fits

    out = {}
    for path in sorted((base / "images").glob("*-image.fits")):
        with fits.open(path, memmap=False) as hdul:
            out[path.name] = hdul[0].data.tobytes()
    return out


def test_power_loss_kill9_and_truncation_then_restart(
    reference, observation, tmp_path
) -> None:
    """Kill -9 at random moments, some followed by a 0-byte newest product.

    Every other kill comes just after a light-curve ingest (at a random
    moment once all are done) and cuts one of the light-curve store's files
    (its newest epoch Parquet, its manifest or its running sums, in turn);
    the others come at a random moment and, half of the time, cut the newest
    image, mosaic or table. The last kill is
    followed by cuts of the newest product, the newest epoch file and the
    manifest together. The restarted run must end with the uninterrupted
    run's products and light curves (same epochs, rows and measured fluxes).

    ``DSA110_POWER_LOSS_RUNS`` (default 6 in CI; the README's figure is from
    20) sets the number of kills. Embedded backend only: the kill -9, SIGTERM
    and fault tests run on both backends (``backend``), and this one's many
    restarts would add minutes of CI time on the scale-out backend.
    """
    ref_base, want = reference
    stream = Stream(tmp_path, observation.sky_path)
    deliver(observation.groups[:3], stream.incoming)
    rng = random.Random(20261201)
    events: list[tuple[str, str | None]] = []
    n_store_cuts = 0
    for run in range(POWER_LOSS_RUNS):
        before = _ingests(stream)
        stream.start()
        store_run = run % 2 == 1
        if store_run and not stream.finished(FULL_RUN):  # just after an ingest
            stream.wait(
                lambda before=before: _ingests(stream) - before,
                "a light-curve ingest",
                timeout_s=180,
            )
            delay = rng.uniform(0.0, 0.5)
        else:
            delay = rng.uniform(1.0, 15.0)
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline and stream.proc.poll() is None:
            time.sleep(0.05)
        assert stream.proc.poll() is None, stream.tail()
        stream.kill9()
        if store_run:
            target = _STORE_TARGETS[n_store_cuts % len(_STORE_TARGETS)]
            cut = _truncate_store_file(tmp_path, target)
            n_store_cuts += cut is not None
            what = f"store run, {delay:.1f} s"
        else:
            cut = _truncate_newest_product(tmp_path) if rng.random() < 0.5 else None
            what = f"{delay:.1f} s"
        events.append((what, cut.name if cut else None))
    # and cuts after the last kill, which may hit a finished block's products
    # and store files (found by the start-up audit) or a running one's (remade)
    last = [
        _truncate_newest_product(tmp_path),
        _truncate_store_file(tmp_path, "epoch"),
        _truncate_store_file(tmp_path, "manifest"),
    ]
    assert all(last), last
    n_store_cuts += 2
    events.append(("end", ", ".join(p.name for p in last)))
    print(f"\npower-loss events (kill point, files cut to 0 bytes): {events}")
    print(f"kills: {POWER_LOSS_RUNS}; light-curve store files cut: {n_store_cuts}")
    audits = stream.tail(100_000).count("product audit done")
    stream.start()
    # the work may all be done already: let the stream get past its start-up
    # audit (which requeues blocks with damaged products and the ingests of
    # epochs the store lost) before judging it
    stream.wait(
        lambda: stream.tail(100_000).count("product audit done") > audits,
        "the stream's start-up audit",
    )
    stream.wait(lambda: stream.finished(FULL_RUN), "the restarted run to finish")
    stream.stop()
    assert stream.proc.returncode == 0, stream.tail()
    assert_products_complete(tmp_path)
    assert_no_debris(tmp_path)
    assert_same_products(snapshot(tmp_path), want)
    for sub in (*_PRODUCT_DIRS, str(_STORE)):
        empty = [
            p
            for p in (tmp_path / sub).rglob("*")
            if p.is_file() and p.stat().st_size == 0 and p.name != "_writer.lock"
        ]
        assert empty == [], f"0-byte products left: {empty}"
    # light curves: the same epochs, rows and measured fluxes (the corrected
    # fluxes depend on the order the epochs were ingested in)
    got_lc, ref_lc = _lightcurves(tmp_path), _lightcurves(ref_base)
    assert got_lc.keys() == ref_lc.keys()
    for epoch_id, rows in ref_lc.items():
        assert got_lc[epoch_id].keys() == rows.keys(), epoch_id
        for key, (mjd, flux, err) in rows.items():
            got_mjd, got_flux, got_err = got_lc[epoch_id][key]
            assert got_mjd == pytest.approx(mjd, abs=1e-9), (epoch_id, key)
            assert [got_flux, got_err] == pytest.approx(
                [flux, err], rel=1e-3, abs=1e-4, nan_ok=True
            ), (epoch_id, key)
    got, ref = _image_data(tmp_path), _image_data(ref_base)
    assert got.keys() == ref.keys()
    identical = sum(got[k] == ref[k] for k in ref)
    print(f"images bit-for-bit equal to the uninterrupted run: {identical}/{len(ref)}")
    jobs = stream.jobs()
    assert len({(j.kind, j.key) for j in jobs}) == len(jobs) == 9


def _crash_once_imager(path: Path, marks: Path) -> Path:
    real = shutil.which("wsclean")
    path.write_text(
        "#!/bin/sh\n"
        f'[ "$1" = "--version" ] && exec {real} "$@"\n'
        'for last in "$@"; do :; done\n'
        f'mark="{marks}/$(basename "$last").crashed"\n'
        'if [ ! -e "$mark" ]; then touch "$mark"; echo "injected crash"; '
        "kill -SEGV $$; fi\n"
        f'exec {real} "$@"\n'
    )
    path.chmod(0o755)
    marks.mkdir(exist_ok=True)
    return path


def test_faults_end_in_retry_or_quarantine(observation, tmp_path, backend) -> None:
    from dsa110_contimg.data_ingestion.grouping import SubbandGroup
    from dsa110_contimg.data_ingestion.ms_creation import convert_group
    from dsa110_contimg.telescope.dsa110 import parse_subband_filename

    g0, g1, g2, g3 = observation.groups
    imager = _crash_once_imager(tmp_path / "crashy-wsclean", tmp_path / "marks")
    stream = Stream(
        tmp_path,
        observation.sky_path,
        backend=backend,
        imaging={"wsclean_path": str(imager)},
        watcher={"group_timeout_s": 8.0, "timeout_policy": "flag"},
    )
    # g0: one file truncated; g1: one file still being written when first seen;
    # g2: sb05 never arrives; g3: a corrupt MS is already in place
    deliver([g0, g1, g3], stream.incoming)
    deliver([g2], stream.incoming, skip=("_sb05",))
    truncated = stream.incoming / g0.files[3].name
    truncated.write_bytes(g0.files[3].read_bytes()[:20000])
    growing = stream.incoming / g1.files[7].name
    content = g1.files[7].read_bytes()
    growing.write_bytes(content[: len(content) // 3])
    parsed = [parse_subband_filename(p) for p in g3.files]
    group = SubbandGroup(
        min(f.timestamp for f in parsed), {f.subband: f.path for f in parsed}
    )
    ms = convert_group(group, tmp_path / "ms").path
    (ms / "table.f21_TSM1").write_bytes(b"\0" * 100)  # DATA column cut short
    assert check_ms(ms) is not None

    stream.start()
    time.sleep(3.0)
    growing.write_bytes(content)  # the writer finishes
    expected = {CONVERT_GROUP: 3, PROCESS_BLOCK: 2, UPDATE_VARIABILITY: 2}
    stream.wait(
        lambda: (
            stream.finished(expected, states=("done",))
            and any(j.state == "quarantined" for j in stream.jobs())
        ),
        "the faulty run to settle",
    )
    report = stream.status()
    stream.stop()
    jobs = {(j.kind, j.key): j for j in stream.jobs()}
    bad = jobs[(CONVERT_GROUP, g0.start_time.strftime("%Y-%m-%dT%H:%M:%S"))]
    assert bad.state == "quarantined"
    assert truncated.name in bad.quarantine_reason
    assert "truncated or corrupt" in bad.quarantine_reason
    assert bad.payload["files"]["03"] == str(truncated)  # the inputs are kept
    assert report["quarantined"] == 1 and report["quarantine"][0]["id"] == bad.id
    flagged = jobs[(CONVERT_GROUP, g2.start_time.strftime("%Y-%m-%dT%H:%M:%S"))]
    assert flagged.state == "done" and flagged.result["missing_subbands"] == [5]
    assert "missing sb05" in flagged.payload["decision"]
    healed = jobs[(CONVERT_GROUP, g3.start_time.strftime("%Y-%m-%dT%H:%M:%S"))]
    assert healed.state == "done" and healed.result["replaced_corrupt_ms"]
    assert check_ms(ms) is None
    assert Path(healed.result["replaced_corrupt_ms"]).parent.name == "corrupt"
    blocks = [j for (kind, _), j in jobs.items() if kind == PROCESS_BLOCK]
    for block in blocks:
        errors = [e for e in stream.events(block.id) if e["error_class"]]
        assert errors and all(e["error_class"] == "ImagingError" for e in errors)
        assert "signal" in errors[0]["reason"]
        assert block.state == "done"
    images = sorted(p.name for p in (tmp_path / "images").glob("*-image.fits"))
    assert len(images) == 3  # g1, g2 (flagged) and g3; g0 quarantined
    assert_products_complete(tmp_path)


def test_sigterm_stops_within_grace_and_restart_finishes(
    observation, tmp_path, backend
) -> None:
    slow = tmp_path / "slow-wsclean"
    real = shutil.which("wsclean")
    slow.write_text(
        f'#!/bin/sh\n[ "$1" = "--version" ] && exec {real} "$@"\nsleep 120\n'
        f'exec {real} "$@"\n'
    )
    slow.chmod(0o755)
    grace_s = 3.0
    stream = Stream(
        tmp_path,
        observation.sky_path,
        backend=backend,
        imaging={"wsclean_path": str(slow)},
        queue={"shutdown_grace_s": grace_s},
    )
    deliver(observation.groups[:3], stream.incoming)
    stream.start()
    stream.wait(stream.imager_running, "imaging to start")
    workers = stream.descendants()
    elapsed = stream.stop()
    assert stream.proc.returncode == 0, stream.tail()
    assert elapsed < grace_s + 6, elapsed
    assert "released" in stream.tail(5)
    # pool workers and the imager are gone (multiprocessing's resource tracker
    # may take a moment longer to notice its parent left)
    _, alive = psutil.wait_procs(workers, timeout=5)
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    jobs = stream.jobs()
    assert not [j for j in jobs if j.state == "running"]
    released = [j for j in jobs if j.kind == PROCESS_BLOCK and j.state == "pending"]
    assert released and all(j.attempts == 0 for j in released)
    assert any("grace period" in e["reason"] for e in stream.events(released[0].id))
    stream.configure()  # the real imager again
    stream.start()
    stream.wait(lambda: stream.finished(FULL_RUN), "the restarted run to finish")
    stream.stop()
    assert stream.proc.returncode == 0
    assert_no_debris(tmp_path)


def test_disk_guard_pauses_intake(observation, tmp_path) -> None:
    stream = Stream(tmp_path, observation.sky_path, watcher={"min_free_disk_gb": 1e9})
    deliver(observation.groups[:1], stream.incoming)
    stream.start()
    report = stream.wait(
        lambda: (
            stream.db.exists()
            and (r := stream.status()).get("intake", {}).get("paused")
            and r
        ),
        "intake to pause",
        timeout_s=60,
    )
    assert "min_free_disk_gb" in report["intake"]["reason"]
    time.sleep(1.5)  # several scans while paused
    assert stream.jobs() == []
    stream.stop()
    assert stream.proc.returncode == 0
    assert "intake paused" in stream.out.read_text()


def test_fifo_and_bad_name_do_not_stop_the_stream(observation, tmp_path) -> None:
    """A FIFO named like a subband file and a name that is not a time (issue 15).

    Before, the scan opened the FIFO on the event loop and blocked forever
    (heartbeats and SIGTERM ignored), and the bad name raised on every scan.
    """
    g0, g1 = observation.groups[:2]
    grace_s = 3.0
    stream = Stream(
        tmp_path,
        observation.sky_path,
        queue={"shutdown_grace_s": grace_s, "block_wait_s": 300.0},
        watcher={"group_timeout_s": 300.0},
    )
    deliver([g0], stream.incoming, skip=("_sb05",))
    deliver([g1], stream.incoming)
    (sb05,) = [p for p in g0.files if "_sb05" in p.name]
    fifo = stream.incoming / sb05.name
    os.mkfifo(fifo)
    bad = stream.incoming / "2023-06-01T25:61:99_sb03.hdf5"
    shutil.copy2(sb05, bad)
    g1_key = g1.start_time.strftime("%Y-%m-%dT%H:%M:%S")
    stream.start()
    stream.wait(
        lambda: any(j.key == g1_key and j.state == "done" for j in stream.jobs()),
        "the good group to convert",
        timeout_s=90,
    )
    report = stream.wait(
        lambda: (r := stream.status())["rejected_files"]["counts"] and r,
        "the rejected files to be recorded",
        timeout_s=30,
    )
    reasons = {row["path"]: row for row in report["rejected_files"]["files"]}
    assert reasons[str(fifo)]["kind"] == "not_regular"
    assert "FIFO" in reasons[str(fifo)]["reason"]
    assert reasons[str(bad)]["kind"] == "bad_name"
    assert "not a valid time" in reasons[str(bad)]["reason"]
    elapsed = stream.stop()
    assert stream.proc.returncode == 0, stream.tail()
    assert elapsed < grace_s + 6, elapsed
    assert fifo.exists() and bad.exists()  # raw data is never deleted


def test_late_subband_reconverts_and_redoes_blocks(
    observation, tmp_path, backend
) -> None:
    """A subband arriving after the timeout: the group's MS is remade with it."""
    g0, g1, g2 = observation.groups[:3]
    stream = Stream(
        tmp_path,
        observation.sky_path,
        backend=backend,
        watcher={"group_timeout_s": 4.0, "timeout_policy": "flag"},
    )
    deliver([g0, g2], stream.incoming)
    deliver([g1], stream.incoming, skip=("_sb05",))
    stream.start()
    stream.wait(lambda: stream.finished(FULL_RUN), "the first pass to finish")
    key = g1.start_time.strftime("%Y-%m-%dT%H:%M:%S")
    (conv,) = [j for j in stream.jobs() if j.kind == CONVERT_GROUP and j.key == key]
    assert conv.result["missing_subbands"] == [5]
    blocks = {
        j.key: len(stream.events(j.id))
        for j in stream.jobs()
        if j.kind == PROCESS_BLOCK and key in j.payload["groups"]
    }
    assert blocks
    deliver([g1], stream.incoming)  # sb05 arrives late (others already there)

    def redone() -> bool:
        jobs = {(j.kind, j.key): j for j in stream.jobs()}
        c = jobs[(CONVERT_GROUP, key)]
        if c.state != "done" or c.result.get("missing_subbands") != []:
            return False
        return stream.finished(FULL_RUN) and all(
            len(stream.events(jobs[(PROCESS_BLOCK, b)].id)) > n
            for b, n in blocks.items()
        )

    stream.wait(redone, "the late subband to be reconverted and blocks redone")
    stream.stop()
    assert stream.proc.returncode == 0, stream.tail()
    jobs = {(j.kind, j.key): j for j in stream.jobs()}
    again = jobs[(CONVERT_GROUP, key)]
    assert again.result["ms_path"] == conv.result["ms_path"]  # one group, one MS
    assert again.result["superseded_images"]  # old images kept aside
    assert len(list((tmp_path / "ms").glob("*.ms"))) == 3
    assert_products_complete(tmp_path)


def test_subband_arriving_while_the_stream_is_down_is_reconverted(
    observation, tmp_path
) -> None:
    """A late subband that arrives while the stream is stopped (issue 15.6).

    Before, a restart took every file of a decided group as its baseline, so
    the group converted without the subband stayed flagged for good. The
    restarted watcher compares the directory with the files the group's
    ``convert_group`` job lists: the group is reconverted with 16 subbands,
    exactly once, and its images, blocks and light-curve epochs are redone; a
    restart with no new file redoes nothing. Embedded backend only (the
    reconversion itself runs on both in the test above).
    """
    g0, g1, g2 = observation.groups[:3]
    stream = Stream(
        tmp_path,
        observation.sky_path,
        watcher={"group_timeout_s": 4.0, "timeout_policy": "flag"},
    )
    deliver([g0, g2], stream.incoming)
    deliver([g1], stream.incoming, skip=("_sb05",))
    stream.start()
    stream.wait(lambda: stream.finished(FULL_RUN), "the first pass to finish")
    assert stream.stop() < 15 and stream.proc.returncode == 0, stream.tail()
    key = g1.start_time.strftime("%Y-%m-%dT%H:%M:%S")
    jobs = {(j.kind, j.key): j for j in stream.jobs()}
    conv = jobs[(CONVERT_GROUP, key)]
    assert conv.result["missing_subbands"] == [5]
    holding = [
        b
        for (kind, b), j in jobs.items()
        if kind == PROCESS_BLOCK and key in j.payload["groups"]
    ]
    assert holding
    seen = {j.id: len(stream.events(j.id)) for j in jobs.values()}

    (sb05,) = [p for p in g1.files if "_sb05" in p.name]
    shutil.copy2(sb05, stream.incoming / sb05.name)  # arrives while down
    stream.start()

    def redone() -> bool:
        now = {(j.kind, j.key): j for j in stream.jobs()}
        c = now[(CONVERT_GROUP, key)]
        if c.state != "done" or c.result.get("missing_subbands") != []:
            return False
        return stream.finished(FULL_RUN) and all(
            len(stream.events(now[(kind, b)].id)) > seen[now[(kind, b)].id]
            for b in holding
            for kind in (PROCESS_BLOCK, UPDATE_VARIABILITY)
        )

    stream.wait(redone, "the group to be reconverted and its blocks redone")
    assert stream.stop() < 15 and stream.proc.returncode == 0, stream.tail()
    jobs = {(j.kind, j.key): j for j in stream.jobs()}
    again = jobs[(CONVERT_GROUP, key)]
    assert again.payload["files"]["05"] == str(stream.incoming / sb05.name)
    assert again.result["n_subbands_present"] == 16
    assert again.result["ms_path"] == conv.result["ms_path"]  # one group, one MS
    assert again.result["superseded_images"]  # its images were remade
    late = [e for e in stream.events(again.id) if "late subband" in e["reason"]]
    assert len(late) == 1, late  # exactly once
    others = [j for (kind, k), j in jobs.items() if kind == CONVERT_GROUP and k != key]
    assert all(len(stream.events(j.id)) == seen[j.id] for j in others)
    assert len(jobs) == 9
    assert_products_complete(tmp_path)

    # a restart with no new file reconverts nothing
    seen = {j.id: len(stream.events(j.id)) for j in jobs.values()}
    audits = stream.tail(100_000).count("product audit done")
    stream.start()
    stream.wait(
        lambda: stream.tail(100_000).count("product audit done") > audits,
        "the stream's start-up audit",
    )
    time.sleep(3.0)  # several scans (scan_interval_s 0.5, settle_s 0.3)
    assert stream.stop() < 15 and stream.proc.returncode == 0, stream.tail()
    assert {j.id: len(stream.events(j.id)) for j in stream.jobs()} == seen
