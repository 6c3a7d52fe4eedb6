"""DVF importer: sales (valeurs foncières), one record per mutation, market natures priced."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carteco.importer.errors import RowError
from carteco.importer.pipeline import ImportReport
from carteco.importer.readers import SourceTable
from carteco.land.common import Parsed, Progress, columns, content_hash, tick, upsert
from carteco.land.parse import RowReader, departement_of
from carteco.text import fold

# Natures of mutation whose value is a market price (exchanges and expropriations are not).
PRICED_NATURES = {
    "vente",
    "vente en l etat futur d achevement",
    "adjudication",
    "vente terrain a batir",
}


def parse_dvf(conn: Connection, file: str, table: SourceTable, progress: Progress | None) -> Parsed:
    """DVF rows folded into one record per mutation, with row errors."""
    cols = columns("dvf", file, table)
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
        tick(progress, i, len(table.rows))
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
    rec["content_hash"] = content_hash({k: v for k, v in rec.items() if k != "extra"})
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


def write_dvf(conn: Connection, source: str, parsed: Parsed, report: ImportReport) -> None:
    """Upsert the mutations into land_transactions."""
    upsert(conn, "land_transactions", "id_mutation", _DVF_UPSERT, source, parsed, report)
