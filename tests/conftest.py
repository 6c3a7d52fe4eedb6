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
from urllib.parse import urlparse

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
    try:
        with admin.connect() as conn:
            # DROP DATABASE waits for every backend of the server to absorb a signal barrier;
            # one stuck in COPY (a client gone astray) never does: fail, naming it, not hang.
            conn.execute(sa.text("SET statement_timeout = '120s'"))
            try:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            except sa.exc.OperationalError:
                stuck = conn.execute(
                    sa.text(
                        "SELECT pid, datname, state, wait_event, left(query, 80) "
                        "FROM pg_stat_activity WHERE state <> 'idle' AND pid <> pg_backend_pid()"
                    )
                ).all()
                raise AssertionError(f"DROP DATABASE {name} blocked by {stuck}") from None
    finally:
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


# ---------------------------------------------------------------- land layers

LAND = FIXTURES / "foncier"
LAND_TABLES = (
    "land_needs, land_sites, land_transactions, land_layers, commune_indicators, land_posts"
)


def reset_land(engine: sa.Engine) -> None:
    """Empty the land layers, the QPV outlines and the registry."""
    with engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {LAND_TABLES} RESTART IDENTITY CASCADE"))
        conn.execute(sa.text("DELETE FROM territories WHERE level = 'qpv'"))
        conn.execute(
            sa.text("TRUNCATE structures, structure_sources, import_runs RESTART IDENTITY CASCADE")
        )


@pytest.fixture
def land(engine: sa.Engine) -> sa.Engine:
    """A database with no land layer and an empty registry."""
    reset_land(engine)
    yield engine
    reset_land(engine)


# ---------------------------------------------------------------- registry digest

REGISTRY_CHECKSUM = """
SELECT md5(coalesce((SELECT string_agg(s::text, '|' ORDER BY id) FROM structures s), '')
        || coalesce((SELECT string_agg(l::text, '|' ORDER BY source, source_id)
                       FROM structure_sources l), ''))
"""


def checksum(engine: sa.Engine) -> str:
    """Digest of the registry tables."""
    with engine.connect() as conn:
        return str(conn.execute(sa.text(REGISTRY_CHECKSUM)).scalar_one())


# ---------------------------------------------------------------- browser

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
]


class Browser:
    """A Chromium context restricted to loopback, collecting console errors."""

    def __init__(self, base: str) -> None:
        from playwright.sync_api import sync_playwright

        self.base = base
        self._pw = sync_playwright().start()
        self.browser = self._pw.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
        )
        self.errors: list[str] = []
        self.blocked: list[str] = []

    def page(self, width: int = 1280, height: int = 800):  # type: ignore[no-untyped-def]
        ctx = self.browser.new_context(viewport={"width": width, "height": height})

        def route(r):  # type: ignore[no-untyped-def]
            if urlparse(r.request.url).hostname == "127.0.0.1" or r.request.url.startswith(
                ("data:", "blob:")
            ):
                r.continue_()
            else:
                self.blocked.append(r.request.url)
                r.abort()

        ctx.route("**/*", route)
        page = ctx.new_page()
        page.on(
            "console",
            lambda m: self.errors.append(f"console: {m.text}") if m.type == "error" else None,
        )
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        return page

    def close(self) -> None:
        self.browser.close()
        self._pw.stop()


@pytest.fixture(scope="module")
def browser(live_server: str, demo_data: sa.Engine) -> Iterator[Browser]:
    """One Chromium for the module; fails the test that left console errors behind."""
    b = Browser(live_server)
    yield b
    b.close()


@pytest.fixture
def no_console_errors(browser: Browser) -> Iterator[None]:
    """Any console or page error, or any request leaving loopback, fails the test."""
    browser.errors.clear()
    browser.blocked.clear()
    yield
    assert not browser.errors, browser.errors
    assert not browser.blocked, browser.blocked


def wait_idle(page, timeout: float = 90_000) -> None:  # type: ignore[no-untyped-def]
    """Wait until the map page says it is ready."""
    page.wait_for_selector('body[data-ready="1"]', state="attached", timeout=timeout)


def shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    """Screenshot of the page into test-artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"map-{name}.png"))


def attr(page, name: str) -> str | None:  # type: ignore[no-untyped-def]
    return page.get_attribute("body", name)


def wait_attr(page, name: str, predicate, timeout: float = 45.0) -> str:  # type: ignore[no-untyped-def]
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = attr(page, name)
        if value is not None and predicate(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{name} = {value!r}")
        page.wait_for_timeout(100)


def scalar(engine: sa.Engine, sql: str, **params):  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return conn.execute(sa.text(sql), params).one()
