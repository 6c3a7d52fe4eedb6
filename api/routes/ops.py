"""Operations endpoints: readiness and Prometheus metrics."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.assets import ASSETS
from api.errors import Problem
from carteco import db


def ops_router() -> APIRouter:
    """`/readyz` (database reachable, migrations current) and `/metrics`."""
    router = APIRouter(tags=["santé"])

    @router.get("/readyz", summary="Prêt à servir : base joignable, schéma à jour")
    def readyz(request: Request) -> dict[str, object]:
        engine = request.app.state.engine
        try:
            with engine.connect() as conn:
                current = db.current_revisions(conn)
        except sa.exc.SQLAlchemyError as exc:
            raise Problem(
                503, "la base de données ne répond pas", headers={"Retry-After": "5"}
            ) from exc
        heads = request.app.state.head_revisions
        if current != heads:
            raise Problem(
                503,
                "schéma de base non à jour : lancez `carteco db upgrade`",
                headers={"Retry-After": "30"},
            )
        return {"status": "ready", "migrations": sorted(current)}

    @router.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> Response:
        return Response(
            generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST
        )

    return router


def docs_router() -> APIRouter:
    """`/docs`: Swagger UI served from the package (FastAPI's default loads it from a CDN)."""
    from fastapi.openapi.docs import get_swagger_ui_html

    router = APIRouter()

    @router.get("/docs", include_in_schema=False)
    def docs() -> Response:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="Carteco — API",
            swagger_js_url=ASSETS.url("vendor/swagger-ui/swagger-ui-bundle.js"),
            swagger_css_url=ASSETS.url("vendor/swagger-ui/swagger-ui.css"),
            swagger_favicon_url=ASSETS.url("vendor/swagger-ui/favicon-32x32.png"),
            # Swagger UI otherwise draws a badge fetched from validator.swagger.io (for any
            # host but localhost): the page must render offline and call no third party.
            swagger_ui_parameters={"validatorUrl": None},
        )

    return router
