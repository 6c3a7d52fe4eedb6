"""Row validation: turn one mapped input row into a registry record, or say precisely why not."""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from typing import Any

from carteco.families import family_from_category, family_from_label
from carteco.identifiers import clean_digits, rna_error, siren_error, siret_error
from carteco.importer.errors import RowError
from carteco.importer.mapping import Mapping
from carteco.importer.readers import SourceRow
from carteco.sectors import Taxonomy
from carteco.text import fold

# Bounding boxes (lon_min, lat_min, lon_max, lat_max) of metropolitan France and overseas.
FRANCE_BOXES = (
    (-5.8, 41.2, 9.9, 51.3),  # métropole et Corse
    (-61.9, 15.8, -60.9, 16.6),  # Guadeloupe
    (-61.3, 14.3, -60.7, 14.95),  # Martinique
    (-54.7, 2.0, -51.5, 5.9),  # Guyane
    (55.1, -21.5, 55.9, -20.8),  # La Réunion
    (44.9, -13.1, 45.4, -12.5),  # Mayotte
    (-56.5, 46.7, -56.0, 47.2),  # Saint-Pierre-et-Miquelon
    (-63.2, 17.8, -62.7, 18.2),  # Saint-Martin, Saint-Barthélemy
)
# Lambert-93 validity area (metropolitan France), metres.
L93_BOX = (-400_000, 5_900_000, 1_400_000, 7_200_000)

_POSTCODE = re.compile(r"^[0-9]{5}$")
_INSEE = re.compile(r"^([0-9]{5}|2[AB][0-9]{3})$")
_CATEGORY = re.compile(r"^[0-9]{4}$")
_FAMILY_WORDS = {
    "association": "association",
    "cooperative": "cooperative",
    "cooperatives": "cooperative",
    "mutuelle": "mutuelle",
    "fondation": "fondation",
    "societe commerciale ess": "societe_commerciale_ess",
    "societe commerciale de l ess": "societe_commerciale_ess",
    "societe commerciale": "societe_commerciale_ess",
    "inconnue": "inconnue",
}
_TRUE = {"1", "oui", "o", "true", "vrai", "yes", "y", "x"}
_FALSE = {"0", "non", "n", "false", "faux", "no", ""}
_CLOSED = {"ferme", "fermee", "closed", "cessee", "inactive", "inactif", "f", "false", "0", "non"}
_ACTIVE = {"actif", "active", "ouvert", "ouverte", "open", "a", "true", "1", "oui", ""}

RECORD_FIELDS = (
    "siret",
    "siren",
    "rna",
    "name",
    "legal_category",
    "legal_form",
    "ess_family",
    "esus",
    "sectors",
    "description",
    "address_line",
    "postcode",
    "commune_name",
    "insee_code",
    "website",
    "status",
    "opened_on",
    "closed_on",
    "lon",
    "lat",
    "extra",
)


@dataclass
class Record:
    """A validated row, ready to upsert."""

    row: int
    source_id: str
    values: dict[str, Any]

    @property
    def content_hash(self) -> str:
        """Hash of every field the source provides (detects a changed source row)."""
        blob = json.dumps(self.values, sort_keys=True, default=str, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()


class RowValidator:
    """Validate rows of one file against the mapping, the taxonomy and French conventions."""

    def __init__(self, mapping: Mapping, columns: dict[str, str], taxonomy: Taxonomy) -> None:
        self.mapping = mapping
        self.columns = columns
        self.taxonomy = taxonomy
        self.sector_index = taxonomy.label_index()
        self.codes = set(taxonomy.by_code())
        for label, code in mapping.sectors.items():
            self.sector_index[fold(label)] = code or ""
        self.mapped_headers = set(columns.values())

    def _raw(self, row: SourceRow, fld: str) -> tuple[str | None, Any]:
        if fld in self.mapping.constants:
            return None, self.mapping.constants[fld]
        header = self.columns.get(fld)
        if header is None:
            return None, None
        return header, row.values.get(header)

    def _text(self, row: SourceRow, fld: str) -> tuple[str | None, str]:
        header, value = self._raw(row, fld)
        if value is None:
            return header, ""
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return header, str(value).strip()

    def validate(self, row: SourceRow) -> tuple[Record | None, list[RowError]]:
        """A record for the row, or the list of its errors."""
        errors: list[RowError] = []
        v: dict[str, Any] = {}
        n = row.number

        def err(column: str | None, value: Any, reason: str) -> None:
            errors.append(RowError(n, column, None if value is None else str(value), reason))

        if "__width__" in row.values:
            err(None, None, str(row.values["__width__"]))
        for header, value in row.values.items():
            if isinstance(value, str) and not header.startswith("__"):
                reason = cell_error(value)
                if reason:
                    err(header, value, reason)

        # Identifiers.
        col, raw = self._text(row, "siret")
        siret = clean_digits(raw) if raw else ""
        if siret and len(siret) < 14 and siret.isdigit() and len(siret) >= 13:
            siret = siret.zfill(14)  # spreadsheets drop leading zeros
        if siret:
            reason = siret_error(siret)
            if reason:
                err(col, raw, f"SIRET invalide : {reason}")
        v["siret"] = siret or None
        col, raw = self._text(row, "siren")
        siren = clean_digits(raw) if raw else ""
        if siren:
            if len(siren) == 8 and siren.isdigit():
                siren = siren.zfill(9)
            reason = siren_error(siren)
            if reason:
                err(col, raw, f"SIREN invalide : {reason}")
            elif siret and not siret.startswith(siren):
                err(col, raw, "le SIREN ne correspond pas aux 9 premiers chiffres du SIRET")
        v["siren"] = siren or (siret[:9] if siret else None)
        col, raw = self._text(row, "rna")
        rna = raw.upper().replace(" ", "")
        if rna:
            reason = rna_error(rna)
            if reason:
                err(col, raw, f"RNA invalide : {reason}")
        v["rna"] = rna or None

        col, name = self._text(row, "name")
        if not name:
            err(col or "nom", name, "nom de la structure manquant")
        elif len(name) > 500:
            err(col, name, "nom trop long (plus de 500 caractères)")
        v["name"] = re.sub(r"\s+", " ", name)

        # Legal form and ESS family.
        col, cat = self._text(row, "legal_category")
        if cat and not _CATEGORY.match(cat):
            err(col, cat, "catégorie juridique INSEE attendue sur 4 chiffres")
        v["legal_category"] = cat or None
        _, form = self._text(row, "legal_form")
        v["legal_form"] = form or None
        col, fam = self._text(row, "ess_family")
        family = None
        if fam:
            family = _FAMILY_WORDS.get(fold(fam))
            if family is None:
                err(
                    col,
                    fam,
                    "famille ESS inconnue (association, coopérative, mutuelle, fondation…)",
                )
        if family is None:
            family = family_from_category(cat) if cat else "inconnue"
        if family == "inconnue" and form:
            family = family_from_label(form)
        v["ess_family"] = family
        col, esus = self._text(row, "esus")
        v["esus"] = self._bool(esus, col, err, "ESUS")

        # Sectors.
        v["sectors"] = self._sectors(row, err)

        col, desc = self._text(row, "description")
        v["description"] = desc or None

        # Address.
        _, line = self._text(row, "address_line")
        if not line:
            _, num = self._text(row, "street_number")
            _, street = self._text(row, "street_name")
            line = " ".join(p for p in (num, street) if p)
        _, compl = self._text(row, "address_complement")
        if compl:
            line = f"{line}, {compl}" if line else compl
        v["address_line"] = re.sub(r"\s+", " ", line) or None
        col, pc = self._text(row, "postcode")
        pc = pc.replace(" ", "")
        if pc:
            if pc.isdigit() and len(pc) == 4:
                pc = "0" + pc
            if not _POSTCODE.match(pc):
                err(col, pc, "code postal attendu sur 5 chiffres")
        v["postcode"] = pc or None
        _, city = self._text(row, "commune_name")
        v["commune_name"] = city or None
        col, insee = self._text(row, "insee_code")
        insee = insee.upper()
        if insee:
            if insee.isdigit() and len(insee) == 4:
                insee = "0" + insee
            if not _INSEE.match(insee):
                err(col, insee, "code INSEE attendu sur 5 caractères (ex. 93048, 2A004)")
        v["insee_code"] = insee or None

        v["lon"], v["lat"] = self._location(row, err)

        _, site = self._text(row, "website")
        v["website"] = site or None
        col, status = self._text(row, "status")
        f = fold(status)
        if f in _CLOSED:
            v["status"] = "closed"
        elif f in _ACTIVE:
            v["status"] = "active"
        else:
            err(col, status, "statut attendu : actif ou fermé")
            v["status"] = "active"
        v["opened_on"] = self._date(row, "opened_on", err)
        v["closed_on"] = self._date(row, "closed_on", err)

        extra: dict[str, Any] = {}
        if self.mapping.keep_extra:
            for h, val in row.values.items():
                if h in self.mapped_headers or h.startswith("__") or val in (None, ""):
                    continue
                extra[h] = val if isinstance(val, (str, int, float, bool, list)) else str(val)
        v["extra"] = extra

        if errors:
            return None, errors
        source_id = self._source_id(row, v)
        return Record(n, source_id, v), []

    def _source_id(self, row: SourceRow, v: dict[str, Any]) -> str:
        _, sid = self._text(row, "source_id")
        if sid:
            return sid
        if v["siret"]:
            return v["siret"]
        if v["rna"]:
            return v["rna"]
        key = "|".join(
            fold(str(v.get(k) or "")) for k in ("name", "address_line", "postcode", "commune_name")
        )
        return "h:" + hashlib.sha1(key.encode()).hexdigest()[:16]

    def _bool(self, text: str, col: str | None, err: Any, what: str) -> bool:
        f = fold(text)
        if f in _TRUE:
            return True
        if f in _FALSE:
            return False
        err(col, text, f"{what} : valeur oui/non attendue")
        return False

    def _date(self, row: SourceRow, fld: str, err: Any) -> date | None:
        col, raw = self._raw(row, fld)
        if raw in (None, ""):
            return None
        if isinstance(raw, datetime):
            return raw.date()
        if isinstance(raw, date):
            return raw
        text = str(raw).strip()
        for fmt in ("%Y-%m-%d", "%d/%m/%Y", "%Y-%m-%dT%H:%M:%S", "%Y"):
            try:
                return datetime.strptime(text[:19] if "T" in text else text, fmt).date()
            except ValueError:
                continue
        err(col, text, "date illisible (AAAA-MM-JJ ou JJ/MM/AAAA)")
        return None

    def _sectors(self, row: SourceRow, err: Any) -> list[str]:
        col, raw = self._raw(row, "sectors")
        if raw in (None, ""):
            return []
        items: list[str] = (
            [str(x) for x in raw] if isinstance(raw, list) else re.split(r"[;|\n]", str(raw))
        )
        codes: list[str] = []
        for item in items:
            item = item.strip()
            if not item:
                continue
            found = self._sector_code(item)
            if found is None and "," in item:
                parts = [p.strip() for p in item.split(",") if p.strip()]
                sub = [self._sector_code(p) for p in parts]
                if all(s is not None for s in sub):
                    codes.extend(s for s in sub if s)
                    continue
            if found is None:
                err(col, item, "secteur inconnu de la taxonomie (voir `carteco sectors`)")
            elif found:
                codes.append(found)
        return sorted(set(codes))

    def _sector_code(self, label: str) -> str | None:
        """Code for a label; "" for a label to ignore (région names); None if unknown."""
        f = fold(label)
        if f in self.sector_index:
            code = self.sector_index[f]
            if code and code not in self.codes:
                return None
            return code
        if f in self.taxonomy.ignored_labels:
            return ""
        return None

    def _location(self, row: SourceRow, err: Any) -> tuple[float | None, float | None]:
        if row.geometry is not None:
            g = row.geometry
            if g.get("type") != "Point":
                err("geometry", g.get("type"), "géométrie attendue : Point")
                return None, None
            try:
                lon, lat = (float(c) for c in g["coordinates"][:2])
            except (TypeError, ValueError, KeyError):
                err("geometry", str(g.get("coordinates"))[:80], "coordonnées illisibles")
                return None, None
            return self._check_lonlat(lon, lat, "geometry", err)
        lat_col, lat_raw = self._raw(row, "latitude")
        lon_col, lon_raw = self._raw(row, "longitude")
        if _present(lat_raw) or _present(lon_raw):
            lat_n = _number(lat_raw)
            lon_n = _number(lon_raw)
            if lat_n is None:
                err(lat_col, lat_raw, "latitude : nombre illisible")
            if lon_n is None:
                err(lon_col, lon_raw, "longitude : nombre illisible")
            if lat_n is None or lon_n is None:
                return None, None
            return self._check_lonlat(lon_n, lat_n, f"{lon_col}/{lat_col}", err)
        x_col, x_raw = self._raw(row, "x")
        y_col, y_raw = self._raw(row, "y")
        if _present(x_raw) or _present(y_raw):
            x, y = _number(x_raw), _number(y_raw)
            if x is None or y is None:
                err(
                    x_col if x is None else y_col,
                    x_raw if x is None else y_raw,
                    "coordonnée Lambert-93 : nombre illisible",
                )
                return None, None
            if abs(x) <= 180 and abs(y) <= 90:
                err(
                    f"{x_col}/{y_col}",
                    f"{x_raw}, {y_raw}",
                    "x/y ressemblent à des degrés : utilisez les colonnes longitude/latitude",
                )
                return None, None
            if not (L93_BOX[0] <= x <= L93_BOX[2] and L93_BOX[1] <= y <= L93_BOX[3]):
                err(
                    f"{x_col}/{y_col}",
                    f"{x_raw}, {y_raw}",
                    "coordonnées hors de l'emprise du Lambert-93 (EPSG:2154)",
                )
                return None, None
            lon, lat = _l93_to_wgs84().transform(x, y)
            return self._check_lonlat(lon, lat, f"{x_col}/{y_col}", err)
        return None, None

    def _check_lonlat(
        self, lon: float, lat: float, col: str, err: Any
    ) -> tuple[float | None, float | None]:
        if not (math.isfinite(lon) and math.isfinite(lat)):
            err(col, f"{lon}, {lat}", "coordonnées non finies")
            return None, None
        if in_france(lon, lat):
            return round(lon, 7), round(lat, 7)
        if in_france(lat, lon):
            err(col, f"{lon}, {lat}", "longitude et latitude semblent inversées")
        elif L93_BOX[0] <= lon <= L93_BOX[2] and L93_BOX[1] <= lat <= L93_BOX[3]:
            err(
                col,
                f"{lon}, {lat}",
                "coordonnées en mètres (Lambert-93 ?) dans des colonnes de degrés : "
                "nommez-les x / y",
            )
        else:
            err(col, f"{lon}, {lat}", "coordonnées hors de France")
        return None, None


MAX_CELL = 20_000
# A cell that a spreadsheet would run as a formula (=CMD(), @SUM(…), +HYPERLINK(…)): refused at
# import, so that no export can carry it to another spreadsheet.
_FORMULA = re.compile(r"^\s*[=@]|^\s*[+\-]\s*[A-Za-z_][A-Za-z0-9_.]*\s*\(")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def cell_error(value: str) -> str | None:
    """Why a text cell is refused (too long, a spreadsheet formula, control characters)."""
    if len(value) > MAX_CELL:
        return f"cellule trop longue ({len(value)} caractères, maximum {MAX_CELL})"
    if _FORMULA.match(value):
        return "valeur interprétable comme une formule de tableur (=, @, +…( ) : refusée"
    if _CONTROL.search(value):
        return "caractères de contrôle dans la cellule"
    return None


def in_france(lon: float, lat: float) -> bool:
    """True when (lon, lat) falls in metropolitan or overseas France's boxes."""
    return any(b[0] <= lon <= b[2] and b[1] <= lat <= b[3] for b in FRANCE_BOXES)


def _present(value: Any) -> bool:
    return value is not None and str(value).strip() != ""


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = str(value or "").strip().replace("\u00a0", "").replace(" ", "")
    if not text:
        return None
    text = text.replace(",", ".")
    try:
        out = float(text)
    except ValueError:
        return None
    return out if math.isfinite(out) else None


@lru_cache(maxsize=1)
def _l93_to_wgs84():  # type: ignore[no-untyped-def]
    from pyproj import Transformer

    return Transformer.from_crs(2154, 4326, always_xy=True)
