"""Public HTML pages: the home page and the first map of the registry."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.engine import Connection

from api.deps import get_conn
from api.errors import Problem
from api.templating import TEMPLATES
from carteco.models import TERRITORY_LEVELS
from carteco.registry import (
    registry_summary,
    sector_legend,
    structures_geojson,
    territories_geojson,
)


def pages_router() -> APIRouter:
    """`/` (accueil) and `/carte` with its GeoJSON data."""
    router = APIRouter(tags=["pages"])

    @router.get("/", response_class=HTMLResponse, include_in_schema=False)
    def home(request: Request, conn: Connection = Depends(get_conn)) -> HTMLResponse:
        return TEMPLATES.TemplateResponse(
            request, "accueil.html", {"summary": registry_summary(conn)}
        )

    @router.get("/carte", response_class=HTMLResponse, summary="Carte des structures")
    def carte(request: Request, conn: Connection = Depends(get_conn)) -> HTMLResponse:
        legend = [s for s in sector_legend(conn) if s["n"] > 0]
        return TEMPLATES.TemplateResponse(
            request, "carte.html", {"legend": legend, "summary": registry_summary(conn)}
        )

    @router.get("/carte/structures.geojson", summary="Structures localisées (GeoJSON)")
    def carte_data(conn: Connection = Depends(get_conn)) -> Response:
        return Response(structures_geojson(conn), media_type="application/geo+json")

    @router.get("/carte/territoires/{level}.geojson", summary="Contours d'un niveau de territoire")
    def carte_territoires(level: str, conn: Connection = Depends(get_conn)) -> Response:
        if level not in TERRITORY_LEVELS:
            raise Problem(404, f"niveau de territoire inconnu : {level}")
        return Response(territories_geojson(conn, level), media_type="application/geo+json")

    return router
