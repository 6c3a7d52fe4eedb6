"""CPU time of the app's middleware stack alone, per request, in-process (no socket, no route).

    cd <tree> && <python> /path/to/bench/middleware_stack.py [--n 5000]

Builds `create_app` of the tree in the working directory (so it measures wave-1 when run from
/tmp/old), replaces what is inside the last middleware by a handler that answers 200 at once,
and times GETs for a static asset path through the stack: process CPU time, best of 5 rounds.
Load from other processes hardly moves it, unlike req/s over loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.getcwd())
os.environ.setdefault("CARTECO_RATE_LIMIT_READS_PER_MINUTE", "0")
os.environ.setdefault(
    "CARTECO_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)

from api.factory import create_app  # noqa: E402
from carteco.settings import Settings  # noqa: E402

PATH = "/static/vendor/maplibre-gl/maplibre-gl.js"
HEADERS = [
    (b"host", b"127.0.0.1:8000"),
    (b"user-agent", b"wrk"),
    (b"accept-encoding", b"gzip"),
    (b"accept", b"*/*"),
]


async def _answer(scope: Any, receive: Any, send: Any) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/javascript"), (b"content-length", b"2")],
        }
    )
    await send({"type": "http.response.body", "body": b"ok"})


def main() -> None:
    """Print the best per-request CPU time of the stack, in microseconds."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=5000, help="requests per round")
    args = ap.parse_args()
    app = create_app(Settings())
    logging.getLogger("carteco").setLevel(logging.WARNING)  # no access log lines
    stack = app.build_middleware_stack()
    node, chain = stack, []
    while type(node.app).__name__ != "ExceptionMiddleware":
        chain.append(type(node).__name__)
        node = node.app
    chain.append(type(node).__name__)
    node.app = _answer

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        return None

    async def one() -> None:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": PATH,
            "raw_path": PATH.encode(),
            "query_string": b"v=0",
            "root_path": "",
            "headers": HEADERS,
            "client": ("127.0.0.1", 5555),
            "server": ("127.0.0.1", 8000),
            "state": {},
        }
        await stack(scope, receive, send)

    async def run() -> float:
        for _ in range(500):
            await one()
        best = float("inf")
        for _ in range(5):
            c0 = time.process_time()
            for _ in range(args.n):
                await one()
            best = min(best, (time.process_time() - c0) / args.n * 1e6)
        return best

    best = asyncio.run(run())
    print(f"{best:.1f} us/request  {' > '.join(chain)}")


if __name__ == "__main__":
    main()
