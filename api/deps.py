"""Request dependencies: database connections per request (reads may go to replicas), tokens."""

from __future__ import annotations

import itertools
import math
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any

from fastapi import Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from sqlalchemy.engine import Connection, Engine
from starlette.concurrency import run_in_threadpool

from api.errors import Problem
from api.ratelimit import RateLimiter, TrustedProxies, client_address
from carteco.auth import AuthError, Token, verify_token
from carteco.settings import Settings
from carteco.text import ascii_int

# The dependencies that do no I/O are coroutines: FastAPI runs a plain `def` dependency in the
# thread pool, and each such hop costs CPU on every request (more under concurrency: it is
# what made small items pages cost more than wave-1's). Code outside `Depends` reads
# `request.app.state` directly.


async def get_engine(request: Request) -> Engine:
    """The primary's engine (writes, and reads that must see the latest write)."""
    return request.app.state.engine  # type: ignore[no-any-return]


def get_read_engine(request: Request) -> Engine:
    """An engine for public reads: the next replica when replicas are configured."""
    cycle: itertools.cycle[Engine] | None = request.app.state.read_cycle
    return next(cycle) if cycle is not None else request.app.state.engine


async def get_settings(request: Request) -> Settings:
    """The app's settings."""
    return request.app.state.settings  # type: ignore[no-any-return]


def get_conn(request: Request) -> Iterator[Connection]:
    """A pooled read connection for the duration of the request."""
    with get_read_engine(request).connect() as conn:
        yield conn


def client_of(request: Request) -> str:
    """The client's address, as every rate limit sees it (api.ratelimit.client_address)."""
    known = request.scope.get("state", {}).get("client_address")
    if known:
        return str(known)
    settings: Settings = request.app.state.settings
    proxies = TrustedProxies(settings.trusted_proxies, settings.client_ip_header)
    return client_address(request.scope, proxies)


def bearer(request: Request) -> str | None:
    """The token of an `Authorization: Bearer` header."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def authenticate(request: Request, scope: str) -> Token:
    """The request's token, which must hold `scope`: 401 / 403, or 429 after repeated failures.

    Failed authentications are counted per client address (never per token: every made-up
    token would get a fresh allowance); past `auth_failures_per_minute` the client gets a 429
    before its token is even looked up. Headers only: the body is never read here.
    """
    state = request.scope.setdefault("state", {})
    known: Token | None = state.get("carteco_token")
    if known is not None and (scope in known.scopes or "admin" in known.scopes):
        return known
    limiter: RateLimiter = request.app.state.auth_failures
    key = "ip:" + client_of(request)
    wait = await limiter.peek(key)
    if wait > 0:
        raise Problem(
            429,
            "trop d'échecs d'authentification depuis votre adresse ; réessayez plus tard",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
    engine: Engine = request.app.state.engine
    token = bearer(request)

    def check() -> Token:
        with engine.begin() as conn:
            return verify_token(conn, token, scope)

    try:
        found = await run_in_threadpool(check)
    except AuthError as exc:
        headers = {}
        if exc.kind == "unauthorized":
            await limiter.wait(key)  # one failure counted against the client's address
            headers["WWW-Authenticate"] = 'Bearer realm="carteco"'
        raise Problem(exc.status, exc.message, headers=headers) from exc
    state["carteco_token"] = found
    return found


def require(scope: str) -> Callable[..., Awaitable[Token]]:
    """A dependency: the request's token, which must hold `scope` (401 / 403 / 429 otherwise)."""

    async def dep(request: Request) -> Token:
        return await authenticate(request, scope)

    dep.carteco_scope = scope  # type: ignore[attr-defined]  # read by AuthFirstRoute
    return dep


def _required_scopes(dependant: Dependant) -> list[str]:
    found: list[str] = []
    for sub in dependant.dependencies:
        scope = getattr(sub.call, "carteco_scope", None)
        if scope is not None:
            found.append(scope)
        found.extend(_required_scopes(sub))
    return found


class AuthFirstRoute(APIRoute):
    """A route that checks its `require(...)` token on the headers before reading any body.

    FastAPI reads and parses a request body (JSON, multipart files spooled to disk) before it
    runs the dependencies; here authentication comes first, so an anonymous client cannot make
    the service read, parse or store its upload.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The usual handler, preceded by the token check."""
        handler = super().get_route_handler()
        scopes = _required_scopes(self.dependant)
        if not scopes:
            return handler

        async def auth_first(request: Request) -> Response:
            for scope in scopes:
                await authenticate(request, scope)
            return await handler(request)

        return auth_first


def int_param(raw: str, name: str, lo: int, hi: int, expected: str | None = None) -> int:
    """An ASCII decimal integer from a request (query, path, header) in [lo, hi], else a 400.

    `str.isdigit()` accepts '²' or '①', which `int()` then refuses (a 500): every integer
    read from a request goes through here (carteco.text.ascii_int) instead.
    """
    value = ascii_int(raw, lo, hi)
    if value is None:
        reason = expected or f"entier de {lo} à {hi} attendu"
        raise Problem(400, f"{name} : {reason}", errors=[{"parameter": name, "reason": reason}])
    return value
