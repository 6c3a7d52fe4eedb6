"""Request dependencies: database connections per request (reads may go to replicas)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from fastapi import Request
from sqlalchemy.engine import Connection, Engine

from api.errors import Problem
from carteco.settings import Settings
from carteco.text import ascii_int


def get_engine(request: Request) -> Engine:
    """The primary's engine (writes, and reads that must see the latest write)."""
    return request.app.state.engine  # type: ignore[no-any-return]


def get_read_engine(request: Request) -> Engine:
    """An engine for public reads: the next replica when replicas are configured."""
    cycle: itertools.cycle[Engine] | None = request.app.state.read_cycle
    return next(cycle) if cycle is not None else get_engine(request)


def get_settings(request: Request) -> Settings:
    """The app's settings."""
    return request.app.state.settings  # type: ignore[no-any-return]


def get_conn(request: Request) -> Iterator[Connection]:
    """A pooled read connection for the duration of the request."""
    with get_read_engine(request).connect() as conn:
        yield conn


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
