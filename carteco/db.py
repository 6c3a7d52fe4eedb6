"""Database layer: engine creation, the embedded default, migrations and identifier quoting."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from carteco.embedded import EmbeddedCluster
from carteco.errors import CartecoError
from carteco.settings import Settings

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SQL_DIR = Path(__file__).parent / "sql"


class DatabaseError(CartecoError, RuntimeError):
    """The database is unreachable or not a PostGIS database Carteco can use."""

    kind = "internal"


def embedded_cluster(settings: Settings) -> EmbeddedCluster:
    """The embedded cluster described by the settings (not started)."""
    return EmbeddedCluster(
        root=settings.effective_data_dir() / "postgres",
        port=settings.embedded_port,
        bin_dir=settings.pg_bin_dir,
    )


def resolve_url(settings: Settings, start_embedded: bool = True) -> str:
    """The configured database URL, or the embedded cluster's (started if asked)."""
    if settings.database_url:
        return normalise_url(settings.database_url)
    cluster = embedded_cluster(settings)
    return cluster.start() if start_embedded else cluster.url


def normalise_url(url: str) -> str:
    """Force the psycopg 3 driver on plain postgresql:// URLs."""
    for prefix in ("postgresql://", "postgres://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(settings: Settings, url: str | None = None) -> Engine:
    """A pooled engine with Carteco's session settings (statement timeout, UTC, app name)."""
    url = url or resolve_url(settings)
    timeout = int(settings.statement_timeout_ms)
    connect_args: dict[str, Any] = {"application_name": "carteco", "connect_timeout": 5}
    if settings.pgbouncer:
        # Transaction pooling: a server connection serves many clients, so nothing may live in
        # the session — no prepared statements, no startup options; timeouts per transaction.
        connect_args["prepare_threshold"] = None
    else:
        # JIT off: PostGIS functions carry high cost estimates, so a plain tile query crosses
        # jit_above_cost and spends ~47 ms compiling for ~50 ms of execution (a z14 tile of
        # bench/tiles, EXPLAIN ANALYZE). Carteco's queries are short; none gains from JIT.
        connect_args["options"] = f"-c statement_timeout={timeout} -c TimeZone=UTC -c jit=off"
    engine = sa.create_engine(
        url,
        pool_size=settings.pool_size,
        max_overflow=settings.pool_max_overflow,
        pool_timeout=settings.pool_timeout_s,
        pool_pre_ping=True,
        connect_args=connect_args,
    )
    if settings.pgbouncer:

        @sa.event.listens_for(engine, "begin")
        def _per_transaction(conn: Connection) -> None:
            conn.exec_driver_sql(
                f"SET LOCAL statement_timeout = {timeout}; SET LOCAL TimeZone = 'UTC'; "
                "SET LOCAL jit = off"
            )

    return engine


def read_sql(name: str) -> str:
    """Text of a .sql file shipped in carteco/sql."""
    return (SQL_DIR / name).read_text(encoding="utf-8")


_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")


def quote_ident(name: str, allowed: Iterable[str]) -> str:
    """Quote an SQL identifier, refusing any name that is not in the allow-list."""
    allowed_set = set(allowed)
    if name not in allowed_set or not _IDENT.match(name):
        raise ValueError(f"identifier {name!r} is not allowed")
    return '"' + name + '"'


def check_postgis(conn: Connection) -> str:
    """PostGIS version of the connected database, or a clear error when it is missing."""
    try:
        return str(conn.execute(sa.text("SELECT postgis_lib_version()")).scalar_one())
    except sa.exc.DBAPIError as exc:
        raise DatabaseError(
            "PostGIS is not available in this database: install it "
            "(Debian: apt-get install -y postgresql-15-postgis-3) and run `carteco db upgrade`."
        ) from exc


def alembic_config(url: str):  # type: ignore[no-untyped-def]
    """An Alembic configuration pointing at the migrations shipped with the package."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "heads") -> None:
    """Migrate the database up to `revision` (all heads by default)."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    """Migrate the database down to `revision`."""
    from alembic import command

    command.downgrade(alembic_config(url), revision)


def current_revisions(conn: Connection) -> set[str]:
    """Alembic revisions the database is at (empty before the first migration)."""
    try:
        rows = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars()
        return set(rows)
    except sa.exc.ProgrammingError:
        conn.rollback()
        return set()


def head_revisions(url: str) -> set[str]:
    """Revisions of the newest migrations shipped with this version."""
    from alembic.script import ScriptDirectory

    return set(ScriptDirectory.from_config(alembic_config(url)).get_heads())


def execute_rows(
    conn: Connection, stmt: sa.TextClause, rows: Sequence[Mapping[str, Any]], chunk: int = 5000
) -> None:
    """Run `stmt` once per chunk of rows, passed as one JSON array bound to `:rows`.

    `stmt` reads them with `jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(col type, …)`: one round
    trip and one plan per chunk, where executemany pays a round trip per row.
    """
    import json

    for i in range(0, len(rows), chunk):
        blob = json.dumps(rows[i : i + chunk], ensure_ascii=False, default=str)
        conn.execute(stmt, {"rows": blob})
