"""Request ids, JSON access logs, Prometheus metrics, rate limits, security headers, timeouts.

One pure-ASGI middleware does all of it, so that a request pays one wrapper, not six.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
import time
import uuid
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy.engine import Engine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.ratelimit import TrustedProxies, client_address, make_limiter
from carteco.settings import Settings

log = logging.getLogger("carteco.access")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
EXEMPT = ("/healthz", "/readyz", "/metrics", "/static/")
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


class JsonFormatter(logging.Formatter):
    """One JSON object per log line (request id, route, status, duration…)."""

    def format(self, record: logging.LogRecord) -> str:
        """Serialise the record and its `extra` fields."""
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in ("request_id", "method", "path", "route", "status", "duration_ms", "client"):
            if hasattr(record, key):
                out[key] = getattr(record, key)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """One readable line per record, with the request fields when present."""

    def format(self, record: logging.LogRecord) -> str:
        """`time level message key=value…`."""
        fields = " ".join(
            f"{k}={getattr(record, k)}"
            for k in ("request_id", "method", "path", "status", "duration_ms")
            if hasattr(record, k)
        )
        line = f"{self.formatTime(record)} {record.levelname} {record.getMessage()} {fields}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line.rstrip()


def configure_logging(settings: Settings) -> None:
    """Send Carteco's logs to stderr, as JSON lines when `log_json` is set."""
    root = logging.getLogger("carteco")
    if getattr(root, "_carteco_configured", False):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.log_json else TextFormatter())
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    root.propagate = False
    root._carteco_configured = True  # type: ignore[attr-defined]


class Metrics:
    """The app's Prometheus registry: requests, latencies, pool usage, cache hits."""

    def __init__(self, engines: dict[str, Engine]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "carteco_http_requests_total",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "carteco_http_request_duration_seconds",
            "Time to the end of the response, by route.",
            ["route", "method"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "carteco_http_requests_in_flight", "Requests being served.", registry=self.registry
        )
        self.cache = Counter(
            "carteco_cache_requests_total",
            "Cache look-ups by cache and result (hit/miss).",
            ["cache", "result"],
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "carteco_rate_limited_total", "Requests refused with 429.", registry=self.registry
        )
        self.rate_limit_fallbacks = Counter(
            "carteco_rate_limit_redis_fallbacks_total",
            "Times Redis did not answer and the workers' own buckets took over (5 s each).",
            registry=self.registry,
        )
        self.registry.register(_PoolCollector(engines))


class _PoolCollector:
    def __init__(self, engines: dict[str, Engine]) -> None:
        self.engines = engines

    def collect(self):  # type: ignore[no-untyped-def]
        used = GaugeMetricFamily(
            "carteco_db_pool_connections_in_use", "Connections checked out.", labels=["pool"]
        )
        size = GaugeMetricFamily("carteco_db_pool_size", "Configured pool size.", labels=["pool"])
        for name, engine in self.engines.items():
            pool = engine.pool
            used.add_metric([name], float(getattr(pool, "checkedout", lambda: 0)()))
            size.add_metric([name], float(getattr(pool, "size", lambda: 0)()))
        yield used
        yield size


# Pages whose scripts are inline by construction: Swagger UI's bootstrap and the diagnostic
# report, a self-contained file (Leaflet inlined) also served over HTTP. Every other page
# runs only scripts served by Carteco itself, so an injected <script> cannot run there.
INLINE_SCRIPT_PATHS = ("/docs", "/diagnostics/")


def security_headers(settings: Settings, inline_scripts: bool = False) -> list[tuple[bytes, bytes]]:
    """Headers added to HTML pages: a CSP that lets the map run and partners embed it."""
    ancestors = " ".join(settings.frame_ancestors) or "'none'"
    style = settings.basemap_style_url if hasattr(settings, "basemap_style_url") else None
    extra_src = ""
    if style:
        m = re.match(r"^(https?://[^/]+)", style)
        extra_src = f" {m.group(1)}" if m else ""
    inline = " 'unsafe-inline'" if inline_scripts else ""
    csp = (
        "default-src 'self'; "
        f"script-src 'self'{inline}; "
        "style-src 'self' 'unsafe-inline'; "
        f"img-src 'self' data: blob:{extra_src}; "
        f"connect-src 'self'{extra_src}; "
        "worker-src 'self' blob:; child-src 'self' blob:; frame-src 'self'; "
        "font-src 'self' data:; object-src 'none'; base-uri 'self'; "
        f"frame-ancestors {ancestors}"
    )
    return [
        (b"content-security-policy", csp.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"strict-origin-when-cross-origin"),
    ]


def _problem(status: int, title: str, detail: str, path: str) -> bytes:
    return json.dumps(
        {
            "type": f"about:blank#{status}",
            "title": title,
            "status": status,
            "detail": detail,
            "instance": path,
        },
        ensure_ascii=False,
    ).encode()


class ServiceMiddleware:
    """Request id, access log, metrics, rate limits, security headers and a start timeout."""

    def __init__(
        self, app: ASGIApp, settings: Settings, metrics: Metrics, redis: Any = None
    ) -> None:
        self.app = app
        self.settings = settings
        self.metrics = metrics
        prefix, fallback = settings.redis_key_prefix, metrics.rate_limit_fallbacks.inc
        self.reads = make_limiter(
            redis, "reads", settings.rate_limit_reads_per_minute, prefix, fallback
        )
        self.writes = make_limiter(
            redis, "writes", settings.rate_limit_writes_per_minute, prefix, fallback
        )
        self.proxies = TrustedProxies(settings.trusted_proxies, settings.client_ip_header)
        self.html_headers = security_headers(settings)
        self.html_headers_inline = security_headers(settings, inline_scripts=True)
        # Metric children by (route, method, status): `labels()` takes a lock and builds a key.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        rid = ""
        for key, value in scope.get("headers") or ():
            if key == b"x-request-id":
                rid = value.decode("latin-1")  # the last one, as a dict of the headers keeps
        if not _REQUEST_ID.match(rid):
            rid = uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        method = scope["method"]
        path = scope["path"]
        client = client_address(scope, self.proxies)
        state["client_address"] = client
        status = 500

        raw = scope.get("raw_path") or b""
        if b"%00" in raw or b"\x00" in raw or b"%00" in scope.get("query_string", b""):
            # NUL can be stored in no PostgreSQL text: refuse it at the door, not at the query.
            await self._send_problem(
                send, 400, "Requête invalide", "octet nul (%00) dans l'adresse", path, rid, {}
            )
            self._record(scope, method, path, 400, started, rid, client)
            return
        if not path.startswith(EXEMPT):
            if method in WRITE_METHODS:
                # Keyed by client, never by the Authorization header: a new made-up token
                # must not buy a fresh bucket.
                wait = await self.writes.wait("ip:" + client)
            else:
                wait = await self.reads.wait("ip:" + client)
            if wait > 0:
                self.metrics.rate_limited.inc()
                await self._send_problem(
                    send,
                    429,
                    "Trop de requêtes",
                    "limite de débit atteinte",
                    path,
                    rid,
                    {"retry-after": str(max(1, round(wait)))},
                )
                self._record(scope, method, path, 429, started, rid, client)
                return

        # One future wakes this coroutine at the first of: the response starts, the app ends,
        # the timeout expires. (The app runs as its own task so that a timed-out request is
        # answered at once, even when the app cannot be interrupted — a query in a thread.)
        loop = asyncio.get_running_loop()
        wake = loop.create_future()
        response_started = False

        def wake_up(_: object = None) -> None:
            if not wake.done():
                wake.set_result(None)

        rid_header = (b"x-request-id", rid.encode())

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                hdrs = list(message.get("headers") or [])
                hdrs.append(rid_header)
                ctype = next((v for k, v in hdrs if k.lower() == b"content-type"), b"")
                if ctype.startswith(b"text/html"):
                    inline = path.startswith(INLINE_SCRIPT_PATHS)
                    hdrs.extend(self.html_headers_inline if inline else self.html_headers)
                message["headers"] = hdrs
                response_started = True
                wake_up()
            await send(message)

        self.metrics.in_flight.inc()
        task = loop.create_task(self.app(scope, receive, send_wrapper))
        task.add_done_callback(wake_up)
        # The timeout bounds the wait for the *start* of a response: a long streamed export
        # that has begun is not cut.
        timer = loop.call_later(self.settings.request_timeout_s, wake_up)
        try:
            try:
                await wake
            except asyncio.CancelledError:
                task.cancel()  # the server gave up on this request: so does the app
                raise
            finally:
                timer.cancel()
            if not response_started and not task.done():
                task.cancel()
                status = 503
                await self._send_problem(
                    send,
                    503,
                    "Service momentanément indisponible",
                    "la requête a dépassé le temps imparti",
                    path,
                    rid,
                    {"retry-after": "5"},
                )
            else:
                await task
        finally:
            self.metrics.in_flight.dec()
            self._record(scope, method, path, status, started, rid, client)

    async def _send_problem(
        self,
        send: Send,
        status: int,
        title: str,
        detail: str,
        path: str,
        rid: str,
        extra: dict[str, str],
    ) -> None:
        body = _problem(status, title, detail, path)
        hdrs = [
            (b"content-type", b"application/problem+json"),
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", rid.encode()),
            *((k.encode(), v.encode()) for k, v in extra.items()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": hdrs})
        await send({"type": "http.response.body", "body": body})

    def _record(
        self,
        scope: Scope,
        method: str,
        path: str,
        status: int,
        started: float,
        rid: str,
        client: str,
    ) -> None:
        route_obj = scope.get("route")
        route = getattr(route_obj, "path", None)
        if route is None:
            # Plain Starlette routes (/openapi.json, /docs) set no route object; their paths
            # are fixed, so using the path keeps the label set bounded. Anything else is lumped.
            if path.startswith("/static/"):
                route = "static"
            elif "endpoint" in scope and not scope.get("path_params"):
                route = path
            else:
                route = "unmatched"
        elapsed = time.perf_counter() - started
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            children = (
                self.metrics.requests.labels(route, method, str(status)),
                self.metrics.latency.labels(route, method),
            )
            if len(self._children) < 4096:  # methods are the client's text: stay bounded
                self._children[key] = children
        children[0].inc()
        children[1].observe(elapsed)
        log.info(
            "request",
            extra={
                "request_id": rid,
                "method": method,
                "path": path,  # never the query string: it may carry personal search terms
                "route": route,
                "status": status,
                "duration_ms": round(elapsed * 1000, 1),
                "client": client,
            },
        )
