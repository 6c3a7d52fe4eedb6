"""Queries behind the public map: structure cards, search, structures in view, territories."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carteco.families import FAMILY_LABELS
from carteco.history import structures_source
from carteco.sectors import load_taxonomy
from carteco.territory_levels import LEVEL_LABELS
from carteco.text import fold

# How a position was obtained, said plainly to the public (honest precision).
PRECISION_LABELS = {
    "provided": "position fournie par la source",
    "housenumber": "géocodée à l'adresse exacte",
    "street": "géocodée à la rue (position approximative)",
    "locality": "géocodée au lieu-dit (position approximative)",
    "municipality": "placée au centre de la commune (position très approximative)",
    "manual": "placée à la main",
}


def sector_labels(codes: list[str] | None) -> list[dict[str, str]]:
    """Codes → [{code, label, color}] from the taxonomy (unknown codes kept as is)."""
    nodes = load_taxonomy().by_code()
    out = []
    for code in codes or []:
        n = nodes.get(code)
        top = nodes.get(code.split(".")[0]) or n
        out.append(
            {
                "code": code,
                "label": n.label if n else code,
                "color": top.color if top else "#555555",
            }
        )
    return out


def structure_card(conn: Connection, structure_id: int) -> dict[str, Any] | None:
    """What the map's card shows about one active structure, or None."""
    row = (
        conn.execute(
            sa.text(
                """
                SELECT id, name, sectors, ess_family, esus, description, address_line,
                       postcode, commune_name, website, location_precision, source,
                       ST_X(geom) AS lon, ST_Y(geom) AS lat, updated_at
                  FROM structures WHERE id = :id AND status = 'active'
                """
            ),
            {"id": structure_id},
        )
        .mappings()
        .first()
    )
    if row is None:
        return None
    d = dict(row)
    d["sectors"] = sector_labels(row["sectors"])
    d["family_label"] = FAMILY_LABELS.get(row["ess_family"], row["ess_family"])
    d["precision_label"] = (
        PRECISION_LABELS.get(row["location_precision"] or "", "position inconnue")
        if row["lon"] is not None
        else "non localisée"
    )
    d["approximate"] = row["location_precision"] in ("street", "locality", "municipality")
    d["updated_at"] = row["updated_at"].isoformat() if row["updated_at"] else None
    return d


def search(
    conn: Connection,
    q: str,
    limit: int = 8,
    lon: float | None = None,
    lat: float | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Places (territories by name or postcode) and structures matching every word, best first.

    A structure matches when every folded word of `q` is found in its name, commune or
    address; identical records (same folded name, address and commune) are one result with
    a count; ranking is match quality, then distance to (lon, lat) when the view is given.
    """
    q = q.strip()[:100]
    if len(q) < 2:
        return {"lieux": [], "structures": []}
    places = conn.execute(
        sa.text(
            """
            SELECT level, code, name, ST_XMin(b) AS w, ST_YMin(b) AS s, ST_XMax(b) AS e,
                   ST_YMax(b) AS n
              FROM (SELECT level, code, name, population, geom::box2d AS b,
                           similarity(unaccent(lower(name)), unaccent(lower(:q))) AS sim,
                           unaccent(lower(name)) LIKE unaccent(lower(:q)) || '%' AS prefix
                      FROM territories
                     WHERE level IN ('commune', 'arrondissement', 'epci', 'ept', 'departement',
                                     'region')
                       AND (unaccent(lower(name)) LIKE '%' || unaccent(lower(:q)) || '%'
                            OR :q = ANY(postcodes) OR code = :q)) t
             ORDER BY prefix DESC, sim DESC, population DESC NULLS LAST
             LIMIT :limit
            """
        ),
        {"q": q, "limit": limit},
    ).mappings()
    lieux = [
        {
            "type": "lieu",
            "level": p["level"],
            "code": p["code"],
            "label": f"{p['name']} ({LEVEL_LABELS.get(p['level'], p['level'])})",
            "bbox": [p["w"], p["s"], p["e"], p["n"]],
        }
        for p in places
    ]
    words = fold(q).split()[:SEARCH_MAX_WORDS]
    if not words:
        return {"lieux": lieux, "structures": []}
    has_view = lon is not None and lat is not None
    rows = conn.execute(
        sa.text(_STRUCTURE_SEARCH_SQL),
        {
            "words": words,
            "patterns": [f"%{w}%" for w in words],
            "limit": limit,
            "has_view": has_view,
            "lon": lon if has_view else 0.0,
            "lat": lat if has_view else 0.0,
        },
    ).mappings()
    structures = [
        {
            "type": "structure",
            "id": r["id"],
            "label": r["name"] + (f" — {r['commune_name']}" if r["commune_name"] else ""),
            "lon": r["lon"],
            "lat": r["lat"],
            "count": r["n"],
            "ids": list(r["ids"]),
        }
        for r in rows
    ]
    return {"lieux": lieux, "structures": structures}


# Words of a query beyond this are ignored (each one is a LIKE over every active structure).
SEARCH_MAX_WORDS = 8

# Folding in SQL mirrors carteco.text.fold (lower case, no accents, non-alphanumerics as one
# space); the words arrive already folded, so they hold no LIKE wildcard (% and _ are folded
# away) and are bound as one text[] parameter.
_STRUCTURE_SEARCH_SQL = """
WITH words AS (
    SELECT w, ord FROM unnest(CAST(:words AS text[])) WITH ORDINALITY AS u(w, ord)
), cand AS (
    SELECT s.id, s.name, s.commune_name, s.geom,
           ' ' || trim(regexp_replace(lower(unaccent(coalesce(s.name, ''))),
                               '[^a-z0-9]+', ' ', 'g')) || ' ' AS fname,
           ' ' || trim(regexp_replace(lower(unaccent(coalesce(s.address_line, ''))),
                               '[^a-z0-9]+', ' ', 'g')) || ' ' AS faddr,
           ' ' || trim(regexp_replace(lower(unaccent(coalesce(s.commune_name, ''))),
                               '[^a-z0-9]+', ' ', 'g')) || ' ' AS fcommune
      FROM structures s
     -- Not-yet-located structures are found too (their card says so), after located ones.
     WHERE s.status = 'active'
       -- A cheap first pass (one unaccent per row, no regexp): a folded word holds only
       -- [a-z0-9], so it is inside the folded text exactly when it is inside this one.
       AND lower(unaccent(concat_ws(' ', s.name, s.commune_name, s.address_line)))
           LIKE ALL (CAST(:patterns AS text[]))
), hits AS (
    -- Every word must be found somewhere (name, commune or address); the quality sums, per
    -- word, the best kind of match: whole word of the name (4), start of a name word (3),
    -- inside the name (2), whole word of the commune or address (1), inside them (0).
    SELECT c.*,
           sum(CASE WHEN c.fname LIKE '% ' || w.w || ' %' THEN 4
                    WHEN c.fname LIKE '% ' || w.w || '%' THEN 3
                    WHEN c.fname LIKE '%' || w.w || '%' THEN 2
                    WHEN c.fcommune LIKE '% ' || w.w || ' %'
                      OR c.faddr LIKE '% ' || w.w || ' %' THEN 1
                    ELSE 0 END) AS quality,
           bool_and(c.fname LIKE '%' || w.w || '%' OR c.fcommune LIKE '%' || w.w || '%'
                    OR c.faddr LIKE '%' || w.w || '%') AS all_words
      FROM cand c CROSS JOIN words w
     GROUP BY c.id, c.name, c.commune_name, c.geom, c.fname, c.faddr, c.fcommune
), grouped AS (
    -- Identical records (same folded name, address and commune) collapse into one result.
    SELECT min(h.id) AS id, count(*)::integer AS n, array_agg(h.id ORDER BY h.id) AS ids,
           max(h.quality) AS quality, (array_agg(h.name ORDER BY h.id))[1] AS name,
           (array_agg(h.commune_name ORDER BY h.id))[1] AS commune_name,
           (array_agg(h.geom ORDER BY h.id))[1] AS geom
      FROM hits h
     WHERE h.all_words
     GROUP BY h.fname, h.faddr, h.fcommune
)
SELECT g.id, g.n, g.ids, g.name, g.commune_name, ST_X(g.geom) AS lon, ST_Y(g.geom) AS lat
  FROM grouped g
 ORDER BY g.quality DESC,
          CASE WHEN :has_view
               THEN ST_Distance(g.geom::geography,
                                ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography)
          END NULLS LAST,
          g.geom IS NULL, g.name, g.id
 LIMIT :limit
"""

_IN_VIEW_SQL = """
SELECT t.id, t.name, t.sectors, t.commune_name, t.location_precision,
       count(*) OVER () AS total
  FROM structures t
 WHERE t.status = 'active' AND t.geom IS NOT NULL AND /*where*/
 ORDER BY t.name, t.id
 LIMIT :_limit
"""


def structures_in_view(
    conn: Connection,
    where: str,
    binds: dict[str, Any],
    limit: int = 200,
    as_of: datetime | None = None,
) -> dict[str, Any]:
    """Structures matching a compiled filter (alias `t`, from carteco.filters), with a total.

    With `as_of`, the registry as it stood just before that instant (carteco/history.py).
    """
    # `where` is produced by carteco.filters.compile_filter: values are bound parameters.
    sql = _IN_VIEW_SQL.replace("/*where*/", where)
    params = {**binds, "_limit": limit}
    if as_of is not None:
        sql = sql.replace("FROM structures t", f"FROM {structures_source('view_as_of')} t")
        params["view_as_of"] = as_of
    rows = list(conn.execute(sa.text(sql), params).mappings())
    items = [
        {
            "id": r["id"],
            "name": r["name"],
            "commune": r["commune_name"],
            "sectors": sector_labels(r["sectors"])[:2],
            "precision": r["location_precision"],
        }
        for r in rows
    ]
    return {"total": rows[0]["total"] if rows else 0, "items": items}


def territory(conn: Connection, level: str, code: str) -> dict[str, Any] | None:
    """A territory's name, population, bbox and simplified outline (GeoJSON), or None."""
    row = (
        conn.execute(
            sa.text(
                """
                SELECT level, code, name, population, area_m2, region_code, departement_code,
                       epci_code, ept_code,
                       ST_XMin(geom::box2d) AS w, ST_YMin(geom::box2d) AS s,
                       ST_XMax(geom::box2d) AS e, ST_YMax(geom::box2d) AS n,
                       ST_AsGeoJSON(ST_SimplifyPreserveTopology(geom, 0.0002), 5) AS outline
                  FROM territories WHERE level = :level AND code = :code
                """
            ),
            {"level": level, "code": code},
        )
        .mappings()
        .first()
    )
    if row is None:
        return None
    d = dict(row)
    d["bbox"] = [row["w"], row["s"], row["e"], row["n"]]
    d["outline"] = json.loads(row["outline"])
    d["level_label"] = LEVEL_LABELS.get(level, level)
    return d


def territory_choices(conn: Connection) -> list[dict[str, Any]]:
    """Territories offered in the map's territory filter (régions to EPCI; communes by search)."""
    rows = conn.execute(
        sa.text(
            """
            SELECT level, code, name,
                   concat_ws(',', round(ST_XMin(geom::box2d)::numeric, 5),
                             round(ST_YMin(geom::box2d)::numeric, 5),
                             round(ST_XMax(geom::box2d)::numeric, 5),
                             round(ST_YMax(geom::box2d)::numeric, 5)) AS bbox
              FROM territories
             WHERE level IN ('region', 'departement', 'ept')
                -- 1,255 EPCI in France: offer those that hold a structure (the search box
                -- finds the others), so the map page does not carry them all.
                OR (level = 'epci' AND (layer = 'epci_idf' OR EXISTS (
                        SELECT 1 FROM structures s
                         WHERE s.epci_code = territories.code AND s.status = 'active')))
             ORDER BY array_position(ARRAY['region','departement','ept','epci'], level), name
            """
        )
    ).mappings()
    return [dict(r) for r in rows]


def sector_tree(conn: Connection) -> list[dict[str, Any]]:
    """Top-level sectors with their activities and counts of active located structures."""
    rows = conn.execute(
        sa.text(
            """
            SELECT c.code, c.parent_code, c.label, c.color, c.sort_order,
                   (SELECT count(*) FROM structures s
                     WHERE s.status = 'active' AND s.geom IS NOT NULL
                       AND EXISTS (SELECT 1 FROM unnest(s.sectors) x
                                    WHERE x = c.code OR starts_with(x, c.code || '.'))) AS n
              FROM sectors c ORDER BY c.sort_order
            """
        )
    ).mappings()
    tops: dict[str, dict[str, Any]] = {}
    children: list[dict[str, Any]] = []
    for r in rows:
        d = dict(r)
        if d["parent_code"] is None:
            d["children"] = []
            tops[d["code"]] = d
        else:
            children.append(d)
    for c in children:
        root = c["parent_code"].split(".")[0]
        if root in tops:
            tops[root]["children"].append(c)
    return list(tops.values())
