"""scripts/cluster_start.sh and cluster_stop.sh start and stop a whole local cluster.

Known truth: after the start script a Dask client sees two one-thread workers
holding ``CASA``, ``IMAGER_SLOTS`` and ``MEMORY_GB``, and runs a task that asks
for them; Redis and PostgreSQL (when installed) answer on their ports; the env
file names every backend; after the stop script no process it started is
alive.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import distributed
import pytest
from tests.servers.dask import REPO, free_port

pytestmark = [pytest.mark.scaleout, pytest.mark.integration]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purpose
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


def test_start_then_stop_leaves_nothing(tmp_path):
    cluster_dir = tmp_path / "cluster"
    # PostgreSQL runs as the postgres user, which cannot enter pytest's tmp dir
    pg_dir = Path(tempfile.mkdtemp(prefix="dsa110-pg-"))
    pg_dir.chmod(0o755)
    env = dict(
        os.environ,
        CLUSTER_DIR=str(cluster_dir),
        PYTHON=sys.executable,
        DASK_PORT=str(free_port()),
        REDIS_PORT=str(free_port()),
        PG_PORT=str(free_port()),
        PG_DIR=str(pg_dir / "pg"),
        PYTHONPATH=str(REPO / "src"),
    )
    start = subprocess.run(
        [str(REPO / "scripts" / "cluster_start.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    pids = [int(p.read_text().split()[0]) for p in cluster_dir.glob("*.pid")]
    try:
        assert start.returncode == 0, start.stdout + start.stderr
        settings = (cluster_dir / "cluster.env").read_text()
        address = f"tcp://127.0.0.1:{env['DASK_PORT']}"
        assert f"DSA110__EXECUTION__SCHEDULER_ADDRESS={address}" in settings
        with distributed.Client(address, timeout=30) as client:
            workers = client.scheduler_info()["workers"].values()
            assert sorted(w["name"] for w in workers) == ["w0", "w1"]
            for worker in workers:
                assert worker["nthreads"] == 1
                assert worker["resources"] == {
                    "CASA": 1.0,
                    "IMAGER_SLOTS": 1.0,
                    "MEMORY_GB": 4.0,
                }
            task = client.submit(sum, [1, 2], resources={"CASA": 1, "IMAGER_SLOTS": 1})
            assert task.result(timeout=30) == 3
        if shutil.which("redis-server"):
            assert "DSA110__QUEUE__REDIS_URL" in settings
            assert (cluster_dir / "redis.pid").exists()
        if shutil.which("pg_ctl") or list(Path("/usr/lib/postgresql").glob("*/bin")):
            assert "DSA110__DATABASE__URL=postgresql://" in settings, start.stderr
            assert (cluster_dir / "postgres.pid").exists()
        assert len(pids) >= 3  # scheduler and two workers at least
    finally:
        stop = subprocess.run(
            [str(REPO / "scripts" / "cluster_stop.sh"), "--purge"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert stop.returncode == 0, stop.stdout + stop.stderr
    deadline = time.monotonic() + 15
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [p for p in pids if _alive(p)]
    assert not cluster_dir.exists()  # --purge
    shutil.rmtree(pg_dir, ignore_errors=True)
