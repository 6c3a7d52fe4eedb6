"""Land importers: DVF, friches (CNIG), vacant premises / public land, needs, QPV polygons.

Same conventions as the structure importer: the file is read by `read_table`, every row is
validated (errors name row, column, value, reason), and the write is one transaction that
changes nothing unless asked to skip invalid rows. Rows are keyed on (source, identifier) with
a content hash, so importing the same file twice changes nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from shapely.geometry import shape
from sqlalchemy.engine import Connection, Engine

from carteco.db import quote_ident
from carteco.geocoding.engine import LocalGeocoder
from carteco.importer.errors import ImportFileError, RowError
from carteco.importer.pipeline import ImportReport, tracked_run
from carteco.importer.readers import SourceTable, read_table
from carteco.land.parse import RowReader, departement_of, is_departement, resolve_columns
from carteco.text import fold

KINDS = ("dvf", "friches", "sites", "besoins", "qpv", "lovac")
Progress = Callable[[int, int], None]

# Natures of mutation whose value is a market price (exchanges and expropriations are not).
PRICED_NATURES = {
    "vente",
    "vente en l etat futur d achevement",
    "adjudication",
    "vente terrain a batir",
}
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
}
# LOVAC indicators kept per commune: (indicator, column key).
LOVAC_INDICATORS = (
    ("logements_vacants_2ans_pct", "vacants_2ans_pct"),
    ("logements_parc_prive", "parc_prive"),
)


@dataclass
class Parsed:
    """Valid records (keyed) and row errors of one file."""

    records: dict[str, dict[str, Any]]
    errors: list[RowError]
    rejected: int
    vintage: str | None = None


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
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImportFileError(str(path), f"lecture impossible : {exc.strerror}") from exc
    source = source or f"{kind}:{path.stem}"
    report = ImportReport(
        file=path.name, source=source, checksum=hashlib.sha256(data).hexdigest(), dry_run=dry_run
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
        if report.errors and not skip_invalid:
            report.status = "rejected"
            report.message = f"{report.rejected} ligne(s) invalide(s) : rien n'a été écrit"
        else:
            with engine.connect() as conn, conn.begin() as trans:
                conn.execute(
                    sa.text("SELECT pg_advisory_xact_lock(hashtext('carteco-land:' || :s))"),
                    {"s": source},
                )
                WRITERS[kind](conn, source, parsed, report)
                _record_layer(conn, kind, source, description, vintage, report, parsed)
                if dry_run:
                    trans.rollback()
                    report.status = "dry_run"
                else:
                    report.status = "succeeded"
    return report


def _columns(kind: str, file: str, table: SourceTable) -> dict[str, str]:
    columns = resolve_columns(table.headers, ALIASES[kind])
    missing = [c for c in REQUIRED[kind] if c not in columns]
    if missing:
        raise ImportFileError(
            file,
            "colonne(s) obligatoire(s) absente(s) : "
            + ", ".join(ALIASES[kind][c][0] for c in missing),
            row=1,
        )
    return columns


def _hash(values: dict[str, Any]) -> str:
    return hashlib.sha256(
        json.dumps(values, sort_keys=True, default=str, ensure_ascii=False).encode()
    ).hexdigest()


def _tick(progress: Progress | None, i: int, n: int) -> None:
    if progress and (i % 500 == 0 or i == n):
        progress(i, n)


# ---------------------------------------------------------------- DVF


def _parse_dvf(
    conn: Connection, file: str, table: SourceTable, progress: Progress | None
) -> Parsed:
    cols = _columns("dvf", file, table)
    errors: list[RowError] = []
    rejected = 0
    groups: dict[str, list[dict[str, Any]]] = {}
    for i, row in enumerate(table.rows, start=1):
        r = RowReader(row, cols)
        if "__width__" in row.values:
            r.error(None, None, str(row.values["__width__"]))
        mid = r.text("id_mutation", required=True)
        date = r.date("date_mutation", required=True)
        value = r.number("valeur_fonciere")
        commune = r.insee("code_commune", required=True)
        disp: dict[str, Any] = {
            "row": row.number,
            "id_mutation": mid,
            "date": date,
            "nature": r.text("nature_mutation") or "Vente",
            "value": value,
            "raw": {"date": r.raw("date_mutation"), "value": r.raw("valeur_fonciere")},
            "type": fold(r.raw("type_local")),
            "bati": r.number("surface_bati"),
            "terrain": r.number("surface_terrain"),
            "commune": commune,
            "parcelle": r.raw("id_parcelle"),
            "culture": r.raw("nature_culture"),
            # What identifies one local within a mutation in geo-dvf: its rows repeat per crop.
            "local_key": (
                r.raw("numero_disposition"),
                r.raw("id_parcelle"),
                fold(r.raw("type_local")),
                r.raw("surface_bati"),
                r.raw("lot1_numero"),
                r.raw("nombre_pieces"),
            ),
            "qp": r.text("code_qp"),
            "point": r.point(),
            "dep": r.text("code_departement"),
        }
        _tick(progress, i, len(table.rows))
        if r.errors:
            errors.extend(r.errors)
            rejected += 1
            continue
        assert mid is not None
        group = groups.setdefault(mid, [])
        first = group[0] if group else None
        # Dispositions of one mutation repeat its date, value and commune; a mismatch means
        # the rows were not one sale and the price would be wrong.
        if first is not None:
            for key, label in (("date", "date"), ("value", "valeur foncière")):
                if first[key] != disp[key]:
                    col = cols["date_mutation" if key == "date" else "valeur_fonciere"]
                    errors.append(
                        RowError(
                            row.number,
                            col,
                            disp["raw"][key],
                            f"{label} différente de la ligne {first['row']} "
                            f"de la même mutation {mid}",
                        )
                    )
                    rejected += 1
                    break
            else:
                group.append(disp)
            continue
        group.append(disp)
    records = {mid: _fold_mutation(mid, rows) for mid, rows in groups.items()}
    return Parsed(records, errors, rejected)


def _fold_mutation(mid: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One transaction from the dispositions of a mutation (the value counts once)."""
    first = rows[0]
    types = sorted({_type_code(r["type"]) for r in rows if r["type"]})
    local_bati = _built_once([r for r in rows if _type_code(r["type"]) == "local"])
    # The land surface repeats on each local of a parcel, while a parcel of several crops
    # (nature de culture) has one row per crop: count each (parcel, crop, surface) once.
    parcels: set[tuple[str, str, float]] = set()
    for n, r in enumerate(rows):
        if r["terrain"]:
            parcels.add((r["parcelle"] or f"#{n}", r["culture"], r["terrain"]))
    terrain = sum(t for _p, _c, t in parcels)
    built = {t for t in types if t != "dependance"}
    if "local" in built and not built & {"appartement", "maison"}:
        kind = "local"
    elif not built and terrain > 0:
        kind = "terrain"
    elif built and built <= {"appartement", "maison"}:
        kind = "logement"
    elif "local" in built:
        kind = "mixte"
    else:
        kind = "autre"
    value = first["value"]
    price = basis = None
    if value and value > 0 and fold(first["nature"]) in PRICED_NATURES:
        if kind == "local" and local_bati > 0:
            price, basis = value / local_bati, "bati"
        elif kind == "terrain" and terrain > 0:
            price, basis = value / terrain, "terrain"
    point = next((r["point"] for r in rows if r["point"]), None)
    qp = next((r["qp"] for r in rows if r["qp"]), None)
    rec = {
        "id_mutation": mid,
        "date_mutation": first["date"],
        "year": first["date"].year,
        "nature_mutation": first["nature"],
        "valeur_fonciere": value,
        "kind": kind,
        "types_local": types,
        "dispositions": len(rows),
        "surface_bati_m2": local_bati if kind in ("local", "mixte") else _sum_bati(rows),
        "surface_terrain_m2": terrain or None,
        "price_m2": round(price, 2) if price is not None else None,
        "price_basis": basis,
        "commune_code": first["commune"],
        "departement_code": first["dep"] or departement_of(first["commune"]),
        "qpv_code": qp,
        "lon": point[0] if point else None,
        "lat": point[1] if point else None,
        "extra": json.dumps({"lignes": [r["row"] for r in rows]}),
    }
    rec["content_hash"] = _hash({k: v for k, v in rec.items() if k != "extra"})
    return rec


def _built_once(rows: list[dict[str, Any]]) -> float:
    """Built surface of the locals of a mutation, each local counted once.

    geo-dvf repeats a local's row for every crop (nature de culture) of its parcel: rows alike
    but for the crop are one local. Rows alike *and* of the same crop are distinct locals (two
    identical shops sold together), so each is counted.
    """
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[r["local_key"]].append(r)
    total = 0.0
    for group in groups.values():
        crops = Counter(r["culture"] for r in group)
        locals_n = max(crops.values())
        total += (group[0]["bati"] or 0.0) * locals_n
    return total


def _sum_bati(rows: list[dict[str, Any]]) -> float | None:
    total = _built_once(rows)
    return total or None


def _type_code(folded: str) -> str:
    if folded.startswith("local"):
        return "local"
    if folded.startswith("appartement"):
        return "appartement"
    if folded.startswith("maison"):
        return "maison"
    if folded.startswith("dependance"):
        return "dependance"
    return folded or "autre"


_DVF_UPSERT = sa.text(
    """
    INSERT INTO land_transactions (source, id_mutation, date_mutation, year, nature_mutation,
        valeur_fonciere, kind, types_local, dispositions, surface_bati_m2, surface_terrain_m2,
        price_m2, price_basis, commune_code, departement_code, qpv_code, geom, content_hash, extra)
    VALUES (:source, :id_mutation, :date_mutation, :year, :nature_mutation, :valeur_fonciere,
        :kind, :types_local, :dispositions, :surface_bati_m2, :surface_terrain_m2, :price_m2,
        :price_basis, :commune_code, :departement_code, :qpv_code,
        CASE WHEN CAST(:lon AS float8) IS NULL THEN NULL
             ELSE ST_SetSRID(ST_MakePoint(:lon, :lat), 4326) END,
        :content_hash, CAST(:extra AS jsonb))
    ON CONFLICT (source, id_mutation) DO UPDATE SET date_mutation = EXCLUDED.date_mutation,
        year = EXCLUDED.year, nature_mutation = EXCLUDED.nature_mutation,
        valeur_fonciere = EXCLUDED.valeur_fonciere, kind = EXCLUDED.kind,
        types_local = EXCLUDED.types_local, dispositions = EXCLUDED.dispositions,
        surface_bati_m2 = EXCLUDED.surface_bati_m2,
        surface_terrain_m2 = EXCLUDED.surface_terrain_m2, price_m2 = EXCLUDED.price_m2,
        price_basis = EXCLUDED.price_basis, commune_code = EXCLUDED.commune_code,
        departement_code = EXCLUDED.departement_code, qpv_code = EXCLUDED.qpv_code,
        geom = EXCLUDED.geom, content_hash = EXCLUDED.content_hash, extra = EXCLUDED.extra
    """
)


def _write_dvf(conn: Connection, source: str, parsed: Parsed, report: ImportReport) -> None:
    _upsert(conn, "land_transactions", "id_mutation", _DVF_UPSERT, source, parsed, report)


def _upsert(
    conn: Connection,
    table: str,
    key: str,
    statement: sa.TextClause,
    source: str,
    parsed: Parsed,
    report: ImportReport,
) -> None:
    """Insert new keys, update changed ones (by content hash), count the unchanged."""
    tbl = quote_ident(table, ("land_transactions", "land_sites", "land_needs"))
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


# ---------------------------------------------------------------- sites (friches, premises)


def _site_record(r: RowReader, base: dict[str, Any]) -> dict[str, Any]:
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
    rec["content_hash"] = _hash({k: v for k, v in rec.items() if k != "extra"})
    return rec


def _footprint(r: RowReader) -> str | None:
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


def _parse_friches(
    conn: Connection, file: str, table: SourceTable, progress: Progress | None
) -> Parsed:
    cols = _columns("friches", file, table)
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
        footprint = _footprint(r)
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
                records[sid] = _site_record(
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
        _tick(progress, i, len(table.rows))
    return Parsed(records, errors, rejected)


def _friche_usages(site_type: str | None) -> list[str]:
    t = fold(site_type or "").removeprefix("friche ").strip()
    for key, usages in FRICHE_USAGES.items():
        if t.startswith(key):
            return list(usages)
    return list(DEFAULT_FRICHE_USAGES)


def _parse_sites(
    conn: Connection, file: str, table: SourceTable, progress: Progress | None
) -> Parsed:
    cols = _columns("sites", file, table)
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
            records[sid] = _site_record(r, base)
        _tick(progress, i, len(table.rows))
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


def _write_sites(conn: Connection, source: str, parsed: Parsed, report: ImportReport) -> None:
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
    _upsert(conn, "land_sites", "source_id", _SITE_UPSERT, source, parsed, report)
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


# ---------------------------------------------------------------- needs


def _parse_needs(
    conn: Connection, file: str, table: SourceTable, progress: Progress | None
) -> Parsed:
    cols = _columns("besoins", file, table)
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
            rec["content_hash"] = _hash({k: v for k, v in rec.items() if k != "extra"})
            records[nid] = rec
        _tick(progress, i, len(table.rows))
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


def _write_needs(conn: Connection, source: str, parsed: Parsed, report: ImportReport) -> None:
    _upsert(conn, "land_needs", "source_id", _NEED_UPSERT, source, parsed, report)
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


# ---------------------------------------------------------------- LOVAC


def _parse_lovac(
    conn: Connection, file: str, table: SourceTable, progress: Progress | None
) -> Parsed:
    """LOVAC per commune: share of private dwellings vacant 2 years or more, and the stock.

    A blank rate is statistical secrecy or a missing figure: it is kept as null (never 0).
    """
    cols = _columns("lovac", file, table)
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
        _tick(progress, i, len(table.rows))
    return Parsed(records, errors, rejected)


def _write_lovac(conn: Connection, source: str, parsed: Parsed, report: ImportReport) -> None:
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


# ---------------------------------------------------------------- QPV


def _parse_qpv(
    conn: Connection, file: str, table: SourceTable, progress: Progress | None
) -> Parsed:
    if table.format != "geojson":
        raise ImportFileError(file, "les QPV s'importent depuis un GeoJSON de polygones")
    cols = _columns("qpv", file, table)
    records: dict[str, dict[str, Any]] = {}
    errors: list[RowError] = []
    rejected = 0
    for i, row in enumerate(table.rows, start=1):
        r = RowReader(row, cols)
        code = (r.text("code", required=True) or "").upper()
        footprint = _footprint(r)
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
            rec["content_hash"] = _hash(rec)
            records[code] = rec
        _tick(progress, i, len(table.rows))
    return Parsed(records, errors, rejected)


def _write_qpv(conn: Connection, source: str, parsed: Parsed, report: ImportReport) -> None:
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


# ---------------------------------------------------------------- provenance


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
    "dvf": _parse_dvf,
    "friches": _parse_friches,
    "sites": _parse_sites,
    "besoins": _parse_needs,
    "qpv": _parse_qpv,
    "lovac": _parse_lovac,
}
WRITERS: dict[str, Callable[[Connection, str, Parsed, ImportReport], None]] = {
    "dvf": _write_dvf,
    "friches": _write_sites,
    "sites": _write_sites,
    "besoins": _write_needs,
    "qpv": _write_qpv,
    "lovac": _write_lovac,
}
