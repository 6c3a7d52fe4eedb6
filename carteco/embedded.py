"""The embedded default: a private PostgreSQL + PostGIS cluster that Carteco creates and runs.

No pip package ships PostGIS, so when no database URL is configured Carteco runs the system's
PostgreSQL binaries (``initdb`` + ``pg_ctl``) on a data folder of its own. It listens on a Unix
socket inside that folder and on 127.0.0.1 at ``embedded_port``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from carteco.errors import CartecoError

DATABASE = "carteco"
USER = "carteco"


class EmbeddedError(CartecoError, RuntimeError):
    """The embedded cluster could not be created, started or stopped."""

    kind = "internal"


def find_pg_bin(explicit: Path | None = None) -> Path:
    """Folder holding initdb and pg_ctl (newest PostgreSQL under /usr/lib/postgresql first)."""
    candidates: list[Path] = []
    if explicit:
        candidates.append(Path(explicit))
    root = Path("/usr/lib/postgresql")
    if root.is_dir():
        versions = sorted(
            (p for p in root.iterdir() if p.name.isdigit()), key=lambda p: int(p.name), reverse=True
        )
        candidates.extend(v / "bin" for v in versions)
    which = shutil.which("pg_ctl")
    if which:
        candidates.append(Path(which).resolve().parent)
    for c in candidates:
        if (c / "initdb").exists() and (c / "pg_ctl").exists():
            return c
    raise EmbeddedError(
        "PostgreSQL binaries (initdb, pg_ctl) not found: install PostgreSQL 15 and PostGIS 3 "
        "(Debian: apt-get install -y postgresql-15 postgresql-15-postgis-3) or set "
        "CARTECO_DATABASE_URL to an existing PostGIS database."
    )


@dataclass
class EmbeddedCluster:
    """A PostgreSQL cluster in ``datadir`` owned by the current user (or `postgres` for root)."""

    root: Path
    port: int = 54329
    bin_dir: Path | None = None

    @property
    def pgdata(self) -> Path:
        """The cluster's data folder."""
        return self.root / "pgdata"

    @property
    def socket_dir(self) -> Path:
        """Where the server puts its Unix socket."""
        return self.root / "run"

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the cluster's `carteco` database (over TCP loopback)."""
        return f"postgresql+psycopg://{USER}@127.0.0.1:{self.port}/{DATABASE}"

    def _run_as(self) -> str | None:
        return "postgres" if os.geteuid() == 0 else None

    def _cmd(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        bindir = find_pg_bin(self.bin_dir)
        full = [str(bindir / args[0]), *args[1:]]
        user = self._run_as()
        if user:
            full = ["runuser", "-u", user, "--", *full]
        return subprocess.run(full, capture_output=True, text=True, check=False)

    def _prepare_dirs(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        user = self._run_as()
        if user:
            pw = pwd.getpwnam(user)
            for p in (self.root, self.socket_dir):
                os.chown(p, pw.pw_uid, pw.pw_gid)
            if self.pgdata.exists():
                os.chown(self.pgdata, pw.pw_uid, pw.pw_gid)
            # The server user must be able to walk down to the data folder.
            for parent in self.root.parents:
                if str(parent) in ("/", ""):
                    break
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    os.chmod(parent, mode | 0o001)

    def initialised(self) -> bool:
        """True once initdb has run."""
        return (self.pgdata / "PG_VERSION").exists()

    def running(self) -> bool:
        """True when the server answers pg_ctl status."""
        if not self.initialised():
            return False
        return self._cmd(["pg_ctl", "status", "-D", str(self.pgdata)]).returncode == 0

    def init(self) -> None:
        """Create the cluster (initdb) if it does not exist yet."""
        self._prepare_dirs()
        if self.initialised():
            return
        res = self._cmd(
            [
                "initdb",
                "-D",
                str(self.pgdata),
                "-U",
                USER,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ]
        )
        if res.returncode != 0:
            raise EmbeddedError(f"initdb failed in {self.pgdata}:\n{res.stderr.strip()}")

    def start(self, create_database: bool = True) -> str:
        """Create if needed, start, ensure the `carteco` database; return its URL."""
        self.init()
        if not self.running():
            opts = (
                f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 "
                "-c fsync=on -c max_connections=200"
            )
            res = self._cmd(
                [
                    "pg_ctl",
                    "start",
                    "-w",
                    "-t",
                    "60",
                    "-D",
                    str(self.pgdata),
                    "-l",
                    str(self.root / "postgresql.log"),
                    "-o",
                    opts,
                ]
            )
            if res.returncode != 0:
                log = self.root / "postgresql.log"
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise EmbeddedError(
                    f"pg_ctl start failed (port {self.port}):\n{res.stderr.strip()}\n{tail}"
                )
        if create_database:
            self._ensure_database()
        return self.url

    def _ensure_database(self) -> None:
        import psycopg

        deadline = time.monotonic() + 15
        while True:
            try:
                with psycopg.connect(
                    host="127.0.0.1", port=self.port, user=USER, dbname="postgres", autocommit=True
                ) as conn:
                    exists = conn.execute(
                        "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)
                    ).fetchone()
                    if not exists:
                        conn.execute(f'CREATE DATABASE "{DATABASE}"')
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def make_replica(self, replica: EmbeddedCluster) -> str:
        """Create `replica` as a streaming standby of this running cluster; start it; its URL."""
        if not self.running():
            raise EmbeddedError("the primary must run before a replica can be cloned from it")
        replica._prepare_dirs()
        if not replica.initialised():
            res = self._cmd(
                [
                    "pg_basebackup",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-U",
                    USER,
                    "-D",
                    str(replica.pgdata),
                    "-R",  # write standby.signal + primary_conninfo: a streaming replica
                    "-X",
                    "stream",
                    "-c",
                    "fast",
                ]
            )
            if res.returncode != 0:
                raise EmbeddedError(f"pg_basebackup failed:\n{res.stderr.strip()}")
        replica.start(create_database=False)
        return replica.url

    def stop(self) -> None:
        """Stop the server (fast shutdown) if it runs."""
        if self.running():
            res = self._cmd(["pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.pgdata)])
            if res.returncode != 0:
                raise EmbeddedError(f"pg_ctl stop failed:\n{res.stderr.strip()}")
