"""The one place absolute URLs start from: links, TileJSON, Location headers, embed snippets."""

from __future__ import annotations

from starlette.requests import Request

from api.errors import Problem
from api.guards import host_allowed
from carteco.settings import Settings


def public_base(request: Request) -> str:
    """The service's root URL as clients see it, without a trailing slash.

    `public_url` when configured; otherwise the request's own scheme and Host, which
    GuardMiddleware has already checked against `allowed_hosts` (checked again here so that no
    route can echo an unchecked Host into a link).
    """
    settings: Settings = request.app.state.settings
    if settings.public_url:
        return settings.public_url.rstrip("/")
    if not host_allowed(settings, request.scope):
        raise Problem(400, "en-tête Host non autorisé")
    return str(request.base_url).rstrip("/")
