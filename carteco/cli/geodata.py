"""`carteco geodata …`: the shipped reference layers and the geocoder's address files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from carteco.cli.common import cli_engine, cli_settings, console, out, progress
from carteco.geocoding.reference import AddressFileError, load_addresses
from geodata.loader import load_all

geodata_app = typer.Typer(help="Données de référence livrées.", no_args_is_help=True)


@geodata_app.command("load")
def geodata_load(force: bool = False) -> None:
    """Load the shipped boundaries, stations and COG tables (a second run changes nothing)."""
    engine = cli_engine(cli_settings())
    with engine.begin() as conn:
        with console.status("Chargement des couches de référence…") as status:
            results = load_all(conn, force=force, progress=lambda n: status.update(f"{n}…"))
    table = Table("couche", "action", "entités")
    for r in results:
        table.add_row(r.layer, "chargée" if r.action == "loaded" else "inchangée", str(r.features))
    out.print(table)


@geodata_app.command("load-addresses")
def geodata_load_addresses(
    paths: Annotated[list[Path], typer.Argument(help="adresses-XX.csv[.gz] (BAN) ou BAL 1.3")],
) -> None:
    """Load BAN / BAL address files into the local geocoder (a second run changes nothing)."""
    engine = cli_engine(cli_settings())
    try:
        with engine.begin() as conn, progress("adresses", counter="adresses") as advance:
            results = load_addresses(conn, paths, lambda name, n: advance(n, description=name))
    except (AddressFileError, FileNotFoundError) as exc:
        console.print(f"[red]Chargement refusé :[/red] {exc}", highlight=False)
        raise typer.Exit(1) from exc
    table = Table("fichier", "format", "adresses", "communes", "voies", "ignorées")
    for r in results:
        table.add_row(r.file, r.format.upper(), str(r.addresses), str(r.communes),
                      str(r.streets), str(r.skipped))  # fmt: skip
    out.print(table)
