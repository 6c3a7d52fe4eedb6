"""Door checks made on headers, before any route reads a byte of body: Host and body caps.

One pure-ASGI middleware does both, in one pass over the headers, with everything it compares
against computed once at start-up (allowed hosts, per-route caps). A 413 for a declared
Content-Length is sent without reading the body, and a chunked body is counted as it arrives,
refused the moment it crosses its cap. Caps are per route (settings `max_import_bytes`,
`max_ban_csv_bytes`, `max_within_bytes`) and `max_body_bytes` for every other route. Refusals
are problem details like every other error.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import problem_response
from carteco.settings import Settings

# Probes (load balancers, Kubernetes) call these by IP address: they build no URL.
HOST_EXEMPT = ("/healthz", "/readyz", "/metrics")
HOST_REFUSED = "en-tête Host non autorisé : réglez CARTECO_PUBLIC_URL ou CARTECO_ALLOWED_HOSTS"
# Methods whose requests carry no body unless they declare one (Content-Length or
# Transfer-Encoding): the server frames HTTP/1.1 messages by those headers alone.
BODILESS = frozenset({"GET", "HEAD", "OPTIONS"})


class BodyTooLarge(HTTPException):
    """A request body crossed its route's cap (413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"corps de requête trop volumineux ({limit} octets au plus)")
        self.limit = limit


# Public contribution forms and the moderation pages: one cap of their own, by path prefix.
CONTRIB_PREFIXES = ("/contributions", "/moderation", "/besoins-fonciers")


def route_caps(settings: Settings) -> dict[tuple[str, str], int]:
    """The routes whose body cap is not `max_body_bytes`, keyed by (method, path)."""
    return {
        ("POST", "/imports"): settings.max_import_bytes,
        ("POST", "/ban/search/csv/"): settings.max_ban_csv_bytes,
        ("POST", "/structures/within"): settings.max_within_bytes,
    }


def body_cap(settings: Settings, method: str, path: str) -> int:
    """The body cap of a route, in bytes."""
    if method == "POST" and path.startswith(CONTRIB_PREFIXES):
        return settings.contrib_max_bytes
    return route_caps(settings).get((method, path), settings.max_body_bytes)


def _host_name(raw: bytes) -> str:
    """A Host header's name: no port, lower case, no trailing dot."""
    host = raw.decode("latin-1").strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if ":" in host else host


def request_host(scope: Scope) -> str | None:
    """The Host header's name (no port, lower case), or None when absent."""
    raw = next((v for k, v in scope.get("headers") or [] if k.lower() == b"host"), None)
    return None if raw is None else _host_name(raw)


def allowed_host_names(settings: Settings) -> frozenset[str] | None:
    """The Host names links may be built from; None when any Host is fine."""
    if settings.public_url or "*" in settings.allowed_hosts:
        return None
    return frozenset(h.lower().rstrip(".") for h in settings.allowed_hosts)


def host_allowed(settings: Settings, scope: Scope) -> bool:
    """Whether absolute URLs may be built from this request's Host header."""
    allowed = allowed_host_names(settings)
    if allowed is None:
        return True
    host = request_host(scope)
    # HTTP/1.0 without Host: URLs then come from the server's own address.
    return host is None or host.rstrip(".") in allowed


class GuardMiddleware:
    """400 for a Host outside `allowed_hosts` (without `public_url`); 413 past a body's cap.

    Checks the Host first (a refused Host reads nothing), then the body: a declared
    Content-Length over the route's cap is refused unread, any other body counted as it comes.
    """

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.allowed = allowed_host_names(settings)
        self.caps = route_caps(settings)
        self.default_cap = settings.max_body_bytes
        self.contrib_cap = settings.contrib_max_bytes
        # Raw Host header values already judged, so a request pays one dict look-up. Bounded:
        # an attacker sending ever new Hosts only fills it, then each is judged afresh.
        self._hosts: dict[bytes, bool] = {}

    def _host_ok(self, raw: bytes | None) -> bool:
        if self.allowed is None or raw is None:
            return True
        ok = self._hosts.get(raw)
        if ok is None:
            ok = _host_name(raw).rstrip(".") in self.allowed
            if len(self._hosts) < 1024:
                self._hosts[raw] = ok
        return ok

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request, or refuse it on its headers."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = length = None
        chunked = False
        for key, value in scope.get("headers") or ():
            # ASGI servers give header names in lower case; a hand-built scope may not.
            if key == b"host" or key.lower() == b"host":
                if host is None:
                    host = value
            elif key == b"content-length" or key.lower() == b"content-length":
                if length is None:
                    length = value
            elif key == b"transfer-encoding" or key.lower() == b"transfer-encoding":
                chunked = True
        path = scope["path"]
        if not self._host_ok(host) and not path.startswith(HOST_EXEMPT):
            # The bad value is not echoed back: it is the attacker's text.
            await _refuse(scope, receive, send, 400, HOST_REFUSED)
            return
        method = scope["method"]
        if length is None and not chunked and method in BODILESS:
            await self.app(scope, receive, send)  # no body to cap
            return
        if method != "POST":
            cap = self.default_cap
        elif path.startswith(CONTRIB_PREFIXES):
            cap = self.contrib_cap
        else:
            cap = self.caps.get((method, path), self.default_cap)
        if length is not None:
            try:
                size = int(length)
            except ValueError:
                size = -1
            if size < 0:
                await _refuse(scope, receive, send, 400, "en-tête Content-Length invalide")
                return
            if size > cap:
                # Refused on the header alone: not one byte of the body is read.
                await _refuse(scope, receive, send, 413, BodyTooLarge(cap).detail)
                return

        received = 0
        started = False

        async def capped_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    raise BodyTooLarge(cap)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, capped_receive, tracking_send)
        except BodyTooLarge as exc:
            # Raised outside the app's own error handlers (e.g. while a middleware reads).
            if started:
                raise
            await _refuse(scope, receive, send, 413, str(exc.detail))


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, detail: str) -> None:
    # The client may still be sending: ask it to close rather than read what it sends.
    response = problem_response(Request(scope), status, detail, headers={"Connection": "close"})
    await response(scope, receive, send)
