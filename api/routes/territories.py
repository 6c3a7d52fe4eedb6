"""Territory queries: a territory, its structures, its statistics; structures near a point or
within a polygon. Plain JSON / GeoJSON, same filters as the OGC items."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import Response
from sqlalchemy.engine import Connection

from api.deps import get_conn, get_settings, int_param
from api.errors import Problem
from api.routes.features import (
    GEOJSON,
    ITEMS_PARAMS,
    base_url,
    json_bytes,
    no_nul,
    ogc_parameters,
    parse_limit,
    parse_offset,
    query_params,
    run_db,
)
from carteco.collections import COLLECTIONS
from carteco.features import (
    Output,
    in_polygon,
    in_territory,
    items_page,
    parse_properties,
    polygon_validity,
)
from carteco.features import nearby as nearby_features
from carteco.filters import (
    SIMPLE_FILTERS,
    FilterLimits,
    compile_filter,
    equality_params,
)
from carteco.settings import Settings
from carteco.stats import LEVEL_ALIASES, LEVELS, territory, territory_stats
from carteco.text import ascii_float

STRUCTURES = COLLECTIONS["structures"]
MAX_RADIUS_M = 50_000
MAX_NEAREST = 1000
MAX_POLYGON_BYTES = 1_000_000
MAX_POLYGON_VERTICES = 20_000
FILTERS = (
    ITEMS_PARAMS - {"f", "crs", "sortby", "after"}
    | set(SIMPLE_FILTERS)
    | equality_params(STRUCTURES)
)


def _with_distance(feature: str, distance: float) -> str:
    """Add `distance_m` to the properties, the last member of the SQL-built feature text."""
    head = feature[:-2]  # without the closing "}}" of properties and feature
    sep = "" if head.endswith("{") else ","  # empty properties (properties=,)
    return f'{head}{sep}"distance_m":{distance:.1f}}}}}'


def _level(level: str, code: str = "") -> str:
    no_nul("code", code)
    lv = LEVEL_ALIASES.get(level)
    if lv is None:
        raise Problem(404, f"niveau de territoire inconnu : {level} ({', '.join(LEVELS)})")
    return lv


def _filters(
    params: dict[str, str], st: Settings
) -> tuple[str, dict[str, Any], tuple[str, ...] | None]:
    # A FilterError becomes a 400 with errors[] in api/errors.py.
    where, binds = compile_filter(STRUCTURES, params, FilterLimits.from_settings(st))
    props = parse_properties(STRUCTURES, params.get("properties"))
    return where, binds, props


def _collection(features: str, meta: dict[str, Any]) -> Response:
    body = (
        '{"type":"FeatureCollection","features":' + features + "," + json_bytes(meta).decode()[1:]
    )
    return Response(body.encode(), media_type=GEOJSON)


def _float(params: dict[str, str], name: str, lo: float, hi: float) -> float:
    raw = params.get(name)
    value = ascii_float(raw) if raw is not None else None
    if value is None or not lo <= value <= hi:
        raise Problem(
            400,
            f"{name} : nombre entre {lo} et {hi} attendu",
            errors=[{"parameter": name, "reason": "nombre attendu"}],
        )
    return value


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
        level: str, code: str, request: Request, conn: Connection = Depends(get_conn)
    ) -> Response:
        params = query_params(request, {"geometry"})
        geometry = params.get("geometry", "true").lower() not in ("false", "0", "non")
        t = territory(conn, _level(level, code), code, geometry=geometry)
        if t is None:
            raise Problem(404, f"territoire inconnu : {level} {code}")
        return Response(json_bytes(t), media_type="application/json")

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
        level: str,
        code: str,
        request: Request,
        conn: Connection = Depends(get_conn),
        st: Settings = Depends(get_settings),
    ) -> Response:
        lv = _level(level, code)
        params = query_params(request, FILTERS)
        if territory(conn, lv, code, geometry=False) is None:
            raise Problem(404, f"territoire inconnu : {level} {code}")
        where, binds, props = _filters(params, st)
        where, binds = in_territory(where, binds, lv, code)
        limit = parse_limit(params, st, st.default_limit) or st.default_limit
        offset = parse_offset(params)
        page = run_db(
            items_page,
            conn,
            STRUCTURES,
            where,
            binds,
            limit=limit,
            offset=offset,
            out=Output(properties=props),
        )
        href = f"{base_url(request, st)}/territories/{lv}/{code}/structures"
        base = {k: v for k, v in params.items() if k != "offset"}
        links = [{"rel": "self", "type": GEOJSON, "href": href + "?" + urlencode(params)}]
        if page.has_next:
            q = urlencode({**base, "offset": offset + limit, "limit": limit})
            links.append({"rel": "next", "type": GEOJSON, "href": f"{href}?{q}"})
        if offset:
            q = urlencode({**base, "offset": max(0, offset - limit), "limit": limit})
            links.append({"rel": "prev", "type": GEOJSON, "href": f"{href}?{q}"})
        meta: dict[str, Any] = {"numberReturned": page.number_returned}
        if page.number_matched is not None:
            meta["numberMatched"] = page.number_matched
        meta["links"] = links
        return _collection(page.features, meta)

    @router.get(
        "/territories/{level}/{code}/stats",
        summary="Statistiques d'un territoire comparé à ses parents et à ses voisins",
        openapi_extra={"parameters": [level_param, code_param]},
    )
    def stats(
        level: str, code: str, request: Request, conn: Connection = Depends(get_conn)
    ) -> Response:
        query_params(request, set())
        result = territory_stats(conn, _level(level, code), code)
        if result is None:
            raise Problem(404, f"territoire inconnu : {level} {code}")
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
        request: Request,
        conn: Connection = Depends(get_conn),
        st: Settings = Depends(get_settings),
    ) -> Response:
        params = query_params(request, FILTERS | {"lon", "lat", "radius", "nearest"})
        lon = _float(params, "lon", -180, 180)
        lat = _float(params, "lat", -90, 90)
        if ("radius" in params) == ("nearest" in params):
            raise Problem(400, "donnez soit radius (mètres), soit nearest (nombre)")
        where, binds, props = _filters(params, st)
        out = Output(properties=props)
        if "radius" in params:
            radius = _float(params, "radius", 0, MAX_RADIUS_M)
            limit = parse_limit(params, st, st.max_features) or st.max_features
            rows = run_db(
                nearby_features, conn, STRUCTURES, where, binds, out, lon, lat,
                radius=radius, limit=limit,
            )  # fmt: skip
        else:
            n = int_param(params["nearest"], "nearest", 1, MAX_NEAREST)
            rows = run_db(nearby_features, conn, STRUCTURES, where, binds, out, lon, lat, nearest=n)
        feats = [_with_distance(f, d) for f, d in rows]
        return _collection("[" + ",".join(feats) + "]", {"numberReturned": len(feats)})

    @router.post(
        "/structures/within",
        summary="Structures dans un polygone GeoJSON (taille plafonnée, géométrie validée)",
        openapi_extra={
            "parameters": [p for p in ogc_parameters(settings) if p["name"] in FILTERS],
        },
    )
    def within(
        request: Request,
        geometry: dict[str, Any] = Body(
            ...,
            description="Polygon ou MultiPolygon GeoJSON (ou un Feature qui en porte un), CRS84.",
        ),
        conn: Connection = Depends(get_conn),
        st: Settings = Depends(get_settings),
    ) -> Response:
        params = query_params(request, FILTERS)
        size = int(request.headers.get("content-length") or 0)
        if size > MAX_POLYGON_BYTES:
            raise Problem(413, f"polygone trop volumineux ({MAX_POLYGON_BYTES} octets au plus)")
        if geometry.get("type") == "Feature":
            geometry = geometry.get("geometry") or {}
        if geometry.get("type") not in ("Polygon", "MultiPolygon"):
            raise Problem(400, "un Polygon ou MultiPolygon GeoJSON est attendu")
        text = json.dumps(geometry)
        no_nul("geometry", text.replace("\\u0000", "\x00"))
        if text.count(",") > MAX_POLYGON_VERTICES * 2:
            raise Problem(413, f"polygone trop détaillé ({MAX_POLYGON_VERTICES} sommets au plus)")
        validity = polygon_validity(conn, text)
        if validity is None:
            raise Problem(400, "géométrie GeoJSON illisible")
        valid, reason = validity
        if not valid:
            raise Problem(400, f"polygone invalide : {reason}")
        where, binds, props = _filters(params, st)
        where, binds = in_polygon(where, binds, text)
        limit = parse_limit(params, st, st.default_limit) or st.default_limit
        offset = parse_offset(params)
        page = run_db(
            items_page,
            conn,
            STRUCTURES,
            where,
            binds,
            limit=limit,
            offset=offset,
            out=Output(properties=props),
        )
        meta: dict[str, Any] = {"numberReturned": page.number_returned}
        if page.number_matched is not None:
            meta["numberMatched"] = page.number_matched
        meta["links"] = []
        if page.has_next:
            meta["links"].append(
                {
                    "rel": "next",
                    "type": GEOJSON,
                    "method": "POST",
                    "href": f"{base_url(request, st)}/structures/within?"
                    + urlencode({**params, "offset": offset + limit, "limit": limit}),
                }
            )
        return _collection(page.features, meta)

    return router
