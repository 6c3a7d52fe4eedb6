"""ANCT politique de la ville posts: adultes-relais and FONJEP posts in QPV, per département.

The employer is `code_tiers`: a SIRET for adultes-relais (Luhn-checked), a name for FONJEP
posts (kept as a name, never forced into a SIRET). Keyed on (source, id_poste).
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carteco.identifiers import clean_digits
from carteco.importer.errors import RowError
from carteco.importer.pipeline import ImportReport
from carteco.importer.readers import SourceTable
from carteco.land.common import Parsed, Progress, columns, content_hash, tick, upsert
from carteco.land.parse import RowReader, is_departement

POST_PROGRAMS = ("adultes_relais", "fonjep_qpv")

_INSERT = sa.text(
    """
    INSERT INTO land_posts (source, source_id, program, siret, employer_name, year, amount_eur,
                            contrat_ville, departement_code, region_code, content_hash, extra)
    VALUES (:source, :source_id, :program, :siret, :employer_name, :year, :amount_eur,
            :contrat_ville, :departement_code, :region_code, :content_hash, CAST(:extra AS jsonb))
    ON CONFLICT (source, source_id) DO UPDATE SET
        program = EXCLUDED.program, siret = EXCLUDED.siret,
        employer_name = EXCLUDED.employer_name, year = EXCLUDED.year,
        amount_eur = EXCLUDED.amount_eur, contrat_ville = EXCLUDED.contrat_ville,
        departement_code = EXCLUDED.departement_code, region_code = EXCLUDED.region_code,
        content_hash = EXCLUDED.content_hash, extra = EXCLUDED.extra
    """
)


def _parse_posts(program: str, file: str, table: SourceTable, progress: Progress | None) -> Parsed:
    cols = columns(program, file, table)
    records: dict[str, dict[str, Any]] = {}
    errors: list[RowError] = []
    rejected = 0
    for i, row in enumerate(table.rows, start=1):
        r = RowReader(row, cols)
        post_id = r.text("id", required=True)
        employer = r.text("employer", required=True)
        siret = None
        # A code made of digits claims to be a SIRET: it must pass Luhn; any other is a name.
        if employer and clean_digits(employer).isdigit():
            siret = r.siret("employer")
        name = r.text("name") or (employer if siret is None else None)
        if employer and not name:
            r.error("name", None, "raison sociale manquante pour ce SIRET")
        year = r.number("year", required=True)
        if year is not None and (year != int(year) or not 1980 <= year <= 2100):
            r.error("year", r.raw("year"), "année attendue (AAAA)")
        amount = r.number("amount", required=True)
        dep = r.raw("departement")
        if dep.isdigit() and len(dep) == 1:
            dep = "0" + dep  # a lost leading zero
        if not dep:
            r.error("departement", None, "code département obligatoire manquant")
        elif not is_departement(dep):
            r.error("departement", dep, "code département attendu (ex. 93, 2A, 974)")
        if post_id and post_id in records and not r.errors:
            r.error("id", post_id, "poste en double dans le fichier")
        if r.errors:
            errors.extend(r.errors)
            rejected += 1
        elif post_id and name and year is not None:
            rec: dict[str, Any] = {
                "source_id": post_id,
                "program": program,
                "siret": siret,
                "employer_name": name,
                "year": int(year),
                "amount_eur": amount,
                "contrat_ville": r.text("contrat_ville"),
                "departement_code": dep,
                "region_code": r.text("region"),
            }
            rec["content_hash"] = content_hash(rec)
            rec["extra"] = json.dumps({"ligne": row.number})
            records[post_id] = rec
        tick(progress, i, len(table.rows))
    return Parsed(records, errors, rejected)


def parse_adultes_relais(
    conn: Connection, file: str, table: SourceTable, progress: Progress | None
) -> Parsed:
    """Adulte-relais posts (ANCT): employer SIRET, amount, contrat de ville, département."""
    return _parse_posts("adultes_relais", file, table, progress)


def parse_fonjep_qpv(
    conn: Connection, file: str, table: SourceTable, progress: Progress | None
) -> Parsed:
    """FONJEP posts in QPV (ANCT): employer name, amount, contrat de ville, département."""
    return _parse_posts("fonjep_qpv", file, table, progress)


def write_posts(conn: Connection, source: str, parsed: Parsed, report: ImportReport) -> None:
    """Upsert the posts by (source, id_poste); unchanged posts are counted, not rewritten."""
    upsert(conn, "land_posts", "source_id", _INSERT, source, parsed, report)
