"""Row validation: turn one mapped input row into a registry record, or say precisely why not."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import date, datetime, time
from functools import lru_cache
from typing import Any

from carteco.importer.errors import RowError
from carteco.importer.mapping import Mapping
from carteco.importer.readers import SourceRow
from carteco.sectors import Taxonomy
from carteco.structure_fields import (
    FRANCE_BOXES,
    L93_BOX,
    MAX_CELL,
    TEXT_FIELDS,
    StructureValidator,
    as_text,
    cell_error,
    derive_family,
    in_france,
    point_error,
)
from carteco.text import fold

# SIRENE writes economieSocialeSolidaireUniteLegale as O/N; other sources use oui/non, true/false.
_FLAG_TRUE = {"o", "oui", "true", "vrai", "1", "yes", "y"}
_FLAG_FALSE = {"n", "non", "false", "faux", "0", "no"}

# Re-exported: callers import them from here since the importer came first.
__all__ = ["FRANCE_BOXES", "L93_BOX", "MAX_CELL", "RowValidator", "cell_error", "in_france"]

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
        return content_hash(record_json(self.values))


def record_json(values: dict[str, Any]) -> str:
    """A record's values as canonical JSON: what its content hash is computed on."""
    return json.dumps(values, sort_keys=True, default=str, ensure_ascii=False)


def content_hash(blob: str) -> str:
    """The content hash of a record's canonical JSON."""
    return hashlib.sha256(blob.encode()).hexdigest()


class RowValidator:
    """Validate rows of one file against the mapping, the taxonomy and French conventions.

    The source-specific work (columns, address parts, coordinate columns, extra columns) is
    done here; every field's rule is the shared one, `carteco.structure_fields`.
    """

    def __init__(self, mapping: Mapping, columns: dict[str, str], taxonomy: Taxonomy) -> None:
        self.mapping = mapping
        self.columns = columns
        self.taxonomy = taxonomy
        self.fields = StructureValidator(taxonomy, mapping.sectors)
        self.mapped_headers = set(columns.values())
        # Columns the field validator checks itself (no second, identical error).
        self.field_headers = {columns[f] for f in TEXT_FIELDS if f in columns}
        # Where each field comes from, resolved once per file rather than once per row.
        self._given = tuple((fld, *self._source(fld)) for fld in _GIVEN_FIELDS)
        self._source_only = tuple(
            (fld, *self._source(fld))
            for fld in _SOURCE_ONLY_FIELDS
            if fld in mapping.constants or fld in columns
        )

    def _source(self, fld: str) -> tuple[str | None, bool, Any]:
        """(column, is a constant, the constant) of a field."""
        if fld in self.mapping.constants:
            return None, True, self.mapping.constants[fld]
        return self.columns.get(fld), False, None

    def _raw(self, row: SourceRow, fld: str) -> tuple[str | None, Any]:
        if fld in self.mapping.constants:
            return None, self.mapping.constants[fld]
        header = self.columns.get(fld)
        if header is None:
            return None, None
        return header, row.values.get(header)

    def _text(self, row: SourceRow, fld: str) -> tuple[str | None, str]:
        header, value = self._raw(row, fld)
        return header, as_text(value) or ""

    def validate(self, row: SourceRow) -> tuple[Record | None, list[RowError]]:
        """A record for the row, or the list of its errors."""
        errors: list[RowError] = []
        n = row.number

        def err(column: str | None, value: Any, reason: str) -> None:
            errors.append(RowError(n, column, None if value is None else str(value), reason))

        if "__width__" in row.values:
            err(None, None, str(row.values["__width__"]))
        values = row.values
        field_headers = self.field_headers
        for header, value in values.items():
            if header in field_headers or header.startswith("__"):
                continue
            if isinstance(value, str):
                reason = cell_error(value)
                if reason:
                    err(header, value, reason)

        # Source-only fields (address parts, source id) are texts too: a dict is not one.
        for _fld, col, is_const, const in self._source_only:
            value = const if is_const else values.get(col) if col is not None else None
            if value is not None and as_text(value) is None:
                err(col, _short_repr(value), "texte attendu")
        given: dict[str, Any] = {}
        labels: dict[str, str | None] = {}
        for fld, col, is_const, const in self._given:
            labels[fld] = col
            given[fld] = const if is_const else values.get(col) if col is not None else None
        labels["name"] = labels["name"] or "nom"
        col, fam = self._raw(row, "ess_family")
        if fam not in (None, ""):
            labels["ess_family"], given["ess_family"] = col, fam
        given["address_line"], labels["address_line"] = self._address(row)
        v, field_errors = self.fields.validate(given, labels)
        for fe in field_errors:
            err(fe.field, fe.value, fe.reason)
        v["siren"] = v.get("siren") or (v["siret"][:9] if v.get("siret") else None)
        v["ess_family"] = derive_family(
            v.get("ess_family"),
            v.get("legal_category"),
            v.get("legal_form"),
            self._ess_flag(row, err),
        )
        v["lon"], v["lat"] = self._location(row, err)
        v["extra"] = self._extra(row, err)

        if errors:
            return None, errors
        v = {k: v.get(k) for k in RECORD_FIELDS}
        source_id = self._source_id(row, v)
        return Record(n, source_id, v), []

    def _ess_flag(self, row: SourceRow, err: Any) -> bool | None:
        """SIRENE's ESS flag (O/N, oui/non, true/false), None when absent or empty."""
        col, value = self._raw(row, "ess_flag")
        if isinstance(value, bool):
            return value
        text = as_text(value)
        if text is None or not text.strip():
            return None
        f = fold(text)
        if f in _FLAG_TRUE:
            return True
        if f in _FLAG_FALSE:
            return False
        err(col, text, "indicateur ESS (SIRENE) : O ou N attendu")
        return None

    def _address(self, row: SourceRow) -> tuple[str, str | None]:
        """The address line, from one column or from number + street (+ complement)."""
        col, line = self._text(row, "address_line")
        cols = [col] if line else []
        if not line:
            parts = []
            for fld in ("street_number", "street_name"):
                c, part = self._text(row, fld)
                if part:
                    parts.append(part)
                    cols.append(c)
            line = " ".join(parts)
        c, compl = self._text(row, "address_complement")
        if compl:
            line = f"{line}, {compl}" if line else compl
            cols.append(c)
        return line, "/".join(c for c in cols if c) or None

    def _extra(self, row: SourceRow, err: Any) -> dict[str, Any]:
        """Unmapped columns, kept as JSON (texts checked, depth and size bounded)."""
        extra: dict[str, Any] = {}
        if not self.mapping.keep_extra:
            return extra
        for h, val in row.values.items():
            if h in self.mapped_headers or h.startswith("__") or val in (None, ""):
                continue
            clean, reason = _json_value(val, 0)
            if reason:
                err(h, _short_repr(val), reason)
            else:
                extra[h] = clean
        return extra

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

    def _location(self, row: SourceRow, err: Any) -> tuple[float | None, float | None]:
        if row.geometry is not None:
            g = row.geometry
            if not isinstance(g, dict):
                err("geometry", _short_repr(g), "géométrie GeoJSON attendue (un objet Point)")
                return None, None
            if g.get("type") != "Point":
                err("geometry", _short_repr(g.get("type")), "géométrie attendue : Point")
                return None, None
            try:
                lon, lat = (float(c) for c in g["coordinates"][:2])
            except (TypeError, ValueError, KeyError):
                err("geometry", _short_repr(g.get("coordinates")), "coordonnées illisibles")
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
        reason = point_error(lon, lat)
        if reason:
            err(col, f"{lon}, {lat}", reason)
            return None, None
        return round(lon, 7), round(lat, 7)


# Fields given to the shared validator on every row (absent ones too: their defaults).
_GIVEN_FIELDS = (
    "siret",
    "siren",
    "rna",
    "name",
    "legal_category",
    "legal_form",
    "esus",
    "sectors",
    "description",
    "postcode",
    "commune_name",
    "insee_code",
    "website",
    "status",
    "opened_on",
    "closed_on",
)
# Fields only the importer reads (address parts, source id): texts too, a dict is not one.
_SOURCE_ONLY_FIELDS = (
    "address_line",
    "street_number",
    "street_name",
    "address_complement",
    "source_id",
)

# Unmapped values are stored as JSON: a bounded depth, so that no export or page recurses.
MAX_EXTRA_DEPTH = 16
MAX_EXTRA_ITEMS = 1000


def _json_value(value: Any, depth: int) -> tuple[Any, str | None]:
    """`value` as JSON-ready data, or the reason it is refused (never its Python repr)."""
    if value is None or isinstance(value, (bool, int)):
        return value, None
    if isinstance(value, float):
        return (value, None) if math.isfinite(value) else (None, "nombre non fini")
    if isinstance(value, str):
        return value, cell_error(value)
    if isinstance(value, (datetime, date, time)):
        return str(value), None
    if isinstance(value, (list, dict)):
        if depth >= MAX_EXTRA_DEPTH:
            return None, f"valeur trop imbriquée (plus de {MAX_EXTRA_DEPTH} niveaux)"
        if len(value) > MAX_EXTRA_ITEMS:
            return None, f"liste ou objet de plus de {MAX_EXTRA_ITEMS} éléments"
        items = value.items() if isinstance(value, dict) else enumerate(value)
        out: dict[str, Any] = {}
        for k, item in items:
            clean, reason = _json_value(item, depth + 1)
            if reason:
                return None, reason
            out[str(k)] = clean
        return (out if isinstance(value, dict) else list(out.values())), None
    return None, f"valeur de type {type(value).__name__} : texte ou nombre attendu"


def _short_repr(value: Any) -> str:
    """A short JSON rendering of a value, for an error message."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError, RecursionError):
        text = type(value).__name__
    return text if len(text) <= 80 else text[:79] + "…"


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
