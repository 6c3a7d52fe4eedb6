"""Cell parsers shared by the land importers: numbers, dates, codes, points, enumerations."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from carteco.identifiers import clean_digits, siret_error
from carteco.importer.errors import RowError
from carteco.importer.readers import SourceRow
from carteco.territory_levels import COMMUNE_CODE, DEPARTEMENT_CODE
from carteco.text import fold, header_key

_INSEE = COMMUNE_CODE
_DEP = DEPARTEMENT_CODE
_WKT_POINT = re.compile(r"^\s*point\s*\(\s*([-\d.eE+]+)\s+([-\d.eE+]+)\s*\)\s*$", re.IGNORECASE)


class RowReader:
    """Read typed cells of one row, collecting RowErrors instead of raising."""

    def __init__(self, row: SourceRow, columns: dict[str, str]) -> None:
        self.row = row
        self.columns = columns
        self.errors: list[RowError] = []

    def raw(self, key: str) -> str:
        """The stripped text of a logical column ('' when absent)."""
        col = self.columns.get(key)
        if col is None:
            return ""
        value = self.row.values.get(col)
        return "" if value is None else str(value).strip()

    def error(self, key: str | None, value: Any, reason: str) -> None:
        """Record one error on this row."""
        col = self.columns.get(key, key) if key else None
        self.errors.append(
            RowError(self.row.number, col, None if value is None else str(value), reason)
        )

    def text(self, key: str, required: bool = False) -> str | None:
        """A non-empty text, or None (an error when required)."""
        value = self.raw(key)
        if not value:
            if required:
                self.error(key, None, "valeur obligatoire manquante")
            return None
        return value

    def number(self, key: str, required: bool = False, minimum: float | None = 0.0) -> float | None:
        """A decimal number (French comma accepted, spaces ignored)."""
        value = self.raw(key)
        if not value:
            if required:
                self.error(key, None, "nombre obligatoire manquant")
            return None
        text = value.replace("\u00a0", "").replace(" ", "").replace("€", "").replace(",", ".")
        try:
            number = float(text)
        except ValueError:
            self.error(key, value, "nombre attendu")
            return None
        if number != number or number in (float("inf"), float("-inf")):
            self.error(key, value, "nombre attendu")
            return None
        if minimum is not None and number < minimum:
            self.error(key, value, f"nombre supérieur ou égal à {minimum:g} attendu")
            return None
        return number

    def date(self, key: str, required: bool = False) -> dt.date | None:
        """A date as AAAA-MM-JJ or JJ/MM/AAAA."""
        value = self.raw(key)
        if not value:
            if required:
                self.error(key, None, "date obligatoire manquante")
            return None
        for fmt in ("%Y-%m-%d", "%d/%m/%Y", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"):
            try:
                return dt.datetime.strptime(value, fmt).date()
            except ValueError:
                continue
        self.error(key, value, "date attendue (AAAA-MM-JJ ou JJ/MM/AAAA)")
        return None

    def insee(self, key: str, required: bool = False) -> str | None:
        """An INSEE commune code (5 characters; a lost leading zero is restored)."""
        value = self.raw(key).upper()
        if not value:
            if required:
                self.error(key, None, "code INSEE obligatoire manquant")
            return None
        if value.isdigit() and len(value) == 4:
            value = "0" + value
        if not _INSEE.match(value):
            self.error(key, value, "code INSEE attendu sur 5 caractères (ex. 31555, 2A004)")
            return None
        return value

    def siret(self, key: str) -> str | None:
        """A SIRET checked with the Luhn rule, or None."""
        value = self.raw(key)
        if not value:
            return None
        digits = clean_digits(value)
        reason = siret_error(digits)
        if reason:
            self.error(key, value, f"SIRET invalide : {reason}")
            return None
        return digits

    def point(
        self, lon_key: str = "longitude", lat_key: str = "latitude"
    ) -> tuple[float, float] | None:
        """A WGS84 point from two columns (both or none), checked against the valid range."""
        lon_raw, lat_raw = self.raw(lon_key), self.raw(lat_key)
        if not lon_raw and not lat_raw:
            wkt = self.raw("geompoint")
            m = _WKT_POINT.match(wkt) if wkt else None
            if wkt and not m:
                self.error("geompoint", wkt, "point WKT attendu : Point (lon lat)")
            if not m:
                return None
            lon_raw, lat_raw = m.group(1), m.group(2)
        if not lon_raw or not lat_raw:
            self.error(
                lon_key if not lon_raw else lat_key, None, "longitude et latitude vont ensemble"
            )
            return None
        lon = self.number(lon_key, minimum=None) if self.raw(lon_key) else _float(lon_raw)
        lat = self.number(lat_key, minimum=None) if self.raw(lat_key) else _float(lat_raw)
        if lon is None or lat is None:
            return None
        if not (-180 <= lon <= 180 and -90 <= lat <= 90):
            self.error(
                lon_key, f"{lon} {lat}", "coordonnées hors des bornes WGS84 (lon/lat inversées ?)"
            )
            return None
        return lon, lat

    def choice(self, key: str, options: dict[str, str], required: bool = False) -> str | None:
        """A value from an enumeration, compared folded (accents, case, punctuation ignored)."""
        value = self.raw(key)
        if not value:
            if required:
                self.error(key, None, "valeur obligatoire manquante")
            return None
        code = options.get(fold(value))
        if code is None:
            allowed = ", ".join(sorted(set(options.values())))
            self.error(key, value, f"valeur inconnue (attendu : {allowed})")
        return code


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def resolve_columns(headers: list[str], aliases: dict[str, tuple[str, ...]]) -> dict[str, str]:
    """Logical column → actual header, matching folded header keys against the aliases."""
    by_key = {header_key(h): h for h in headers}
    out: dict[str, str] = {}
    for logical, names in aliases.items():
        for name in names:
            if name in by_key:
                out[logical] = by_key[name]
                break
    return out


def departement_of(commune_code: str) -> str:
    """Département code of an INSEE commune code (3 characters overseas)."""
    return commune_code[:3] if commune_code.startswith("97") else commune_code[:2]


def is_departement(code: str) -> bool:
    """Whether a text is a département code (01…95, 2A, 2B, 971…976)."""
    return bool(_DEP.match(code))
