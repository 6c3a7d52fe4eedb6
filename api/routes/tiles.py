"""OGC API – Tiles for the structures and territory layers, and TileJSON 3.0."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from api.errors import Problem
from api.urls import public_base
from carteco.filters import FilterLimits
from carteco.settings import Settings
from tiles.cache import TileCache
from tiles.filters import tile_filter
from tiles.layers import LAYERS, TileLayer, get_layer
from tiles.mvt import MVT_MEDIA_TYPE, TMS_ID, TileFilter, tms

# Bounds of the data shipped today (Île-de-France); clients use them to frame the first view.
DEFAULT_BOUNDS = [1.44, 48.12, 3.56, 49.24]
DEFAULT_CENTER = [2.35, 48.86, 9]


def _layer(collection_id: str) -> TileLayer:
    layer = get_layer(collection_id)
    if layer is None:
        raise Problem(404, f"aucune couche tuilée nommée {collection_id}")
    return layer


def _tms(tms_id: str) -> None:
    if tms_id != TMS_ID:
        raise Problem(404, f"jeu de matrices de tuiles inconnu : {tms_id} (seul {TMS_ID})")


def request_filter(request: Request, layer: TileLayer) -> TileFilter:
    """The compiled filter of a tile request (structures only), as a 400 when invalid."""
    if layer.kind != "structures":
        return TileFilter()
    # FilterError and TerritoryParamError: a 400 with errors[] via api/errors.py.
    settings: Settings = request.app.state.settings
    return tile_filter(dict(request.query_params), FilterLimits.from_settings(settings))


def tile_cache(request: Request) -> TileCache:
    """The app's tile cache, created on first use from the settings."""
    state = request.app.state
    cache = getattr(state, "tile_cache", None)
    if cache is None:
        settings: Settings = state.settings
        cache = TileCache(state.engine, settings.tile_cache_max_tiles, settings.tile_cache_enabled)
        state.tile_cache = cache
    return cache


_ARCHIVE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def archive_dir(settings: Settings) -> Path:
    """Folder of the PMTiles archives the service publishes under /tiles/{name}.pmtiles."""
    return settings.data_dir / "tiles"


def _query_suffix(request: Request) -> str:
    q = request.url.query
    return ("?" + q) if q else ""


def tilejson(request: Request, layers: list[TileLayer]) -> dict[str, Any]:
    """A TileJSON 3.0 document for one layer (or several sharing the same URL scheme)."""
    base = public_base(request)
    layer = layers[0]
    return {
        "tilejson": "3.0.0",
        "name": layer.title,
        "scheme": "xyz",
        "tiles": [
            f"{base}/collections/{layer.id}/tiles/{TMS_ID}/{{z}}/{{y}}/{{x}}"
            + _query_suffix(request)
        ],
        "minzoom": min(la.minzoom for la in layers),
        "maxzoom": max(la.maxzoom for la in layers),
        "bounds": DEFAULT_BOUNDS,
        "center": DEFAULT_CENTER,
        "attribution": request.app.state.settings.data_attribution,
        "vector_layers": [
            {
                "id": la.id,
                "description": la.title,
                "minzoom": la.minzoom,
                "maxzoom": la.maxzoom,
                "fields": la.fields,
            }
            for la in layers
        ],
    }


def tileset_metadata(request: Request, layer: TileLayer) -> dict[str, Any]:
    """The OGC API – Tiles tileset description of a layer in WebMercatorQuad."""
    base = public_base(request)
    t = tms()
    own = f"{base}/collections/{layer.id}/tiles/{TMS_ID}"
    limits = []
    for z in range(layer.minzoom, layer.maxzoom + 1):
        m = t.matrix(z)
        limits.append(
            {
                "tileMatrix": str(z),
                "minTileRow": 0,
                "maxTileRow": m.matrixHeight - 1,
                "minTileCol": 0,
                "maxTileCol": m.matrixWidth - 1,
            }
        )
    return {
        "title": layer.title,
        "dataType": "vector",
        "crs": "http://www.opengis.net/def/crs/EPSG/0/3857",
        "tileMatrixSetURI": str(t.uri),
        "tileMatrixSetLimits": limits,
        "layers": [
            {
                "id": layer.id,
                "dataType": "vector",
                "geometryDimension": 0 if layer.geometry == "point" else 2,
                "minTileMatrix": str(layer.minzoom),
                "maxTileMatrix": str(layer.maxzoom),
                "propertiesSchema": {
                    "type": "object",
                    "properties": {
                        k: {"type": "integer" if v == "Number" else "string"}
                        for k, v in layer.fields.items()
                    },
                },
            }
        ],
        "boundingBox": {
            "lowerLeft": DEFAULT_BOUNDS[:2],
            "upperRight": DEFAULT_BOUNDS[2:],
            "crs": "http://www.opengis.net/def/crs/OGC/1.3/CRS84",
        },
        "links": [
            {"rel": "self", "type": "application/json", "href": own},
            {
                "rel": "http://www.opengis.net/def/rel/ogc/1.0/tiling-scheme",
                "type": "application/json",
                "href": f"{base}/tileMatrixSets/{TMS_ID}",
            },
            {
                "rel": "item",
                "type": MVT_MEDIA_TYPE,
                "templated": True,
                "href": own + "/{tileMatrix}/{tileRow}/{tileCol}",
            },
            {
                "rel": "describedby",
                "type": "application/json",
                "href": own + "/tilejson.json",
                "title": "TileJSON 3.0",
            },
            {
                "rel": "collection",
                "type": "application/json",
                "href": f"{base}/collections/{layer.id}",
            },
        ],
    }


def tiles_router() -> APIRouter:
    """Tile endpoints: tilesets, tileset metadata, MVT tiles, TileJSON, tile matrix sets."""
    router = APIRouter(tags=["tuiles"])

    @router.get("/tileMatrixSets", summary="Jeux de matrices de tuiles")
    def matrix_sets(request: Request) -> dict[str, Any]:
        base = public_base(request)
        return {
            "tileMatrixSets": [
                {
                    "id": TMS_ID,
                    "title": "Google Maps Compatible for the World",
                    "uri": str(tms().uri),
                    "links": [{"rel": "self", "href": f"{base}/tileMatrixSets/{TMS_ID}"}],
                }
            ]
        }

    @router.get("/tileMatrixSets/{tms_id}", summary="Définition d'un jeu de matrices")
    def matrix_set(tms_id: str) -> JSONResponse:
        _tms(tms_id)
        return JSONResponse(tms().model_dump(mode="json", exclude_none=True))

    @router.get("/tiles/{name}.pmtiles", summary="Archive PMTiles exportée (lecture par plages)")
    def archive(name: str, request: Request) -> FileResponse:
        # Archives written by `carteco tiles export` into <data_dir>/tiles; Range requests are
        # answered by FileResponse, as the PMTiles readers need.
        if not _ARCHIVE_NAME.match(name):
            raise Problem(404, f"aucune archive nommée {name}")
        settings: Settings = request.app.state.settings
        path = archive_dir(settings) / f"{name}.pmtiles"
        if not path.is_file():
            raise Problem(404, f"aucune archive nommée {name}")
        return FileResponse(
            path,
            media_type="application/vnd.pmtiles",
            headers={"Cache-Control": f"public, max-age={settings.tile_max_age_s}"},
        )

    @router.get("/tiles/tilejson.json", summary="TileJSON de toutes les couches tuilées")
    def all_tilejson(request: Request) -> dict[str, Any]:
        doc = tilejson(request, list(LAYERS.values()))
        doc["tiles"] = []
        doc["name"] = "Carteco"
        doc["description"] = "Une URL de tuiles par couche : voir collections/{id}/tiles."
        return doc

    @router.get("/collections/{collection_id}/tiles", summary="Tuiles vectorielles d'une couche")
    def tilesets(collection_id: str, request: Request) -> dict[str, Any]:
        layer = _layer(collection_id)
        base = public_base(request)
        return {
            "tilesets": [
                {
                    "title": layer.title,
                    "dataType": "vector",
                    "crs": "http://www.opengis.net/def/crs/EPSG/0/3857",
                    "tileMatrixSetURI": str(tms().uri),
                    "links": [
                        {
                            "rel": "self",
                            "type": "application/json",
                            "href": f"{base}/collections/{layer.id}/tiles/{TMS_ID}",
                        },
                        {
                            "rel": "item",
                            "type": MVT_MEDIA_TYPE,
                            "templated": True,
                            "href": f"{base}/collections/{layer.id}/tiles/{TMS_ID}"
                            "/{tileMatrix}/{tileRow}/{tileCol}",
                        },
                    ],
                }
            ],
            "links": [
                {"rel": "self", "href": f"{base}/collections/{layer.id}/tiles"},
                {"rel": "collection", "href": f"{base}/collections/{layer.id}"},
            ],
        }

    @router.get(
        "/collections/{collection_id}/tiles/{tms_id}",
        summary="Description du jeu de tuiles (OGC API – Tiles)",
    )
    def tileset(collection_id: str, tms_id: str, request: Request) -> dict[str, Any]:
        layer = _layer(collection_id)
        _tms(tms_id)
        return tileset_metadata(request, layer)

    @router.get("/collections/{collection_id}/tiles/{tms_id}/tilejson.json", summary="TileJSON 3.0")
    def layer_tilejson(collection_id: str, tms_id: str, request: Request) -> dict[str, Any]:
        layer = _layer(collection_id)
        _tms(tms_id)
        request_filter(request, layer)  # refuse bad filters here rather than on every tile
        return tilejson(request, [layer])

    @router.get(
        "/collections/{collection_id}/tiles/{tms_id}/{z}/{y}/{x}",
        summary="Une tuile vectorielle (MVT)",
        response_class=Response,
        responses={200: {"content": {MVT_MEDIA_TYPE: {}}}, 204: {"description": "Tuile vide"}},
    )
    def tile(collection_id: str, tms_id: str, z: int, y: int, x: int, request: Request) -> Response:
        layer = _layer(collection_id)
        _tms(tms_id)
        filt = request_filter(request, layer)
        cache = tile_cache(request)
        t = cache.get(layer, z, x, y, filt)  # TileRangeError: a 404 via api/errors.py
        settings: Settings = request.app.state.settings
        headers = {
            "ETag": t.etag,
            "Cache-Control": f"public, max-age={settings.tile_max_age_s}",
            "X-Tile-Cache": "hit" if t.cached else "miss",
        }
        inm = request.headers.get("if-none-match")
        if inm and t.etag in [v.strip() for v in inm.split(",")]:
            return Response(status_code=304, headers=headers)
        if not t.data:
            return Response(status_code=204, headers=headers)
        return Response(t.data, media_type=MVT_MEDIA_TYPE, headers=headers)

    return router
