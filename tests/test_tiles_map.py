"""The map pages and their JSON over HTTP (the browser test drives them for real)."""

from __future__ import annotations

import json
import re

import pytest
import sqlalchemy as sa

from tests.conftest import assert_html_error, assert_problem


def page_config(html: str) -> dict:
    m = re.search(r'<script id="cc-config" type="application/json">(.*?)</script>', html, re.S)
    assert m
    return json.loads(m.group(1))


def one(engine: sa.Engine, sql: str, **params):
    with engine.connect() as conn:
        return conn.execute(sa.text(sql), params).one()


def test_carte_page(client, demo_data) -> None:
    r = client.get("/carte")
    assert r.status_code == 200 and '<html lang="fr">' in r.text
    cfg = page_config(r.text)
    assert cfg["structuresTiles"].startswith("/collections/structures/tiles/WebMercatorQuad/")
    assert cfg["basemap"] is None and cfg["locked"] is None
    top = {s["code"]: s for s in cfg["sectors"]}
    assert top["numerique"]["n"] > 0 and top["alimentation"]["children"]
    assert "maplibre-gl.js" in r.text and "https://" not in r.text.split("<body")[0]
    for level in ("departement", "ept", "epci"):
        assert any(t["level"] == level for t in cfg["territories"])


def test_basemap_setting(settings, demo_data) -> None:
    from fastapi.testclient import TestClient

    from api.factory import create_app

    custom = settings.model_copy(update={"basemap_style_url": "https://example.org/style.json"})
    with TestClient(create_app(custom)) as c:
        assert page_config(c.get("/carte").text)["basemap"] == "https://example.org/style.json"


def test_liste_matches_sql(client, demo_data) -> None:
    bbox = "2.25,48.80,2.45,48.92"
    r = client.get(f"/carte/liste?bbox={bbox}&secteur=numerique&limit=500")
    assert r.status_code == 200
    (n,) = one(
        demo_data,
        "SELECT count(*) FROM structures WHERE status = 'active' AND geom && "
        "ST_MakeEnvelope(2.25, 48.80, 2.45, 48.92, 4326) AND EXISTS "
        "(SELECT 1 FROM unnest(sectors) x WHERE x LIKE 'numerique%')",
    )
    assert r.json()["total"] == n == len(r.json()["items"]) and n > 0
    r = client.get("/carte/liste?territoire=departement:93&limit=5")
    (n93,) = one(
        demo_data,
        "SELECT count(*) FROM structures WHERE geom IS NOT NULL AND departement_code = '93'",
    )
    assert r.json()["total"] == n93 and len(r.json()["items"]) == 5
    assert_problem(client.get("/carte/liste?secteur=nope"), 400)
    assert_problem(client.get("/carte/liste?bbox=1,2,3"), 400)
    assert_problem(client.get("/carte/liste?limit=0"), 400)


def test_fiche_and_search(client, demo_data) -> None:
    sid, name = one(demo_data, "SELECT id, name FROM structures WHERE geom IS NOT NULL LIMIT 1")
    card = client.get(f"/carte/structures/{sid}.json").json()
    assert card["name"] == name and card["precision_label"] and card["sectors"][0]["label"]
    assert_problem(client.get("/carte/structures/999999.json"), 404)
    found = client.get("/carte/recherche?q=montreuil").json()
    assert found["lieux"][0]["code"] == "93048"
    assert found["lieux"][0]["bbox"][0] < 2.45 < found["lieux"][0]["bbox"][2]
    assert client.get("/carte/recherche?q=93100").json()["lieux"][0]["code"] == "93048"
    word = name.split()[0]
    assert any(
        s["id"] == sid for s in client.get(f"/carte/recherche?q={name[:30]}").json()["structures"]
    ), word
    assert_problem(client.get("/carte/recherche"), 400)


def test_embed_and_snippet(client, demo_data) -> None:
    r = client.get("/embed?territoire=departement:93&secteur=insertion")
    assert r.status_code == 200
    assert 'class="site"' not in r.text  # no page chrome
    assert "frame-ancestors" in r.headers.get("content-security-policy", "")
    assert "x-frame-options" not in r.headers
    cfg = page_config(r.text)
    assert cfg["embed"] is True
    assert cfg["locked"]["code"] == "93"
    assert cfg["locked"]["outline"]["type"] in ("Polygon", "MultiPolygon")
    assert cfg["preset"] == {"secteur": "insertion"}
    # A partner's iframe shows a French page, never raw JSON; API clients can still ask JSON.
    assert_html_error(client.get("/embed?territoire=departement:00"), 404, "territoire inconnu")
    assert_html_error(client.get("/embed?territoire=planete:1"), 400)
    assert_html_error(client.get("/embed?secteur=nope"), 400, "nope")
    assert_html_error(client.get("/embed?lang=de"), 400)
    json_accept = {"Accept": "application/problem+json"}
    assert_problem(client.get("/embed?secteur=nope", headers=json_accept), 400)
    r = client.get("/carte/integrer")
    assert r.status_code == 200 and "i-code" in r.text
    # The snippet is built by the page's own script file (no inline script under the CSP).
    assert '<script src="/static/carteco/integrer.js?v=' in r.text
    assert "<iframe" in client.get("/static/carteco/integrer.js").text


def test_collectivite_view(client, demo_data) -> None:
    r = client.get("/territoires/commune/93048")
    assert r.status_code == 200
    assert "Montreuil" in r.text and "<svg" in r.text and "Est Ensemble" in r.text
    (n,) = one(
        demo_data,
        "SELECT count(*) FROM structures WHERE status = 'active' AND commune_code = '93048'",
    )
    assert f'<strong id="terr-total">{n}</strong>' in r.text
    for fmt in ("geojson", "csv", "gpkg"):
        assert f"/collections/structures/items?limit=10000&amp;commune=93048&amp;f={fmt}" in r.text
    assert page_config(r.text)["locked"]["code"] == "93048"
    r = client.get("/territoires/region/11")
    assert r.status_code == 200 and "region_code" in r.text  # downloads filtered by CQL2
    assert_html_error(client.get("/territoires/commune/00000"), 404, "territoire inconnu")
    assert_html_error(client.get("/territoires/pays/FR"), 404)


def test_download_links_work(client, demo_data) -> None:
    r = client.get("/collections/structures/items?limit=10000&commune=93048&f=geojson")
    if r.status_code == 404:
        pytest.fail("features API downloads missing (issue 4)")
    (n,) = one(
        demo_data,
        "SELECT count(*) FROM structures WHERE status = 'active' AND commune_code = '93048'",
    )
    assert len(r.json()["features"]) == n
    # Every download link of the collectivité view answers, Lambert-93 GeoPackage included.
    page = client.get("/territoires/commune/93048").text
    links = re.findall(r'href="(/collections/structures/items\?[^"]+)"', page)
    assert len(links) == 4 and any("crs=EPSG%3A2154" in u or "crs=EPSG:2154" in u for u in links)
    for url in links:
        got = client.get(url.replace("&amp;", "&"))
        assert got.status_code == 200, url
