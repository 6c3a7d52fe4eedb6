"""Hostile request parameters (issue #10, items 2, 6, 12, 13): a clear 400, never a 500 or a
dead worker.

CQL2 filters nested deep enough overflowed the native parser's stack (a segfault: the whole
worker process died), so those cases run against a real uvicorn process, which must still
answer afterwards.
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from urllib.parse import unquote

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from api.factory import create_app
from api.streaming import content_disposition
from carteco.auth import create_token
from carteco.collections import get_collection
from carteco.filters import FilterError, FilterLimits, compile_filter, filter_depth
from carteco.text import ascii_int, neutralise_formula, neutralise_formula_sql
from tests.conftest import ROOT, assert_problem, free_port

ITEMS = "/collections/structures/items"
TILE = "/collections/structures/tiles/WebMercatorQuad/10/352/518"
TILEJSON = "/collections/structures/tiles/WebMercatorQuad/tilejson.json"

# Each of these once killed the worker (segfault in the native parser) or answered 500.
DEEP_FILTERS = [
    ("cql2-text", "(" * 1800 + "name = 'x'" + ")" * 1800),
    ("cql2-text", "NOT " * 1000 + "name = 'x'"),
    ("cql2-text", "NOT " * 10_000 + "name = 'x'"),
    ("cql2-text", "version = " + "-" * 5000 + "1"),
    ("cql2-text", "version = " + "+".join(["1"] * 3000)),
    ("cql2-text", "name = 'a' AND NOT (" * 1000 + "name = 'x'" + ")" * 1000),
    ("cql2-text", "A_CONTAINS(sectors, " + "(" * 3000 + "'a'" + ")" * 3000 + ")"),
    ("cql2-text", "CASEI(" * 1000 + "name" + ")" * 1000 + " = 'x'"),
    (
        "cql2-json",
        '{"op":"not","args":[' * 1000 + '{"op":"=","args":[{"property":"name"},"x"]}' + "]}" * 1000,
    ),
    ("cql2-json", "[" * 10_000 + "]" * 10_000),
]


@pytest.fixture(scope="module")
def server(settings, demo_data, tmp_path_factory) -> Iterator[tuple[str, subprocess.Popen]]:  # type: ignore[no-untyped-def,type-arg]
    """The app in its own uvicorn process (a crash there cannot take pytest down with it)."""
    port = free_port()
    env = {
        **os.environ,
        "CARTECO_DATABASE_URL": settings.database_url,
        "CARTECO_DATA_DIR": str(tmp_path_factory.mktemp("hardening")),
        "CARTECO_RATE_LIMIT_READS_PER_MINUTE": "0",
        "CARTECO_LOG_JSON": "false",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "api.factory:app_from_env",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        env=env,
        cwd=ROOT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120  # a loaded CI machine may start it slowly
    while True:
        try:
            if httpx.get(base + "/conformance", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.fail("the server did not start")
        time.sleep(0.2)
    yield base, proc
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def http(settings, demo_data) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    app = create_app(settings.model_copy(update={"rate_limit_reads_per_minute": 0}))
    with TestClient(app) as client:
        yield client


# -- item 2: CQL2 size and depth are bounded before the native parser ------------------------


@pytest.mark.parametrize(("lang", "text"), DEEP_FILTERS, ids=range(len(DEEP_FILTERS)))
def test_deep_filters_are_refused_and_the_worker_lives(server, lang: str, text: str) -> None:  # type: ignore[no-untyped-def]
    base, proc = server
    params = {"filter": text, "filter-lang": lang}
    for path in (ITEMS, TILE, TILEJSON):
        try:
            r = httpx.get(base + path, params=params, timeout=30)
        except httpx.HTTPError as exc:
            pytest.fail(f"{path}: no answer ({exc!r}); server exit code {proc.poll()}")
        body = assert_problem(r, 400)
        assert "CARTECO_FILTER_MAX_" in str(body), body  # the depth or the size limit
    assert proc.poll() is None, "the server process died"
    ok = httpx.get(base + ITEMS, params={"limit": "1", "filter": "NOT (esus = true)"}, timeout=30)
    assert ok.status_code == 200 and ok.json()["type"] == "FeatureCollection"


def test_depth_problem_names_the_limit(http) -> None:  # type: ignore[no-untyped-def]
    body = assert_problem(http.get(ITEMS, params={"filter": "NOT " * 1000 + "esus = true"}), 400)
    assert body["errors"] == [
        {
            "parameter": "filter",
            "reason": body["errors"][0]["reason"],
            "limit": "CARTECO_FILTER_MAX_DEPTH",
        }
    ]
    body = assert_problem(http.get(ITEMS, params={"filter": "name = '" + "x" * 20_001 + "'"}), 400)
    assert body["errors"][0]["limit"] == "CARTECO_FILTER_MAX_CHARS"


def test_filter_limits_are_settings(settings, demo_data) -> None:  # type: ignore[no-untyped-def]
    tight = settings.model_copy(
        update={"filter_max_depth": 5, "filter_max_chars": 40, "rate_limit_reads_per_minute": 0}
    )
    with TestClient(create_app(tight)) as c:
        assert c.get(ITEMS, params={"filter": "NOT (NOT (esus = true))"}).status_code == 200
        deep = "NOT (NOT (NOT (NOT (esus = true))))"
        for path in (ITEMS, TILE, "/territories/departement/93/structures"):
            assert (
                "CARTECO_FILTER_MAX_DEPTH"
                in assert_problem(c.get(path, params={"filter": deep}), 400)["detail"]
            )
        long = "name = '" + "x" * 40 + "'"
        assert (
            "CARTECO_FILTER_MAX_CHARS"
            in assert_problem(c.get(TILE, params={"filter": long}), 400)["detail"]
        )


def test_depth_prescan_is_an_upper_bound_and_ignores_strings() -> None:
    assert filter_depth("name = '((((((((' AND esus = true", "cql2-text") <= 2
    assert filter_depth('{"op":"=","args":[{"property":"name"},"[[[[{{{{"]}', "cql2-json") <= 2
    assert filter_depth("NOT " * 50 + "esus = true", "cql2-text") >= 50
    assert filter_depth("esus = true AND " * 500 + "esus = true", "cql2-text") <= 2
    # A realistic filter is far below the default limit.
    real = (
        "S_INTERSECTS(geom, POLYGON((2.2 48.8, 2.5 48.8, 2.5 49.0, 2.2 48.8))) AND "
        "(CASEI(name) LIKE '%café%' OR NOT (esus = true)) AND sectors IS NOT NULL"
    )
    assert filter_depth(real, "cql2-text") < FilterLimits().max_depth // 4


BAD_NUMBERS = [
    "version = 1e999",
    "version = " + "9" * 400,
    "version = -1e999",
    "S_DWITHIN(geom, POINT(2.35 48.85), 1e999)",
    "S_INTERSECTS(geom, BBOX(1e999, 48, 3, 49))",
    "version BETWEEN 1 AND 1e999",
    "version IN (1, 1e999)",
    '{"op":"=","args":[{"property":"version"},1e999]}',
    '{"op":"=","args":[{"property":"version"},' + "9" * 400 + "]}",
    '{"op":"s_dwithin","args":[{"property":"geom"},{"type":"Point","coordinates":[2,48]},-1]}',
    '{"op":"s_intersects","args":[{"property":"geom"},{"bbox":["a",1,2,3]}]}',
]


@pytest.mark.parametrize("text", BAD_NUMBERS)
def test_bad_numbers_in_filters_are_400(http, text: str) -> None:  # type: ignore[no-untyped-def]
    lang = "cql2-json" if text.startswith("{") else "cql2-text"
    for path in (ITEMS, TILE):
        assert_problem(http.get(path, params={"filter": text, "filter-lang": lang}), 400)


def test_compile_never_raises_anything_but_filter_error() -> None:
    structures = get_collection("structures")
    assert structures is not None
    for text in [*(t for _, t in DEEP_FILTERS), *BAD_NUMBERS]:
        lang = "cql2-json" if text.startswith(("{", "[")) else "cql2-text"
        with pytest.raises(FilterError):
            compile_filter(structures, {"filter": text, "filter-lang": lang})


# -- item 6: Unicode digits, and file names in Content-Disposition ---------------------------

UNICODE_DIGITS = ["²", "①", "١", "５", "1²", "٣٣", " 1", "+1", "1_0", "0x1"]


@pytest.mark.parametrize("value", UNICODE_DIGITS)
def test_unicode_digits_in_integers_are_400(http, value: str) -> None:  # type: ignore[no-untyped-def]
    for params in ({"limit": value}, {"offset": value}, {"after": value}):
        assert_problem(http.get(ITEMS, params=params), 400)
    assert_problem(http.get(ITEMS + "?f=csv", params={"limit": value}), 400)
    near = {"lon": "2.35", "lat": "48.85", "nearest": value}
    assert_problem(http.get("/structures/nearby", params=near), 400)
    assert_problem(http.get(ITEMS, params={"version": value}), 400)
    assert_problem(http.get(f"{ITEMS}/{value}"), 404)
    assert_problem(http.get("/structures/nearby", params={"lon": value, "lat": "48.85"}), 400)


def test_unicode_digits_in_if_match(http, demo_data) -> None:  # type: ignore[no-untyped-def]
    with demo_data.begin() as conn:
        _, token = create_token(conn, "digits", ["edit"])
    for etag in ('"²"', "²", 'W/"①"', '"١"', '"' + "9" * 5000 + '"'):
        r = http.patch(
            "/structures/1",
            json={"name": "x"},
            headers={"Authorization": f"Bearer {token}", "If-Match": etag.encode()},
        )
        assert_problem(r, 412)
    r = http.patch(
        "/structures/1",
        json={"postcode": "٩٣٠٠١"},
        headers={"Authorization": f"Bearer {token}", "If-Match": '"999999"'},
    )
    assert 400 <= r.status_code < 500


def test_ascii_int_refuses_what_isdigit_accepts() -> None:
    for value in UNICODE_DIGITS + ["", "-1", "9" * 5000]:
        assert ascii_int(value) is None, value
    assert ascii_int("0042") == 42 and ascii_int("5", 1, 4) is None


FILE_NAMES = [
    "l’inventaire.csv",
    "cœur d'œuvre.csv",
    'a "quoted" name.csv',
    "back\\slash;semi%percent.csv",
    "ligne\r\nSet-Cookie: x=1.csv",
    "..",
    ".",
    "日本語.csv",
]


@pytest.mark.parametrize("name", FILE_NAMES)
def test_ban_csv_echoes_any_file_name_safely(http, name: str) -> None:  # type: ignore[no-untyped-def]
    payload = b"adresse\n1 rue de Rivoli Paris\n"
    r = http.post("/ban/search/csv/", files={"data": (name, payload, "text/csv")})
    assert r.status_code == 200, r.text[:300]
    header = r.headers["content-disposition"]
    header.encode("ascii")
    assert header.startswith('attachment; filename="')
    fallback = header.split('filename="', 1)[1].split('"', 1)[0]
    assert not set(fallback) & set('"\\\r\n;')
    encoded = header.split("filename*=UTF-8''", 1)[1]
    decoded = unquote(encoded)
    assert decoded.endswith(".geocoded.csv") and not set(decoded) & set("\r\n/\\")


def test_content_disposition_keeps_the_name() -> None:
    h = content_disposition("carteco-structures.csv")
    assert h == (
        "attachment; filename=\"carteco-structures.csv\"; filename*=UTF-8''carteco-structures.csv"
    )
    h = content_disposition("l’œuvre.csv")
    assert unquote(h.split("''", 1)[1]) == "l’œuvre.csv"
    assert content_disposition("../../etc/passwd").startswith('attachment; filename="passwd"')


def test_downloads_use_the_safe_header(http) -> None:  # type: ignore[no-untyped-def]
    for fmt in ("csv", "geojson", "gpkg"):
        r = http.get(ITEMS, params={"f": fmt, "limit": "2"})
        assert r.status_code == 200, r.text[:200]
        assert f"filename*=UTF-8''carteco-structures.{fmt}" in r.headers["content-disposition"]


# -- item 12: CSV formulas, one rule for every CSV writer -------------------------------------

FORMULAS = [
    '  =HYPERLINK("http://evil")',
    "\t=1+1",
    "\r=1+1",
    "\n@SUM(1)",
    "\u00a0+cmd|calc",
    "\u3000-2+3",
    "\ufeff=1",
    '＝HYPERLINK("http://evil")',
    "\tplain",
    "=1",
]
HARMLESS = ["-2.35", "+33612345678", "Café", "a=b", "", "x\t="]


def test_formula_rule_is_the_same_in_python_and_sql(engine) -> None:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        for cell in FORMULAS + HARMLESS:
            sql = conn.execute(sa.text("SELECT " + neutralise_formula_sql(":v")), {"v": cell})
            assert sql.scalar() == neutralise_formula(cell), repr(cell)
    assert all(neutralise_formula(c) == "'" + c for c in FORMULAS)
    assert all(neutralise_formula(c) == c for c in HARMLESS)


def test_csv_export_neutralises_formulas_after_whitespace(http, engine) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        for i, cell in enumerate(FORMULAS):
            conn.execute(
                sa.text(
                    "INSERT INTO structures (name, description, source, source_id, content_hash) "
                    "VALUES (:n, :d, 'test-formula', :i, 'x')"
                ),
                {"n": f"s{i}", "d": cell, "i": str(i)},
            )
    try:
        r = http.get(ITEMS, params={"f": "csv", "source": "test-formula"})
        assert r.status_code == 200, r.text[:200]
        rows = list(csv.DictReader(io.StringIO(r.text, newline="")))
        got = {row["name"]: row["description"] for row in rows}
        assert got == {f"s{i}": "'" + cell for i, cell in enumerate(FORMULAS)}
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM structures WHERE source = 'test-formula'"))


def test_geocoded_csv_neutralises_formulas(http) -> None:  # type: ignore[no-untyped-def]
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(["adresse", "note"])
    writer.writerows(["1 rue de Rivoli Paris", c] for c in FORMULAS)
    payload = buf.getvalue().encode()
    r = http.post(
        "/ban/search/csv/",
        files={"data": ("in.csv", payload, "text/csv")},
        data={"columns": "adresse"},
    )
    assert r.status_code == 200, r.text[:300]
    rows = list(csv.DictReader(io.StringIO(r.content.decode(), newline="")))
    assert [row["note"] for row in rows] == ["'" + c for c in FORMULAS]


# -- item 13: OGC API Features details --------------------------------------------------------


def test_bbox_across_the_antimeridian(http) -> None:  # type: ignore[no-untyped-def]
    r = http.get(ITEMS, params={"bbox": "177,65,-177,70"})
    assert r.status_code == 200, r.text
    assert r.json()["numberReturned"] == 0
    # West edge 170°E, east edge 10°E: the box goes round through 180° and holds France.
    crossing = http.get(ITEMS, params={"bbox": "170,40,10,55", "limit": "1000"}).json()
    paris = http.get(ITEMS, params={"bbox": "-10,40,10,55", "limit": "1000"}).json()
    assert crossing["numberReturned"] == paris["numberReturned"] > 0
    flipped = http.get(
        ITEMS, params={"bbox": "40,170,55,10", "bbox-crs": "EPSG:4326", "limit": "1000"}
    ).json()
    assert flipped["numberReturned"] == paris["numberReturned"]
    cql = http.get(ITEMS, params={"filter": "S_INTERSECTS(geom, BBOX(170,40,10,55))"}).json()
    assert cql["numberMatched"] == paris["numberMatched"]
    away = http.get(ITEMS, params={"bbox": "170,40,-170,55"}).json()
    assert away["numberReturned"] == 0
    # Only lon/lat boxes wrap; south above north is still an error, and so is a projected box.
    assert_problem(http.get(ITEMS, params={"bbox": "177,70,-177,65"}), 400)
    assert_problem(http.get(ITEMS, params={"bbox": "700000,6800000,600000,6900000",
                                           "bbox-crs": "EPSG:2154"}), 400)  # fmt: skip
    assert_problem(http.get(ITEMS, params={"bbox": "190,40,10,55"}), 400)
    for box in ("nan,1,2,3", "1,2,inf,4", "1e999,1,2,3", "١,1,2,3"):
        assert_problem(http.get(ITEMS, params={"bbox": box}), 400)


def test_queryables_are_declared_query_parameters(http) -> None:  # type: ignore[no-untyped-def]
    doc = http.get("/openapi.json").json()
    params = doc["paths"]["/collections/{collectionId}/items"]["get"]["parameters"]
    names = {p["name"] for p in params}
    queryables = http.get("/collections/structures/queryables").json()["properties"]
    scalar = ("string", "integer", "number", "boolean")
    simple = {n for n, p in queryables.items() if p.get("type") in scalar and "format" not in p}
    assert "source" in names and simple <= names, simple - names
    r = http.get(ITEMS, params={"source": "supermarches-cooperatifs-2025"})
    assert r.status_code == 200
    assert r.json()["numberMatched"] == 17
