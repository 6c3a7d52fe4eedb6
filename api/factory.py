"""The application factory: `create_app(settings)` builds the whole service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from api.errors import install_error_handlers
from api.routes.health import health_router
from api.routes.pages import pages_router
from carteco import __version__, db
from carteco.settings import Settings

STATIC_DIR = Path(__file__).parent / "static"


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the Carteco API and public pages for the given settings."""
    settings = settings or Settings()
    engine = db.make_engine(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        engine.dispose()

    app = FastAPI(
        title="Carteco",
        version=__version__,
        description="Registre et carte des structures de l'économie sociale et solidaire.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    install_error_handlers(app)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["GET", "HEAD", "OPTIONS"],
        allow_headers=["*"],
        expose_headers=["ETag", "Link", "Content-Crs", "Content-Disposition"],
        max_age=600,
    )
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(health_router())
    app.include_router(pages_router())
    return app


def app_from_env() -> FastAPI:
    """Factory used by `carteco serve` (uvicorn --factory): settings from the environment."""
    return create_app(Settings())
