"""Observability and guard rails: request ids, JSON logs, metrics, readiness, headers, limits."""

from __future__ import annotations

import json
import logging

from fastapi.testclient import TestClient

from api.factory import create_app
from tests.conftest import assert_problem


def test_request_id_and_security_headers(client) -> None:
    r = client.get("/carte", headers={"X-Request-ID": "abc-123"})
    assert r.status_code == 200
    assert r.headers["x-request-id"] == "abc-123"
    csp = r.headers["content-security-policy"]
    assert "frame-ancestors *" in csp and "worker-src 'self' blob:" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    # A forged id with odd characters is replaced.
    r = client.get("/healthz", headers={"X-Request-ID": "bad id\r\nx"})
    assert r.headers["x-request-id"] != "bad id\r\nx" and len(r.headers["x-request-id"]) == 32


def test_readyz_and_metrics(client) -> None:
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["status"] == "ready"
    client.get("/healthz")
    client.get("/nulle-part")
    text = client.get("/metrics").text
    assert 'carteco_http_requests_total{method="GET",route="/healthz",status="200"}' in text
    assert 'route="unmatched",status="404"' in text
    assert "carteco_http_request_duration_seconds_bucket" in text
    assert 'carteco_db_pool_connections_in_use{pool="primary"}' in text


def test_json_access_log(client, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="carteco.access"):
        client.get("/healthz?q=secret", headers={"X-Request-ID": "log-1"})
    rec = next(r for r in caplog.records if getattr(r, "request_id", None) == "log-1")
    from api.observability import JsonFormatter

    line = json.loads(JsonFormatter().format(rec))
    assert line["route"] == "/healthz" and line["status"] == 200
    assert "secret" not in json.dumps(line)  # query strings are never logged


def test_rate_limit_per_ip(settings) -> None:
    app = create_app(settings.model_copy(update={"rate_limit_reads_per_minute": 12}))
    with TestClient(app) as c:
        codes = [c.get("/collections/regions/items").status_code for _ in range(5)]
        assert codes[:2] == [200, 200] and codes[-1] == 429
        body = assert_problem(c.get("/collections/regions/items"), 429)
        assert body["title"] == "Trop de requêtes"
        r = c.get("/collections/regions/items")
        assert int(r.headers["retry-after"]) >= 1
        assert c.get("/healthz").status_code == 200  # health checks are never limited


def test_frame_ancestors_setting(settings) -> None:
    app = create_app(settings.model_copy(update={"frame_ancestors": ["https://cress-idf.org"]}))
    with TestClient(app) as c:
        csp = c.get("/carte").headers["content-security-policy"]
    assert "frame-ancestors https://cress-idf.org" in csp


def test_statement_timeout_is_a_503(settings) -> None:
    app = create_app(settings.model_copy(update={"statement_timeout_ms": 1}))
    with TestClient(app) as c:
        r = c.get("/collections/communes/items?limit=2000")
    body = assert_problem(r, 503)
    assert r.headers["retry-after"]
    assert "base de données" in body["detail"]


def test_api_docs_are_served_offline(client) -> None:
    r = client.get("/docs")
    assert r.status_code == 200
    assert "cdn." not in r.text and "unpkg" not in r.text
    assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in r.text
    assert client.get("/static/vendor/swagger-ui/swagger-ui-bundle.js").status_code == 200
    assert client.get("/redoc").status_code == 404


def test_session_settings(engine) -> None:  # type: ignore[no-untyped-def]
    # Every pooled connection carries the statement timeout, UTC and JIT off (JIT compiling
    # cost ~47 ms on a ~50 ms tile query: see carteco/db.py).
    with engine.connect() as conn:
        got = {
            name: conn.exec_driver_sql(f"SHOW {name}").scalar_one()
            for name in ("jit", "TimeZone", "statement_timeout", "application_name")
        }
    assert got == {
        "jit": "off",
        "TimeZone": "UTC",
        "statement_timeout": "30s",
        "application_name": "carteco",
    }


def test_pages_run_no_inline_script(client, demo_data) -> None:  # type: ignore[no-untyped-def]
    """Public pages allow only Carteco's own script files: an injected <script> cannot run."""
    import re

    pages = [
        "/carte",
        "/embed?territoire=departement:93",
        "/carte/integrer",
        "/territoires/commune/93048",
        "/?f=html",
        "/collections?f=html",
        "/collections/structures/items?f=html&limit=5",
    ]
    for page in pages:
        r = client.get(page)
        assert r.status_code == 200, page
        csp = r.headers["content-security-policy"]
        script_src = next(d for d in csp.split(";") if d.strip().startswith("script-src"))
        assert script_src.split() == ["script-src", "'self'"], (page, script_src)
        for tag in re.findall(r"<script\b[^>]*>", r.text):
            assert "src=" in tag or 'type="application/json"' in tag, (page, tag)
        assert not re.search(r"<[^>]+\son[a-z]+\s*=", r.text), page  # no inline handlers
    # Swagger UI's bootstrap is inline by construction: only /docs gets 'unsafe-inline'.
    docs_csp = client.get("/docs").headers["content-security-policy"]
    assert "script-src 'self' 'unsafe-inline'" in docs_csp
