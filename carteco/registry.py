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


def lock_structure_version(conn: Connection, structure_id: int) -> int | None:
    """Lock a structure's row for this transaction; its version, or None when it is unknown."""
    version = conn.execute(
        sa.text("SELECT version FROM structures WHERE id = :id FOR UPDATE"), {"id": structure_id}
    ).scalar()
    return None if version is None else int(version)
