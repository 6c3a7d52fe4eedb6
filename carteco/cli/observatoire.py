"""`carteco panorama`, `carteco coverage`, `carteco population`: the Observatoire's figures."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from carteco.cli.common import cli_engine, cli_settings, console, out, progress
from carteco.diagnostics.pdf import PdfError, html_to_pdf
from carteco.errors import CartecoError
from carteco.importer.errors import ImportFileError
from carteco.observatoire.coverage import (
    DEFAULT_RADII_KM,
    coverage,
    public,
    white_zones_geojson,
)
from carteco.observatoire.grid import GridError, load_grid
from carteco.observatoire.panorama import panorama
from carteco.observatoire.render import coverage_csv, panorama_csv, panorama_html
from carteco.stats import LEVEL_ALIASES

DEFAULT_RADII = ",".join(f"{km:g}" for km in DEFAULT_RADII_KM)
population_app = typer.Typer(
    help="Population fine (carreaux INSEE Filosofi 200 m) pour la couverture.",
    no_args_is_help=True,
)


def _write(text: str, dest: Path | None) -> None:
    if dest is None:
        out.print(text, end="", highlight=False, markup=False)
    else:
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text, encoding="utf-8")
        console.print(f"Écrit : {dest}")


def _level(level: str) -> str:
    lv = LEVEL_ALIASES.get(level)
    if lv is None:
        console.print(f"[red]Niveau de territoire inconnu :[/red] {level}")
        raise typer.Exit(2)
    return lv


def panorama_cmd(
    level: Annotated[str, typer.Argument(help="Niveau : commune, ept, epci, departement, region")],
    code: Annotated[str, typer.Argument(help="Code officiel (INSEE, SIREN)")],
    fmt: Annotated[
        str, typer.Option("--format", help="json, csv, html ou pdf (Chromium sans écran)")
    ] = "json",
    dest: Annotated[Path | None, typer.Option("--out", help="Fichier de sortie")] = None,
) -> None:
    """Panorama of a territory: families, sectors, employees (ranges), creations, comparisons."""
    if fmt not in ("json", "csv", "html", "pdf"):
        console.print(f"[red]Format inconnu :[/red] {fmt} (json, csv, html, pdf)")
        raise typer.Exit(2)
    if fmt == "pdf" and dest is None:
        console.print("[red]--out FICHIER.pdf est obligatoire pour le PDF[/red]")
        raise typer.Exit(2)
    settings = cli_settings()
    lv = _level(level)
    with cli_engine(settings).connect() as conn:
        doc = panorama(conn, lv, code)
    if doc is None:
        console.print(f"[red]Territoire inconnu :[/red] {level} {code}")
        raise typer.Exit(2)
    if fmt == "json":
        _write(json.dumps(doc, ensure_ascii=False, indent=1, default=str) + "\n", dest)
    elif fmt == "csv":
        _write(panorama_csv(doc), dest)
    elif fmt == "html":
        _write(panorama_html(doc), dest)
    else:
        assert dest is not None
        with tempfile.TemporaryDirectory(prefix="carteco-panorama-") as tmp:
            page = Path(tmp) / "panorama.html"
            page.write_text(panorama_html(doc), encoding="utf-8")
            try:
                with console.status("Impression du PDF (Chromium)…"):
                    html_to_pdf(page, dest, settings.chromium)
            except PdfError as exc:
                console.print(f"[red]PDF :[/red] {exc}")
                raise typer.Exit(1) from exc
        console.print(f"Écrit : {dest}")


def coverage_cmd(
    sector: Annotated[
        list[str],
        typer.Option("--sector", help="Secteur (répétable ; une filière couvre ses activités)"),
    ],
    territoire: Annotated[str, typer.Option(help="niveau:code, ex. departement:93")],
    radii: Annotated[
        str, typer.Option(help="Rayons en km, séparés par des virgules")
    ] = DEFAULT_RADII,
    fmt: Annotated[
        str, typer.Option("--format", help="json, csv ou geojson (zones blanches)")
    ] = "json",
    dest: Annotated[Path | None, typer.Option("--out", help="Fichier de sortie")] = None,
) -> None:
    """Distance to the nearest open structure of the sectors; population within each radius."""
    level, sep, code = territoire.partition(":")
    if not sep or not code:
        console.print("[red]--territoire niveau:code attendu[/red] (ex. departement:93)")
        raise typer.Exit(2)
    try:
        radii_km = [float(r) for r in radii.split(",") if r.strip()]
    except ValueError:
        console.print(f"[red]Rayons invalides :[/red] {radii}")
        raise typer.Exit(2) from None
    if fmt not in ("json", "csv", "geojson"):
        console.print(f"[red]Format inconnu :[/red] {fmt} (json, csv, geojson)")
        raise typer.Exit(2)
    settings = cli_settings()
    lv = _level(level)
    steps = ["Unités de population", "Plus proche structure de chaque unité", "Population à portée"]
    with cli_engine(settings).connect() as conn, progress("Couverture") as advance:

        def say(msg: str) -> None:
            advance(steps.index(msg) if msg in steps else 0, len(steps), description=msg)

        try:
            result = coverage(
                conn, lv, code, sector, radii_km, with_geometry=fmt == "geojson", progress=say
            )
        except CartecoError as exc:
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(2) from exc
        advance(len(steps), len(steps))
    if result is None:
        console.print(f"[red]Territoire inconnu :[/red] {territoire}")
        raise typer.Exit(2)
    if fmt == "csv":
        _write(coverage_csv(result), dest)
    elif fmt == "geojson":
        _write(json.dumps(white_zones_geojson(result), ensure_ascii=False) + "\n", dest)
    else:
        _write(json.dumps(public(result), ensure_ascii=False, indent=1, default=str) + "\n", dest)


@population_app.command("load-grid")
def population_load_grid(
    file: Annotated[Path, typer.Argument(help="CSV au format INSEE Filosofi (idcar_200m, ind)")],
    source: Annotated[
        str | None, typer.Option(help="Nom de la source (défaut : le fichier)")
    ] = None,
) -> None:
    """Load population squares (replaces those of the same source), one transaction."""
    engine = cli_engine(cli_settings())
    try:
        with progress(f"Carreaux de {file.name}", counter="carreaux") as advance:
            n = load_grid(engine, file, source, progress=lambda done: advance(done))
    except GridError as exc:
        for err in exc.row_errors[:50]:
            console.print(err.message(file.name), highlight=False)
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    except (ImportFileError, OSError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    console.print(f"{n} carreaux chargés.")
