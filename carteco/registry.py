"""Read queries over the registry that need no HTTP (used by the API, the CLI and reports)."""

from __future__ import annotations

from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carteco.structure_fields import EDITABLE_FIELDS


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


def health(conn: Connection) -> tuple[int, str]:
    """The number of structures and PostGIS's library version (the database answers)."""
    n = conn.execute(sa.text("SELECT count(*) FROM structures")).scalar_one()
    postgis = conn.execute(sa.text("SELECT postgis_lib_version()")).scalar_one()
    return int(n), str(postgis)


# Column casts of the editable fields whose SQL type is not text.
_CASTS = {"sectors": "text[]", "opened_on": "date", "closed_on": "date"}


def update_structure(
    conn: Connection, structure_id: int, expected: int, fields: dict[str, Any]
) -> tuple[bool, int | None]:
    """Set validated, allow-listed fields if the structure is still at version `expected`.

    (True, None) when updated; else (False, its current version), None when it is unknown.
    The keys come from `structure_fields.EDITABLE_FIELDS` (an allow-list), checked again here.
    """
    sets: list[str] = []
    values: dict[str, Any] = {"id": structure_id, "v": expected}
    for key, value in fields.items():
        if key not in EDITABLE_FIELDS:
            raise ValueError(f"champ non modifiable : {key}")
        cast = _CASTS.get(key)
        sets.append(f"{key} = CAST(:p_{key} AS {cast})" if cast else f"{key} = :p_{key}")
        values[f"p_{key}"] = value.isoformat() if isinstance(value, date) else value
    row = conn.execute(
        sa.text(
            f"UPDATE structures SET {', '.join(sets) or 'id = id'} "  # noqa: S608 - allow-listed keys
            "WHERE id = :id AND version = :v RETURNING version"
        ),
        values,
    ).first()
    if row is not None:
        return True, None
    current = conn.execute(
        sa.text("SELECT version FROM structures WHERE id = :id"), {"id": structure_id}
    ).scalar()
    return False, None if current is None else int(current)


def close_structure(conn: Connection, structure_id: int) -> None:
    """Close a structure (status `closed`, closing date kept or today); the row stays."""
    conn.execute(
        sa.text(
            "UPDATE structures SET status = 'closed', "
            "closed_on = coalesce(closed_on, current_date) WHERE id = :id"
        ),
        {"id": structure_id},
    )
