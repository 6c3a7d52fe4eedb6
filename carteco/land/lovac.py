"""LOVAC importer: private-housing vacancy per commune (withheld rates kept as null)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carteco.importer.errors import RowError
from carteco.importer.pipeline import ImportReport
from carteco.importer.readers import SourceTable
from carteco.land.common import Parsed, Progress, columns, tick
from carteco.land.parse import RowReader

# LOVAC indicators kept per commune: (indicator, column key).
LOVAC_INDICATORS = (
    ("logements_vacants_2ans_pct", "vacants_2ans_pct"),
    ("logements_parc_prive", "parc_prive"),
)


def parse_lovac(
    conn: Connection, file: str, table: SourceTable, progress: Progress | None
) -> Parsed:
    """LOVAC per commune: share of private dwellings vacant 2 years or more, and the stock.

    A blank rate is statistical secrecy or a missing figure: it is kept as null (never 0).
    """
    cols = columns("lovac", file, table)
    records: dict[str, dict[str, Any]] = {}
    errors: list[RowError] = []
    rejected = 0
    for i, row in enumerate(table.rows, start=1):
        r = RowReader(row, cols)
        commune = r.insee("commune", required=True)
        values = {ind: r.number(key) if key in cols else None for ind, key in LOVAC_INDICATORS}
        rate = values["logements_vacants_2ans_pct"]
        if rate is not None and rate > 100:
            r.error("vacants_2ans_pct", r.raw("vacants_2ans_pct"), "part supérieure à 100 %")
        if commune and commune in records and not r.errors:
            r.error("commune", commune, "commune en double dans le fichier")
        if r.errors:
            errors.extend(r.errors)
            rejected += 1
        elif commune:
            records[commune] = {"commune_code": commune, **values}
        tick(progress, i, len(table.rows))
    return Parsed(records, errors, rejected)


def write_lovac(conn: Connection, source: str, parsed: Parsed, report: ImportReport) -> None:
    """Upsert each commune's indicators; count created, updated and unchanged communes."""
    existing: dict[tuple[str, str], float | None] = {
        (c, ind): v
        for c, ind, v in conn.execute(
            sa.text(
                "SELECT commune_code, indicator, value FROM commune_indicators WHERE source = :s"
            ),
            {"s": source},
        ).all()
    }
    params: list[dict[str, Any]] = []
    for code, rec in parsed.records.items():
        rows = [(ind, rec[ind]) for ind, _key in LOVAC_INDICATORS]
        if all((code, ind) in existing and existing[(code, ind)] == v for ind, v in rows):
            report.unchanged += 1
            continue
        if any((code, ind) in existing for ind, _v in rows):
            report.updated += 1
        else:
            report.created += 1
        params.extend(
            {"s": source, "c": code, "i": ind, "v": v, "vintage": parsed.vintage} for ind, v in rows
        )
    if params:
        conn.execute(
            sa.text(
                """
                INSERT INTO commune_indicators (source, commune_code, indicator, value, vintage)
                VALUES (:s, :c, :i, :v, :vintage)
                ON CONFLICT (source, commune_code, indicator) DO UPDATE
                   SET value = EXCLUDED.value, vintage = EXCLUDED.vintage
                """
            ),
            params,
        )
