"""Schemathesis against Carteco's own OpenAPI: thousands of generated requests, no 5xx.

Runs on a database of its own (writes with a test token change data), against a real uvicorn
process, which must still be alive at the end (a native crash kills a worker, not a request).
Every operation of the OpenAPI document is exercised, in both of schemathesis's generation
modes: positive (valid by the schema) and negative (violating it: must be a 4xx, never a 5xx).
GET ones anonymously, writes with a token.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
import requests
import schemathesis
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from carteco import db
from carteco.auth import create_token
from tests.conftest import ROOT, create_database, drop_database, free_port

# Examples per operation and per generation mode: ~40 operations in positive mode, ~20 with
# a schema constraint to violate in negative mode, so well over 5,000 requests in all.
EXAMPLES = int(os.environ.get("CARTECO_FUZZ_EXAMPLES", "100"))
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
MIN_REQUESTS = 5000
CHECKS = (
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
)


@pytest.fixture(scope="module")
def fuzz_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, str, subprocess.Popen[bytes]]]:
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
    port = free_port()
    env = {
        **os.environ,
        "CARTECO_DATABASE_URL": url,
        "CARTECO_DATA_DIR": str(tmp_path_factory.mktemp("fuzz")),
        "CARTECO_RATE_LIMIT_READS_PER_MINUTE": "0",
        "CARTECO_RATE_LIMIT_WRITES_PER_MINUTE": "0",
        "CARTECO_STATEMENT_TIMEOUT_MS": "10000",
        "CARTECO_LOG_JSON": "false",
    }
    log = (tmp_path_factory.mktemp("fuzz-log") / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "api.factory:app_from_env",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # a loaded CI machine may start it slowly
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail("the fuzzed server did not start")
            time.sleep(0.2)
        yield base, token, proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
        drop_database(url)


def _runner(  # type: ignore[no-untyped-def]
    label: str,
    headers: dict[str, str] | None,
    calls: dict[str, int],
    base: str,
    session: requests.Session,
    mode: GenerationMode,
):
    """A hypothesis test over one operation (a factory, so each binds its own label)."""

    def build(op):  # type: ignore[no-untyped-def]
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        @given(case=op.as_strategy(generation_mode=mode))
        def run(case) -> None:  # type: ignore[no-untyped-def]
            response = case.call(base_url=base, session=session, headers=headers, timeout=60)
            calls[label] = calls.get(label, 0) + 1
            case.validate_response(response, checks=CHECKS)

        return run

    return build


def test_api_never_fails(fuzz_server, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    base, token, proc = fuzz_server
    schema = schemathesis.openapi.from_url(base + "/openapi.json")
    calls: dict[str, int] = {}
    failures: list[str] = []
    with requests.Session() as session:
        for mode in MODES:
            for result in schema.get_all_operations():
                op = result.ok()
                label = f"{mode.value} {op.method.upper()} {op.path}"
                auth = {"Authorization": f"Bearer {token}"}
                headers = auth if op.method.upper() != "GET" else None
                run = _runner(label, headers, calls, base, session, mode)(op)
                try:
                    run()
                except Unsatisfiable:
                    # No schema constraint to violate (no parameters, free strings only).
                    if mode is not GenerationMode.NEGATIVE:
                        failures.append(f"{label}: no case could be generated")
                except (Exception, BaseExceptionGroup) as exc:  # report every failure
                    failures.append(f"{label}: {str(exc)[:1500]}")
    total = sum(calls.values())
    with capsys.disabled():
        by_mode = {
            m.value: sum(n for k, n in calls.items() if k.startswith(m.value)) for m in MODES
        }
        print(f"\nschemathesis: {total} requests over {len(calls)} operations x modes {by_mode}")
    assert proc.poll() is None, "the server process died under the fuzzer"
    assert httpx.get(base + "/healthz", timeout=10).status_code == 200
    assert not failures, "\n\n".join(failures)
    assert total >= MIN_REQUESTS or EXAMPLES < 100
