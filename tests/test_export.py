"""Downloads: streamed GeoJSON/CSV (constant memory), GPKG/FlatGeobuf, caching headers, CLI."""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from carteco import db
from tests.conftest import ROOT, assert_problem, create_database, drop_database, free_port
from tests.features_support import load_demo

N_BIG = 100_000


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


def test_geojson_download_headers_and_cache(api, demo) -> None:  # type: ignore[no-untyped-def]
    r = api.get("/collections/structures/items?f=geojson")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/geo+json"
    assert 'filename="carteco-structures.geojson"' in r.headers["content-disposition"]
    assert 'rel="license"' in r.headers["link"] and "odbl" in r.headers["link"].lower()
    assert r.headers["etag"] and r.headers["last-modified"].endswith("GMT")
    body = r.json()
    assert body["licence"] == "ODbL-1.0" and "Carteco" in body["attribution"]
    assert len(body["features"]) == demo
    again = api.get(
        "/collections/structures/items?f=geojson", headers={"If-None-Match": r.headers["etag"]}
    )
    assert again.status_code == 304
    other = api.get("/collections/structures/items?f=geojson&departement=93")
    assert other.headers["etag"] != r.headers["etag"]
    assert {f["properties"]["departement_code"] for f in other.json()["features"]} == {"93"}
    gz = api.get("/collections/structures/items?f=geojson", headers={"Accept-Encoding": "gzip"})
    assert gz.headers.get("content-encoding") == "gzip" and len(gz.json()["features"]) == demo
    assert_problem(api.get("/collections/structures/items?f=geojson&crs=EPSG:2154"), 400)


def test_csv_download_is_safe_for_spreadsheets(api, engine, demo) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO structures (name, description, source, source_id, content_hash) "
                "VALUES ('=HYPERLINK(\"http://evil\")', '+cmd|calc', 'test-csv', '1', 'x'), "
                "('@SUM(1)', '-2+3', 'test-csv', '2', 'y'), ('Normal, \"quoted\"', NULL, "
                "'test-csv', '3', 'z')"
            )
        )
    try:
        r = api.get("/collections/structures/items?f=csv")
        assert r.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(r.text)))
        assert len(rows) == demo + 3
        by_name = {row["name"]: row for row in rows if row["source"] == "test-csv"}
        assert set(by_name) == {'\'=HYPERLINK("http://evil")', "'@SUM(1)", 'Normal, "quoted"'}
        assert by_name["'@SUM(1)"]["description"] == "'-2+3"
        assert by_name['\'=HYPERLINK("http://evil")']["description"] == "'+cmd|calc"
        located = [row for row in rows if row["longitude"]]
        assert located and all(1 < float(row["longitude"]) < 4 for row in located)
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM structures WHERE source = 'test-csv'"))


def test_gpkg_and_flatgeobuf_downloads(api, demo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import pyogrio

    for fmt in ("gpkg", "fgb"):
        r = api.get(f"/collections/structures/items?f={fmt}&family=cooperative")
        assert r.status_code == 200, r.text
        assert f"carteco-structures.{fmt}" in r.headers["content-disposition"]
        path = tmp_path / f"x.{fmt}"
        path.write_bytes(r.content)
        df = pyogrio.read_dataframe(path)
        assert len(df) > 0 and set(df["ess_family"]) == {"cooperative"}
        # The structure's id survives as a column (GDAL would make it a renumbered FID).
        ids = api.get("/collections/structures/items?f=geojson&family=cooperative").json()
        assert sorted(df["id"]) == sorted(f["id"] for f in ids["features"])
    r = api.get("/collections/communes/items?f=gpkg&limit=5")
    path = tmp_path / "c.gpkg"
    path.write_bytes(r.content)
    communes = pyogrio.read_dataframe(path)
    assert len(communes) == 5 and "id" not in communes.columns
    assert all(len(c) == 5 for c in communes["code"])


def test_lambert93_downloads(api, demo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """GPKG, FlatGeobuf and CSV in EPSG:2154, reprojected by PostGIS; GeoJSON stays CRS84."""
    import pyogrio
    from pyproj import Transformer

    base = "/collections/structures/items?limit=5000"
    ref = api.get(base + "&f=geojson").json()["features"]
    to_l93 = Transformer.from_crs(4326, 2154, always_xy=True)
    expected = {
        f["id"]: to_l93.transform(*f["geometry"]["coordinates"]) for f in ref if f["geometry"]
    }
    assert len(expected) > 100
    l93 = "http://www.opengis.net/def/crs/EPSG/0/2154"
    for fmt in ("gpkg", "fgb"):
        r = api.get(f"{base}&f={fmt}&crs=EPSG:2154")
        assert r.status_code == 200, r.text
        assert r.headers["content-crs"] == f"<{l93}>"
        path = tmp_path / f"l93.{fmt}"
        path.write_bytes(r.content)
        df = pyogrio.read_dataframe(path)
        assert df.crs.to_epsg() == 2154
        got = {int(i): (g.x, g.y) for i, g in zip(df["id"], df.geometry, strict=True) if g}
        assert got.keys() == expected.keys()
        for k, (x, y) in got.items():
            ex, ey = expected[k]
            assert abs(x - ex) < 0.01 and abs(y - ey) < 0.01, (k, x, y, ex, ey)
    r = api.get(f"{base}&f=csv&crs=EPSG:2154")
    assert r.status_code == 200 and r.headers["content-crs"] == f"<{l93}>"
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert "x" in rows[0] and "longitude" not in rows[0]
    for row in rows:
        if row["x"]:
            ex, ey = expected[int(row["id"])]
            assert abs(float(row["x"]) - ex) < 0.01 and abs(float(row["y"]) - ey) < 0.01
    # Default: CRS84, as before.
    r = api.get(f"{base}&f=csv")
    assert r.headers["content-crs"] == "<http://www.opengis.net/def/crs/OGC/1.3/CRS84>"
    assert "longitude" in r.text.splitlines()[0]
    body = assert_problem(api.get(f"{base}&f=geojson&crs=EPSG:2154"), 400)
    assert "RFC 7946" in body["detail"]
    assert_problem(api.get(f"{base}&f=gpkg&crs=EPSG:3857"), 400)


def test_downloads_keep_only_the_asked_properties(api, demo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import pyogrio

    base = "/collections/structures/items?departement=93&properties=name,commune_code"
    feats = api.get(base + "&f=geojson").json()["features"]
    assert feats and all(set(f["properties"]) == {"name", "commune_code"} for f in feats)
    rows = list(csv.DictReader(io.StringIO(api.get(base + "&f=csv").text)))
    assert list(rows[0]) == ["id", "name", "commune_code", "longitude", "latitude"]
    assert len(rows) == len(feats)
    r = api.get(base + "&f=gpkg&crs=EPSG:2154")
    assert r.status_code == 200, r.text
    path = tmp_path / "p.gpkg"
    path.write_bytes(r.content)
    df = pyogrio.read_dataframe(path)
    assert list(df.columns) == ["id", "name", "commune_code", "geometry"]
    assert df.crs.to_epsg() == 2154 and len(df) == len(feats)
    assert_problem(api.get(base.replace("commune_code", "mot_de_passe") + "&f=csv"), 400)


def test_cli_export_same_filters(demo, settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env = {**os.environ, "CARTECO_DATABASE_URL": settings.database_url}
    out = tmp_path / "coop.geojson"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "carteco.cli",
            "export",
            "--family",
            "association",
            "--departement",
            "75,93",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    feats = json.loads(out.read_text())["features"]
    assert feats and all(f["properties"]["ess_family"] == "association" for f in feats)
    assert {f["properties"]["departement_code"] for f in feats} <= {"75", "93"}
    bad = subprocess.run(
        [sys.executable, "-m", "carteco.cli", "export", "--filter", "nope = 1", str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    assert bad.returncode == 2 and "filter" in bad.stderr

    def export(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "carteco.cli", "export", *args]
        return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)

    import pyogrio

    l93 = tmp_path / "l93.gpkg"
    res = export("--crs", "EPSG:2154", "--departement", "75", "--properties", "name", str(l93))
    assert res.returncode == 0, res.stderr
    df = pyogrio.read_dataframe(l93)
    assert df.crs.to_epsg() == 2154 and len(df) > 0
    assert list(df.columns) == ["id", "name", "geometry"]
    # Paris in Lambert-93: x about 640–665 km, y about 6,855–6,870 km.
    xs, ys = df.geometry.dropna().x, df.geometry.dropna().y
    assert xs.between(640_000, 665_000).all() and ys.between(6_855_000, 6_870_000).all()
    res = export("--crs", "EPSG:2154", str(tmp_path / "l93.geojson"))
    assert res.returncode == 2 and "RFC 7946" in res.stdout + res.stderr


# -- 100,000 structures, streamed by a real server process ------------------------------------


@pytest.fixture(scope="module")
def big_server() -> Iterator[tuple[str, int]]:
    """A separate database with 100,000 synthetic structures, served by a uvicorn process."""
    url = create_database("carteco_export_big")
    try:
        db.upgrade(url, "0003_features")
        eng = sa.create_engine(url)
        with eng.begin() as conn:
            # Synthetic rows (clearly marked): no territory layers here, so no tagging needed.
            conn.execute(sa.text("ALTER TABLE structures DISABLE TRIGGER USER"))
            conn.execute(
                sa.text(
                    """
                    INSERT INTO structures (name, description, sectors, ess_family, geom,
                        commune_code, departement_code, source, source_id, content_hash)
                    SELECT 'Synthétique ' || g,
                           -- High-entropy text: even gzipped, the export (~30 MB) is far
                           -- larger than the kernel's socket buffers, so a client that
                           -- stops reading really does stop the server mid-stream.
                           (SELECT string_agg(md5(g::text || '-' || i), '')
                              FROM generate_series(1, 15) i),
                           ARRAY['numerique.mediation'], 'association',
                           ST_SetSRID(ST_MakePoint(2.2 + (g % 1000) / 4000.0,
                                                   48.7 + (g / 1000) / 400.0), 4326),
                           '75056', '75', 'synthetic', g::text, md5(g::text)
                      FROM generate_series(1, :n) g
                    """
                ),
                {"n": N_BIG},
            )
            conn.execute(sa.text("ALTER TABLE structures ENABLE TRIGGER USER"))
            conn.execute(sa.text("ANALYZE structures"))
        eng.dispose()
        port = free_port()
        env = {
            **os.environ,
            "CARTECO_DATABASE_URL": url,
            "CARTECO_LOG_LEVEL": "warning",
        }
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "api.factory:app_from_env",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            env=env,
            cwd=ROOT,
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90  # a loaded 2-core machine can take long to import the app
        while True:
            try:
                if httpx.get(base + "/conformance", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("the export server did not start")
            time.sleep(0.2)
        yield base, proc.pid
        proc.terminate()
        proc.wait(timeout=10)
    finally:
        drop_database(url)


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_100k_streamed_export_keeps_memory_flat(big_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base, pid = big_server
    url = base + "/collections/structures/items?f=geojson"
    # Warm up (imports, pool, first query) before the baseline.
    httpx.get(base + "/collections/structures/items?limit=1000", timeout=60)
    baseline = _rss_kb(pid)
    peak = baseline
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _rss_kb(pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    out = tmp_path / "big.geojson"
    try:
        headers = {"Accept-Encoding": "identity"}
        with httpx.stream("GET", url, timeout=300, headers=headers) as r, out.open("wb") as f:
            assert r.status_code == 200
            for chunk in r.iter_raw():
                f.write(chunk)
    finally:
        done.set()
        sampler.join()
    size = out.stat().st_size
    growth_mb = (peak - baseline) / 1024
    print(f"export {size / 1e6:.0f} MB, server RSS {baseline / 1024:.0f} → {peak / 1024:.0f} MB")
    assert size > 100e6  # the document is far larger than the memory bound below
    assert growth_mb < 60, f"server RSS grew by {growth_mb:.0f} MB while streaming"
    doc = json.loads(out.read_bytes())
    # RFC 7946: a FeatureCollection, no `crs` member, lon/lat positions, Feature objects.
    assert doc["type"] == "FeatureCollection" and "crs" not in doc
    assert len(doc["features"]) == N_BIG
    ids = set()
    for feat in doc["features"]:
        assert feat["type"] == "Feature" and isinstance(feat["properties"], dict)
        lon, lat = feat["geometry"]["coordinates"]
        assert feat["geometry"]["type"] == "Point" and 2.2 <= lon <= 2.5 and 48.7 <= lat <= 49
        ids.add(feat["id"])
    assert len(ids) == N_BIG


@pytest.mark.parametrize("encoding", ["identity", "gzip"])
def test_client_disconnect_mid_export_releases_the_cursor(big_server, encoding: str) -> None:  # type: ignore[no-untyped-def]
    base, _pid = big_server
    admin = sa.create_engine(
        os.environ.get(
            "CARTECO_TEST_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
        )
    )

    def busy() -> int:
        with admin.connect() as conn:
            return int(
                conn.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname LIKE 'carteco_export_big%' "
                        "AND application_name = 'carteco' AND state <> 'idle'"
                    )
                ).scalar_one()
            )

    # A small receive buffer (no autotuning): what the server can push ahead of the reader is
    # bounded by its own send buffer (a few MB), well below the size of the export.
    transport = httpx.HTTPTransport(socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)])
    headers = {"Accept-Encoding": encoding}
    with httpx.Client(timeout=30, transport=transport, headers=headers) as client:
        with client.stream("GET", base + "/collections/structures/items?f=geojson") as r:
            assert r.headers.get("content-encoding", "identity") == encoding
            assert r.status_code == 200
            got, open_mid_stream = 0, 0
            for chunk in r.iter_bytes():
                got += len(chunk)
                if got > 200_000:
                    # Checked inside the loop: leaving it closes the byte iterator, and httpx
                    # then closes the connection at once — the client is gone from there on.
                    open_mid_stream = busy()
                    break
            assert open_mid_stream >= 1  # the server-side cursor was open while streaming
        # The connection was closed halfway through 100,000 features.
    deadline = time.monotonic() + 10
    while busy() and time.monotonic() < deadline:
        time.sleep(0.2)
    with admin.connect() as conn:
        left = conn.execute(
            sa.text(
                "SELECT state, left(query, 80), now() - xact_start FROM pg_stat_activity "
                "WHERE datname LIKE 'carteco_export_big%' AND application_name = 'carteco' "
                "AND state <> 'idle'"
            )
        ).all()
    assert busy() == 0, f"the export's database cursor outlived its client: {left}"
    admin.dispose()
