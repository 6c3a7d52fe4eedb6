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
from tiles.export import DEFAULT_LAYERS, export_pmtiles, territory_bounds
from tiles.filters import TerritoryParamError, parse_territory, tile_filter

tiles_app = typer.Typer(help="Tuiles vectorielles : export PMTiles, cache.", no_args_is_help=True)


@tiles_app.command("export")
def export_cmd(
    out: Annotated[Path, typer.Argument(help="Fichier .pmtiles à écrire")],
    minzoom: Annotated[int, typer.Option("--minzoom", min=0, max=16)] = 0,
    maxzoom: Annotated[int, typer.Option("--maxzoom", min=0, max=16)] = 10,
    layers: Annotated[str, typer.Option(help="Couches, séparées par des virgules")] = ",".join(
        DEFAULT_LAYERS
    ),
    secteur: Annotated[str | None, typer.Option(help="Secteur(s), ex. alimentation")] = None,
    famille: Annotated[str | None, typer.Option(help="Famille(s) de l'ESS")] = None,
    territoire: Annotated[
        str | None, typer.Option(help="Territoire niveau:code, ex. departement:93")
    ] = None,
    filter_: Annotated[str | None, typer.Option("--filter", help="Filtre CQL2 (texte)")] = None,
    bbox: Annotated[
        str | None,
        typer.Option(help="Emprise ouest,sud,est,nord (degrés) ; défaut : celle des données"),
    ] = None,
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
    box: tuple[float, float, float, float] | None = None
    if bbox:
        try:
            w, s, e, n = (float(v) for v in bbox.split(","))
        except ValueError as exc:
            console.print(f"[red]--bbox refusé :[/red] {bbox!r} (ouest,sud,est,nord)")
            raise typer.Exit(1) from exc
        box = (w, s, e, n)
    engine = cli_engine(cli_settings())
    with progress(out.name) as advance:
        try:
            if box is None and territoire:
                # A territory's archive covers that territory, not the whole registry.
                level, code = parse_territory(territoire)
                box = territory_bounds(engine, level, code)
            report = export_pmtiles(
                engine,
                out,
                minzoom,
                maxzoom,
                [x.strip() for x in layers.split(",") if x.strip()],
                filt,
                progress=advance,
                bbox=box,
            )
        except ValueError as exc:
            console.print(f"[red]Export impossible :[/red] {exc}", highlight=False)
            raise typer.Exit(1) from exc
    stdout.print(
        f"{report.path} : {report.tiles} tuiles (zooms {report.minzoom}–{report.maxzoom}, "
        f"{report.empty_skipped} vides omises), {report.bytes / 1e6:.1f} Mo, "
        f"emprise {','.join(f'{v:.4f}' for v in report.bounds)}, {report.seconds:.1f} s."
    )
