"""Imported text is data, never template source: template syntax and HTML planted in every text
field of every layer come out literally in pages, JSON, CSV, GeoPackage and the land report.

Issue #10 item 1: a structure named "{{ 6*7 }}" came back as "42" in the diagnostic report
(folium/branca render each layer's script output again as a Jinja template), and
"{{ cycler.__init__.__globals__.os.getuid() }}" ran in the server process.
"""

from __future__ import annotations

import csv
import html
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyogrio
import pytest
import sqlalchemy as sa

from carteco.diagnostics.report import build_report
from carteco.importer import run_import
from carteco.land import run_land_import
from carteco.text import json_for_script
from tests.conftest import ROOT, reset_land

# Jinja expression, block, raw block and comment, a JS/Mako-style expression, and HTML that
# would run or end a <script> element early.
PAYLOAD = "{{ 6*7 }} {% raw %}x{% endraw %} {# c #} ${7*7} <script>alert(1)</script> </script>"
RCE = "{{ cycler.__init__.__globals__.os.getuid() }}"
# File names cannot hold "/": the same syntax without the closing tags.
FILE_PAYLOAD = "{{ 6*7 }} {% raw %}x{% endraw %} {# c #} ${7*7} <script>alert(1)"
DEP = "93"
INSEE = "93066"  # Saint-Denis
LON, LAT = 2.3565, 48.9358
QPV_CODE = "QP093999"
POST_SIRET = "50996337700130"


def planted(tag: str) -> str:
    """The hostile text planted in the field called `tag` (the tag makes each one unique)."""
    return f"ZZ{tag} {PAYLOAD} {RCE}"


def evaluated(tag: str) -> str:
    """What the page would hold had the field been rendered as a Jinja template."""
    return f"ZZ{tag} 42"


# Every planted field, by tag.
STRUCTURE = {
    "nom": planted("nom"),
    "description": planted("description"),
    "adresse": planted("adresse"),
    "commune": planted("commune"),
    # A web address holds no spaces nor "<" (the shared field rules refuse them): the template
    # syntax it can carry, as a browser would send it.
    "site_web": "https://exemple.org/ZZsite_web/{{6*7}}/{%raw%}x{%endraw%}/{#c#}/${7*7}"
    "?q={{cycler.__init__.__globals__.os.getuid()}}",
    "telephone": planted("telephone"),
    "courriel": planted("courriel"),
}
SITE = {
    "identifiant": planted("site_id"),
    "nom": planted("site_nom"),
    "proprietaire_type": planted("site_proprietaire_type"),
    "proprietaire": planted("site_proprietaire"),
    "adresse": planted("site_adresse"),
}
NEED = {"identifiant": planted("besoin_id"), "structure_nom": planted("besoin_nom")}
FRICHE = {
    "site_id": planted("friche_id"),
    "site_nom": planted("friche_nom"),
    "site_type": planted("friche_type"),
    "site_adresse": planted("friche_adresse"),
    "proprio_nom": planted("friche_proprio"),
}
DVF_ID = planted("dvf_id")
QPV_NAME = planted("qpv_nom")
SOURCES = {kind: planted(f"source_{kind}") for kind in ("sites", "besoins", "dvf", "qpv")}
DESCRIPTIONS = {kind: planted(f"description_{kind}") for kind in ("sites", "besoins", "dvf")}
FILE_STEM = "ess " + FILE_PAYLOAD  # the structures' source defaults to the file's name
FRICHES_STEM = "friches " + FILE_PAYLOAD  # the land source defaults to "friches:<stem>"


def _write_csv(path: Path, rows: list[dict[str, Any]], delimiter: str = ";") -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter=delimiter)
        w.writeheader()
        w.writerows(rows)
    return path


def _square(lon: float, lat: float, d: float) -> list[list[list[float]]]:
    return [
        [
            [lon - d, lat - d],
            [lon + d, lat - d],
            [lon + d, lat + d],
            [lon - d, lat + d],
            [lon - d, lat - d],
        ]
    ]


@pytest.fixture(scope="module")
def hostile(engine: sa.Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A registry and land layers of Seine-Saint-Denis whose every text is hostile; yields the
    structure's id."""
    d = tmp_path_factory.mktemp("hostile")
    reset_land(engine)
    structures = _write_csv(
        d / f"{FILE_STEM}.csv",
        [
            {
                **STRUCTURE,
                "secteur": "numerique",
                # Also the employer of an adulte-relais post: its name reaches the report's
                # "Politique de la ville" block as a registry employer.
                "siret": POST_SIRET,
                "code_postal": "93200",
                "code_insee": INSEE,
                "latitude": LAT,
                "longitude": LON,
            }
        ],
    )
    rep = run_import(engine, structures)
    assert rep.status == "succeeded", rep.as_dict()
    qpv = d / "qpv.geojson"
    qpv.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "geometry": {"type": "Polygon", "coordinates": _square(LON, LAT, 0.004)},
                        "properties": {
                            "code_qp": QPV_CODE,
                            "nom_qp": QPV_NAME,
                            "code_commune": INSEE,
                        },
                    }
                ],
            }
        ),
        encoding="utf-8",
    )
    sites = _write_csv(
        d / "sites.csv",
        [
            {
                **SITE,
                "type": "local vacant",
                "usages": "atelier|bureau",
                "statut": "disponible",
                "surface_m2": "250",
                "loyer_mensuel_eur": "1500",
                "code_insee": INSEE,
                "longitude": LON + 0.002,
                "latitude": LAT + 0.001,
            }
        ],
    )
    needs = _write_csv(
        d / "besoins.csv",
        [
            {
                **NEED,
                "type_local": "atelier",
                "surface_min_m2": "100",
                "surface_max_m2": "300",
                "budget_loyer_mensuel_eur": "2000",
                "territoires_souhaites": INSEE,
                "code_insee": INSEE,
            }
        ],
    )
    dvf = _write_csv(
        d / "dvf.csv",
        [
            {
                "id_mutation": DVF_ID,
                "date_mutation": f"202{i}-03-0{i + 1}",
                "nature_mutation": "Vente",
                "valeur_fonciere": str(200000 + i * 1000),
                "code_commune": INSEE,
                "code_departement": DEP,
                "type_local": "Local industriel. commercial ou assimilé",
                "surface_reelle_bati": "100",
                "surface_terrain": "0",
                "longitude": LON,
                "latitude": LAT,
            }
            for i in range(1)
        ],
        delimiter=",",
    )
    friches = _write_csv(
        d / f"{FRICHES_STEM}.csv",
        [
            {
                **FRICHE,
                "site_statut": "friche sans projet",
                "comm_insee": INSEE,
                "longitude": LON - 0.003,
                "latitude": LAT,
            }
        ],
        delimiter=",",
    )
    posts = d / "adultes_relais.csv"
    posts.write_text(
        "id_poste,code_tiers,raison_sociale,annee,montant,code_cv,insee_dep,insee_reg\n"
        f'ZZpost,{POST_SIRET},"{planted("raison_sociale").replace(chr(34), "")}",2023,'
        "22555.73,CV931,93,11\n",
        encoding="utf-8",
    )
    for kind, path, kw in (
        ("adultes_relais", posts, {}),
        ("qpv", qpv, {"source": SOURCES["qpv"]}),
        ("dvf", dvf, {"source": SOURCES["dvf"], "description": DESCRIPTIONS["dvf"]}),
        ("sites", sites, {"source": SOURCES["sites"], "description": DESCRIPTIONS["sites"]}),
        ("besoins", needs, {"source": SOURCES["besoins"], "description": DESCRIPTIONS["besoins"]}),
        ("friches", friches, {}),
    ):
        rep = run_land_import(engine, kind, path, **kw)
        assert rep.status == "succeeded", (kind, rep.as_dict())
    with engine.connect() as conn:
        sid = conn.execute(sa.text("SELECT id FROM structures")).scalar_one()
    yield sid
    reset_land(engine)


# ---------------------------------------------------------------- checks


def _strings(value: Any) -> Iterator[str]:
    """Every string (keys too) inside a JSON value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _never_evaluated(text: str) -> None:
    tags = re.findall(r"ZZ(\w+)", text)
    assert tags, "no planted text at all"
    for tag in set(tags):
        assert evaluated(tag) not in text, f"{tag} rendered as a template"
    assert "getuid()" in text


def check_json(value: Any, expected: list[str]) -> None:
    """Each planted text is one of the JSON document's strings, unchanged."""
    strings = set(_strings(value))
    for e in expected:
        assert any(e == s or e in s for s in strings), f"{e!r} missing"
    _never_evaluated("\n".join(strings))


def _script_data(page: str) -> list[Any]:
    """The JSON data blocks of a page (<script type="application/json">)."""
    blocks = re.findall(r'<script[^>]*type="application/json"[^>]*>(.*?)</script>', page, re.S)
    return [json.loads(b) for b in blocks]


def check_html(page: str, expected: list[str]) -> None:
    """Each planted text is on the page as text (HTML-unescaped) or as JSON data of the page,
    never rendered as a template, and no planted HTML element is live."""
    assert "<script>alert(1)" not in page and "</script> </script>" not in page
    # Every <script> element of the page is one of ours: planted text never opens one.
    assert all("alert(1)" not in s for s in re.findall(r"<script[^>]*>", page))
    text = html.unescape(page)
    for tag in set(re.findall(r"ZZ(\w+)", page)):
        assert evaluated(tag) not in page + text, f"{tag} rendered as a template"
    data = set(_strings(_script_data(page)))
    for e in expected:
        assert e in text or any(e in s for s in data), f"{e!r} missing from the page"
    _never_evaluated(text + "\n".join(data))


# ---------------------------------------------------------------- the land report


def _report_expected() -> list[str]:
    return [
        STRUCTURE["nom"],  # map tooltip
        QPV_NAME,  # map tooltip
        SITE["nom"],
        SITE["identifiant"],
        NEED["structure_nom"],
        NEED["identifiant"],
        FRICHE["site_nom"],
        FRICHE["site_id"],
        FRICHE["site_type"],
        FILE_STEM,  # the structures' source
        f"friches:{FRICHES_STEM}",
        *SOURCES.values(),
        *DESCRIPTIONS.values(),
    ]


def test_report_html_shows_planted_text_literally(hostile: int, client: Any) -> None:
    r = client.get(f"/diagnostics/foncier/{DEP}")
    assert r.status_code == 200
    check_html(r.text, _report_expected())
    # The structure's name reaches the map as a tooltip value, exactly as imported.
    tips = [
        v
        for block in _script_data(r.text)
        for layer in block["layers"]
        for f in layer.get("features", [])
        for v in f["properties"].get("t", [])
    ]
    assert STRUCTURE["nom"] in tips and QPV_NAME in tips and SITE["nom"] in tips


def test_report_builder_never_runs_template_code(hostile: int, engine: sa.Engine) -> None:
    """The process-level payload: no evaluation, whatever the user id of the server."""
    with engine.connect() as conn:
        doc, layers, page = build_report(conn, DEP)
    uid = str(os.getuid())
    check_html(page, _report_expected())
    names = [f["properties"]["name"] for f in layers["structures"]["features"]]
    assert names == [STRUCTURE["nom"]]
    assert "ZZnom {{ 6*7 }}" in names[0] and not names[0].endswith(" " + uid)
    check_json(json.loads(json.dumps(doc, default=str)), [SITE["nom"], NEED["structure_nom"]])


def test_politique_ville_block_lists_planted_employer_as_text(
    hostile: int, engine: sa.Engine
) -> None:
    """The registry employer named in the "Politique de la ville" block is escaped data."""
    with engine.connect() as conn:
        doc, _layers, page = build_report(conn, DEP)
    pv = doc["politique_ville"]
    assert pv["employers_in_registry"] == 1
    assert [e["name"] for e in pv["registry_employers"]] == [STRUCTURE["nom"]]
    block = page.split('id="politique-ville"', 1)[1].split("</section>", 1)[0]
    check_html(block, [STRUCTURE["nom"]])


def test_contrat_de_ville_name_is_text_in_table_map_and_json(
    hostile: int, engine: sa.Engine
) -> None:
    """A contrat de ville named with template syntax and HTML: literal in the "Par contrat de
    ville" table, in the map's tooltip data and in the JSON figures, never evaluated."""
    name = planted("lib_cv")
    with engine.connect() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO contrats_ville (code, name, departement_code, geom, layer) "
                "VALUES ('CV931', :n, :d, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), 'essai')"
            ),
            {"n": name, "d": DEP, "lon": LON, "lat": LAT},
        )
        doc, _layers, page = build_report(conn, DEP)
        conn.rollback()  # the shipped layer stays as it is
    rows = {c["code"]: c for c in doc["politique_ville"]["contrats_ville"]["contrats"]}
    assert rows["CV931"]["name"] == name and rows["CV931"]["posts"] == 1
    assert rows["CV931"]["employers_in_registry"] == 1
    check_json(json.loads(json.dumps(doc, default=str)), [name])
    block = page.split('id="contrats-ville"', 1)[1].split("</section>", 1)[0]
    check_html(block, [name])
    assert html.escape(name, quote=False) in block  # the table cell, escaped
    tips = [
        v
        for data in _script_data(block)
        for layer in data["layers"]
        for f in layer.get("features", [])
        for v in f["properties"].get("t", [])
    ]
    assert name in tips


@pytest.mark.browser
def test_report_tooltip_shows_planted_name_as_text_in_chromium(
    hostile: int, live_server: str
) -> None:
    """In a real browser: the map draws, the structure's tooltip holds the name as text, and
    no planted script runs."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
        )
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 1000})
            dialogs: list[str] = []
            errors: list[str] = []
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{live_server}/diagnostics/foncier/{DEP}")
            marker = page.locator("#carte-structures .leaflet-overlay-pane path").last
            marker.scroll_into_view_if_needed()
            marker.hover()
            tip = page.locator(".carte-infobulle")
            tip.wait_for()
            assert tip.locator("td").first.inner_text() == STRUCTURE["nom"]
            assert tip.locator("th").first.inner_text() == "Structure"
            assert tip.locator("script").count() == 0
            assert dialogs == [] and errors == []
        finally:
            browser.close()


def test_cli_report_and_layers_show_planted_text_literally(
    hostile: int, database_url: str, tmp_path: Path
) -> None:
    env = {**os.environ, "CARTECO_DATABASE_URL": database_url}
    res = subprocess.run(
        [sys.executable, "-m", "carteco.cli", "diagnostic", "foncier", DEP, "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=180,
    )
    assert res.returncode == 0, res.stderr
    check_html((tmp_path / "rapport.html").read_text(encoding="utf-8"), _report_expected())
    doc = json.loads((tmp_path / "indicateurs.json").read_text(encoding="utf-8"))
    check_json(
        doc,
        [
            SITE["nom"],
            SITE["identifiant"],
            SITE["proprietaire_type"],
            NEED["structure_nom"],
            NEED["identifiant"],
            FRICHE["site_nom"],
            FRICHE["site_type"],
            FILE_STEM,
            *SOURCES.values(),
            *DESCRIPTIONS.values(),
        ],
    )
    layer = {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in tmp_path.glob("*.geojson")}
    check_json(layer["structures"], [STRUCTURE["nom"]])
    check_json(layer["qpv"], [QPV_NAME])
    check_json(layer["sites"], [SITE["nom"], FRICHE["site_nom"], FRICHE["site_type"]])
    check_json(layer["besoins"], [NEED["structure_nom"], NEED["identifiant"]])
    check_json(layer["ventes_prix"], [DVF_ID])


def test_diagnostics_json_shows_planted_text_literally(hostile: int, client: Any) -> None:
    r = client.get(f"/diagnostics/foncier/{DEP}.json")
    assert r.status_code == 200
    check_json(
        r.json(),
        [SITE["nom"], NEED["structure_nom"], FRICHE["site_nom"], *DESCRIPTIONS.values()],
    )


# ---------------------------------------------------------------- registry pages and exports


STRUCTURE_FIELDS = {
    "name": STRUCTURE["nom"],
    "description": STRUCTURE["description"],
    "address_line": STRUCTURE["adresse"],
    "commune_name": STRUCTURE["commune"],
    "website": STRUCTURE["site_web"],
    "source": FILE_STEM,
}


def test_structure_fields_are_stored_and_served_literally(
    hostile: int, engine: sa.Engine, client: Any
) -> None:
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT * FROM structures")).mappings().one()
    for k, v in STRUCTURE_FIELDS.items():
        assert row[k] == v, k
    # Columns the mapping does not know are kept as they were, in `extra`.
    assert STRUCTURE["telephone"] in set(_strings(row["extra"]))
    assert STRUCTURE["courriel"] in set(_strings(row["extra"]))

    card = client.get(f"/carte/structures/{hostile}.json").json()
    for k, v in STRUCTURE_FIELDS.items():
        assert card[k] == v, k
    found = client.get("/carte/recherche", params={"q": "ZZnom"}).json()["structures"]
    assert found and found[0]["label"] == f"{STRUCTURE['nom']} — {STRUCTURE['commune']}"
    listed = client.get("/carte/liste", params={"departement": DEP}).json()["items"]
    assert [(i["name"], i["commune"]) for i in listed] == [(STRUCTURE["nom"], STRUCTURE["commune"])]

    item = client.get(f"/collections/structures/items/{hostile}?f=json").json()
    for k, v in STRUCTURE_FIELDS.items():
        assert item["properties"][k] == v, k
    items = client.get("/collections/structures/items?f=json").json()
    assert [f["properties"]["name"] for f in items["features"]] == [STRUCTURE["nom"]]
    check_json(items, list(STRUCTURE_FIELDS.values()))

    page = client.get("/collections/structures/items?f=html")
    assert page.status_code == 200
    check_html(page.text, [STRUCTURE["nom"]])
    one = client.get(f"/collections/structures/items/{hostile}?f=html")
    assert one.status_code == 200
    check_html(one.text, list(STRUCTURE_FIELDS.values()))


def test_exports_keep_planted_text(hostile: int, client: Any, tmp_path: Path) -> None:
    r = client.get("/collections/structures/items?f=csv")
    assert r.status_code == 200
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 1
    for k, v in STRUCTURE_FIELDS.items():
        # The formula guard only prefixes cells starting with = + - @ tab CR: none here.
        assert rows[0][k] == v, k
    r = client.get("/collections/structures/items?f=geojson")
    assert r.status_code == 200
    props = r.json()["features"][0]["properties"]
    for k, v in STRUCTURE_FIELDS.items():
        assert props[k] == v, k
    for crs in ("", "&crs=EPSG:2154"):
        r = client.get(f"/collections/structures/items?f=gpkg{crs}")
        assert r.status_code == 200, r.text
        path = tmp_path / "s.gpkg"
        path.write_bytes(r.content)
        df = pyogrio.read_dataframe(path)
        assert len(df) == 1
        for k, v in STRUCTURE_FIELDS.items():
            assert df.iloc[0][k] == v, k


def test_territory_pages_show_planted_qpv_name_literally(hostile: int, client: Any) -> None:
    r = client.get(f"/territoires/qpv/{QPV_CODE}")
    assert r.status_code == 200, r.text
    check_html(r.text, [QPV_NAME])
    # The page's map configuration carries the name as JSON data.
    config = _script_data(r.text)[0]
    assert config["locked"]["name"] == QPV_NAME
    r = client.get(f"/territories/qpv/{QPV_CODE}")
    assert r.status_code == 200
    check_json(r.json(), [QPV_NAME])
    r = client.get(f"/territories/qpv/{QPV_CODE}/structures")
    assert r.status_code == 200
    check_json(r.json(), [STRUCTURE["nom"], STRUCTURE["description"]])
    r = client.get(f"/territories/qpv/{QPV_CODE}/stats")
    assert r.status_code == 200
    check_json(r.json(), [QPV_NAME])
    commune = client.get(f"/territoires/commune/{INSEE}")
    assert commune.status_code == 200
    assert "<script>alert(1)" not in commune.text


# ---------------------------------------------------------------- the JSON-in-script helper


@pytest.mark.parametrize(
    "value",
    [
        PAYLOAD,
        "</script><script>alert(1)</script>",
        "<!-- <script>",
        "a\u2028b\u2029c & <b>",
        {"k</script>": ["{{ 6*7 }}", 1.5, None, True]},
    ],
)
def test_json_for_script_is_inert_and_exact(value: Any) -> None:
    text = json_for_script(value)
    for bad in ("<", ">", "&", "\u2028", "\u2029"):
        assert bad not in text
    assert json.loads(text) == value


# Values a template may print unescaped: constant code and markup built by Carteco itself
# (vendored Leaflet, the maps' script, SVG charts whose labels are escaped by charts.py).
SAFE_ALLOWED = {
    "leaflet_css",
    "leaflet_js",
    "maps_js",
    "charts.sectors",
    "charts.families",
    "charts.trend",
    "charts.supply",
}


def test_templates_escape_everything_and_trust_only_constants() -> None:
    from api.templating import TEMPLATES
    from carteco.diagnostics.report import _env

    for env in (TEMPLATES.env, _env()):
        mode = env.autoescape
        assert mode is True or all(mode(n) for n in ("a.html", "a.txt", "a.j2", None))
    files = [*ROOT.glob("api/templates/*"), *ROOT.glob("carteco/diagnostics/templates/*.j2")]
    assert len(files) > 5
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert "autoescape false" not in text, path.name
        for expr in re.findall(r"\{\{\s*([^}|]+?)\s*\|\s*safe\s*\}\}", text):
            assert expr in SAFE_ALLOWED, f"{path.name}: {expr} | safe"
