"""Land importers: DVF, friches (CNIG), vacant premises / public land, needs, QPV polygons,
LOVAC and the ANCT politique de la ville posts (adultes-relais, FONJEP in QPV).

Same conventions as the structure importer: the file is read by `read_table`, every row is
validated (errors name row, column, value, reason), and the write is one transaction that
changes nothing unless asked to skip invalid rows. Rows are keyed on (source, identifier) with
a content hash, so importing the same file twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from carteco.importer.errors import ImportFileError
from carteco.importer.pipeline import ImportReport, tracked_run
from carteco.importer.readers import SourceTable, read_table
from carteco.importer.skeleton import file_checksum, import_transaction, read_file, refuse_invalid
from carteco.land.common import Parsed, Progress
from carteco.land.dvf import parse_dvf, write_dvf
from carteco.land.friches import parse_friches
from carteco.land.lovac import parse_lovac, write_lovac
from carteco.land.needs import parse_needs, write_needs
from carteco.land.posts import parse_adultes_relais, parse_fonjep_qpv, write_posts
from carteco.land.qpv import parse_qpv, write_qpv
from carteco.land.sites import geocode_addresses, parse_sites, write_sites

KINDS = ("dvf", "friches", "sites", "besoins", "qpv", "lovac", "adultes_relais", "fonjep_qpv")


def run_land_import(
    engine: Engine,
    kind: str,
    path: Path,
    source: str | None = None,
    description: str | None = None,
    vintage: str | None = None,
    dry_run: bool = False,
    skip_invalid: bool = False,
    progress: Progress | None = None,
) -> ImportReport:
    """Import one land file of `kind` as one transaction; with errors write nothing by default."""
    if kind not in KINDS:
        raise ImportFileError(path.name, f"type de couche inconnu « {kind} » ({', '.join(KINDS)})")
    data = read_file(path)
    source = source or f"{kind}:{path.stem}"
    report = ImportReport(
        file=path.name, source=source, checksum=file_checksum(data), dry_run=dry_run
    )
    with tracked_run(engine, report):
        table = read_table(path, data)
        report.format = table.format
        report.rows_read = len(table.rows)
        with engine.connect() as conn:
            parsed = PARSERS[kind](conn, path.name, table, progress)
            if kind in ("sites", "friches"):
                geocode_addresses(conn, parsed)
        report.errors, report.rejected = parsed.errors, parsed.rejected
        parsed.vintage = vintage
        if not refuse_invalid(report, skip_invalid):
            with import_transaction(engine, "carteco-land", source, report, dry_run) as conn:
                WRITERS[kind](conn, source, parsed, report)
                _record_layer(conn, kind, source, description, vintage, report, parsed)
    return report


def _record_layer(
    conn: Connection,
    kind: str,
    source: str,
    description: str | None,
    vintage: str | None,
    report: ImportReport,
    parsed: Parsed,
) -> None:
    if kind == "friches" and parsed.records and "kind" not in next(iter(parsed.records.values())):
        return  # a polygon complement belongs to the friches layer it completes
    conn.execute(
        sa.text(
            """
            INSERT INTO land_layers (source, kind, description, vintage, file_name, checksum,
                                     rows, import_run_id)
            VALUES (:source, :kind, :description, :vintage, :file, :checksum, :rows, :run)
            ON CONFLICT (source) DO UPDATE SET kind = EXCLUDED.kind,
                description = coalesce(EXCLUDED.description, land_layers.description),
                vintage = coalesce(EXCLUDED.vintage, land_layers.vintage),
                file_name = EXCLUDED.file_name, checksum = EXCLUDED.checksum,
                rows = EXCLUDED.rows, import_run_id = EXCLUDED.import_run_id, loaded_at = now()
            """
        ),
        {
            "source": source,
            "kind": kind,
            "description": description,
            "vintage": vintage,
            "file": report.file,
            "checksum": report.checksum,
            "rows": len(parsed.records),
            "run": report.run_id,
        },
    )


PARSERS: dict[str, Callable[[Connection, str, SourceTable, Progress | None], Parsed]] = {
    "dvf": parse_dvf,
    "friches": parse_friches,
    "sites": parse_sites,
    "besoins": parse_needs,
    "qpv": parse_qpv,
    "lovac": parse_lovac,
    "adultes_relais": parse_adultes_relais,
    "fonjep_qpv": parse_fonjep_qpv,
}


WRITERS: dict[str, Callable[[Connection, str, Parsed, ImportReport], None]] = {
    "dvf": write_dvf,
    "friches": write_sites,
    "sites": write_sites,
    "besoins": write_needs,
    "qpv": write_qpv,
    "lovac": write_lovac,
    "adultes_relais": write_posts,
    "fonjep_qpv": write_posts,
}
