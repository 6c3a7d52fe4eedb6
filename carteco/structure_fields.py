"""One validator for a structure's fields, shared by every write path.

Import rows, `PATCH /structures/{id}`, `PATCH /structures/{id}/location` and the contribution
forms all go through `validate_structure_fields`: the same value is accepted or refused, with
the same reason, whichever way it comes in. No HTTP here: the API turns the errors into a
problem document, the importer into row errors.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from collections.abc import Mapping as AnyMapping
from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import Any

from carteco.families import family_from_category, family_from_label
from carteco.identifiers import clean_digits, rna_error, siren_error, siret_error
from carteco.models import ESS_FAMILIES
from carteco.opening_hours import OpeningHoursError
from carteco.opening_hours import parse as parse_opening_hours
from carteco.sectors import Taxonomy, load_taxonomy
from carteco.territory_levels import COMMUNE_CODE
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

MAX_CELL = 20_000
# Longest value of each text field (characters); other text fields: MAX_CELL.
MAX_LENGTH = {
    "name": 500,
    "legal_form": 200,
    "address_line": 500,
    "commune_name": 200,
    "website": 500,
    "phone": 40,
    "email": 254,
    "opening_hours": 500,
}
# Contact fields: kept in the structure's `extra` (one key each), editable like the others.
CONTACT_FIELDS = ("phone", "email", "opening_hours")
# Fields a person may change by hand (PATCH, contribution forms); the others come from sources.
EDITABLE_FIELDS = (
    "name",
    "description",
    "website",
    "address_line",
    "postcode",
    "commune_name",
    "legal_form",
    "ess_family",
    "esus",
    "status",
    "sectors",
    "opened_on",
    "closed_on",
    *CONTACT_FIELDS,
)

# Patterns spell digits [0-9]: `\d` and str.isdigit() also accept Arabic-Indic, fullwidth…
# digits, which no French code contains.
_POSTCODE = re.compile(r"[0-9]{5}")
_INSEE = COMMUNE_CODE  # used with fullmatch
_CATEGORY = re.compile(r"[0-9]{4}")
_ASCII_DIGITS = re.compile(r"[0-9]+")
# A cell that a spreadsheet would run as a formula (=CMD(), @SUM(…), +HYPERLINK(…)): refused, so
# that no export can carry it to another spreadsheet.
_FORMULA = re.compile(r"^\s*[=@]|^\s*[+\-]\s*[A-Za-z_][A-Za-z0-9_.]*\s*\(")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Either of the two above, in one pass: most cells match neither, and then one search proves it.
_FORMULA_OR_CONTROL = re.compile(f"{_FORMULA.pattern}|{_CONTROL.pattern}")
_SPACES = re.compile(r"\s+")
_SECTOR_SEPARATORS = re.compile(r"[;|\n]")
# Browsers drop leading C0 controls and spaces and any tab / newline inside a URL before
# reading its scheme ("java\tscript:" runs): compare after the same clean-up.
_URL_NOISE = re.compile(r"[\t\n\r]")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
_LEADING = "".join(chr(c) for c in range(0x21))  # C0 controls and space
_ACTIVE_SCHEMES = ("javascript", "vbscript", "livescript", "data")
# A website given without its scheme (www.exemple.fr/page), as people type it.
_BARE_HOST = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)+"
    r"(?:[/?#]\S*)?",
    re.ASCII,
)
_PHONE_CHARS = re.compile(r"[ .\-/()]")
_FR_PHONE = re.compile(r"0[1-9][0-9]{8}")
_INTL_PHONE = re.compile(r"\+[1-9][0-9]{6,14}")
_EMAIL = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~\-]+@[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)+",
    re.ASCII,
)
_HTTP_URL = re.compile(r"https?://[^\s/?#@]+(?:[/?#]\S*)?", re.IGNORECASE | re.ASCII)

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
# Not public: awaiting validation at the source, or deleted / refused / duplicate there.
_PENDING = {"pending", "en attente", "en attente de validation", "a valider"}
_HIDDEN = {"hidden", "masque", "masquee", "supprime", "supprimee", "refuse", "refusee", "doublon"}
_DATE_FORMATS = ("%Y-%m-%d", "%d/%m/%Y", "%Y-%m-%dT%H:%M:%S", "%Y")

TEXT_FIELDS = (
    "name",
    "legal_form",
    "description",
    "address_line",
    "commune_name",
    "website",
    "siret",
    "siren",
    "rna",
    "legal_category",
    "postcode",
    "insee_code",
)
# Every field the validator knows; "location" is a (lon, lat) pair in degrees.
FIELDS = (
    *TEXT_FIELDS,
    "ess_family",
    "esus",
    "sectors",
    "status",
    "opened_on",
    "closed_on",
    "location",
    *CONTACT_FIELDS,
)


@dataclass(frozen=True)
class FieldError:
    """Why one field's value was refused."""

    field: str
    value: str | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (the API's `errors[]` items)."""
        return asdict(self)


def cell_error(value: str) -> str | None:
    """Why a text value is refused anywhere (length, formula, control characters, script URL)."""
    if not value:
        return None
    # Fast path for the usual clean cell (every rule below holds): one regex search, and no
    # scheme to read without a colon. Any hit goes the long way for the precise reason.
    if len(value) <= MAX_CELL and ":" not in value and not _FORMULA_OR_CONTROL.search(value):
        return None
    if len(value) > MAX_CELL:
        return f"cellule trop longue ({len(value)} caractères, maximum {MAX_CELL})"
    if _FORMULA.match(value):
        return "valeur interprétable comme une formule de tableur (=, @, +…( ) : refusée"
    if _CONTROL.search(value):
        return "caractères de contrôle dans la cellule"
    scheme = url_scheme(value)
    if scheme in _ACTIVE_SCHEMES:
        return f"adresse « {scheme}: » refusée (seules http:// et https:// sont acceptées)"
    return None


def url_scheme(value: str) -> str | None:
    """The scheme a browser would read at the start of `value` (lower case), or None."""
    if ":" not in value:
        return None
    text = _URL_NOISE.sub("", value.lstrip(_LEADING))
    m = _SCHEME.match(text)
    return m.group(1).lower() if m else None


def website_error(value: str) -> str | None:
    """Why `value` is not a web address (http://, https://, or a bare host like www.x.fr)."""
    if _HTTP_URL.fullmatch(value) or (url_scheme(value) is None and _BARE_HOST.fullmatch(value)):
        return None
    return "adresse web attendue (http:// ou https://, ex. https://www.exemple.fr)"


def in_france(lon: float, lat: float) -> bool:
    """True when (lon, lat) falls in metropolitan or overseas France's boxes."""
    for lon_min, lat_min, lon_max, lat_max in FRANCE_BOXES:  # a plain loop: once per row
        if lon_min <= lon <= lon_max and lat_min <= lat <= lat_max:
            return True
    return False


def point_error(lon: float, lat: float) -> str | None:
    """Why (lon, lat) in degrees is not a point in France, with a hint at the usual mix-ups."""
    if not (math.isfinite(lon) and math.isfinite(lat)):
        return "coordonnées non finies"
    if in_france(lon, lat):
        return None
    if in_france(lat, lon):
        return "longitude et latitude semblent inversées"
    if L93_BOX[0] <= lon <= L93_BOX[2] and L93_BOX[1] <= lat <= L93_BOX[3]:
        return "coordonnées en mètres (Lambert-93 ?) dans des colonnes de degrés : nommez-les x / y"
    return "coordonnées hors de France"


def as_text(value: Any) -> str | None:
    """A scalar as text (spreadsheet numbers and dates included); None for a dict, list or bool."""
    if type(value) is str:  # the usual case, first (a str subclass takes the long way)
        return value.strip()
    if value is None:
        return ""
    if isinstance(value, bool) or isinstance(value, (dict, list, tuple, set)):
        return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        if value.is_integer():
            value = int(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (str, int, float)):
        return str(value).strip()
    return None


def _short(value: Any) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else type(value).__name__
    return text if len(text) <= 200 else text[:199] + "…"


class StructureValidator:
    """Validate and normalise a structure's fields against French conventions and the taxonomy."""

    def __init__(
        self,
        taxonomy: Taxonomy | None = None,
        sector_labels: AnyMapping[str, str | None] | None = None,
    ) -> None:
        self.taxonomy = taxonomy or load_taxonomy()
        self.codes = set(self.taxonomy.by_code())
        self.sector_index: dict[str, str] = self.taxonomy.label_index()
        for label, code in (sector_labels or {}).items():
            self.sector_index[fold(label)] = code or ""
        # Known answers, so that a row's many empty or absent fields and its few repeated
        # sector labels cost a lookup: a field's clean value for None and for "" when that
        # value is accepted (the checks are pure), and each label's code (bounded).
        self._blank_none: dict[str, Any] = {}
        self._blank_empty: dict[str, Any] = {}
        refused: list[str] = []

        def note(fld: str, value: Any, reason: str) -> None:
            refused.append(reason)

        for fld, check in _CHECKS.items():
            for blank in (None, ""):
                refused.clear()
                out = check(self, fld, blank, note)
                if not refused and out is not _INVALID and not isinstance(out, list):
                    (self._blank_none if blank is None else self._blank_empty)[fld] = out
        self._sector_codes: dict[str, str | None] = {}

    def validate(
        self, fields: AnyMapping[str, Any], labels: AnyMapping[str, str | None] | None = None
    ) -> tuple[dict[str, Any], list[FieldError]]:
        """The clean values of the fields given, and the errors; unknown fields are errors.

        `labels` names each field in errors (an import's column header); defaults to the field.
        """
        clean: dict[str, Any] = {}
        errors: list[FieldError] = []

        def err(fld: str, value: Any, reason: str) -> None:
            label = (labels or {}).get(fld) or fld
            errors.append(FieldError(label, _short(value), reason))

        blank_none, blank_empty = self._blank_none, self._blank_empty
        for fld, value in fields.items():
            if value is None and fld in blank_none:
                clean[fld] = blank_none[fld]
                continue
            if value == "" and fld in blank_empty:
                clean[fld] = blank_empty[fld]
                continue
            check = _CHECKS.get(fld)
            if check is None:
                err(fld, None, f"champ inconnu : {fld}")
                continue
            out = check(self, fld, value, err)
            if out is not _INVALID:
                clean[fld] = out
        siret, siren = clean.get("siret"), clean.get("siren")
        if siret and siren and not siret.startswith(siren):
            err("siren", siren, "le SIREN ne correspond pas aux 9 premiers chiffres du SIRET")
        if siret and "siren" in fields and not siren:
            clean["siren"] = siret[:9]
        return clean, errors

    # Each check returns the clean value, or _INVALID after calling err.
    def _text(self, fld: str, value: Any, err: Callable[[str, Any, str], None]) -> Any:
        text = value.strip() if type(value) is str else as_text(value)
        if text is None:
            err(fld, value, "texte attendu")
            return _INVALID
        reason = cell_error(text)
        if reason:
            err(fld, text, reason)
            return _INVALID
        limit = MAX_LENGTH.get(fld)
        if limit is not None and len(text) > limit:
            err(fld, text, f"texte trop long (plus de {limit} caractères)")
            return _INVALID
        return text

    def _name(self, fld: str, value: Any, err: Callable[[str, Any, str], None]) -> Any:
        text = self._text(fld, value, err)
        if text is _INVALID:
            return _INVALID
        if not text:
            err(fld, text, "nom de la structure manquant")
            return _INVALID
        return _SPACES.sub(" ", text)

    def _free_text(self, fld: str, value: Any, err: Callable[[str, Any, str], None]) -> Any:
        text = self._text(fld, value, err)
        if text is _INVALID:
            return _INVALID
        if fld == "address_line":
            text = _SPACES.sub(" ", text)
        return text or None

    def _website(self, fld: str, value: Any, err: Callable[[str, Any, str], None]) -> Any:
        text = self._text(fld, value, err)
        if text is _INVALID or not text:
            return None if text == "" else _INVALID
        reason = website_error(text)
        if reason:
            err(fld, text, reason)
            return _INVALID
        return text

    def _phone(self, fld: str, value: Any, err: Callable[[str, Any, str], None]) -> Any:
        text = self._text(fld, value, err)
        if text is _INVALID or not text:
            return None if text == "" else _INVALID
        digits = _PHONE_CHARS.sub("", text)
        if digits.startswith("+33") and len(digits) == 12:
            digits = "0" + digits[3:]
        if _FR_PHONE.fullmatch(digits):
            return " ".join(digits[i : i + 2] for i in range(0, 10, 2))
        if _INTL_PHONE.fullmatch(digits):
            return digits
        err(fld, text, "numéro de téléphone attendu (ex. 01 23 45 67 89 ou +33 1 23 45 67 89)")
        return _INVALID

    def _email(self, fld: str, value: Any, err: Callable[[str, Any, str], None]) -> Any:
        text = self._text(fld, value, err)
        if text is _INVALID or not text:
            return None if text == "" else _INVALID
        if not _EMAIL.fullmatch(text):
            err(fld, text, "adresse électronique attendue (ex. contact@exemple.fr)")
            return _INVALID
        return text

    def _opening_hours(self, fld: str, value: Any, err: Callable[[str, Any, str], None]) -> Any:
        text = self._text(fld, value, err)
        if text is _INVALID or not text:
            return None if text == "" else _INVALID
        try:
            parse_opening_hours(text)
        except OpeningHoursError as exc:
            err(
                fld,
                text,
                f"horaires illisibles : {exc} (syntaxe OpenStreetMap, ex. "
                "« Mo-Fr 09:00-12:00,14:00-18:00; Sa 10:00-12:00; PH off »)",
            )
            return _INVALID
        return text

    def _siret(self, fld: str, value: Any, err: Callable[[str, Any, str], None]) -> Any:
        raw = self._text(fld, value, err)
        if raw is _INVALID or not raw:
            return None if raw == "" else _INVALID
        siret = clean_digits(raw)
        if 13 <= len(siret) < 14 and _ASCII_DIGITS.fullmatch(siret):
            siret = siret.zfill(14)  # spreadsheets drop leading zeros
        reason = siret_error(siret)
        if reason:
            err(fld, raw, f"SIRET invalide : {reason}")
            return _INVALID
        return siret

    def _siren(self, fld: str, value: Any, err: Callable[[str, Any, str], None]) -> Any:
        raw = self._text(fld, value, err)
        if raw is _INVALID or not raw:
            return None if raw == "" else _INVALID
        siren = clean_digits(raw)
        if len(siren) == 8 and _ASCII_DIGITS.fullmatch(siren):
            siren = siren.zfill(9)
        reason = siren_error(siren)
        if reason:
            err(fld, raw, f"SIREN invalide : {reason}")
            return _INVALID
        return siren

    def _rna(self, fld: str, value: Any, err: Callable[[str, Any, str], None]) -> Any:
        raw = self._text(fld, value, err)
        if raw is _INVALID or not raw:
            return None if raw == "" else _INVALID
        rna = raw.upper().replace(" ", "")
        reason = rna_error(rna)
        if reason or not rna.isascii():
            err(fld, raw, f"RNA invalide : {reason or 'caractères non ASCII'}")
            return _INVALID
        return rna

    def _category(self, fld: str, value: Any, err: Callable[[str, Any, str], None]) -> Any:
        raw = self._text(fld, value, err)
        if raw is _INVALID or not raw:
            return None if raw == "" else _INVALID
        if not _CATEGORY.fullmatch(raw):
            err(fld, raw, "catégorie juridique INSEE attendue sur 4 chiffres")
            return _INVALID
        return raw

    def _postcode(self, fld: str, value: Any, err: Callable[[str, Any, str], None]) -> Any:
        raw = self._text(fld, value, err)
        if raw is _INVALID or not raw:
            return None if raw == "" else _INVALID
        pc = raw.replace(" ", "")
        if len(pc) == 4 and _ASCII_DIGITS.fullmatch(pc):
            pc = "0" + pc  # spreadsheets drop the leading zero of 01000…09999
        if not _POSTCODE.fullmatch(pc):
            err(fld, pc, "code postal attendu sur 5 chiffres")
            return _INVALID
        return pc

    def _insee(self, fld: str, value: Any, err: Callable[[str, Any, str], None]) -> Any:
        raw = self._text(fld, value, err)
        if raw is _INVALID or not raw:
            return None if raw == "" else _INVALID
        insee = raw.upper()
        if len(insee) == 4 and _ASCII_DIGITS.fullmatch(insee):
            insee = "0" + insee
        if not _INSEE.fullmatch(insee):
            err(fld, insee, "code INSEE attendu sur 5 caractères (ex. 93048, 2A004)")
            return _INVALID
        return insee

    def _family(self, fld: str, value: Any, err: Callable[[str, Any, str], None]) -> Any:
        raw = self._text(fld, value, err)
        if raw is _INVALID:
            return _INVALID
        if not raw:
            return "inconnue"
        family = raw if raw in ESS_FAMILIES else _FAMILY_WORDS.get(fold(raw))
        if family is None:
            err(fld, raw, "famille ESS inconnue (association, coopérative, mutuelle, fondation…)")
            return _INVALID
        return family

    def _bool(self, fld: str, value: Any, err: Callable[[str, Any, str], None]) -> Any:
        if isinstance(value, bool):
            return value
        text = as_text(value)
        f = fold(text) if text is not None else None
        if f in _TRUE:
            return True
        if f in _FALSE:
            return False
        err(fld, text if text is not None else value, "ESUS : valeur oui/non attendue")
        return _INVALID

    def _status(self, fld: str, value: Any, err: Callable[[str, Any, str], None]) -> Any:
        text = as_text(value)
        f = fold(text) if text is not None else None
        if f in _CLOSED:
            return "closed"
        if f in _ACTIVE:
            return "active"
        if f in _PENDING:
            return "pending"
        if f in _HIDDEN:
            return "hidden"
        err(
            fld,
            text if text is not None else value,
            "statut attendu : actif, fermé, en attente ou masqué",
        )
        return _INVALID

    def _date(self, fld: str, value: Any, err: Callable[[str, Any, str], None]) -> Any:
        if value in (None, ""):
            return None
        if isinstance(value, datetime):
            return value.date()
        if isinstance(value, date):
            return value
        text = as_text(value)
        if text is not None and text.isascii():
            candidate = text[:19] if "T" in text else text
            for fmt in _DATE_FORMATS:
                try:
                    return datetime.strptime(candidate, fmt).date()
                except ValueError:
                    continue
        err(fld, text if text is not None else value, "date illisible (AAAA-MM-JJ ou JJ/MM/AAAA)")
        return _INVALID

    def _sectors(self, fld: str, value: Any, err: Callable[[str, Any, str], None]) -> Any:
        if value in (None, ""):
            return []
        if isinstance(value, (list, tuple)):
            items: list[str] = []
            for item in value:
                text = as_text(item)
                if text is None:
                    err(fld, item, "secteur : texte attendu")
                    return _INVALID
                items.append(text)
        else:
            text = as_text(value)
            if text is None:
                err(fld, value, "secteurs : texte ou liste de textes attendu")
                return _INVALID
            items = _SECTOR_SEPARATORS.split(text)
        codes: list[str] = []
        ok = True
        for item in items:
            item = item.strip()
            if not item:
                continue
            found = self.sector_code(item)
            if found is None and "," in item:
                sub = [self.sector_code(p.strip()) for p in item.split(",") if p.strip()]
                if all(s is not None for s in sub):
                    codes.extend(s for s in sub if s)
                    continue
            if found is None:
                err(fld, item, "secteur inconnu de la taxonomie (voir `carteco sectors`)")
                ok = False
            elif found:
                codes.append(found)
        return sorted(set(codes)) if ok else _INVALID

    def sector_code(self, label: str) -> str | None:
        """Code for a code or label; "" for a label to ignore (région names); None if unknown."""
        cache = self._sector_codes
        if label in cache:
            return cache[label]
        code = self._sector_code(label)
        if len(cache) < _SECTOR_CACHE_SIZE:  # bounded: a file of unique labels grows nothing
            cache[label] = code
        return code

    def _sector_code(self, label: str) -> str | None:
        if label in self.codes:
            return label
        f = fold(label)
        if f in self.sector_index:
            code = self.sector_index[f]
            if code and code not in self.codes:
                return None
            return code
        if f in self.taxonomy.ignored_labels:
            return ""
        return None

    def _location(self, fld: str, value: Any, err: Callable[[str, Any, str], None]) -> Any:
        if value is None:
            return None
        try:
            lon, lat = value
            ok = all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in (lon, lat))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            err(fld, str(value)[:80], "coordonnées illisibles (longitude, latitude attendues)")
            return _INVALID
        reason = point_error(float(lon), float(lat))
        if reason:
            err(fld, f"{lon}, {lat}", reason)
            return _INVALID
        return (round(float(lon), 7), round(float(lat), 7))


_INVALID: Any = object()
_SECTOR_CACHE_SIZE = 10_000
_Check = Callable[[StructureValidator, str, Any, Callable[[str, Any, str], None]], Any]
_CHECKS: dict[str, _Check] = {
    "name": StructureValidator._name,
    "legal_form": StructureValidator._free_text,
    "description": StructureValidator._free_text,
    "address_line": StructureValidator._free_text,
    "commune_name": StructureValidator._free_text,
    "website": StructureValidator._website,
    "siret": StructureValidator._siret,
    "siren": StructureValidator._siren,
    "rna": StructureValidator._rna,
    "legal_category": StructureValidator._category,
    "postcode": StructureValidator._postcode,
    "insee_code": StructureValidator._insee,
    "ess_family": StructureValidator._family,
    "esus": StructureValidator._bool,
    "sectors": StructureValidator._sectors,
    "status": StructureValidator._status,
    "opened_on": StructureValidator._date,
    "closed_on": StructureValidator._date,
    "location": StructureValidator._location,
    "phone": StructureValidator._phone,
    "email": StructureValidator._email,
    "opening_hours": StructureValidator._opening_hours,
}


def validate_structure_fields(
    fields: AnyMapping[str, Any], taxonomy: Taxonomy | None = None
) -> tuple[dict[str, Any], list[FieldError]]:
    """Clean values of a structure's fields and the list of errors (field, value, reason)."""
    return StructureValidator(taxonomy).validate(fields)


def derive_family(
    family: str | None,
    category: str | None,
    legal_form: str | None,
    ess_flag: bool | None = None,
) -> str:
    """The ESS family given (None: not given), else from the legal category, else the form.

    `ess_flag` is SIRENE's economieSocialeSolidaireUniteLegale: with it, a commercial company
    (category 5xxx that is not a cooperative) is "societe_commerciale_ess".
    """
    if family is None:
        family = family_from_category(category, ess_flag) if category else "inconnue"
    if family == "inconnue" and legal_form:
        family = family_from_label(legal_form)
    return family
