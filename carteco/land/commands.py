"""CLI sub-apps `carteco land …` (land layer imports) and `carteco diagnostic …` (reports)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from carteco.importer import ImportFileError

land_app = typer.Typer(
    help="Couches foncières : DVF, friches, locaux vacants et foncier public, besoins, QPV.",
    no_args_is_help=True,
)
diagnostic_app = typer.Typer(help="Diagnostics territoriaux.", no_args_is_help=True)
_DEP = re.compile(r"^(\d{2}|2[AB]|97\d)$")


@land_app.command("import")
def land_import(
    kind: Annotated[
        str, typer.Argument(help="dvf, friches (CSV CNIG ou GeoJSON), sites, besoins ou qpv")
    ],
    path: Annotated[Path, typer.Argument(help="Fichier CSV, XLSX ou GeoJSON")],
    source: Annotated[
        str | None, typer.Option(help="Nom de la source (défaut : type:nom du fichier)")
    ] = None,
    description: Annotated[
        str | None, typer.Option(help="Ce que couvre la couche (affiché dans les rapports)")
    ] = None,
    vintage: Annotated[str | None, typer.Option(help="Millésime (ex. 2015 pour les QPV)")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Valider sans écrire")] = False,
    skip_invalid: Annotated[
        bool, typer.Option("--skip-invalid", help="Écrire les lignes valides, rapporter les autres")
    ] = False,
) -> None:
    """Import one land layer file as one transaction (re-importing it changes nothing)."""
    from carteco.cli import _engine, _settings, console, print_report
    from carteco.land import KINDS, run_land_import

    if kind not in KINDS:
        console.print(f"[red]Type inconnu :[/red] {kind} (attendu : {', '.join(KINDS)})")
        raise typer.Exit(2)
    engine = _engine(_settings())
    try:
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as bar:
            task = bar.add_task(f"{kind} · {path.name}", total=None)
            report = run_land_import(
                engine,
                kind,
                path,
                source=source,
                description=description,
                vintage=vintage,
                dry_run=dry_run,
                skip_invalid=skip_invalid,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
    except ImportFileError as exc:
        console.print(f"[red]Import refusé :[/red] {exc}", highlight=False)
        raise typer.Exit(1) from exc
    print_report(report)
    if report.status == "rejected":
        raise typer.Exit(1)


@diagnostic_app.command("foncier")
def diagnostic_foncier(
    dep: Annotated[str, typer.Argument(help="Code du département (ex. 93, 31, 08, 2A)")],
    out: Annotated[Path, typer.Option("--out", help="Dossier de sortie")] = Path("diagnostic"),
    min_sales: Annotated[
        int, typer.Option(help="Ventes minimum derrière un prix médian", min=1)
    ] = 5,
) -> None:
    """Write rapport.html, indicateurs.json (+ schema) and GeoJSON layers for a département."""
    from carteco.cli import _engine, _settings, console
    from carteco.cli import out as stdout
    from carteco.diagnostics.engine import Options, departement_info
    from carteco.diagnostics.report import write_outputs

    dep = dep.strip().upper()
    if not _DEP.match(dep):
        console.print(f"[red]Code de département invalide :[/red] {dep}")
        raise typer.Exit(2)
    engine = _engine(_settings())
    with engine.connect() as conn:
        if departement_info(conn, dep) is None:
            console.print(f"[red]Département inconnu :[/red] {dep}")
            raise typer.Exit(2)
        with console.status(f"Diagnostic foncier du {dep}…") as status:

            def say(msg: str) -> None:
                console.print(f"  · {msg}", highlight=False)
                status.update(f"Diagnostic foncier du {dep} : {msg}…")

            paths = write_outputs(conn, dep, out, Options(min_sales=min_sales), progress=say)
    for p in paths:
        stdout.print(str(p), highlight=False)
    console.print(f"Rapport : {out / 'rapport.html'}")
