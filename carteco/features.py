"""Items of a collection, built as GeoJSON text by PostGIS (no per-row Python objects).

`items_page` returns one page (features as a JSON text array, plus paging facts);
`feature` returns one feature; `iter_features` streams every matching feature's text through a
server-side cursor (exports). Filters come from :func:`carteco.filters.compile_filter`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carteco.collections import COLLECTIONS, DATE, DATETIME, LEVEL_STRUCTURE_COLUMN, Collection
from carteco.db import quote_ident
from carteco.filters import FilterError
from carteco.text import ascii_int

# Below this many rows a COUNT is cheap enough to give an exact numberMatched on every page;
# a filtered count stops earlier, since each matching row costs the filter's evaluation.
COUNT_THRESHOLD = 200_000
FILTERED_COUNT_THRESHOLD = 10_000


@dataclass(frozen=True)
class Output:
    """How features are written: CRS (SRID, lat/lon order) and the properties kept."""

    srid: int = 4326
    swap: bool = False
    properties: tuple[str, ...] | None = None


@dataclass
class Page:
    """One page of items: the features JSON array text and the paging facts."""

    features: str
    number_returned: int
    has_next: bool
    number_matched: int | None
    last_id: Any = None  # id of the last feature: the keyset of the next page


def parse_properties(collection: Collection, value: str | None) -> tuple[str, ...] | None:
    """`properties=a,b` → the allow-listed names, in collection order."""
    if value is None:
        return None
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in collection.column_names]
    if unknown:
        raise FilterError("properties", f"propriété inconnue : {unknown[0]}")
    return tuple(n for n in collection.column_names if n in names)


def parse_sortby(collection: Collection, value: str | None) -> str:
    """`sortby=+name,-updated_at` → an ORDER BY list (the id always breaks ties)."""
    keys: list[str] = []
    for raw in (value or "").split(","):
        raw = raw.strip()
        if not raw:
            continue
        desc = raw.startswith("-")
        name = raw.lstrip("+-").strip()
        if name not in collection.column_names and name != collection.id_column:
            raise FilterError("sortby", f"propriété inconnue : {name}")
        keys.append(f"{collection.q(name)} {'DESC' if desc else 'ASC'} NULLS LAST")
    keys.append(f"{collection.q(collection.id_column)} ASC")
    return ", ".join(keys)


def geometry_sql(collection: Collection, out: Output) -> str:
    """`ST_AsGeoJSON` of the geometry in the output CRS (column never transformed in WHERE)."""
    g = collection.q("geom")
    if out.srid != 4326:
        return f"ST_AsGeoJSON(ST_Transform({g}, {int(out.srid)}), 2)"
    if out.swap:
        return f"ST_AsGeoJSON(ST_FlipCoordinates({g}), 7)"
    return f"ST_AsGeoJSON({g}, 7)"


def properties_sql(collection: Collection, names: Sequence[str] | None) -> str:
    """A compact JSON object (text) of the selected properties, via row_to_json."""
    chosen = collection.column_names if names is None else names
    if not chosen:
        return "'{}'"
    cols = []
    for n in chosen:
        col = collection.column(n)
        expr = collection.q(n)
        if col is not None and col.type == DATETIME:
            # RFC 3339 with a Z, whatever the session time zone.
            expr = f"to_char({expr} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
        elif col is not None and col.type == DATE:
            expr = f"to_char({expr}, 'YYYY-MM-DD')"
        cols.append(f"{expr} AS {quote_ident(n, collection.allowed())}")
    return "(SELECT row_to_json(p)::text FROM (SELECT " + ", ".join(cols) + ") p)"  # noqa: S608


def feature_sql(collection: Collection, out: Output) -> str:
    """SQL expression of one GeoJSON Feature as compact text, over alias `t`."""
    fid = collection.q(collection.id_column)
    return (
        f'\'{{"type":"Feature","id":\' || to_json({fid})::text'
        f" || ',\"geometry\":' || coalesce({geometry_sql(collection, out)}, 'null')"
        f" || ',\"properties\":' || {properties_sql(collection, out.properties)} || '}}'"
    )


def _estimated_rows(conn: Connection, collection: Collection) -> int:
    table = collection.table
    n = conn.execute(
        sa.text("SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(:t)"),
        {"t": table},
    ).scalar()
    return int(n or 0)


def count_matched(
    conn: Connection, collection: Collection, where: str, binds: dict[str, Any]
) -> int | None:
    """Exact match count when cheap (below a row threshold), else None (never a full scan)."""
    if where == "TRUE" and not collection.level:
        est = _estimated_rows(conn, collection)
        if est > COUNT_THRESHOLD:
            return None
    cap = COUNT_THRESHOLD if where == "TRUE" else FILTERED_COUNT_THRESHOLD
    sql = (
        f"SELECT count(*) FROM (SELECT 1 {collection.from_sql()} AND {where} "  # noqa: S608
        f"LIMIT {cap + 1}) s"
    )
    n = int(conn.execute(sa.text(sql), {**collection.base_params(), **binds}).scalar_one())
    return n if n <= cap else None


def items_page(
    conn: Connection,
    collection: Collection,
    where: str,
    binds: dict[str, Any],
    *,
    limit: int,
    offset: int = 0,
    sortby: str | None = None,
    out: Output | None = None,
    with_count: bool = True,
    after: Any = None,
) -> Page:
    """One page of features (limit+1 fetched to know whether a next page exists).

    With `after` (an id, default order only) the page starts after that id: keyset paging,
    as fast on the last page as on the first; `offset` is then only informative.
    """
    out = out or Output()
    order = parse_sortby(collection, sortby)
    fid = collection.q(collection.id_column)
    params = {**collection.base_params(), **binds, "_limit": limit + 1, "_offset": offset}
    page_where = where
    if after is not None:
        if sortby:
            raise FilterError("after", "incompatible avec sortby")
        page_where = f"{where} AND {fid} > :_after"
        params.update({"_after": after, "_offset": 0})
    # Page the ids first (an index-only scan when unfiltered), then build JSON for the page
    # only: PostgreSQL would otherwise read and serialise the skipped (OFFSET) rows too.
    sql = (
        f"SELECT {feature_sql(collection, out)}, {fid} {collection.from_sql()} "  # noqa: S608
        f"AND {fid} = ANY(ARRAY(SELECT {fid} {collection.from_sql()} AND {page_where} "
        f"ORDER BY {order} LIMIT :_limit OFFSET :_offset)) ORDER BY {order}"
    )
    rows = conn.execute(sa.text(sql), params).all()
    has_next = len(rows) > limit
    rows = rows[:limit]
    matched = count_matched(conn, collection, where, binds) if with_count else None
    return Page(
        "[" + ",".join(r[0] for r in rows) + "]",
        len(rows),
        has_next,
        matched,
        rows[-1][1] if rows else None,
    )


def feature(
    conn: Connection, collection: Collection, feature_id: str, out: Output | None = None
) -> tuple[str, dict[str, Any]] | None:
    """One feature as GeoJSON text with its row facts (version for ETags), or None."""
    out = out or Output()
    key: Any = feature_id
    if collection.id_type == "integer":
        key = ascii_int(feature_id)
        if key is None:
            return None
    extra = ", t.version, t.updated_at" if collection.table == "structures" else ""
    sql = (
        f"SELECT {feature_sql(collection, out)} AS f{extra} {collection.from_sql()} "  # noqa: S608
        f"AND {collection.q(collection.id_column)} = :_fid"
    )
    row = conn.execute(sa.text(sql), {**collection.base_params(), "_fid": key}).mappings().first()
    if row is None:
        return None
    facts = {k: v for k, v in row.items() if k != "f"}
    return str(row["f"]), facts


def iter_rows(
    conn: Connection,
    collection: Collection,
    select_sql: str,
    where: str,
    binds: dict[str, Any],
    limit: int | None = None,
    batch: int = 2000,
) -> Iterator[list[Any]]:
    """Batches of one-column rows through a server-side cursor (constant memory)."""
    sql = (
        f"SELECT {select_sql} {collection.from_sql()} AND {where} "  # noqa: S608
        f"ORDER BY {collection.q(collection.id_column)}"
    )
    params = {**collection.base_params(), **binds}
    if limit is not None:
        sql += " LIMIT :_limit"
        params["_limit"] = limit
    result = conn.execution_options(stream_results=True, max_row_buffer=batch).execute(
        sa.text(sql), params
    )
    try:
        while True:
            chunk = result.scalars().fetchmany(batch)
            if not chunk:
                break
            yield list(chunk)
    finally:
        result.close()


def iter_features(
    conn: Connection,
    collection: Collection,
    where: str,
    binds: dict[str, Any],
    out: Output | None = None,
    limit: int | None = None,
) -> Iterator[list[str]]:
    """Batches of GeoJSON Feature texts, streamed."""
    yield from iter_rows(
        conn, collection, feature_sql(collection, out or Output()), where, binds, limit
    )


def collection_extent(conn: Connection, collection: Collection) -> list[float] | None:
    """Bounding box of a collection (estimated from statistics for structures), or None."""
    if collection.table == "structures":
        sql = "SELECT ST_EstimatedExtent('public', 'structures', 'geom')::box2d::text"
        try:
            with conn.begin_nested():
                box = conn.execute(sa.text(sql)).scalar()
        except sa.exc.DBAPIError:
            box = None
        if not box:
            box = conn.execute(sa.text("SELECT ST_Extent(geom)::text FROM structures")).scalar()
    elif collection.table == "territories":
        box = conn.execute(
            sa.text("SELECT ST_Extent(geom)::text FROM territories WHERE level = :l"),
            {"l": collection.level},
        ).scalar()
    else:
        box = conn.execute(sa.text("SELECT ST_Extent(geom)::text FROM stations")).scalar()
    if not box:
        return None
    inner = box[box.index("(") + 1 : box.index(")")].replace(",", " ").split()
    return [round(float(v), 6) for v in inner]


def loaded_levels(conn: Connection) -> set[str]:
    """The territory levels that have at least one territory loaded."""
    return set(conn.execute(sa.text("SELECT DISTINCT level FROM territories")).scalars())


def nearby(
    conn: Connection,
    collection: Collection,
    where: str,
    binds: dict[str, Any],
    out: Output,
    lon: float,
    lat: float,
    *,
    radius: float | None = None,
    limit: int = 0,
    nearest: int = 0,
) -> list[tuple[str, float]]:
    """Features around a point with their geodesic distance in metres, nearest first.

    Within `radius` metres (at most `limit`), or else the `nearest` ones.
    """
    feat = feature_sql(collection, out)
    pt = "ST_SetSRID(ST_MakePoint(:_lon, :_lat), 4326)"
    dist = f"ST_Distance(t.geom::geography, {pt}::geography)"
    values: dict[str, Any] = {**binds, "_lon": lon, "_lat": lat}
    if radius is not None:
        # Degree box first so the GiST index works; the geography test is exact.
        cond = (
            f"t.geom && ST_Expand({pt}, :_r / 111000.0 / greatest(cos(radians(:_lat)), 0.01))"
            f" AND ST_DWithin(t.geom::geography, {pt}::geography, :_r)"
        )
        sql = (
            f"SELECT {feat} AS f, {dist} AS d {collection.from_sql()} "  # noqa: S608
            f"AND {cond} AND {where} ORDER BY d, t.id LIMIT :_lim"
        )
        values.update({"_r": radius, "_lim": limit})
    else:
        # KNN on the index (planar order), then the exact geodesic order.
        sql = (
            f"SELECT f, d FROM (SELECT {feat} AS f, {dist} AS d, t.id "  # noqa: S608
            f"{collection.from_sql()} AND t.geom IS NOT NULL AND {where} "
            f"ORDER BY t.geom <-> {pt} LIMIT :_k) c ORDER BY d, id LIMIT :_n"
        )
        values.update({"_k": nearest * 2 + 20, "_n": nearest})
    return [(r.f, r.d) for r in conn.execute(sa.text(sql), values).all()]


def polygon_validity(conn: Connection, geojson: str) -> tuple[bool, str] | None:
    """Whether a GeoJSON geometry is valid, and PostGIS's reason; None when unreadable.

    An unreadable geometry rolls the connection's transaction back (the error aborted it).
    """
    try:
        valid, reason = conn.execute(
            sa.text(
                "SELECT ST_IsValid(g), ST_IsValidReason(g) FROM "
                "(SELECT ST_SetSRID(ST_GeomFromGeoJSON(:g), 4326) AS g) s"
            ),
            {"g": geojson},
        ).one()
    except sa.exc.DBAPIError:
        conn.rollback()
        return None
    return bool(valid), str(reason)


def in_territory(
    where: str, binds: dict[str, Any], level: str, code: str
) -> tuple[str, dict[str, Any]]:
    """A structures filter narrowed to one territory (its code a bound parameter)."""
    col = COLLECTIONS["structures"].q(LEVEL_STRUCTURE_COLUMN[level])
    return f"({where} AND {col} = :_tcode)", {**binds, "_tcode": code}


def in_polygon(where: str, binds: dict[str, Any], geojson: str) -> tuple[str, dict[str, Any]]:
    """A filter narrowed to the features that intersect a GeoJSON polygon (CRS84)."""
    poly = "ST_SetSRID(ST_GeomFromGeoJSON(:_poly), 4326)"
    return f"({where} AND t.geom && {poly} AND ST_Intersects(t.geom, {poly}))", {
        **binds,
        "_poly": geojson,
    }
