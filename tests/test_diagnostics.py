"""The land diagnostic checked against independent pandas / geopandas computations on real files."""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import geopandas as gpd
import jsonschema
import pandas as pd
import pytest
import sqlalchemy as sa
from markupsafe import escape as html_escape
from shapely.geometry import box

from carteco.demo import DEMO_SOURCES
from carteco.diagnostics import queries
from carteco.diagnostics.indicators import foncier_indicators
from carteco.diagnostics.report import SCHEMA_FILE, build_report, public, write_outputs
from carteco.importer import run_import
from carteco.importer.mapping import Mapping
from carteco.land import run_land_import
from tests.conftest import ARTIFACTS, LAND, ROOT, assert_problem, reset_land

GEODATA = ROOT / "geodata" / "data"
MEDIATION = LAND / "mediation_numerique_31_08_2022.csv"
# Market prices: plain sales of existing goods. VEFA, adjudications and building-land sales
# have prices of another nature and are reported apart.
MARKET = {"Vente"}


_STATE: dict[str, Any] = {}
_FINGERPRINT = sa.text(
    """
    SELECT (SELECT count(*) FROM structures), (SELECT count(*) FROM land_transactions),
           (SELECT count(*) FROM land_sites), (SELECT count(*) FROM land_needs),
           (SELECT count(*) FROM territories WHERE level = 'qpv')
    """
)


def _load(engine: sa.Engine) -> dict[str, Any]:
    reset_land(engine)
    for d in DEMO_SOURCES:
        rep = run_import(
            engine,
            d.path,
            source=d.source,
            mapping=Mapping.from_file(d.mapping_path),
            skip_invalid=d.skip_invalid,
        )
        assert rep.status == "succeeded"
    med = run_import(
        engine,
        MEDIATION,
        source="mediation-31-08",
        mapping=Mapping.from_file(LAND / "mediation_numerique.mapping.toml"),
        skip_invalid=True,
    )
    assert med.status == "succeeded"
    for kind, name, kw in (
        ("dvf", "dvf_qpv_31_2016-2020.csv", {"description": "DVF dans les QPV seulement"}),
        ("qpv", "qpv_31_2015.geojson", {"vintage": "2015"}),
        ("friches", "friches_ardennes_cnig.csv", {}),
        ("friches", "friches_ardennes_polygones.geojson", {}),
        ("besoins", "besoins_08_exemple.csv", {}),
        ("sites", "sites_93_exemple.csv", {}),
        ("besoins", "besoins_93_exemple.csv", {}),
    ):
        rep = run_land_import(engine, kind, LAND / name, **kw)
        assert rep.status == "succeeded", rep.as_dict()
    docs = {}
    with engine.connect() as conn:
        for dep in ("31", "08", "93", "23"):
            docs[dep] = foncier_indicators(conn, dep)
        fingerprint = tuple(conn.execute(_FINGERPRINT).one())
    return {
        "docs": docs,
        "mediation_bad_rows": {e.row for e in med.errors},
        "fingerprint": fingerprint,
    }


@pytest.fixture(scope="module", autouse=True)
def _cleanup(engine: sa.Engine) -> Iterator[None]:
    """Leave no QPV outline nor land layer behind for the other test modules."""
    yield
    _STATE.clear()
    reset_land(engine)


@pytest.fixture
def loaded(engine: sa.Engine) -> Iterator[dict[str, Any]]:
    """IDF demo + médiation 31/08 structures, DVF and QPV of 31, friches and needs of 08,
    example sites and needs of 93. Loaded once, and again whenever another test module (run
    on the same worker in between) has emptied the registry or the land layers."""
    with engine.connect() as conn:
        now = tuple(conn.execute(_FINGERPRINT).one())
    if _STATE.get("fingerprint") != now:
        _STATE.clear()
        _STATE.update(_load(engine))
    yield _STATE


def _communes(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["code"]: c for c in doc["communes"]}


def test_dvf_medians_and_counts_per_commune_match_pandas(loaded: dict[str, Any]) -> None:
    doc = loaded["docs"]["31"]
    df = pd.read_csv(LAND / "dvf_qpv_31_2016-2020.csv", dtype={"code_commune": str})
    rows = []
    for mid, g in df.groupby("id_mutation"):
        types = set(g["type_local"])
        value = g["valeur_fonciere"].iloc[0]
        bati = g.loc[g["type_local"].str.startswith("Local"), "surface_reelle_bati"].sum()
        price = None
        only_premises = types == {"Local industriel. commercial ou assimilé"}
        if only_premises and g["nature_mutation"].iloc[0] in MARKET and value > 0 and bati > 0:
            price = value / bati
        rows.append({"commune": g["code_commune"].iloc[0], "price": price, "id": mid})
    muts = pd.DataFrame(rows)
    communes = _communes(doc)
    for code, g in muts.groupby("commune"):
        prices = g["price"].dropna().tolist()
        got = communes[code]["prices"]
        assert got["sales"] == len(g)
        assert got["local"]["sales"] == len(prices)
        if len(prices) >= 5:
            assert got["local"]["median_eur_m2"] == pytest.approx(
                statistics.median(prices), abs=0.51
            )
        else:
            assert got["local"]["median_eur_m2"] is None and got["local"]["reason"]
    dep_prices = muts["price"].dropna().tolist()
    assert doc["departement_figures"]["prices"]["local"]["median_eur_m2"] == pytest.approx(
        statistics.median(dep_prices), abs=0.51
    )
    # No bare land in this sample: the land figure is absent with its reason, not a zero.
    assert doc["departement_figures"]["prices"]["terrain"] == {
        "sales": 0,
        "median_eur_m2": None,
        "q1_eur_m2": None,
        "q3_eur_m2": None,
        "reason": "aucune vente",
    }
    years = {y["year"]: y for y in doc["price_trend"]["years"]}
    for year, g in df.groupby("annee_mutation"):
        assert years[int(year)]["sales"] == g["id_mutation"].nunique()


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", str(text))
    return "".join(c for c in text if not unicodedata.combining(c)).lower().strip()


def test_structures_per_10k_and_qpv_membership_match_geopandas(
    loaded: dict[str, Any], engine: sa.Engine
) -> None:
    doc = loaded["docs"]["31"]
    pts = pd.read_csv(MEDIATION, dtype=str)
    pts = pts[[i + 2 not in loaded["mediation_bad_rows"] for i in range(len(pts))]]
    # Each located structure belongs to the commune polygon holding its point (GEOS here,
    # PostGIS in Carteco), not to a commune guessed from its postcode and spelling.
    lon, lat = pts.longitude.astype(float), pts.latitude.astype(float)
    with engine.connect() as conn:
        polys = pd.DataFrame(
            conn.execute(
                sa.text(
                    "SELECT code AS insee, ST_AsBinary(geom) AS wkb FROM territories "
                    "WHERE level = 'commune' AND geom && ST_MakeEnvelope(:w, :s, :e, :n, 4326)"
                ),
                {"w": lon.min(), "s": lat.min(), "e": lon.max(), "n": lat.max()},
            ).all()
        )
    communes_gdf = gpd.GeoDataFrame(
        polys[["insee"]], geometry=gpd.GeoSeries.from_wkb(polys["wkb"].map(bytes)), crs=4326
    )
    located = gpd.GeoDataFrame(pts, geometry=gpd.points_from_xy(lon, lat), crs=4326)
    joined = gpd.sjoin(located, communes_gdf, predicate="within", how="left")
    pts["insee"] = joined.groupby(level=0)["insee"].min()
    ref = pd.read_csv(
        GEODATA / "communes_france_cog2026.csv", dtype={"code_insee": str, "code_dep": str}
    )
    ref = ref.set_index("code_insee")
    in31 = pts[pts["insee"].map(lambda c: c in ref.index and ref.loc[c, "code_dep"] == "31")]
    communes = _communes(doc)
    for code, g in in31.groupby("insee"):
        got = communes[code]["structures"]
        assert got["total"] == len(g)
        assert got["per_10k"] == pytest.approx(
            len(g) * 10000 / ref.loc[code, "population"], abs=0.006
        )
    # Département total: structures whose commune is in 31, plus unresolved ones whose point
    # lies in the département outline.
    deps = gpd.read_file(GEODATA / "departements_france_2018_simplifie_gregoiredavid.geojson")
    gpts = gpd.GeoDataFrame(
        pts,
        geometry=gpd.points_from_xy(pts.longitude.astype(float), pts.latitude.astype(float)),
        crs=4326,
    )
    unresolved = gpts[pts["insee"].isna()]
    in_dep = gpd.sjoin(unresolved, deps[deps["code"] == "31"], predicate="intersects")
    dep_fig = doc["departement_figures"]["structures"]
    assert dep_fig["total"] == len(in31) + len(in_dep)
    pop31 = int(ref[ref["code_dep"] == "31"]["population"].sum())
    assert dep_fig["per_10k"] == pytest.approx(dep_fig["total"] * 10000 / pop31, abs=0.006)
    # QPV membership and the 300 m band, in Lambert-93.
    mine = gpts.loc[in31.index.union(in_dep.index)].to_crs(2154)
    qpv = gpd.read_file(LAND / "qpv_31_2015.geojson").to_crs(2154)
    inside = gpd.sjoin(mine, qpv, predicate="intersects").index.unique()
    near = gpd.sjoin(mine, qpv, predicate="dwithin", distance=300).index.unique()
    assert dep_fig["in_qpv"] == len(inside) > 0
    assert dep_fig["near_qpv"] == len(near) > len(inside)
    assert dep_fig["share_near_qpv"] == pytest.approx(len(near) / len(mine), abs=0.001)


def test_nearest_station_distance_matches_geopandas(loaded: dict[str, Any]) -> None:
    doc = loaded["docs"]["93"]
    sites = pd.read_csv(LAND / "sites_93_exemple.csv", sep=";", dtype=str).dropna(
        subset=["longitude"]
    )
    g = gpd.GeoDataFrame(
        sites,
        geometry=gpd.points_from_xy(sites.longitude.astype(float), sites.latitude.astype(float)),
        crs=4326,
    ).to_crs(2154)
    stations = gpd.read_file(GEODATA / "gares_idf_idfm.geojson").to_crs(2154)
    near = gpd.sjoin_nearest(g, stations[["geometry"]], distance_col="d")
    expected = near.groupby("identifiant")["d"].min().to_dict()
    got = {s["source_id"]: s["station_distance_m"] for s in doc["supply"]["sites"]}
    assert set(expected) < set(got)
    for sid, d in expected.items():
        assert got[sid] == pytest.approx(d, abs=1.0)
    assert got["S93-05"] is None  # no coordinates: no distance, not zero
    assert doc["supply"]["station_distance"]["median_m"] == pytest.approx(
        statistics.median(expected.values()), abs=1.0
    )


def test_matching_ranks_expected_site_and_reports_unmet(loaded: dict[str, Any]) -> None:
    needs = {n["source_id"]: n for n in loaded["docs"]["93"]["needs"]["results"]["needs"]}
    assert needs["B93-01"]["matches"][0]["site_source_id"] == "S93-01"
    assert needs["B93-02"]["matches"][0]["site_source_id"] == "S93-02"
    # The occupied Aubervilliers office never appears.
    assert all(m["site_source_id"] != "S93-04" for n in needs.values() for m in n["matches"])
    assert needs["B93-04"]["matches"][0]["site_source_id"] == "S93-03"
    unmet = loaded["docs"]["93"]["needs"]["results"]["unmet"]
    assert [u["source_id"] for u in unmet] == ["B93-03"]
    assert "type de local incompatible" in unmet[0]["reason"]
    assert needs["B93-03"]["met"] is False and needs["B93-03"]["matches"] == []
    # Need linked to its structure by SIRET (a real SIAE of the demo).
    assert needs["B93-04"]["siret"] == "43461860900029"
    doc08 = loaded["docs"]["08"]
    n08 = {n["source_id"]: n for n in doc08["needs"]["results"]["needs"]}
    assert n08["B08-01"]["met"] and n08["B08-02"]["met"] is False
    top = next(
        s for s in doc08["supply"]["sites"] if s["id"] == n08["B08-01"]["matches"][0]["site_id"]
    )
    assert top["status"] in ("sans_projet", "potentielle") and "atelier" in top["usages"]
    assert 1000 <= (top["built_surface_m2"] or top["surface_m2"]) <= 20000
    rules = {r["rule"] for r in doc08["recommendations"]}
    assert {"urbanisme_transitoire", "bourse_locaux", "donnees"} <= rules


def test_market_medians_leave_vefa_and_auctions_apart(loaded: dict[str, Any]) -> None:
    """Medians rest on plain sales; VEFA and adjudications are listed apart with their own."""
    df = pd.read_csv(LAND / "dvf_qpv_31_2016-2020.csv", dtype={"code_commune": str})
    natures = df.groupby("id_mutation")["nature_mutation"].first()
    prices = loaded["docs"]["31"]["departement_figures"]["prices"]
    assert prices["market_sales"] == int((natures == "Vente").sum())
    other = {o["nature"]: o for o in prices["other_natures"]}
    assert "Vente" not in other
    assert {"Vente en l'état futur d'achèvement", "Adjudication"} <= set(other)
    local = prices["local"]
    assert local["q1_eur_m2"] <= local["median_eur_m2"] <= local["q3_eur_m2"]
    # The scope of the layer is printed with the figure.
    doc = loaded["docs"]["31"]
    assert doc["layers"]["dvf"]["scope"] == "ventes situées en QPV uniquement"


def test_trend_withheld_on_thin_or_partial_years(loaded: dict[str, Any], engine: sa.Engine) -> None:
    """A change needs two complete years with enough market sales at each end."""
    trend = loaded["docs"]["31"]["price_trend"]
    years = {y["year"]: y for y in trend["years"]}
    # 2020 holds a third of a usual year's mutations: incomplete, never an end.
    assert years[2020]["complete"] is False and "incomplète" in years[2020]["note"]
    assert all(years[y]["complete"] for y in (2016, 2017, 2018, 2019))
    change = trend["local_change"]
    assert change is not None
    assert change["from_year"] != 2016  # 12 market sales of premises: under the threshold
    assert change["to_year"] != 2020
    assert change["from_sales"] >= 20 and change["to_sales"] >= 20
    with engine.connect() as conn:
        _doc, _layers, html = build_report(conn, "31")
    assert "2020 : année incomplète" in html
    assert "ventes situées en QPV uniquement" in html
    assert "Vente en l&#39;état futur d&#39;achèvement" in html or "VEFA" in html


def test_unknown_surfaces_are_not_zeros_and_pollution_is_shown(
    loaded: dict[str, Any], engine: sa.Engine
) -> None:
    """The CNIG built-surface column is empty for every friche: unknown, never 0."""
    supply = loaded["docs"]["08"]["supply"]
    for row in supply["by_kind_status"]:
        assert row["built_surface_known"] == 0 and row["built_surface_m2"] is None
        if row["surface_known"] == 0:
            assert row["surface_m2"] is None
    df = pd.read_csv(LAND / "friches_ardennes_cnig.csv", dtype=str)
    expected = df["sol_pollution_existe"].value_counts().to_dict()
    got: dict[str, int] = {}
    for row in supply["by_kind_status"]:
        for k, v in row["pollution"].items():
            got[k] = got.get(k, 0) + v
    assert got == expected
    with engine.connect() as conn:
        _doc, _layers, html = build_report(conn, "08")
    assert "pollution avérée" in html and "Surface bâtie (m²)" in html
    # Unknown built surfaces print as "—", never as 0.
    assert '<td class="n">0</td><td class="n">0</td><td>pollution' not in html


def test_absence_of_inventoried_site_is_not_scarcity(loaded: dict[str, Any]) -> None:
    """A commune outside a 6-site example inventory is "aucun site inventorié"."""
    types = loaded["docs"]["93"]["typology"]
    assert types
    assert all("peu d'offre" not in t["label"] for t in types)
    assert any(t["supply"] == "aucun site inventorié" for t in types)


def test_polluted_site_matched_to_farmland_says_so() -> None:
    """Matching a food-growing need to a polluted friche says so and ranks it lower."""
    from carteco.diagnostics.matching import _evaluate
    from carteco.diagnostics.options import Options

    need = {
        "kind": "terrain_agricole",
        "surface_min_m2": None,
        "surface_max_m2": None,
        "budget_rent_eur_month": None,
        "budget_purchase_eur": None,
        "territories": [],
        "max_distance_km": None,
        "lon": 4.7,
        "lat": 49.7,
    }
    site = {
        "status": "sans_projet",
        "usages": ["terrain_agricole"],
        "surface_m2": 5000.0,
        "built_surface_m2": None,
        "rent_eur_month": None,
        "price_eur": None,
        "commune_code": "08105",
        "epci_code": None,
        "departement_code": "08",
        "lon": 4.71,
        "lat": 49.7,
        "pollution": "pollution inexistante",
    }
    _f, clean = _evaluate(need, site, {}, Options())
    _f, dirty = _evaluate(need, {**site, "pollution": "pollution avérée"}, {}, Options())
    assert "pollution" not in clean
    assert "culture alimentaire exclue" in dirty["pollution"]
    assert dirty["score"] < clean["score"]


def test_departement_without_land_layers_says_so(loaded: dict[str, Any], engine: sa.Engine) -> None:
    doc = loaded["docs"]["23"]
    for key in ("qpv", "dvf", "sites", "needs", "stations"):
        assert doc["layers"][key]["available"] is False
        assert doc["layers"][key]["note"]
    assert doc["departement_figures"]["prices"] is None
    assert doc["price_trend"] is None
    assert doc["departement_figures"]["structures"]["in_qpv"] is None
    assert all(
        c["prices"] is None and c["supply"] is None and c["needs"] is None for c in doc["communes"]
    )
    assert doc["supply"] == {"available": False, "by_kind_status": [], "sites": []}
    with engine.connect() as conn:
        _doc, _layers, html = build_report(conn, "23")
    assert "Aucune transaction DVF chargée pour ce département" in html
    assert "Aucun site (friche, local vacant, foncier public)" in html
    assert "€/m²</b>" not in html and "0 €/m²" not in html


def test_politique_ville_not_loaded_is_null_with_reason(
    loaded: dict[str, Any], engine: sa.Engine
) -> None:
    """Without the ANCT post layers the block says "non chargé": null figures, never zeros."""
    pv = loaded["docs"]["23"]["politique_ville"]
    assert pv["available"] is False
    assert pv["reason"].startswith("non chargé")
    for key in ("posts", "amount_eur", "employers", "employers_in_registry", "year", "scope"):
        assert pv[key] is None
    for prog in pv["programs"].values():
        assert prog["posts"] is None and prog["amount_eur"] is None
        assert prog["reason"] == "couche non chargée"
    assert loaded["docs"]["23"]["layers"]["politique_ville"]["available"] is False
    # No contrat de ville of the shipped (IDF) layer here: null with the reason, no zeros.
    cv = pv["contrats_ville"]
    assert cv["available"] is False and cv["contrats"] is None and cv["unattributed"] is None
    assert cv["reason"].startswith("département hors de la couverture de la couche")
    with engine.connect() as conn:
        _doc, _layers, html = build_report(conn, "23")
    assert "Contexte politique de la ville non chargé" in html


def test_outputs_schema_and_no_cdn(
    loaded: dict[str, Any], engine: sa.Engine, tmp_path: Path
) -> None:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    for doc in loaded["docs"].values():
        jsonschema.validate(json.loads(json.dumps(public(doc), default=str)), schema)
    with engine.connect() as conn:
        paths = write_outputs(conn, "31", tmp_path)
    names = {p.name for p in paths}
    assert {
        "rapport.html",
        "indicateurs.json",
        "indicateurs.schema.json",
        "communes.geojson",
        "qpv.geojson",
        "sites.geojson",
        "besoins.geojson",
    } <= names
    html = (tmp_path / "rapport.html").read_text(encoding="utf-8")
    # No external script or stylesheet, and no CDN host (names split so that this test file
    # itself does not match the repository-wide CDN check).
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=", html)
    for host in ("cdn.js" + "delivr", "un" + "pkg.com", "cdn" + "js.cloudflare"):
        assert host not in html
    qpv = json.loads((tmp_path / "qpv.geojson").read_text(encoding="utf-8"))
    assert len(qpv["features"]) == 19


def test_cli_diagnostic_foncier(loaded: dict[str, Any], database_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "CARTECO_DATABASE_URL": database_url}
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "carteco.cli",
            "diagnostic",
            "foncier",
            "08",
            "--out",
            str(tmp_path / "d08"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert "Besoins déclarés et appariement" in res.stderr  # progress on the command line
    doc = json.loads((tmp_path / "d08" / "indicateurs.json").read_text(encoding="utf-8"))
    assert doc["departement"]["code"] == "08" and len(doc["supply"]["sites"]) == 164
    bad = subprocess.run(
        [sys.executable, "-m", "carteco.cli", "diagnostic", "foncier", "XYZ"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    assert bad.returncode == 2 and "invalide" in bad.stderr


def test_api_routes(loaded: dict[str, Any], client: Any) -> None:
    r = client.get("/diagnostics/foncier/93.json")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["departement"]["code"] == "93"
    assert body["needs"]["results"]["unmet"][0]["source_id"] == "B93-03"
    r = client.get("/diagnostics/foncier/93")
    assert r.status_code == 200 and "Diagnostic foncier" in r.text
    assert_problem(client.get("/diagnostics/foncier/abc"), 400)
    assert_problem(client.get("/diagnostics/foncier/99"), 404)
    assert_problem(client.get("/diagnostics/foncier/93.json?min_sales=0"), 400)


@pytest.mark.browser
def test_report_opens_in_headless_chromium(
    loaded: dict[str, Any], engine: sa.Engine, live_server: str, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    with engine.connect() as conn:
        write_outputs(conn, "31", tmp_path / "d31")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--no-first-run",
            ],
        )
        try:
            for name, url in (
                ("diagnostic_foncier_31.png", (tmp_path / "d31" / "rapport.html").as_uri()),
                ("diagnostic_foncier_93.png", f"{live_server}/diagnostics/foncier/93"),
            ):
                page = browser.new_page(viewport={"width": 1200, "height": 1000})
                errors: list[str] = []
                outside: list[str] = []
                page.on(
                    "console", lambda m, e=errors: e.append(m.text) if m.type == "error" else None
                )
                page.on("pageerror", lambda exc, e=errors: e.append(str(exc)))

                def route(r: Any, o: list[str] = outside) -> None:
                    u = r.request.url
                    if u.startswith(("file:", "data:", "http://127.0.0.1")):
                        r.continue_()
                    else:
                        o.append(u)
                        r.abort()

                page.route("**/*", route)
                page.goto(url)
                page.wait_for_selector(".leaflet-container .leaflet-overlay-pane path")
                assert page.locator(".leaflet-container").count() >= 2
                # Territory outlines, QPV polygons and markers drawn as SVG paths by Leaflet.
                assert page.locator(".leaflet-overlay-pane path").count() > 20
                assert page.locator("svg.chart rect").count() > 3
                # The basemap: neighbouring outlines under the data, place names that never
                # overlap one another, and each map's legend.
                assert page.locator(".leaflet-fond-pane path").count() > 10
                overlaps = page.evaluate(
                    """() => [...document.querySelectorAll('#carte-structures .carte-nom')]
                        .filter(e => e.parentNode.style.visibility !== 'hidden')
                        .map(e => e.getBoundingClientRect())
                        .map((a, i, all) => all.slice(i + 1).filter(b => a.left < b.right
                            && b.left < a.right && a.top < b.bottom && b.top < a.bottom).length)
                        .reduce((x, y) => x + y, 0)"""
                )
                shown = page.locator("#carte-structures .carte-nom").all_inner_texts()
                assert len(shown) >= 5 and overlaps == 0
                assert page.locator("#carte-structures .carte-legende").count() == 1
                assert errors == [] and outside == []
                page.locator("#structures").screenshot(path=str(ARTIFACTS / name))
                page.close()
        finally:
            browser.close()


def test_report_escapes_names_shown_in_map_tooltips(
    loaded: dict[str, Any], engine: sa.Engine
) -> None:
    """Map tooltips show names as text: a hostile name is JSON data, never page HTML."""
    hostile = '<img src=x onerror="alert(1)">'
    with engine.connect() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO structures (name, sectors, ess_family, geom, source, source_id, "
                "content_hash) VALUES (:n, ARRAY['numerique'], 'association', "
                "ST_SetSRID(ST_MakePoint(2.44, 48.86), 4326), 'essai-xss', '1', 'x')"
            ),
            {"n": hostile},
        )
        _doc, _layers, html = build_report(conn, "93")
        conn.rollback()  # nothing stays behind
    assert hostile not in html
    # In the map's JSON data, "<" and ">" are escaped; parsed back, the name is intact (the
    # map's script shows tooltip values with textContent).
    assert '\\u003cimg src=x onerror=\\"alert(1)\\"\\u003e' in html
    blocks = re.findall(r'<script type="application/json" data-carte="[\w-]+">(.*?)</script>', html)
    tips = [
        v
        for b in blocks
        for layer in json.loads(b)["layers"]
        for f in layer.get("features", [])
        for v in f["properties"].get("t", [])
    ]
    assert hostile in tips


def _fond(html: str) -> dict[str, Any]:
    block = re.search(r'<script type="application/json" id="fond-de-carte">(.*?)</script>', html)
    assert block, "the report embeds its basemap"
    return dict(json.loads(block.group(1)))


def test_basemap_from_shipped_outlines_matches_geopandas(
    loaded: dict[str, Any], engine: sa.Engine
) -> None:
    """The maps' basemap is the shipped reference data of the frame around the département:
    neighbouring communes and départements (bounding boxes overlapping the frame, geopandas
    here), the names of its most populated communes — no tile server."""
    with engine.connect() as conn:
        _doc, _layers, html = build_report(conn, "93")
    fond = _fond(html)
    communes = gpd.read_file(GEODATA / "communes_idf_cog2026.geojson")
    deps = gpd.read_file(GEODATA / "departements_idf_cog2026.geojson")
    own = communes[communes["code_dep"] == "93"]
    x0, y0, x1, y1 = (
        min(own.total_bounds[0], deps[deps["code_dep"] == "93"].total_bounds[0]),
        min(own.total_bounds[1], deps[deps["code_dep"] == "93"].total_bounds[1]),
        max(own.total_bounds[2], deps[deps["code_dep"] == "93"].total_bounds[2]),
        max(own.total_bounds[3], deps[deps["code_dep"] == "93"].total_bounds[3]),
    )
    m = max(x1 - x0, y1 - y0) * 0.12
    x0, y0, x1, y1 = x0 - m, y0 - m, x1 + m, y1 + m
    # That frame is computed once, by one query, for the basemap's three queries.
    with engine.connect() as conn:
        frame = queries.basemap_frame(conn, "93")
        assert queries.basemap_frame(conn, "99") is None  # no such département loaded
    assert frame is not None
    assert frame.box() == pytest.approx({"xmin": x0, "ymin": y0, "xmax": x1, "ymax": y1})

    def overlaps(g: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
        b = g.bounds
        return g[(b.minx <= x1) & (b.maxx >= x0) & (b.miny <= y1) & (b.maxy >= y0)]

    neighbours = overlaps(communes[communes["code_dep"] != "93"])
    others = overlaps(deps[deps["code_dep"] != "93"])
    layers = fond["layers"]
    assert [len(layer["features"]) for layer in layers] == [len(neighbours), len(others)]
    assert all(layer["pane"] == "fond" for layer in layers)
    labels = fond["labels"]
    # A neighbour is named where its outline (not only its bounding box) enters the frame.
    inside = others[others.intersects(box(x0, y0, x1, y1))]
    assert [x["text"] for x in labels if x["kind"] == "departement"] == list(
        inside.sort_values("code_dep")["nom"]
    )
    biggest = own.sort_values(["population", "code_insee"], ascending=[False, True])
    assert [x["text"] for x in labels if x["kind"] == "commune"] == list(biggest["nom"][:14])
    # Paris, the most populated neighbour, is named too.
    assert [x["text"] for x in labels if x["kind"] == "voisine"][0] == "Paris"
    # Stations of the frame are a layer of each map, their names as tooltip data.
    stations = gpd.read_file(GEODATA / "gares_idf_idfm.geojson")
    in_frame = stations.cx[x0:x1, y0:y1]
    maps = [
        json.loads(b)
        for b in re.findall(
            r'<script type="application/json" data-carte="[\w-]+">(.*?)</script>', html
        )
    ]
    for data in maps:
        gares = [layer for layer in data["layers"] if layer["name"] == "Gares et stations"]
        assert len(gares) == 1 and len(gares[0]["features"]) == len(in_frame)
        assert {e["label"] for e in data["legend"]} >= {"Limite du département", "Gare ou station"}
    # Without stations shipped for the département, the caption says so.
    with engine.connect() as conn:
        _doc, _layers, html31 = build_report(conn, "31")
    assert "gares non figurées (Aucune gare chargée" in html31
    assert "aucune couche hydrographique n'est livrée" in html31


def test_charts_count_unknown_sector_apart(loaded: dict[str, Any], engine: sa.Engine) -> None:
    """Shares are over the structures whose sector is known, the unknown ones counted apart;
    with no sector known at all the report says so instead of drawing a chart."""
    from carteco.diagnostics.charts import share_chart

    svg = share_chart(
        [("Numérique", 3, "#000"), ("Insertion", 1, "#111")], 6, 10, "T", "structures", "Inconnu"
    )
    assert "3 (75 %)" in svg and "1 (25 %)" in svg
    assert "Inconnu : 6 structures (60 % du total), hors des parts" in svg
    assert "sur les 4 structures dont la catégorie est renseignée (sur 10)" in svg
    empty = share_chart([], 5, 5, "T", "structures", "Secteur non renseigné")
    assert "<svg" not in empty and "Secteur non renseigné</b>" not in empty
    assert "Secteur non renseigné pour les 5 structures" in empty
    insert = sa.text(
        "INSERT INTO structures (name, sectors, ess_family, geom, source, source_id, "
        "content_hash) VALUES (:n, ARRAY[]::text[], 'inconnue', "
        "ST_SetSRID(ST_MakePoint(1.87, 46.17), 4326), 'essai-secteur', :i, 'x')"
    )
    with engine.connect() as conn:
        for i in range(3):
            conn.execute(insert, {"n": f"Structure sans secteur {i}", "i": str(i)})
        doc, _layers, html = build_report(conn, "23")
        conn.rollback()  # nothing stays behind
    assert doc["departement_figures"]["structures"]["by_sector"] == {"non_classe": 3}
    assert "Secteur non renseigné pour les 3 structures — pas de répartition" in html
    assert "Famille non renseignée pour les 3 structures" in html
    assert "100 %" not in html


def test_per_qpv_figures_of_31_match_pandas(loaded: dict[str, Any], engine: sa.Engine) -> None:
    """Each QPV of the 31 report: structures located inside (geopandas on the raw CSV and the
    QPV file), mutations and market median of premises (pandas on the raw DVF file)."""
    doc = loaded["docs"]["31"]
    fig = doc["qpv_figures"]
    assert fig["available"] is True
    got = {q["code"]: q for q in fig["quartiers"]}
    qpv = gpd.read_file(LAND / "qpv_31_2015.geojson")
    assert set(got) == set(qpv["code_qp"]) and len(got) == 19
    assert all(got[r.code_qp]["name"] == r.nom_qp for r in qpv.itertuples())
    # Structures: the médiation points kept by the import, inside each QPV outline.
    pts = pd.read_csv(MEDIATION, dtype=str)
    pts = pts[[i + 2 not in loaded["mediation_bad_rows"] for i in range(len(pts))]]
    pts = pts.dropna(subset=["longitude", "latitude"])
    located = gpd.GeoDataFrame(
        pts,
        geometry=gpd.points_from_xy(pts.longitude.astype(float), pts.latitude.astype(float)),
        crs=4326,
    )
    inside = gpd.sjoin(located, qpv[["code_qp", "geometry"]], predicate="intersects")
    structures = inside.groupby("code_qp").size().to_dict()
    # Sales: one per mutation, in the QPV its rows name; the median over plain sales of premises.
    df = pd.read_csv(LAND / "dvf_qpv_31_2016-2020.csv", dtype={"code_commune": str})
    sales: dict[str, int] = {}
    prices: dict[str, list[float]] = {}
    for _mid, g in df.groupby("id_mutation"):
        codes = g["code_qp"].dropna()
        if codes.empty:
            continue
        code = codes.iloc[0]
        sales[code] = sales.get(code, 0) + 1
        value = g["valeur_fonciere"].iloc[0]
        bati = g.loc[g["type_local"].str.startswith("Local"), "surface_reelle_bati"].sum()
        only_premises = set(g["type_local"]) == {"Local industriel. commercial ou assimilé"}
        if only_premises and g["nature_mutation"].iloc[0] in MARKET and value > 0 and bati > 0:
            prices.setdefault(code, []).append(value / bati)
    min_sales = doc["parameters"]["min_sales"]
    with engine.connect() as conn:
        _doc, _layers, html = build_report(conn, "31")
    for code, q in got.items():
        assert q["structures"] == structures.get(code, 0), code
        assert q["sales"] == sales.get(code, 0), code
        mine = prices.get(code, [])
        assert q["local"]["sales"] == len(mine), code
        if len(mine) >= min_sales:
            assert q["local"]["median_eur_m2"] == pytest.approx(statistics.median(mine), abs=0.51)
            assert q["local"]["q1_eur_m2"] <= q["local"]["median_eur_m2"] <= q["local"]["q3_eur_m2"]
        else:
            assert q["local"]["median_eur_m2"] is None and q["local"]["reason"], code
        # The report's QPV table prints the same figures.
        name = str(html_escape(q["name"]))  # as Jinja escapes it
        row = (
            f'<td>{name} ({code})</td><td class="n">{q["structures"]}</td>'
            f'<td class="n">{q["sales"]}</td>'
        )
        assert row in html, code
    assert sum(structures.values()) == doc["departement_figures"]["structures"]["in_qpv"]
