"""A throwaway PostgreSQL server for the tests: ``initdb`` and ``pg_ctl`` in a temporary folder.

One server per test session (per xdist worker), on a free 127.0.0.1 port, started as the
``postgres`` user when the tests run as root (the server refuses root), and stopped at the
end. Each test gets a fresh empty history: a database (``pg_url``), or a schema (``pg_schema_url``).
Nothing depends on a system service. Without PostgreSQL's programs, its tests are skipped.
"""
from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.prerequisites import unavailable

PASSWORD_USER, PASSWORD = "fhv_secret", "right-horse-battery"  # a role that must give its password


def postgres_bin() -> Path | None:
    """The folder of initdb and pg_ctl (Debian's /usr/lib/postgresql/N/bin, newest first), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]), reverse=True)
    if found:
        return Path(found[0]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


class PgServer:
    """One PostgreSQL cluster in a temporary folder; ``url()`` connects to it as the superuser."""

    def __init__(self, bin_dir: Path, *, host: str = "127.0.0.1", port: int | None = None,
                 clients: str = "127.0.0.1/32"):
        self.bin, self.host, self.port, self.clients = bin_dir, host, port or free_port(host), clients
        self.as_postgres = os.geteuid() == 0
        # The postgres user must reach the folder: under /tmp itself, whatever TMPDIR says, when root.
        self.folder = Path(tempfile.mkdtemp(prefix="fhv-pg-", dir="/tmp" if self.as_postgres else None))
        self.data, self.log = self.folder / "data", self.folder / "server.log"
        self.superuser = "postgres" if self.as_postgres else pwd.getpwuid(os.geteuid()).pw_name
        self._names = itertools.count(1)
        self._shared = False

    def _run(self, *argv: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self.as_postgres else []
        done = subprocess.run([*prefix, *argv], capture_output=True, text=True, timeout=120)
        if done.returncode:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(argv[:2])} failed: {done.stderr or done.stdout}{log}")

    def start(self) -> "PgServer":
        (self.folder / OWNER).write_text(str(os.getpid()))  # a later session stops it if this process dies
        if self.as_postgres:
            shutil.chown(self.folder, "postgres", "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", self.superuser, "--auth=trust",
                  "--no-sync", "-E", "UTF8", "--locale=C")
        (self.data / "pg_hba.conf").write_text(
            "local all all trust\n"
            f"host all {PASSWORD_USER} {self.clients} scram-sha-256\n"
            f"host all all {self.clients} trust\n")
        self.resume()
        self.admin(f"CREATE ROLE {PASSWORD_USER} LOGIN PASSWORD '{PASSWORD}'")
        return self

    def resume(self) -> None:
        """Start the server (again, after ``pause``) on its port, with its data."""
        options = (f"-c listen_addresses={self.host} -c port={self.port} -c unix_socket_directories={self.folder} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 "
                   "-c shared_buffers=32MB")
        self._run(str(self.bin / "pg_ctl"), "start", "-w", "-t", "60", "-D", str(self.data), "-l", str(self.log),
                  "-o", options)

    def pause(self) -> None:
        """Stop the server, keeping its data: an outage its clients must ride out (``resume`` ends it)."""
        self._run(str(self.bin / "pg_ctl"), "stop", "-D", str(self.data), "-m", "fast", "-w")

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run(str(self.bin / "pg_ctl"), "stop", "-D", str(self.data), "-m", "immediate", "-w")
        shutil.rmtree(self.folder, ignore_errors=True)

    def url(self, dbname: str = "postgres", *, user: str | None = None, password: str | None = None,
            port: int | None = None) -> str:
        secret = f":{password}" if password else ""
        return f"postgresql://{user or self.superuser}{secret}@{self.host}:{port or self.port}/{dbname}"

    def admin(self, *statements: str) -> None:
        """Run statements as the superuser, each in its own transaction (CREATE DATABASE needs that)."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)

    def fresh_database(self, prefix: str = "t") -> str:
        """A new, empty database; returns its URL (a tenth of a second: a copy of template1)."""
        name = f"{prefix}{os.getpid()}_{next(self._names)}"
        self.admin(f"CREATE DATABASE {name}")
        return self.url(name)

    def fresh_schema(self, prefix: str = "s") -> str:
        """A new, empty schema of one shared database, named by the URL's search_path: milliseconds, for
        the store's contract tests. (Advisory locks are per database: use fresh_database where they matter.)"""
        name = f"{prefix}{os.getpid()}_{next(self._names)}"
        if not self._shared:
            self.admin("CREATE DATABASE histories")
            self._shared = True
        self.admin_in("histories", f"CREATE SCHEMA {name}")
        return f"{self.url('histories')}?options=-csearch_path%3D{name}"

    def admin_in(self, dbname: str, *statements: str) -> None:
        import psycopg

        with psycopg.connect(self.url(dbname), autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)


OWNER = "owner.pid"


def stop_orphans(bin_dir: Path) -> list[Path]:
    """Stop the servers of test sessions that were killed before they could stop them (their owner
    process is gone); the folders of live sessions, and of servers being made, are left alone."""
    stopped = []
    for owner in Path("/tmp").glob(f"fhv-pg-*/{OWNER}"):
        try:
            os.kill(int(owner.read_text()), 0)
            continue  # its session still runs
        except ProcessLookupError:
            pass
        except (OSError, ValueError):
            continue
        server = PgServer.__new__(PgServer)
        server.bin, server.folder, server.data = bin_dir, owner.parent, owner.parent / "data"
        server.as_postgres, server.log = os.geteuid() == 0, owner.parent / "server.log"
        server.stop()
        stopped.append(owner.parent)
    return stopped


@pytest.fixture(scope="session")
def pg_server():
    """The session's PostgreSQL server (skipped, with the reason, where PostgreSQL is not installed;
    a failure under FHV_TESTS_STRICT=1, as in CI)."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        unavailable("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): "
                    "apt-get install postgresql, as test.sh does when run as root.")
    try:
        import psycopg  # noqa: F401  (only whether it is there)
        del psycopg
    except ImportError:
        unavailable("psycopg is not installed: pip install -r requirements.txt.")
    stop_orphans(bin_dir)
    server = PgServer(bin_dir)
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    yield server
    server.stop()


@pytest.fixture
def pg_url(pg_server) -> str:
    """A fresh empty PostgreSQL database for one test."""
    return pg_server.fresh_database()


@pytest.fixture
def pg_schema_url(pg_server) -> str:
    """A fresh empty schema for one test (quicker than a database; shares the database's advisory locks)."""
    return pg_server.fresh_schema()
