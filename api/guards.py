"""Door checks made on headers, before any route reads a byte of body: body caps and Host.

Both are pure ASGI: a 413 for a declared Content-Length is sent without reading the body, and
a chunked body is counted as it arrives, refused the moment it crosses its cap. Caps are per
route (settings `max_import_bytes`, `max_ban_csv_bytes`, `max_within_bytes`) and
`max_body_bytes` for every other route. Refusals are problem details like every other error.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import problem_response
from carteco.settings import Settings

# Probes (load balancers, Kubernetes) call these by IP address: they build no URL.
HOST_EXEMPT = ("/healthz", "/readyz", "/metrics")


class BodyTooLarge(HTTPException):
    """A request body crossed its route's cap (413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"corps de requête trop volumineux ({limit} octets au plus)")
        self.limit = limit


def body_cap(settings: Settings, method: str, path: str) -> int:
    """The body cap of a route, in bytes."""
    if method == "POST":
        if path == "/imports":
            return settings.max_import_bytes
        if path == "/ban/search/csv/":
            return settings.max_ban_csv_bytes
        if path.startswith(("/contributions", "/moderation")):
            return settings.contrib_max_bytes
        if path == "/structures/within":
            return settings.max_within_bytes
    return settings.max_body_bytes


class BodyLimitMiddleware:
    """413 on a declared or streamed body beyond its route's cap, before the route reads it."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request under its body cap."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = body_cap(self.settings, scope["method"], scope["path"])
        declared = [v for k, v in scope.get("headers") or [] if k.lower() == b"content-length"]
        if declared:
            try:
                size = int(declared[0])
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


def request_host(scope: Scope) -> str | None:
    """The Host header's name (no port, lower case), or None when absent."""
    raw = next((v for k, v in scope.get("headers") or [] if k.lower() == b"host"), None)
    if raw is None:
        return None
    host = raw.decode("latin-1").strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if ":" in host else host


def host_allowed(settings: Settings, scope: Scope) -> bool:
    """Whether absolute URLs may be built from this request's Host header."""
    if settings.public_url or "*" in settings.allowed_hosts:
        return True
    host = request_host(scope)
    if host is None:
        return True  # HTTP/1.0 without Host: URLs then come from the server's own address
    return host.rstrip(".") in {h.lower().rstrip(".") for h in settings.allowed_hosts}


class HostMiddleware:
    """400 for a Host header outside `allowed_hosts` when no `public_url` is configured."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the request, or refuse a Host that links must not be built from."""
        if (
            scope["type"] == "http"
            and not scope["path"].startswith(HOST_EXEMPT)
            and not host_allowed(self.settings, scope)
        ):
            # The bad value is not echoed back: it is the attacker's text.
            await _refuse(
                scope,
                receive,
                send,
                400,
                "en-tête Host non autorisé : réglez CARTECO_PUBLIC_URL ou CARTECO_ALLOWED_HOSTS",
            )
            return
        await self.app(scope, receive, send)
