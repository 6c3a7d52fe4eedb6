"""Public data behind pages: territory outlines as GeoJSON (the map lives in map.py)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from sqlalchemy.engine import Connection

from api.deps import get_conn
from api.errors import Problem
from carteco.models import TERRITORY_LEVELS
from carteco.registry import territories_geojson


def pages_router() -> APIRouter:
    """`/carte/territoires/{level}.geojson` (the map itself is in api.routes.map)."""
    router = APIRouter(tags=["pages"])

    @router.get("/carte/territoires/{level}.geojson", summary="Contours d'un niveau de territoire")
    def carte_territoires(level: str, conn: Connection = Depends(get_conn)) -> Response:
        if level not in TERRITORY_LEVELS:
            raise Problem(404, f"niveau de territoire inconnu : {level}")
        return Response(territories_geojson(conn, level), media_type="application/geo+json")

    return router
