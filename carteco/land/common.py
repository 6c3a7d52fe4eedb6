"""Pieces shared by the land importers: column aliases, parsed records, the upsert."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from shapely.geometry import shape
from sqlalchemy.engine import Connection

from carteco.db import quote_ident
from carteco.importer.errors import ImportFileError, RowError
from carteco.importer.pipeline import ImportReport
from carteco.importer.readers import SourceTable
from carteco.land.parse import RowReader, resolve_columns

Progress = Callable[[int, int], None]


NEED_KINDS = {
    "bureau": "bureau",
    "bureaux": "bureau",
    "atelier": "atelier",
    "ateliers": "atelier",
    "entrepot": "entrepot",
    "entrepots": "entrepot",
    "stockage": "entrepot",
    "commerce": "commerce",
    "boutique": "commerce",
    "local commercial": "commerce",
    "terrain agricole": "terrain_agricole",
    "terrain_agricole": "terrain_agricole",
    "agricole": "terrain_agricole",
    "tiers lieu": "tiers_lieu",
    "tiers_lieu": "tiers_lieu",
    "tiers lieux": "tiers_lieu",
}


# ANCT politique de la ville posts (adultes-relais, FONJEP in QPV): one format for both.
POST_ALIASES: dict[str, tuple[str, ...]] = {
    "id": ("id_poste",),
    "employer": ("code_tiers",),
    "name": ("raison_sociale",),
    "year": ("annee",),
    "amount": ("montant",),
    "contrat_ville": ("code_cv",),
    "departement": ("insee_dep", "code_departement"),
    "region": ("insee_reg",),
}


ALIASES: dict[str, dict[str, tuple[str, ...]]] = {
    "dvf": {
        "id_mutation": ("id_mutation",),
        "date_mutation": ("date_mutation",),
        "nature_mutation": ("nature_mutation",),
        "valeur_fonciere": ("valeur_fonciere",),
        "type_local": ("type_local",),
        "surface_bati": ("surface_reelle_bati",),
        "surface_terrain": ("surface_terrain",),
        "code_commune": ("code_commune", "code_insee"),
        "code_departement": ("code_departement",),
        "id_parcelle": ("id_parcelle",),
        "nature_culture": ("code_nature_culture", "nature_culture"),
        "code_qp": ("code_qp", "code_qpv"),
        "longitude": ("longitude", "lon"),
        "latitude": ("latitude", "lat"),
        # geo-dvf (Etalab national format): one row per disposition × parcel × local × crop.
        "numero_disposition": ("numero_disposition",),
        "lot1_numero": ("lot1_numero",),
        "nombre_pieces": ("nombre_pieces_principales",),
    },
    "friches": {
        "site_id": ("site_id",),
        "site_nom": ("site_nom", "friche", "nom"),
        "site_type": ("site_type",),
        "site_adresse": ("site_adresse",),
        "site_statut": ("site_statut",),
        "comm_insee": ("comm_insee", "code_insee", "code_commune"),
        # Cartofriches: the inventory behind the record (Fonds Friches, MTE, Basias/Basol…).
        "origin": ("source_cartofriches", "source_r", "source_donnee"),
        "epci_siren": ("epci_siren",),
        "bati_surface": ("bati_surface",),
        "proprio_type": ("proprio_personne", "proprio_type_catpro3", "proprio_type"),
        "proprio_nom": ("proprio_nom",),
        "pollution": ("sol_pollution_existe",),
        "surface": ("unite_fonciere_surface", "site_surface", "surf_calc"),
        "geompoint": ("geompoint",),
        "longitude": ("longitude",),
        "latitude": ("latitude",),
    },
    "sites": {
        "id": ("identifiant", "id", "site_id"),
        "name": ("nom", "nom_site", "name"),
        "kind": ("type", "type_site", "nature"),
        "usages": ("usages", "usages_possibles", "types_locaux"),
        "status": ("statut", "status"),
        "surface": ("surface_m2", "surface_terrain_m2", "surface"),
        "built_surface": ("surface_batie_m2", "surface_bati_m2", "surface_plancher_m2"),
        "owner_type": ("proprietaire_type", "type_proprietaire"),
        "owner_name": ("proprietaire", "proprietaire_nom"),
        "rent": ("loyer_mensuel_eur", "loyer_mensuel", "loyer"),
        "price": ("prix_eur", "prix_vente_eur", "prix"),
        "address": ("adresse",),
        "insee": ("code_insee", "commune_insee", "code_commune"),
        "longitude": ("longitude", "lon"),
        "latitude": ("latitude", "lat"),
    },
    "besoins": {
        "id": ("identifiant", "id", "id_besoin"),
        "siret": ("structure_siret", "siret"),
        "name": ("structure_nom", "nom", "structure"),
        "kind": ("type_local", "type", "type_de_local"),
        "surface_min": ("surface_min_m2", "surface_min"),
        "surface_max": ("surface_max_m2", "surface_max"),
        "rent": ("budget_loyer_mensuel_eur", "budget_loyer_mensuel", "budget_loyer"),
        "purchase": ("budget_achat_eur", "budget_achat"),
        "territories": ("territoires_souhaites", "territoires"),
        "distance": ("distance_max_km",),
        "insee": ("code_insee", "commune_insee"),
        "longitude": ("longitude", "lon"),
        "latitude": ("latitude", "lat"),
        "date": ("date_besoin", "date"),
    },
    "lovac": {
        "commune": ("code_commune", "codgeo", "insee_com", "code_insee"),
        "parc_prive": ("nb_logements_parc_prive_2022", "nb_logements_parc_prive", "parc_prive"),
        "vacants_2ans_pct": (
            "prop_logements_vacants_2ans_plus_parc_prive_01012021_pct",
            "prop_logements_vacants_2ans_plus_pct",
            "taux_vacance_2ans",
        ),
    },
    "adultes_relais": POST_ALIASES,
    "fonjep_qpv": POST_ALIASES,
    "qpv": {
        "code": ("code_qp", "code_qpv", "code_quartier", "code"),
        "name": ("nom_qp", "nom_qpv", "lib_qp", "nom"),
        "commune": ("code_commune", "code_insee", "insee_com"),
        "departement": ("code_departement", "dep", "code_dep"),
    },
}


REQUIRED = {
    "dvf": ("id_mutation", "date_mutation", "valeur_fonciere", "code_commune"),
    "friches": ("site_id",),
    "sites": ("id", "name", "kind"),
    "besoins": ("id", "name", "kind"),
    "qpv": ("code",),
    "lovac": ("commune", "vacants_2ans_pct"),
    "adultes_relais": ("id", "employer", "year", "amount", "departement"),
    "fonjep_qpv": ("id", "employer", "year", "amount", "departement"),
}


@dataclass
class Parsed:
    """Valid records (keyed) and row errors of one file."""

    records: dict[str, dict[str, Any]]
    errors: list[RowError]
    rejected: int
    vintage: str | None = None


def columns(kind: str, file: str, table: SourceTable) -> dict[str, str]:
    """The file's column for each key of layer `kind`; a missing required one is refused."""
    found = resolve_columns(table.headers, ALIASES[kind])
    missing = [c for c in REQUIRED[kind] if c not in found]
    if missing:
        raise ImportFileError(
            file,
            "colonne(s) obligatoire(s) absente(s) : "
            + ", ".join(ALIASES[kind][c][0] for c in missing),
            row=1,
        )
    return found


def content_hash(values: dict[str, Any]) -> str:
    """SHA-256 of a record's values (JSON, sorted keys): unchanged rows are not rewritten."""
    return hashlib.sha256(
        json.dumps(values, sort_keys=True, default=str, ensure_ascii=False).encode()
    ).hexdigest()


def tick(progress: Progress | None, i: int, n: int) -> None:
    """Report progress every 500 rows and at the end."""
    if progress and (i % 500 == 0 or i == n):
        progress(i, n)


def upsert(
    conn: Connection,
    table: str,
    key: str,
    statement: sa.TextClause,
    source: str,
    parsed: Parsed,
    report: ImportReport,
) -> None:
    """Insert new keys, update changed ones (by content hash), count the unchanged."""
    tbl = quote_ident(table, ("land_transactions", "land_sites", "land_needs", "land_posts"))
    col = quote_ident(key, ("id_mutation", "source_id"))
    existing: dict[str, str] = dict(
        conn.execute(
            sa.text(f"SELECT {col}, content_hash FROM {tbl} WHERE source = :s"),  # noqa: S608
            {"s": source},
        ).all()
    )
    params = []
    for k, rec in parsed.records.items():
        old = existing.get(k)
        if old == rec["content_hash"]:
            report.unchanged += 1
            continue
        if old is None:
            report.created += 1
        else:
            report.updated += 1
        params.append({**rec, "source": source})
    for start in range(0, len(params), 2000):
        conn.execute(statement, params[start : start + 2000])


def site_record(r: RowReader, base: dict[str, Any]) -> dict[str, Any]:
    """A land site record from its row and its kind-specific fields, with its content hash."""
    rec = {
        "name": base["name"],
        "kind": base["kind"],
        "site_type": base.get("site_type"),
        "status": base["status"],
        "usages": sorted(set(base.get("usages") or [])),
        "surface_m2": base.get("surface_m2"),
        "built_surface_m2": base.get("built_surface_m2"),
        "owner_type": base.get("owner_type"),
        "owner_name": base.get("owner_name"),
        "pollution": base.get("pollution"),
        "origin": base.get("origin"),
        "rent_eur_month": base.get("rent_eur_month"),
        "price_eur": base.get("price_eur"),
        "address": base.get("address"),
        "commune_code": base.get("commune_code"),
        "epci_code": base.get("epci_code"),
        "departement_code": base.get("departement_code"),
        "lon": base["point"][0] if base.get("point") else None,
        "lat": base["point"][1] if base.get("point") else None,
        "footprint": base.get("footprint"),
        "source_id": base["source_id"],
        "extra": json.dumps({"ligne": r.row.number}),
    }
    rec["content_hash"] = content_hash({k: v for k, v in rec.items() if k != "extra"})
    return rec


def read_footprint(r: RowReader) -> str | None:
    """The row's polygon or multipolygon as GeoJSON text, or None (an error noted on the row)."""
    geom = r.row.geometry
    if geom is None:
        return None
    try:
        shp = shape(geom)
    except Exception as exc:  # shapely raises several types on malformed GeoJSON
        r.error(None, geom.get("type"), f"géométrie GeoJSON illisible : {exc}")
        return None
    if shp.geom_type not in ("Polygon", "MultiPolygon"):
        r.error(None, shp.geom_type, "polygone ou multipolygone attendu")
        return None
    minx, miny, maxx, maxy = shp.bounds
    if not (-180 <= minx <= maxx <= 180 and -90 <= miny <= maxy <= 90):
        r.error(None, f"{minx} {miny}", "coordonnées hors des bornes WGS84 (EPSG:4326 attendu)")
        return None
    return json.dumps(geom)
