"""QPV importer: priority neighbourhoods (quartiers prioritaires) outlines."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carteco.importer.errors import ImportFileError, RowError
from carteco.importer.pipeline import ImportReport
from carteco.importer.readers import SourceTable
from carteco.land.common import Parsed, Progress, columns, content_hash, read_footprint, tick
from carteco.land.parse import RowReader


def parse_qpv(conn: Connection, file: str, table: SourceTable, progress: Progress | None) -> Parsed:
    """QPV outlines into records, with row errors."""
    if table.format != "geojson":
        raise ImportFileError(file, "les QPV s'importent depuis un GeoJSON de polygones")
    cols = columns("qpv", file, table)
    records: dict[str, dict[str, Any]] = {}
    errors: list[RowError] = []
    rejected = 0
    for i, row in enumerate(table.rows, start=1):
        r = RowReader(row, cols)
        code = (r.text("code", required=True) or "").upper()
        footprint = read_footprint(r)
        if footprint is None and not r.errors:
            r.error(None, None, "géométrie absente")
        commune = r.insee("commune")
        dep = r.text("departement")
        if dep is None and code.startswith("QP") and len(code) >= 5:
            # QP + 3-character département (031 → 31, 02A → 2A, 971 → 971).
            dep = code[2:5].lstrip("0") if code[2:4] != "97" else code[2:5]
            dep = dep.zfill(2)
        if code in records:
            r.error("code", code, "code QPV en double dans le fichier")
        if r.errors:
            errors.extend(r.errors)
            rejected += 1
        else:
            rec = {
                "code": code,
                "name": r.text("name") or code,
                "commune_code": commune,
                "departement_code": dep,
                "footprint": footprint,
            }
            rec["content_hash"] = content_hash(rec)
            records[code] = rec
        tick(progress, i, len(table.rows))
    return Parsed(records, errors, rejected)


def write_qpv(conn: Connection, source: str, parsed: Parsed, report: ImportReport) -> None:
    """Upsert the QPV outlines into territories (level qpv)."""
    layer = source if source.startswith("qpv:") else f"qpv:{source}"
    existing = set(
        conn.execute(
            sa.text("SELECT code FROM territories WHERE level = 'qpv' AND code = ANY(:c)"),
            {"c": list(parsed.records)},
        ).scalars()
    )
    changed = 0
    for rec in parsed.records.values():
        res = conn.execute(
            _QPV_UPSERT, {**rec, "layer": layer, "vintage": parsed.vintage or "non précisé"}
        )
        if rec["code"] not in existing:
            report.created += 1
        elif res.rowcount:
            report.updated += 1
        else:
            report.unchanged += 1
        changed += res.rowcount or 0
    if changed:
        # New QPV outlines change which structures are in a QPV.
        conn.execute(sa.text("SELECT carteco_retag_structures()"))


_QPV_UPSERT = sa.text(
    """
    INSERT INTO territories (level, code, name, region_code, departement_code,
        commune_code, area_m2, geom, vintage, layer)
    SELECT 'qpv', :code, :name, (SELECT region_code FROM communes_ref
            WHERE code = :commune_code AND type = 'commune-actuelle'),
           :departement_code, :commune_code, ST_Area(ST_Transform(g, 2154)), g, :vintage, :layer
      FROM (SELECT ST_Multi(ST_CollectionExtract(ST_MakeValid(ST_SetSRID(
              ST_GeomFromGeoJSON(CAST(:footprint AS text)), 4326)), 3)) AS g) x
    ON CONFLICT (level, code) DO UPDATE SET name = EXCLUDED.name,
        region_code = EXCLUDED.region_code, departement_code = EXCLUDED.departement_code,
        commune_code = EXCLUDED.commune_code, area_m2 = EXCLUDED.area_m2,
        geom = EXCLUDED.geom, layer = EXCLUDED.layer, vintage = EXCLUDED.vintage
     WHERE NOT ST_Equals(territories.geom, EXCLUDED.geom)
        OR territories.name IS DISTINCT FROM EXCLUDED.name
        OR territories.vintage IS DISTINCT FROM EXCLUDED.vintage
    """
)
