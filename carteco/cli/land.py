"""`carteco land …`: land layer imports (DVF, friches, sites, needs, QPV)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from carteco.cli.common import cli_engine, cli_settings, console, progress
from carteco.cli.imports import print_report
from carteco.errors import CartecoError
from carteco.land import KINDS, run_land_import

land_app = typer.Typer(
    help="Couches foncières : DVF, friches, locaux vacants et foncier public, besoins, QPV.",
    no_args_is_help=True,
)


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
    if kind not in KINDS:
        console.print(f"[red]Type inconnu :[/red] {kind} (attendu : {', '.join(KINDS)})")
        raise typer.Exit(2)
    engine = cli_engine(cli_settings())
    try:
        with progress(f"{kind} · {path.name}") as advance:
            report = run_land_import(
                engine,
                kind,
                path,
                source=source,
                description=description,
                vintage=vintage,
                dry_run=dry_run,
                skip_invalid=skip_invalid,
                progress=advance,
            )
    except CartecoError as exc:  # a file refused (ImportFileError), or its source busy
        console.print(f"[red]Import refusé :[/red] {exc}", highlight=False)
        raise typer.Exit(1) from exc
    print_report(report)
    if report.status == "rejected":
        raise typer.Exit(1)
