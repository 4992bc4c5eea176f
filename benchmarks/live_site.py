"""A live pipeline for the web's browser tests and load benchmark.

`LiveSite` simulates testing-size groups (the fake imager renders them, so
no WSClean is needed), writes a configuration, and runs ``dsa110-contimg
stream`` and ``dsa110-contimg serve`` on it as child processes (loopback, a
free port); `LiveSite.feed` drops one group's raw files into the stream's
incoming directory (optionally with one subband's visibilities corrupt,
`write_corrupt_copy`, which the pipeline quarantines; `LiveSite.repair`
re-transfers the good file). Each group is its own block (1-minute mosaic windows,
0.6 s overlap, the groups 30 s, 107 s... past the anchor at midnight), so
every group adds one mosaic epoch to the light curves.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from dsa110_contimg.testing.layout import run_paths

__all__ = ["LiveSite", "free_port", "write_corrupt_copy"]


def write_corrupt_copy(src: Path, dst: Path) -> Path:
    """Write ``src`` (a UVH5 file) to ``dst`` with its visibilities unreadable.

    Every header dataset and attribute is copied as is; ``Data/visdata`` is
    written as one gzip-compressed chunk and bytes in the middle of that
    chunk are then overwritten, as bit rot would. The header reads
    (`read_group_header` passes, so the watcher hands the group on); reading
    the visibilities fails in the gzip filter, which the reader reports as
    `InputDataError` ("the file is truncated or corrupt").
    """
    import h5py

    with h5py.File(src, "r") as fin, h5py.File(dst, "w") as fout:
        for key, value in fin.attrs.items():
            fout.attrs[key] = value
        for name in fin:
            if name != "Data":
                fin.copy(fin[name], fout, name=name)
        data = fout.create_group("Data")
        for key, value in fin["Data"].attrs.items():
            data.attrs[key] = value
        for name, dataset in fin["Data"].items():
            if name == "visdata":
                data.create_dataset(
                    name, data=dataset[()], chunks=dataset.shape, compression="gzip"
                )
            else:
                fin["Data"].copy(dataset, data, name=name)
        fout.flush()
        chunk = fout["Data/visdata"].id.get_chunk_info(0)
    with open(dst, "r+b") as f:  # at once: the watcher waits for files to settle
        f.seek(chunk.byte_offset + chunk.size // 2)
        f.write(b"\xff" * max(1, min(256, chunk.size // 4)))
    return dst


def free_port() -> int:
    """Return a TCP port free on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveSite:
    """Simulated data, a configuration and the stream and serve processes.

    Parameters
    ----------
    base : Path
        Empty working directory (data, state, logs, configuration).
    n_groups : int
        Groups to simulate (77 s apart, one block each).
    """

    def __init__(self, base: Path, *, n_groups: int = 2) -> None:
        import yaml

        from dsa110_contimg.simulation import ObservationSpec, simulate_observation

        self.base = Path(base)
        self.base.mkdir(parents=True, exist_ok=True)
        spec = ObservationSpec(
            start_time=datetime(2023, 6, 1, 0, 0, 30, tzinfo=UTC),
            n_groups=n_groups,
            n_antennas=24,
            n_chan_per_subband=2,
            n_times=6,
            n_sources=6,
            min_flux_jy=0.5,
            max_flux_jy=3.0,
            field_radius_deg=0.6,
            seed=7,
        )
        self.observation = simulate_observation(spec, self.base / "sim")
        self.incoming = self.base / "incoming"
        self.incoming.mkdir(exist_ok=True)
        tree = {
            "paths": {
                **run_paths(self.base),
                "catalog_path": str(self.observation.sky_path),
            },
            "variability": {
                "store_dir": str(self.base / "lightcurves"),
                "min_epochs": 2,  # eta and V from the second group on
            },
            "imaging": {
                "backend": "fake",
                "fake_sky_path": str(self.observation.sky_path),
                "threads": 1,
            },
            "services": {"mosaic_duration_min": 1.0, "mosaic_overlap_min": 0.01},
            "conversion": {"group_tolerance_s": 20.0},
            "watcher": {
                "scan_interval_s": 0.5,
                "settle_s": 0.3,
                "group_timeout_s": 30.0,
            },
            "queue": {"poll_interval_s": 0.2, "block_wait_s": 2.0},
        }
        self.config_path = self.base / "site.yaml"
        self.config_path.write_text(yaml.safe_dump(tree))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._procs: dict[str, subprocess.Popen] = {}
        self._fed = 0
        self._corrupt: dict[int, list[Path]] = {}

    def _env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        from dsa110_contimg.utils.config_loader import find_config_dir

        env = {k: v for k, v in os.environ.items() if not k.startswith("DSA110")}
        env.update(extra or {})
        env["DSA110_CONFIG_DIR"] = str(find_config_dir(env={}))
        src = str(Path(__file__).resolve().parent.parent / "src")
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (src, os.environ.get("PYTHONPATH", "")) if p
        )
        return env

    def _start(
        self, name: str, args: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen:
        log = open(self.base / f"{name}.out", "wb")  # noqa: SIM115 (kept by the child)
        proc = subprocess.Popen(
            [sys.executable, "-m", "dsa110_contimg.cli", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.base,
            env=self._env(env),
            start_new_session=True,
        )
        log.close()
        self._procs[name] = proc
        return proc

    def start_stream(self) -> None:
        """Create the state database (``db migrate``) and start ``stream``."""
        subprocess.run(
            [sys.executable, "-m", "dsa110_contimg.cli", "db", "migrate"]
            + ["--env", "testing", "--config", str(self.config_path)],
            check=True,
            capture_output=True,
            cwd=self.base,
            env=self._env(),
            timeout=120,
        )
        self._start(
            "stream",
            ["stream", "--env", "testing", "--config", str(self.config_path)]
            + ["--incoming-dir", str(self.incoming)]
            + ["--catalog", str(self.observation.sky_path)],
        )

    def start_serve(
        self, timeout_s: float = 60.0, *, operator_token: str | None = None
    ) -> None:
        """Start ``dsa110-contimg serve`` and wait until it answers.

        ``operator_token``: the token operator actions need, given to the
        server in ``DSA110_OPERATOR_TOKEN`` (``web.operator_token_env``'s
        default); without it every action is refused.
        """
        proc = self._start(
            "serve",
            ["serve", "--env", "testing", "--config", str(self.config_path)]
            + ["--host", "127.0.0.1", "--port", str(self.port)],
            env=None
            if operator_token is None
            else {"DSA110_OPERATOR_TOKEN": operator_token},
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                msg = f"serve exited: {self.log('serve')[-2000:]}"
                raise RuntimeError(msg)
            try:
                with urllib.request.urlopen(self.url + "/api/openapi.json", timeout=2):
                    return
            except OSError:
                time.sleep(0.3)
        msg = f"serve did not answer in {timeout_s} s"
        raise RuntimeError(msg)

    def feed(self, *, corrupt_subband: int | None = None) -> int:
        """Copy the next group's raw files into incoming; return its index.

        ``corrupt_subband``: that subband's file (``..._sbNN.hdf5``) arrives
        with its visibilities corrupt (`write_corrupt_copy`: the header
        reads, the data does not), so the group's conversion is quarantined
        with the reader's reason; `repair` re-transfers the good file.
        """
        group = self.observation.groups[self._fed]
        for path in group.files:
            if corrupt_subband is not None and path.stem.endswith(
                f"_sb{corrupt_subband:02d}"
            ):
                write_corrupt_copy(path, self.incoming / path.name)
                self._corrupt.setdefault(self._fed, []).append(path)
            else:
                shutil.copy2(path, self.incoming / path.name)
        if corrupt_subband is not None and self._fed not in self._corrupt:
            msg = f"group {self._fed} has no subband {corrupt_subband}"
            raise ValueError(msg)
        self._fed += 1
        return self._fed - 1

    def repair(self, index: int) -> list[Path]:
        """Re-transfer the good copy of group ``index``'s corrupt files.

        As a transfer tool does: the file is written under another name
        outside incoming and renamed over the bad one, so no reader ever sees
        it half written (rewriting the bad file in place once gave the
        requeued conversion a garbage header). Returns the paths replaced.
        """
        spool = self.base / "retransfer"
        spool.mkdir(exist_ok=True)
        replaced = []
        for path in self._corrupt.pop(index, []):
            staged = spool / path.name
            shutil.copy2(path, staged)
            os.replace(staged, self.incoming / path.name)
            replaced.append(self.incoming / path.name)
        return replaced

    def n_mosaics(self) -> int:
        """Mosaics written so far."""
        return len(list((self.base / "mosaics").glob("*-mosaic.fits")))

    def log(self, name: str) -> str:
        """The output of one child process so far."""
        path = self.base / f"{name}.out"
        return path.read_text(errors="replace") if path.is_file() else ""

    def cpu_s(self, name: str) -> float:
        """CPU seconds (user + system) one child process has used so far."""
        proc = self._procs[name]
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def alive(self, name: str) -> bool:
        """Whether a child process runs."""
        proc = self._procs.get(name)
        return proc is not None and proc.poll() is None

    def stop(self) -> None:
        """Stop the children (SIGTERM, then SIGKILL of their group after 40 s)."""
        for proc in self._procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self._procs.values():
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
