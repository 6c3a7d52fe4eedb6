"""The panorama as a French HTML page (self-contained: inline CSS, no script, print CSS for the
PDF) and as CSV; coverage as CSV. Imported text reaches Jinja only as autoescaped data."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader

from carteco.families import FAMILY_LABELS
from carteco.sectors import load_taxonomy
from carteco.text import neutralise_formula

TEMPLATES = Path(__file__).parent / "templates"
LEVEL_LABELS = {
    "region": "Région",
    "departement": "Département",
    "epci": "Intercommunalité",
    "ept": "Établissement public territorial",
    "commune": "Commune",
    "arrondissement": "Arrondissement",
    "qpv": "Quartier prioritaire",
}


def _num(v: Any, digits: int = 0) -> str:
    if v is None:
        return "non disponible"
    if digits:
        return f"{v:,.{digits}f}".replace(",", "\u202f").replace(".", ",")
    return f"{round(v):,}".replace(",", "\u202f")


def _env() -> Environment:
    # Every value is escaped, whatever the template: names are imported text, only data here.
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=True)
    env.filters["num"] = _num
    env.filters["pct"] = lambda v: "non disponible" if v is None else f"{round(v * 100)} %"
    return env


def _bars(items: list[tuple[str, float | None]]) -> list[dict[str, Any]]:
    """Label, value and width in % of the largest value (None stays None: no bar, no zero)."""
    top = max((v for _l, v in items if v is not None), default=0) or 1
    return [
        {"label": label, "value": v, "width": None if v is None else round(100 * v / top, 1)}
        for label, v in items
    ]


def panorama_html(doc: dict[str, Any]) -> str:
    """The panorama page, in French."""
    taxonomy = load_taxonomy().by_code()
    fig = doc["figures"]
    sectors = sorted(fig["by_sector"].items(), key=lambda kv: -kv[1]["structures"])
    sector_bars = _bars(
        [(taxonomy[k].label if k in taxonomy else k, v["structures"]) for k, v in sectors[:15]]
    )
    family_bars = _bars(
        [
            (FAMILY_LABELS.get(k, k), n)
            for k, n in sorted(fig["by_family"].items(), key=lambda kv: -kv[1])
        ]
    )
    comparison = [(fig["name"], fig["per_10000"])]
    comparison += [(p["name"], p["per_10000"]) for p in doc["parents"]]
    comparison += [(p["name"], p["per_10000"]) for p in doc["peers"]]
    band_bars = _bars([(b["label"], b["structures"]) for b in doc["employment"]["by_band"]])
    return (
        _env()
        .get_template("panorama.html.j2")
        .render(
            doc=doc,
            t=doc["territory"],
            fig=fig,
            level_label=LEVEL_LABELS.get(doc["territory"]["level"], doc["territory"]["level"]),
            level_labels=LEVEL_LABELS,
            sector_bars=sector_bars,
            family_bars=family_bars,
            density_bars=_bars(comparison),
            band_bars=band_bars,
        )
    )


def _csv(rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=";", lineterminator="\r\n")
    for r in rows:
        w.writerow(["" if v is None else neutralise_formula(str(v)) for v in r])
    return buf.getvalue()


def panorama_csv(doc: dict[str, Any]) -> str:
    """Long-format CSV: section; indicateur; territoire; code; valeur; raison."""
    rows: list[list[Any]] = [
        ["section", "indicateur", "niveau", "code", "territoire", "valeur", "raison"]
    ]
    taxonomy = load_taxonomy().by_code()

    def add(section: str, ind: str, f: dict[str, Any], value: Any, reason: Any = None) -> None:
        rows.append([section, ind, f["level"], f["code"], f["name"], value, reason])

    for f in [doc["figures"], *doc["parents"], *doc["peers"]]:
        un = f.get("unavailable", {})
        add("structures", "structures actives", f, f["structures"])
        add("structures", "pour 10 000 habitants", f, f["per_10000"], un.get("per_10000"))
        add("structures", "part en QPV", f, f["share_in_qpv"], un.get("share_in_qpv"))
        for k, n in f["by_family"].items():
            add("familles", FAMILY_LABELS.get(k, k), f, n)
        for k, v in f["by_sector"].items():
            add("secteurs", taxonomy[k].label if k in taxonomy else k, f, v["structures"])
    for f in [doc["figures"], *doc["parents"]]:
        emp = doc["employment"] if f is doc["figures"] else f["employment"]
        add("effectifs", "salariés (borne basse)", f, emp["employees_min"], emp["reason"])
        add("effectifs", "salariés (borne haute)", f, emp["employees_max"], emp["reason"])
        for b in emp["by_band"]:
            add("effectifs", f"structures {b['label']}", f, b["structures"])
    ev = doc["evolution"]
    for y in ev["years"]:
        add("évolution", f"créations {y['year']}", doc["figures"], y["created"], ev["reason"])
        add("évolution", f"fermetures {y['year']}", doc["figures"], y["closed"], ev["reason"])
    if not ev["years"]:
        add("évolution", "créations et fermetures", doc["figures"], None, ev["reason"])
    return _csv(rows)


def coverage_csv(result: dict[str, Any]) -> str:
    """One row per commune: population, distance and population within each radius."""
    head = ["code", "commune", "population", "distance_m"]
    head += [f"population_a_{km:g}_km" for km in result["radii_km"]]
    rows: list[list[Any]] = [head]
    for c in result["communes"]:
        rows.append(
            [c["code"], c["name"], c["population"], c["distance_m"]]
            + [w["population"] for w in c["within"]]
        )
    return _csv(rows)
