"""The malformed corpus through HTTP: POST /imports, /ban/search/csv/ and query parameters.

Every input gets a clear answer (a 4xx problem, or a rejected import job naming row, column and
reason), nothing is written, and no request ends in a 5xx.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from api.factory import create_app
from carteco.auth import create_token
from tests.conftest import assert_problem, checksum
from tests.malformed import SQL_INJECTIONS, corpus

CASES = corpus()


@pytest.fixture(scope="module")
def http(settings, demo_data) -> Iterator[tuple[TestClient, str]]:  # type: ignore[no-untyped-def]
    with demo_data.begin() as conn:
        _, token = create_token(conn, "corpus", ["import", "edit"])
    app = create_app(
        settings.model_copy(
            update={"rate_limit_reads_per_minute": 0, "rate_limit_writes_per_minute": 0}
        )
    )
    with TestClient(app) as client:
        yield client, token


def _wait(client: TestClient, url: str, token: str) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + 60
    while True:
        job = client.get(url, headers={"Authorization": f"Bearer {token}"}).json()
        if job["status"] not in ("queued", "running") or time.monotonic() > deadline:
            return job  # type: ignore[no-any-return]
        time.sleep(0.05)


def test_corpus_through_post_imports(http, demo_data) -> None:  # type: ignore[no-untyped-def]
    client, token = http
    before = checksum(demo_data)
    for case in CASES:
        r = client.post(
            "/imports",
            files={"file": (case.name, case.data, "application/octet-stream")},
            data={"source": "mediation-numerique-2022"},
            headers={"Authorization": f"Bearer {token}"},
        )
        if r.status_code != 202:
            assert_problem(r, r.status_code)
            assert 400 <= r.status_code < 500, (case.id, r.text)
            continue
        job = _wait(client, r.headers["location"].replace("http://testserver", ""), token)
        assert job["status"] == "rejected", (case.id, job)
        text = (job.get("message") or "") + " ".join(
            f"{e['row']} {e['column']} {e['reason']}"
            for e in (job.get("report") or {}).get("errors", [])
        )
        assert case.reason in text, (case.id, text)
        if case.row is not None and (job.get("report") or {}).get("errors"):
            assert any(e["row"] == case.row for e in job["report"]["errors"]), case.id
    assert checksum(demo_data) == before


def test_broken_files_through_ban_csv(http) -> None:  # type: ignore[no-untyped-def]
    client, _ = http
    unreadable = [
        c
        for c in CASES
        if c.id
        in {
            "utf16",
            "binary-png",
            "empty-file",
            "blank-file",
            "bom-only",
            "xlsx-corrupt",
            "xlsx-zip-bomb",
        }
    ]
    # A huge cell, a duplicated or empty header outside the geocoded columns pass through.
    assert len(unreadable) == 7
    for case in unreadable:
        r = client.post(
            "/ban/search/csv/",
            files={"data": (case.name, case.data, "text/csv")},
            data={"columns": "adresse"},
        )
        assert 400 <= r.status_code < 500, (case.id, r.status_code, r.text[:200])
        assert_problem(r, r.status_code)


BAD_PARAMS = [
    ("/collections/structures/items", "bbox", "1,2,3"),
    ("/collections/structures/items", "bbox", "2.3,48.8,2.4,48.9'); DROP TABLE structures; --"),
    ("/collections/structures/items", "limit", "-1"),
    ("/collections/structures/items", "limit", "1e9"),
    ("/collections/structures/items", "limit", "10; DELETE FROM structures"),
    ("/collections/structures/items", "sortby", "name; DROP TABLE structures"),
    ("/collections/structures/items", "sortby", "nope"),
    ("/collections/structures/items", "properties", "name,password"),
    ("/collections/structures/items", "crs", "EPSG:666"),
    ("/collections/structures/items", "bbox-crs", "http://evil/crs"),
    ("/collections/structures/items", "datetime", "yesterday"),
    ("/collections/structures/items", "filter", "name = 'x') OR 1=1 --"),
    ("/collections/structures/items", "filter", "1=1; DROP TABLE structures"),
    ("/collections/structures/items", "filter", "pg_sleep(10) = 1"),
    ("/collections/structures/items", "filter", "S_INTERSECTS(geom, POLYGON((0 0, 1 1)))"),
    ("/collections/structures/items", "filter", "name IN (SELECT name FROM api_tokens)"),
    ("/collections/structures/items", "filter-lang", "sql"),
    ("/collections/structures/items", "sector", "x' OR '1'='1"),
    ("/collections/structures/items", "family", "association'--"),
    ("/collections/structures/items", "departement", "93' OR 1=1 --"),
    ("/collections/structures/items", "f", "exe"),
    ("/collections/structures/items", "nope", "1"),
    ("/collections/structures/tiles/WebMercatorQuad/99/0/0", "secteur", "x"),
    ("/collections/structures/tiles/WebMercatorQuad/10/0/0", "filter", "1=1; --"),
    ("/collections/structures/tiles/WebMercatorQuad/10/352/518", "territoire", "commune:'; --"),
    ("/territories/commune/93048/stats", "level", "x"),
    ("/territories/xx/93048", "x", "1"),
    ("/structures/nearby", "lon", "2.3; DROP TABLE structures"),
    ("/structures/nearby", "radius", "1e12"),
    ("/structures/nearby", "nearest", "-5"),
    ("/ban/search/", "limit", "0"),
    ("/ban/search/", "lat", "north"),
    ("/ban/reverse/", "lon", "999"),
    ("/diagnostics/foncier/93'--", "x", "1"),
    ("/collections/communes'--/items", "x", "1"),
]


@pytest.mark.parametrize(("path", "name", "value"), BAD_PARAMS)
def test_bad_query_parameters(http, demo_data, path: str, name: str, value: str) -> None:  # type: ignore[no-untyped-def]
    client, _ = http
    before = checksum(demo_data)
    params = {name: value}
    if path == "/structures/nearby" and name != "lon":
        params.update({"lon": "2.35", "lat": "48.85"})
    r = client.get(path, params=params)
    assert 400 <= r.status_code < 500, (path, name, value, r.status_code, r.text[:300])
    assert_problem(r, r.status_code)
    assert checksum(demo_data) == before


@pytest.mark.parametrize("value", SQL_INJECTIONS)
def test_free_text_search_is_only_text(http, demo_data, value: str) -> None:  # type: ignore[no-untyped-def]
    client, _ = http
    before = checksum(demo_data)
    for path, name in (("/collections/structures/items", "q"), ("/ban/search/", "q")):
        r = client.get(path, params={name: value})
        assert r.status_code in (200, 400), (path, r.status_code, r.text[:200])
    assert checksum(demo_data) == before


def test_tokens_are_never_logged(http, caplog) -> None:  # type: ignore[no-untyped-def]
    client, token = http
    with caplog.at_level(logging.DEBUG):
        client.patch(
            "/structures/1",
            json={"name": "x"},
            headers={"Authorization": f"Bearer {token}", "If-Match": '"1"'},
        )
        client.get("/healthz", headers={"Authorization": f"Bearer {token}"})
    assert token not in caplog.text
    assert all(token not in str(r.__dict__) for r in caplog.records)


def test_writes_are_rate_limited_per_token(settings, demo_data) -> None:  # type: ignore[no-untyped-def]
    with demo_data.begin() as conn:
        _, token = create_token(conn, "pressé", ["edit"])
    app = create_app(settings.model_copy(update={"rate_limit_writes_per_minute": 12}))
    headers = {"Authorization": f"Bearer {token}", "If-Match": '"999"'}
    with TestClient(app) as c:
        codes = [
            c.patch("/structures/1", json={"name": "x"}, headers=headers).status_code
            for _ in range(5)
        ]
    assert codes[0] in (412, 200) and codes[-1] == 429, codes


def test_audit_log_records_who_and_what(http, demo_data) -> None:  # type: ignore[no-untyped-def]
    client, token = http
    r = client.get("/collections/structures/items/2")
    etag = r.headers["etag"]
    r = client.patch(
        "/structures/2",
        json={"website": "https://exemple.org"},
        headers={"Authorization": f"Bearer {token}", "If-Match": etag},
    )
    assert r.status_code == 200, r.text
    with demo_data.connect() as conn:
        row = (
            conn.execute(
                sa.text(
                    "SELECT token_name, action, target, detail, at FROM audit_log "
                    "WHERE target = 'structures/2' ORDER BY id DESC LIMIT 1"
                )
            )
            .mappings()
            .one()
        )
    assert row["token_name"] == "corpus" and row["action"] == "edit"
    assert row["detail"]["changes"] == {"website": "https://exemple.org"}
