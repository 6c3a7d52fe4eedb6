"""`carteco import` and `carteco sectors`: structure lists into the registry."""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import sqlalchemy as sa
import typer
from rich.table import Table

from carteco.cli.common import cli_engine, cli_settings, console, out, progress
from carteco.cli.geocode import run_geocode
from carteco.errors import CartecoError
from carteco.importer import ImportReport, ReadLimits, run_import
from carteco.importer.mapping import Mapping
from carteco.sectors import load_taxonomy


class MissingAction(StrEnum):
    """`--missing`: the choices of carteco.importer.missing.MISSING_ACTIONS."""

    flag = "flag"
    close = "close"
    keep = "keep"


def sectors_list() -> None:
    """List the sector taxonomy (codes to use in mappings and filters)."""
    tax = load_taxonomy()
    table = Table("code", "libellé", "type", title=f"Taxonomie {tax.version}")
    for n in tax.nodes:
        table.add_row(("  " if n.parent else "") + n.code, n.label, n.kind)
    out.print(table)


def print_report(report: ImportReport, max_errors: int = 50) -> None:
    """Print an import summary and its first row errors."""
    verb = {"dry_run": "simulation", "rejected": "REFUSÉ", "succeeded": "terminé"}.get(
        report.status, report.status
    )
    out.print(
        f"{report.file} → source « {report.source} » ({report.format}) : {verb}\n"
        f"  lignes lues {report.rows_read} · créées {report.created} · "
        f"mises à jour {report.updated} · inchangées {report.unchanged} · "
        f"rejetées {report.rejected}"
    )
    for e in report.errors[:max_errors]:
        console.print("  " + e.message(report.file), highlight=False, markup=False)
    if len(report.errors) > max_errors:
        console.print(f"  … et {len(report.errors) - max_errors} autres erreurs")
    if report.message:
        console.print("  " + report.message, markup=False)
    print_missing(report)
    print_review(report.review)


def print_missing(report: ImportReport, shown: int = 20) -> None:
    """The source's structures absent from the file, and what was done with them."""
    m = report.missing
    if not m or (not m["count"] and not m["back"]):
        return
    verb = {"flag": "signalées", "close": "fermées", "keep": "gardées telles quelles"}
    applied = m.get("applied", m["action"])
    out.print(f"  absentes du fichier : {m['count']} ({verb[applied]}) · revenues : {m['back']}")
    for s in m["structures"][:shown]:
        out.print(f"    {s['source_id']} — {s['name']} (id {s['id']})", markup=False)
    if m["count"] > shown:
        out.print(f"    … et {m['count'] - shown} autres")
    if m.get("note"):
        console.print("  " + m["note"], markup=False)


def print_review(review: dict[str, Any], shown: int = 10) -> None:
    """The import's possible duplicates and field conflicts (which source said what)."""
    if review.get("possible_duplicates"):
        out.print(f"  doublons possibles avec d'autres sources : {review['possible_duplicates']}")
        for p in review["duplicates"][:shown]:
            a, b = p["a"], p["b"]
            out.print(
                f"    {a['id']} « {a['name']} » ({a['source']}) ~ {b['id']} « {b['name']} » "
                f"({b['source']}) : {p['score']} — {', '.join(p['reasons'])}",
                markup=False,
                highlight=False,
            )
    if review.get("field_conflicts"):
        out.print(f"  conflits de champs (rapprochés par SIRET/RNA) : {review['field_conflicts']}")
        for c in review["conflicts"][:shown]:
            said = "; ".join(
                f"{f} : " + " / ".join(f"{src} dit « {v} »" for src, v in vals.items())
                for f, vals in c["fields"].items()
            )
            out.print(
                f"    structure {c['structure_id']} ({c['matched_by']} {c['identifier']}) : {said}",
                markup=False,
                highlight=False,
            )


def import_file(
    engine: sa.Engine,
    path: Path,
    source: str | None,
    mapping: Mapping | None,
    dry_run: bool = False,
    skip_invalid: bool = False,
    limits: ReadLimits | None = None,
    bulk: bool | None = None,
    missing: str = "flag",
) -> ImportReport:
    """Import one file with a progress bar (rows/s, time left); print the report."""
    with progress(path.name, rate="lignes") as advance:
        report = run_import(
            engine,
            path,
            source=source,
            mapping=mapping,
            dry_run=dry_run,
            skip_invalid=skip_invalid,
            progress=advance,
            limits=limits,
            bulk=bulk,
            # Bulk path: rows validated by one forked process per core (one process here).
            workers=os.cpu_count() or 1,
            missing=missing,
        )
    print_report(report)
    return report


def import_cmd(
    path: Annotated[Path, typer.Argument(help="CSV, XLSX, GeoJSON ou export GoGoCarto")],
    source: Annotated[
        str | None, typer.Option(help="Nom de la source (défaut : nom du fichier)")
    ] = None,
    mapping: Annotated[Path | None, typer.Option(help="Correspondance TOML/JSON")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Valider sans écrire")] = False,
    skip_invalid: Annotated[
        bool, typer.Option("--skip-invalid", help="Écrire les lignes valides, rapporter les autres")
    ] = False,
    geocode: Annotated[
        bool, typer.Option("--geocode", help="Géocoder ensuite les structures de la source")
    ] = False,
    bulk: Annotated[
        bool | None,
        typer.Option(
            "--bulk/--no-bulk",
            help="Chemin de masse (CSV lu en flux, COPY, écriture ensembliste) ; "
            "par défaut au-delà de CARTECO_BULK_IMPORT_MIN_ROWS lignes",
        ),
    ] = None,
    missing: Annotated[
        MissingAction,
        typer.Option(
            help="Structures de la source absentes du fichier : flag (signaler), "
            "close (fermer à la date du jour) ou keep (ne rien faire)"
        ),
    ] = MissingAction.flag,
) -> None:
    """Import a structure list as one transaction (upsert on source id, then SIRET, then RNA)."""
    settings = cli_settings()
    engine = cli_engine(settings)
    try:
        m = Mapping.from_file(mapping) if mapping else None
        limits = ReadLimits.from_settings(settings)
        report = import_file(
            engine, path, source, m, dry_run, skip_invalid, limits, bulk, missing.value
        )
    except CartecoError as exc:  # a file refused (ImportFileError), or its source busy
        console.print(f"[red]Import refusé :[/red] {exc}", highlight=False)
        raise typer.Exit(1) from exc
    if report.status == "rejected":
        raise typer.Exit(1)
    if geocode and report.status == "succeeded":
        run_geocode(engine, report.source, False, 0.5, "local", None)
