"""The land-access diagnostic of a département: indicators, matching, typology, recommendations.

Every figure is computed from the layers present in the database; a missing layer is said to
be missing (``available: false`` with a note) and its figures are ``null``, never zero.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from sqlalchemy.engine import Connection

from carteco import __version__
from carteco.diagnostics.matching import match_needs
from carteco.diagnostics.options import Options
from carteco.diagnostics.queries import sql
from carteco.diagnostics.rules import recommendations, typology
from carteco.sectors import load_taxonomy
from carteco.text import fold

SCHEMA_ID = "https://carteco.fr/schemas/diagnostic-foncier/1"
FAMILY_LABELS = {
    "association": "Associations",
    "cooperative": "Coopératives",
    "mutuelle": "Mutuelles",
    "fondation": "Fondations",
    "societe_commerciale_ess": "Sociétés commerciales de l'ESS",
    "inconnue": "Famille non renseignée",
}
SITE_KIND_LABELS = {
    "friche": "Friche",
    "local_vacant": "Local vacant",
    "terrain_public": "Terrain public",
}
STATUS_LABELS = {
    "sans_projet": "sans projet",
    "avec_projet": "avec projet",
    "reconvertie": "reconvertie",
    "potentielle": "potentielle",
    "disponible": "disponible",
    "occupe": "occupé",
    "inconnu": "statut inconnu",
}
AVAILABLE_STATUSES = ("sans_projet", "potentielle", "disponible")
Progress = Callable[[str], None]


def departement_info(conn: Connection, dep: str) -> dict[str, Any] | None:
    """Name, région and population of a département, or None when it is unknown."""
    row = (
        conn.execute(
            sql("departement.sql"),
            {"d": dep},
        )
        .mappings()
        .first()
    )
    if row is None:
        return None
    info = dict(row)
    info["name"] = info["name"] or f"Département {dep}"
    # No population loaded → no figure (never an invented 0 inhabitants).
    info["population"] = int(info["population"]) if info["population"] is not None else None
    return info


def foncier_indicators(
    conn: Connection,
    dep: str,
    options: Options | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """All the figures of the land-access diagnostic of département `dep`, JSON-ready."""
    opts = options or Options()
    say = progress or (lambda _msg: None)
    info = departement_info(conn, dep)
    if info is None:
        raise LookupError(f"département inconnu : {dep}")
    say("Communes et population")
    communes = [dict(r) for r in conn.execute(sql("communes.sql"), {"dep": dep}).mappings()]
    layers = _layers(conn, dep, communes)
    politique_ville = _politique_ville(conn, dep, layers)
    say("Structures de l'ESS")
    structures = [
        dict(r)
        for r in conn.execute(
            sql("structures.sql"), {"dep": dep, "buffer_m": opts.qpv_buffer_m}
        ).mappings()
    ]
    _structure_layer(conn, layers, structures)
    say("Prix des transactions (DVF)")
    sales = [
        dict(r)
        for r in conn.execute(
            sql("transactions.sql"),
            {"dep": dep},
        ).mappings()
    ]
    for s in sales:
        s["market"] = is_market_sale(s["nature_mutation"])
    say("Sites disponibles et gares")
    sites = [
        dict(r)
        for r in conn.execute(
            sql("sites.sql"), {"dep": dep, "with_stations": layers["stations"]["available"]}
        ).mappings()
    ]
    say("Besoins déclarés et appariement")
    needs = _needs(conn, dep, communes)
    matching = match_needs(needs, sites, communes, opts)

    say("Indicateurs par territoire")
    commune_rows = [
        _commune_row(c, structures, sales, sites, needs, matching, layers, opts) for c in communes
    ]
    _commune_context(conn, commune_rows, layers)
    inter_rows = _inter_rows(communes, commune_rows, structures, sales, layers, opts)
    dep_row = _area_figures(
        "departement",
        dep,
        info["name"],
        info["population"],
        structures,
        sales,
        layers,
        opts,
    )
    trend = _trend(sales, opts) if layers["dvf"]["available"] else None
    say("Communes comparables et typologie")
    similar = _similar(commune_rows, opts)
    for row in commune_rows:
        row["similar"] = similar["communes"].get(row["code"], [])
    types = typology(commune_rows, dep_row, layers, opts)
    doc: dict[str, Any] = {
        "$schema": SCHEMA_ID,
        "generated_at": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "carteco_version": __version__,
        "departement": info,
        "parameters": asdict(opts),
        "layers": layers,
        "departement_figures": dep_row,
        "intercommunalites": inter_rows,
        "communes": commune_rows,
        "price_trend": trend,
        "supply": _supply(sites, layers, opts),
        "qpv_figures": _qpv_figures(conn, dep, structures, sales, layers, opts),
        "politique_ville": politique_ville,
        "needs": {
            "available": layers["needs"]["available"],
            "count": len(needs) if layers["needs"]["available"] else None,
            "by_kind": _needs_by_kind(needs) if layers["needs"]["available"] else [],
            "results": matching,
        },
        "similar": {"basis": similar["basis"], "k": opts.similar_k},
        "typology": types,
    }
    doc["recommendations"] = recommendations(doc, opts)
    # Private keys (leading underscore) feed the maps and GeoJSON layers, not the JSON figures.
    doc["_structures"] = [
        {
            "id": s["id"],
            "name": s["name"],
            "lon": s["lon"],
            "lat": s["lat"],
            "family": s["ess_family"],
            "sector": (sorted({c.split(".")[0] for c in s["sectors"] or []}) or ["non_classe"])[0],
            "commune_code": s["commune_code"],
            "qpv_code": s["qpv_code"],
            "near_qpv": s["near_qpv"],
        }
        for s in structures
        if s["located"]
    ]
    return doc


# ---------------------------------------------------------------- layers


def _layers(conn: Connection, dep: str, communes: list[dict[str, Any]]) -> dict[str, Any]:
    """What each layer holds for this département (source, vintage, coverage) or its absence."""
    n_communes = len(communes)
    with_geom = sum(1 for c in communes if c["area_m2"] is not None)
    with_pop = sum(1 for c in communes if c["population"] is not None)
    meta = {r["source"]: r for r in conn.execute(sql("land_layers.sql")).mappings()}

    def prov(sources: str | None) -> dict[str, Any]:
        """Description and vintage of the land layers behind some figures (by source)."""
        names = [n for n in (sources or "").split(", ") if n]
        descs = [meta[n]["description"] for n in names if n in meta and meta[n]["description"]]
        vint = [
            meta[n]["vintage"] or f"chargé le {meta[n]['loaded_at']:%Y-%m-%d}"
            for n in names
            if n in meta
        ]
        return {
            "description": " ; ".join(descs) or None,
            "vintage": ", ".join(sorted(set(vint))) or None,
        }

    dvf = (
        conn.execute(
            sql("layer_dvf.sql"),
            {"d": dep},
        )
        .mappings()
        .one()
    )
    qpv = (
        conn.execute(
            sql("layer_qpv.sql"),
            {"d": dep},
        )
        .mappings()
        .one()
    )
    sites = (
        conn.execute(
            sql("layer_sites.sql"),
            {"d": dep},
        )
        .mappings()
        .one()
    )
    needs = (
        conn.execute(
            sql("layer_needs.sql"),
            {"d": dep},
        )
        .mappings()
        .one()
    )
    stations = (
        conn.execute(
            sql("layer_stations.sql"),
            {"d": dep},
        )
        .mappings()
        .one()
    )
    lovac = (
        conn.execute(
            sql("layer_lovac.sql"),
            {"codes": [c["code"] for c in communes]},
        )
        .mappings()
        .one()
    )
    ref = {r["name"]: r for r in conn.execute(sql("reference_layers.sql")).mappings()}

    def vintage(*names: str) -> str | None:
        return ", ".join(sorted({ref[n]["vintage"] for n in names if n in ref})) or None

    return {
        "communes": {
            "available": n_communes > 0,
            "label": "Communes et populations légales",
            "source": "INSEE, COG et populations légales (table communes_ref)",
            "vintage": vintage("communes_france_table", "communes_idf_table"),
            "coverage": f"{with_pop}/{n_communes} communes avec population",
        },
        "commune_outlines": {
            "available": with_geom > 0,
            "label": "Contours des communes",
            "source": "IGN ADMIN EXPRESS (couche territoires)",
            "vintage": vintage("communes_idf"),
            "coverage": f"{with_geom}/{n_communes} communes",
            "note": None
            if with_geom
            else "Contours communaux absents pour ce département : pas de densité ni de carte "
            "communale ; la comparaison se fait sur la seule population.",
        },
        "structures": {
            "available": False,  # filled by _structure_layer
            "label": "Structures de l'ESS (registre Carteco)",
        },
        "qpv": {
            "available": qpv["n"] > 0,
            "label": "Quartiers prioritaires de la politique de la ville (QPV)",
            "source": qpv["layers"],
            "vintage": qpv["vintage"],
            "coverage": f"{qpv['n']} QPV" if qpv["n"] else None,
            "description": prov(
                ", ".join(
                    x
                    for lay in (qpv["layers"] or "").split(", ")
                    for x in (lay, lay.removeprefix("qpv:"))
                )
            )["description"]
            if qpv["n"]
            else None,
            "note": None
            if qpv["n"]
            else "Aucun contour de QPV chargé pour ce département : la part des structures en "
            "QPV n'est pas calculée.",
        },
        "dvf": {
            "available": dvf["n"] > 0,
            "label": "Demandes de valeurs foncières (DVF)",
            "source": dvf["sources"],
            "description": prov(dvf["sources"])["description"],
            "vintage": f"{dvf['first']} → {dvf['last']}" if dvf["n"] else None,
            "coverage": f"{dvf['n']} mutations, {dvf['communes']} communes" if dvf["n"] else None,
            # What the loaded sales stand for, printed beside every price figure.
            "scope": None
            if not dvf["n"]
            else "ventes situées en QPV uniquement"
            if dvf["in_qpv"] == dvf["n"]
            else f"ventes chargées de {dvf['communes']} commune(s)",
            "note": None
            if dvf["n"]
            else "Aucune transaction DVF chargée pour ce département : aucun prix n'est affiché.",
        },
        "sites": {
            "available": sites["n"] > 0,
            "label": "Sites disponibles (friches, locaux vacants, foncier public)",
            "source": sites["sources"],
            "description": prov(sites["sources"])["description"],
            "vintage": prov(sites["sources"])["vintage"],
            "coverage": f"{sites['n']} sites ({sites['kinds']}), {sites['located']} localisés"
            if sites["n"]
            else None,
            "note": None
            if sites["n"]
            else "Aucun site (friche, local vacant, foncier public) recensé pour ce département : "
            "l'offre n'est pas mesurée.",
        },
        "needs": {
            "available": needs["n"] > 0,
            "label": "Besoins fonciers déclarés par les structures",
            "source": needs["sources"],
            "description": prov(needs["sources"])["description"],
            "vintage": prov(needs["sources"])["vintage"],
            "coverage": f"{needs['n']} besoins" if needs["n"] else None,
            "note": None
            if needs["n"]
            else "Aucun besoin déclaré pour ce département : pas d'appariement.",
        },
        "lovac": {
            "available": lovac["n"] > 0,
            "label": "Vacance des logements privés (LOVAC)",
            "source": lovac["sources"],
            "description": prov(lovac["sources"])["description"],
            "vintage": lovac["vintage"],
            "coverage": f"{lovac['known']}/{n_communes} communes avec un taux publié"
            if lovac["n"]
            else None,
            "scope": "logements du parc privé vacants depuis 2 ans ou plus : un indicateur de "
            "contexte, pas une mesure des locaux d'activité",
            "note": None
            if lovac["n"]
            else "Aucune donnée LOVAC chargée pour ce département : la vacance n'est pas indiquée.",
        },
        "stations": {
            "available": stations["n"] > 0,
            "label": "Gares et stations de transport en commun",
            "source": stations["layers"],
            "vintage": vintage("gares_idf") if stations["n"] else None,
            "coverage": f"{stations['n']} gares dans le département" if stations["n"] else None,
            "note": None
            if stations["n"]
            else "Aucune gare chargée pour ce département : la distance aux transports n'est "
            "pas calculée.",
        },
    }


def _structure_layer(
    conn: Connection, layers: dict[str, Any], structures: list[dict[str, Any]]
) -> None:
    n = len(structures)
    located = sum(1 for s in structures if s["located"])
    with_commune = sum(1 for s in structures if s["commune_code"])
    sources = sorted({s["source"] for s in structures})
    # The registry's vintage is that of its imports: the last successful run of each source.
    runs = conn.execute(
        sql("import_runs.sql"),
        {"s": sources},
    ).all()
    layers["structures"].update(
        {
            "available": n > 0,
            "source": ", ".join(sources) or None,
            "vintage": ", ".join(f"{src} importé le {at:%Y-%m-%d}" for src, at in runs if at)
            or None,
            "coverage": f"{n} structures, {located} localisées, {with_commune} rattachées "
            "à une commune"
            if n
            else None,
            "note": None if n else "Aucune structure de l'ESS enregistrée dans ce département.",
        }
    )


# ---------------------------------------------------------------- figures


def is_market_sale(nature: str | None) -> bool:
    """A sale at a market price: a plain "Vente" of an existing good.

    VEFA (off-plan sales of new buildings), adjudications (auctions) and sales of building
    land have prices of their own; mixed into one median they raise it (Montpellier +69 %).
    """
    return fold(nature or "") == "vente"


def _median_block(prices: list[float], opts: Options) -> dict[str, Any]:
    """Median €/m² with its count and spread (interquartile range), or no figure (and why)."""
    n = len(prices)
    if n < opts.min_sales:
        return {
            "sales": n,
            "median_eur_m2": None,
            "q1_eur_m2": None,
            "q3_eur_m2": None,
            "reason": f"moins de {opts.min_sales} ventes" if n else "aucune vente",
        }
    q1, _q2, q3 = statistics.quantiles(prices, n=4, method="inclusive")
    return {
        "sales": n,
        "median_eur_m2": round(statistics.median(prices)),
        "q1_eur_m2": round(q1),
        "q3_eur_m2": round(q3),
        "reason": None,
    }


def _market_prices(sales: list[dict[str, Any]], kind: str) -> list[float]:
    return [s["price_m2"] for s in sales if s["market"] and s["kind"] == kind and s["price_m2"]]


def _other_natures(sales: list[dict[str, Any]], opts: Options) -> list[dict[str, Any]]:
    """Sales that are not market sales (VEFA, adjudications…), by nature, shown apart."""
    by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for s in sales:
        if not s["market"]:
            by[s["nature_mutation"] or "?"].append(s)
    return [
        {
            "nature": nature,
            "sales": len(rows),
            "local": _median_block(
                [r["price_m2"] for r in rows if r["kind"] == "local" and r["price_m2"]], opts
            ),
            "terrain": _median_block(
                [r["price_m2"] for r in rows if r["kind"] == "terrain" and r["price_m2"]], opts
            ),
        }
        for nature, rows in sorted(by.items())
    ]


def _area_figures(
    level: str,
    code: str,
    name: str,
    population: int | None,
    structures: list[dict[str, Any]],
    sales: list[dict[str, Any]],
    layers: dict[str, Any],
    opts: Options,
) -> dict[str, Any]:
    """Structure and price figures of one territory (commune, intercommunality, département)."""
    n = len(structures)
    located = [s for s in structures if s["located"]]
    precise = [s for s in located if s["precise"]]
    fam = Counter(s["ess_family"] for s in structures)
    sect: Counter[str] = Counter()
    for s in structures:
        for top in sorted({c.split(".")[0] for c in s["sectors"] or []}) or ["non_classe"]:
            sect[top] += 1
    qpv_ok = layers["qpv"]["available"]
    in_qpv = sum(1 for s in precise if s["qpv_code"]) if qpv_ok else None
    near_qpv = sum(1 for s in precise if s["near_qpv"]) if qpv_ok else None
    row: dict[str, Any] = {
        "level": level,
        "code": code,
        "name": name,
        "population": population,
        "structures": {
            "total": n,
            "located": len(located),
            "located_precisely": len(precise),
            "per_10k": round(n * 10000 / population, 2) if population else None,
            "by_family": dict(sorted(fam.items())),
            "by_sector": dict(sorted(sect.items())),
            "in_qpv": in_qpv,
            "near_qpv": near_qpv,
            "share_in_qpv": round(in_qpv / len(precise), 3)
            if in_qpv is not None and precise
            else None,
            "share_near_qpv": round(near_qpv / len(precise), 3)
            if near_qpv is not None and precise
            else None,
        },
    }
    if layers["dvf"]["available"]:
        row["prices"] = {
            "sales": len(sales),
            "value_eur": round(sum(s["valeur_fonciere"] or 0 for s in sales)),
            "sales_by_kind": dict(sorted(Counter(s["kind"] for s in sales).items())),
            "market_sales": sum(1 for s in sales if s["market"]),
            "local": _median_block(_market_prices(sales, "local"), opts),
            "terrain": _median_block(_market_prices(sales, "terrain"), opts),
            "other_natures": _other_natures(sales, opts),
        }
    else:
        row["prices"] = None
    return row


def _commune_row(
    c: dict[str, Any],
    structures: list[dict[str, Any]],
    sales: list[dict[str, Any]],
    sites: list[dict[str, Any]],
    needs: list[dict[str, Any]],
    matching: dict[str, Any],
    layers: dict[str, Any],
    opts: Options,
) -> dict[str, Any]:
    code = c["code"]
    row = _area_figures(
        "commune",
        code,
        c["name"],
        c["population"],
        [s for s in structures if s["commune_code"] == code],
        [s for s in sales if s["commune_code"] == code],
        layers,
        opts,
    )
    area = c["area_m2"]
    row["inter_code"], row["inter_name"], row["inter_kind"] = (
        c["inter_code"],
        c["inter_name"],
        c["inter_kind"],
    )
    row["area_km2"] = round(area / 1e6, 3) if area else None
    row["density"] = round(c["population"] / (area / 1e6), 1) if area and c["population"] else None
    if layers["sites"]["available"]:
        mine = [s for s in sites if s["commune_code"] == code]
        avail = [s for s in mine if s["status"] in AVAILABLE_STATUSES]
        row["supply"] = {
            "sites": len(mine),
            "available": len(avail),
            "available_surface_m2": _known_sum(avail, "surface_m2"),
        }
    else:
        row["supply"] = None
    if layers["needs"]["available"]:
        mine_n = [n for n in needs if n["commune_code"] == code]
        unmet = {u["id"] for u in matching["unmet"]}
        row["needs"] = {"total": len(mine_n), "unmet": sum(1 for n in mine_n if n["id"] in unmet)}
    else:
        row["needs"] = None
    return row


def _inter_rows(
    communes: list[dict[str, Any]],
    rows: list[dict[str, Any]],
    structures: list[dict[str, Any]],
    sales: list[dict[str, Any]],
    layers: dict[str, Any],
    opts: Options,
) -> list[dict[str, Any]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for c in communes:
        if c["inter_code"]:
            groups[c["inter_code"]].append(c)
    out = []
    for code, members in sorted(groups.items()):
        codes = {m["code"] for m in members}
        pop = sum(m["population"] or 0 for m in members)
        row = _area_figures(
            "intercommunalite",
            code,
            members[0]["inter_name"] or code,
            pop or None,
            [s for s in structures if s["commune_code"] in codes],
            [s for s in sales if s["commune_code"] in codes],
            layers,
            opts,
        )
        row["kind"] = members[0]["inter_kind"]
        row["communes"] = len(members)
        mine = [r for r in rows if r["code"] in codes]
        row["supply"] = (
            {
                "sites": sum(r["supply"]["sites"] for r in mine),
                "available": sum(r["supply"]["available"] for r in mine),
                "available_surface_m2": _known_sum(
                    [r["supply"] for r in mine], "available_surface_m2"
                ),
            }
            if layers["sites"]["available"]
            else None
        )
        row["needs"] = (
            {k: sum(r["needs"][k] for r in mine) for k in ("total", "unmet")}
            if layers["needs"]["available"]
            else None
        )
        out.append(row)
    return out


def _trend(sales: list[dict[str, Any]], opts: Options) -> dict[str, Any]:
    """Yearly sales and market median €/m² of premises; the change between the first and last
    complete years that each rest on enough sales, or no change and why."""
    years = sorted({s["year"] for s in sales})
    counts = {y: sum(1 for s in sales if s["year"] == y) for y in years}
    typical = statistics.median(counts.values()) if counts else 0
    rows = []
    for y in years:
        ys = [s for s in sales if s["year"] == y]
        complete = counts[y] >= opts.complete_year_share * typical
        rows.append(
            {
                "year": y,
                "sales": len(ys),
                "complete": complete,
                "note": None
                if complete
                else f"année incomplète : {counts[y]} mutations pour {round(typical)} "
                "en année médiane",
                "local": _median_block(_market_prices(ys, "local"), opts),
                "terrain": _median_block(_market_prices(ys, "terrain"), opts),
            }
        )
    usable = [
        r
        for r in rows
        if r["complete"]
        and r["local"]["median_eur_m2"] is not None
        and r["local"]["sales"] >= opts.min_trend_sales
    ]
    change = None
    withheld = None
    if len(usable) >= 2:
        a, b = usable[0], usable[-1]
        years_n = b["year"] - a["year"]
        ratio = b["local"]["median_eur_m2"] / a["local"]["median_eur_m2"]
        change = {
            "from_year": a["year"],
            "to_year": b["year"],
            "from_eur_m2": a["local"]["median_eur_m2"],
            "to_eur_m2": b["local"]["median_eur_m2"],
            "from_sales": a["local"]["sales"],
            "to_sales": b["local"]["sales"],
            "change_pct": round(100 * (ratio - 1), 1),
            "yearly_pct": round(100 * (ratio ** (1 / years_n) - 1), 1) if years_n else None,
        }
    elif rows:
        withheld = (
            "évolution non publiée : il faut deux années complètes avec au moins "
            f"{opts.min_trend_sales} ventes de locaux d'activité au prix du marché chacune "
            f"({len(usable)} année(s) remplissent ces conditions)"
        )
    return {"years": rows, "local_change": change, "local_change_withheld": withheld}


def _commune_context(conn: Connection, rows: list[dict[str, Any]], layers: dict[str, Any]) -> None:
    """LOVAC vacancy of each commune, or null with the reason (layer absent, rate withheld)."""
    values: dict[str, float | None] = {}
    if layers["lovac"]["available"]:
        values = dict(
            conn.execute(
                sql("lovac.sql"),
                {"codes": [r["code"] for r in rows]},
            ).all()
        )
    for row in rows:
        value = values.get(row["code"])
        if value is not None:
            reason = None
        elif not layers["lovac"]["available"]:
            reason = "couche LOVAC absente"
        elif row["code"] in values:
            reason = "taux non publié (secret statistique)"
        else:
            reason = "commune absente du fichier LOVAC"
        row["context"] = {"logements_vacants_2ans_pct": value, "reason": reason}


def _qpv_figures(
    conn: Connection,
    dep: str,
    structures: list[dict[str, Any]],
    sales: list[dict[str, Any]],
    layers: dict[str, Any],
    opts: Options,
) -> dict[str, Any]:
    """Structures and market prices of premises per QPV, or why there are none."""
    if not layers["qpv"]["available"]:
        return {"available": False, "reason": layers["qpv"]["note"], "quartiers": []}
    qpvs = conn.execute(
        sql("qpvs.sql"),
        {"d": dep},
    ).all()
    out = []
    for code, name in qpvs:
        mine = [s for s in structures if s["precise"] and s["qpv_code"] == code]
        qs = [s for s in sales if s["qpv_code"] == code]
        out.append(
            {
                "code": code,
                "name": name,
                "structures": len(mine),
                "sales": len(qs),
                "local": _median_block(_market_prices(qs, "local"), opts),
            }
        )
    return {"available": True, "reason": None, "quartiers": out}


POST_PROGRAMS = {
    "adultes_relais": "Postes d'adultes-relais",
    "fonjep_qpv": "Postes FONJEP en QPV",
}


def _politique_ville(conn: Connection, dep: str, layers: dict[str, Any]) -> dict[str, Any]:
    """ANCT posts funded in the département (adultes-relais, FONJEP in QPV) and their
    employers found in the registry by SIRET; null with the reason when a layer is absent."""
    loaded = [dict(r) for r in conn.execute(sql("posts_layers.sql"), {"d": dep}).mappings()]
    here = [lay for lay in loaded if lay["n_dep"]]
    year = max((lay["last_year"] for lay in here), default=None)
    sources = [lay["source"] for lay in here]
    posts = (
        [
            dict(r)
            for r in conn.execute(
                sql("posts.sql"), {"d": dep, "year": year, "sources": sources}
            ).mappings()
        ]
        if year is not None
        else []
    )
    programs: dict[str, Any] = {}
    for kind, label in POST_PROGRAMS.items():
        mine = [lay for lay in loaded if lay["kind"] == kind]
        rows = [p for p in posts if p["program"] == kind]
        reason = (
            "couche non chargée"
            if not mine
            else None
            if any(lay["n_dep"] for lay in mine)
            else f"département hors de la couverture de la couche ({mine[0]['coverage']})"
        )
        programs[kind] = {
            "label": label,
            "available": reason is None,
            "reason": reason,
            "source": ", ".join(lay["source"] for lay in mine) or None,
            "posts": len(rows) if reason is None else None,
            "amount_eur": round(sum(p["amount_eur"] or 0 for p in rows), 2)
            if reason is None
            else None,
        }
    ok = [k for k, v in programs.items() if v["available"]]
    missing = [f"{POST_PROGRAMS[k]} : {v['reason']}" for k, v in programs.items() if k not in ok]
    # The employer is its SIRET when the file gives one, else its name (FONJEP): one employer
    # of both programs may then count twice, which the note says.
    employers = {_employer_key(p) for p in posts}
    matched: dict[str, dict[str, Any]] = {}
    for p in posts:
        if p["siret"] and p["structure_name"] is not None:
            matched.setdefault(
                p["siret"],
                {"siret": p["siret"], "name": p["structure_name"], "posts": 0},
            )["posts"] += 1
    block: dict[str, Any] = {
        "available": bool(ok),
        "reason": None if ok else "non chargé : " + " ; ".join(missing),
        "missing": missing,
        "year": year,
        "scope": f"postes financés en {year}, source ANCT" if year else None,
        "programs": programs,
        "posts": len(posts) if ok else None,
        "amount_eur": round(sum(p["amount_eur"] or 0 for p in posts), 2) if ok else None,
        "employers": len(employers) if ok else None,
        "employers_note": "employeurs distincts : par SIRET pour les adultes-relais, par nom "
        "pour le FONJEP (un employeur des deux dispositifs peut compter deux fois)",
        "employers_in_registry": len(matched)
        if ok and programs["adultes_relais"]["available"]
        else None,
        "registry_employers": sorted(matched.values(), key=lambda m: (-m["posts"], m["name"])),
    }
    block["contrats_ville"] = _contrats_ville(conn, dep, posts, block, layers)
    layers["politique_ville"] = {
        "available": bool(ok),
        "label": "Politique de la ville : postes financés par l'ANCT (adultes-relais, FONJEP)",
        "source": ", ".join(lay["source"] for lay in loaded) or None,
        "description": " ; ".join(lay["description"] for lay in loaded if lay["description"])
        or None,
        "vintage": ", ".join(sorted({lay["vintage"] for lay in loaded if lay["vintage"]})) or None,
        "coverage": f"{len(posts)} postes financés en {year} dans le département" if ok else None,
        "note": None
        if ok
        else "Contexte politique de la ville non établi : " + " ; ".join(missing),
    }
    return block


CV_LAYER_MISSING = "couche non chargée"
CV_NO_CODE = "code de contrat de ville non renseigné dans le fichier de l'ANCT"


def _employer_key(p: dict[str, Any]) -> str:
    """The employer of a post: its SIRET, else its name (FONJEP posts carry no SIRET)."""
    return p["siret"] or f"nom:{p['employer_name'].strip().upper()}"


def _post_figures(
    rows: list[dict[str, Any]], programs: dict[str, Any], with_registry: bool
) -> dict[str, Any]:
    """Posts (per scheme: null when the scheme's layer is absent), amount and employers."""
    return {
        "posts": len(rows),
        "programs": {
            k: sum(1 for p in rows if p["program"] == k) if v["available"] else None
            for k, v in programs.items()
        },
        "amount_eur": round(sum(p["amount_eur"] or 0 for p in rows), 2),
        "employers": len({_employer_key(p) for p in rows}),
        "employers_in_registry": len(
            {p["siret"] for p in rows if p["siret"] and p["structure_name"] is not None}
        )
        if with_registry
        else None,
    }


def _contrats_ville(
    conn: Connection,
    dep: str,
    posts: list[dict[str, Any]],
    block: dict[str, Any],
    layers: dict[str, Any],
) -> dict[str, Any]:
    """The département's posts per contrat de ville (its code in the ANCT file), each with the
    point the ANCT publishes as its centre; posts without a known contrat de ville apart."""
    layer = dict(conn.execute(sql("contrats_ville_layer.sql")).mappings().one())
    loaded = layer["n"] > 0
    codes = sorted({p["contrat_ville"] for p in posts if p["contrat_ville"]})
    known = (
        {
            r["code"]: dict(r)
            for r in conn.execute(sql("contrats_ville.sql"), {"d": dep, "codes": codes}).mappings()
        }
        if loaded
        else {}
    )
    mine = sum(1 for c in known.values() if c["departement_code"] == dep)
    covered = bool(known)
    layer_reason = (
        CV_LAYER_MISSING
        if not loaded
        else None
        if covered
        else f"département hors de la couverture de la couche (départements {layer['coverage']})"
    )
    reason = layer_reason or (
        None if block["available"] else f"postes ANCT absents : {block['reason']}"
    )
    layers["contrats_ville"] = {
        "available": covered,
        "label": "Contrats de ville (ANCT) : un point par contrat de ville",
        "source": f"ANCT, application Ci.Ville (couche de référence {layer['layers']})"
        if loaded
        else None,
        "vintage": layer["vintage"],
        "coverage": f"{mine} contrats de ville dans le département" if covered else None,
        "note": None
        if covered
        else f"Contrats de ville : {layer_reason} ; postes non répartis par contrat de ville",
    }
    out: dict[str, Any] = {
        "available": reason is None,
        "reason": reason,
        "point_note": "point : centre du contrat de ville publié par l'ANCT, pas l'adresse des "
        "postes (les postes n'en ont pas)",
        "contrats": None,
        "unattributed": None,
    }
    if reason is not None:
        return out
    programs = block["programs"]
    with_registry = programs["adultes_relais"]["available"]
    by_code: dict[str, list[dict[str, Any]]] = defaultdict(list)
    apart: dict[str, list[dict[str, Any]]] = defaultdict(list)
    unknown = (
        f"code absent de la couche des contrats de ville (couverture : départements "
        f"{layer['coverage']})"
    )
    for p in posts:
        code = p["contrat_ville"]
        if not code:
            apart[CV_NO_CODE].append(p)
        elif code in known:
            by_code[code].append(p)
        else:
            apart[unknown].append(p)
    rows = []
    # The contrats de ville of the département without any post are listed too: a true zero,
    # since the post layers cover the département.
    for code, cv in known.items():
        if cv["departement_code"] != dep and code not in by_code:
            continue
        rows.append(
            {
                "code": code,
                "name": cv["name"],
                "departement_code": cv["departement_code"],
                "lon": round(cv["lon"], 6),
                "lat": round(cv["lat"], 6),
                **_post_figures(by_code.get(code, []), programs, with_registry),
            }
        )
    rows.sort(key=lambda r: (-r["posts"], r["code"]))
    out["contrats"] = rows
    out["unattributed"] = [
        {
            "reason": why,
            "codes": sorted({p["contrat_ville"] for p in group if p["contrat_ville"]}),
            **_post_figures(group, programs, with_registry),
        }
        for why, group in sorted(apart.items())
    ]
    return out


def _known_sum(rows: list[dict[str, Any]], key: str) -> int | None:
    """Sum of a column over the rows where it is known; None when it is known for none."""
    known = [r[key] for r in rows if r[key] is not None]
    return round(sum(known)) if known else None


def _supply(sites: list[dict[str, Any]], layers: dict[str, Any], opts: Options) -> dict[str, Any]:
    if not layers["sites"]["available"]:
        return {"available": False, "by_kind_status": [], "sites": []}
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for s in sites:
        groups[(s["kind"], s["status"])].append(s)
    by = [
        {
            "kind": k,
            "kind_label": SITE_KIND_LABELS.get(k, k),
            "status": st,
            "status_label": STATUS_LABELS.get(st, st),
            "sites": len(v),
            # Sums over the sites whose surface is known, with that count: never a 0 for
            # "unknown" (the CNIG built-surface column is empty for every Ardennes friche).
            "surface_m2": _known_sum(v, "surface_m2"),
            "surface_known": sum(1 for s in v if s["surface_m2"] is not None),
            "built_surface_m2": _known_sum(v, "built_surface_m2"),
            "built_surface_known": sum(1 for s in v if s["built_surface_m2"] is not None),
            "pollution": dict(
                sorted(Counter(s["pollution"] or "non renseignée" for s in v).items())
            ),
        }
        for (k, st), v in sorted(groups.items())
    ]
    by_origin: Counter[tuple[str, str]] = Counter(
        (s["origin"] or "non renseignée", s["status"]) for s in sites if s["kind"] == "friche"
    )
    with_st = layers["stations"]["available"]
    dists = [s["station_distance_m"] for s in sites if s["station_distance_m"] is not None]
    return {
        "available": True,
        "by_kind_status": by,
        "friches_by_origin_status": [
            {
                "origin": o,
                "status": st,
                "status_label": STATUS_LABELS.get(st, st),
                "sites": n,
            }
            for (o, st), n in sorted(by_origin.items())
        ],
        "station_distance": {
            "available": with_st,
            "median_m": round(statistics.median(dists)) if dists else None,
            "sites_far": sum(1 for d in dists if d > opts.station_far_m) if with_st else None,
            "far_threshold_m": opts.station_far_m,
        },
        "sites": [
            {
                "id": s["id"],
                "source_id": s["source_id"],
                "name": s["name"],
                "kind": s["kind"],
                "site_type": s["site_type"],
                "status": s["status"],
                "usages": list(s["usages"] or []),
                "surface_m2": s["surface_m2"],
                "built_surface_m2": s["built_surface_m2"],
                "owner_type": s["owner_type"],
                "pollution": s["pollution"],
                "origin": s["origin"],
                "rent_eur_month": s["rent_eur_month"],
                "price_eur": s["price_eur"],
                "commune_code": s["commune_code"],
                "epci_code": s["epci_code"],
                "lon": s["lon"],
                "lat": s["lat"],
                "station_name": s["station_name"] if with_st else None,
                "station_distance_m": round(s["station_distance_m"])
                if with_st and s["station_distance_m"] is not None
                else None,
                "structures_2km": len(s["structures_2km_ids"] or []),
                "structures_2km_ids": list(s["structures_2km_ids"] or []),
            }
            for s in sites
        ],
        "_footprints": {s["id"]: s["footprint"] for s in sites if s["footprint"]},
    }


def _needs(conn: Connection, dep: str, communes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        dict(r)
        for r in conn.execute(
            sql("needs.sql"),
            {"d": dep},
        ).mappings()
    ]


def _needs_by_kind(needs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for n in needs:
        groups[n["kind"]].append(n)
    return [
        {
            "kind": k,
            "needs": len(v),
            "surface_min_m2": round(sum(n["surface_min_m2"] or 0 for n in v)),
            "surface_max_m2": round(sum(n["surface_max_m2"] or 0 for n in v)),
        }
        for k, v in sorted(groups.items())
    ]


def _similar(rows: list[dict[str, Any]], opts: Options) -> dict[str, Any]:
    """The k communes of the département closest on log population (and log density)."""
    pts = [r for r in rows if r["population"]]
    use_density = bool(pts) and all(r["density"] for r in pts)
    feats = []
    for r in pts:
        f = [math.log(r["population"])]
        if use_density:
            f.append(math.log(r["density"]))
        feats.append(f)
    dims = len(feats[0]) if feats else 0
    scales = []
    for d in range(dims):
        col = [f[d] for f in feats]
        scales.append(statistics.pstdev(col) or 1.0)
    out: dict[str, list[dict[str, Any]]] = {}
    for i, r in enumerate(pts):
        dists = []
        for j, o in enumerate(pts):
            if i == j:
                continue
            dd = math.sqrt(sum(((feats[i][d] - feats[j][d]) / scales[d]) ** 2 for d in range(dims)))
            dists.append((dd, o["code"], o["name"]))
        dists.sort()
        out[r["code"]] = [
            {"code": code, "name": name, "distance": round(dd, 3)}
            for dd, code, name in dists[: opts.similar_k]
        ]
    basis = "population et densité" if use_density else "population seule (densité indisponible)"
    return {"basis": basis, "communes": out}


def sector_labels() -> dict[str, str]:
    """Top-level sector code → French label (plus 'non_classe')."""
    tax = load_taxonomy()
    labels = {n.code: n.label for n in tax.nodes if n.parent is None}
    labels["non_classe"] = "Secteur non renseigné"
    return labels
