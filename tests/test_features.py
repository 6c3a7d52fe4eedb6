"""OGC API Features (Parts 1, 2, 3) over the demo registry, with GDAL and OWSLib as real clients."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import assert_problem
from tests.features_support import load_demo

# Paris centre-east (Xe, XIe, XXe, Montreuil edge).
BBOX = (2.33, 48.84, 2.42, 48.89)


@pytest.fixture(scope="module")
def demo(engine: sa.Engine) -> int:
    """The three demo imports, loaded once for the module; the number of structures."""
    return load_demo(engine)


@pytest.fixture(scope="module")
def api(settings, demo):  # type: ignore[no-untyped-def]
    """A TestClient on the full app, sharing the module's demo data."""
    from fastapi.testclient import TestClient

    from api.factory import create_app

    with TestClient(create_app(settings)) as c:
        yield c


def _ids_in_bbox(engine: sa.Engine, bbox: tuple[float, ...], where: str = "TRUE") -> set[int]:
    with engine.connect() as conn:
        return set(
            conn.execute(
                sa.text(
                    "SELECT id FROM structures WHERE ST_Intersects(geom, "
                    f"ST_MakeEnvelope(:a, :b, :c, :d, 4326)) AND {where}"
                ),
                dict(zip("abcd", bbox, strict=True)),
            ).scalars()
        )


def _all_ids(api, url: str) -> list[int]:  # type: ignore[no-untyped-def]
    ids: list[int] = []
    while url:
        r = api.get(url)
        assert r.status_code == 200, r.text
        body = r.json()
        ids += [f["id"] for f in body["features"]]
        nxt = [link["href"] for link in body["links"] if link["rel"] == "next"]
        url = nxt[0].replace("http://testserver", "") if nxt else ""
    return ids


# -- Part 1 ------------------------------------------------------------------------------------


def test_landing_conformance_and_collections(api) -> None:  # type: ignore[no-untyped-def]
    body = api.get("/").json()
    rels = {link["rel"] for link in body["links"]}
    assert {"self", "service-desc", "service-doc", "conformance", "data"} <= rels
    html = api.get("/", headers={"Accept": "text/html"})
    assert html.headers["content-type"].startswith("text/html")
    assert "économie sociale et solidaire" in html.text and 'href="/carte"' in html.text
    conf = api.get("/conformance").json()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core" in conf
    assert "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs" in conf
    cols = api.get("/collections").json()["collections"]
    ids = {c["id"] for c in cols}
    assert {"structures", "communes", "departements", "epci", "ept", "regions", "stations"} <= ids
    assert "qpv" not in ids  # not loaded in the shipped reference data
    s = api.get("/collections/structures").json()
    assert s["storageCrs"].endswith("CRS84") and len(s["extent"]["spatial"]["bbox"][0]) == 4
    assert "Structures" in api.get("/collections/structures?f=html").text
    assert_problem(api.get("/collections/nope"), 404)
    assert_problem(api.get("/collections/structures/items/999999999"), 404)
    assert_problem(api.get("/collections/structures/items/abc"), 404)
    assert_problem(api.get("/collections/communes/items/00000"), 404)


def test_openapi_is_30_with_ogc_parameters(api) -> None:  # type: ignore[no-untyped-def]
    doc = api.get("/openapi.json").json()
    assert doc["openapi"] == "3.0.3"
    params = {
        p["name"]: p for p in doc["paths"]["/collections/{collectionId}/items"]["get"]["parameters"]
    }
    assert params["bbox"]["schema"]["minItems"] == 4 and params["bbox"]["schema"]["maxItems"] == 6
    assert params["bbox"]["explode"] is False
    lim = params["limit"]["schema"]
    assert (lim["minimum"], lim["default"], lim["maximum"]) == (1, 100, 10000)
    assert "datetime" in params
    assert '"null"' not in json.dumps(doc)  # no 3.1 null types left


def test_items_page_and_single_feature(api, demo) -> None:  # type: ignore[no-untyped-def]
    r = api.get("/collections/structures/items?limit=5")
    assert r.status_code == 200 and r.headers["content-type"] == "application/geo+json"
    assert r.headers["content-crs"] == "<http://www.opengis.net/def/crs/OGC/1.3/CRS84>"
    body = r.json()
    assert body["numberReturned"] == 5 and body["numberMatched"] == demo
    assert {link["rel"] for link in body["links"]} >= {"self", "next"}
    f = body["features"][0]
    one = api.get(f"/collections/structures/items/{f['id']}")
    assert one.json()["properties"] == f["properties"]
    assert one.headers["etag"] == f'"{f["properties"]["version"]}"'
    assert api.get("/collections/structures/items?limit=2&f=html").text.count("<tr>") == 3
    communes = api.get("/collections/communes/items?limit=2000").json()
    # All of France since #15: 34,868 commune polygons, a page of 2,000.
    assert communes["numberMatched"] > communes["numberReturned"] == 2000


def test_paging_returns_each_structure_once(api, demo) -> None:  # type: ignore[no-untyped-def]
    ids = _all_ids(api, "/collections/structures/items?limit=97")
    assert len(ids) == demo and len(set(ids)) == demo
    second = api.get("/collections/structures/items?limit=97&offset=97").json()
    prev = [link["href"] for link in second["links"] if link["rel"] == "prev"]
    assert prev and "offset=0" in prev[0]


def test_bad_parameters_are_400_problems(api) -> None:  # type: ignore[no-untyped-def]
    for q in (
        "unknown=1",
        "limit=0",
        "limit=abc",
        "limit=-3",
        "offset=x",
        "bbox=1,2,3",
        "bbox=a,b,c,d",
        "bbox=1,4,3,2",  # south above north (west > east is the antimeridian: allowed)
        "bbox=1,2,3,4&bbox=1,2,3,4",
        "datetime=yesterday",
        "datetime=../..",
        "crs=EPSG:3857",
        "bbox-crs=EPSG:3857&bbox=1,2,3,4",
        "f=xml",
        "sortby=nope",
        "properties=nope",
        "sector=nope",
        "family=nope",
        "filter=name%20%3D",
        "filter=nope%20%3D%201",
        "filter=name%20%3D%201",
        "filter-lang=sql&filter=1",
    ):
        body = assert_problem(api.get(f"/collections/structures/items?{q}"), 400)
        assert body["detail"], q
    # Simple structure filters do not exist on territory layers.
    assert_problem(api.get("/collections/communes/items?sector=insertion"), 400)
    # A limit above the maximum is capped, as the standard allows.
    assert api.get("/collections/communes/items?limit=999999").json()["numberReturned"] > 0


def test_bbox_returns_exactly_the_intersecting_structures(api, engine) -> None:  # type: ignore[no-untyped-def]
    expected = _ids_in_bbox(engine, BBOX)
    assert len(expected) > 10
    q = ",".join(map(str, BBOX))
    got = _all_ids(api, f"/collections/structures/items?bbox={q}&limit=50")
    assert sorted(got) == sorted(expected)
    body = api.get(f"/collections/structures/items?bbox={q}&limit=1").json()
    assert body["numberMatched"] == len(expected)
    six = f"{BBOX[0]},{BBOX[1]},0,{BBOX[2]},{BBOX[3]},100"
    assert set(_all_ids(api, f"/collections/structures/items?bbox={six}&limit=500")) == expected


# -- Part 2 (CRS) ------------------------------------------------------------------------------


def test_crs_lambert93_and_bbox_crs(api, engine) -> None:  # type: ignore[no-untyped-def]
    from pyproj import Transformer

    to_l93 = Transformer.from_crs(4326, 2154, always_xy=True)
    x1, y1 = to_l93.transform(BBOX[0], BBOX[1])
    x2, y2 = to_l93.transform(BBOX[2], BBOX[3])
    r = api.get(
        f"/collections/structures/items?bbox={x1},{y1},{x2},{y2}"
        "&bbox-crs=http://www.opengis.net/def/crs/EPSG/0/2154"
        "&crs=http://www.opengis.net/def/crs/EPSG/0/2154&limit=1000"
    )
    assert r.status_code == 200
    assert r.headers["content-crs"] == "<http://www.opengis.net/def/crs/EPSG/0/2154>"
    feats = r.json()["features"]
    # The Lambert-93 box is not exactly the CRS84 box: compare with PostGIS on the same box.
    with engine.connect() as conn:
        expected = set(
            conn.execute(
                sa.text(
                    "SELECT id FROM structures WHERE ST_Intersects(geom, ST_Transform("
                    "ST_Segmentize(ST_MakeEnvelope(:a,:b,:c,:d,2154), 1000), 4326))"
                ),
                {"a": x1, "b": y1, "c": x2, "d": y2},
            ).scalars()
        )
    assert {f["id"] for f in feats} == expected
    x, y = feats[0]["geometry"]["coordinates"]
    assert 640_000 < x < 665_000 and 6_855_000 < y < 6_870_000  # Paris in Lambert-93
    # EPSG:4326 is latitude first.
    f = api.get(f"/collections/structures/items/{feats[0]['id']}?crs=EPSG:4326").json()
    lat, lon = f["geometry"]["coordinates"]
    assert 48 < lat < 49 and 2 < lon < 3


# -- Part 3 (filtering) ------------------------------------------------------------------------


def _ids(api, query: str) -> list[int]:  # type: ignore[no-untyped-def]
    r = api.get("/collections/structures/items", params={**query, "limit": 10000})  # type: ignore[dict-item]
    assert r.status_code == 200, r.text
    return sorted(f["id"] for f in r.json()["features"])


def test_queryables(api) -> None:  # type: ignore[no-untyped-def]
    q = api.get("/collections/structures/queryables").json()
    assert q["properties"]["ess_family"]["enum"][0] == "association"
    assert q["properties"]["geom"]["format"] == "geometry-point"
    assert q["properties"]["sectors"]["type"] == "array"
    assert "search" not in q["properties"]


def test_cql2_text_json_and_simple_filters_agree(api, engine) -> None:  # type: ignore[no-untyped-def]
    by_family = _ids(api, {"family": "cooperative"})
    assert by_family
    assert _ids(api, {"filter": "ess_family = 'cooperative'"}) == by_family
    assert (
        _ids(
            api,
            {
                "filter": json.dumps(
                    {"op": "=", "args": [{"property": "ess_family"}, "cooperative"]}
                ),
                "filter-lang": "cql2-json",
            },
        )
        == by_family
    )
    by_dep = _ids(api, {"departement": "93,94"})
    assert by_dep
    assert _ids(api, {"filter": "departement_code IN ('93','94')"}) == by_dep
    by_sector = _ids(api, {"sector": "numerique.mediation"})
    assert by_sector
    assert _ids(api, {"filter": "A_OVERLAPS(sectors, ('numerique.mediation'))"}) == by_sector
    # Spatial predicates.
    q = ",".join(map(str, BBOX))
    in_box = _ids(api, {"bbox": q})
    x1, y1, x2, y2 = BBOX
    poly = f"POLYGON(({x1} {y1},{x2} {y1},{x2} {y2},{x1} {y2},{x1} {y1}))"
    assert _ids(api, {"filter": f"S_INTERSECTS(geom, {poly})"}) == in_box
    assert _ids(api, {"filter": f"S_WITHIN(geom, BBOX({x1},{y1},{x2},{y2}))"}) == in_box
    with engine.connect() as conn:
        near = sorted(
            conn.execute(
                sa.text(
                    "SELECT id FROM structures WHERE ST_DWithin(geom::geography, "
                    "ST_SetSRID(ST_MakePoint(2.44, 48.86), 4326)::geography, 1500)"
                )
            ).scalars()
        )
    assert near
    assert _ids(api, {"filter": "S_DWITHIN(geom, POINT(2.44 48.86), 1500)"}) == near
    combined = _ids(
        api, {"filter": "ess_family = 'association' AND NOT esus = true", "q": "emploi"}
    )
    assert combined == _ids(api, {"family": "association", "filter": "esus = false", "q": "emploi"})


def test_sortby_and_properties(api) -> None:  # type: ignore[no-untyped-def]
    body = api.get(
        "/collections/structures/items?sortby=-name&properties=name,commune_code&limit=20"
    ).json()
    names = [f["properties"]["name"] for f in body["features"]]
    assert set(body["features"][0]["properties"]) == {"name", "commune_code"}
    with_names = [n for n in names if n is not None]
    assert with_names == sorted(with_names, reverse=True)


def test_cql2_injection_is_refused_and_changes_nothing(api, engine, demo) -> None:  # type: ignore[no-untyped-def]
    attacks = [
        "name = 'x'; DROP TABLE structures; --",
        "name = 'x' OR 1=1; DELETE FROM structures",
        '"name; DROP TABLE structures" = 1',
        "S_INTERSECTS(geom, POINT(1 1)); TRUNCATE structures",
    ]
    for a in attacks:
        assert_problem(api.get("/collections/structures/items", params={"filter": a}), 400)
    # A string literal full of SQL is just a value: matches nothing, breaks nothing.
    r = api.get(
        "/collections/structures/items",
        params={"filter": "name = 'x''; DROP TABLE structures; --'"},
    )
    assert r.status_code == 200 and r.json()["numberReturned"] == 0
    bad_json = json.dumps({"op": "=", "args": [{"property": "id); DROP TABLE x; --"}, 1]})
    assert_problem(
        api.get(
            "/collections/structures/items",
            params={"filter": bad_json, "filter-lang": "cql2-json"},
        ),
        400,
    )
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM structures")).scalar_one() == demo


def test_datetime_filter(api, engine, demo) -> None:  # type: ignore[no-untyped-def]
    assert len(_ids(api, {"datetime": "2000-01-01T00:00:00Z/.."})) == demo
    assert _ids(api, {"datetime": "../2000-01-01T00:00:00Z"}) == []


# -- real clients ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(live_server: str, demo: int) -> str:
    """The live server, once the demo data is loaded."""
    return live_server


def test_gdal_reads_the_collections(server, demo, engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = subprocess.run(
        ["ogrinfo", "-ro", "-so", f"OAPIF:{server}", "structures"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert f"Feature Count: {demo}" in out.stdout, out.stdout
    gpkg = tmp_path / "box.gpkg"
    spat = [str(v) for v in BBOX]
    res = subprocess.run(
        ["ogr2ogr", "-preserve_fid", "-f", "GPKG", str(gpkg), f"OAPIF:{server}", "structures"]
        + ["-spat", *spat],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    import pyogrio

    df = pyogrio.read_dataframe(gpkg, fid_as_index=True)
    # GDAL keeps the feature id as the GeoPackage FID.
    assert sorted(int(v) for v in df.index) == sorted(_ids_in_bbox(engine, BBOX))


def test_owslib_features_client(server, demo) -> None:  # type: ignore[no-untyped-def]
    from owslib.ogcapi.features import Features

    w = Features(server)
    ids = {c["id"] for c in w.collections()["collections"]}
    assert "structures" in ids
    items = w.collection_items("structures", limit=10)
    assert items["numberReturned"] == 10 and items["numberMatched"] == demo
    q = w.collection_queryables("structures")
    assert "ess_family" in q["properties"]


def test_openapi_document_validates(api) -> None:  # type: ignore[no-untyped-def]
    from openapi_spec_validator import validate

    doc = api.get("/openapi.json").json()
    validate(doc)  # raises on any OpenAPI 3.0 violation
    assert "422" not in json.dumps(doc["paths"])


def test_next_links_page_by_keyset(api, demo) -> None:  # type: ignore[no-untyped-def]
    first = api.get("/collections/structures/items?limit=50&departement=75").json()
    nxt = next(link["href"] for link in first["links"] if link["rel"] == "next")
    assert f"after={first['features'][-1]['id']}" in nxt and "departement=75" in nxt
    second = api.get(nxt.replace("http://testserver", "")).json()
    assert second["features"][0]["id"] > first["features"][-1]["id"]
    assert_problem(api.get("/collections/structures/items?after=x"), 400)
    assert_problem(api.get("/collections/structures/items?after=3&sortby=name"), 400)


def test_queryables_as_query_parameters(api) -> None:  # type: ignore[no-untyped-def]
    assert _ids(api, {"ess_family": "cooperative"}) == _ids(api, {"family": "cooperative"})
    assert _ids(api, {"esus": "false", "departement_code": "93"}) == _ids(
        api, {"filter": "esus = false AND departement_code = '93'"}
    )
    paris = api.get("/collections/communes/items?code=75056").json()["features"]
    assert [f["id"] for f in paris] == ["75056"]
    assert_problem(api.get("/collections/structures/items?esus=peut-etre"), 400)
    assert_problem(api.get("/collections/structures/items?version=abc"), 400)
    assert_problem(api.get("/collections/structures/items?ess_family=banque"), 400)


def test_hostile_inputs_never_cause_server_errors(api) -> None:  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    c = TestClient(api.app, raise_server_exceptions=False)
    for url in (
        "/collections/structures/items?q=%00",
        "/collections/structures/items?filter=name%3D%27%00%27",
        "/collections/communes/items/%00",
        "/territories/commune/%00/stats",
        "/collections/structures/items?filter=version%20%3D%2099999999999999999999",
        "/collections/structures/items?filter=opened_on%20%3E%20DATE(%2700-01-01%27)",
        "/collections/structures/items?bbox=0,0,1e12,1e12&bbox-crs=EPSG:2154",
        "/collections/structures/items?filter-lang=cql2-json&filter=%7B%22op%22%3A%22and%22%2C%22args%22%3A5%7D",
        "/collections/structures/items?filter=T_AFTER(updated_at,TIMESTAMP(%272020-01-01T00:00:00Z%27))",
    ):
        assert c.get(url).status_code < 500, url
    nul = {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 0]]], "x": "\u0000"}
    assert_problem(c.post("/structures/within", json=nul), 400)
