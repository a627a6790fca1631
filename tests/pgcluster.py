"""A throwaway PostgreSQL cluster for tests: ``initdb`` + ``pg_ctl`` in a temporary directory.

It listens on 127.0.0.1 (a free port) and on a Unix socket in its own directory, with
scram-sha-256 authentication for the user ``arcfleet``: clients find the password in
``PGPASSWORD`` or a ``.pgpass`` file, as an operator's would. ``initdb`` refuses to run as root,
so the server runs as ``nobody`` (``runuser``). Nothing depends on a system service.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

PG_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
SERVER_USER = "nobody"


def _bin(name: str) -> Path | None:
    for directory in PG_BIN_DIRS:
        if (directory / name).exists():
            return directory / name
    found = shutil.which(name)
    return Path(found) if found else None


def unavailable_reason() -> str | None:
    if _bin("initdb") is None or _bin("pg_ctl") is None:
        return "PostgreSQL server binaries (initdb, pg_ctl) are missing: apt-get install postgresql"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "runuser is missing (initdb refuses to run as root)"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install -e '.[test]')"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PgCluster:
    root: Path
    port: int
    password: str
    user: str = "arcfleet"

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, dbname: str) -> str:
        """A connection URL without the password (clients take it from PGPASSWORD)."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{dbname}"

    def env(self) -> dict[str, str]:
        return {**os.environ, "PGPASSWORD": self.password}

    def _as_server(self, *argv: str) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", SERVER_USER, "--", *argv]
        return list(argv)

    @classmethod
    def start(cls, *, durable: bool = False) -> PgCluster:
        """``durable``: fsync on, as in production (tests run with it off: faster, and a
        test cluster is thrown away)."""
        root = Path(tempfile.mkdtemp(prefix="arcfleet-pg-"))
        cluster = cls(root=root, port=_free_port(), password=secrets.token_urlsafe(18))
        pwfile = root / "pw"
        pwfile.write_text(cluster.password + "\n")
        if os.geteuid() == 0:
            shutil.chown(root, user=SERVER_USER)
            shutil.chown(pwfile, user=SERVER_USER)
        root.chmod(0o700)
        pwfile.chmod(0o600)
        initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
        assert initdb and pg_ctl
        subprocess.run(
            cluster._as_server(
                str(initdb), "-D", str(cluster.data), "-U", cluster.user,
                "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8", "--no-sync",
            ),
            check=True, capture_output=True, text=True,
        )
        pwfile.unlink()
        options = f"-k {root} -h 127.0.0.1 -p {cluster.port} -c max_connections=200"
        if not durable:
            options += " -F"
        subprocess.run(
            cluster._as_server(
                str(pg_ctl), "-D", str(cluster.data), "-o", options,
                "-l", str(root / "server.log"), "-w", "-t", "60", "start",
            ),
            check=True, capture_output=True, text=True,
        )
        return cluster

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url("postgres"), password=self.password,
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
        return self.url(name)

    def stop(self) -> None:
        pg_ctl = _bin("pg_ctl")
        if pg_ctl is not None and self.data.exists():
            subprocess.run(
                self._as_server(str(pg_ctl), "-D", str(self.data), "-m", "immediate", "stop"),
                capture_output=True, check=False,
            )
        shutil.rmtree(self.root, ignore_errors=True)
