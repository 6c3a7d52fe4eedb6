"""The Observatoire: territorial panoramas and coverage (distance to the nearest structure).

Thin handlers: the request objects come from `api.params`, the figures from
`carteco.observatoire`, the page from its template (the same HTML the CLI prints to PDF).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.engine import Connection

from api.deps import get_conn
from api.params import (
    CoverageQuery,
    TerritoryRef,
    coverage_query,
    panorama_format,
    territory_ref,
)
from api.responses import GEOJSON, json_bytes
from api.streaming import content_disposition
from carteco.observatoire.coverage import coverage, public, white_zones_geojson
from carteco.observatoire.panorama import panorama
from carteco.observatoire.render import coverage_csv, panorama_csv, panorama_html

CSV = "text/csv; charset=utf-8"


def observatoire_router() -> APIRouter:
    """`/territories/{level}/{code}/panorama`, `/territoires/{level}/{code}/panorama`,
    `/coverage`."""
    router = APIRouter(tags=["observatoire"])

    @router.get(
        "/territories/{level}/{code}/panorama",
        summary="Panorama d'un territoire : familles, secteurs, emplois, évolution, comparaisons",
    )
    def panorama_data(
        conn: Connection = Depends(get_conn),
        t: TerritoryRef = Depends(territory_ref),
        f: str = Depends(panorama_format),
    ) -> Response:
        doc = panorama(conn, t.level, t.code)
        if doc is None:
            raise t.unknown()
        if f == "csv":
            name = f"panorama_{t.level}_{t.code}.csv"
            return Response(
                ("\ufeff" + panorama_csv(doc)).encode(),
                media_type=CSV,
                headers={"content-disposition": content_disposition(name)},
            )
        if f == "html":
            return HTMLResponse(panorama_html(doc))
        return Response(json_bytes(doc), media_type="application/json")

    @router.get(
        "/territoires/{level}/{code}/panorama",
        response_class=HTMLResponse,
        summary="Panorama d'un territoire (page en français)",
    )
    def panorama_page(
        conn: Connection = Depends(get_conn),
        t: TerritoryRef = Depends(territory_ref),
    ) -> HTMLResponse:
        doc = panorama(conn, t.level, t.code)
        if doc is None:
            raise t.unknown()
        return HTMLResponse(panorama_html(doc))

    @router.get(
        "/coverage",
        summary="Couverture : distance à la structure la plus proche, population à portée",
    )
    def coverage_data(
        conn: Connection = Depends(get_conn),
        q: CoverageQuery = Depends(coverage_query),
    ) -> Response:
        result = coverage(
            conn, q.level, q.code, q.sectors, q.radii_km, with_geometry=q.f == "geojson"
        )
        if result is None:
            raise TerritoryRef(q.level, q.code, q.level).unknown()
        if q.f == "geojson":
            return Response(json_bytes(white_zones_geojson(result)), media_type=GEOJSON)
        if q.f == "csv":
            name = f"couverture_{q.level}_{q.code}.csv"
            return Response(
                ("\ufeff" + coverage_csv(result)).encode(),
                media_type=CSV,
                headers={"content-disposition": content_disposition(name)},
            )
        return Response(json_bytes(public(result)), media_type="application/json")

    return router
