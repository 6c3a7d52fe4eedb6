"""ServiceMiddleware's start timeout and the merged door guard, driven as raw ASGI apps."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from api.guards import GuardMiddleware
from api.observability import Metrics, ServiceMiddleware
from carteco.settings import Settings


def _call(app: Any, path: str = "/x", headers: list[tuple[bytes, bytes]] | None = None) -> dict:
    """Run one GET through `app`; status, headers, body and seconds taken."""
    out: dict[str, Any] = {"status": 0, "body": b""}
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers if headers is not None else [(b"host", b"testserver")],
        "client": ("192.0.2.9", 1234),
        "server": ("testserver", 80),
    }

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            assert not out["status"], "a second response start"
            out["status"] = message["status"]
            out["headers"] = dict(message["headers"])
            out["seconds"] = time.perf_counter() - t0
        else:
            out["body"] += message.get("body", b"")

    t0 = time.perf_counter()
    asyncio.run(asyncio.wait_for(app(scope, receive, send), 30))
    return out


def _service(inner: Any, timeout: float = 0.3) -> ServiceMiddleware:
    settings = Settings(request_timeout_s=timeout, rate_limit_reads_per_minute=0)
    return ServiceMiddleware(inner, settings=settings, metrics=Metrics({}))


async def _ok(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def test_timeout_answers_503_even_when_the_app_cannot_be_interrupted() -> None:
    release = threading.Event()
    threading.Timer(2.0, release.set).start()

    async def stuck(scope: Any, receive: Any, send: Any) -> None:
        # A query in a worker thread, awaited whatever happens (as anyio does): cancelling
        # the task does not stop it.
        fut = asyncio.get_running_loop().run_in_executor(None, release.wait, 5)
        while not fut.done():
            try:
                await asyncio.shield(fut)
            except asyncio.CancelledError:
                continue

    r = _call(_service(stuck))
    assert r["status"] == 503 and r["headers"][b"retry-after"] == b"5"
    assert r["seconds"] < 1.5, r["seconds"]
    assert b"temps imparti" in r["body"]


def test_a_started_response_is_not_cut() -> None:
    async def slow_stream(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(4):
            await asyncio.sleep(0.2)  # 0.8 s in all, past the 0.3 s timeout
            await send({"type": "http.response.body", "body": b"x", "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    r = _call(_service(slow_stream))
    assert r["status"] == 200 and r["body"] == b"xxxx"
    assert len(r["headers"][b"x-request-id"]) == 32


def test_fast_answers_and_app_errors_pass_through() -> None:
    r = _call(_service(_ok))
    assert r["status"] == 200 and r["body"] == b"ok"

    async def boom(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    try:
        _call(_service(boom))
    except RuntimeError as exc:
        assert str(exc) == "boom"
    else:
        raise AssertionError("the app's exception was swallowed")


def test_guard_judges_each_host_every_time() -> None:
    guard = GuardMiddleware(_ok, Settings(allowed_hosts=["localhost"], public_url=None))
    for _ in range(2):  # the second time from its cache of judged Host values
        assert _call(guard, headers=[(b"host", b"localhost:8000")])["status"] == 200
        assert _call(guard, headers=[(b"host", b"evil.example")])["status"] == 400
        assert _call(guard, headers=[(b"Host", b"EVIL.example.")])["status"] == 400
        assert _call(guard, "/healthz", [(b"host", b"evil.example")])["status"] == 200
    # Ever new Hosts fill a bounded cache and are still refused past it.
    for i in range(1100):
        assert _call(guard, headers=[(b"host", f"h{i}.example".encode())])["status"] == 400
    assert len(guard._hosts) <= 1024
