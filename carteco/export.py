"""Downloads: GeoJSON and CSV streamed from a server-side cursor, GeoPackage/FlatGeobuf via pyogrio.

Every row is built by PostgreSQL (a Feature's JSON text, or a whole CSV line), so memory stays
constant whatever the size of the export. CSV cells that a spreadsheet would run as a formula
get a leading quote (the one rule of :func:`carteco.text.neutralise_formula`).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from carteco.collections import ARRAY, DATE, DATETIME, STRING, Collection
from carteco.features import Output, feature_sql, iter_features, iter_rows
from carteco.text import neutralise_formula_sql

FORMATS = {
    "geojson": ("application/geo+json", "geojson"),
    "csv": ("text/csv; charset=utf-8", "csv"),
    "gpkg": ("application/geopackage+sqlite3", "gpkg"),
    "fgb": ("application/flatgeobuf", "fgb"),
}
# RFC 7946 fixes GeoJSON to CRS84; Lambert-93 is offered in the other formats.
GEOJSON_CRS84 = (
    "un téléchargement GeoJSON est en CRS84 (RFC 7946) : pour Lambert-93 (EPSG:2154), "
    "choisir f=gpkg, fgb ou csv"
)
LICENCE_URLS = {
    "ODbL-1.0": "https://opendatacommons.org/licenses/odbl/1-0/",
    "etalab-2.0": "https://www.etalab.gouv.fr/licence-ouverte-open-licence/",
    "Licence Ouverte 2.0": "https://www.etalab.gouv.fr/licence-ouverte-open-licence/",
    "CC-BY-4.0": "https://creativecommons.org/licenses/by/4.0/",
}


@dataclass(frozen=True)
class Freshness:
    """When the data of a collection last changed, and how many rows it holds."""

    last_modified: datetime | None
    count: int

    def etag(self, *parts: str) -> str:
        """A strong ETag for a representation of this state (parts: collection, query...)."""
        h = hashlib.sha256()
        for p in (*parts, str(self.last_modified), str(self.count)):
            h.update(p.encode())
            h.update(b"\0")
        return '"' + h.hexdigest()[:32] + '"'


def freshness(conn: Connection, collection: Collection) -> Freshness:
    """Last change of a collection: max(updated_at) + count for structures, load time else."""
    if collection.table == "structures":
        row = conn.execute(sa.text("SELECT max(updated_at), count(*) FROM structures")).one()
    elif collection.table == "territories":
        row = conn.execute(
            sa.text(
                "SELECT (SELECT max(loaded_at) FROM reference_layers), "
                "(SELECT count(*) FROM territories WHERE level = :lvl)"
            ),
            {"lvl": collection.level},
        ).one()
    else:
        row = conn.execute(
            sa.text(
                "SELECT (SELECT max(loaded_at) FROM reference_layers), "
                "(SELECT count(*) FROM stations)"
            )
        ).one()
    return Freshness(row[0], int(row[1]))


def licence_link(licence: str, attribution: str) -> str:
    """The `Link` header value carrying the data licence."""
    url = LICENCE_URLS.get(licence, "https://spdx.org/licenses/" + licence + ".html")
    # Headers are Latin-1: the attribution goes in an RFC 8187 `title*`.
    title = quote(f"{licence} - {attribution}", safe="")
    return f'<{url}>; rel="license"; title="{licence}"; title*=UTF-8\'\'{title}'


def geojson_stream(
    engine: Engine,
    collection: Collection,
    where: str,
    binds: dict[str, Any],
    out: Output | None = None,
    limit: int | None = None,
    meta: dict[str, Any] | None = None,
) -> Iterator[bytes]:
    """An RFC 7946 FeatureCollection, yielded in chunks (licence/attribution at top level)."""
    head = {"type": "FeatureCollection", **(meta or {})}
    yield (json.dumps(head, ensure_ascii=False)[:-1] + ', "features": [').encode()
    first = True
    with engine.connect() as conn:
        for chunk in iter_features(conn, collection, where, binds, out, limit):
            text = ",".join(chunk)
            yield (text if first else "," + text).encode()
            first = False
    yield b"]}\n"


def _csv_cell(expr: str, text: bool) -> str:
    if not text:
        return f"coalesce(({expr})::text, '')"
    safe = neutralise_formula_sql(expr)
    return "coalesce('\"' || replace(" + safe + ", '\"', '\"\"') || '\"', '')"


def csv_columns(collection: Collection, out: Output | None = None) -> list[tuple[str, str, bool]]:
    """(header, SQL expression, is free text) of each CSV column, as `out` asks (CRS, fields)."""
    out = out or Output()
    srid = out.srid
    cols: list[tuple[str, str, bool]] = [
        (collection.id_column, collection.q(collection.id_column), collection.id_type == STRING)
    ]
    for c in collection.columns:
        if out.properties is not None and c.name not in out.properties:
            continue
        e = collection.q(c.name)
        if c.type == ARRAY:
            cols.append((c.name, f"array_to_string({e}, '|')", True))
        elif c.type == DATETIME:
            utc = f"to_char({e} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
            cols.append((c.name, utc, False))
        elif c.type == DATE:
            cols.append((c.name, f"to_char({e}, 'YYYY-MM-DD')", False))
        else:
            cols.append((c.name, e, c.type == STRING))
    g = collection.q("geom")
    if srid == 4326:
        x, y, digits = ("longitude", "latitude", 7)
    else:
        # A projected CRS (Lambert-93): metres, to the centimetre. `srid` comes from the
        # SUPPORTED_CRS allow-list (an int), never from the request text.
        g = f"ST_Transform({g}, {int(srid)})"
        x, y, digits = ("x", "y", 2)
    if collection.geometry_type == "Point":
        cols.append((x, f"round(ST_X({g})::numeric, {digits})", False))
        cols.append((y, f"round(ST_Y({g})::numeric, {digits})", False))
    else:
        cols.append(("wkt", f"ST_AsText({g}, {digits})", True))
    return cols


def csv_stream(
    engine: Engine,
    collection: Collection,
    where: str,
    binds: dict[str, Any],
    limit: int | None = None,
    out: Output | None = None,
) -> Iterator[bytes]:
    """CSV (RFC 4180, UTF-8, header line) yielded in chunks; each line built in SQL."""
    cols = csv_columns(collection, out)
    yield (",".join(h for h, _, _ in cols) + "\r\n").encode()
    line = " || ',' || ".join(_csv_cell(e, text) for _, e, text in cols)
    with engine.connect() as conn:
        for chunk in iter_rows(conn, collection, line, where, binds, limit):
            yield ("\r\n".join(chunk) + "\r\n").encode()


def write_ogr(
    engine: Engine,
    collection: Collection,
    where: str,
    binds: dict[str, Any],
    fmt: str,
    path: Path,
    limit: int | None = None,
    out: Output | None = None,
) -> Path:
    """Write a GeoPackage or FlatGeobuf file with pyogrio (from GeoJSON built in SQL)."""
    import pyogrio

    driver = {"gpkg": "GPKG", "fgb": "FlatGeobuf"}[fmt]
    out = out or Output()
    # The GeoJSON is streamed from PostgreSQL (already in `out.srid`: PostGIS reprojects) to a
    # temporary file, then converted by GDAL.
    with tempfile.NamedTemporaryFile(suffix=".geojson", delete=False) as tmp:
        for chunk in geojson_stream(engine, collection, where, binds, out=out, limit=limit):
            tmp.write(chunk)
        src = Path(tmp.name)
    try:
        gdf = pyogrio.read_dataframe(src, fid_as_index=True)
        # GDAL turns an integer GeoJSON `id` into the FID (renumbered by FlatGeobuf) and a
        # string one into an `id` field: either way the identifier is kept as its own column.
        if collection.id_column not in gdf.columns:
            ids = gdf.pop("id") if "id" in gdf.columns else gdf.index.to_series()
            gdf.insert(0, collection.id_column, ids.to_numpy())
        elif "id" in gdf.columns and collection.id_column != "id":
            gdf = gdf.drop(columns="id")
        gdf = gdf.reset_index(drop=True)
        # A GeoJSON file has no CRS member (RFC 7946): declare the one it was written in.
        gdf = gdf.set_crs(out.srid, allow_override=True)
        pyogrio.write_dataframe(
            gdf,
            path,
            driver=driver,
            layer=collection.id,
            geometry_type=collection.geometry_type,
            # FlatGeobuf's spatial index refuses features without geometry (not yet geocoded).
            layer_options=(
                {"SPATIAL_INDEX": "NO"}
                if fmt == "fgb" and bool(gdf.geometry.isna().any())
                else None
            ),
        )
    finally:
        src.unlink(missing_ok=True)
    return path


def export_to_file(
    engine: Engine,
    collection: Collection,
    where: str,
    binds: dict[str, Any],
    fmt: str,
    path: Path,
    licence: str,
    attribution: str,
    limit: int | None = None,
    out: Output | None = None,
) -> Path:
    """Write an export file in any format (used by `carteco export`)."""
    out = out or Output()
    if fmt == "geojson" and out.srid != 4326:
        raise ValueError(GEOJSON_CRS84)
    if fmt in ("gpkg", "fgb"):
        return write_ogr(engine, collection, where, binds, fmt, path, limit, out)
    if fmt == "geojson":
        chunks = geojson_stream(
            engine,
            collection,
            where,
            binds,
            out=out,
            limit=limit,
            meta={"licence": licence, "attribution": attribution},
        )
    elif fmt == "csv":
        chunks = csv_stream(engine, collection, where, binds, limit, out)
    else:
        raise ValueError(f"format inconnu : {fmt}")
    with path.open("wb") as f:
        for chunk in chunks:
            f.write(chunk)
    return path


__all__ = ["FORMATS", "feature_sql", "export_to_file", "geojson_stream", "csv_stream"]
