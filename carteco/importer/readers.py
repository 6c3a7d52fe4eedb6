"""Readers for the formats CRESS staff bring: CSV, XLSX, GeoJSON and GoGoCarto exports."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from carteco.importer.errors import ImportFileError

MAX_XLSX_UNCOMPRESSED = 200 * 1024 * 1024
MAX_XLSX_RATIO = 200
csv.field_size_limit(64 * 1024 * 1024)


@dataclass
class SourceRow:
    """One input row: its number as a person would count it, its values and its geometry."""

    number: int
    values: dict[str, Any]
    geometry: dict[str, Any] | None = None


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
    suffix = path.suffix.lower()
    if data[:4] == b"PK\x03\x04" or suffix in (".xlsx", ".xlsm"):
        return "xlsx"
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    if suffix in (".json", ".geojson") or head[:1] in (b"{", b"["):
        try:
            doc = json.loads(data.decode("utf-8-sig"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ImportFileError(path.name, f"JSON illisible : {exc}") from exc
        if isinstance(doc, dict) and doc.get("type") == "FeatureCollection":
            return "geojson"
        if isinstance(doc, dict) and isinstance(doc.get("data"), list):
            return "gogocarto"
        if isinstance(doc, list) and doc and isinstance(doc[0], dict) and "geo" in doc[0]:
            return "gogocarto"
        raise ImportFileError(
            path.name, "JSON sans FeatureCollection ni liste « data » GoGoCarto reconnaissable"
        )
    return "csv"


def read_table(path: Path, data: bytes | None = None) -> SourceTable:
    """Read a file of any supported format into a SourceTable."""
    if data is None:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ImportFileError(str(path), f"lecture impossible : {exc.strerror}") from exc
    if not data.strip():
        raise ImportFileError(path.name, "fichier vide")
    fmt = detect_format(path, data)
    if fmt == "xlsx":
        return _read_xlsx(path, data)
    if fmt == "geojson":
        return _read_geojson(path, json.loads(data.decode("utf-8-sig")))
    if fmt == "gogocarto":
        return _read_gogocarto(path, json.loads(data.decode("utf-8-sig")))
    return _read_csv(path, data)


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
    lines = [ln for ln in text.splitlines()[:50] if ln.strip()]
    if not lines:
        return ","
    best, best_score = ",", -1.0
    for d in (";", ",", "\t", "|"):
        counts = [len(next(csv.reader([ln], delimiter=d))) for ln in lines[:20]]
        if counts[0] < 2:
            continue
        same = sum(1 for c in counts if c == counts[0]) / len(counts)
        score = same * 1000 + counts[0]
        if score > best_score:
            best, best_score = d, score
    return best


def check_headers(file: str, headers: list[str]) -> list[str]:
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


def _read_csv(path: Path, data: bytes) -> SourceTable:
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
        raise ImportFileError(path.name, f"CSV illisible : {exc}", row=1) from exc
    headers = check_headers(path.name, header)
    rows: list[SourceRow] = []
    width = len(headers)
    try:
        for cells in reader:
            number = reader.line_num
            if not any(c.strip() for c in cells):
                continue
            values: dict[str, Any] = {}
            if len(cells) != width:
                values["__width__"] = f"{len(cells)} champs au lieu de {width} (ligne mal formée)"
            for h, c in zip(headers, cells, strict=False):
                values[h] = c
            rows.append(SourceRow(number, values))
    except csv.Error as exc:
        raise ImportFileError(path.name, f"CSV illisible : {exc}", row=reader.line_num) from exc
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


def _read_xlsx(path: Path, data: bytes) -> SourceTable:
    import openpyxl

    _check_zip(path, data)
    try:
        wb = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds on corrupt files
        raise ImportFileError(path.name, f"fichier XLSX illisible : {exc}") from exc
    ws = wb.worksheets[0]
    it = ws.iter_rows(values_only=True)
    header: tuple[Any, ...] | None = None
    header_row = 0
    for i, cells in enumerate(it, start=1):
        if any(c not in (None, "") for c in cells):
            header, header_row = cells, i
            break
    if header is None:
        raise ImportFileError(path.name, "feuille vide")
    # Trailing empty header cells are common in spreadsheets: drop them.
    hdr = list(header)
    while hdr and hdr[-1] in (None, ""):
        hdr.pop()
    headers = check_headers(path.name, hdr)
    rows: list[SourceRow] = []
    for i, cells in enumerate(it, start=header_row + 1):
        if not any(c not in (None, "") for c in cells):
            continue
        values = {h: ("" if c is None else c) for h, c in zip(headers, cells, strict=False)}
        rows.append(SourceRow(i, values))
    wb.close()
    return SourceTable("xlsx", headers, rows)


def _read_geojson(path: Path, doc: dict[str, Any]) -> SourceTable:
    headers: list[str] = []
    seen: set[str] = set()
    rows: list[SourceRow] = []
    for i, feat in enumerate(doc.get("features") or [], start=1):
        if not isinstance(feat, dict):
            raise ImportFileError(path.name, "entité GeoJSON qui n'est pas un objet", row=i)
        props = feat.get("properties") or {}
        if "id" in feat and "id" not in props:
            props = {"id": feat["id"], **props}
        for k in props:
            if k not in seen:
                seen.add(k)
                headers.append(k)
        rows.append(SourceRow(i, dict(props), feat.get("geometry")))
    return SourceTable("geojson", headers, rows)


def _read_gogocarto(path: Path, doc: Any) -> SourceTable:
    elements = doc["data"] if isinstance(doc, dict) else doc
    headers: list[str] = []
    seen: set[str] = set()
    rows: list[SourceRow] = []
    for i, el in enumerate(elements, start=1):
        if not isinstance(el, dict):
            raise ImportFileError(path.name, "élément GoGoCarto qui n'est pas un objet", row=i)
        values: dict[str, Any] = {}
        geometry = None
        for k, v in el.items():
            if k == "geo" and isinstance(v, dict):
                lat, lon = v.get("latitude"), v.get("longitude")
                if lat not in (None, "") and lon not in (None, ""):
                    try:
                        geometry = {"type": "Point", "coordinates": [float(lon), float(lat)]}
                    except (TypeError, ValueError):
                        values["latitude"], values["longitude"] = lat, lon
            elif k == "address" and isinstance(v, dict):
                values["adresse"] = v.get("streetAddress") or ""
                values["code_postal"] = v.get("postalCode") or ""
                values["commune"] = v.get("addressLocality") or ""
            elif isinstance(v, dict):
                continue
            else:
                values[k] = v
        for k in values:
            if k not in seen:
                seen.add(k)
                headers.append(k)
        rows.append(SourceRow(i, values, geometry))
    return SourceTable("gogocarto", headers, rows)
