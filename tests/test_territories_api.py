"""Territory endpoints: a territory, its structures, its stats (checked with geopandas), nearby."""

from __future__ import annotations

from collections import Counter

import geopandas as gpd
import pytest
import sqlalchemy as sa

from tests.conftest import assert_problem
from tests.features_support import load_demo

MONTREUIL, EST_ENSEMBLE, SSD = "93048", "200057875", "93"


@pytest.fixture(scope="module")
def demo(engine: sa.Engine) -> int:
    """The demo registry, loaded once for the module."""
    return load_demo(engine)


@pytest.fixture(scope="module")
def api(settings, demo):  # type: ignore[no-untyped-def]
    """A TestClient on the full app."""
    from fastapi.testclient import TestClient

    from api.factory import create_app

    with TestClient(create_app(settings)) as c:
        yield c


def test_territory_with_parents(api) -> None:  # type: ignore[no-untyped-def]
    t = api.get(f"/territories/commune/{MONTREUIL}").json()
    assert t["name"] == "Montreuil" and t["population"] > 100_000
    assert 8 < t["area_km2"] < 9.5
    assert t["geometry"]["type"] == "MultiPolygon"
    parents = [(p["level"], p["code"]) for p in t["parents"]]
    assert parents[0] == ("ept", EST_ENSEMBLE) and ("departement", SSD) in parents
    assert ("region", "11") in parents
    assert "geometry" not in api.get(f"/territories/communes/{MONTREUIL}?geometry=false").json()
    assert_problem(api.get("/territories/commune/99999"), 404)
    assert_problem(api.get("/territories/planete/1"), 404)
    assert_problem(api.get(f"/territories/commune/{MONTREUIL}?x=1"), 400)


def test_territory_structures_use_the_same_filters(api, engine) -> None:  # type: ignore[no-untyped-def]
    body = api.get(f"/territories/departement/{SSD}/structures?limit=1000").json()
    with engine.connect() as conn:
        expected = set(
            conn.execute(
                sa.text("SELECT id FROM structures WHERE departement_code = :d"), {"d": SSD}
            ).scalars()
        )
    assert {f["id"] for f in body["features"]} == expected and body["numberMatched"] == len(
        expected
    )
    assoc = api.get(f"/territories/departement/{SSD}/structures?family=association&limit=1000")
    cql = api.get(
        f"/territories/departement/{SSD}/structures",
        params={"filter": "ess_family = 'association'", "limit": 1000},
    )
    assert {f["id"] for f in assoc.json()["features"]} == {f["id"] for f in cql.json()["features"]}
    assert_problem(api.get(f"/territories/departement/{SSD}/structures?bbox=1"), 400)


def _independent(engine: sa.Engine, level: str, code: str) -> dict[str, object]:
    """Counts computed with geopandas: points in the polygon, by family and by sector."""
    with engine.connect() as conn:
        poly = gpd.read_postgis(
            sa.text("SELECT geom FROM territories WHERE level = :l AND code = :c"),
            conn,
            params={"l": level, "c": code},
            geom_col="geom",
        )
        pts = gpd.read_postgis(
            sa.text(
                "SELECT id, ess_family, sectors, geom FROM structures "
                "WHERE geom IS NOT NULL AND status = 'active'"
            ),
            conn,
            geom_col="geom",
        )
    inside = pts[pts.intersects(poly.geometry.iloc[0])]
    sectors = Counter(s for row in inside["sectors"] for s in row)
    return {
        "structures": len(inside),
        "by_family": dict(Counter(inside["ess_family"])),
        "by_sector": dict(sectors),
    }


def test_montreuil_stats_match_an_independent_computation(api, engine) -> None:  # type: ignore[no-untyped-def]
    s = api.get(f"/territories/commune/{MONTREUIL}/stats").json()
    fig = s["figures"]
    ref = _independent(engine, "commune", MONTREUIL)
    assert fig["structures"] == ref["structures"] > 0
    assert fig["by_family"] == ref["by_family"]
    assert {k: v["structures"] for k, v in fig["by_sector"].items()} == ref["by_sector"]
    assert fig["per_10000"] == pytest.approx(ref["structures"] * 10000 / fig["population"], 1e-3)
    # No QPV layer loaded: no figure and its reason, never an invented 0 (#15).
    assert fig["in_qpv"] is None and fig["share_in_qpv"] is None
    assert "QPV" in fig["unavailable"]["share_in_qpv"]
    parents = {p["code"]: p for p in s["parents"]}
    for level, code in (("ept", EST_ENSEMBLE), ("departement", SSD)):
        ref_p = _independent(engine, level, code)
        assert parents[code]["structures"] == ref_p["structures"], code
        assert parents[code]["by_family"] == ref_p["by_family"], code
    assert parents[EST_ENSEMBLE]["structures"] >= fig["structures"]
    assert parents[SSD]["structures"] >= parents[EST_ENSEMBLE]["structures"]
    sib = s["siblings_average"]
    assert sib["parent"]["code"] == EST_ENSEMBLE and sib["territories"] == 8  # 9 communes - 1
    # The siblings' average, checked from the EPT total minus Montreuil.
    assert sib["structures"] == pytest.approx(
        (parents[EST_ENSEMBLE]["structures"] - fig["structures"]) / 8, abs=1e-3
    )
    assert_problem(api.get("/territories/commune/00000/stats"), 404)


def test_nearby_radius_and_nearest(api, engine) -> None:  # type: ignore[no-untyped-def]
    lon, lat = 2.44, 48.86
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT id, ST_Distance(geom::geography, "
                "ST_SetSRID(ST_MakePoint(:x, :y), 4326)::geography) d FROM structures "
                "WHERE geom IS NOT NULL ORDER BY d, id"
            ),
            {"x": lon, "y": lat},
        ).all()
    within = [r.id for r in rows if r.d <= 2000]
    r = api.get(f"/structures/nearby?lon={lon}&lat={lat}&radius=2000")
    assert r.status_code == 200, r.text
    feats = r.json()["features"]
    assert [f["id"] for f in feats] == within
    assert all(f["properties"]["distance_m"] <= 2000 for f in feats)
    knn = api.get(f"/structures/nearby?lon={lon}&lat={lat}&nearest=5").json()["features"]
    assert [f["id"] for f in knn] == [r.id for r in rows[:5]]
    for q in (
        "lon=2&lat=48",
        "lon=x&lat=48&radius=1",
        "lon=2&lat=48&radius=999999",
        "lon=2&lat=48&nearest=0",
    ):
        assert_problem(api.get(f"/structures/nearby?{q}"), 400)


def test_within_polygon(api, engine) -> None:  # type: ignore[no-untyped-def]
    x1, y1, x2, y2 = 2.33, 48.84, 2.42, 48.89
    poly = {
        "type": "Polygon",
        "coordinates": [[[x1, y1], [x2, y1], [x2, y2], [x1, y2], [x1, y1]]],
    }
    r = api.post("/structures/within?limit=1000", json=poly)
    assert r.status_code == 200, r.text
    with engine.connect() as conn:
        expected = set(
            conn.execute(
                sa.text(
                    "SELECT id FROM structures WHERE ST_Intersects(geom, "
                    "ST_MakeEnvelope(:a, :b, :c, :d, 4326))"
                ),
                {"a": x1, "b": y1, "c": x2, "d": y2},
            ).scalars()
        )
    assert {f["id"] for f in r.json()["features"]} == expected
    feature = {"type": "Feature", "properties": {}, "geometry": poly}
    assoc = api.post("/structures/within?family=association&limit=1000", json=feature).json()
    assert {f["id"] for f in assoc["features"]} <= expected
    bowtie = {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}
    assert "invalide" in assert_problem(api.post("/structures/within", json=bowtie), 400)["detail"]
    assert_problem(
        api.post("/structures/within", json={"type": "Point", "coordinates": [1, 2]}), 400
    )
    assert_problem(api.post("/structures/within", content=b"not json"), 400)
    assert_problem(
        api.post("/structures/within", json={"type": "Polygon", "coordinates": "x"}), 400
    )
    big = {
        "type": "Polygon",
        "coordinates": [[[2 + i * 1e-6, 48] for i in range(60_000)] + [[2, 48]]],
    }
    assert_problem(api.post("/structures/within", json=big), 413)
