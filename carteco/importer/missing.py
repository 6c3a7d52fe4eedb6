"""Rows missing from a re-import: what happens to the structures a source no longer lists.

`flag` (the default) lists them in the report and marks them in `extra` (key
`_absent_de_la_source`: source, since, run, action), `close` closes them as of today (and marks
them the same way), `keep` does nothing. Only the source's own active structures are concerned;
a structure another source also feeds stays that source's. When the file had rejected rows,
the rows missing may be those rejected ones: `close` then only flags, and says so.

A structure whose row comes back loses its mark; if the mark had closed it, it is reopened.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carteco.errors import CartecoError

MISSING_ACTIONS = ("flag", "close", "keep")
FLAG_KEY = "_absent_de_la_source"
MAX_LISTED = 1000


class MissingActionError(CartecoError):
    """An unknown --missing action."""

    kind = "invalid"


def check_action(action: str) -> str:
    """The action, or MissingActionError naming the allowed ones."""
    if action not in MISSING_ACTIONS:
        raise MissingActionError(
            f"missing : action inconnue {action!r} (attendu : {', '.join(MISSING_ACTIONS)})"
        )
    return action


# The source ids present in the file: a bound array (the row path), or the bulk path's staging
# table, read where it is (a million ids need not go to Python and back). Allow-list: the key
# names the SQL, never a caller's text.
_PRESENT = {
    None: ("source_id = ANY(:sids)", "source_id <> ALL(:sids)"),
    "bulk_stage": (
        "source_id IN (SELECT b.source_id FROM bulk_stage b)",
        "NOT EXISTS (SELECT 1 FROM bulk_stage b WHERE b.source_id = structures.source_id)",
    ),
}
_ABSENT_SQL = """
    SELECT id, source_id, name FROM structures
     WHERE source = :source AND status = 'active' AND {absent}
     ORDER BY id
"""
_FLAG = sa.text(
    """
    UPDATE structures
       SET extra = jsonb_set(extra, ARRAY[:key],
                             coalesce(extra -> :key, CAST(:flag AS jsonb)))
     WHERE id = ANY(:ids)
    """
)
_CLOSE = sa.text(
    """
    UPDATE structures
       SET status = 'closed', closed_on = coalesce(closed_on, CAST(:today AS date)),
           extra = jsonb_set(extra, ARRAY[:key], CAST(:flag AS jsonb))
     WHERE id = ANY(:ids)
    """
)
# Back in the file: the mark goes; a closure that the mark made is undone.
_BACK_SQL = """
    UPDATE structures
       SET status = CASE WHEN status = 'closed' AND extra -> :key ->> 'action' = 'close'
                         THEN 'active' ELSE status END,
           closed_on = CASE WHEN status = 'closed' AND extra -> :key ->> 'action' = 'close'
                             AND closed_on = CAST(extra -> :key ->> 'depuis' AS date)
                            THEN NULL ELSE closed_on END,
           extra = extra - :key
     WHERE source = :source AND {present} AND extra ? :key
    RETURNING id
"""
_ABSENT = {k: sa.text(_ABSENT_SQL.format(absent=v[1])) for k, v in _PRESENT.items()}
_BACK = {k: sa.text(_BACK_SQL.format(present=v[0])) for k, v in _PRESENT.items()}


def apply_missing(
    conn: Connection,
    source: str,
    present: Iterable[str] | None,
    action: str,
    run_id: int | None,
    rejected: int = 0,
    staged: str | None = None,
    first_load: bool = False,
) -> dict[str, Any]:
    """Flag, close or keep the source's active structures absent from the file; a summary.

    `present`: the file's source ids; or None and `staged` = "bulk_stage", the bulk path's
    staging table holding them. `first_load`: the registry was empty before this import, so
    every structure of the source comes from the file: none is absent, none is back (the
    two scans of a million structures are skipped).
    """
    check_action(action)
    if staged not in _PRESENT or (staged is None) != (present is not None):
        raise ValueError(f"present ids or a staging table, not both: {staged!r}")
    params: dict[str, Any] = {"key": FLAG_KEY, "source": source}
    if present is not None:
        params["sids"] = sorted(set(present))
    back = [] if first_load else [r[0] for r in conn.execute(_BACK[staged], params)]
    summary: dict[str, Any] = {"action": action, "count": 0, "back": len(back), "structures": []}
    if action == "keep" or first_load:
        return summary
    absent = [dict(r) for r in conn.execute(_ABSENT[staged], params).mappings()]
    summary["count"] = len(absent)
    summary["structures"] = absent[:MAX_LISTED]
    if not absent:
        return summary
    today = date.today().isoformat()
    applied = action
    if action == "close" and rejected:
        applied = "flag"
        summary["note"] = (
            f"{rejected} ligne(s) rejetée(s) : les structures absentes sont seulement signalées, "
            "pas fermées (elles sont peut-être parmi les lignes rejetées)"
        )
    summary["applied"] = applied
    flag = json.dumps({"source": source, "depuis": today, "run_id": run_id, "action": applied})
    ids = [r["id"] for r in absent]
    sql = _CLOSE if applied == "close" else _FLAG
    conn.execute(sql, {"key": FLAG_KEY, "flag": flag, "ids": ids, "today": today})
    return summary
