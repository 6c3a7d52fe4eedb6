"""Territory figures: a territory, its parents, and its structures counted by sector and family.

`territory_stats` compares a territory with each of its parents and with the average of its
siblings (same level, same immediate parent), so Montreuil sees itself against Est Ensemble
(its EPT), the Métropole du Grand Paris, Seine-Saint-Denis and Île-de-France. Only active
structures count; "per 10,000" uses the territory's municipal population.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carteco.collections import LEVEL_STRUCTURE_COLUMN
from carteco.db import quote_ident
from carteco.history import structures_source
from carteco.territory_levels import BY_NAME
from carteco.territory_levels import LEVELS as TERRITORY_LEVELS

LEVELS = tuple(LEVEL_STRUCTURE_COLUMN)
# URL spellings accepted for each level.
LEVEL_ALIASES = {
    **{lv: lv for lv in LEVELS},
    **{lv.collection: lv.name for lv in TERRITORY_LEVELS},  # the collection id (plural)
}
# Parent levels of each level, nearest first, and the territory column holding their code.
PARENTS = {
    "arrondissement": ("commune", "ept", "epci", "departement", "region"),
    "commune": ("ept", "epci", "departement", "region"),
    "qpv": ("commune", "ept", "epci", "departement", "region"),
    "ept": ("epci", "departement", "region"),
    "epci": ("departement", "region"),
    "departement": ("region",),
    "region": (),
}
# The parent codes a territory row carries (levels above the arrondissement and the QPV).
_TERRITORY_CODE_COLUMNS = tuple(
    BY_NAME[lv].column for lv in ("region", "departement", "epci", "ept", "commune")
)


def territory(
    conn: Connection, level: str, code: str, geometry: bool = True
) -> dict[str, Any] | None:
    """A territory: name, population, area (m², Lambert-93 when not stored), parents, geometry."""
    geom = ", ST_AsGeoJSON(geom, 6)::json AS geometry" if geometry else ""
    row = (
        conn.execute(
            sa.text(
                "SELECT level, code, name, population, "  # noqa: S608 - constant fragment
                "coalesce(area_m2, ST_Area(ST_Transform(geom, 2154))) AS area_m2, "
                "region_code, departement_code, epci_code, ept_code, commune_code, vintage"
                f"{geom} FROM territories WHERE level = :l AND code = :c"
            ),
            {"l": level, "c": code},
        )
        .mappings()
        .first()
    )
    if row is None:
        return None
    out = dict(row)
    out["area_km2"] = round(out["area_m2"] / 1e6, 3) if out["area_m2"] is not None else None
    out["parents"] = parents(conn, out)
    out["unavailable"] = (
        {"population": "population légale non disponible"} if out["population"] is None else {}
    )
    for col in _TERRITORY_CODE_COLUMNS:
        out.pop(col, None)
    return out


def parents(conn: Connection, row: dict[str, Any]) -> list[dict[str, Any]]:
    """The parents of a territory row that exist in the loaded layers, nearest first."""
    wanted = []
    for plevel in PARENTS.get(row["level"], ()):
        pcode = row.get(f"{plevel}_code")
        if pcode:
            wanted.append((plevel, pcode))
    if not wanted:
        return []
    found = {
        (r.level, r.code): r
        for r in conn.execute(
            sa.text(
                "SELECT level, code, name, population FROM territories "
                "WHERE (level, code) IN (SELECT * FROM unnest(CAST(:l AS text[]), "
                "CAST(:c AS text[])))"
            ),
            {"l": [w[0] for w in wanted], "c": [w[1] for w in wanted]},
        )
    }
    return [
        {
            "level": lv,
            "code": c,
            "name": found[(lv, c)].name,
            "population": found[(lv, c)].population,
        }
        for lv, c in wanted
        if (lv, c) in found
    ]


# Why a figure is null: said in the JSON next to it, "non disponible" on the pages.
REASON_POPULATION = "population non disponible pour ce territoire"
REASON_QPV = (
    "aucune couche de quartiers prioritaires (QPV) chargée pour tout ou partie de ce territoire"
)

# The départements a territory spans (from the COG table, else its own row): a QPV share is a
# figure only when every one of them has its QPV outlines loaded. The COG branch filters on the
# level's own column (one scan of communes_ref for all the codes, not one per code).
_COG_COLUMN = {
    "region": "region_code",
    "departement": "departement_code",
    "epci": "epci_code",
    "ept": "ept_code",
    "commune": "code",
}
_QPV_COVERAGE_COG = """
    SELECT c.{col} AS code, c.departement_code FROM communes_ref c
     WHERE c.type = 'commune-actuelle' AND c.{col} = ANY(CAST(:codes AS text[]))
    UNION"""
_QPV_COVERAGE_SQL = """
WITH deps AS ({cog}
    SELECT r.code, r.departement_code FROM territories r
     WHERE r.level = :lvl AND r.code = ANY(CAST(:codes AS text[]))
       AND r.departement_code IS NOT NULL
)
SELECT code FROM deps GROUP BY code
HAVING bool_and(EXISTS (SELECT 1 FROM territories q
                         WHERE q.level = 'qpv' AND q.departement_code = deps.departement_code))
"""


def qpv_covered(conn: Connection, level: str, codes: list[str]) -> set[str]:
    """Codes (of one level) whose every département has QPV outlines loaded."""
    if not codes:
        return set()
    if level == "qpv":
        return set(codes)
    if conn.execute(
        sa.text("SELECT NOT EXISTS (SELECT 1 FROM territories WHERE level = 'qpv')")
    ).scalar():
        return set()  # no QPV layer at all: nothing is covered (an index probe, not a scan)
    col = _COG_COLUMN.get(level)
    cog = _QPV_COVERAGE_COG.format(col=quote_ident(col, _COG_COLUMN.values())) if col else ""
    sql = _QPV_COVERAGE_SQL.format(cog=cog)
    rows = conn.execute(sa.text(sql), {"codes": codes, "lvl": level})
    return {r.code for r in rows}


def _source(as_of: datetime | None) -> tuple[str, dict[str, Any]]:
    """The structures table, or its state just before `as_of` (carteco/history.py)."""
    if as_of is None:
        return "structures", {}
    return structures_source("as_of"), {"as_of": as_of}


def _figures(
    conn: Connection, level: str, codes: list[str], as_of: datetime | None = None
) -> dict[str, dict[str, Any]]:
    """Figures of several territories of one level at once, keyed by code."""
    col = "s." + quote_ident(LEVEL_STRUCTURE_COLUMN[level], LEVEL_STRUCTURE_COLUMN.values())
    src, src_params = _source(as_of)
    params = {"codes": codes, "lvl": level, **src_params}
    cond = f"s.status = 'active' AND {col} = ANY(CAST(:codes AS text[]))"
    base = f"FROM {src} s WHERE {cond}"
    out: dict[str, dict[str, Any]] = {}
    for r in conn.execute(
        sa.text(
            "SELECT code, name, population FROM territories WHERE level = :lvl "
            "AND code = ANY(CAST(:codes AS text[]))"
        ),
        params,
    ):
        out[r.code] = {
            "level": level,
            "code": r.code,
            "name": r.name,
            "population": r.population,
            "structures": 0,
            "in_qpv": 0,
            "by_family": {},
            "by_sector": {},
        }
    totals = conn.execute(
        sa.text(
            f"SELECT {col} AS code, count(*) AS n, "  # noqa: S608 - allow-listed column
            f"count(*) FILTER (WHERE s.qpv_code IS NOT NULL) AS q {base} GROUP BY 1"
        ),
        params,
    )
    for r in totals:
        if r.code in out:
            out[r.code]["structures"] = int(r.n)
            out[r.code]["in_qpv"] = int(r.q)
    covered = qpv_covered(conn, level, list(out))
    for c, f in out.items():
        if c not in covered:
            # Without the QPV outlines no structure can be "in a QPV": no figure, not 0.
            f["in_qpv"] = None
    fams = conn.execute(
        sa.text(f"SELECT {col} AS code, s.ess_family AS k, count(*) AS n {base} GROUP BY 1, 2"),  # noqa: S608
        params,
    )
    for r in fams:
        if r.code in out:
            out[r.code]["by_family"][r.k] = int(r.n)
    secs = conn.execute(
        sa.text(
            f"SELECT {col} AS code, x.k, count(*) AS n "  # noqa: S608
            f"FROM {src} s, unnest(s.sectors) AS x(k) WHERE {cond} GROUP BY 1, 2"
        ),
        params,
    )
    for r in secs:
        if r.code in out:
            out[r.code]["by_sector"][r.k] = int(r.n)
    for f in out.values():
        _derive(f)
    return out


REASON_OPENED = "aucune date d'ouverture connue (opened_on) pour les structures de ce territoire"
REASON_CLOSED = "aucune date de fermeture connue (closed_on) pour les structures fermées"


def per_year(
    conn: Connection, level: str, code: str, as_of: datetime | None = None
) -> dict[str, Any]:
    """Structures created and closed per year in a territory, from opened_on / closed_on.

    Over the public structures (active and closed). A year appears only when something
    happened in it; the structures whose date is unknown are counted apart, and a series
    with no known date at all is null with its reason, never a row of zeros.
    """
    col = "s." + quote_ident(LEVEL_STRUCTURE_COLUMN[level], LEVEL_STRUCTURE_COLUMN.values())
    src, params = _source(as_of)
    params = {**params, "code": code}
    where = f"FROM {src} s WHERE s.status IN ('active', 'closed') AND {col} = :code"
    created: dict[str, int] = {}
    closed: dict[str, int] = {}
    for r in conn.execute(
        sa.text(
            "SELECT 'o' AS k, extract(year FROM s.opened_on)::int AS y, count(*) AS n "  # noqa: S608
            f"{where} AND s.opened_on IS NOT NULL GROUP BY 2 "
            "UNION ALL SELECT 'c', extract(year FROM s.closed_on)::int, count(*) "
            f"{where} AND s.status = 'closed' AND s.closed_on IS NOT NULL GROUP BY 2"
        ),
        params,
    ):
        (created if r.k == "o" else closed)[str(r.y)] = int(r.n)
    unknown = (
        conn.execute(
            sa.text(
                "SELECT count(*) FILTER (WHERE s.opened_on IS NULL) AS o, "  # noqa: S608
                "count(*) FILTER (WHERE s.status = 'closed' AND s.closed_on IS NULL) AS c, "
                f"count(*) FILTER (WHERE s.status = 'closed') AS nc {where}"
            ),
            params,
        )
        .mappings()
        .one()
    )
    unavailable = {}
    if not created:
        unavailable["created"] = REASON_OPENED
    if not closed and unknown["nc"]:
        unavailable["closed"] = REASON_CLOSED
    return {
        "created": dict(sorted(created.items())) if created else None,
        # No closed structure at all: an empty series is the fact, not a missing figure.
        "closed": dict(sorted(closed.items())) if closed or not unknown["nc"] else None,
        "opened_on_unknown": int(unknown["o"]),
        "closed_on_unknown": int(unknown["c"]),
        "unavailable": unavailable,
    }


def territory_figures(conn: Connection, level: str, codes: list[str]) -> dict[str, dict[str, Any]]:
    """Counts, densities and QPV shares of several territories of one level, keyed by code."""
    return _figures(conn, level, codes)


def _per_10k(n: float, population: int | None) -> float | None:
    return round(n * 10000 / population, 3) if population else None


def _derive(f: dict[str, Any]) -> None:
    f["per_10000"] = _per_10k(f["structures"], f["population"])
    f["share_in_qpv"] = (
        round(f["in_qpv"] / f["structures"], 4)
        if f["structures"] and f["in_qpv"] is not None
        else None
    )
    unavailable = {}
    if not f["population"]:
        unavailable["per_10000"] = REASON_POPULATION
    if f["in_qpv"] is None:
        unavailable["in_qpv"] = unavailable["share_in_qpv"] = REASON_QPV
    elif not f["structures"]:
        unavailable["share_in_qpv"] = "aucune structure : part non calculable"
    f["unavailable"] = unavailable
    f["by_family"] = dict(sorted(f["by_family"].items()))
    f["by_sector"] = {
        k: {"structures": n, "per_10000": _per_10k(n, f["population"])}
        for k, n in sorted(f["by_sector"].items())
    }


def _average(items: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not items:
        return None
    n = len(items)

    def mean(values: list[float | None]) -> float | None:
        vals = [v for v in values if v is not None]
        return round(sum(vals) / len(vals), 3) if vals else None

    families = sorted({k for f in items for k in f["by_family"]})
    per_10000 = mean([f["per_10000"] for f in items])
    share_in_qpv = mean([f["share_in_qpv"] for f in items])
    unavailable = {}
    if per_10000 is None:
        unavailable["per_10000"] = REASON_POPULATION
    if share_in_qpv is None:
        unavailable["share_in_qpv"] = REASON_QPV
    sectors = sorted({k for f in items for k in f["by_sector"]})
    return {
        "territories": n,
        "structures": mean([f["structures"] for f in items]),
        # Means over the territories that have the figure (none → null, never 0).
        "per_10000": per_10000,
        "share_in_qpv": share_in_qpv,
        "unavailable": unavailable,
        "by_family": {k: mean([f["by_family"].get(k, 0) for f in items]) for k in families},
        "by_sector": {
            k: {
                "structures": mean([f["by_sector"].get(k, {}).get("structures", 0) for f in items]),
                "per_10000": mean([f["by_sector"].get(k, {}).get("per_10000") for f in items]),
            }
            for k in sectors
        },
    }


def territory_stats(
    conn: Connection, level: str, code: str, as_of: datetime | None = None
) -> dict[str, Any] | None:
    """Figures of a territory, of each of its parents, and the average of its siblings.

    With `as_of`, the registry as it stood just before that instant (carteco/history.py).
    """
    t = territory(conn, level, code, geometry=False)
    if t is None:
        return None
    own = _figures(conn, level, [code], as_of)[code]
    own["per_year"] = per_year(conn, level, code, as_of)
    parent_figs = []
    for p in t["parents"]:
        parent_figs.append(_figures(conn, p["level"], [p["code"]], as_of)[p["code"]])
    siblings: dict[str, Any] | None = None
    if t["parents"]:
        first = t["parents"][0]
        sib_col = quote_ident(f"{first['level']}_code", _TERRITORY_CODE_COLUMNS)
        codes = list(
            conn.execute(
                sa.text(
                    f"SELECT code FROM territories WHERE level = :l AND {sib_col} = :p "  # noqa: S608
                    "AND code <> :c ORDER BY code"
                ),
                {"l": level, "p": first["code"], "c": code},
            ).scalars()
        )
        figs = _figures(conn, level, codes, as_of) if codes else {}
        siblings = _average(list(figs.values()))
        if siblings is not None:
            siblings["parent"] = {k: first[k] for k in ("level", "code", "name")}
    return {
        "as_of": None if as_of is None else (as_of - timedelta(days=1)).date().isoformat(),
        "territory": {
            **{k: t[k] for k in ("level", "code", "name", "population", "area_km2")},
            "unavailable": t["unavailable"],
        },
        "figures": own,
        "parents": parent_figs,
        "siblings_average": siblings,
        "notes": (
            "Structures actives localisées dans le territoire ; « per_10000 » rapporte le "
            "nombre à la population municipale ; la moyenne des territoires voisins porte sur "
            "les territoires de même niveau ayant le même parent immédiat ; « per_year » compte "
            "les créations (opened_on) et fermetures (closed_on) par année. Un chiffre dont la "
            "couche ou le dénominateur manque vaut null, la raison dans « unavailable »."
        ),
    }
