"""Needs ↔ sites matching: hard criteria first, then a score out of 100 to rank candidates."""

from __future__ import annotations

import math
from typing import Any

from pyproj import Transformer

from carteco.diagnostics.options import Options

# Sites whose status rules them out: already reused or occupied.
UNAVAILABLE = ("reconvertie", "occupe")
STATUS_POINTS = {"disponible": 15, "sans_projet": 15, "potentielle": 10, "avec_projet": 5}
CRITERIA_LABELS = {
    "kind": "type de local incompatible",
    "surface": "surface hors de la fourchette",
    "budget": "prix ou loyer au-delà du budget",
    "territory": "hors des territoires souhaités ou trop loin",
    "status": "site déjà reconverti ou occupé",
}
# CNIG "sol_pollution_existe" values that call for a soil study before any use.
POLLUTED = {"pollution avérée": "avérée", "pollution supposée": "supposée"}
_TO_L93 = Transformer.from_crs(4326, 2154, always_xy=True)


def _l93(lon: float | None, lat: float | None) -> tuple[float, float] | None:
    if lon is None or lat is None:
        return None
    x, y = _TO_L93.transform(lon, lat)
    return float(x), float(y)


def _relevant_surface(need: dict[str, Any], site: dict[str, Any]) -> float | None:
    """Land surface for farmland, else the built surface when known, else the land surface."""
    if need["kind"] == "terrain_agricole":
        return site["surface_m2"]  # type: ignore[no-any-return]
    if site["built_surface_m2"]:
        return site["built_surface_m2"]  # type: ignore[no-any-return]
    return site["surface_m2"]  # type: ignore[no-any-return]


def _evaluate(
    need: dict[str, Any],
    site: dict[str, Any],
    inter: dict[str, tuple[str | None, str | None]],
    opts: Options,
) -> tuple[str | None, dict[str, Any]]:
    """(first failed criterion or None, details with the score) for one need × site pair."""
    details: dict[str, Any] = {}
    # Each criterion's points with their reason: the score is explained, not just given.
    parts: list[dict[str, Any]] = []

    def earn(criterion: str, got: float, out_of: float, why: str) -> None:
        value = round(float(got), 1)
        shown = int(value) if value.is_integer() else value
        parts.append({"critere": criterion, "points": shown, "sur": out_of, "motif": why})

    if site["status"] in UNAVAILABLE:
        return "status", details
    if need["kind"] not in (site["usages"] or []):
        return "kind", details
    points = 20.0
    earn("type", 20, 20, "usage du site compatible")
    surface = _relevant_surface(need, site)
    smin, smax = need["surface_min_m2"], need["surface_max_m2"]
    if surface is None:
        points += 10
        details["surface"] = "inconnue"
        earn("surface", 10, 25, "surface du site inconnue (compte pour moitié)")
    else:
        if (smin is not None and surface < smin) or (smax is not None and surface > smax):
            return "surface", details
        if smin is not None and smax is not None and smax > smin:
            mid, half = (smin + smax) / 2, (smax - smin) / 2
            got = 25 - 10 * min(abs(surface - mid) / half, 1)
            why = f"{surface:.0f} m² dans la fourchette, à {abs(surface - mid):.0f} m² du milieu"
        else:
            got = 22
            why = f"{surface:.0f} m², fourchette ouverte"
        points += got
        earn("surface", got, 25, why)
        details["surface"] = "dans la fourchette"
    budget_known = False
    rent, price = site["rent_eur_month"], site["price_eur"]
    if need["budget_rent_eur_month"] is not None and rent is not None:
        if rent > need["budget_rent_eur_month"]:
            return "budget", details
        budget_known = True
    if need["budget_purchase_eur"] is not None and price is not None:
        if price > need["budget_purchase_eur"]:
            # A site both for rent and for sale fits when the rent fits.
            if not budget_known:
                return "budget", details
        else:
            budget_known = True
    points += 20 if budget_known else 10
    details["budget"] = "dans le budget" if budget_known else "non comparable"
    earn(
        "budget",
        20 if budget_known else 10,
        20,
        "prix ou loyer dans le budget"
        if budget_known
        else "prix ou budget inconnu (compte pour moitié)",
    )
    # Territory: wished commune / intercommunality / département, or the distance allowed.
    wished = set(need["territories"] or [])
    epci, ept = inter.get(site["commune_code"] or "", (site["epci_code"], None))
    site_codes = {site["commune_code"], site["epci_code"], epci, ept, site["departement_code"]}
    site_codes.discard(None)
    distance_km = None
    a, b = _l93(need["lon"], need["lat"]), _l93(site["lon"], site["lat"])
    if a and b:
        distance_km = math.dist(a, b) / 1000
    details["distance_km"] = round(distance_km, 2) if distance_km is not None else None
    max_km = need["max_distance_km"]
    if wished and site["commune_code"] in wished:
        got = 20.0
        details["territoire"] = "commune souhaitée"
    elif wished and site_codes & wished:
        got = 15.0
        details["territoire"] = "territoire souhaité"
    elif max_km is not None and distance_km is not None and distance_km <= max_km:
        got = 20 * (1 - distance_km / max_km)
        details["territoire"] = f"à {distance_km:.1f} km (≤ {max_km:g} km)"
    elif not wished and max_km is None:
        if distance_km is not None and distance_km > opts.default_distance_km:
            return "territory", details
        got = 10.0
        details["territoire"] = "dans le département"
    else:
        return "territory", details
    points += got
    earn("localisation", got, 20, details["territoire"])
    status_points = STATUS_POINTS.get(site["status"], 5)
    points += status_points
    earn("statut", status_points, 15, f"statut du site : {site['status']}")
    pollution = POLLUTED.get((site.get("pollution") or "").strip().lower())
    if pollution is None and "basias" in (site.get("origin") or "").lower():
        # Basias/Basol list former industrial sites: soil pollution is possible until studied.
        pollution = "possible (ancien site industriel Basias/Basol)"
    if pollution:
        # Growing food on polluted soil is not a match one may make silently: say so, and
        # rank the site after clean ones for farmland needs.
        if need["kind"] == "terrain_agricole":
            points -= 30
            earn("pollution", -30, 0, f"pollution {pollution} sur un besoin agricole")
            details["pollution"] = (
                f"pollution {pollution} : culture alimentaire exclue sans étude de sol "
                "et dépollution"
            )
        else:
            details["pollution"] = f"pollution {pollution} : diagnostic de sol à prévoir"
    details["score"] = round(min(points, 100.0), 1)
    details["score_detail"] = parts
    return None, details


def match_needs(
    needs: list[dict[str, Any]],
    sites: list[dict[str, Any]],
    communes: list[dict[str, Any]],
    opts: Options,
) -> dict[str, Any]:
    """Best candidate sites of each need, and the unmet needs with the blocking criterion."""
    if not needs:
        return {"available": False, "needs": [], "unmet": []}
    inter = {c["code"]: (c["epci_code"], c["ept_code"]) for c in communes}
    results, unmet = [], []
    for need in needs:
        cands, fails = [], {k: 0 for k in CRITERIA_LABELS}
        for site in sites:
            failed, details = _evaluate(need, site, inter, opts)
            if failed:
                fails[failed] += 1
                continue
            cands.append((details["score"], -(details["distance_km"] or 0), site, details))
        cands.sort(key=lambda c: (c[0], c[1]), reverse=True)
        top = [
            {
                "site_id": site["id"],
                "site_source_id": site["source_id"],
                "site_name": site["name"],
                "site_kind": site["kind"],
                "commune_code": site["commune_code"],
                "score": score,
                **{k: v for k, v in details.items() if k != "score"},
            }
            for score, _d, site, details in cands[: opts.matches_per_need]
        ]
        row = {
            "id": need["id"],
            "source_id": need["source_id"],
            "name": need["name"],
            "siret": need["siret"],
            "kind": need["kind"],
            "surface_min_m2": need["surface_min_m2"],
            "surface_max_m2": need["surface_max_m2"],
            "budget_rent_eur_month": need["budget_rent_eur_month"],
            "budget_purchase_eur": need["budget_purchase_eur"],
            "territories": list(need["territories"] or []),
            "max_distance_km": need["max_distance_km"],
            "usage": need.get("usage"),
            "deadline": need.get("deadline"),
            "commune_code": need["commune_code"],
            "lon": need["lon"],
            "lat": need["lat"],
            "candidates": len(cands),
            "matches": top,
            "met": bool(top),
        }
        if not top:
            blocking = max(fails, key=lambda k: fails[k]) if sites else None
            row["reason"] = (
                "aucun site recensé dans le département"
                if not sites
                else f"aucun site ne remplit tous les critères ; le plus souvent : "
                f"{CRITERIA_LABELS[blocking or 'kind']} ({fails[blocking or 'kind']} sites sur "
                f"{len(sites)})"
            )
            row["rejections"] = {CRITERIA_LABELS[k]: v for k, v in fails.items() if v}
            unmet.append(row)
        results.append(row)
    return {"available": True, "needs": results, "unmet": unmet}
