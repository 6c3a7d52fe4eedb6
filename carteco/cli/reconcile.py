"""`carteco reconcile sirene|rna FILE`: the registry against the official registers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from carteco.cli.common import cli_engine, cli_settings, console, out, progress
from carteco.geocoding.backends import make_backend
from carteco.importer import ImportFileError
from carteco.reconcile import SIRENE_KINDS, WALDEC, ReconcileReport, reconcile_file

reconcile_app = typer.Typer(
    help="Rapprocher le registre des répertoires officiels : SIRENE (stock INSEE) et RNA.",
    no_args_is_help=True,
)

_LABELS = {
    "closed": "fermées",
    "closed_date_set": "dates de fermeture ajoutées",
    "already_closed": "déjà fermées",
    "moved": "déménagements proposés",
    "address_added": "adresses manquantes proposées",
    "already_proposed": "déjà proposés",
    "same_place": "même lieu (adresse écrite autrement)",
    "geocode_failed": "propositions sans point (géocodage sans résultat)",
    "family_changed": "familles ESS changées",
    "category_changed": "catégories juridiques changées",
    "opened_on_set": "dates de création ajoutées",
    "active_there_closed_here": "actives au répertoire mais fermées ici (non modifiées)",
    "hidden_skipped": "masquées (non comparées)",
    "unchanged": "inchangées",
}

FileArg = Annotated[Path, typer.Argument(help="Fichier CSV (ou zip) tel que publié")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Tout calculer sans rien écrire")]
Strict = Annotated[
    bool, typer.Option("--strict", help="Une ligne illisible : ne rien écrire du tout")
]
Backend = Annotated[str, typer.Option(help="Géocodeur des nouvelles adresses : local ou ban")]
Url = Annotated[str | None, typer.Option(help="URL du service compatible BAN")]
Show = Annotated[int, typer.Option(help="Lignes de détail affichées")]


def print_reconcile(report: ReconcileReport, show: int = 30) -> None:
    """Print a reconciliation summary, its first changes and its first row errors."""
    verb = {"dry_run": "simulation (rien n'est écrit)", "rejected": "REFUSÉ",
            "succeeded": "terminé"}.get(report.status, report.status)  # fmt: skip
    out.print(
        f"{report.file} ({report.kind}, {report.encoding}) : {verb}\n"
        f"  lignes lues {report.rows_read} · lignes du registre {report.matched_rows} · "
        f"rejetées {report.errors_total}",
        markup=False,
    )
    for key, label in _LABELS.items():
        if report.counts.get(key):
            out.print(f"  {label} : {report.counts[key]}", markup=False)
    if report.changes:
        table = Table("structure", "ligne", "action", "détail")
        for c in report.changes[:show]:
            detail = {k: v for k, v in c.items() if k not in ("structure_id", "row", "action")}
            text = ", ".join(f"{k}={v}" for k, v in detail.items() if v not in (None, ""))
            table.add_row(str(c["structure_id"]), str(c["row"]), c["action"], text)
        out.print(table)
    for e in report.errors[:show]:
        console.print("  " + e.message(report.file), highlight=False, markup=False)
    if report.errors_total > show:
        console.print(f"  … et {report.errors_total - show} autres erreurs")
    if report.message:
        console.print("  " + report.message, markup=False)


def _reconcile(
    path: Path,
    kinds: tuple[str, ...],
    dry_run: bool,
    strict: bool,
    backend: str,
    url: str | None,
    show: int,
) -> None:
    settings = cli_settings()
    engine = cli_engine(settings)
    try:
        geocoder = make_backend(backend, engine, url)
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    try:
        with progress(f"{path.name} (Mio)") as advance:
            report = reconcile_file(
                engine, path, kinds, geocoder, dry_run=dry_run, strict=strict,
                # In MiB read: the bar of a 8 GB stock stays readable.
                progress=lambda done, total: advance(
                    done >> 20, None if total is None else total >> 20
                ),
            )  # fmt: skip
    except ImportFileError as exc:
        console.print(f"[red]Rapprochement refusé :[/red] {exc}", highlight=False)
        raise typer.Exit(1) from exc
    print_reconcile(report, show)
    if report.status == "rejected":
        raise typer.Exit(1)


@reconcile_app.command("sirene")
def reconcile_sirene(
    path: FileArg,
    dry_run: DryRun = False,
    strict: Strict = False,
    backend: Backend = "local",
    url: Url = None,
    show: Show = 30,
) -> None:
    """SIRENE stock (StockEtablissement or StockUniteLegale): closures, moves, ESS families.

    Closed establishments (état F) and ceased legal units (C) are closed at their date; a new
    address becomes a proposal for review, with its re-geocoded point; the legal category and
    the ESS flag set the family.
    """
    _reconcile(path, SIRENE_KINDS, dry_run, strict, backend, url, show)


@reconcile_app.command("rna")
def reconcile_rna(
    path: FileArg,
    dry_run: DryRun = False,
    strict: Strict = False,
    backend: Backend = "local",
    url: Url = None,
    show: Show = 30,
) -> None:
    """RNA waldec export: dissolved associations closed, moves proposed for review."""
    _reconcile(path, (WALDEC.kind,), dry_run, strict, backend, url, show)
