"""History of structures: `as_of` dates, the registry as it stood then, and who changed what.

As in SQL:2011 system versioning (migration 0027), a structure's current state is its row in
``structures`` (``valid_from``: since when, ``changed_by`` and ``import_run_id``: by whom) and
the states that ended are in ``structure_past_versions`` (the row as JSON, the geometry, the
period [valid_from, valid_to)), moved there by the UPDATE and DELETE statement triggers; an
INSERT writes no history. The view ``structure_versions`` lists every state in one shape.
:func:`structures_source` is the SQL that rebuilds the ``structures`` table as it stood at an
instant: the collections, the territory figures and the tiles read it instead of
``structures`` when a request says ``as_of=YYYY-MM-DD`` (the state at the end of that day, UTC).
"""

from __future__ import annotations

import re
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
# Columns a version row holds itself (not in its data): the geometry, period start, author.
_VERSION_COLUMNS = ("geom", "valid_from", "changed_by", "import_run_id")


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

    Every column of ``structures`` is there with its type: the ended states' row JSON read back
    through ``jsonb_populate_record`` (the geometry, the period start and the author from the
    version's own columns, the search vector recomputed), then the current rows that had begun
    by then. A query written for ``structures t`` runs unchanged on ``<this> t``.
    """
    allowed = set(_COLUMNS)
    past, current = [], []
    for name in _COLUMNS:
        q = quote_ident(name, allowed)
        current.append(f"s.{q}")
        if name == "id":
            past.append(f"v.structure_id AS {q}")
        elif name in _VERSION_COLUMNS:
            past.append(f"v.{q}")
        elif name == "search":
            past.append(
                "to_tsvector('french', coalesce(r.name, '') || ' ' || "
                f"coalesce(r.description, '')) AS {q}"
            )
        else:
            past.append(f"r.{q}")
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", param):
        raise ValueError(f"bad bind name {param!r}")
    return (
        "(SELECT "  # noqa: S608 - columns from the schema, bind name checked
        + ", ".join(past)
        + " FROM structure_past_versions v CROSS JOIN LATERAL "
        "jsonb_populate_record(NULL::structures, v.data) r "
        f"WHERE v.valid_from < :{param} AND v.valid_to >= :{param} "
        "UNION ALL SELECT "
        + ", ".join(current)
        + f" FROM structures s WHERE s.valid_from < :{param})"
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


def versions(conn: Connection, structure_id: int) -> list[dict[str, object]]:
    """Every recorded state of one structure, oldest first (period, author, run, row)."""
    rows = conn.execute(
        sa.text(
            "SELECT valid_from, valid_to, changed_by, import_run_id, data "
            "FROM structure_versions WHERE structure_id = :id "
            "ORDER BY valid_from, id NULLS LAST"
        ),
        {"id": structure_id},
    ).mappings()
    return [dict(r) for r in rows]
