"""A real PostgreSQL server for the tests: Debian's postgresql package, started in a temporary
directory on a free loopback port (initdb + pg_ctl), stopped afterwards."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def server_binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def require_server_binaries() -> Path:
    """The bin directory; in CI (``CI`` set) a missing server fails, elsewhere it skips."""
    binaries = server_binaries()
    if binaries is None:
        message = "PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return binaries


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresServer:
    """A fresh server in a temporary directory, which a test can stop and start again (a
    database outage); ``url`` stays the same."""

    def __init__(self) -> None:
        self.binaries = require_server_binaries()
        self.workdir = Path(tempfile.mkdtemp(prefix="sentiment-pg-"))
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            # util-linux's runuser lives in /usr/sbin, which a root shell's PATH may leave out
            runuser = shutil.which("runuser") or shutil.which("runuser", path="/usr/sbin:/sbin")
            assert runuser, "runuser (util-linux) not found: it starts PostgreSQL as the postgres user"
            self.as_user = [runuser, "-u", "postgres", "--"]
            shutil.chown(self.workdir, "postgres")
        self.data, self.port = self.workdir / "data", _free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        self._run(str(self.binaries / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def _run(self, *args: str) -> None:
        result = subprocess.run([*self.as_user, *args], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{' '.join(args)}:\n{result.stdout}\n{result.stderr}"

    def start(self) -> None:
        self._run(str(self.binaries / "pg_ctl"), "-D", str(self.data), "-l", str(self.workdir / "server.log"), "-w",
                  "-o", f"-p {self.port} -k {self.workdir} -c listen_addresses=127.0.0.1 -c fsync=off", "start")

    def stop(self, mode: str = "fast") -> None:
        """``fast`` ends sessions cleanly; ``immediate`` is a crash (connections cut)."""
        self._run(str(self.binaries / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


@contextmanager
def postgres_cluster() -> Iterator[PostgresServer]:
    """A running server the test may stop and start; stopped and removed afterwards."""
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        try:
            server.stop()
        except AssertionError:
            pass  # the test left it stopped
        server.remove()


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yield the SQLAlchemy URL of a fresh server; root runs it as the postgres user (in a
    directory of its own under /tmp: pytest's are private to root)."""
    with postgres_cluster() as server:
        yield server.url
