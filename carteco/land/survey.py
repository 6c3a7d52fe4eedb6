"""Needs survey: a structure declares a land need on the public form.

The declaration is a proposal (kind `land_need`) in the one moderation queue
(`carteco.proposals`); this module checks its fields and, once a moderator approves it, writes
it into `land_needs` under the source `enquete-besoins`, where the land diagnostics read it.
The contact details stay with the proposal (moderation only): the needs table, the reports
and their GeoJSON never hold them.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carteco.identifiers import clean_digits, siret_error
from carteco.land.common import content_hash
from carteco.land.parse import is_departement
from carteco.structure_fields import FieldError, cell_error, validate_structure_fields

SOURCE = "enquete-besoins"
DESCRIPTION = "Enquête de besoins fonciers (formulaire public de Carteco, déclarations modérées)"
KIND_LABELS = {
    "bureau": "Bureau",
    "atelier": "Atelier",
    "entrepot": "Entrepôt, stockage",
    "commerce": "Local commercial, boutique",
    "terrain_agricole": "Terrain agricole",
    "tiers_lieu": "Tiers-lieu",
}
# The form's fields, in its order, with their French labels (also the moderation diff's).
FIELD_LABELS = {
    "name": "Structure",
    "siret": "SIRET",
    "kind": "Type de local",
    "usage": "Usage prévu",
    "surface_min_m2": "Surface minimale (m²)",
    "surface_max_m2": "Surface maximale (m²)",
    "budget_rent_eur_month": "Loyer maximal (€/mois)",
    "budget_purchase_eur": "Prix d'achat maximal (€)",
    "territories": "Territoires souhaités",
    "territory_names": "Territoires souhaités (noms)",
    "departement_code": "Département",
    "max_distance_km": "Distance maximale (km)",
    "deadline": "Échéance",
    "contact_name": "Personne à contacter",
    "contact_email": "Courriel de contact",
    "contact_phone": "Téléphone de contact",
}
MAX_TEXT = 500
MAX_TERRITORIES = 20
_NUMBER = re.compile(r"^\d+(?:[.,]\d+)?$")
_WITH_DEP = re.compile(r"^(.+?)\s*\((\w{2,3})\)$")


def _text(form: dict[str, Any], key: str, errors: list[FieldError], limit: int) -> str | None:
    value = form.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        errors.append(FieldError(key, None, "texte attendu"))
        return None
    value = value.strip()
    if not value:
        return None
    if len(value) > limit:
        errors.append(FieldError(key, value[:50], f"{limit} caractères au plus"))
        return None
    why = cell_error(value)
    if why:
        errors.append(FieldError(key, value[:50], why))
        return None
    return value


def _number(form: dict[str, Any], key: str, errors: list[FieldError]) -> float | None:
    raw = _text(form, key, errors, 30)
    if raw is None:
        return None
    compact = raw.replace("\u202f", "").replace("\xa0", "").replace(" ", "")
    if not _NUMBER.match(compact):
        errors.append(FieldError(key, raw, "nombre positif attendu (chiffres seulement)"))
        return None
    return float(compact.replace(",", "."))


_TERRITORY = sa.text(
    """
    SELECT t.level, t.code, t.name,
           coalesce(t.departement_code,
                    (SELECT c.departement_code FROM territories c
                      WHERE c.level = 'commune' AND (c.ept_code = t.code OR c.epci_code = t.code)
                      ORDER BY c.population DESC NULLS LAST LIMIT 1)) AS departement_code,
           ST_X(ST_PointOnSurface(t.geom)) AS lon, ST_Y(ST_PointOnSurface(t.geom)) AS lat
      FROM territories t
     WHERE t.level IN ('commune', 'ept', 'epci')
       AND (t.code = :q OR lower(t.name) = lower(:q))
       AND (CAST(:dep AS text) IS NULL OR t.departement_code = :dep)
     ORDER BY t.level = 'commune' DESC, t.code
    """
)


def _territories(
    conn: Connection, raw: str | None, errors: list[FieldError]
) -> list[dict[str, Any]]:
    """Wished communes / EPT / EPCI from codes or exact names, each found in `territories`."""
    found: list[dict[str, Any]] = []
    if raw is None:
        errors.append(
            FieldError("territories", None, "indiquez au moins une commune ou un territoire")
        )
        return found
    parts = [p.strip() for p in re.split(r"[;,\n]", raw) if p.strip()]
    if len(parts) > MAX_TERRITORIES:
        errors.append(FieldError("territories", None, f"{MAX_TERRITORIES} territoires au plus"))
        return found
    for part in parts:
        query = part.upper() if part.isascii() and part.replace(" ", "").isalnum() else part
        if query.isdigit() and len(query) == 4:
            query = "0" + query
        # "Montreuil (93)": a name made unique by its département.
        named = _WITH_DEP.match(part)
        dep = named.group(2).upper() if named and is_departement(named.group(2).upper()) else None
        name = named.group(1).strip() if dep and named else part
        q = query if query.isdigit() else name
        rows = conn.execute(_TERRITORY, {"q": q, "dep": dep}).mappings().all()
        if not rows and is_departement(query):
            why = "un département est trop large : nommez des communes"
            errors.append(FieldError("territories", part, why))
            continue
        if not rows:
            errors.append(
                FieldError("territories", part, "commune ou territoire inconnu (nom exact ou code)")
            )
            continue
        if len({r["code"] for r in rows}) > 1 and not query.isdigit():
            codes = ", ".join(f"{r['name']} ({r['code']})" for r in rows[:4])
            why = f"nom ambigu : indiquez le code INSEE ou le département, ex. « {part} (93) » "
            errors.append(FieldError("territories", part, f"{why}({codes})"))
            continue
        if rows[0]["code"] not in {f["code"] for f in found}:
            found.append(dict(rows[0]))
    return found


def validate_need(
    conn: Connection, form: dict[str, Any], today: date | None = None
) -> tuple[dict[str, Any], list[FieldError]]:
    """The need a form declares, checked: (clean fields, errors)."""
    errors: list[FieldError] = []
    clean: dict[str, Any] = {}
    clean["name"] = _text(form, "name", errors, 200)
    if clean["name"] is None and not any(e.field == "name" for e in errors):
        errors.append(FieldError("name", None, "nom de la structure manquant"))
    siret = _text(form, "siret", errors, 30)
    if siret is not None:
        digits = clean_digits(siret)
        why = siret_error(digits)
        if why:
            errors.append(FieldError("siret", siret, why))
        clean["siret"] = digits
    kind = _text(form, "kind", errors, 30)
    if kind not in KIND_LABELS:
        errors.append(FieldError("kind", kind, "type de local à choisir dans la liste"))
    clean["kind"] = kind
    clean["usage"] = _text(form, "usage", errors, MAX_TEXT)
    for key in ("surface_min_m2", "surface_max_m2", "budget_rent_eur_month", "budget_purchase_eur"):
        clean[key] = _number(form, key, errors)
    smin, smax = clean["surface_min_m2"], clean["surface_max_m2"]
    if smin is not None and smax is not None and smax < smin:
        errors.append(FieldError("surface_max_m2", str(smax), "inférieure à la surface minimale"))
    distance = _number(form, "max_distance_km", errors)
    if distance == 0:
        errors.append(FieldError("max_distance_km", "0", "distance strictement positive attendue"))
    clean["max_distance_km"] = distance
    places = _territories(conn, _text(form, "territories", errors, 1000), errors)
    clean["territories"] = [p["code"] for p in places]
    clean["territory_names"] = [p["name"] for p in places]
    deps = [p["departement_code"] for p in places if p["departement_code"]]
    clean["departement_code"] = deps[0] if deps else None
    first = next((p for p in places if p["lon"] is not None), None)
    clean["location"] = [round(first["lon"], 6), round(first["lat"], 6)] if first else None
    clean["commune_code"] = next((p["code"] for p in places if p["level"] == "commune"), None)
    deadline = _text(form, "deadline", errors, 10)
    if deadline is not None:
        try:
            when = date.fromisoformat(deadline)
        except ValueError:
            errors.append(FieldError("deadline", deadline, "date attendue (AAAA-MM-JJ)"))
        else:
            if when < (today or date.today()):
                errors.append(FieldError("deadline", deadline, "échéance déjà passée"))
            clean["deadline"] = when.isoformat()
    clean.setdefault("deadline", None)
    clean["contact_name"] = _text(form, "contact_name", errors, 200)
    email = _text(form, "contact_email", errors, 254)
    if email is None and not any(e.field == "contact_email" for e in errors):
        errors.append(FieldError("contact_email", None, "courriel de contact manquant"))
    phone = _text(form, "contact_phone", errors, 30)
    checked, bad = validate_structure_fields(
        {k: v for k, v in (("email", email), ("phone", phone)) if v is not None}
    )
    errors += [FieldError(f"contact_{e.field}", e.value, e.reason) for e in bad]
    clean["contact_email"] = checked.get("email", email)
    clean["contact_phone"] = checked.get("phone", phone)
    return clean, errors


_INSERT = sa.text(
    """
    INSERT INTO land_needs (source, source_id, siret, structure_id, name, kind, surface_min_m2,
        surface_max_m2, budget_rent_eur_month, budget_purchase_eur, territories,
        max_distance_km, declared_on, commune_code, departement_code, geom, content_hash, extra)
    VALUES (:source, :source_id, CAST(:siret AS text),
        (SELECT id FROM structures WHERE siret = CAST(:siret AS text) ORDER BY id LIMIT 1),
        :name, :kind, :surface_min_m2, :surface_max_m2, :budget_rent_eur_month,
        :budget_purchase_eur, :territories, :max_distance_km, :declared_on, :commune_code,
        :departement_code,
        CASE WHEN CAST(:lon AS float8) IS NULL THEN NULL
             ELSE ST_SetSRID(ST_MakePoint(:lon, :lat), 4326) END,
        :content_hash, CAST(:extra AS jsonb))
    ON CONFLICT (source, source_id) DO NOTHING
    RETURNING id
    """
)
_LAYER = sa.text(
    """
    INSERT INTO land_layers (source, kind, description, vintage, file_name, checksum, rows)
    VALUES (:s, 'besoins', :d, NULL, 'formulaire /besoins-fonciers', :c,
            (SELECT count(*) FROM land_needs WHERE source = :s))
    ON CONFLICT (source) DO UPDATE SET rows = EXCLUDED.rows, loaded_at = now()
    """
)


def write_need(
    conn: Connection, proposal_id: int, fields: dict[str, Any], today: date | None = None
) -> int | None:
    """Write an approved declaration into land_needs; the need's id (None if already there)."""
    point = fields.get("location") or [None, None]
    rec = {
        "source": SOURCE,
        "source_id": f"enquete-{proposal_id}",
        "siret": fields.get("siret"),
        "name": fields["name"],
        "kind": fields["kind"],
        "surface_min_m2": fields.get("surface_min_m2"),
        "surface_max_m2": fields.get("surface_max_m2"),
        "budget_rent_eur_month": fields.get("budget_rent_eur_month"),
        "budget_purchase_eur": fields.get("budget_purchase_eur"),
        "territories": list(fields.get("territories") or []),
        "max_distance_km": fields.get("max_distance_km"),
        "declared_on": today or date.today(),
        "commune_code": fields.get("commune_code"),
        "departement_code": fields.get("departement_code"),
        "lon": point[0],
        "lat": point[1],
    }
    # The proposal keeps the contact; the need only says where it comes from and its terms.
    extra = {"proposition": proposal_id, "usage": fields.get("usage"),
             "echeance": fields.get("deadline")}  # fmt: skip
    rec["content_hash"] = content_hash({k: v for k, v in rec.items()})
    rec["extra"] = json.dumps(extra, ensure_ascii=False)
    new_id = conn.execute(_INSERT, rec).scalar()
    conn.execute(
        _LAYER, {"s": SOURCE, "d": DESCRIPTION, "c": hashlib.sha256(SOURCE.encode()).hexdigest()}
    )
    return None if new_id is None else int(new_id)
