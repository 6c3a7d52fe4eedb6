"""Backups with the PostgreSQL tools: pg_dump (custom format) and pg_restore."""

from __future__ import annotations

import subprocess
from pathlib import Path

from sqlalchemy.engine import make_url

from carteco.embedded import find_pg_bin
from carteco.errors import CartecoError


class BackupError(CartecoError, RuntimeError):
    """pg_dump or pg_restore failed."""

    kind = "internal"


def _libpq_args(url: str) -> tuple[list[str], dict[str, str]]:
    u = make_url(url)
    args = ["-h", u.host or "127.0.0.1", "-p", str(u.port or 5432), "-U", u.username or "postgres"]
    env = {"PGPASSWORD": u.password} if u.password else {}
    return args, env


def dump(url: str, out: Path) -> int:
    """Write a custom-format dump of the database to `out`; return its size in bytes."""
    args, env = _libpq_args(url)
    dbname = make_url(url).database or "carteco"
    res = subprocess.run(
        [str(find_pg_bin() / "pg_dump"), *args, "-Fc", "--no-owner", "-f", str(out), dbname],
        capture_output=True,
        text=True,
        env={**_base_env(), **env},
        check=False,
    )
    if res.returncode != 0:
        raise BackupError(f"pg_dump a échoué : {res.stderr.strip()}")
    return out.stat().st_size


def restore(url: str, dump_file: Path) -> None:
    """Restore a custom-format dump into the (empty) database at `url`."""
    args, env = _libpq_args(url)
    dbname = make_url(url).database or "carteco"
    res = subprocess.run(
        [
            str(find_pg_bin() / "pg_restore"),
            *args,
            "--no-owner",
            "--exit-on-error",
            "-d",
            dbname,
            str(dump_file),
        ],
        capture_output=True,
        text=True,
        env={**_base_env(), **env},
        check=False,
    )
    if res.returncode != 0:
        raise BackupError(f"pg_restore a échoué : {res.stderr.strip()}")


def _base_env() -> dict[str, str]:
    import os

    return dict(os.environ)
