"""Schemathesis against Carteco's own OpenAPI: thousands of generated requests, no 5xx.

Runs on a database of its own (writes with a test token change data), in process (ASGI).
Every operation of the OpenAPI document is exercised: GET ones anonymously, writes with a token.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import schemathesis
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.factory import create_app
from carteco import db
from carteco.auth import create_token
from carteco.settings import Settings
from tests.conftest import create_database, drop_database

EXAMPLES = int(os.environ.get("CARTECO_FUZZ_EXAMPLES", "200"))  # per operation
MIN_REQUESTS = 5000
CHECKS = (
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
)


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[object, str]]:
    from carteco.demo import DEMO_SOURCES
    from carteco.importer import run_import
    from carteco.importer.mapping import Mapping
    from carteco.sectors import sync_sectors
    from geodata.loader import load_all

    url = create_database("carteco_fuzz")
    db.upgrade(url)
    eng = sa.create_engine(url)
    with eng.begin() as conn:
        sync_sectors(conn)
        load_all(conn)
    for d in DEMO_SOURCES:
        run_import(eng, d.path, d.source, Mapping.from_file(d.mapping_path), skip_invalid=True)
    with eng.begin() as conn:
        _, token = create_token(conn, "fuzz", ["import", "edit", "admin"])
    eng.dispose()
    settings_ = Settings(
        database_url=url,
        data_dir=tmp_path_factory.mktemp("fuzz"),
        rate_limit_reads_per_minute=0,
        rate_limit_writes_per_minute=0,
        statement_timeout_ms=10000,
        log_json=False,
    )
    yield create_app(settings_), token
    drop_database(url)


def _runner(label: str, headers: dict[str, str] | None, calls: dict[str, int]):  # type: ignore[no-untyped-def]
    """A hypothesis test over one operation (a factory, so each binds its own label)."""

    def build(op):  # type: ignore[no-untyped-def]
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        @given(case=op.as_strategy())
        def run(case) -> None:  # type: ignore[no-untyped-def]
            response = case.call(headers=headers)
            calls[label] = calls.get(label, 0) + 1
            case.validate_response(response, checks=CHECKS)

        return run

    return build


def test_api_never_fails(fuzz_app, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    app, token = fuzz_app
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    calls: dict[str, int] = {}
    failures: list[str] = []
    for result in schema.get_all_operations():
        op = result.ok()
        label = f"{op.method.upper()} {op.path}"
        headers = {"Authorization": f"Bearer {token}"} if op.method.upper() != "GET" else None

        run = _runner(label, headers, calls)(op)
        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # report every operation's failure
            failures.append(f"{label}: {str(exc)[:1500]}")
    total = sum(calls.values())
    with capsys.disabled():
        print(f"\nschemathesis: {total} requests over {len(calls)} operations")
    assert not failures, "\n\n".join(failures)
    assert total >= MIN_REQUESTS or EXAMPLES < 200
