"""History of structures: `as_of` dates, the registry as it stood then, and who changed what.

Migration 0016 keeps every state of every structure in ``structure_versions`` (its row as
JSON, its geometry, the period [valid_from, valid_to) during which it was current), filled by
statement triggers on ``structures``. :func:`structures_source` is the SQL that rebuilds the
``structures`` table as it stood at an instant from those versions: the collections, the
territory figures and the tiles read it instead of ``structures`` when a request says
``as_of=YYYY-MM-DD`` (the state at the end of that day, UTC).

A writer that disables the row triggers (a bulk load) calls :func:`record_versions` (SQL:
``carteco_record_structure_versions(ids)``) for the rows it wrote, in the same transaction.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carteco.db import quote_ident
from carteco.errors import CartecoError
from carteco.models import structures

PARAM = "as_of"
# ASCII digits only: "２０２４-01-01" or "2024-1-1" are refused, not guessed.
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)
_COLUMNS = tuple(c.name for c in structures.c)


class AsOfError(CartecoError, ValueError):
    """An `as_of` date that cannot be used (malformed, or in the future)."""

    kind = "invalid"

    def __init__(self, reason: str) -> None:
        super().__init__(f"{PARAM} : {reason}")
        self.reason = reason

    def field_errors(self) -> list[dict[str, str]]:
        """The `as_of` parameter and why it was refused."""
        return [{"parameter": PARAM, "reason": self.reason}]


def parse_as_of(value: str, today: date | None = None) -> date:
    """`YYYY-MM-DD` (ASCII) → the date; AsOfError when malformed or after today (UTC)."""
    text = value.strip()
    if not _DATE.fullmatch(text):
        raise AsOfError("date AAAA-MM-JJ attendue")
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise AsOfError(f"date inexistante : {text}") from None
    today = today or datetime.now(UTC).date()
    if day > today:
        raise AsOfError("date future : l'historique ne connaît que le passé")
    return day


def cutoff(day: date) -> datetime:
    """The instant just after `day` (UTC): the registry `as_of` a day is its state then."""
    return datetime.combine(day + timedelta(days=1), time.min, tzinfo=UTC)


def structures_source(param: str = "coll_as_of") -> str:
    """SQL `(SELECT … ) ` of the structures table as it stood just before the bound `:param`.

    Every column of ``structures`` is there with its type (the row JSON read back through
    ``jsonb_populate_record``), the geometry from its own column and the search vector
    recomputed, so a query written for ``structures t`` runs unchanged on ``<this> t``.
    """
    allowed = set(_COLUMNS)
    cols = []
    for name in _COLUMNS:
        q = quote_ident(name, allowed)
        if name == "id":
            cols.append(f"v.structure_id AS {q}")
        elif name == "geom":
            cols.append(f"v.geom AS {q}")
        elif name == "search":
            cols.append(
                "to_tsvector('french', coalesce(r.name, '') || ' ' || "
                f"coalesce(r.description, '')) AS {q}"
            )
        else:
            cols.append(f"r.{q}")
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", param):
        raise ValueError(f"bad bind name {param!r}")
    return (
        "(SELECT "  # noqa: S608 - columns from the schema, bind name checked
        + ", ".join(cols)
        + " FROM structure_versions v CROSS JOIN LATERAL "
        "jsonb_populate_record(NULL::structures, v.data) r "
        f"WHERE v.valid_from < :{param} AND (v.valid_to IS NULL OR v.valid_to >= :{param}))"
    )


def set_change_context(
    conn: Connection, changed_by: str | None, import_run_id: int | None = None
) -> None:
    """Say who writes (and in which import run) for the versions this transaction records."""
    conn.execute(
        sa.text(
            "SELECT set_config('carteco.changed_by', :who, true), "
            "set_config('carteco.import_run_id', :run, true)"
        ),
        {"who": changed_by or "", "run": "" if import_run_id is None else str(import_run_id)},
    )


def record_versions(conn: Connection, ids: Iterable[int]) -> int:
    """Record the current state of these structures as new versions (set-based); how many."""
    return int(
        conn.execute(
            sa.text("SELECT carteco_record_structure_versions(CAST(:ids AS bigint[]))"),
            {"ids": list(ids)},
        ).scalar_one()
    )


def versions(conn: Connection, structure_id: int) -> list[dict[str, object]]:
    """Every recorded state of one structure, oldest first (period, author, run, row)."""
    rows = conn.execute(
        sa.text(
            "SELECT valid_from, valid_to, changed_by, import_run_id, data "
            "FROM structure_versions WHERE structure_id = :id ORDER BY valid_from, id"
        ),
        {"id": structure_id},
    ).mappings()
    return [dict(r) for r in rows]
