"""Sites importer: vacant premises and public land, placed by coordinates or address."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carteco.geocoding.engine import LocalGeocoder
from carteco.importer.errors import RowError
from carteco.importer.pipeline import ImportReport
from carteco.importer.readers import SourceTable
from carteco.land.common import NEED_KINDS, Parsed, Progress, columns, site_record, tick, upsert
from carteco.land.friches import FRICHE_STATUS
from carteco.land.parse import RowReader, departement_of
from carteco.text import fold

SITE_STATUS = {
    **FRICHE_STATUS,
    "disponible": "disponible",
    "vacant": "disponible",
    "vacante": "disponible",
    "libre": "disponible",
    "occupe": "occupe",
    "occupee": "occupe",
    "loue": "occupe",
}


SITE_KINDS = {
    "local vacant": "local_vacant",
    "local_vacant": "local_vacant",
    "local": "local_vacant",
    "terrain public": "terrain_public",
    "terrain_public": "terrain_public",
    "terrain": "terrain_public",
    "friche": "friche",
}


MIN_SITE_SCORE = 0.5


def geocode_addresses(conn: Connection, parsed: Parsed) -> int:
    """Place the sites given only by an address with the local geocoder; return how many.

    A point below MIN_SITE_SCORE, or only at the commune, is not set: such a site stays
    placed by its commune, which the diagnostic already handles (no station distance).
    """
    todo = [
        rec
        for rec in parsed.records.values()
        if rec.get("lon") is None and rec.get("address") and "kind" in rec
    ]
    if not todo:
        return 0
    queries = [{"q": rec["address"], "citycode": rec.get("commune_code")} for rec in todo]
    placed = 0
    for rec, results in zip(todo, LocalGeocoder(conn).search_many(queries), strict=True):
        best = results[0] if results else None
        if best is None or best.score < MIN_SITE_SCORE or best.type == "municipality":
            continue
        rec["lon"], rec["lat"] = best.lon, best.lat
        extra = json.loads(rec.get("extra") or "{}")
        extra["geocodage"] = {"type": best.type, "score": round(best.score, 3), "label": best.label}
        rec["extra"] = json.dumps(extra, ensure_ascii=False)
        rec["commune_code"] = rec.get("commune_code") or best.citycode
        placed += 1
    return placed


def parse_sites(
    conn: Connection, file: str, table: SourceTable, progress: Progress | None
) -> Parsed:
    """Sites rows (vacant premises, public land) into site records, with row errors."""
    cols = columns("sites", file, table)
    records: dict[str, dict[str, Any]] = {}
    errors: list[RowError] = []
    rejected = 0
    for i, row in enumerate(table.rows, start=1):
        r = RowReader(row, cols)
        sid = r.text("id", required=True)
        kind = r.choice("kind", SITE_KINDS, required=True)
        status = r.choice("status", SITE_STATUS) or "disponible"
        usages: list[str] = []
        for part in r.raw("usages").replace(";", "|").replace(",", "|").split("|"):
            if part.strip():
                code = NEED_KINDS.get(fold(part))
                if code is None:
                    r.error(
                        "usages",
                        part,
                        "usage inconnu (bureau, atelier, entrepôt, commerce, "
                        "terrain agricole, tiers-lieu)",
                    )
                else:
                    usages.append(code)
        # No usage stated: every use the kind of site can physically host.
        if not usages and kind == "terrain_public":
            usages = ["terrain_agricole", "tiers_lieu"]
        elif not usages and kind == "local_vacant":
            usages = ["atelier", "bureau", "commerce", "entrepot", "tiers_lieu"]
        commune = r.insee("insee")
        point = r.point()
        if commune is None and point is None:
            r.error("insee", None, "code INSEE ou coordonnées obligatoires pour situer le site")
        if sid in records:
            r.error("id", sid, "identifiant en double dans le fichier")
        base = {
            "source_id": sid,
            "name": r.text("name", required=True),
            "kind": kind,
            "site_type": r.text("kind"),
            "status": status,
            "usages": usages,
            "surface_m2": r.number("surface"),
            "built_surface_m2": r.number("built_surface"),
            "owner_type": r.text("owner_type"),
            "owner_name": r.text("owner_name"),
            "rent_eur_month": r.number("rent"),
            "price_eur": r.number("price"),
            "address": r.text("address"),
            "commune_code": commune,
            "departement_code": departement_of(commune) if commune else None,
            "point": point,
        }
        if r.errors:
            errors.extend(r.errors)
            rejected += 1
        elif sid:
            records[sid] = site_record(r, base)
        tick(progress, i, len(table.rows))
    return Parsed(records, errors, rejected)


_SITE_UPSERT = sa.text(
    """
    INSERT INTO land_sites (source, source_id, name, kind, site_type, status, usages, surface_m2,
        built_surface_m2, owner_type, owner_name, pollution, origin, rent_eur_month, price_eur,
        address, commune_code, epci_code, departement_code, geom, footprint, content_hash, extra)
    VALUES (:source, :source_id, :name, :kind, :site_type, :status, :usages, :surface_m2,
        :built_surface_m2, :owner_type, :owner_name, :pollution, :origin, :rent_eur_month,
        :price_eur,
        :address, :commune_code, :epci_code, :departement_code,
        CASE WHEN CAST(:lon AS float8) IS NOT NULL THEN ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)
             WHEN CAST(:footprint AS text) IS NOT NULL THEN ST_PointOnSurface(
                 ST_SetSRID(ST_GeomFromGeoJSON(CAST(:footprint AS text)), 4326)) END,
        CASE WHEN CAST(:footprint AS text) IS NOT NULL THEN ST_Multi(ST_CollectionExtract(
             ST_MakeValid(ST_SetSRID(ST_GeomFromGeoJSON(CAST(:footprint AS text)), 4326)), 3)) END,
        :content_hash, CAST(:extra AS jsonb))
    ON CONFLICT (source, source_id) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind,
        site_type = EXCLUDED.site_type, status = EXCLUDED.status, usages = EXCLUDED.usages,
        surface_m2 = EXCLUDED.surface_m2, built_surface_m2 = EXCLUDED.built_surface_m2,
        owner_type = EXCLUDED.owner_type, owner_name = EXCLUDED.owner_name,
        pollution = EXCLUDED.pollution, origin = EXCLUDED.origin,
        rent_eur_month = EXCLUDED.rent_eur_month,
        price_eur = EXCLUDED.price_eur, address = EXCLUDED.address,
        commune_code = EXCLUDED.commune_code, epci_code = EXCLUDED.epci_code,
        departement_code = EXCLUDED.departement_code, geom = EXCLUDED.geom,
        footprint = coalesce(EXCLUDED.footprint, land_sites.footprint),
        content_hash = EXCLUDED.content_hash, extra = EXCLUDED.extra
    """
)


_FOOTPRINT_UPDATE = sa.text(
    """
    UPDATE land_sites SET footprint = ST_Multi(ST_CollectionExtract(
            ST_MakeValid(ST_SetSRID(ST_GeomFromGeoJSON(CAST(:footprint AS text)), 4326)), 3)),
        geom = coalesce(geom, ST_PointOnSurface(
            ST_SetSRID(ST_GeomFromGeoJSON(CAST(:footprint AS text)), 4326)))
     WHERE source = :site_source AND source_id = :source_id
       AND footprint IS DISTINCT FROM ST_Multi(ST_CollectionExtract(
            ST_MakeValid(ST_SetSRID(ST_GeomFromGeoJSON(CAST(:footprint AS text)), 4326)), 3))
    """
)


def write_sites(conn: Connection, source: str, parsed: Parsed, report: ImportReport) -> None:
    """Upsert the sites into land_sites (or complete the footprints of known friches)."""
    recs = list(parsed.records.values())
    if recs and "kind" not in recs[0]:
        # Polygons completing friches of another source: update their footprint in place.
        for rec in recs:
            n = conn.execute(
                _FOOTPRINT_UPDATE,
                {
                    "footprint": rec["footprint"],
                    "site_source": rec["source"],
                    "source_id": rec["source_id"],
                },
            ).rowcount
            if n:
                report.updated += 1
            else:
                report.unchanged += 1
        return
    upsert(conn, "land_sites", "source_id", _SITE_UPSERT, source, parsed, report)
    # Sites given by commune only: attach the EPCI from the national COG table.
    conn.execute(
        sa.text(
            """
            UPDATE land_sites s SET epci_code = c.epci_code FROM communes_ref c
             WHERE s.source = :s AND s.epci_code IS NULL AND c.code = s.commune_code
               AND c.type = 'commune-actuelle'
            """
        ),
        {"s": source},
    )
