"""A throwaway PostgreSQL server for tests (and ``scripts/cluster_start.sh``).

`PostgresServer` runs ``initdb`` in a temporary directory and ``pg_ctl start``
on a free loopback port with its unix socket in that directory; `stop`
stops it (``start`` again restarts the same cluster: outage tests) and
`cleanup` removes everything. Nothing system-wide is used. The binaries are
found with ``pg_config --bindir``, then ``/usr/lib/postgresql/*/bin``, then
``PATH``. PostgreSQL refuses to run as root: under root the server runs as
the ``postgres`` (else ``nobody``) user.

Fixtures (pytest): ``postgres_server`` (one per session) and
``postgres_url`` (a fresh database per test).

Run as a script (``scripts/cluster_start.sh`` / ``cluster_stop.sh``)::

    python -m tests.servers.postgres start /tmp/pg [PORT]  # prints the URL
    python -m tests.servers.postgres stop /tmp/pg
    python -m tests.servers.postgres run               # until Ctrl-C, then removed
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

__all__ = ["PostgresServer", "find_bindir", "postgres_server", "postgres_url"]

START_TIMEOUT_S = 60


def find_bindir() -> Path | None:
    """The directory of ``initdb``/``pg_ctl``, or None when not installed."""
    candidates = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10
            ).stdout.strip()
            candidates.append(Path(out))
        except (OSError, subprocess.SubprocessError):
            pass
    candidates += [
        Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"))[::-1]
    ]
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run_as() -> str | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    msg = "running as root and no 'postgres' or 'nobody' user to run PostgreSQL as"
    raise RuntimeError(msg)


class PostgresServer:
    """One PostgreSQL cluster in ``root``, on 127.0.0.1:``port``, trust auth.

    Parameters
    ----------
    root : Path, optional
        Directory for the data, socket and log (a new temporary one when
        omitted; removed by `cleanup` only when it was created here). Under
        root its parents must be traversable by the server's user.
    bindir : Path, optional
        Where ``initdb``/``pg_ctl`` live (`find_bindir` when omitted).
    """

    def __init__(self, root: Path | None = None, bindir: Path | None = None) -> None:
        self.bindir = bindir or find_bindir()
        if self.bindir is None:
            msg = "PostgreSQL binaries not found (apt-get install postgresql)"
            raise FileNotFoundError(msg)
        self._own_root = root is None
        self.root = Path(root or tempfile.mkdtemp(prefix="dsa110-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "socket"
        self.log = self.root / "postgres.log"
        self.port = _free_port()
        self.user = _run_as()
        self._names = itertools.count(1)

    def _cmd(self, *args: str, timeout: float = START_TIMEOUT_S) -> None:
        done = subprocess.run(
            args, capture_output=True, text=True, timeout=timeout, user=self.user
        )
        if done.returncode != 0:
            msg = (
                f"{Path(args[0]).name} failed (exit {done.returncode}): "
                f"{done.stderr.strip() or done.stdout.strip()}; see {self.log}"
            )
            raise RuntimeError(msg)

    def init(self) -> PostgresServer:
        """Create the cluster (``initdb``), unless it exists."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        if self.user is not None:
            uid = pwd.getpwnam(self.user).pw_uid
            gid = pwd.getpwnam(self.user).pw_gid
            for path in (self.root, self.socket_dir):
                os.chown(path, uid, gid)
        if not (self.data / "PG_VERSION").exists():
            self._cmd(
                str(self.bindir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-instructions",
                "--no-sync",
            )
        return self

    def start(self) -> PostgresServer:
        """Start (or restart after `stop`) the server and wait until it accepts."""
        options = (
            f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200"
        )
        self._cmd(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.log),
            "-w",
            "-t",
            str(START_TIMEOUT_S),
            "start",
        )
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``pg_ctl stop -m mode``); the cluster stays."""
        if (self.data / "postmaster.pid").exists():
            self._cmd(
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.data),
                "-m",
                mode,
                "-w",
                "stop",
            )

    def cleanup(self) -> None:
        """Stop the server and delete its directory (if created here)."""
        try:
            self.stop("immediate")
        finally:
            if self._own_root:
                shutil.rmtree(self.root, ignore_errors=True)
            else:
                shutil.rmtree(self.data, ignore_errors=True)

    def url(self, dbname: str = "postgres") -> str:
        """The SQLAlchemy URL of database ``dbname`` on this server."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, prefix: str = "state") -> str:
        """Create a new empty database and return its URL."""
        import psycopg

        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
            autocommit=True,
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server for the whole session (skips when not installed)."""
    pytest.importorskip("psycopg")
    pytest.importorskip("sqlalchemy")
    if find_bindir() is None:
        pytest.skip("PostgreSQL binaries not installed (apt-get install postgresql)")
    server = PostgresServer().init().start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The URL of a fresh, empty database on the session's server."""
    return postgres_server.create_database()


def main(argv: list[str]) -> int:
    """``start DIR [PORT]`` (prints the URL; the server keeps running),
    ``stop DIR`` (stops it, keeps DIR), or ``run [DIR]`` (until Ctrl-C)."""
    command = argv[1] if len(argv) > 1 else "run"
    root = Path(argv[2]) if len(argv) > 2 else None
    if command in {"start", "stop"} and root is None:
        print(f"usage: {argv[0]} start|stop DIR [PORT]", file=sys.stderr)
        return 2
    server = PostgresServer(root)
    port_file = server.root / "port"
    if command == "stop":
        server.stop()
        return 0
    if command == "start":
        if len(argv) > 3:
            server.port = int(argv[3])
        elif port_file.exists():
            server.port = int(port_file.read_text())
        server.init().start()
        port_file.write_text(str(server.port))
        print(server.url(), flush=True)
        return 0
    server.init().start()
    print(server.url(), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
