"""`carteco db …`: migrations, backups and the embedded cluster."""

from __future__ import annotations

from pathlib import Path

import typer

from carteco import backup, db
from carteco.cli.common import cli_settings, console, out
from carteco.sectors import sync_sectors

db_app = typer.Typer(help="Base de données : migrations, grappe embarquée.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(revision: str = "heads") -> None:
    """Create or migrate the schema (Alembic) and load the sector taxonomy."""
    settings = cli_settings()
    url = db.resolve_url(settings)
    db.upgrade(url, revision)
    engine = db.make_engine(settings, url)
    with engine.begin() as conn:
        db.check_postgis(conn)
        n = sync_sectors(conn)
    console.print(f"Schéma à jour ; {n} secteurs chargés.")


@db_app.command("downgrade")
def db_downgrade(revision: str = "base") -> None:
    """Migrate the schema down (to `base` by default: drops every table)."""
    db.downgrade(db.resolve_url(cli_settings()), revision)
    console.print(f"Schéma ramené à {revision}.")


@db_app.command("url")
def db_url() -> None:
    """Print the database URL in use (starting the embedded cluster if needed)."""
    out.print(db.resolve_url(cli_settings()))


@db_app.command("start")
def db_start() -> None:
    """Start the embedded cluster (no-op when CARTECO_DATABASE_URL is set)."""
    out.print(db.resolve_url(cli_settings()))


@db_app.command("backup")
def db_backup(out: Path) -> None:
    """Dump the database (pg_dump custom format) to OUT."""
    size = backup.dump(db.resolve_url(cli_settings()), out)
    console.print(f"Sauvegarde écrite : {out} ({size} octets).")


@db_app.command("restore")
def db_restore(dump_file: Path) -> None:
    """Restore a dump made by `carteco db backup` into the (empty) configured database."""
    backup.restore(db.resolve_url(cli_settings()), dump_file)
    console.print(f"Base restaurée depuis {dump_file}.")


@db_app.command("stop")
def db_stop() -> None:
    """Stop the embedded cluster."""
    db.embedded_cluster(cli_settings()).stop()
    console.print("Grappe embarquée arrêtée.")
