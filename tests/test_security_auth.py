"""Issue #10 (3, 4, 5, 11): client identity, failed-auth limits, auth before body, body caps,
CSV geocoding that never starves reads, and absolute URLs that never echo a foreign Host."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.factory import create_app
from api.ratelimit import MemoryRateLimiter, RedisRateLimiter, TrustedProxies, client_address
from carteco.auth import create_token
from carteco.geocoding.reference import load_addresses
from carteco.settings import Settings
from tests.conftest import FIXTURES, assert_problem, free_port
from tests.features_support import load_demo

BAL = FIXTURES / "geocoding" / "bal_54084_mont-bonvillers.csv"
REDIS_URL = os.environ.get("CARTECO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
QUIET = {"rate_limit_reads_per_minute": 0, "rate_limit_writes_per_minute": 0}


@pytest.fixture(scope="module")
def demo(engine: sa.Engine) -> sa.Engine:
    """The demo registry and the BAL reference addresses (removed afterwards)."""
    load_demo(engine)
    with engine.begin() as conn:
        load_addresses(conn, [BAL])
    yield engine
    with engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE geo_addresses, geo_streets, geocode_cache"))
        conn.execute(sa.text("DELETE FROM geo_meta"))


@pytest.fixture(scope="module")
def tokens(demo: sa.Engine) -> dict[str, str]:
    """An admin token (import + edit)."""
    with demo.begin() as conn:
        _, admin = create_token(conn, "sécurité", ["admin"])
    return {"admin": admin}


def _app(settings: Settings, **update: Any) -> FastAPI:
    return create_app(settings.model_copy(update={**QUIET, **update}))


# --- 3. one client identity ---------------------------------------------------------------


def _scope(peer: str, *headers: tuple[str, str]) -> dict[str, Any]:
    return {
        "type": "http",
        "client": (peer, 4711),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
    }


def test_forwarding_header_believed_only_from_trusted_proxies() -> None:
    none = TrustedProxies([])
    proxies = TrustedProxies(["10.0.0.0/8", "2001:db8::/32"])
    xff = ("X-Forwarded-For", "6.6.6.6, 203.0.113.9, 10.0.0.2")
    # An untrusted peer's header proves nothing: the socket's address is the client.
    assert client_address(_scope("198.51.100.7", xff), proxies) == "198.51.100.7"
    assert client_address(_scope("10.0.0.1", xff), none) == "10.0.0.1"
    # Through trusted proxies: the right-most address that is not one of ours; the left-most
    # one (6.6.6.6) was written by the client itself and is ignored.
    assert client_address(_scope("10.0.0.1", xff), proxies) == "203.0.113.9"
    # Repeated headers are one list; ports, brackets and IPv4-mapped forms are normalised.
    two = (("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "[::ffff:203.0.113.9]:80"))
    assert client_address(_scope("::ffff:10.0.0.1", *two), proxies) == "203.0.113.9"
    # All hops trusted: the first one.
    assert client_address(_scope("10.0.0.1", ("X-Forwarded-For", "10.1.1.1")), proxies) == (
        "10.1.1.1"
    )
    # RFC 7239 Forwarded, when that is the header the proxies write.
    fwd = TrustedProxies(["10.0.0.0/8"], "forwarded")
    header = ("Forwarded", 'for=6.6.6.6, for="[2001:db8:cafe::17]:4711";proto=https, for=10.0.0.3')
    assert client_address(_scope("10.0.0.1", header), fwd) == "2001:db8:cafe::17"
    # The other header is then ignored (a client could have sent it through the proxy).
    assert client_address(_scope("10.0.0.1", xff), fwd) == "10.0.0.1"
    with pytest.raises(ValueError, match="trusted_proxies"):
        TrustedProxies(["pas une adresse"])


def test_bogus_tokens_do_not_buy_fresh_write_buckets(settings: Settings, demo) -> None:  # type: ignore[no-untyped-def]
    app = _app(settings, rate_limit_writes_per_minute=6, auth_failures_per_minute=0)
    with TestClient(app) as c:
        codes = [
            c.patch(
                "/structures/1",
                json={"name": "x"},
                headers={"Authorization": f"Bearer carteco_{uuid.uuid4().hex}"},
            ).status_code
            for _ in range(4)
        ]
    assert codes[0] == 401 and codes[-1] == 429, codes


def test_failed_authentications_limited_per_client(settings: Settings, tokens) -> None:  # type: ignore[no-untyped-def]
    app = _app(settings, auth_failures_per_minute=3, trusted_proxies=["10.9.0.0/16"])
    body = {"name": "x"}

    def patch(c: TestClient, token: str, **headers: str) -> httpx.Response:
        return c.patch(
            "/structures/1", json=body, headers={"Authorization": f"Bearer {token}", **headers}
        )

    with TestClient(app, client=("192.0.2.10", 5000)) as c:
        for _ in range(3):  # a new made-up token each time: still the same client
            assert_problem(patch(c, f"carteco_{uuid.uuid4().hex}"), 401)
        r = patch(c, f"carteco_{uuid.uuid4().hex}")
        assert_problem(r, 429)
        assert int(r.headers["retry-after"]) >= 1
        # Refused before the token is looked up, so even a good token waits.
        assert_problem(patch(c, tokens["admin"]), 429)
        # Missing tokens count too (GET /imports/{id} is guarded as well).
        assert_problem(c.get("/imports/1"), 429)
    # Another client is not affected.
    with TestClient(app, client=("192.0.2.11", 5000)) as other:
        assert_problem(patch(other, "carteco_autre"), 401)
        # A client claiming another address through X-Forwarded-For is not believed...
        spoof = patch(other, "carteco_x", **{"X-Forwarded-For": "192.0.2.99"})
        assert_problem(spoof, 401)
    # ...but behind a trusted proxy, each forwarded client has its own count.
    with TestClient(app, client=("10.9.0.1", 5000)) as proxy:
        for i in range(3):
            hop = {"X-Forwarded-For": f"198.51.100.{i}"}
            assert_problem(patch(proxy, "carteco_y", **hop), 401)
        blocked = {"X-Forwarded-For": "192.0.2.10"}  # the client blocked above
        assert_problem(patch(proxy, "carteco_z", **blocked), 429)


def test_peek_counts_nothing(redis_url: str) -> None:
    async def run() -> None:
        import redis.asyncio

        client = redis.asyncio.Redis.from_url(redis_url)
        shared = RedisRateLimiter(client, "t", 60, prefix=f"test:{uuid.uuid4().hex}:", burst=2)
        local = MemoryRateLimiter(60, burst=2)
        for lim in (shared, local):
            assert [await lim.peek("k") for _ in range(5)] == [0.0] * 5
            assert await lim.wait("k") == 0 and await lim.wait("k") == 0
            assert await lim.peek("k") > 0
            assert await lim.wait("k") > 0
        await client.aclose()

    asyncio.run(run())


@pytest.fixture(scope="module")
def redis_url() -> str:
    """The test Redis; missing, the tests fail (scripts/setup.sh starts one)."""
    host, port = REDIS_URL.split("//", 1)[1].split("/", 1)[0].split(":")
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except OSError as exc:
        pytest.fail(f"Redis is not reachable at {REDIS_URL} ({exc})")
    return REDIS_URL


def test_failed_authentications_shared_by_workers_through_redis(
    settings: Settings, demo, redis_url: str
) -> None:  # type: ignore[no-untyped-def]
    update = {
        "auth_failures_per_minute": 2,
        "redis_url": redis_url,
        "redis_key_prefix": f"test:{uuid.uuid4().hex}:",
    }
    one, two = _app(settings, **update), _app(settings, **update)
    bad = {"Authorization": "Bearer carteco_faux"}
    with TestClient(one) as a, TestClient(two) as b:
        assert_problem(a.delete("/structures/1", headers=bad), 401)
        assert_problem(b.delete("/structures/1", headers=bad), 401)
        assert_problem(a.delete("/structures/1", headers=bad), 429)
        assert_problem(b.delete("/structures/1", headers=bad), 429)


# --- 4. authentication before body; body caps -------------------------------------------


class Upload:
    """An ASGI request driven by hand: counts the body bytes the app asked for."""

    def __init__(self, chunks: list[bytes], *, declared: int | None) -> None:
        self.chunks = list(chunks)
        self.declared = declared
        self.read = 0
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = b""

    def call(
        self, app: FastAPI, method: str, path: str, headers: dict[str, str] | None = None
    ) -> Upload:
        """Send the request to `app` and record the answer."""
        hdrs = {"host": "testserver", **(headers or {})}
        if self.declared is not None:
            hdrs["content-length"] = str(self.declared)
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [(k.lower().encode(), v.encode()) for k, v in hdrs.items()],
            "client": ("192.0.2.50", 1234),
            "server": ("testserver", 80),
        }

        async def receive() -> dict[str, Any]:
            if not self.chunks:
                await asyncio.sleep(3600)  # a client that never finishes: must not be awaited
            chunk = self.chunks.pop(0)
            self.read += len(chunk)
            return {"type": "http.request", "body": chunk, "more_body": bool(self.chunks)}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.status = message["status"]
                self.headers = {k.decode(): v.decode() for k, v in message["headers"]}
            elif message["type"] == "http.response.body":
                self.body += message.get("body", b"")

        async def run() -> None:
            await asyncio.wait_for(app(scope, receive, send), timeout=60)

        asyncio.run(run())
        return self


def _multipart(name: str, size: int) -> tuple[str, bytes]:
    boundary = "carteco-test-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="a.csv"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    ).encode()
    body = head + b"a" * size + f"\r\n--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", body


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/imports"),
        ("PATCH", "/structures/1"),
        ("DELETE", "/structures/1"),
        ("PATCH", "/structures/1/location"),
    ],
)
def test_writes_authenticate_before_reading_the_body(
    settings: Settings, demo, method: str, path: str
) -> None:  # type: ignore[no-untyped-def]
    app = _app(settings)
    ctype, body = _multipart("file", 200_000)
    for auth in ({}, {"authorization": "Bearer carteco_inconnu"}):
        # 4 chunks, then a client that stalls: reading the body would hang the request.
        chunks = [body[i : i + 50_000] for i in range(0, len(body), 50_000)]
        up = Upload(chunks, declared=len(body) + 1).call(
            app, method, path, {"content-type": ctype, **auth}
        )
        assert up.status == 401, (up.status, up.body[:200])
        assert up.read == 0, f"{up.read} body bytes read before the token was checked"
        assert up.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize(
    ("path", "setting", "auth"),
    [
        ("/imports", "max_import_bytes", True),
        ("/ban/search/csv/", "max_ban_csv_bytes", False),
        ("/structures/within", "max_within_bytes", False),
    ],
)
def test_declared_body_over_its_cap_refused_unread(
    settings: Settings, tokens, path: str, setting: str, auth: bool
) -> None:  # type: ignore[no-untyped-def]
    app = _app(settings, **{setting: 10_000})
    headers = {"authorization": f"Bearer {tokens['admin']}"} if auth else {}
    up = Upload([b"x" * 10_001], declared=10_001).call(
        app, "POST", path, {"content-type": "multipart/form-data; boundary=b", **headers}
    )
    assert up.status == 413 and up.read == 0, (up.status, up.read, up.body[:200])
    assert b"10000 octets" in up.body
    assert up.headers["content-type"].startswith("application/problem+json")


def test_streamed_body_stops_at_its_cap(settings: Settings, tokens) -> None:  # type: ignore[no-untyped-def]
    app = _app(settings, max_import_bytes=100_000)
    ctype, body = _multipart("file", 1_000_000)
    chunks = [body[i : i + 10_000] for i in range(0, len(body), 10_000)]
    headers = {"content-type": ctype, "authorization": f"Bearer {tokens['admin']}"}
    up = Upload(chunks, declared=None).call(app, "POST", "/imports", headers)
    assert up.status == 413, (up.status, up.body[:300])
    assert up.read <= 110_000, f"read {up.read} bytes past a 100000-byte cap"
    assert up.headers["content-type"].startswith("application/problem+json")


def test_default_cap_for_other_routes(settings: Settings, tokens) -> None:  # type: ignore[no-untyped-def]
    app = _app(settings, max_body_bytes=1000)
    with TestClient(app) as c:
        r = c.patch(
            "/structures/1",
            json={"description": "d" * 2000},
            headers={"Authorization": f"Bearer {tokens['admin']}", "If-Match": '"1"'},
        )
        assert_problem(r, 413)
        # Under its own (larger) cap, an import of the same size is read as usual.
        files = {"file": ("vide.csv", b"x" * 2000, "text/csv")}
        r = c.post("/imports", files=files, headers={"Authorization": f"Bearer {tokens['admin']}"})
        assert r.status_code == 202, r.text


def test_import_form_checked(settings: Settings, tokens) -> None:  # type: ignore[no-untyped-def]
    h = {"Authorization": f"Bearer {tokens['admin']}"}
    with TestClient(_app(settings)) as c:
        assert_problem(c.post("/imports", data={"source": "x"}, headers=h), 400)
        files = {"file": ("a.csv", b"nom\nx\n", "text/csv")}
        bad = c.post("/imports", files=files, data={"dry_run": "peut-être"}, headers=h)
        assert_problem(bad, 400)
        ok = c.post("/imports", files=files, data={"dry_run": "true"}, headers=h)
        assert ok.status_code == 202, ok.text


# --- 5. CSV geocoding: capped, gated, never starving reads --------------------------------


def _addresses_csv(rows: int) -> bytes:
    with BAL.open(encoding="utf-8") as f:
        src = list(csv.DictReader(f, delimiter=";"))
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["id", "adresse", "cp"])
    for i in range(rows):
        r = src[i % len(src)]
        w.writerow([i, f"{r['numero']} {r['voie_nom']} {r['commune_nom']}", "54111"])
    return out.getvalue().encode()


def test_csv_row_cap(settings: Settings, demo) -> None:  # type: ignore[no-untyped-def]
    with TestClient(_app(settings, ban_csv_max_rows=10)) as c:
        files = {"data": ("a.csv", _addresses_csv(11), "text/csv")}
        body = assert_problem(c.post("/ban/search/csv/", files=files), 400)
        assert "10 lignes" in str(body["detail"])
        files = {"data": ("a.csv", _addresses_csv(10), "text/csv")}
        r = c.post("/ban/search/csv/", files=files)
        assert r.status_code == 200 and r.text.count("\n") == 11


def test_csv_gate_answers_429_and_503_with_retry_after(settings: Settings, demo) -> None:  # type: ignore[no-untyped-def]
    app = _app(settings, ban_csv_max_concurrent=2, ban_csv_per_client=1)
    files = {"data": ("a.csv", _addresses_csv(3), "text/csv")}
    with TestClient(app) as c:
        gate = app.state.batch_gate
        gate.enter("testclient")  # a job of this client is running
        r = c.post("/ban/search/csv/", files=files)
        assert_problem(r, 429)
        assert int(r.headers["retry-after"]) >= 1
        gate.enter("198.51.100.1")  # and one of someone else: the process is full
        other = TestClient(app, client=("192.0.2.77", 1))
        r = other.post("/ban/search/csv/", files=files)
        assert_problem(r, 503)
        assert int(r.headers["retry-after"]) >= 1
        # Reads are not behind the gate.
        assert c.get("/healthz").status_code == 200
        gate.leave("testclient")
        gate.leave("198.51.100.1")
        assert c.post("/ban/search/csv/", files=files).status_code == 200
        assert gate.running == 0 and not gate.by_client


@pytest.fixture
def small_pool_server(settings: Settings, demo) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """The app on loopback with a 2-connection pool, every CSV client distinct (via a proxy)."""
    import uvicorn

    app = _app(
        settings,
        pool_size=2,
        pool_max_overflow=0,
        pool_timeout_s=2,
        ban_csv_max_concurrent=2,
        ban_csv_per_client=1,
        trusted_proxies=["127.0.0.1"],
        request_timeout_s=300,  # a loaded test machine geocodes slowly: never cut a job here
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", proxy_headers=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline:
            pytest.fail("server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)


def test_concurrent_csv_jobs_never_starve_reads(small_pool_server: str) -> None:
    base = small_pool_server
    payload = _addresses_csv(1000)
    results: list[httpx.Response] = []
    lock = threading.Lock()

    def job(i: int) -> None:
        # Loopback only; each job claims its own client address through the trusted proxy.
        with httpx.Client(base_url=base, timeout=120) as c:
            r = c.post(
                "/ban/search/csv/",
                files={"data": (f"{i}.csv", payload, "text/csv")},
                data={"columns": "adresse", "postcode": "cp"},
                headers={"X-Forwarded-For": f"198.51.100.{i}"},
            )
        with lock:
            results.append(r)

    threads = [threading.Thread(target=job, args=(i,)) for i in range(8)]
    probes: list[tuple[str, int]] = []
    with httpx.Client(base_url=base, timeout=60) as c:
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads) or len(probes) < 10:
            for path in ("/healthz", "/collections/structures/items?limit=5"):
                probes.append((path, c.get(path).status_code))
        for t in threads:
            t.join(timeout=120)
    assert all(code == 200 for _, code in probes), [p for p in probes if p[1] != 200]
    codes = sorted(r.status_code for r in results)
    assert len(codes) == 8 and set(codes) <= {200, 429, 503}, codes
    assert 200 in codes, codes
    for r in results:
        if r.status_code != 200:
            assert r.headers["content-type"].startswith("application/problem+json")
            assert int(r.headers["retry-after"]) >= 1
        else:
            assert r.text.count("\n") == 1001


# --- 11. absolute URLs from the public URL or an allowed Host ------------------------------


def test_foreign_host_refused_when_no_public_url(settings: Settings, demo) -> None:  # type: ignore[no-untyped-def]
    with TestClient(_app(settings)) as c:
        evil = {"Host": "evil.example"}
        for path in (
            "/collections",
            "/collections/structures/items?limit=1",
            "/tiles/tilejson.json",
        ):
            r = c.get(path, headers=evil)
            body = assert_problem(r, 400)
            assert "evil" not in r.text, body
        # Probes by IP address still answer.
        assert c.get("/healthz", headers=evil).status_code == 200
        # Allowed hosts (with a port) build their own links.
        r = c.get("/collections/structures/items?limit=1", headers={"Host": "localhost:8000"})
        assert r.status_code == 200
        hrefs = [link["href"] for link in r.json()["links"]]
        assert hrefs and all(h.startswith("http://localhost:8000/") for h in hrefs), hrefs


def test_public_url_makes_every_absolute_url(settings: Settings, tokens) -> None:  # type: ignore[no-untyped-def]
    root = "https://carte.example.org"
    app = _app(settings, public_url=root + "/")
    evil = {"Host": "evil.example", "X-Forwarded-Host": "evil.example"}
    with TestClient(app) as c:
        r = c.get("/collections/structures/items?limit=1", headers=evil)
        assert r.status_code == 200
        assert "evil" not in r.text
        assert all(link["href"].startswith(root + "/") for link in r.json()["links"])
        tj = c.get("/collections/structures/tiles/WebMercatorQuad/tilejson.json", headers=evil)
        assert tj.status_code == 200, tj.text
        assert tj.json()["tiles"][0].startswith(root + "/collections/structures/tiles/")
        page = c.get("/carte/integrer", headers=evil)
        assert page.status_code == 200 and f'data-base="{root}"' in page.text
        assert "evil" not in page.text
        r = c.post(
            "/imports",
            files={"file": ("a.csv", b"nom\nx\n", "text/csv")},
            headers={**evil, "Authorization": f"Bearer {tokens['admin']}"},
        )
        assert r.status_code == 202, r.text
        assert r.headers["location"].startswith(root + "/imports/")
        assert r.json()["href"] == r.headers["location"]
