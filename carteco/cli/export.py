"""`carteco export`: a collection to a file, with the features API's filters."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from carteco.cli.common import cli_engine, cli_settings, console
from carteco.collections import get_collection
from carteco.export import FORMATS, export_to_file
from carteco.features import Output, parse_properties
from carteco.filters import FilterError, compile_filter, parse_crs
from carteco.gogocarto import gogocarto_meta, gogocarto_stream
from carteco.history import AsOfError, cutoff, parse_as_of


def export_cmd(
    out: Annotated[Path, typer.Argument(help="Fichier à écrire.")],
    format: Annotated[
        str | None,
        typer.Option(
            "--format",
            "-f",
            help="geojson, csv, gpkg, fgb ou gogocarto (sinon l'extension).",
        ),
    ] = None,
    collection: Annotated[str, typer.Option(help="Collection à exporter.")] = "structures",
    sector: Annotated[str | None, typer.Option(help="Codes de secteur (liste).")] = None,
    family: Annotated[str | None, typer.Option(help="Familles de l'ESS (liste).")] = None,
    commune: Annotated[str | None, typer.Option(help="Codes INSEE (liste).")] = None,
    departement: Annotated[str | None, typer.Option(help="Départements (liste).")] = None,
    epci: Annotated[str | None, typer.Option(help="SIREN d'EPCI (liste).")] = None,
    ept: Annotated[str | None, typer.Option(help="Codes d'EPT (liste).")] = None,
    q: Annotated[str | None, typer.Option(help="Recherche plein texte.")] = None,
    bbox: Annotated[str | None, typer.Option(help="minx,miny,maxx,maxy (CRS84).")] = None,
    filter: Annotated[str | None, typer.Option("--filter", help="Filtre CQL2.")] = None,
    filter_lang: Annotated[str, typer.Option(help="cql2-text ou cql2-json.")] = "cql2-text",
    limit: Annotated[int | None, typer.Option(min=1, help="Nombre maximal d'objets.")] = None,
    crs: Annotated[
        str | None,
        typer.Option(help="CRS84 (défaut) ou EPSG:2154 (Lambert-93 ; pas en GeoJSON)."),
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="Le registre à la fin de ce jour (AAAA-MM-JJ)."),
    ] = None,
    properties: Annotated[
        str | None,
        typer.Option(help="Propriétés à garder (liste), l'identifiant et la géométrie en plus."),
    ] = None,
) -> None:
    """Export a collection with the API's filters (streamed GeoJSON/CSV, GPKG, FlatGeobuf)."""
    fmt = format or out.suffix.lstrip(".").lower()
    if fmt == "json":
        fmt = "geojson"
    if fmt not in (*FORMATS, "gogocarto"):
        console.print(f"[red]Format inconnu :[/red] {fmt!r} (geojson, csv, gpkg, fgb, gogocarto).")
        raise typer.Exit(2)
    coll = get_collection(collection)
    if coll is None:
        console.print(f"[red]Collection inconnue :[/red] {collection}.")
        raise typer.Exit(2)
    raw = {
        "sector": sector,
        "family": family,
        "commune": commune,
        "departement": departement,
        "epci": epci,
        "ept": ept,
        "q": q,
        "bbox": bbox,
        "filter": filter,
        "filter-lang": filter_lang if filter else None,
    }
    params = {k: v for k, v in raw.items() if v is not None}
    if not coll.simple_filters and any(k in params for k in ("sector", "family", "q")):
        console.print(f"[red]Filtres de structures inapplicables à {collection}.[/red]")
        raise typer.Exit(2)
    if fmt == "gogocarto" and not coll.history:
        console.print("[red]Le format gogocarto ne s'applique qu'aux structures.[/red]")
        raise typer.Exit(2)
    try:
        if as_of:
            coll = coll.at(cutoff(parse_as_of(as_of)))
        where, binds = compile_filter(coll, params)
        _, srid, _ = parse_crs(crs, "crs")
        shape = Output(srid=srid, properties=parse_properties(coll, properties))
    except (FilterError, AsOfError) as exc:
        console.print(f"[red]Paramètre invalide :[/red] {exc}")
        raise typer.Exit(2) from exc
    settings = cli_settings()
    engine = cli_engine(settings)
    if fmt == "gogocarto":
        meta = gogocarto_meta(settings)
        with out.open("wb") as f:
            for chunk in gogocarto_stream(engine, coll, where, binds, limit, meta=meta):
                f.write(chunk)
        console.print(f"Export gogocarto écrit : {out} ({out.stat().st_size} octets).")
        return
    try:
        export_to_file(
            engine,
            coll,
            where,
            binds,
            fmt,
            out,
            settings.data_licence,
            settings.data_attribution,
            limit,
            shape,
        )
    except ValueError as exc:  # a format that cannot carry this CRS (GeoJSON is CRS84)
        console.print(f"[red]{exc}.[/red]")
        raise typer.Exit(2) from exc
    console.print(f"Export {fmt} écrit : {out} ({out.stat().st_size} octets).")
