"""`carteco diagnostic …`: territorial diagnostics (land access) written to files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from carteco.cli.common import cli_engine, cli_settings, console
from carteco.cli.common import out as stdout
from carteco.diagnostics.options import Options
from carteco.diagnostics.pdf import PdfError, html_to_pdf
from carteco.territory_levels import DEPARTEMENT_CODE

diagnostic_app = typer.Typer(help="Diagnostics territoriaux.", no_args_is_help=True)
_DEP = DEPARTEMENT_CODE


@diagnostic_app.command("foncier")
def diagnostic_foncier(
    dep: Annotated[str, typer.Argument(help="Code du département (ex. 93, 31, 08, 2A)")],
    out: Annotated[Path, typer.Option("--out", help="Dossier de sortie")] = Path("diagnostic"),
    min_sales: Annotated[
        int, typer.Option(help="Ventes minimum derrière un prix médian", min=1)
    ] = 5,
    pdf: Annotated[
        bool, typer.Option("--pdf", help="Imprimer aussi rapport.pdf (Chromium sans écran)")
    ] = False,
) -> None:
    """Write rapport.html, indicateurs.json (+ schema) and GeoJSON layers for a département."""
    # Imported here: folium (with pandas) and pyproj take `import carteco.cli` from ~0.9 s to
    # ~1.7 s of CPU, a cost every other command would pay at start-up.
    from carteco.diagnostics.engine import departement_info  # why: start-up time (pyproj)
    from carteco.diagnostics.report import write_outputs  # why: start-up time (folium, pandas)

    dep = dep.strip().upper()
    if not _DEP.match(dep):
        console.print(f"[red]Code de département invalide :[/red] {dep}")
        raise typer.Exit(2)
    engine = cli_engine(cli_settings())
    with engine.connect() as conn:
        if departement_info(conn, dep) is None:
            console.print(f"[red]Département inconnu :[/red] {dep}")
            raise typer.Exit(2)
        with console.status(f"Diagnostic foncier du {dep}…") as status:

            def say(msg: str) -> None:
                console.print(f"  · {msg}", highlight=False)
                status.update(f"Diagnostic foncier du {dep} : {msg}…")

            paths = write_outputs(conn, dep, out, Options(min_sales=min_sales), progress=say)
    if pdf:
        settings = cli_settings()
        try:
            with console.status("Impression du PDF (Chromium)…"):
                paths.append(
                    html_to_pdf(out / "rapport.html", out / "rapport.pdf", settings.chromium)
                )
        except PdfError as exc:
            console.print(f"[red]PDF :[/red] {exc}")
            raise typer.Exit(1) from exc
    for p in paths:
        stdout.print(str(p), highlight=False)
    console.print(f"Rapport : {out / 'rapport.html'}")
