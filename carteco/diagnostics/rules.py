"""Typology of communes and rule-based recommendations, each tied to the figures behind it."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from carteco.diagnostics.options import Options

KIND_LABELS = {
    "bureau": "bureau",
    "atelier": "atelier",
    "entrepot": "entrepôt",
    "commerce": "commerce",
    "terrain_agricole": "terrain agricole",
    "tiers_lieu": "tiers-lieu",
}


NO_SITE = "aucun site inventorié"


def _active(row: dict[str, Any]) -> bool:
    """A commune worth a line: it has structures, sales, sites or needs."""
    return bool(
        row["structures"]["total"]
        or (row["prices"] and row["prices"]["sales"])
        or (row["supply"] and row["supply"]["sites"])
        or (row["needs"] and row["needs"]["total"])
    )


def typology(
    rows: list[dict[str, Any]],
    dep_row: dict[str, Any],
    layers: dict[str, Any],
    opts: Options,
) -> list[dict[str, Any]]:
    """Class of each active commune from price pressure (vs the département) and supply."""
    dep_median = dep_row["prices"]["local"]["median_eur_m2"] if dep_row.get("prices") else None
    out = []
    for row in rows:
        if not _active(row):
            continue
        median = row["prices"]["local"]["median_eur_m2"] if row["prices"] else None
        if median is None or dep_median is None:
            pressure = None
        elif median >= opts.pressure_high * dep_median:
            pressure = "forte"
        elif median <= opts.pressure_low * dep_median:
            pressure = "faible"
        else:
            pressure = "moyenne"
        supply = None
        if row["supply"] is not None:
            # An inventory lists what someone recorded: a commune with no site in it is
            # "not inventoried", never "little supply" (24 of 28 communes of 93 were so
            # labelled from a 6-site example file).
            supply = "offre disponible" if row["supply"]["available"] else NO_SITE
        if pressure is None and supply is None:
            label = "Données insuffisantes"
        elif pressure is None:
            label = f"Pression non mesurée, {supply}"
        elif supply is None:
            label = f"Pression {pressure}, offre non mesurée"
        else:
            label = f"Pression {pressure}, {supply}"
        out.append(
            {
                "code": row["code"],
                "name": row["name"],
                "pressure": pressure,
                "supply": supply,
                "label": label,
                "figures": {
                    "median_local_eur_m2": median,
                    "sales_local": row["prices"]["local"]["sales"] if row["prices"] else None,
                    "median_local_departement_eur_m2": dep_median,
                    "available_sites": row["supply"]["available"] if row["supply"] else None,
                    "structures": row["structures"]["total"],
                },
            }
        )
    return out


def recommendations(doc: dict[str, Any], opts: Options) -> list[dict[str, Any]]:
    """Rule-based levers, each with the rule, the territory and the figures that triggered it."""
    recos: list[dict[str, Any]] = []
    layers = doc["layers"]
    sites = doc["supply"].get("sites", [])
    needs = doc["needs"]["results"]
    communes = {r["code"]: r for r in doc["communes"]}

    # 1. Friches without a project near structures or needs: transitional urbanism.
    fallow = [s for s in sites if s["kind"] == "friche" and s["status"] == "sans_projet"]
    unmet = needs.get("unmet", []) if needs else []
    if fallow:
        by_inter: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for s in fallow:
            inter = communes.get(s["commune_code"] or "", {}).get("inter_code")
            by_inter[inter or s["epci_code"] or "?"].append(s)
        for inter, group in sorted(by_inter.items(), key=lambda kv: -len(kv[1])):
            near = len({i for s in group for i in s["structures_2km_ids"]})
            unmet_here = [
                u
                for u in unmet
                if u["commune_code"]
                and communes.get(u["commune_code"], {}).get("inter_code") == inter
            ]
            if near < 3 and not unmet_here:
                continue
            names = [g["name"] for g in group[:5]]
            recos.append(
                {
                    "rule": "urbanisme_transitoire",
                    "title": "Friches sans projet proches de structures en besoin : "
                    "urbanisme transitoire",
                    "territory": _inter_name(doc, inter),
                    "text": (
                        f"{len(group)} friche(s) sans projet ({', '.join(names)}"
                        f"{'…' if len(group) > 5 else ''}) "
                        f"{_surface_text(group)} ; "
                        f"{near} structure(s) de l'ESS à moins de 2 km"
                        + (
                            f" et {len(unmet_here)} besoin(s) non satisfait(s)"
                            if unmet_here
                            else ""
                        )
                        + ". Proposer des conventions d'occupation temporaire aux structures de "
                        "l'ESS en attendant un projet."
                    ),
                    "figures": {
                        "friches_sans_projet": len(group),
                        "surface_m2": _known_surface(group),
                        "surface_connue_pour": sum(1 for s in group if s["surface_m2"] is not None),
                        "structures_a_moins_de_2km": near,
                        "besoins_non_satisfaits": len(unmet_here),
                    },
                }
            )

    # 2. High pressure and little supply: mobilise public land.
    hot = [t for t in doc["typology"] if t["pressure"] == "forte" and t["supply"] == NO_SITE]
    if hot:
        recos.append(
            {
                "rule": "foncier_public",
                "title": "Forte pression, aucun site inventorié : recenser et mobiliser le "
                "foncier public",
                "territory": ", ".join(t["name"] for t in hot[:10]),
                "text": (
                    f"{len(hot)} commune(s) où le prix médian des locaux d'activité dépasse de "
                    f"{round((opts.pressure_high - 1) * 100)} % au moins la médiane "
                    "départementale (ventes au prix du marché) sans site disponible dans "
                    "l'inventaire chargé — ce qui ne prouve pas l'absence d'offre : compléter "
                    "l'inventaire, recenser et mobiliser le foncier et les rez-de-chaussée "
                    "publics (collectivités, bailleurs sociaux), baux à loyer modéré pour l'ESS."
                ),
                "figures": {
                    t["code"]: {
                        "median_eur_m2": t["figures"]["median_local_eur_m2"],
                        "ventes": t["figures"]["sales_local"],
                        "mediane_departement_eur_m2": t["figures"][
                            "median_local_departement_eur_m2"
                        ],
                        "sites_disponibles_inventories": 0,
                    }
                    for t in hot
                },
            }
        )

    # 3. Structures in or near QPV: politique de la ville levers.
    dep_s = doc["departement_figures"]["structures"]
    if dep_s["share_near_qpv"] is not None and dep_s["share_near_qpv"] >= 0.25:
        recos.append(
            {
                "rule": "qpv",
                "title": "Structures ancrées dans les quartiers prioritaires : "
                "mobiliser la politique de la ville",
                "territory": doc["departement"]["name"],
                "text": (
                    f"{dep_s['near_qpv']} structure(s) localisée(s) à l'adresse sur "
                    f"{dep_s['located_precisely']} "
                    f"({round(dep_s['share_near_qpv'] * 100)} %) sont dans un QPV ou à moins de "
                    f"{opts.qpv_buffer_m:g} m ({dep_s['in_qpv']} dedans) : mobiliser les "
                    "pieds d'immeubles des bailleurs sociaux, les exonérations et les crédits "
                    "du contrat de ville pour leurs locaux."
                ),
                "figures": {
                    "structures_localisees_a_l_adresse": dep_s["located_precisely"],
                    "dans_un_qpv": dep_s["in_qpv"],
                    "a_moins_de_300m": dep_s["near_qpv"],
                    "part": dep_s["share_near_qpv"],
                },
            }
        )

    # 3b. Politique de la ville employers (ANCT posts): partners for premises in the QPV,
    # cited even when no QPV outline is loaded.
    pv = doc.get("politique_ville") or {}
    if pv.get("available") and pv.get("posts"):
        names = [e["name"] for e in pv["registry_employers"][:5]]
        in_registry = pv["employers_in_registry"]
        cv = pv.get("contrats_ville") or {}
        # The contrats de ville holding most posts: where to meet those employers first.
        top = [c for c in cv.get("contrats") or [] if c["posts"]][:3]
        recos.append(
            {
                "rule": "politique_ville_employeurs",
                "title": "Employeurs de la politique de la ville : partenaires pour les locaux "
                "en quartier prioritaire",
                "territory": doc["departement"]["name"],
                "text": (
                    f"{pv['posts']} poste(s) (adultes-relais, FONJEP en QPV) chez "
                    f"{pv['employers']} employeur(s), "
                    + f"{round(pv['amount_eur']):,} € ".replace(",", "\u202f")
                    + f"({pv['scope']})"
                    + (
                        f" ; {in_registry} sont des structures du registre"
                        + (
                            f" ({', '.join(names)}{'…' if in_registry > 5 else ''})"
                            if names
                            else ""
                        )
                        if in_registry is not None
                        else ""
                    )
                    + (
                        " ; contrats de ville qui en comptent le plus : "
                        + ", ".join(f"{c['name']} ({c['posts']})" for c in top)
                        if top
                        else ""
                    )
                    + ". Associer ces employeurs au recensement des besoins de locaux et aux "
                    "conventions de pieds d'immeubles avec les bailleurs sociaux du contrat "
                    "de ville."
                ),
                "figures": {
                    "postes": pv["posts"],
                    "montant_eur": pv["amount_eur"],
                    "employeurs": pv["employers"],
                    "employeurs_du_registre": in_registry,
                    "perimetre": pv["scope"],
                    "contrats_de_ville": {c["code"]: c["posts"] for c in top} or None,
                },
            }
        )

    # 4. Unmet needs: a premises exchange.
    if unmet:
        kinds: dict[str, int] = defaultdict(int)
        surf = 0.0
        for u in unmet:
            kinds[KIND_LABELS.get(u["kind"], u["kind"])] += 1
            surf += u["surface_min_m2"] or 0
        recos.append(
            {
                "rule": "bourse_locaux",
                "title": "Besoins non satisfaits : organiser une bourse de locaux",
                "territory": doc["departement"]["name"],
                "text": (
                    f"{len(unmet)} besoin(s) sans site compatible ("
                    + ", ".join(f"{v} {k}" for k, v in sorted(kinds.items()))
                    + f", au moins {_m2(surf)} demandés) : recenser les locaux vacants des "
                    "collectivités et bailleurs, relayer les besoins aux propriétaires."
                ),
                "figures": {
                    "besoins_non_satisfaits": len(unmet),
                    "par_type": dict(kinds),
                    "surface_min_m2": round(surf),
                },
            }
        )

    # 5. Available sites far from public transport.
    st = doc["supply"].get("station_distance") or {}
    if st.get("available") and st.get("sites_far"):
        recos.append(
            {
                "rule": "desserte",
                "title": "Sites éloignés des transports : prévoir la desserte",
                "territory": doc["departement"]["name"],
                "text": (
                    f"{st['sites_far']} site(s) à plus de {st['far_threshold_m']:g} m d'une gare "
                    f"(distance médiane {st['median_m']} m) : privilégier pour l'ESS les sites "
                    "desservis, ou accompagner la desserte (navettes, vélo)."
                ),
                "figures": {
                    "sites_eloignes": st["sites_far"],
                    "distance_mediane_m": st["median_m"],
                },
            }
        )

    # 6. Missing layers: complete the data before concluding.
    missing = [v["label"] for k, v in layers.items() if not v["available"]]
    if missing:
        recos.append(
            {
                "rule": "donnees",
                "title": "Compléter les données manquantes",
                "territory": doc["departement"]["name"],
                "text": "Couches absentes pour ce département : "
                + " ; ".join(missing)
                + ". Les constats correspondants ne sont pas établis.",
                "figures": {"couches_absentes": missing},
            }
        )
    return recos


def _inter_name(doc: dict[str, Any], code: str) -> str:
    for r in doc["intercommunalites"]:
        if r["code"] == code:
            return f"{r['name']} ({r['kind']})"
    return code


def _known_surface(sites: list[dict[str, Any]]) -> int | None:
    known = [s["surface_m2"] for s in sites if s["surface_m2"] is not None]
    return round(sum(known)) if known else None


def _surface_text(sites: list[dict[str, Any]]) -> str:
    """ "totalisent X m²", saying over how many sites; "de surface inconnue" when none is."""
    known = [s for s in sites if s["surface_m2"] is not None]
    if not known:
        return "de surface inconnue"
    text = "totalisent " + _m2(sum(s["surface_m2"] for s in known))
    return text if len(known) == len(sites) else f"{text} (surface connue pour {len(known)})"


def _m2(value: float) -> str:
    return f"{round(value):,} m²".replace(",", "\u202f")
