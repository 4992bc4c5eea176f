"""A throwaway ``redis-server`` for tests: loopback, a free port, a tmp dir.

`RedisServer` starts ``redis-server`` with its data in a directory of its
own, append-only file on (``appendfsync everysec``) and no RDB snapshots, so
`stop` then `start` on the same directory keeps the data (the kill/restart
acceptance test). Never a system-wide server. Used by the ``redis_server``
fixture of ``tests/conftest.py``; tests that use it carry the ``scaleout``
marker.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

__all__ = ["RedisServer", "free_port"]


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1 with its data in ``data_dir``.

    Parameters
    ----------
    data_dir : Path
        Working directory of the server (its append-only files).
    port : int, optional
        TCP port; default a free one (kept across restarts).
    """

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            msg = (
                "redis-server not found on PATH; install it (scripts/setup.sh, or "
                "apt-get install redis-server)"
            )
            raise FileNotFoundError(msg)
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The server's ``redis://`` URL (database 0)."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> None:
        """Start the server and wait until it answers ``PING``."""
        if self.proc is not None and self.proc.poll() is None:
            return
        log = (self.data_dir / "redis.log").open("ab")
        self.proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            [
                str(self.binary),
                "--bind", "127.0.0.1",
                "--port", str(self.port),
                "--dir", str(self.data_dir),
                "--save", "",
                "--appendonly", "yes",
                "--appendfsync", "everysec",
                "--protected-mode", "yes",
                "--daemonize", "no",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                text = (self.data_dir / "redis.log").read_text(errors="replace")
                msg = f"redis-server exited with {self.proc.returncode}: {text[-2000:]}"
                raise RuntimeError(msg)
            if self._ping():
                return
            time.sleep(0.05)
        self.stop()
        msg = f"redis-server on port {self.port} did not answer within {timeout_s} s"
        raise TimeoutError(msg)

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """Kill the server with SIGKILL (a crash: only its AOF survives)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
