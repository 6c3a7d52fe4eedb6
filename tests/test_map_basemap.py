"""The offline basemap over HTTP: glyph ranges, place-name and station tiles, CSP origins,
TileJSON bounds from the data and the bounded PMTiles export (the browser test draws them)."""

from __future__ import annotations

import gzip
import subprocess
import sys

import mapbox_vector_tile
import morecantile
import sqlalchemy as sa
from pmtiles.reader import MmapSource, Reader

from tests.conftest import assert_problem

TMS = morecantile.tms.get("WebMercatorQuad")
MONTREUIL = (2.4417, 48.8611)


def _fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """The (field number, value) pairs of one protobuf message (varints and byte strings)."""
    out: list[tuple[int, int | bytes]] = []
    i = 0

    def varint() -> int:
        nonlocal i
        shift = n = 0
        while True:
            b = buf[i]
            i += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return n

    while i < len(buf):
        key = varint()
        field, wire = key >> 3, key & 7
        if wire == 0:
            out.append((field, varint()))
        elif wire == 2:
            size = varint()
            out.append((field, buf[i : i + size]))
            i += size
        else:
            raise AssertionError(f"unexpected wire type {wire}")
    return out


def _glyphs(body: bytes, font: str, rng: str) -> dict[int, dict]:
    """Glyph id → its fields, from one range PBF of one font stack."""
    ((field, stack),) = _fields(body)
    assert field == 1 and isinstance(stack, bytes)
    parts = _fields(stack)
    assert (1, font.encode()) in parts and (2, rng.encode()) in parts
    glyphs = {}
    for f, g in parts:
        if f == 3:
            assert isinstance(g, bytes)
            d = dict(_fields(g))
            glyphs[d[1]] = d
    return glyphs


def test_glyph_ranges(client) -> None:
    r = client.get("/carte/glyphs/Noto%20Sans%20Regular/0-255.pbf")
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-protobuf"
    glyphs = _glyphs(r.content, "Noto Sans Regular", "0-255")
    m = glyphs[ord("M")]
    # A signed distance field with a 3 px border, at MapLibre's 24 px em.
    assert len(m[2]) == (m[3] + 6) * (m[4] + 6) and 12 <= m[4] <= 20 and m[7] > 10
    # Inside the strokes above MapLibre's 191 cut, far outside 0.
    assert max(m[2]) > 220 and min(m[2]) == 0
    assert ord("é") in glyphs and 2 not in glyphs[ord(" ")]  # a space has no bitmap
    # Œ and the typographic apostrophe of the shipped names have their ranges.
    for rng, code in (("256-511", "Œ"), ("8192-8447", "’")):
        body = client.get(f"/carte/glyphs/Noto%20Sans%20Bold/{rng}.pbf").content
        assert ord(code) in _glyphs(body, "Noto Sans Bold", rng)
    # A range the names never use: an empty answer, not an error that would drop a tile.
    empty = client.get("/carte/glyphs/Noto%20Sans%20Regular/19968-20223.pbf")
    assert empty.status_code == 200 and empty.content == b""
    # A font stack falls back to the first font Carteco has.
    assert client.get("/carte/glyphs/Inconnue,Noto%20Sans%20Bold/0-255.pbf").status_code == 200
    assert_problem(client.get("/carte/glyphs/Arial/0-255.pbf"), 404)
    assert_problem(client.get("/carte/glyphs/Noto%20Sans%20Regular/3-300.pbf"), 404)


def test_place_names_and_stations_tiles(client, demo_data) -> None:
    t = TMS.tile(*MONTREUIL, 11)
    r = client.get(f"/collections/noms/tiles/WebMercatorQuad/11/{t.y}/{t.x}")
    assert r.status_code == 200
    names = mapbox_vector_tile.decode(r.content)["noms"]["features"]
    found = {f["properties"]["name"]: f["properties"] for f in names}
    assert found["Montreuil"]["level"] == "commune" and found["Montreuil"]["code"] == "93048"
    assert found["Montreuil"]["population"] > 100_000
    # The basemap's one tile per request holds every basemap layer.
    both = client.get(f"/tiles/fond/11/{t.x}/{t.y}.pbf")
    assert both.status_code == 200 and both.headers["etag"]
    assert set(mapbox_vector_tile.decode(both.content)) == {
        "departements",
        "communes",
        "arrondissements",
        "noms",
        "gares",
    }
    etag = both.headers["etag"]
    again = client.get(f"/tiles/fond/11/{t.x}/{t.y}.pbf", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert_problem(client.get("/tiles/fond/17/0/0.pbf"), 404)
    assert_problem(client.get("/tiles/fond/3/8/0.pbf"), 404)
    # At zoom 7 only départements and the largest communes are named.
    t7 = TMS.tile(*MONTREUIL, 7)
    low = mapbox_vector_tile.decode(
        client.get(f"/collections/noms/tiles/WebMercatorQuad/7/{t7.y}/{t7.x}").content
    )["noms"]["features"]
    assert {f["properties"]["level"] for f in low} == {"departement"}
    t13 = TMS.tile(2.4415, 48.8625, 13)  # Mairie de Montreuil
    gares = mapbox_vector_tile.decode(
        client.get(f"/collections/gares/tiles/WebMercatorQuad/13/{t13.y}/{t13.x}").content
    )["gares"]["features"]
    by_name = {f["properties"]["name"]: f["properties"] for f in gares}
    assert "Mairie de Montreuil" in by_name and "METRO" in by_name["Mairie de Montreuil"]["modes"]
    # One point per station, however many lines stop there.
    assert len(by_name) == len(gares)


def test_tilejson_bounds_follow_the_data(client, demo_data) -> None:
    with demo_data.connect() as conn:
        w, s, e, n = conn.execute(
            sa.text(
                "SELECT ST_XMin(x), ST_YMin(x), ST_XMax(x), ST_YMax(x) FROM "
                "(SELECT ST_Extent(geom) AS x FROM structures WHERE status = 'active') q"
            )
        ).one()
    doc = client.get("/collections/structures/tiles/WebMercatorQuad/tilejson.json").json()
    assert doc["bounds"] == [round(v, 6) for v in (w, s, e, n)]
    assert doc["bounds"][0] <= doc["center"][0] <= doc["bounds"][2]
    # The commune layer is national (overseas included): its bounds say so.
    communes = client.get("/collections/communes/tiles/WebMercatorQuad/tilejson.json").json()
    assert communes["bounds"][0] < -60 and communes["bounds"][2] > 50
    meta = client.get("/collections/structures/tiles/WebMercatorQuad").json()
    assert meta["boundingBox"]["lowerLeft"] == doc["bounds"][:2]


def test_csp_follows_the_basemap_and_archive_origins(settings, demo_data) -> None:
    from fastapi.testclient import TestClient

    from api.factory import create_app

    custom = settings.model_copy(
        update={
            "basemap_style_url": "https://data.geopf.fr/annexes/styles/PLAN.IGN/standard.json",
            "basemap_origins": ["https://tiles.example.org"],
            "basemap_attribution": "© IGN – Plan IGN",
            "map_pmtiles_url": "https://cdn.example.org/carte/carte.pmtiles",
        }
    )
    with TestClient(create_app(custom)) as c:
        r = c.get("/carte")
        csp = r.headers["content-security-policy"]
        origins = "https://data.geopf.fr https://tiles.example.org https://cdn.example.org"
        assert (
            f"connect-src 'self' {origins};" in csp
            and f"img-src 'self' data: blob: {origins};" in csp
        )
        integrer = c.get("/carte/integrer").text
        assert (
            "<code>https://cdn.example.org</code>" in integrer
            and "Fond de carte en ligne" in integrer
        )
        assert "© IGN – Plan IGN" in integrer
    with TestClient(create_app(settings)) as c:
        r = c.get("/carte")
        assert "connect-src 'self';" in r.headers["content-security-policy"]
        integrer = c.get("/carte/integrer").text
        assert "Fond de carte hors ligne" in integrer and "CARTECO_BASEMAP_STYLE_URL" in integrer


def test_export_is_bounded(demo_data, settings, tmp_path) -> None:
    from tiles.export import DEFAULT_LAYERS, export_pmtiles

    # Default: the structures' extent (Île-de-France), not the national reference layers'.
    out = tmp_path / "idf.pmtiles"
    report = export_pmtiles(demo_data, out, 5, 9)
    w, s, e, n = report.bounds
    assert 1.3 < w < e < 3.7 and 48.0 < s < n < 49.3 and report.seconds > 0
    with out.open("rb") as f:
        reader = Reader(MmapSource(f))
        assert [v["id"] for v in reader.metadata()["vector_layers"]] == list(DEFAULT_LAYERS)
        t = TMS.tile(*MONTREUIL, 9)
        layers = mapbox_vector_tile.decode(gzip.decompress(reader.get(9, t.x, t.y)))
        assert {"structures", "communes", "noms"} <= set(layers)
    # --territoire (CLI): the territory's box, with a progress bar and the time taken.
    env = {
        "CARTECO_DATABASE_URL": settings.database_url,
        "CARTECO_DATA_DIR": str(settings.data_dir),
        "PATH": "/usr/bin:/bin",
    }
    out93 = tmp_path / "93.pmtiles"
    r = subprocess.run(
        [sys.executable, "-m", "carteco.cli", "tiles", "export", str(out93)]
        + ["--minzoom", "8", "--maxzoom", "10", "--territoire", "departement:93"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert " s." in r.stdout and "emprise 2.28" in r.stdout, r.stdout
    with out93.open("rb") as f:
        h = Reader(MmapSource(f)).header()
        assert 2.2e7 < h["min_lon_e7"] < 2.3e7 and h["max_lon_e7"] < 2.61e7
    # --bbox: exactly that box; a reversed one is refused with a reason.
    r = subprocess.run(
        [sys.executable, "-m", "carteco.cli", "tiles", "export", str(tmp_path / "b.pmtiles")]
        + ["--maxzoom", "6", "--bbox", "2.2,48.8,2.5,48.9"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    with (tmp_path / "b.pmtiles").open("rb") as f:
        assert Reader(MmapSource(f)).header()["min_lon_e7"] == 22000000
    r = subprocess.run(
        [sys.executable, "-m", "carteco.cli", "tiles", "export", str(tmp_path / "x.pmtiles")]
        + ["--bbox", "3,48,2,49"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert r.returncode == 1 and "ouest < est" in r.stdout + r.stderr
