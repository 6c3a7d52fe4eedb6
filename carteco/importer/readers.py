"""Readers for the formats CRESS staff bring: CSV, XLSX, GeoJSON and GoGoCarto exports."""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from carteco.importer.errors import ImportFileError

MAX_XLSX_UNCOMPRESSED = 200 * 1024 * 1024
MAX_XLSX_RATIO = 200
# The csv module refuses a field longer than this; a cell longer than MAX_CELL (20,000
# characters) is a row error, a field beyond this limit a file error naming the line.
MAX_CSV_FIELD = 64 * 1024 * 1024
csv.field_size_limit(MAX_CSV_FIELD)
# The delimiter is guessed from the first lines only: a bounded prefix of the text.
_SNIFF_CHARS = 256 * 1024


@dataclass(frozen=True)
class ReadLimits:
    """Bounds on the work a file may ask for (settings CARTECO_IMPORT_MAX_ROWS / _COLUMNS)."""

    max_rows: int = 1_000_000
    max_columns: int = 1_000
    # CSV files of at least this many lines take the bulk path (CARTECO_BULK_IMPORT_MIN_ROWS).
    bulk_min_rows: int = 50_000

    @classmethod
    def from_settings(cls, settings: Any) -> ReadLimits:
        """The limits of a deployment's settings."""
        return cls(
            settings.import_max_rows, settings.import_max_columns, settings.bulk_import_min_rows
        )


@dataclass
class SourceRow:
    """One input row: its number as a person would count it, its values and its geometry."""

    number: int
    values: dict[str, Any]
    geometry: dict[str, Any] | None = None


def csv_row(number: int, cells: list[str], headers: Sequence[str]) -> SourceRow:
    """A CSV line's cells by header; a line with too few or too many cells is flagged."""
    values: dict[str, Any] = {}
    if len(cells) != len(headers):
        values["__width__"] = f"{len(cells)} champs au lieu de {len(headers)} (ligne mal formée)"
    for h, c in zip(headers, cells, strict=False):
        values[h] = c
    return SourceRow(number, values)


@dataclass
class SourceTable:
    """A file read into headers and rows."""

    format: str
    headers: list[str]
    rows: list[SourceRow]
    encoding: str | None = None
    delimiter: str | None = None
    notes: list[str] = field(default_factory=list)


def detect_format(path: Path, data: bytes) -> str:
    """csv, xlsx, geojson or gogocarto, from the name and the first bytes."""
    return _detect(path, data)[0]


def _detect(path: Path, data: bytes) -> tuple[str, Any]:
    """The format and, for JSON, the parsed document (parsed once)."""
    suffix = path.suffix.lower()
    if data[:4] == b"PK\x03\x04" or suffix in (".xlsx", ".xlsm"):
        return "xlsx", None
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    if suffix in (".json", ".geojson") or head[:1] in (b"{", b"["):
        doc = _load_json(path, data)
        if isinstance(doc, dict) and doc.get("type") == "FeatureCollection":
            return "geojson", doc
        if isinstance(doc, dict) and isinstance(doc.get("data"), list):
            return "gogocarto", doc
        if isinstance(doc, list) and doc and isinstance(doc[0], dict) and "geo" in doc[0]:
            return "gogocarto", doc
        raise ImportFileError(
            path.name, "JSON sans FeatureCollection ni liste « data » GoGoCarto reconnaissable"
        )
    return "csv", None


MAX_JSON_DEPTH = 64


def _load_json(path: Path, data: bytes) -> Any:
    """Parse JSON, refusing a nesting deeper than MAX_JSON_DEPTH before the parser recurses."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportFileError(path.name, f"JSON illisible : {exc}") from exc
    if json_too_deep(text, MAX_JSON_DEPTH):
        raise ImportFileError(path.name, f"JSON trop imbriqué (plus de {MAX_JSON_DEPTH} niveaux)")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ImportFileError(path.name, f"JSON illisible : {exc}") from exc
    except RecursionError as exc:  # belt and braces: json_depth bounds it first
        raise ImportFileError(path.name, "JSON trop imbriqué") from exc


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_INNERMOST = re.compile(r"\[[^\[\]{}]*\]|\{[^\[\]{}]*\}")


def json_too_deep(text: str, limit: int) -> bool:
    """True when arrays/objects nest deeper than `limit` (regex passes: no recursion, C speed)."""
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    for _ in range(limit):
        inner = _INNERMOST.sub("", brackets)
        if inner == brackets:  # nothing left, or unbalanced: json.loads says which
            return False
        brackets = inner
    return bool(brackets)


def read_table(
    path: Path, data: bytes | None = None, limits: ReadLimits | None = None
) -> SourceTable:
    """Read a file of any supported format into a SourceTable."""
    limits = limits or ReadLimits()
    if data is None:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ImportFileError(str(path), f"lecture impossible : {exc.strerror}") from exc
    if not data.strip():
        raise ImportFileError(path.name, "fichier vide")
    fmt, doc = _detect(path, data)
    if fmt == "xlsx":
        table = _read_xlsx(path, data, limits)
    elif fmt == "geojson":
        table = _read_geojson(path, doc)
    elif fmt == "gogocarto":
        table = _read_gogocarto(path, doc)
    else:
        table = _read_csv(path, data, limits)
    if len(table.headers) > limits.max_columns:
        raise ImportFileError(
            path.name,
            f"{len(table.headers)} colonnes : au plus {limits.max_columns} "
            "(réglage CARTECO_IMPORT_MAX_COLUMNS)",
            row=1,
        )
    if len(table.rows) > limits.max_rows:
        raise ImportFileError(path.name, _too_many_rows(limits))
    return table


def _too_many_rows(limits: ReadLimits) -> str:
    return f"plus de {limits.max_rows} lignes de données (réglage CARTECO_IMPORT_MAX_ROWS)"


def decode_text(data: bytes) -> tuple[str, str]:
    """Decode UTF-8 (with or without BOM), else Windows-1252; return (text, encoding)."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8"), "utf-8-sig"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace"), "cp1252"


def sniff_delimiter(text: str) -> str:
    """The delimiter among , ; tab | that splits the header line most consistently."""
    lines = [ln for ln in text[:_SNIFF_CHARS].splitlines()[:50] if ln.strip()]
    if not lines:
        return ","
    best, best_score = ",", -1.0
    for d in (";", ",", "\t", "|"):
        try:
            counts = [len(next(csv.reader([ln], delimiter=d))) for ln in lines[:20]]
        except csv.Error:
            continue
        if counts[0] < 2:
            continue
        same = sum(1 for c in counts if c == counts[0]) / len(counts)
        score = same * 1000 + counts[0]
        if score > best_score:
            best, best_score = d, score
    return best


def check_headers(file: str, headers: list[Any]) -> list[str]:
    """Strip headers and refuse empty or duplicate ones."""
    clean = [str(h).strip() if h is not None else "" for h in headers]
    seen: dict[str, int] = {}
    for i, h in enumerate(clean, start=1):
        if not h:
            raise ImportFileError(file, f"la colonne n° {i} n'a pas d'en-tête", row=1)
        if h in seen:
            raise ImportFileError(
                file, f"en-tête « {h} » en double (colonnes {seen[h]} et {i})", row=1
            )
        seen[h] = i
    return clean


def _csv_error(path: Path, exc: csv.Error, line: int) -> ImportFileError:
    if "field larger than field limit" in str(exc):
        return ImportFileError(
            path.name,
            f"cellule trop longue : un champ dépasse {MAX_CSV_FIELD // (1024 * 1024)} Mo "
            "(guillemet non fermé ?)",
            row=line,
        )
    return ImportFileError(path.name, f"CSV illisible : {exc}", row=line)


def _read_csv(path: Path, data: bytes, limits: ReadLimits) -> SourceTable:
    text, encoding = decode_text(data)
    if "\x00" in text:
        raise ImportFileError(path.name, "fichier binaire (octets nuls) : ce n'est pas un CSV")
    delimiter = sniff_delimiter(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=False)
    try:
        header = next(reader)
    except StopIteration as exc:
        raise ImportFileError(path.name, "fichier vide") from exc
    except csv.Error as exc:
        raise _csv_error(path, exc, 1) from exc
    if len(header) > limits.max_columns:
        raise ImportFileError(
            path.name,
            f"{len(header)} colonnes : au plus {limits.max_columns} "
            "(réglage CARTECO_IMPORT_MAX_COLUMNS)",
            row=1,
        )
    headers = check_headers(path.name, header)
    rows: list[SourceRow] = []
    try:
        for cells in reader:
            number = reader.line_num
            if not any(c.strip() for c in cells):
                continue
            if len(rows) >= limits.max_rows:
                raise ImportFileError(path.name, _too_many_rows(limits), row=number)
            rows.append(csv_row(number, cells, headers))
    except csv.Error as exc:
        raise _csv_error(path, exc, reader.line_num) from exc
    return SourceTable("csv", headers, rows, encoding=encoding, delimiter=delimiter)


def _check_zip(path: Path, data: bytes) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            total = sum(i.file_size for i in zf.infolist())
    except zipfile.BadZipFile as exc:
        raise ImportFileError(path.name, "fichier XLSX corrompu (archive zip illisible)") from exc
    if total > MAX_XLSX_UNCOMPRESSED or total > MAX_XLSX_RATIO * max(len(data), 1):
        raise ImportFileError(
            path.name, f"XLSX refusé : {total} octets une fois décompressé (bombe zip ?)"
        )


def _read_xlsx(path: Path, data: bytes, limits: ReadLimits) -> SourceTable:
    import openpyxl

    _check_zip(path, data)
    try:
        wb = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        ws = wb.worksheets[0]
    except Exception as exc:  # openpyxl raises many kinds on corrupt files
        raise ImportFileError(path.name, f"fichier XLSX illisible : {exc}") from exc
    try:
        return _xlsx_table(path, wb, ws, limits)
    except ImportFileError:
        raise
    except Exception as exc:  # a corrupt sheet is found while reading it
        raise ImportFileError(path.name, f"fichier XLSX illisible : {exc}") from exc
    finally:
        wb.close()


def _xlsx_table(path: Path, wb: Any, ws: Any, limits: ReadLimits) -> SourceTable:
    rows_iter = _xlsx_rows(path, wb, ws, limits)
    header: dict[int, Any] | None = None
    for _number, cells in rows_iter:
        header = cells
        break
    if header is None:
        raise ImportFileError(path.name, "feuille vide")
    # Trailing empty header cells are common in spreadsheets: the header ends at its last text.
    hdr = [header.get(c) for c in range(1, max(header) + 1)]
    headers = check_headers(path.name, hdr)
    width = len(headers)
    rows: list[SourceRow] = []
    for number, cells in rows_iter:
        if len(rows) >= limits.max_rows:
            raise ImportFileError(path.name, _too_many_rows(limits), row=number)
        values: dict[str, Any] = {h: cells.get(i, "") for i, h in enumerate(headers, start=1)}
        beyond = [c for c in cells if c > width]
        if beyond:
            ref = f"{_column_letter(min(beyond))}{number}"
            values["__width__"] = f"valeur hors des colonnes d'en-tête (cellule {ref})"
        rows.append(SourceRow(number, values))
    return SourceTable("xlsx", headers, rows)


def _xlsx_rows(
    path: Path, wb: Any, ws: Any, limits: ReadLimits
) -> Iterator[tuple[int, dict[int, Any]]]:
    """(row number, {column: value}) of the rows holding a value, in the sheet's order.

    The sheet's XML is read as it is: openpyxl's row iterator trusts the declared dimension
    (a single cell at XFD1048576 makes it pad a million rows of 16,384 cells), so work here
    is bounded by the cells actually written, never by their coordinates.
    """
    from openpyxl.worksheet._reader import WorkSheetParser

    with ws._get_source() as src:
        parser = WorkSheetParser(
            src,
            ws._shared_strings,
            data_only=True,
            epoch=wb.epoch,
            date_formats=wb._date_formats,
            timedelta_formats=wb._timedelta_formats,
        )
        for number, cells in parser.parse():
            values: dict[int, Any] = {}
            for cell in cells:
                value = cell["value"]
                if value is None or (isinstance(value, str) and not value.strip()):
                    continue
                column = cell["column"]
                if column > limits.max_columns:
                    ref = f"{_column_letter(column)}{number}"
                    raise ImportFileError(
                        path.name,
                        f"cellule {ref} au-delà de la colonne {limits.max_columns} "
                        "(réglage CARTECO_IMPORT_MAX_COLUMNS)",
                        row=number,
                    )
                values[column] = value
            if values:
                yield number, values


def _column_letter(column: int) -> str:
    from openpyxl.utils import get_column_letter

    try:
        return str(get_column_letter(column))
    except ValueError:
        return f"colonne {column}"


def _read_geojson(path: Path, doc: dict[str, Any]) -> SourceTable:
    features = doc.get("features")
    if features is None:
        features = []
    if not isinstance(features, list):
        raise ImportFileError(
            path.name,
            f"« features » doit être une liste d'entités GeoJSON, pas {_json_type(features)}",
        )
    headers: list[str] = []
    seen: set[str] = set()
    rows: list[SourceRow] = []
    for i, feat in enumerate(features, start=1):
        if not isinstance(feat, dict):
            raise ImportFileError(
                path.name,
                f"entité GeoJSON n° {i} qui n'est pas un objet ({_json_type(feat)})",
                row=i,
            )
        props = feat.get("properties")
        if props is None:
            props = {}
        if not isinstance(props, dict):
            raise ImportFileError(
                path.name,
                f"entité GeoJSON n° {i} : « properties » doit être un objet, "
                f"pas {_json_type(props)}",
                row=i,
            )
        if "id" in feat and "id" not in props:
            props = {"id": feat["id"], **props}
        for k in props:
            if k not in seen:
                seen.add(k)
                headers.append(k)
        # A geometry of the wrong shape is a row error (validate names it): kept as it is.
        rows.append(SourceRow(i, dict(props), feat.get("geometry")))
    return SourceTable("geojson", headers, rows)


# GoGoCarto element statuses (ElementStatus): -6 duplicate, -4 deleted, -3 refused by votes,
# -2 refused by an admin, -1 modifications pending, 0 creation pending, 1..7 validated, added
# or modified (by an admin, votes, the owner, a direct link) or imported.
_GOGOCARTO_STATUS = {
    **dict.fromkeys((-6, -4, -3, -2), "hidden"),
    **dict.fromkeys((-1, 0), "pending"),
    **dict.fromkeys(range(1, 8), "active"),
}


def gogocarto_status(value: Any) -> Any:
    """Carteco status of a GoGoCarto element status; None when absent, the value if unknown."""
    if value is None or value == "":
        return None
    try:
        code = int(str(value).strip())
    except ValueError:
        return value
    # An unknown code stays as given: validation rejects it, naming the column.
    return _GOGOCARTO_STATUS.get(code, str(value))


def _read_gogocarto(path: Path, doc: Any) -> SourceTable:
    elements = doc["data"] if isinstance(doc, dict) else doc
    headers: list[str] = []
    seen: set[str] = set()
    rows: list[SourceRow] = []
    for i, el in enumerate(elements, start=1):
        if not isinstance(el, dict):
            raise ImportFileError(
                path.name,
                f"élément GoGoCarto n° {i} qui n'est pas un objet ({_json_type(el)})",
                row=i,
            )
        values: dict[str, Any] = {}
        geometry = None
        for k, v in el.items():
            if k == "geo":
                if v in (None, ""):
                    continue
                if not isinstance(v, dict):
                    raise ImportFileError(
                        path.name,
                        f"élément GoGoCarto n° {i} : « geo » doit être un objet "
                        f"(latitude, longitude), pas {_json_type(v)}",
                        row=i,
                    )
                lat, lon = v.get("latitude"), v.get("longitude")
                if lat not in (None, "") and lon not in (None, ""):
                    try:
                        geometry = {"type": "Point", "coordinates": [float(lon), float(lat)]}
                    except (TypeError, ValueError):
                        values["latitude"], values["longitude"] = lat, lon
            elif k == "address":
                if v in (None, ""):
                    continue
                if not isinstance(v, dict):
                    raise ImportFileError(
                        path.name,
                        f"élément GoGoCarto n° {i} : « address » doit être un objet, "
                        f"pas {_json_type(v)}",
                        row=i,
                    )
                # Validation says "texte attendu" for a value of the wrong type.
                values["adresse"] = v.get("streetAddress") or ""
                values["code_postal"] = v.get("postalCode") or ""
                values["commune"] = v.get("addressLocality") or ""
            else:
                # Any other value is kept as it is: validation says "texte attendu" for a
                # dict where a text is expected, extra keeps it as (bounded) JSON.
                values[k] = v
        # The moderation status decides visibility: deleted, refused and duplicate elements
        # are hidden, pending ones pending. The raw "status" stays (extra) for reference.
        status = gogocarto_status(el.get("status"))
        if status is not None:
            values["statut_gogocarto"] = status
        for k in values:
            if k not in seen:
                seen.add(k)
                headers.append(k)
        rows.append(SourceRow(i, values, geometry))
    return SourceTable("gogocarto", headers, rows)


def _json_type(value: Any) -> str:
    """The JSON name of a value's type, in French."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "un booléen"
    if isinstance(value, (int, float)):
        return f"un nombre ({value})"
    if isinstance(value, str):
        return "un texte"
    if isinstance(value, list):
        return "une liste"
    if isinstance(value, dict):
        return "un objet"
    return type(value).__name__
