"""Outputs of the land diagnostic: self-contained HTML report, indicators JSON, GeoJSON layers."""

from __future__ import annotations

import base64
import json
import math
import re
import statistics
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader
from markupsafe import Markup
from sqlalchemy.engine import Connection

from carteco.diagnostics import queries
from carteco.diagnostics.charts import bar_chart, share_chart, trend_chart
from carteco.diagnostics.indicators import (
    FAMILY_LABELS,
    SITE_KIND_LABELS,
    STATUS_LABELS,
    Options,
    foncier_indicators,
    is_market_sale,
    sector_labels,
)
from carteco.diagnostics.rules import KIND_LABELS
from carteco.sectors import load_taxonomy
from carteco.text import json_for_script

TEMPLATES = Path(__file__).parent / "templates"
SCHEMA_FILE = Path(__file__).parent / "indicateurs.schema.json"
STATUS_COLOURS = {
    "sans_projet": "#2e7d32",
    "disponible": "#2e7d32",
    "potentielle": "#f9a825",
    "avec_projet": "#1565c0",
    "reconvertie": "#757575",
    "occupe": "#757575",
}
Progress = Callable[[str], None]


def public(value: Any) -> Any:
    """The document without its private keys (leading underscore), for JSON output."""
    if isinstance(value, dict):
        return {k: public(v) for k, v in value.items() if not str(k).startswith("_")}
    if isinstance(value, list):
        return [public(v) for v in value]
    return value


def to_json(doc: dict[str, Any]) -> str:
    """indicateurs.json text (dates as ISO strings)."""
    return json.dumps(public(doc), ensure_ascii=False, indent=1, default=str)


# ---------------------------------------------------------------- GeoJSON layers


def _fc(features: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": features}


def _point(lon: float | None, lat: float | None) -> dict[str, Any] | None:
    if lon is None or lat is None:
        return None
    return {"type": "Point", "coordinates": [round(lon, 6), round(lat, 6)]}


def geojson_layers(conn: Connection, doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """GeoJSON layers of the diagnostic (EPSG:4326): communes with indicators, QPV, sites,
    needs with their matches, structures and priced sales."""
    dep = doc["departement"]["code"]
    outlines = {r.code: json.loads(r.g) for r in queries.commune_outlines(conn, dep)}
    dep_geom = queries.departement_outline(conn, dep)
    qpv = [
        {
            "type": "Feature",
            "geometry": json.loads(r.g),
            "properties": {"code": r.code, "nom": r.name, "commune": r.commune_code},
        }
        for r in queries.qpv_outlines(conn, dep)
    ]
    communes = []
    for c in doc["communes"]:
        props = {
            "code": c["code"],
            "nom": c["name"],
            "population": c["population"],
            "densite": c["density"],
            "structures": c["structures"]["total"],
            "structures_pour_10000_hab": c["structures"]["per_10k"],
            "structures_en_qpv": c["structures"]["in_qpv"],
            "structures_a_300m_qpv": c["structures"]["near_qpv"],
            "ventes": c["prices"]["sales"] if c["prices"] else None,
            "ventes_locaux_prix": c["prices"]["local"]["sales"] if c["prices"] else None,
            "mediane_locaux_eur_m2": c["prices"]["local"]["median_eur_m2"] if c["prices"] else None,
            "ventes_terrains_prix": c["prices"]["terrain"]["sales"] if c["prices"] else None,
            "mediane_terrains_eur_m2": c["prices"]["terrain"]["median_eur_m2"]
            if c["prices"]
            else None,
            "sites_disponibles": c["supply"]["available"] if c["supply"] else None,
            "besoins": c["needs"]["total"] if c["needs"] else None,
            "besoins_non_satisfaits": c["needs"]["unmet"] if c["needs"] else None,
            "communes_comparables": ",".join(s["code"] for s in c.get("similar", [])),
        }
        communes.append(
            {"type": "Feature", "geometry": outlines.get(c["code"]), "properties": props}
        )
    footprints = doc["supply"].get("_footprints", {})
    sites = []
    emprises = []
    for s in doc["supply"].get("sites", []):
        props = {k: v for k, v in s.items() if k not in ("lon", "lat", "structures_2km_ids")}
        props["usages"] = ",".join(s["usages"])
        sites.append(
            {"type": "Feature", "geometry": _point(s["lon"], s["lat"]), "properties": props}
        )
        if s["id"] in footprints:
            emprises.append(
                {
                    "type": "Feature",
                    "geometry": json.loads(footprints[s["id"]]),
                    "properties": {
                        "id": s["id"],
                        "source_id": s["source_id"],
                        "nom": s["name"],
                        "statut": s["status"],
                    },
                }
            )
    needs = [
        {
            "type": "Feature",
            "geometry": _point(n["lon"], n["lat"]),
            "properties": {
                **{k: v for k, v in n.items() if k not in ("lon", "lat", "matches", "rejections")},
                "territories": ",".join(n["territories"]),
                "matches": json.dumps(n["matches"], ensure_ascii=False),
                "meilleur_site": n["matches"][0]["site_source_id"] if n["matches"] else None,
            },
        }
        for n in doc["needs"]["results"].get("needs", [])
    ]
    structures = [
        {
            "type": "Feature",
            "geometry": _point(s["lon"], s["lat"]),
            "properties": {k: v for k, v in s.items() if k not in ("lon", "lat")},
        }
        for s in doc.get("_structures", [])
    ]
    sales = []
    if doc["layers"]["dvf"]["available"]:
        sales = [
            {
                "type": "Feature",
                "geometry": _point(r.lon, r.lat),
                "properties": {
                    "id_mutation": r.id_mutation,
                    "date": str(r.date_mutation),
                    "commune": r.commune_code,
                    "nature": r.nature_mutation,
                    "prix_eur_m2": r.price_m2,
                    "valeur_fonciere": r.valeur_fonciere,
                },
            }
            for r in queries.priced_local_sales(conn, dep)
            # The map shows the sales behind the headline median: market sales of premises.
            if is_market_sale(r.nature_mutation)
        ]
    cv = doc["politique_ville"]["contrats_ville"]
    contrats = [
        {
            "type": "Feature",
            "geometry": _point(c["lon"], c["lat"]),
            "properties": {
                "code": c["code"],
                "nom": c["name"],
                "departement": c["departement_code"],
                "postes": c["posts"],
                "postes_adultes_relais": c["programs"]["adultes_relais"],
                "postes_fonjep_qpv": c["programs"]["fonjep_qpv"],
                "montant_eur": c["amount_eur"],
                "employeurs": c["employers"],
                "employeurs_du_registre": c["employers_in_registry"],
            },
        }
        for c in cv["contrats"] or []
    ]
    layers = {
        "communes": _fc(communes),
        "qpv": _fc(qpv),
        "sites": _fc(sites),
        "sites_emprises": _fc(emprises),
        "besoins": _fc(needs),
        "structures": _fc(structures),
        "ventes_prix": _fc(sales),
        "contrats_ville": _fc(contrats),
        "departement": _fc(
            [
                {
                    "type": "Feature",
                    "geometry": json.loads(dep_geom) if dep_geom else None,
                    "properties": {"code": dep, "nom": doc["departement"]["name"]},
                }
            ]
        ),
    }
    return layers


# ---------------------------------------------------------------- basemap
#
# The report is read offline and printed by Chromium with the network off: no tile server. Its
# basemap is drawn from the reference layers shipped in geodata/ and loaded in `territories`
# and `stations`: the outlines of the neighbouring communes and départements, the names of the
# most populated communes, and the stations. No water layer is shipped, so none is drawn.

LABELS_OWN = 14  # names of the département's most populated communes
LABELS_OTHER = 6  # and of its neighbours' (the frame's other communes)


def basemap(conn: Connection, dep: str, frame: queries.BasemapFrame | None) -> dict[str, Any]:
    """The maps' shared basemap as data: neighbouring outlines (layers) and place names."""
    if frame is None:  # the département is not loaded: nothing around it to draw
        return {"layers": [], "labels": []}
    communes = queries.basemap_communes(conn, dep, frame)
    departements = queries.basemap_departements(conn, dep, frame)
    voisines = [
        {"type": "Feature", "geometry": json.loads(c.g), "properties": {}}
        for c in communes
        if c.g and not c.own
    ]
    outlines = [
        {"type": "Feature", "geometry": json.loads(d.g), "properties": {}}
        for d in departements
        if d.g
    ]
    layers: list[dict[str, Any]] = []
    if voisines:
        layers.append(
            {
                "name": None,
                "pane": "fond",
                "style": {
                    "color": "#b0aca4",
                    "weight": 0.6,
                    "fillColor": "#efece6",
                    "fillOpacity": 1,
                    "interactive": False,
                },
                "features": voisines,
            }
        )
    if outlines:
        layers.append(
            {
                "name": None,
                "pane": "fond",
                "style": {
                    "color": "#6d6d6d",
                    "weight": 1.6,
                    "dashArray": "6 4",
                    "fill": False,
                    "interactive": False,
                },
                "features": outlines,
            }
        )
    populated = [c for c in communes if c.population and c.lon is not None]
    labels = [
        {"lat": round(c.lat, 5), "lon": round(c.lon, 5), "text": c.name, "kind": "commune"}
        for c in [c for c in populated if c.own][:LABELS_OWN]
    ]
    labels += [
        {"lat": round(d.lat, 5), "lon": round(d.lon, 5), "text": d.name, "kind": "departement"}
        for d in departements
        if d.lon is not None
    ]
    labels += [
        {"lat": round(c.lat, 5), "lon": round(c.lon, 5), "text": c.name, "kind": "voisine"}
        for c in [c for c in populated if not c.own][:LABELS_OTHER]
    ]
    return {"layers": layers, "labels": labels}


def station_features(conn: Connection, frame: queries.BasemapFrame | None) -> list[dict[str, Any]]:
    """The stations in the frame of the département's maps, as GeoJSON point features."""
    if frame is None:
        return []
    return [
        {
            "type": "Feature",
            "geometry": _point(r.lon, r.lat),
            "properties": {"nom": r.name, "mode": r.mode, "ligne": r.line},
        }
        for r in queries.basemap_stations(conn, frame)
    ]


# ---------------------------------------------------------------- maps
#
# The report's maps are drawn by one constant script (templates/cartes.js) from data passed as
# JSON in <script type="application/json"> blocks. Names, addresses and every other imported
# text reach the page only as JSON data, shown by the browser with textContent: they are never
# template source (folium/branca re-render each layer's script output as a Jinja template, so
# a name like "{{ 6*7 }}" used to be evaluated in the server process) and never HTML.

MAPS_JS = TEMPLATES / "cartes.js"


@lru_cache(maxsize=1)
def leaflet_assets() -> tuple[str, str]:
    """Leaflet's JS and CSS from the vendored copy, images inlined as data URIs (no network)."""
    # Vendored in this package (scripts/vendor-assets.sh): the core reads nothing of api/.
    base = Path(__file__).resolve().parent / "vendor" / "leaflet"
    js = (base / "leaflet.js").read_text(encoding="utf-8")
    css = (base / "leaflet.css").read_text(encoding="utf-8")

    def inline(m: re.Match[str]) -> str:
        img = base / "images" / m.group(1)
        data = base64.b64encode(img.read_bytes()).decode()
        return f"url(data:image/png;base64,{data})"

    css = re.sub(r"url\(images/([\w.-]+\.png)\)", inline, css)
    # A closing script tag inside the library would end the inline block early.
    return js.replace("</script", "<\\/script"), css


@lru_cache(maxsize=1)
def maps_script() -> str:
    """The constant script drawing the report's maps from their JSON data."""
    return MAPS_JS.read_text(encoding="utf-8").replace("</script", "<\\/script")


def _text(value: Any) -> str:
    """A tooltip value as plain text (shown with textContent, never parsed as HTML)."""
    return "—" if value is None else str(value)


class _Map:
    """One report map as data: framing and layers, drawn in the browser by cartes.js."""

    def __init__(self, key: str, bounds: list[list[float]] | None) -> None:
        self.key = key
        self.bounds = bounds
        self.layers: list[dict[str, Any]] = []
        # In-map legend entries (label, colour, shape): the printed map explains itself.
        self.legend: list[dict[str, str]] = []

    def entry(self, label: str, colour: str, shape: str = "point", size: float = 0) -> None:
        """A legend entry: shape is "point", "ring", "area", "line" or "dash"; `size` (px)
        draws a point at the diameter of a proportional symbol."""
        e: dict[str, Any] = {"label": label, "colour": colour, "shape": shape}
        if size:
            e["size"] = round(size, 1)
        self.legend.append(e)

    def add(
        self,
        name: str | None,
        features: list[dict[str, Any]],
        style: dict[str, Any],
        tooltip: list[tuple[str, str]] | None = None,
        feature_style: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        circle: dict[str, Any] | None = None,
    ) -> None:
        """A GeoJSON layer: `tooltip` is (property, label) pairs, `feature_style` per feature."""
        feats = []
        for f in features:
            if not f["geometry"]:
                continue
            props: dict[str, Any] = {}
            if tooltip:
                props["t"] = [_text(f["properties"].get(k)) for k, _ in tooltip]
            if feature_style:
                props["s"] = feature_style(f["properties"])
            feats.append({"type": "Feature", "geometry": f["geometry"], "properties": props})
        if not feats:
            return
        layer: dict[str, Any] = {"name": name, "style": style, "features": feats}
        if tooltip:
            layer["tooltip"] = [label for _, label in tooltip]
        if circle:
            layer["circle"] = circle
        self.layers.append(layer)

    def lines(self, lines: list[list[list[float]]], style: dict[str, Any]) -> None:
        """Plain polylines ([[lat, lon], ...] each), outside the layer control."""
        if lines:
            self.layers.append({"name": None, "style": style, "lines": lines})

    def spec(self) -> dict[str, Any]:
        """What the page embeds: the div's id and the JSON data of the map."""
        return {
            "id": f"carte-{self.key}",
            "data": {"bounds": self.bounds, "layers": self.layers, "legend": self.legend},
        }


def _outline_layer(m: _Map, layers: dict[str, Any], shade: bool = False) -> None:
    """Commune outlines (shaded by structures per 10,000 inhabitants when asked) and the
    département outline."""
    communes = [f for f in layers["communes"]["features"] if f["geometry"]]
    values = sorted(
        f["properties"]["structures_pour_10000_hab"]
        for f in communes
        if f["properties"]["structures_pour_10000_hab"]
    )
    breaks = [values[int(len(values) * k / 4)] for k in (1, 2, 3)] if len(values) >= 4 else []
    ramp = ["#edf8e9", "#bae4b3", "#74c476", "#238b45"]

    def fill(v: float | None) -> str:
        if not v:
            return "#ffffff"
        return ramp[sum(1 for b in breaks if v > b)] if breaks else ramp[2]

    m.add(
        "Communes",
        communes,
        {"color": "#555", "weight": 1, "fillOpacity": 0.6 if shade else 0.03},
        tooltip=[
            ("nom", "Commune"),
            ("structures", "Structures"),
            ("structures_pour_10000_hab", "Pour 10 000 hab."),
        ],
        feature_style=(
            (lambda p: {"fillColor": fill(p["structures_pour_10000_hab"])}) if shade else None
        ),
    )
    m.add(
        "Département",
        layers["departement"]["features"][:1],
        {"color": "#222", "weight": 2.5, "fill": False},
    )
    m.entry("Limite du département", "#222", "line")
    m.entry("Départements voisins", "#6d6d6d", "dash")


def _stations_layer(m: _Map, stations: list[dict[str, Any]]) -> None:
    """Stations (shipped IDF reference layer) as small grey dots under the data."""
    m.add(
        "Gares et stations",
        stations,
        {"color": "#ffffff"},
        tooltip=[("nom", "Gare"), ("mode", "Mode"), ("ligne", "Ligne")],
        # Small and grey: context under the report's own points, not a competing layer.
        circle={
            "radius": 2.2,
            "weight": 0.6,
            "fill": True,
            "fillColor": "#607d8b",
            "fillOpacity": 1,
        },
    )
    if any(f["geometry"] for f in stations):
        m.entry("Gare ou station", "#607d8b")


def _qpv_layer(m: _Map, layers: dict[str, Any]) -> None:
    m.add(
        "QPV",
        layers["qpv"]["features"],
        {"color": "#e65100", "weight": 1.5, "fillColor": "#ff9800", "fillOpacity": 0.35},
        tooltip=[("code", "QPV"), ("nom", "Nom")],
    )
    if any(f["geometry"] for f in layers["qpv"]["features"]):
        m.entry("Quartier prioritaire (QPV)", "#ff9800", "area")


def _points_layer(
    m: _Map,
    name: str,
    features: list[dict[str, Any]],
    colour: Callable[[dict[str, Any]], str],
    tooltip: list[tuple[str, str]],
    radius: int = 5,
) -> None:
    m.add(
        name,
        features,
        # A white ring keeps each point readable over shaded communes and QPV.
        {"color": "#ffffff"},
        tooltip=tooltip,
        feature_style=lambda p: {"fillColor": colour(p)},
        circle={"radius": radius, "weight": 1.2, "fill": True, "fillOpacity": 0.9},
    )


CV_COLOUR = "#ad1457"
CV_MAX_RADIUS = 24.0  # px, the contrat de ville with the most posts


def _cv_radius(posts: int, most: int) -> float:
    """Radius of a proportional circle: its area, not its radius, follows the posts."""
    return CV_MAX_RADIUS * math.sqrt(posts / most) if most else 0.0


def _legend_steps(most: int) -> list[int]:
    """The largest post count, then round ones (1, 2 or 5 × 10ⁿ) near a quarter and a
    sixteenth of it, for the legend of the proportional circles."""
    steps = [most]
    for v in (most / 4, most / 16):
        if v < 1:
            break
        power = 10 ** math.floor(math.log10(v))
        step = max(k * power for k in (1, 2, 5) if k * power <= v)
        if step not in steps:
            steps.append(step)
    return steps


def _contrats_ville_map(
    layers: dict[str, Any], bounds: list[list[float]] | None
) -> dict[str, Any] | None:
    """The contrats de ville as circles sized by their posts (hollow: none), or None."""
    feats = [f for f in layers["contrats_ville"]["features"] if f["geometry"]]
    if not feats:
        return None
    m = _Map("contrats-ville", bounds)
    # No stations here: hundreds of dots would hide the few circles this map is about.
    _outline_layer(m, layers)
    most = max(f["properties"]["postes"] for f in feats)
    # The largest circles first: the small ones stay on top, readable and pointable.
    feats.sort(key=lambda f: -f["properties"]["postes"])

    def style(p: dict[str, Any]) -> dict[str, Any]:
        if not p["postes"]:
            return {"radius": 3.5, "color": CV_COLOUR, "weight": 1.5, "fillOpacity": 0}
        return {"radius": round(max(_cv_radius(p["postes"], most), 3.0), 2)}

    m.add(
        "Contrats de ville",
        feats,
        {"color": "#ffffff"},
        tooltip=[
            ("nom", "Contrat de ville"),
            ("code", "Code"),
            ("postes", "Postes financés"),
            ("postes_adultes_relais", "Adultes-relais"),
            ("postes_fonjep_qpv", "FONJEP en QPV"),
            ("montant_eur", "Montant (€)"),
        ],
        feature_style=style,
        circle={"weight": 1.2, "fill": True, "fillColor": CV_COLOUR, "fillOpacity": 0.6},
    )
    for n in _legend_steps(most) if most else []:
        m.entry(
            f"{n} poste{'s' if n > 1 else ''}", CV_COLOUR, size=2 * max(_cv_radius(n, most), 3.0)
        )
    if any(not f["properties"]["postes"] for f in feats):
        m.entry("Contrat de ville sans poste financé", CV_COLOUR, "ring", size=7)
    return m.spec()


def _bounds(layers: dict[str, Any]) -> list[list[float]] | None:
    xs: list[float] = []
    ys: list[float] = []

    def walk(c: Any) -> None:
        if isinstance(c, (list, tuple)) and c and isinstance(c[0], (int, float)):
            xs.append(float(c[0]))
            ys.append(float(c[1]))
        elif isinstance(c, (list, tuple)):
            for x in c:
                walk(x)

    for key in ("departement", "communes"):
        for f in layers[key]["features"]:
            if f["geometry"]:
                walk(f["geometry"]["coordinates"])
        if xs:
            break
    if not xs:
        return None
    return [[min(ys), min(xs)], [max(ys), max(xs)]]


def build_maps(
    doc: dict[str, Any],
    layers: dict[str, Any],
    stations: list[dict[str, Any]] | None = None,
) -> dict[str, dict[str, Any]]:
    """The report's maps: structures & QPV, supply & needs, prices (when DVF is present)."""
    bounds = _bounds(layers)
    stations = stations or []
    tax = {n.code: n.color for n in load_taxonomy().nodes}
    maps: dict[str, dict[str, Any]] = {}
    cv_map = _contrats_ville_map(layers, bounds)
    if cv_map:
        maps["contrats_ville"] = cv_map

    m = _Map("structures", bounds)
    _outline_layer(m, layers, shade=True)
    _stations_layer(m, stations)
    _qpv_layer(m, layers)
    labels = sector_labels()
    structures = [
        {**f, "properties": {**f["properties"], "secteur": labels.get(f["properties"]["sector"])}}
        for f in layers["structures"]["features"]
    ]
    _points_layer(
        m,
        "Structures",
        structures,
        lambda p: tax.get(p["sector"], "#607d8b"),
        [("name", "Structure"), ("secteur", "Secteur"), ("qpv_code", "QPV")],
        radius=5,
    )
    m.entry("Structure (couleur : secteur, voir au-dessus)", "#607d8b")
    m.entry("Commune : structures pour 10 000 hab. (plus foncé = plus)", "#74c476", "area")
    maps["structures"] = m.spec()

    m = _Map("offre", bounds)
    _outline_layer(m, layers)
    _stations_layer(m, stations)
    m.add(
        "Emprises des sites",
        layers["sites_emprises"]["features"],
        {"weight": 1, "fillOpacity": 0.4},
        tooltip=[("nom", "Site")],
        feature_style=lambda p: {"color": STATUS_COLOURS.get(p["statut"], "#555")},
    )
    _points_layer(
        m,
        "Sites",
        layers["sites"]["features"],
        lambda p: STATUS_COLOURS.get(p["status"], "#555"),
        [("name", "Site"), ("kind", "Type"), ("status", "Statut"), ("surface_m2", "Surface m²")],
        radius=6,
    )
    _points_layer(
        m,
        "Besoins",
        layers["besoins"]["features"],
        lambda p: "#8e24aa" if p["met"] else "#d50000",
        [("name", "Besoin"), ("kind", "Type"), ("meilleur_site", "Meilleur site")],
        radius=7,
    )
    sites_by_id = {f["properties"]["id"]: f for f in layers["sites"]["features"]}
    links = []
    for f in layers["besoins"]["features"]:
        matches = json.loads(f["properties"]["matches"])
        if f["geometry"] and matches:
            target = sites_by_id.get(matches[0]["site_id"])
            if target and target["geometry"]:
                a = f["geometry"]["coordinates"]
                b = target["geometry"]["coordinates"]
                links.append([[a[1], a[0]], [b[1], b[0]]])
    m.lines(links, {"color": "#8e24aa", "weight": 2, "dashArray": "4 4"})
    if layers["sites"]["features"]:
        m.entry("Site disponible / sans projet", STATUS_COLOURS["disponible"])
        m.entry("Site potentiel", STATUS_COLOURS["potentielle"])
        m.entry("Site avec projet", STATUS_COLOURS["avec_projet"])
        m.entry("Site reconverti / occupé", STATUS_COLOURS["occupe"])
    if layers["besoins"]["features"]:
        m.entry("Besoin apparié (tireté vers le meilleur site)", "#8e24aa")
        m.entry("Besoin non satisfait", "#d50000")
    maps["offre"] = m.spec()

    if layers["ventes_prix"]["features"]:
        # DVF samples may cover a few neighbourhoods only: frame the sales, not the département.
        # Frame the central 90 % of sales so that one remote sale does not shrink the rest.
        xs = sorted(f["geometry"]["coordinates"][0] for f in layers["ventes_prix"]["features"])
        ys = sorted(f["geometry"]["coordinates"][1] for f in layers["ventes_prix"]["features"])
        lo, hi = int(len(xs) * 0.05), max(int(len(xs) * 0.95) - 1, 0)
        pad = 0.01
        m = _Map("prix", [[ys[lo] - pad, xs[lo] - pad], [ys[hi] + pad, xs[hi] + pad]])
        _outline_layer(m, layers)
        _stations_layer(m, stations)
        _qpv_layer(m, layers)
        prices = sorted(f["properties"]["prix_eur_m2"] for f in layers["ventes_prix"]["features"])
        # The same quartiles as the figures (the middle threshold is the median shown).
        q = statistics.quantiles(prices, n=4, method="inclusive") if len(prices) > 1 else prices * 3
        ramp = ["#fee5d9", "#fcae91", "#fb6a4a", "#cb181d"]

        def price_colour(p: dict[str, Any]) -> str:
            v = p["prix_eur_m2"]
            return ramp[sum(1 for x in q if v > x)]

        _points_layer(
            m,
            "Ventes avec prix au m²",
            layers["ventes_prix"]["features"],
            price_colour,
            [
                ("commune", "Commune"),
                ("date", "Date"),
                ("nature", "Nature"),
                ("prix_eur_m2", "€/m²"),
            ],
            radius=4,
        )
        for colour, label in zip(
            ramp,
            ("1er quartile (moins cher)", "2e quartile", "3e quartile", "4e quartile (plus cher)"),
            strict=True,
        ):
            m.entry(f"Vente de locaux : {label}", colour)
        maps["prix"] = m.spec()
        maps["prix"]["quartiles"] = " / ".join(f"{round(x)}" for x in q)
    return maps


# ---------------------------------------------------------------- HTML


def _env() -> Environment:
    # Every value is escaped, whatever the template's name; imported text is only ever data.
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=True)

    def num(v: Any, digits: int = 0) -> str:
        if v is None:
            return "—"
        if isinstance(v, float) and digits:
            return f"{v:,.{digits}f}".replace(",", "\u202f").replace(".", ",")
        return f"{round(v):,}".replace(",", "\u202f")

    def pct(v: Any) -> str:
        return "—" if v is None else f"{round(v * 100)} %"

    def script_json(v: Any) -> Markup:
        # JSON made inert for a <script> element (< > & U+2028 U+2029 escaped), then trusted.
        return Markup(json_for_script(v))

    env.filters["num"] = num
    env.filters["pct"] = pct
    env.filters["script_json"] = script_json
    return env


def render_html(
    doc: dict[str, Any],
    layers: dict[str, Any],
    base: dict[str, Any] | None = None,
    stations: list[dict[str, Any]] | None = None,
) -> str:
    """The self-contained French report (Leaflet inlined, charts as SVG, no external URL)."""
    js, css = leaflet_assets()
    dep = doc["departement_figures"]
    labels = sector_labels()
    tax = {n.code: n.color for n in load_taxonomy().nodes}
    by_sector = dep["structures"]["by_sector"]
    by_family = dep["structures"]["by_family"]
    total = dep["structures"]["total"]
    charts = {
        # Shares over the structures whose sector (family) is known; the unknown ones are
        # counted apart, never drawn as a category that would dominate the chart.
        "sectors": share_chart(
            [
                (labels.get(k, k), v, tax.get(k, "#607d8b"))
                for k, v in sorted(by_sector.items(), key=lambda kv: -kv[1])
                if k != "non_classe"
            ],
            by_sector.get("non_classe", 0),
            total,
            "Structures par secteur (une structure peut en relever de plusieurs)",
            "structures",
            "Secteur non renseigné",
        ),
        "families": share_chart(
            [
                (FAMILY_LABELS.get(k, k), v, "#5c6bc0")
                for k, v in sorted(by_family.items(), key=lambda kv: -kv[1])
                if k != "inconnue"
            ],
            by_family.get("inconnue", 0),
            total,
            "Structures par famille de l'ESS",
            "structures",
            "Famille non renseignée",
        ),
        "trend": trend_chart(
            doc["price_trend"]["years"],
            "Ventes et prix médian des locaux d'activité par année",
            doc["parameters"]["min_sales"],
        )
        if doc["price_trend"]
        else "",
        "supply": bar_chart(
            [
                (
                    f"{r['kind_label']} {r['status_label']}",
                    r["sites"],
                    STATUS_COLOURS.get(r["status"], "#555"),
                )
                for r in doc["supply"]["by_kind_status"]
            ],
            "Sites par type et statut",
        ),
    }
    active = [
        c
        for c in doc["communes"]
        if c["structures"]["total"]
        or (c["prices"] and c["prices"]["sales"])
        or (c["supply"] and c["supply"]["sites"])
        or (c["needs"] and c["needs"]["total"])
    ]
    active.sort(key=lambda c: (-(c["structures"]["total"]), -(c["population"] or 0)))
    sites_by_id = {s["id"]: s for s in doc["supply"].get("sites", [])}
    return (
        _env()
        .get_template("rapport.html.j2")
        .render(
            doc=doc,
            dep=dep,
            maps=build_maps(doc, layers, stations),
            basemap=base or {"layers": [], "labels": []},
            charts=charts,
            leaflet_js=js,
            leaflet_css=css,
            maps_js=maps_script(),
            communes=active,
            sector_labels=labels,
            sector_colours=tax,
            family_labels=FAMILY_LABELS,
            kind_labels=KIND_LABELS,
            site_kind_labels=SITE_KIND_LABELS,
            status_labels=STATUS_LABELS,
            sites_by_id=sites_by_id,
        )
    )


def build_report(
    conn: Connection,
    dep: str,
    options: Options | None = None,
    progress: Progress | None = None,
) -> tuple[dict[str, Any], dict[str, Any], str]:
    """(indicators, GeoJSON layers, HTML) of the diagnostic of one département."""
    say = progress or (lambda _m: None)
    doc = foncier_indicators(conn, dep, options, progress=say)
    say("Couches GeoJSON")
    layers = geojson_layers(conn, doc)
    say("Cartes, graphiques et rapport HTML")
    # The maps' frame, computed once for the basemap's outlines, place names and stations.
    frame = queries.basemap_frame(conn, dep)
    html = render_html(doc, layers, basemap(conn, dep, frame), station_features(conn, frame))
    return doc, layers, html


def write_outputs(
    conn: Connection,
    dep: str,
    out_dir: Path,
    options: Options | None = None,
    progress: Progress | None = None,
) -> list[Path]:
    """Write rapport.html, indicateurs.json (+ its schema) and the GeoJSON layers into out_dir."""
    doc, layers, html = build_report(conn, dep, options, progress)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    path = out_dir / "rapport.html"
    path.write_text(html, encoding="utf-8")
    written.append(path)
    path = out_dir / "indicateurs.json"
    path.write_text(to_json(doc), encoding="utf-8")
    written.append(path)
    path = out_dir / "indicateurs.schema.json"
    path.write_text(SCHEMA_FILE.read_text(encoding="utf-8"), encoding="utf-8")
    written.append(path)
    for name, fc in layers.items():
        path = out_dir / f"{name}.geojson"
        path.write_text(json.dumps(fc, ensure_ascii=False, default=str), encoding="utf-8")
        written.append(path)
    return written
