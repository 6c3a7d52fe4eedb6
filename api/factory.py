"""The application factory: `create_app(settings)` builds the whole service."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.gzip import GZipMiddleware

from api.assets import ASSETS
from api.errors import install_error_handlers
from api.guards import GuardMiddleware
from api.observability import Metrics, ServiceMiddleware, configure_logging
from api.openapi import install_openapi
from api.ratelimit import make_limiter, redis_client
from api.routes.ban import BatchGate, ban_router, location_router
from api.routes.diagnostics import diagnostics_router
from api.routes.features import features_router
from api.routes.health import health_router
from api.routes.map import map_router
from api.routes.observatoire import observatoire_router
from api.routes.ops import docs_router, ops_router
from api.routes.territories import territories_router
from api.routes.tiles import tiles_router
from api.routes.writes import writes_router
from carteco import __version__, db
from carteco.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the Carteco API and public pages for the given settings."""
    settings = settings or Settings()
    configure_logging(settings)
    engine = db.make_engine(settings)
    replicas = [
        db.make_engine(settings, db.normalise_url(u)) for u in settings.database_replica_urls
    ]

    # CSV geocoding gets a pool of its own, as small as the jobs allowed at once: a burst of
    # batch jobs waits for these connections and never for the ones reads use.
    batch_engine = db.make_engine(
        settings.model_copy(
            update={"pool_size": max(1, settings.ban_csv_max_concurrent), "pool_max_overflow": 0}
        ),
        engine.url.render_as_string(hide_password=False),
    )

    redis = redis_client(settings.redis_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        for e in (engine, batch_engine, *replicas):
            e.dispose()
        if redis is not None:
            await redis.aclose()

    app = FastAPI(
        title="Carteco",
        version=__version__,
        description="Registre et carte des structures de l'économie sociale et solidaire.",
        lifespan=lifespan,
        docs_url=None,  # served by docs_router from the package: no CDN
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.batch_engine = batch_engine
    app.state.batch_gate = BatchGate(settings.ban_csv_max_concurrent, settings.ban_csv_per_client)
    app.state.read_cycle = itertools.cycle(replicas) if replicas else None
    app.state.head_revisions = db.head_revisions(str(engine.url))
    app.state.metrics = Metrics(
        {"primary": engine, **{f"replica{i}": e for i, e in enumerate(replicas)}}
    )
    # Failed authentications per client address: N at once, then N a minute.
    app.state.auth_failures = make_limiter(
        redis,
        "authfail",
        settings.auth_failures_per_minute,
        settings.redis_key_prefix,
        app.state.metrics.rate_limit_fallbacks.inc,
        burst=float(max(1, settings.auth_failures_per_minute)),
    )
    install_error_handlers(app)
    # Innermost: the Host check and body caps see the request before any route, inside CORS
    # (browsers can read the refusal) and the service middleware (logged, request id).
    app.add_middleware(GuardMiddleware, settings=settings)
    # Downloads and pages are gzipped when the client asks (Accept-Encoding).
    app.add_middleware(GZipMiddleware, minimum_size=1024)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["GET", "HEAD", "OPTIONS", "POST", "PATCH", "DELETE"],
        allow_headers=["*"],
        expose_headers=[
            "ETag",
            "Link",
            "Content-Crs",
            "Content-Disposition",
            "Last-Modified",
            "Location",
        ],
        max_age=600,
    )
    # Added last, so it wraps everything (CORS included): every response gets its request id.
    app.add_middleware(ServiceMiddleware, settings=settings, metrics=app.state.metrics, redis=redis)
    app.mount("/static", ASSETS, name="static")
    app.include_router(health_router())
    app.include_router(ops_router())
    app.include_router(docs_router())
    app.include_router(ban_router(), prefix="/ban")
    app.include_router(location_router())
    app.include_router(features_router(settings))
    app.include_router(territories_router(settings))
    app.include_router(writes_router())
    app.include_router(tiles_router())
    app.include_router(map_router())
    app.include_router(observatoire_router())
    app.include_router(diagnostics_router())
    install_openapi(app)
    return app


def app_from_env() -> FastAPI:
    """Factory used by `carteco serve` (uvicorn --factory): settings from the environment."""
    return create_app(Settings())
