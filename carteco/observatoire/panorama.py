"""Panorama of a territory: its structures by family and sector, their employees (as ranges),
creations and closures per year, the share in QPV, beside its parents and peer territories.

Built on `carteco.stats.territory_stats` (counts, densities, QPV, parents, siblings' average);
this module adds what SIRENE and the registry's dates say. A figure whose data is missing is
null with its reason, never 0.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carteco.collections import LEVEL_STRUCTURE_COLUMN
from carteco.db import quote_ident
from carteco.models import PUBLIC_STATUSES
from carteco.observatoire.effectifs import EXTRA_KEYS, band_of, employment
from carteco.stats import territory_figures, territory_stats

PEERS = 5
# The band is read from any key an import may have kept it under (see effectifs.EXTRA_KEYS).
_BAND_SQL = "coalesce(" + ", ".join(f"s.extra->>'{k}'" for k in EXTRA_KEYS) + ")"


def _rows(conn: Connection, level: str, code: str) -> list[Any]:
    """Status, dates and headcount band of the public structures of one territory."""
    col = "s." + quote_ident(LEVEL_STRUCTURE_COLUMN[level], LEVEL_STRUCTURE_COLUMN.values())
    return list(
        conn.execute(
            sa.text(
                f"SELECT s.status, s.opened_on, s.closed_on, {_BAND_SQL} AS band "  # noqa: S608
                f"FROM structures s WHERE {col} = :code AND s.status = ANY(:public)"
            ),
            {"code": code, "public": list(PUBLIC_STATUSES)},
        )
    )


def _employment(rows: list[Any]) -> dict[str, Any]:
    return employment([band_of(r.band) for r in rows if r.status == "active"]).as_dict()


def _evolution(rows: list[Any], today: dt.date) -> dict[str, Any]:
    """Creations and closures per year, from the registry's opening and closing dates."""
    opened = Counter(r.opened_on.year for r in rows if r.opened_on)
    closed = Counter(r.closed_on.year for r in rows if r.closed_on)
    known = sum(1 for r in rows if r.opened_on)
    closed_without_date = sum(1 for r in rows if r.status == "closed" and not r.closed_on)
    years = sorted(set(opened) | set(closed))
    out: dict[str, Any] = {
        "structures": len(rows),
        "with_opening_date": known,
        "closed_without_date": closed_without_date,
        "years": [
            {"year": y, "created": opened.get(y, 0), "closed": closed.get(y, 0)}
            for y in years
            if y <= today.year
        ],
        "reason": None,
    }
    if not known and not closed:
        out["years"] = []
        out["reason"] = (
            "dates de création et de fermeture inconnues pour ce territoire "
            "(à rapprocher de SIRENE ou du RNA)"
        )
    elif known < len(rows):
        out["reason"] = (
            f"{len(rows) - known} structure(s) sans date de création : les créations "
            "par année sont un minimum"
        )
    return out


def _peers(stats: dict[str, Any], conn: Connection) -> list[dict[str, Any]]:
    """Sibling territories (same level, same parent) closest in population, with densities."""
    t = stats["territory"]
    parents = stats["parents"]
    if not parents:
        return []
    first = parents[0]
    rows = conn.execute(
        sa.text(
            "SELECT code, name, population FROM territories WHERE level = :l "
            "AND code <> :c AND code = ANY(:codes)"
        ),
        {"l": t["level"], "c": t["code"], "codes": _sibling_codes(conn, t["level"], first)},
    ).all()
    pop = t["population"]
    ranked = sorted(
        rows,
        key=lambda r: (
            abs((r.population or 0) - pop) if pop and r.population else float("inf"),
            r.code,
        ),
    )[:PEERS]
    if not ranked:
        return []
    figs = territory_figures(conn, t["level"], [r.code for r in ranked])
    return [figs[r.code] for r in ranked if r.code in figs]


def _sibling_codes(conn: Connection, level: str, parent: dict[str, Any]) -> list[str]:
    col = quote_ident(
        f"{parent['level']}_code",
        ("region_code", "departement_code", "epci_code", "ept_code", "commune_code"),
    )
    return list(
        conn.execute(
            sa.text(f"SELECT code FROM territories WHERE level = :l AND {col} = :p"),  # noqa: S608
            {"l": level, "p": parent["code"]},
        ).scalars()
    )


def panorama(
    conn: Connection, level: str, code: str, today: dt.date | None = None
) -> dict[str, Any] | None:
    """The panorama of a territory, or None when it is unknown."""
    stats = territory_stats(conn, level, code)
    if stats is None:
        return None
    today = today or dt.date.today()
    rows = _rows(conn, level, code)
    parents = []
    for p in stats["parents"]:
        prow = _rows(conn, p["level"], p["code"])
        parents.append({**p, "employment": _employment(prow)})
    return {
        "territory": stats["territory"],
        "figures": stats["figures"],
        "employment": _employment(rows),
        "evolution": _evolution(rows, today),
        "parents": parents,
        "siblings_average": stats["siblings_average"],
        "peers": _peers(stats, conn),
        "notes": stats["notes"]
        + " Effectifs : tranches SIRENE (trancheEffectifsEtablissement) des structures actives, "
        "sommées en fourchette (borne basse, borne haute), jamais en nombre exact. Créations "
        "et fermetures : dates d'ouverture et de fermeture du registre.",
    }
