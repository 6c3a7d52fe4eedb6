"""Read queries over the registry that need no HTTP (used by the API, the CLI and reports)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carteco.db import read_sql


def structures_geojson(conn: Connection, limit: int = 50000) -> str:
    """Active located structures as a GeoJSON FeatureCollection text (built in SQL)."""
    return str(
        conn.execute(sa.text(read_sql("structures_geojson.sql")), {"limit": limit}).scalar_one()
    )


def registry_summary(conn: Connection) -> dict[str, Any]:
    """Counts of the registry: structures, located, to geocode, sources."""
    row = (
        conn.execute(
            sa.text(
                """
            SELECT count(*) AS structures, count(geom) AS located,
                   count(*) FILTER (WHERE geocode_status = 'to_geocode') AS to_geocode,
                   count(DISTINCT source) AS sources
              FROM structures
            """
            )
        )
        .mappings()
        .one()
    )
    return dict(row)


def sector_legend(conn: Connection) -> list[dict[str, Any]]:
    """Sectors with their label, colour, parent and count of active structures."""
    rows = conn.execute(
        sa.text(
            """
            SELECT c.code, c.parent_code, c.kind, c.label, c.color, c.icon,
                   (SELECT count(*) FROM structures s
                     WHERE s.status = 'active' AND s.sectors && ARRAY[c.code]) AS n
              FROM sectors c ORDER BY c.sort_order
            """
        )
    ).mappings()
    return [dict(r) for r in rows]


def territories_geojson(conn: Connection, level: str, simplify_m: float = 50.0) -> str:
    """Outlines of one territory level as GeoJSON text (simplified for display)."""
    sql = sa.text(
        """
        SELECT json_build_object('type', 'FeatureCollection', 'features',
               coalesce(json_agg(json_build_object(
                   'type', 'Feature', 'id', code,
                   'geometry', ST_AsGeoJSON(ST_SimplifyPreserveTopology(geom, :tol), 5)::json,
                   'properties', json_build_object('code', code, 'nom', name,
                                                   'population', population)
               ) ORDER BY code), '[]'::json))::text
          FROM territories WHERE level = :level
        """
    )
    # Degrees per metre at IDF latitudes, enough for a display tolerance.
    return str(conn.execute(sql, {"level": level, "tol": simplify_m / 111_000}).scalar_one())
