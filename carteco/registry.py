"""Read queries over the registry that need no HTTP (used by the API, the CLI and reports)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection


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
