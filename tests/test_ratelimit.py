"""Rate limits shared by every worker through a real Redis, and what happens without it."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid

import pytest
from fastapi.testclient import TestClient

from api.factory import create_app
from api.ratelimit import RedisRateLimiter, redis_client
from tests.conftest import assert_problem, free_port

REDIS_URL = os.environ.get("CARTECO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="module")
def redis_url() -> str:
    """The test Redis; missing, the tests fail (scripts/setup.sh starts one)."""
    host, port = REDIS_URL.split("//", 1)[1].split("/", 1)[0].split(":")
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except OSError as exc:
        pytest.fail(f"Redis is not reachable at {REDIS_URL} ({exc}): run scripts/setup.sh")
    return REDIS_URL


def test_two_workers_share_one_bucket(settings, redis_url: str) -> None:  # type: ignore[no-untyped-def]
    # Two apps stand for two worker processes (or two API machines) with one Redis.
    # 12 per minute: a burst of 2 (ten seconds' worth), then one every 5 s.
    shared = settings.model_copy(
        update={
            "rate_limit_reads_per_minute": 12,
            "redis_url": redis_url,
            "redis_key_prefix": f"carteco-test-{uuid.uuid4().hex}:",
        }
    )
    with TestClient(create_app(shared)) as a, TestClient(create_app(shared)) as b:
        url = "/collections/regions/items"
        assert a.get(url).status_code == 200
        assert b.get(url).status_code == 200
        # The bucket is empty for both workers, not just for the one that served twice.
        body = assert_problem(a.get(url), 429)
        assert body["title"] == "Trop de requêtes"
        r = b.get(url)
        assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 5
        assert a.get("/healthz").status_code == 200  # health checks are never limited
    # Without Redis the same two workers would each have let two through.
    alone = shared.model_copy(update={"redis_url": None})
    with TestClient(create_app(alone)) as a, TestClient(create_app(alone)) as b:
        codes = [c.get("/collections/regions/items").status_code for c in (a, b, a, b)]
        assert codes == [200, 200, 200, 200]


def test_gcra_burst_then_steady_rate(redis_url: str) -> None:
    async def run() -> list[float]:
        client = redis_client(redis_url)
        try:
            limiter = RedisRateLimiter(client, "t", 60, prefix=f"carteco-test-{uuid.uuid4().hex}:")
            return [await limiter.wait("ip:192.0.2.1") for _ in range(12)]
        finally:
            await client.aclose()

    waits = asyncio.run(run())
    # 60 per minute: ten at once, then one a second.
    assert waits[:10] == [0.0] * 10
    # (Refused requests take no token: the next one waits as long, less the time gone by.)
    assert all(0.9 <= w <= 1.0 for w in waits[10:])


def test_redis_down_falls_back_to_per_process_limits(settings, caplog) -> None:  # type: ignore[no-untyped-def]
    dead = settings.model_copy(
        update={
            "rate_limit_reads_per_minute": 12,
            "redis_url": f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
        }
    )
    with TestClient(create_app(dead)) as c, caplog.at_level("WARNING", "carteco.ratelimit"):
        codes = [c.get("/collections/regions/items").status_code for _ in range(3)]
        metrics = c.get("/metrics").text
    # Served, not failed — and still limited, by the worker's own buckets.
    assert codes == [200, 200, 429]
    assert any("Redis unavailable" in r.getMessage() for r in caplog.records)
    # Operators see it: one fallback (the next tries of Redis come 5 s later).
    assert "carteco_rate_limit_redis_fallbacks_total 1.0" in metrics
