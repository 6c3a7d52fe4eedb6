"""Needs importer: premises sought by ESS structures (kind, surface, budget, territories)."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carteco.importer.errors import RowError
from carteco.importer.pipeline import ImportReport
from carteco.importer.readers import SourceTable
from carteco.land.common import NEED_KINDS, Parsed, Progress, columns, content_hash, tick, upsert
from carteco.land.parse import RowReader, departement_of, is_departement


def parse_needs(
    conn: Connection, file: str, table: SourceTable, progress: Progress | None
) -> Parsed:
    """Needs rows into records, with row errors."""
    cols = columns("besoins", file, table)
    records: dict[str, dict[str, Any]] = {}
    errors: list[RowError] = []
    rejected = 0
    for i, row in enumerate(table.rows, start=1):
        r = RowReader(row, cols)
        nid = r.text("id", required=True)
        kind = r.choice("kind", NEED_KINDS, required=True)
        smin, smax = r.number("surface_min"), r.number("surface_max")
        if smin is not None and smax is not None and smax < smin:
            r.error("surface_max", smax, "surface maximale inférieure à la surface minimale")
        territories: list[str] = []
        for part in r.raw("territories").replace(";", "|").replace(",", "|").split("|"):
            code = part.strip().upper()
            if not code:
                continue
            if code.isdigit() and len(code) == 4:
                code = "0" + code
            if not (is_departement(code) or len(code) in (5, 9)):
                r.error("territories", part, "code INSEE de commune, SIREN d'EPCI ou département")
            territories.append(code)
        distance = r.number("distance")
        if distance == 0:
            r.error("distance", distance, "distance strictement positive attendue")
        commune = r.insee("insee")
        point = r.point()
        if nid in records:
            r.error("id", nid, "identifiant en double dans le fichier")
        rec = {
            "source_id": nid,
            "siret": r.siret("siret"),
            "name": r.text("name", required=True),
            "kind": kind,
            "surface_min_m2": smin,
            "surface_max_m2": smax,
            "budget_rent_eur_month": r.number("rent"),
            "budget_purchase_eur": r.number("purchase"),
            "territories": territories,
            "max_distance_km": distance,
            "declared_on": r.date("date"),
            "commune_code": commune,
            "departement_code": departement_of(commune)
            if commune
            else next((t for t in territories if is_departement(t)), None)
            or next((departement_of(t) for t in territories if len(t) == 5), None),
            "lon": point[0] if point else None,
            "lat": point[1] if point else None,
            "extra": json.dumps({"ligne": row.number}),
        }
        if r.errors:
            errors.extend(r.errors)
            rejected += 1
        elif nid:
            rec["content_hash"] = content_hash({k: v for k, v in rec.items() if k != "extra"})
            records[nid] = rec
        tick(progress, i, len(table.rows))
    return Parsed(records, errors, rejected)


_NEED_UPSERT = sa.text(
    """
    INSERT INTO land_needs (source, source_id, siret, name, kind, surface_min_m2, surface_max_m2,
        budget_rent_eur_month, budget_purchase_eur, territories, max_distance_km, declared_on,
        commune_code, departement_code, geom, content_hash, extra)
    VALUES (:source, :source_id, :siret, :name, :kind, :surface_min_m2, :surface_max_m2,
        :budget_rent_eur_month, :budget_purchase_eur, :territories, :max_distance_km,
        :declared_on, :commune_code, :departement_code,
        CASE WHEN CAST(:lon AS float8) IS NULL THEN NULL
             ELSE ST_SetSRID(ST_MakePoint(:lon, :lat), 4326) END,
        :content_hash, CAST(:extra AS jsonb))
    ON CONFLICT (source, source_id) DO UPDATE SET siret = EXCLUDED.siret, name = EXCLUDED.name,
        kind = EXCLUDED.kind, surface_min_m2 = EXCLUDED.surface_min_m2,
        surface_max_m2 = EXCLUDED.surface_max_m2,
        budget_rent_eur_month = EXCLUDED.budget_rent_eur_month,
        budget_purchase_eur = EXCLUDED.budget_purchase_eur, territories = EXCLUDED.territories,
        max_distance_km = EXCLUDED.max_distance_km, declared_on = EXCLUDED.declared_on,
        commune_code = EXCLUDED.commune_code, departement_code = EXCLUDED.departement_code,
        geom = EXCLUDED.geom, content_hash = EXCLUDED.content_hash, extra = EXCLUDED.extra
    """
)


def write_needs(conn: Connection, source: str, parsed: Parsed, report: ImportReport) -> None:
    """Upsert the needs into land_needs."""
    upsert(conn, "land_needs", "source_id", _NEED_UPSERT, source, parsed, report)
    # Link each need to its structure by SIRET; a need without a location takes the structure's.
    conn.execute(
        sa.text(
            """
            UPDATE land_needs n SET structure_id = s.id,
                   geom = coalesce(n.geom, s.geom),
                   commune_code = coalesce(n.commune_code, s.commune_code, s.insee_code),
                   departement_code = coalesce(n.departement_code, s.departement_code)
              FROM (SELECT DISTINCT ON (siret) id, siret, geom, commune_code, insee_code,
                           departement_code FROM structures WHERE siret IS NOT NULL
                     ORDER BY siret, id) s
             WHERE n.source = :s AND n.siret = s.siret
            """
        ),
        {"s": source},
    )
