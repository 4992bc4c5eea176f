"""A throwaway Dask cluster on loopback: one scheduler and N worker processes.

Each worker is its own ``dask worker`` process (with its nanny) holding one
thread (casatools is not thread-safe) and the resources the pipeline's tasks
ask for (``CASA``, ``IMAGER_SLOTS``, ``MEMORY_GB``), as
``scripts/cluster_start.sh`` starts them. The cluster lives in a temporary
directory, on free ports, and is stopped (every process group killed) when the
fixture ends. Use it from a test module with
``from tests.servers.dask import dask_cluster  # noqa: F401``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
WORKER_RESOURCES = "CASA=1,IMAGER_SLOTS=1,MEMORY_GB=4"
START_TIMEOUT_S = 60.0


def free_port() -> int:
    """Return a TCP port free on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cluster_env() -> dict[str, str]:
    """Return the environment of the cluster's processes.

    This checkout's ``src`` first on the path, glibc returning freed memory
    to the system early (``MALLOC_TRIM_THRESHOLD_``), one BLAS thread, and a
    task rerun on another worker when its worker dies, up to 3 times.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(  # tests.servers too (task helpers)
        p for p in (str(REPO / "src"), str(REPO), env.get("PYTHONPATH", "")) if p
    )
    env.update(
        MALLOC_TRIM_THRESHOLD_="65536",
        OMP_NUM_THREADS="1",
        OPENBLAS_NUM_THREADS="1",
        DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES="3",
        DASK_DISTRIBUTED__SCHEDULER__WORK_STEALING="True",
    )
    return env


@dataclass
class DaskCluster:
    """A running scheduler and its worker processes (see `start_cluster`)."""

    directory: Path
    address: str
    scheduler: subprocess.Popen
    workers: dict[str, subprocess.Popen] = field(default_factory=dict)

    def kill_worker(self, name: str) -> None:
        """SIGKILL one worker's process group (nanny and worker process)."""
        proc = self.workers[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def stop(self) -> None:
        """Kill every process of the cluster and wait for it."""
        for proc in [*self.workers.values(), self.scheduler]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in [*self.workers.values(), self.scheduler]:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def _spawn(args: list[str], log: Path) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=cluster_env(),
            cwd=log.parent,
            start_new_session=True,  # its own process group: killpg stops all
        )


def start_cluster(
    directory: Path,
    n_workers: int = 2,
    *,
    resources: str = WORKER_RESOURCES,
    memory_limit: str = "4GB",
) -> DaskCluster:
    """Start a scheduler and ``n_workers`` one-thread workers on 127.0.0.1.

    Returns once every worker has joined the scheduler.

    Raises
    ------
    RuntimeError
        The cluster did not come up within ``START_TIMEOUT_S``; the logs in
        ``directory`` say why.
    """
    import distributed

    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask_bin = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    scheduler = _spawn(
        [
            *dask_bin,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--dashboard-address",
            ":0",
            "--no-show",
        ],
        directory / "scheduler.log",
    )
    cluster = DaskCluster(directory, address, scheduler)
    try:
        for i in range(n_workers):
            name = f"w{i}"
            cluster.workers[name] = _spawn(
                [
                    sys.executable,
                    "-m",
                    "distributed.cli.dask_worker",
                    address,
                    "--name",
                    name,
                    "--nthreads",
                    "1",
                    "--nworkers",
                    "1",
                    "--resources",
                    resources,
                    "--memory-limit",
                    memory_limit,
                    "--host",
                    "127.0.0.1",
                    "--no-dashboard",
                    "--local-directory",
                    str(directory / name),
                ],
                directory / f"{name}.log",
            )
        with distributed.Client(address, timeout=START_TIMEOUT_S) as client:
            client.wait_for_workers(n_workers, timeout=START_TIMEOUT_S)
    except BaseException:
        cluster.stop()
        logs = {p.name: p.read_text()[-2000:] for p in directory.glob("*.log")}
        msg = f"Dask cluster in {directory} did not start: {logs}"
        raise RuntimeError(msg) from None
    return cluster


# -- task helpers (importable on the workers as tests.servers.dask) ------------
def count_call(counter: str, value: int) -> int:
    """Append a line to ``counter`` (a side effect that counts runs); return value."""
    with open(counter, "a") as out:
        out.write("x\n")
    return value


def record_order(log: str, label: str, delay_s: float = 0.0) -> str:
    """Sleep ``delay_s``, then append ``label`` to ``log`` (the order tasks ran)."""
    time.sleep(delay_s)
    with open(log, "a") as out:
        out.write(label + "\n")
    return label


@pytest.fixture
def dask_cluster(tmp_path: Path) -> Iterator[DaskCluster]:
    """A scheduler and two worker processes on loopback, stopped afterwards."""
    cluster = start_cluster(tmp_path / "dask")
    try:
        yield cluster
    finally:
        cluster.stop()
