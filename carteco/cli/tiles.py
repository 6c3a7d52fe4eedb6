"""`carteco tiles …`: vector tile commands (PMTiles export).

The commands live with the rest of the command line rather than in the `tiles` package: `tiles`
is a library shared with the API and stays free of Typer, Rich and the CLI's engine and consoles.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from carteco.cli.common import cli_engine, cli_settings, console, progress
from carteco.cli.common import out as stdout
from carteco.filters import FilterError
from tiles.export import export_pmtiles
from tiles.filters import TerritoryParamError, tile_filter

tiles_app = typer.Typer(help="Tuiles vectorielles : export PMTiles, cache.", no_args_is_help=True)


@tiles_app.command("export")
def export_cmd(
    out: Annotated[Path, typer.Argument(help="Fichier .pmtiles à écrire")],
    minzoom: Annotated[int, typer.Option("--minzoom", min=0, max=16)] = 0,
    maxzoom: Annotated[int, typer.Option("--maxzoom", min=0, max=16)] = 10,
    layers: Annotated[
        str, typer.Option(help="Couches, séparées par des virgules")
    ] = "structures,departements,communes",
    secteur: Annotated[str | None, typer.Option(help="Secteur(s), ex. alimentation")] = None,
    famille: Annotated[str | None, typer.Option(help="Famille(s) de l'ESS")] = None,
    territoire: Annotated[
        str | None, typer.Option(help="Territoire niveau:code, ex. departement:93")
    ] = None,
    filter_: Annotated[str | None, typer.Option("--filter", help="Filtre CQL2 (texte)")] = None,
) -> None:
    """Write a PMTiles v3 archive of the tiled layers (same tiles as the live endpoint)."""
    params = {
        k: v
        for k, v in {
            "secteur": secteur,
            "famille": famille,
            "territoire": territoire,
            "filter": filter_,
        }.items()
        if v
    }
    try:
        filt = tile_filter(params)
    except (FilterError, TerritoryParamError) as exc:
        console.print(f"[red]Filtre refusé :[/red] {exc}", highlight=False)
        raise typer.Exit(1) from exc
    engine = cli_engine(cli_settings())
    with progress(out.name) as advance:
        try:
            report = export_pmtiles(
                engine,
                out,
                minzoom,
                maxzoom,
                [x.strip() for x in layers.split(",") if x.strip()],
                filt,
                progress=advance,
            )
        except ValueError as exc:
            console.print(f"[red]Export impossible :[/red] {exc}", highlight=False)
            raise typer.Exit(1) from exc
    stdout.print(
        f"{report.path} : {report.tiles} tuiles (zooms {report.minzoom}–{report.maxzoom}, "
        f"{report.empty_skipped} vides omises), {report.bytes / 1e6:.1f} Mo."
    )
