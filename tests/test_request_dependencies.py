"""Request dependencies that do no I/O run on the event loop, not in the thread pool.

FastAPI runs every plain `def` dependency through the thread pool; each hop costs CPU on
every request, more under concurrency. Wave 2's request objects (api/params.py) had made a
small items page hop 7 times against wave-1's 5, and cost 1.27× its CPU (bench/RESULTS.md).
Only dependencies that wait on the database may be plain functions.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

import anyio.to_thread
import pytest

from api.factory import create_app
from carteco.settings import Settings

# Plain `def` on purpose: each takes a pooled connection or runs a query.
BLOCKING = {"get_conn", "territory_structures_query", "within_query"}


def _endpoints(app: Any) -> Iterator[Any]:
    for route in app.routes:
        inner = getattr(route, "original_router", None)
        for r in inner.routes if inner is not None else [route]:
            if hasattr(r, "dependant"):
                yield r


def _sync_dependencies(dependant: Any, found: set[str]) -> set[str]:
    for sub in dependant.dependencies:
        _sync_dependencies(sub, found)
        call = sub.call
        if call is not None and not (
            inspect.iscoroutinefunction(call) or inspect.isasyncgenfunction(call)
        ):
            found.add(call.__name__)
    return found


def test_only_blocking_dependencies_are_plain_functions(settings: Settings) -> None:
    """Every dependency of every route is a coroutine, but those that use the database."""
    app = create_app(settings)
    endpoints = list(_endpoints(app))
    assert len(endpoints) > 40, "the walk found too few routes"
    offenders = {
        f"{r.path}: {name}"
        for r in endpoints
        for name in _sync_dependencies(r.dependant, set()) - BLOCKING
    }
    assert not offenders, sorted(offenders)


@pytest.mark.parametrize(
    ("path", "most"),
    [
        # get_conn (enter and exit) and the handler; wave-1 took 5 and 4.
        ("/collections/structures/items?limit=10&bbox=2.3,48.8,2.4,48.9", 3),
        ("/collections/structures/items/1", 3),
        ("/conformance", 1),
    ],
)
def test_thread_hops_per_request(
    client: Any, monkeypatch: pytest.MonkeyPatch, path: str, most: int
) -> None:
    """A page of items takes at most three trips through the thread pool."""
    hops = 0
    run_sync = anyio.to_thread.run_sync

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal hops
        hops += 1
        return await run_sync(*args, **kwargs)

    client.get(path)  # warm: first-use caches
    monkeypatch.setattr(anyio.to_thread, "run_sync", counted)
    r = client.get(path)
    assert r.status_code in (200, 404), r.text
    assert hops <= most, hops
