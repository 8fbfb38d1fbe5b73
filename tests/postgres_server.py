"""A real, throwaway PostgreSQL server for the tests, from the system's server binaries.

``initdb`` into a temporary folder, ``pg_ctl start`` on a private Unix socket folder and port (no
TCP listener), stopped and removed at the end of the session. PostgreSQL refuses to run as root,
so under root the server runs as the ``postgres`` system user that Debian's package creates.
Without the binaries the tests that need the server skip with a one-line reason.
"""
from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

INSTALL_HINT = "PostgreSQL server binaries (initdb, pg_ctl) not found; install Debian's postgresql package"
SUPERUSER = "harness"


def find_bindir() -> Path | None:
    """``$PG_BINDIR``, the folder of ``pg_ctl`` on PATH, or Debian's newest /usr/lib/postgresql/N/bin."""
    candidates = [os.environ.get("PG_BINDIR")]
    if shutil.which("pg_ctl"):
        candidates.append(str(Path(os.path.realpath(shutil.which("pg_ctl"))).parent))
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]),
                         reverse=True)
    for folder in filter(None, candidates):
        if all((Path(folder) / tool).exists() for tool in ("initdb", "pg_ctl", "postgres")):
            return Path(folder)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A running server; :meth:`database` makes a fresh database and gives its URL."""

    def __init__(self) -> None:
        self.bindir = find_bindir()
        if self.bindir is None:
            raise FileNotFoundError(INSTALL_HINT)
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            import pwd

            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise PermissionError("PostgreSQL cannot run as root and there is no postgres user") from None
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.root = Path(tempfile.mkdtemp(prefix="harness-pg-"))
        if self.as_user:
            shutil.chown(self.root, "postgres")
        self.data, self.port, self.n = self.root / "data", _free_port(), 0
        self._run("initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
                  "--no-sync")
        self.resume()

    def resume(self) -> None:
        """Start the server (again, after :meth:`pause`), on the same port and data."""
        self._run("pg_ctl", "-D", str(self.data), "-w", "-t", "60", "-l", str(self.root / "server.log"),
                  "-o", f"-k {self.root} -p {self.port} -c listen_addresses='' -c fsync=off", "start")

    def pause(self) -> None:
        """Stop the server as a crash would (every connection dropped), keeping its data."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run([*self.as_user, str(self.bindir / tool), *args], capture_output=True,
                              text=True, timeout=120)
        if done.returncode:
            raise RuntimeError(f"{tool} failed: {(done.stderr or done.stdout).strip()[-500:]}")

    def url(self, database: str = "postgres", user: str = SUPERUSER) -> str:
        return f"postgresql://{user}@/{database}?host={self.root}&port={self.port}"

    def sql(self, statement: str, database: str = "postgres", user: str = SUPERUSER) -> list:
        import psycopg

        with psycopg.connect(self.url(database, user), autocommit=True) as conn:
            cur = conn.execute(statement)
            return cur.fetchall() if cur.description else []

    def database(self) -> str:
        """A new empty database's URL."""
        self.n += 1
        name = f"store_{self.n}"
        self.sql(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
