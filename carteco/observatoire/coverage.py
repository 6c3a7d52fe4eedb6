"""Coverage: how far people live from the nearest open structure of a sector.

Each population unit (a commune — Paris, Lyon and Marseille by arrondissement — or, when a
deployment loaded it, a 200 m square of the INSEE grid) is placed at its centre; its distance
to the nearest active structure of the sectors is measured in Lambert-93. The population
within 1, 2, 5, 10 km (configurable) is summed per commune and for the territory; the units
beyond the last radius are the "zones blanches". With communes as units, the distance is the
commune centre's: every output says so.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from carteco.errors import CartecoError
from carteco.sectors import load_taxonomy
from carteco.stats import territory

SQL = Path(__file__).parent / "sql"
DEFAULT_RADII_KM = (1.0, 2.0, 5.0, 10.0)
MAX_RADII = 8
MAX_RADIUS_KM = 200.0
LEVELS = ("commune", "ept", "epci", "departement", "region")
UNIT_NOTES = {
    "commune": "population municipale (INSEE) de chaque commune — ou arrondissement à Paris, "
    "Lyon et Marseille — placée au centre de la commune : la distance réelle varie à "
    "l'intérieur de la commune",
    "carreau": "population des carreaux de 200 m (INSEE Filosofi) placée au centre de chaque "
    "carreau",
}
Progress = Callable[[str], None]


class CoverageError(CartecoError):
    """A coverage request that cannot be answered as asked."""

    kind = "invalid"


def sector_codes(sectors: list[str]) -> list[str]:
    """The taxonomy codes a list of sectors covers (a filière covers its activities)."""
    taxonomy = load_taxonomy()
    known = taxonomy.by_code()
    codes: set[str] = set()
    for code in sectors:
        if code not in known:
            raise CoverageError(
                f"secteur inconnu : {code}",
                errors=[{"parameter": "sector", "value": code, "reason": "secteur inconnu"}],
            )
        codes |= taxonomy.descendants(code)
    if not codes:
        raise CoverageError(
            "au moins un secteur est attendu",
            errors=[{"parameter": "sector", "reason": "secteur obligatoire"}],
        )
    return sorted(codes)


def check_radii(radii_km: list[float]) -> tuple[float, ...]:
    """Sorted distinct radii, each in (0, MAX_RADIUS_KM], at most MAX_RADII of them."""
    out = tuple(sorted(set(radii_km)))
    if not out or len(out) > MAX_RADII or not all(0 < r <= MAX_RADIUS_KM for r in out):
        raise CoverageError(
            f"rayons : de 1 à {MAX_RADII} distances en km, chacune entre 0 et {MAX_RADIUS_KM:g}",
            errors=[{"parameter": "radii", "reason": "rayons invalides"}],
        )
    return out


def grid_covers(conn: Connection, level: str, code: str) -> bool:
    """Whether population squares are loaded over this territory."""
    return bool(
        conn.execute(
            sa.text(
                "SELECT EXISTS (SELECT 1 FROM population_grid g JOIN territories t "
                "ON t.level = :l AND t.code = :c AND ST_Intersects(t.geom, g.centre))"
            ),
            {"l": level, "c": code},
        ).scalar()
    )


def coverage(
    conn: Connection,
    level: str,
    code: str,
    sectors: list[str],
    radii_km: list[float] | tuple[float, ...] = DEFAULT_RADII_KM,
    with_geometry: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any] | None:
    """Distances and population within reach for a territory; None when it is unknown."""
    say = progress or (lambda _m: None)
    if level not in LEVELS:
        raise CoverageError(
            f"niveau non pris en charge pour la couverture : {level} ({', '.join(LEVELS)})",
            errors=[{"parameter": "territoire", "value": level, "reason": "niveau"}],
        )
    radii = check_radii(list(radii_km))
    codes = sector_codes(sectors)
    terr = territory(conn, level, code, geometry=False)
    if terr is None:
        return None
    say("Unités de population")
    use_grid = grid_covers(conn, level, code)
    say("Plus proche structure de chaque unité")
    # One cheap index lookup per unit, but the planner's cost for the whole lateral join is
    # high enough to trigger JIT compilation, which alone takes seconds: off for this query.
    conn.execute(sa.text("SET LOCAL jit = off"))
    units = [
        dict(r)
        for r in conn.execute(
            sa.text((SQL / "units.sql").read_text(encoding="utf-8")),
            {
                "level": level,
                "code": code,
                "use_grid": use_grid,
                "sectors": codes,
                "with_geom": with_geometry,
            },
        ).mappings()
    ]
    say("Population à portée")
    unit = "carreau" if use_grid else "commune"
    white_km = radii[-1]
    pop_known = [u for u in units if u["population"] is not None]
    total = sum(u["population"] for u in pop_known) if pop_known else None
    missing_pop = len(units) - len(pop_known)

    def within(rows: list[dict[str, Any]], km: float) -> float:
        return sum(
            r["population"]
            for r in rows
            if r["population"] is not None
            and r["distance_m"] is not None
            and r["distance_m"] <= km * 1000
        )

    def reach(rows: list[dict[str, Any]], tot: float | None) -> list[dict[str, Any]]:
        return [
            {
                "km": km,
                "population": round(within(rows, km)) if tot is not None else None,
                "share": round(within(rows, km) / tot, 4) if tot else None,
            }
            for km in radii
        ]

    by_commune: dict[str, list[dict[str, Any]]] = {}
    for u in units:
        by_commune.setdefault(u["commune_code"] or u["code"], []).append(u)
    communes = []
    for c, rows in sorted(by_commune.items()):
        pops = [r["population"] for r in rows if r["population"] is not None]
        tot = sum(pops) if pops else None
        dists = [r["distance_m"] for r in rows if r["distance_m"] is not None]
        communes.append(
            {
                "code": c,
                "name": rows[0]["name"] if unit == "commune" else c,
                "units": len(rows),
                "population": round(tot) if tot is not None else None,
                "distance_m": round(min(dists), 1) if dists and unit == "commune" else None,
                "max_distance_m": round(max(dists), 1) if dists else None,
                "within": reach(rows, tot),
            }
        )
    white = [u for u in units if u["distance_m"] is None or u["distance_m"] > white_km * 1000]
    return {
        "territory": {k: terr[k] for k in ("level", "code", "name", "population")},
        "sectors": sectors,
        "sector_codes": codes,
        "radii_km": list(radii),
        "unit": unit,
        "unit_note": UNIT_NOTES[unit],
        "units": len(units),
        "population": round(total) if total is not None else None,
        "unavailable": {"population": f"{missing_pop} unité(s) sans population"}
        if missing_pop
        else {},
        "within": reach(units, total),
        "communes": communes,
        "white_zones": {
            "threshold_km": white_km,
            "units": len(white),
            # A unit without population leaves the sum unknown: null with its reason, never 0.
            "population": None
            if any(u["population"] is None for u in white)
            else round(sum(u["population"] for u in white)),
            "reason": "population inconnue pour une partie des unités"
            if any(u["population"] is None for u in white)
            else None,
        },
        "_units": units,
    }


def white_zones_geojson(result: dict[str, Any]) -> dict[str, Any]:
    """The units beyond the last radius as a GeoJSON FeatureCollection (RFC 7946)."""
    threshold = result["white_zones"]["threshold_km"] * 1000
    features = []
    for u in result["_units"]:
        if u["distance_m"] is not None and u["distance_m"] <= threshold:
            continue
        features.append(
            {
                "type": "Feature",
                "geometry": json.loads(u["geometry"]) if u.get("geometry") else None,
                "properties": {
                    "unite": u["level"],
                    "code": u["code"],
                    "nom": u["name"],
                    "commune": u["commune_code"],
                    "population": u["population"],
                    "distance_m": None if u["distance_m"] is None else round(u["distance_m"], 1),
                    "structure_la_plus_proche": u["structure_name"],
                    "note": result["unit_note"],
                },
            }
        )
    return {
        "type": "FeatureCollection",
        "name": "zones_blanches",
        "features": features,
        "properties": {
            "secteurs": result["sectors"],
            "seuil_km": result["white_zones"]["threshold_km"],
            "territoire": result["territory"],
        },
    }


def public(result: dict[str, Any]) -> dict[str, Any]:
    """The result without its private keys (the units with their geometry)."""
    return {k: v for k, v in result.items() if not k.startswith("_")}
