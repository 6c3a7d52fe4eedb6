"""The `carteco` command line: database, reference data, imports, demo and service.

One module per command group; `common` holds what they share (consoles, settings, engine,
progress display). This module only assembles them, in the order `carteco --help` lists them.
The command line is an outer layer, like `api`: it may import `tiles` and `geodata`, and
nothing imports it (tests/test_architecture.py).
"""

from __future__ import annotations

import sys

import typer

from carteco.cli.common import console
from carteco.cli.db import db_app
from carteco.cli.diagnostic import diagnostic_app
from carteco.cli.export import export_cmd
from carteco.cli.geocode import geocode_cmd, geocode_csv_cmd, review_cmd
from carteco.cli.geodata import geodata_app
from carteco.cli.imports import import_cmd, sectors_list
from carteco.cli.land import land_app
from carteco.cli.observatoire import coverage_cmd, panorama_cmd, population_app
from carteco.cli.reconcile import reconcile_app
from carteco.cli.service import demo, serve
from carteco.cli.tiles import tiles_app
from carteco.cli.tokens import token_app
from carteco.db import DatabaseError

app = typer.Typer(
    help="Carteco : registre et carte des structures de l'ESS.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(db_app, name="db")
app.add_typer(geodata_app, name="geodata")
app.command("sectors")(sectors_list)
app.command("import")(import_cmd)
app.add_typer(reconcile_app, name="reconcile")
app.command("serve")(serve)
app.command("demo")(demo)
app.command("panorama")(panorama_cmd)
app.command("coverage")(coverage_cmd)
app.add_typer(population_app, name="population")
app.command("geocode")(geocode_cmd)
app.command("geocode-csv")(geocode_csv_cmd)
app.command("review")(review_cmd)
app.add_typer(land_app, name="land")
app.add_typer(diagnostic_app, name="diagnostic")
app.command("export")(export_cmd)
app.add_typer(token_app, name="token")
app.add_typer(tiles_app, name="tiles")


def main() -> None:
    """Entry point of the `carteco` console script."""
    try:
        app()
    except DatabaseError as exc:
        console.print(f"[red]{exc}[/red]")
        sys.exit(2)
