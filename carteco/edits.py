"""Writes to one structure by hand: the one path for PATCH, moderation and self-updates.

Values arrive cleaned by `carteco.structure_fields` (the one validator). Columns come from
the allow-list `EDITABLE_FIELDS`; contact fields go to the structure's ``extra``; a new point
goes through `set_manual_location` (history kept). Tiles and caches follow by themselves: the
``structures`` triggers bump the version and invalidate the tile cache on every write.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carteco.errors import CartecoError
from carteco.geocoding.engine import geocode_one
from carteco.geocoding.registry import query_text, set_manual_location
from carteco.models import PRECISIONS
from carteco.structure_fields import CONTACT_FIELDS, EDITABLE_FIELDS

# Column casts of the editable fields whose SQL type is not text.
_CASTS = {"sectors": "text[]", "opened_on": "date", "closed_on": "date"}
CONTRIBUTION_SOURCE = "contribution"


class EditError(CartecoError):
    """A change that cannot be applied (unknown structure, stale version)."""

    kind = "conflict"

    def __init__(
        self, message: str, *, kind: str | None = None, current_version: int | None = None
    ) -> None:
        super().__init__(message, kind=kind)
        self.current_version = current_version


def _value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else value


def apply_changes(
    conn: Connection,
    structure_id: int,
    clean: dict[str, Any],
    *,
    by: str,
    expected_version: int | None = None,
    reason: str = "modification",
) -> int:
    """Apply validated fields (and `location`) to a structure; its new version.

    With `expected_version`, the write happens only on that version (EditError `conflict`
    otherwise); an unknown structure is EditError `not_found`.
    """
    clean = dict(clean)
    new_point = clean.pop("location", None)
    contacts = {k: clean.pop(k) for k in list(clean) if k in CONTACT_FIELDS}
    sets: list[str] = []
    values: dict[str, Any] = {"id": structure_id, "v": expected_version}
    for key, value in clean.items():
        if key not in EDITABLE_FIELDS:
            raise EditError(f"champ non modifiable : {key}", kind="invalid")
        # Keys come from EDITABLE_FIELDS (an allow-list), values are bound parameters.
        cast = _CASTS.get(key)
        sets.append(f"{key} = CAST(:p_{key} AS {cast})" if cast else f"{key} = :p_{key}")
        values[f"p_{key}"] = _value(value)
    if contacts:
        sets.append("extra = extra || CAST(:contacts AS jsonb)")
        values["contacts"] = json.dumps(contacts, ensure_ascii=False)
    row = conn.execute(
        sa.text(
            f"UPDATE structures SET {', '.join(sets) or 'id = id'} "  # noqa: S608 - allow-listed keys
            "WHERE id = :id AND (CAST(:v AS integer) IS NULL OR version = :v) RETURNING version"
        ),
        values,
    ).first()
    if row is None:
        exists = conn.execute(
            sa.text("SELECT version FROM structures WHERE id = :id"), {"id": structure_id}
        ).scalar()
        if exists is None:
            raise EditError(f"structure inconnue : {structure_id}", kind="not_found")
        raise EditError(
            "la structure a changé depuis votre lecture ; relisez-la puis réessayez",
            current_version=int(exists),
        )
    version = int(row[0])
    if new_point is not None:
        lon, lat = new_point
        set_manual_location(conn, structure_id, lon, lat, by=by, reason=reason)
        version = int(
            conn.execute(
                sa.text("SELECT version FROM structures WHERE id = :id"), {"id": structure_id}
            ).scalar_one()
        )
    return version


def locate(
    conn: Connection, address: str | None, postcode: str | None, commune: str | None
) -> dict[str, Any] | None:
    """The local geocoder's answer for an address: lon, lat, precision, score, label."""
    text = query_text(address, postcode, commune)
    if not text.strip():
        return None
    res = geocode_one(conn, text)
    if res is None:
        return None
    precision = res.type if res.type in PRECISIONS else "municipality"
    return {
        "lon": res.lon,
        "lat": res.lat,
        "precision": precision,
        "score": res.score,
        "label": res.label,
    }


def create_structure(
    conn: Connection,
    clean: dict[str, Any],
    *,
    source_id: str,
    by: str,
    precision: str | None = None,
    score: float | None = None,
    source: str = CONTRIBUTION_SOURCE,
) -> int:
    """Insert a new structure from validated fields (point included when known); its id."""
    clean = dict(clean)
    point = clean.pop("location", None)
    contacts = {k: clean.pop(k) for k in list(clean) if k in CONTACT_FIELDS and clean[k]}
    extra: dict[str, Any] = {**contacts}
    # Identifiers are not editable later but a contribution may carry them.
    ids: dict[str, Any] = {k: clean.pop(k) for k in ("siret", "siren", "rna") if k in clean}
    for key in clean:
        if key not in EDITABLE_FIELDS:
            raise EditError(f"champ non modifiable : {key}", kind="invalid")
    cols = {**clean, **ids}
    digest = hashlib.sha256(
        json.dumps({k: _value(v) for k, v in sorted(cols.items())}, default=str).encode()
    ).hexdigest()
    names = list(cols)
    values = {f"p_{k}": _value(v) for k, v in cols.items()}
    placeholders = [f"CAST(:p_{k} AS {_CASTS[k]})" if k in _CASTS else f":p_{k}" for k in names]
    sid = conn.execute(
        sa.text(
            f"INSERT INTO structures ({', '.join([*names, 'source', 'source_id', 'content_hash', 'extra'])}) "  # noqa: E501, S608 - allow-listed keys
            f"VALUES ({', '.join([*placeholders, ':source', ':source_id', ':hash', 'CAST(:extra AS jsonb)'])}) "  # noqa: E501
            "RETURNING id"
        ),
        {
            **values,
            "source": source,
            "source_id": source_id,
            "hash": digest,
            "extra": json.dumps(extra, ensure_ascii=False),
        },
    ).scalar_one()
    if point is not None:
        lon, lat = point
        set_manual_location(conn, int(sid), lon, lat, by=by, score=score, reason="contribution")
        if precision and precision != "manual":
            conn.execute(
                sa.text("UPDATE structures SET location_precision = :p WHERE id = :id"),
                {"p": precision, "id": sid},
            )
    return int(sid)
