"""Friches importer: CNIG standard and Cartofriches records, with their footprints."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carteco.importer.errors import RowError
from carteco.importer.readers import SourceTable
from carteco.land.common import Parsed, Progress, columns, read_footprint, site_record, tick
from carteco.land.parse import RowReader, departement_of
from carteco.text import fold

FRICHE_STATUS = {
    "friche sans projet": "sans_projet",
    "sans projet": "sans_projet",
    "friche avec projet": "avec_projet",
    "avec projet": "avec_projet",
    "friche reconvertie": "reconvertie",
    "reconvertie": "reconvertie",
    "friche potentielle": "potentielle",
    "potentielle": "potentielle",
    # Cartofriches: 93 Île-de-France sites have no known status; kept unknown, never guessed.
    "inconnu": "inconnu",
    "statut inconnu": "inconnu",
}


# Which declared needs a friche can host, from its CNIG type (an overview, not a study).
FRICHE_USAGES: dict[str, tuple[str, ...]] = {
    "industrielle": ("atelier", "entrepot", "tiers_lieu"),
    "agro industrielle": ("atelier", "entrepot", "terrain_agricole"),
    "commerciale": ("commerce", "entrepot", "tiers_lieu", "bureau"),
    "ferroviaire": ("entrepot", "tiers_lieu", "atelier"),
    "militaire": ("entrepot", "tiers_lieu", "atelier"),
    "hospitaliere": ("bureau", "tiers_lieu"),
    "enseignement": ("bureau", "tiers_lieu"),
    "tertiaire": ("bureau", "tiers_lieu", "commerce"),
    "d habitat": ("bureau", "tiers_lieu"),
    "habitat": ("bureau", "tiers_lieu"),
    "touristique": ("tiers_lieu", "commerce"),
    "agricole": ("terrain_agricole", "entrepot"),
    "carriere": ("terrain_agricole",),
    "loisir": ("tiers_lieu",),
}


DEFAULT_FRICHE_USAGES = ("entrepot", "tiers_lieu")


def parse_friches(
    conn: Connection, file: str, table: SourceTable, progress: Progress | None
) -> Parsed:
    """Friches (CNIG standard or Cartofriches) rows into site records, with row errors."""
    cols = columns("friches", file, table)
    polygons_only = "site_statut" not in cols and table.format == "geojson"
    known: dict[str, dict[str, Any]] = {}
    if polygons_only:
        # A polygon layer (unités foncières) completes friches already imported from the CSV.
        rows = conn.execute(
            sa.text(
                "SELECT source, source_id FROM land_sites WHERE kind = 'friche' "
                "AND source_id = ANY(:ids)"
            ),
            {"ids": [str(r.values.get(cols["site_id"]) or "").strip() for r in table.rows]},
        ).all()
        known = {sid: {"source": src} for src, sid in rows}
    records: dict[str, dict[str, Any]] = {}
    errors: list[RowError] = []
    rejected = 0
    for i, row in enumerate(table.rows, start=1):
        r = RowReader(row, cols)
        sid = r.text("site_id", required=True)
        footprint = read_footprint(r)
        if polygons_only:
            if sid and sid not in known:
                r.error("site_id", sid, "friche inconnue : importez d'abord le fichier CNIG (CSV)")
            if footprint is None and not r.errors:
                r.error(None, None, "géométrie absente")
            if not r.errors and sid:
                records[sid] = {"source_id": sid, "footprint": footprint, **known[sid]}
        else:
            status = r.choice("site_statut", FRICHE_STATUS, required=True)
            site_type = r.text("site_type")
            commune = r.insee("comm_insee")
            point = r.point()
            if commune is None and point is None and footprint is None:
                r.error("comm_insee", None, "ni commune, ni coordonnées, ni géométrie")
            if not r.errors and sid and status:
                records[sid] = site_record(
                    r,
                    {
                        "source_id": sid,
                        "name": r.text("site_nom") or f"Friche {sid}",
                        "kind": "friche",
                        "site_type": site_type,
                        "status": status,
                        "usages": _friche_usages(site_type),
                        "surface_m2": r.number("surface"),
                        "built_surface_m2": r.number("bati_surface"),
                        "owner_type": r.text("proprio_type"),
                        "owner_name": r.text("proprio_nom"),
                        "pollution": r.text("pollution"),
                        "origin": r.text("origin"),
                        "address": r.text("site_adresse"),
                        "commune_code": commune,
                        "epci_code": r.text("epci_siren"),
                        "departement_code": departement_of(commune) if commune else None,
                        "point": point,
                        "footprint": footprint,
                    },
                )
        if r.errors:
            errors.extend(r.errors)
            rejected += 1
        tick(progress, i, len(table.rows))
    return Parsed(records, errors, rejected)


def _friche_usages(site_type: str | None) -> list[str]:
    t = fold(site_type or "").removeprefix("friche ").strip()
    for key, usages in FRICHE_USAGES.items():
        if t.startswith(key):
            return list(usages)
    return list(DEFAULT_FRICHE_USAGES)
