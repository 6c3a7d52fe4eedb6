"""Request dependencies: a database connection per request, the settings."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import Request
from sqlalchemy.engine import Connection, Engine

from carteco.settings import Settings


def get_engine(request: Request) -> Engine:
    """The app's engine."""
    return request.app.state.engine  # type: ignore[no-any-return]


def get_settings(request: Request) -> Settings:
    """The app's settings."""
    return request.app.state.settings  # type: ignore[no-any-return]


def get_conn(request: Request) -> Iterator[Connection]:
    """A pooled connection for the duration of the request (read-only work)."""
    with get_engine(request).connect() as conn:
        yield conn
