"""Shared fixtures: a real, throwaway PostGIS database per test session (never a mock).

A missing PostgreSQL or PostGIS is a test *failure* (pytest.fail), never a skip.
Set CARTECO_TEST_ADMIN_URL to point at another server (default: local trust auth on 5432).
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import settings as hypothesis_settings

from carteco import db
from carteco.settings import Settings

# CI draws the same examples on every run: a newly drawn counter-example must not turn CI red
# on code that did not change. `pytest --hypothesis-profile=explore` searches fresh examples.
hypothesis_settings.register_profile("ci", derandomize=True, database=None, deadline=None)
hypothesis_settings.register_profile("explore", deadline=None)
hypothesis_settings.load_profile("ci")

ADMIN_URL = os.environ.get(
    "CARTECO_TEST_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures"
ARTIFACTS = ROOT / "test-artifacts"


def _admin_engine() -> sa.Engine:
    return sa.create_engine(db.normalise_url(ADMIN_URL), isolation_level="AUTOCOMMIT")


def create_database(prefix: str = "carteco_test") -> str:
    """Create an empty database with PostGIS; return its URL. Fails the test run if impossible."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"{prefix}_{worker}_{uuid.uuid4().hex[:8]}"
    admin = _admin_engine()
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        pytest.fail(f"PostgreSQL unreachable at {ADMIN_URL}: {exc.orig}", pytrace=False)
    finally:
        admin.dispose()
    url = db.normalise_url(ADMIN_URL).rsplit("/", 1)[0] + "/" + name
    eng = sa.create_engine(url)
    try:
        with eng.begin() as conn:
            conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS postgis"))
    except sa.exc.DBAPIError as exc:
        drop_database(url)
        pytest.fail(
            "PostGIS is not installed on the test server "
            f"(apt-get install -y postgresql-15-postgis-3): {exc.orig}",
            pytrace=False,
        )
    finally:
        eng.dispose()
    return url


def drop_database(url: str) -> None:
    """Drop a database created by create_database (terminating its connections)."""
    name = url.rsplit("/", 1)[1]
    admin = _admin_engine()
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A migrated PostGIS database with the taxonomy and the reference layers loaded."""
    url = create_database()
    db.upgrade(url)
    eng = sa.create_engine(url)
    from carteco.sectors import sync_sectors
    from geodata.loader import load_all

    with eng.begin() as conn:
        sync_sectors(conn)
        load_all(conn)
    eng.dispose()
    yield url
    drop_database(url)


@pytest.fixture(scope="session")
def settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings pointing at the test database."""
    return Settings(
        database_url=database_url,
        data_dir=tmp_path_factory.mktemp("carteco-data"),
        statement_timeout_ms=30000,
    )


@pytest.fixture(scope="session")
def engine(settings: Settings) -> Iterator[sa.Engine]:
    """The session's engine."""
    eng = db.make_engine(settings)
    yield eng
    eng.dispose()


REGISTRY_TABLES = ("structures", "structure_sources", "import_runs", "duplicate_decisions")


@pytest.fixture
def clean_registry(engine: sa.Engine) -> sa.Engine:
    """Empty the registry (structures and import runs) before the test."""
    with engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {', '.join(REGISTRY_TABLES)} RESTART IDENTITY CASCADE"))
    return engine


def load_demo(engine: sa.Engine) -> sa.Engine:
    """Empty the registry, then import the three IDF demo files."""
    from carteco.demo import DEMO_SOURCES
    from carteco.importer import run_import
    from carteco.importer.mapping import Mapping

    with engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {', '.join(REGISTRY_TABLES)} RESTART IDENTITY CASCADE"))
    for d in DEMO_SOURCES:
        report = run_import(
            engine,
            d.path,
            source=d.source,
            mapping=Mapping.from_file(d.mapping_path),
            skip_invalid=d.skip_invalid,
        )
        assert report.status == "succeeded", report.as_dict()
    with engine.begin() as conn:
        conn.execute(sa.text("ANALYZE structures"))  # plans like a deployed registry's
    return engine


@pytest.fixture
def demo_registry(engine: sa.Engine) -> sa.Engine:
    """The registry holding the three IDF demo imports (reloaded for the test)."""
    return load_demo(engine)


@pytest.fixture(scope="module")
def demo_data(engine: sa.Engine) -> sa.Engine:
    """The three IDF demo imports, loaded once for the module."""
    return load_demo(engine)


@pytest.fixture
def client(settings: Settings) -> Iterator[object]:
    """A TestClient on the full app."""
    from fastapi.testclient import TestClient

    from api.factory import create_app

    with TestClient(create_app(settings)) as c:
        yield c


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def live_server(settings: Settings) -> Iterator[str]:
    """The real app served by uvicorn on loopback, for GDAL, HTTP clients and the browser."""
    import uvicorn

    from api.factory import create_app

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline:
            pytest.fail("live server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def assert_problem(response: object, status: int) -> dict[str, object]:
    """Check the one error shape (RFC 9457 problem details) and return its body."""
    assert response.status_code == status, (response.status_code, response.text)  # type: ignore[attr-defined]
    assert response.headers["content-type"].startswith("application/problem+json")  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert set(body) >= {"type", "title", "status", "detail", "instance"}, body
    assert body["status"] == status
    text = str(body).lower()
    for leak in ("traceback", "psycopg", "sqlalchemy", "select ", "syntax error"):
        assert leak not in text, f"internal detail leaked: {body}"
    return body  # type: ignore[no-any-return]


def assert_html_error(response: object, status: int, says: str = "") -> str:
    """Check a browser route's error: a French HTML page with the status, no internals."""
    assert response.status_code == status, (response.status_code, response.text)  # type: ignore[attr-defined]
    assert response.headers["content-type"].startswith("text/html")  # type: ignore[attr-defined]
    text: str = response.text  # type: ignore[attr-defined]
    assert '<html lang="fr">' in text and f"erreur {status}" in text, text[:500]
    assert 'role="alert"' in text
    if says:
        assert says in text, text
    for leak in ("Traceback", "psycopg", "sqlalchemy", "SELECT ", '{"type"'):
        assert leak not in text, f"internal detail leaked: {text[:500]}"
    return text
