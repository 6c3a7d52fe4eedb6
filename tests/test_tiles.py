"""Vector tiles: MVT content against SQL counts, filters, errors, cache and invalidation."""

from __future__ import annotations

import math
import subprocess

import mapbox_vector_tile
import morecantile
import pytest
import sqlalchemy as sa

from tests.conftest import assert_problem
from tiles.layers import CLUSTER_MAXZOOM, LAYERS
from tiles.mvt import MVT_MEDIA_TYPE

TMS = morecantile.tms.get("WebMercatorQuad")
PARIS = (2.3522, 48.8566)
URL = "/collections/{layer}/tiles/WebMercatorQuad/{z}/{y}/{x}"


def tile_url(layer: str, z: int, lon: float = PARIS[0], lat: float = PARIS[1], q: str = "") -> str:
    t = TMS.tile(lon, lat, z)
    return URL.format(layer=layer, z=z, y=t.y, x=t.x) + (f"?{q}" if q else "")


def decode(content: bytes, layer: str = "structures") -> list[dict]:
    if not content:
        return []
    return mapbox_vector_tile.decode(content).get(layer, {}).get("features", [])


def sql_count(engine: sa.Engine, z: int, x: int, y: int, where: str = "TRUE", **params) -> int:
    """Independent count: active located structures inside the tile (envelope in 4326)."""
    with engine.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT count(*) FROM structures WHERE status = 'active' AND geom && "
                "ST_Transform(ST_TileEnvelope(:z, :x, :y), 4326) AND " + where
            ),
            {"z": z, "x": x, "y": y, **params},
        ).scalar_one()


@pytest.fixture
def tiles_registry(demo_data: sa.Engine) -> sa.Engine:
    """Demo registry and an empty tile cache."""
    with demo_data.begin() as conn:
        conn.execute(sa.text("DELETE FROM tile_cache"))
    return demo_data


@pytest.mark.parametrize("z", [0, 5, 8, 10, CLUSTER_MAXZOOM])
def test_cluster_counts_match_sql(client, tiles_registry, z) -> None:
    t = TMS.tile(*PARIS, z)
    r = client.get(tile_url("structures", z))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == MVT_MEDIA_TYPE
    feats = decode(r.content)
    expected = sql_count(tiles_registry, z, t.x, t.y)
    assert expected > 0
    assert sum(f["properties"]["count"] for f in feats) == expected
    for f in feats:
        p = f["properties"]
        assert p["sector"]
        if p["count"] == 1:
            assert p["id"] and p["name"] and p["precision"]
        else:
            assert "name" not in p
    if z >= 8:
        assert len(feats) > 1  # clustered, not one blob


def test_points_at_high_zoom(client, tiles_registry) -> None:
    z = 15
    with tiles_registry.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT id, name, sectors, location_precision, ST_X(geom) lon, ST_Y(geom) lat "
                "FROM structures WHERE geom IS NOT NULL AND status = 'active' ORDER BY id LIMIT 1"
            )
        ).one()
        t = TMS.tile(row.lon, row.lat, z)
        ids = set(
            conn.execute(
                sa.text(
                    "SELECT id FROM structures WHERE status = 'active' AND geom && "
                    "ST_Transform(ST_TileEnvelope(:z, :x, :y, margin => 64.0 / 4096), 4326)"
                ),
                {"z": z, "x": t.x, "y": t.y},
            ).scalars()
        )
    r = client.get(URL.format(layer="structures", z=z, y=t.y, x=t.x))
    assert r.status_code == 200
    feats = decode(r.content)
    assert {f["id"] for f in feats} == ids
    mine = next(f for f in feats if f["id"] == row.id)
    assert mine["properties"]["name"] == row.name
    assert mine["properties"]["sectors"] == ",".join(row.sectors)
    assert mine["properties"]["precision"] == row.location_precision
    assert mine["geometry"]["type"] == "Point"


def test_filters_apply_inside_tiles(client, tiles_registry) -> None:
    z = 8
    t = TMS.tile(*PARIS, z)
    total = sum(
        f["properties"]["count"] for f in decode(client.get(tile_url("structures", z)).content)
    )
    r = client.get(tile_url("structures", z, q="secteur=alimentation"))
    assert r.status_code == 200
    n = sum(f["properties"]["count"] for f in decode(r.content))
    expected = sql_count(
        tiles_registry,
        z,
        t.x,
        t.y,
        "(sectors[1] LIKE 'alimentation%' OR sectors && :codes)",
        codes=[
            "alimentation",
            "alimentation.agriculture",
            "alimentation.circuits_courts",
            "alimentation.epicerie",
            "alimentation.restauration",
        ],
    )
    assert 0 < n == expected < total
    r = client.get(tile_url("structures", z, q="territoire=departement:93"))
    n93 = sum(f["properties"]["count"] for f in decode(r.content))
    assert n93 == sql_count(tiles_registry, z, t.x, t.y, "departement_code = '93'") > 0
    r = client.get(tile_url("structures", z, q="family=association&filter=esus = false"))
    assert r.status_code == 200
    assert sum(f["properties"]["count"] for f in decode(r.content)) == sql_count(
        tiles_registry, z, t.x, t.y, "ess_family = 'association' AND NOT esus"
    )


def test_tile_errors_and_empty(client, tiles_registry) -> None:
    assert_problem(client.get(URL.format(layer="structures", z=25, y=0, x=0)), 404)
    assert_problem(client.get(URL.format(layer="structures", z=3, y=8, x=0)), 404)
    assert_problem(client.get(URL.format(layer="structures", z=3, y=0, x=-1)), 404)
    assert_problem(client.get(URL.format(layer="nope", z=3, y=0, x=0)), 404)
    assert_problem(client.get("/collections/structures/tiles/WorldCRS84Quad/3/0/0"), 404)
    assert_problem(client.get(URL.format(layer="structures", z="a", y=0, x=0)), 400)
    assert_problem(client.get(tile_url("structures", 8, q="secteur=inconnu")), 400)
    assert_problem(client.get(tile_url("structures", 8, q="territoire=pays:FR")), 400)
    assert_problem(client.get(tile_url("structures", 8, q="filter=name = 1; DROP TABLE x")), 400)
    # A tile over the ocean is empty: 204, not an error.
    r = client.get(tile_url("structures", 6, lon=-30.0, lat=40.0))
    assert r.status_code == 204 and r.content == b""


def test_territory_layer(client, tiles_registry) -> None:
    r = client.get(tile_url("communes", 11))
    assert r.status_code == 200
    feats = decode(r.content, "communes")
    assert any(
        f["properties"]["code"] == "75056" or f["properties"]["name"].startswith("Paris")
        for f in feats
    )
    assert all(f["geometry"]["type"] in ("Polygon", "MultiPolygon") for f in feats)
    feats = decode(client.get(tile_url("departements", 5)).content, "departements")
    assert {"75", "93"} <= {f["properties"]["code"] for f in feats}


def test_metadata_documents(client) -> None:
    doc = client.get("/collections/structures/tiles").json()
    assert doc["tilesets"][0]["dataType"] == "vector"
    meta = client.get("/collections/structures/tiles/WebMercatorQuad").json()
    assert meta["tileMatrixSetURI"].endswith("WebMercatorQuad")
    assert meta["tileMatrixSetLimits"][3] == {
        "tileMatrix": "3",
        "minTileRow": 0,
        "maxTileRow": 7,
        "minTileCol": 0,
        "maxTileCol": 7,
    }
    assert any(link["rel"] == "item" for link in meta["links"])
    tj = client.get("/collections/structures/tiles/WebMercatorQuad/tilejson.json?secteur=energie")
    doc = tj.json()
    assert doc["tilejson"] == "3.0.0"
    assert doc["tiles"][0].endswith("/WebMercatorQuad/{z}/{y}/{x}?secteur=energie")
    assert doc["vector_layers"][0]["id"] == "structures"
    assert "sector" in doc["vector_layers"][0]["fields"]
    tmsdoc = client.get("/tileMatrixSets/WebMercatorQuad").json()
    assert tmsdoc["id"] == "WebMercatorQuad" and len(tmsdoc["tileMatrices"]) == 25
    for lid in LAYERS:
        assert client.get(f"/collections/{lid}/tiles/WebMercatorQuad").status_code == 200


def test_gdal_reads_a_tile(live_server, tiles_registry, tmp_path) -> None:
    t = TMS.tile(*PARIS, 10)
    url = live_server + URL.format(layer="structures", z=10, y=t.y, x=t.x)
    import httpx

    path = tmp_path / "10" / str(t.x) / f"{t.y}.pbf"
    path.parent.mkdir(parents=True)
    path.write_bytes(httpx.get(url).content)
    out = subprocess.run(
        ["ogrinfo", "-ro", "-al", "-so", f"MVT:{path}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    n = sql_count(tiles_registry, 10, t.x, t.y)
    assert "Layer name: structures" in out
    assert "count: Integer" in out or "count: Integer64" in out or "count: Real" in out
    feats = decode(path.read_bytes())
    assert f"Feature Count: {len(feats)}" in out
    assert sum(f["properties"]["count"] for f in feats) == n


# -- cache -------------------------------------------------------------------------------------


def covering_with_margin(lon: float, lat: float, z: int) -> set[tuple[int, int]]:
    """Tiles whose render buffer (64/4096 of a tile) holds the point, by the Mercator formula."""
    n = 2**z
    fx = (lon + 180) / 360 * n
    fy = (1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n
    m = 64 / 4096
    xs = {min(n - 1, max(0, math.floor(v))) for v in (fx - m, fx + m)}
    ys = {min(n - 1, max(0, math.floor(v))) for v in (fy - m, fy + m)}
    return {(x, y) for x in xs for y in ys}


def _cached(engine: sa.Engine) -> set[tuple[int, int, int]]:
    with engine.connect() as conn:
        return {
            (r.z, r.x, r.y)
            for r in conn.execute(
                sa.text("SELECT z, x, y FROM tile_cache WHERE layer = 'structures'")
            )
        }


def test_cache_headers_and_etag(client, tiles_registry) -> None:
    url = tile_url("structures", 9)
    first = client.get(url)
    assert first.headers["x-tile-cache"] == "miss"
    assert first.headers["cache-control"].startswith("public, max-age=")
    second = client.get(url)
    assert second.headers["x-tile-cache"] == "hit"
    assert second.content == first.content and second.headers["etag"] == first.headers["etag"]
    r = client.get(url, headers={"If-None-Match": first.headers["etag"]})
    assert r.status_code == 304
    # A filtered tile is cached under its own key.
    assert client.get(url + "?secteur=alimentation").headers["x-tile-cache"] == "miss"
    assert client.get(url + "?secteur=alimentation").headers["x-tile-cache"] == "hit"


def test_edit_invalidates_exactly_the_covering_tiles(client, tiles_registry) -> None:
    with tiles_registry.connect() as conn:
        sid, lon, lat = conn.execute(
            sa.text(
                "SELECT id, ST_X(geom), ST_Y(geom) FROM structures WHERE geom IS NOT NULL "
                "AND status = 'active' AND commune_code LIKE '75%' ORDER BY id LIMIT 1"
            )
        ).one()
    new_lon, new_lat = 2.4469, 48.8610  # Montreuil
    far = (2.0, 49.05)  # Cergy-Pontoise, far from both
    zooms = range(0, 17)
    urls = {}
    for name, (x0, y0) in {"old": (lon, lat), "new": (new_lon, new_lat), "far": far}.items():
        urls[name] = [tile_url("structures", z, x0, y0) for z in zooms]
        for u in urls[name]:
            assert client.get(u).status_code in (200, 204)
    before = {u: client.get(u) for u in urls["old"] + urls["new"] + urls["far"]}
    assert all(r.headers["x-tile-cache"] == "hit" for r in before.values())

    with tiles_registry.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE structures SET geom = ST_SetSRID(ST_Point(:x, :y), 4326) WHERE id = :id"
            ),
            {"x": new_lon, "y": new_lat, "id": sid},
        )
    # Every tile over the old or the new position is re-rendered, at every zoom …
    for u in dict.fromkeys(urls["old"] + urls["new"]):  # each tile once (low zooms shared)
        assert client.get(u).headers["x-tile-cache"] == "miss", u
    # … the far tiles that do not cover either position stay cached.
    far_hits = [client.get(u).headers["x-tile-cache"] for u in urls["far"]]
    shared = {
        URL.format(layer="structures", z=z, y=y, x=x)
        for z in zooms
        for p in ((lon, lat), (new_lon, new_lat))
        for (x, y) in covering_with_margin(*p, z)
    }
    missed = [
        u for u, h in zip(urls["far"], far_hits, strict=True) if u not in shared and h != "hit"
    ]
    assert not missed, (missed, shared)
    assert far_hits[-1] == "hit" and len(set(urls["far"]) & shared) < 8
    # The moved structure appears at its new place at high zoom.
    feats = decode(client.get(tile_url("structures", 16, new_lon, new_lat)).content)
    assert sid in {f["id"] for f in feats}


def test_non_visible_edit_keeps_cache_and_import_invalidates(client, tiles_registry) -> None:
    url = tile_url("structures", 7)
    before = sum(f["properties"]["count"] for f in decode(client.get(url).content))
    with tiles_registry.begin() as conn:
        # A structure without position: nothing drawn changes.
        conn.execute(sa.text("UPDATE structures SET description = 'x' WHERE geom IS NULL"))
    assert client.get(url).headers["x-tile-cache"] == "hit"
    with tiles_registry.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO structures (name, source, source_id, content_hash, sectors, geom) "
                "VALUES ('Nouvelle', 'test', 'n1', 'h', '{energie}', "
                "ST_SetSRID(ST_Point(2.35, 48.857), 4326))"
            )
        )
    r = client.get(url)
    assert r.headers["x-tile-cache"] == "miss"
    assert sum(f["properties"]["count"] for f in decode(r.content)) == before + 1
    r = client.get(tile_url("structures", 16, 2.35, 48.857))
    assert any(f["properties"]["name"] == "Nouvelle" for f in decode(r.content))


def test_import_invalidates_covering_tiles_only(client, tiles_registry, tmp_path) -> None:
    import json

    from carteco.importer import run_import
    from carteco.importer.mapping import Mapping

    here, far = (2.3790, 48.8300), (2.0, 49.05)
    near_url, far_url = tile_url("structures", 15, *here), tile_url("structures", 15, *far)
    low_url = tile_url("structures", 9, *here)
    for u in (near_url, far_url, low_url):
        client.get(u)
    path = tmp_path / "nouvelles.geojson"
    path.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "geometry": {"type": "Point", "coordinates": list(here)},
                        "properties": {"nom": "Épicerie importée", "ville": "Paris"},
                    }
                ],
            }
        )
    )
    mapping_file = tmp_path / "m.toml"
    mapping_file.write_text(
        '[columns]\ncommune_name = "ville"\n[constants]\nsectors = ["alimentation.epicerie"]\n'
    )
    report = run_import(
        tiles_registry, path, source="essai-tuiles", mapping=Mapping.from_file(mapping_file)
    )
    assert report.status == "succeeded" and report.created == 1, report.as_dict()
    r = client.get(near_url)
    assert r.headers["x-tile-cache"] == "miss"
    assert "Épicerie importée" in {f["properties"].get("name") for f in decode(r.content)}
    assert client.get(low_url).headers["x-tile-cache"] == "miss"
    assert client.get(far_url).headers["x-tile-cache"] == "hit"


def test_cache_is_size_bounded(tiles_registry) -> None:
    from tiles.cache import TileCache

    # touch_after_s=0: every hit refreshes the tile's recency (60 s in service).
    cache = TileCache(tiles_registry, max_tiles=5, touch_after_s=0)
    for z in range(0, 12):
        t = TMS.tile(*PARIS, z)
        assert not cache.get(LAYERS["structures"], z, t.x, t.y).cached
    assert len(_cached(tiles_registry)) == 12
    # The two oldest tiles are used again: they become the most recently used.
    for z in (0, 1):
        t = TMS.tile(*PARIS, z)
        assert cache.get(LAYERS["structures"], z, t.x, t.y).cached
    assert cache.evict() == 7
    # Least recently used evicted: the two just used and the three newest stay.
    assert sorted(z for z, _, _ in _cached(tiles_registry)) == [0, 1, 9, 10, 11]
    # In service a hit refreshes recency at most once a minute (no write per request).
    lazy = TileCache(tiles_registry, max_tiles=5)
    t = TMS.tile(*PARIS, 9)
    with tiles_registry.connect() as conn:
        before = conn.execute(
            sa.text("SELECT used_at FROM tile_cache WHERE z = 9 AND layer = 'structures'")
        ).scalar_one()
    assert lazy.get(LAYERS["structures"], 9, t.x, t.y).cached
    with tiles_registry.connect() as conn:
        after = conn.execute(
            sa.text("SELECT used_at FROM tile_cache WHERE z = 9 AND layer = 'structures'")
        ).scalar_one()
    assert after == before


def test_cluster_grid_stays_exact_after_writes(client, tiles_registry) -> None:
    """After the edits above, a close and a delete, grid-read clusters equal point clusters."""
    from tiles.mvt import _sql, tile_query, tile_size_m

    with tiles_registry.begin() as conn:
        ids = list(
            conn.execute(
                sa.text("SELECT id FROM structures WHERE geom IS NOT NULL ORDER BY id LIMIT 4")
            ).scalars()
        )
        conn.execute(
            sa.text("UPDATE structures SET status = 'closed' WHERE id = ANY(:ids)"),
            {"ids": ids[:2]},
        )
        conn.execute(
            sa.text("UPDATE structures SET sectors = '{energie}' WHERE id = :id"), {"id": ids[2]}
        )
        conn.execute(sa.text("DELETE FROM structures WHERE id = :id"), {"id": ids[3]})
    with tiles_registry.connect() as conn:
        grid, located = conn.execute(
            sa.text(
                "SELECT (SELECT sum(n) FROM tile_grid WHERE z = 14), "
                "(SELECT count(*) FROM structures "
                "WHERE geom IS NOT NULL AND status = 'active')"
            )
        ).one()
        assert grid == located
        for z in range(0, 13):
            for lon, lat in (PARIS, (2.45, 48.86), (2.0, 49.05)):
                t = TMS.tile(lon, lat, z)
                sql, params = tile_query(LAYERS["structures"], z, t.x, t.y)
                assert "tile_grid" in sql
                from_grid = decode(bytes(conn.execute(sa.text(sql), params).scalar_one()))
                points = _sql("structures_clusters.sql").replace("/*filter*/", "")
                from_points = decode(
                    bytes(
                        conn.execute(
                            sa.text(points),
                            {"z": z, "x": t.x, "y": t.y, "cell": tile_size_m(z) / 16},
                        ).scalar_one()
                    )
                )

                def key(f):
                    p = f["properties"]
                    return (
                        p["count"],
                        p["sector"],
                        p.get("id"),
                        tuple(f["geometry"]["coordinates"]),
                    )

                assert sorted(map(key, from_grid)) == sorted(map(key, from_points)), (z, t)
