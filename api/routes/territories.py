"""Territory queries: a territory, its structures, its statistics; structures near a point or
within a polygon. Plain JSON / GeoJSON, same filters as the OGC items."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy.engine import Connection

from api.deps import get_conn
from api.errors import run_db
from api.params import (
    FILTERS,
    MAX_NEAREST,
    MAX_RADIUS_M,
    STRUCTURES,
    NearbyQuery,
    StructuresQuery,
    TerritoryRef,
    as_of_query,
    nearby_query,
    ogc_parameters,
    territory_geometry,
    territory_ref,
    territory_structures_query,
    within_query,
)
from api.responses import GEOJSON, feature_collection, json_bytes
from api.urls import public_base
from carteco.features import items_page
from carteco.features import nearby as nearby_features
from carteco.history import PARAM as AS_OF
from carteco.settings import Settings
from carteco.stats import LEVELS, territory, territory_stats


def _with_distance(feature: str, distance: float) -> str:
    """Add `distance_m` to the properties, the last member of the SQL-built feature text."""
    head = feature[:-2]  # without the closing "}}" of properties and feature
    sep = "" if head.endswith("{") else ","  # empty properties (properties=,)
    return f'{head}{sep}"distance_m":{distance:.1f}}}}}'


def _page_meta(page: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"numberReturned": page.number_returned}
    if page.number_matched is not None:
        meta["numberMatched"] = page.number_matched
    return meta


def territories_router(settings: Settings | None = None) -> APIRouter:
    """`/territories/...` and `/structures/nearby`, `/structures/within`."""
    settings = settings or Settings()
    router = APIRouter(tags=["territoires"])
    level_param = {
        "name": "level",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": list(LEVELS)},
        "description": "Niveau : region, departement, epci, ept, commune, arrondissement, qpv.",
    }
    code_param = {
        "name": "code",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": "Code officiel (INSEE, SIREN d'EPCI/EPT).",
    }

    @router.get(
        "/territories/{level}/{code}",
        summary="Un territoire : nom, parents, population, surface, géométrie",
        openapi_extra={
            "parameters": [
                level_param,
                code_param,
                {
                    "name": "geometry",
                    "in": "query",
                    "schema": {"type": "boolean", "default": True},
                    "description": "Inclure le contour.",
                },
            ]
        },
    )
    def get_territory(
        conn: Connection = Depends(get_conn),
        geometry: bool = Depends(territory_geometry),
        t: TerritoryRef = Depends(territory_ref),
    ) -> Response:
        found = territory(conn, t.level, t.code, geometry=geometry)
        if found is None:
            raise t.unknown()
        return Response(json_bytes(found), media_type="application/json")

    @router.get(
        "/territories/{level}/{code}/structures",
        summary="Structures d'un territoire (GeoJSON, mêmes filtres que les objets OGC)",
        openapi_extra={
            "parameters": [
                level_param,
                code_param,
                *[p for p in ogc_parameters(settings) if p["name"] in FILTERS],
            ]
        },
    )
    def territory_structures(
        request: Request,
        conn: Connection = Depends(get_conn),
        t: TerritoryRef = Depends(territory_ref),
        q: StructuresQuery = Depends(territory_structures_query),
    ) -> Response:
        limit, offset = q.limit, q.offset
        page = run_db(
            items_page,
            conn,
            STRUCTURES,
            q.where,
            q.binds,
            limit=limit,
            offset=offset,
            out=q.output,
        )
        href = f"{public_base(request)}/territories/{t.level}/{t.code}/structures"
        base = {k: v for k, v in q.params.items() if k != "offset"}
        links = [{"rel": "self", "type": GEOJSON, "href": href + "?" + urlencode(q.params)}]
        if page.has_next:
            more = urlencode({**base, "offset": offset + limit, "limit": limit})
            links.append({"rel": "next", "type": GEOJSON, "href": f"{href}?{more}"})
        if offset:
            less = urlencode({**base, "offset": max(0, offset - limit), "limit": limit})
            links.append({"rel": "prev", "type": GEOJSON, "href": f"{href}?{less}"})
        meta = _page_meta(page)
        meta["links"] = links
        return feature_collection(page.features, meta)

    @router.get(
        "/territories/{level}/{code}/stats",
        summary="Statistiques d'un territoire comparé à ses parents et à ses voisins",
        openapi_extra={
            "parameters": [
                level_param,
                code_param,
                *[p for p in ogc_parameters(settings) if p["name"] == AS_OF],
            ]
        },
    )
    def stats(
        conn: Connection = Depends(get_conn),
        t: TerritoryRef = Depends(territory_ref),
        as_of: datetime | None = Depends(as_of_query),
    ) -> Response:
        result = territory_stats(conn, t.level, t.code, as_of)
        if result is None:
            raise t.unknown()
        return Response(json_bytes(result), media_type="application/json")

    nearby_params = [
        {"name": "lon", "in": "query", "required": True, "schema": {"type": "number"}},
        {"name": "lat", "in": "query", "required": True, "schema": {"type": "number"}},
        {
            "name": "radius",
            "in": "query",
            "schema": {"type": "number", "minimum": 0, "maximum": MAX_RADIUS_M},
            "description": "Rayon en mètres (distance géodésique).",
        },
        {
            "name": "nearest",
            "in": "query",
            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_NEAREST},
            "description": "Les N structures les plus proches (au lieu d'un rayon).",
        },
    ]

    @router.get(
        "/structures/nearby",
        summary="Structures autour d'un point (rayon en mètres, ou les N plus proches)",
        openapi_extra={
            "parameters": nearby_params
            + [p for p in ogc_parameters(settings) if p["name"] in FILTERS - {"offset"}]
        },
    )
    def nearby(
        conn: Connection = Depends(get_conn),
        q: NearbyQuery = Depends(nearby_query),
    ) -> Response:
        rows = run_db(
            nearby_features, conn, STRUCTURES, q.where, q.binds, q.output, q.lon, q.lat,
            radius=q.radius, limit=q.limit, nearest=q.nearest,
        )  # fmt: skip
        feats = [_with_distance(f, d) for f, d in rows]
        return feature_collection("[" + ",".join(feats) + "]", {"numberReturned": len(feats)})

    @router.post(
        "/structures/within",
        summary="Structures dans un polygone GeoJSON (taille plafonnée, géométrie validée)",
        openapi_extra={
            "parameters": [p for p in ogc_parameters(settings) if p["name"] in FILTERS],
        },
    )
    def within(
        request: Request,
        conn: Connection = Depends(get_conn),
        q: StructuresQuery = Depends(within_query),
    ) -> Response:
        limit, offset = q.limit, q.offset
        page = run_db(
            items_page,
            conn,
            STRUCTURES,
            q.where,
            q.binds,
            limit=limit,
            offset=offset,
            out=q.output,
        )
        meta = _page_meta(page)
        meta["links"] = []
        if page.has_next:
            meta["links"].append(
                {
                    "rel": "next",
                    "type": GEOJSON,
                    "method": "POST",
                    "href": f"{public_base(request)}/structures/within?"
                    + urlencode({**q.params, "offset": offset + limit, "limit": limit}),
                }
            )
        return feature_collection(page.features, meta)

    return router
